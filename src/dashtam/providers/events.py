"""The connection events the providers package writes to the outbox, with the change itself."""

from __future__ import annotations

from typing import Any

from dashtam.events.outbox import EventType, NewEvent, Subject
from dashtam.models.provider import Provider


def connection_event(provider: Provider, type: EventType, **data: Any) -> NewEvent:
    """An event about `provider`'s connection (named by the provider instance's id)."""
    return NewEvent(
        provider.user_id,
        type,
        Subject.CONNECTION,
        provider.id,
        {
            "provider_id": provider.id,
            "provider_key": provider.provider_key,
            "alias": provider.alias,
            **data,
        },
    )
