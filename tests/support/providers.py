"""Driving the provider OAuth flow from tests: create, authorize, consent at the sandbox, and
hand the redirect to the internal callback endpoint as the callback server would."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.core.crypto import TokenCipher
from dashtam.models import ProviderConnection, ProviderToken
from dashtam.providers.dependencies import CALLBACK_SECRET_HEADER
from dashtam.providers.tokens import ACCESS_TOKEN, ID_TOKEN, REFRESH_TOKEN, reveal

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
