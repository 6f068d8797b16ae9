"""Event shapes: one JSON form for the API, the live stream and webhook bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from dashtam.events.outbox import StoredEvent


class EventSubject(BaseModel):
    type: str = Field(description="connection, account, import or webhook.")
    id: uuid.UUID = Field(
        description="A connection is named by its provider instance id (/api/v1/providers/{id})."
    )


class EventOut(BaseModel):
    """The Standard Webhooks payload shape (`type`, `timestamp`, `data`) plus the event's id and
    subject; the id is also the webhook-id and the SSE id."""

    id: str = Field(description="Sortable in stream order; pass it as `after` to read on.")
    type: str
    timestamp: datetime
    subject: EventSubject
    data: dict[str, Any]

    @classmethod
    def of(cls, event: StoredEvent) -> EventOut:
        return cls(
            id=event.id,
            type=event.type,
            timestamp=event.created_at,
            subject=EventSubject(type=event.subject_type, id=event.subject_id),
            data=event.data,
        )


class EventPage(BaseModel):
    items: list[EventOut]
    has_more: bool
    next_after: str | None = Field(
        description="Pass as `after` for the next page, or later for what happened since."
    )
