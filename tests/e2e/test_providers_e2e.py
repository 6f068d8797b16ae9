"""The whole connection over real HTTP between real processes: app, callback server, sandbox.

A client that follows redirects like a browser: consent at the sandbox, the redirect to the
callback server, its server-to-server call to the app, the result page; then refresh and
disconnect over the API, the audit trail, and no plaintext secret in any process's log.
"""

from __future__ import annotations

import asyncio
import html
import re
import subprocess
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from tests.e2e.conftest import Stack
from tests.support.metrics import Scrape
from tests.support.providers import API, plaintext_tokens

from dashtam.core.crypto import TokenCipher
from dashtam.models import ProviderAuditLog

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def hidden_fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in HIDDEN.findall(page)}


async def _json(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def test_connect_refresh_disconnect_between_processes(
    stack: Stack,
    api: httpx.AsyncClient,
    user_headers: dict[str, str],
    engine: AsyncEngine,
    promtool: str,
) -> None:
    headers = user_headers
    created = await _json(
        await api.post(
            f"{API}/providers", json={"provider_key": "schwab", "alias": "E2E"}, headers=headers
        ),
        201,
    )
    base = f"{API}/providers/{created['id']}"
    start = await _json(await api.post(f"{base}/authorization", headers=headers))
    assert start["authorization_url"].startswith(f"{stack.sandbox_url}/v1/oauth/authorize?")

    async with httpx.AsyncClient(follow_redirects=True, timeout=30) as browser:
        consent = await browser.get(start["authorization_url"])
        assert consent.status_code == 200
        result = await browser.post(
            f"{stack.sandbox_url}/v1/oauth/authorize",
            data=hidden_fields(consent.text) | {"action": "approve"},
        )
    assert str(result.url).startswith(f"{stack.callback_url}/callback?")
    assert result.status_code == 200, result.text
    assert '<h1 class="ok" id="result">Connected</h1>' in result.text
    code = httpx.URL(result.history[-1].headers["location"]).params["code"]

    status = await _json(await api.get(f"{base}/authorization", headers=headers))
    assert status["status"] == "active"
    cipher = TokenCipher.from_setting(stack.settings.TOKEN_ENCRYPTION_KEYS)
    async with AsyncSession(engine) as session:
        secrets = [code, *await plaintext_tokens(session, cipher, created["id"])]

    refreshed = await _json(await api.post(f"{base}/authorization/refresh", headers=headers))
    assert refreshed["last_refresh_at"] is not None
    stats = await _json(await api.get(f"{stack.sandbox_url}/sandbox/stats"))
    assert stats["refresh_grants"] >= 1
    async with AsyncSession(engine) as session:
        secrets += await plaintext_tokens(session, cipher, created["id"])

    gone = await _json(await api.delete(f"{base}/authorization", headers=headers))
    assert gone["status"] == "disconnected"
    audit = await _json(await api.get(f"{base}/audit-logs", headers=headers))
    assert [item["action"] for item in audit["items"]] == [
        "disconnected",
        "token_refreshed",
        "token_exchanged",
        "callback_received",
        "authorize_started",
        "provider_created",
    ]
    async with AsyncSession(engine) as session:
        exchanged = await session.scalar(
            select(ProviderAuditLog).where(
                ProviderAuditLog.provider_id == created["id"],
                ProviderAuditLog.action == "token_exchanged",
            )
        )
    assert exchanged is not None
    assert exchanged.ip_address is not None
    assert exchanged.request_id

    logs = stack.logs()
    assert "callback completed" in logs  # the logs are really being written
    metrics = (await api.get("/metrics")).text
    for secret in set(secrets):
        for text in (logs, metrics):
            assert secret not in text
            assert secret.rstrip("@") not in text
            assert quote(secret, safe="") not in text

    # The app process counted its provider calls (exchange, refresh) by endpoint template.
    scraped = Scrape.parse(metrics)
    token_calls = {"provider": "schwab", "endpoint": "/v1/oauth/token", "status": "200"}
    assert scraped.value("dashtam_provider_requests_total", **token_calls) >= 2
    assert scraped.value("dashtam_provider_token_refreshes_total", outcome="success") >= 1
    route = f"{API}/providers/{{provider_id}}/authorization/refresh"
    assert (
        scraped.value("dashtam_http_requests_total", method="POST", route=route, status="200") >= 1
    )
    checked = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=metrics,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_forged_internal_call_is_refused(stack: Stack, api: httpx.AsyncClient) -> None:
    response = await api.post(
        f"{API}/internal/oauth/callback",
        json={"code": "C0.x@", "state": "s"},
        headers={"X-Dashtam-Callback-Secret": "guess"},
    )
    assert response.status_code == 401
    page = await api.get(f"{stack.callback_url}/callback", params={"state": "s", "code": "C0.x@"})
    assert page.status_code == 400
    assert "expired or is not known" in page.text
