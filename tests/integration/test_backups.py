"""Backups round-trip: every row comes back and every token still decrypts; a restore refuses a
database that is not empty, keys that cannot read the tokens and a damaged file, changing
nothing. Source and target are per-worker databases of their own (a backup reads committed
data; a restore needs an empty database)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
import tarfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from tests.support.databases import create_empty_database, drop_worker_database
from tests.support.databases import create_worker_database as clone_template
from tests.support.sandbox import create_connection, store_tokens
from tests.test_config import TestSettings

from dashtam.backups import backup, restore
from dashtam.core.crypto import TokenCipher, generate_key, parse_keys, token_binding
from dashtam.core.errors import UserError
from dashtam.providers.tokens import ACCESS_TOKEN

TOKENS = 3  # connections with a stored login in the source


def on(url: URL) -> TestSettings:
    """Test settings on another database (built afresh: the URLs are computed once)."""
    return TestSettings(DATABASE_URL=url.render_as_string(hide_password=False))


async def table_fingerprints(url: URL) -> dict[str, tuple[int, str]]:
    """Every table's row count and an md5 over its rows (as text, sorted): content, not count."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            names = await connection.scalars(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
            )
            result = {}
            for name in list(names):
                row = (
                    await connection.execute(
                        text(
                            f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' "  # noqa: S608
                            f"ORDER BY t::text), '')) FROM {name} t"
                        )
                    )
                ).one()
                result[name] = (int(row[0]), str(row[1]))
    finally:
        await engine.dispose()
    return result


async def fill(engine: AsyncEngine, settings: TestSettings) -> dict[uuid.UUID, tuple[str, str]]:
    """Users, providers, connections, encrypted tokens and both audit trails, committed."""
    plaintexts = {}
    for n in range(TOKENS):
        connection = await create_connection(engine)
        access, refresh = f"access-{n}-{uuid.uuid4().hex}", f"refresh-{n}-{uuid.uuid4().hex}"
        await store_tokens(engine, settings, connection.id, access, refresh)
        plaintexts[connection.id] = (access, refresh)
    async with engine.begin() as conn:
        for table, action in (("auth_audit_logs", "login"), ("provider_audit_logs", "connect")):
            await conn.execute(
                text(
                    f"INSERT INTO {table} (id, action, outcome, details) "  # noqa: S608
                    "SELECT gen_random_uuid(), :action, 'success', '{\"n\": 1}' "
                    "FROM generate_series(1, 5)"
                ),
                {"action": action},
            )
    return plaintexts


@pytest.fixture
async def source(
    base_settings: TestSettings, run_id: str, worker_id: str
) -> AsyncIterator[tuple[TestSettings, dict[uuid.UUID, tuple[str, str]]]]:
    name = f"{base_settings.database_name}_{run_id}_{worker_id}bsrc"
    url = await clone_template(base_settings, name)
    settings = on(url)
    engine = create_async_engine(url)
    try:
        yield settings, await fill(engine, settings)
    finally:
        await engine.dispose()
        await drop_worker_database(base_settings, name)


@pytest.fixture
async def target(
    base_settings: TestSettings, run_id: str, worker_id: str
) -> AsyncIterator[TestSettings]:
    name = f"{base_settings.database_name}_{run_id}_{worker_id}bdst"
    url = await create_empty_database(base_settings, name)
    try:
        yield on(url)
    finally:
        await drop_worker_database(base_settings, name)


async def relations(settings: TestSettings) -> int:
    engine = create_async_engine(settings.owner_database_url)
    try:
        async with engine.connect() as connection:
            count = await connection.scalar(
                text("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace")
            )
    finally:
        await engine.dispose()
    return int(count or 0)


async def test_every_row_comes_back_and_every_token_decrypts(
    source: tuple[TestSettings, dict[uuid.UUID, tuple[str, str]]],
    target: TestSettings,
    tmp_path: Path,
) -> None:
    settings, plaintexts = source
    made = await backup(settings, "test", tmp_path)
    assert made.path.parent == tmp_path
    assert oct(made.path.stat().st_mode & 0o777) == "0o600"
    assert made.tables["provider_tokens"] == TOKENS
    assert made.key_ids == ["k1"]

    restored, tokens = await restore(target, made.path)

    assert tokens == TOKENS
    assert restored.rows == made.rows > 0
    assert await table_fingerprints(target.database_url) == await table_fingerprints(
        settings.database_url
    )
    cipher = TokenCipher.from_setting(target.TOKEN_ENCRYPTION_KEYS)
    engine = create_async_engine(target.database_url)  # the runtime role, as the app
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT connection_id, access_token_encrypted FROM provider_tokens")
            )
            decrypted = {
                connection_id: cipher.decrypt(
                    stored, binding=token_binding(connection_id, ACCESS_TOKEN)
                )
                for connection_id, stored in rows
            }
            assert decrypted == {cid: access for cid, (access, _) in plaintexts.items()}
            with pytest.raises(DBAPIError, match="permission denied for table auth_audit_logs"):
                await connection.execute(text("DELETE FROM auth_audit_logs"))
    finally:
        await engine.dispose()


async def test_a_backup_holds_no_key_unless_asked(
    source: tuple[TestSettings, dict[uuid.UUID, tuple[str, str]]], tmp_path: Path
) -> None:
    settings, _ = source
    key = parse_keys(settings.TOKEN_ENCRYPTION_KEYS)["k1"]
    encodings = [key, base64.urlsafe_b64encode(key), base64.b64encode(key), key.hex().encode()]
    plain = await backup(settings, "test", tmp_path / "plain.tar")
    data = plain.path.read_bytes()
    assert not [encoded for encoded in encodings if encoded in data]
    with tarfile.open(plain.path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert "keys" not in manifest
    assert set(manifest["token_keys"]) == {"k1"}

    keyed = await backup(settings, "test", tmp_path / "keyed.tar", include_keys=True)
    with tarfile.open(keyed.path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert base64.urlsafe_b64decode(manifest["keys"]["k1"]) == key


async def test_a_database_that_is_not_empty_is_refused(
    source: tuple[TestSettings, dict[uuid.UUID, tuple[str, str]]], tmp_path: Path
) -> None:
    settings, _ = source
    made = await backup(settings, "test", tmp_path)
    before = await table_fingerprints(settings.database_url)
    with pytest.raises(UserError, match="is not empty"):
        await restore(settings, made.path)
    assert await table_fingerprints(settings.database_url) == before


async def test_keys_that_cannot_read_the_tokens_are_refused_before_anything_is_written(
    source: tuple[TestSettings, dict[uuid.UUID, tuple[str, str]]],
    target: TestSettings,
    tmp_path: Path,
) -> None:
    settings, _ = source
    made = await backup(settings, "test", tmp_path)
    other = target.model_copy(update={"TOKEN_ENCRYPTION_KEYS": f"k1:{generate_key()}"})
    with pytest.raises(UserError, match="another key under id"):
        await restore(other, made.path)
    absent = target.model_copy(update={"TOKEN_ENCRYPTION_KEYS": f"k9:{generate_key()}"})
    with pytest.raises(UserError, match="k1 are not in TOKEN_ENCRYPTION_KEYS"):
        await restore(absent, made.path)
    assert await relations(target) == 0


async def test_a_damaged_or_foreign_file_is_refused(
    source: tuple[TestSettings, dict[uuid.UUID, tuple[str, str]]],
    target: TestSettings,
    tmp_path: Path,
) -> None:
    settings, _ = source
    made = await backup(settings, "test", tmp_path / "good.tar")
    with tarfile.open(made.path) as tar:
        manifest = tar.extractfile("manifest.json").read()  # type: ignore[union-attr]
        dump = bytearray(tar.extractfile("database.dump").read())  # type: ignore[union-attr]
    dump[len(dump) // 2] ^= 0xFF
    damaged = tmp_path / "damaged.tar"
    with tarfile.open(damaged, "w") as tar:
        for name, content in (("manifest.json", manifest), ("database.dump", bytes(dump))):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    with pytest.raises(UserError, match="is damaged"):
        await restore(target, damaged)
    foreign = tmp_path / "foreign.tar"
    foreign.write_bytes(b"not a tar file at all" * 100)
    with pytest.raises(UserError, match="is not a Dashtam backup"):
        await restore(target, foreign)
    assert await relations(target) == 0


def test_the_commands_back_up_and_refuse_to_restore_over_data(
    source: tuple[TestSettings, dict[uuid.UUID, tuple[str, str]]], tmp_path: Path
) -> None:
    settings, _ = source
    env = {**os.environ, "DATABASE_URL": settings.database_url.render_as_string(False)}
    dashtam = [sys.executable, "-m", "dashtam.cli"]
    out = tmp_path / "cli.tar"
    made = subprocess.run(
        [*dashtam, "backup", "--env", "test", "--output", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    assert str(out) in made.stderr
    assert "key ids: k1" in made.stderr
    refused = subprocess.run(
        [*dashtam, "restore", str(out), "--env", "test"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2
    assert "is not empty" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert asyncio.run(table_fingerprints(settings.database_url))["provider_tokens"][0] == TOKENS
