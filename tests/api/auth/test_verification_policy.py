"""REQUIRE_EMAIL_VERIFICATION: off (default) lets new users in; on asks them to verify first."""

from __future__ import annotations

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from tests.support.auth import (
    API,
    DEFAULT_PASSWORD,
    Outbox,
    client_for,
    login,
    register,
    unique_email,
)
from tests.test_config import TestSettings

from dashtam.main import AppResources


async def test_by_default_unverified_users_can_sign_in(
    client: httpx.AsyncClient, app_settings: TestSettings
) -> None:
    assert app_settings.REQUIRE_EMAIL_VERIFICATION is False
    email = unique_email()
    await register(client, email=email)
    assert (await login(client, email))["token_type"] == "bearer"


@pytest.fixture
async def strict_client(
    app_settings: TestSettings,
    engine: AsyncEngine,
    session_factory: async_sessionmaker[AsyncSession],
    redis: Redis,
    outbox: Outbox,
) -> object:
    settings = app_settings.model_copy(update={"REQUIRE_EMAIL_VERIFICATION": True})
    async with client_for(settings, AppResources(engine, session_factory, redis), outbox) as c:
        yield c


async def test_when_required_unverified_users_are_asked_to_verify(
    strict_client: httpx.AsyncClient, outbox: Outbox
) -> None:
    email = unique_email()
    await register(strict_client, email=email)
    refused = await strict_client.post(
        f"{API}/auth/login", json={"email": email, "password": DEFAULT_PASSWORD}
    )
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert "Verify your email" in refused.json()["detail"]
    verified = await strict_client.post(
        f"{API}/auth/verify-email", json={"token": outbox.token(email, "Verify")}
    )
    assert verified.status_code == 200
    assert (await login(strict_client, email))["token_type"] == "bearer"


async def test_when_required_a_wrong_password_still_looks_like_any_other(
    strict_client: httpx.AsyncClient,
) -> None:
    email = unique_email()
    await register(strict_client, email=email)
    response = await strict_client.post(
        f"{API}/auth/login", json={"email": email, "password": "wrong-password-x"}
    )
    assert response.status_code == 401
