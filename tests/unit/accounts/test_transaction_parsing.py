"""A transactions answer becomes columns: exact decimals, the stored item shape, one row per id,
exactly the window's rows; an answer that contradicts itself or the request is refused."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from dashtam.accounts.schwab import ProviderDataError, SyncError, parse_transactions
from dashtam.accounts.windows import Window

MARCH = Window(datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC))


def _trade(activity_id: int = 1, **changes: Any) -> dict[str, Any]:
    trade: dict[str, Any] = {
        "activityId": activity_id,
        "time": "2025-03-04T15:30:00+0000",
        "tradeDate": "2025-03-04T15:30:00+0000",
        "settlementDate": "2025-03-05T15:30:00+0000",
        "type": "TRADE",
        "status": "VALID",
        "description": "BUY 10 AAPL",
        "netAmount": "<-1901.2345>",
        "accountNumber": "12345678",
        "transferItems": [
            {
                "instrument": {"assetType": "CURRENCY", "symbol": "CURRENCY_USD"},
                "amount": "<-0.0>",
                "cost": "<0.00>",
                "feeType": "COMMISSION",
            },
            {
                "instrument": {"assetType": "EQUITY", "symbol": "AAPL", "cusip": "037833100"},
                "amount": 10,
                "price": "<190.12345678901234567890>",
                "cost": "<-1901.2345>",
                "positionEffect": "OPENING",
            },
        ],
    }
    trade.update(changes)
    return trade


def _parse(*rows: dict[str, Any]) -> Any:
    """`"<1.50>"` in a row becomes the JSON number `1.50` as written (a float could not keep it)."""
    body = re.sub(r'"<([-0-9.]+)>"', r"\1", json.dumps(rows))
    return parse_transactions(body.encode(), MARCH)


def test_values_are_kept_exactly_and_items_take_the_stored_shape() -> None:
    batch = _parse(_trade()).batch
    assert batch.provider_ids == ["1"]
    assert batch.times == [datetime(2025, 3, 4, 15, 30, tzinfo=UTC)]
    assert batch.settlement_dates == [datetime(2025, 3, 5, 15, 30, tzinfo=UTC)]
    assert (batch.types, batch.statuses) == (["TRADE"], ["posted"])
    assert batch.net_amounts == ["-1901.2345"]
    assert batch.symbols == ["AAPL"]
    cash, stock = json.loads(batch.items[0])
    assert cash == {
        "symbol": "CURRENCY_USD",
        "cusip": None,
        "asset_type": "CURRENCY",
        "description": None,
        "quantity": "0.0",
        "price": None,
        "cost": "0.00",
        "fee_type": "COMMISSION",
        "position_effect": None,
    }
    assert stock["quantity"] == "10"
    assert stock["price"] == "190.12345678901234567890"
    assert stock["position_effect"] == "OPENING"


@pytest.mark.parametrize(
    ("sent", "stored"),
    [("1e2", "100"), ("1.0E-7", "0.00000010"), ("-0.00", "0.00"), ("12.50", "12.50")],
)
def test_amounts_are_written_without_exponents_as_postgresql_prints_them(
    sent: str, stored: str
) -> None:
    body = f'[{{"activityId": 1, "time": "2025-03-01T00:00:00+0000", "netAmount": {sent}}}]'
    assert parse_transactions(body.encode(), MARCH).batch.net_amounts == [stored]


def test_missing_optional_fields_get_the_stored_defaults() -> None:
    bare = {"activityId": "A-7", "time": "2025-03-04T15:30:00"}
    batch = _parse(bare).batch
    assert batch.provider_ids == ["A-7"]
    assert batch.times == [datetime(2025, 3, 4, 15, 30, tzinfo=UTC)]
    assert (batch.trade_dates, batch.settlement_dates) == ([None], [None])
    assert (batch.types, batch.descriptions, batch.net_amounts) == ([""], [""], ["0"])
    assert (batch.statuses, batch.symbols, batch.items) == (["invalid"], [None], ["[]"])


@pytest.mark.parametrize(("status", "stored"), [("PENDING", "pending"), ("CANCELED", "invalid")])
def test_statuses_map_to_ours(status: str, stored: str) -> None:
    assert _parse(_trade(status=status)).batch.statuses == [stored]


def test_the_symbol_is_the_first_instrument_that_is_not_cash() -> None:
    items = [
        {"instrument": {"symbol": "NO_TYPE"}, "amount": 1},
        {"instrument": {"assetType": "CURRENCY", "symbol": "CURRENCY_USD"}, "amount": 1},
        {"instrument": {"assetType": "OPTION", "symbol": "AAPL 250321C00200000"}, "amount": 1},
        {"instrument": {"assetType": "EQUITY", "symbol": "AAPL"}, "amount": 1},
    ]
    assert _parse(_trade(transferItems=items)).batch.symbols == ["AAPL 250321C00200000"]


def test_an_id_sent_twice_alike_is_kept_once_but_counted_as_sent() -> None:
    page = _parse(_trade(1), _trade(2), _trade(1))
    assert page.batch.provider_ids == ["1", "2"]
    assert page.rows == 3


def test_an_id_sent_twice_with_different_content_refuses_the_answer() -> None:
    with pytest.raises(ProviderDataError, match=r"transaction 1 twice .*\(rows 0 and 2\)"):
        _parse(_trade(1), _trade(2), _trade(1, description="again"))


def test_only_the_windows_rows_are_kept_and_its_neighbours_rows_are_left_to_them() -> None:
    """The request covers [start - 1 ms, end]: its two edges belong to the windows beside."""
    page = _parse(
        _trade(1, time="2025-02-28T23:59:59.999+0000"),
        _trade(2, time="2025-03-01T00:00:00+0000"),
        _trade(3, time="2025-03-31T23:59:59.999+0000"),
        _trade(4, time="2025-04-01T00:00:00+0000"),
    )
    assert page.batch.provider_ids == ["2", "3"]
    assert page.rows == 4


@pytest.mark.parametrize("time", ["2025-02-28T23:59:59.998+0000", "2025-04-01T00:00:00.001+0000"])
def test_a_row_outside_the_requested_range_refuses_the_answer(time: str) -> None:
    with pytest.raises(ProviderDataError, match=r"transaction 9 \(row 1\) .* outside the range"):
        _parse(_trade(1), _trade(9, time=time))


def test_the_content_hash_follows_any_change_the_provider_makes() -> None:
    same, posted, again = (
        _parse(_trade(status="PENDING")).batch.content_hashes[0],
        _parse(_trade(status="VALID")).batch.content_hashes[0],
        _parse(_trade(status="PENDING")).batch.content_hashes[0],
    )
    assert same == again != posted


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b'{"not": "a list"}', "Expected `array`"),
        (b"[{}]", "activityId"),
        (b'[{"activityId": 1, "time": "2025-03-01"}, {"activityId": 2, "time": 5}]', "(row 1)"),
        (b'[{"activityId": 1, "time": "t", "netAmount": "lots"}]', "netAmount"),
        (b"[{", "truncated"),
    ],
)
def test_an_unreadable_answer_fails_the_sync_saying_where(body: bytes, named: str) -> None:
    with pytest.raises(ProviderDataError) as raised:
        parse_transactions(body, MARCH)
    assert "cannot read" in str(raised.value)
    assert named.lower() in str(raised.value).lower()


def test_an_unreadable_time_fails_the_sync() -> None:
    with pytest.raises(SyncError, match="time Dashtam cannot read: 'yesterday'"):
        _parse(_trade(time="yesterday"))
