"""`dashtam sync` and `dashtam verify` in the terminal.

`sync` starts syncs of active connections and (with --wait) follows them; the worker does the
work, this only requests and watches. `verify` re-reads connections from the provider and prints
how the store compares, without writing anything.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import col

from dashtam.accounts import runs
from dashtam.accounts.clients import TraderClients
from dashtam.accounts.schwab import SyncError
from dashtam.accounts.sync import SyncOptions
from dashtam.accounts.verify import SHOWN_IDS, Report, verify_connection
from dashtam.accounts.windows import instant_text
from dashtam.core.config import Settings
from dashtam.core.database import create_engine, create_session_factory
from dashtam.core.errors import UserError
from dashtam.jobs.queue import enqueue_sync, health_check_key, job_queue
from dashtam.models import (
    ACTIVE_SYNC_STATUSES,
    ConnectionStatus,
    Provider,
    ProviderConnection,
    SyncRun,
)
from dashtam.models.base import utcnow
from dashtam.providers.errors import reauthorize_hint

POLL_SECONDS = 0.25


async def _active_connections(
    conn: AsyncConnection, provider_id: uuid.UUID | None, doing: str
) -> list[tuple[uuid.UUID, str]]:
    """(connection id, provider alias) of every active connection, or of one provider's."""
    query = (
        select(col(ProviderConnection.id), col(Provider.alias))
        .join(Provider, col(Provider.id) == col(ProviderConnection.provider_id))
        .where(col(ProviderConnection.status) == ConnectionStatus.ACTIVE.value)
    )
    if provider_id is not None:
        query = query.where(col(Provider.id) == provider_id)
    found = [(row[0], row[1]) for row in await conn.execute(query)]
    if not found:
        raise await _nothing_active(conn, provider_id, doing)
    return found


async def _start(
    engine: AsyncEngine, settings: Settings, provider_id: uuid.UUID | None
) -> dict[uuid.UUID, str]:
    """Request a run per active connection; {run id: provider alias}."""
    async with engine.begin() as conn:
        started = {
            (await runs.request_run(conn, connection_id, "cli"))[0]: alias
            for connection_id, alias in await _active_connections(conn, provider_id, "sync")
        }
    async with job_queue(settings) as queue:
        for run_id in started:
            await enqueue_sync(queue, settings, run_id)
    return started


async def _nothing_active(
    conn: AsyncConnection, provider_id: uuid.UUID | None, doing: str
) -> UserError:
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
            f"No active connection to {doing}.",
            hint="Connect a provider first (POST /api/v1/providers, then its authorization).",
        )
    named = "; ".join(f"{alias!r}: {reauthorize_hint(pid)}" for pid, alias in waiting)
    return UserError(
        f"No active connection to {doing}: {len(waiting)} need(s) re-authorization "
        "(the provider no longer accepts their login).",
        hint=named,
    )


async def _load(engine: AsyncEngine, run_ids: list[uuid.UUID]) -> list[SyncRun]:
    async with engine.connect() as conn:
        result = await conn.execute(select(SyncRun).where(col(SyncRun.id).in_(run_ids)))
        return [SyncRun.model_validate(row._mapping) for row in result]


async def _follow(
    engine: AsyncEngine,
    settings: Settings,
    aliases: dict[uuid.UUID, str],
    console: Console,
    limit: float,
) -> None:
    """Show progress until every run is over; give up when the worker stops answering or
    after `limit` seconds, saying which runs were still going."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + limit
    async with job_queue(settings) as queue:
        with Progress(*columns, console=console) as progress:
            tasks: dict[uuid.UUID, TaskID] = {
                run_id: progress.add_task(alias, total=None, detail="queued for the worker")
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
                going = [run for run in current if run.status in ACTIVE_SYNC_STATUSES]
                if not going:
                    return
                if not await queue.exists(health_check_key(settings)):
                    raise _stopped_waiting("the worker stopped answering", going, aliases)
                if time.monotonic() > deadline:
                    raise _stopped_waiting(f"gave up after {limit:.0f}s", going, aliases)
                await asyncio.sleep(POLL_SECONDS)


def _stopped_waiting(why: str, going: list[SyncRun], aliases: dict[uuid.UUID, str]) -> UserError:
    runs_left = ", ".join(f"{aliases[run.id]} ({run.status})" for run in going)
    return UserError(
        f"Stopped waiting for the worker ({why}); still going: {runs_left}.",
        hint="The runs stay queued and continue when a worker runs (`make up` starts one; "
        "`make logs` shows its log). Wait longer with --wait-limit.",
    )


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
    settings: Settings,
    provider_id: uuid.UUID | None,
    wait: bool,
    console: Console,
    wait_limit: float = 600.0,
) -> bool:
    """Start (and optionally follow) syncs; True unless one of the followed runs failed."""
    engine = create_engine(settings, pool_size=2)
    try:
        aliases = await _start(engine, settings, provider_id)
        if wait:
            await _follow(engine, settings, aliases, console, wait_limit)
        found = await _load(engine, list(aliases))
    finally:
        await engine.dispose()
    console.print(summary(found, aliases))
    return all(run.status != "failed" for run in found)


def _mark(match: bool | None) -> str:
    return {True: "match", False: "[red]differ[/]", None: "-"}[match]


def verify_tables(alias: str, report: Report, all_windows: bool) -> list[Table]:
    """A line per account, then the windows that differ (every window with `all_windows`)."""
    accounts = Table(title=f"{alias}: store compared with the provider")
    for column in (
        "account",
        "compared",
        "windows",
        "provider",
        "stored",
        "missing",
        "extra",
        "changed",
        "balances",
        "positions",
        "result",
    ):
        accounts.add_column(column)
    windows = Table(title=f"{alias}: windows" + ("" if all_windows else " that differ"))
    for column in (
        "account",
        "window",
        "provider",
        "stored",
        "missing",
        "extra",
        "changed",
        "first ids",
    ):
        windows.add_column(column)
    for account in report.accounts:
        provider, stored = account.transactions
        kinds = [
            sum(len(getattr(w, k)) for w in account.windows)
            for k in ("missing", "extra", "changed")
        ]
        compared = (
            "-"
            if account.range is None
            else (f"{instant_text(account.range[0])[:10]} .. {instant_text(account.range[1])[:10]}")
        )
        result = account.problem or ("ok" if account.differences == 0 else "differs")
        accounts.add_row(
            f"{account.name} ({account.label})",
            compared,
            str(len(account.windows)),
            f"{provider:,}",
            f"{stored:,}",
            *(f"{n:,}" for n in kinds),
            _mark(account.balances_match),
            _mark(account.positions_match),
            result if account.differences == 0 else f"[red]{result}[/]",
        )
        for check in account.windows:
            if check.differences or all_windows:
                ids = [*check.missing, *check.extra, *check.changed][:SHOWN_IDS]
                windows.add_row(
                    account.label,
                    str(check.window),
                    f"{check.provider:,}",
                    f"{check.stored:,}",
                    *(f"{len(getattr(check, k)):,}" for k in ("missing", "extra", "changed")),
                    ", ".join(ids),
                )
    return [accounts, windows] if windows.row_count else [accounts]


async def verify_command(
    settings: Settings, provider_id: uuid.UUID | None, all_windows: bool, console: Console
) -> bool:
    """Verify every active connection (or one provider's); True when the store matches."""
    engine = create_engine(settings, pool_size=4)
    clients = TraderClients.create(settings, create_session_factory(engine))
    since = utcnow() - SyncOptions.from_settings(settings).history
    matched = True
    try:
        async with engine.connect() as conn:
            connections = await _active_connections(conn, provider_id, "verify")
        for connection_id, alias in connections:
            with console.status(f"Re-reading {alias} from the provider..."):
                try:
                    async with clients.connect(connection_id) as client:
                        report = await verify_connection(engine, client, connection_id, since)
                except SyncError as exc:
                    console.print(f"[red]{alias}: could not verify:[/] {exc}")
                    matched = False
                    continue
            for table in verify_tables(alias, report, all_windows):
                console.print(table)
            console.print(report.summary())
            matched = matched and report.ok
    finally:
        await clients.aclose()
        await engine.dispose()
    return matched
