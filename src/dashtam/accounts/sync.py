"""Sync one connection: accounts, balances and positions, then transactions window by window.

Transactions are streamed: windows (`dashtam.accounts.windows`) are fetched oldest first, one
ahead of the writer, and each window is written and committed as a whole together with the
account's watermark (the window's end) and the run's counters. A run that dies keeps every
window it committed and nothing of the rest; the next attempt starts at or before the watermark,
so there is neither a gap nor a duplicate.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import col

from dashtam.accounts import runs
from dashtam.accounts.schwab import (
    TRANSACTION_LIMITS,
    NeedsReauth,
    Page,
    ProviderDataError,
    SyncError,
    TraderClient,
    TransactionBatch,
)
from dashtam.accounts.store import (
    StoredAccount,
    WriteCounts,
    replace_positions,
    save_balances,
    upsert_accounts,
    write_transactions,
)
from dashtam.accounts.windows import Fetched, Window, WindowError, plan_windows, resume_start
from dashtam.core.config import Settings
from dashtam.models.account import Account, Transaction, TransactionStatus
from dashtam.models.base import utcnow

ACCOUNTS_IN_PARALLEL = 2
ANALYZE_AFTER_ROWS = 10_000


class TransactionWriter(Protocol):
    async def __call__(
        self,
        conn: AsyncConnection,
        account_id: uuid.UUID,
        window: Window,
        batch: TransactionBatch,
        now: datetime,
        *,
        mark_missing: bool = True,
    ) -> WriteCounts: ...


ClientFactory = Callable[[uuid.UUID], AbstractAsyncContextManager[TraderClient]]


@dataclass(frozen=True)
class SyncOptions:
    history: timedelta = timedelta(days=730)
    overlap: timedelta = timedelta(days=7)

    @classmethod
    def from_settings(cls, settings: Settings) -> SyncOptions:
        return cls(
            timedelta(days=settings.SYNC_HISTORY_DAYS), timedelta(days=settings.SYNC_OVERLAP_DAYS)
        )


async def account_windows(
    client: TraderClient, account: StoredAccount, start: datetime, end: datetime
) -> AsyncIterator[Fetched[Page]]:
    """The account's complete windows covering ``[start, end)``; a failure names the account
    and the window."""

    async def fetch(window: Window) -> Page:
        try:
            return await client.transactions(account.provider_account_id, window)
        except ProviderDataError as exc:
            raise ProviderDataError(f"{account.label}, window {window}: {exc}") from None

    try:
        async for fetched in plan_windows(fetch, start, end, TRANSACTION_LIMITS):
            yield fetched
    except WindowError as exc:
        raise SyncError(f"{account.label}: {exc}") from None


class ConnectionSync:
    """One attempt at a run; everything it needs is handed in."""

    def __init__(
        self,
        engine: AsyncEngine,
        client: TraderClient,
        run_id: uuid.UUID,
        connection_id: uuid.UUID,
        options: SyncOptions,
        writer: TransactionWriter = write_transactions,
    ) -> None:
        self.engine = engine
        self.client = client
        self.run_id = run_id
        self.connection_id = connection_id
        self.options = options
        self.writer = writer
        self.now = utcnow()

    async def run(self) -> None:
        accounts = await self._accounts()
        starts = {a.id: await self._start(a) for a in accounts}
        async with self.engine.begin() as conn:
            first = min(starts.values(), default=self.now)
            await runs.set_window(conn, self.run_id, first, self.now, len(accounts))
        # Two accounts at a time: one's rows are parsed by PostgreSQL while the other's fetch.
        # A task group, so one account's failure stops the other before the run is finished.
        lanes = asyncio.Semaphore(ACCOUNTS_IN_PARALLEL)

        async def one(account: StoredAccount) -> int:
            async with lanes:
                return await self._transactions(account, starts[account.id])

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(a)) for a in accounts]
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        inserted = sum(task.result() for task in tasks)
        if inserted >= ANALYZE_AFTER_ROWS:  # fresh statistics keep the window queries on the
            async with self.engine.begin() as conn:  # time index (as after any bulk load)
                await conn.execute(text("ANALYZE transactions"))

    async def _accounts(self) -> list[StoredAccount]:
        snapshots = await self.client.accounts()
        async with self.engine.begin() as conn:
            stored = await upsert_accounts(conn, self.connection_id, snapshots, self.now)
            ids = {a.provider_account_id: a.id for a in stored}
            for snapshot in snapshots:
                account_id = ids[snapshot.account.provider_account_id]
                await save_balances(conn, account_id, snapshot, self.now)
                await replace_positions(
                    conn, account_id, snapshot.positions, snapshot.positions_hash, self.now
                )
            await runs.add_progress(conn, self.run_id, pages=3)
        return stored

    async def _start(self, account: StoredAccount) -> datetime:
        pending = None
        if account.transactions_synced_to is not None:
            async with self.engine.connect() as conn:
                pending = await conn.scalar(
                    select(func.min(col(Transaction.time))).where(
                        col(Transaction.account_id) == account.id,
                        col(Transaction.status) == TransactionStatus.PENDING.value,
                        col(Transaction.missing_since).is_(None),
                    )
                )
        return resume_start(
            self.now - self.options.history,
            account.transactions_synced_to,
            self.options.overlap,
            pending,
        )

    async def _transactions(self, account: StoredAccount, start: datetime) -> int:
        """Fetch the next window while the current one is being written (a queue of one);
        the number of rows inserted."""
        async with self.engine.connect() as conn:
            stored_until = await conn.scalar(
                select(func.max(col(Transaction.time))).where(
                    col(Transaction.account_id) == account.id
                )
            )
        queue: asyncio.Queue[Fetched[Page] | BaseException | None] = asyncio.Queue(maxsize=1)

        async def fetch() -> None:
            try:
                async for fetched in account_windows(self.client, account, start, self.now):
                    await queue.put(fetched)
                await queue.put(None)
            except Exception as exc:  # handed to the writer, which raises it
                await queue.put(exc)

        fetcher = asyncio.create_task(fetch())
        inserted = 0
        try:
            while (fetched := await queue.get()) is not None:
                if isinstance(fetched, BaseException):
                    raise fetched
                # Past the newest stored row there is nothing that could have gone missing.
                unseen = stored_until is None or fetched.window.start > stored_until
                inserted += await self._write(account, fetched, mark_missing=not unseen)
        finally:
            fetcher.cancel()
        async with self.engine.begin() as conn:
            await runs.add_progress(conn, self.run_id, accounts=1)
        return inserted

    async def _write(
        self, account: StoredAccount, fetched: Fetched[Page], *, mark_missing: bool
    ) -> int:
        window, batch = fetched.window, fetched.answer.batch
        async with self.engine.begin() as conn:
            counts = await self.writer(
                conn, account.id, window, batch, self.now, mark_missing=mark_missing
            )
            await conn.execute(
                update(Account)
                .where(col(Account.id) == account.id)
                .values(transactions_synced_to=window.end)
            )
            await runs.add_progress(
                conn,
                self.run_id,
                pages=fetched.calls,
                rows=len(batch.provider_ids),
                inserted=counts.inserted,
                updated=counts.updated,
                unchanged=counts.unchanged,
                missing=counts.marked_missing,
            )
        return counts.inserted


class Outcome(StrEnum):
    """What became of a job's attempt at a run (for logs and tests)."""

    DONE = "done"  # the run was already over
    BUSY = "busy"  # another process holds the connection's lock
    SUCCEEDED = "succeeded"
    FAILED = "failed"


async def execute_run(
    engine: AsyncEngine,
    run_id: uuid.UUID,
    connect: ClientFactory,
    options: SyncOptions,
    writer: TransactionWriter = write_transactions,
) -> Outcome:
    """Run (or take over) a sync run while holding its connection's lock.

    Sync errors end the run as failed with their message; a cancelled attempt (worker shutdown)
    leaves it running, for the retried job to take over.
    """
    async with engine.connect() as lock:
        connection_id = await runs.connection_of(lock, run_id)
        if connection_id is None:
            return Outcome.DONE
        if not await runs.try_lock(lock, connection_id):
            await lock.commit()
            return Outcome.BUSY
        try:
            await lock.commit()
            async with engine.begin() as conn:
                if await runs.claim(conn, run_id) is None:
                    return Outcome.DONE
            try:
                async with connect(connection_id) as client:
                    await ConnectionSync(
                        engine, client, run_id, connection_id, options, writer
                    ).run()
            except NeedsReauth as exc:
                async with engine.begin() as conn:
                    message = await runs.mark_needs_reauth(conn, connection_id, str(exc))
                    await runs.finish(conn, run_id, f"needs_reauth: {message}")
                return Outcome.FAILED
            except SyncError as exc:
                async with engine.begin() as conn:
                    await runs.finish(conn, run_id, str(exc))
                return Outcome.FAILED
            except Exception as exc:  # a bug or a lost database: record it, let the job log it
                async with engine.begin() as conn:
                    await runs.finish(conn, run_id, f"internal error ({type(exc).__name__})")
                raise
            async with engine.begin() as conn:
                await runs.finish(conn, run_id)
            return Outcome.SUCCEEDED
        finally:
            await runs.unlock(lock, connection_id)
            await lock.commit()
