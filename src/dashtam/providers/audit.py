"""The provider audit trail: one append-only row per provider operation, never a secret.

Rows join the caller's transaction, so an operation and its record commit together; failures
are recorded and committed before the error is raised. The database refuses UPDATE/DELETE.

Refusals of callers nobody knows (a forged hand-over, a made-up or replayed state) are counted
instead (`AnonymousFailures`) and written as one row per source, reason and minute with the
count: a flood cannot grow the table faster than that, however many requests it sends.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from dashtam.auth.audit import RequestContext
from dashtam.core.logging import request_id_var
from dashtam.core.metrics import TOKEN_REFRESHES
from dashtam.core.redis import RedisKeys
from dashtam.models.provider import ProviderAuditLog
from dashtam.providers.oauth import ProviderCall


class AuditAction(StrEnum):
    PROVIDER_CREATED = "provider_created"
    PROVIDER_UPDATED = "provider_updated"
    PROVIDER_DELETED = "provider_deleted"
    AUTHORIZE_STARTED = "authorize_started"
    CALLBACK_RECEIVED = "callback_received"
    CALLBACK_REJECTED = "callback_rejected"
    TOKEN_EXCHANGED = "token_exchanged"  # noqa: S105 - an action name
    TOKEN_REFRESHED = "token_refreshed"  # noqa: S105 - an action name
    REFRESH_FAILED = "refresh_failed"
    TOKEN_UNREADABLE = "token_unreadable"  # noqa: S105 - an action name
    DISCONNECTED = "disconnected"
    KEYS_ROTATED = "keys_rotated"


logger = logging.getLogger(__name__)

AGGREGATE_WINDOW_SECONDS = 60
# Counts the worker has not written yet are kept this long (a worker down for a day loses them).
AGGREGATE_KEEP_SECONDS = 24 * 3600
# Takes a finished window's counts and forgets them, atomically: two flushes never both write.
_CLAIM_WINDOW = """
local counts = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return counts
"""


class AuditOutcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


def background_context() -> RequestContext:
    """For work outside a request (jobs, CLI): no client, but keep a request id if one is set."""
    return RequestContext(ip=None, user_agent=None, request_id=request_id_var.get())


def record(
    session: AsyncSession,
    context: RequestContext,
    action: AuditAction,
    outcome: AuditOutcome,
    *,
    provider_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    call: ProviderCall | None = None,
    **details: Any,
) -> None:
    if action in (AuditAction.TOKEN_REFRESHED, AuditAction.REFRESH_FAILED):
        TOKEN_REFRESHES.labels(outcome.value).inc()
    session.add(
        ProviderAuditLog(
            provider_id=provider_id,
            user_id=user_id,
            action=action.value,
            outcome=outcome.value,
            ip_address=context.ip,
            user_agent=context.user_agent,
            request_id=context.request_id,
            provider_http_status=call.http_status if call else None,
            provider_latency_ms=call.latency_ms if call else None,
            details=details,
            # Set here, not by now(): rows of one transaction must still sort in order.
            created_at=datetime.now(UTC),
        )
    )


async def list_for_provider(
    session: AsyncSession, provider_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[ProviderAuditLog], int]:
    """Newest first."""
    where = col(ProviderAuditLog.provider_id) == provider_id
    total = await session.scalar(select(func.count()).select_from(ProviderAuditLog).where(where))
    rows = await session.scalars(
        select(ProviderAuditLog)
        .where(where)
        .order_by(col(ProviderAuditLog.created_at).desc(), col(ProviderAuditLog.id).desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows), total or 0


class AnonymousFailures:
    """Refusals of unknown callers, counted per window in Redis; `flush` writes the rows."""

    def __init__(self, redis: Redis, keys: RedisKeys) -> None:
        self._redis = redis
        self._keys = keys
        self._index = keys("audit", "anonymous", "windows")

    def _window_key(self, start: int) -> str:
        return self._keys("audit", "anonymous", str(start))

    async def count(
        self,
        context: RequestContext,
        action: AuditAction,
        reason: str,
        *,
        provider_id: uuid.UUID | None = None,
    ) -> None:
        start = int(time.time()) // AGGREGATE_WINDOW_SECONDS * AGGREGATE_WINDOW_SECONDS
        source = json.dumps([action.value, reason, context.ip, str(provider_id or "")])
        key = self._window_key(start)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hincrby(key, source, 1)
                pipe.expire(key, AGGREGATE_KEEP_SECONDS)
                pipe.zadd(self._index, {str(start): start})
                await pipe.execute()
        except RedisError:
            logger.warning("an anonymous refusal was not counted: Redis is unavailable")

    async def flush(self, session: AsyncSession, *, now: float | None = None) -> int:
        """Write one row per source of every finished window; the number of rows written."""
        cutoff = (time.time() if now is None else now) - AGGREGATE_WINDOW_SECONDS
        claim = self._redis.register_script(_CLAIM_WINDOW)
        written = 0
        for raw_start in await self._redis.zrangebyscore(self._index, "-inf", cutoff):
            start = int(raw_start)
            flat = await claim(keys=[self._window_key(start), self._index], args=[raw_start])
            counts = dict(zip(flat[::2], (int(n) for n in flat[1::2]), strict=True))
            try:
                for source, count in counts.items():
                    _add_aggregate(session, source, count, start)
                await session.commit()
            except Exception:
                await session.rollback()
                await self._put_back(start, counts)
                raise
            written += len(counts)
        return written

    async def _put_back(self, start: int, counts: dict[str, int]) -> None:
        """The rows could not be written: keep the counts for the next flush."""
        key = self._window_key(start)
        async with self._redis.pipeline(transaction=True) as pipe:
            for source, count in counts.items():
                pipe.hincrby(key, source, count)
            pipe.expire(key, AGGREGATE_KEEP_SECONDS)
            pipe.zadd(self._index, {str(start): start})
            await pipe.execute()


def _add_aggregate(session: AsyncSession, source: str, count: int, start: int) -> None:
    action, reason, ip, provider_id = json.loads(source)
    session.add(
        ProviderAuditLog(
            provider_id=uuid.UUID(provider_id) if provider_id else None,
            action=action,
            outcome=AuditOutcome.DENIED.value,
            ip_address=ip,
            details={
                "reason": reason,
                "count": count,
                "window_start": datetime.fromtimestamp(start, UTC).isoformat(),
                "window_seconds": AGGREGATE_WINDOW_SECONDS,
            },
            created_at=datetime.now(UTC),
        )
    )
