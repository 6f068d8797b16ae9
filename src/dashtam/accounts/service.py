"""Reading synced data and requesting syncs, always scoped to one user.

Every query joins through provider -> user, so another user's ids are simply not found (404).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from dashtam.accounts import runs
from dashtam.accounts.schemas import (
    AccountOut,
    BalancesOut,
    PortfolioLine,
    PortfolioOut,
    PositionOut,
    SyncRunOut,
    TransactionOut,
    TransactionPage,
)
from dashtam.auth.principal import Principal
from dashtam.core.config import Settings
from dashtam.core.errors import ProblemError
from dashtam.jobs.queue import enqueue_sync
from dashtam.models import (
    Account,
    BalanceSnapshot,
    ConnectionStatus,
    Position,
    Provider,
    ProviderConnection,
    SyncRun,
    Transaction,
)

_ZERO = Decimal(0)


def not_found(what: str) -> ProblemError:
    return ProblemError(404, f"{what} not found.", code="not_found")


def _owned_accounts(user: Principal) -> Select[Account, uuid.UUID]:
    return (
        select(Account, col(Provider.id))
        .join(ProviderConnection, col(ProviderConnection.id) == col(Account.connection_id))
        .join(Provider, col(Provider.id) == col(ProviderConnection.provider_id))
        .where(col(Provider.user_id) == user.id)
    )


async def _connection(
    session: AsyncSession, user: Principal, provider_id: uuid.UUID
) -> ProviderConnection:
    connection = await session.scalar(
        select(ProviderConnection)
        .join(Provider, col(Provider.id) == col(ProviderConnection.provider_id))
        .where(col(Provider.id) == provider_id, col(Provider.user_id) == user.id)
    )
    if connection is None:
        raise not_found("Provider")
    return connection


def _run_out(run: SyncRun, provider_id: uuid.UUID) -> SyncRunOut:
    return SyncRunOut.model_validate(run.model_dump() | {"provider_id": provider_id})


# -- syncs ------------------------------------------------------------------------------------


async def request_sync(
    session: AsyncSession,
    queue: ArqRedis,
    settings: Settings,
    user: Principal,
    provider_id: uuid.UUID,
) -> SyncRunOut:
    """The connection's queued or running run, starting one if there is none."""
    connection = await _connection(session, user, provider_id)
    if connection.status != ConnectionStatus.ACTIVE.value:
        raise ProblemError(
            409,
            f"The connection is {connection.status}; connect it before syncing.",
            code="connection_" + connection.status,
        )
    db = await session.connection()
    run_id, _ = await runs.request_run(db, connection.id, "manual")
    await session.commit()
    # Also for an existing run: a no-op if its job is queued, a rescue if it was lost.
    await enqueue_sync(queue, settings, run_id)
    run = await session.get(SyncRun, run_id)
    assert run is not None
    return _run_out(run, provider_id)


async def list_syncs(
    session: AsyncSession, user: Principal, provider_id: uuid.UUID, limit: int
) -> list[SyncRunOut]:
    connection = await _connection(session, user, provider_id)
    found = await session.scalars(
        select(SyncRun)
        .where(col(SyncRun.connection_id) == connection.id)
        .order_by(col(SyncRun.created_at).desc())
        .limit(limit)
    )
    return [_run_out(run, provider_id) for run in found]


async def get_sync(session: AsyncSession, user: Principal, run_id: uuid.UUID) -> SyncRunOut:
    row = (
        await session.execute(
            select(SyncRun, col(Provider.id))
            .join(ProviderConnection, col(ProviderConnection.id) == col(SyncRun.connection_id))
            .join(Provider, col(Provider.id) == col(ProviderConnection.provider_id))
            .where(col(SyncRun.id) == run_id, col(Provider.user_id) == user.id)
        )
    ).one_or_none()
    if row is None:
        raise not_found("Sync run")
    return _run_out(row[0], row[1])


# -- accounts ---------------------------------------------------------------------------------


async def _latest_balances(
    session: AsyncSession, account_ids: list[uuid.UUID]
) -> dict[uuid.UUID, BalanceSnapshot]:
    found = await session.scalars(
        select(BalanceSnapshot)
        .where(col(BalanceSnapshot.account_id).in_(account_ids))
        .ext(distinct_on(col(BalanceSnapshot.account_id)))
        .order_by(col(BalanceSnapshot.account_id), col(BalanceSnapshot.as_of).desc())
    )
    return {b.account_id: b for b in found}


def _account_out(
    account: Account, provider_id: uuid.UUID, balances: BalanceSnapshot | None
) -> AccountOut:
    return AccountOut.model_validate(
        account.model_dump()
        | {
            "provider_id": provider_id,
            "balances": BalancesOut.model_validate(balances) if balances else None,
        }
    )


async def list_accounts(session: AsyncSession, user: Principal) -> list[AccountOut]:
    rows = (await session.execute(_owned_accounts(user).order_by(col(Account.name)))).all()
    latest = await _latest_balances(session, [a.id for a, _ in rows])
    return [_account_out(a, p, latest.get(a.id)) for a, p in rows]


async def _account(
    session: AsyncSession, user: Principal, account_id: uuid.UUID
) -> tuple[Account, uuid.UUID]:
    row = (
        await session.execute(_owned_accounts(user).where(col(Account.id) == account_id))
    ).one_or_none()
    if row is None:
        raise not_found("Account")
    return row[0], row[1]


async def get_account(session: AsyncSession, user: Principal, account_id: uuid.UUID) -> AccountOut:
    account, provider_id = await _account(session, user, account_id)
    latest = await _latest_balances(session, [account.id])
    return _account_out(account, provider_id, latest.get(account.id))


async def list_positions(
    session: AsyncSession, user: Principal, account_id: uuid.UUID
) -> list[PositionOut]:
    account, _ = await _account(session, user, account_id)
    found = await session.scalars(
        select(Position)
        .where(col(Position.account_id) == account.id)
        .order_by(col(Position.symbol))
    )
    return [PositionOut.model_validate(p) for p in found]


async def list_balances(
    session: AsyncSession,
    user: Principal,
    account_id: uuid.UUID,
    start: datetime | None,
    end: datetime | None,
) -> list[BalancesOut]:
    """Snapshots with ``start <= as_of < end``, oldest first."""
    account, _ = await _account(session, user, account_id)
    query = select(BalanceSnapshot).where(col(BalanceSnapshot.account_id) == account.id)
    if start is not None:
        query = query.where(col(BalanceSnapshot.as_of) >= start)
    if end is not None:
        query = query.where(col(BalanceSnapshot.as_of) < end)
    found = await session.scalars(query.order_by(col(BalanceSnapshot.as_of)))
    return [BalancesOut.model_validate(b) for b in found]


# -- transactions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TransactionFilter:
    start: datetime | None = None
    end: datetime | None = None
    type: str | None = None
    status: str | None = None
    symbol: str | None = None


def encode_cursor(time: datetime, transaction_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{time.isoformat()}|{transaction_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        time, _, transaction_id = base64.urlsafe_b64decode(cursor).decode().partition("|")
        return datetime.fromisoformat(time), uuid.UUID(transaction_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ProblemError(400, "The cursor is not valid.", code="invalid_cursor") from None


async def list_transactions(
    session: AsyncSession,
    user: Principal,
    account_id: uuid.UUID,
    where: TransactionFilter,
    limit: int,
    cursor: str | None,
) -> TransactionPage:
    """Newest first, ordered by (time, id) so pages neither skip nor repeat a row."""
    account, _ = await _account(session, user, account_id)
    conditions: list[Any] = [col(Transaction.account_id) == account.id]
    if where.start is not None:
        conditions.append(col(Transaction.time) >= where.start)
    if where.end is not None:
        conditions.append(col(Transaction.time) < where.end)
    for column, value in (
        (Transaction.type, where.type),
        (Transaction.status, where.status),
        (Transaction.symbol, where.symbol),
    ):
        if value is not None:
            conditions.append(col(column) == value)
    if cursor is not None:
        after = decode_cursor(cursor)
        conditions.append(tuple_(col(Transaction.time), col(Transaction.id)) < after)
    found = list(
        await session.scalars(
            select(Transaction)
            .where(*conditions)
            .order_by(col(Transaction.time).desc(), col(Transaction.id).desc())
            .limit(limit + 1)
        )
    )
    page, more = found[:limit], len(found) > limit
    next_cursor = encode_cursor(page[-1].time, page[-1].id) if more else None
    return TransactionPage(
        items=[TransactionOut.model_validate(t) for t in page], next_cursor=next_cursor
    )


async def get_transaction(
    session: AsyncSession, user: Principal, transaction_id: uuid.UUID
) -> TransactionOut:
    owned = _owned_accounts(user).subquery()
    found = await session.scalar(
        select(Transaction).where(
            col(Transaction.id) == transaction_id,
            col(Transaction.account_id).in_(select(owned.c.id)),
        )
    )
    if found is None:
        raise not_found("Transaction")
    return TransactionOut.model_validate(found)


# -- portfolio --------------------------------------------------------------------------------


async def portfolio(session: AsyncSession, user: Principal) -> PortfolioOut:
    """Totals of the latest balances and today's P/L of the active accounts."""
    rows = (
        await session.execute(
            _owned_accounts(user).where(col(Account.status) == "active").order_by(col(Account.name))
        )
    ).all()
    accounts = [a for a, _ in rows]
    latest = await _latest_balances(session, [a.id for a in accounts])
    day_totals = await session.execute(
        select(col(Position.account_id), func.sum(col(Position.day_profit_loss)))
        .where(col(Position.account_id).in_([a.id for a in accounts]))
        .group_by(col(Position.account_id))
    )
    day = {account_id: total for account_id, total in day_totals}
    lines = []
    for account in accounts:
        balances = latest.get(account.id)
        lines.append(
            PortfolioLine(
                account_id=account.id,
                name=account.name,
                type=account.type,
                number_last4=account.number_last4,
                as_of=balances.as_of if balances else None,
                liquidation_value=(balances and balances.liquidation_value) or _ZERO,
                cash_balance=(balances and balances.cash_balance) or _ZERO,
                long_market_value=(balances and balances.long_market_value) or _ZERO,
                day_profit_loss=day.get(account.id) or _ZERO,
            )
        )

    def total(field: str) -> Decimal:
        return sum((getattr(line, field) for line in lines), _ZERO)

    return PortfolioOut(
        currency="USD",
        liquidation_value=total("liquidation_value"),
        cash_balance=total("cash_balance"),
        long_market_value=total("long_market_value"),
        day_profit_loss=total("day_profit_loss"),
        accounts=lines,
    )
