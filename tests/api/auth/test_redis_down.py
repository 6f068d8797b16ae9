"""Without Redis, signing in and reading still work (their rate limits fail open, sessions and
users are read from the database); requests that mail someone are refused (fail closed)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from tests.support.auth import (
    API,
    DEFAULT_PASSWORD,
    bearer,
    client_for,
    login,
    register,
    unique_email,
)
from tests.test_config import TestSettings

from dashtam.main import AppResources


@pytest.fixture
async def no_redis_client(
    app_settings: TestSettings,
    engine: AsyncEngine,
    session_factory: async_sessionmaker[AsyncSession],
    unused_tcp_port: int,
) -> AsyncIterator[httpx.AsyncClient]:
    dead = Redis(host="127.0.0.1", port=unused_tcp_port, socket_connect_timeout=0.5)
    async with client_for(app_settings, AppResources(engine, session_factory, dead)) as client:
        yield client
    await dead.aclose()


async def test_login_and_me_work_without_redis(
    client: httpx.AsyncClient,
    no_redis_client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    email = unique_email()
    await register(client, email=email)
    caplog.set_level(logging.WARNING)
    tokens = await login(no_redis_client, email)
    me = await no_redis_client.get(f"{API}/users/me", headers=bearer(tokens))
    assert me.status_code == 200
    assert "ratelimit-limit" not in me.headers
    warnings = {r.message for r in caplog.records if r.levelno == logging.WARNING}
    assert "rate limiting skipped: Redis is unavailable" in warnings
    assert "Redis unavailable; checking the session and user in the database" in warnings


async def test_logout_still_ends_the_session_without_redis(
    client: httpx.AsyncClient, no_redis_client: httpx.AsyncClient
) -> None:
    email = unique_email()
    await register(client, email=email)
    tokens = await login(no_redis_client, email)
    assert (
        await no_redis_client.post(f"{API}/auth/logout", headers=bearer(tokens))
    ).status_code == 204
    me = await no_redis_client.get(f"{API}/users/me", headers=bearer(tokens))
    assert me.status_code == 401


@pytest.mark.parametrize(
    ("path", "body", "setting"),
    [
        ("/auth/register", {"password": DEFAULT_PASSWORD, "name": "N"}, "RATE_LIMIT_REGISTER"),
        ("/auth/password-reset", {}, "RATE_LIMIT_PASSWORD_RESET"),
        ("/auth/verify-email/resend", {}, "RATE_LIMIT_VERIFY_EMAIL_RESEND"),
    ],
)
async def test_requests_that_mail_someone_fail_closed_without_redis(
    no_redis_client: httpx.AsyncClient, path: str, body: dict[str, str], setting: str
) -> None:
    response = await no_redis_client.post(f"{API}{path}", json={"email": unique_email(), **body})
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "30"
    assert response.json()["setting"] == setting
    assert "Redis cannot be reached" in response.json()["detail"]


async def test_rate_limits_can_be_switched_off(
    app_settings: TestSettings,
    engine: AsyncEngine,
    session_factory: async_sessionmaker[AsyncSession],
    redis: Redis,
) -> None:
    settings = app_settings.model_copy(
        update={"RATE_LIMITS_ENABLED": False, "RATE_LIMIT_LOGIN": "1/60"}
    )
    async with client_for(settings, AppResources(engine, session_factory, redis)) as client:
        body = {"email": unique_email(), "password": "wrong-password-x"}
        responses = [await client.post(f"{API}/auth/login", json=body) for _ in range(3)]
    assert [r.status_code for r in responses] == [401, 401, 401]
    assert "ratelimit-limit" not in responses[0].headers
