"""The local-mode PostgreSQL manager on a throwaway test cluster of its own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from dashtam.core.config import Settings
from dashtam.devenv.isolated import free_port
from dashtam.devenv.postgres import PostgresService
from dashtam.devenv.profiles import Profile


def service(tmp_path: Path, admin_password: str, port: int) -> PostgresService:
    profile = Profile("test", ephemeral=True, env_dir=tmp_path, state_root=tmp_path / "state")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        POSTGRES_PORT=port,
        POSTGRES_DB="dashtam_test",
        POSTGRES_USER="dashtam_test_user",
        POSTGRES_PASSWORD="user-secret",
        POSTGRES_OWNER_USER="dashtam_test_owner",
        POSTGRES_OWNER_PASSWORD="owner-secret",
        POSTGRES_ADMIN_PASSWORD=admin_password,
    )
    return PostgresService(profile, settings)


@pytest.mark.xdist_group("local-postgres")
def test_a_test_cluster_left_with_other_secrets_is_remade(tmp_path: Path) -> None:
    """A re-cloned checkout at the same path finds the old cluster on tmpfs: it must start."""
    port = free_port()
    first = service(tmp_path, "first-admin-secret", port)
    try:
        assert first.start() is True
        first.stop()
        second = service(tmp_path, "second-admin-secret", port)
        assert second.start() is True  # bootstrap logged in with the new password
        assert second.is_ready()
        assert second.stop() is True
    finally:
        first.destroy()


@pytest.mark.xdist_group("local-postgres")
def test_a_database_from_before_the_role_split_is_handed_to_the_owner(tmp_path: Path) -> None:
    """Dev data made when the app's role owned everything: bootstrap gives it all to the owner
    role, and the app's role keeps only CONNECT (init_db then grants it DML)."""
    pg = service(tmp_path, "admin-secret", free_port())
    try:
        assert pg.start() is True

        async def scenario() -> tuple[str, str, bool]:
            admin = {"host": "127.0.0.1", "port": pg.port, "user": "postgres"}
            admin["password"] = "admin-secret"
            old = await asyncpg.connect(**admin, database="postgres")
            await old.execute('ALTER DATABASE dashtam_test OWNER TO "dashtam_test_user"')
            await old.close()
            app = await asyncpg.connect(
                host="127.0.0.1",
                port=pg.port,
                user="dashtam_test_user",
                password="user-secret",
                database="dashtam_test",
            )
            await app.execute("CREATE TABLE legacy (id int)")
            await app.close()
            await pg.bootstrap()
            check = await asyncpg.connect(**admin, database="dashtam_test")
            try:
                table_owner = await check.fetchval(
                    "SELECT tableowner FROM pg_tables WHERE tablename = 'legacy'"
                )
                database_owner = await check.fetchval(
                    "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'dashtam_test'"
                )
                can_connect = await check.fetchval(
                    "SELECT has_database_privilege('dashtam_test_user', 'dashtam_test', 'CONNECT')"
                )
            finally:
                await check.close()
            return str(table_owner), str(database_owner), bool(can_connect)

        assert asyncio.run(scenario()) == ("dashtam_test_owner", "dashtam_test_owner", True)
    finally:
        pg.destroy()
