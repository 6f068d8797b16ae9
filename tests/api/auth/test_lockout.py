"""Per-account lockout after repeated failures: a clear 423 and an audit row, known or not."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from tests.support.auth import API, DEFAULT_PASSWORD, Outbox, audit_rows, register, unique_email
from tests.test_config import TestSettings

THRESHOLD = 3


@pytest.fixture
def app_settings(app_settings: TestSettings) -> TestSettings:
    return app_settings.model_copy(
        update={
            "LOGIN_LOCKOUT_THRESHOLD": THRESHOLD,
            "LOGIN_LOCKOUT_SECONDS": 600,
            "RATE_LIMIT_LOGIN": "100/60",
        }
    )


async def _attempt(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(f"{API}/auth/login", json={"email": email, "password": password})


async def test_threshold_failures_lock_the_account(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    email = unique_email()
    user = await register(client, email=email)
    statuses = [(await _attempt(client, email, "wrong-password-x")).status_code for _ in range(3)]
    assert statuses == [401, 401, 423]
    locked = await _attempt(client, email, DEFAULT_PASSWORD)  # even the right password
    assert locked.status_code == 423
    assert locked.headers["content-type"] == "application/problem+json"
    assert "locked for 10 minute(s)" in locked.json()["detail"]
    assert 0 < int(locked.headers["retry-after"]) <= 600
    [row] = await audit_rows(session, "login.lockout")
    assert (str(row.user_id), row.outcome) == (user["id"], "denied")
    assert "wrong-password-x" not in str(row.details)


async def test_unknown_email_locks_the_same_way(client: httpx.AsyncClient) -> None:
    email = unique_email()
    statuses = [(await _attempt(client, email, "wrong-password-x")).status_code for _ in range(4)]
    assert statuses == [401, 401, 423, 423]


async def test_success_resets_the_failure_count(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email=email)
    for _ in range(THRESHOLD - 1):
        assert (await _attempt(client, email, "wrong-password-x")).status_code == 401
    assert (await _attempt(client, email, DEFAULT_PASSWORD)).status_code == 200
    for _ in range(THRESHOLD - 1):
        assert (await _attempt(client, email, "wrong-password-x")).status_code == 401
    assert (await _attempt(client, email, DEFAULT_PASSWORD)).status_code == 200


async def test_password_reset_lifts_the_lock(client: httpx.AsyncClient, outbox: Outbox) -> None:
    email = unique_email()
    await register(client, email=email)
    for _ in range(THRESHOLD):
        await _attempt(client, email, "wrong-password-x")
    assert (await _attempt(client, email, DEFAULT_PASSWORD)).status_code == 423
    await client.post(f"{API}/auth/password-reset", json={"email": email})
    confirm = await client.post(
        f"{API}/auth/password-reset/confirm",
        json={"token": outbox.token(email, "Reset"), "new_password": "fresh-granite-lamp-99"},
    )
    assert confirm.status_code == 204
    assert (await _attempt(client, email, "fresh-granite-lamp-99")).status_code == 200
