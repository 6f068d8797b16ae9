"""The events outbox: what changed, for whom, written in the transaction of the change itself.

An event's place in the stream is ``(txid, seq)``: the 64-bit id of the transaction that wrote it,
then a global sequence. Readers only take events of transactions older than every transaction
still running (`dashtam.events.outbox.SETTLED`), so a transaction that commits late can never
slip in behind a reader's cursor. Rows are inserted and, after the retention period, deleted;
never updated (the runtime role may not).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Identity, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

# The writing transaction's id as a bigint (xid8 counts from 0 and never wraps).
CURRENT_TXID = "CAST(CAST(pg_current_xact_id() AS text) AS bigint)"


class Event(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_user_position", "user_id", "txid", "seq"),
        Index(
            "uq_events_dedupe_key",
            "dedupe_key",
            unique=True,
            postgresql_where=text("dedupe_key IS NOT NULL"),
        ),
    )

    txid: int = Field(
        sa_column=Column(
            BigInteger, primary_key=True, server_default=text(CURRENT_TXID), autoincrement=False
        )
    )
    seq: int = Field(sa_column=Column(BigInteger, Identity(always=True), primary_key=True))
    user_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    )
    type: str = Field(sa_column=Column(String(50), nullable=False))
    subject_type: str = Field(sa_column=Column(String(20), nullable=False))
    subject_id: uuid.UUID
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    # Set for events that must exist at most once (a reminder per login and lead time).
    dedupe_key: str | None = Field(default=None, sa_column=Column(String(200)))
    created_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()"))
    )
