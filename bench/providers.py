"""Provider benchmarks: the OAuth round trip, 100 callers on an expiring connection, and the
cost of encrypting plus decrypting one token.

The app and the sandbox run in this process as ASGI apps (httpx.ASGITransport), so the numbers
are Dashtam's own work (PostgreSQL, Redis, crypto, the sandbox's token endpoint) without network
hops. They use a database of their own, cloned from the migrated test template and dropped
afterwards, and a Redis prefix of their own.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from datetime import timedelta

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from tests.support.auth import signup_and_login
from tests.support.databases import create_worker_database, drop_worker_database
from tests.support.providers import (
    ProviderFlow,
    consent,
    delete_owner,
    in_process_sandbox,
    sandbox_client,
    sandbox_grant,
    seed_connection,
)
from tests.test_config import TEST_ENV_FILE, TestSettings

from dashtam.core.config import ENV_FILE_VARIABLE
from dashtam.core.crypto import TokenCipher, token_binding
from dashtam.core.database import create_engine, create_session_factory
from dashtam.core.init_test_db import check_settings_are_for_testing
from dashtam.main import AppResources, create_app
from dashtam.providers.service import get_access_token

ROUND_TRIPS = 30
CALLERS = 100
CRYPTO_ROUNDS = 20_000
SAMPLE_TOKEN = "I0." + "x" * 43 + "@"  # the shape of a Schwab access token


def crypto_microseconds(settings: TestSettings) -> float:
    """Encrypt + decrypt of one token, bound to its row and field, in microseconds."""
    cipher = TokenCipher.from_setting(settings.TOKEN_ENCRYPTION_KEYS)
    binding = token_binding(uuid.uuid4(), "access_token")
    started = time.perf_counter()
    for _ in range(CRYPTO_ROUNDS):
        cipher.decrypt(cipher.encrypt(SAMPLE_TOKEN, binding=binding), binding=binding)
    return (time.perf_counter() - started) / CRYPTO_ROUNDS * 1e6


async def oauth_round_trips(settings: TestSettings, engine: AsyncEngine, redis: Redis) -> float:
    """Median milliseconds from `POST .../authorization` to an active connection."""
    sandbox = in_process_sandbox(settings)
    async with sandbox_client(sandbox, settings) as sandbox_http:
        resources = AppResources(
            engine, create_session_factory(engine), redis, provider_http=sandbox_http
        )
        app = create_app(settings, resources=resources)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            flow = ProviderFlow(client, sandbox_http, settings.CALLBACK_SHARED_SECRET)
            headers = await signup_and_login(client)
            samples = []
            for number in range(ROUND_TRIPS):
                provider_id = await flow.create(headers, f"Bench {number}")
                started = time.perf_counter()
                params = await consent(sandbox_http, await flow.start(headers, provider_id))
                answer = await flow.callback(params)
                samples.append(time.perf_counter() - started)
                assert answer.json()["status"] == "active", answer.text
    return statistics.median(samples) * 1000


async def concurrent_refresh(settings: TestSettings, engine: AsyncEngine) -> tuple[float, int]:
    """Wall milliseconds for 100 concurrent callers on an expiring connection, and how many
    refreshes reached the provider (the target is exactly one)."""
    sandbox = in_process_sandbox(settings)
    cipher = TokenCipher.from_setting(settings.TOKEN_ENCRYPTION_KEYS)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    async with sandbox_client(sandbox, settings) as sandbox_http:
        grant = await sandbox_grant(sandbox_http, settings)
        async with factory() as session:
            connection = await seed_connection(
                session, cipher, grant, access_expires_in=timedelta(seconds=30)
            )
        started = time.perf_counter()
        tokens = await asyncio.gather(
            *(
                get_access_token(factory, sandbox_http, settings, connection.id)
                for _ in range(CALLERS)
            )
        )
        elapsed = time.perf_counter() - started
        await delete_owner(engine, connection)
    assert len(set(tokens)) == 1
    return elapsed * 1000, sandbox.state.sandbox.stats.refresh_grants


async def _measure(settings: TestSettings) -> dict[str, float]:
    engine = create_engine(settings)
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        round_trip_ms = await oauth_round_trips(settings, engine, redis)
        refresh_ms, upstream = await concurrent_refresh(settings, engine)
    finally:
        async for key in redis.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}*", count=500):
            await redis.delete(key)
        await redis.aclose()
        await engine.dispose()
    return {
        "oauth_round_trip_median_ms": round_trip_ms,
        "refresh_100_callers_wall_ms": refresh_ms,
        "refresh_100_callers_upstream_refreshes": float(upstream),
        "token_encrypt_decrypt_us": crypto_microseconds(settings),
    }


def run() -> dict[str, float]:
    os.environ.setdefault(ENV_FILE_VARIABLE, str(TEST_ENV_FILE))
    base = TestSettings()
    check_settings_are_for_testing(base)
    name = f"{base.database_name}_bench_providers_{uuid.uuid4().hex[:8]}"
    url = asyncio.run(create_worker_database(base, name))
    settings = TestSettings(
        DATABASE_URL=url.render_as_string(hide_password=False),
        REDIS_KEY_PREFIX=f"{base.REDIS_KEY_PREFIX}bench-providers-{uuid.uuid4().hex[:8]}:",
        RATE_LIMITS_ENABLED=False,
    )
    try:
        return asyncio.run(_measure(settings))
    finally:
        asyncio.run(drop_worker_database(base, name))


if __name__ == "__main__":
    for measure, value in run().items():
        print(f"{measure:42} {value:12,.3f}")
