"""Deleting authentication rows that can no longer do anything; the audit trail is never touched.

A row goes `AUTH_RETENTION_DAYS` after it stopped mattering, not at once: a spent refresh token
is what reuse detection recognises, so it is kept until well after it expired, and recent
rows help answer "why did my link not work?". What goes:

- refresh tokens that expired before the cutoff (spent or not), and every token of a session
  that is being deleted;
- mailed tokens used or expired before the cutoff;
- sessions revoked before the cutoff, idle so long that their last refresh token expired
  before it, or whose lifetime (SESSION_LIFETIME_SECONDS from sign-in) ended before it.

Deletes run in batches (`FOR UPDATE SKIP LOCKED`, so a sweep never waits on a request holding
a row). On an engine each batch commits on its own and no lock is held for long; on a
connection the batches run in the caller's transaction and the caller commits.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dashtam.core.config import Settings
from dashtam.core.database import create_engine
from dashtam.models.base import utcnow

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000

_EXPIRED_REFRESH_TOKENS = text(
    """
    DELETE FROM refresh_tokens WHERE id IN (
        SELECT id FROM refresh_tokens WHERE expires_at < :cutoff
        LIMIT :batch FOR UPDATE SKIP LOCKED)
    """
)
# Tokens first, so deleting a session does not cascade over thousands of rows at once.
_TOKENS_OF_ENDED_SESSIONS = text(
    """
    DELETE FROM refresh_tokens WHERE id IN (
        SELECT t.id FROM refresh_tokens t JOIN auth_sessions s ON s.id = t.session_id
        WHERE s.revoked_at < :cutoff OR s.last_used_at < :idle_cutoff
            OR s.created_at < :lifetime_cutoff
        LIMIT :batch FOR UPDATE OF t SKIP LOCKED)
    """
)
_SPENT_EMAIL_TOKENS = text(
    """
    DELETE FROM email_tokens WHERE id IN (
        SELECT id FROM email_tokens WHERE used_at < :cutoff OR expires_at < :cutoff
        LIMIT :batch FOR UPDATE SKIP LOCKED)
    """
)
_ENDED_SESSIONS = text(
    """
    DELETE FROM auth_sessions WHERE id IN (
        SELECT id FROM auth_sessions
        WHERE revoked_at < :cutoff OR last_used_at < :idle_cutoff OR created_at < :lifetime_cutoff
        LIMIT :batch FOR UPDATE SKIP LOCKED)
    """
)


@dataclass(frozen=True)
class SweepCounts:
    """Rows deleted per table."""

    refresh_tokens: int
    email_tokens: int
    auth_sessions: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@asynccontextmanager
async def _batch(bind: AsyncEngine | AsyncConnection) -> AsyncIterator[AsyncConnection]:
    if isinstance(bind, AsyncEngine):
        async with bind.begin() as connection:
            yield connection
    else:
        yield bind


async def _delete_all(
    bind: AsyncEngine | AsyncConnection, statement: TextClause, params: dict[str, Any]
) -> int:
    """Repeat a batched DELETE until a batch comes back short."""
    deleted = 0
    while True:
        async with _batch(bind) as connection:
            count = (await connection.execute(statement, params)).rowcount
        deleted += count
        if count < params["batch"]:
            return deleted


async def sweep(
    bind: AsyncEngine | AsyncConnection,
    settings: Settings,
    *,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
) -> SweepCounts:
    """Delete what ended more than AUTH_RETENTION_DAYS ago; returns the counts."""
    cutoff = (now or utcnow()) - timedelta(days=settings.AUTH_RETENTION_DAYS)
    params: dict[str, Any] = {
        "cutoff": cutoff,
        # A session's newest refresh token expires REFRESH_TOKEN_TTL_SECONDS after its last use.
        "idle_cutoff": cutoff - timedelta(seconds=settings.REFRESH_TOKEN_TTL_SECONDS),
        # And none outlives SESSION_LIFETIME_SECONDS from its sign-in.
        "lifetime_cutoff": cutoff - timedelta(seconds=settings.SESSION_LIFETIME_SECONDS),
        "batch": batch_size,
    }
    refresh_tokens = await _delete_all(bind, _EXPIRED_REFRESH_TOKENS, params)
    refresh_tokens += await _delete_all(bind, _TOKENS_OF_ENDED_SESSIONS, params)
    counts = SweepCounts(
        refresh_tokens=refresh_tokens,
        email_tokens=await _delete_all(bind, _SPENT_EMAIL_TOKENS, params),
        auth_sessions=await _delete_all(bind, _ENDED_SESSIONS, params),
    )
    logger.info(
        "auth sweep: deleted %d refresh token(s), %d mailed token(s), %d session(s)",
        counts.refresh_tokens,
        counts.email_tokens,
        counts.auth_sessions,
    )
    return counts


async def sweep_database(settings: Settings) -> SweepCounts:
    """One sweep on its own short-lived engine (what `dashtam auth sweep` runs)."""
    engine = create_engine(settings, pool_size=1)
    try:
        return await sweep(engine, settings)
    finally:
        await engine.dispose()
