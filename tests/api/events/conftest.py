"""An app whose sessions commit for real: events are only read once their transaction has ended,
so these tests cannot run inside the rolled-back test transaction."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.support.auth import API, client_for, signup_and_login, unique_email
from tests.test_config import TestSettings

from dashtam.core.database import create_session_factory
from dashtam.main import AppResources


@dataclass
class Committed:
    client: httpx.AsyncClient
    headers: dict[str, str]
    user_id: uuid.UUID


@pytest.fixture
async def committed(
    app_settings: TestSettings, engine: AsyncEngine, redis: Redis
) -> AsyncIterator[Committed]:
    """A signed-in user of an app that commits; deleted afterwards with all it owns."""
    resources = AppResources(engine, create_session_factory(engine), redis)
    email = unique_email()
    async with client_for(app_settings, resources) as client:
        headers = await signup_and_login(client, email=email)
        me = await client.get(f"{API}/users/me", headers=headers)
        try:
            yield Committed(client, headers, uuid.UUID(me.json()["id"]))
        finally:
            async with engine.begin() as conn:
                await conn.execute(text("DELETE FROM users WHERE email = :e"), {"e": email})
