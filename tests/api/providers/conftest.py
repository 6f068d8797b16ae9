"""Provider API fixtures: the app's outgoing provider client talks to an in-process sandbox."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from tests.support.auth import signup_and_login
from tests.support.providers import ProviderFlow
from tests.test_config import TestSettings

from dashtam.core.crypto import TokenCipher
from dashtam.main import AppResources, create_app


@pytest.fixture
def app(
    app_settings: TestSettings,
    engine: AsyncEngine,
    session_factory: async_sessionmaker[AsyncSession],
    redis: Redis,
    sandbox_http: httpx.AsyncClient,
) -> FastAPI:
    """The root `app`, with provider calls going to the in-process sandbox."""
    resources = AppResources(engine, session_factory, redis, provider_http=sandbox_http)
    return create_app(app_settings, resources=resources)


@pytest.fixture
def cipher(app_settings: TestSettings) -> TokenCipher:
    return TokenCipher.from_setting(app_settings.TOKEN_ENCRYPTION_KEYS)


@pytest.fixture
def flow(
    client: httpx.AsyncClient, sandbox_http: httpx.AsyncClient, app_settings: TestSettings
) -> ProviderFlow:
    return ProviderFlow(client, sandbox_http, app_settings.CALLBACK_SHARED_SECRET)


@pytest.fixture
async def headers(client: httpx.AsyncClient) -> dict[str, str]:
    return await signup_and_login(client)
