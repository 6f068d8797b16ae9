"""``python -m dashtam.jobs``: run the background worker with this environment's settings.

``--check`` exits 0 when a worker of this environment is alive (its arq health-check key is in
Redis), 1 otherwise: the containers' healthcheck.
"""

import sys

import redis

from dashtam.core.config import load_settings
from dashtam.core.errors import UserError
from dashtam.core.logging import configure_logging
from dashtam.core.redis import check_redis
from dashtam.jobs.queue import health_check_key
from dashtam.jobs.worker import create_worker


def check() -> int:
    settings = load_settings()
    try:
        with redis.Redis.from_url(settings.redis_url, socket_timeout=3) as client:
            return 0 if client.exists(health_check_key(settings)) else 1
    except redis.RedisError as error:
        print(f"worker check: Redis unavailable ({type(error).__name__})", file=sys.stderr)
        return 1


def main() -> None:
    if sys.argv[1:] == ["--check"]:
        sys.exit(check())
    try:
        settings = load_settings()
        check_redis(settings)  # a clear message now, not arq's retries and a traceback
    except UserError as error:
        raise SystemExit(f"error: {error}") from None
    configure_logging(settings.LOG_LEVEL)
    create_worker(settings).run()


if __name__ == "__main__":
    main()
