"""Client addresses: X-Forwarded-For counts only from a configured proxy (TRUSTED_PROXIES), and
then the client is the rightmost address that is not a trusted proxy. With no proxy configured,
which is the default, the headers are ignored: nobody can choose their own rate-limit bucket.

The app is wrapped exactly as uvicorn wraps it when started with the command line `dashtam up`
builds: that command line is parsed by uvicorn's own CLI and turned into its `Config`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from tests.support.auth import API, audit_rows, register, unique_email
from tests.test_config import TestSettings
from uvicorn.main import main as uvicorn_cli

from dashtam.core.redis import RedisKeys
from dashtam.devenv.manager import uvicorn_command
from dashtam.main import AppResources, create_app

PROXY = "192.0.2.10"  # the reverse proxy's address, as the app server sees its connections
INNER = "192.0.2.11"  # a second proxy behind the first (a CDN in front of Caddy, say)
STRANGER = "198.51.100.20"  # a client connecting directly, not through the proxy
ALICE, BOB = "203.0.113.7", "203.0.113.8"


def served(app: FastAPI) -> Any:
    """The ASGI app uvicorn runs for the dev manager's command line (with its proxy handling)."""
    command = uvicorn_command("dashtam.main:create_app", app.state.settings, 8001, False, False)
    arguments = command[command.index("uvicorn") + 1 :]
    params = uvicorn_cli.make_context("uvicorn", arguments).params
    config = uvicorn.Config(
        app,
        proxy_headers=params["proxy_headers"],
        forwarded_allow_ips=params["forwarded_allow_ips"],
    )
    config.load()
    return config.loaded_app


@asynccontextmanager
async def connect(app: FastAPI, peer: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the served app whose TCP connections come from `peer`."""
    transport = httpx.ASGITransport(app=served(app), client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def proxied_app(
    app_settings: TestSettings,
    engine: AsyncEngine,
    session_factory: async_sessionmaker[AsyncSession],
    redis: Redis,
) -> FastAPI:
    settings = app_settings.model_copy(
        update={"TRUSTED_PROXIES": f"{PROXY},{INNER}", "RATE_LIMIT_PASSWORD_RESET": "2/60"}
    )
    return create_app(settings, resources=AppResources(engine, session_factory, redis))


async def _reset(client: httpx.AsyncClient, forwarded_for: str) -> int:
    response = await client.post(
        f"{API}/auth/password-reset",
        json={"email": unique_email()},
        headers={"X-Forwarded-For": forwarded_for},
    )
    return response.status_code


async def test_with_no_proxy_configured_forwarded_headers_are_ignored(
    app: FastAPI, app_settings: TestSettings, redis: Redis, redis_keys: RedisKeys
) -> None:
    """The review's reproduction: 15 wrong logins, each claiming another address."""
    assert app_settings.TRUSTED_PROXIES == ""
    limit = int(app_settings.RATE_LIMIT_LOGIN.partition("/")[0])
    statuses = []
    async with connect(app, "127.0.0.1") as local:
        for n in range(limit + 5):
            response = await local.post(
                f"{API}/auth/login",
                json={"email": unique_email(), "password": "wrong-password-x"},
                headers={"X-Forwarded-For": f"10.9.8.{n}"},
            )
            statuses.append(response.status_code)
    assert statuses == [401] * limit + [429] * 5
    assert await redis.exists(redis_keys("ratelimit", "login", "127.0.0.1")) == 1
    assert await redis.exists(redis_keys("ratelimit", "login", "10.9.8.0")) == 0


async def test_through_the_trusted_proxy_each_client_has_its_own_bucket(
    proxied_app: FastAPI, redis: Redis, redis_keys: RedisKeys
) -> None:
    async with connect(proxied_app, PROXY) as proxy:
        assert [await _reset(proxy, ALICE) for _ in range(3)] == [202, 202, 429]
        assert await _reset(proxy, BOB) == 202
        # A client cannot pick its bucket: the proxy appends the address it saw, and that wins.
        assert await _reset(proxy, f"{BOB}, {ALICE}") == 429
        # Behind two proxies, both trusted: still the rightmost address that is not a proxy.
        assert await _reset(proxy, f"{BOB}, {ALICE}, {INNER}") == 429
    for client in (ALICE, BOB):
        assert await redis.exists(redis_keys("ratelimit", "password_reset", client)) == 1
    for proxy_address in (PROXY, INNER):
        assert await redis.exists(redis_keys("ratelimit", "password_reset", proxy_address)) == 0


async def test_an_untrusted_peer_is_its_own_address_whatever_it_forwards(
    proxied_app: FastAPI, redis: Redis, redis_keys: RedisKeys
) -> None:
    async with connect(proxied_app, STRANGER) as stranger:
        statuses = [await _reset(stranger, chain) for chain in (ALICE, f"{BOB}, {PROXY}", ALICE)]
    assert statuses == [202, 202, 429]
    assert await redis.exists(redis_keys("ratelimit", "password_reset", STRANGER)) == 1
    assert await redis.exists(redis_keys("ratelimit", "password_reset", ALICE)) == 0


async def test_audit_rows_record_the_forwarded_client(
    proxied_app: FastAPI, session: AsyncSession
) -> None:
    async with connect(proxied_app, PROXY) as proxy:
        proxy.headers["X-Forwarded-For"] = ALICE
        await register(proxy)
    async with connect(proxied_app, STRANGER) as stranger:
        stranger.headers["X-Forwarded-For"] = BOB
        await register(stranger)
    recorded = sorted(str(row.ip_address) for row in await audit_rows(session, "register"))
    assert recorded == sorted([ALICE, STRANGER])


def test_servers_never_apply_proxy_headers_themselves(app_settings: TestSettings) -> None:
    """uvicorn trusts 127.0.0.1 by default; only the app's own middleware may decide."""
    command = uvicorn_command("dashtam.main:create_app", app_settings, 8001, False, False)
    assert "--no-proxy-headers" in command
    assert "--forwarded-allow-ips" not in command
