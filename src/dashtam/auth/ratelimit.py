"""Rate limits on every route, and the per-account login lockout.

Each route has one `Limit`: per user on authenticated routes (counted inside the authenticating
Redis round trip, see `auth.dependencies`), per client IP on anonymous ones. The algorithm is
GCRA (the generic cell rate algorithm): one integer per key, the "theoretical arrival time".
A limit of `n` per `s` seconds admits a burst of `n` and `n/s` sustained, with no window edge
to game and O(1) memory however high the limit.

When Redis cannot be reached, a limit's class decides (`Limit.fails_closed`): reading and
signing in keep working (fail open, a warning is logged); anonymous requests that mail someone
or write the append-only audit trail, and a signed-in user's password checks, are refused with
503 until Redis is back (fail closed).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from dashtam.auth.audit import RequestContext
from dashtam.core.config import Settings
from dashtam.core.errors import ProblemError
from dashtam.core.redis import RedisKeys

logger = logging.getLogger(__name__)

# A Lua function: gcra(key, limit, period in µs) -> {allowed, remaining, µs until the next request
# would be allowed, µs until the whole burst is available again}. The key holds the theoretical
# arrival time (µs); an allowed request moves it one emission interval (period / limit) on.
GCRA_FUNCTION = """
local function gcra(key, limit, period)
  local clock = redis.call('TIME')
  local now = clock[1] * 1000000 + clock[2]
  local interval = math.max(1, math.floor(period / limit))
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local after = tat + interval
  if after - now > period then
    return {0, 0, after - period - now, tat - now}
  end
  redis.call('SET', key, string.format('%d', after), 'PX', math.ceil((after - now) / 1000))
  return {1, math.floor((period - (after - now)) / interval), 0, after - now}
end
"""
HIT = GCRA_FUNCTION + "return gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))"
# Gives one request back (it ended in an error that does not count); never creates the key.
RELEASE = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('DECRBY', KEYS[1], ARGV[1]) end
return 0
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

UNAVAILABLE_RETRY_SECONDS = 30


class Limit(StrEnum):
    """One per route class; its setting is `RATE_LIMIT_<NAME>`, "<requests>/<seconds>"."""

    AUTHENTICATED = "authenticated"
    ANONYMOUS = "anonymous"
    LOGIN = "login"
    REGISTER = "register"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a limit name, not a secret
    REFRESH = "refresh"
    VERIFY_EMAIL_RESEND = "verify_email_resend"
    OAUTH_CALLBACK = "oauth_callback"
    PASSWORD_CHANGE = "password_change"  # noqa: S105 - a limit name, not a secret

    @property
    def setting(self) -> str:
        """The setting that sets this limit, named in every 429 so it can be found."""
        return f"RATE_LIMIT_{self.name}"

    @property
    def per_user(self) -> bool:
        return self in (Limit.AUTHENTICATED, Limit.PASSWORD_CHANGE)

    @property
    def fails_closed(self) -> bool:
        """Refused while Redis is down: each accepted request mails an address someone typed,
        writes rows no one may delete, or checks a password. Reads, sign-in and refresh fail
        open: an outage must not sign everybody out."""
        return self in (
            Limit.REGISTER,
            Limit.PASSWORD_RESET,
            Limit.VERIFY_EMAIL_RESEND,
            Limit.OAUTH_CALLBACK,
            Limit.PASSWORD_CHANGE,
        )

    @property
    def counts_only_successes(self) -> bool:
        """Registration limits how many sign-ups an address makes: one refused as too weak
        made none. Every other limit guards against guessing or mail floods, where each
        accepted request counts."""
        return self is Limit.REGISTER


@dataclass(frozen=True)
class Rate:
    requests: int
    window_seconds: int

    @classmethod
    def for_limit(cls, settings: Settings, limit: Limit) -> Rate:
        requests, _, seconds = str(getattr(settings, limit.setting)).partition("/")
        return cls(int(requests), int(seconds))

    @property
    def period_us(self) -> int:
        return self.window_seconds * 1_000_000

    @property
    def interval_us(self) -> int:
        """As the script computes it: at least 1 µs, so any limit above 1,000,000/s is that."""
        return max(1, self.period_us // self.requests)


def _seconds(microseconds: int) -> int:
    return -(-int(microseconds) // 1_000_000)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rate: Rate
    remaining: int
    retry_after_seconds: int
    reset_seconds: int

    @classmethod
    def from_script(cls, rate: Rate, reply: list[int]) -> Decision:
        allowed, remaining, retry_us, reset_us = (int(value) for value in reply)
        return cls(bool(allowed), rate, remaining, _seconds(retry_us), _seconds(reset_us))

    def headers(self) -> dict[str, str]:
        """RateLimit-* (draft-ietf-httpapi-ratelimit-headers) and, when refused, Retry-After."""
        headers = {
            "RateLimit-Limit": str(self.rate.requests),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
            "RateLimit-Policy": f"{self.rate.requests};w={self.rate.window_seconds}",
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(self.retry_after_seconds, 1))
        return headers


def too_many(limit: Limit, decision: Decision) -> ProblemError:
    rate = decision.rate
    whose = "for this account" if limit.per_user else "from this address"
    return ProblemError(
        429,
        f"Too many {limit.value.replace('_', ' ')} requests {whose}: at most {rate.requests} "
        f"per {rate.window_seconds} seconds ({limit.setting}). Try again in "
        f"{max(decision.retry_after_seconds, 1)} seconds.",
        code="rate_limited",
        headers=decision.headers(),
        extra={"setting": limit.setting},
    )


def unavailable(limit: Limit) -> ProblemError:
    return ProblemError(
        503,
        "This request is not accepted while rate limiting is unavailable (Redis cannot be "
        f"reached). Try again in {UNAVAILABLE_RETRY_SECONDS} seconds.",
        code="rate_limit_unavailable",
        headers={"Retry-After": str(UNAVAILABLE_RETRY_SECONDS)},
        extra={"setting": limit.setting},
    )


class RateLimiter:
    """The app's limits, read from settings once; on `app.state.rate_limiter`."""

    def __init__(self, redis: Redis, keys: RedisKeys, settings: Settings) -> None:
        self.redis = redis
        self.keys = keys
        self.enabled = settings.RATE_LIMITS_ENABLED
        self.rates = {limit: Rate.for_limit(settings, limit) for limit in Limit}
        self._hit = redis.register_script(HIT)
        self._release = redis.register_script(RELEASE)

    def key(self, limit: Limit, subject: str) -> str:
        return self.keys("ratelimit", limit.value, subject)

    async def hit(self, limit: Limit, subject: str) -> Decision | None:
        """Count one request of `subject` (an IP or a user id); None when not counted (limits
        off, or Redis down and the limit fails open). Raises the 429, or the 503 of a limit
        that fails closed."""
        if not self.enabled:
            return None
        rate = self.rates[limit]
        try:
            reply = await self._hit(
                keys=[self.key(limit, subject)], args=[rate.requests, rate.period_us]
            )
        except RedisError:
            self.redis_down(limit)
            return None
        decision = Decision.from_script(rate, reply)
        if not decision.allowed:
            raise too_many(limit, decision)
        return decision

    def redis_down(self, limit: Limit) -> None:
        if limit.fails_closed:
            logger.warning("request refused: Redis is unavailable", extra={"limit": limit.value})
            raise unavailable(limit)
        logger.warning("rate limiting skipped: Redis is unavailable", extra={"limit": limit.value})

    async def release(self, limit: Limit, subject: str) -> None:
        """Give back a counted request that turned out not to count."""
        try:
            await self._release(
                keys=[self.key(limit, subject)], args=[self.rates[limit].interval_us]
            )
        except RedisError:
            logger.warning("rate limit release skipped: Redis is unavailable")


def route_limits(dependant: Dependant) -> set[Limit]:
    """The limits a route's dependencies enforce (each marks itself with `rate_limit`)."""
    found = (
        {limit}
        if isinstance(limit := getattr(dependant.call, "rate_limit", None), Limit)
        else set()
    )
    for dependency in dependant.dependencies:
        found |= route_limits(dependency)
    return found


def get_rate_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


def _counts(limit: Limit, error: Exception) -> bool:
    """Does a request that raised `error` still count? A body that fails validation never
    does (it reached nothing); for success-only limits no failure does."""
    return not (limit.counts_only_successes or isinstance(error, RequestValidationError))


def rate_limited(limit: Limit) -> Callable[[Request, Response], AsyncIterator[None]]:
    """A route dependency enforcing an anonymous `limit` per client IP, with RateLimit-* headers.

    The request takes its place first (atomically, so concurrent requests cannot overshoot)
    and gives it back if it ends in an error that does not count.
    """
    assert not limit.per_user, "per-user limits are counted by authentication"

    async def enforce(request: Request, response: Response) -> AsyncIterator[None]:
        limiter = get_rate_limiter(request)
        client = RequestContext.from_request(request).ip or "unknown"
        decision = await limiter.hit(limit, client)
        if decision is None:
            yield
            return
        response.headers.update(decision.headers())
        try:
            yield
        except Exception as error:
            if not _counts(limit, error):
                await limiter.release(limit, client)
            raise

    enforce.rate_limit = limit  # type: ignore[attr-defined]
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
