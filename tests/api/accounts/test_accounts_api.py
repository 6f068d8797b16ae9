"""The accounts API over HTTP: shapes, ownership, pagination, and starting syncs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
from tests.support.auth import signup_and_login, unique_email
from tests.test_config import TestSettings

from dashtam.jobs.queue import queue_name
from dashtam.models import (
    Account,
    BalanceSnapshot,
    Position,
    Provider,
    ProviderConnection,
    Transaction,
    User,
)

API = "/api/v1"
START = datetime(2025, 1, 1, tzinfo=UTC)


class Seeded:
    def __init__(self, headers: dict[str, str], provider_id: uuid.UUID, accounts: list[Account]):
        self.headers = headers
        self.provider_id = provider_id
        self.accounts = accounts


def _transactions(account_id: uuid.UUID, count: int) -> list[Transaction]:
    """Every third one shares its time with the previous, to test the tie-breaking order."""
    return [
        Transaction(
            account_id=account_id,
            provider_transaction_id=str(1000 + n),
            time=START + timedelta(hours=n - n % 3 // 2),
            type="TRADE" if n % 2 else "DIVIDEND_OR_INTEREST",
            status="pending" if n % 10 == 0 else "posted",
            description=f"tx {n}",
            symbol="AAPL" if n % 4 == 0 else None,
            net_amount=Decimal("-1234.56") if n == 0 else Decimal(n) / 100,
            items=[{"symbol": "AAPL", "quantity": "10", "price": "190.1234"}],
            content_hash=f"{n:032d}",
        )
        for n in range(count)
    ]


async def seed(client: httpx.AsyncClient, session: AsyncSession, transactions: int = 5) -> Seeded:
    email = unique_email()
    headers = await signup_and_login(client, email=email)
    user = await session.scalar(select(User).where(col(User.email) == email))
    assert user is not None
    provider = Provider(user_id=user.id, provider_key="schwab", alias="Schwab")
    connection = ProviderConnection(provider_id=provider.id, status="active")
    accounts = [
        Account(
            connection_id=connection.id,
            user_id=user.id,
            provider_key="schwab",
            provider_account_id=f"HASH{n}{uuid.uuid4().hex}",
            number_last4=f"000{n}",
            type="margin" if n == 0 else "cash",
            name=f"Account {n}",
        )
        for n in range(2)
    ]
    session.add_all([provider, connection])
    await session.flush()
    session.add_all(accounts)
    await session.flush()
    for n, account in enumerate(accounts):
        for day, cash in enumerate(("100.10", "200.20")):
            session.add(
                BalanceSnapshot(
                    account_id=account.id,
                    as_of=START + timedelta(days=day),
                    cash_balance=Decimal(cash),
                    liquidation_value=Decimal(cash) + 1000 * (n + 1),
                    long_market_value=Decimal(1000 * (n + 1)),
                    content_hash=str(day),
                )
            )
        session.add(
            Position(
                account_id=account.id,
                symbol="AAPL",
                asset_type="EQUITY",
                cusip="037833100",
                long_quantity=Decimal(10),
                short_quantity=Decimal(0),
                average_price=Decimal("150.1234"),
                market_value=Decimal("1900.00"),
                day_profit_loss=Decimal("-12.34"),
                as_of=START,
            )
        )
    session.add_all(_transactions(accounts[0].id, transactions))
    await session.commit()
    return Seeded(headers, provider.id, accounts)


@pytest.fixture
async def queue_keys(redis: Redis, app_settings: TestSettings) -> AsyncIterator[None]:
    """arq keeps job keys under its own prefix; remove the ones these tests enqueue."""
    yield
    async for key in redis.scan_iter(match=f"arq:*{app_settings.REDIS_KEY_PREFIX}*"):
        await redis.delete(key)


async def test_accounts_with_latest_balances_and_exact_money(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    seeded = await seed(client, session)

    response = await client.get(f"{API}/accounts", headers=seeded.headers)

    assert response.status_code == 200
    body = response.json()
    assert [a["name"] for a in body] == ["Account 0", "Account 1"]
    first = body[0]
    assert first["number_last4"] == "0000"
    assert first["provider_id"] == str(seeded.provider_id)
    assert "provider_account_id" not in first
    assert first["balances"]["cash_balance"] == "200.20"
    assert first["balances"]["as_of"] == "2025-01-02T00:00:00Z"
    one = await client.get(f"{API}/accounts/{first['id']}", headers=seeded.headers)
    assert one.json() == first


async def test_positions_balances_and_portfolio(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    seeded = await seed(client, session)
    account = seeded.accounts[0]

    positions = (
        await client.get(f"{API}/accounts/{account.id}/positions", headers=seeded.headers)
    ).json()
    balances = (
        await client.get(
            f"{API}/accounts/{account.id}/balances",
            params={"from": "2025-01-02T00:00:00Z"},
            headers=seeded.headers,
        )
    ).json()
    portfolio = (await client.get(f"{API}/portfolio", headers=seeded.headers)).json()

    assert [(p["symbol"], p["average_price"]) for p in positions] == [("AAPL", "150.1234")]
    assert [b["cash_balance"] for b in balances] == ["200.20"]
    assert portfolio["cash_balance"] == "400.40"
    assert portfolio["liquidation_value"] == "3400.40"
    assert portfolio["day_profit_loss"] == "-24.68"
    assert [line["long_market_value"] for line in portfolio["accounts"]] == ["1000", "2000"]


async def test_pages_return_every_transaction_once_in_a_stable_order(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    seeded = await seed(client, session, transactions=250)
    url = f"{API}/accounts/{seeded.accounts[0].id}/transactions"
    seen: list[dict[str, Any]] = []
    cursor = None

    while True:
        params: dict[str, Any] = {"limit": 37} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(url, params=params, headers=seeded.headers)).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert len(seen) == len({t["id"] for t in seen}) == 250
    keys = [(t["time"], t["id"]) for t in seen]
    assert keys == sorted(keys, reverse=True)
    oldest = seen[-1]
    assert oldest["net_amount"] == "-1234.56"
    assert oldest["time"] == "2025-01-01T00:00:00Z"
    assert oldest["items"][0]["price"] == "190.1234"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "pending"}, 25),
        ({"symbol": "AAPL"}, 63),
        ({"type": "TRADE"}, 125),
        ({"from": "2025-01-02T00:00:00Z", "to": "2025-01-03T00:00:00Z"}, 24),
    ],
)
async def test_transaction_filters(
    client: httpx.AsyncClient, session: AsyncSession, params: dict[str, str], expected: int
) -> None:
    seeded = await seed(client, session, transactions=250)
    url = f"{API}/accounts/{seeded.accounts[0].id}/transactions"

    page = (await client.get(url, params=params | {"limit": 500}, headers=seeded.headers)).json()

    assert len(page["items"]) == expected


async def test_another_users_data_is_not_found(
    client: httpx.AsyncClient, session: AsyncSession, queue_keys: None
) -> None:
    owner = await seed(client, session)
    stranger = await signup_and_login(client)
    account = owner.accounts[0]
    transaction = await session.scalar(
        select(Transaction).where(col(Transaction.account_id) == account.id)
    )
    assert transaction is not None
    run = await client.post(f"{API}/providers/{owner.provider_id}/syncs", headers=owner.headers)
    paths = [
        f"/accounts/{account.id}",
        f"/accounts/{account.id}/positions",
        f"/accounts/{account.id}/balances",
        f"/accounts/{account.id}/transactions",
        f"/transactions/{transaction.id}",
        f"/providers/{owner.provider_id}/syncs",
        f"/syncs/{run.json()['id']}",
    ]

    for path in paths:
        assert (await client.get(API + path, headers=owner.headers)).status_code == 200, path
        response = await client.get(API + path, headers=stranger)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
    post = await client.post(f"{API}/providers/{owner.provider_id}/syncs", headers=stranger)
    assert post.status_code == 404
    assert (await client.get(f"{API}/accounts", headers=stranger)).json() == []
    assert (await client.get(f"{API}/portfolio", headers=stranger)).json()["accounts"] == []


async def test_a_sync_request_while_one_is_active_returns_that_run(
    client: httpx.AsyncClient,
    session: AsyncSession,
    redis: Redis,
    app_settings: TestSettings,
    queue_keys: None,
) -> None:
    seeded = await seed(client, session)
    url = f"{API}/providers/{seeded.provider_id}/syncs"

    first = await client.post(url, headers=seeded.headers)
    second = await client.post(url, headers=seeded.headers)

    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["status"] == "queued"
    assert await redis.zcard(queue_name(app_settings)) == 1
    listed = (await client.get(url, headers=seeded.headers)).json()
    assert [r["id"] for r in listed] == [first.json()["id"]]


async def test_a_connection_that_needs_reauth_cannot_sync(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    seeded = await seed(client, session)
    connection = await session.scalar(
        select(ProviderConnection).where(col(ProviderConnection.provider_id) == seeded.provider_id)
    )
    assert connection is not None
    connection.status = "needs_reauth"
    await session.commit()

    response = await client.post(
        f"{API}/providers/{seeded.provider_id}/syncs", headers=seeded.headers
    )

    assert response.status_code == 409
    assert response.json()["type"].endswith("connection_needs_reauth")
