"""GET /api/v1/events: a user's own events, oldest first, paged by event id and filtered by type."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.api.events.conftest import Committed
from tests.support.auth import API
from tests.support.events import committed_user, delete_user

from dashtam.events.outbox import EventType, NewEvent, Subject, emit

TYPES = [EventType.SYNC_SUCCEEDED, EventType.SYNC_FAILED, EventType.WEBHOOK_TEST]


@pytest.fixture
async def stranger(engine: AsyncEngine) -> AsyncIterator[uuid.UUID]:
    user_id = await committed_user(engine)
    yield user_id
    await delete_user(engine, user_id)


async def write(engine: AsyncEngine, user_id: uuid.UUID, count: int) -> list[uuid.UUID]:
    subjects = [uuid.uuid4() for _ in range(count)]
    async with engine.begin() as conn:
        for n, subject in enumerate(subjects):
            kind = TYPES[n % len(TYPES)]
            await emit(conn, NewEvent(user_id, kind, Subject.CONNECTION, subject, {"n": n}))
    return subjects


async def test_pages_run_oldest_first_and_end_where_the_next_read_starts(
    committed: Committed, engine: AsyncEngine, stranger: uuid.UUID
) -> None:
    subjects = await write(engine, committed.user_id, 5)
    await write(engine, stranger, 3)
    client, headers = committed.client, committed.headers

    seen, after, pages = [], None, 0
    while True:
        params = {"limit": 2} | ({"after": after} if after else {})
        page = (await client.get(f"{API}/events", params=params, headers=headers)).json()
        seen += page["items"]
        after, pages = page["next_after"], pages + 1
        if not page["has_more"]:
            break
    again = (await client.get(f"{API}/events", params={"after": after}, headers=headers)).json()

    assert pages == 3
    assert [item["data"]["n"] for item in seen] == [0, 1, 2, 3, 4]
    assert [uuid.UUID(item["subject"]["id"]) for item in seen] == subjects
    assert seen[0]["subject"]["type"] == "connection"
    assert seen[0]["type"] == "sync.succeeded"
    assert sorted(item["id"] for item in seen) == [item["id"] for item in seen]
    assert after == seen[-1]["id"]
    assert again == {"items": [], "has_more": False, "next_after": after}


async def test_types_filter_and_bad_input_is_refused_clearly(
    committed: Committed, engine: AsyncEngine
) -> None:
    await write(engine, committed.user_id, 6)
    client, headers = committed.client, committed.headers

    only = await client.get(
        f"{API}/events", params=[("type", "sync.failed"), ("type", "webhook.test")], headers=headers
    )
    unknown = await client.get(f"{API}/events", params={"type": "sync.exploded"}, headers=headers)
    malformed = await client.get(f"{API}/events", params={"after": "evt_nope"}, headers=headers)
    anonymous = await client.get(f"{API}/events")

    assert [item["type"] for item in only.json()["items"]] == ["sync.failed", "webhook.test"] * 2
    assert unknown.status_code == 422
    assert unknown.headers["content-type"] == "application/problem+json"
    assert malformed.status_code == 400
    assert "is not an event id" in malformed.json()["detail"]
    assert anonymous.status_code == 401
