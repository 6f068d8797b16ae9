"""Rate limits: an atomic sliding window in Redis, 429 with headers, keys in the app's namespace."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from redis.asyncio import Redis
from tests.support.auth import API, DEFAULT_PASSWORD, login, register, unique_email
from tests.test_config import TestSettings

from dashtam.auth.ratelimit import Limit, Rate, hit
from dashtam.core.config import EXAMPLE_ENV_DIR, load_settings
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
    assert response.json()["setting"] in response.json()["detail"]


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


async def test_register_is_limited_and_the_429_names_its_setting(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    await register(client)
    third = await client.post(
        f"{API}/auth/register",
        json={"email": unique_email(), "password": "valid-but-late-pass", "name": "Late"},
    )
    _assert_limited(third, 2)
    assert third.json()["setting"] == "RATE_LIMIT_REGISTER"
    assert "at most 2 per 60 seconds (RATE_LIMIT_REGISTER)" in third.json()["detail"]


async def test_only_registrations_that_create_an_account_count(
    client: httpx.AsyncClient,
) -> None:
    """Malformed bodies (422), weak passwords and duplicates create nothing: all are free."""
    taken = (await register(client))["email"]
    attempts = [
        {"email": "not-an-address", "password": DEFAULT_PASSWORD, "name": "Typo"},
        {"email": unique_email(), "password": "short-pw-1", "name": "Weak"},
        {"email": taken, "password": DEFAULT_PASSWORD, "name": "Again"},
    ]
    for body in attempts * 2:
        response = await client.post(f"{API}/auth/register", json=body)
        assert response.status_code in (409, 422), response.text
    second = await register(client)  # the second account of a 2/60 limit: still allowed
    assert second["email"]
    late = await client.post(
        f"{API}/auth/register",
        json={"email": unique_email(), "password": DEFAULT_PASSWORD, "name": "Third"},
    )
    _assert_limited(late, 2)


async def test_a_malformed_login_does_not_count_but_a_wrong_password_does(
    client: httpx.AsyncClient,
) -> None:
    email = unique_email()
    await register(client, email=email)
    for _ in range(5):
        malformed = await client.post(f"{API}/auth/login", json={"email": email})
        assert malformed.status_code == 422
    wrong = {"email": email, "password": "not-the-password-at-all"}
    statuses = [(await client.post(f"{API}/auth/login", json=wrong)).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


def test_dev_allows_someone_trying_the_api_many_sign_ups() -> None:
    dev = load_settings(EXAMPLE_ENV_DIR / ".env.dev.example")
    rate = Rate.for_limit(dev, Limit.REGISTER)
    assert rate.requests / rate.window_seconds * 3600 >= 50


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
