"""What a sync announces: each committed window's changes once, in the window's own transaction;
balances and positions when they change; the run's end. Re-reading changes nothing and so
announces nothing, whichever attempt does it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from tests.integration.accounts.conftest import Harness
from tests.support.events import events_of, owner, total, types_of

from dashtam.accounts.schwab import TransactionBatch
from dashtam.accounts.store import WriteCounts, write_transactions
from dashtam.accounts.sync import Outcome, execute_run
from dashtam.models import Event
from dashtam.sandbox.faults import Fault

MakeHarness = Callable[..., AbstractAsyncContextManager[Harness]]
CHANGED = "transactions.changed"


async def events(h: Harness, *types: str) -> list[Event]:
    user_id = await owner(h.engine, h.connection.provider_id)
    async with h.engine.connect() as conn:
        return await events_of(conn, user_id, *types)


async def stored_count(h: Harness) -> int:
    async with h.engine.connect() as conn:
        count = await conn.scalar(
            text(
                "SELECT count(*) FROM transactions t JOIN accounts a ON a.id = t.account_id "
                "WHERE a.connection_id = :c"
            ),
            {"c": h.connection.id},
        )
    return int(count or 0)


async def test_a_first_sync_announces_every_row_once_and_its_end(harness: Harness) -> None:
    run_id, outcome = await harness.sync()

    assert outcome is Outcome.SUCCEEDED
    found = await events(harness)
    changed = [e for e in found if e.type == CHANGED]
    assert total(changed, "added") == harness.expected_transactions()
    assert total(changed, "modified") == total(changed, "removed") == 0
    assert all(e.subject_type == "account" and e.data["run_id"] == str(run_id) for e in changed)
    assert sorted(types_of(found))[:4] == ["balances.changed"] * 2 + ["positions.changed"] * 2
    assert types_of(found)[-1] == "sync.succeeded"
    end = found[-1]
    assert end.subject_id == harness.connection.provider_id
    assert (end.data["inserted"], end.data["attempts"]) == (harness.expected_transactions(), 1)


async def test_an_unchanged_resync_announces_only_its_end(harness: Harness) -> None:
    await harness.sync()
    before = len(await events(harness))

    await harness.sync()

    assert types_of((await events(harness))[before:]) == ["sync.succeeded"]


async def test_a_posted_and_a_removed_transaction_are_announced_as_such(
    harness: Harness,
) -> None:
    await harness.sync()
    before = len(await events(harness, CHANGED))
    data = harness.sandbox.data
    first, second = data.accounts
    data.transactions(first).post(data.transactions(first).pending()[0].activity_id)
    data.transactions(second).remove(data.transactions(second).pending()[0].activity_id)

    await harness.sync()

    changed = (await events(harness, CHANGED))[before:]
    assert (total(changed, "added"), total(changed, "modified"), total(changed, "removed")) == (
        0,
        1,
        1,
    )


async def test_a_run_that_needs_reauth_announces_it_once_and_fails(harness: Harness) -> None:
    harness.sandbox.faults.schedule(Fault("expired_token"), 4, "trader")

    outcomes = [(await harness.sync())[1] for _ in range(2)]  # the second finds it flagged

    assert outcomes == [Outcome.FAILED, Outcome.FAILED]
    found = await events(harness, "connection.needs_reauth", "sync.failed")
    assert types_of(found) == ["connection.needs_reauth", "sync.failed", "sync.failed"]
    assert found[1].data["error"].startswith("needs_reauth")


async def test_a_window_that_cannot_commit_announces_nothing_and_a_takeover_no_twice(
    make_harness: MakeHarness,
) -> None:
    """The first attempt loses its lock at its second window: that window rolls back with its
    event. The attempt that takes the run over re-reads the first window (already stored, so
    nothing to announce) and announces the rest: every row exactly once."""
    async with make_harness(accounts=1, transactions_per_account=5000, history_days=300) as h:
        windows = 0

        async def lose_the_lock_at_the_second_window(
            conn: AsyncConnection,
            account_id: uuid.UUID,
            window: Any,
            batch: TransactionBatch,
            now: Any,
            *,
            mark_missing: bool = True,
        ) -> WriteCounts:
            nonlocal windows
            windows += 1
            if windows == 2:
                await conn.execute(
                    text(
                        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_database d "
                        "ON d.oid = l.database WHERE d.datname = current_database() "
                        "AND l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()"
                    )
                )
            return await write_transactions(
                conn, account_id, window, batch, now, mark_missing=mark_missing
            )

        run_id = await h.request()
        lost = await execute_run(
            h.engine, run_id, h.connect, h.options, lose_the_lock_at_the_second_window
        )
        assert lost is Outcome.LOST
        first_attempt = await events(h, CHANGED)
        assert total(first_attempt, "added") == await stored_count(h) < 5000

        assert await execute_run(h.engine, run_id, h.connect, h.options) is Outcome.SUCCEEDED

        found = await events(h)
        assert total([e for e in found if e.type == CHANGED], "added") == 5000
        assert types_of(found).count("sync.succeeded") == 1
        assert found[-1].data["attempts"] == 2
