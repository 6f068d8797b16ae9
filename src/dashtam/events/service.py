"""Reading a user's event history."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.auth.principal import Principal
from dashtam.core.errors import ProblemError
from dashtam.events.outbox import Position, parse_event_id, read_settled
from dashtam.events.schemas import EventOut, EventPage


def position_of(event_id: str | None) -> Position | None:
    """The stream position an `after` / Last-Event-ID names; 400 if it names none."""
    if not event_id:
        return None
    try:
        return parse_event_id(event_id)
    except ValueError:
        raise ProblemError(
            400,
            f"{event_id!r} is not an event id (evt_ and 26 characters, as in an event's `id`).",
            code="invalid_event_id",
        ) from None


async def list_events(
    session: AsyncSession,
    user: Principal,
    after: str | None,
    types: Sequence[str],
    limit: int,
) -> EventPage:
    """Oldest first after `after`; only final events, so paging on never misses one."""
    found = await read_settled(
        session, after=position_of(after), user_id=user.id, types=types, limit=limit + 1
    )
    page, more = found[:limit], len(found) > limit
    return EventPage(
        items=[EventOut.of(event) for event in page],
        has_more=more,
        next_after=page[-1].id if page else after,
    )
