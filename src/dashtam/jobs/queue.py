"""The job queue's names, its wire format, and the calls the API and CLI make on it.

arq keys its queue and health check by the queue name, which carries REDIS_KEY_PREFIX, and job
ids carry it too (arq keeps job and result keys under one global prefix), so test runs and
environments sharing a Redis never see each other's jobs.

Jobs and results travel as MessagePack, never pickle (arq's default): unpickling what sits in
Redis would run whatever code whoever wrote it chose. A payload that is not MessagePack fails
to decode, and arq records the job as failed without running it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import msgspec
import redis.exceptions
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import result_key_prefix
from arq.jobs import Job, JobStatus
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from dashtam.core.config import Settings

SYNC_JOB = "sync_connection"


def queue_name(settings: Settings) -> str:
    return f"{settings.REDIS_KEY_PREFIX}arq:queue"


def health_check_key(settings: Settings) -> str:
    return f"{queue_name(settings)}:health-check"


def sync_job_id(settings: Settings, run_id: uuid.UUID, attempt: int = 0) -> str:
    """One id per (run, attempt): re-enqueueing the same attempt is a no-op in arq."""
    return f"{settings.REDIS_KEY_PREFIX}sync:{run_id}:{attempt}"


def _encode_unknown(value: object) -> str:
    """A failed job's result is its exception: stored as its type and message."""
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    raise TypeError(f"cannot put a {type(value).__name__} in a job")


_encoder = msgspec.msgpack.Encoder(enc_hook=_encode_unknown)
_decoder = msgspec.msgpack.Decoder(dict[str, Any])


def serialize_job(data: dict[str, Any]) -> bytes:
    return _encoder.encode(data)


def deserialize_job(data: bytes) -> dict[str, Any]:
    return _decoder.decode(data)


# Given to every arq pool and worker (arq's defaults are pickle.dumps / pickle.loads).
SERIALIZERS: dict[str, Any] = {
    "job_serializer": serialize_job,
    "job_deserializer": deserialize_job,
}


def redis_settings(settings: Settings) -> RedisSettings:
    """From the parsed URL: arq's own from_dsn would keep percent-escapes in the password."""
    url = urlsplit(settings.redis_url)
    return RedisSettings(
        host=url.hostname or "127.0.0.1",
        port=url.port or 6379,
        database=settings.redis_db,
        username=settings.redis_username or None,
        password=settings.redis_password or None,
        ssl=url.scheme == "rediss",
        # Commands wait out a restarting Redis (about 6 s in all) instead of failing: a worker
        # whose queue poll failed once during a restart was seen to exit mid-sync.
        retry=Retry(ExponentialBackoff(cap=1, base=0.05), retries=10),
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
    )


@asynccontextmanager
async def job_queue(settings: Settings) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(
        redis_settings(settings), default_queue_name=queue_name(settings), **SERIALIZERS
    )
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
    job = Job(job_id, pool, _deserializer=deserialize_job)
    if replace_finished and await job.status() is JobStatus.complete:
        await pool.delete(result_key_prefix + job_id)
    queued = await pool.enqueue_job(SYNC_JOB, str(run_id), _job_id=job_id)
    return queued is not None
