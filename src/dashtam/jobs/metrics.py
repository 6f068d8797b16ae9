"""The worker's own metrics: job durations and outcomes, sync results, and the queue.

The worker has no web server, so it serves its metrics on WORKER_METRICS_PORT from a thread
(prometheus_client's WSGI server), guarded by METRICS_TOKEN like the app's `/metrics`. The queue
is read at scrape time: jobs due now, jobs scheduled later, and how long the oldest due job has
waited (the queue lag).
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

import redis
from arq import Retry
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import Metric
from prometheus_client.exposition import ThreadingWSGIServer

from dashtam.core.config import Settings
from dashtam.core.metrics import JOB_DURATION, gauge_family, render, token_allows
from dashtam.jobs.queue import queue_name

Job = Callable[..., Any]


def timed_job(job: Job) -> Job:
    """The job, counted and timed by name and outcome in `dashtam_job_duration_seconds`."""
    name = job.__name__

    @functools.wraps(job)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await job(ctx, *args, **kwargs)
            outcome = "success"
            return result
        except Retry:
            outcome = "retry"
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            JOB_DURATION.labels(name, outcome).observe(time.perf_counter() - started)

    return run


def queue_families(settings: Settings, client: redis.Redis) -> list[Metric]:
    """Queue depth and lag, read now (arq keeps its queue as a sorted set scored by due time)."""
    name = queue_name(settings)
    now_ms = time.time() * 1000
    due = cast(int, client.zcount(name, "-inf", now_ms))
    later = cast(int, client.zcount(name, f"({now_ms}", "+inf"))
    oldest = cast(
        list[tuple[bytes, float]],
        client.zrangebyscore(name, "-inf", now_ms, start=0, num=1, withscores=True),
    )
    lag = max(0.0, (now_ms - float(oldest[0][1])) / 1000) if oldest else 0.0
    return [
        gauge_family(
            "dashtam_job_queue_depth",
            "Jobs in the queue, by whether they are due now or scheduled for later.",
            {"due": float(due), "scheduled": float(later)},
            label="state",
        ),
        gauge_family(
            "dashtam_job_queue_lag_seconds",
            "How long the oldest due job has been waiting (0 when none waits).",
            lag,
        ),
    ]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would drown the worker's log."""


def metrics_wsgi_app(
    settings: Settings,
) -> Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]:
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: the worker serves /metrics only\n"]
        if not token_allows(settings.METRICS_TOKEN, environ.get("HTTP_AUTHORIZATION")):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")],
            )
            return [b"the metrics need Authorization: Bearer <METRICS_TOKEN>\n"]
        try:
            extra = queue_families(settings, client)
        except redis.RedisError:  # the rest still answers; the missing gauges say enough
            extra = []
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [render(extra)]

    return app


def serve_metrics(settings: Settings) -> WSGIServer | None:
    """Start the metrics server in a daemon thread (none when WORKER_METRICS_PORT is 0)."""
    if not settings.METRICS_ENABLED or settings.WORKER_METRICS_PORT == 0:
        return None
    server = make_server(
        settings.WORKER_METRICS_HOST,
        settings.WORKER_METRICS_PORT,
        metrics_wsgi_app(settings),
        ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
