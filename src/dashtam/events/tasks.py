"""The events domain's background work, run by the worker (`dashtam.jobs` wires it)."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from dashtam.models.base import utcnow

logger = logging.getLogger("dashtam.events")
PRUNE_BATCH = 5000

# Old events sit at the front of the stream order, so each batch is found at the start of the
# primary key. One batch per transaction: pruning never holds a transaction open for long (a long
# one would hold back every reader's view of new events).
_PRUNE = text(
    """
    DELETE FROM events e USING (
        SELECT txid, seq FROM events WHERE created_at < :cutoff ORDER BY txid, seq LIMIT :batch
    ) AS doomed
    WHERE e.txid = doomed.txid AND e.seq = doomed.seq
    """
)


async def prune_events(engine: AsyncEngine, retention_days: int) -> int:
    """Delete events older than the retention period; how many were deleted."""
    cutoff = utcnow() - timedelta(days=retention_days)
    deleted = 0
    while True:
        async with engine.begin() as conn:
            batch = (await conn.execute(_PRUNE, {"cutoff": cutoff, "batch": PRUNE_BATCH})).rowcount
        deleted += batch
        if batch < PRUNE_BATCH:
            break
    if deleted:
        logger.info("pruned %d events older than %d days", deleted, retention_days)
    return deleted
