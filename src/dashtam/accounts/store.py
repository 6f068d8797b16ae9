"""Bulk writes of synced data: one statement per batch, and nothing written when nothing changed.

Batches are passed as arrays and expanded with ``unnest`` (see docs/accounts.md for why this beats
COPY into a staging table at our batch sizes); amounts travel as decimal text and are cast to
NUMERIC by PostgreSQL, so no float is ever involved.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from dashtam.accounts.schwab import AccountSnapshot, PositionRecord, TransactionBatch
from dashtam.accounts.windows import Window


@dataclass(frozen=True, slots=True)
class StoredAccount:
    id: uuid.UUID
    provider_account_id: str
    transactions_synced_to: datetime | None
    number_last4: str

    @property
    def label(self) -> str:
        """How messages name the account: never more of its number than the last four."""
        return f"account ...{self.number_last4}"


@dataclass(frozen=True, slots=True)
class WriteCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    marked_missing: int = 0


# An account another active connection of the same user already syncs is left to it (the
# conflict's WHERE fails, so it is not returned); one whose connection stopped working (needs
# re-authorization, disconnected) moves to this connection, keeping its history and watermark.
_UPSERT_ACCOUNTS = text(
    """
    INSERT INTO accounts AS a (id, connection_id, user_id, provider_key, provider_account_id,
                               number_last4, type, name, currency, status, last_synced_at)
    SELECT gen_random_uuid(), :connection_id, o.user_id, o.provider_key, u.provider_id, u.last4,
           u.type, u.name, 'USD', 'active', :now
    FROM unnest(CAST(:provider_ids AS text[]), CAST(:last4s AS text[]),
                CAST(:types AS text[]), CAST(:names AS text[])) AS u(provider_id, last4, type, name)
    CROSS JOIN (SELECT p.user_id, p.provider_key FROM provider_connections c
                JOIN providers p ON p.id = c.provider_id WHERE c.id = :connection_id) AS o
    ON CONFLICT (user_id, provider_key, provider_account_id) DO UPDATE
    SET connection_id = EXCLUDED.connection_id, number_last4 = EXCLUDED.number_last4,
        type = EXCLUDED.type, name = EXCLUDED.name, status = 'active',
        last_synced_at = EXCLUDED.last_synced_at
    WHERE a.connection_id = EXCLUDED.connection_id
       OR NOT EXISTS (SELECT 1 FROM provider_connections h
                      WHERE h.id = a.connection_id AND h.status = 'active')
    RETURNING a.id, a.provider_account_id, a.transactions_synced_to, a.number_last4
    """
)
_CLOSE_UNLISTED = text(
    """
    UPDATE accounts SET status = 'closed'
    WHERE connection_id = :connection_id AND status = 'active'
      AND provider_account_id <> ALL(CAST(:provider_ids AS text[]))
    """
)


async def upsert_accounts(
    conn: AsyncConnection,
    connection_id: uuid.UUID,
    snapshots: Sequence[AccountSnapshot],
    now: datetime,
) -> list[StoredAccount]:
    """Insert or refresh the listed accounts this connection syncs; ones the provider stopped
    listing become closed. Listed accounts another active connection of the user syncs are not
    returned: the user holds each account once."""
    accounts = [s.account for s in snapshots]
    provider_ids = [a.provider_account_id for a in accounts]
    result = await conn.execute(
        _UPSERT_ACCOUNTS,
        {
            "connection_id": connection_id,
            "now": now,
            "provider_ids": provider_ids,
            "last4s": [a.number_last4 for a in accounts],
            "types": [a.type for a in accounts],
            "names": [a.name for a in accounts],
        },
    )
    stored = [StoredAccount(*row) for row in result]
    await conn.execute(
        _CLOSE_UNLISTED, {"connection_id": connection_id, "provider_ids": provider_ids}
    )
    return stored


_INSERT_BALANCES_IF_CHANGED = text(
    """
    INSERT INTO balance_snapshots (id, account_id, as_of, cash_balance, buying_power,
        available_funds, liquidation_value, long_market_value, short_market_value,
        maintenance_requirement, content_hash, raw)
    SELECT :id, :account_id, :now, CAST(:cash AS numeric), CAST(:buying_power AS numeric),
        CAST(:available AS numeric), CAST(:liquidation AS numeric), CAST(:long AS numeric),
        CAST(:short AS numeric), CAST(:maintenance AS numeric), CAST(:hash AS varchar),
        CAST(:raw AS jsonb)
    WHERE (SELECT content_hash FROM balance_snapshots WHERE account_id = :account_id
           ORDER BY as_of DESC LIMIT 1) IS DISTINCT FROM CAST(:hash AS varchar)
    """
)


async def save_balances(
    conn: AsyncConnection, account_id: uuid.UUID, snapshot: AccountSnapshot, now: datetime
) -> bool:
    """A new snapshot only when the balances differ from the latest one; True if written."""
    balances = snapshot.balances
    result = await conn.execute(
        _INSERT_BALANCES_IF_CHANGED,
        {
            "id": uuid.uuid4(),
            "account_id": account_id,
            "now": now,
            "cash": balances.cash_balance,
            "buying_power": balances.buying_power,
            "available": balances.available_funds,
            "liquidation": balances.liquidation_value,
            "long": balances.long_market_value,
            "short": balances.short_market_value,
            "maintenance": balances.maintenance_requirement,
            "hash": balances.content_hash,
            "raw": json.dumps(balances.raw),
        },
    )
    return result.rowcount > 0


_CLAIM_POSITIONS = text(
    """
    UPDATE accounts SET positions_hash = CAST(:hash AS varchar)
    WHERE id = :account_id AND positions_hash IS DISTINCT FROM CAST(:hash AS varchar)
    """
)
_DELETE_POSITIONS = text("DELETE FROM positions WHERE account_id = :account_id")
_INSERT_POSITIONS = text(
    """
    INSERT INTO positions (account_id, symbol, asset_type, cusip, description, long_quantity,
        short_quantity, average_price, market_value, day_profit_loss, day_profit_loss_percent,
        as_of)
    SELECT :account_id, u.symbol, u.asset_type, u.cusip, u.description, u.long::numeric,
        u.short::numeric, u.average::numeric, u.value::numeric, u.day::numeric,
        u.day_percent::numeric, :now
    FROM unnest(CAST(:symbols AS text[]), CAST(:asset_types AS text[]), CAST(:cusips AS text[]),
                CAST(:descriptions AS text[]), CAST(:longs AS text[]), CAST(:shorts AS text[]),
                CAST(:averages AS text[]), CAST(:values AS text[]), CAST(:days AS text[]),
                CAST(:day_percents AS text[]))
         AS u(symbol, asset_type, cusip, description, long, short, average, value, day,
              day_percent)
    """
)


async def replace_positions(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    positions: Sequence[PositionRecord],
    positions_hash: str,
    now: datetime,
) -> bool:
    """Swap the account's positions for these, unless they are what is stored; True if swapped.

    Runs inside the caller's transaction, so readers see the old set or the new one, never a mix.
    """
    claimed = await conn.execute(
        _CLAIM_POSITIONS, {"account_id": account_id, "hash": positions_hash}
    )
    if claimed.rowcount == 0:
        return False
    await conn.execute(_DELETE_POSITIONS, {"account_id": account_id})
    if positions:
        await conn.execute(
            _INSERT_POSITIONS,
            {
                "account_id": account_id,
                "now": now,
                "symbols": [p.symbol for p in positions],
                "asset_types": [p.asset_type for p in positions],
                "cusips": [p.cusip for p in positions],
                "descriptions": [p.description for p in positions],
                "longs": [p.long_quantity for p in positions],
                "shorts": [p.short_quantity for p in positions],
                "averages": [p.average_price for p in positions],
                "values": [p.market_value for p in positions],
                "days": [p.day_profit_loss for p in positions],
                "day_percents": [p.day_profit_loss_percent for p in positions],
            },
        )
    return True


# A window's transactions to stored rows in one statement: the columns arrive as arrays. The upsert
# and the marking of missing rows touch disjoint rows (ids in the batch / ids not in it).
_WRITE_TRANSACTIONS = text(
    """
    WITH batch AS (
        SELECT * FROM unnest(CAST(:provider_ids AS text[]), CAST(:times AS timestamptz[]),
            CAST(:trade_dates AS timestamptz[]), CAST(:settlement_dates AS timestamptz[]),
            CAST(:types AS text[]), CAST(:statuses AS text[]), CAST(:descriptions AS text[]),
            CAST(:symbols AS text[]), CAST(:net_amounts AS text[]), CAST(:items AS text[]),
            CAST(:content_hashes AS text[]))
        AS u(provider_id, time, trade_date, settlement_date, type, status, description, symbol,
             net_amount, items, content_hash)
    ),
    upserted AS (
        INSERT INTO transactions AS t (account_id, provider_transaction_id, time, trade_date,
            settlement_date, type, status, description, symbol, net_amount, items, content_hash)
        SELECT :account_id, provider_id, time, trade_date, settlement_date, type, status,
            description, symbol, net_amount::numeric, items::jsonb, content_hash
        FROM batch
        ON CONFLICT (account_id, provider_transaction_id) DO UPDATE
        SET time = EXCLUDED.time, trade_date = EXCLUDED.trade_date,
            settlement_date = EXCLUDED.settlement_date, type = EXCLUDED.type,
            status = EXCLUDED.status, description = EXCLUDED.description,
            symbol = EXCLUDED.symbol, net_amount = EXCLUDED.net_amount, items = EXCLUDED.items,
            content_hash = EXCLUDED.content_hash, missing_since = NULL, updated_at = now()
        WHERE t.content_hash <> EXCLUDED.content_hash OR t.missing_since IS NOT NULL
        RETURNING xmax = 0 AS inserted
    ),
    missing AS (
        UPDATE transactions AS t SET missing_since = :now, updated_at = now()
        WHERE CAST(:mark_missing AS boolean)
          AND t.account_id = :account_id AND t.time >= :window_start AND t.time < :window_end
          AND t.missing_since IS NULL
          AND NOT EXISTS (SELECT 1 FROM batch b WHERE b.provider_id = t.provider_transaction_id)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM batch),
           (SELECT count(*) FILTER (WHERE inserted) FROM upserted),
           (SELECT count(*) FILTER (WHERE NOT inserted) FROM upserted),
           (SELECT count(*) FROM missing)
    """
)


# Searching a window's stored rows for ones the provider no longer returns gets a plan made for
# this batch: the prepared statement's cached plan was seen taking 0.5 s for a 1,500-row window
# that a fresh plan does in 20 ms (a full re-sync ran 5x slower). A first sync has nothing to
# search and keeps the cached plan, which is cheaper to run there.
_CUSTOM_PLAN = text("SET LOCAL plan_cache_mode = force_custom_plan")


async def write_transactions(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    window: Window,
    batch: TransactionBatch,
    now: datetime,
    *,
    mark_missing: bool = True,
) -> WriteCounts:
    """Make the stored window equal `batch`, the provider's transactions in it.

    New ids are inserted, changed ones (content differs, e.g. pending -> posted) updated, equal
    ones left untouched, and stored ones in the window that the provider no longer returns marked
    missing (``mark_missing=False`` skips that search when the caller knows nothing is stored in
    the window, as in a first sync).
    """
    params = {
        "mark_missing": mark_missing,
        "account_id": account_id,
        "now": now,
        "window_start": window.start,
        "window_end": window.end,
        "provider_ids": batch.provider_ids,
        "times": batch.times,
        "trade_dates": batch.trade_dates,
        "settlement_dates": batch.settlement_dates,
        "types": batch.types,
        "statuses": batch.statuses,
        "descriptions": batch.descriptions,
        "symbols": batch.symbols,
        "net_amounts": batch.net_amounts,
        "items": batch.items,
        "content_hashes": batch.content_hashes,
    }
    if mark_missing:
        await conn.execute(_CUSTOM_PLAN)
    counted, inserted, updated, missing = (await conn.execute(_WRITE_TRANSACTIONS, params)).one()
    return WriteCounts(inserted, updated, counted - inserted - updated, missing)
