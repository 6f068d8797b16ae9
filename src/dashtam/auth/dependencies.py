"""What every protected route uses: the signed-in user, and ownership checks.

The authenticated path stays cheap: verify the JWT, one Redis deny-list lookup, one primary-key
read of the user.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Protocol, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.auth.tokens import AccessClaims, DenyList, InvalidTokenError, decode_access_token
from dashtam.core.database import get_session
from dashtam.core.errors import ProblemError
from dashtam.models.auth import AuthSession
from dashtam.models.user import User

logger = logging.getLogger(__name__)

bearer_scheme = HTTPBearer(auto_error=False, description="The access token from /auth/login.")

DbSession = Annotated[AsyncSession, Depends(get_session)]


def unauthorized(
    detail: str, code: str = "invalid_token", *, error: str | None = "invalid_token"
) -> ProblemError:
    """A 401 with the Bearer challenge (RFC 6750) clients use to decide to sign in again."""
    challenge = f'Bearer error="{error}"' if error else "Bearer"
    return ProblemError(401, detail, code=code, headers={"WWW-Authenticate": challenge})


async def get_access_claims(
    request: Request,
    session: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> AccessClaims:
    """The verified claims of the bearer token; 401 if missing, invalid, expired or revoked."""
    if credentials is None:
        raise unauthorized("Authentication required.", "not_authenticated", error=None)
    settings = request.app.state.settings
    try:
        claims = decode_access_token(settings, credentials.credentials)
    except InvalidTokenError:
        raise unauthorized("The access token is invalid or expired.") from None
    deny_list = DenyList(request.app.state.redis, request.app.state.redis_keys, settings)
    try:
        revoked = await deny_list.is_denied(claims.session_id)
    except RedisError:
        logger.warning("deny-list unavailable; checking the session in the database instead")
        auth_session = await session.get(AuthSession, claims.session_id)
        revoked = auth_session is None or auth_session.revoked_at is not None
    if revoked:
        raise unauthorized("The session has ended; sign in again.")
    return claims


AccessToken = Annotated[AccessClaims, Depends(get_access_claims)]


async def get_current_user(claims: AccessToken, session: DbSession) -> User:
    user = await session.get(User, claims.user_id)
    if user is None or not user.is_active:
        raise unauthorized("The account no longer exists.")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


class Owned(Protocol):
    @property
    def user_id(self) -> uuid.UUID: ...


OwnedT = TypeVar("OwnedT", bound=Owned)


def owned_or_404(obj: OwnedT | None, user: User, what: str = "Resource") -> OwnedT:
    """Another user's resource is reported as missing, so ids reveal nothing (never 403)."""
    if obj is None or obj.user_id != user.id:
        raise ProblemError(404, f"{what} not found.", code="not_found")
    return obj
