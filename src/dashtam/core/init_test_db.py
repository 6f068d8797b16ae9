"""Test database initialisation: the only code outside test fixtures that drops anything.

It refuses, touching nothing, unless every check holds: the settings say testing (twice), the
database *name* parsed from the URL contains "test", and the live connection confirms both the
database and the role. Then it applies the test optimisations, drops everything and migrates.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from dashtam.core.config import Environment, Settings, load_settings
from dashtam.core.database import create_engine
from dashtam.core.errors import UserError
from dashtam.core.migrations import upgrade_to_head
from dashtam.models import metadata

logger = logging.getLogger("dashtam.init_test_db")


class UnsafeDatabaseError(UserError):
    """A safety check failed: nothing was changed."""


def check_settings_are_for_testing(settings: Settings) -> None:
    """The checks that need no connection."""
    if settings.ENVIRONMENT is not Environment.TESTING:
        raise UnsafeDatabaseError(
            f"Refusing: ENVIRONMENT is {settings.ENVIRONMENT.value!r}, not 'testing'.",
            hint="Run with the test env file (DASHTAM_ENV_FILE=env/.env.test); `make test` does.",
        )
    if not settings.TESTING:
        raise UnsafeDatabaseError(
            "Refusing: TESTING is not true.", hint="Set TESTING=true in the test env file."
        )
    name = settings.database_name
    if "test" not in name:
        raise UnsafeDatabaseError(
            f"Refusing: the database name {name!r} does not contain 'test'.",
            hint="Point the test settings at the test database (dashtam_test).",
        )


async def check_connection_is_for_testing(connection: AsyncConnection, settings: Settings) -> None:
    """The checks the server answers: which database and which role we really are."""
    row = (await connection.execute(text("SELECT current_database(), current_user"))).one()
    database, role = str(row[0]), str(row[1])
    expected_role = settings.database_url.username or ""
    if "test" not in database:
        raise UnsafeDatabaseError(
            f"Refusing: connected to database {database!r}, whose name lacks 'test'."
        )
    if role != expected_role or "test" not in role:
        raise UnsafeDatabaseError(
            f"Refusing: connected as role {role!r}, not the test role {expected_role!r} "
            "(the test role's name must contain 'test')."
        )


async def init_test_db(settings: Settings) -> list[str]:
    """Rebuild the test database from nothing; returns the tables it verified."""
    check_settings_are_for_testing(settings)
    logger.info("settings checks passed for database %r", settings.database_name)
    engine = create_engine(settings, pool_size=1)
    try:
        async with engine.connect() as connection:
            await check_connection_is_for_testing(connection, settings)
            logger.info("connection checks passed (database and role)")
            await connection.execute(text("SELECT set_config('synchronous_commit', 'off', false)"))
            database = settings.database_name.replace('"', '""')
            await connection.execute(
                text(f'ALTER DATABASE "{database}" SET synchronous_commit = off')
            )
            logger.info("applied test optimisations (synchronous_commit off)")
            await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public AUTHORIZATION CURRENT_USER"))
            logger.info("dropped every object in the test database")
            await upgrade_to_head(connection)
            logger.info("migrated to head")
            tables = await _verify_tables(connection)
            await connection.commit()
    finally:
        await engine.dispose()
    logger.info("test database ready: %d tables", len(tables))
    return tables


async def _verify_tables(connection: AsyncConnection) -> list[str]:
    rows = await connection.execute(
        text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
    )
    present = {str(name) for (name,) in rows}
    missing = set(metadata.tables) - present
    if missing:
        raise RuntimeError(f"test database is missing tables after migrating: {sorted(missing)}")
    return sorted(present)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        asyncio.run(init_test_db(load_settings()))
    except UserError as error:
        raise SystemExit(f"error: {error}") from None
