"""The app's database role cannot erase the trail: PostgreSQL itself refuses it.

The tests connect as the runtime role, as the app and the worker do; migrations ran as the owner
role. On the two audit tables only INSERT and SELECT are granted, and no table is the runtime
role's, so ALTER, DISABLE TRIGGER and DROP (owner only) are refused too. Each refusal is checked
to come from the privilege system ("permission denied" / "must be owner"), not the append-only
triggers, which answer with a message of their own.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from tests.test_config import TestSettings

AUDIT_TABLES = ("auth_audit_logs", "provider_audit_logs")
INSERT = {
    "auth_audit_logs": "INSERT INTO auth_audit_logs (id, action, outcome, details) "
    "VALUES (:id, 'login', 'success', '{}')",
    "provider_audit_logs": "INSERT INTO provider_audit_logs (id, action, outcome, details) "
    "VALUES (:id, 'token.refresh', 'success', '{}')",
}
REFUSED = {
    "UPDATE": ("UPDATE {table} SET outcome = 'tampered'", "permission denied for table {table}"),
    "DELETE": ("DELETE FROM {table}", "permission denied for table {table}"),
    "TRUNCATE": ("TRUNCATE {table}", "permission denied for table {table}"),
    "ALTER": ("ALTER TABLE {table} ADD COLUMN note text", "must be owner of table {table}"),
    "DISABLE TRIGGER": (
        "ALTER TABLE {table} DISABLE TRIGGER {table}_append_only",
        "must be owner of table {table}",
    ),
    "DROP": ("DROP TABLE {table}", "must be owner of table {table}"),
}


async def refused(connection: AsyncConnection, statement: str, message: str) -> None:
    """Run `statement` in a savepoint; it must fail with SQLSTATE 42501 and `message`."""
    with pytest.raises(DBAPIError) as raised:
        async with connection.begin_nested():
            await connection.execute(text(statement))
    assert getattr(raised.value.orig, "sqlstate", None) == "42501", raised.value
    assert message in str(raised.value)


async def test_the_tests_run_as_the_runtime_role_which_owns_nothing(
    db_connection: AsyncConnection, settings: TestSettings
) -> None:
    role = await db_connection.scalar(text("SELECT current_user"))
    assert role == settings.runtime_role != settings.POSTGRES_OWNER_USER
    owned = await db_connection.scalar(
        text(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relowner = (SELECT oid FROM pg_roles "
            "WHERE rolname = current_user)"
        )
    )
    assert owned == 0
    flags = (
        await db_connection.execute(
            text(
                "SELECT rolsuper, rolcreatedb, rolcreaterole, rolbypassrls FROM pg_roles "
                "WHERE rolname = current_user"
            )
        )
    ).one()
    assert tuple(flags) == (False, False, False, False)


@pytest.mark.parametrize("table", AUDIT_TABLES)
async def test_audit_rows_can_be_written_and_read(
    db_connection: AsyncConnection, table: str
) -> None:
    row_id = uuid.uuid4()
    await db_connection.execute(text(INSERT[table]), {"id": row_id})
    query = text(f"SELECT count(*) FROM {table} WHERE id = :id")  # noqa: S608
    found = await db_connection.scalar(query, {"id": row_id})
    assert found == 1


@pytest.mark.parametrize("operation", sorted(REFUSED))
@pytest.mark.parametrize("table", AUDIT_TABLES)
async def test_the_runtime_role_cannot_change_the_audit_trail(
    db_connection: AsyncConnection, table: str, operation: str
) -> None:
    await db_connection.execute(text(INSERT[table]), {"id": uuid.uuid4()})
    before = await db_connection.scalar(text(f"SELECT count(*) FROM {table}"))  # noqa: S608
    statement, message = REFUSED[operation]
    await refused(db_connection, statement.format(table=table), message.format(table=table))
    assert await db_connection.scalar(text(f"SELECT count(*) FROM {table}")) == before  # noqa: S608


async def test_the_runtime_role_cannot_switch_triggers_off_for_its_session(
    db_connection: AsyncConnection,
) -> None:
    """session_replication_role = replica skips every trigger: superusers only."""
    await refused(
        db_connection,
        "SET session_replication_role = replica",
        'permission denied to set parameter "session_replication_role"',
    )


async def test_other_tables_get_dml_but_no_ddl(db_connection: AsyncConnection) -> None:
    user_id = uuid.uuid4()
    await db_connection.execute(
        text(
            "INSERT INTO users (id, email, name, password_hash, is_active) "
            "VALUES (:id, :email, 'Role', 'x', true)"
        ),
        {"id": user_id, "email": f"{user_id.hex}@example.com"},
    )
    updated = await db_connection.execute(
        text("UPDATE users SET name = 'Changed' WHERE id = :id"), {"id": user_id}
    )
    assert updated.rowcount == 1
    deleted = await db_connection.execute(text("DELETE FROM users WHERE id = :id"), {"id": user_id})
    assert deleted.rowcount == 1
    await refused(db_connection, "TRUNCATE users CASCADE", "permission denied for table users")
    await refused(db_connection, "DROP TABLE users CASCADE", "must be owner of table users")
    await refused(
        db_connection, "ALTER TABLE users ADD COLUMN x int", "must be owner of table users"
    )
    await refused(
        db_connection, "CREATE TABLE stray (id int)", "permission denied for schema public"
    )


async def test_statistics_refresh_runs_as_the_owner(
    db_connection: AsyncConnection, settings: TestSettings
) -> None:
    """The sync's ANALYZE goes through a SECURITY DEFINER function of the owner (migration
    0007): callable by the runtime role, by nobody else, and owned by the owner."""
    await db_connection.execute(text("SELECT analyze_transactions()"))
    owner, definer, public = (
        await db_connection.execute(
            text(
                "SELECT pg_get_userbyid(proowner), prosecdef, "
                "has_function_privilege('public', oid, 'EXECUTE') "
                "FROM pg_proc WHERE proname = 'analyze_transactions'"
            )
        )
    ).one()
    assert (owner, definer, public) == (settings.POSTGRES_OWNER_USER, True, False)
