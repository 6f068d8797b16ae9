"""The sandbox's OAuth flow behaves as Schwab's does, including its failure modes."""

from typing import Any

import pytest

from dashtam.sandbox.oauth import s256

Sandbox = Any  # the conftest helper; not importable under importlib import mode
VERIFIER = "x" * 43 + "verifier-with-enough-entropy"
DEFAULT_REDIRECT = "https://127.0.0.1:8182/callback"


async def test_consent_page_carries_params_and_offers_both_buttons(sandbox: Sandbox) -> None:
    params = sandbox.authorize_params(state='a"<b>')
    response = await sandbox.http.get("/v1/oauth/authorize", params=params)

    assert response.status_code == 200
    assert "<title>Schwab Sandbox — Authorize Dashtam</title>" in response.text
    assert '<button id="approve"' in response.text
    assert '<button id="deny"' in response.text
    assert 'name="state" value="a&quot;&lt;b&gt;"' in response.text


async def test_full_flow_approve_exchange_refresh(sandbox: Sandbox) -> None:
    approved = await sandbox.decide("approve", state="xyz")
    assert approved.status_code == 302
    location = approved.headers["location"]
    assert location.startswith(sandbox.redirect_uri + "?")
    params = sandbox.query(location)
    assert params["state"] == "xyz"
    assert params["code"].endswith("@")  # Schwab's codes do; clients must URL-decode them

    exchanged = await sandbox.exchange(params["code"])
    assert exchanged.status_code == 200
    assert exchanged.headers["cache-control"] == "no-store"
    tokens = exchanged.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 1800
    assert tokens["scope"] == "api"
    assert tokens["id_token"].count(".") == 2

    refreshed = await sandbox.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 200
    new = refreshed.json()
    assert new["refresh_token"] == tokens["refresh_token"]
    assert new["access_token"] != tokens["access_token"]

    prefs = await sandbox.http.get(
        "/trader/v1/userPreference", headers={"Authorization": f"Bearer {new['access_token']}"}
    )
    assert prefs.status_code == 200
    stats = sandbox.state.stats
    assert (stats.token_requests, stats.authorization_code_grants, stats.refresh_grants) == (
        2,
        1,
        1,
    )


async def test_deny_redirects_with_access_denied(sandbox: Sandbox) -> None:
    response = await sandbox.decide("deny", state="s1")

    assert response.status_code == 302
    assert sandbox.query(response.headers["location"]) == {"error": "access_denied", "state": "s1"}
    assert sandbox.state.stats.authorizations_denied == 1


async def test_code_is_single_use(sandbox: Sandbox) -> None:
    code = await sandbox.code()
    assert (await sandbox.exchange(code)).status_code == 200

    reused = await sandbox.exchange(code)

    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert sandbox.state.stats.token_errors == 1


async def test_code_expires_after_code_ttl(sandbox: Sandbox) -> None:
    code = await sandbox.code()
    now = sandbox.state.oauth.clock()
    sandbox.state.oauth.clock = lambda: now + 61

    response = await sandbox.exchange(code)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic bm90LWJhc2U2NA=="}, {"Authorization": "Bearer abc"}],
    ids=["missing", "garbage", "wrong-scheme"],
)
async def test_token_endpoint_rejects_bad_client_auth(sandbox: Sandbox, headers: dict) -> None:
    code = await sandbox.code()
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": sandbox.redirect_uri}

    response = await sandbox.http.post("/v1/oauth/token", data=form, headers=headers)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_token_endpoint_rejects_wrong_secret(sandbox: Sandbox) -> None:
    form = {"grant_type": "refresh_token", "refresh_token": "r"}
    headers = sandbox.basic(secret="wrong")

    response = await sandbox.http.post("/v1/oauth/token", data=form, headers=headers)

    assert response.status_code == 401
    assert response.json() == {
        "error": "invalid_client",
        "error_description": "Client authentication failed.",
    }


@pytest.mark.parametrize(
    ("verifier", "status"), [(VERIFIER, 200), ("wrong-" + VERIFIER, 400), (None, 400)]
)
async def test_pkce_verifier_is_checked(
    sandbox: Sandbox, verifier: str | None, status: int
) -> None:
    code = await sandbox.code(code_challenge=s256(VERIFIER), code_challenge_method="S256")
    extra = {"code_verifier": verifier} if verifier else {}

    response = await sandbox.exchange(code, **extra)

    assert response.status_code == status
    if status == 400:
        assert response.json()["error"] == "invalid_grant"


async def test_plain_pkce_method_is_refused(sandbox: Sandbox) -> None:
    params = sandbox.authorize_params(code_challenge="abc", code_challenge_method="plain")

    response = await sandbox.http.get("/v1/oauth/authorize", params=params)

    assert response.status_code == 302
    assert sandbox.query(response.headers["location"])["error"] == "invalid_request"


async def test_pkce_required_refuses_requests_without_challenge(make_sandbox, make_config) -> None:
    sandbox = make_sandbox(make_config(pkce_required=True))

    response = await sandbox.decide("approve", state="s")

    assert response.status_code == 302
    assert sandbox.query(response.headers["location"]) == {"error": "invalid_request", "state": "s"}
    assert sandbox.state.stats.authorizations_approved == 0


@pytest.mark.parametrize(
    "override",
    [{"redirect_uri": "https://evil.example/callback"}, {"client_id": "someone-else"}],
    ids=["redirect-uri", "client-id"],
)
async def test_untrusted_authorize_request_gets_error_page_not_redirect(
    sandbox: Sandbox, override: dict[str, str]
) -> None:
    params = sandbox.authorize_params(**override)

    shown = await sandbox.http.get("/v1/oauth/authorize", params=params)
    posted = await sandbox.http.post("/v1/oauth/authorize", data=params | {"action": "approve"})

    for response in (shown, posted):
        assert response.status_code == 400
        assert "location" not in response.headers
        assert "Authorization error" in response.text


async def test_code_bound_to_redirect_uri(make_sandbox, make_config) -> None:
    other = "https://127.0.0.1:8183/callback"
    sandbox = make_sandbox(make_config(redirect_uris=[DEFAULT_REDIRECT, other]))
    code = await sandbox.code(redirect_uri=other)

    response = await sandbox.exchange(code)  # sends the default redirect URI

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_unsupported_grant_type(sandbox: Sandbox) -> None:
    form = {"grant_type": "client_credentials"}

    response = await sandbox.http.post("/v1/oauth/token", data=form, headers=sandbox.basic())

    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


async def test_refresh_token_dies_seven_days_after_login(sandbox: Sandbox) -> None:
    tokens = await sandbox.login()
    start = sandbox.state.oauth.clock()

    sandbox.state.oauth.clock = lambda: start + 7 * 24 * 3600 - 5
    assert (await sandbox.refresh(tokens["refresh_token"])).status_code == 200
    sandbox.state.oauth.clock = lambda: start + 7 * 24 * 3600 + 1
    expired = await sandbox.refresh(tokens["refresh_token"])

    assert expired.status_code == 400
    assert expired.json()["error"] == "invalid_grant"


async def test_access_token_expires_after_ttl(sandbox: Sandbox) -> None:
    headers = await sandbox.bearer()
    start = sandbox.state.oauth.clock()
    sandbox.state.oauth.clock = lambda: start + 1801

    response = await sandbox.http.get("/trader/v1/accounts/accountNumbers", headers=headers)

    assert response.status_code == 401
    assert set(response.json()) == {"message", "errors"}


async def test_revoke_kills_refresh_and_access_tokens(sandbox: Sandbox) -> None:
    tokens = await sandbox.login()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}

    assert (await sandbox.http.post("/sandbox/tokens/revoke")).status_code == 200

    refreshed = await sandbox.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 400
    assert refreshed.json()["error"] == "invalid_grant"
    assert (await sandbox.http.get("/trader/v1/accounts", headers=headers)).status_code == 401


async def test_expire_kills_access_tokens_but_refresh_still_works(sandbox: Sandbox) -> None:
    tokens = await sandbox.login()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}

    await sandbox.http.post("/sandbox/tokens/expire")

    assert (await sandbox.http.get("/trader/v1/accounts", headers=headers)).status_code == 401
    refreshed = await sandbox.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 200
    fresh = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    assert (await sandbox.http.get("/trader/v1/accounts", headers=fresh)).status_code == 200


async def test_two_apps_do_not_share_tokens(make_sandbox, config) -> None:
    first, second = make_sandbox(config), make_sandbox(config)
    headers = await first.bearer()

    assert (await first.http.get("/trader/v1/accounts", headers=headers)).status_code == 200
    assert (await second.http.get("/trader/v1/accounts", headers=headers)).status_code == 401
    assert second.state.stats.token_requests == 0
