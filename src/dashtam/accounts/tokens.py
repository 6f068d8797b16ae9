"""Sync's TokenSource for a stored connection, backed by the providers package.

The providers package owns the encrypted tokens and their serialized refresh; this adapter only
translates its API errors into what sync understands (needs_reauth, provider down, unusable).
"""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dashtam.accounts.schwab import NeedsReauth, ProviderUnavailable, SyncError
from dashtam.core.config import Settings
from dashtam.core.crypto import TokenCipher
from dashtam.providers import errors
from dashtam.providers.audit import background_context
from dashtam.providers.tokens import TokenDeps, fresh_access_token


class ConnectionTokens:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        settings: Settings,
        connection_id: uuid.UUID,
    ) -> None:
        self.session_factory = session_factory
        self.deps = TokenDeps(
            http, settings, TokenCipher.from_setting(settings.TOKEN_ENCRYPTION_KEYS)
        )
        self.connection_id = connection_id

    async def access_token(self) -> str:
        return await self._token(force=False)

    async def refreshed_token(self) -> str:
        return await self._token(force=True)

    async def _token(self, *, force: bool) -> str:
        try:
            async with self.session_factory() as session:
                return await fresh_access_token(
                    session, self.deps, self.connection_id, background_context(), force=force
                )
        except errors.ConnectionUnusable as exc:
            raise NeedsReauth(exc.reason) from None
        except errors.ProviderUnavailable as exc:
            raise ProviderUnavailable(f"token refresh failed: {exc.detail}") from None
        except (errors.TokenUnreadable, errors.ProviderNotFound) as exc:
            raise SyncError(exc.detail) from None
