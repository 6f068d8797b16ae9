"""Settings precedence, env-file errors, and the production secret guard."""

from __future__ import annotations

import base64
from pathlib import Path
from secrets import token_urlsafe

import pytest

from dashtam.core.config import Environment, Settings, load_settings
from dashtam.core.crypto import generate_key
from dashtam.core.errors import ConfigurationError, UserError


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


def production(**secrets: str) -> Settings:
    """Production settings with strong secrets, except those given."""
    strong = {
        "JWT_SECRET_KEY": token_urlsafe(32),
        "TOKEN_ENCRYPTION_KEYS": f"k1:{generate_key()}",
        "CALLBACK_SHARED_SECRET": token_urlsafe(32),
        "REDIS_PASSWORD": token_urlsafe(32),
        "METRICS_TOKEN": token_urlsafe(32),
        "SANDBOX_ENABLED": "true",
    }
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        ENVIRONMENT=Environment.PRODUCTION,
        **{**strong, **secrets},
    )


@pytest.mark.parametrize("secret", ["", "change_me", "CHANGE_ME-please"])
def test_production_refuses_missing_or_placeholder_secrets(secret: str) -> None:
    with pytest.raises(ConfigurationError, match="JWT_SECRET_KEY"):
        production(JWT_SECRET_KEY=secret)


def test_production_starts_with_generated_secrets() -> None:
    assert production().ENVIRONMENT is Environment.PRODUCTION


@pytest.mark.parametrize("field", ["JWT_SECRET_KEY", "CALLBACK_SHARED_SECRET", "METRICS_TOKEN"])
@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("hunter2", "distinct characters"),  # the review's example
        ("a" * 64, "distinct characters"),
        ("0123456789abcdef" * 3, "worth about 24 random bytes"),  # 48 hex digits = 24 bytes
        ("Tr0ub4dor&3-correct-horse", "worth about"),
    ],
)
def test_production_refuses_secrets_weaker_than_32_random_bytes(
    field: str, secret: str, reason: str
) -> None:
    with pytest.raises(ConfigurationError, match=field) as raised:
        production(**{field: secret})
    assert reason in raised.value.message


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("k1:" + base64.urlsafe_b64encode(bytes(32)).decode(), "not random"),
        ("k1:" + base64.urlsafe_b64encode(bytes(range(16))).decode(), "not base64 of 32 bytes"),
        ("k1:not-a-key", "not base64 of 32 bytes"),
    ],
    ids=["zeros", "16 bytes", "not base64"],
)
def test_production_refuses_invalid_or_weak_aes_keys(keys: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match="TOKEN_ENCRYPTION_KEYS") as raised:
        production(TOKEN_ENCRYPTION_KEYS=keys)
    assert message in raised.value.message


@pytest.mark.parametrize(("algorithm", "length"), [("HS256", 31), ("HS384", 47), ("HS512", 63)])
def test_any_environment_refuses_a_jwt_key_below_pyjwts_minimum(
    algorithm: str, length: int
) -> None:
    """RFC 7518 §3.2 as PyJWT checks it: the key is at least as long as the hash's output."""
    with pytest.raises(ConfigurationError, match="JWT_SECRET_KEY") as raised:
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            JWT_ALGORITHM=algorithm,
            JWT_SECRET_KEY=token_urlsafe(64)[:length],
        )
    assert "below the minimum recommended length" in raised.value.message
    accepted = Settings(
        _env_file=None,  # type: ignore[call-arg]
        JWT_ALGORITHM=algorithm,
        JWT_SECRET_KEY=token_urlsafe(64)[: length + 1],
    )
    assert algorithm == accepted.JWT_ALGORITHM


def test_development_accepts_empty_secrets() -> None:
    settings = Settings(_env_file=None, ENVIRONMENT=Environment.DEVELOPMENT)  # type: ignore[call-arg]
    assert settings.JWT_SECRET_KEY == ""


def test_invalid_value_names_the_setting_and_the_file(tmp_path: Path) -> None:
    env_file = write(tmp_path, "APP_PORT=eighty\n")
    with pytest.raises(ConfigurationError) as raised:
        load_settings(env_file)
    assert "APP_PORT" in raised.value.message
    assert str(env_file) in raised.value.hint


def test_trusted_proxies_are_addresses_or_networks_and_none_by_default() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        TRUSTED_PROXIES=" 10.0.0.0/8, 192.0.2.10,::1 ",
    )
    assert settings.TRUSTED_PROXIES == "10.0.0.0/8,192.0.2.10,::1"
    assert Settings(_env_file=None).TRUSTED_PROXIES == ""  # type: ignore[call-arg]


@pytest.mark.parametrize("value", ["127.0.0.l", "proxy.internal", "10.0.0.1,*", "*"])
def test_a_mistyped_or_wildcard_trusted_proxy_is_refused_by_name(
    tmp_path: Path, value: str
) -> None:
    """A typo would silently trust nobody; `*` would let every client pick its address."""
    with pytest.raises(ConfigurationError, match="TRUSTED_PROXIES") as raised:
        load_settings(write(tmp_path, f"TRUSTED_PROXIES={value}\n"))
    if "*" in value:
        assert "every client choose its own address" in raised.value.message


def test_redis_url_carries_the_acl_credentials() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        REDIS_PORT=6380,
        REDIS_DB=1,
        REDIS_USERNAME="dashtam_test",
        REDIS_PASSWORD="p@ss/w:rd",
    )
    assert settings.redis_url == "redis://dashtam_test:p%40ss%2Fw%3Ard@127.0.0.1:6380/1"
    assert (settings.redis_username, settings.redis_password) == ("dashtam_test", "p@ss/w:rd")
    assert settings.redis_address == "127.0.0.1:6380/1"


def test_an_external_redis_url_gets_credentials_only_when_it_has_none() -> None:
    bare = Settings(
        _env_file=None,  # type: ignore[call-arg]
        REDIS_URL="redis://cache.internal:6379/2",
        REDIS_PASSWORD="secret",
    )
    assert bare.redis_url == "redis://dashtam:secret@cache.internal:6379/2"
    own = Settings(
        _env_file=None,  # type: ignore[call-arg]
        REDIS_URL="rediss://app:theirs@cache.internal:6380/2",
        REDIS_PASSWORD="secret",
    )
    assert own.redis_url == "rediss://app:theirs@cache.internal:6380/2"


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("", "missing or a placeholder"),
        ("change_me", "missing or a placeholder"),
        ("a" * 40, "weak"),
    ],
)
def test_production_refuses_redis_without_a_strong_password(password: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=f"REDIS_PASSWORD is .*{reason}"):
        production(REDIS_PASSWORD=password)


# ---- production fails closed -------------------------------------------------------------------
@pytest.mark.parametrize("token", ["", "change_me"])
def test_production_metrics_need_a_token(token: str) -> None:
    with pytest.raises(ConfigurationError, match="METRICS_TOKEN is missing or a placeholder"):
        production(METRICS_TOKEN=token)
    assert production(METRICS_TOKEN=token, METRICS_ENABLED="false").METRICS_ENABLED is False


def test_production_never_uses_the_sandbox_silently() -> None:
    with pytest.raises(ConfigurationError, match="SANDBOX_ENABLED is not set"):
        production(SANDBOX_ENABLED="")
    with pytest.raises(ConfigurationError, match="SCHWAB_CLIENT_ID or SCHWAB_CLIENT_SECRET"):
        production(SANDBOX_ENABLED="false")
    schwab = production(SANDBOX_ENABLED="false", SCHWAB_CLIENT_ID="id", SCHWAB_CLIENT_SECRET="s")
    assert schwab.uses_sandbox is False
    assert production(SANDBOX_ENABLED="true").uses_sandbox is True


def test_the_sandbox_outside_production_follows_the_credentials_unless_told() -> None:
    def dev(**values: str) -> Settings:
        return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]

    assert dev().uses_sandbox is True
    assert dev(SCHWAB_CLIENT_ID="id", SCHWAB_CLIENT_SECRET="s").uses_sandbox is False
    told = dev(SCHWAB_CLIENT_ID="id", SCHWAB_CLIENT_SECRET="s", SANDBOX_ENABLED="true")
    assert told.uses_sandbox is True


def test_api_docs_are_off_in_production_unless_switched_on() -> None:
    assert production().docs_enabled is False
    assert production(API_DOCS_ENABLED="true").docs_enabled is True
    assert Settings(_env_file=None).docs_enabled is True  # type: ignore[call-arg]


def test_the_public_url_is_caddys() -> None:
    assert production().public_url == ""
    assert production(PUBLIC_DOMAIN="dashtam.example").public_url == "https://dashtam.example"
    local = production(PUBLIC_DOMAIN="localhost", PROXY_HTTPS_PORT="8443")
    assert local.public_url == "https://localhost:8443"


def test_secret_key_is_gone_because_nothing_used_it() -> None:
    assert "SECRET_KEY" not in Settings.model_fields
    for example in Path(__file__).resolve().parents[2].glob("env/.env.*.example"):
        assert "\nSECRET_KEY=" not in "\n" + example.read_text(), example.name
