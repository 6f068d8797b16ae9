"""Per-worker test databases cloned from the migrated template, and their safe removal.

Names carry the run id (`<pid>x<random>`) so concurrent runs never collide, and a database
whose run's process is gone is recognised as left over by an interrupted run and dropped.
"""

from __future__ import annotations

import asyncio
import re

import asyncpg
import psutil
from sqlalchemy.engine import URL

from dashtam.core import init_test_db as template
from dashtam.core.config import Settings
from dashtam.core.init_test_db import UnsafeDatabaseError, check_settings_are_for_testing

RUN_PATTERN = re.compile(r"_(?P<pid>\d+)x[0-9a-f]+_[a-z0-9]+$")


def worker_database_name(template: str, run_id: str, worker: str) -> str:
    return f"{template}_{run_id}_{worker}"


async def _admin_connection(settings: Settings) -> asyncpg.Connection:
    """The test owner role on the maintenance database: it owns the template, so it may clone
    it, and owns the clones it makes, so it may drop them. The tests themselves connect as the
    runtime role, with the app's rights only."""
    url = settings.owner_database_url
    connection = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, database="postgres"
    )
    role = await connection.fetchval("SELECT current_user")
    if role != url.username or "test" not in str(role):
        await connection.close()
        raise UnsafeDatabaseError(f"Refusing: connected as {role!r}, not the test owner role.")
    return connection


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _drop(connection: asyncpg.Connection, settings: Settings, name: str) -> None:
    """Drop one of our per-worker databases; every safety condition is re-checked here."""
    check_settings_are_for_testing(settings)
    template = settings.database_name
    if "test" not in name or not name.startswith(f"{template}_") or name == template:
        raise UnsafeDatabaseError(f"Refusing to drop {name!r}: not a per-worker test database.")
    try:
        await connection.execute(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")
    except asyncpg.InsufficientPrivilegeError:
        # FORCE may not terminate an autovacuum worker (a server with autovacuum on, such as
        # one started before it was turned off for tests); a plain DROP asks it to stop.
        await connection.execute(f"DROP DATABASE IF EXISTS {_quote(name)}")


async def drop_leftovers(settings: Settings) -> list[str]:
    """Drop per-worker databases whose run's process no longer exists."""
    connection = await _admin_connection(settings)
    try:
        names = await connection.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1",
            settings.database_name.replace("_", r"\_") + r"\_%",
        )
        dropped = []
        for (name,) in names:
            match = RUN_PATTERN.search(name)
            if match and not psutil.pid_exists(int(match["pid"])):
                await _drop(connection, settings, name)
                dropped.append(name)
        return dropped
    finally:
        await connection.close()


async def _only_the_runtime_role_connects(
    connection: asyncpg.Connection, settings: Settings, name: str
) -> None:
    """A new database lets PUBLIC connect (a template's ACL is not copied): as dashtam_test."""
    await connection.execute(f"REVOKE CONNECT ON DATABASE {_quote(name)} FROM PUBLIC")
    runtime = _quote(settings.runtime_role)
    await connection.execute(f"GRANT CONNECT ON DATABASE {_quote(name)} TO {runtime}")


async def create_worker_database(settings: Settings, name: str) -> URL:
    """A clone of the migrated template; returns the runtime role's URL for it."""
    check_settings_are_for_testing(settings)
    connection = await _admin_connection(settings)
    try:
        await _drop(connection, settings, name)
        for attempt in range(50):
            try:
                await connection.execute(
                    f"CREATE DATABASE {_quote(name)} TEMPLATE {_quote(settings.database_name)}"
                )
                break
            except asyncpg.ObjectInUseError:  # another worker is cloning the same template
                if attempt == 49:
                    raise
                await asyncio.sleep(0.1)
        await _only_the_runtime_role_connects(connection, settings, name)
    finally:
        await connection.close()
    return settings.database_url.set(database=name)


async def create_empty_database(settings: Settings, name: str) -> URL:
    """A per-worker database with nothing in it (what a restore needs); the runtime role's URL."""
    check_settings_are_for_testing(settings)
    connection = await _admin_connection(settings)
    try:
        await _drop(connection, settings, name)
        await connection.execute(f"CREATE DATABASE {_quote(name)}")
        await _only_the_runtime_role_connects(connection, settings, name)
    finally:
        await connection.close()
    return settings.database_url.set(database=name)


async def drop_worker_database(settings: Settings, name: str) -> None:
    connection = await _admin_connection(settings)
    try:
        await _drop(connection, settings, name)
    finally:
        await connection.close()


async def stamp_as_template(url: URL) -> None:
    """Give a migrated, empty database the stamp `init_test_db` would give it (clones of the
    template do not inherit its database comment)."""
    connection = await asyncpg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        database=url.database,
    )
    try:
        catalog = await connection.fetchval(str(template._CATALOG_FINGERPRINT))
        revision = await connection.fetchval("SELECT version_num FROM alembic_version")
        stamp = template._Stamp(template.schema_source_hash(), catalog, revision).render()
        await connection.execute(f"COMMENT ON DATABASE {_quote(url.database or '')} IS '{stamp}'")
    finally:
        await connection.close()
