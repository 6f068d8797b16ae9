"""`GET /metrics`: the app's Prometheus metrics, plus the connections' state read at scrape time.

Not for the public: with METRICS_TOKEN set (production requires it) only a bearer of that token
gets an answer, and the production proxy does not forward the path at all.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import Metric
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dashtam.auth.ratelimit import Limit, rate_limited
from dashtam.core.errors import ProblemError
from dashtam.core.metrics import gauge_family, render, token_allows
from dashtam.models.base import utcnow
from dashtam.models.provider import ConnectionStatus

logger = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
LOGIN_EXPIRY_HORIZON = timedelta(hours=24)
QUERY_TIMEOUT_SECONDS = 2.0

_CONNECTIONS = text(
    """
    SELECT c.status, count(*) AS total,
           count(*) FILTER (WHERE c.status = 'active' AND t.refresh_expires_at < :before)
               AS expiring
    FROM provider_connections c
    LEFT JOIN provider_tokens t ON t.connection_id = c.id
    GROUP BY c.status
    """
)


async def connection_families(sessions: async_sessionmaker[AsyncSession]) -> list[Metric]:
    """Connections by status and active logins ending within 24 h; none if the database
    cannot say (the scrape still answers with everything else)."""

    async def query() -> list[Metric]:
        async with sessions() as session:
            before = utcnow() + LOGIN_EXPIRY_HORIZON
            rows = (await session.execute(_CONNECTIONS, {"before": before})).all()
        by_status = {status.value: 0.0 for status in ConnectionStatus}
        expiring = 0.0
        for status, total, soon in rows:
            by_status[status] = float(total)
            expiring += float(soon)
        return [
            gauge_family(
                "dashtam_provider_connections",
                "Provider connections, by status.",
                by_status,
                label="status",
            ),
            gauge_family(
                "dashtam_provider_logins_expiring",
                "Active connections whose provider login ends within 24 hours.",
                expiring,
            ),
        ]

    try:
        return await asyncio.wait_for(query(), QUERY_TIMEOUT_SECONDS)
    except Exception:  # a scrape must not fail because the database is away
        logger.warning("metrics: could not read the connections' state", exc_info=True)
        return []


@router.get("/metrics", dependencies=[Depends(rate_limited(Limit.ANONYMOUS))])
async def metrics(request: Request) -> Response:
    token = request.app.state.settings.METRICS_TOKEN
    if not token_allows(token, request.headers.get("authorization")):
        raise ProblemError(
            401,
            "The metrics need `Authorization: Bearer <METRICS_TOKEN>`.",
            code="metrics_token_required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    families = await connection_families(request.app.state.session_factory)
    return Response(render(families), media_type=CONTENT_TYPE_LATEST)
