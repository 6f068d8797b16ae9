"""Accounts, syncs and transactions over HTTP: thin wrappers over ``service``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from arq.connections import ArqRedis
from fastapi import APIRouter, Depends, Query, status

from dashtam.accounts import service
from dashtam.accounts.schemas import (
    AccountOut,
    BalancesOut,
    PortfolioOut,
    PositionOut,
    SyncRunOut,
    TransactionOut,
    TransactionPage,
)
from dashtam.auth.dependencies import CurrentUser, DbSession
from dashtam.jobs.queue import job_queue
from dashtam.models import TransactionStatus
from dashtam.providers.dependencies import SettingsDep

router = APIRouter(tags=["accounts"])


async def get_queue(settings: SettingsDep) -> AsyncIterator[ArqRedis]:
    """A connection to the job queue for the requests that enqueue (syncs are rare)."""
    async with job_queue(settings) as queue:
        yield queue


Queue = Annotated[ArqRedis, Depends(get_queue)]
From = Annotated[datetime | None, Query(alias="from", description="Inclusive, ISO 8601.")]
To = Annotated[datetime | None, Query(alias="to", description="Exclusive, ISO 8601.")]


@router.post(
    "/providers/{provider_id}/syncs",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Start a sync (or get the one already queued or running)",
)
async def start_sync(
    provider_id: uuid.UUID,
    user: CurrentUser,
    session: DbSession,
    queue: Queue,
    settings: SettingsDep,
) -> SyncRunOut:
    return await service.request_sync(session, queue, settings, user, provider_id)


@router.get("/providers/{provider_id}/syncs")
async def list_syncs(
    provider_id: uuid.UUID,
    user: CurrentUser,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[SyncRunOut]:
    return await service.list_syncs(session, user, provider_id, limit)


@router.get("/syncs/{run_id}")
async def get_sync(run_id: uuid.UUID, user: CurrentUser, session: DbSession) -> SyncRunOut:
    return await service.get_sync(session, user, run_id)


@router.get("/accounts")
async def list_accounts(user: CurrentUser, session: DbSession) -> list[AccountOut]:
    return await service.list_accounts(session, user)


@router.get("/accounts/{account_id}", summary="An account with its latest balances")
async def get_account(account_id: uuid.UUID, user: CurrentUser, session: DbSession) -> AccountOut:
    return await service.get_account(session, user, account_id)


@router.get("/accounts/{account_id}/positions")
async def list_positions(
    account_id: uuid.UUID, user: CurrentUser, session: DbSession
) -> list[PositionOut]:
    return await service.list_positions(session, user, account_id)


@router.get("/accounts/{account_id}/balances", summary="Balance snapshots, oldest first")
async def list_balances(
    account_id: uuid.UUID, user: CurrentUser, session: DbSession, start: From = None, end: To = None
) -> list[BalancesOut]:
    return await service.list_balances(session, user, account_id, start, end)


@router.get("/accounts/{account_id}/transactions", summary="Transactions, newest first")
async def list_transactions(
    account_id: uuid.UUID,
    user: CurrentUser,
    session: DbSession,
    start: From = None,
    end: To = None,
    type: Annotated[str | None, Query(max_length=40)] = None,
    status: TransactionStatus | None = None,
    symbol: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> TransactionPage:
    where = service.TransactionFilter(start, end, type, status.value if status else None, symbol)
    return await service.list_transactions(session, user, account_id, where, limit, cursor)


@router.get("/transactions/{transaction_id}")
async def get_transaction(
    transaction_id: uuid.UUID, user: CurrentUser, session: DbSession
) -> TransactionOut:
    return await service.get_transaction(session, user, transaction_id)


@router.get("/portfolio", summary="Totals over the active accounts, with a line per account")
async def portfolio(user: CurrentUser, session: DbSession) -> PortfolioOut:
    return await service.portfolio(session, user)
