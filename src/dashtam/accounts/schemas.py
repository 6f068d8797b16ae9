"""API shapes. Money is a Decimal, which pydantic writes as a string with exactly the stored
decimals; datetimes are timezone-aware and written as ISO 8601 with their offset."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class SyncRunOut(_Out):
    id: uuid.UUID
    provider_id: uuid.UUID
    trigger: str
    status: str
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    window_start: datetime | None
    window_end: datetime | None
    accounts_total: int
    accounts_done: int
    pages: int
    rows_fetched: int
    inserted: int
    updated: int
    unchanged: int
    marked_missing: int
    error: str | None
    verified: bool | None
    verification: str | None


class BalancesOut(_Out):
    as_of: datetime
    cash_balance: Decimal | None
    buying_power: Decimal | None
    available_funds: Decimal | None
    liquidation_value: Decimal | None
    long_market_value: Decimal | None
    short_market_value: Decimal | None
    maintenance_requirement: Decimal | None


class AccountOut(_Out):
    id: uuid.UUID
    provider_id: uuid.UUID
    name: str
    type: str
    # Only ever the last four digits: Dashtam never stores the full number.
    number_last4: str
    currency: str
    status: str
    last_synced_at: datetime | None
    balances: BalancesOut | None


class PositionOut(_Out):
    id: uuid.UUID
    symbol: str
    asset_type: str
    cusip: str | None
    description: str | None
    long_quantity: Decimal
    short_quantity: Decimal
    average_price: Decimal | None
    market_value: Decimal | None
    day_profit_loss: Decimal | None
    day_profit_loss_percent: Decimal | None
    as_of: datetime


class TransactionOut(_Out):
    id: uuid.UUID
    account_id: uuid.UUID
    provider_transaction_id: str
    time: datetime
    trade_date: datetime | None
    settlement_date: datetime | None
    type: str
    status: str
    description: str
    symbol: str | None
    net_amount: Decimal
    # instrument (symbol, cusip, asset_type, description), quantity, price, cost, fee_type,
    # position_effect; numbers as decimal strings
    items: list[dict[str, Any]]
    missing_since: datetime | None


class TransactionPage(BaseModel):
    items: list[TransactionOut]
    next_cursor: str | None


class PortfolioLine(BaseModel):
    account_id: uuid.UUID
    name: str
    type: str
    number_last4: str
    as_of: datetime | None
    liquidation_value: Decimal
    cash_balance: Decimal
    long_market_value: Decimal
    day_profit_loss: Decimal


class PortfolioOut(BaseModel):
    currency: str
    liquidation_value: Decimal
    cash_balance: Decimal
    long_market_value: Decimal
    day_profit_loss: Decimal
    accounts: list[PortfolioLine]
