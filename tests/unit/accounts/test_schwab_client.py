"""The Trader API client's fault policy and parsing, with a scripted transport (no I/O)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from dashtam.accounts.schwab import (
    NeedsReauth,
    ProviderUnavailable,
    RetryPolicy,
    SyncError,
    TraderClient,
    parse_accounts,
)
from dashtam.accounts.windows import Window, instant_text

HASH = "A" * 64


class Tokens:
    def __init__(self) -> None:
        self.refreshes = 0

    async def access_token(self) -> str:
        return "old"

    async def refreshed_token(self) -> str:
        self.refreshes += 1
        return "new"


def scripted(
    *answers: httpx.Response,
) -> tuple[TraderClient, Tokens, list[httpx.Request], list[float]]:
    """A client whose requests get `answers` in order; sleeps are recorded, not slept."""
    queue = list(answers)
    seen: list[httpx.Request] = []
    slept: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0)

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    tokens = Tokens()
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://schwab")
    client = TraderClient(http, tokens, RetryPolicy(max_retries=2, base_seconds=0.5), sleep)
    return client, tokens, seen, slept


def ok(body: object) -> httpx.Response:
    return httpx.Response(200, json=body)


JANUARY = Window(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC))


def transactions(client: TraderClient) -> Callable[[], object]:
    return lambda: client.transactions(HASH, JANUARY)


async def test_rate_limit_waits_retry_after_then_succeeds() -> None:
    client, _, seen, slept = scripted(
        httpx.Response(429, headers={"Retry-After": "3"}),
        ok([{"activityId": 1, "time": "2025-01-02T00:00:00+0000"}]),
    )

    page = await transactions(client)()  # type: ignore[misc]

    assert page.rows == 1
    assert slept == [3.0]
    assert len(seen) == 2


async def test_server_errors_give_up_after_the_retries_without_the_hash() -> None:
    client, _, seen, slept = scripted(*(httpx.Response(503) for _ in range(3)))

    with pytest.raises(ProviderUnavailable) as raised:
        await transactions(client)()  # type: ignore[misc]

    assert len(seen) == 3
    assert len(slept) == 2
    assert all(0 <= s <= 0.5 * 2**n for n, s in enumerate(slept))
    assert "gave up after 3 attempts" in str(raised.value)
    assert HASH not in str(raised.value)
    assert "{account}" in str(raised.value)


async def test_401_refreshes_once_and_retries_with_the_new_token() -> None:
    client, tokens, seen, _ = scripted(httpx.Response(401), ok([]))

    await transactions(client)()  # type: ignore[misc]

    assert tokens.refreshes == 1
    assert [r.headers["Authorization"] for r in seen] == ["Bearer old", "Bearer new"]


async def test_401_after_a_refresh_needs_reauth() -> None:
    client, tokens, _, _ = scripted(httpx.Response(401), httpx.Response(401))

    with pytest.raises(NeedsReauth):
        await transactions(client)()  # type: ignore[misc]
    assert tokens.refreshes == 1


async def test_other_client_errors_fail_at_once() -> None:
    client, _, seen, _ = scripted(httpx.Response(400))

    with pytest.raises(SyncError, match="400"):
        await transactions(client)()  # type: ignore[misc]
    assert len(seen) == 1


async def test_transactions_request_a_range_containing_the_window_under_any_reading() -> None:
    """Inclusive or exclusive at either end, [start - 1 ms, end] contains [start, end)."""
    client, _, seen, _ = scripted(ok([]))

    await transactions(client)()  # type: ignore[misc]

    params = seen[0].url.params
    assert params["startDate"] == "2024-12-31T23:59:59.999Z"
    assert params["endDate"] == "2025-02-01T00:00:00.000Z"
    assert "TRADE" in params["types"].split(",")
    assert len(params["types"].split(",")) == 15


async def test_a_full_page_reports_its_size_and_newest_time() -> None:
    rows = [
        {"activityId": n, "time": f"2025-01-{1 + n % 28:02d}T00:00:00+0000"} for n in range(3000)
    ]
    client, _, _, _ = scripted(ok(rows))

    page = await transactions(client)()  # type: ignore[misc]

    assert page.rows == 3000
    assert page.newest == datetime(2025, 1, 28, tzinfo=UTC)
    assert page.batch.provider_ids == [str(n) for n in range(3000)]


def test_retry_after_is_capped_and_jitter_stays_under_the_ceiling() -> None:
    policy = RetryPolicy(max_retries=5, base_seconds=1, max_seconds=10)
    assert policy.delay(0, "120") == 10
    assert all(0 <= policy.delay(3, None) <= 8 for _ in range(100))
    assert all(policy.delay(9, "soon") <= 10 for _ in range(100))


def test_accounts_keep_only_the_hash_and_last_four_digits() -> None:
    details = [
        {
            "securitiesAccount": {
                "accountNumber": "12345678",
                "type": "MARGIN",
                "positions": [
                    {
                        "longQuantity": "10.0",
                        "shortQuantity": "0.0",
                        "averagePrice": "150.1234",
                        "marketValue": "1900.5",
                        "instrument": {"symbol": "AAPL", "assetType": "EQUITY"},
                    }
                ],
                "currentBalances": {"cashBalance": "100.25", "buyingPower": "200.5"},
            }
        },
        {"securitiesAccount": {"accountNumber": "99999999", "type": "CASH"}},
    ]

    [snapshot] = parse_accounts({"12345678": HASH}, details, {"12345678": "Trading"})

    assert snapshot.account.provider_account_id == HASH
    assert snapshot.account.number_last4 == "5678"
    assert (snapshot.account.type, snapshot.account.name) == ("margin", "Trading")
    assert "12345678" not in repr(snapshot)
    assert snapshot.balances.cash_balance == "100.25"
    assert snapshot.balances.buying_power == "200.5"
    assert snapshot.positions[0].average_price == "150.1234"
    assert (
        snapshot.positions_hash == parse_accounts({"12345678": HASH}, details, {})[0].positions_hash
    )


def test_request_instants_are_utc_with_milliseconds() -> None:
    assert instant_text(datetime(2025, 3, 28, 21, 10, 42, 123456, tzinfo=UTC)) == (
        "2025-03-28T21:10:42.123Z"
    )
