"""Settings precedence, env-file errors, and the production secret guard."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashtam.core.config import ConfigurationError, Environment, Settings, load_settings
from dashtam.core.errors import UserError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".env.sample"
    path.write_text(text)
    return path


def test_process_environment_beats_env_file_beats_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = write(tmp_path, "APP_PORT=9100\nCALLBACK_PORT=9200\n")
    monkeypatch.setenv("APP_PORT", "9300")
    settings = load_settings(env_file)
    assert settings.APP_PORT == 9300  # process environment
    assert settings.CALLBACK_PORT == 9200  # env file
    assert settings.SANDBOX_PORT == 8282  # class default


def test_malformed_env_file_names_the_line(tmp_path: Path) -> None:
    env_file = write(tmp_path, "# comment\nAPP_PORT=9100\nthis is not an assignment\n")
    with pytest.raises(UserError, match=r"\.env\.sample:3: not a KEY=value line"):
        load_settings(env_file)


def test_database_url_is_built_from_parts_and_name_is_parsed() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        POSTGRES_USER="dashtam_test_user",
        POSTGRES_PASSWORD="p@ss/word",
        POSTGRES_PORT=5433,
        POSTGRES_DB="dashtam_test",
    )
    assert settings.database_name == "dashtam_test"
    assert settings.database_url.password == "p@ss/word"
    assert settings.database_url.port == 5433


def test_explicit_database_url_wins_over_parts() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        DATABASE_URL="postgresql+asyncpg://u:p@db.example:6543/elsewhere",
        POSTGRES_DB="dashtam",
    )
    assert settings.database_name == "elsewhere"
    assert settings.database_url.host == "db.example"


@pytest.mark.parametrize("secret", ["", "change_me", "CHANGE_ME-please"])
def test_production_refuses_missing_or_placeholder_secrets(secret: str) -> None:
    good = "x" * 40
    with pytest.raises(ConfigurationError, match="JWT_SECRET_KEY"):
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            ENVIRONMENT=Environment.PRODUCTION,
            SECRET_KEY=good,
            JWT_SECRET_KEY=secret,
            TOKEN_ENCRYPTION_KEYS=good,
            CALLBACK_SHARED_SECRET=good,
        )


def test_development_accepts_empty_secrets() -> None:
    settings = Settings(_env_file=None, ENVIRONMENT=Environment.DEVELOPMENT)  # type: ignore[call-arg]
    assert settings.JWT_SECRET_KEY == ""


def test_invalid_value_names_the_setting_and_the_file(tmp_path: Path) -> None:
    env_file = write(tmp_path, "APP_PORT=eighty\n")
    with pytest.raises(ConfigurationError) as raised:
        load_settings(env_file)
    assert "APP_PORT" in raised.value.message
    assert str(env_file) in raised.value.hint


def test_trusted_proxies_are_addresses_or_networks() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        FORWARDED_ALLOW_IPS=" 10.0.0.0/8, 192.0.2.10,::1 ",
    )
    assert settings.FORWARDED_ALLOW_IPS == "10.0.0.0/8,192.0.2.10,::1"
    assert Settings(_env_file=None).FORWARDED_ALLOW_IPS == "127.0.0.1"  # type: ignore[call-arg]


@pytest.mark.parametrize("value", ["127.0.0.l", "proxy.internal", "", " , "])
def test_a_mistyped_trusted_proxy_is_refused_by_name(tmp_path: Path, value: str) -> None:
    """uvicorn would take a typo for a name and silently trust nobody."""
    with pytest.raises(ConfigurationError, match="FORWARDED_ALLOW_IPS"):
        load_settings(write(tmp_path, f"FORWARDED_ALLOW_IPS={value}\n"))
