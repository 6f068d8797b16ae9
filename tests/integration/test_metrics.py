"""Metrics that read real servers: the database pool gauges and the job queue's depth and lag
in Redis."""

from __future__ import annotations

import time
import uuid

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
