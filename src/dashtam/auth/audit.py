"""Where a request came from, and the append-only authentication audit trail."""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.core.metrics import AUTH_EVENTS
from dashtam.models.auth import AuthAuditLog

# Enough for any real browser's; an attacker's 8 KB header is not kept whole forever.
USER_AGENT_MAX = 200


@dataclass(frozen=True)
class RequestContext:
    ip: str | None
    user_agent: str | None
    request_id: str | None

    @classmethod
    def from_request(cls, request: Request) -> RequestContext:
        host = request.client.host if request.client else None
        agent = request.headers.get("user-agent")
        return cls(
            ip=host if host and _is_ip(host) else None,
            user_agent=agent[:USER_AGENT_MAX] if agent else None,
            request_id=getattr(request.state, "request_id", None),
        )


def _is_ip(value: str) -> bool:
    """The INET column only takes addresses; test clients may report a name instead."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def record(
    session: AsyncSession,
    context: RequestContext,
    action: str,
    outcome: str,
    *,
    user_id: uuid.UUID | None = None,
    **details: Any,
) -> None:
    """Add an audit row to the caller's transaction; details must never hold a secret."""
    AUTH_EVENTS.labels(action, outcome).inc()
    session.add(
        AuthAuditLog(
            user_id=user_id,
            action=action,
            outcome=outcome,
            ip_address=context.ip,
            user_agent=context.user_agent,
            request_id=context.request_id,
            details=details,
        )
    )
