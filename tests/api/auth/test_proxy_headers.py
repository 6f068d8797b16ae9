"""Behind a reverse proxy: rate limits and the audit trail see the client the proxy names, but
only when the proxy is trusted (FORWARDED_ALLOW_IPS); anyone else shares their own bucket.

The app is wrapped exactly as uvicorn wraps it when started with the command line `dashtam up`
builds: that command line is parsed by uvicorn's own CLI and turned into its `Config`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession
from tests.support.auth import API, audit_rows, register, unique_email
from tests.test_config import TestSettings
from uvicorn.main import main as uvicorn_cli

from dashtam.core.redis import RedisKeys
from dashtam.devenv.manager import uvicorn_command

PROXY = "192.0.2.10"  # the reverse proxy's address, as the app server sees its connections
STRANGER = "198.51.100.20"  # a client connecting directly, not through the proxy
ALICE, BOB = "203.0.113.7", "203.0.113.8"

Connect = Callable[[str], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def app_settings(app_settings: TestSettings) -> TestSettings:
    return app_settings.model_copy(
        update={"FORWARDED_ALLOW_IPS": PROXY, "RATE_LIMIT_PASSWORD_RESET": "2/60"}
    )


def served(app: FastAPI, settings: TestSettings) -> Any:
    """The ASGI app uvicorn runs for the dev manager's command line (with its proxy handling)."""
    command = uvicorn_command("dashtam.main:create_app", settings, 8001, False, False)
    arguments = command[command.index("uvicorn") + 1 :]
    params = uvicorn_cli.make_context("uvicorn", arguments).params
    config = uvicorn.Config(
        app,
        proxy_headers=params["proxy_headers"],
        forwarded_allow_ips=params["forwarded_allow_ips"],
    )
    config.load()
    return config.loaded_app


@pytest.fixture
def connect(app: FastAPI, app_settings: TestSettings) -> Connect:
    """`connect(peer)`: a client whose TCP connections come from `peer`."""
    wrapped = served(app, app_settings)

    @asynccontextmanager
    async def from_peer(peer: str) -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app=wrapped, client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client

    return from_peer


async def _reset(client: httpx.AsyncClient, forwarded_for: str) -> int:
    response = await client.post(
        f"{API}/auth/password-reset",
        json={"email": unique_email()},
        headers={"X-Forwarded-For": forwarded_for},
    )
    return response.status_code


async def test_through_the_trusted_proxy_each_client_has_its_own_bucket(
    connect: Connect, redis: Redis, redis_keys: RedisKeys
) -> None:
    async with connect(PROXY) as proxy:
        assert [await _reset(proxy, ALICE) for _ in range(3)] == [202, 202, 429]
        assert await _reset(proxy, BOB) == 202
        # A client cannot pick its bucket: the proxy appends the address it saw, and that wins.
        assert await _reset(proxy, f"{BOB}, {ALICE}") == 429
    for client in (ALICE, BOB):
        assert await redis.exists(redis_keys("ratelimit", "password_reset", client)) == 1
    assert await redis.exists(redis_keys("ratelimit", "password_reset", PROXY)) == 0


async def test_an_untrusted_peer_shares_its_own_bucket_whatever_it_forwards(
    connect: Connect, redis: Redis, redis_keys: RedisKeys
) -> None:
    async with connect(STRANGER) as stranger:
        assert [await _reset(stranger, client) for client in (ALICE, BOB, "10.1.2.3")] == [
            202,
            202,
            429,
        ]
    assert await redis.exists(redis_keys("ratelimit", "password_reset", STRANGER)) == 1
    assert await redis.exists(redis_keys("ratelimit", "password_reset", ALICE)) == 0


async def test_audit_rows_record_the_forwarded_client(
    connect: Connect, session: AsyncSession
) -> None:
    async with connect(PROXY) as proxy:
        proxy.headers["X-Forwarded-For"] = ALICE
        await register(proxy)
    async with connect(STRANGER) as stranger:
        stranger.headers["X-Forwarded-For"] = BOB
        await register(stranger)
    recorded = sorted(str(row.ip_address) for row in await audit_rows(session, "register"))
    assert recorded == sorted([ALICE, STRANGER])
