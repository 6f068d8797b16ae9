"""The worker as its own process, syncing from the sandbox over real HTTP; including being
killed in the middle of a sync and a second worker finishing it without gaps or duplicates."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.support.metrics import Scrape
from tests.support.sandbox import (
    SandboxTokens,
    create_connection,
    delete_owner,
    free_port,
    sandbox_process,
    store_tokens,
)
from tests.test_config import TEST_ENV_FILE, TestSettings

from dashtam.accounts import runs
from dashtam.jobs.queue import enqueue_sync, health_check_key, job_queue
from dashtam.models import ProviderConnection
from dashtam.sandbox.config import SandboxConfig
from dashtam.sandbox.data import SandboxData

pytestmark = pytest.mark.e2e

SIZE = {"accounts": "2", "transactions_per_account": "6000", "history_days": "600"}


def _sandbox_config() -> SandboxConfig:
    today = datetime.now(UTC).date()
    return SandboxConfig(**SIZE, reference_date=today)  # type: ignore[arg-type]


@pytest.fixture
def sandbox_url() -> Iterator[str]:
    today = datetime.now(UTC).date().isoformat()
    # 40 ms per Trader API call keeps the sync busy long enough to be killed half-way.
    with sandbox_process(**SIZE, reference_date=today, latency_ms="40") as url:
        yield url


@pytest.fixture
def worker_settings(settings: TestSettings) -> TestSettings:
    return settings.model_copy(
        update={"REDIS_KEY_PREFIX": f"{settings.REDIS_KEY_PREFIX}w{uuid.uuid4().hex[:6]}:"}
    )


METRICS_TOKEN = "worker-metrics-token-e2e"


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def start_worker(
    sandbox_url: str, worker_settings: TestSettings, database_url: URL, metrics_port: int
) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Workers as `python -m dashtam.jobs`, on this test's database, queue and sandbox; the
    first serves its metrics on `metrics_port`."""
    started: list[subprocess.Popen[bytes]] = []
    env = os.environ | {
        "DASHTAM_ENV_FILE": str(TEST_ENV_FILE),
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "REDIS_KEY_PREFIX": worker_settings.REDIS_KEY_PREFIX,
        "SANDBOX_PORT": sandbox_url.rsplit(":", 1)[1],
        "SYNC_RETRY_BASE_SECONDS": "0.01",
        "WORKER_HEALTH_CHECK_SECONDS": "1",
        "METRICS_TOKEN": METRICS_TOKEN,
    }

    def start() -> subprocess.Popen[bytes]:
        port = metrics_port if not started else free_port()
        worker_env = env | {"WORKER_METRICS_PORT": str(port)}
        started.append(subprocess.Popen([sys.executable, "-m", "dashtam.jobs"], env=worker_env))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
            process.wait(15)


@pytest.fixture
async def connection(
    engine: AsyncEngine, sandbox_url: str, worker_settings: TestSettings, redis: Redis
) -> AsyncIterator[ProviderConnection]:
    connection = await create_connection(engine)
    async with httpx.AsyncClient(base_url=sandbox_url) as http:
        access, refresh = await SandboxTokens(http, SandboxConfig()).login()
    await store_tokens(engine, worker_settings, connection.id, access, refresh)
    yield connection
    await delete_owner(engine, connection)
    async for key in redis.scan_iter(match=f"*{worker_settings.REDIS_KEY_PREFIX}*"):
        await redis.delete(key)


async def _request(
    engine: AsyncEngine, settings: TestSettings, connection_id: uuid.UUID
) -> uuid.UUID:
    async with engine.begin() as conn:
        run_id, _ = await runs.request_run(conn, connection_id, "manual")
    async with job_queue(settings) as queue:
        await enqueue_sync(queue, settings, run_id)
    return run_id


async def _run(engine: AsyncEngine, run_id: uuid.UUID) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(text("SELECT * FROM sync_runs WHERE id = :id"), {"id": run_id})
        ).one()
    return dict(row._mapping)


async def _until(
    engine: AsyncEngine,
    run_id: uuid.UUID,
    done: Callable[[dict[str, Any]], bool],
) -> dict[str, Any]:
    async with asyncio.timeout(60):
        while not done(run := await _run(engine, run_id)):  # noqa: ASYNC110 - polls the db
            await asyncio.sleep(0.05)
    return run


async def _stored(engine: AsyncEngine, connection_id: uuid.UUID) -> tuple[int, int]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT count(*), count(DISTINCT (t.account_id, t.provider_transaction_id)) "
                    "FROM transactions t JOIN accounts a ON a.id = t.account_id "
                    "WHERE a.connection_id = :c"
                ),
                {"c": connection_id},
            )
        ).one()
    return int(row[0]), int(row[1])


def _expected() -> int:
    data = SandboxData(_sandbox_config())
    return sum(len(data.transactions(a)) for a in data.accounts)


async def test_the_worker_runs_a_requested_sync_and_reports_health(
    engine: AsyncEngine,
    connection: ProviderConnection,
    worker_settings: TestSettings,
    start_worker: Callable[[], subprocess.Popen[bytes]],
    redis: Redis,
) -> None:
    start_worker()
    run_id = await _request(engine, worker_settings, connection.id)

    run = await _until(engine, run_id, lambda r: r["status"] in ("succeeded", "failed"))

    assert run["status"] == "succeeded", run["error"]
    assert run["inserted"] == _expected()
    assert await redis.exists(health_check_key(worker_settings))


async def _scrape(port: int, token: str | None = METRICS_TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.get(f"http://127.0.0.1:{port}/metrics", headers=headers)


async def test_the_worker_serves_its_own_metrics(
    engine: AsyncEngine,
    connection: ProviderConnection,
    worker_settings: TestSettings,
    start_worker: Callable[[], subprocess.Popen[bytes]],
    metrics_port: int,
    promtool: str,
) -> None:
    start_worker()
    run_id = await _request(engine, worker_settings, connection.id)
    await _until(engine, run_id, lambda r: r["status"] in ("succeeded", "failed"))

    async def counted() -> Scrape:
        async with asyncio.timeout(30):
            while True:
                response = await _scrape(metrics_port)
                scraped = Scrape.parse(response.text)
                if scraped.value("dashtam_sync_runs_total", outcome="succeeded") == 1:
                    return scraped
                await asyncio.sleep(0.05)

    scraped = await counted()
    assert scraped.value("dashtam_sync_rows_total", outcome="inserted") == _expected()
    job = {"job": "sync_connection", "outcome": "success"}
    assert scraped.value("dashtam_job_duration_seconds_count", **job) == 1
    transactions = "/trader/v1/accounts/{account}/transactions"
    assert (
        scraped.value(
            "dashtam_provider_requests_total",
            provider="schwab",
            endpoint=transactions,
            status="200",
        )
        > 0
    )
    assert scraped.value("dashtam_job_queue_depth", state="due") == 0
    assert scraped.value("dashtam_db_pool_size") == worker_settings.WORKER_MAX_JOBS + 2
    checked = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=(await _scrape(metrics_port)).text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    refused = await _scrape(metrics_port, token=None)
    assert refused.status_code == 401
    assert "dashtam_" not in refused.text


async def test_a_worker_killed_mid_sync_is_taken_over_without_gaps_or_duplicates(
    engine: AsyncEngine,
    connection: ProviderConnection,
    worker_settings: TestSettings,
    start_worker: Callable[[], subprocess.Popen[bytes]],
) -> None:
    first = start_worker()
    run_id = await _request(engine, worker_settings, connection.id)
    await _until(engine, run_id, lambda r: r["inserted"] > 0)

    first.send_signal(signal.SIGKILL)
    first.wait(10)
    partial = await _run(engine, run_id)
    assert partial["status"] == "running"
    assert 0 < (await _stored(engine, connection.id))[0] < _expected()
    start_worker()

    run = await _until(engine, run_id, lambda r: r["status"] in ("succeeded", "failed"))

    assert run["status"] == "succeeded", run["error"]
    assert run["attempts"] == 2
    total, distinct = await _stored(engine, connection.id)
    assert total == distinct == _expected()
    assert run["verified"] is True, run["verification"]
