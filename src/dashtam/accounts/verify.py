"""Re-read a connection from the provider and compare it with the store, without writing.

Sync is built so that the store holds exactly what the provider has up to each account's
watermark; this checks it from the outside, for `dashtam verify` and for the worker after a run
that had to resume. Per account it compares the account list, the latest balances and the
positions (by content hash), and, window by window up to the watermark, the transactions: ids
missing from the store, ids stored but no longer at the provider (and not yet marked missing),
and ids whose content differs. Nothing is written, so running it is always safe.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncEngine

from dashtam.accounts.reading import account_windows, each_account
from dashtam.accounts.schwab import AccountSnapshot, TraderClient
from dashtam.accounts.store import StoredAccount
from dashtam.accounts.windows import Window, align

SHOWN_IDS = 5  # per kind of difference and window, in reports


@dataclass(frozen=True, slots=True)
class WindowCheck:
    window: Window
    provider: int
    stored: int
    missing: tuple[str, ...]  # at the provider, not in the store
    extra: tuple[str, ...]  # in the store (not marked missing), not at the provider
    changed: tuple[str, ...]  # in both, with different content

    @property
    def differences(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.changed)


@dataclass
class AccountCheck:
    label: str
    name: str
    problem: str | None = None  # the account itself differs (not stored, no longer listed)
    balances_match: bool | None = None
    positions_match: bool | None = None
    range: tuple[datetime, datetime] | None = None  # transactions compared in [start, end)
    windows: list[WindowCheck] = field(default_factory=list)

    @property
    def differences(self) -> int:
        found = sum(w.differences for w in self.windows)
        found += sum(match is False for match in (self.balances_match, self.positions_match))
        return found + (self.problem is not None)

    @property
    def transactions(self) -> tuple[int, int]:
        """(at the provider, in the store) over the compared range."""
        return sum(w.provider for w in self.windows), sum(w.stored for w in self.windows)


@dataclass
class Report:
    connection_id: uuid.UUID
    accounts: list[AccountCheck]

    @property
    def differences(self) -> int:
        return sum(a.differences for a in self.accounts)

    @property
    def ok(self) -> bool:
        return self.differences == 0

    def summary(self) -> str:
        """One line (at most 500 characters), for the run and the logs."""
        compared = sum(a.transactions[0] for a in self.accounts)
        windows = sum(len(a.windows) for a in self.accounts)
        scope = f"{len(self.accounts)} account(s), {windows} window(s), {compared:,} transactions"
        if self.ok:
            return f"matches the provider: {scope}"
        details = []
        for account in self.accounts:
            found = []
            if account.problem:
                found.append(account.problem)
            if account.balances_match is False:
                found.append("balances differ")
            if account.positions_match is False:
                found.append("positions differ")
            for kind in ("missing", "extra", "changed"):
                count = sum(len(getattr(w, kind)) for w in account.windows)
                if count:
                    found.append(f"{count} transaction(s) {kind}")
            if found:
                details.append(f"{account.label}: {', '.join(found)}")
        return f"{self.differences} difference(s) in {scope}; {'; '.join(details)}"[:500]


_STORED_ACCOUNTS = text(
    """
    SELECT a.id, a.provider_account_id, a.transactions_synced_to, a.number_last4, a.name,
           a.status, a.positions_hash, a.connection_id = :connection_id AS own,
           (SELECT b.content_hash FROM balance_snapshots b WHERE b.account_id = a.id
            ORDER BY b.as_of DESC LIMIT 1) AS balances_hash
    FROM accounts a
    JOIN (SELECT p.user_id, p.provider_key FROM provider_connections c
          JOIN providers p ON p.id = c.provider_id WHERE c.id = :connection_id) AS o
      ON a.user_id = o.user_id AND a.provider_key = o.provider_key
    """
)
_STORED_WINDOW = text(
    """
    SELECT provider_transaction_id, content_hash FROM transactions
    WHERE account_id = :account_id AND time >= :start AND time < :end AND missing_since IS NULL
    """
)


def _compare(window: Window, provider: dict[str, str], stored: dict[str, str]) -> WindowCheck:
    both = provider.keys() & stored.keys()
    return WindowCheck(
        window,
        len(provider),
        len(stored),
        missing=tuple(sorted(provider.keys() - stored.keys())),
        extra=tuple(sorted(stored.keys() - provider.keys())),
        changed=tuple(sorted(i for i in both if provider[i] != stored[i])),
    )


async def _transactions(
    engine: AsyncEngine, client: TraderClient, account: StoredAccount, start: datetime
) -> list[WindowCheck]:
    assert account.transactions_synced_to is not None
    checks = []
    async with engine.connect() as conn:
        async for fetched in account_windows(
            client, account, start, account.transactions_synced_to
        ):
            batch, window = fetched.answer.batch, fetched.window
            provider = dict(zip(batch.provider_ids, batch.content_hashes, strict=True))
            rows = await conn.execute(
                _STORED_WINDOW,
                {"account_id": account.id, "start": window.start, "end": window.end},
            )
            checks.append(_compare(window, provider, {r[0]: r[1] for r in rows}))
    return checks


async def verify_connection(
    engine: AsyncEngine, client: TraderClient, connection_id: uuid.UUID, since: datetime
) -> Report:
    """Compare what the provider has now with the store; transactions from `since` to each
    account's watermark (a run's window, or the whole history)."""
    snapshots = await client.accounts()
    async with engine.connect() as conn:
        rows = (await conn.execute(_STORED_ACCOUNTS, {"connection_id": connection_id})).all()
    stored = {row.provider_account_id: row for row in rows}
    listed = {s.account.provider_account_id for s in snapshots}
    checks: list[AccountCheck] = []
    work: list[tuple[AccountCheck, StoredAccount, datetime]] = []
    for snapshot in snapshots:
        row = stored.get(snapshot.account.provider_account_id)
        check, account, start = _account_check(snapshot, row, since)
        checks.append(check)
        if account is not None and start is not None:
            work.append((check, account, start))
    for row in rows:
        if row.own and row.status == "active" and row.provider_account_id not in listed:
            checks.append(
                AccountCheck(
                    f"account ...{row.number_last4}",
                    row.name,
                    problem="stored as active, no longer listed by the provider",
                )
            )

    async def compare(item: tuple[AccountCheck, StoredAccount, datetime]) -> None:
        check, account, start = item
        check.windows = await _transactions(engine, client, account, start)

    await each_account(work, compare)
    return Report(connection_id, checks)


def _account_check(
    snapshot: AccountSnapshot, row: Row[Any] | None, since: datetime
) -> tuple[AccountCheck, StoredAccount | None, datetime | None]:
    """The account-level comparison, and where to compare transactions from (None: nowhere)."""
    record = snapshot.account
    check = AccountCheck(f"account ...{record.number_last4}", record.name)
    if row is None:
        check.problem = "listed by the provider, not stored"
        return check, None, None
    check.balances_match = snapshot.balances.content_hash == row.balances_hash
    check.positions_match = snapshot.positions_hash == row.positions_hash
    account = StoredAccount(
        row.id, row.provider_account_id, row.transactions_synced_to, row.number_last4
    )
    synced_to = account.transactions_synced_to
    if synced_to is None:
        check.problem = "transactions never synced"
        return check, None, None
    start = align(since)
    if start >= synced_to:
        return check, None, None
    check.range = (start, synced_to)
    return check, account, start
