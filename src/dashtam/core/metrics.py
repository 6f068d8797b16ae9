"""Prometheus metrics: what the app and the worker count, and how they are exposed.

Metrics are process-wide, as Prometheus clients expect: each one is defined once here and
counted where it happens. Tests read them as differences (before/after), never by resetting.
With several uvicorn workers, ``PROMETHEUS_MULTIPROC_DIR`` names a folder where every worker
process writes its values; a scrape then adds them up (prometheus_client's multiprocess mode).
The supervisor (``dashtam up`` or the container entrypoint) empties it before the workers start.

Labels only ever hold bounded values: route *templates* (never raw paths), provider endpoint
templates (never an account hash), fixed outcome names.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable, Iterable, Mapping

import httpx
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED_ROUTE = "unmatched"

# Request latencies: most reads answer in a few ms, logins take ~150 ms (argon2id).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_BUCKETS = (0.05, 0.25, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)

HTTP_REQUESTS = Counter(
    "dashtam_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ("method", "route", "status"),
)
HTTP_DURATION = Histogram(
    "dashtam_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ("method", "route"),
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge(
    "dashtam_http_requests_in_flight",
    "HTTP requests being answered right now.",
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "dashtam_db_pool_size",
    "Connections the database pool keeps open (its configured size, overflow excluded).",
    multiprocess_mode="livesum",
)
DB_POOL_OPEN = Gauge(
    "dashtam_db_pool_open_connections",
    "Database connections currently open by the pool.",
    multiprocess_mode="livesum",
)
DB_POOL_CHECKED_OUT = Gauge(
    "dashtam_db_pool_checked_out_connections",
    "Database connections in use by a request or job right now.",
    multiprocess_mode="livesum",
)
REDIS_ERRORS = Counter(
    "dashtam_redis_errors",
    "Redis commands that failed (connection lost, timeout, refused), by command.",
    ("command",),
)
AUTH_EVENTS = Counter(
    "dashtam_auth_events",
    "Authentication outcomes as written to the auth audit trail, by action and outcome.",
    ("action", "outcome"),
)
PROVIDER_REQUESTS = Counter(
    "dashtam_provider_requests",
    "Requests to providers, by provider, endpoint template and status (`error`: no answer).",
    ("provider", "endpoint", "status"),
)
PROVIDER_DURATION = Histogram(
    "dashtam_provider_request_duration_seconds",
    "Time a provider took to answer, by provider and endpoint template.",
    ("provider", "endpoint"),
    buckets=LATENCY_BUCKETS,
)
TOKEN_REFRESHES = Counter(
    "dashtam_provider_token_refreshes",
    "Provider access-token refreshes, by outcome (success, failure).",
    ("outcome",),
)
SYNC_RUNS = Counter(
    "dashtam_sync_runs",
    "Sync runs finished, by outcome (succeeded, failed, needs_reauth).",
    ("outcome",),
)
SYNC_ROWS = Counter(
    "dashtam_sync_rows",
    "Transaction rows of finished sync runs, by what became of them "
    "(inserted, updated, unchanged, missing).",
    ("outcome",),
)
JOB_DURATION = Histogram(
    "dashtam_job_duration_seconds",
    "Time a background job took, by job and outcome (success, retry, error, cancelled).",
    ("job", "outcome"),
    buckets=JOB_BUCKETS,
)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_VARIABLE) or None


def render(extra: Iterable[Metric] = ()) -> bytes:
    """This process's metrics (or every worker process's, in multiprocess mode) in the text
    format, followed by `extra`: values computed for this scrape (queue depth, connections)."""
    folder = multiprocess_dir()
    if folder is None:
        output = generate_latest(REGISTRY)
    else:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
        output = generate_latest(registry)
    families = list(extra)
    if families:
        snapshot = CollectorRegistry(auto_describe=False)
        snapshot.register(_Families(families))
        output += generate_latest(snapshot)
    return output


class _Families:
    """A collector that hands out families made for one scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def gauge_family(
    name: str, documentation: str, values: Mapping[str, float] | float, label: str = ""
) -> GaugeMetricFamily:
    """A gauge for one scrape: a single value, or one sample per value of `label`."""
    if isinstance(values, Mapping):
        family = GaugeMetricFamily(name, documentation, labels=(label,))
        for key, value in sorted(values.items()):
            family.add_metric((key,), value)
        return family
    return GaugeMetricFamily(name, documentation, value=values)


def token_allows(expected: str, authorization: str | None) -> bool:
    """Whether an `Authorization` header carries the metrics token (always, when none is set)."""
    if not expected:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), expected.encode())


class HttpMetricsMiddleware:
    """Counts and times every HTTP request by its route template (plain ASGI: cheap).

    The router leaves the matched route in the scope, so naming the template costs no second
    match; requests that match no route share one label instead of adding a label per path.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # A route included under a prefix may know only its own part of the path (FastAPI keeps
        # the original route): the prefix in front is found once per route and remembered.
        self._templates: dict[int, str] = {}

    def _template(self, scope: Scope) -> str:
        route = scope.get("route")
        pattern = getattr(route, "path_regex", None)
        if route is None or pattern is None:
            return UNMATCHED_ROUTE
        template = self._templates.get(id(route))
        if template is None:
            path: str = scope["path"]
            own: str = route.path_format
            starts = [i for i, char in enumerate(path) if char == "/"]
            prefix = next((path[:i] for i in starts if pattern.match(path[i:])), "")
            template = self._templates.setdefault(id(route), prefix + own)
        return template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        HTTP_IN_FLIGHT.inc()
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            elapsed = time.perf_counter() - started
            HTTP_IN_FLIGHT.dec()
            route = self._template(scope)
            method = scope["method"]
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_DURATION.labels(method, route).observe(elapsed)


EndpointLabel = Callable[[httpx.URL], tuple[str, str]]


class MeteredTransport(httpx.AsyncBaseTransport):
    """Counts and times every provider request; `label` names its provider and endpoint."""

    def __init__(self, inner: httpx.AsyncBaseTransport, label: EndpointLabel) -> None:
        self.inner = inner
        self.label = label

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        provider, endpoint = self.label(request.url)
        started = time.perf_counter()
        status = "error"
        try:
            response = await self.inner.handle_async_request(request)
            status = str(response.status_code)
            return response
        finally:
            PROVIDER_REQUESTS.labels(provider, endpoint, status).inc()
            PROVIDER_DURATION.labels(provider, endpoint).observe(time.perf_counter() - started)

    async def aclose(self) -> None:
        await self.inner.aclose()


def watch_pool(engine: AsyncEngine, size: int) -> None:
    """Keep the pool gauges current from SQLAlchemy's pool events."""
    target = engine.sync_engine
    DB_POOL_SIZE.inc(size)

    def connected(*_: object) -> None:
        DB_POOL_OPEN.inc()

    def closed(*_: object) -> None:
        DB_POOL_OPEN.dec()

    def checked_out(*_: object) -> None:
        DB_POOL_CHECKED_OUT.inc()

    def checked_in(*_: object) -> None:
        DB_POOL_CHECKED_OUT.dec()

    event.listen(target, "connect", connected)
    event.listen(target, "close", closed)
    event.listen(target, "checkout", checked_out)
    event.listen(target, "checkin", checked_in)
