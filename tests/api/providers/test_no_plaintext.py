"""No plaintext token or authorization code anywhere: database, audit, Redis, logs, responses."""

from __future__ import annotations

import logging

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from tests.support.providers import API, ProviderFlow, consent, plaintext_tokens

from dashtam.core.crypto import TokenCipher
from dashtam.core.logging import JsonFormatter
from dashtam.core.redis import RedisKeys


async def _database_text(session: AsyncSession) -> str:
    tables = await session.scalars(
        text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    )
    dump = []
    for table in tables:
        rows = await session.scalars(text(f'SELECT t::text FROM "{table}" t'))  # noqa: S608
        dump.extend(rows)
    return "\n".join(dump)


async def _redis_text(redis: Redis, keys: RedisKeys) -> str:
    values = []
    async for key in redis.scan_iter(match=f"{keys.prefix}*"):
        if await redis.type(key) == "string":
            values.append(f"{key}={await redis.get(key)}")
    return "\n".join(values)


async def test_secrets_appear_nowhere_in_plaintext(
    client: httpx.AsyncClient,
    flow: ProviderFlow,
    headers: dict[str, str],
    session: AsyncSession,
    cipher: TokenCipher,
    redis: Redis,
    redis_keys: RedisKeys,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        bodies.append(response.text)

    client.event_hooks["response"].append(keep)
    provider_id = await flow.create(headers)
    params = await consent(flow.sandbox, await flow.start(headers, provider_id))
    await flow.callback(params)
    access, refresh, id_token = await plaintext_tokens(session, cipher, provider_id)
    base = f"{API}/providers/{provider_id}"
    await client.post(f"{base}/authorization/refresh", headers=headers)
    new_access, same_refresh, new_id_token = await plaintext_tokens(session, cipher, provider_id)
    # Schwab keeps the refresh token; the id token only changes when its iat second does.
    assert (new_access != access, same_refresh) == (True, refresh)
    secrets = [params["code"], access, refresh, id_token, new_access, new_id_token]
    await flow.callback(params)  # a replay, which fails
    for path in ("", "/authorization", "/audit-logs"):
        await client.get(f"{base}{path}", headers=headers)
    await client.get(f"{API}/providers", headers=headers)

    places = {
        "database": await _database_text(session),
        "redis": await _redis_text(redis, redis_keys),
        "logs": "\n".join(JsonFormatter().format(record) for record in caplog.records),
        "responses": "\n".join(bodies),
    }
    assert len(bodies) >= 8
    for place, content in places.items():
        for secret in secrets:
            assert secret not in content, f"a plaintext secret is in the {place}"
            assert secret.rstrip("@") not in content, f"a secret (without @) is in the {place}"
