"""Request-scoped pieces the provider routes need, all read from ``app.state``.

``app.state.provider_http`` is the outgoing HTTP client for provider calls: the app's lifespan
makes one, and tests put a client bound to the in-process sandbox there instead.
"""

from __future__ import annotations

import hmac
import uuid
from typing import Annotated

import httpx
from fastapi import Depends, Request

from dashtam.auth.audit import RequestContext
from dashtam.auth.dependencies import CurrentUser, DbSession
from dashtam.auth.ratelimit import Limit, get_rate_limiter
from dashtam.core.config import Settings
from dashtam.core.crypto import TokenCipher
from dashtam.providers.flow import OAuthRedis, reject_forged_callback
from dashtam.providers.service import Instance, get_instance
from dashtam.providers.tokens import TokenDeps

CALLBACK_SECRET_HEADER = "X-Dashtam-Callback-Secret"  # noqa: S105 - a header name


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_provider_http(request: Request) -> httpx.AsyncClient:
    client: httpx.AsyncClient | None = getattr(request.app.state, "provider_http", None)
    if client is None:
        raise RuntimeError("app.state.provider_http is not set: no outgoing provider client.")
    return client


def get_cipher(request: Request) -> TokenCipher:
    cipher: TokenCipher = request.app.state.token_cipher
    return cipher


def get_context(request: Request) -> RequestContext:
    return RequestContext.from_request(request)


def get_oauth_redis(request: Request) -> OAuthRedis:
    settings = get_settings(request)
    return OAuthRedis(
        request.app.state.redis, request.app.state.redis_keys, settings.OAUTH_STATE_TTL_SECONDS
    )


def get_token_deps(
    request: Request,
    http: Annotated[httpx.AsyncClient, Depends(get_provider_http)],
    cipher: Annotated[TokenCipher, Depends(get_cipher)],
) -> TokenDeps:
    return TokenDeps(http, get_settings(request), cipher)


async def get_owned_instance(
    provider_id: uuid.UUID, user: CurrentUser, session: DbSession
) -> Instance:
    return await get_instance(session, user, provider_id)


async def require_callback_secret(
    request: Request,
    context: Annotated[RequestContext, Depends(get_context)],
    store: Annotated[OAuthRedis, Depends(get_oauth_redis)],
) -> None:
    """Constant-time comparison; an unset secret accepts nothing. A caller without the secret
    is rate limited by its own address and counted (not written row by row) in the audit."""
    expected = get_settings(request).CALLBACK_SHARED_SECRET.encode()
    given = request.headers.get(CALLBACK_SECRET_HEADER, "").encode()
    if not (expected and hmac.compare_digest(given, expected)):
        await get_rate_limiter(request).hit(Limit.OAUTH_CALLBACK, context.ip or "unknown")
        raise await reject_forged_callback(store, context)


# The hand-over itself is limited per browser address, in the route (it needs the body).
require_callback_secret.rate_limit = Limit.OAUTH_CALLBACK  # type: ignore[attr-defined]


SettingsDep = Annotated[Settings, Depends(get_settings)]
HttpClient = Annotated[httpx.AsyncClient, Depends(get_provider_http)]
Cipher = Annotated[TokenCipher, Depends(get_cipher)]
Context = Annotated[RequestContext, Depends(get_context)]
OAuthStore = Annotated[OAuthRedis, Depends(get_oauth_redis)]
Deps = Annotated[TokenDeps, Depends(get_token_deps)]
OwnedInstance = Annotated[Instance, Depends(get_owned_instance)]
