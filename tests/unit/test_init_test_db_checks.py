"""The settings-level refusals of the test-database initialiser (no I/O)."""

from __future__ import annotations

import secrets

import pytest

from dashtam.core.config import Environment, Settings
from dashtam.core.crypto import generate_key
from dashtam.core.init_test_db import UnsafeDatabaseError, check_settings_are_for_testing


def settings(**values: object) -> Settings:
    base: dict[str, object] = {
        "ENVIRONMENT": Environment.TESTING,
        "TESTING": True,
        "DATABASE_URL": "postgresql+asyncpg://dashtam_test_user:pw@127.0.0.1:5433/dashtam_test",
    }
    base.update(values)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg, arg-type]


def test_accepts_a_test_configuration() -> None:
    check_settings_are_for_testing(settings())


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"ENVIRONMENT": Environment.DEVELOPMENT}, "ENVIRONMENT"),
        ({"ENVIRONMENT": Environment.PRODUCTION, "SECRET_KEY": "s" * 40}, "ENVIRONMENT"),
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
            "SECRET_KEY": secrets.token_urlsafe(32),
            "JWT_SECRET_KEY": secrets.token_urlsafe(32),
            "TOKEN_ENCRYPTION_KEYS": f"k1:{generate_key()}",
            "CALLBACK_SHARED_SECRET": secrets.token_urlsafe(32),
        }
    with pytest.raises(UnsafeDatabaseError, match=reason):
        check_settings_are_for_testing(settings(**values))
