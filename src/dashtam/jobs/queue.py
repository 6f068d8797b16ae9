"""The job queue's names and the calls the API and CLI make on it.

arq keys its queue and health check by the queue name, which carries REDIS_KEY_PREFIX, and job
ids carry it too (arq keeps job and result keys under one global prefix), so test runs and
environments sharing a Redis never see each other's jobs.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import result_key_prefix
from arq.jobs import Job, JobStatus

from dashtam.core.config import Settings

SYNC_JOB = "sync_connection"


def queue_name(settings: Settings) -> str:
    return f"{settings.REDIS_KEY_PREFIX}arq:queue"


def health_check_key(settings: Settings) -> str:
    return f"{queue_name(settings)}:health-check"


def sync_job_id(settings: Settings, run_id: uuid.UUID, attempt: int = 0) -> str:
    """One id per (run, attempt): re-enqueueing the same attempt is a no-op in arq."""
    return f"{settings.REDIS_KEY_PREFIX}sync:{run_id}:{attempt}"


def redis_settings(settings: Settings) -> RedisSettings:
    return RedisSettings.from_dsn(settings.redis_url)


@asynccontextmanager
async def job_queue(settings: Settings) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(redis_settings(settings), default_queue_name=queue_name(settings))
    try:
        yield pool
    finally:
        await pool.aclose()


async def enqueue_sync(
    pool: ArqRedis,
    settings: Settings,
    run_id: uuid.UUID,
    attempt: int = 0,
    *,
    replace_finished: bool = False,
) -> bool:
    """Queue the run's job; False when that attempt's job is already queued or done.

    ``replace_finished`` is for runs known to be unattended: a job of that attempt that has
    finished (it gave up while the connection stayed busy) no longer blocks a new one.
    """
    job_id = sync_job_id(settings, run_id, attempt)
    if replace_finished and await Job(job_id, pool).status() is JobStatus.complete:
        await pool.delete(result_key_prefix + job_id)
    job = await pool.enqueue_job(SYNC_JOB, str(run_id), _job_id=job_id)
    return job is not None
