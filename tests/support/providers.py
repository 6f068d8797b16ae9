"""Driving the provider OAuth flow from tests: create, authorize, consent at the sandbox, and
hand the redirect to the internal callback endpoint as the callback server would."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from dashtam.core.config import Settings
from dashtam.core.crypto import TokenCipher
from dashtam.models import Provider, ProviderConnection, ProviderToken, User
from dashtam.models.base import utcnow
from dashtam.providers.dependencies import CALLBACK_SECRET_HEADER
from dashtam.providers.oauth import TokenGrant, exchange_code, pkce_pair
from dashtam.providers.registry import schwab_spec
from dashtam.providers.tokens import ACCESS_TOKEN, ID_TOKEN, REFRESH_TOKEN, reveal, store_grant
from dashtam.sandbox.app import create_app as create_sandbox
from dashtam.sandbox.config import SandboxConfig

API = "/api/v1"
CALLBACK = f"{API}/internal/oauth/callback"


def redirect_params(response: httpx.Response) -> dict[str, str]:
    """The query of a 302 to the redirect URI, URL-decoded once (as a browser hands it on)."""
    assert response.status_code == 302, response.text
    return dict(parse_qsl(urlsplit(response.headers["location"]).query))


async def consent(
    sandbox: httpx.AsyncClient, authorization_url: str, action: str = "approve"
) -> dict[str, str]:
    """Open the consent page and press a button: what comes back to the redirect URI."""
    page = await sandbox.get(authorization_url)
    assert page.status_code == 200, page.text
    assert 'id="approve"' in page.text
    form = dict(parse_qsl(urlsplit(authorization_url).query)) | {"action": action}
    return redirect_params(await sandbox.post("/v1/oauth/authorize", data=form))


@dataclass
class ProviderFlow:
    """The app client, the sandbox client, and the callback secret: one connection flow."""

    client: httpx.AsyncClient
    sandbox: httpx.AsyncClient
    callback_secret: str

    async def create(self, headers: dict[str, str], alias: str = "My Schwab") -> str:
        response = await self.client.post(
            f"{API}/providers", json={"provider_key": "schwab", "alias": alias}, headers=headers
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def start(self, headers: dict[str, str], provider_id: str) -> str:
        response = await self.client.post(
            f"{API}/providers/{provider_id}/authorization", headers=headers
        )
        assert response.status_code == 200, response.text
        return str(response.json()["authorization_url"])

    async def callback(self, params: dict[str, str], secret: str | None = None) -> httpx.Response:
        body = {key: params.get(key) for key in ("code", "state", "error", "error_description")}
        return await self.client.post(
            CALLBACK,
            json=body,
            headers={CALLBACK_SECRET_HEADER: self.callback_secret if secret is None else secret},
        )

    async def connect(self, headers: dict[str, str], alias: str = "My Schwab") -> str:
        provider_id = await self.create(headers, alias)
        params = await consent(self.sandbox, await self.start(headers, provider_id))
        response = await self.callback(params)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "active"
        return provider_id

    async def status(self, headers: dict[str, str], provider_id: str) -> dict[str, Any]:
        response = await self.client.get(
            f"{API}/providers/{provider_id}/authorization", headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def audit_actions(self, headers: dict[str, str], provider_id: str) -> list[str]:
        response = await self.client.get(
            f"{API}/providers/{provider_id}/audit-logs", headers=headers, params={"limit": 200}
        )
        assert response.status_code == 200, response.text
        return [item["action"] for item in response.json()["items"]]


async def token_row(session: AsyncSession, provider_id: str) -> ProviderToken | None:
    return await session.scalar(
        select(ProviderToken)
        .join(ProviderConnection, ProviderConnection.id == ProviderToken.connection_id)
        .where(ProviderConnection.provider_id == uuid.UUID(provider_id))
        .execution_options(populate_existing=True)
    )


async def plaintext_tokens(
    session: AsyncSession, cipher: TokenCipher, provider_id: str
) -> list[str]:
    """The decrypted tokens of a connection: what must appear nowhere else."""
    token = await token_row(session, provider_id)
    assert token is not None
    values = [reveal(cipher, token, field) for field in (ACCESS_TOKEN, REFRESH_TOKEN, ID_TOKEN)]
    return [value for value in values if value]


def in_process_sandbox(settings: Settings) -> FastAPI:
    """A fresh sandbox that accepts the app's redirect URI and insists on PKCE."""
    return create_sandbox(
        SandboxConfig(redirect_uris=[settings.SCHWAB_REDIRECT_URI], pkce_required=True)
    )


def sandbox_client(sandbox_app: FastAPI, settings: Settings) -> httpx.AsyncClient:
    """What the app would use as its provider client, bound to the in-process sandbox."""
    transport = httpx.ASGITransport(app=sandbox_app)
    return httpx.AsyncClient(transport=transport, base_url=settings.sandbox_base_url)


async def sandbox_grant(http: httpx.AsyncClient, settings: Settings) -> TokenGrant:
    """A real sandbox login without the Dashtam flow around it (consent, then exchange)."""
    spec = schwab_spec(settings)
    verifier, challenge = pkce_pair()
    url = spec.authorization_url("integration", challenge)
    form = dict(parse_qsl(urlsplit(url).query)) | {"action": "approve"}
    params = redirect_params(await http.post("/v1/oauth/authorize", data=form))
    return await exchange_code(http, spec, params["code"], verifier)


async def seed_connection(
    session: AsyncSession,
    cipher: TokenCipher,
    grant: TokenGrant,
    *,
    access_expires_in: timedelta,
) -> ProviderConnection:
    """user -> provider -> active connection -> encrypted tokens, committed by the session."""
    user = User(email=f"p-{uuid.uuid4().hex[:12]}@example.com", name="P", password_hash="x")
    provider = Provider(user_id=user.id, provider_key="schwab", alias="Schwab")
    connection = ProviderConnection(provider_id=provider.id, status="active")
    token = ProviderToken(connection_id=connection.id, access_token_encrypted="")
    now = utcnow()
    store_grant(
        cipher, token, grant, now, refresh_ttl=timedelta(days=7), previous_refresh_token=None
    )
    token.access_expires_at = now + access_expires_in
    for row in (user, provider, connection, token):  # no ORM relationships to order the inserts
        session.add(row)
        await session.flush()
    await session.commit()
    return connection


async def delete_owner(engine: AsyncEngine, connection: ProviderConnection) -> None:
    """Remove committed rows: the user cascades to provider, connection and tokens."""
    async with engine.begin() as conn:
        await conn.execute(
            text("DELETE FROM users WHERE id = (SELECT user_id FROM providers WHERE id = :id)"),
            {"id": connection.provider_id},
        )
