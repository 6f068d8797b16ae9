"""Redis client, the start-up credentials check, and key naming (every key carries the prefix)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis as sync_redis
from fastapi import Request
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from dashtam.core.config import Settings
from dashtam.core.errors import ConfigurationError
from dashtam.core.metrics import REDIS_ERRORS


class _CountedPipeline(Pipeline):
    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            return await super().execute(raise_on_error)
        except RedisError:
            REDIS_ERRORS.labels("PIPELINE").inc()
            raise


class CountedRedis(Redis):
    """A client that counts failed commands (`dashtam_redis_errors`); callers still decide
    what a failure means."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except RedisError:
            REDIS_ERRORS.labels(str(args[0]).upper() if args else "UNKNOWN").inc()
            raise

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return _CountedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )


def create_redis(settings: Settings) -> Redis:
    redis: Redis = CountedRedis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=2,
    )
    return redis


def _address_settings(settings: Settings) -> str:
    return "REDIS_URL" if settings.REDIS_URL else "REDIS_HOST / REDIS_PORT"


def _credential_settings(settings: Settings) -> str:
    parts = urlsplit(settings.REDIS_URL)
    return "the credentials in REDIS_URL" if parts.password else "REDIS_USERNAME / REDIS_PASSWORD"


def check_redis(settings: Settings, timeout: float = 2.0) -> None:
    """Refuse to start unless Redis accepts our credentials and refuses clients without any.

    Raises a ConfigurationError naming the setting to fix; runs before anything is started.
    """
    where = settings.redis_address
    try:
        with sync_redis.Redis.from_url(
            settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        ) as client:
            client.ping()
    except sync_redis.AuthenticationError:
        if not settings.redis_password:
            raise ConfigurationError(
                f"Redis at {where} requires authentication and REDIS_PASSWORD is not set.",
                hint="Run `make setup` (it adds a generated REDIS_PASSWORD to the env file) or "
                "set REDIS_PASSWORD / the credentials in REDIS_URL.",
            ) from None
        raise ConfigurationError(
            f"Redis at {where} refused {_credential_settings(settings)} (wrong password, "
            "unknown or disabled user).",
            hint="Use the credentials of that server's ACL user. In local mode Dashtam's own "
            "Redis takes them from the env file when it starts: `make down` and `make up`.",
        ) from None
    except (sync_redis.ConnectionError, sync_redis.TimeoutError) as error:
        raise ConfigurationError(
            f"Redis at {where} is unreachable ({error}).",
            hint=f"Start it (`make up` does in local mode) or fix {_address_settings(settings)}.",
        ) from None
    parts = urlsplit(settings.redis_url)
    anonymous = sync_redis.Redis(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    try:
        with anonymous:
            anonymous.ping()
    except sync_redis.AuthenticationError:
        return
    except sync_redis.RedisError:
        return  # it answered something other than PONG: not open to anonymous clients
    raise ConfigurationError(
        f"Redis at {where} answers clients that send no password; Dashtam requires an "
        "authenticated Redis.",
        hint="Turn off its default user (`ACL SETUSER default off`, after creating a user with "
        "a password) or set `requirepass`.",
    )


class RedisKeys:
    """Builds namespaced keys so tests can own (and clean) exactly their own keys."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)


def get_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


def get_redis_keys(request: Request) -> RedisKeys:
    keys: RedisKeys = request.app.state.redis_keys
    return keys
