"""The OAuth flow over the API: start, consent at the sandbox, callback, status, refresh,
disconnect, and every way the callback can fail."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
from redis.asyncio import Redis
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from tests.support.auth import signup_and_login
from tests.support.providers import API, ProviderFlow, consent, token_row

from dashtam.core.redis import RedisKeys
from dashtam.models import ProviderAuditLog, ProviderConnection
from dashtam.providers.audit import AnonymousFailures
from dashtam.sandbox.app import SandboxState


def _approx(value: str, expected: datetime, slack: float = 60.0) -> bool:
    return abs((datetime.fromisoformat(value) - expected).total_seconds()) < slack


async def test_connect_makes_the_connection_active(
    flow: ProviderFlow, headers: dict[str, str], sandbox_state: SandboxState
) -> None:
    provider_id = await flow.create(headers)
    url = await flow.start(headers, provider_id)
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(flow.sandbox.base_url.join("/v1/oauth/authorize").__str__())
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["state"][0]) >= 43
    params = await consent(flow.sandbox, url)
    assert params["code"].endswith("@")  # Schwab-style; decoded exactly once on the way in
    response = await flow.callback(params)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "active"
    assert "connected" in response.json()["message"]

    status = await flow.status(headers, provider_id)
    now = datetime.now(UTC)
    assert status["status"] == "active"
    assert _approx(status["access_expires_at"], now + timedelta(minutes=30))
    assert _approx(status["refresh_expires_at"], now + timedelta(days=7))
    assert status["warning"] is None
    assert status["last_error"] is None
    assert sandbox_state.stats.authorization_code_grants == 1
    assert await flow.audit_actions(headers, provider_id) == [
        "token_exchanged",
        "callback_received",
        "authorize_started",
        "provider_created",
    ]


async def test_audit_rows_carry_request_and_provider_details(
    flow: ProviderFlow, headers: dict[str, str]
) -> None:
    provider_id = await flow.connect(headers)
    response = await flow.client.get(
        f"{API}/providers/{provider_id}/audit-logs", headers=headers, params={"limit": 1}
    )
    page = response.json()
    assert page["total"] == 4
    assert page["limit"] == 1
    assert len(page["items"]) == 1
    exchanged = page["items"][0]
    assert exchanged["action"] == "token_exchanged"
    assert exchanged["outcome"] == "success"
    assert exchanged["provider_http_status"] == 200
    assert exchanged["provider_latency_ms"] is not None
    assert exchanged["request_id"]
    assert exchanged["details"] == {"expires_in": 1800, "pkce": True}
    second = await flow.client.get(
        f"{API}/providers/{provider_id}/audit-logs",
        headers=headers,
        params={"limit": 2, "offset": 2},
    )
    assert [item["action"] for item in second.json()["items"]] == [
        "authorize_started",
        "provider_created",
    ]


async def test_consent_denied_is_recorded_and_explained(
    flow: ProviderFlow, headers: dict[str, str]
) -> None:
    provider_id = await flow.create(headers)
    params = await consent(flow.sandbox, await flow.start(headers, provider_id), action="deny")
    assert params["error"] == "access_denied"
    response = await flow.callback(params)
    assert response.status_code == 400
    assert "declined" in response.json()["detail"]
    status = await flow.status(headers, provider_id)
    assert (status["status"], status["last_error_code"]) == ("error", "consent_denied")
    assert "Allow" in status["last_error"]


async def test_state_is_single_use(
    flow: ProviderFlow,
    headers: dict[str, str],
    session: AsyncSession,
    redis: Redis,
    redis_keys: RedisKeys,
) -> None:
    provider_id = await flow.create(headers)
    params = await consent(flow.sandbox, await flow.start(headers, provider_id))
    assert (await flow.callback(params)).status_code == 200
    replay = await flow.callback(params)
    assert replay.status_code == 400
    assert replay.json()["type"].endswith("state_replayed")
    assert "already used" in replay.json()["detail"]
    assert "expired or is not known" not in replay.json()["detail"]
    # Replays are anonymous: counted, and written as the source's row of the minute.
    assert (await flow.audit_actions(headers, provider_id))[0] == "token_exchanged"
    await AnonymousFailures(redis, redis_keys).flush(session, now=time.time() + 60)
    assert (await flow.audit_actions(headers, provider_id))[0] == "callback_received"


async def test_unknown_state_is_refused(flow: ProviderFlow) -> None:
    response = await flow.callback({"code": "C0.x@", "state": "made-up"})
    assert response.status_code == 400
    assert response.json()["type"].endswith("state_unknown")


async def test_only_the_newest_state_of_a_connection_counts(
    flow: ProviderFlow, headers: dict[str, str]
) -> None:
    provider_id = await flow.create(headers)
    first = await consent(flow.sandbox, await flow.start(headers, provider_id))
    await flow.start(headers, provider_id)
    response = await flow.callback(first)
    assert response.status_code == 400
    assert response.json()["type"].endswith("state_superseded")
    assert (await flow.status(headers, provider_id))["status"] == "pending"


async def test_a_code_cannot_be_moved_to_another_users_state(
    client: httpx.AsyncClient, flow: ProviderFlow, headers: dict[str, str]
) -> None:
    """Login injection: the victim's state with the attacker's code fails PKCE at Schwab."""
    victim_id = await flow.create(headers)
    victim_url = await flow.start(headers, victim_id)
    attacker = await signup_and_login(client)
    attacker_id = await flow.create(attacker)
    attacker_params = await consent(flow.sandbox, await flow.start(attacker, attacker_id))
    victim_state = parse_qs(urlsplit(victim_url).query)["state"][0]
    response = await flow.callback({"code": attacker_params["code"], "state": victim_state})
    assert response.status_code == 400
    assert response.json()["type"].endswith("code_rejected")
    assert (await flow.status(headers, victim_id))["status"] == "error"
    assert (await flow.status(attacker, attacker_id))["status"] == "pending"


async def test_a_state_of_another_instance_cannot_finish_this_one(
    flow: ProviderFlow, headers: dict[str, str]
) -> None:
    one = await flow.create(headers, "One")
    two = await flow.create(headers, "Two")
    params_one = await consent(flow.sandbox, await flow.start(headers, one))
    url_two = await flow.start(headers, two)
    state_two = parse_qs(urlsplit(url_two).query)["state"][0]
    response = await flow.callback({"code": params_one["code"], "state": state_two})
    assert response.status_code == 400
    assert (await flow.status(headers, one))["status"] == "pending"
    assert (await flow.status(headers, two))["status"] == "error"


async def test_state_of_a_deleted_instance_is_refused(
    client: httpx.AsyncClient, flow: ProviderFlow, headers: dict[str, str]
) -> None:
    provider_id = await flow.create(headers)
    params = await consent(flow.sandbox, await flow.start(headers, provider_id))
    await client.delete(f"{API}/providers/{provider_id}", headers=headers)
    response = await flow.callback(params)
    assert response.status_code == 400
    assert response.json()["type"].endswith("state_mismatch")


async def test_code_is_not_url_decoded_a_second_time(
    flow: ProviderFlow, headers: dict[str, str]
) -> None:
    provider_id = await flow.create(headers)
    params = await consent(flow.sandbox, await flow.start(headers, provider_id))
    still_encoded = params | {"code": params["code"].replace("@", "%40")}
    response = await flow.callback(still_encoded)
    assert response.status_code == 400
    assert response.json()["type"].endswith("code_rejected")


async def test_expired_code_tells_the_person_to_start_again(
    flow: ProviderFlow, headers: dict[str, str], sandbox_state: SandboxState
) -> None:
    provider_id = await flow.create(headers)
    params = await consent(flow.sandbox, await flow.start(headers, provider_id))
    sandbox_state.oauth.clock = lambda: time.time() + 120  # past the 60 s code lifetime
    response = await flow.callback(params)
    assert response.status_code == 400
    assert "Start the connection again" in response.json()["detail"]
    status = await flow.status(headers, provider_id)
    assert (status["status"], status["last_error_code"]) == ("error", "code_rejected")


async def test_provider_server_error_on_exchange(
    flow: ProviderFlow, headers: dict[str, str], session: AsyncSession
) -> None:
    provider_id = await flow.create(headers)
    params = await consent(flow.sandbox, await flow.start(headers, provider_id))
    await flow.sandbox.post("/sandbox/faults", json={"fault": "server_error", "target": "token"})
    response = await flow.callback(params)
    assert response.status_code == 502
    assert "try again in a few minutes" in response.json()["detail"]
    row = await session.scalar(
        select(ProviderAuditLog).where(
            ProviderAuditLog.provider_id == uuid.UUID(provider_id),
            ProviderAuditLog.action == "token_exchanged",
        )
    )
    assert row is not None
    assert (row.outcome, row.provider_http_status) == ("failure", 500)
    assert row.details == {"reason": "provider_unavailable", "provider_error": "server_error"}


async def test_forged_callback_is_refused_and_audited(
    flow: ProviderFlow,
    headers: dict[str, str],
    session: AsyncSession,
    redis: Redis,
    redis_keys: RedisKeys,
) -> None:
    provider_id = await flow.create(headers)
    params = await consent(flow.sandbox, await flow.start(headers, provider_id))
    for secret in ("", "not-the-secret"):
        response = await flow.callback(params, secret=secret)
        assert response.status_code == 401
    await AnonymousFailures(redis, redis_keys).flush(session, now=time.time() + 60)
    rejected = await session.scalar(
        text("SELECT details->>'count' FROM provider_audit_logs WHERE action = 'callback_rejected'")
    )
    assert rejected == "2"  # one row for the source, with the count
    # The state was not consumed by the forged calls: the real callback still works.
    assert (await flow.callback(params)).json()["status"] == "active"


async def test_refresh_now_and_status(
    client: httpx.AsyncClient,
    flow: ProviderFlow,
    headers: dict[str, str],
    sandbox_state: SandboxState,
    session: AsyncSession,
) -> None:
    provider_id = await flow.connect(headers)
    before = await token_row(session, provider_id)
    assert before is not None
    old_access, old_refresh = before.access_token_encrypted, before.refresh_token_encrypted
    response = await client.post(
        f"{API}/providers/{provider_id}/authorization/refresh", headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "active"
    assert response.json()["last_refresh_at"] is not None
    assert sandbox_state.stats.refresh_grants == 1
    after = await token_row(session, provider_id)
    assert after is not None
    assert after.access_token_encrypted != old_access
    assert after.refresh_token_encrypted == old_refresh  # Schwab keeps the refresh token
    assert (await flow.audit_actions(headers, provider_id))[0] == "token_refreshed"


async def test_revoked_login_needs_reauth_without_retrying(
    client: httpx.AsyncClient,
    flow: ProviderFlow,
    headers: dict[str, str],
    sandbox_state: SandboxState,
) -> None:
    provider_id = await flow.connect(headers)
    await flow.sandbox.post("/sandbox/tokens/revoke")
    path = f"{API}/providers/{provider_id}/authorization/refresh"
    first = await client.post(path, headers=headers)
    assert first.status_code == 409
    assert first.json()["connection"] == "needs_reauth"
    reauthorize = f"Re-authorize it: POST {API}/providers/{provider_id}/authorization"
    assert reauthorize in first.json()["detail"]
    second = await client.post(path, headers=headers)
    assert second.status_code == 409
    assert sandbox_state.stats.token_requests == 2  # the code exchange and one refresh
    status = await flow.status(headers, provider_id)
    assert (status["status"], status["last_error_code"]) == ("needs_reauth", "refresh_rejected")
    assert reauthorize in status["last_error"]
    actions = await flow.audit_actions(headers, provider_id)
    assert actions[0] == "refresh_failed"


async def test_reconnecting_after_needs_reauth(
    client: httpx.AsyncClient, flow: ProviderFlow, headers: dict[str, str]
) -> None:
    provider_id = await flow.connect(headers)
    await flow.sandbox.post("/sandbox/tokens/revoke")
    await client.post(f"{API}/providers/{provider_id}/authorization/refresh", headers=headers)
    params = await consent(flow.sandbox, await flow.start(headers, provider_id))
    assert (await flow.callback(params)).json()["status"] == "active"
    status = await flow.status(headers, provider_id)
    assert status["status"] == "active"
    assert status["last_error"] is None


async def test_warning_when_the_refresh_token_is_about_to_die(
    flow: ProviderFlow, headers: dict[str, str], session: AsyncSession
) -> None:
    provider_id = await flow.connect(headers)
    token = await token_row(session, provider_id)
    assert token is not None
    token.refresh_expires_at = datetime.now(UTC) + timedelta(hours=3)
    await session.commit()
    status = await flow.status(headers, provider_id)
    assert "24 hours" in status["warning"]


async def test_disconnect_destroys_tokens_and_keeps_the_audit(
    client: httpx.AsyncClient, flow: ProviderFlow, headers: dict[str, str], session: AsyncSession
) -> None:
    provider_id = await flow.connect(headers)
    response = await client.delete(f"{API}/providers/{provider_id}/authorization", headers=headers)
    assert response.status_code == 200
    assert response.json()["status"] == "disconnected"
    assert response.json()["access_expires_at"] is None
    assert await token_row(session, provider_id) is None
    connection = await session.scalar(
        select(ProviderConnection).where(ProviderConnection.provider_id == uuid.UUID(provider_id))
    )
    assert connection is not None
    assert connection.status == "disconnected"
    refresh = await client.post(
        f"{API}/providers/{provider_id}/authorization/refresh", headers=headers
    )
    assert refresh.status_code == 409
    assert (await flow.audit_actions(headers, provider_id))[0] == "disconnected"
