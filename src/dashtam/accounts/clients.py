"""Trader API clients for stored connections: one HTTP pool, tokens from the providers package.

The worker syncs with them and `dashtam verify` re-reads with them, so both talk to the provider
in exactly the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dashtam.accounts.schwab import RetryPolicy, TraderClient
from dashtam.accounts.tokens import ConnectionTokens
from dashtam.core.config import Settings
from dashtam.providers.oauth import provider_http_client
from dashtam.providers.registry import schwab_spec


@dataclass
class TraderClients:
    settings: Settings
    session_factory: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient

    @classmethod
    def create(
        cls, settings: Settings, session_factory: async_sessionmaker[AsyncSession]
    ) -> TraderClients:
        http = provider_http_client(settings, base_url=schwab_spec(settings).base_url)
        return cls(settings, session_factory, http)

    def tokens(self, connection_id: uuid.UUID) -> ConnectionTokens:
        return ConnectionTokens(self.session_factory, self.http, self.settings, connection_id)

    @asynccontextmanager
    async def connect(self, connection_id: uuid.UUID) -> AsyncIterator[TraderClient]:
        policy = RetryPolicy.from_settings(self.settings)
        yield TraderClient(self.http, self.tokens(connection_id), policy)

    async def aclose(self) -> None:
        await self.http.aclose()
