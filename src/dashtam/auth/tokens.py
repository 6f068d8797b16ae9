"""Access tokens (short-lived JWTs) and opaque one-time tokens kept only as hashes."""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import jwt
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from dashtam.core.config import Settings
from dashtam.core.redis import RedisKeys
from dashtam.models.auth import AuthSession

logger = logging.getLogger(__name__)

REQUIRED_CLAIMS = ["sub", "sid", "exp", "iat", "jti"]

# KEYS: session entries; ARGV: each one's TTL in seconds.
_WRITE_REVOKED = """
for i, key in ipairs(KEYS) do redis.call('SET', key, 'revoked', 'EX', ARGV[i]) end
return #KEYS
"""
# KEYS: rebuild lock, marker, session entries; ARGV: the lock's nonce, the marker's TTL, each
# entry's TTL. Nothing is written unless the lock is still ours: a revocation that failed to
# write, or a restart, since the rebuild read the database removed it.
_FINISH_REBUILD = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 3, #KEYS do redis.call('SET', KEYS[i], 'revoked', 'EX', ARGV[i]) end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
redis.call('DEL', KEYS[1])
return 1
"""
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


def issue_access_token(
    settings: Settings,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    *,
    not_after: datetime | None = None,
) -> str:
    """Valid ACCESS_TOKEN_TTL_SECONDS, or until `not_after` (the session's end) if sooner."""
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=settings.ACCESS_TOKEN_TTL_SECONDS)
    claims = {
        "sub": str(user_id),
        "sid": str(session_id),
        "iat": now,
        "exp": min(expires, not_after) if not_after else expires,
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
    """Which sessions are revoked: PostgreSQL (`auth_sessions.revoked_at`) is the truth, Redis
    its cache, so an authenticated read never needs the database.

    Redis holds a "revoked" entry per session revoked within an access token's lifetime, and a
    marker saying it holds all of them. With the marker there, a session without an entry is
    live. Without it (Redis restarted empty, or the marker expired) each request reads its own
    session from the database, and one process rebuilds the entries from the database and puts
    the marker back, atomically, only if nothing invalidated the cache meanwhile.

    A revocation that cannot be written removes the marker instead (everyone reads the
    database until the next rebuild, which finds it). If Redis cannot be reached at all, it is
    kept here and written before this process next trusts Redis; other processes pick it up at
    their next rebuild: the marker lives `RESYNC_SECONDS`, so a cache that missed a revocation
    (Redis unreachable from the revoker only, or back from disk with older state) is complete
    again within that time.
    """

    REVOKED = "revoked"
    RESYNC_SECONDS = 10
    REBUILD_LOCK_MS = 5000

    def __init__(self, redis: Redis, keys: RedisKeys, settings: Settings) -> None:
        self._redis = redis
        self._ttl = settings.ACCESS_TOKEN_TTL_SECONDS
        self._keys = keys
        self.complete_key = keys("sessions", "revocations-complete")
        self._lock_key = keys("sessions", "revocations-rebuild")
        self._write = redis.register_script(_WRITE_REVOKED)
        self._finish = redis.register_script(_FINISH_REBUILD)
        # Revocations Redis has not taken yet: session id -> when its access tokens are all dead.
        self._pending: dict[uuid.UUID, float] = {}

    def key(self, session_id: uuid.UUID) -> str:
        return self._keys("session", session_id.hex)

    async def revoke(self, session_ids: list[uuid.UUID]) -> None:
        """After the revocation committed. Never raises: what Redis cannot take is handled as
        the class says."""
        if not session_ids:
            return
        try:
            await self._write(
                keys=[self.key(s) for s in session_ids], args=[self._ttl] * len(session_ids)
            )
            return
        except RedisError:
            logger.warning("could not cache revoked sessions; invalidating the cache")
        try:
            await self._redis.delete(self.complete_key, self._lock_key)
        except RedisError:
            logger.warning(
                "Redis unreachable: revoked sessions kept to be written before it is trusted",
                extra={"sessions": [str(s) for s in session_ids]},
            )
            until = time.monotonic() + self._ttl
            self._pending.update(dict.fromkeys(session_ids, until))

    async def write_pending(self) -> None:
        """Raises RedisError: until Redis took them, this process must not trust it."""
        now = time.monotonic()
        self._pending = {s: until for s, until in self._pending.items() if until > now}
        if not self._pending:
            return
        pending = dict(self._pending)
        ttls = [max(1, math.ceil(until - now)) for until in pending.values()]
        await self._write(keys=[self.key(s) for s in pending], args=ttls)
        for session_id in pending:
            self._pending.pop(session_id, None)

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    async def rebuild(self, session_factory: async_sessionmaker[AsyncSession]) -> bool:
        """Fill the cache from the database; False when another process is at it, something
        invalidated it meanwhile, or Redis is unreachable (requests read the database)."""
        nonce = secrets.token_hex(8)
        try:
            if not await self._redis.set(self._lock_key, nonce, nx=True, px=self.REBUILD_LOCK_MS):
                return False
            since = datetime.now(UTC) - timedelta(seconds=self._ttl)
            async with session_factory() as session:
                rows = (
                    await session.execute(
                        select(AuthSession.id, AuthSession.revoked_at).where(
                            col(AuthSession.revoked_at) > since
                        )
                    )
                ).all()
            now = datetime.now(UTC)
            ttls = [max(1, math.ceil((at - now).total_seconds()) + self._ttl) for _, at in rows]
            done = await self._finish(
                keys=[self._lock_key, self.complete_key, *(self.key(s) for s, _ in rows)],
                args=[nonce, self.RESYNC_SECONDS, *ttls],
            )
        except RedisError:
            logger.warning("could not rebuild the revoked-session cache; reading the database")
            return False
        return bool(done)
