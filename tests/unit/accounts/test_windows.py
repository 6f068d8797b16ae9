"""Window planning: capped answers are split until none is, and windows tile the range."""

from __future__ import annotations

import bisect
import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest

from dashtam.accounts.schwab import (
    MAX_TRANSACTIONS_PER_CALL,
    MAX_WINDOW,
    Page,
    SyncError,
    TransactionBatch,
)
from dashtam.accounts.sync import transaction_windows

END = datetime(2025, 1, 1, tzinfo=UTC)


class FakeProvider:
    """Answers like the sandbox: the oldest rows of the window, at most the cap."""

    def __init__(self, times: list[datetime]) -> None:
        self.times = sorted(times)
        self.calls: list[tuple[datetime, datetime]] = []

    async def transactions(self, _hash: str, start: datetime, end: datetime) -> Page:
        self.calls.append((start, end))
        assert end - start <= MAX_WINDOW
        low, high = bisect.bisect_left(self.times, start), bisect.bisect_left(self.times, end)
        found = self.times[low:high][:MAX_TRANSACTIONS_PER_CALL]
        return Page(TransactionBatch(times=found), len(found))


def spread(count: int, days: int, seed: int = 1) -> list[datetime]:
    rng = random.Random(seed)
    return [END - timedelta(seconds=rng.randrange(days * 86400)) for _ in range(count)]


async def windows(provider: FakeProvider, start: datetime) -> list[tuple[datetime, datetime, int]]:
    return [
        (w.start, w.end, w.rows)
        async for w in transaction_windows(provider, "hash", start, END)  # type: ignore[arg-type]
    ]


@pytest.mark.parametrize(
    ("count", "days", "most_wasted"),
    [(0, 730, 0), (500, 730, 0), (40_000, 730, 3), (9000, 3, 12)],  # last: all in the end
)
async def test_windows_tile_the_range_and_hold_every_row(
    count: int, days: int, most_wasted: int
) -> None:
    provider = FakeProvider(spread(count, days))
    start = END - timedelta(days=730)

    found = await windows(provider, start)

    assert found[0][0] == start
    assert found[-1][1] == END
    assert all(a[1] == b[0] for a, b in itertools.pairwise(found))
    assert sum(rows for _, _, rows in found) == count
    assert all(rows < MAX_TRANSACTIONS_PER_CALL for _, _, rows in found)
    assert len(provider.calls) - len(found) <= most_wasted  # capped answers thrown away


async def test_more_rows_in_one_second_than_the_cap_is_an_error() -> None:
    provider = FakeProvider([END - timedelta(seconds=5)] * MAX_TRANSACTIONS_PER_CALL)

    with pytest.raises(SyncError, match="one second"):
        await windows(provider, END - timedelta(days=1))
