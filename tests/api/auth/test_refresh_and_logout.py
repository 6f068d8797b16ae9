"""Refresh rotation, reuse detection revoking the family, and logout killing both tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select
from tests.support.auth import API, audit_rows, bearer, login, register, unique_email

from dashtam.auth.tokens import hash_token
from dashtam.models.auth import RefreshToken

ME = f"{API}/users/me"


async def _refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(f"{API}/auth/refresh", json={"refresh_token": token})


async def _signed_in(client: httpx.AsyncClient) -> dict[str, str]:
    email = unique_email()
    await register(client, email=email)
    return await login(client, email)


async def test_refresh_rotates_the_pair(client: httpx.AsyncClient) -> None:
    first = await _signed_in(client)
    response = await _refresh(client, first["refresh_token"])
    assert response.status_code == 200
    second = response.json()
    assert second["token_type"] == "bearer"
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert (await client.get(ME, headers=bearer(second))).status_code == 200
    third = await _refresh(client, second["refresh_token"])
    assert third.status_code == 200


async def test_reusing_a_spent_refresh_token_revokes_the_whole_family(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    first = await _signed_in(client)
    second = (await _refresh(client, first["refresh_token"])).json()
    reuse = await _refresh(client, first["refresh_token"])
    assert reuse.status_code == 401
    assert reuse.headers["content-type"] == "application/problem+json"
    # the legitimate successor and the session's access tokens are dead too
    assert (await _refresh(client, second["refresh_token"])).status_code == 401
    assert (await client.get(ME, headers=bearer(second))).status_code == 401
    assert (await client.get(ME, headers=bearer(first))).status_code == 401
    [row] = await audit_rows(session, "refresh.reuse")
    assert row.outcome == "denied"
    assert row.details["session_was_active"] is True
    assert first["refresh_token"] not in str(row.details)


async def test_reuse_leaves_other_sessions_alone(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email=email)
    victim, other = await login(client, email), await login(client, email)
    await _refresh(client, victim["refresh_token"])
    assert (await _refresh(client, victim["refresh_token"])).status_code == 401
    assert (await client.get(ME, headers=bearer(other))).status_code == 200
    assert (await _refresh(client, other["refresh_token"])).status_code == 200


async def test_unknown_refresh_token_is_401(client: httpx.AsyncClient) -> None:
    response = await _refresh(client, "A" * 43)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_expired_refresh_token_is_401(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    tokens = await _signed_in(client)
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.token_hash == hash_token(tokens["refresh_token"]))
        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    await session.commit()
    assert (await _refresh(client, tokens["refresh_token"])).status_code == 401


async def test_refresh_tokens_are_stored_only_as_hashes(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    tokens = await _signed_in(client)
    stored = list(await session.scalars(select(RefreshToken.token_hash)))
    assert stored == [hash_token(tokens["refresh_token"])]


async def test_logout_kills_the_access_and_refresh_token(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    tokens = await _signed_in(client)
    response = await client.post(f"{API}/auth/logout", headers=bearer(tokens))
    assert response.status_code == 204
    still = await client.get(ME, headers=bearer(tokens))
    assert still.status_code == 401
    assert still.json()["detail"] == "The session has ended; sign in again."
    assert (await _refresh(client, tokens["refresh_token"])).status_code == 401
    assert len(await audit_rows(session, "logout")) == 1


async def test_logout_ends_only_the_current_session(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email=email)
    laptop, phone = await login(client, email), await login(client, email)
    await client.post(f"{API}/auth/logout", headers=bearer(laptop))
    assert (await client.get(ME, headers=bearer(phone))).status_code == 200


async def test_logout_needs_a_token(client: httpx.AsyncClient) -> None:
    assert (await client.post(f"{API}/auth/logout")).status_code == 401


async def test_malformed_refresh_body_is_422(client: httpx.AsyncClient) -> None:
    for body in ({}, {"refresh_token": ""}, {"refresh_token": 12}, {"token": "x"}):
        response = await client.post(f"{API}/auth/refresh", json=body)
        assert response.status_code == 422, body
