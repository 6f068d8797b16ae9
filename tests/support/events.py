"""Reading the events outbox from tests, and users whose events other connections can see."""

from __future__ import annotations

import uuid

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlmodel import col

from dashtam.models import Event, User


async def events_of(
    conn: AsyncConnection | AsyncSession, user_id: uuid.UUID, *types: str
) -> list[Event]:
    """Every event of a user in stream order, settled or not (the test's own transaction too)."""
    query = select(Event).where(col(Event.user_id) == user_id)
    if types:
        query = query.where(col(Event.type).in_(types))
    rows = await conn.execute(query.order_by(col(Event.txid), col(Event.seq)))
    if isinstance(conn, AsyncSession):
        return list(rows.scalars())
    return [Event(**row._mapping) for row in rows]


def types_of(events: list[Event]) -> list[str]:
    return [event.type for event in events]


def total(events: list[Event], key: str) -> int:
    return sum(int(event.data[key]) for event in events)


async def committed_user(engine: AsyncEngine) -> uuid.UUID:
    """A user committed for real (delete it with `delete_user`; its events go with it)."""
    user = User(email=f"ev-{uuid.uuid4().hex[:12]}@example.com", name="Ev", password_hash="x")
    async with engine.begin() as conn:
        await conn.execute(User.__table__.insert().values(**user.model_dump(exclude_none=True)))  # type: ignore[attr-defined]
    return user.id


async def delete_user(engine: AsyncEngine, user_id: uuid.UUID) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": user_id})


async def owner(engine: AsyncEngine, provider_id: uuid.UUID) -> uuid.UUID:
    """The user of a provider instance."""
    async with engine.connect() as conn:
        found = await conn.scalar(
            text("SELECT user_id FROM providers WHERE id = :id"), {"id": provider_id}
        )
    assert found is not None
    return uuid.UUID(str(found))
