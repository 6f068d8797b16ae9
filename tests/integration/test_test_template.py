"""The migrated test template is reused while it provably is what the migrations make, and
rebuilt from nothing when a migration or model changed or someone changed it by hand.

Each test works on a clone of its own (named for this run and worker), stamped as the template
is; the real template is never touched.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine
from tests.support.databases import (
    create_worker_database,
    drop_worker_database,
    stamp_as_template,
)
from tests.test_config import TestSettings

from dashtam.core import init_test_db as template
from dashtam.core.init_test_db import init_test_db


async def _sql(url: URL, *statements: str) -> list[object]:
    """Run statements as the owner (a hand on the schema), committed; the first value each
    returns (None for commands)."""
    engine = create_async_engine(aimed_at(url).owner_database_url)
    try:
        async with engine.begin() as connection:
            results = [await connection.execute(text(sql)) for sql in statements]
            return [result.scalar() if result.returns_rows else None for result in results]
    finally:
        await engine.dispose()


def aimed_at(url: URL) -> TestSettings:
    return TestSettings(DATABASE_URL=url.render_as_string(hide_password=False))


@pytest.fixture
async def stamped(base_settings: TestSettings, run_id: str, worker_id: str) -> AsyncIterator[URL]:
    """A clone of the template, stamped as `init_test_db` stamps the template."""
    name = f"{base_settings.database_name}_{run_id}_{worker_id}tpl{secrets.token_hex(3)}"
    url = await create_worker_database(base_settings, name)
    try:
        await stamp_as_template(aimed_at(url).owner_database_url)
        yield url
    finally:
        await drop_worker_database(base_settings, name)


async def test_a_stamped_template_is_reused_as_it_is(stamped: URL) -> None:
    first = await init_test_db(aimed_at(stamped))
    second = await init_test_db(aimed_at(stamped))
    assert first.rebuilt_because is None
    assert second.rebuilt_because is None
    assert first.tables == second.tables
    assert {"users", "transactions", "alembic_version"} <= set(first.tables)
    assert first.describe().startswith("test database reused")


async def test_a_database_without_a_stamp_is_rebuilt_and_stamped(
    base_settings: TestSettings, run_id: str, worker_id: str
) -> None:
    name = f"{base_settings.database_name}_{run_id}_{worker_id}nostamp"
    url = await create_worker_database(base_settings, name)
    try:
        rebuilt = await init_test_db(aimed_at(url))
        reused = await init_test_db(aimed_at(url))
    finally:
        await drop_worker_database(base_settings, name)
    assert rebuilt.rebuilt_because == "it carried no template stamp"
    assert reused.rebuilt_because is None
    assert rebuilt.tables == reused.tables


async def test_changed_migrations_or_models_rebuild_it(
    stamped: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _sql(stamped, "CREATE TABLE from_an_old_migration (id int)")
    monkeypatch.setattr(template, "schema_source_hash", lambda: "0" * 64)
    prepared = await init_test_db(aimed_at(stamped))
    assert prepared.rebuilt_because == "migrations or models changed"
    assert "from_an_old_migration" not in prepared.tables
    assert (await init_test_db(aimed_at(stamped))).rebuilt_because is None


@pytest.mark.parametrize(
    ("tampering", "reason"),
    [
        (
            "INSERT INTO users (id, email, name, password_hash, is_active) "
            "VALUES (gen_random_uuid(), 'left@over.test', 'x', 'x', true)",
            "it held rows (users)",
        ),
        ("ALTER TABLE users ADD COLUMN added_by_hand int", "schema no longer matches"),
        ("CREATE TABLE stray (id int)", "schema no longer matches"),
        ("CREATE INDEX by_hand ON users (name)", "schema no longer matches"),
        ("DROP TRIGGER provider_audit_logs_append_only ON provider_audit_logs", "schema no"),
        ("UPDATE alembic_version SET version_num = 'elsewhere'", "alembic_version is"),
    ],
)
async def test_a_template_changed_by_hand_is_rebuilt(
    stamped: URL, tampering: str, reason: str
) -> None:
    await _sql(stamped, tampering)
    prepared = await init_test_db(aimed_at(stamped))
    assert prepared.rebuilt_because is not None
    assert reason in prepared.rebuilt_because
    assert "stray" not in prepared.tables
    assert await _sql(
        stamped,
        "SELECT count(*) FROM users",
        "SELECT count(*) FROM pg_trigger WHERE tgname = 'provider_audit_logs_append_only'",
        "SELECT count(*) FROM information_schema.columns WHERE column_name = 'added_by_hand'",
        "SELECT count(*) FROM pg_indexes WHERE indexname = 'by_hand'",
    ) == [0, 1, 0, 0]
    assert (await init_test_db(aimed_at(stamped))).rebuilt_because is None


async def test_rebuild_can_be_asked_for(stamped: URL) -> None:
    prepared = await init_test_db(aimed_at(stamped), rebuild=True)
    assert prepared.rebuilt_because == "asked to rebuild"
    assert (await init_test_db(aimed_at(stamped))).rebuilt_because is None
