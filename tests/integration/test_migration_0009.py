"""Migration 0009 merges the copies of an account two connections of one user had made.

Built in a database of its own at revision 0008 (the old shape, duplicates allowed), then
migrated: one account per (user, provider, provider account id) remains, the copy synced
furthest, holding every transaction any copy had, and every other row is as it was.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy import column, table, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from tests.test_config import TestSettings

from dashtam.core.migrations import upgrade_to

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def at_0008(base_settings: TestSettings, worker_id: str) -> AsyncIterator[AsyncConnection]:
    url = base_settings.owner_database_url
    name = f"dashtam_test_m0009_{worker_id}"
    admin = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, database="postgres"
    )
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    engine = create_async_engine(url.set(database=name))
    try:
        async with engine.connect() as connection:
            await upgrade_to(connection, "0008")
            await connection.commit()
            yield connection
    finally:
        await engine.dispose()
        admin = await asyncpg.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            database="postgres",
        )
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        finally:
            await admin.close()


async def _insert(conn: AsyncConnection, table_name: str, **values: Any) -> None:
    await conn.execute(table(table_name, *(column(c) for c in values)).insert().values(values))


async def _rows(conn: AsyncConnection, sql: str, **params: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in await conn.execute(text(sql), params)]


async def test_copies_merge_into_the_furthest_synced_and_nothing_else_changes(
    at_0008: AsyncConnection,
) -> None:
    conn = at_0008
    user, other_user = uuid.uuid4(), uuid.uuid4()
    for n, uid in enumerate((user, other_user)):
        await _insert(
            conn,
            "users",
            id=uid,
            email=f"m{n}@example.com",
            name="M",
            password_hash="x",
            is_active=True,
        )
    providers = {alias: uuid.uuid4() for alias in ("first", "second", "elsewhere")}
    connections = {alias: uuid.uuid4() for alias in providers}
    for alias, pid in providers.items():
        owner = other_user if alias == "elsewhere" else user
        await _insert(conn, "providers", id=pid, user_id=owner, provider_key="schwab", alias=alias)
        await _insert(
            conn, "provider_connections", id=connections[alias], provider_id=pid, status="active"
        )
    # HASH1 reached by both of the user's connections (the second synced further), HASH2 only
    # by the first, and HASH1 again by another user, whose account it is as well.
    accounts = {
        "first/HASH1": (connections["first"], "HASH1", T0),
        "second/HASH1": (connections["second"], "HASH1", T0.replace(month=6)),
        "first/HASH2": (connections["first"], "HASH2", None),
        "elsewhere/HASH1": (connections["elsewhere"], "HASH1", T0),
    }
    ids = {key: uuid.uuid4() for key in accounts}
    for key, (connection_id, hash_value, synced_to) in accounts.items():
        await _insert(
            conn,
            "accounts",
            id=ids[key],
            connection_id=connection_id,
            provider_account_id=hash_value,
            number_last4="1234",
            type="margin",
            name=key,
            currency="USD",
            status="active",
            transactions_synced_to=synced_to,
        )
    # the first copy has tx 1 and 2, the second 2 and 3: the merged account has 1, 2 and 3
    for key, tx_ids in (
        ("first/HASH1", ("1", "2")),
        ("second/HASH1", ("2", "3")),
        ("first/HASH2", ("9",)),
        ("elsewhere/HASH1", ("1",)),
    ):
        for tx in tx_ids:
            await _insert(
                conn,
                "transactions",
                account_id=ids[key],
                provider_transaction_id=tx,
                time=T0,
                type="TRADE",
                status="posted",
                description=f"{key} {tx}",
                net_amount=1,
                items="[]",
                content_hash=f"{key}{tx}"[:32],
            )
    await conn.commit()
    untouched = "SELECT * FROM transactions WHERE account_id IN (:a, :b) ORDER BY 1"
    before = await _rows(conn, untouched, a=ids["first/HASH2"], b=ids["elsewhere/HASH1"])

    await upgrade_to(conn, "0009")
    await conn.commit()

    kept = await _rows(
        conn, "SELECT id, user_id, provider_key, provider_account_id FROM accounts ORDER BY name"
    )
    assert [(r["id"], r["user_id"], r["provider_account_id"]) for r in kept] == [
        (ids["elsewhere/HASH1"], other_user, "HASH1"),
        (ids["first/HASH2"], user, "HASH2"),
        (ids["second/HASH1"], user, "HASH1"),
    ]
    assert {r["provider_key"] for r in kept} == {"schwab"}
    merged = await _rows(
        conn,
        "SELECT provider_transaction_id AS id, description FROM transactions "
        "WHERE account_id = :a ORDER BY 1",
        a=ids["second/HASH1"],
    )
    # the kept copy's own rows win; the one only the dropped copy had comes along
    assert merged == [
        {"id": "1", "description": "first/HASH1 1"},
        {"id": "2", "description": "second/HASH1 2"},
        {"id": "3", "description": "second/HASH1 3"},
    ]
    after = await _rows(conn, untouched, a=ids["first/HASH2"], b=ids["elsewhere/HASH1"])
    assert after == before
