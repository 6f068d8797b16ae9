"""The events outbox: an event is written in the transaction of the change it describes, and read
back in a stream order no late commit can disturb.

Writing: `emit` adds rows to the caller's transaction, so a change that rolls back leaves no
event and one that commits always has its event. Every other part of Dashtam that changes
something calls `emit`; nothing else writes events.

Reading: an event sits at ``(txid, seq)``, the id of the transaction that wrote it and a global
sequence. A transaction can commit after a later one, so ordering by time or by sequence alone
would let a reader's cursor pass an event that becomes visible later. Readers therefore only take
events of transactions older than the oldest one still running (`SETTLED`): that set can no
longer grow, so a cursor through it never skips or repeats an event. The public id, ``evt_`` and
26 Crockford base32 characters of the 128-bit position, sorts the way the stream runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import BigInteger, ColumnClause, Select, literal_column, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from dashtam.models.event import Event

EVENTS = Event.__table__  # type: ignore[attr-defined]
CHANNEL = "dashtam_events"  # the migration's trigger notifies it on every commit with events
# Transactions below this id have all ended: their events are final.
SETTLED: ColumnClause[int] = literal_column(
    "CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS text) AS bigint)", BigInteger
)
ID_PREFIX = "evt_"
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DIGITS = {char: value for value, char in enumerate(_ALPHABET)}
_ID_LENGTH = 26


class EventType(StrEnum):
    CONNECTION_CONNECTED = "connection.connected"
    CONNECTION_LOGIN_EXPIRING = "connection.login_expiring"
    CONNECTION_NEEDS_REAUTH = "connection.needs_reauth"
    CONNECTION_REAUTHORIZED = "connection.reauthorized"
    CONNECTION_DISCONNECTED = "connection.disconnected"
    SYNC_SUCCEEDED = "sync.succeeded"
    SYNC_FAILED = "sync.failed"
    TRANSACTIONS_CHANGED = "transactions.changed"
    POSITIONS_CHANGED = "positions.changed"
    BALANCES_CHANGED = "balances.changed"
    IMPORT_COMPLETED = "import.completed"
    WEBHOOK_TEST = "webhook.test"
    WEBHOOK_DISABLED = "webhook.disabled"


class Subject(StrEnum):
    """What an event is about. A connection is named by its provider instance's id, the one
    the API shows (``/api/v1/providers/{id}``)."""

    CONNECTION = "connection"
    ACCOUNT = "account"
    IMPORT = "import"
    WEBHOOK = "webhook"


@dataclass(frozen=True)
class NewEvent:
    """An event to write; `data` must never hold a secret (it is shown, sent and streamed)."""

    user_id: uuid.UUID
    type: EventType
    subject: Subject
    subject_id: uuid.UUID
    data: dict[str, Any] = field(default_factory=dict)
    dedupe_key: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "type": self.type.value,
            "subject_type": self.subject.value,
            "subject_id": self.subject_id,
            "data": to_jsonable_python(self.data),
            "dedupe_key": self.dedupe_key,
        }


async def emit(conn: AsyncConnection | AsyncSession, *events: NewEvent) -> int:
    """Add events to the caller's transaction; how many were new (an event whose dedupe key
    already exists is skipped)."""
    if not events:
        return 0
    statement = (
        insert(EVENTS)
        .values([event.row() for event in events])
        .on_conflict_do_nothing(
            index_elements=["dedupe_key"], index_where=col(Event.dedupe_key).is_not(None)
        )
    )
    result = await conn.execute(statement)
    return int(result.rowcount)  # type: ignore[attr-defined]


Position = tuple[int, int]


def event_id(position: Position) -> str:
    txid, seq = position
    number = (txid << 64) | seq
    chars = []
    for _ in range(_ID_LENGTH):
        number, digit = divmod(number, 32)
        chars.append(_ALPHABET[digit])
    return ID_PREFIX + "".join(reversed(chars))


def parse_event_id(text: str) -> Position:
    """The position an event id names; ValueError if it is not one."""
    body = text.removeprefix(ID_PREFIX).upper()
    if not text.startswith(ID_PREFIX) or len(body) != _ID_LENGTH:
        raise ValueError(f"not an event id: {text!r}")
    number = 0
    for char in body:
        if char not in _DIGITS:
            raise ValueError(f"not an event id: {text!r}")
        number = number * 32 + _DIGITS[char]
    if number >> 128:
        raise ValueError(f"not an event id: {text!r}")
    return number >> 64, number & (2**64 - 1)


@dataclass(frozen=True)
class StoredEvent:
    txid: int
    seq: int
    user_id: uuid.UUID
    type: str
    subject_type: str
    subject_id: uuid.UUID
    data: dict[str, Any]
    created_at: datetime

    @property
    def position(self) -> Position:
        return self.txid, self.seq

    @property
    def id(self) -> str:
        return event_id(self.position)


_COLUMNS = (
    col(Event.txid),
    col(Event.seq),
    col(Event.user_id),
    col(Event.type),
    col(Event.subject_type),
    col(Event.subject_id),
    col(Event.data),
    col(Event.created_at),
)


def settled_query(
    *,
    after: Position | None,
    user_id: uuid.UUID | None = None,
    types: Sequence[str] = (),
    limit: int,
) -> Select[Any]:
    """Final events after `after` in stream order (a user's, of some types, or everyone's)."""
    query = select(*_COLUMNS).where(col(Event.txid) < SETTLED)
    if user_id is not None:
        query = query.where(col(Event.user_id) == user_id)
    if after is not None:
        query = query.where(tuple_(col(Event.txid), col(Event.seq)) > tuple_(*after))
    if types:
        query = query.where(col(Event.type).in_(list(types)))
    return query.order_by(col(Event.txid), col(Event.seq)).limit(limit)


async def read_settled(
    conn: AsyncConnection | AsyncSession,
    *,
    after: Position | None,
    user_id: uuid.UUID | None = None,
    types: Sequence[str] = (),
    limit: int,
) -> list[StoredEvent]:
    query = settled_query(after=after, user_id=user_id, types=types, limit=limit)
    return [StoredEvent(*row) for row in await conn.execute(query)]
