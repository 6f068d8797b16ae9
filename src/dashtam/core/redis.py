"""Redis client and key naming: every key carries the configured prefix."""

from __future__ import annotations

from fastapi import Request
from redis.asyncio import Redis

from dashtam.core.config import Settings


def create_redis(settings: Settings) -> Redis:
    redis: Redis = Redis.from_url(
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
