"""The signed-in user is read from Redis after the first request, and forgotten when it changes."""

from __future__ import annotations

import json

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession
from tests.support.auth import API, Outbox, bearer, login, register, unique_email, user_row

from dashtam.core.redis import RedisKeys

ME = f"{API}/users/me"


async def _signed_in(client: httpx.AsyncClient) -> tuple[str, dict[str, str], str]:
    """A new user's email, Authorization headers, and the Redis key of their cached principal."""
    email = unique_email()
    user = await register(client, email=email)
    return email, bearer(await login(client, email)), user["id"].replace("-", "")


async def test_me_is_answered_from_the_cached_principal(
    client: httpx.AsyncClient, redis: Redis, redis_keys: RedisKeys
) -> None:
    _, headers, user_hex = await _signed_in(client)
    key = redis_keys("principal", user_hex)
    assert await redis.get(key) is None
    me = (await client.get(ME, headers=headers)).json()
    assert set(me) == {"id", "email", "name", "email_verified_at", "created_at"}
    assert me["name"] == "Test User"
    cached = json.loads(await redis.get(key))
    assert cached["name"] == "Test User"
    assert 0 < await redis.ttl(key) <= 300
    await redis.set(key, json.dumps({**cached, "name": "From the cache"}))
    assert (await client.get(ME, headers=headers)).json()["name"] == "From the cache"


async def test_an_unreadable_cache_entry_is_read_again_from_the_database(
    client: httpx.AsyncClient, redis: Redis, redis_keys: RedisKeys
) -> None:
    _, headers, user_hex = await _signed_in(client)
    key = redis_keys("principal", user_hex)
    await redis.set(key, "{not json")
    response = await client.get(ME, headers=headers)
    assert response.status_code == 200
    assert response.json()["name"] == "Test User"
    assert json.loads(await redis.get(key))["name"] == "Test User"


async def test_verifying_the_email_forgets_the_cached_principal(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    email, headers, _ = await _signed_in(client)
    assert (await client.get(ME, headers=headers)).json()["email_verified_at"] is None
    token = outbox.token(email, "Verify")
    assert (await client.post(f"{API}/auth/verify-email", json={"token": token})).is_success
    assert (await client.get(ME, headers=headers)).json()["email_verified_at"] is not None


async def test_a_deactivated_user_is_refused_once_the_cache_entry_is_gone(
    client: httpx.AsyncClient, session: AsyncSession, redis: Redis, redis_keys: RedisKeys
) -> None:
    email, headers, user_hex = await _signed_in(client)
    assert (await client.get(ME, headers=headers)).status_code == 200
    user = await user_row(session, email)
    user.is_active = False
    await session.flush()
    await redis.delete(redis_keys("principal", user_hex))
    response = await client.get(ME, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_logout_ends_a_session_whose_user_is_cached(client: httpx.AsyncClient) -> None:
    _, headers, _ = await _signed_in(client)
    assert (await client.get(ME, headers=headers)).status_code == 200
    assert (await client.post(f"{API}/auth/logout", headers=headers)).status_code == 204
    assert (await client.get(ME, headers=headers)).status_code == 401
