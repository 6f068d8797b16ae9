"""Provider integration fixtures: an in-process sandbox and real sandbox tokens."""

from __future__ import annotations

import httpx
import pytest
from tests.support.providers import sandbox_grant
from tests.test_config import TestSettings

from dashtam.core.crypto import TokenCipher
from dashtam.providers.oauth import TokenGrant
from dashtam.providers.tokens import TokenDeps


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
