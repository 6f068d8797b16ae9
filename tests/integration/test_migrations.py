"""Alembic is the schema's source of truth: models and migrations must agree."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from dashtam.core.migrations import current_revision, head_revision, schema_drift

SEED_TABLES = {
    "users",
    "providers",
    "provider_connections",
    "provider_tokens",
    "provider_audit_logs",
}


async def test_database_is_at_head(db_connection: AsyncConnection) -> None:
    assert await current_revision(db_connection) == head_revision()


async def test_autogenerate_finds_no_difference(db_connection: AsyncConnection) -> None:
    assert await schema_drift(db_connection) == []


async def test_seed_tables_exist(db_connection: AsyncConnection) -> None:
    tables = await db_connection.run_sync(
        lambda sync: set(sync.dialect.get_table_names(sync))  # type: ignore[no-any-return]
    )
    assert tables >= SEED_TABLES
