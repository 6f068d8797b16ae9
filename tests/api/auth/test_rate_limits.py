"""Rate limits: GCRA in Redis, atomic; 429 with RateLimit-* and Retry-After; keys in the app's
namespace; per client IP on anonymous routes, per user on authenticated ones."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from redis.asyncio import Redis
from tests.support.auth import (
    API,
    DEFAULT_PASSWORD,
    login,
    register,
    signup_and_login,
    unique_email,
)
from tests.test_config import TestSettings

from dashtam.auth.ratelimit import Limit, Rate, RateLimiter
from dashtam.core.config import EXAMPLE_ENV_DIR, load_settings
from dashtam.core.errors import ProblemError
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
            "RATE_LIMIT_AUTHENTICATED": "4/60",
            "RATE_LIMIT_ANONYMOUS": "3/60",
        }
    )


def _assert_limited(response: httpx.Response, limit: int, window: int = 60) -> None:
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["ratelimit-limit"] == str(limit)
    assert response.headers["ratelimit-remaining"] == "0"
    assert response.headers["ratelimit-policy"] == f"{limit};w={window}"
    retry_after = int(response.headers["retry-after"])
    # The next request is allowed once one request's share of the window has passed; the
    # whole burst is back after at most the window.
    assert 0 < retry_after <= -(-window // limit)
    assert retry_after <= int(response.headers["ratelimit-reset"]) <= window
    assert response.json()["setting"] in response.json()["detail"]


async def test_login_is_limited_with_headers(
    client: httpx.AsyncClient, redis: Redis, redis_keys: RedisKeys
) -> None:
    email = unique_email()
    await register(client, email=email)
    body = {"email": email, "password": DEFAULT_PASSWORD}
    responses = [await client.post(f"{API}/auth/login", json=body) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r.headers["ratelimit-remaining"] for r in responses[:3]] == ["2", "1", "0"]
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


def _limiter(redis: Redis, redis_keys: RedisKeys, settings: TestSettings, rate: str) -> RateLimiter:
    return RateLimiter(redis, redis_keys, settings.model_copy(update={"RATE_LIMIT_LOGIN": rate}))


async def test_counting_is_atomic_under_concurrency(
    redis: Redis, redis_keys: RedisKeys, app_settings: TestSettings
) -> None:
    limiter = _limiter(redis, redis_keys, app_settings, "5/60")
    outcomes = await asyncio.gather(
        *(limiter.hit(Limit.LOGIN, "concurrent") for _ in range(40)), return_exceptions=True
    )
    allowed = sorted(o.remaining for o in outcomes if not isinstance(o, BaseException) and o)
    assert allowed == [0, 1, 2, 3, 4]
    refused = [o for o in outcomes if isinstance(o, ProblemError)]
    assert len(refused) == 35
    assert {o.status for o in refused} == {429}


async def test_separate_subjects_have_separate_limits(
    redis: Redis, redis_keys: RedisKeys, app_settings: TestSettings
) -> None:
    limiter = _limiter(redis, redis_keys, app_settings, "1/60")
    assert await limiter.hit(Limit.LOGIN, "a")
    assert await limiter.hit(Limit.LOGIN, "b")
    with pytest.raises(ProblemError):
        await limiter.hit(Limit.LOGIN, "a")


async def test_a_burst_refills_evenly_over_the_window(
    redis: Redis, redis_keys: RedisKeys, app_settings: TestSettings
) -> None:
    """GCRA: after a full burst, one request's share of the window later there is room for
    exactly one more (simulated by moving the stored arrival time back, not by sleeping)."""
    limiter = _limiter(redis, redis_keys, app_settings, "4/60")
    for _ in range(4):
        assert await limiter.hit(Limit.LOGIN, "refill")
    key = limiter.key(Limit.LOGIN, "refill")
    await redis.decrby(key, 15_000_000)  # 15 s pass: a quarter of the window, one request
    assert await limiter.hit(Limit.LOGIN, "refill")
    with pytest.raises(ProblemError):
        await limiter.hit(Limit.LOGIN, "refill")


async def test_authenticated_routes_are_limited_per_user_not_per_address(
    client: httpx.AsyncClient, redis: Redis, redis_keys: RedisKeys
) -> None:
    alice, bob = await signup_and_login(client), await signup_and_login(client)
    responses = [await client.get(f"{API}/users/me", headers=alice) for _ in range(5)]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 429]
    assert [r.headers["ratelimit-remaining"] for r in responses[:4]] == ["3", "2", "1", "0"]
    _assert_limited(responses[4], 4)
    assert "for this account" in responses[4].json()["detail"]
    assert responses[4].json()["setting"] == "RATE_LIMIT_AUTHENTICATED"
    # Bob shares Alice's address (127.0.0.1) but not her limit.
    assert (await client.get(f"{API}/users/me", headers=bob)).status_code == 200
    assert await redis.exists(redis_keys("ratelimit", "authenticated", "127.0.0.1")) == 0


async def test_anonymous_routes_without_a_limit_of_their_own_share_one_per_address(
    client: httpx.AsyncClient,
) -> None:
    responses = [await client.get("/health") for _ in range(3)]
    responses.append(await client.post(f"{API}/auth/verify-email", json={"token": "x" * 43}))
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    _assert_limited(responses[3], 3)
    assert responses[3].json()["setting"] == "RATE_LIMIT_ANONYMOUS"
