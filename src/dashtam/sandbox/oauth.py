"""The OAuth 2.0 authorization-code flow as Schwab runs it.

Schwab specifics kept on purpose: client authentication is HTTP Basic only; codes and tokens end
in ``@`` (so a client that forgets to URL-decode the callback's ``code`` fails here as it would
against Schwab); a refresh grant returns a new access token and the *same* refresh token, which
dies ``refresh_token_ttl`` after the login. Codes and tokens are stored only as SHA-256 digests,
and client secrets and PKCE verifiers are compared with ``hmac.compare_digest``.
"""

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any
from urllib.parse import urlencode

from dashtam.sandbox.config import SandboxConfig
from dashtam.sandbox.errors import oauth_error, trader_error
from dashtam.sandbox.stats import Stats


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    """The authorize parameters; the consent form carries them back unchanged."""

    response_type: str = ""
    client_id: str = ""
    redirect_uri: str = ""
    state: str | None = None
    scope: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "AuthorizeRequest":
        """Build from query parameters or form fields, ignoring anything else."""
        values = {f.name: params.get(f.name) for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if isinstance(v, str)})

    def as_params(self) -> dict[str, str]:
        return {f.name: v for f in fields(self) if isinstance(v := getattr(self, f.name), str)}

    def error_redirect(self, error: str) -> str:
        """Where to send the browser when the request fails after the redirect URI checked out."""
        return redirect_url(self.redirect_uri, {"error": error, "state": self.state})


class AuthorizeRejected(Exception):
    """The client or redirect URI is not registered: answer with a page, never a redirect."""


@dataclass(frozen=True, slots=True)
class _Code:
    client_id: str
    redirect_uri: str
    code_challenge: str | None
    expires_at: float


@dataclass(slots=True)
class _Login:
    """One approved authorization: owns the refresh token and every access token it mints."""

    client_id: str
    refresh_expires_at: float
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class _AccessToken:
    login: _Login
    expires_at: float


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_secret(prefix: str) -> str:
    return f"{prefix}{secrets.token_urlsafe(32)}@"


def s256(verifier: str) -> str:
    """The PKCE S256 transform (RFC 7636): base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def redirect_url(redirect_uri: str, params: Mapping[str, str | None]) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{query}"


class OAuthServer:
    """Codes, logins and access tokens of one sandbox; ``clock`` is replaceable for tests."""

    def __init__(
        self,
        config: SandboxConfig,
        stats: Stats,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.stats = stats
        self.clock = clock
        self.on_change = on_change
        self._codes: dict[str, _Code] = {}
        self._logins: dict[str, _Login] = {}
        self._access_tokens: dict[str, _AccessToken] = {}

    # -- kept across restarts -----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """What is still valid, by digest: expired codes, tokens and logins are left out."""
        now = self.clock()
        logins = {d: login for d, login in self._logins.items() if login.refresh_expires_at > now}
        digest_of = {id(login): d for d, login in logins.items()}
        return {
            "codes": {d: asdict(code) for d, code in self._codes.items() if code.expires_at > now},
            "logins": {d: asdict(login) for d, login in logins.items()},
            "access_tokens": {
                d: {"login": digest_of[id(token.login)], "expires_at": token.expires_at}
                for d, token in self._access_tokens.items()
                if token.expires_at > now and id(token.login) in digest_of
            },
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        self._codes = {d: _Code(**code) for d, code in snapshot.get("codes", {}).items()}
        self._logins = {d: _Login(**login) for d, login in snapshot.get("logins", {}).items()}
        self._access_tokens = {
            d: _AccessToken(self._logins[token["login"]], token["expires_at"])
            for d, token in snapshot.get("access_tokens", {}).items()
            if token["login"] in self._logins
        }

    # -- authorize -----------------------------------------------------------------------------

    def check_authorize(self, request: AuthorizeRequest) -> str | None:
        """Raise ``AuthorizeRejected`` for an untrusted client or redirect URI; otherwise return
        the OAuth error code to redirect back with, or None when the request is acceptable."""
        if not hmac.compare_digest(request.client_id.encode(), self.config.client_id.encode()):
            raise AuthorizeRejected("Unknown client_id.")
        if request.redirect_uri not in self.config.redirect_uris:
            raise AuthorizeRejected("redirect_uri is not registered for this client.")
        if request.response_type != "code":
            return "unsupported_response_type"
        if request.code_challenge is None:
            return "invalid_request" if self.config.pkce_required else None
        if request.code_challenge_method != "S256" or not request.code_challenge:
            return "invalid_request"
        return None

    def approve(self, request: AuthorizeRequest) -> str:
        """Issue a single-use code bound to the client, redirect URI and PKCE challenge."""
        code = _new_secret("C0.")
        self._codes[_digest(code)] = _Code(
            client_id=request.client_id,
            redirect_uri=request.redirect_uri,
            code_challenge=request.code_challenge,
            expires_at=self.clock() + self.config.code_ttl,
        )
        self.stats.authorizations_approved += 1
        self.on_change()
        return redirect_url(
            request.redirect_uri,
            {"code": code, "session": secrets.token_hex(16), "state": request.state},
        )

    def deny(self, request: AuthorizeRequest) -> str:
        self.stats.authorizations_denied += 1
        return request.error_redirect("access_denied")

    # -- token ---------------------------------------------------------------------------------

    def token(self, authorization: str | None, form: Mapping[str, str]) -> dict[str, Any]:
        """Answer ``POST /v1/oauth/token``; errors are raised as ``SandboxError``."""
        self.stats.token_requests += 1
        try:
            client_id = self._authenticate_client(authorization)
            grant_type = form.get("grant_type")
            if grant_type == "authorization_code":
                response = self._exchange_code(client_id, form)
                self.stats.authorization_code_grants += 1
            elif grant_type == "refresh_token":
                response = self._refresh(client_id, form)
                self.stats.refresh_grants += 1
            else:
                raise oauth_error(400, "unsupported_grant_type", "Unsupported grant_type.")
        except Exception:
            self.stats.token_errors += 1
            raise
        finally:
            self.on_change()  # a code is spent even when its exchange fails
        return response

    def _authenticate_client(self, authorization: str | None) -> str:
        scheme, _, encoded = (authorization or "").partition(" ")
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        client_id, _, client_secret = decoded.partition(":")
        id_ok = hmac.compare_digest(client_id.encode(), self.config.client_id.encode())
        secret_ok = hmac.compare_digest(client_secret.encode(), self.config.client_secret.encode())
        if scheme.lower() != "basic" or not (id_ok and secret_ok):
            raise oauth_error(
                401,
                "invalid_client",
                "Client authentication failed.",
                headers={"WWW-Authenticate": 'Basic realm="sandbox"'},
            )
        return client_id

    def _exchange_code(self, client_id: str, form: Mapping[str, str]) -> dict[str, Any]:
        code = form.get("code")
        if not code:
            raise oauth_error(400, "invalid_request", "code is required.")
        record = self._codes.pop(_digest(code), None)  # single use, even when the exchange fails
        if record is None or record.expires_at <= self.clock():
            raise oauth_error(400, "invalid_grant", "Authorization code is invalid or expired.")
        redirect_uri = form.get("redirect_uri", "")
        if record.client_id != client_id or not hmac.compare_digest(
            redirect_uri.encode(), record.redirect_uri.encode()
        ):
            raise oauth_error(400, "invalid_grant", "Code was issued to another client or URI.")
        if record.code_challenge is not None:
            verifier = form.get("code_verifier", "")
            if not hmac.compare_digest(s256(verifier).encode(), record.code_challenge.encode()):
                raise oauth_error(400, "invalid_grant", "PKCE verification failed.")
        refresh_token = _new_secret("")
        login = _Login(client_id, self.clock() + self.config.refresh_token_ttl)
        self._logins[_digest(refresh_token)] = login
        return self._token_response(login, refresh_token)

    def _refresh(self, client_id: str, form: Mapping[str, str]) -> dict[str, Any]:
        refresh_token = form.get("refresh_token")
        if not refresh_token:
            raise oauth_error(400, "invalid_request", "refresh_token is required.")
        login = self._logins.get(_digest(refresh_token))
        if (
            login is None
            or login.revoked
            or login.client_id != client_id
            or login.refresh_expires_at <= self.clock()
        ):
            raise oauth_error(400, "invalid_grant", "Refresh token is invalid, expired or revoked.")
        return self._token_response(login, refresh_token)

    def _token_response(self, login: _Login, refresh_token: str) -> dict[str, Any]:
        now = self.clock()
        access_token = _new_secret("I0.")
        self._access_tokens[_digest(access_token)] = _AccessToken(
            login, now + self.config.access_token_ttl
        )
        return {
            "expires_in": self.config.access_token_ttl,
            "token_type": "Bearer",
            "scope": "api",
            "refresh_token": refresh_token,
            "access_token": access_token,
            "id_token": self._id_token(login, now),
        }

    def _id_token(self, login: _Login, now: float) -> str:
        """An unsigned JWT-shaped token: Schwab sends one, Dashtam must not rely on it."""

        def part(value: dict[str, Any]) -> str:
            raw = json.dumps(value, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        claims = {
            "iss": "dashtam-sandbox",
            "aud": login.client_id,
            "iat": int(now),
            "exp": int(now) + self.config.access_token_ttl,
        }
        return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."

    # -- resource access and test controls ----------------------------------------------------

    def check_access_token(self, authorization: str | None) -> None:
        """Raise a Schwab-style 401 unless ``authorization`` carries a live access token."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise trader_error(401, "Unauthorized", "Access token is missing.")
        record = self._access_tokens.get(_digest(token))
        if record is None or record.login.revoked or record.expires_at <= self.clock():
            raise trader_error(401, "Unauthorized", "Access token is invalid or expired.")

    def revoke_all(self) -> None:
        """End every login, as a password change or app reset at Schwab does."""
        for login in self._logins.values():
            login.revoked = True
        self._access_tokens.clear()
        self.on_change()

    def expire_access_tokens(self) -> None:
        """Make every access token stale while refresh tokens stay valid."""
        self._access_tokens.clear()
        self.on_change()
