"""POST /auth/login: tokens, enumeration resistance, rehashing, lockout."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from tests.support.auth import (
    API,
    DEFAULT_PASSWORD,
    audit_rows,
    login,
    register,
    unique_email,
    user_row,
)
from tests.test_config import TestSettings

from dashtam.auth.passwords import Passwords
from dashtam.auth.tokens import decode_access_token


def _without_request_id(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    body.pop("request_id")
    return body


async def test_login_returns_a_bearer_pair(
    client: httpx.AsyncClient, session: AsyncSession, app_settings: TestSettings
) -> None:
    email = unique_email()
    user = await register(client, email=email)
    tokens = await login(client, email)
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == app_settings.ACCESS_TOKEN_TTL_SECONDS
    assert len(tokens["refresh_token"]) == 43
    claims = decode_access_token(app_settings, tokens["access_token"])
    assert str(claims.user_id) == user["id"]
    [row] = await audit_rows(session, "login")
    assert (row.outcome, row.details["session_id"]) == ("success", str(claims.session_id))


async def test_email_is_matched_case_insensitively(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email=email)
    assert (await login(client, f" {email.upper()} "))["token_type"] == "bearer"


async def test_unknown_email_and_wrong_password_get_the_same_answer(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    email = unique_email()
    await register(client, email=email)
    wrong = await client.post(f"{API}/auth/login", json={"email": email, "password": "nope" * 4})
    unknown = await client.post(
        f"{API}/auth/login", json={"email": unique_email(), "password": "nope" * 4}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert _without_request_id(wrong) == _without_request_id(unknown)
    assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"]
    assert wrong.json()["detail"] == "The email or password is incorrect."
    reasons = {row.details["reason"] for row in await audit_rows(session, "login")}
    assert reasons == {"wrong_password", "unknown_email"}


async def test_inactive_account_gets_the_same_answer_as_a_wrong_password(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    email = unique_email()
    await register(client, email=email)
    user = await user_row(session, email)
    user.is_active = False
    await session.commit()
    response = await client.post(
        f"{API}/auth/login", json={"email": email, "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 401
    assert response.json()["detail"] == "The email or password is incorrect."


async def test_login_rehashes_when_parameters_changed(
    client: httpx.AsyncClient, session: AsyncSession, app_settings: TestSettings
) -> None:
    email = unique_email()
    await register(client, email=email)
    user = await user_row(session, email)
    user.password_hash = await Passwords(2, 2048, 1).hash(DEFAULT_PASSWORD)
    old_hash = user.password_hash
    await session.commit()
    await login(client, email)
    new_hash = (await user_row(session, email)).password_hash
    assert new_hash != old_hash
    expected = f"m={app_settings.PASSWORD_HASH_MEMORY_KIB},t={app_settings.PASSWORD_HASH_TIME_COST}"
    assert expected in new_hash
    await login(client, email)  # and the new hash verifies


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": "x"},
        {"email": "a@example.com"},
        {"email": "a@example.com", "password": ""},
        {"email": ["a@example.com"], "password": "x"},
    ],
)
async def test_malformed_login_is_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await client.post(f"{API}/auth/login", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
