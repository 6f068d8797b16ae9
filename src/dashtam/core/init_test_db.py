"""Test database initialisation: the only code outside test fixtures that drops anything.

It refuses, touching nothing, unless every check holds: the settings say testing (twice), the
database *name* parsed from the URL contains "test", and the live connection confirms both the
database and the role (the test owner role: it owns what it drops). Then it applies the test
optimisations, drops everything, migrates, and grants the runtime role (the one the tests, like
the app, connect as) DML only.

The migrated database is the template every run's worker databases are cloned from. Like
pgtestdb, it is rebuilt only when it must be: it carries a stamp (its database comment) with a
hash of what the schema is made from (migrations, models, this recipe) and a fingerprint of the
catalog it ended with. A run reuses it only when the hash still matches, the catalog is still
the stamped one and no table holds a row; anything else rebuilds it from nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from dashtam.core.config import PROJECT_ROOT, Environment, Settings, load_settings
from dashtam.core.errors import UserError
from dashtam.core.roles import grant_runtime_privileges

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
    for setting, role in (
        ("POSTGRES_OWNER_USER", settings.POSTGRES_OWNER_USER),
        ("the app's role (POSTGRES_USER)", settings.runtime_role),
    ):
        if "test" not in role:
            raise UnsafeDatabaseError(
                f"Refusing: {setting} is {role!r}, whose name lacks 'test'.",
                hint="The test environment's roles are dashtam_test_owner and dashtam_test_user.",
            )


async def check_connection_is_for_testing(connection: AsyncConnection, expected_role: str) -> None:
    """The checks the server answers: which database and which role we really are."""
    row = (await connection.execute(text("SELECT current_database(), current_user"))).one()
    database, role = str(row[0]), str(row[1])
    if "test" not in database:
        raise UnsafeDatabaseError(
            f"Refusing: connected to database {database!r}, whose name lacks 'test'."
        )
    if role != expected_role or "test" not in role:
        raise UnsafeDatabaseError(
            f"Refusing: connected as role {role!r}, not the test role {expected_role!r} "
            "(the test role's name must contain 'test')."
        )


STAMP_PREFIX = "dashtam test template"
_STAMP = re.compile(
    rf"{STAMP_PREFIX} sources=(?P<sources>[0-9a-f]+) "
    r"catalog=(?P<catalog>[0-9a-f]+) rev=(?P<rev>\S+)"
)
# What the migrated schema is made of, relative to the project root.
SCHEMA_SOURCES = ("alembic.ini", "alembic", "src/dashtam/models", "src/dashtam/core/migrations.py")
_CATALOG_FINGERPRINT = text(
    """
    SELECT md5(coalesce(string_agg(item, E'\\n' ORDER BY item), '')) FROM (
        SELECT format('relation %s %s', relname, relkind)
        FROM pg_class WHERE relnamespace = 'public'::regnamespace
      UNION ALL
        SELECT format('column %s.%s %s %s %s', c.relname, a.attname,
                      format_type(a.atttypid, a.atttypmod), a.attnotnull,
                      pg_get_expr(d.adbin, d.adrelid))
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
      UNION ALL
        SELECT format('index %s', pg_get_indexdef(i.indexrelid))
        FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
        WHERE c.relnamespace = 'public'::regnamespace
      UNION ALL
        SELECT format('constraint %s %s %s', conrelid::regclass, conname,
                      pg_get_constraintdef(oid))
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
      UNION ALL
        SELECT format('trigger %s', pg_get_triggerdef(t.oid))
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal
      UNION ALL
        SELECT format('function %s', pg_get_functiondef(oid))
        FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND prokind IN ('f', 'p')
      UNION ALL
        SELECT format('enum %s %s %s', t.typname, e.enumsortorder, e.enumlabel)
        FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
        WHERE t.typnamespace = 'public'::regnamespace
    ) AS catalog(item)
    """
)


@dataclass(frozen=True)
class PreparedTemplate:
    """What `init_test_db` left: the tables, and why it rebuilt (None: reused as it was)."""

    tables: list[str]
    rebuilt_because: str | None

    def describe(self) -> str:
        if self.rebuilt_because is None:
            return (
                f"test database reused: migrations and models unchanged ({len(self.tables)} tables)"
            )
        return f"test database rebuilt ({len(self.tables)} tables): {self.rebuilt_because}"


def schema_source_hash(root: Path = PROJECT_ROOT) -> str:
    """sha256 over the files the schema is made from (names and contents), and this recipe."""
    files: list[Path] = []
    for source in SCHEMA_SOURCES:
        path = root / source
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for path in files:
        digest.update(b"\0" + path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class _Stamp:
    sources: str
    catalog: str
    revision: str

    def render(self) -> str:
        return f"{STAMP_PREFIX} sources={self.sources} catalog={self.catalog} rev={self.revision}"

    @classmethod
    def parse(cls, comment: str | None) -> _Stamp | None:
        found = _STAMP.fullmatch(comment or "")
        return cls(found["sources"], found["catalog"], found["rev"]) if found else None


async def _read_stamp(connection: AsyncConnection) -> _Stamp | None:
    comment = await connection.scalar(
        text(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
            "WHERE datname = current_database()"
        )
    )
    return _Stamp.parse(comment)


async def _catalog(connection: AsyncConnection) -> str:
    return str(await connection.scalar(_CATALOG_FINGERPRINT))


async def _tables(connection: AsyncConnection) -> list[str]:
    rows = await connection.execute(
        text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
    )
    return [str(name) for (name,) in rows]


async def _tables_with_rows(connection: AsyncConnection, tables: list[str]) -> list[str]:
    """Tables holding a row; alembic_version counts only with other than the stamped row."""
    data = [name for name in tables if name != "alembic_version"]
    if not data:
        return []
    # Names come from pg_tables and are quoted as identifiers.
    probes = ", ".join(f"EXISTS (SELECT 1 FROM {_quote(name)})" for name in data)  # noqa: S608
    found = (await connection.execute(text(f"SELECT {probes}"))).one()
    return [name for name, has_rows in zip(data, found, strict=True) if has_rows]


async def _reuse_refusal(connection: AsyncConnection, sources: str) -> tuple[str | None, list[str]]:
    """Why the database cannot be reused as the template (None: it can), and its tables."""
    stamp = await _read_stamp(connection)
    if stamp is None:
        return "it carried no template stamp", []
    if stamp.sources != sources:
        return "migrations or models changed", []
    if await _catalog(connection) != stamp.catalog:
        return "its schema no longer matches the stamp (changed by hand?)", []
    tables = await _tables(connection)
    revisions = list(await connection.scalars(text("SELECT version_num FROM alembic_version")))
    if revisions != [stamp.revision]:
        return f"its alembic_version is {revisions}, not the stamped {stamp.revision!r}", []
    holding = await _tables_with_rows(connection, tables)
    if holding:
        return f"it held rows ({', '.join(holding)})", []
    return None, tables


async def init_test_db(settings: Settings, *, rebuild: bool = False) -> PreparedTemplate:
    """Make the test database the migrated template: reused when it provably is one already
    (unless `rebuild`), otherwise rebuilt from nothing and stamped."""
    check_settings_are_for_testing(settings)
    logger.info("settings checks passed for database %r", settings.database_name)
    engine = create_async_engine(settings.owner_database_url, echo=settings.DB_ECHO, pool_size=1)
    try:
        async with engine.connect() as connection:
            await check_connection_is_for_testing(connection, settings.POSTGRES_OWNER_USER)
            logger.info("connection checks passed (database and owner role)")
            sources = schema_source_hash()
            reason, tables = (
                ("asked to rebuild", []) if rebuild else await _reuse_refusal(connection, sources)
            )
            if reason is None:
                # Grants are not in the catalog fingerprint: set them (idempotent) all the same.
                await connection.run_sync(grant_runtime_privileges, settings.runtime_role)
                await connection.commit()
                logger.info("template stamp matches: reused")
                return PreparedTemplate(tables, None)
            logger.info("rebuilding: %s", reason)
            tables = await _rebuild(connection, sources, settings.runtime_role)
    finally:
        await engine.dispose()
    logger.info("test database ready: %d tables", len(tables))
    return PreparedTemplate(tables, reason)


async def _rebuild(connection: AsyncConnection, sources: str, runtime_role: str) -> list[str]:
    """Drop everything, migrate, verify and stamp, in one transaction: all or nothing."""
    from dashtam.core.migrations import current_revision, upgrade_to_head

    await connection.execute(text("SELECT set_config('synchronous_commit', 'off', false)"))
    database = _quote(str(await connection.scalar(text("SELECT current_database()"))))
    await connection.execute(text(f"ALTER DATABASE {database} SET synchronous_commit = off"))
    logger.info("applied test optimisations (synchronous_commit off)")
    await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
    await connection.execute(text("CREATE SCHEMA public AUTHORIZATION CURRENT_USER"))
    logger.info("dropped every object in the test database")
    await upgrade_to_head(connection)
    await connection.run_sync(grant_runtime_privileges, runtime_role)
    logger.info("migrated to head; %s granted DML only", runtime_role)
    tables = await _verify_tables(connection)
    revision = await current_revision(connection)
    stamp = _Stamp(sources, await _catalog(connection), str(revision))
    comment = stamp.render().replace("'", "''")
    await connection.execute(text(f"COMMENT ON DATABASE {database} IS '{comment}'"))
    await connection.commit()
    return tables


async def _verify_tables(connection: AsyncConnection) -> list[str]:
    from dashtam.models import metadata

    present = await _tables(connection)
    missing = set(metadata.tables) - set(present)
    if missing:
        raise RuntimeError(f"test database is missing tables after migrating: {sorted(missing)}")
    return present


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        asyncio.run(init_test_db(load_settings()))
    except UserError as error:
        raise SystemExit(f"error: {error}") from None
