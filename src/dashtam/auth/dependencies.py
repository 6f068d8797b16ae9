"""What every protected route uses: the signed-in user, their rate limit, and ownership checks.

The authenticated path stays cheap: verify the JWT, then one Redis round trip (a Lua script)
that reads whether the revoked-session cache is complete, the session's entry in it and the
cached principal, and counts the request against the user's rate limit. PostgreSQL is the
truth for both: the session is read from it when the cache is not complete (Redis restarted,
say; see `SessionStates`), the user when its copy is missing, both when Redis is unreachable.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Protocol, TypeVar

from fastapi import Depends, Request, Response
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase
from fastapi.security.utils import get_authorization_scheme_param
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import State

from dashtam.auth.principal import Principal, PrincipalCache
from dashtam.auth.ratelimit import GCRA_FUNCTION, Decision, Limit, RateLimiter, too_many
from dashtam.auth.tokens import (
    AccessClaims,
    ExpiredTokenError,
    InvalidTokenError,
    SessionStates,
)
from dashtam.core.database import get_session
from dashtam.core.errors import ProblemError
from dashtam.models.auth import AuthSession
from dashtam.models.user import User

logger = logging.getLogger(__name__)

DbSession = Annotated[AsyncSession, Depends(get_session)]

# KEYS: the cache's completeness marker, the session's entry, the principal, the user's
# rate-limit key. ARGV: limit (0: none), period (µs). Redis's nil is Lua's false: 0 and '' stand
# in for it, so the reply keeps its shape.
AUTHENTICATE = (
    GCRA_FUNCTION
    + """
local complete = redis.call('EXISTS', KEYS[1])
local session = redis.call('GET', KEYS[2]) or ''
local principal = redis.call('GET', KEYS[3]) or ''
if ARGV[1] == '0' then return {complete, session, principal} end
local decision = gcra(KEYS[4], tonumber(ARGV[1]), tonumber(ARGV[2]))
return {complete, session, principal, decision[1], decision[2], decision[3], decision[4]}
"""
)
SESSION_ENDED = "The session has ended; sign in again."


def unauthorized(
    detail: str, code: str = "invalid_token", *, error: str | None = "invalid_token"
) -> ProblemError:
    """A 401 with the Bearer challenge (RFC 6750) clients use to decide to sign in again."""
    challenge = f'Bearer error="{error}"' if error else "Bearer"
    return ProblemError(401, detail, code=code, headers={"WWW-Authenticate": challenge})


@dataclass(frozen=True)
class Authenticated:
    claims: AccessClaims
    user: Principal


def attach_auth(state: State) -> None:
    """What authentication needs on `app.state`, once the app has its Redis client."""
    limiter = RateLimiter(state.redis, state.redis_keys, state.settings)
    state.rate_limiter = limiter
    state.authenticate_script = state.redis.register_script(AUTHENTICATE)
    rate = limiter.rates[Limit.AUTHENTICATED]
    state.authenticate_args = [rate.requests, rate.period_us] if limiter.enabled else [0, 0]
    state.session_states = SessionStates(state.redis, state.redis_keys, state.settings)
    state.principals = PrincipalCache(state.redis, state.redis_keys)


class _BearerScheme(SecurityBase):
    """The bearer-token security scheme of the OpenAPI docs, which also authenticates.

    Each subclass is a whole dependency on its own rather than a scheme plus a function that
    depends on it: every level of dependency costs FastAPI work on every request, and this is
    the hottest path in the API.
    """

    rate_limit = Limit.AUTHENTICATED

    def __init__(self) -> None:
        self.model = HTTPBearerModel(description="The access token from /auth/login.")
        self.scheme_name = "HTTPBearer"

    async def authenticate(self, request: Request, response: Response) -> Authenticated:
        """401 if the bearer token is missing, invalid, expired or revoked, or its user is gone;
        429 past the user's rate limit."""
        scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
        if scheme.lower() != "bearer" or not token:
            raise unauthorized("Authentication required.", "not_authenticated", error=None)
        state = request.app.state
        try:
            claims = state.access_tokens.verify(token)
        except ExpiredTokenError:
            raise unauthorized(
                "The access token has expired. Get a new pair from POST /api/v1/auth/refresh "
                "with your refresh token, or sign in again with POST /api/v1/auth/login.",
                "token_expired",
            ) from None
        except InvalidTokenError:
            raise unauthorized(
                "The access token is not valid; sign in with POST /api/v1/auth/login."
            ) from None
        return Authenticated(claims, await _principal(state, claims, response))


class _SignedInUser(_BearerScheme):
    async def __call__(self, request: Request, response: Response) -> Principal:
        return (await self.authenticate(request, response)).user


class _SignedInSession(_BearerScheme):
    async def __call__(self, request: Request, response: Response) -> Authenticated:
        return await self.authenticate(request, response)


async def _principal(state: State, claims: AccessClaims, response: Response) -> Principal:
    sessions: SessionStates = state.session_states
    principals: PrincipalCache = state.principals
    try:
        if sessions.has_pending:
            await sessions.write_pending()
        reply = await state.authenticate_script(
            keys=[
                sessions.complete_key,
                sessions.key(claims.session_id),
                principals.key(claims.user_id),
                state.rate_limiter.key(Limit.AUTHENTICATED, claims.user_id.hex),
            ],
            args=state.authenticate_args,
        )
    except RedisError:
        logger.warning("Redis unavailable; checking the session and user in the database")
        user = await _read_principal(state, claims, check_session=True)
    else:
        complete, cached_state, cached_user, *counted = reply
        if counted:
            limiter: RateLimiter = state.rate_limiter
            decision = Decision.from_script(limiter.rates[Limit.AUTHENTICATED], counted)
            if not decision.allowed:
                raise too_many(Limit.AUTHENTICATED, decision)
            response.headers.update(decision.headers())
        if cached_state == SessionStates.REVOKED:
            raise unauthorized(SESSION_ENDED)
        cached = user = principals.parse(cached_user or None)
        if not complete:
            await sessions.rebuild(state.session_factory)
            user = await _read_principal(state, claims, check_session=True)
        elif user is None:
            user = await _read_principal(state, claims, check_session=False)
        if cached is None and user is not None:
            await _remember(state, user)
    if user is None or not user.is_active:
        raise unauthorized("The account no longer exists.")
    return user


async def _read_principal(
    state: State, claims: AccessClaims, *, check_session: bool
) -> Principal | None:
    """PostgreSQL, the truth: a session that is revoked, gone or another user's has ended."""
    async with state.session_factory() as session:
        if check_session:
            auth_session = await session.get(AuthSession, claims.session_id)
            if (
                auth_session is None
                or auth_session.revoked_at is not None
                or auth_session.user_id != claims.user_id
            ):
                await state.session_states.revoke([claims.session_id])
                raise unauthorized(SESSION_ENDED)
        user = await session.get(User, claims.user_id)
        return None if user is None else Principal.model_validate(user)


async def _remember(state: State, user: Principal) -> None:
    try:
        await state.principals.remember(user)
    except RedisError:
        logger.warning("could not cache the signed-in user; the next request reads it again")


get_current_user = _SignedInUser()
CurrentUser = Annotated[Principal, Depends(get_current_user)]
Authentication = Annotated[Authenticated, Depends(_SignedInSession())]
"""For routes that also need the access token's session, not only the user."""


def user_rate_limited(limit: Limit) -> Callable[..., Awaitable[None]]:
    """A route dependency counting a per-user `limit` (on top of the authenticated one)."""
    assert limit.per_user, "anonymous limits are per client IP: use ratelimit.rate_limited"

    async def enforce(request: Request, response: Response, auth: Authentication) -> None:
        limiter: RateLimiter = request.app.state.rate_limiter
        decision = await limiter.hit(limit, auth.claims.user_id.hex)
        if decision is not None:
            response.headers.update(decision.headers())

    enforce.rate_limit = limit  # type: ignore[attr-defined]
    return enforce


class Owned(Protocol):
    @property
    def user_id(self) -> uuid.UUID: ...


OwnedT = TypeVar("OwnedT", bound=Owned)


def owned_or_404(obj: OwnedT | None, user: Principal, what: str = "Resource") -> OwnedT:
    """Another user's resource is reported as missing, so ids reveal nothing (never 403)."""
    if obj is None or obj.user_id != user.id:
        raise ProblemError(404, f"{what} not found.", code="not_found")
    return obj
