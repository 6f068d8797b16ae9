"""A sync through the faults of the things around it: PostgreSQL and Redis restarted mid-sync,
bursts of 429 and 5xx from the provider, the network cut mid-answer. Each ends with the store
equal to the provider (tests/support/fault_stack.py)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from tests.support.fault_stack import (
    TRANSACTIONS,
    Case,
    Stack,
    assert_first_sync_counters,
    assert_store_equals_provider,
    cases,
    fault_stack,
)
from tests.support.proxy import CuttingProxy

from dashtam.devenv.postgres import PostgresService
from dashtam.devenv.processes import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("sync-faults")]

# Ten of the worker's polls (WORKER_POLL_DELAY_SECONDS is 0.05 here).
REDIS_OUTAGE_SECONDS = 0.5
SIZE = {"accounts": 2, "transactions_per_account": 6_000, "history_days": 600}


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with fault_stack(tmp_path_factory.mktemp("sync-faults"), SIZE) as stack:
        yield stack


@pytest.fixture
async def make_case(stack: Stack) -> AsyncIterator[Callable[..., Any]]:
    async with cases(stack) as make:
        yield make


@pytest.fixture
async def sandbox(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.sandbox.url) as client:
        yield client


def _restart(postgres: PostgresService) -> None:
    """A fast shutdown (what `pg_ctl restart -m fast` does: sessions are ended), then a start."""
    pid = postgres.process.running_pid()
    assert pid is not None
    os.kill(pid, signal.SIGINT)
    wait_until(lambda: postgres.process.running_pid() is None, timeout=30, what="the shutdown")
    postgres.start()


async def test_postgresql_restarted_mid_sync(
    stack: Stack, make_case: Callable[..., Any], sandbox: httpx.AsyncClient
) -> None:
    """The restart ends the attempt's sessions, its lock among them: the attempt stops (it may
    reconnect, but finds its lock gone), the job is retried and the retry takes the run over."""
    case: Case = await make_case()
    hold = {"fault": "hold", "path": TRANSACTIONS, "skip": 2}
    await sandbox.post("/sandbox/faults", json=hold)
    run_id = await case.request_run()
    case.start_worker()
    await case.held(sandbox, run_id)

    await asyncio.to_thread(_restart, stack.postgres)
    await sandbox.post("/sandbox/faults/release")
    run = await case.finished(run_id)

    assert run["attempts"] == 2
    await assert_store_equals_provider(case, run)
    assert_first_sync_counters(case, run)


async def test_redis_restarted_mid_sync(
    stack: Stack, make_case: Callable[..., Any], sandbox: httpx.AsyncClient
) -> None:
    """The test Redis keeps nothing, so the restart loses the queue and arq's bookkeeping; the
    worker's queue polling stalls through the outage and carries on, and so does the sync it
    was running (a sync needs PostgreSQL and the provider, not Redis)."""
    case: Case = await make_case()
    hold = {"fault": "hold", "path": TRANSACTIONS, "skip": 2}
    await sandbox.post("/sandbox/faults", json=hold)
    run_id = await case.request_run()
    worker = case.start_worker()
    await case.held(sandbox, run_id)

    assert await asyncio.to_thread(stack.redis.stop)
    assert not stack.redis.is_ready()
    await asyncio.sleep(REDIS_OUTAGE_SECONDS)  # how long it is down, not a wait for anything
    await asyncio.to_thread(stack.redis.start)
    await sandbox.post("/sandbox/faults/release")
    run = await case.finished(run_id)

    assert stack.forks.alive(worker)
    assert run["attempts"] == 1
    await assert_store_equals_provider(case, run)
    assert_first_sync_counters(case, run)


async def test_bursts_of_429_and_5xx_are_waited_out_and_a_longer_outage_fails_saying_why(
    make_case: Callable[..., Any], sandbox: httpx.AsyncClient
) -> None:
    case: Case = await make_case()
    await sandbox.post("/sandbox/reset-stats")
    # On one account's requests, which follow one another: three 429s on its first request,
    # four 500s on its second, then six on its third, one more than the retries
    # (SYNC_MAX_RETRIES, 5) wait out. A skip counts every request of the account.
    account = f"/trader/v1/accounts/{case.data.accounts[0].hash_value}/transactions"
    for fault, count, skip in (
        ("rate_limit", 3, 0),
        ("server_error", 4, 4),
        ("server_error", 6, 9),
    ):
        burst = {"fault": fault, "count": count, "path": account, "skip": skip}
        await sandbox.post("/sandbox/faults", json=burst)
    case.start_worker()

    failed = await case.finished(await case.request_run())
    await sandbox.delete("/sandbox/faults")
    run = await case.finished(await case.request_run())

    assert failed["status"] == "failed"
    assert failed["error"].startswith(f"account ...{case.data.accounts[0].number[-4:]}, window")
    assert failed["error"].endswith(
        "provider answered 500 to /trader/v1/accounts/{account}/transactions; "
        "gave up after 6 attempts"
    )
    assert (await sandbox.get("/sandbox/stats")).json()["faults_injected"] == 13
    await assert_store_equals_provider(case, run)
    assert run["inserted"] + failed["inserted"] == len(case.data.accounts) * 6_000


async def test_the_network_cut_mid_answer(stack: Stack, make_case: Callable[..., Any]) -> None:
    """A proxy between the worker and the sandbox cuts connections part-way through answers;
    the client retries each on a new connection."""
    proxy = CuttingProxy(int(stack.sandbox.port))
    proxy.cut(connections=4, after_bytes=200_000)
    async with proxy.running():
        case: Case = await make_case(via_port=str(proxy.port))
        run_id = await case.request_run()
        worker = case.start_worker()
        run = await case.finished(run_id)
        stack.forks.kill(worker)

    assert proxy.cuts == 4
    assert run["attempts"] == 1
    await assert_store_equals_provider(case, run)
    assert_first_sync_counters(case, run)
