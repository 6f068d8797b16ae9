"""Without Redis, signing in still works: rate limits fail open, revocation falls back to the DB."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from tests.support.auth import API, bearer, client_for, login, register, unique_email
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


async def test_register_login_and_me_work_without_redis(
    no_redis_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    email = unique_email()
    await register(no_redis_client, email=email)
    tokens = await login(no_redis_client, email)
    assert (await no_redis_client.get(f"{API}/users/me", headers=bearer(tokens))).status_code == 200
    warnings = {r.message for r in caplog.records if r.levelno == logging.WARNING}
    assert "rate limiting skipped: Redis is unavailable" in warnings
    assert "Redis unavailable; checking the session and user in the database" in warnings


async def test_logout_still_ends_the_session_without_redis(
    no_redis_client: httpx.AsyncClient,
) -> None:
    email = unique_email()
    await register(no_redis_client, email=email)
    tokens = await login(no_redis_client, email)
    assert (
        await no_redis_client.post(f"{API}/auth/logout", headers=bearer(tokens))
    ).status_code == 204
    me = await no_redis_client.get(f"{API}/users/me", headers=bearer(tokens))
    assert me.status_code == 401


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
    assert "x-ratelimit-limit" not in responses[0].headers
