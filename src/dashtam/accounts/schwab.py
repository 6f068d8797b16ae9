"""Schwab Trader API client for sync: requests with the fault policy, answers as plain records.

Why the policy lives here: 429, 5xx and 401 mean the same thing for every call, so each call only
says what it wants. Numbers are parsed as their decimal text (``parse_float=str``) so no amount
ever passes through a float; the database casts the text to NUMERIC.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx

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
MAX_TRANSACTIONS_PER_CALL = 3000
MAX_WINDOW = timedelta(days=365)
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


@dataclass(frozen=True, slots=True)
class Page:
    """One transactions answer, kept as the provider's JSON text: PostgreSQL reads the values
    from it (numbers stay exact decimals), Python only counts the rows.

    `capped` means the provider stopped at its row limit, so the window is incomplete; `newest`
    (set only then) is the latest time among the rows, which hints at the density.
    """

    body: str
    rows: int
    capped: bool
    newest: datetime | None


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


def schwab_instant(value: datetime) -> str:
    """The request date format Schwab documents: ``2024-03-28T21:10:42.000Z``."""
    return (
        value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    )


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

    async def transactions(self, account_hash: str, start: datetime, end: datetime) -> Page:
        """Transactions in ``[start, end)`` (end is sent less 1 ms; Schwab's is inclusive).

        The window must not exceed a year.
        """
        params = {
            "startDate": schwab_instant(start),
            "endDate": schwab_instant(end - timedelta(milliseconds=1)),
            "types": ",".join(TRANSACTION_TYPES),
        }
        response = await self._request(f"/trader/v1/accounts/{account_hash}/transactions", params)
        rows = json.loads(response.content)  # floats here are only counted, never kept
        capped = len(rows) >= MAX_TRANSACTIONS_PER_CALL
        newest = max(datetime.fromisoformat(r["time"]) for r in rows) if capped else None
        return Page(response.text, len(rows), capped, newest)


def _safe_path(path: str) -> str:
    """The path without the account hash, for error messages."""
    parts = path.split("/")
    if len(parts) > 4 and parts[3] == "accounts" and parts[4] != "accountNumbers":
        parts[4] = "{account}"
    return "/".join(parts)
