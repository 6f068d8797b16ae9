"""Bearer access on protected routes: missing, forged, expired, alg:none, or orphaned tokens."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from tests.support.auth import API, signup_and_login, unique_email, user_row
from tests.test_config import TestSettings

from dashtam.auth.tokens import decode_access_token

ME = f"{API}/users/me"


def _assert_401(response: httpx.Response, challenge: str) -> None:
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == challenge


async def test_valid_token_reads_me(client: httpx.AsyncClient) -> None:
    email = unique_email()
    response = await client.get(ME, headers=await signup_and_login(client, email=email))
    assert response.status_code == 200
    assert response.json()["email"] == email


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}]
)
async def test_missing_token_is_401_with_a_bearer_challenge(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    _assert_401(await client.get(ME, headers=headers), "Bearer")


async def _claims_of(client: httpx.AsyncClient, settings: TestSettings) -> dict[str, object]:
    headers = await signup_and_login(client)
    token = headers["Authorization"].removeprefix("Bearer ")
    claims = decode_access_token(settings, token)
    now = datetime.now(UTC)
    return {
        "sub": str(claims.user_id),
        "sid": str(claims.session_id),
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
    }


async def _get_me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get(ME, headers={"Authorization": f"Bearer {token}"})


async def test_token_resigned_with_another_key_is_refused(
    client: httpx.AsyncClient, app_settings: TestSettings
) -> None:
    claims = await _claims_of(client, app_settings)
    forged = jwt.encode(claims, "attacker-key-" + "a" * 40, algorithm="HS256")
    _assert_401(await _get_me(client, forged), 'Bearer error="invalid_token"')


async def test_tampered_signature_is_refused(client: httpx.AsyncClient) -> None:
    token = (await signup_and_login(client))["Authorization"].removeprefix("Bearer ")
    head, body, signature = token.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    _assert_401(await _get_me(client, f"{head}.{body}.{flipped}"), 'Bearer error="invalid_token"')


async def test_expired_token_is_refused(
    client: httpx.AsyncClient, app_settings: TestSettings
) -> None:
    claims = await _claims_of(client, app_settings)
    past = datetime.now(UTC) - timedelta(seconds=30)
    claims.update(iat=past - timedelta(minutes=15), exp=past)
    token = jwt.encode(claims, app_settings.JWT_SECRET_KEY, algorithm="HS256")
    response = await _get_me(client, token)
    _assert_401(response, 'Bearer error="invalid_token"')
    assert response.json()["type"].endswith("/token_expired")
    assert "POST /api/v1/auth/refresh" in response.json()["detail"]


async def test_an_expired_forgery_is_not_told_it_expired(
    client: httpx.AsyncClient, app_settings: TestSettings
) -> None:
    """Only a token whose signature checks out learns that it expired."""
    claims = await _claims_of(client, app_settings)
    past = datetime.now(UTC) - timedelta(seconds=30)
    claims.update(iat=past - timedelta(minutes=15), exp=past)
    response = await _get_me(client, jwt.encode(claims, "attacker-key-" + "a" * 40))
    _assert_401(response, 'Bearer error="invalid_token"')
    assert response.json()["type"].endswith("/invalid_token")
    assert "refresh" not in response.json()["detail"]


async def test_alg_none_token_is_refused(
    client: httpx.AsyncClient, app_settings: TestSettings
) -> None:
    claims = await _claims_of(client, app_settings)
    _assert_401(
        await _get_me(client, jwt.encode(claims, None, algorithm="none")),
        'Bearer error="invalid_token"',
    )


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_other_hmac_algorithm_with_the_real_key_is_refused(
    client: httpx.AsyncClient, app_settings: TestSettings
) -> None:
    claims = await _claims_of(client, app_settings)
    token = jwt.encode(claims, app_settings.JWT_SECRET_KEY, algorithm="HS384")
    _assert_401(await _get_me(client, token), 'Bearer error="invalid_token"')


async def test_token_of_a_deleted_user_is_refused(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    email = unique_email()
    headers = await signup_and_login(client, email=email)
    await session.delete(await user_row(session, email))
    await session.commit()
    _assert_401(await client.get(ME, headers=headers), 'Bearer error="invalid_token"')


async def test_token_of_a_deactivated_user_is_refused(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    email = unique_email()
    headers = await signup_and_login(client, email=email)
    user = await user_row(session, email)
    user.is_active = False
    await session.commit()
    _assert_401(await client.get(ME, headers=headers), 'Bearer error="invalid_token"')
