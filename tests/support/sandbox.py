"""The Schwab sandbox for sync tests and benchmarks: a login without a browser, a subprocess
server on a free port, and the database rows a synced connection hangs from."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from dashtam.core.config import Settings
from dashtam.core.crypto import TokenCipher
from dashtam.devenv.isolated import free_port
from dashtam.models import Provider, ProviderConnection, ProviderToken, User
from dashtam.providers.tokens import ACCESS_TOKEN, REFRESH_TOKEN, seal
from dashtam.sandbox.config import SandboxConfig


class SandboxTokens:
    """A TokenSource that logs in to a sandbox directly (authorize -> approve -> token)."""

    def __init__(self, http: httpx.AsyncClient, config: SandboxConfig) -> None:
        self.http = http
        self.config = config
        self.redirect_uri = config.redirect_uris[0]
        self._access: str | None = None
        self._refresh: str | None = None
        self.refreshes = 0

    def _basic(self) -> dict[str, str]:
        raw = f"{self.config.client_id}:{self.config.client_secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}

    async def _token(self, form: dict[str, str]) -> None:
        response = await self.http.post("/v1/oauth/token", data=form, headers=self._basic())
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        self._access, self._refresh = body["access_token"], body["refresh_token"]

    async def login(self) -> tuple[str, str]:
        """Approve a fresh authorization; (access token, refresh token)."""
        form = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": self.redirect_uri,
            "state": "s",
            "action": "approve",
        }
        response = await self.http.post("/v1/oauth/authorize", data=form)
        assert response.status_code == 302, response.text
        code = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
        grant = {"grant_type": "authorization_code", "code": code}
        await self._token(grant | {"redirect_uri": self.redirect_uri})
        assert self._access is not None
        assert self._refresh is not None
        return self._access, self._refresh

    async def access_token(self) -> str:
        if self._access is None:
            await self.login()
        assert self._access is not None
        return self._access

    async def refreshed_token(self) -> str:
        self.refreshes += 1
        assert self._refresh is not None
        await self._token({"grant_type": "refresh_token", "refresh_token": self._refresh})
        assert self._access is not None
        return self._access


@contextmanager
def sandbox_process(**config: str) -> Iterator[str]:
    """`python -m dashtam.sandbox` on a free port, sized by SANDBOX_* values; yields its URL."""
    port = free_port()
    env = {**os.environ, **{f"SANDBOX_{k.upper()}": v for k, v in config.items()}}
    process = subprocess.Popen(
        [sys.executable, "-m", "dashtam.sandbox", "--port", str(port), "--log-level", "warning"],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/sandbox/stats", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, "the sandbox exited"
            assert time.monotonic() < deadline, "the sandbox did not start in time"
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)


async def create_connection(engine: AsyncEngine, *, status: str = "active") -> ProviderConnection:
    """A committed user -> provider -> connection chain (delete the user to clean up)."""
    user = User(email=f"sync-{uuid.uuid4().hex[:12]}@example.com", name="Sync", password_hash="x")
    provider = Provider(user_id=user.id, provider_key="schwab", alias="Schwab")
    connection = ProviderConnection(provider_id=provider.id, status=status)
    async with engine.begin() as conn:
        for row in (user, provider, connection):
            table = type(row).__table__  # type: ignore[attr-defined]
            values = row.model_dump(exclude_none=True)
            await conn.execute(table.insert().values(**values))
    return connection


async def another_connection(
    engine: AsyncEngine, connection: ProviderConnection, alias: str, *, status: str = "active"
) -> ProviderConnection:
    """A second committed provider instance and connection of the same user (same provider)."""
    async with engine.begin() as conn:
        user_id = await conn.scalar(
            text("SELECT user_id FROM providers WHERE id = :id"), {"id": connection.provider_id}
        )
        provider = Provider(user_id=user_id, provider_key="schwab", alias=alias)
        second = ProviderConnection(provider_id=provider.id, status=status)
        for row in (provider, second):
            table = type(row).__table__  # type: ignore[attr-defined]
            await conn.execute(table.insert().values(**row.model_dump(exclude_none=True)))
    return second


async def delete_owner(engine: AsyncEngine, connection: ProviderConnection) -> None:
    """Remove the user behind a connection; everything synced goes with it (cascades)."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "DELETE FROM users WHERE id = (SELECT p.user_id FROM providers p "
                "WHERE p.id = :provider_id)"
            ),
            {"provider_id": connection.provider_id},
        )


async def store_tokens(
    engine: AsyncEngine, settings: Settings, connection_id: uuid.UUID, access: str, refresh: str
) -> None:
    """Save a login's tokens encrypted, as the providers package does after a callback."""
    cipher = TokenCipher.from_setting(settings.TOKEN_ENCRYPTION_KEYS)
    token = ProviderToken(connection_id=connection_id, access_token_encrypted="")
    seal(cipher, token, ACCESS_TOKEN, access)
    seal(cipher, token, REFRESH_TOKEN, refresh)
    now = datetime.now(UTC)
    token.access_expires_at = now + timedelta(minutes=30)
    token.refresh_expires_at = now + timedelta(days=7)
    async with engine.begin() as conn:
        table = ProviderToken.__table__  # type: ignore[attr-defined]
        await conn.execute(table.insert().values(**token.model_dump(exclude_none=True)))
