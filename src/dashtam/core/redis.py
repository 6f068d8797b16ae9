"""Redis client and key naming: every key carries the configured prefix."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from dashtam.core.config import Settings
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
