"""Transaction sync ingest: first sync rate and peak memory, unchanged re-syncs, and the same
first sync written with naive per-row ORM inserts as the baseline.

The sandbox runs as its own process (~200,000 transactions over 4 accounts) and is warmed up first:
it generates and renders an account's history on first use, work a real provider does on its own
machines. The sync runs in this process against its own database, cloned from the migrated test
template and dropped afterwards.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import resource
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import psutil
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from tests.support.databases import create_worker_database, drop_worker_database
from tests.support.sandbox import SandboxTokens, create_connection, sandbox_process
from tests.test_config import TEST_ENV_FILE, TestSettings

from dashtam.accounts import runs
from dashtam.accounts.schwab import (
    TRANSACTION_LIMITS,
    RetryPolicy,
    TraderClient,
    TransactionBatch,
)
from dashtam.accounts.store import WriteCounts, write_transactions
from dashtam.accounts.sync import ClientFactory, SyncOptions, TransactionWriter, execute_run
from dashtam.accounts.windows import Window, plan_windows
from dashtam.core.config import ENV_FILE_VARIABLE
from dashtam.core.database import create_engine
from dashtam.models import Transaction
from dashtam.sandbox.config import SandboxConfig

ACCOUNTS = 4
PER_ACCOUNT = 50_000
HISTORY = SyncOptions().history
SANDBOX = {
    "accounts": str(ACCOUNTS),
    "transactions_per_account": str(PER_ACCOUNT),
    "history_days": "700",
}


def peak_rss_growth_mb(before: int) -> float:
    """The process's resident-memory high-water mark above `before` (bytes), in MiB."""
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return max(0, peak_kib * 1024 - before) / 2**20


async def naive_writer(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    window: Window,
    batch: TransactionBatch,
    now: datetime,
    *,
    mark_missing: bool = True,
) -> WriteCounts:
    """The baseline: the same parsed answer, one ORM object and one INSERT round trip per row."""
    session = AsyncSession(bind=conn)
    inserted = 0
    for n, instant in enumerate(batch.times):
        session.add(
            Transaction(
                account_id=account_id,
                provider_transaction_id=batch.provider_ids[n],
                time=instant,
                trade_date=batch.trade_dates[n],
                settlement_date=batch.settlement_dates[n],
                type=batch.types[n],
                status=batch.statuses[n],
                description=batch.descriptions[n],
                symbol=batch.symbols[n],
                net_amount=Decimal(batch.net_amounts[n]),
                items=json.loads(batch.items[n]),
                content_hash=batch.content_hashes[n],
            )
        )
        await session.flush()
        inserted += 1
    return WriteCounts(inserted=inserted)


async def _sync(
    engine: AsyncEngine,
    connection_id: uuid.UUID,
    connect: ClientFactory,
    writer: TransactionWriter = write_transactions,
) -> tuple[float, int]:
    """One run to completion; (seconds, transactions fetched)."""
    async with engine.begin() as conn:
        run_id, _ = await runs.request_run(conn, connection_id, "bench")
    started = time.perf_counter()
    outcome = await execute_run(engine, run_id, connect, SyncOptions(), writer)
    elapsed = time.perf_counter() - started
    async with engine.connect() as conn:
        run = (
            await conn.execute(
                text("SELECT status, error, rows_fetched FROM sync_runs WHERE id = :id"),
                {"id": run_id},
            )
        ).one()
    assert outcome.value == "succeeded", run.error
    return elapsed, int(run.rows_fetched)


async def _measure(settings: TestSettings, sandbox_url: str) -> dict[str, float]:
    engine = create_engine(settings, pool_size=4)
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=60) as http:
        tokens = SandboxTokens(http, SandboxConfig())
        policy = RetryPolicy(max_retries=3, base_seconds=0.05)

        @asynccontextmanager
        async def connect(_connection_id: uuid.UUID) -> AsyncIterator[TraderClient]:
            yield TraderClient(http, tokens, policy)

        # Warm-up: the sandbox generates and renders every account's history once before timing,
        # since a real provider's work is not done on this machine.
        client = TraderClient(http, tokens, policy)
        now = datetime.now(UTC)
        for snapshot in await client.accounts():
            hash_value = snapshot.account.provider_account_id
            fetch = functools.partial(client.transactions, hash_value)
            async for _window in plan_windows(fetch, now - HISTORY, now, TRANSACTION_LIMITS):
                pass

        fast = await create_connection(engine)
        rss_before = psutil.Process().memory_info().rss
        first_seconds, fetched = await _sync(engine, fast.id, connect)
        memory_growth = peak_rss_growth_mb(rss_before)
        incremental_seconds, _ = await _sync(engine, fast.id, connect)
        async with engine.begin() as conn:  # forget the watermarks: re-read all 2 years
            await conn.execute(
                text("UPDATE accounts SET transactions_synced_to = NULL WHERE connection_id = :c"),
                {"c": fast.id},
            )
        full_resync_seconds, _ = await _sync(engine, fast.id, connect)

        naive = await create_connection(engine)
        naive_seconds, _ = await _sync(engine, naive.id, connect, naive_writer)
    await engine.dispose()
    return {
        "transactions": float(fetched),
        "first_sync_seconds": first_seconds,
        "first_sync_tx_per_second": fetched / first_seconds,
        "first_sync_peak_rss_growth_mb": memory_growth,
        "unchanged_resync_seconds": incremental_seconds,
        "resync_speedup": first_seconds / incremental_seconds,
        "unchanged_full_window_resync_seconds": full_resync_seconds,
        "naive_orm_first_sync_seconds": naive_seconds,
        "bulk_vs_naive_speedup": naive_seconds / first_seconds,
    }


def run() -> dict[str, float]:
    os.environ[ENV_FILE_VARIABLE] = str(TEST_ENV_FILE)
    base = TestSettings()
    name = f"{base.database_name}_bench_sync_{uuid.uuid4().hex[:8]}"
    url = asyncio.run(create_worker_database(base, name))
    settings = base.model_copy(update={"DATABASE_URL": url.render_as_string(hide_password=False)})
    today = datetime.now(UTC).date().isoformat()
    try:
        with sandbox_process(**SANDBOX, reference_date=today) as sandbox_url:
            return asyncio.run(_measure(settings, sandbox_url))
    finally:
        asyncio.run(drop_worker_database(base, name))


if __name__ == "__main__":
    for measure, value in run().items():
        print(f"{measure:40} {value:12,.3f}")
