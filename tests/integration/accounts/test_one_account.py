"""The same brokerage account reached through two connections is one account.

Two provider instances of one user logged in to the same sandbox login list the same account
hashes. Before accounts were unique per (user, provider, provider account id), each connection
kept its own copy: every account listed twice, its transactions twice, the portfolio's
liquidation value doubled.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
from tests.integration.accounts.conftest import Harness
from tests.support.sandbox import another_connection

from dashtam.accounts import service
from dashtam.accounts.sync import Outcome
from dashtam.auth.principal import Principal
from dashtam.models import Account, Provider, ProviderConnection, User


async def _principal(h: Harness) -> Principal:
    async with AsyncSession(h.engine) as session:
        user = await session.scalar(
            select(User)
            .join(Provider, col(Provider.user_id) == col(User.id))
            .where(col(Provider.id) == h.connection.provider_id)
        )
        assert user is not None
        return Principal.model_validate(user)


def _liquidation(h: Harness) -> Decimal:
    """The sandbox's accounts counted once: cash plus long market value each."""
    return sum((a.cash + a.long_market_value for a in h.sandbox.data.accounts), Decimal(0))


async def _user_rows(h: Harness, user: Principal) -> tuple[int, int]:
    """The user's stored accounts and transactions, through all of their connections."""
    async with h.engine.connect() as conn:
        accounts, transactions = (
            await conn.execute(
                text(
                    "SELECT count(DISTINCT a.id), count(t.id) FROM accounts a "
                    "JOIN provider_connections c ON c.id = a.connection_id "
                    "JOIN providers p ON p.id = c.provider_id "
                    "LEFT JOIN transactions t ON t.account_id = a.id WHERE p.user_id = :user"
                ),
                {"user": user.id},
            )
        ).one()
    return int(accounts), int(transactions)


async def test_two_connections_to_one_login_hold_each_account_once(harness: Harness) -> None:
    _, first = await harness.sync()
    second = dataclasses.replace(
        harness, connection=await another_connection(harness.engine, harness.connection, "Again")
    )
    run_id, outcome = await second.sync()

    assert first is outcome is Outcome.SUCCEEDED
    user = await _principal(harness)
    accounts, transactions = await _user_rows(harness, user)
    assert accounts == len(harness.sandbox.data.accounts)
    assert transactions == harness.expected_transactions()
    async with AsyncSession(harness.engine) as session:
        listed = await service.list_accounts(session, user)
        totals = await service.portfolio(session, user)
        run = await service.get_sync(session, user, run_id)
    assert len({a.id for a in listed}) == len(listed) == accounts
    assert {a.provider_id for a in listed} == {harness.connection.provider_id}
    assert totals.liquidation_value == _liquidation(harness)
    assert len(totals.accounts) == accounts
    # the second connection's run copied nothing and says it had no account of its own
    assert (run.status, run.accounts_total, run.inserted) == ("succeeded", 0, 0)


async def test_a_connection_that_stopped_working_hands_its_accounts_over(
    harness: Harness,
) -> None:
    await harness.sync()
    second = dataclasses.replace(
        harness, connection=await another_connection(harness.engine, harness.connection, "Again")
    )
    async with harness.engine.begin() as conn:
        await conn.execute(
            text("UPDATE provider_connections SET status = 'needs_reauth' WHERE id = :id"),
            {"id": harness.connection.id},
        )

    run_id, outcome = await second.sync()

    assert outcome is Outcome.SUCCEEDED
    user = await _principal(harness)
    assert await _user_rows(harness, user) == (
        len(harness.sandbox.data.accounts),
        harness.expected_transactions(),
    )
    async with AsyncSession(harness.engine) as session:
        listed = await service.list_accounts(session, user)
        totals = await service.portfolio(session, user)
        run = await service.get_sync(session, user, run_id)
    assert {a.provider_id for a in listed} == {second.connection.provider_id}
    assert totals.liquidation_value == _liquidation(harness)
    # the history came along: resumed from the watermark, nothing new to insert
    assert run.accounts_total == len(listed)
    assert run.inserted == 0


async def test_the_database_refuses_a_second_copy(harness: Harness) -> None:
    await harness.sync()
    other: ProviderConnection = await another_connection(
        harness.engine, harness.connection, "Again"
    )
    async with harness.engine.connect() as conn:
        held = (
            await conn.execute(
                select(Account).where(col(Account.connection_id) == harness.connection.id).limit(1)
            )
        ).one()
    with pytest.raises(IntegrityError, match="uq_accounts_user_provider_account"):
        async with harness.engine.begin() as conn:
            await conn.execute(
                Account.__table__.insert().values(  # type: ignore[attr-defined]
                    connection_id=other.id,
                    user_id=held.user_id,
                    provider_key=held.provider_key,
                    provider_account_id=held.provider_account_id,
                    number_last4=held.number_last4,
                    type=held.type,
                    name=held.name,
                    currency="USD",
                    status="active",
                )
            )
