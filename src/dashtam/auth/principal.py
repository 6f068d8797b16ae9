"""Who is signed in: the small view of a user that every protected route needs, cached in Redis.

Authenticating a request reads the session's revocation entry and the cached principal in one
Redis round trip, so the common path never opens a database session. A miss reads the user row
and caches it. Changes to a user forget the cached copy after they commit; the TTL bounds how
long a copy can outlive a change whose forget failed (Redis unreachable) or that raced a miss's
read.
"""

from __future__ import annotations

import uuid

from pydantic import ConfigDict, ValidationError
from redis.asyncio import Redis

from dashtam.auth.schemas import UserOut
from dashtam.core.redis import RedisKeys

PRINCIPAL_TTL_SECONDS = 300


class Principal(UserOut):
    """The user as the API shows them, plus what authorization needs (never the password hash)."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    is_active: bool


class PrincipalCache:
    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self._redis = redis
        self._keys = keys

    def key(self, user_id: uuid.UUID) -> str:
        return self._keys("principal", user_id.hex)

    @staticmethod
    def parse(raw: str | None) -> Principal | None:
        """A missing or unreadable entry (say, from an older release) is a miss, not an error."""
        if raw is None:
            return None
        try:
            return Principal.model_validate_json(raw)
        except ValidationError:
            return None

    async def remember(self, principal: Principal) -> None:
        """Raises RedisError; callers decide whether that may be ignored."""
        await self._redis.set(
            self.key(principal.id), principal.model_dump_json(), ex=PRINCIPAL_TTL_SECONDS
        )

    async def forget(self, user_id: uuid.UUID) -> None:
        """Raises RedisError; callers decide whether that may be ignored."""
        await self._redis.delete(self.key(user_id))
