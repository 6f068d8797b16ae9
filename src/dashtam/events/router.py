"""Events over HTTP: thin wrappers over the services."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from dashtam.auth.dependencies import CurrentUser, DbSession
from dashtam.events import service
from dashtam.events.outbox import EventType
from dashtam.events.schemas import EventPage

router = APIRouter(tags=["events"])

After = Annotated[
    str | None,
    Query(max_length=40, description="An event id: only events after it (default: the oldest)."),
]
Types = Annotated[list[EventType] | None, Query(alias="type", description="Only these types.")]


@router.get(
    "/events",
    summary="Your events, oldest first",
    responses={400: {"description": "`after` is not an event id"}},
)
async def list_events(
    user: CurrentUser,
    session: DbSession,
    after: After = None,
    types: Types = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> EventPage:
    return await service.list_events(session, user, after, [t.value for t in types or ()], limit)
