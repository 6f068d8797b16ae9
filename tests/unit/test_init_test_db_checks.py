"""The settings-level refusals of the test-database initialiser, and the hash that decides
whether the test template is rebuilt (no I/O)."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest

from dashtam.core.config import PROJECT_ROOT, Environment, Settings
from dashtam.core.crypto import generate_key
from dashtam.core.init_test_db import (
    SCHEMA_SOURCES,
    UnsafeDatabaseError,
    check_settings_are_for_testing,
    schema_source_hash,
)


def settings(**values: object) -> Settings:
    base: dict[str, object] = {
        "ENVIRONMENT": Environment.TESTING,
        "TESTING": True,
        "DATABASE_URL": "postgresql+asyncpg://dashtam_test_user:pw@127.0.0.1:5433/dashtam_test",
        "POSTGRES_OWNER_USER": "dashtam_test_owner",
    }
    base.update(values)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg, arg-type]


def test_accepts_a_test_configuration() -> None:
    check_settings_are_for_testing(settings())


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"ENVIRONMENT": Environment.DEVELOPMENT}, "ENVIRONMENT"),
        ({"ENVIRONMENT": Environment.PRODUCTION}, "ENVIRONMENT"),
        ({"TESTING": False}, "TESTING"),
        (
            {"DATABASE_URL": "postgresql+asyncpg://u:pw@127.0.0.1:5432/dashtam"},
            "database name",
        ),
        (
            {"DATABASE_URL": "postgresql+asyncpg://u:testpassword@127.0.0.1:5432/dashtam"},
            "database name",
        ),
        (
            {"DATABASE_URL": "postgresql+asyncpg://u:pw@test-host.local:5432/dashtam"},
            "database name",
        ),
        (
            {"DATABASE_URL": "postgresql+asyncpg://test_user:pw@127.0.0.1:5432/dashtam"},
            "database name",
        ),
    ],
)
def test_refuses(values: dict[str, object], reason: str) -> None:
    if values.get("ENVIRONMENT") is Environment.PRODUCTION:
        values = {
            **values,
            "JWT_SECRET_KEY": secrets.token_urlsafe(32),
            "METRICS_TOKEN": secrets.token_urlsafe(32),
            "SANDBOX_ENABLED": True,
            "TOKEN_ENCRYPTION_KEYS": f"k1:{generate_key()}",
            "CALLBACK_SHARED_SECRET": secrets.token_urlsafe(32),
            "REDIS_PASSWORD": secrets.token_urlsafe(32),
        }
    with pytest.raises(UnsafeDatabaseError, match=reason):
        check_settings_are_for_testing(settings(**values))


@pytest.fixture
def schema_copy(tmp_path: Path) -> Path:
    """The files the template's hash covers, copied to a project root of their own."""
    for source in SCHEMA_SOURCES:
        origin = PROJECT_ROOT / source
        if origin.is_dir():
            shutil.copytree(origin, tmp_path / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (tmp_path / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(origin, tmp_path / source)
    return tmp_path


def test_the_template_hash_covers_migrations_and_models(schema_copy: Path) -> None:
    original = schema_source_hash(schema_copy)
    assert original == schema_source_hash(PROJECT_ROOT)
    (schema_copy / "README.md").write_text("not part of the schema")
    assert schema_source_hash(schema_copy) == original
    for changed in (
        "alembic/versions/20261122_0001_seed_tables_users_and_providers.py",
        "src/dashtam/models/user.py",
        "alembic/env.py",
    ):
        path = schema_copy / changed
        kept = path.read_text()
        path.write_text(kept + "\n# changed\n")
        assert schema_source_hash(schema_copy) != original, changed
        path.write_text(kept)
    new_migration = schema_copy / "alembic" / "versions" / "20261201_0099_new.py"
    new_migration.write_text("revision = '0099'\n")
    assert schema_source_hash(schema_copy) != original


def test_refuses_roles_whose_names_lack_test() -> None:
    with pytest.raises(UnsafeDatabaseError, match="POSTGRES_OWNER_USER is 'dashtam_owner'"):
        check_settings_are_for_testing(settings(POSTGRES_OWNER_USER="dashtam_owner"))
    app_role = "postgresql+asyncpg://dashtam_user:pw@127.0.0.1:5433/dashtam_test"
    with pytest.raises(UnsafeDatabaseError, match=r"the app's role .* is 'dashtam_user'"):
        check_settings_are_for_testing(settings(DATABASE_URL=app_role))
