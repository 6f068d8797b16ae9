"""Access tokens (short-lived JWTs) and opaque one-time tokens kept only as hashes."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import jwt
from redis.asyncio import Redis

from dashtam.core.config import Settings
from dashtam.core.redis import RedisKeys

REQUIRED_CLAIMS = ["sub", "sid", "exp", "iat", "jti"]
# Signing or verifying with a key shorter than the hash's output raises instead of warning.
_JWT = jwt.PyJWT(options={"enforce_minimum_key_length": True})


class InvalidTokenError(Exception):
    """The access token is malformed, forged, expired or uses another algorithm."""


class ExpiredTokenError(InvalidTokenError):
    """A genuine access token (its signature checked out) past its expiry."""


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    jti: str
    expires_at: datetime


def issue_access_token(settings: Settings, user_id: uuid.UUID, session_id: uuid.UUID) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "sid": str(session_id),
        "iat": now,
        "exp": now + timedelta(seconds=settings.ACCESS_TOKEN_TTL_SECONDS),
        "jti": uuid.uuid4().hex,
    }
    return _JWT.encode(claims, settings.JWT_SECRET_KEY, algorithm=settings.JWT_ALGORITHM)


def decode_access_token(settings: Settings, token: str) -> AccessClaims:
    """Verify signature and expiry with the one configured algorithm (never the token's own)."""
    try:
        claims = _JWT.decode(
            token,
            settings.JWT_SECRET_KEY,
            algorithms=[settings.JWT_ALGORITHM],
            options={"require": REQUIRED_CLAIMS},
        )
        return AccessClaims(
            user_id=uuid.UUID(claims["sub"]),
            session_id=uuid.UUID(claims["sid"]),
            jti=str(claims["jti"]),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )
    except jwt.ExpiredSignatureError as exc:  # raised only once the signature is verified
        raise ExpiredTokenError(type(exc).__name__) from exc
    except (jwt.PyJWTError, ValueError, TypeError, AttributeError) as exc:
        raise InvalidTokenError(type(exc).__name__) from exc


class AccessTokenVerifier:
    """Verifies access tokens, remembering the ones already verified.

    A client sends the same token on every request until it expires, and checking its signature
    is most of the cost of authenticating; a remembered token still has its expiry checked.
    """

    def __init__(self, settings: Settings, capacity: int = 4096) -> None:
        self._verified = lru_cache(maxsize=capacity)(
            lambda token: decode_access_token(settings, token)
        )

    def verify(self, token: str) -> AccessClaims:
        claims: AccessClaims = self._verified(token)
        if claims.expires_at <= datetime.now(UTC):
            raise ExpiredTokenError("ExpiredSignatureError")
        return claims


def new_opaque_token() -> str:
    """256 bits of randomness, URL-safe: refresh, verification and reset tokens."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What the database keeps: a leaked table cannot be replayed as tokens."""
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStates:
    """Each session's state, cached in Redis from PostgreSQL (`auth_sessions.revoked_at`, the
    truth). "live" is kept briefly, so a revocation whose Redis write failed is seen everywhere
    within that time; "revoked" for as long as one of the session's access tokens can live. A
    miss (say, after Redis restarted empty) is read from the database again."""

    LIVE = "live"
    REVOKED = "revoked"
    LIVE_SECONDS = 60

    def __init__(self, redis: Redis, keys: RedisKeys, settings: Settings) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = settings.ACCESS_TOKEN_TTL_SECONDS

    def key(self, session_id: uuid.UUID) -> str:
        return self._keys("session", session_id.hex)

    async def revoke(self, session_ids: list[uuid.UUID]) -> None:
        """Raises RedisError; callers decide whether that may be ignored."""
        if not session_ids:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                pipe.set(self.key(session_id), self.REVOKED, ex=self._ttl)
            await pipe.execute()

    async def remember_live(self, session_id: uuid.UUID) -> None:
        """Raises RedisError. Never over a revocation cached meanwhile (NX)."""
        await self._redis.set(self.key(session_id), self.LIVE, ex=self.LIVE_SECONDS, nx=True)
