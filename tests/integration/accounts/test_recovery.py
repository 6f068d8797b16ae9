"""A run whose job gave up (its connection stayed busy through every try) is queued again."""

from __future__ import annotations

from dataclasses import replace

import pytest
from arq import Worker
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.support.sandbox import create_connection, delete_owner
from tests.test_config import TestSettings

from dashtam.accounts import runs
from dashtam.jobs.queue import enqueue_sync, job_queue
from dashtam.jobs.worker import WorkerDeps, recover_abandoned_runs, worker_options


@pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")  # inside arq
async def test_a_run_whose_job_gave_up_is_queued_again(
    engine: AsyncEngine, app_settings: TestSettings
) -> None:
    connection = await create_connection(engine)
    options = worker_options(app_settings)
    # The production job, allowed a single try so that giving up takes one busy answer.
    options["functions"] = [replace(job, max_tries=1) for job in options["functions"]]
    options |= {"cron_jobs": [], "burst": True, "poll_delay": 0.05, "handle_signals": False}
    deps = WorkerDeps.create(app_settings)
    try:
        async with engine.begin() as conn:
            run_id, _ = await runs.request_run(conn, connection.id, "manual")
        async with job_queue(app_settings) as pool:
            async with engine.connect() as other_process:  # holds the connection's lock
                assert await runs.try_lock(other_process, connection.id)
                await other_process.commit()
                assert await enqueue_sync(pool, app_settings, run_id)
                worker = Worker(**options)
                await worker.main()
                await worker.close()
                assert (worker.jobs_complete, worker.jobs_failed) == (0, 1)
                await runs.unlock(other_process, connection.id)
                await other_process.commit()
            async with engine.connect() as conn:
                assert await runs.abandoned_runs(conn) == [(run_id, 0)]
            assert await recover_abandoned_runs({"deps": deps, "redis": pool}) == 1
            assert await recover_abandoned_runs({"deps": deps, "redis": pool}) == 0
    finally:
        await deps.close()
        await delete_owner(engine, connection)
