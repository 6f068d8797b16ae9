"""Alembic environment: runs on a connection handed in by Dashtam, or on the settings' URL."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from dashtam.core.config import load_settings
from dashtam.core.database import create_engine
from dashtam.core.roles import grant_runtime_privileges
from dashtam.models import metadata

config = context.config


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_with_own_engine() -> None:
    """`alembic upgrade` by hand: as the owner role, and the runtime role's grants after."""
    settings = load_settings()
    engine = create_engine(settings, settings.owner_database_url, poolclass=None, pool_size=1)
    async with engine.connect() as connection:
        await connection.run_sync(run_on)
        await connection.run_sync(grant_runtime_privileges, settings.runtime_role)
        await connection.commit()
    await engine.dispose()


given: Connection | None = config.attributes.get("connection")
if context.is_offline_mode():
    raise SystemExit("Offline (SQL script) migrations are not supported; run against a database.")
if given is not None:
    run_on(given)
else:
    asyncio.run(run_with_own_engine())
