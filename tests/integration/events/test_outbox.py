"""The outbox: an event exists if and only if its change committed, and readers never pass an
event whose transaction commits after a later one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.support.events import committed_user, delete_user, events_of

from dashtam.events.outbox import EventType, NewEvent, Subject, emit, read_settled
from dashtam.events.tasks import prune_events
from dashtam.models.base import utcnow


@pytest.fixture
async def user_id(engine: AsyncEngine) -> AsyncIterator[uuid.UUID]:
    user_id = await committed_user(engine)
    yield user_id
    await delete_user(engine, user_id)


def an_event(user_id: uuid.UUID, note: str = "", dedupe_key: str | None = None) -> NewEvent:
    return NewEvent(
        user_id,
        EventType.WEBHOOK_TEST,
        Subject.WEBHOOK,
        uuid.uuid4(),
        {"note": note},
        dedupe_key=dedupe_key,
    )


class Boom(Exception):
    pass


async def test_an_event_commits_with_its_change_and_rolls_back_with_it(
    engine: AsyncEngine, user_id: uuid.UUID
) -> None:
    async def change(note: str, *, fail: bool) -> None:
        async with engine.begin() as conn:
            rename = text("UPDATE users SET name = :note WHERE id = :id")
            await conn.execute(rename, {"id": user_id, "note": note})
            await emit(conn, an_event(user_id, note))
            if fail:
                raise Boom

    with pytest.raises(Boom):
        await change("rolled back", fail=True)
    await change("committed", fail=False)

    async with engine.connect() as conn:
        found = await events_of(conn, user_id)
        name = await conn.scalar(text("SELECT name FROM users WHERE id = :id"), {"id": user_id})
    assert [event.data["note"] for event in found] == ["committed"]
    assert name == "committed"


async def test_a_reader_never_passes_an_event_that_commits_late(
    engine: AsyncEngine, user_id: uuid.UUID
) -> None:
    """The earlier transaction commits last: its event is held back until it does, then comes
    first, and a cursor taken in between misses nothing."""
    async with engine.connect() as early:
        slow = await early.begin()
        await emit(early, an_event(user_id, "early"))  # takes its transaction id now
        async with engine.begin() as late:
            await emit(late, an_event(user_id, "late"))
        async with engine.connect() as reader:
            before = await read_settled(reader, after=None, user_id=user_id, limit=10)
        await slow.commit()
    async with engine.connect() as reader:
        after = await read_settled(reader, after=None, user_id=user_id, limit=10)
        resumed = await read_settled(reader, after=after[0].position, user_id=user_id, limit=10)

    assert before == []  # "late" committed, but an older transaction was still running
    assert [event.data["note"] for event in after] == ["early", "late"]
    assert [event.data["note"] for event in resumed] == ["late"]
    assert after[0].id < after[1].id  # ids sort in stream order


async def test_a_dedupe_key_makes_an_event_happen_once(
    engine: AsyncEngine, user_id: uuid.UUID
) -> None:
    key = f"once:{uuid.uuid4()}"
    for _ in range(3):
        async with engine.begin() as conn:
            await emit(conn, an_event(user_id, dedupe_key=key), an_event(user_id))

    async with engine.connect() as conn:
        found = await events_of(conn, user_id)
    assert sum(event.dedupe_key == key for event in found) == 1
    assert len(found) == 4


async def test_the_runtime_role_cannot_rewrite_an_event(
    engine: AsyncEngine, user_id: uuid.UUID
) -> None:
    async with engine.begin() as conn:
        await emit(conn, an_event(user_id, "as written"))
    with pytest.raises(DBAPIError, match="permission denied for table events"):
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE events SET data = '{}' WHERE user_id = :id"), {"id": user_id}
            )


async def test_events_past_their_retention_are_deleted(
    engine: AsyncEngine, user_id: uuid.UUID
) -> None:
    async with engine.begin() as conn:
        await emit(conn, an_event(user_id, "old"), an_event(user_id, "new"))
        # Back-date one (as the owner would see it: the runtime role may not UPDATE events).
        await conn.execute(
            text(
                "INSERT INTO events (user_id, type, subject_type, subject_id, data, created_at) "
                "VALUES (:u, 'webhook.test', 'webhook', gen_random_uuid(), "
                '\'{"note": "ancient"}\', :at)'
            ),
            {"u": user_id, "at": utcnow() - timedelta(days=91)},
        )

    deleted = await prune_events(engine, retention_days=90)

    async with engine.connect() as conn:
        kept = [event.data["note"] for event in await events_of(conn, user_id)]
    assert deleted >= 1
    assert kept == ["old", "new"]
