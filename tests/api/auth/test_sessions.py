"""GET/DELETE /auth/sessions: the user's devices, never a token; another user's id is 404."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession
from tests.support.auth import API, audit_rows, bearer, login, register, unique_email

SESSIONS = f"{API}/auth/sessions"


async def _two_sessions(client: httpx.AsyncClient) -> tuple[dict[str, str], dict[str, str]]:
    email = unique_email()
    await register(client, email=email)
    laptop = await login(client, email, **{"User-Agent": "Laptop/1.0"})
    phone = await login(client, email, **{"User-Agent": "Phone/2.0"})
    return laptop, phone


async def test_sessions_list_devices_and_marks_the_current_one(client: httpx.AsyncClient) -> None:
    laptop, phone = await _two_sessions(client)
    response = await client.get(SESSIONS, headers=bearer(laptop))
    assert response.status_code == 200
    sessions = response.json()
    assert {s["user_agent"] for s in sessions} == {"Laptop/1.0", "Phone/2.0"}
    assert {s["ip_address"] for s in sessions} == {"127.0.0.1"}
    assert [s["user_agent"] for s in sessions if s["current"]] == ["Laptop/1.0"]
    assert set(sessions[0]) == {
        "id",
        "user_agent",
        "ip_address",
        "created_at",
        "last_used_at",
        "current",
    }
    for token in (*laptop.values(), *phone.values()):
        if isinstance(token, str) and len(token) > 20:
            assert token not in response.text


async def test_deleting_a_session_kills_its_tokens(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    laptop, phone = await _two_sessions(client)
    sessions = (await client.get(SESSIONS, headers=bearer(laptop))).json()
    [phone_id] = [s["id"] for s in sessions if not s["current"]]
    assert (
        await client.delete(f"{SESSIONS}/{phone_id}", headers=bearer(laptop))
    ).status_code == 204
    assert (await client.get(f"{API}/users/me", headers=bearer(phone))).status_code == 401
    refresh = await client.post(
        f"{API}/auth/refresh", json={"refresh_token": phone["refresh_token"]}
    )
    assert refresh.status_code == 401
    remaining = (await client.get(SESSIONS, headers=bearer(laptop))).json()
    assert [s["user_agent"] for s in remaining] == ["Laptop/1.0"]
    assert len(await audit_rows(session, "session.revoke")) == 1
    again = await client.delete(f"{SESSIONS}/{phone_id}", headers=bearer(laptop))
    assert again.status_code == 404


async def test_another_users_session_is_404_and_untouched(client: httpx.AsyncClient) -> None:
    mine, _ = await _two_sessions(client)
    theirs, _ = await _two_sessions(client)
    [their_id] = [
        s["id"] for s in (await client.get(SESSIONS, headers=bearer(theirs))).json() if s["current"]
    ]
    response = await client.delete(f"{SESSIONS}/{their_id}", headers=bearer(mine))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    unknown = await client.delete(
        f"{SESSIONS}/00000000-0000-4000-8000-000000000000", headers=bearer(mine)
    )
    assert unknown.json()["detail"] == response.json()["detail"]
    assert (await client.get(f"{API}/users/me", headers=bearer(theirs))).status_code == 200


async def test_session_id_must_be_a_uuid(client: httpx.AsyncClient) -> None:
    mine, _ = await _two_sessions(client)
    response = await client.delete(f"{SESSIONS}/not-a-uuid", headers=bearer(mine))
    assert response.status_code == 422


async def test_sessions_need_a_token(client: httpx.AsyncClient) -> None:
    assert (await client.get(SESSIONS)).status_code == 401
