"""Jobs travel as MessagePack: a pickled payload in the queue is refused, never unpickled."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from arq import Worker, func
from arq.constants import job_key_prefix, result_key_prefix
from redis.asyncio import Redis
from tests.test_config import TestSettings

from dashtam.jobs.queue import (
    SYNC_JOB,
    deserialize_job,
    job_queue,
    queue_name,
)
from dashtam.jobs.worker import worker_options


class Payload:
    """Unpickling this runs os.mkdir(path): the stand-in for an attacker's code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.mkdir, (str(self.path),)


def pickled_job(marker: Path) -> bytes:
    """What arq's default (pickle) serializer would have queued, carrying the payload."""
    job = {"t": 1, "f": SYNC_JOB, "a": [Payload(marker)], "k": {}, "et": int(time.time() * 1000)}
    return pickle.dumps(job)


def test_the_payload_runs_code_when_unpickled(tmp_path: Path) -> None:
    """The control: unpickled, this payload executes. Below, the worker must never do that."""
    marker = tmp_path / "ran"
    pickle.loads(pickled_job(marker))  # noqa: S301 - proving the payload is live
    assert marker.is_dir()


def spy_worker(settings: TestSettings, calls: list[str]) -> Worker:
    """The worker's own options (serializers included), with a recording job and no crons."""

    async def sync_connection(ctx: dict[str, Any], run_id: str) -> str:
        calls.append(run_id)
        return "done"

    options = worker_options(settings)
    options |= {
        "functions": [func(sync_connection, name=SYNC_JOB)],
        "cron_jobs": [],
        "on_startup": None,
        "on_shutdown": None,
        "burst": True,
        "poll_delay": 0.05,
        "handle_signals": False,
    }
    return Worker(**options)


@pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")  # inside arq
async def test_a_pickled_job_is_refused_without_being_run(
    app_settings: TestSettings, redis: Redis, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    job_id = f"{app_settings.REDIS_KEY_PREFIX}evil"
    raw = Redis.from_url(app_settings.redis_url)  # bytes in, bytes out
    try:
        await raw.set(job_key_prefix + job_id, pickled_job(marker), px=60_000)
        await raw.zadd(queue_name(app_settings), {job_id: int(time.time() * 1000)})
        calls: list[str] = []
        worker = spy_worker(app_settings, calls)
        await worker.main()
        await worker.close()
        assert not marker.exists(), "the worker unpickled the payload"
        assert calls == []
        assert (worker.jobs_complete, worker.jobs_failed) == (0, 1)
        stored = await raw.get(result_key_prefix + job_id)
        assert stored is not None
        result = deserialize_job(stored)
        assert result["s"] is False
        assert "unable to deserialize job" in result["r"]
    finally:
        await raw.delete(job_key_prefix + job_id, result_key_prefix + job_id)
        await raw.zrem(queue_name(app_settings), job_id)
        await raw.aclose()


@pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")  # inside arq
async def test_enqueued_jobs_and_their_results_are_msgpack(
    app_settings: TestSettings, redis: Redis
) -> None:
    job_id = f"{app_settings.REDIS_KEY_PREFIX}plain"
    raw = Redis.from_url(app_settings.redis_url)
    try:
        async with job_queue(app_settings) as pool:
            assert await pool.enqueue_job(SYNC_JOB, "run-1", _job_id=job_id) is not None
        queued = await raw.get(job_key_prefix + job_id)
        assert queued is not None
        with pytest.raises(pickle.UnpicklingError):
            pickle.loads(queued)  # noqa: S301 - showing it is not pickle
        assert msgspec.msgpack.decode(queued)["a"] == ["run-1"]
        calls: list[str] = []
        worker = spy_worker(app_settings, calls)
        await worker.main()
        await worker.close()
        assert calls == ["run-1"]
        stored = await raw.get(result_key_prefix + job_id)
        assert stored is not None
        result = msgspec.msgpack.decode(stored)
        assert (result["s"], result["r"]) == (True, "done")
    finally:
        await raw.delete(job_key_prefix + job_id, result_key_prefix + job_id)
        await raw.aclose()
