"""Settings: process environment > env file > class defaults (pydantic-settings)."""

from __future__ import annotations

import ipaddress
import os
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Self
from urllib.parse import quote, unquote, urlsplit

from pydantic import (
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from dashtam.core.crypto import parse_keys
from dashtam.core.envfile import check_env_file
from dashtam.core.errors import ConfigurationError
from dashtam.core.secret_strength import (
    GENERATE_HINT,
    jwt_key_problem,
    weak_key_reason,
    weak_secret_reason,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

PROJECT_ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_ENV_DIR = PROJECT_ROOT / "env"
# Where generated env files and runtime state live; movable so a second, isolated copy of
# both environments can run beside the first (the side-by-side tests do exactly that).
ENV_DIR = Path(os.environ.get("DASHTAM_ENV_DIR", EXAMPLE_ENV_DIR))
STATE_ROOT = Path(os.environ.get("DASHTAM_STATE_DIR", PROJECT_ROOT / ".state"))
ENV_FILE_VARIABLE = "DASHTAM_ENV_FILE"
DEFAULT_ENV_FILE = ENV_DIR / ".env.dev"
CERT_DIR = STATE_ROOT / "certs"

# "<requests>/<seconds>": a burst of that many requests, refilled evenly over that many seconds
# (GCRA), per user on authenticated routes and per client IP on anonymous ones.
RateLimit = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]*/[1-9][0-9]*$")]
# An ACL user name local mode writes into the Redis configuration as it is.
RedisUser = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+$")]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
PLACEHOLDER_MARKERS = ("change_me", "changeme", "placeholder", "replace-me")
SECRET_FIELDS = (
    "JWT_SECRET_KEY",
    "TOKEN_ENCRYPTION_KEYS",
    "CALLBACK_SHARED_SECRET",
)
# Shared secrets whose text is the key itself; TOKEN_ENCRYPTION_KEYS holds encoded keys.
TEXT_SECRET_FIELDS = ("JWT_SECRET_KEY", "CALLBACK_SHARED_SECRET")


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TESTING = "testing"
    CI = "ci"
    PRODUCTION = "production"


def env_file_path() -> Path:
    """The env file this process reads: `DASHTAM_ENV_FILE`, else the dev one."""
    return Path(os.environ.get(ENV_FILE_VARIABLE, DEFAULT_ENV_FILE))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=DEFAULT_ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=True,
    )

    ENVIRONMENT: Environment = Environment.DEVELOPMENT
    DEBUG: bool = False
    TESTING: bool = False
    DISABLE_EXTERNAL_CALLS: bool = False
    LOG_LEVEL: str = "INFO"

    # Local mode builds the URLs from the parts; a given DATABASE_URL / REDIS_URL wins
    # (external mode: Dashtam then starts no servers of its own).
    DATABASE_URL: str = ""
    POSTGRES_HOST: str = "127.0.0.1"
    POSTGRES_PORT: int = 5432
    POSTGRES_DB: str = "dashtam"
    # The app and the worker connect as POSTGRES_USER, a runtime role with DML rights only (and
    # only INSERT and SELECT on the audit tables). Migrations, backups and restores connect as
    # the owner role, which owns the database and every object in it (same server and database).
    POSTGRES_USER: str = "dashtam_user"
    POSTGRES_PASSWORD: str = ""
    POSTGRES_OWNER_USER: str = "dashtam_owner"
    POSTGRES_OWNER_PASSWORD: str = ""
    # The superuser of the cluster local mode starts; the app never uses it.
    POSTGRES_ADMIN_PASSWORD: str = ""
    DB_ECHO: bool = False
    DB_POOL_SIZE: int = 10
    REDIS_URL: str = ""
    REDIS_HOST: str = "127.0.0.1"
    REDIS_PORT: int = 6379
    REDIS_DB: int = 0
    # Redis always requires authentication: an ACL user per environment (local mode creates it
    # from these). A REDIS_URL without credentials gets them added.
    REDIS_USERNAME: RedisUser = "dashtam"
    REDIS_PASSWORD: str = ""
    REDIS_KEY_PREFIX: str = "dashtam:"

    JWT_SECRET_KEY: str = ""
    # HMAC only: the key is a shared secret, and decoding accepts this one algorithm.
    JWT_ALGORITHM: Literal["HS256", "HS384", "HS512"] = "HS256"
    ACCESS_TOKEN_TTL_SECONDS: int = 15 * 60
    REFRESH_TOKEN_TTL_SECONDS: int = 30 * 24 * 3600
    # A session ends this long after its sign-in, however often it is refreshed.
    SESSION_LIFETIME_SECONDS: PositiveInt = 90 * 24 * 3600
    PASSWORD_HASH_TIME_COST: int = 3
    PASSWORD_HASH_MEMORY_KIB: int = 64 * 1024
    PASSWORD_HASH_PARALLELISM: int = 4
    REQUIRE_EMAIL_VERIFICATION: bool = False
    RATE_LIMITS_ENABLED: bool = True
    LOGIN_LOCKOUT_THRESHOLD: int = 10
    LOGIN_LOCKOUT_SECONDS: int = 15 * 60
    RATE_LIMIT_LOGIN: RateLimit = "10/60"
    RATE_LIMIT_REGISTER: RateLimit = "5/3600"
    RATE_LIMIT_PASSWORD_RESET: RateLimit = "5/3600"  # noqa: S105 - a rate, not a secret
    RATE_LIMIT_REFRESH: RateLimit = "30/60"
    RATE_LIMIT_VERIFY_EMAIL_RESEND: RateLimit = "5/3600"
    # Every other route: per user when signed in, per client IP otherwise.
    RATE_LIMIT_AUTHENTICATED: RateLimit = "600/60"
    RATE_LIMIT_ANONYMOUS: RateLimit = "120/60"
    # The OAuth callback (the browser's redirect and the callback server's hand-over).
    RATE_LIMIT_OAUTH_CALLBACK: RateLimit = "20/600"
    # Password checks of a signed-in user: changing it, deleting the account.
    RATE_LIMIT_PASSWORD_CHANGE: RateLimit = "5/900"  # noqa: S105 - a rate, not a secret
    EMAIL_VERIFICATION_TOKEN_TTL_SECONDS: int = 24 * 3600
    PASSWORD_RESET_TOKEN_TTL_SECONDS: int = 15 * 60
    # Spent/expired tokens and ended sessions are deleted this long after they stopped mattering.
    AUTH_RETENTION_DAYS: NonNegativeInt = 30
    SMTP_HOST: str = ""
    SMTP_PORT: int = 587
    SMTP_USERNAME: str = ""
    SMTP_PASSWORD: str = ""
    SMTP_FROM: str = "dashtam@localhost"

    # "<key id>:<base64 32-byte key>" pairs, comma separated; the first encrypts.
    TOKEN_ENCRYPTION_KEYS: str = ""
    CALLBACK_SHARED_SECRET: str = ""

    APP_HOST: str = "127.0.0.1"
    APP_PORT: int = 8000
    # The reverse proxies whose X-Forwarded-For/-Proto the app believes: addresses or networks,
    # comma separated; none by default, and then those headers are ignored. The client is the
    # rightmost forwarded address that is not one of these (see docs/auth.md).
    TRUSTED_PROXIES: str = ""
    APP_TLS: bool = True
    CALLBACK_PORT: int = 8182
    CALLBACK_TLS: bool = True
    SANDBOX_PORT: int = 8282
    TLS_CERT_FILE: str = ""
    TLS_KEY_FILE: str = ""
    STATE_DIR: str = ""

    SCHWAB_CLIENT_ID: str = ""
    SCHWAB_CLIENT_SECRET: str = ""
    SCHWAB_REDIRECT_URI: str = "https://127.0.0.1:8182/callback"
    SCHWAB_API_BASE_URL: str = "https://api.schwabapi.com"
    # Schwab does not document PKCE; turn it on if your app registration supports it.
    SCHWAB_USE_PKCE: bool = False
    OAUTH_STATE_TTL_SECONDS: int = 600
    # A connection whose access token expires within this many seconds is refreshed first.
    PROVIDER_REFRESH_LEEWAY_SECONDS: int = 300
    PROVIDER_HTTP_TIMEOUT_SECONDS: float = 15.0

    # Account sync (see docs/accounts.md). The first sync reaches back SYNC_HISTORY_DAYS; later
    # ones re-read SYNC_OVERLAP_DAYS before the last complete window (and any still pending).
    SYNC_HISTORY_DAYS: int = 730
    SYNC_OVERLAP_DAYS: int = 7
    SYNC_INTERVAL_SECONDS: int = 3600
    SYNC_MAX_RETRIES: int = 5
    SYNC_RETRY_BASE_SECONDS: float = 1.0
    SYNC_RETRY_MAX_SECONDS: float = 60.0
    SYNC_JOB_TIMEOUT_SECONDS: int = 3600
    WORKER_HEALTH_CHECK_SECONDS: int = 10
    WORKER_MAX_JOBS: int = 4
    # How often an idle worker looks for jobs (arq's default); tests that start many workers
    # poll faster.
    WORKER_POLL_DELAY_SECONDS: PositiveFloat = 0.5

    # Events (docs/events.md): kept this long, then deleted by the worker.
    EVENTS_RETENTION_DAYS: PositiveInt = 90

    # Prometheus metrics (docs/monitoring.md): the app's GET /metrics and the worker's own
    # port. With a token both answer only `Authorization: Bearer <METRICS_TOKEN>`.
    METRICS_ENABLED: bool = True
    METRICS_TOKEN: str = ""
    WORKER_METRICS_HOST: str = "127.0.0.1"
    WORKER_METRICS_PORT: NonNegativeInt = 0  # 0: the worker serves no metrics
    PROMETHEUS_PORT: int = 9090  # `make monitor`

    # The production topology (docs/production.md): Caddy serves HTTPS for PUBLIC_DOMAIN with
    # PROXY_TLS `acme` (automatic, a real domain), `files` (TLS_CERT_FILE/TLS_KEY_FILE) or
    # `internal` (Caddy's own CA), in front of the app's APP_WORKERS uvicorn workers.
    PUBLIC_DOMAIN: str = ""
    PROXY_TLS: Literal["acme", "files", "internal"] = "files"
    PROXY_HTTPS_PORT: int = 443
    PROXY_HTTP_PORT: int = 80
    APP_WORKERS: PositiveInt = 1
    # /docs, /redoc and /openapi.json; unset: on everywhere but in production.
    API_DOCS_ENABLED: bool | None = None
    # The built-in Schwab sandbox; unset: used when no Schwab credentials are set. Production
    # requires it to be set, so the sandbox is never used there by accident.
    SANDBOX_ENABLED: bool | None = None

    @field_validator("LOG_LEVEL")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        """Refused here, an unknown level would crash every process as it starts."""
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"use one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("TRUSTED_PROXIES")
    @classmethod
    def _proxy_addresses(cls, value: str) -> str:
        """A typo refused here would otherwise silently trust nobody, and `*` everybody."""
        items = [item.strip() for item in value.split(",") if item.strip()]
        for item in items:
            if item == "*":
                raise ValueError(
                    "* would let every client choose its own address; list the addresses or "
                    "networks your reverse proxies connect from"
                )
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an IP address or a network such as 10.0.0.0/8"
                ) from None
        return ",".join(items)

    @model_validator(mode="after")
    def _refuse_weak_secrets_in_production(self) -> Self:
        if self.ENVIRONMENT is not Environment.PRODUCTION:
            return self
        for name in SECRET_FIELDS:
            value = getattr(self, name)
            if not value or any(marker in value.lower() for marker in PLACEHOLDER_MARKERS):
                raise ConfigurationError(
                    f"{name} is missing or a placeholder; production needs a real secret. "
                    f"Set {name} in the environment ({GENERATE_HINT})."
                )
        for name in TEXT_SECRET_FIELDS:
            reason = weak_secret_reason(getattr(self, name))
            if reason:
                raise ConfigurationError(
                    f"{name} is too weak for production: {reason}. Use at least 32 random "
                    f"bytes ({GENERATE_HINT})."
                )
        for key_id, key in parse_keys(self.TOKEN_ENCRYPTION_KEYS).items():
            reason = weak_key_reason(key)
            if reason:
                raise ConfigurationError(
                    f"TOKEN_ENCRYPTION_KEYS: key {key_id!r} is too weak for production: {reason}. "
                    "Generate one with `dashtam keys generate`."
                )
        password = self.redis_password
        if not password or any(marker in password.lower() for marker in PLACEHOLDER_MARKERS):
            raise ConfigurationError(
                "REDIS_PASSWORD is missing or a placeholder; production Redis requires "
                f"authentication. Set REDIS_PASSWORD or the credentials in REDIS_URL "
                f"({GENERATE_HINT})."
            )
        reason = weak_secret_reason(password)
        if reason:
            raise ConfigurationError(
                f"REDIS_PASSWORD is too weak for production: {reason}. Use at least 32 random "
                f"bytes ({GENERATE_HINT})."
            )
        return self

    @field_validator("SANDBOX_ENABLED", "API_DOCS_ENABLED", mode="before")
    @classmethod
    def _empty_means_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _production_fails_closed(self) -> Self:
        """Nothing in production is decided by a missing setting."""
        if self.ENVIRONMENT is not Environment.PRODUCTION:
            return self
        has_schwab = bool(self.SCHWAB_CLIENT_ID and self.SCHWAB_CLIENT_SECRET)
        if self.SANDBOX_ENABLED is None:
            raise ConfigurationError(
                "SANDBOX_ENABLED is not set; production never falls back to the sandbox "
                "silently. Set SCHWAB_CLIENT_ID and SCHWAB_CLIENT_SECRET with "
                "SANDBOX_ENABLED=false, or SANDBOX_ENABLED=true to run on the sandbox on purpose."
            )
        if not self.SANDBOX_ENABLED and not has_schwab:
            raise ConfigurationError(
                "SANDBOX_ENABLED=false but SCHWAB_CLIENT_ID or SCHWAB_CLIENT_SECRET is empty; "
                "set both (your Schwab app registration)."
            )
        if self.METRICS_ENABLED:
            token = self.METRICS_TOKEN
            reason = (
                "is missing or a placeholder"
                if not token or any(marker in token.lower() for marker in PLACEHOLDER_MARKERS)
                else weak_secret_reason(token)
            )
            if reason:
                raise ConfigurationError(
                    f"METRICS_TOKEN {reason}; production metrics are for the bearer of a "
                    f"token only. Set METRICS_TOKEN ({GENERATE_HINT}), or METRICS_ENABLED=false."
                )
        return self

    @model_validator(mode="after")
    def _refuse_weak_jwt_key(self) -> Self:
        """Everywhere: PyJWT refuses to sign with a key shorter than the hash (RFC 7518). A
        placeholder outside production is one `make setup` has not replaced yet."""
        placeholder = any(marker in self.JWT_SECRET_KEY.lower() for marker in PLACEHOLDER_MARKERS)
        if self.JWT_SECRET_KEY and not placeholder:
            problem = jwt_key_problem(self.JWT_SECRET_KEY, self.JWT_ALGORITHM)
            if problem:
                raise ConfigurationError(
                    f"JWT_SECRET_KEY: {problem} Run `make setup`, or {GENERATE_HINT}."
                )
        return self

    @model_validator(mode="after")
    def _owner_and_runtime_roles_differ(self) -> Self:
        """One role for both would give the app the right to alter and drop the audit trail."""
        if self.runtime_role == self.POSTGRES_OWNER_USER:
            raise ConfigurationError(
                f"POSTGRES_OWNER_USER and the app's role are both {self.runtime_role!r}: "
                "migrations need an owner role of their own.",
                hint="Give POSTGRES_OWNER_USER another name (`make setup` examples: "
                "dashtam_owner / dashtam_test_owner).",
            )
        return self

    @cached_property
    def database_url(self) -> URL:
        from sqlalchemy.engine import URL, make_url  # SQLAlchemy only where a URL is needed

        if self.DATABASE_URL:
            return make_url(self.DATABASE_URL)
        return URL.create(
            "postgresql+asyncpg",
            username=self.POSTGRES_USER,
            password=self.POSTGRES_PASSWORD or None,
            host=self.POSTGRES_HOST,
            port=self.POSTGRES_PORT,
            database=self.POSTGRES_DB,
        )

    @property
    def owner_database_url(self) -> URL:
        """The same server and database as the owner role: for migrations, backups, restores."""
        return self.database_url.set(
            username=self.POSTGRES_OWNER_USER, password=self.POSTGRES_OWNER_PASSWORD or None
        )

    @property
    def runtime_role(self) -> str:
        """The role the app and the worker connect as (read without importing SQLAlchemy)."""
        if self.DATABASE_URL:
            return unquote(urlsplit(self.DATABASE_URL).username or "")
        return self.POSTGRES_USER

    @property
    def redis_url(self) -> str:
        """REDIS_URL, else one built from the parts; REDIS_USERNAME/REDIS_PASSWORD are added
        to a URL that carries no credentials of its own."""
        url = self.REDIS_URL or f"redis://{self.REDIS_HOST}:{self.REDIS_PORT}/{self.REDIS_DB}"
        parts = urlsplit(url)
        if parts.password is not None or not self.REDIS_PASSWORD:
            return url
        userinfo = f"{quote(self.REDIS_USERNAME, safe='')}:{quote(self.REDIS_PASSWORD, safe='')}"
        location = parts.netloc.rpartition("@")[2]
        return parts._replace(netloc=f"{userinfo}@{location}").geturl()

    @property
    def redis_username(self) -> str:
        return unquote(urlsplit(self.redis_url).username or "")

    @property
    def redis_password(self) -> str:
        return unquote(urlsplit(self.redis_url).password or "")

    @property
    def redis_address(self) -> str:
        """host:port/index, for messages (never the credentials)."""
        parts = urlsplit(self.redis_url)
        return f"{parts.hostname}:{parts.port or 6379}/{self.redis_db}"

    @property
    def redis_db(self) -> int:
        """The index the Redis URL selects (`/N` path, default 0)."""
        path = urlsplit(self.redis_url).path.strip("/")
        return int(path) if path.isdigit() else 0

    @property
    def database_name(self) -> str:
        return self.database_url.database or ""

    @property
    def app_base_url(self) -> str:
        scheme = "https" if self.APP_TLS else "http"
        return f"{scheme}://{self.APP_HOST}:{self.APP_PORT}"

    @property
    def callback_base_url(self) -> str:
        scheme = "https" if self.CALLBACK_TLS else "http"
        return f"{scheme}://127.0.0.1:{self.CALLBACK_PORT}"

    @property
    def sandbox_base_url(self) -> str:
        return f"http://127.0.0.1:{self.SANDBOX_PORT}"

    @property
    def tls_cert_path(self) -> Path:
        return Path(self.TLS_CERT_FILE) if self.TLS_CERT_FILE else CERT_DIR / "dev-cert.pem"

    @property
    def tls_key_path(self) -> Path:
        return Path(self.TLS_KEY_FILE) if self.TLS_KEY_FILE else CERT_DIR / "dev-key.pem"

    @property
    def public_url(self) -> str:
        """Where people reach Dashtam through the proxy ("" when no proxy is configured)."""
        if not self.PUBLIC_DOMAIN:
            return ""
        port = "" if self.PROXY_HTTPS_PORT == 443 else f":{self.PROXY_HTTPS_PORT}"
        return f"https://{self.PUBLIC_DOMAIN}{port}"

    @property
    def docs_enabled(self) -> bool:
        if self.API_DOCS_ENABLED is not None:
            return self.API_DOCS_ENABLED
        return self.ENVIRONMENT is not Environment.PRODUCTION

    @property
    def uses_sandbox(self) -> bool:
        """Schwab itself only when its credentials are set and we are not testing; an explicit
        SANDBOX_ENABLED decides otherwise."""
        if self.TESTING:
            return True
        if self.SANDBOX_ENABLED is not None:
            return self.SANDBOX_ENABLED
        return not (self.SCHWAB_CLIENT_ID and self.SCHWAB_CLIENT_SECRET)

    @property
    def state_dir(self) -> Path:
        if self.STATE_DIR:
            return Path(self.STATE_DIR)
        name = "test" if self.ENVIRONMENT in (Environment.TESTING, Environment.CI) else "dev"
        return STATE_ROOT / name


def load_settings(env_file: Path | None = None) -> Settings:
    """Build settings from the given env file (default: `env_file_path()`).

    The file is checked first so a malformed line is reported by number instead
    of being silently skipped.
    """
    path = env_file or env_file_path()
    check_env_file(path)
    try:
        return Settings(_env_file=path)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise ConfigurationError(
            f"Invalid settings ({problems}).",
            hint=f"Fix the value in {path} or in the process environment.",
        ) from None
