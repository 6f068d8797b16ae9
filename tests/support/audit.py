"""The append-only audit tables, checked the same way for each: a trigger refuses changes."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


async def assert_append_only(
    session_factory: async_sessionmaker[AsyncSession],
    model: Any,
    where: ColumnElement[bool],
) -> None:
    """UPDATE and DELETE of the committed rows matching `where` are refused; they stay unchanged.

    `model` is an audit table (it has an `outcome` column). Each attempt runs in a session of
    its own (a savepoint of the test's transaction), so a refusal does not abort the test's own
    session.
    """
    table = model.__tablename__
    untouched = select(func.count()).select_from(model).where(where, model.outcome != "tampered")
    async with session_factory() as reader:
        before = await reader.scalar(untouched)
    assert before, f"no {table} rows match: a row trigger would have nothing to refuse"
    for statement in (
        update(model).where(where).values(outcome="tampered"),
        delete(model).where(where),
    ):
        async with session_factory() as other:
            with pytest.raises(DBAPIError, match=f"{table} is append-only"):
                await other.execute(statement)
    async with session_factory() as reader:
        assert await reader.scalar(untouched) == before
