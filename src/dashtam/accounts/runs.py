"""Sync run bookkeeping: one active run per connection, claimed under a per-connection lock.

The partial unique index ``uq_sync_runs_one_active`` makes "at most one queued or running run per
connection" a database fact, so two requests at once get the same run. The PostgreSQL advisory lock
says whether a process is really working on it: it dies with the process's connection, so a
``running`` run whose lock is free was abandoned and may be taken over.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from dashtam.events.outbox import EventType, emit
from dashtam.models.account import (
    ACTIVE_SYNC_PREDICATE,
    ACTIVE_SYNC_STATUSES,
    SyncRun,
    SyncStatus,
)
from dashtam.models.base import utcnow
from dashtam.models.provider import ConnectionStatus, Provider, ProviderConnection
from dashtam.providers.errors import reauthorize_hint
from dashtam.providers.events import connection_event

_active = col(SyncRun.status).in_(ACTIVE_SYNC_STATUSES)
# What a connection event says about its provider instance (see providers.events).
_PROVIDER_FIELDS = ("id", "user_id", "provider_key", "alias")
_PROVIDER_COLUMNS = tuple(col(getattr(Provider, name)) for name in _PROVIDER_FIELDS)


def lock_key(connection_id: uuid.UUID) -> int:
    """The advisory lock id of a connection: its UUID's first 8 bytes as a signed bigint."""
    return int.from_bytes(connection_id.bytes[:8], "big", signed=True)


async def try_lock(conn: AsyncConnection, connection_id: uuid.UUID) -> bool:
    """Session-level, so it outlives transactions on ``conn`` and ends with the connection."""
    locked = await conn.scalar(select(func.pg_try_advisory_lock(lock_key(connection_id))))
    return bool(locked)


async def unlock(conn: AsyncConnection, connection_id: uuid.UUID) -> None:
    await conn.execute(select(func.pg_advisory_unlock(lock_key(connection_id))))


class LockLost(Exception):
    """The attempt no longer holds its connection's lock (its database connection died)."""


@dataclass(frozen=True, slots=True)
class HeldLock:
    """A connection's lock as held by one attempt: the session that took it."""

    connection_id: uuid.UUID
    backend_pid: int


async def holder(conn: AsyncConnection, connection_id: uuid.UUID) -> HeldLock:
    """Name the lock just taken on `conn`, so other connections can check it is still held."""
    pid = (await conn.execute(select(func.pg_backend_pid()))).scalar_one()
    return HeldLock(connection_id, pid)


_STILL_LOCKED = text(
    """
    SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                   AND pid = :pid AND classid = CAST(:high AS oid)
                   AND objid = CAST(:low AS oid) AND objsubid = 1)
    """
)


async def ensure_locked(conn: AsyncConnection, lock: HeldLock) -> None:
    """Raise LockLost unless `lock` is still held: called inside a transaction about to
    commit, so an attempt whose lock died with its connection (a database restart) writes
    nothing more while another attempt may already have taken the run over."""
    key = lock_key(lock.connection_id) & 0xFFFF_FFFF_FFFF_FFFF
    held = await conn.scalar(
        _STILL_LOCKED, {"pid": lock.backend_pid, "high": key >> 32, "low": key & 0xFFFF_FFFF}
    )
    if not held:
        raise LockLost(f"the lock of connection {lock.connection_id} is no longer held")


async def request_run(
    conn: AsyncConnection, connection_id: uuid.UUID, trigger: str
) -> tuple[uuid.UUID, bool]:
    """The connection's active run, creating a queued one if there is none; (id, created)."""
    while True:
        created = await conn.scalar(
            insert(SyncRun)
            .values(id=uuid.uuid4(), connection_id=connection_id, trigger=trigger)
            .on_conflict_do_nothing(
                index_elements=["connection_id"], index_where=text(ACTIVE_SYNC_PREDICATE)
            )
            .returning(col(SyncRun.id))
        )
        if created is not None:
            return created, True
        existing = await conn.scalar(
            select(col(SyncRun.id)).where(col(SyncRun.connection_id) == connection_id, _active)
        )
        if existing is not None:  # else it finished in between: try again
            return existing, False


async def claim(conn: AsyncConnection, run_id: uuid.UUID) -> int | None:
    """Mark the run running (again, on a takeover); the attempt's number, or None if it is over."""
    return await conn.scalar(
        update(SyncRun)
        .where(col(SyncRun.id) == run_id, _active)
        .values(
            status=SyncStatus.RUNNING.value,
            attempts=SyncRun.attempts + 1,
            started_at=func.coalesce(SyncRun.started_at, func.now()),
            error=None,
        )
        .returning(col(SyncRun.attempts))
    )


async def owner_of(conn: AsyncConnection, connection_id: uuid.UUID) -> uuid.UUID:
    """The user a connection belongs to (whom its events are for)."""
    query = (
        select(col(Provider.user_id))
        .join(ProviderConnection, col(ProviderConnection.provider_id) == col(Provider.id))
        .where(col(ProviderConnection.id) == connection_id)
    )
    return (await conn.execute(query)).scalar_one()


async def window_start(conn: AsyncConnection, run_id: uuid.UUID) -> datetime | None:
    """Where the run's earliest attempt started reading transactions."""
    return await conn.scalar(select(col(SyncRun.window_start)).where(col(SyncRun.id) == run_id))


async def connection_of(conn: AsyncConnection, run_id: uuid.UUID) -> uuid.UUID | None:
    """The connection of a run that is still queued or running."""
    return await conn.scalar(
        select(col(SyncRun.connection_id)).where(col(SyncRun.id) == run_id, _active)
    )


async def set_window(
    conn: AsyncConnection, run_id: uuid.UUID, start: datetime, end: datetime, accounts: int
) -> None:
    """An attempt's range and account count. A takeover keeps the earliest start, so the run's
    window stays what the run as a whole covered; account progress restarts with the attempt."""
    await conn.execute(
        update(SyncRun)
        .where(col(SyncRun.id) == run_id)
        .values(
            window_start=func.least(SyncRun.window_start, start),
            window_end=end,
            accounts_total=accounts,
            accounts_done=0,
        )
    )


_ADD_PROGRESS = text(
    """
    UPDATE sync_runs SET pages = pages + :pages, rows_fetched = rows_fetched + :rows,
        inserted = inserted + :inserted, updated = updated + :updated,
        unchanged = unchanged + :unchanged, marked_missing = marked_missing + :missing,
        accounts_done = accounts_done + :accounts
    WHERE id = :run_id
    """
)


async def add_progress(
    conn: AsyncConnection,
    run_id: uuid.UUID,
    *,
    pages: int = 0,
    rows: int = 0,
    inserted: int = 0,
    updated: int = 0,
    unchanged: int = 0,
    missing: int = 0,
    accounts: int = 0,
) -> None:
    """Counters move in the same transaction as the batch they describe."""
    await conn.execute(
        _ADD_PROGRESS,
        {
            "run_id": run_id,
            "pages": pages,
            "rows": rows,
            "inserted": inserted,
            "updated": updated,
            "unchanged": unchanged,
            "missing": missing,
            "accounts": accounts,
        },
    )


_FINISH = text(
    """
    UPDATE sync_runs r SET status = :status, finished_at = :now, error = :error,
        verified = :verified, verification = :verification
    FROM provider_connections c JOIN providers p ON p.id = c.provider_id
    WHERE r.id = :run_id AND c.id = r.connection_id AND r.status IN ('queued', 'running')
    RETURNING p.id, p.user_id, p.provider_key, p.alias, r.trigger, r.attempts, r.rows_fetched,
        r.inserted, r.updated, r.unchanged, r.marked_missing
    """
)


async def finish(
    conn: AsyncConnection,
    run_id: uuid.UUID,
    error: str | None = None,
    *,
    verified: bool | None = None,
    verification: str | None = None,
) -> None:
    """End the run, announcing it (sync.succeeded / sync.failed) in the same transaction; a run
    that is already over stays as it was."""
    status = SyncStatus.FAILED if error else SyncStatus.SUCCEEDED
    row = (
        await conn.execute(
            _FINISH,
            {
                "run_id": run_id,
                "status": status.value,
                "now": utcnow(),
                "error": error and error[:500],
                "verified": verified,
                "verification": verification and verification[:500],
            },
        )
    ).one_or_none()
    if row is None:
        return
    provider = Provider(
        id=row.id, user_id=row.user_id, provider_key=row.provider_key, alias=row.alias
    )
    kind = EventType.SYNC_FAILED if error else EventType.SYNC_SUCCEEDED
    counts = {name: getattr(row, name) for name in _COUNTERS}
    details = {"error": error[:500]} if error else {"verified": verified}
    await emit(conn, connection_event(provider, kind, run_id=run_id, **counts, **details))


_COUNTERS = (
    "trigger",
    "attempts",
    "rows_fetched",
    "inserted",
    "updated",
    "unchanged",
    "marked_missing",
)


async def error_of(conn: AsyncConnection, run_id: uuid.UUID) -> str | None:
    error: str | None = await conn.scalar(
        select(col(SyncRun.error)).where(col(SyncRun.id) == run_id)
    )
    return error


async def mark_needs_reauth(conn: AsyncConnection, connection_id: uuid.UUID, reason: str) -> str:
    """Flag the connection; returns the message stored on it, which says how to re-authorize.
    A connection that was active until now announces it (connection.needs_reauth)."""
    row = (
        await conn.execute(
            select(col(ProviderConnection.status), *_PROVIDER_COLUMNS)
            .join(Provider, col(Provider.id) == col(ProviderConnection.provider_id))
            .where(col(ProviderConnection.id) == connection_id)
            .with_for_update(of=ProviderConnection)
        )
    ).one()
    was, provider = row[0], Provider(**dict(zip(_PROVIDER_FIELDS, row[1:], strict=True)))
    message = f"{reason.rstrip('.')}. {reauthorize_hint(provider.id)}"
    await conn.execute(
        update(ProviderConnection)
        .where(col(ProviderConnection.id) == connection_id)
        .values(
            status=ConnectionStatus.NEEDS_REAUTH.value,
            last_error=message[:500],
            last_error_at=utcnow(),
        )
    )
    if was == ConnectionStatus.ACTIVE:
        event = connection_event(provider, EventType.CONNECTION_NEEDS_REAUTH, reason="sync_refused")
        await emit(conn, event)
    return message


async def abandoned_runs(conn: AsyncConnection) -> list[tuple[uuid.UUID, int]]:
    """(id, attempts) of active runs whose lock no process holds: their worker died, or their
    job is still waiting in the queue. Probing takes each free lock for an instant; a job that
    collides with the probe retries.
    """
    query = select(col(SyncRun.id), col(SyncRun.connection_id), col(SyncRun.attempts)).where(
        _active
    )
    abandoned = []
    for run_id, connection_id, attempts in (await conn.execute(query)).all():
        if await try_lock(conn, connection_id):
            await unlock(conn, connection_id)
            abandoned.append((run_id, attempts))
    return abandoned
