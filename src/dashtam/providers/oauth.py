"""The OAuth 2.0 client side: PKCE, and the two grants at the provider's token endpoint.

Client authentication is HTTP Basic (Schwab accepts nothing else) with a form body. The code
handed in is already URL-decoded once (by the callback server's query parsing); it is sent as
it is and httpx form-encodes it exactly once, so Schwab's ``...@`` codes survive the trip.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx

from dashtam import __version__
from dashtam.core.config import Settings
from dashtam.core.metrics import MeteredTransport
from dashtam.providers.registry import EndpointLabels, ProviderSpec, catalog

PERMANENT_ERRORS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})


@dataclass(frozen=True)
class ProviderCall:
    """What the audit trail records about one request to the provider."""

    http_status: int | None
    latency_ms: int


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    refresh_token: str | None
    id_token: str | None
    token_type: str
    scope: str | None
    expires_in: int
    call: ProviderCall


class ProviderOAuthError(Exception):
    """The token endpoint said no, failed, or could not be reached; no secret in the text."""

    def __init__(self, call: ProviderCall, error: str, description: str = "") -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.call = call
        self.error = error
        self.description = description[:200]

    @property
    def permanent(self) -> bool:
        """True when retrying cannot help: the person has to log in at the provider again."""
        return self.error in PERMANENT_ERRORS


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


async def _refuse_external(request: httpx.Request) -> None:
    if request.url.host not in LOOPBACK_HOSTS:
        raise httpx.ConnectError(
            f"External call to {request.url.host} refused (DISABLE_EXTERNAL_CALLS).",
            request=request,
        )


def provider_http_client(settings: Settings, base_url: str = "") -> httpx.AsyncClient:
    """The outgoing client for provider calls (connection pooling, timeouts), one per process;
    every request is counted and timed by provider and endpoint.

    With DISABLE_EXTERNAL_CALLS (tests) it reaches loopback only: never the real Schwab.
    """
    hooks = [_refuse_external] if settings.DISABLE_EXTERNAL_CALLS else []
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=settings.PROVIDER_HTTP_TIMEOUT_SECONDS,
        headers={"User-Agent": f"Dashtam/{__version__}"},
        event_hooks={"request": hooks},
        transport=MeteredTransport(httpx.AsyncHTTPTransport(), EndpointLabels(catalog(settings))),
    )


def pkce_pair() -> tuple[str, str]:
    """A fresh (verifier, S256 challenge) pair (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _parse_grant(body: dict[str, Any], call: ProviderCall) -> TokenGrant:
    access_token, expires_in = body.get("access_token"), body.get("expires_in")
    if not isinstance(access_token, str) or not access_token or not isinstance(expires_in, int):
        raise ProviderOAuthError(call, "invalid_response", "Token response lacks a usable token.")

    def text(name: str) -> str | None:
        value = body.get(name)
        return value if isinstance(value, str) and value else None

    return TokenGrant(
        access_token=access_token,
        refresh_token=text("refresh_token"),
        id_token=text("id_token"),
        token_type=text("token_type") or "Bearer",
        scope=text("scope"),
        expires_in=expires_in,
        call=call,
    )


async def _token_request(
    http: httpx.AsyncClient, spec: ProviderSpec, form: dict[str, str]
) -> TokenGrant:
    started = time.perf_counter()
    try:
        response = await http.post(
            spec.token_endpoint,
            data=form,
            auth=httpx.BasicAuth(spec.client_id, spec.client_secret),
            headers={"Accept": "application/json"},
        )
    except httpx.HTTPError as exc:
        call = ProviderCall(None, round((time.perf_counter() - started) * 1000))
        raise ProviderOAuthError(call, "unreachable", type(exc).__name__) from None
    call = ProviderCall(response.status_code, round((time.perf_counter() - started) * 1000))
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ProviderOAuthError(call, f"http_{response.status_code}", "Response is not JSON.")
    if not response.is_success:
        error = body.get("error")
        description = body.get("error_description")
        raise ProviderOAuthError(
            call,
            error if isinstance(error, str) and error else f"http_{response.status_code}",
            description if isinstance(description, str) else "",
        )
    return _parse_grant(body, call)


async def exchange_code(
    http: httpx.AsyncClient, spec: ProviderSpec, code: str, code_verifier: str | None
) -> TokenGrant:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": spec.redirect_uri}
    if code_verifier is not None:
        form["code_verifier"] = code_verifier
    return await _token_request(http, spec, form)


async def refresh_grant(
    http: httpx.AsyncClient, spec: ProviderSpec, refresh_token: str
) -> TokenGrant:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return await _token_request(http, spec, form)
