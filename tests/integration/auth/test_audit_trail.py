"""The authentication audit trail is append-only in the database itself, not only by habit."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import select
from tests.support.audit import assert_append_only
from tests.test_config import TestSettings

from dashtam.auth import audit
from dashtam.auth.audit import RequestContext
from dashtam.models.auth import AuthAuditLog
from dashtam.models.user import User

CONTEXT = RequestContext(ip="203.0.113.9", user_agent="pytest", request_id="req-1")


async def _user_with_audit_rows(session: AsyncSession) -> User:
    user = User(email="audited@example.com", name="Audited", password_hash="x")
    session.add(user)
    await session.flush()
    audit.record(session, CONTEXT, "register", "success", user_id=user.id)
    audit.record(session, CONTEXT, "login", "failure", user_id=user.id, reason="wrong_password")
    await session.commit()
    return user


async def test_audit_rows_cannot_be_changed_or_deleted(
    session_factory: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    settings: TestSettings,
) -> None:
    user = await _user_with_audit_rows(session)
    await assert_append_only(
        session_factory, AuthAuditLog, AuthAuditLog.user_id == user.id, settings.owner_database_url
    )


async def test_audit_rows_outlive_their_user(session: AsyncSession) -> None:
    """No foreign key: deleting a user neither fails on the trigger nor blanks their trail."""
    user = await _user_with_audit_rows(session)
    await session.execute(delete(User).where(User.id == user.id))
    await session.commit()
    rows = await session.scalars(select(AuthAuditLog.action).where(AuthAuditLog.user_id == user.id))
    assert sorted(rows) == ["login", "register"]
