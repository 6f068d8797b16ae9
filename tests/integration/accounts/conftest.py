"""Sync against an in-process sandbox, writing committed rows to this xdist worker's database.

Sync commits in its own transactions (that is what is under test), so these tests cannot use the
rolled-back `session`; each creates its own user and connection and deletes them afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.support.sandbox import SandboxTokens, create_connection, delete_owner

from dashtam.accounts import runs
from dashtam.accounts.schwab import RetryPolicy, TraderClient
from dashtam.accounts.store import write_transactions
from dashtam.accounts.sync import Outcome, SyncOptions, TransactionWriter, execute_run
from dashtam.models import ProviderConnection
from dashtam.sandbox.app import SandboxState, create_app
from dashtam.sandbox.config import SandboxConfig

FAST_RETRIES = RetryPolicy(max_retries=2, base_seconds=0.001, max_seconds=0.01)


def sandbox_config(**overrides: Any) -> SandboxConfig:
    """Explicit values, so SANDBOX_* variables in the environment cannot change a test."""
    values: dict[str, Any] = {
        "seed": 11,
        "accounts": 2,
        "transactions_per_account": 300,
        "pending_per_account": 2,
        "history_days": 700,  # inside the 730 days a first sync reaches back
        "reference_date": datetime.now(UTC).date(),
        "fault_rate_limit_every": 0,
        "fault_server_error_every": 0,
        "latency_ms": 0,
    }
    return SandboxConfig(**(values | overrides))


@dataclass
class Harness:
    """One sandbox, one connection, and the means to run syncs of it."""

    engine: AsyncEngine
    connection: ProviderConnection
    app: FastAPI
    http: httpx.AsyncClient
    tokens: SandboxTokens
    options: SyncOptions = field(default_factory=SyncOptions)
    policy: RetryPolicy = FAST_RETRIES

    @property
    def sandbox(self) -> SandboxState:
        state: SandboxState = self.app.state.sandbox
        return state

    def connect(self, _connection_id: uuid.UUID) -> AbstractAsyncContextManager[TraderClient]:
        @asynccontextmanager
        async def client() -> AsyncIterator[TraderClient]:
            yield TraderClient(self.http, self.tokens, self.policy)

        return client()

    async def request(self) -> uuid.UUID:
        async with self.engine.begin() as conn:
            run_id, _ = await runs.request_run(conn, self.connection.id, "manual")
        return run_id

    async def sync(
        self, writer: TransactionWriter = write_transactions
    ) -> tuple[uuid.UUID, Outcome]:
        run_id = await self.request()
        return run_id, await execute_run(self.engine, run_id, self.connect, self.options, writer)

    def expected_transactions(self) -> int:
        data = self.sandbox.data
        return sum(len(data.transactions(a)) for a in data.accounts)


@pytest.fixture
async def make_harness(
    engine: AsyncEngine,
) -> AsyncIterator[Callable[..., AbstractAsyncContextManager[Harness]]]:
    @asynccontextmanager
    async def make(**config: Any) -> AsyncIterator[Harness]:
        app = create_app(sandbox_config(**config))
        transport = httpx.ASGITransport(app=app)
        connection = await create_connection(engine)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as http:
            try:
                yield Harness(
                    engine, connection, app, http, SandboxTokens(http, app.state.sandbox.config)
                )
            finally:
                await delete_owner(engine, connection)

    return make


@pytest.fixture
async def harness(
    make_harness: Callable[..., AbstractAsyncContextManager[Harness]],
) -> AsyncIterator[Harness]:
    async with make_harness() as harness:
        yield harness
