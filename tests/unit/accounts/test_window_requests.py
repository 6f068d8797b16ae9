"""The client's side of the window contract, against the sandbox over (in-process) HTTP: two
adjacent windows fetch every transaction of their union exactly once, wherever the boundary
falls relative to the transactions, including exactly on one and a millisecond either side."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.sandbox import SandboxTokens

from dashtam.accounts.schwab import RetryPolicy, TraderClient
from dashtam.accounts.windows import RESOLUTION, Window
from dashtam.sandbox.app import create_app
from dashtam.sandbox.config import SandboxConfig

CONFIG = SandboxConfig(
    seed=5,
    accounts=1,
    transactions_per_account=400,
    history_days=20,
    reference_date=date(2025, 6, 1),
)
APP = create_app(CONFIG)
DATA = APP.state.sandbox.data
ACCOUNT = DATA.accounts[0]
TIMES = [
    tx.time
    for tx in DATA.transactions(ACCOUNT).window(
        datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
    )
]


@settings(max_examples=60, deadline=None)
@given(
    row=st.integers(0, len(TIMES) - 1),
    offset_ms=st.sampled_from([-1, 0, 1]),
    before=st.integers(1, 5 * 86_400_000),
    after=st.integers(1, 5 * 86_400_000),
)
async def test_adjacent_windows_fetch_their_union_exactly_once(
    row: int, offset_ms: int, before: int, after: int
) -> None:
    boundary = TIMES[row] + offset_ms * RESOLUTION
    first = Window(boundary - before * RESOLUTION, boundary)
    second = Window(boundary, boundary + after * RESOLUTION)
    transport = httpx.ASGITransport(app=APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as http:
        client = TraderClient(http, SandboxTokens(http, CONFIG), RetryPolicy(max_retries=0))
        pages = [await client.transactions(ACCOUNT.hash_value, w) for w in (first, second)]

    fetched = [pid for page in pages for pid in page.batch.provider_ids]
    book = DATA.transactions(ACCOUNT)
    union = [
        str(tx.activity_id) for tx in book.window(first.start, second.end) if tx.time < second.end
    ]
    assert sorted(fetched) == sorted(union)
    assert len(fetched) == len(set(fetched))
    assert all(
        t in w for page, w in zip(pages, (first, second), strict=True) for t in page.batch.times
    )


def test_the_sandbox_data_has_rows_to_aim_at() -> None:
    assert len(TIMES) == 400
    assert TIMES[0] < TIMES[-1] - timedelta(days=10)
