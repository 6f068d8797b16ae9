"""The FastAPI application factory: `uvicorn dashtam.main:create_app --factory`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dashtam import __version__
from dashtam.accounts.router import router as accounts_router
from dashtam.auth.dependencies import attach_auth
from dashtam.auth.router import router as auth_router
from dashtam.auth.router import users_router
from dashtam.auth.tokens import AccessTokenVerifier
from dashtam.core.config import Settings, load_settings
from dashtam.core.database import create_engine, create_session_factory
from dashtam.core.logging import configure_logging
from dashtam.core.metrics import HttpMetricsMiddleware, watch_pool
from dashtam.core.middleware import RequestIdMiddleware, trust_proxies
from dashtam.core.problems import install_error_handlers
from dashtam.core.redis import RedisKeys, check_redis, create_redis
from dashtam.events.router import router as events_router
from dashtam.health.metrics import router as metrics_router
from dashtam.health.router import router as health_router
from dashtam.openapi import install_docs
from dashtam.providers.oauth import provider_http_client
from dashtam.providers.router import install as install_providers

API_PREFIX = "/api/v1"


@dataclass
class AppResources:
    """What the app talks to; made by the lifespan, or handed in (tests) and then not closed."""

    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    redis: Redis
    # Outgoing HTTP to providers (Schwab or the sandbox); tests hand in an in-process one.
    provider_http: httpx.AsyncClient | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AppResources:
        engine = create_engine(settings)
        watch_pool(engine, settings.DB_POOL_SIZE)
        return cls(
            engine,
            create_session_factory(engine),
            create_redis(settings),
            provider_http_client(settings),
        )

    def attach(self, app: FastAPI) -> None:
        app.state.engine = self.engine
        app.state.session_factory = self.session_factory
        app.state.redis = self.redis
        app.state.provider_http = self.provider_http
        attach_auth(app.state)

    async def close(self) -> None:
        if self.provider_http is not None:
            await self.provider_http.aclose()
        await self.redis.aclose()
        await self.engine.dispose()


def create_app(settings: Settings | None = None, resources: AppResources | None = None) -> FastAPI:
    settings = settings or load_settings()
    configure_logging(settings.LOG_LEVEL)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if resources is not None:
            yield
            return
        await asyncio.to_thread(check_redis, settings)  # wrong credentials: refuse to start
        owned = AppResources.from_settings(settings)
        owned.attach(app)
        try:
            yield
        finally:
            await owned.close()

    app = FastAPI(
        title="Dashtam",
        version=__version__,
        description="Self-hosted, secure financial data aggregation API.",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.redis_keys = RedisKeys(settings.REDIS_KEY_PREFIX)
    if resources is not None:
        resources.attach(app)
    app.state.access_tokens = AccessTokenVerifier(settings)
    install_error_handlers(app)

    app.add_middleware(RequestIdMiddleware)
    trust_proxies(app, settings)
    app.include_router(health_router)
    if settings.METRICS_ENABLED:
        app.add_middleware(HttpMetricsMiddleware)  # outermost: times the whole answer
        app.include_router(metrics_router)
    app.include_router(auth_router, prefix=API_PREFIX)
    app.include_router(users_router, prefix=API_PREFIX)
    install_providers(app, settings, API_PREFIX)
    app.include_router(accounts_router, prefix=API_PREFIX)
    app.include_router(events_router, prefix=API_PREFIX)
    if settings.docs_enabled:  # API_DOCS_ENABLED; off in production unless switched on
        install_docs(app)
    return app
