"""Backups: `dashtam backup` writes one tar file, `dashtam restore FILE` fills an empty database.

The file holds `database.dump`, pg_dump's custom format taken as the owner role without owners
or grants (a restore makes its own), and `manifest.json`: what it was made from, its migration,
every table's row count, the dump's SHA-256, and the id and fingerprint of every token key the
stored provider tokens need. Never the keys themselves, unless `--include-keys` is asked for.
The counts and the dump come from one exported snapshot, so the manifest describes exactly what
the dump holds. A restore checks the file, the keys and that the database is empty before it
writes anything, restores in one transaction, migrates to head, and verifies every row count and
that every token decrypts.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import select

from dashtam.core.config import PROJECT_ROOT, Settings
from dashtam.core.crypto import TokenCipher, key_fingerprint, parse_keys, stored_key_id
from dashtam.core.database import create_engine, create_session_factory
from dashtam.core.errors import UserError
from dashtam.core.init_db import init_db
from dashtam.devenv.binaries import find_postgres
from dashtam.models.provider import ProviderToken
from dashtam.providers.errors import TokenUnreadable
from dashtam.providers.tokens import TOKEN_FIELDS, reveal

FORMAT = "dashtam-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DUMP = "database.dump"
DEFAULT_FOLDER = PROJECT_ROOT / "backups"


@dataclass(frozen=True)
class Summary:
    path: Path
    tables: dict[str, int]
    key_ids: list[str]
    migration: str

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


def _tool_env(settings: Settings) -> dict[str, str]:
    """PostgreSQL tools get the owner's password from the environment, never the command line."""
    return {**os.environ, "PGPASSWORD": settings.POSTGRES_OWNER_PASSWORD}


def _tool_target(settings: Settings) -> list[str]:
    url = settings.owner_database_url
    return ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or ""]


async def _run(command: list[str], settings: Settings, what: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *command,
        env=_tool_env(settings),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    if process.returncode != 0:
        raise UserError(f"{what} failed:\n{stderr.decode(errors='replace').strip()[-1500:]}")


async def _owner_connection(settings: Settings) -> asyncpg.Connection:
    url = settings.owner_database_url
    try:
        return await asyncpg.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            database=url.database,
        )
    except (OSError, asyncpg.PostgresError) as error:
        raise UserError(
            f"Cannot connect to database {url.database!r} as {url.username!r}: {error}",
            hint="Start it (`make up` / `dashtam up --services-only`), or check "
            "POSTGRES_OWNER_USER / POSTGRES_OWNER_PASSWORD.",
        ) from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


async def _table_counts(connection: asyncpg.Connection) -> dict[str, int]:
    names = await connection.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    )
    counts = {}
    for (name,) in names:
        quoted = '"' + str(name).replace('"', '""') + '"'
        # A name from pg_tables, quoted as an identifier.
        count = await connection.fetchval(f"SELECT count(*) FROM {quoted}")  # noqa: S608
        counts[str(name)] = int(count)
    return counts


async def _needed_key_ids(connection: asyncpg.Connection) -> list[str]:
    columns = ", ".join(TOKEN_FIELDS.values())
    rows = await connection.fetch(f"SELECT {columns} FROM provider_tokens")  # noqa: S608
    return sorted({stored_key_id(value) for row in rows for value in row if value is not None})


def _destination(given: Path | None, environment: str) -> Path:
    """The file given (an existing one, or a name ending .tar), else a new timestamped name in
    the folder given (made if missing; default: backups/)."""
    if given is not None and not given.is_dir() and (given.suffix == ".tar" or given.exists()):
        given.parent.mkdir(parents=True, exist_ok=True)
        return given
    folder = given or DEFAULT_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return folder / f"dashtam-{environment}-{stamp}.tar"


async def backup(
    settings: Settings,
    environment: str,
    destination: Path | None = None,
    *,
    include_keys: bool = False,
) -> Summary:
    """Dump the environment's database and its manifest into one tar file (mode 0600)."""
    destination = _destination(destination, environment)
    configured = parse_keys(settings.TOKEN_ENCRYPTION_KEYS)
    connection = await _owner_connection(settings)
    with tempfile.TemporaryDirectory(prefix="dashtam-backup-") as scratch:
        dump = Path(scratch) / DUMP
        try:
            async with connection.transaction(isolation="repeatable_read", readonly=True):
                snapshot = await connection.fetchval("SELECT pg_export_snapshot()")
                tables = await _table_counts(connection)
                if "alembic_version" not in tables:
                    raise UserError(
                        f"Database {settings.database_name!r} has no migrations applied: "
                        "nothing to back up.",
                        hint="`make up` (or `make migrate`) creates the schema.",
                    )
                migration = str(
                    await connection.fetchval("SELECT version_num FROM alembic_version")
                )
                key_ids = await _needed_key_ids(connection)
                server = str(await connection.fetchval("SHOW server_version"))
                command = [find_postgres()("pg_dump"), *_tool_target(settings)]
                command += ["--format=custom", "--no-owner", "--no-privileges"]
                command += [f"--snapshot={snapshot}", f"--file={dump}", settings.database_name]
                await _run(command, settings, "pg_dump")
        finally:
            await connection.close()
        unknown = [key_id for key_id in key_ids if key_id not in configured]
        if unknown:
            raise UserError(
                f"Stored tokens use key id(s) {', '.join(unknown)}, which TOKEN_ENCRYPTION_KEYS "
                "does not hold: such a backup could never be decrypted. Nothing was written.",
                hint="Put the missing keys back into TOKEN_ENCRYPTION_KEYS, then back up again.",
            )
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "created_at": datetime.now(UTC).isoformat(),
            "environment": environment,
            "database": settings.database_name,
            "server_version": server,
            "migration": migration,
            "tables": tables,
            "dump_sha256": _sha256(dump),
            "token_keys": {
                key_id: {"fingerprint": key_fingerprint(configured[key_id])} for key_id in key_ids
            },
        }
        if include_keys:
            manifest["keys"] = {
                key_id: base64.urlsafe_b64encode(configured[key_id]).decode() for key_id in key_ids
            }
        manifest_file = Path(scratch) / MANIFEST
        manifest_file.write_text(json.dumps(manifest, indent=2) + "\n")
        partial = destination.with_name(destination.name + ".part")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle, tarfile.open(fileobj=handle, mode="w") as tar:
            tar.add(manifest_file, arcname=MANIFEST)
            tar.add(dump, arcname=DUMP)
        partial.replace(destination)
    return Summary(destination, tables, key_ids, migration)


def _read_manifest(archive: Path, scratch: Path) -> dict[str, Any]:
    """Extract and check the file; returns its manifest (the dump is in `scratch`)."""
    if not archive.is_file():
        raise UserError(f"No backup file at {archive}.")
    not_ours = UserError(f"{archive} is not a Dashtam backup (from `dashtam backup`).")
    try:
        with tarfile.open(archive, mode="r:") as tar:
            names = sorted(tar.getnames())
            if names != sorted([MANIFEST, DUMP]):
                raise not_ours
            tar.extractall(scratch, filter="data")
    except tarfile.TarError:
        raise not_ours from None
    try:
        manifest: dict[str, Any] = json.loads((scratch / MANIFEST).read_text())
    except ValueError:
        raise not_ours from None
    if manifest.get("format") != FORMAT:
        raise not_ours
    if manifest.get("version") != FORMAT_VERSION:
        raise UserError(
            f"{archive} is a version {manifest.get('version')} backup; this Dashtam reads "
            f"version {FORMAT_VERSION}."
        )
    if _sha256(scratch / DUMP) != manifest.get("dump_sha256"):
        raise UserError(f"{archive} is damaged: its dump does not match the manifest's checksum.")
    return manifest


def _check_keys(manifest: dict[str, Any], settings: Settings) -> None:
    """Every key the tokens need must be configured here, and be the same key."""
    configured = parse_keys(settings.TOKEN_ENCRYPTION_KEYS)
    missing, different = [], []
    for key_id, info in sorted(manifest["token_keys"].items()):
        if key_id not in configured:
            missing.append(key_id)
        elif key_fingerprint(configured[key_id]) != info["fingerprint"]:
            different.append(key_id)
    if not (missing or different):
        return
    problems = []
    if missing:
        problems.append(f"key id(s) {', '.join(missing)} are not in TOKEN_ENCRYPTION_KEYS")
    if different:
        problems.append(
            f"TOKEN_ENCRYPTION_KEYS holds another key under id(s) {', '.join(different)}"
        )
    carried = "keys" in manifest
    raise UserError(
        f"The backup's provider tokens could not be decrypted here: {'; '.join(problems)}. "
        "Nothing was restored.",
        hint="Add the keys the backup was made with to TOKEN_ENCRYPTION_KEYS"
        + (
            " (this backup carries them: `keys` in its manifest.json)."
            if carried
            else " (from the env file it was made with; `--include-keys` puts them in the file)."
        ),
    )


async def _check_empty(settings: Settings) -> None:
    connection = await _owner_connection(settings)
    try:
        relations = int(
            await connection.fetchval(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
            )
        )
        rows = sum((await _table_counts(connection)).values()) if relations else 0
    finally:
        await connection.close()
    if relations:
        raise UserError(
            f"Database {settings.database_name!r} is not empty ({relations} tables and "
            f"sequences, {rows} rows): a restore only goes into an empty database. Nothing was "
            "restored.",
            hint="For dev: `make clean` deletes its data, then `make restore FILE=…` restores "
            "into the new, empty database (it starts the services itself, without migrating).",
        )


async def _verify_counts(settings: Settings, manifest: dict[str, Any]) -> None:
    connection = await _owner_connection(settings)
    try:
        counts = await _table_counts(connection)
    finally:
        await connection.close()
    wrong = {
        table: {"backup": expected, "restored": counts.get(table)}
        for table, expected in manifest["tables"].items()
        if counts.get(table) != expected
    }
    if wrong:
        raise UserError(f"Restored, but row counts differ from the manifest: {wrong}.")


async def _verify_tokens(settings: Settings) -> int:
    """Every stored token decrypts, read as the app reads it; returns how many rows."""
    cipher = TokenCipher.from_setting(settings.TOKEN_ENCRYPTION_KEYS)
    engine = create_engine(settings, pool_size=1)
    checked = 0
    try:
        async with create_session_factory(engine)() as session:
            for token in await session.scalars(select(ProviderToken)):
                for field in TOKEN_FIELDS:
                    reveal(cipher, token, field)
                checked += 1
    except TokenUnreadable:
        raise UserError("Restored, but a provider token does not decrypt.") from None
    finally:
        await engine.dispose()
    return checked


async def restore(settings: Settings, archive: Path) -> tuple[Summary, int]:
    """Restore into the settings' (empty) database; returns the summary and tokens checked."""
    with tempfile.TemporaryDirectory(prefix="dashtam-restore-") as folder:
        scratch = Path(folder)
        manifest = _read_manifest(archive, scratch)
        _check_keys(manifest, settings)
        await _check_empty(settings)
        command = [find_postgres()("pg_restore"), *_tool_target(settings)]
        command += ["--single-transaction", "--exit-on-error", "--no-owner", "--no-privileges"]
        command += ["-d", settings.database_name, str(scratch / DUMP)]
        await _run(command, settings, "pg_restore (nothing was restored)")
    await _verify_counts(settings, manifest)
    await init_db(settings)  # an older backup is migrated forward; the runtime role gets its grants
    tokens = await _verify_tokens(settings)
    summary = Summary(
        archive, manifest["tables"], sorted(manifest["token_keys"]), str(manifest["migration"])
    )
    return summary, tokens
