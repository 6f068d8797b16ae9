"""A sync that ends in needs_reauth says, on the run and on the connection, how to re-authorize."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace

import pytest
from rich.console import Console
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.integration.accounts.conftest import FAST_RETRIES, Harness
from tests.support.sandbox import create_connection, delete_owner, store_tokens
from tests.test_config import TestSettings

from dashtam.accounts.console import sync_command
from dashtam.accounts.schwab import TraderClient
from dashtam.accounts.sync import Outcome, execute_run
from dashtam.accounts.tokens import ConnectionTokens
from dashtam.core.database import create_session_factory
from dashtam.core.errors import UserError
from dashtam.jobs.worker import sync_connection
from dashtam.sandbox.faults import Fault


async def _messages(harness: Harness, run_id: uuid.UUID) -> tuple[str, str, str]:
    """(run error, connection status, connection last_error)."""
    async with harness.engine.connect() as conn:
        error = await conn.scalar(text("SELECT error FROM sync_runs WHERE id = :r"), {"r": run_id})
        status, last_error = (
            await conn.execute(
                text("SELECT status, last_error FROM provider_connections WHERE id = :c"),
                {"c": harness.connection.id},
            )
        ).one()
    return error, status, last_error


def _reauthorize(harness: Harness) -> str:
    return f"Re-authorize it: POST /api/v1/providers/{harness.connection.provider_id}/authorization"


async def test_a_token_refused_after_its_refresh(harness: Harness) -> None:
    harness.sandbox.faults.schedule(Fault("expired_token"), 2, "trader")

    run_id, outcome = await harness.sync()

    error, status, last_error = await _messages(harness, run_id)
    assert outcome is Outcome.FAILED
    assert status == "needs_reauth"
    assert error.startswith("needs_reauth: the provider rejected a freshly refreshed access token")
    assert _reauthorize(harness) in error
    assert _reauthorize(harness) in last_error


async def test_a_login_the_provider_forgot(harness: Harness, settings: TestSettings) -> None:
    """What a restarted sandbox used to do: the stored refresh token is refused
    (invalid_grant), through the real token store, and the message does not repeat itself."""
    access, refresh = await harness.tokens.login()
    await store_tokens(harness.engine, settings, harness.connection.id, access, refresh)
    harness.sandbox.oauth.revoke_all()
    tokens = ConnectionTokens(
        create_session_factory(harness.engine), harness.http, settings, harness.connection.id
    )

    @asynccontextmanager
    async def connect(_connection_id: uuid.UUID) -> AsyncIterator[TraderClient]:
        yield TraderClient(harness.http, tokens, FAST_RETRIES)

    run_id = await harness.request()
    outcome = await execute_run(harness.engine, run_id, connect, harness.options)

    error, status, last_error = await _messages(harness, run_id)
    assert outcome is Outcome.FAILED
    assert status == "needs_reauth"
    assert error.startswith("needs_reauth: The provider no longer accepts this connection's login")
    assert error.count("needs_reauth") == 1
    assert _reauthorize(harness) in error
    assert _reauthorize(harness) in last_error


async def test_the_worker_log_says_how_to_reauthorize(
    harness: Harness, settings: TestSettings, caplog: pytest.LogCaptureFixture
) -> None:
    harness.sandbox.faults.schedule(Fault("expired_token"), 2, "trader")
    run_id = await harness.request()
    clients = SimpleNamespace(connect=harness.connect)
    deps = SimpleNamespace(settings=settings, engine=harness.engine, clients=clients)

    with caplog.at_level(logging.INFO, logger="dashtam.jobs"):
        assert await sync_connection({"deps": deps}, str(run_id)) == "failed"

    [record] = [r for r in caplog.records if r.name == "dashtam.jobs"]
    assert record.levelno == logging.WARNING
    assert _reauthorize(harness) in record.getMessage()


async def test_dashtam_sync_names_the_connections_that_need_reauthorizing(
    engine: AsyncEngine, settings: TestSettings
) -> None:
    connection = await create_connection(engine, status="needs_reauth")
    try:
        with pytest.raises(UserError) as raised:
            await sync_command(settings, connection.provider_id, False, Console())
    finally:
        await delete_owner(engine, connection)
    assert "1 need(s) re-authorization" in raised.value.message
    hint = f"Re-authorize it: POST /api/v1/providers/{connection.provider_id}/authorization"
    assert hint in raised.value.hint
