"""Many callers, one expiring connection: exactly one refresh reaches the provider.

These use committed rows and separate sessions (the rolled-back test transaction is a single
connection and cannot hold concurrent row locks); the rows are deleted afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from tests.support.providers import delete_owner, seed_connection
from tests.test_config import TestSettings

from dashtam.core.crypto import TokenCipher
from dashtam.models import ProviderConnection
from dashtam.providers.errors import ConnectionUnusable
from dashtam.providers.oauth import TokenGrant
from dashtam.providers.service import get_access_token
from dashtam.sandbox.app import SandboxState

CALLERS = 100


@pytest.fixture
def committing(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
async def expiring(
    committing: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    cipher: TokenCipher,
    grant: TokenGrant,
) -> AsyncIterator[ProviderConnection]:
    """A committed connection whose access token expires within the refresh leeway."""
    async with committing() as session:
        connection = await seed_connection(
            session, cipher, grant, access_expires_in=timedelta(seconds=30)
        )
    yield connection
    await delete_owner(engine, connection)


async def _all_callers(
    committing: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
    settings: TestSettings,
    connection: ProviderConnection,
) -> list[str | BaseException]:
    return await asyncio.gather(
        *(get_access_token(committing, http, settings, connection.id) for _ in range(CALLERS)),
        return_exceptions=True,
    )


async def test_one_hundred_callers_cause_exactly_one_refresh(
    committing: async_sessionmaker[AsyncSession],
    sandbox_http: httpx.AsyncClient,
    sandbox_state: SandboxState,
    settings: TestSettings,
    expiring: ProviderConnection,
    grant: TokenGrant,
) -> None:
    results = await _all_callers(committing, sandbox_http, settings, expiring)
    assert sandbox_state.stats.refresh_grants == 1
    assert sandbox_state.stats.token_requests == 1
    assert all(isinstance(result, str) for result in results), results
    assert len(set(results)) == 1
    assert results[0] != grant.access_token
    # The refreshed token really works at the provider.
    accounts = await sandbox_http.get(
        "/trader/v1/accounts/accountNumbers", headers={"Authorization": f"Bearer {results[0]}"}
    )
    assert accounts.status_code == 200


async def test_a_fresh_token_is_served_without_refreshing(
    committing: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    sandbox_http: httpx.AsyncClient,
    sandbox_state: SandboxState,
    settings: TestSettings,
    cipher: TokenCipher,
    grant: TokenGrant,
) -> None:
    async with committing() as session:
        connection = await seed_connection(
            session, cipher, grant, access_expires_in=timedelta(minutes=29)
        )
    try:
        results = await _all_callers(committing, sandbox_http, settings, connection)
    finally:
        await delete_owner(engine, connection)
    assert set(results) == {grant.access_token}
    assert sandbox_state.stats.token_requests == 0


async def test_a_revoked_login_is_asked_for_once_then_needs_reauth(
    committing: async_sessionmaker[AsyncSession],
    sandbox_http: httpx.AsyncClient,
    sandbox_state: SandboxState,
    settings: TestSettings,
    expiring: ProviderConnection,
) -> None:
    await sandbox_http.post("/sandbox/tokens/revoke")
    results = await _all_callers(committing, sandbox_http, settings, expiring)
    assert sandbox_state.stats.token_requests == 1  # no retry storm
    assert all(isinstance(result, ConnectionUnusable) for result in results), results
    assert {r.connection_status for r in results if isinstance(r, ConnectionUnusable)} == {
        "needs_reauth"
    }
