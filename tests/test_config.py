"""Test settings: the test env file, with TESTING and DISABLE_EXTERNAL_CALLS forced on."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from dashtam.core.config import ENV_DIR, Settings

TEST_ENV_FILE = ENV_DIR / ".env.test"


class TestSettings(Settings):
    __test__ = False  # not a test class, despite the name

    model_config = SettingsConfigDict(
        env_file=TEST_ENV_FILE, env_file_encoding="utf-8", extra="ignore", case_sensitive=True
    )

    TESTING: bool = True
    DISABLE_EXTERNAL_CALLS: bool = True


def get_test_settings(**overrides: object) -> TestSettings:
    return TestSettings(**overrides)  # type: ignore[arg-type]
