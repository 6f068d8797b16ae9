"""Revocation outlives Redis: PostgreSQL is the truth, Redis a cache of it that is rebuilt when it
lost its state, and a revocation Redis could not take never lets the access token back in.

The restart case runs against a Redis server of its own (memory only, like the test Redis), so
restarting it touches nobody else's tests.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from redis.asyncio import Redis
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from tests.support.auth import API, bearer, client_for, login, register, unique_email
from tests.support.proxy import CuttingProxy
from tests.support.sandbox import free_port
from tests.test_config import TestSettings

from dashtam.auth.tokens import SessionStates
from dashtam.core.redis import RedisKeys
from dashtam.devenv.profiles import Profile
from dashtam.devenv.redis import RedisService
from dashtam.main import AppResources

ME = f"{API}/users/me"
LOGOUT = f"{API}/auth/logout"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisService]:
    settings = TestSettings(REDIS_PORT=free_port())
    profile = Profile("test", ephemeral=True, env_dir=tmp_path, state_root=tmp_path / "state")
    server = RedisService(profile, settings)
    server.start()
    try:
        yield server
    finally:
        server.destroy()


async def _signed_in(client: httpx.AsyncClient) -> dict[str, str]:
    email = unique_email()
    await register(client, email=email)
    headers = bearer(await login(client, email))
    assert (await client.get(ME, headers=headers)).status_code == 200
    return headers


def _client_of(server: RedisService) -> Redis:
    return Redis(
        port=server.port,
        username=server.username,
        password=server.password,
        decode_responses=True,
    )


async def test_a_logged_out_token_stays_refused_after_redis_restarts_empty(
    own_redis: RedisService,
    app_settings: TestSettings,
    engine: AsyncEngine,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    app_redis = _client_of(own_redis)
    resources = AppResources(engine, session_factory, app_redis)
    async with client_for(app_settings, resources) as client:
        gone, kept = await _signed_in(client), await _signed_in(client)
        assert (await client.post(LOGOUT, headers=gone)).status_code == 204
        assert (await client.get(ME, headers=gone)).status_code == 401
        own_redis.stop()
        own_redis.start()
        look = _client_of(own_redis)
        assert await look.dbsize() == 0  # nothing survived: the cache is gone
        for _ in range(3):  # the first on the app's dead connection, then on a new one
            refused = await client.get(ME, headers=gone)
            assert refused.status_code == 401
            assert refused.json()["detail"] == "The session has ended; sign in again."
        # Rebuilt from PostgreSQL: the revocation is in the cache again, and it is complete.
        states = SessionStates(look, RedisKeys(app_settings.REDIS_KEY_PREFIX), app_settings)
        assert await look.exists(states.complete_key)
        assert await look.get(states.key(_session_of(gone))) == SessionStates.REVOKED
        assert (await client.get(ME, headers=kept)).status_code == 200
        await look.aclose()
    await app_redis.aclose()


def _session_of(headers: dict[str, str]) -> uuid.UUID:
    token = headers["Authorization"].split()[1]
    return uuid.UUID(jwt.decode(token, options={"verify_signature": False})["sid"])


@asynccontextmanager
async def _app_through(
    proxy: CuttingProxy,
    settings: TestSettings,
    engine: AsyncEngine,
    session_factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[httpx.AsyncClient]:
    """An app process whose network to the test Redis goes through `proxy`."""
    redis = Redis(
        port=proxy.port,
        username=settings.REDIS_USERNAME,
        password=settings.REDIS_PASSWORD,
        db=settings.redis_db,
        decode_responses=True,
        socket_connect_timeout=1,
        socket_timeout=1,
    )
    try:
        async with client_for(settings, AppResources(engine, session_factory, redis)) as client:
            yield client
    finally:
        await redis.aclose()


async def test_a_revocation_redis_could_not_take_never_lets_the_token_back(
    app_settings: TestSettings,
    engine: AsyncEngine,
    session_factory: async_sessionmaker[AsyncSession],
    redis: Redis,
    redis_keys: RedisKeys,
) -> None:
    """The network to Redis fails during the logout and comes back with Redis's state as it
    was: the token was cached as fine before, and must not be fine again."""
    async with (
        CuttingProxy(app_settings.REDIS_PORT).running() as proxy,
        _app_through(proxy, app_settings, engine, session_factory) as client,
    ):
        headers = await _signed_in(client)
        proxy.sever()
        assert (await client.post(LOGOUT, headers=headers)).status_code == 204
        assert (await client.get(ME, headers=headers)).status_code == 401  # from PostgreSQL
        proxy.restore()
        assert (await client.get(ME, headers=headers)).status_code == 401
    states = SessionStates(redis, redis_keys, app_settings)
    assert await redis.get(states.key(_session_of(headers))) == SessionStates.REVOKED


async def test_other_processes_take_a_missed_revocation_from_the_database_at_the_resync(
    app_settings: TestSettings,
    engine: AsyncEngine,
    session_factory: async_sessionmaker[AsyncSession],
    client: httpx.AsyncClient,
    redis: Redis,
    redis_keys: RedisKeys,
) -> None:
    """A process that still reaches Redis cannot know of a revocation Redis never got until its
    cache is rebuilt: the completeness marker lives RESYNC_SECONDS; its expiry is the rebuild."""
    states = SessionStates(redis, redis_keys, app_settings)
    async with (
        CuttingProxy(app_settings.REDIS_PORT).running() as proxy,
        _app_through(proxy, app_settings, engine, session_factory) as cut_off,
    ):
        headers = await _signed_in(client)
        assert 0 < await redis.ttl(states.complete_key) <= SessionStates.RESYNC_SECONDS
        proxy.sever()
        assert (await cut_off.post(LOGOUT, headers=headers)).status_code == 204
        await redis.delete(states.complete_key)  # what its expiry does
        assert (await client.get(ME, headers=headers)).status_code == 401
        assert await redis.get(states.key(_session_of(headers))) == SessionStates.REVOKED
        assert await redis.exists(states.complete_key)


async def test_an_authenticated_read_with_a_complete_cache_runs_no_sql(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    headers = await _signed_in(client)
    statements: list[str] = []

    def seen(*args: Any) -> None:
        statements.append(args[2])

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        for _ in range(3):
            assert (await client.get(ME, headers=headers)).status_code == 200
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
    assert statements == []
