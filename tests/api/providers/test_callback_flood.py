"""Anonymous callers cannot grow the append-only audit table: forged hand-overs and made-up
states are rate limited per address and written as one row per source and minute, with a count.
The flush is the worker's every-minute job (`write_anonymous_failures`), called here directly."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from tests.support.providers import CALLBACK
from tests.test_config import TestSettings

from dashtam.callback.app import create_app as create_callback_app
from dashtam.core.redis import RedisKeys
from dashtam.main import AppResources, create_app
from dashtam.models import ProviderAuditLog
from dashtam.providers.audit import AGGREGATE_WINDOW_SECONDS, AnonymousFailures
from dashtam.providers.dependencies import CALLBACK_SECRET_HEADER

ATTACKER, OTHER, BROWSER = "198.51.100.66", "198.51.100.77", "203.0.113.9"


@pytest.fixture
def app_settings(app_settings: TestSettings) -> TestSettings:
    return app_settings.model_copy(update={"RATE_LIMIT_OAUTH_CALLBACK": "1000/60"})


@asynccontextmanager
async def peer(app: object, address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def _rows(session: AsyncSession) -> list[ProviderAuditLog]:
    return list(
        await session.scalars(select(ProviderAuditLog).execution_options(populate_existing=True))
    )


async def _flush(redis: Redis, redis_keys: RedisKeys, session: AsyncSession) -> int:
    """The worker's job once the current window has ended."""
    later = time.time() + AGGREGATE_WINDOW_SECONDS
    return await AnonymousFailures(redis, redis_keys).flush(session, now=later)


async def test_a_forged_hand_over_flood_adds_one_row_per_source(
    app: FastAPI, session: AsyncSession, redis: Redis, redis_keys: RedisKeys
) -> None:
    before = len(await _rows(session))
    for address, calls in ((ATTACKER, 50), (OTHER, 30)):
        async with peer(app, address) as client:
            for _ in range(calls):
                response = await client.post(
                    CALLBACK, json={"state": "s"}, headers={CALLBACK_SECRET_HEADER: "guess"}
                )
                assert response.status_code == 401
    assert len(await _rows(session)) == before  # nothing written row by row
    assert await _flush(redis, redis_keys, session) == 2
    rows = [r for r in await _rows(session) if r.action == "callback_rejected"]
    assert sorted((str(r.ip_address), r.details["count"]) for r in rows) == [
        (ATTACKER, 50),
        (OTHER, 30),
    ]
    assert {r.details["reason"] for r in rows} == {"bad_secret"}
    assert {r.details["window_seconds"] for r in rows} == {AGGREGATE_WINDOW_SECONDS}
    assert await _flush(redis, redis_keys, session) == 0  # counts are written once


async def test_made_up_states_through_the_callback_server_are_counted_per_browser(
    app: FastAPI,
    app_settings: TestSettings,
    session: AsyncSession,
    redis: Redis,
    redis_keys: RedisKeys,
) -> None:
    callback = create_callback_app(app_settings)
    async with peer(app, "127.0.0.1") as app_client, peer(callback, BROWSER) as browser:
        callback.state.app_client = app_client
        for n in range(25):
            page = await browser.get("/callback", params={"state": f"x{n}", "code": "y"})
            assert page.status_code == 400
            assert "expired or is not known" in page.text
    assert await _flush(redis, redis_keys, session) == 1
    [row] = [r for r in await _rows(session) if r.action == "callback_received"]
    assert (str(row.ip_address), row.details["reason"], row.details["count"]) == (
        BROWSER,
        "state_unknown",
        25,
    )


async def test_the_callback_is_rate_limited_per_address(
    app_settings: TestSettings,
    engine: AsyncEngine,
    session_factory: async_sessionmaker[AsyncSession],
    redis: Redis,
    redis_keys: RedisKeys,
    session: AsyncSession,
    sandbox_http: httpx.AsyncClient,
) -> None:
    """Past RATE_LIMIT_OAUTH_CALLBACK nothing is counted any more, and the person is told why."""
    limited = app_settings.model_copy(update={"RATE_LIMIT_OAUTH_CALLBACK": "3/600"})
    resources = AppResources(engine, session_factory, redis, provider_http=sandbox_http)
    app = create_app(limited, resources=resources)
    callback = create_callback_app(limited)
    async with peer(app, "127.0.0.1") as app_client, peer(callback, BROWSER) as browser:
        callback.state.app_client = app_client
        pages = [
            await browser.get("/callback", params={"state": "x", "code": "y"}) for _ in range(5)
        ]
        async with peer(app, ATTACKER) as forger:
            forged = [
                await forger.post(
                    CALLBACK, json={"state": "s"}, headers={CALLBACK_SECRET_HEADER: ""}
                )
                for _ in range(4)
            ]
    assert [p.status_code for p in pages] == [400, 400, 400, 429, 429]
    assert "RATE_LIMIT_OAUTH_CALLBACK" in pages[3].text
    assert int(pages[3].headers["retry-after"]) > 0
    assert [f.status_code for f in forged] == [401, 401, 401, 429]
    assert await _flush(redis, redis_keys, session) == 2
    counts = sorted(r.details["count"] for r in await _rows(session) if r.details.get("count"))
    assert counts == [3, 3]
