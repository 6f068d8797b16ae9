"""Metrics that read real servers or processes: the database pool gauges, the job queue's depth
and lag in Redis, and multiprocess mode across real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis as sync_redis
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from tests.support.metrics import Scrape
from tests.test_config import TestSettings

from dashtam.core.metrics import render, watch_pool
from dashtam.jobs.metrics import queue_families
from dashtam.jobs.queue import queue_name


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_pool_gauges_follow_checkouts(settings: TestSettings) -> None:
    engine = create_async_engine(settings.database_url, pool_size=3)
    size, opened, out = (
        sample("dashtam_db_pool_size"),
        sample("dashtam_db_pool_open_connections"),
        sample("dashtam_db_pool_checked_out_connections"),
    )
    watch_pool(engine, 3)
    try:
        assert sample("dashtam_db_pool_size") - size == 3
        async with engine.connect() as first, engine.connect() as second:
            await first.execute(text("SELECT 1"))
            await second.execute(text("SELECT 1"))
            assert sample("dashtam_db_pool_checked_out_connections") - out == 2
            assert sample("dashtam_db_pool_open_connections") - opened == 2
        assert sample("dashtam_db_pool_checked_out_connections") - out == 0
        assert sample("dashtam_db_pool_open_connections") - opened == 2  # kept for reuse
    finally:
        await engine.dispose()
    assert sample("dashtam_db_pool_open_connections") - opened == 0


def test_queue_depth_and_lag_come_from_the_queue(settings: TestSettings) -> None:
    mine = settings.model_copy(
        update={"REDIS_KEY_PREFIX": f"{settings.REDIS_KEY_PREFIX}q{uuid.uuid4().hex[:6]}:"}
    )
    name = queue_name(mine)
    now_ms = time.time() * 1000
    with sync_redis.Redis.from_url(mine.redis_url) as client:
        try:
            empty = Scrape.parse(render(queue_families(mine, client)).decode())
            assert empty.value("dashtam_job_queue_depth", state="due") == 0
            assert empty.value("dashtam_job_queue_lag_seconds") == 0
            client.zadd(
                name, {"old": now_ms - 90_000, "new": now_ms - 1_000, "later": now_ms + 600_000}
            )
            scraped = Scrape.parse(render(queue_families(mine, client)).decode())
        finally:
            client.delete(name)
    assert scraped.value("dashtam_job_queue_depth", state="due") == 2
    assert scraped.value("dashtam_job_queue_depth", state="scheduled") == 1
    assert 90 <= scraped.value("dashtam_job_queue_lag_seconds") < 120


COUNT_IN_A_PROCESS = """
import sys
from dashtam.core.metrics import SYNC_RUNS
SYNC_RUNS.labels("succeeded").inc(int(sys.argv[1]))
"""


def test_multiprocess_mode_adds_up_every_process(tmp_path: Path) -> None:
    """What several uvicorn workers do: each counts in its own process, any one scrape
    reports the sum (prometheus_client's multiprocess files in PROMETHEUS_MULTIPROC_DIR)."""
    env = os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for count in (3, 4):
        subprocess.run([sys.executable, "-c", COUNT_IN_A_PROCESS, str(count)], env=env, check=True)
    scrape = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from dashtam.core.metrics import render; "
            "sys.stdout.write(render().decode())",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    parsed = Scrape.parse(scrape.stdout)
    assert parsed.value("dashtam_sync_runs_total", outcome="succeeded") == 7
    assert len(list(tmp_path.glob("counter_*.db"))) == 2  # one file per process
