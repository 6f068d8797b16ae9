"""POST /users/me/password guards the password like sign-in does, and voids reset tokens."""

from __future__ import annotations

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from tests.support.auth import (
    API,
    DEFAULT_PASSWORD,
    Outbox,
    audit_rows,
    bearer,
    client_for,
    login,
    register,
    unique_email,
)
from tests.test_config import TestSettings

from dashtam.main import AppResources

THRESHOLD = 3
NEW_PASSWORD = "brand-new-kestrel-31"


@pytest.fixture
def app_settings(app_settings: TestSettings) -> TestSettings:
    return app_settings.model_copy(
        update={
            "LOGIN_LOCKOUT_THRESHOLD": THRESHOLD,
            "LOGIN_LOCKOUT_SECONDS": 600,
            "RATE_LIMIT_PASSWORD_CHANGE": "100/900",
        }
    )


async def _change(
    client: httpx.AsyncClient, tokens: dict[str, str], current: str, new: str = NEW_PASSWORD
) -> httpx.Response:
    return await client.post(
        f"{API}/users/me/password",
        json={"current_password": current, "new_password": new},
        headers=bearer(tokens),
    )


async def test_wrong_current_passwords_lock_the_account(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    email = unique_email()
    user = await register(client, email=email)
    tokens = await login(client, email)
    statuses = [(await _change(client, tokens, "wrong-password-x")).status_code for _ in range(3)]
    assert statuses == [403, 403, 423]
    locked = await _change(client, tokens, DEFAULT_PASSWORD)  # even the right one
    assert locked.status_code == 423
    assert locked.headers["content-type"] == "application/problem+json"
    assert 0 < int(locked.headers["retry-after"]) <= 600
    sign_in = await client.post(
        f"{API}/auth/login", json={"email": email, "password": DEFAULT_PASSWORD}
    )
    assert sign_in.status_code == 423  # one lock for the account, whichever door was tried
    [row] = await audit_rows(session, "login.lockout")
    assert (str(row.user_id), row.outcome) == (user["id"], "denied")
    assert row.details["after"] == "password.change"
    assert "wrong-password-x" not in str(row.details)


async def test_failed_logins_and_changes_share_one_count(client: httpx.AsyncClient) -> None:
    """A stolen access token does not buy a second set of guesses."""
    email = unique_email()
    await register(client, email=email)
    tokens = await login(client, email)
    for _ in range(THRESHOLD - 1):
        wrong = await client.post(
            f"{API}/auth/login", json={"email": email, "password": "wrong-password-x"}
        )
        assert wrong.status_code == 401
    assert (await _change(client, tokens, "wrong-password-x")).status_code == 423


async def test_a_right_current_password_clears_the_count(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email=email)
    tokens = await login(client, email)
    for _ in range(THRESHOLD - 1):
        assert (await _change(client, tokens, "wrong-password-x")).status_code == 403
    assert (await _change(client, tokens, DEFAULT_PASSWORD)).status_code == 204
    for _ in range(THRESHOLD - 1):
        assert (await _change(client, tokens, "wrong-password-x")).status_code == 403
    assert (await _change(client, tokens, NEW_PASSWORD, "third-fresh-pass-99")).status_code == 204


async def test_change_voids_pending_reset_tokens(client: httpx.AsyncClient, outbox: Outbox) -> None:
    """A reset mailed before the change (perhaps requested by whoever knew the old password's
    mailbox) must not undo it."""
    email = unique_email()
    await register(client, email=email)
    tokens = await login(client, email)
    await client.post(f"{API}/auth/password-reset", json={"email": email})
    token = outbox.token(email, "Reset")
    assert (await _change(client, tokens, DEFAULT_PASSWORD)).status_code == 204
    confirm = await client.post(
        f"{API}/auth/password-reset/confirm",
        json={"token": token, "new_password": "attacker-chosen-pass-1"},
    )
    assert confirm.status_code == 400
    await login(client, email, NEW_PASSWORD)


async def test_changes_are_throttled_per_user(
    app_settings: TestSettings,
    engine: AsyncEngine,
    session_factory: async_sessionmaker[AsyncSession],
    redis: Redis,
) -> None:
    """Right or wrong, each check counts: a third within the window is refused."""
    throttled = app_settings.model_copy(update={"RATE_LIMIT_PASSWORD_CHANGE": "2/900"})
    resources = AppResources(engine, session_factory, redis)
    async with client_for(throttled, resources) as client:
        email = unique_email()
        await register(client, email=email)
        tokens = await login(client, email)
        assert (await _change(client, tokens, "wrong-password-x")).status_code == 403
        assert (await _change(client, tokens, DEFAULT_PASSWORD)).status_code == 204
        refused = await _change(client, tokens, NEW_PASSWORD, "third-fresh-pass-99")
        assert refused.status_code == 429
        assert refused.json()["setting"] == "RATE_LIMIT_PASSWORD_CHANGE"
