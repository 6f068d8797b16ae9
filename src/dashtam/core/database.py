"""Async engine and sessions; the app owns one engine, created from settings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
from fastapi import Request
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from dashtam.core.config import Settings


def create_engine(settings: Settings, url: URL | None = None, **overrides: object) -> AsyncEngine:
    """The app's engine (the runtime role), or one on `url` (the owner's, for migrations)."""
    options: dict[str, object] = {
        "echo": settings.DB_ECHO,
        "pool_size": settings.DB_POOL_SIZE,
        "pool_pre_ping": True,
    }
    options.update(overrides)
    return create_async_engine(url or settings.database_url, **options)


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """FastAPI dependency: one session per request from the app's factory."""
    factory: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    async with factory() as session:
        yield session


# Server shutdown or restart (57P01-57P03), and every connection failure (class 08).
_LOST = (
    OSError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.PostgresConnectionError,
)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
        )


def database_lost(exc: BaseException) -> bool:
    """Whether `exc` means the database went away (a restart, a failover, the network) rather
    than a bug: work that failed this way can simply be tried again later."""
    return any(
        (isinstance(error, DBAPIError) and error.connection_invalidated) or isinstance(error, _LOST)
        for error in _causes(exc)
    )
