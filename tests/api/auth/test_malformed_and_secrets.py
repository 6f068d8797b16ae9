"""Malformed bodies are 422 problem+json (never 500), and no secret leaks into audit or logs."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select
from tests.support.auth import (
    API,
    DEFAULT_PASSWORD,
    Outbox,
    bearer,
    login,
    register,
    signup_and_login,
    unique_email,
)

from dashtam.auth.mailer import get_mailer
from dashtam.models.auth import AuthAuditLog

PUBLIC = [
    "/auth/register",
    "/auth/login",
    "/auth/refresh",
    "/auth/verify-email",
    "/auth/verify-email/resend",
    "/auth/password-reset",
    "/auth/password-reset/confirm",
]
SIGNED_IN = [("POST", "/users/me/password"), ("PATCH", "/users/me")]
BAD_BODIES: list[bytes] = [b"", b"not json", b"[]", b"null", b'{"email": 5}', b"{" * 50]


@pytest.mark.parametrize("path", PUBLIC)
@pytest.mark.parametrize("raw", BAD_BODIES)
async def test_public_endpoints_reject_malformed_bodies(
    client: httpx.AsyncClient, path: str, raw: bytes
) -> None:
    response = await client.post(
        f"{API}{path}", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"]


@pytest.mark.parametrize(("method", "path"), SIGNED_IN)
@pytest.mark.parametrize("raw", BAD_BODIES)
async def test_signed_in_endpoints_reject_malformed_bodies(
    client: httpx.AsyncClient, method: str, path: str, raw: bytes
) -> None:
    headers = {**await signup_and_login(client), "Content-Type": "application/json"}
    response = await client.request(method, f"{API}{path}", content=raw, headers=headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_validation_errors_never_echo_the_password(client: httpx.AsyncClient) -> None:
    secret = "super-secret-value-" * 20  # too long: refused by validation
    response = await client.post(
        f"{API}/auth/register", json={"email": unique_email(), "password": secret, "name": "A"}
    )
    assert response.status_code == 422
    assert "super-secret-value" not in response.text


async def test_no_secret_reaches_audit_rows_or_logs(
    client: httpx.AsyncClient,
    session: AsyncSession,
    outbox: Outbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    email = unique_email()
    await register(client, email=email)
    secrets_seen = [DEFAULT_PASSWORD, outbox.token(email, "Verify")]
    await client.post(f"{API}/auth/verify-email/resend", json={"email": email})
    secrets_seen.append(outbox.token(email, "Verify"))
    await client.post(f"{API}/auth/login", json={"email": email, "password": "wrong-guess-123"})
    first = await login(client, email)
    second = (
        await client.post(f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]})
    ).json()
    await client.post(f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]})
    third = await login(client, email)
    await client.post(
        f"{API}/users/me/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": "later-pass-phrase-9"},
        headers=bearer(third),
    )
    await client.post(f"{API}/auth/password-reset", json={"email": email})
    reset = outbox.token(email, "Reset")
    await client.post(
        f"{API}/auth/password-reset/confirm",
        json={"token": reset, "new_password": "final-pass-99x"},
    )
    secrets_seen += ["wrong-guess-123", "later-pass-phrase-9", "final-pass-99x", reset]
    for pair in (first, second, third):
        secrets_seen += [pair["access_token"], pair["refresh_token"]]
    rows = list(await session.scalars(select(AuthAuditLog)))
    assert {r.action for r in rows} >= {
        "register",
        "login",
        "refresh.reuse",
        "password.change",
        "password.reset",
        "email.verify.resend",
    }
    recorded = " ".join(f"{r.details} {r.user_agent}" for r in rows) + caplog.text
    for secret in secrets_seen:
        assert secret not in recorded


async def test_mail_goes_to_the_state_folder_by_default(
    app: FastAPI,
    client: httpx.AsyncClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    del app.dependency_overrides[get_mailer]
    app.state.settings = app.state.settings.model_copy(update={"STATE_DIR": str(tmp_path)})
    caplog.set_level(logging.INFO, logger="dashtam.auth.mailer")
    email = unique_email()
    await register(client, email=email)
    [written] = list((tmp_path / "mail").glob("*.eml"))
    assert f"To: {email}" in written.read_text()
    assert any(getattr(r, "path", None) == str(written) for r in caplog.records)
