"""One sync, its worker SIGKILLed at twenty points: in the middle of a request, of a split, of a
window's write transaction; each time the next worker takes the run over. The store ends equal
to the provider (tests/support/fault_stack.py)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.support.fault_stack import (
    TRANSACTIONS,
    Case,
    Stack,
    assert_first_sync_counters,
    assert_store_equals_provider,
    cases,
    fault_stack,
    until,
)

from dashtam.accounts.schwab import TRANSACTION_LIMITS

pytestmark = pytest.mark.e2e

KILLS = 20
# Windows aim at 1,500 rows: about seven per account, each attempt starting with a capped year.
SIZE = {"accounts": 2, "transactions_per_account": 10_000, "history_days": 600}


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with fault_stack(tmp_path_factory.mktemp("sync-kills"), SIZE) as stack:
        yield stack


@pytest.fixture
async def make_case(stack: Stack) -> AsyncIterator[Callable[..., Any]]:
    async with cases(stack) as make:
        yield make


@dataclass(frozen=True)
class KillPoint:
    mode: str  # "fetch": a transactions request in flight; "commit": inside a window's write
    account: str  # the account hash of the held request
    start: str  # its startDate
    split: bool  # it retries a window whose answer reached the row cap


def _point(mode: str, held: dict[str, str], answered: list[dict[str, Any]]) -> KillPoint:
    account = held["path"].split("/")[4]
    start = parse_qs(held["query"])["startDate"][0]
    before = [r for r in answered if r["account_hash"] == account]
    split = bool(before) and before[-1]["rows"] >= TRANSACTION_LIMITS.row_cap
    return KillPoint(mode, account, start, split)


async def _writer_waits_on_a_lock(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        waiting = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    return bool(waiting)


async def test_a_worker_killed_at_twenty_points_of_one_sync_leaves_nothing_out(
    stack: Stack, make_case: Callable[..., Any]
) -> None:
    """Each point holds a transactions request at the sandbox, then kills the worker: with the
    request in flight ("fetch"), or after letting the answer through with the accounts' rows
    locked, so the worker dies inside a window's write transaction ("commit"). Seeded: how many
    requests each attempt is let through first (an attempt starts by re-reading the overlap and
    splitting a capped year) and the mode. The next worker's start-up recovery takes the run
    over, as in production."""
    case: Case = await make_case()
    rng = random.Random(20261202)
    run_id = await case.request_run()
    points: list[KillPoint] = []
    async with httpx.AsyncClient(base_url=stack.sandbox.url) as sandbox:
        for _ in range(KILLS):
            hold = {"fault": "hold", "path": TRANSACTIONS, "skip": rng.randint(0, 6)}
            await sandbox.post("/sandbox/faults", json=hold)
            mode = rng.choice(["fetch", "commit"])
            worker = case.start_worker()
            held = await case.held(sandbox, run_id)
            if mode == "fetch":
                stack.forks.kill(worker)
                await sandbox.post("/sandbox/faults/release")
            else:
                async with stack.engine.connect() as blocker:
                    await blocker.execute(
                        text("SELECT 1 FROM accounts WHERE connection_id = :c FOR UPDATE"),
                        {"c": case.connection.id},
                    )
                    await sandbox.post("/sandbox/faults/release")
                    await until(lambda: _writer_waits_on_a_lock(stack.engine), bool, case)
                    stack.forks.kill(worker)
                    await blocker.rollback()
            answered = (await sandbox.get("/sandbox/requests")).json()
            points.append(_point(mode, held, answered))
        case.start_worker()
        run = await case.finished(run_id)

    assert run["attempts"] == KILLS + 1
    await assert_store_equals_provider(case, run)
    assert_first_sync_counters(case, run)
    assert {p.mode for p in points} == {"fetch", "commit"}
    assert {p.account for p in points} == {a.hash_value for a in case.data.accounts}
    assert any(p.split for p in points), points
    assert len({(p.account, p.start) for p in points}) >= 10, points
