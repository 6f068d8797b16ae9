"""`dashtam sync --wait` never waits forever: it stops when the worker stops answering, and
after its limit, naming the runs still going."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.support.sandbox import create_connection, delete_owner
from tests.test_config import TestSettings

from dashtam.accounts.console import sync_command
from dashtam.core.errors import UserError
from dashtam.jobs.queue import health_check_key
from dashtam.models import ProviderConnection


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[ProviderConnection]:
    created = await create_connection(engine)
    yield created
    await delete_owner(engine, created)


async def test_a_worker_that_stops_answering_ends_the_wait(
    settings: TestSettings, connection: ProviderConnection
) -> None:
    with pytest.raises(UserError) as raised:
        await sync_command(settings, connection.provider_id, True, Console(), wait_limit=60)
    assert "the worker stopped answering" in raised.value.message
    assert "Schwab (queued)" in raised.value.message
    assert "stay queued" in raised.value.hint


async def test_the_wait_has_a_limit(
    settings: TestSettings, redis: Redis, connection: ProviderConnection
) -> None:
    """A worker that answers but never picks the run up (say, busy with another)."""
    await redis.set(health_check_key(settings), "alive", ex=60)
    try:
        with pytest.raises(UserError) as raised:
            await sync_command(settings, connection.provider_id, True, Console(), wait_limit=1)
    finally:
        await redis.delete(health_check_key(settings))
    assert "gave up after 1s" in raised.value.message
    assert "Schwab (queued)" in raised.value.message
    assert "--wait-limit" in raised.value.hint
