"""The auth sweep on the real database: what ended long ago goes, everything else stays."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from tests.test_config import TestSettings
from typer.testing import CliRunner

from dashtam.accounts.clients import TraderClients
from dashtam.auth import audit
from dashtam.auth.audit import RequestContext
from dashtam.auth.cleanup import SweepCounts, sweep, sweep_database
from dashtam.auth.tokens import hash_token, new_opaque_token
from dashtam.cli import app
from dashtam.core.database import create_session_factory
from dashtam.jobs.worker import WorkerDeps, sweep_expired_auth, worker_options
from dashtam.models.auth import (
    AuthAuditLog,
    AuthSession,
    EmailToken,
    EmailTokenPurpose,
    RefreshToken,
)
from dashtam.models.base import utcnow
from dashtam.models.user import User

DAY = timedelta(days=1)
RETENTION = 30 * DAY
TTL = 30 * DAY
LIFETIME = 90 * DAY


@dataclass
class Rows:
    """Ids of what a scenario made, sorted by what the sweep must do with them."""

    user: User
    gone: dict[str, set[uuid.UUID]] = field(default_factory=dict)
    kept: dict[str, set[uuid.UUID]] = field(default_factory=dict)

    def expect(self, fate: str, row: AuthSession | RefreshToken | EmailToken) -> None:
        table = type(row).__tablename__
        (self.gone if fate == "gone" else self.kept).setdefault(table, set()).add(row.id)


@pytest.fixture
def sweep_settings(settings: TestSettings) -> TestSettings:
    return settings.model_copy(
        update={
            "AUTH_RETENTION_DAYS": RETENTION.days,
            "REFRESH_TOKEN_TTL_SECONDS": int(TTL.total_seconds()),
            "SESSION_LIFETIME_SECONDS": int(LIFETIME.total_seconds()),
        }
    )


def _session(
    rows: Rows,
    fate: str,
    *,
    last_used: datetime,
    revoked: datetime | None = None,
    created: datetime | None = None,
) -> AuthSession:
    row = AuthSession(
        user_id=rows.user.id,
        created_at=created or last_used,
        last_used_at=last_used,
        revoked_at=revoked,
    )
    rows.expect(fate, row)
    return row


def _refresh(
    rows: Rows, fate: str, auth_session: AuthSession, *, expires: datetime, used: datetime | None
) -> RefreshToken:
    row = RefreshToken(
        session_id=auth_session.id,
        token_hash=hash_token(new_opaque_token()),
        expires_at=expires,
        used_at=used,
    )
    rows.expect(fate, row)
    return row


def _mailed(rows: Rows, fate: str, *, expires: datetime, used: datetime | None) -> EmailToken:
    row = EmailToken(
        user_id=rows.user.id,
        purpose=EmailTokenPurpose.VERIFY_EMAIL.value,
        token_hash=hash_token(new_opaque_token()),
        expires_at=expires,
        used_at=used,
    )
    rows.expect(fate, row)
    return row


async def _scenario(session: AsyncSession, now: datetime) -> Rows:
    """Every kind of row on both sides of the retention cutoff, committed."""
    rows = Rows(
        User(email=f"sweep-{uuid.uuid4().hex[:8]}@example.com", name="S", password_hash="x")
    )
    session.add(rows.user)
    await session.flush()
    live = _session(rows, "kept", last_used=now - timedelta(hours=1))
    revoked_long_ago = _session(rows, "gone", last_used=now - 40 * DAY, revoked=now - 31 * DAY)
    revoked_lately = _session(rows, "kept", last_used=now - 2 * DAY, revoked=now - 1 * DAY)
    idle_long_expired = _session(rows, "gone", last_used=now - TTL - 31 * DAY)
    idle_lately_expired = _session(rows, "kept", last_used=now - TTL - 1 * DAY)
    # Refreshed an hour ago, but their lifetime ended: long ago, or lately.
    recent = now - timedelta(hours=1)
    outlived_long_ago = _session(rows, "gone", last_used=recent, created=now - LIFETIME - 31 * DAY)
    outlived_lately = _session(rows, "kept", last_used=recent, created=now - LIFETIME - DAY)
    sessions = [
        live,
        revoked_long_ago,
        revoked_lately,
        idle_long_expired,
        idle_lately_expired,
        outlived_long_ago,
        outlived_lately,
    ]
    session.add_all(sessions)
    await session.flush()
    session.add_all(
        [
            _refresh(rows, "kept", live, expires=now + TTL, used=None),
            # Spent but not expired: reuse detection still needs it.
            _refresh(rows, "kept", live, expires=now + 29 * DAY, used=now - DAY),
            _refresh(rows, "kept", live, expires=now - DAY, used=None),
            _refresh(rows, "gone", live, expires=now - 40 * DAY, used=now - 69 * DAY),
            # Not expired, but its session ended long ago.
            _refresh(rows, "gone", revoked_long_ago, expires=now - DAY, used=None),
            _refresh(rows, "gone", revoked_long_ago, expires=now - DAY, used=now - 39 * DAY),
            _refresh(rows, "kept", revoked_lately, expires=now + 28 * DAY, used=None),
            _refresh(rows, "gone", idle_long_expired, expires=now - 31 * DAY, used=None),
            _refresh(rows, "kept", idle_lately_expired, expires=now - DAY, used=None),
            _refresh(rows, "gone", outlived_long_ago, expires=now - 31 * DAY, used=None),
            _refresh(rows, "kept", outlived_lately, expires=now - DAY, used=None),
            _mailed(rows, "kept", expires=now + DAY, used=None),
            _mailed(rows, "kept", expires=now + DAY, used=now - DAY),
            _mailed(rows, "kept", expires=now - DAY, used=None),
            _mailed(rows, "gone", expires=now + DAY, used=now - 31 * DAY),
            _mailed(rows, "gone", expires=now - 31 * DAY, used=None),
        ]
    )
    await session.flush()
    context = RequestContext(ip=None, user_agent=None, request_id=None)
    audit.record(session, context, "login", "success", user_id=rows.user.id)
    session.add(AuthAuditLog(user_id=rows.user.id, action="logout", outcome="success"))
    await session.flush()
    await session.commit()
    return rows


async def _ids(connection: AsyncConnection, table: str) -> set[uuid.UUID]:
    model = {m.__tablename__: m for m in (AuthSession, RefreshToken, EmailToken)}[table]
    return set(await connection.scalars(select(model.id)))


async def _assert_swept(connection: AsyncConnection, rows: Rows) -> None:
    for table in ("auth_sessions", "refresh_tokens", "email_tokens"):
        present = await _ids(connection, table)
        assert rows.kept[table] <= present, table
        assert not rows.gone[table] & present, table


async def test_sweep_deletes_what_ended_long_ago_and_keeps_the_rest(
    session: AsyncSession, db_connection: AsyncConnection, sweep_settings: TestSettings
) -> None:
    now = utcnow()
    rows = await _scenario(session, now)
    audit_rows = select(func.count()).select_from(AuthAuditLog)
    audit_before = await db_connection.scalar(audit_rows)
    assert audit_before
    counts = await sweep(db_connection, sweep_settings, now=now, batch_size=2)
    assert counts == SweepCounts(refresh_tokens=5, email_tokens=2, auth_sessions=3)
    await _assert_swept(db_connection, rows)
    assert await db_connection.scalar(audit_rows) == audit_before
    again = await sweep(db_connection, sweep_settings, now=now)
    assert again == SweepCounts(0, 0, 0)


async def test_retention_setting_moves_the_cutoff(
    session: AsyncSession, db_connection: AsyncConnection, sweep_settings: TestSettings
) -> None:
    now = utcnow()
    rows = await _scenario(session, now)
    longer = sweep_settings.model_copy(update={"AUTH_RETENTION_DAYS": 60})
    assert await sweep(db_connection, longer, now=now) == SweepCounts(0, 0, 0)
    assert await _ids(db_connection, "auth_sessions") >= rows.gone["auth_sessions"]


@pytest.fixture
async def committed(engine: AsyncEngine) -> AsyncIterator[Rows]:
    """The scenario committed for real (the worker and the CLI use their own connections)."""
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        rows = await _scenario(session, utcnow())
    yield rows
    async with engine.begin() as connection:  # cascades to sessions and tokens
        await connection.execute(delete(User).where(User.id == rows.user.id))


async def test_hourly_worker_job_sweeps_committed_rows(
    engine: AsyncEngine, sweep_settings: TestSettings, committed: Rows, redis: Redis
) -> None:
    async with httpx.AsyncClient() as http:
        clients = TraderClients(sweep_settings, create_session_factory(engine), http)
        deps = WorkerDeps(sweep_settings, engine, clients, redis)
        counts = await sweep_expired_auth({"deps": deps})
    assert counts == {"refresh_tokens": 5, "email_tokens": 2, "auth_sessions": 3}
    async with engine.connect() as connection:
        await _assert_swept(connection, committed)
    jobs = worker_options(sweep_settings)["cron_jobs"]
    [job] = [j for j in jobs if j.name.endswith("sweep_expired_auth")]
    assert job.name == f"{sweep_settings.REDIS_KEY_PREFIX}sweep_expired_auth"
    assert (job.hour, job.minute, job.second) == (None, 30, 0)  # every hour at :30


async def test_cli_sweep_on_its_own_engine(
    engine: AsyncEngine, sweep_settings: TestSettings, committed: Rows
) -> None:
    counts = await sweep_database(sweep_settings)
    assert counts == SweepCounts(refresh_tokens=5, email_tokens=2, auth_sessions=3)
    async with engine.connect() as connection:
        await _assert_swept(connection, committed)


def test_cli_command_is_there_with_help() -> None:
    result = CliRunner().invoke(app, ["auth", "sweep", "--help"])
    assert result.exit_code == 0, result.output
    assert "AUTH_RETENTION_DAYS" in result.output
