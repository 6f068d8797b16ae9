"""The background worker (arq): sync jobs and the scheduled upkeep of connections.

Every job is idempotent, so arq's at-least-once delivery is safe: a sync job works on a run
under the connection's advisory lock and does nothing once the run is over; the cron jobs
only act on what the database says still needs doing.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from arq import Retry, Worker, cron, func
from arq.connections import ArqRedis
from arq.cron import CronJob
from arq.typing import WorkerCoroutine
from redis.asyncio import Redis
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from dashtam.accounts import runs
from dashtam.accounts.clients import TraderClients
from dashtam.accounts.schwab import NeedsReauth, SyncError
from dashtam.accounts.sync import Outcome, SyncOptions, execute_run
from dashtam.auth.cleanup import sweep
from dashtam.core.config import Settings
from dashtam.core.database import create_engine, create_session_factory, database_lost
from dashtam.core.metrics import SYNC_ROWS, SYNC_RUNS, watch_pool
from dashtam.core.redis import RedisKeys, create_redis
from dashtam.events.tasks import prune_events
from dashtam.jobs.metrics import serve_metrics, timed_job
from dashtam.jobs.queue import SERIALIZERS, SYNC_JOB, enqueue_sync, queue_name, redis_settings
from dashtam.models.account import SyncRun
from dashtam.models.base import utcnow
from dashtam.providers.audit import AnonymousFailures
from dashtam.providers.errors import reauthorize_hint

logger = logging.getLogger("dashtam.jobs")
BUSY_RETRY_SECONDS = 2
LOST_RETRY_MAX_SECONDS = 30
LOGIN_EXPIRY_WARNING = timedelta(hours=24)
LOGIN_EXPIRING = "login_expiring"


@dataclass
class WorkerDeps:
    """What jobs talk to; made at worker start-up, closed at shutdown."""

    settings: Settings
    engine: AsyncEngine
    clients: TraderClients
    redis: Redis

    @classmethod
    def create(cls, settings: Settings) -> WorkerDeps:
        pool_size = settings.WORKER_MAX_JOBS + 2
        engine = create_engine(settings, pool_size=pool_size)
        watch_pool(engine, pool_size)
        clients = TraderClients.create(settings, create_session_factory(engine))
        return cls(settings, engine, clients, create_redis(settings))

    async def close(self) -> None:
        await self.clients.aclose()
        await self.redis.aclose()
        await self.engine.dispose()


def _deps(ctx: dict[str, Any]) -> WorkerDeps:
    deps: WorkerDeps = ctx["deps"]
    return deps


async def startup(ctx: dict[str, Any]) -> None:
    ctx["deps"] = WorkerDeps.create(ctx["settings"])
    ctx["metrics_server"] = serve_metrics(ctx["settings"])


async def shutdown(ctx: dict[str, Any]) -> None:
    server = ctx.get("metrics_server")
    if server is not None:
        server.shutdown()
        server.server_close()
    await _deps(ctx).close()


async def _count_finished_run(engine: AsyncEngine, run_id: uuid.UUID) -> None:
    """Sync metrics, once per run: by the attempt that ended it."""
    async with engine.connect() as conn:
        run = (await conn.execute(select(SyncRun).where(col(SyncRun.id) == run_id))).one()
    outcome = "succeeded" if run.error is None else "failed"
    if run.error and run.error.startswith("needs_reauth"):
        outcome = "needs_reauth"
    SYNC_RUNS.labels(outcome).inc()
    for kind, rows in (
        ("inserted", run.inserted),
        ("updated", run.updated),
        ("unchanged", run.unchanged),
        ("missing", run.marked_missing),
    ):
        SYNC_ROWS.labels(kind).inc(rows)


async def sync_connection(ctx: dict[str, Any], run_id: str) -> str:
    deps = _deps(ctx)
    options = SyncOptions.from_settings(deps.settings)
    try:
        outcome = await execute_run(deps.engine, uuid.UUID(run_id), deps.clients.connect, options)
    except Exception as exc:  # before or after the attempt proper, e.g. the server still down
        if not database_lost(exc):
            raise
        outcome = Outcome.LOST
    if outcome is Outcome.LOST:  # the run stays running with its committed windows
        delay = min(LOST_RETRY_MAX_SECONDS, 2 ** (ctx.get("job_try", 1) - 1))
        raise Retry(defer=delay)
    if outcome in (Outcome.SUCCEEDED, Outcome.FAILED):
        await _count_finished_run(deps.engine, uuid.UUID(run_id))
    if outcome is Outcome.BUSY:  # a probe or a finishing run holds the lock for a moment
        raise Retry(defer=BUSY_RETRY_SECONDS)
    if outcome is Outcome.FAILED:
        async with deps.engine.connect() as conn:
            error = await runs.error_of(conn, uuid.UUID(run_id))
        logger.warning("sync run %s failed: %s", run_id, error)
    else:
        logger.info("sync run %s: %s", run_id, outcome.value)
    return outcome.value


async def recover_abandoned_runs(ctx: dict[str, Any]) -> int:
    """Queue a job for every active run nobody works on: a killed worker's run is taken over."""
    deps = _deps(ctx)
    pool: ArqRedis = ctx["redis"]
    async with deps.engine.connect() as conn:
        abandoned = await runs.abandoned_runs(conn)
    queued = 0
    for run_id, attempts in abandoned:
        queued += await enqueue_sync(pool, deps.settings, run_id, attempts, replace_finished=True)
    return queued


_DUE_CONNECTIONS = text(
    """
    SELECT c.id FROM provider_connections c
    WHERE c.status = 'active'
      AND NOT EXISTS (SELECT 1 FROM sync_runs r WHERE r.connection_id = c.id
                      AND (r.status IN ('queued', 'running') OR r.created_at > :since))
    """
)


async def schedule_due_syncs(ctx: dict[str, Any]) -> int:
    """Start a sync for each active connection without one in the last SYNC_INTERVAL_SECONDS."""
    deps = _deps(ctx)
    since = utcnow() - timedelta(seconds=deps.settings.SYNC_INTERVAL_SECONDS)
    async with deps.engine.begin() as conn:
        due = list(await conn.scalars(_DUE_CONNECTIONS, {"since": since}))
        requested = [(await runs.request_run(conn, c, "scheduled"))[0] for c in due]
    for run_id in requested:
        await enqueue_sync(ctx["redis"], deps.settings, run_id)
    return len(requested)


_EXPIRING_ACCESS = text(
    """
    SELECT t.connection_id, c.provider_id FROM provider_tokens t
    JOIN provider_connections c ON c.id = t.connection_id
    WHERE c.status = 'active' AND t.access_expires_at < :before
    """
)


async def refresh_expiring_tokens(ctx: dict[str, Any]) -> int:
    """Refresh access tokens that expire within the refresh leeway (or the next minute)."""
    deps = _deps(ctx)
    leeway = deps.settings.PROVIDER_REFRESH_LEEWAY_SECONDS + 60
    async with deps.engine.connect() as conn:
        before = utcnow() + timedelta(seconds=leeway)
        expiring = (await conn.execute(_EXPIRING_ACCESS, {"before": before})).all()
    refreshed = 0
    for connection_id, provider_id in expiring:
        try:
            await deps.clients.tokens(connection_id).access_token()
            refreshed += 1
        except SyncError as exc:  # recorded on the connection by the providers package
            hint = f" {reauthorize_hint(provider_id)}" if isinstance(exc, NeedsReauth) else ""
            logger.warning("token refresh for connection %s failed: %s%s", connection_id, exc, hint)
    return refreshed


_FLAG_EXPIRING_LOGINS = text(
    """
    UPDATE provider_connections c
    SET last_error_code = :code, last_error = :message, last_error_at = now()
    FROM provider_tokens t
    WHERE t.connection_id = c.id AND c.status = 'active'
      AND t.refresh_expires_at < :before
      AND c.last_error_code IS DISTINCT FROM :code
    """
)


async def flag_expiring_logins(ctx: dict[str, Any]) -> int:
    """Warn (on the connection) when its provider login ends within 24 hours."""
    deps = _deps(ctx)
    async with deps.engine.begin() as conn:
        result = await conn.execute(
            _FLAG_EXPIRING_LOGINS,
            {
                "code": LOGIN_EXPIRING,
                "message": "The provider login ends within 24 hours; connect again to keep "
                "syncing.",
                "before": utcnow() + LOGIN_EXPIRY_WARNING,
            },
        )
    return result.rowcount


async def sweep_expired_auth(ctx: dict[str, Any]) -> dict[str, int]:
    """Delete spent tokens and long-ended sessions so they do not pile up (never audit rows)."""
    deps = _deps(ctx)
    return (await sweep(deps.engine, deps.settings)).as_dict()


async def write_anonymous_failures(ctx: dict[str, Any]) -> int:
    """One audit row per source of each finished minute of refused anonymous callbacks."""
    deps = _deps(ctx)
    failures = AnonymousFailures(deps.redis, RedisKeys(deps.settings.REDIS_KEY_PREFIX))
    async with deps.clients.session_factory() as session:
        return await failures.flush(session)


async def prune_old_events(ctx: dict[str, Any]) -> int:
    """Delete events past EVENTS_RETENTION_DAYS (hourly, in short transactions)."""
    deps = _deps(ctx)
    return await prune_events(deps.engine, deps.settings.EVENTS_RETENTION_DAYS)


def worker_options(settings: Settings) -> dict[str, Any]:
    """arq Worker arguments; cron names carry the key prefix because arq derives job ids
    from them."""
    prefix = settings.REDIS_KEY_PREFIX

    def every_minute(job: WorkerCoroutine, *, at_startup: bool = False) -> CronJob:
        return cron(
            timed_job(job), name=prefix + job.__qualname__, second=0, run_at_startup=at_startup
        )

    return {
        "functions": [
            func(
                timed_job(sync_connection),
                name=SYNC_JOB,
                timeout=settings.SYNC_JOB_TIMEOUT_SECONDS,
                max_tries=10,
            )
        ],
        "cron_jobs": [
            every_minute(recover_abandoned_runs, at_startup=True),
            every_minute(schedule_due_syncs),
            every_minute(refresh_expiring_tokens),
            every_minute(write_anonymous_failures),
            cron(
                timed_job(flag_expiring_logins),
                name=prefix + "flag_expiring_logins",
                minute=0,
                second=0,
                run_at_startup=True,
            ),
            cron(
                timed_job(sweep_expired_auth),
                name=prefix + "sweep_expired_auth",
                minute=30,
                second=0,
            ),
            cron(
                timed_job(prune_old_events),
                name=prefix + "prune_old_events",
                minute=45,
                second=0,
            ),
        ],
        "queue_name": queue_name(settings),
        "redis_settings": redis_settings(settings),
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {"settings": settings},
        "health_check_interval": settings.WORKER_HEALTH_CHECK_SECONDS,
        "poll_delay": settings.WORKER_POLL_DELAY_SECONDS,
        "max_jobs": settings.WORKER_MAX_JOBS,
        **SERIALIZERS,
    }


def create_worker(settings: Settings, **overrides: Any) -> Worker:
    return Worker(**(worker_options(settings) | overrides))
