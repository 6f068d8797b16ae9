"""The providers Dashtam can connect to, and where each one's OAuth endpoints are.

Schwab is reached through the same code whether it is the real API or the built-in sandbox:
only the base URL and client credentials differ (``Settings.uses_sandbox`` decides).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx

from dashtam.core.config import Settings
from dashtam.core.errors import ConfigurationError, ProblemError
from dashtam.sandbox.config import SandboxConfig

CALLBACK_PATH = "/callback"
SCHWAB = "schwab"
# The paths Dashtam calls, as templates: metrics label requests by these, never by a raw path
# (which would carry an account hash).
SCHWAB_ENDPOINTS = (
    "/v1/oauth/token",
    "/trader/v1/accounts/accountNumbers",
    "/trader/v1/accounts",
    "/trader/v1/accounts/{account}",
    "/trader/v1/accounts/{account}/transactions",
    "/trader/v1/accounts/{account}/transactions/{activity}",
    "/trader/v1/userPreference",
)
UNKNOWN = "unknown"
OTHER_ENDPOINT = "other"


@dataclass(frozen=True)
class ProviderSpec:
    """Everything the OAuth client needs to talk to one provider's authorization server."""

    key: str
    name: str
    auth_type: str
    base_url: str
    client_id: str
    client_secret: str
    redirect_uri: str
    use_pkce: bool
    sandbox: bool
    # Schwab's refresh token dies 7 days after the login that issued it.
    refresh_token_ttl_seconds: int = 7 * 24 * 3600
    endpoints: tuple[str, ...] = ()

    @property
    def authorize_endpoint(self) -> str:
        return f"{self.base_url}/v1/oauth/authorize"

    @property
    def token_endpoint(self) -> str:
        return f"{self.base_url}/v1/oauth/token"

    def authorization_url(self, state: str, code_challenge: str | None) -> str:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "state": state,
        }
        if code_challenge is not None:
            params |= {"code_challenge": code_challenge, "code_challenge_method": "S256"}
        return f"{self.authorize_endpoint}?{urlencode(params)}"


def schwab_spec(settings: Settings) -> ProviderSpec:
    if settings.uses_sandbox:
        sandbox = SandboxConfig()
        base_url, client_id, client_secret = (
            settings.sandbox_base_url,
            sandbox.client_id,
            sandbox.client_secret,
        )
    else:
        base_url, client_id, client_secret = (
            settings.SCHWAB_API_BASE_URL.rstrip("/"),
            settings.SCHWAB_CLIENT_ID,
            settings.SCHWAB_CLIENT_SECRET,
        )
    return ProviderSpec(
        key=SCHWAB,
        name="Charles Schwab",
        auth_type="oauth2",
        base_url=base_url,
        client_id=client_id,
        client_secret=client_secret,
        redirect_uri=settings.SCHWAB_REDIRECT_URI,
        use_pkce=settings.uses_sandbox or settings.SCHWAB_USE_PKCE,
        sandbox=settings.uses_sandbox,
        endpoints=SCHWAB_ENDPOINTS,
    )


def catalog(settings: Settings) -> list[ProviderSpec]:
    return [schwab_spec(settings)]


def _path_pattern(template: str) -> re.Pattern[str]:
    """`/a/{x}/b` matches `/a/<one segment>/b` and nothing else."""
    escaped = re.escape(template)
    return re.compile("^" + re.sub(r"\\\{[a-z]+\\\}", "[^/]+", escaped) + "$")


class EndpointLabels:
    """Names the provider and endpoint template of an outgoing request, for metrics."""

    def __init__(self, specs: Sequence[ProviderSpec]) -> None:
        self._providers = []
        for spec in specs:
            base = urlsplit(spec.base_url)
            prefix = base.path.rstrip("/")
            patterns = [(template, _path_pattern(prefix + template)) for template in spec.endpoints]
            self._providers.append((spec.key, base.netloc, prefix, patterns))

    def __call__(self, url: httpx.URL) -> tuple[str, str]:
        netloc = url.netloc.decode("ascii")
        for key, base_netloc, prefix, patterns in self._providers:
            if netloc != base_netloc or not url.path.startswith(prefix):
                continue
            for template, pattern in patterns:
                if pattern.match(url.path):
                    return key, template
            return key, OTHER_ENDPOINT
        return UNKNOWN, OTHER_ENDPOINT


def find_spec(settings: Settings, key: str) -> ProviderSpec | None:
    return next((spec for spec in catalog(settings) if spec.key == key), None)


def require_spec(settings: Settings, key: str) -> ProviderSpec:
    spec = find_spec(settings, key)
    if spec is None:
        known = ", ".join(spec.key for spec in catalog(settings))
        raise ProblemError(
            422, f"Unknown provider type {key!r}; known: {known}.", code="unknown_provider_type"
        )
    return spec


def check_redirect_uri(settings: Settings, env_file: Path | None = None) -> None:
    """Refuse to start when the registered redirect URI is not exactly the callback server's.

    Schwab compares the redirect URI byte for byte, so a drifted port, scheme or trailing slash
    only shows up as a failed login; saying so at start-up is kinder.
    """
    # Behind the proxy, people (and Schwab's redirect) reach the callback through it.
    expected = (settings.public_url or settings.callback_base_url) + CALLBACK_PATH
    named = (
        "PUBLIC_DOMAIN/PROXY_HTTPS_PORT" if settings.public_url else "CALLBACK_PORT/CALLBACK_TLS"
    )
    if expected != settings.SCHWAB_REDIRECT_URI:
        register = "" if settings.uses_sandbox else ", and register that exact URL with Schwab"
        raise ConfigurationError(
            "SCHWAB_REDIRECT_URI does not match the callback server.\n"
            f"  SCHWAB_REDIRECT_URI: {settings.SCHWAB_REDIRECT_URI}\n"
            f"  callback server:     {expected}  ({named.replace('/', ', ')})",
            hint=f"{named} and SCHWAB_REDIRECT_URI change together: set "
            f"SCHWAB_REDIRECT_URI={expected} in {env_file or 'the env file'}{register} - or "
            f"change {named} back to match it.",
        )
