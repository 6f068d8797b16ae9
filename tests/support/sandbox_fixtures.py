"""Fixtures for tests that need the Schwab sandbox in-process (loaded by tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from tests.support.providers import in_process_sandbox, sandbox_client
from tests.test_config import TestSettings

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
