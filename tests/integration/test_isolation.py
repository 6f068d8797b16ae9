"""Per-test isolation: code may commit, yet nothing a test writes outlives it."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dashtam.models import User


def a_user() -> User:
    return User(email=f"{uuid.uuid4().hex}@example.com", name="Iso", password_hash="x")


async def test_code_under_test_can_commit_and_read_back(session: AsyncSession) -> None:
    user = a_user()
    session.add(user)
    await session.commit()  # a savepoint release, not a real commit
    found = await session.scalar(select(User).where(User.email == user.email))
    assert found is not None
    assert found.id == user.id


async def test_commits_inside_the_test_transaction_are_rolled_back(engine: AsyncEngine) -> None:
    """The mechanism the `session` fixture uses, checked end to end on fresh connections."""
    email = a_user().email
    async with engine.connect() as connection:
        outer = await connection.begin()
        factory = async_sessionmaker(bind=connection, join_transaction_mode="create_savepoint")
        async with factory() as session:
            session.add(User(email=email, name="Iso", password_hash="x"))
            await session.commit()
        async with factory() as session:
            assert await session.scalar(select(User.id).where(User.email == email))
        await outer.rollback()
    async with engine.connect() as connection:
        count = await connection.scalar(
            select(func.count()).select_from(User).where(User.email == email)
        )
    assert count == 0


async def test_rollback_after_a_failed_statement_keeps_the_test_usable(
    session: AsyncSession,
) -> None:
    user = a_user()
    session.add(user)
    await session.commit()
    session.add(User(email=user.email, name="dup", password_hash="x"))
    try:
        await session.commit()
    except Exception:  # the unique violation the code under test would see
        await session.rollback()
    else:
        raise AssertionError("a duplicate email must violate the unique index")
    assert await session.scalar(select(func.count()).select_from(User)) >= 1


async def test_worker_database_is_a_per_run_clone(session: AsyncSession, run_id: str) -> None:
    name = await session.scalar(text("SELECT current_database()"))
    assert name is not None
    assert name.startswith("dashtam_test_")
    assert run_id in name
