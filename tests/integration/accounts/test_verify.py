"""Verification: after a sync the store matches the sandbox; every kind of difference, made on
either side, is found and named; a run that had to resume is verified by the worker code."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from tests.integration.accounts.conftest import Harness
from tests.test_config import TestSettings
from typer.testing import CliRunner

from dashtam.accounts.console import verify_command
from dashtam.accounts.schwab import TransactionBatch
from dashtam.accounts.store import WriteCounts, write_transactions
from dashtam.accounts.sync import Outcome, execute_run
from dashtam.accounts.verify import Report, verify_connection
from dashtam.cli import app
from dashtam.models.base import utcnow

MakeHarness = Callable[..., AbstractAsyncContextManager[Harness]]
EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


async def verify(h: Harness) -> Report:
    async with h.connect(h.connection.id) as client:
        since = utcnow() - h.options.history
        return await verify_connection(h.engine, client, h.connection.id, since)


async def execute(h: Harness, sql: str, **params: Any) -> None:
    async with h.engine.begin() as conn:
        await conn.execute(text(sql), {"c": h.connection.id} | params)


def by_label(report: Report) -> dict[str, Any]:
    return {a.label: a for a in report.accounts}


async def test_after_a_sync_the_store_matches_the_provider(harness: Harness) -> None:
    await harness.sync()

    report = await verify(harness)

    assert report.ok, report.summary()
    assert len(report.accounts) == 2
    assert sum(a.transactions[0] for a in report.accounts) == harness.expected_transactions()
    assert all(a.transactions[0] == a.transactions[1] for a in report.accounts)
    assert all(a.balances_match and a.positions_match for a in report.accounts)
    assert report.summary().startswith("matches the provider: 2 account(s)")


async def test_every_difference_in_the_store_is_found_and_named(harness: Harness) -> None:
    await harness.sync()
    data = harness.sandbox.data
    first, second = (data.transactions(a).window(*EVER) for a in data.accounts)
    deleted, altered = str(first[10].activity_id), str(first[20].activity_id)
    await execute(harness, "DELETE FROM transactions WHERE provider_transaction_id = :i", i=deleted)
    await execute(
        harness,
        "UPDATE transactions SET content_hash = 'x' WHERE provider_transaction_id = :i",
        i=altered,
    )
    await execute(
        harness,
        "INSERT INTO transactions (account_id, provider_transaction_id, time, type, status, "
        "description, net_amount, items, content_hash) SELECT t.account_id, 'phantom', t.time, "
        "t.type, t.status, '', 0, '[]', 'y' FROM transactions t "
        "WHERE t.provider_transaction_id = :i",
        i=str(second[5].activity_id),
    )
    await execute(harness, "UPDATE accounts SET positions_hash = 'z' WHERE connection_id = :c")

    report = await verify(harness)

    assert not report.ok
    windows = [w for a in report.accounts for w in a.windows if w.differences]
    assert sorted((w.missing, w.extra, w.changed) for w in windows) == sorted(
        [((deleted,), (), (altered,)), ((), ("phantom",), ())]
    )
    assert [a.positions_match for a in report.accounts] == [False, False]
    assert report.differences == 5
    summary = report.summary()
    assert "1 transaction(s) missing" in summary
    assert "1 transaction(s) extra" in summary
    assert "positions differ" in summary


async def test_changes_at_the_provider_since_the_sync_are_found(harness: Harness) -> None:
    await harness.sync()
    data = harness.sandbox.data
    book = data.transactions(data.accounts[0])
    posted, removed = book.pending()
    book.post(posted.activity_id)
    book.remove(removed.activity_id)

    report = await verify(harness)

    windows = [w for a in report.accounts for w in a.windows]
    assert [i for w in windows for i in w.changed] == [str(posted.activity_id)]
    assert [i for w in windows for i in w.extra] == [str(removed.activity_id)]
    assert [i for w in windows for i in w.missing] == []


async def test_an_account_gone_from_either_side_is_a_difference(harness: Harness) -> None:
    await harness.sync()
    await execute(
        harness,
        "UPDATE accounts SET provider_account_id = 'gone' WHERE id = "
        "(SELECT id FROM accounts WHERE connection_id = :c ORDER BY id LIMIT 1)",
    )

    problems = sorted(filter(None, (a.problem for a in (await verify(harness)).accounts)))

    assert problems == [
        "listed by the provider, not stored",
        "stored as active, no longer listed by the provider",
    ]


async def test_a_resumed_run_is_verified_and_the_result_recorded(
    make_harness: MakeHarness,
) -> None:
    async with make_harness(accounts=1, transactions_per_account=5000, history_days=300) as h:
        windows = 0

        async def die_at_the_second_window(
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
                raise asyncio.CancelledError
            return await write_transactions(
                conn, account_id, window, batch, now, mark_missing=mark_missing
            )

        run_id = await h.request()
        with pytest.raises(asyncio.CancelledError):
            await execute_run(h.engine, run_id, h.connect, h.options, die_at_the_second_window)

        assert await execute_run(h.engine, run_id, h.connect, h.options) is Outcome.SUCCEEDED

        async with h.engine.connect() as conn:
            run = (
                await conn.execute(text("SELECT * FROM sync_runs WHERE id = :id"), {"id": run_id})
            ).one()
        assert (run.attempts, run.verified) == (2, True)
        assert run.verification.startswith("matches the provider: 1 account(s)")
        assert "5,000 transactions" in run.verification


async def test_a_resumed_run_that_lost_a_row_is_recorded_as_not_verified(
    make_harness: MakeHarness,
) -> None:
    """A writer that drops a row stands for any bug the windows could still have."""
    async with make_harness(accounts=1, transactions_per_account=3000, history_days=300) as h:
        calls, dropped = 0, False

        async def lossy(
            conn: AsyncConnection,
            account_id: uuid.UUID,
            window: Any,
            batch: TransactionBatch,
            now: datetime,
            *,
            mark_missing: bool = True,
        ) -> WriteCounts:
            nonlocal calls, dropped
            calls += 1
            if calls == 1:
                raise asyncio.CancelledError
            if batch.provider_ids and not dropped:
                for column in batch.__slots__:
                    del getattr(batch, column)[0]
                dropped = True
            return await write_transactions(
                conn, account_id, window, batch, now, mark_missing=mark_missing
            )

        run_id = await h.request()
        with pytest.raises(asyncio.CancelledError):
            await execute_run(h.engine, run_id, h.connect, h.options, lossy)

        assert await execute_run(h.engine, run_id, h.connect, h.options, lossy) is (
            Outcome.SUCCEEDED
        )

        async with h.engine.connect() as conn:
            run = (
                await conn.execute(text("SELECT * FROM sync_runs WHERE id = :id"), {"id": run_id})
            ).one()
        assert (run.status, run.verified) == ("succeeded", False)
        assert "1 transaction(s) missing" in run.verification


async def test_the_command_prints_the_comparison_and_says_whether_it_matched(
    harness: Harness, settings: TestSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await harness.sync()
    monkeypatch.setattr(
        "dashtam.accounts.console.TraderClients.connect",
        lambda _self, connection_id: harness.connect(connection_id),
    )
    provider_id = harness.connection.provider_id
    console = Console(record=True, width=200)

    assert await verify_command(settings, provider_id, False, console)
    matched = console.export_text()
    assert "match" in matched
    assert "matches the provider" in matched

    await execute(
        harness,
        "DELETE FROM transactions WHERE id = (SELECT t.id FROM transactions t "
        "JOIN accounts a ON a.id = t.account_id WHERE a.connection_id = :c LIMIT 1)",
    )
    console = Console(record=True, width=200)
    assert not await verify_command(settings, provider_id, False, console)
    differed = console.export_text()
    assert "windows that differ" in differed
    assert "1 difference(s)" in differed


def test_the_command_refuses_a_provider_id_that_is_not_one() -> None:
    result = CliRunner().invoke(app, ["verify", "--provider", "my-schwab"])

    assert result.exit_code == 2
    assert "'my-schwab' is not a provider id (a UUID)" in result.output
