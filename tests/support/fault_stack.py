"""Sync under faults, end to end: workers as their own processes, the sandbox over HTTP, and a
PostgreSQL and a Redis server of the test module's own, so they can be restarted without touching
anyone else's tests.

`assert_store_equals_provider` is how every fault case ends: the store equals the provider
(same ids, same content hashes, no duplicate, no gap, nothing marked missing), positions and
balances are current, and the run's counters add up. The provider's side is computed with the
sandbox's own code, not the sync's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from tests.support.sandbox import (
    SandboxTokens,
    create_connection,
    delete_owner,
    free_port,
    sandbox_process,
    store_tokens,
)
from tests.support.workers import WorkerForks, worker_forks
from tests.test_config import TEST_ENV_FILE, TestSettings

from dashtam.accounts import runs
from dashtam.core.init_test_db import init_test_db
from dashtam.devenv.postgres import PostgresService
from dashtam.devenv.profiles import Profile
from dashtam.devenv.redis import RedisService
from dashtam.jobs.queue import enqueue_sync, job_queue
from dashtam.models import ProviderConnection
from dashtam.sandbox.config import SandboxConfig
from dashtam.sandbox.data import SandboxData
from dashtam.sandbox.trader import transaction_json

TRANSACTIONS = "/trader/v1/accounts/*/transactions"
EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
WAIT = 60.0


@dataclass
class Sandbox:
    url: str
    data: SandboxData

    @property
    def port(self) -> str:
        return self.url.rsplit(":", 1)[1]


@dataclass
class Stack:
    settings: TestSettings  # pointed at the module's PostgreSQL and Redis
    postgres: PostgresService
    redis: RedisService
    engine: AsyncEngine
    forks: WorkerForks
    sandbox: Sandbox
    env: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def _sandbox(size: dict[str, int]) -> Iterator[Sandbox]:
    today = datetime.now(UTC).date()
    config = {key: str(value) for key, value in size.items()}
    with sandbox_process(**config, reference_date=today.isoformat()) as url:
        yield Sandbox(url, SandboxData(SandboxConfig(**size, reference_date=today)))


@contextlib.asynccontextmanager
async def fault_stack(folder: Path, size: dict[str, int]) -> AsyncIterator[Stack]:
    """Servers of its own (started side by side), the schema, a sandbox of `size`, and a fork
    server for workers pointed at all of them."""
    profile = Profile("test", ephemeral=True, env_dir=folder, state_root=folder / "state")
    # New settings, not a copy of the session's: a copy keeps the URLs derived from its ports.
    settings = TestSettings(POSTGRES_PORT=free_port(), REDIS_PORT=free_port())
    postgres, redis = PostgresService(profile, settings), RedisService(profile, settings)
    env = os.environ | {
        "DASHTAM_ENV_FILE": str(TEST_ENV_FILE),
        "POSTGRES_PORT": str(settings.POSTGRES_PORT),
        "REDIS_PORT": str(settings.REDIS_PORT),
        "SYNC_RETRY_BASE_SECONDS": "0.01",
        "SYNC_RETRY_MAX_SECONDS": "0.1",
        "WORKER_POLL_DELAY_SECONDS": "0.05",
        "WORKER_HEALTH_CHECK_SECONDS": "1",
    }
    with contextlib.ExitStack() as cleanup:

        def enter(context: contextlib.AbstractContextManager[Any]) -> Any:
            entered = context.__enter__()
            cleanup.push(context.__exit__)
            return entered

        cleanup.callback(postgres.destroy)
        cleanup.callback(redis.stop)
        sandbox, forks, *_ = await asyncio.gather(
            asyncio.to_thread(enter, _sandbox(size)),
            asyncio.to_thread(enter, worker_forks(folder, env)),
            asyncio.to_thread(postgres.start),
            asyncio.to_thread(redis.start),
        )
        await init_test_db(settings)
        engine = create_async_engine(settings.database_url, pool_size=3, pool_pre_ping=True)
        try:
            yield Stack(settings, postgres, redis, engine, forks, sandbox, env)
        finally:
            await engine.dispose()


@dataclass
class Case:
    """One connection synced from the stack's sandbox, with the worker environment to do it."""

    stack: Stack
    connection: ProviderConnection
    prefix: str
    via_port: str | None = None  # another port in front of the sandbox (a flaky network)
    workers: list[int] = field(default_factory=list)

    @property
    def data(self) -> SandboxData:
        return self.stack.sandbox.data

    @property
    def worker_env(self) -> dict[str, str]:
        return self.stack.env | {
            "REDIS_KEY_PREFIX": self.prefix,
            "SANDBOX_PORT": self.via_port or self.stack.sandbox.port,
        }

    def start_worker(self) -> int:
        self.workers.append(self.stack.forks.start(self.worker_env))
        return self.workers[-1]

    async def request_run(self) -> uuid.UUID:
        async with self.stack.engine.begin() as conn:
            run_id, _ = await runs.request_run(conn, self.connection.id, "manual")
        settings = self.stack.settings.model_copy(update={"REDIS_KEY_PREFIX": self.prefix})
        async with job_queue(settings) as queue:
            await enqueue_sync(queue, settings, run_id)
        return run_id

    async def run(self, run_id: uuid.UUID) -> dict[str, Any]:
        async with self.stack.engine.connect() as conn:
            row = (
                await conn.execute(text("SELECT * FROM sync_runs WHERE id = :id"), {"id": run_id})
            ).one()
        return dict(row._mapping)

    async def finished(self, run_id: uuid.UUID) -> dict[str, Any]:
        ended = ("succeeded", "failed")
        return await until(lambda: self.run(run_id), lambda r: r["status"] in ended, self)

    async def held(self, sandbox: httpx.AsyncClient, run_id: uuid.UUID) -> dict[str, str]:
        """The first request a `hold` fault keeps waiting, once there is one."""

        async def read() -> tuple[list[dict[str, str]], str]:
            held = (await sandbox.get("/sandbox/faults/held")).json()
            return held, (await self.run(run_id))["status"]

        ended = ("succeeded", "failed")
        held, status = await until(read, lambda pair: bool(pair[0]) or pair[1] in ended, self)
        assert held, f"the run ended ({status}) before the held request came"
        return dict(held[0])


async def until(read: Callable[[], Any], done: Callable[[Any], bool], case: Case) -> Any:
    """Poll `read` until `done`; after WAIT seconds, fail with the workers' logs."""
    try:
        async with asyncio.timeout(WAIT):
            while not done(value := await read()):  # noqa: ASYNC110 - another process's state
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"gave up waiting after {WAIT} s; workers said:\n{case.stack.forks.logs()}")
    return value


@contextlib.asynccontextmanager
async def cases(stack: Stack) -> AsyncIterator[Callable[..., Any]]:
    """Make cases: a committed user, connection and sandbox login each; all removed after."""
    made: list[Case] = []

    async def make(via_port: str | None = None) -> Case:
        connection = await create_connection(stack.engine)
        async with httpx.AsyncClient(base_url=stack.sandbox.url) as http:
            await http.delete("/sandbox/faults")
            access, refresh = await SandboxTokens(http, SandboxConfig()).login()
        await store_tokens(stack.engine, stack.settings, connection.id, access, refresh)
        prefix = f"{stack.settings.REDIS_KEY_PREFIX}faults{uuid.uuid4().hex[:8]}:"
        made.append(Case(stack, connection, prefix, via_port))
        return made[-1]

    try:
        yield make
    finally:
        for case in made:  # a case's idle worker would sync the next case's connection
            for pid in case.workers:
                await asyncio.to_thread(stack.forks.kill, pid, signal.SIGTERM, 15)
        async with httpx.AsyncClient(base_url=stack.sandbox.url) as http:
            await http.delete("/sandbox/faults")
        for case in made:
            await delete_owner(stack.engine, case.connection)


def provider_transactions(data: SandboxData) -> dict[str, tuple[str, str]]:
    """{id: (account hash, md5 of the JSON the sandbox sends for it)}."""
    found = {}
    for account in data.accounts:
        for tx in data.transactions(account).window(*EVER):
            body = json.dumps(transaction_json(tx, account.number), separators=(",", ":"))
            digest = hashlib.md5(body.encode(), usedforsecurity=False).hexdigest()
            found[str(tx.activity_id)] = (account.hash_value, digest)
    return found


_STORED = {
    "transactions": "SELECT t.provider_transaction_id, a.provider_account_id, t.content_hash, "
    "t.missing_since FROM transactions t JOIN accounts a ON a.id = t.account_id "
    "WHERE a.connection_id = :c",
    "positions": "SELECT a.provider_account_id, p.symbol, p.long_quantity, p.market_value "
    "FROM positions p JOIN accounts a ON a.id = p.account_id WHERE a.connection_id = :c",
    "balances": "SELECT DISTINCT ON (a.id) a.provider_account_id, b.cash_balance, "
    "b.liquidation_value FROM balance_snapshots b JOIN accounts a ON a.id = b.account_id "
    "WHERE a.connection_id = :c ORDER BY a.id, b.as_of DESC",
}


async def assert_store_equals_provider(case: Case, run: dict[str, Any]) -> None:
    """The store holds exactly the provider's data, and `run` (the last, successful one) adds
    up."""
    async with case.stack.engine.connect() as conn:
        found = {
            name: (await conn.execute(text(sql), {"c": case.connection.id})).all()
            for name, sql in _STORED.items()
        }
    rows, data = found["transactions"], case.data
    expected = provider_transactions(data)
    stored = {row[0]: (row[1], row[2]) for row in rows}
    assert len(rows) == len(stored), "a transaction is stored twice"
    gaps, extra = expected.keys() - stored.keys(), stored.keys() - expected.keys()
    assert (len(gaps), len(extra)) == (0, 0), "transactions missing from the store, or extra"
    assert stored == expected, "a stored transaction differs from the provider's"
    assert all(row[3] is None for row in rows), "a transaction was marked missing"
    assert sorted(tuple(p) for p in found["positions"]) == sorted(
        (a.hash_value, p.security.symbol, p.quantity, p.market_value)
        for a in data.accounts
        for p in a.positions
    )
    assert sorted(tuple(b) for b in found["balances"]) == sorted(
        (a.hash_value, a.cash, a.cash + a.long_market_value) for a in data.accounts
    )
    assert run["status"] == "succeeded", run["error"]
    assert run["rows_fetched"] == run["inserted"] + run["updated"] + run["unchanged"]
    assert run["accounts_done"] == run["accounts_total"] == len(data.accounts)
    assert run["marked_missing"] == 0


def assert_first_sync_counters(case: Case, run: dict[str, Any]) -> None:
    """A first sync inserted each transaction once, however many attempts it took, and was
    verified when it had to resume."""
    assert run["inserted"] == len(provider_transactions(case.data))
    assert run["updated"] == 0
    if run["attempts"] > 1:
        assert run["verified"] is True, run["verification"]
    else:
        assert run["verified"] is None
