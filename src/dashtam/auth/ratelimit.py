"""Rate limits (atomic sliding window in Redis) and per-account login lockout.

Both fail open: when Redis cannot be reached, signing in keeps working and a warning is logged.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from dashtam.auth.audit import RequestContext
from dashtam.core.config import Settings
from dashtam.core.errors import ProblemError
from dashtam.core.redis import RedisKeys

logger = logging.getLogger(__name__)

# KEYS[1]: sorted set of request times (ms). ARGV: limit, window (ms), a unique member.
# Returns {allowed (0/1), remaining, ms until the oldest request leaves the window}.
SLIDING_WINDOW = """
local now_parts = redis.call('TIME')
local now = now_parts[1] * 1000 + math.floor(now_parts[2] / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  count = count + 1
  allowed = 1
end
redis.call('PEXPIRE', KEYS[1], window)
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local reset = window
if oldest[2] then reset = tonumber(oldest[2]) + window - now end
return {allowed, limit - count, reset}
"""

# KEYS[1]: failure counter, KEYS[2]: lock flag. ARGV: threshold, lockout seconds.
# Returns 1 when this failure locks the account.
LOGIN_FAILURE = """
local failures = redis.call('INCR', KEYS[1])
if failures == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if failures >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


class Limit(StrEnum):
    LOGIN = "login"
    REGISTER = "register"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a limit name, not a secret
    REFRESH = "refresh"
    VERIFY_EMAIL_RESEND = "verify_email_resend"

    @property
    def setting(self) -> str:
        """The setting that sets this limit, named in every 429 so it can be found."""
        return f"RATE_LIMIT_{self.name}"

    @property
    def counts_only_successes(self) -> bool:
        """Registration limits how many accounts an address creates: a refused attempt (a
        duplicate, a weak password) creates none. Every other limit guards against guessing or
        mail floods, where each accepted request counts."""
        return self is Limit.REGISTER


@dataclass(frozen=True)
class Rate:
    requests: int
    window_seconds: int

    @classmethod
    def for_limit(cls, settings: Settings, limit: Limit) -> Rate:
        requests, _, seconds = str(getattr(settings, limit.setting)).partition("/")
        return cls(int(requests), int(seconds))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_seconds)
        return headers


async def hit(redis: Redis, key: str, rate: Rate, member: str | None = None) -> Decision | None:
    """Count one request against `key` (as `member`, so it can be released); None when Redis
    is unavailable (fail open)."""
    window_ms = rate.window_seconds * 1000
    try:
        allowed, remaining, reset_ms = await redis.register_script(SLIDING_WINDOW)(
            keys=[key], args=[rate.requests, window_ms, member or uuid.uuid4().hex]
        )
    except RedisError:
        logger.warning("rate limiting skipped: Redis is unavailable", extra={"key": key})
        return None
    return Decision(bool(allowed), rate.requests, int(remaining), -(-int(reset_ms) // 1000))


async def release(redis: Redis, key: str, member: str) -> None:
    """Give back a counted request that turned out not to count."""
    try:
        await redis.zrem(key, member)
    except RedisError:
        logger.warning("rate limit release skipped: Redis is unavailable", extra={"key": key})


def _counts(limit: Limit, error: Exception) -> bool:
    """Does a request that raised `error` still count? A body that fails validation never
    does (it reached nothing); for success-only limits no failure does."""
    return not (limit.counts_only_successes or isinstance(error, RequestValidationError))


def rate_limited(limit: Limit) -> Callable[[Request, Response], AsyncIterator[None]]:
    """A route dependency enforcing `limit` per client IP, with X-RateLimit-* headers.

    The request takes its place in the window first (atomically, so concurrent requests
    cannot overshoot) and gives it back if it ends in an error that does not count.
    """

    async def enforce(request: Request, response: Response) -> AsyncIterator[None]:
        settings: Settings = request.app.state.settings
        if not settings.RATE_LIMITS_ENABLED:
            yield
            return
        keys: RedisKeys = request.app.state.redis_keys
        redis: Redis = request.app.state.redis
        client = RequestContext.from_request(request).ip or "unknown"
        key, member = keys("ratelimit", limit.value, client), uuid.uuid4().hex
        rate = Rate.for_limit(settings, limit)
        decision = await hit(redis, key, rate, member)
        if decision is None:
            yield
            return
        if not decision.allowed:
            raise ProblemError(
                429,
                f"Too many {limit.value.replace('_', ' ')} requests from this address: at most "
                f"{rate.requests} per {rate.window_seconds} seconds ({limit.setting}). Try again "
                f"in {decision.reset_seconds} seconds.",
                code="rate_limited",
                headers=decision.headers(),
                extra={"setting": limit.setting},
            )
        response.headers.update(decision.headers())
        try:
            yield
        except Exception as error:
            if not _counts(limit, error):
                await release(redis, key, member)
            raise

    return enforce


class Lockout:
    """Counts failed sign-ins per email (known or not, so a lock reveals nothing) in Redis."""

    def __init__(self, redis: Redis, keys: RedisKeys, settings: Settings) -> None:
        self._redis = redis
        self._threshold = settings.LOGIN_LOCKOUT_THRESHOLD
        self._seconds = settings.LOGIN_LOCKOUT_SECONDS
        self._keys = keys

    def _keys_for(self, email: str) -> tuple[str, str]:
        digest = hashlib.sha256(email.encode()).hexdigest()[:32]  # no addresses in Redis
        return self._keys("lockout", "failures", digest), self._keys("lockout", "locked", digest)

    async def seconds_left(self, email: str) -> int:
        """How long the account stays locked (0: not locked, or Redis unavailable)."""
        try:
            ttl = int(await self._redis.ttl(self._keys_for(email)[1]))
        except RedisError:
            logger.warning("lockout check skipped: Redis is unavailable")
            return 0
        return max(ttl, 0)

    async def record_failure(self, email: str) -> bool:
        """Count a failed attempt; True when it locks the account."""
        try:
            locked = await self._redis.register_script(LOGIN_FAILURE)(
                keys=list(self._keys_for(email)), args=[self._threshold, self._seconds]
            )
        except RedisError:
            logger.warning("lockout counting skipped: Redis is unavailable")
            return False
        return bool(locked)

    async def clear(self, email: str) -> None:
        """Forget failures (after a successful sign-in) and any lock (after a reset)."""
        try:
            await self._redis.delete(*self._keys_for(email))
        except RedisError:
            logger.warning("lockout reset skipped: Redis is unavailable")
