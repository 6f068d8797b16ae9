"""The append-only audit tables, checked the same way for each, behind two walls: the app's role
lacks the privilege, and a trigger refuses even the owner role."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import ColumnElement, delete, func, select, text, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine


async def assert_append_only(
    session_factory: async_sessionmaker[AsyncSession],
    model: Any,
    where: ColumnElement[bool],
    owner_url: URL,
) -> None:
    """UPDATE and DELETE of the committed rows matching `where` are refused; they stay unchanged.

    `model` is an audit table (it has an `outcome` column). Each attempt runs in a session of
    its own (a savepoint of the test's transaction), so a refusal does not abort the test's own
    session. The sessions are the app's role: PostgreSQL's privileges refuse it. The owner role
    (the migrations') may change any table it owns, so on a row of its own, in a transaction
    that is rolled back, the trigger must refuse it.
    """
    table = model.__tablename__
    untouched = select(func.count()).select_from(model).where(where, model.outcome != "tampered")
    async with session_factory() as reader:
        before = await reader.scalar(untouched)
    assert before, f"no {table} rows match: there would be nothing to refuse"
    for statement in (
        update(model).where(where).values(outcome="tampered"),
        delete(model).where(where),
    ):
        async with session_factory() as other:
            with pytest.raises(DBAPIError, match=f"permission denied for table {table}"):
                await other.execute(statement)
    async with session_factory() as reader:
        assert await reader.scalar(untouched) == before
    engine = create_async_engine(owner_url)
    try:
        async with engine.connect() as owner:
            outer = await owner.begin()
            row = {"id": uuid.uuid4()}
            await owner.execute(
                text(
                    f"INSERT INTO {table} (id, action, outcome, details) "  # noqa: S608
                    "VALUES (:id, 'probe', 'success', '{}')"
                ),
                row,
            )
            for sql in (f"UPDATE {table} SET outcome = 'tampered'", f"DELETE FROM {table}"):  # noqa: S608
                with pytest.raises(DBAPIError, match=f"{table} is append-only"):
                    async with owner.begin_nested():
                        await owner.execute(text(f"{sql} WHERE id = :id"), row)
            await outer.rollback()
    finally:
        await engine.dispose()
