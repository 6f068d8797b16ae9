"""GET/PATCH /users/me and POST /users/me/password."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession
from tests.support.auth import (
    API,
    DEFAULT_PASSWORD,
    audit_rows,
    bearer,
    login,
    register,
    unique_email,
)

ME = f"{API}/users/me"
NEW_PASSWORD = "brand-new-kestrel-31"


async def test_rename(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email=email)
    tokens = await login(client, email)
    response = await client.patch(ME, json={"name": "  Grace Hopper "}, headers=bearer(tokens))
    assert response.status_code == 200
    assert response.json()["name"] == "Grace Hopper"
    assert (await client.get(ME, headers=bearer(tokens))).json()["name"] == "Grace Hopper"


async def test_rename_refuses_empty_names_and_other_fields(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email=email)
    headers = bearer(await login(client, email))
    for body in ({"name": "   "}, {"name": "x" * 201}, {"name": "A", "email": "b@example.com"}):
        response = await client.patch(ME, json=body, headers=headers)
        assert response.status_code == 422, body
    assert (await client.get(ME, headers=headers)).json()["email"] == email


async def _change(
    client: httpx.AsyncClient, tokens: dict[str, str], current: str, new: str
) -> httpx.Response:
    return await client.post(
        f"{ME}/password",
        json={"current_password": current, "new_password": new},
        headers=bearer(tokens),
    )


async def test_password_change_revokes_every_other_session(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    email = unique_email()
    await register(client, email=email)
    here, elsewhere = await login(client, email), await login(client, email)
    assert (await _change(client, here, DEFAULT_PASSWORD, NEW_PASSWORD)).status_code == 204
    assert (await client.get(ME, headers=bearer(here))).status_code == 200
    assert (await client.get(ME, headers=bearer(elsewhere))).status_code == 401
    refresh = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": elsewhere["refresh_token"]}
    )
    assert refresh.status_code == 401
    old = await client.post(
        f"{API}/auth/login", json={"email": email, "password": DEFAULT_PASSWORD}
    )
    assert old.status_code == 401
    await login(client, email, NEW_PASSWORD)
    [row] = await audit_rows(session, "password.change")
    assert (row.outcome, row.details) == ("success", {"sessions_revoked": 1})


async def test_wrong_current_password_is_refused(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    email = unique_email()
    await register(client, email=email)
    tokens = await login(client, email)
    response = await _change(client, tokens, "not-the-password", NEW_PASSWORD)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    await login(client, email)  # unchanged
    [row] = await audit_rows(session, "password.change")
    assert row.outcome == "failure"


async def test_weak_new_password_is_422(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email=email)
    tokens = await login(client, email)
    response = await _change(client, tokens, DEFAULT_PASSWORD, "password1234")
    assert response.status_code == 422
    assert "common" in response.json()["detail"]
    await login(client, email)  # unchanged
