"""A session ends SESSION_LIFETIME_SECONDS after sign-in however often it is refreshed, and a
refresh checks the user again (still active, verified when that is required)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import jwt
from redis.asyncio import Redis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlmodel import select
from tests.support.auth import API, bearer, client_for, login, register, unique_email, user_row
from tests.test_config import TestSettings

from dashtam.auth.tokens import hash_token
from dashtam.main import AppResources
from dashtam.models.auth import AuthSession, RefreshToken

DAY = timedelta(days=1)


async def _refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(f"{API}/auth/refresh", json={"refresh_token": token})


async def _signed_in(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    email = unique_email()
    await register(client, email=email)
    return email, await login(client, email)


async def _session_of(session: AsyncSession, refresh_token: str) -> AuthSession:
    token = await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == hash_token(refresh_token))
    )
    assert token is not None
    row = await session.get(AuthSession, token.session_id, populate_existing=True)
    assert row is not None
    return row


async def _age(session: AsyncSession, refresh_token: str, by: timedelta) -> AuthSession:
    """Pretend the session signed in `by` ago (and was refreshed just now)."""
    row = await _session_of(session, refresh_token)
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == row.id)
        .values(created_at=datetime.now(UTC) - by)
    )
    await session.commit()
    return await _session_of(session, refresh_token)


def test_the_default_lifetime_is_ninety_days(app_settings: TestSettings) -> None:
    assert TestSettings.model_fields["SESSION_LIFETIME_SECONDS"].default == 90 * 24 * 3600
    assert app_settings.REFRESH_TOKEN_TTL_SECONDS < app_settings.SESSION_LIFETIME_SECONDS


async def test_refresh_does_not_extend_a_session_past_its_lifetime(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    _, tokens = await _signed_in(client)
    await _age(session, tokens["refresh_token"], 91 * DAY)
    refused = await _refresh(client, tokens["refresh_token"])
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"


async def test_tokens_issued_near_the_end_end_with_the_session(
    client: httpx.AsyncClient, session: AsyncSession, app_settings: TestSettings
) -> None:
    _, tokens = await _signed_in(client)
    aged = await _age(session, tokens["refresh_token"], 90 * DAY - timedelta(minutes=5))
    assert aged.created_at is not None
    ends = aged.created_at + timedelta(seconds=app_settings.SESSION_LIFETIME_SECONDS)
    response = await _refresh(client, tokens["refresh_token"])
    assert response.status_code == 200
    pair = response.json()
    stored = await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == hash_token(pair["refresh_token"]))
    )
    assert stored is not None
    assert stored.expires_at <= ends  # not 30 days from now
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    assert claims["exp"] <= ends.timestamp()  # not the full 15 minutes either
    assert pair["expires_in"] <= 5 * 60


async def test_the_lifetime_is_configurable(
    app_settings: TestSettings,
    engine: AsyncEngine,
    session_factory: async_sessionmaker[AsyncSession],
    redis: Redis,
    session: AsyncSession,
) -> None:
    short = app_settings.model_copy(update={"SESSION_LIFETIME_SECONDS": 3600})
    async with client_for(short, AppResources(engine, session_factory, redis)) as client:
        _, tokens = await _signed_in(client)
        await _age(session, tokens["refresh_token"], timedelta(minutes=59))
        again = await _refresh(client, tokens["refresh_token"])
        assert again.status_code == 200
        await _age(session, again.json()["refresh_token"], timedelta(minutes=61))
        assert (await _refresh(client, again.json()["refresh_token"])).status_code == 401


async def test_an_ended_session_is_not_listed(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    email = unique_email()
    await register(client, email=email)
    old, current = await login(client, email), await login(client, email)
    await _age(session, old["refresh_token"], 91 * DAY)
    listed = await client.get(f"{API}/auth/sessions", headers=bearer(current))
    assert [s["current"] for s in listed.json()] == [True]


async def test_refresh_refuses_a_deactivated_user(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    email, tokens = await _signed_in(client)
    (await user_row(session, email)).is_active = False
    await session.commit()
    assert (await _refresh(client, tokens["refresh_token"])).status_code == 401


async def test_refresh_asks_for_verification_once_it_is_required(
    client: httpx.AsyncClient,
    app_settings: TestSettings,
    engine: AsyncEngine,
    session_factory: async_sessionmaker[AsyncSession],
    redis: Redis,
) -> None:
    """Signed in while verification was optional; the operator has since required it."""
    _, tokens = await _signed_in(client)
    strict = app_settings.model_copy(update={"REQUIRE_EMAIL_VERIFICATION": True})
    async with client_for(strict, AppResources(engine, session_factory, redis)) as strict_client:
        refused = await _refresh(strict_client, tokens["refresh_token"])
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("email_not_verified")
