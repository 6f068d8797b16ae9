"""The provider audit trail: one append-only row per provider operation, never a secret.

Rows join the caller's transaction, so an operation and its record commit together; failures
are recorded and committed before the error is raised. The database refuses UPDATE/DELETE.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from dashtam.auth.audit import RequestContext
from dashtam.core.logging import request_id_var
from dashtam.core.metrics import TOKEN_REFRESHES
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
