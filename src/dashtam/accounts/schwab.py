"""Schwab Trader API client for sync: requests with the fault policy, answers as plain records.

Why the policy lives here: 429, 5xx and 401 mean the same thing for every call, so each call only
says what it wants. Numbers are parsed as their decimal text (``parse_float=str``, or msgspec's
exact ``Decimal`` for transactions) so no amount ever passes through a float; the database casts
the text to NUMERIC.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import httpx
import msgspec

from dashtam.accounts.windows import RESOLUTION, Limits, Window, instant_text
from dashtam.core.config import Settings

# Schwab's transaction types; the endpoint requires `types`, and we want all of them.
TRANSACTION_TYPES = (
    "TRADE",
    "RECEIVE_AND_DELIVER",
    "DIVIDEND_OR_INTEREST",
    "ACH_RECEIPT",
    "ACH_DISBURSEMENT",
    "CASH_RECEIPT",
    "CASH_DISBURSEMENT",
    "ELECTRONIC_FUND",
    "WIRE_OUT",
    "WIRE_IN",
    "JOURNAL",
    "MEMORANDUM",
    "MARGIN_CALL",
    "MONEY_MARKET",
    "SMA_ADJUSTMENT",
)
# Schwab documents at most 3000 transactions per answer and at most a year per request. A window
# spans at most 364 days, so its request (which starts a millisecond early, see `transactions`)
# stays inside the year however long that year is.
TRANSACTION_LIMITS = Limits(row_cap=3000, max_window=timedelta(days=364))
_STATUSES = {"VALID": "posted", "PENDING": "pending"}  # anything else (INVALID, CANCELED...)
JSON = dict[str, Any]


class TokenSource(Protocol):
    """Where sync gets access tokens; the providers package implements it for real connections."""

    async def access_token(self) -> str:
        """A currently valid access token."""

    async def refreshed_token(self) -> str:
        """A new access token after the provider rejected the last one (401)."""


class SyncError(Exception):
    """Sync cannot continue; the message is safe to store on the run (no secrets, no numbers)."""


class NeedsReauth(SyncError):
    """The provider rejected a freshly refreshed token: the person must connect again."""


class ProviderUnavailable(SyncError):
    """Rate limits or server errors outlasted the retries."""


class ProviderDataError(SyncError):
    """An answer that is unreadable or contradicts itself; the message names the row."""


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    base_seconds: float = 1.0
    max_seconds: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            settings.SYNC_MAX_RETRIES,
            settings.SYNC_RETRY_BASE_SECONDS,
            settings.SYNC_RETRY_MAX_SECONDS,
        )

    def delay(self, attempt: int, retry_after: str | None) -> float:
        """Retry-After when the provider gives seconds, else capped exponential full jitter."""
        if retry_after is not None and retry_after.strip().isdigit():
            return min(float(retry_after), self.max_seconds)
        ceiling = min(self.max_seconds, self.base_seconds * 2**attempt)
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not security


# -- records ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountRecord:
    provider_account_id: str
    number_last4: str
    type: str
    name: str


@dataclass(frozen=True, slots=True)
class BalanceRecord:
    cash_balance: str | None
    buying_power: str | None
    available_funds: str | None
    liquidation_value: str | None
    long_market_value: str | None
    short_market_value: str | None
    maintenance_requirement: str | None
    raw: JSON

    @property
    def content_hash(self) -> str:
        return _digest(json.dumps(self.raw, sort_keys=True))


@dataclass(frozen=True, slots=True)
class PositionRecord:
    symbol: str
    asset_type: str
    cusip: str | None
    description: str | None
    long_quantity: str
    short_quantity: str
    average_price: str | None
    market_value: str | None
    day_profit_loss: str | None
    day_profit_loss_percent: str | None


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    account: AccountRecord
    balances: BalanceRecord
    positions: tuple[PositionRecord, ...]

    @property
    def positions_hash(self) -> str:
        return _digest(repr(sorted(self.positions, key=lambda p: (p.symbol, p.asset_type))))


@dataclass(slots=True)
class TransactionBatch:
    """One window's transactions as columns, the arrays the bulk upsert sends in one statement.

    Amounts are exact decimal text and items JSON text, both cast by PostgreSQL.
    """

    provider_ids: list[str] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)
    trade_dates: list[datetime | None] = field(default_factory=list)
    settlement_dates: list[datetime | None] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    descriptions: list[str] = field(default_factory=list)
    symbols: list[str | None] = field(default_factory=list)
    net_amounts: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    content_hashes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Page:
    """One window's answer: the batch holds exactly the window's transactions, `rows` counts the
    answer as sent (compared with the row cap), `newest` is the latest time in the batch."""

    batch: TransactionBatch
    rows: int

    @property
    def newest(self) -> datetime | None:
        return max(self.batch.times, default=None)


class _Instrument(msgspec.Struct):
    symbol: str | None = None
    cusip: str | None = None
    asset_type: str | None = msgspec.field(default=None, name="assetType")
    description: str | None = None


class _TransferItem(msgspec.Struct):
    instrument: _Instrument | None = None
    amount: Decimal | None = None
    price: Decimal | None = None
    cost: Decimal | None = None
    fee_type: str | None = msgspec.field(default=None, name="feeType")
    position_effect: str | None = msgspec.field(default=None, name="positionEffect")


class _Transaction(msgspec.Struct):
    """The fields sync keeps; msgspec skips the rest without building them."""

    activity_id: int | str = msgspec.field(name="activityId")
    time: str
    trade_date: str | None = msgspec.field(default=None, name="tradeDate")
    settlement_date: str | None = msgspec.field(default=None, name="settlementDate")
    type: str | None = None
    status: str | None = None
    description: str | None = None
    net_amount: Decimal | None = msgspec.field(default=None, name="netAmount")
    transfer_items: list[_TransferItem] | None = msgspec.field(default=None, name="transferItems")


_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])
_TRANSACTION = msgspec.json.Decoder(_Transaction)
_ITEMS = msgspec.json.Encoder()


def _decimal_text(value: Decimal | None) -> str | None:
    """Exact and without exponent, as PostgreSQL prints NUMERIC (which has no negative zero)."""
    if value is None:
        return None
    text = str(value)
    if "E" in text:  # str() picks exponent notation for very small or large exponents
        text = format(value, "f")
    return text[1:] if text[0] == "-" and value.is_zero() else text


def _instant(text: str) -> datetime:
    """Schwab's ``2024-03-28T21:10:42+0000``; one without an offset is taken as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ProviderDataError(
            f"the provider sent a time Dashtam cannot read: {text[:40]!r}"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _items(transaction: _Transaction) -> tuple[list[dict[str, str | None]], str | None]:
    """The transfer items as stored, and the first non-cash instrument's symbol."""
    items = []
    symbol = None
    found = False
    for item in transaction.transfer_items or ():
        instrument = item.instrument or _Instrument()
        items.append(
            {
                "symbol": instrument.symbol,
                "cusip": instrument.cusip,
                "asset_type": instrument.asset_type,
                "description": instrument.description,
                "quantity": _decimal_text(item.amount),
                "price": _decimal_text(item.price),
                "cost": _decimal_text(item.cost),
                "fee_type": item.fee_type,
                "position_effect": item.position_effect,
            }
        )
        if not found and instrument.asset_type not in (None, "CURRENCY"):
            symbol, found = instrument.symbol, True
    return items, symbol


def parse_transactions(body: bytes, window: Window) -> Page:
    """The answer to a request for `window` (see `TraderClient.transactions`), as columns.

    Rows inside the window are kept; rows the request covers but the window does not (the
    millisecond before it, or its exact end) belong to a neighbouring window and are left to it;
    any other row, or one id sent twice with different content, means the answer cannot be
    trusted, and nothing of it is kept. The content hash is the md5 of the transaction's JSON
    exactly as sent, so any change the provider makes (pending -> posted, a corrected amount) is
    seen.
    """
    batch = TransactionBatch()
    seen: dict[str, tuple[int, str]] = {}  # provider id -> (first row, content hash)
    asked_from = window.start - RESOLUTION
    try:
        raws = _RAW_LIST.decode(body)
    except msgspec.DecodeError as exc:
        raise ProviderDataError(
            f"the provider sent transactions Dashtam cannot read: {exc}"
        ) from None
    for row, raw in enumerate(raws):
        try:
            transaction = _TRANSACTION.decode(raw)
        except msgspec.DecodeError as exc:  # ValidationError is one; the message names the field
            raise ProviderDataError(
                f"the provider sent a transaction Dashtam cannot read (row {row}): {exc}"
            ) from None
        provider_id = str(transaction.activity_id)
        content_hash = hashlib.md5(raw, usedforsecurity=False).hexdigest()
        first = seen.setdefault(provider_id, (row, content_hash))
        if first[0] != row:
            if first[1] != content_hash:
                raise ProviderDataError(
                    f"the provider sent transaction {provider_id} twice with different content "
                    f"(rows {first[0]} and {row})"
                )
            continue
        instant = _instant(transaction.time)
        if instant not in window:
            if not asked_from <= instant <= window.end:
                raise ProviderDataError(
                    f"the provider sent transaction {provider_id} (row {row}) at "
                    f"{instant_text(instant)}, outside the range Dashtam asked for"
                )
            continue
        items, symbol = _items(transaction)
        trade, settlement = transaction.trade_date, transaction.settlement_date
        batch.provider_ids.append(provider_id)
        batch.times.append(instant)
        batch.trade_dates.append(None if trade is None else _instant(trade))
        batch.settlement_dates.append(None if settlement is None else _instant(settlement))
        batch.types.append(transaction.type or "")
        batch.statuses.append(_STATUSES.get(transaction.status or "", "invalid"))
        batch.descriptions.append(transaction.description or "")
        batch.symbols.append(symbol)
        batch.net_amounts.append(_decimal_text(transaction.net_amount) or "0")
        batch.items.append(_ITEMS.encode(items).decode())
        batch.content_hashes.append(content_hash)
    return Page(batch, len(raws))


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _balances(account_type: str, current: JSON) -> BalanceRecord:
    cash_account = account_type == "CASH"
    buying_power = current.get("cashAvailableForTrading" if cash_account else "buyingPower")
    available = current.get("cashAvailableForTrading" if cash_account else "availableFunds")
    return BalanceRecord(
        cash_balance=_text(current.get("cashBalance")),
        buying_power=_text(buying_power),
        available_funds=_text(available),
        liquidation_value=_text(current.get("liquidationValue")),
        long_market_value=_text(current.get("longMarketValue")),
        short_market_value=_text(current.get("shortMarketValue")),
        maintenance_requirement=_text(current.get("maintenanceRequirement")),
        raw={key: _text(value) for key, value in current.items()},
    )


def _position(raw: JSON) -> PositionRecord:
    instrument = raw.get("instrument") or {}
    return PositionRecord(
        symbol=str(instrument.get("symbol", "")),
        asset_type=str(instrument.get("assetType", "")),
        cusip=instrument.get("cusip"),
        description=instrument.get("description"),
        long_quantity=str(raw.get("longQuantity", "0")),
        short_quantity=str(raw.get("shortQuantity", "0")),
        average_price=_text(raw.get("averagePrice")),
        market_value=_text(raw.get("marketValue")),
        day_profit_loss=_text(raw.get("currentDayProfitLoss")),
        day_profit_loss_percent=_text(raw.get("currentDayProfitLossPercentage")),
    )


def parse_accounts(
    numbers: Mapping[str, str], details: list[JSON], nicknames: Mapping[str, str]
) -> list[AccountSnapshot]:
    """Join the three answers on the account number, then forget the number but its last 4."""
    snapshots = []
    for detail in details:
        securities = detail["securitiesAccount"]
        number = str(securities["accountNumber"])
        if number not in numbers:
            continue  # listed without a hash: cannot be addressed, skip it
        account_type = str(securities.get("type", "CASH")).upper()
        last4 = number[-4:]
        account = AccountRecord(
            provider_account_id=numbers[number],
            number_last4=last4,
            type="margin" if account_type == "MARGIN" else "cash",
            name=nicknames.get(number) or f"{account_type.title()} ...{last4}",
        )
        positions = tuple(_position(p) for p in securities.get("positions") or ())
        balances = _balances(account_type, securities.get("currentBalances") or {})
        snapshots.append(AccountSnapshot(account, balances, positions))
    return snapshots


# -- client -----------------------------------------------------------------------------------


class TraderClient:
    """The calls sync makes; every one goes through `_get` and its fault policy."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        tokens: TokenSource,
        policy: RetryPolicy,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.http = http
        self.tokens = tokens
        self.policy = policy
        self.sleep = sleep
        self.requests = 0

    async def _get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """The JSON answer, numbers as their decimal text."""
        response = await self._request(path, params)
        return json.loads(response.content, parse_float=str)

    async def _request(self, path: str, params: Mapping[str, str] | None = None) -> httpx.Response:
        token = await self.tokens.access_token()
        refreshed = False
        attempt = 0
        while True:
            self.requests += 1
            try:
                response = await self.http.get(
                    path, params=params, headers={"Authorization": f"Bearer {token}"}
                )
            except httpx.TransportError as exc:
                failure = f"provider unreachable ({type(exc).__name__})"
                retry_after = None
            else:
                status = response.status_code
                if status == 200:
                    return response
                if status == 401 and not refreshed:
                    token, refreshed = await self.tokens.refreshed_token(), True
                    continue
                if status == 401:
                    raise NeedsReauth("the provider rejected a freshly refreshed access token")
                if status != 429 and status < 500:
                    raise SyncError(f"provider answered {status} to {_safe_path(path)}")
                failure = f"provider answered {status} to {_safe_path(path)}"
                retry_after = response.headers.get("Retry-After")
            if attempt >= self.policy.max_retries:
                raise ProviderUnavailable(f"{failure}; gave up after {attempt + 1} attempts")
            await self.sleep(self.policy.delay(attempt, retry_after))
            attempt += 1

    async def accounts(self) -> list[AccountSnapshot]:
        numbers = await self._get("/trader/v1/accounts/accountNumbers")
        details = await self._get("/trader/v1/accounts", {"fields": "positions"})
        preferences = await self._get("/trader/v1/userPreference")
        nicknames = {
            str(a["accountNumber"]): str(a.get("nickName") or "")
            for a in preferences.get("accounts", ())
        }
        by_number = {str(n["accountNumber"]): str(n["hashValue"]) for n in numbers}
        return parse_accounts(by_number, details, nicknames)

    async def transactions(self, account_hash: str, window: Window) -> Page:
        """Every transaction in `window`.

        Schwab takes a range of two instants at millisecond resolution and does not document
        whether either end is inclusive. The request asks for ``[start - 1 ms, end]``, which
        contains the window under every reading of the ends (all times being whole
        milliseconds), and `parse_transactions` keeps exactly the window.
        """
        params = {
            "startDate": instant_text(window.start - RESOLUTION),
            "endDate": instant_text(window.end),
            "types": ",".join(TRANSACTION_TYPES),
        }
        response = await self._request(f"/trader/v1/accounts/{account_hash}/transactions", params)
        return parse_transactions(response.content, window)


def _safe_path(path: str) -> str:
    """The path without the account hash, for error messages."""
    parts = path.split("/")
    if len(parts) > 4 and parts[3] == "accounts" and parts[4] != "accountNumbers":
        parts[4] = "{account}"
    return "/".join(parts)
