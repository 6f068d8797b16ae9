"""Sync one connection: accounts, balances and positions, then transactions window by window.

Transactions are streamed: windows (`dashtam.accounts.windows`) are fetched oldest first, one
ahead of the writer, and each window is written and committed as a whole together with the
account's watermark (the window's end) and the run's counters. A run that dies keeps every
window it committed and nothing of the rest; the next attempt starts at or before the watermark,
so there is neither a gap nor a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import col

from dashtam.accounts import runs
from dashtam.accounts.reading import account_windows, each_account
from dashtam.accounts.schwab import NeedsReauth, Page, SyncError, TraderClient, TransactionBatch
from dashtam.accounts.store import (
    StoredAccount,
    WriteCounts,
    replace_positions,
    save_balances,
    upsert_accounts,
    write_transactions,
)
from dashtam.accounts.verify import verify_connection
from dashtam.accounts.windows import Fetched, Window, resume_start
from dashtam.core.config import Settings
from dashtam.core.database import database_lost
from dashtam.events.outbox import EventType, NewEvent, Subject, emit
from dashtam.models.account import Account, Transaction, TransactionStatus
from dashtam.models.base import utcnow

ANALYZE_AFTER_ROWS = 10_000
logger = logging.getLogger("dashtam.accounts")


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


class ConnectionSync:
    """One attempt at a run; everything it needs is handed in."""

    def __init__(
        self,
        engine: AsyncEngine,
        client: TraderClient,
        run_id: uuid.UUID,
        lock: runs.HeldLock,
        options: SyncOptions,
        writer: TransactionWriter = write_transactions,
    ) -> None:
        self.engine = engine
        self.client = client
        self.run_id = run_id
        self.lock = lock
        self.connection_id = lock.connection_id
        self.options = options
        self.writer = writer
        self.now = utcnow()
        self.user_id: uuid.UUID | None = None  # the connection's owner, read by `_accounts`

    async def run(self) -> None:
        accounts = await self._accounts()
        starts = {a.id: await self._start(a) for a in accounts}
        async with self.engine.begin() as conn:
            first = min(starts.values(), default=self.now)
            await runs.set_window(conn, self.run_id, first, self.now, len(accounts))
        inserted = sum(await each_account(accounts, lambda a: self._transactions(a, starts[a.id])))
        if inserted >= ANALYZE_AFTER_ROWS:  # fresh statistics keep the window queries on the
            async with self.engine.begin() as conn:  # time index (as after any bulk load)
                await conn.execute(text("SELECT analyze_transactions()"))  # migration 0007

    async def _accounts(self) -> list[StoredAccount]:
        snapshots = await self.client.accounts()
        async with self.engine.begin() as conn:
            self.user_id = await runs.owner_of(conn, self.connection_id)
            stored = await upsert_accounts(conn, self.connection_id, snapshots, self.now)
            ids = {a.provider_account_id: a.id for a in stored}
            changes = []
            for snapshot in snapshots:
                account_id = ids.get(snapshot.account.provider_account_id)
                if account_id is None:  # another of the user's connections syncs it
                    logger.info(
                        "sync run %s: account ...%s is synced by another connection; not copied",
                        self.run_id,
                        snapshot.account.number_last4,
                    )
                    continue
                if await save_balances(conn, account_id, snapshot, self.now):
                    balances = snapshot.balances
                    changes.append(
                        self._account_event(
                            EventType.BALANCES_CHANGED,
                            account_id,
                            as_of=self.now,
                            liquidation_value=balances.liquidation_value,
                            cash_balance=balances.cash_balance,
                        )
                    )
                if await replace_positions(
                    conn, account_id, snapshot.positions, snapshot.positions_hash, self.now
                ):
                    changes.append(
                        self._account_event(
                            EventType.POSITIONS_CHANGED,
                            account_id,
                            as_of=self.now,
                            positions=len(snapshot.positions),
                        )
                    )
            await emit(conn, *changes)
            await runs.add_progress(conn, self.run_id, pages=3)
        return stored

    def _account_event(self, kind: EventType, account_id: uuid.UUID, **data: object) -> NewEvent:
        """What this run changed in an account; equal data re-read changes nothing, so a run
        that re-reads announces only what really changed."""
        assert self.user_id is not None, "read with the accounts, before any account event"
        return NewEvent(
            self.user_id,
            kind,
            Subject.ACCOUNT,
            account_id,
            {"account_id": account_id, "run_id": self.run_id, **data},
        )

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
            if counts.inserted or counts.updated or counts.marked_missing:
                await emit(
                    conn,
                    self._account_event(
                        EventType.TRANSACTIONS_CHANGED,
                        account.id,
                        added=counts.inserted,
                        modified=counts.updated,
                        removed=counts.marked_missing,
                        window_start=window.start,
                        window_end=window.end,
                    ),
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
            await runs.ensure_locked(conn, self.lock)
        return counts.inserted


class Outcome(StrEnum):
    """What became of a job's attempt at a run (for logs and tests)."""

    DONE = "done"  # the run was already over
    BUSY = "busy"  # another process holds the connection's lock
    LOST = "lost"  # the database or the lock went away mid-attempt; the run is still running
    SUCCEEDED = "succeeded"
    FAILED = "failed"


async def verify_resumed(
    engine: AsyncEngine, client: TraderClient, run_id: uuid.UUID, connection_id: uuid.UUID
) -> tuple[bool, str]:
    """Re-read what the run covered and compare it with the store: (matched, what was found).

    Done after a run that had to resume, where a gap would hide if there were one.
    """
    async with engine.connect() as conn:
        since = await runs.window_start(conn, run_id)
    try:
        report = await verify_connection(engine, client, connection_id, since or utcnow())
    except SyncError as exc:
        return False, f"verification could not finish: {exc}"
    if not report.ok:
        logger.warning("sync run %s does not match the provider: %s", run_id, report.summary())
    return report.ok, report.summary()


async def execute_run(
    engine: AsyncEngine,
    run_id: uuid.UUID,
    connect: ClientFactory,
    options: SyncOptions,
    writer: TransactionWriter = write_transactions,
) -> Outcome:
    """Run (or take over) a sync run while holding its connection's lock.

    Sync errors end the run as failed with their message. A cancelled attempt (worker shutdown)
    leaves it running, for the retried job to take over; so does a lost database or lock
    (`Outcome.LOST`, which the job retries). A run that needed more than one attempt is
    verified against the provider before it is reported.
    """
    async with engine.connect() as lock:
        connection_id = await runs.connection_of(lock, run_id)
        if connection_id is None:
            return Outcome.DONE
        if not await runs.try_lock(lock, connection_id):
            await lock.commit()
            return Outcome.BUSY
        try:
            held = await runs.holder(lock, connection_id)
            await lock.commit()
            async with engine.begin() as conn:
                attempt = await runs.claim(conn, run_id)
            if attempt is None:
                return Outcome.DONE
            checked: tuple[bool, str] | tuple[None, None] = (None, None)
            try:
                async with connect(connection_id) as client:
                    await ConnectionSync(engine, client, run_id, held, options, writer).run()
                    if attempt > 1:
                        checked = await verify_resumed(engine, client, run_id, connection_id)
            except NeedsReauth as exc:
                async with engine.begin() as conn:
                    message = await runs.mark_needs_reauth(conn, connection_id, str(exc))
                    await runs.finish(conn, run_id, f"needs_reauth: {message}")
                return Outcome.FAILED
            except SyncError as exc:
                async with engine.begin() as conn:
                    await runs.finish(conn, run_id, str(exc))
                return Outcome.FAILED
            except Exception as exc:
                if isinstance(exc, runs.LockLost) or database_lost(exc):
                    logger.warning("sync run %s: attempt %d stopped: %s", run_id, attempt, exc)
                    return Outcome.LOST
                async with engine.begin() as conn:  # a bug: record it, let the job log it
                    await runs.finish(conn, run_id, f"internal error ({type(exc).__name__})")
                raise
            verified, verification = checked
            try:
                async with engine.begin() as conn:
                    await runs.ensure_locked(conn, held)
                    await runs.finish(conn, run_id, verified=verified, verification=verification)
            except Exception as exc:
                if isinstance(exc, runs.LockLost) or database_lost(exc):
                    return Outcome.LOST
                raise
            return Outcome.SUCCEEDED
        finally:
            await _unlock(lock, connection_id)


async def _unlock(lock: AsyncConnection, connection_id: uuid.UUID) -> None:
    """Release the connection's lock; a lost connection released it already."""
    try:
        await runs.unlock(lock, connection_id)
        await lock.commit()
    except Exception as exc:
        if not database_lost(exc):
            raise
