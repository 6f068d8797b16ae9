"""Per-run database names: leftovers of an interrupted run are dropped, live runs are not."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg
from tests.support.databases import create_worker_database, drop_leftovers, drop_worker_database
from tests.test_config import TestSettings


async def _exists(settings: TestSettings, name: str) -> bool:
    url = settings.database_url
    connection = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, database="postgres"
    )
    try:
        return bool(await connection.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", name))
    finally:
        await connection.close()


async def test_leftovers_of_dead_runs_are_dropped_and_live_ones_kept(
    base_settings: TestSettings,
) -> None:
    finished = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await finished.wait()
    template = base_settings.database_name
    dead = f"{template}_{finished.pid}xdead01_gw9"
    alive = f"{template}_{os.getpid()}xbeef01_gw9"
    await create_worker_database(base_settings, dead)
    await create_worker_database(base_settings, alive)
    try:
        dropped = await drop_leftovers(base_settings)
        assert dead in dropped
        assert not await _exists(base_settings, dead)
        assert await _exists(base_settings, alive)
    finally:
        await drop_worker_database(base_settings, alive)
        await drop_worker_database(base_settings, dead)
