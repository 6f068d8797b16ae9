"""Rate limits: an atomic sliding window in Redis, 429 with headers, keys in the app's namespace."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from redis.asyncio import Redis
from tests.support.auth import API, DEFAULT_PASSWORD, login, register, unique_email
from tests.test_config import TestSettings

from dashtam.auth.ratelimit import Rate, hit
from dashtam.core.redis import RedisKeys


@pytest.fixture
def app_settings(app_settings: TestSettings) -> TestSettings:
    return app_settings.model_copy(
        update={
            "RATE_LIMIT_LOGIN": "3/60",
            "RATE_LIMIT_REGISTER": "2/60",
            "RATE_LIMIT_PASSWORD_RESET": "2/60",
            "RATE_LIMIT_REFRESH": "2/60",
            "RATE_LIMIT_VERIFY_EMAIL_RESEND": "2/60",
        }
    )


def _assert_limited(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-ratelimit-limit"] == str(limit)
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert 0 < int(response.headers["retry-after"]) <= 60
    assert response.headers["x-ratelimit-reset"] == response.headers["retry-after"]


async def test_login_is_limited_with_headers(
    client: httpx.AsyncClient, redis: Redis, redis_keys: RedisKeys
) -> None:
    email = unique_email()
    await register(client, email=email)
    body = {"email": email, "password": DEFAULT_PASSWORD}
    responses = [await client.post(f"{API}/auth/login", json=body) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining"] for r in responses[:3]] == ["2", "1", "0"]
    _assert_limited(responses[3], 3)
    assert await redis.exists(redis_keys("ratelimit", "login", "127.0.0.1")) == 1


async def test_register_is_limited(client: httpx.AsyncClient) -> None:
    await register(client)
    await register(client)
    third = await client.post(
        f"{API}/auth/register",
        json={"email": unique_email(), "password": "valid-but-late-pass", "name": "Late"},
    )
    _assert_limited(third, 2)


async def test_password_reset_is_limited(client: httpx.AsyncClient) -> None:
    statuses = []
    for _ in range(3):
        response = await client.post(f"{API}/auth/password-reset", json={"email": unique_email()})
        statuses.append(response.status_code)
    assert statuses == [202, 202, 429]


async def test_verification_resend_is_limited(client: httpx.AsyncClient) -> None:
    email = unique_email()
    responses = [
        await client.post(f"{API}/auth/verify-email/resend", json={"email": email})
        for _ in range(3)
    ]
    assert [r.status_code for r in responses[:2]] == [202, 202]
    _assert_limited(responses[2], 2)


async def test_refresh_is_limited(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email=email)
    token = (await login(client, email))["refresh_token"]
    for _ in range(2):
        response = await client.post(f"{API}/auth/refresh", json={"refresh_token": token})
        assert response.status_code == 200
        token = response.json()["refresh_token"]
    _assert_limited(await client.post(f"{API}/auth/refresh", json={"refresh_token": token}), 2)


async def test_window_is_atomic_under_concurrency(redis: Redis, redis_keys: RedisKeys) -> None:
    key = redis_keys("ratelimit", "concurrency", uuid.uuid4().hex)
    decisions = await asyncio.gather(*(hit(redis, key, Rate(5, 60)) for _ in range(40)))
    allowed = [d.remaining for d in decisions if d and d.allowed]
    assert sorted(allowed) == [0, 1, 2, 3, 4]
    assert all(d is not None for d in decisions)


async def test_separate_keys_have_separate_windows(redis: Redis, redis_keys: RedisKeys) -> None:
    rate = Rate(1, 60)
    decisions = [await hit(redis, redis_keys("ratelimit", name), rate) for name in ("a", "b", "a")]
    assert [d.allowed if d else None for d in decisions] == [True, True, False]
