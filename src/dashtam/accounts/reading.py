"""Reading a connection's transactions from the provider, shared by sync and verification."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

from dashtam.accounts.schwab import TRANSACTION_LIMITS, NeedsReauth, Page, SyncError, TraderClient
from dashtam.accounts.store import StoredAccount
from dashtam.accounts.windows import Fetched, Window, WindowError, plan_windows

# Two accounts at a time: one's rows are processed while the other's are fetched.
ACCOUNTS_IN_PARALLEL = 2

T = TypeVar("T")
R = TypeVar("R")


async def account_windows(
    client: TraderClient, account: StoredAccount, start: datetime, end: datetime
) -> AsyncIterator[Fetched[Page]]:
    """The account's complete windows covering ``[start, end)``; a failure names the account
    and the window."""

    async def fetch(window: Window) -> Page:
        try:
            return await client.transactions(account.provider_account_id, window)
        except NeedsReauth:
            raise  # about the connection, not this account
        except SyncError as exc:  # same kind, with where it happened
            raise type(exc)(f"{account.label}, window {window}: {exc}") from None

    try:
        async for fetched in plan_windows(fetch, start, end, TRANSACTION_LIMITS):
            yield fetched
    except WindowError as exc:
        raise SyncError(f"{account.label}: {exc}") from None


async def each_account(items: Sequence[T], work: Callable[[T], Awaitable[R]]) -> list[R]:
    """`work` for every item, `ACCOUNTS_IN_PARALLEL` at a time. The first failure cancels the
    rest before it is raised, so nothing keeps writing after a run has failed."""
    lanes = asyncio.Semaphore(ACCOUNTS_IN_PARALLEL)

    async def one(item: T) -> R:
        async with lanes:
            return await work(item)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(item)) for item in items]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]
