"""Synced brokerage data: accounts, balance snapshots, positions, transactions, sync runs.

Money is NUMERIC without a fixed scale, so a value keeps exactly the decimals the provider sent.
Bulk writes go through `dashtam.accounts.store` (one statement per batch); these classes are the
schema's description and what reads use.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from dashtam.models.base import timestamp, uuid_pk


class AccountType(StrEnum):
    CASH = "cash"
    MARGIN = "margin"


class AccountStatus(StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"  # the provider no longer lists it


class TransactionStatus(StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    INVALID = "invalid"


class SyncStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


ACTIVE_SYNC_STATUSES = (SyncStatus.QUEUED.value, SyncStatus.RUNNING.value)
# The predicate of the partial unique index, spelled as ON CONFLICT must repeat it.
ACTIVE_SYNC_PREDICATE = "status IN ('queued', 'running')"


def _fk(
    target: str, *, ondelete: str = "CASCADE", nullable: bool = False, index: bool = True
) -> Any:
    return Field(
        sa_column=Column(ForeignKey(target, ondelete=ondelete), nullable=nullable, index=index)
    )


def money(*, nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(Numeric, nullable=nullable))


def _count() -> Any:
    return Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))


def _server_uuid_pk() -> Any:
    """Bulk inserts leave the key to the database; the ORM may still set one itself."""
    return Field(
        default_factory=uuid.uuid4,
        sa_column=Column("id", Uuid(), primary_key=True, server_default=text("gen_random_uuid()")),
    )


class Account(SQLModel, table=True):
    """A brokerage account of a user, keyed by the provider's account hash.

    One row per (user, provider, provider account id), however many of the user's connections
    list it: ``connection_id`` is the one that syncs it (docs/accounts.md, "One account").
    """

    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint(
            "user_id",
            "provider_key",
            "provider_account_id",
            name="uq_accounts_user_provider_account",
        ),
    )

    id: uuid.UUID = uuid_pk()
    connection_id: uuid.UUID = _fk("provider_connections.id")
    user_id: uuid.UUID = _fk("users.id", index=False)
    provider_key: str = Field(max_length=50)
    # Schwab's hashValue: stable, and never the account number itself.
    provider_account_id: str = Field(max_length=128)
    number_last4: str = Field(max_length=4)
    type: str = Field(max_length=20)
    name: str = Field(max_length=100)
    currency: str = Field(default="USD", max_length=3)
    status: str = Field(default=AccountStatus.ACTIVE.value, max_length=20)
    last_synced_at: datetime | None = timestamp()
    # Everything before this instant has been fetched completely at least once.
    transactions_synced_to: datetime | None = timestamp()
    positions_hash: str | None = Field(default=None, max_length=64)
    created_at: datetime | None = timestamp(nullable=False, server_now=True)
    updated_at: datetime | None = timestamp(nullable=False, server_now=True, on_update=True)


class BalanceSnapshot(SQLModel, table=True):
    """Balances as of one sync; a new row only when something changed."""

    __tablename__ = "balance_snapshots"
    __table_args__ = (Index("ix_balance_snapshots_account_as_of", "account_id", "as_of"),)

    id: uuid.UUID = uuid_pk()
    account_id: uuid.UUID = _fk("accounts.id", index=False)
    as_of: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    cash_balance: Decimal | None = money()
    buying_power: Decimal | None = money()
    available_funds: Decimal | None = money()
    liquidation_value: Decimal | None = money()
    long_market_value: Decimal | None = money()
    short_market_value: Decimal | None = money()
    maintenance_requirement: Decimal | None = money()
    content_hash: str = Field(max_length=64)
    # The provider's full balance object, numbers as strings.
    raw: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))


class Position(SQLModel, table=True):
    """A holding as of the latest sync; an account's set is replaced in one transaction."""

    __tablename__ = "positions"

    id: uuid.UUID = _server_uuid_pk()
    account_id: uuid.UUID = _fk("accounts.id")
    symbol: str = Field(max_length=64)
    asset_type: str = Field(max_length=40)
    cusip: str | None = Field(default=None, max_length=12)
    description: str | None = Field(default=None, max_length=255)
    long_quantity: Decimal = money(nullable=False)
    short_quantity: Decimal = money(nullable=False)
    average_price: Decimal | None = money()
    market_value: Decimal | None = money()
    day_profit_loss: Decimal | None = money()
    day_profit_loss_percent: Decimal | None = money()
    as_of: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class Transaction(SQLModel, table=True):
    """One provider activity; unique per (account, provider id), never deleted by a sync."""

    __tablename__ = "transactions"
    __table_args__ = (
        UniqueConstraint(
            "account_id", "provider_transaction_id", name="uq_transactions_provider_id"
        ),
        Index("ix_transactions_account_time", "account_id", "time", "id"),
        Index("ix_transactions_account_symbol", "account_id", "symbol"),
    )

    id: uuid.UUID = _server_uuid_pk()
    account_id: uuid.UUID = _fk("accounts.id", index=False)
    provider_transaction_id: str = Field(max_length=64)
    time: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    trade_date: datetime | None = timestamp()
    settlement_date: datetime | None = timestamp()
    type: str = Field(max_length=40)
    status: str = Field(max_length=10)
    description: str = Field(default="", sa_column=Column(Text, nullable=False))
    # The first non-cash instrument's symbol, for filtering.
    symbol: str | None = Field(default=None, max_length=64)
    net_amount: Decimal = money(nullable=False)
    items: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False)
    )
    content_hash: str = Field(max_length=32)
    # Set when a sync covering this time no longer received it; cleared if it comes back.
    missing_since: datetime | None = timestamp()
    created_at: datetime | None = timestamp(nullable=False, server_now=True)
    updated_at: datetime | None = timestamp(nullable=False, server_now=True)


class SyncRun(SQLModel, table=True):
    """One sync of a connection; at most one queued or running per connection (partial index)."""

    __tablename__ = "sync_runs"
    __table_args__ = (
        Index(
            "uq_sync_runs_one_active",
            "connection_id",
            unique=True,
            postgresql_where=text(ACTIVE_SYNC_PREDICATE),
        ),
        Index("ix_sync_runs_connection_created", "connection_id", "created_at"),
    )

    id: uuid.UUID = uuid_pk()
    connection_id: uuid.UUID = _fk("provider_connections.id", index=False)
    trigger: str = Field(default="manual", max_length=20)
    status: str = Field(default=SyncStatus.QUEUED.value, max_length=20)
    attempts: int = _count()
    started_at: datetime | None = timestamp()
    finished_at: datetime | None = timestamp()
    window_start: datetime | None = timestamp()
    window_end: datetime | None = timestamp()
    accounts_total: int = _count()
    accounts_done: int = _count()
    pages: int = _count()
    rows_fetched: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    inserted: int = _count()
    updated: int = _count()
    unchanged: int = _count()
    marked_missing: int = _count()
    error: str | None = Field(default=None, max_length=500)
    # Set after a run that had to resume: re-read from the provider, did the store match?
    verified: bool | None = None
    verification: str | None = Field(default=None, max_length=500)
    created_at: datetime | None = timestamp(nullable=False, server_now=True)
