"""Provider integration fixtures: an in-process sandbox and real sandbox tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from tests.support.providers import in_process_sandbox, sandbox_client, sandbox_grant
from tests.test_config import TestSettings

from dashtam.core.crypto import TokenCipher
from dashtam.providers.oauth import TokenGrant
from dashtam.providers.tokens import TokenDeps
from dashtam.sandbox.app import SandboxState


@pytest.fixture
def sandbox_app(settings: TestSettings) -> FastAPI:
    return in_process_sandbox(settings)


@pytest.fixture
def sandbox_state(sandbox_app: FastAPI) -> SandboxState:
    state: SandboxState = sandbox_app.state.sandbox
    return state


@pytest.fixture
async def sandbox_http(
    sandbox_app: FastAPI, settings: TestSettings
) -> AsyncIterator[httpx.AsyncClient]:
    async with sandbox_client(sandbox_app, settings) as client:
        yield client


@pytest.fixture
def cipher(settings: TestSettings) -> TokenCipher:
    return TokenCipher.from_setting(settings.TOKEN_ENCRYPTION_KEYS)


@pytest.fixture
def deps(sandbox_http: httpx.AsyncClient, settings: TestSettings, cipher: TokenCipher) -> TokenDeps:
    return TokenDeps(sandbox_http, settings, cipher)


@pytest.fixture
async def grant(sandbox_http: httpx.AsyncClient, settings: TestSettings) -> TokenGrant:
    """A real login at the sandbox; its stats are reset so tests count only their own calls."""
    login = await sandbox_grant(sandbox_http, settings)
    await sandbox_http.post("/sandbox/reset-stats")
    return login
