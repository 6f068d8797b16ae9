"""What every protected route uses: the signed-in user, and ownership checks.

The authenticated path stays cheap: verify the JWT, then one Redis round trip that reads both
the session's deny-list entry and the cached principal. The database is read only on a cache
miss, or for both answers when Redis is unreachable.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Annotated, Protocol, TypeVar

from fastapi import Depends, Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase
from fastapi.security.utils import get_authorization_scheme_param
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import State

from dashtam.auth.principal import Principal, PrincipalCache
from dashtam.auth.tokens import AccessClaims, DenyList, ExpiredTokenError, InvalidTokenError
from dashtam.core.database import get_session
from dashtam.core.errors import ProblemError
from dashtam.models.auth import AuthSession
from dashtam.models.user import User

logger = logging.getLogger(__name__)

DbSession = Annotated[AsyncSession, Depends(get_session)]


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


class _BearerScheme(SecurityBase):
    """The bearer-token security scheme of the OpenAPI docs, which also authenticates.

    Each subclass is a whole dependency on its own rather than a scheme plus a function that
    depends on it: every level of dependency costs FastAPI work on every request, and this is
    the hottest path in the API.
    """

    def __init__(self) -> None:
        self.model = HTTPBearerModel(description="The access token from /auth/login.")
        self.scheme_name = "HTTPBearer"

    async def authenticate(self, request: Request) -> Authenticated:
        """401 if the bearer token is missing, invalid, expired or revoked, or its user is gone."""
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
        return Authenticated(claims, await _principal(state, claims))


class _SignedInUser(_BearerScheme):
    async def __call__(self, request: Request) -> Principal:
        return (await self.authenticate(request)).user


class _SignedInSession(_BearerScheme):
    async def __call__(self, request: Request) -> Authenticated:
        return await self.authenticate(request)


async def _principal(state: State, claims: AccessClaims) -> Principal:
    deny_list = DenyList(state.redis, state.redis_keys, state.settings)
    principals = PrincipalCache(state.redis, state.redis_keys)
    try:
        denied, cached = await state.redis.mget(
            deny_list.key(claims.session_id), principals.key(claims.user_id)
        )
    except RedisError:
        logger.warning("Redis unavailable; checking the session and user in the database")
        user = await _read_principal(state.session_factory, claims, check_session=True)
    else:
        if denied is not None:
            raise unauthorized("The session has ended; sign in again.")
        user = principals.parse(cached)
        if user is None:
            user = await _read_principal(state.session_factory, claims, check_session=False)
            if user is not None:
                await _remember(principals, user)
    if user is None or not user.is_active:
        raise unauthorized("The account no longer exists.")
    return user


async def _read_principal(
    session_factory: async_sessionmaker[AsyncSession], claims: AccessClaims, *, check_session: bool
) -> Principal | None:
    async with session_factory() as session:
        if check_session:
            auth_session = await session.get(AuthSession, claims.session_id)
            if auth_session is None or auth_session.revoked_at is not None:
                raise unauthorized("The session has ended; sign in again.")
        user = await session.get(User, claims.user_id)
        return None if user is None else Principal.model_validate(user)


async def _remember(principals: PrincipalCache, user: Principal) -> None:
    try:
        await principals.remember(user)
    except RedisError:
        logger.warning("could not cache the signed-in user; the next request reads it again")


get_current_user = _SignedInUser()
CurrentUser = Annotated[Principal, Depends(get_current_user)]
Authentication = Annotated[Authenticated, Depends(_SignedInSession())]
"""For routes that also need the access token's session, not only the user."""


class Owned(Protocol):
    @property
    def user_id(self) -> uuid.UUID: ...


OwnedT = TypeVar("OwnedT", bound=Owned)


def owned_or_404(obj: OwnedT | None, user: Principal, what: str = "Resource") -> OwnedT:
    """Another user's resource is reported as missing, so ids reveal nothing (never 403)."""
    if obj is None or obj.user_id != user.id:
        raise ProblemError(404, f"{what} not found.", code="not_found")
    return obj
