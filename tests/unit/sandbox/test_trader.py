"""Trader API shapes and parameter rules match Schwab's; data is deterministic per seed."""

import time
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from dashtam.sandbox.app import create_app

Sandbox = Any  # the conftest helper; not importable under importlib import mode
ALL_TYPES = (
    "TRADE,RECEIVE_AND_DELIVER,DIVIDEND_OR_INTEREST,ACH_RECEIPT,ACH_DISBURSEMENT,CASH_RECEIPT,"
    "CASH_DISBURSEMENT,ELECTRONIC_FUND,WIRE_OUT,WIRE_IN,JOURNAL,MEMORANDUM,MARGIN_CALL,"
    "MONEY_MARKET,SMA_ADJUSTMENT"
)
LAST_YEAR = {"startDate": "2024-01-16T00:00:00.000Z", "endDate": "2025-01-15T00:00:00.000Z"}
POSITION_FIELDS = {
    "shortQuantity", "averagePrice", "currentDayProfitLoss", "currentDayProfitLossPercentage",
    "longQuantity", "settledLongQuantity", "settledShortQuantity", "instrument", "marketValue",
    "maintenanceRequirement", "averageLongPrice", "taxLotAverageLongPrice", "longOpenProfitLoss",
    "previousSessionLongQuantity", "currentDayCost",
}  # fmt: skip
TRANSACTION_FIELDS = {
    "activityId", "time", "description", "accountNumber", "type", "status", "subAccount",
    "tradeDate", "settlementDate", "netAmount", "activityType", "transferItems",
}  # fmt: skip


def places(value: float) -> int:
    """Decimal places of a JSON number as sent."""
    return max(0, -int(Decimal(repr(value)).as_tuple().exponent))


async def get(sandbox: Sandbox, path: str, **params: str) -> Any:
    response = await sandbox.http.get(path, params=params, headers=await sandbox.bearer())
    assert response.status_code == 200, response.text
    return response.json()


async def first_hash(sandbox: Sandbox) -> str:
    numbers = await get(sandbox, "/trader/v1/accounts/accountNumbers")
    return str(numbers[0]["hashValue"])


async def test_account_numbers_pair_numbers_with_opaque_hashes(sandbox: Sandbox) -> None:
    numbers = await get(sandbox, "/trader/v1/accounts/accountNumbers")

    assert len(numbers) == 3
    for entry in numbers:
        assert set(entry) == {"accountNumber", "hashValue"}
        assert entry["accountNumber"].isdigit()
        assert len(entry["accountNumber"]) == 8
        assert entry["accountNumber"] not in entry["hashValue"]
        assert len(entry["hashValue"]) == 64


async def test_accounts_include_positions_only_when_asked(sandbox: Sandbox) -> None:
    plain = await get(sandbox, "/trader/v1/accounts")
    detailed = await get(sandbox, "/trader/v1/accounts", fields="positions")

    assert all("positions" not in a["securitiesAccount"] for a in plain)
    assert {a["securitiesAccount"]["type"] for a in plain} == {"MARGIN", "CASH"}
    for account in detailed:
        securities = account["securitiesAccount"]
        assert {"initialBalances", "currentBalances", "projectedBalances"} <= set(securities)
        assert securities["positions"]
        for position in securities["positions"]:
            assert set(position) == POSITION_FIELDS
            assert {"assetType", "cusip", "symbol", "description", "netChange"} <= set(
                position["instrument"]
            )
            assert places(position["marketValue"]) <= 2
            assert places(position["averagePrice"]) <= 4
        current = securities["currentBalances"]
        long_value = sum(Decimal(repr(p["marketValue"])) for p in securities["positions"])
        assert Decimal(repr(current["longMarketValue"])) == long_value
        assert Decimal(repr(current["liquidationValue"])) == long_value + Decimal(
            repr(current["cashBalance"])
        )
        assert account["aggregatedBalance"]["liquidationValue"] == current["liquidationValue"]


async def test_single_account_by_hash_matches_list(sandbox: Sandbox) -> None:
    listed = await get(sandbox, "/trader/v1/accounts", fields="positions")
    account_hash = await first_hash(sandbox)

    one = await get(sandbox, f"/trader/v1/accounts/{account_hash}", fields="positions")

    assert one == listed[0]


async def test_raw_account_number_is_rejected(sandbox: Sandbox) -> None:
    headers = await sandbox.bearer()
    number = sandbox.state.data.accounts[0].number

    for path in (f"/trader/v1/accounts/{number}", f"/trader/v1/accounts/{number}/transactions"):
        response = await sandbox.http.get(path, headers=headers, params=LAST_YEAR)
        assert response.status_code == 400
        assert response.json()["message"] == "Invalid account number"


async def test_trader_api_requires_bearer_token(sandbox: Sandbox) -> None:
    response = await sandbox.http.get("/trader/v1/accounts")

    assert response.status_code == 401
    body = response.json()
    assert body["message"] == "Unauthorized"
    assert body["errors"]


@pytest.mark.parametrize(
    ("params", "complaint"),
    [
        ({"endDate": LAST_YEAR["endDate"], "types": "TRADE"}, "startDate is required"),
        ({"startDate": LAST_YEAR["startDate"], "types": "TRADE"}, "endDate is required"),
        (LAST_YEAR, "types is required"),
        (LAST_YEAR | {"types": "TRADE,BOGUS"}, "Invalid types: BOGUS"),
        ({"startDate": "yesterday", "endDate": "today", "types": "TRADE"}, "ISO-8601"),
        (
            {
                "startDate": LAST_YEAR["endDate"],
                "endDate": LAST_YEAR["startDate"],
                "types": "TRADE",
            },
            "must not be before",
        ),
        (
            {
                "startDate": "2024-01-14T00:00:00.000Z",
                "endDate": LAST_YEAR["endDate"],
                "types": "TRADE",
            },
            "may not exceed one year",
        ),
    ],
)
async def test_transaction_parameters_are_validated(
    sandbox: Sandbox, params: dict[str, str], complaint: str
) -> None:
    path = f"/trader/v1/accounts/{await first_hash(sandbox)}/transactions"

    response = await sandbox.http.get(path, params=params, headers=await sandbox.bearer())

    assert response.status_code == 400
    assert complaint in " ".join(response.json()["errors"])


async def test_transactions_respect_window_types_and_symbol(sandbox: Sandbox) -> None:
    path = f"/trader/v1/accounts/{await first_hash(sandbox)}/transactions"
    window = {"startDate": "2024-06-01T00:00:00.000Z", "endDate": "2024-12-01T00:00:00.000Z"}

    everything = await get(sandbox, path, **window, types=ALL_TYPES)
    trades = await get(sandbox, path, **window, types="TRADE")
    aapl = await get(sandbox, path, **window, types="TRADE", symbol="AAPL")

    assert len(everything) > len(trades) > len(aapl) > 0
    assert {t["type"] for t in trades} == {"TRADE"}
    assert all(any(i["instrument"]["symbol"] == "AAPL" for i in t["transferItems"]) for t in aapl)
    times = [datetime.fromisoformat(t["time"]) for t in everything]
    assert times == sorted(times)
    assert times[0] >= datetime.fromisoformat(window["startDate"])
    assert times[-1] <= datetime.fromisoformat(window["endDate"])
    for tx in everything:
        assert set(tx) >= TRANSACTION_FIELDS
        assert isinstance(tx["activityId"], int)
        assert places(tx["netAmount"]) <= 2
    trade = trades[0]
    assert {"orderId", "positionId"} <= set(trade)
    security = [i for i in trade["transferItems"] if "positionEffect" in i]
    assert security[0]["instrument"]["assetType"] in {"EQUITY", "COLLECTIVE_INVESTMENT"}
    assert {i["feeType"] for i in trade["transferItems"] if "feeType" in i} >= {"COMMISSION"}


async def test_recent_transactions_include_pending(sandbox: Sandbox) -> None:
    path = f"/trader/v1/accounts/{await first_hash(sandbox)}/transactions"
    recent = {"startDate": "2025-01-13T00:00:00.000Z", "endDate": "2025-01-15T00:00:00.000Z"}

    found = await get(sandbox, path, **recent, types=ALL_TYPES)

    assert [t["status"] for t in found].count("PENDING") == 2


async def test_transaction_by_id(sandbox: Sandbox) -> None:
    account_hash = await first_hash(sandbox)
    listed = await get(
        sandbox, f"/trader/v1/accounts/{account_hash}/transactions", **LAST_YEAR, types="TRADE"
    )
    activity_id = listed[5]["activityId"]

    one = await get(sandbox, f"/trader/v1/accounts/{account_hash}/transactions/{activity_id}")
    missing = await sandbox.http.get(
        f"/trader/v1/accounts/{account_hash}/transactions/1", headers=await sandbox.bearer()
    )

    assert one == listed[5]
    assert missing.status_code == 404


async def test_responses_are_capped_at_3000_oldest_first(make_sandbox, make_config) -> None:
    sandbox = make_sandbox(make_config(accounts=1, transactions_per_account=4000, history_days=300))
    path = f"/trader/v1/accounts/{await first_hash(sandbox)}/transactions"

    found = await get(sandbox, path, **LAST_YEAR, types=ALL_TYPES)

    assert len(found) == 3000
    times = [datetime.fromisoformat(t["time"]) for t in found]
    assert times == sorted(times)
    book = sandbox.state.data.transactions(sandbox.state.data.accounts[0])
    assert found[0]["activityId"] == book.window(*_window(LAST_YEAR))[0].activity_id


def _window(params: dict[str, str]) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(params["startDate"]), datetime.fromisoformat(params["endDate"])


async def test_same_seed_same_data_other_seed_other_data(make_sandbox, make_config) -> None:
    first, second = make_sandbox(make_config()), make_sandbox(make_config())
    other = make_sandbox(make_config(seed=8))

    async def snapshot(sandbox: Sandbox) -> list[Any]:
        account_hash = await first_hash(sandbox)
        path = f"/trader/v1/accounts/{account_hash}/transactions"
        return [
            await get(sandbox, "/trader/v1/accounts/accountNumbers"),
            await get(sandbox, "/trader/v1/accounts", fields="positions"),
            await get(sandbox, path, **LAST_YEAR, types=ALL_TYPES),
            await get(sandbox, "/trader/v1/userPreference"),
        ]

    assert await snapshot(first) == await snapshot(second)
    assert await snapshot(first) != await snapshot(other)


async def test_user_preference_shape(sandbox: Sandbox) -> None:
    prefs = await get(sandbox, "/trader/v1/userPreference")

    assert set(prefs) == {"accounts", "streamerInfo", "offers"}
    numbers = {a.number for a in sandbox.state.data.accounts}
    assert {a["accountNumber"] for a in prefs["accounts"]} == numbers
    assert [a["primaryAccount"] for a in prefs["accounts"]].count(True) == 1
    assert prefs["accounts"][0]["displayAcctId"].startswith("...")


def test_large_history_is_generated_lazily_and_once(make_config) -> None:
    started = time.perf_counter()
    create_app(make_config(accounts=4, transactions_per_account=10_000_000))
    assert time.perf_counter() - started < 1.0  # eager generation would take minutes

    data = create_app(make_config()).state.sandbox.data
    assert data.transactions(data.accounts[0]) is data.transactions(data.accounts[0])
