"""Running Alembic from code, on a connection we already hold."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from dashtam.core.config import PROJECT_ROOT
from dashtam.models import metadata


def alembic_config() -> Config:
    return Config(str(PROJECT_ROOT / "alembic.ini"))


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, metadata))


async def upgrade_to_head(connection: AsyncConnection) -> None:
    await upgrade_to(connection, "head")


async def upgrade_to(connection: AsyncConnection, revision: str) -> None:
    """Migrate up to `revision` (a data migration's test builds the shape before it)."""
    await connection.run_sync(_upgrade, revision)


async def current_revision(connection: AsyncConnection) -> str | None:
    return await connection.run_sync(_current)


async def schema_drift(connection: AsyncConnection) -> list[object]:
    """What autogenerate would change: empty when models and migrations agree."""
    return await connection.run_sync(_diff)
