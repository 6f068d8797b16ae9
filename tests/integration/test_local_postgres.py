"""The local-mode PostgreSQL manager on a throwaway test cluster of its own."""

from __future__ import annotations

from pathlib import Path

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
