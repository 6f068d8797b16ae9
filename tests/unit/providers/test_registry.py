"""Where Schwab is (real API or sandbox), the authorization URL, and the redirect URI check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from tests.test_config import TestSettings

from dashtam.core.config import Environment
from dashtam.core.crypto import TokenCipher, generate_key
from dashtam.core.errors import ConfigurationError
from dashtam.models import ProviderToken
from dashtam.providers.oauth import ProviderCall, TokenGrant, pkce_pair, provider_http_client
from dashtam.providers.registry import check_redirect_uri, schwab_spec
from dashtam.providers.tokens import REFRESH_TOKEN, reveal, store_grant
from dashtam.sandbox.oauth import s256


def _settings(**overrides: object) -> TestSettings:
    return TestSettings(**overrides)  # type: ignore[arg-type]


def test_sandbox_when_testing_or_without_credentials() -> None:
    spec = schwab_spec(_settings(SANDBOX_PORT=9999))
    assert spec.sandbox
    assert spec.token_endpoint == "http://127.0.0.1:9999/v1/oauth/token"
    assert spec.client_id == "dashtam-sandbox-client"
    assert spec.use_pkce


def test_real_schwab_with_credentials() -> None:
    settings = _settings(
        TESTING=False,
        ENVIRONMENT=Environment.DEVELOPMENT,
        SCHWAB_CLIENT_ID="app-key",
        SCHWAB_CLIENT_SECRET="app-secret",
    )
    spec = schwab_spec(settings)
    assert not spec.sandbox
    assert spec.authorize_endpoint == "https://api.schwabapi.com/v1/oauth/authorize"
    assert (spec.client_id, spec.client_secret) == ("app-key", "app-secret")
    assert not spec.use_pkce


def test_authorization_url_carries_state_and_pkce() -> None:
    spec = schwab_spec(_settings())
    verifier, challenge = pkce_pair()
    assert s256(verifier) == challenge
    query = parse_qs(urlsplit(spec.authorization_url("st", challenge)).query)
    assert query == {
        "response_type": ["code"],
        "client_id": [spec.client_id],
        "redirect_uri": [spec.redirect_uri],
        "state": ["st"],
        "code_challenge": [challenge],
        "code_challenge_method": ["S256"],
    }
    assert "code_challenge" not in spec.authorization_url("st", None)


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:8183/callback/",
        "https://127.0.0.1:8183/callback",
        "http://localhost:8183/callback",
        "http://127.0.0.1:8182/callback",
    ],
)
def test_redirect_uri_drift_stops_start_up_showing_both(redirect_uri: str) -> None:
    settings = _settings(CALLBACK_PORT=8183, CALLBACK_TLS=False, SCHWAB_REDIRECT_URI=redirect_uri)
    with pytest.raises(ConfigurationError) as raised:
        check_redirect_uri(settings)
    assert redirect_uri in str(raised.value)
    assert "http://127.0.0.1:8183/callback" in str(raised.value)


def test_matching_redirect_uri_passes() -> None:
    check_redirect_uri(
        _settings(
            CALLBACK_PORT=8182,
            CALLBACK_TLS=True,
            SCHWAB_REDIRECT_URI="https://127.0.0.1:8182/callback",
        )
    )


def _grant(refresh_token: str) -> TokenGrant:
    return TokenGrant("access", refresh_token, None, "Bearer", "api", 1800, ProviderCall(200, 1))


def test_the_refresh_expiry_moves_only_with_a_new_refresh_token() -> None:
    cipher = TokenCipher.from_setting(f"k1:{generate_key()}")
    token = ProviderToken(access_token_encrypted="")
    login = datetime(2026, 1, 1, tzinfo=UTC)
    ttl = timedelta(days=7)
    store_grant(cipher, token, _grant("R1"), login, refresh_ttl=ttl, previous_refresh_token=None)
    assert token.refresh_expires_at == login + ttl
    later = login + timedelta(days=3)
    store_grant(cipher, token, _grant("R1"), later, refresh_ttl=ttl, previous_refresh_token="R1")
    assert token.refresh_expires_at == login + ttl  # Schwab: same token, same deadline
    assert token.access_expires_at == later + timedelta(seconds=1800)
    store_grant(cipher, token, _grant("R2"), later, refresh_ttl=ttl, previous_refresh_token="R1")
    assert token.refresh_expires_at == later + ttl
    assert reveal(cipher, token, REFRESH_TOKEN) == "R2"


async def test_external_calls_are_refused_when_disabled() -> None:
    client = provider_http_client(_settings(DISABLE_EXTERNAL_CALLS=True))
    async with client:
        with pytest.raises(httpx.ConnectError, match="DISABLE_EXTERNAL_CALLS"):
            await client.get("https://api.schwabapi.com/v1/oauth/token")
