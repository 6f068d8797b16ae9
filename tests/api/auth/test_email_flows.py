"""Email verification and password reset: mailed single-use tokens, the same answer for anyone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select
from tests.support.auth import (
    API,
    DEFAULT_PASSWORD,
    Outbox,
    audit_rows,
    bearer,
    login,
    register,
    unique_email,
    user_row,
)

from dashtam.auth.tokens import hash_token
from dashtam.models.auth import EmailToken

NEW_PASSWORD = "quiet-meadow-signal-58"


async def _verify(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(f"{API}/auth/verify-email", json={"token": token})


async def _resend(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post(f"{API}/auth/verify-email/resend", json={"email": email})


async def _reset(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post(f"{API}/auth/password-reset", json={"email": email})


async def _confirm(client: httpx.AsyncClient, token: str, password: str) -> httpx.Response:
    return await client.post(
        f"{API}/auth/password-reset/confirm", json={"token": token, "new_password": password}
    )


async def test_verification_token_verifies_once(
    client: httpx.AsyncClient, session: AsyncSession, outbox: Outbox
) -> None:
    email = unique_email()
    await register(client, email=email)
    token = outbox.token(email, "Verify")
    response = await _verify(client, token)
    assert response.status_code == 200
    assert response.json()["email_verified_at"] is not None
    again = await _verify(client, token)
    assert again.status_code == 400
    assert again.headers["content-type"] == "application/problem+json"
    assert len(await audit_rows(session, "email.verify")) == 1


async def test_garbage_verification_token_is_400(client: httpx.AsyncClient) -> None:
    assert (await _verify(client, "x" * 43)).status_code == 400


async def test_resend_mails_a_new_token_that_verifies(
    client: httpx.AsyncClient, session: AsyncSession, outbox: Outbox
) -> None:
    email = unique_email()
    user = await register(client, email=email)
    first = outbox.token(email, "Verify")
    response = await _resend(client, f"  {email.upper()} ")  # normalised like everywhere else
    assert response.status_code == 202
    assert len(outbox.to(email)) == 2
    second = outbox.token(email, "Verify")
    assert second != first
    assert (await _verify(client, second)).status_code == 200
    [row] = await audit_rows(session, "email.verify.resend")
    assert (str(row.user_id), row.outcome) == (user["id"], "success")
    assert row.details == {}  # no token, nothing else either


async def test_resend_answers_the_same_whoever_asks_and_mails_only_the_unverified(
    client: httpx.AsyncClient, session: AsyncSession, outbox: Outbox
) -> None:
    unverified, verified, inactive, unknown = (unique_email() for _ in range(4))
    for email in (unverified, verified, inactive):
        await register(client, email=email)
    assert (await _verify(client, outbox.token(verified, "Verify"))).status_code == 200
    (await user_row(session, inactive)).is_active = False
    await session.commit()
    responses = [await _resend(client, e) for e in (unverified, verified, inactive, unknown)]
    assert {r.status_code for r in responses} == {202}
    assert len({r.text for r in responses}) == 1
    assert len(outbox.to(unverified)) == 2
    assert len(outbox.to(verified)) == len(outbox.to(inactive)) == 1  # the registration mail
    assert outbox.to(unknown) == []
    assert len(await audit_rows(session, "email.verify.resend")) == 1


async def test_reset_answers_the_same_for_known_and_unknown_addresses(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    known = unique_email()
    await register(client, email=known)
    unknown = unique_email()
    first, second = await _reset(client, known), await _reset(client, unknown)
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert [m["Subject"] for m in outbox.to(known)][-1] == "Reset your Dashtam password"
    assert outbox.to(unknown) == []


async def test_reset_sets_the_password_and_ends_every_session(
    client: httpx.AsyncClient, session: AsyncSession, outbox: Outbox
) -> None:
    email = unique_email()
    await register(client, email=email)
    one, two = await login(client, email), await login(client, email)
    await _reset(client, email)
    token = outbox.token(email, "Reset")
    assert (await _confirm(client, token, NEW_PASSWORD)).status_code == 204
    for tokens in (one, two):
        assert (await client.get(f"{API}/users/me", headers=bearer(tokens))).status_code == 401
        refresh = await client.post(
            f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refresh.status_code == 401
    old = await client.post(
        f"{API}/auth/login", json={"email": email, "password": DEFAULT_PASSWORD}
    )
    assert old.status_code == 401
    me = await client.get(
        f"{API}/users/me", headers=bearer(await login(client, email, NEW_PASSWORD))
    )
    assert me.json()["email_verified_at"] is not None  # the mailbox answered
    [row] = await audit_rows(session, "password.reset")
    assert row.details == {"sessions_revoked": 2}
    assert (await _confirm(client, token, "another-fresh-pass-77")).status_code == 400


async def test_a_newer_reset_makes_older_tokens_useless_once_one_is_used(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    email = unique_email()
    await register(client, email=email)
    await _reset(client, email)
    older = outbox.token(email, "Reset")
    await _reset(client, email)
    newer = outbox.token(email, "Reset")
    assert older != newer
    assert (await _confirm(client, newer, NEW_PASSWORD)).status_code == 204
    assert (await _confirm(client, older, "another-fresh-pass-77")).status_code == 400


async def test_expired_reset_token_is_400(
    client: httpx.AsyncClient, session: AsyncSession, outbox: Outbox
) -> None:
    email = unique_email()
    await register(client, email=email)
    await _reset(client, email)
    token = outbox.token(email, "Reset")
    await session.execute(
        update(EmailToken)
        .where(EmailToken.token_hash == hash_token(token))
        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    await session.commit()
    assert (await _confirm(client, token, NEW_PASSWORD)).status_code == 400


async def test_reset_token_lives_fifteen_minutes(
    client: httpx.AsyncClient, session: AsyncSession, outbox: Outbox
) -> None:
    email = unique_email()
    await register(client, email=email)
    before = datetime.now(UTC)
    await _reset(client, email)
    after = datetime.now(UTC)
    row = await session.scalar(
        select(EmailToken).where(EmailToken.token_hash == hash_token(outbox.token(email, "Reset")))
    )
    assert row is not None
    assert before + timedelta(minutes=15) <= row.expires_at <= after + timedelta(minutes=15)


async def test_weak_password_does_not_spend_the_reset_token(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    email = unique_email()
    await register(client, email=email)
    await _reset(client, email)
    token = outbox.token(email, "Reset")
    weak = await _confirm(client, token, "short")
    assert weak.status_code == 422
    assert "at least 12" in weak.json()["detail"]
    assert (await _confirm(client, token, NEW_PASSWORD)).status_code == 204


async def test_mailed_tokens_are_stored_only_as_hashes(
    client: httpx.AsyncClient, session: AsyncSession, outbox: Outbox
) -> None:
    email = unique_email()
    await register(client, email=email)
    token = outbox.token(email, "Verify")
    hashes = list(await session.scalars(select(EmailToken.token_hash)))
    assert hash_token(token) in hashes
    assert token not in hashes
