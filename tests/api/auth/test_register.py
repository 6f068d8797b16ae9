"""POST /auth/register: normalised email, strength rules, duplicates, verification mail."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from tests.support.auth import (
    API,
    DEFAULT_PASSWORD,
    Outbox,
    audit_rows,
    register,
    unique_email,
    user_row,
)


async def test_register_returns_the_user_without_secrets(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    email = unique_email()
    response = await client.post(
        f"{API}/auth/register",
        json={"email": email, "password": DEFAULT_PASSWORD, "name": "  Ada Lovelace "},
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "email", "name", "email_verified_at", "created_at"}
    assert (body["email"], body["name"], body["email_verified_at"]) == (email, "Ada Lovelace", None)
    stored = await user_row(session, email)
    assert stored.password_hash.startswith("$argon2id$")
    assert DEFAULT_PASSWORD not in response.text
    assert stored.password_hash not in response.text


async def test_email_is_normalised(client: httpx.AsyncClient) -> None:
    local = unique_email().partition("@")[0]
    user = await register(client, email=f"  {local.upper()}@Example.COM \t")
    assert user["email"] == f"{local}@example.com"


async def test_duplicate_email_in_any_case_is_409(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email=email)
    response = await client.post(
        f"{API}/auth/register",
        json={"email": email.upper(), "password": DEFAULT_PASSWORD, "name": "Again"},
    )
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/email_taken")


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short-pw-1", "at least 12 characters"),
        ("Password1234", "common or breached"),
        ("QWERTYUIOP123", "common or breached"),
        ("{email}", "must not be your email"),
    ],
)
async def test_weak_password_is_422_and_says_why(
    client: httpx.AsyncClient, session: AsyncSession, password: str, reason: str
) -> None:
    email = unique_email()
    response = await client.post(
        f"{API}/auth/register",
        json={"email": email, "password": password.format(email=email), "name": "Weak"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert reason in response.json()["detail"]
    assert response.json()["type"].endswith("/weak_password")
    assert await audit_rows(session, "register") == []


async def test_registration_mails_a_verification_token_and_is_audited(
    client: httpx.AsyncClient, session: AsyncSession, outbox: Outbox
) -> None:
    email = unique_email()
    user = await register(client, email=email)
    [mail] = outbox.to(email)
    assert "Verify" in mail["Subject"]
    assert "/api/v1/auth/verify-email" in mail.get_content()
    [row] = await audit_rows(session, "register")
    assert (str(row.user_id), row.outcome) == (user["id"], "success")
    assert str(row.ip_address) == "127.0.0.1"
