"""Sync semantics against the sandbox: completeness, idempotency, updates, faults, resumption."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col
from tests.integration.accounts.conftest import Harness

from dashtam.accounts import runs
from dashtam.accounts import sync as sync_module
from dashtam.accounts.schwab import TransactionBatch
from dashtam.accounts.store import WriteCounts, write_transactions
from dashtam.accounts.sync import Outcome, execute_run
from dashtam.models import Account, Transaction
from dashtam.sandbox.faults import Fault

EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
MakeHarness = Callable[..., AbstractAsyncContextManager[Harness]]


async def run_row(h: Harness, run_id: uuid.UUID) -> dict[str, Any]:
    async with h.engine.connect() as conn:
        row = (
            await conn.execute(text("SELECT * FROM sync_runs WHERE id = :id"), {"id": run_id})
        ).one()
    return dict(row._mapping)


async def stored(h: Harness, *columns: str) -> list[Any]:
    """The connection's transactions (default: their provider ids), by provider id."""
    query = (
        select(*(getattr(Transaction, c) for c in columns or ("provider_transaction_id",)))
        .join(Account, col(Account.id) == col(Transaction.account_id))
        .where(col(Account.connection_id) == h.connection.id)
        .order_by(col(Transaction.provider_transaction_id))
    )
    async with h.engine.connect() as conn:
        return list(await conn.execute(query))


async def scalar(h: Harness, sql: str) -> Any:
    async with h.engine.connect() as conn:
        return await conn.scalar(text(sql), {"c": h.connection.id})


async def test_first_sync_stores_exactly_what_the_sandbox_has(harness: Harness) -> None:
    run_id, outcome = await harness.sync()

    assert outcome is Outcome.SUCCEEDED
    run = await run_row(harness, run_id)
    expected = harness.expected_transactions()
    assert run["status"] == "succeeded"
    assert run["error"] is None
    assert (run["inserted"], run["updated"], run["unchanged"]) == (expected, 0, 0)
    assert run["accounts_total"] == run["accounts_done"] == 2
    data = harness.sandbox.data
    books = [data.transactions(a) for a in data.accounts]
    sandbox_ids = sorted(str(t.activity_id) for book in books for t in book.window(*EVER))
    assert [r[0] for r in await stored(harness)] == sandbox_ids
    # amounts exactly as the sandbox holds them, with no float in between
    first = books[0].window(*EVER)[0]
    amounts = dict(await stored(harness, "provider_transaction_id", "net_amount"))
    assert amounts[str(first.activity_id)] == first.net_amount
    trade = next(t for t in books[0].window(*EVER) if t.type == "TRADE")
    row = next(
        r
        for r in await stored(
            harness, "provider_transaction_id", "symbol", "items", "settlement_date", "status"
        )
        if r[0] == str(trade.activity_id)
    )
    security = trade.items[-1]
    assert row.symbol == security.security.symbol
    assert row.settlement_date == trade.settlement_date
    assert row.status == "posted"
    assert row.items[-1]["cusip"] == security.security.cusip
    assert Decimal(row.items[-1]["quantity"]) == security.amount
    assert Decimal(row.items[-1]["price"]) == security.price
    assert Decimal(row.items[-1]["cost"]) == security.cost
    assert row.items[1]["fee_type"] == "SEC_FEE"
    # accounts: the hash is the key, only the last 4 digits of the number are kept
    async with harness.engine.connect() as conn:
        accounts = (
            await conn.execute(
                text("SELECT * FROM accounts WHERE connection_id = :c ORDER BY name"),
                {"c": harness.connection.id},
            )
        ).all()
    by_hash = {a.hash_value: a for a in data.accounts}
    for row in accounts:
        source = by_hash[row.provider_account_id]
        assert row.number_last4 == source.number[-4:]
        assert source.number not in str(tuple(row))
        assert row.type == source.type.lower()
        assert row.name == source.nickname
    positions = await scalar(
        harness,
        "SELECT count(*) FROM positions p JOIN accounts a ON a.id = p.account_id "
        "WHERE a.connection_id = :c",
    )
    assert positions == sum(len(a.positions) for a in data.accounts)
    snapshots = await scalar(
        harness,
        "SELECT count(*) FROM balance_snapshots b JOIN accounts a ON a.id = b.account_id "
        "WHERE a.connection_id = :c",
    )
    assert snapshots == 2


async def test_unchanged_resync_writes_nothing(harness: Harness) -> None:
    await harness.sync()
    before = await stored(harness, "id", "updated_at", "content_hash")
    snapshots = (
        "SELECT count(*) FROM balance_snapshots b JOIN accounts a ON a.id = b.account_id "
        "WHERE a.connection_id = :c"
    )
    # xmin changes whenever a row is rewritten, even with equal values
    positions = (
        "SELECT string_agg(p.xmin::text, ',' ORDER BY p.id) FROM positions p "
        "JOIN accounts a ON a.id = p.account_id WHERE a.connection_id = :c"
    )
    xmins = (
        "SELECT string_agg(t.xmin::text, ',' ORDER BY t.id) FROM transactions t "
        "JOIN accounts a ON a.id = t.account_id WHERE a.connection_id = :c"
    )
    xmins_before = await scalar(harness, xmins)
    positions_before = await scalar(harness, positions)

    run_id, outcome = await harness.sync()

    assert outcome is Outcome.SUCCEEDED
    run = await run_row(harness, run_id)
    assert run["inserted"] == run["updated"] == run["marked_missing"] == 0
    assert run["unchanged"] > 0
    assert await stored(harness, "id", "updated_at", "content_hash") == before
    assert await scalar(harness, xmins) == xmins_before
    assert await scalar(harness, snapshots) == 2
    assert await scalar(harness, positions) == positions_before


async def test_later_sync_reads_only_the_overlap(harness: Harness) -> None:
    first_id, _ = await harness.sync()
    second_id, _ = await harness.sync()

    first, second = await run_row(harness, first_id), await run_row(harness, second_id)
    assert second["rows_fetched"] < first["rows_fetched"] / 10
    assert second["window_start"] > first["window_start"]


async def test_pending_becomes_posted_without_a_duplicate(harness: Harness) -> None:
    await harness.sync()
    data = harness.sandbox.data
    account = data.accounts[0]
    pending = data.transactions(account).pending()[0]
    data.transactions(account).post(pending.activity_id)

    run_id, _ = await harness.sync()

    run = await run_row(harness, run_id)
    assert run["updated"] == 1
    assert run["inserted"] == 0
    rows = await stored(harness, "provider_transaction_id", "status")
    assert rows.count((str(pending.activity_id), "posted")) == 1
    assert len(rows) == harness.expected_transactions()


async def test_a_transaction_no_longer_returned_is_marked_not_deleted(harness: Harness) -> None:
    await harness.sync()
    data = harness.sandbox.data
    account = data.accounts[1]
    gone = data.transactions(account).pending()[0]
    data.transactions(account).remove(gone.activity_id)

    run_id, _ = await harness.sync()

    assert (await run_row(harness, run_id))["marked_missing"] == 1
    rows = dict(await stored(harness, "provider_transaction_id", "missing_since"))
    assert rows[str(gone.activity_id)] is not None
    assert sum(v is not None for v in rows.values()) == 1


async def test_a_window_at_the_row_cap_is_split_until_complete(make_harness: MakeHarness) -> None:
    # 7,000 transactions in 60 days: any window of more than ~25 days is capped.
    async with make_harness(accounts=1, transactions_per_account=7000, history_days=60) as h:
        run_id, outcome = await h.sync()

        assert outcome is Outcome.SUCCEEDED
        run = await run_row(h, run_id)
        assert run["inserted"] == 7000 == len(await stored(h))
        assert run["pages"] > 3 + 7000 // 3000  # at least one capped answer was split


async def test_rate_limits_are_waited_out(harness: Harness) -> None:
    harness.sandbox.faults.schedule(Fault("rate_limit"), 2, "trader")
    harness.policy = harness.policy.__class__(max_retries=3, base_seconds=0.001, max_seconds=0.01)

    run_id, outcome = await harness.sync()

    assert outcome is Outcome.SUCCEEDED
    assert harness.sandbox.stats.faults_injected == 2
    assert (await run_row(harness, run_id))["inserted"] == harness.expected_transactions()


async def test_server_errors_beyond_the_retries_fail_the_run_with_the_reason(
    harness: Harness,
) -> None:
    harness.sandbox.faults.schedule(Fault("server_error"), 10, "trader")

    run_id, outcome = await harness.sync()

    assert outcome is Outcome.FAILED
    run = await run_row(harness, run_id)
    assert run["status"] == "failed"
    assert "500" in run["error"]
    assert "gave up after 3 attempts" in run["error"]
    assert await stored(harness) == []


async def test_an_expired_token_is_refreshed_once(harness: Harness) -> None:
    await harness.tokens.login()
    harness.sandbox.oauth.expire_access_tokens()

    _, outcome = await harness.sync()

    assert outcome is Outcome.SUCCEEDED
    assert harness.tokens.refreshes == 1


async def test_a_token_rejected_after_refresh_needs_reauth(harness: Harness) -> None:
    harness.sandbox.faults.schedule(Fault("expired_token"), 2, "trader")

    run_id, outcome = await harness.sync()

    assert outcome is Outcome.FAILED
    assert (await run_row(harness, run_id))["error"].startswith("needs_reauth")
    status = await scalar(harness, "SELECT status FROM provider_connections WHERE id = :c")
    assert status == "needs_reauth"
    assert harness.tokens.refreshes == 1


async def test_a_failed_run_keeps_whole_batches_and_the_next_one_fills_the_gap(
    make_harness: MakeHarness,
) -> None:
    async with make_harness(accounts=1, transactions_per_account=5000, history_days=300) as h:
        batches = 0

        async def fail_after_two_batches(
            conn: AsyncConnection,
            account_id: uuid.UUID,
            window: tuple[datetime, datetime],
            batch: TransactionBatch,
            now: datetime,
            *,
            mark_missing: bool = True,
        ) -> WriteCounts:
            nonlocal batches
            batches += 1
            if batches == 2:
                h.sandbox.faults.schedule(Fault("server_error"), 10, "trader")
            return await write_transactions(
                conn, account_id, window, batch, now, mark_missing=mark_missing
            )

        _run_id, outcome = await h.sync(fail_after_two_batches)
        assert outcome is Outcome.FAILED
        partial = len(await stored(h))
        assert 0 < partial < 5000
        h.sandbox.faults.clear()

        retry_id, outcome = await h.sync()

        assert outcome is Outcome.SUCCEEDED
        ids = [r[0] for r in await stored(h)]
        assert len(ids) == len(set(ids)) == 5000
        assert (await run_row(h, retry_id))["inserted"] == 5000 - partial


async def test_two_requests_at_once_share_one_run(harness: Harness) -> None:
    async def request() -> tuple[uuid.UUID, bool]:
        async with harness.engine.begin() as conn:
            return await runs.request_run(conn, harness.connection.id, "manual")

    results = await asyncio.gather(*(request() for _ in range(5)))

    assert len({run_id for run_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1


async def test_the_resumed_run_of_issue_9_keeps_the_row_at_its_split_point(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run that reported `succeeded` with 11,999 of 12,000 transactions, replayed.

    Its second attempt began with a capped year; the split point came from the capped answer's
    newest row, and rounding put a later boundary one microsecond after that row. The request
    rounded the boundary down, so the first window's request left the row out and the next
    window's filter dropped it. The first attempt here commits each account's first window and
    dies; the second takes over five seconds later, as the killed worker's successor did.
    """
    first, second = (
        datetime(2026, 12, 2, 17, 26, 57, 101233, tzinfo=UTC),
        datetime(2026, 12, 2, 17, 27, 2, 577327, tzinfo=UTC),
    )
    size = {"seed": 42, "transactions_per_account": 6000, "history_days": 600}
    async with make_harness(**size, reference_date=date(2026, 12, 2)) as h:
        written: Counter[uuid.UUID] = Counter()

        async def die_after_each_first_window(
            conn: AsyncConnection,
            account_id: uuid.UUID,
            window: Any,
            batch: TransactionBatch,
            now: datetime,
            *,
            mark_missing: bool = True,
        ) -> WriteCounts:
            written[account_id] += 1
            if written[account_id] > 1:
                raise asyncio.CancelledError  # the worker is gone; the run stays `running`
            return await write_transactions(
                conn, account_id, window, batch, now, mark_missing=mark_missing
            )

        monkeypatch.setattr(sync_module, "utcnow", lambda: first)
        run_id = await h.request()
        with pytest.raises(asyncio.CancelledError):
            await execute_run(h.engine, run_id, h.connect, h.options, die_after_each_first_window)
        assert 0 < len(await stored(h)) < 12_000
        monkeypatch.setattr(sync_module, "utcnow", lambda: second)

        outcome = await execute_run(h.engine, run_id, h.connect, h.options)

        assert outcome is Outcome.SUCCEEDED
        run = await run_row(h, run_id)
        assert (run["status"], run["attempts"]) == ("succeeded", 2)
        ids = [r[0] for r in await stored(h)]
        assert len(ids) == len(set(ids)) == h.expected_transactions() == 12_000


async def test_an_attempt_that_loses_its_lock_writes_no_more_and_is_taken_over(
    make_harness: MakeHarness,
) -> None:
    """A database restart ends the lock's session; until then the attempt could go on writing
    beside the attempt that takes the run over. Its window transaction finds the lock gone and
    commits nothing; the run stays running and the next attempt finishes it."""
    async with make_harness(accounts=1, transactions_per_account=5000, history_days=300) as h:
        windows = 0

        async def end_the_lock_session_at_the_second_window(
            conn: AsyncConnection,
            account_id: uuid.UUID,
            window: Any,
            batch: TransactionBatch,
            now: datetime,
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
        outcome = await execute_run(
            h.engine, run_id, h.connect, h.options, end_the_lock_session_at_the_second_window
        )

        assert outcome is Outcome.LOST
        lost = await run_row(h, run_id)
        assert lost["status"] == "running"
        stored_ids = {r[0] for r in await stored(h)}
        assert len(stored_ids) == lost["inserted"] < 5000  # only the first window
        assert await execute_run(h.engine, run_id, h.connect, h.options) is Outcome.SUCCEEDED
        run = await run_row(h, run_id)
        assert (run["attempts"], run["verified"]) == (2, True)
        assert len(await stored(h)) == 5000
