"""Trader API request validation and Schwab-shaped JSON rendering.

Money is kept as ``Decimal`` and turned into a JSON number only here (Schwab sends numbers, not
strings); with at most 4 decimal places the float's shortest repr is the decimal itself.
"""

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from dashtam.sandbox.data import (
    CENT,
    TRANSACTION_TYPES,
    Account,
    Position,
    SandboxData,
    Transaction,
    TransactionBook,
    TransferItem,
)
from dashtam.sandbox.errors import trader_error

JSON = dict[str, Any]
MAX_TRANSACTIONS = 3000
"""Schwab's documented cap per transactions response; the sandbox keeps the oldest 3000, so a
client continues from the last ``time`` it received (Schwab does not document which it keeps)."""

_ZERO = Decimal(0)


def number(value: Decimal) -> float:
    return float(value)


def schwab_time(value: datetime) -> str:
    """Schwab's response timestamp format, e.g. ``2024-03-28T21:10:42+0000``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


# -- request parameters -----------------------------------------------------------------------


def wants_positions(fields: str | None) -> bool:
    return "positions" in {f.strip() for f in (fields or "").split(",")}


def _parse_instant(name: str, value: str | None) -> datetime:
    if not value:
        raise trader_error(400, "Bad Request", f"{name} is required.")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise trader_error(
            400, "Bad Request", f"{name} must be ISO-8601, e.g. 2024-03-28T21:10:42.000Z."
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _one_year_after(start: datetime) -> datetime:
    try:
        return start.replace(year=start.year + 1)
    except ValueError:  # 29 February
        return start.replace(year=start.year + 1, month=3, day=1)


def parse_window(start_date: str | None, end_date: str | None) -> tuple[datetime, datetime]:
    """Both ends are required and the window may span at most one year, as at Schwab."""
    start = _parse_instant("startDate", start_date)
    end = _parse_instant("endDate", end_date)
    if end < start:
        raise trader_error(400, "Bad Request", "endDate must not be before startDate.")
    if end > _one_year_after(start):
        raise trader_error(400, "Bad Request", "The date range may not exceed one year.")
    return start, end


def parse_types(types: str | None) -> frozenset[str]:
    requested = frozenset(t.strip() for t in (types or "").split(",") if t.strip())
    if not requested:
        raise trader_error(400, "Bad Request", "types is required.")
    if unknown := requested - TRANSACTION_TYPES:
        raise trader_error(400, "Bad Request", f"Invalid types: {', '.join(sorted(unknown))}.")
    return requested


def find_transactions(
    book: TransactionBook,
    window: tuple[datetime, datetime],
    types: frozenset[str],
    symbol: str | None,
) -> list[Transaction]:
    found: list[Transaction] = []
    for tx in book.window(*window):
        if tx.type in types and (not symbol or symbol in tx.symbols):
            found.append(tx)
            if len(found) == MAX_TRANSACTIONS:
                break
    return found


# -- rendering ---------------------------------------------------------------------------------


def _instrument(item: TransferItem | Position, net_change: Decimal | None = None) -> JSON:
    security = item.security
    instrument: JSON = {
        "assetType": security.asset_type,
        "symbol": security.symbol,
        "description": security.description,
    }
    if security.cusip:
        instrument["cusip"] = security.cusip
    if net_change is not None:
        instrument["netChange"] = number(net_change)
    return instrument


def position_json(position: Position, margin: bool) -> JSON:
    value, day = position.market_value, position.day_profit_loss
    previous_value = value - day
    day_percent = (day / previous_value * 100).quantize(CENT) if previous_value else _ZERO
    maintenance = (value * Decimal("0.25")).quantize(CENT) if margin else _ZERO
    return {
        "shortQuantity": 0.0,
        "averagePrice": number(position.average_price),
        "currentDayProfitLoss": number(day),
        "currentDayProfitLossPercentage": number(day_percent),
        "longQuantity": number(position.quantity),
        "settledLongQuantity": number(position.quantity),
        "settledShortQuantity": 0.0,
        "instrument": _instrument(position, position.net_change),
        "marketValue": number(value),
        "maintenanceRequirement": number(maintenance),
        "averageLongPrice": number(position.average_price),
        "taxLotAverageLongPrice": number(position.average_price),
        "longOpenProfitLoss": number(value - position.cost),
        "previousSessionLongQuantity": number(position.quantity),
        "currentDayCost": 0.0,
    }


def _balances(account: Account) -> tuple[JSON, JSON, JSON, JSON]:
    """initialBalances, currentBalances, projectedBalances and aggregatedBalance."""
    margin = account.type == "MARGIN"
    cash, long_value = account.cash, account.long_market_value
    liquidation = cash + long_value
    maintenance = (long_value * Decimal("0.25")).quantize(CENT) if margin else _ZERO
    buying_power = cash * 2 if margin else cash
    common = {
        "accruedInterest": _ZERO,
        "cashBalance": cash,
        "cashReceipts": _ZERO,
        "longOptionMarketValue": _ZERO,
        "liquidationValue": liquidation,
        "longMarketValue": long_value,
        "moneyMarketFund": _ZERO,
        "mutualFundValue": _ZERO,
        "bondValue": _ZERO,
        "pendingDeposits": _ZERO,
        "shortMarketValue": _ZERO,
        "shortOptionMarketValue": _ZERO,
        "savings": _ZERO,
    }
    if margin:
        funds = {
            "availableFunds": cash,
            "availableFundsNonMarginableTrade": cash,
            "buyingPower": buying_power,
            "dayTradingBuyingPower": cash * 4,
            "maintenanceCall": _ZERO,
            "regTCall": _ZERO,
        }
        extra = {
            "buyingPowerNonMarginableTrade": cash,
            "equity": liquidation,
            "equityPercentage": Decimal(100),
            "longMarginValue": long_value,
            "maintenanceRequirement": maintenance,
            "marginBalance": _ZERO,
            "shortBalance": _ZERO,
            "shortMarginValue": _ZERO,
            "sma": cash,
        }
    else:
        funds = {"cashAvailableForTrading": cash, "cashAvailableForWithdrawal": cash}
        extra = {
            "cashCall": _ZERO,
            "longNonMarginableMarketValue": long_value,
            "totalCash": cash,
            "cashDebitCallValue": _ZERO,
            "unsettledCash": _ZERO,
        }

    def render(values: dict[str, Decimal]) -> JSON:
        return {key: number(value) for key, value in values.items()}

    initial = render({**common, **funds, **extra, "accountValue": liquidation}) | {
        "isInCall": False
    }
    current = render({**common, **funds, **extra})
    projected = render(funds) | {"isInCall": False}
    aggregated = render({"currentLiquidationValue": liquidation, "liquidationValue": liquidation})
    return initial, current, projected, aggregated


def account_json(account: Account, *, positions: bool) -> JSON:
    initial, current, projected, aggregated = _balances(account)
    securities: JSON = {
        "type": account.type,
        "accountNumber": account.number,
        "roundTrips": 0,
        "isDayTrader": False,
        "isClosingOnlyRestricted": False,
        "pfcbFlag": False,
    }
    if positions:
        margin = account.type == "MARGIN"
        securities["positions"] = [position_json(p, margin) for p in account.positions]
    securities |= {
        "initialBalances": initial,
        "currentBalances": current,
        "projectedBalances": projected,
    }
    return {"securitiesAccount": securities, "aggregatedBalance": aggregated}


def _transfer_item_json(item: TransferItem) -> JSON:
    rendered: JSON = {
        "instrument": _instrument(item),
        "amount": number(item.amount),
        "cost": number(item.cost),
    }
    if item.price is not None:
        rendered["price"] = number(item.price)
    if item.fee_type is not None:
        rendered["feeType"] = item.fee_type
    if item.position_effect is not None:
        rendered["positionEffect"] = item.position_effect
    return rendered


def transaction_json(tx: Transaction, account_number: str) -> JSON:
    rendered: JSON = {
        "activityId": tx.activity_id,
        "time": schwab_time(tx.time),
        "description": tx.description,
        "accountNumber": account_number,
        "type": tx.type,
        "status": tx.status,
        "subAccount": tx.sub_account,
        "tradeDate": schwab_time(tx.time),
        "settlementDate": schwab_time(tx.settlement_date),
        "netAmount": number(tx.net_amount),
        "activityType": tx.activity_type,
        "transferItems": [_transfer_item_json(i) for i in tx.items],
    }
    if tx.position_id is not None:
        rendered["positionId"] = tx.position_id
    if tx.order_id is not None:
        rendered["orderId"] = tx.order_id
    return rendered


class RenderedTransactions:
    """Transactions as JSON, each rendered once.

    A history is read far more often than it changes, and rendering it was most of the sandbox's
    work when a sync reads 200,000 rows. Entries are keyed by what posting changes (status and
    settlement date), so a posted transaction is rendered anew.
    """

    def __init__(self) -> None:
        self._rendered: dict[tuple[int, str, datetime], bytes] = {}

    def page(self, transactions: list[Transaction], account_number: str) -> bytes:
        parts = []
        for tx in transactions:
            key = (tx.activity_id, tx.status, tx.settlement_date)
            rendered = self._rendered.get(key)
            if rendered is None:
                body = transaction_json(tx, account_number)
                rendered = json.dumps(body, separators=(",", ":")).encode()
                self._rendered[key] = rendered
            parts.append(rendered)
        return b"[" + b",".join(parts) + b"]"


def user_preference_json(data: SandboxData) -> JSON:
    return {
        "accounts": [
            {
                "accountNumber": a.number,
                "primaryAccount": a.index == 0,
                "type": "BROKERAGE",
                "nickName": a.nickname,
                "displayAcctId": f"...{a.number[-3:]}",
                "autoPositionEffect": False,
                "accountColor": "Green" if a.index % 2 == 0 else "Blue",
            }
            for a in data.accounts
        ],
        "streamerInfo": [
            {
                # The sandbox has no streamer; this address never resolves.
                "streamerSocketUrl": "wss://streamer.sandbox.invalid/ws",
                "schwabClientCustomerId": data.customer_id,
                "schwabClientCorrelId": data.customer_id,
                "schwabClientChannel": "N9",
                "schwabClientFunctionId": "APIAPP",
            }
        ],
        "offers": [{"level2Permissions": False, "mktDataPermission": "NP"}],
    }


def lookup_account(data: SandboxData, account_hash: str) -> Account:
    """Schwab answers 400 "Invalid account number" for raw numbers and unknown hashes alike."""
    account = data.account(account_hash)
    if account is None:
        raise trader_error(400, "Invalid account number")
    return account
