"""A connection's life announced in the outbox, in the transaction that changed it: connected,
needs_reauth (once), reauthorized, disconnected (and deleted)."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncSession
from tests.support.events import events_of, types_of
from tests.support.providers import API, ProviderFlow, consent, plaintext_tokens

from dashtam.core.crypto import TokenCipher


async def user_id(client: httpx.AsyncClient, headers: dict[str, str]) -> uuid.UUID:
    return uuid.UUID((await client.get(f"{API}/users/me", headers=headers)).json()["id"])


async def test_connect_revoke_and_reconnect_are_announced(
    client: httpx.AsyncClient,
    flow: ProviderFlow,
    headers: dict[str, str],
    session: AsyncSession,
    cipher: TokenCipher,
) -> None:
    provider_id = await flow.connect(headers, alias="Events Schwab")
    secrets = await plaintext_tokens(session, cipher, provider_id)
    await flow.sandbox.post("/sandbox/tokens/revoke")
    refresh = f"{API}/providers/{provider_id}/authorization/refresh"
    for _ in range(2):  # the second finds it flagged already: nothing new to announce
        assert (await client.post(refresh, headers=headers)).status_code == 409
    params = await consent(flow.sandbox, await flow.start(headers, provider_id))
    assert (await flow.callback(params)).json()["status"] == "active"

    found = await events_of(session, await user_id(client, headers))
    assert types_of(found) == [
        "connection.connected",
        "connection.needs_reauth",
        "connection.reauthorized",
    ]
    connected, needs_reauth, _ = found
    assert {e.subject_type for e in found} == {"connection"}
    assert {str(e.subject_id) for e in found} == {provider_id}
    assert connected.data["alias"] == "Events Schwab"
    assert connected.data["refresh_expires_at"] is not None
    assert needs_reauth.data["reason"] == "refresh_rejected"
    assert not any(secret in str(e.data) for e in found for secret in secrets)


async def test_disconnecting_and_deleting_are_announced_once(
    client: httpx.AsyncClient, flow: ProviderFlow, headers: dict[str, str], session: AsyncSession
) -> None:
    provider_id = await flow.connect(headers)
    for _ in range(2):
        response = await client.delete(
            f"{API}/providers/{provider_id}/authorization", headers=headers
        )
        assert response.status_code == 200
    assert (
        await client.delete(f"{API}/providers/{provider_id}", headers=headers)
    ).status_code == 204

    found = await events_of(session, await user_id(client, headers), "connection.disconnected")
    assert [e.data["deleted"] for e in found] == [False, True]
