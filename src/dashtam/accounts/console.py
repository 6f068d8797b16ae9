"""`dashtam sync`: start syncs of active connections and (with --wait) follow them in the
terminal; the worker does the work, this only requests and watches."""

from __future__ import annotations

import asyncio
import uuid

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import col

from dashtam.accounts import runs
from dashtam.core.config import Settings
from dashtam.core.database import create_engine
from dashtam.core.errors import UserError
from dashtam.jobs.queue import enqueue_sync, health_check_key, job_queue
from dashtam.models import (
    ACTIVE_SYNC_STATUSES,
    ConnectionStatus,
    Provider,
    ProviderConnection,
    SyncRun,
)
from dashtam.providers.errors import reauthorize_hint

POLL_SECONDS = 0.25


async def _start(
    engine: AsyncEngine, settings: Settings, provider_id: uuid.UUID | None
) -> dict[uuid.UUID, str]:
    """Request a run per active connection; {run id: provider alias}."""
    query = (
        select(col(ProviderConnection.id), col(Provider.alias))
        .join(Provider, col(Provider.id) == col(ProviderConnection.provider_id))
        .where(col(ProviderConnection.status) == ConnectionStatus.ACTIVE.value)
    )
    if provider_id is not None:
        query = query.where(col(Provider.id) == provider_id)
    async with engine.begin() as conn:
        connections = (await conn.execute(query)).all()
        started = {
            (await runs.request_run(conn, connection_id, "cli"))[0]: alias
            for connection_id, alias in connections
        }
        if not started:
            raise await _nothing_to_sync(conn, provider_id)
    async with job_queue(settings) as queue:
        if not await queue.exists(health_check_key(settings)):
            Console(stderr=True).print("[yellow]No worker is running; the syncs stay queued.[/]")
        for run_id in started:
            await enqueue_sync(queue, settings, run_id)
    return started


async def _nothing_to_sync(conn: AsyncConnection, provider_id: uuid.UUID | None) -> UserError:
    """Say why nothing is active: connections waiting for a new login are named with the way
    to give them one."""
    query = (
        select(col(Provider.id), col(Provider.alias))
        .join(ProviderConnection, col(Provider.id) == col(ProviderConnection.provider_id))
        .where(col(ProviderConnection.status) == ConnectionStatus.NEEDS_REAUTH.value)
    )
    if provider_id is not None:
        query = query.where(col(Provider.id) == provider_id)
    waiting = (await conn.execute(query)).all()
    if not waiting:
        return UserError(
            "No active connection to sync.",
            hint="Connect a provider first (POST /api/v1/providers, then its authorization).",
        )
    named = "; ".join(f"{alias!r}: {reauthorize_hint(pid)}" for pid, alias in waiting)
    return UserError(
        f"No active connection to sync: {len(waiting)} need(s) re-authorization "
        "(the provider no longer accepts their login).",
        hint=named,
    )


async def _load(engine: AsyncEngine, run_ids: list[uuid.UUID]) -> list[SyncRun]:
    async with engine.connect() as conn:
        result = await conn.execute(select(SyncRun).where(col(SyncRun.id).in_(run_ids)))
        return [SyncRun.model_validate(row._mapping) for row in result]


async def _follow(engine: AsyncEngine, aliases: dict[uuid.UUID, str], console: Console) -> None:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        tasks: dict[uuid.UUID, TaskID] = {
            run_id: progress.add_task(alias, total=None, detail="queued")
            for run_id, alias in aliases.items()
        }
        while True:
            current = await _load(engine, list(aliases))
            for run in current:
                detail = (
                    f"accounts {run.accounts_done}/{run.accounts_total} · pages {run.pages}"
                    f" · rows {run.rows_fetched:,} · {run.status}"
                )
                progress.update(
                    tasks[run.id],
                    total=run.accounts_total or None,
                    completed=run.accounts_done,
                    detail=detail,
                )
            if all(run.status not in ACTIVE_SYNC_STATUSES for run in current):
                return
            await asyncio.sleep(POLL_SECONDS)


def summary(found: list[SyncRun], aliases: dict[uuid.UUID, str]) -> Table:
    table = Table(title="Sync runs")
    for column in ("provider", "status", "inserted", "updated", "unchanged", "missing", "error"):
        table.add_column(column)
    for run in found:
        table.add_row(
            aliases[run.id],
            run.status,
            *(f"{n:,}" for n in (run.inserted, run.updated, run.unchanged, run.marked_missing)),
            run.error or "",
        )
    return table


async def sync_command(
    settings: Settings, provider_id: uuid.UUID | None, wait: bool, console: Console
) -> bool:
    """Start (and optionally follow) syncs; True unless one of the followed runs failed."""
    engine = create_engine(settings, pool_size=2)
    try:
        aliases = await _start(engine, settings, provider_id)
        if wait:
            await _follow(engine, aliases, console)
        found = await _load(engine, list(aliases))
    finally:
        await engine.dispose()
    console.print(summary(found, aliases))
    return all(run.status != "failed" for run in found)
