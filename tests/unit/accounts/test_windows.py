"""Window planning: the windows partition the range, every row is fetched by exactly one window,
whatever the data, the row cap and the split points; and a run that dies and resumes leaves no
gap. The provider is a model answering the planner's contract: a window's rows, or a capped
answer once they reach the cap."""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashtam.accounts.windows import (
    RESOLUTION,
    Answer,
    Limits,
    Window,
    WindowError,
    align,
    plan_windows,
    resume_start,
)

BASE = datetime(2025, 1, 1, tzinfo=UTC)
MS = RESOLUTION


def at(ms: int, us: int = 0) -> datetime:
    return BASE + ms * MS + timedelta(microseconds=us)


@dataclass(frozen=True)
class Rows:
    """A model answer: (time, id) pairs."""

    rows_in: tuple[tuple[datetime, int], ...]
    capped_at: int | None = None

    @property
    def rows(self) -> int:
        return self.capped_at if self.capped_at is not None else len(self.rows_in)

    @property
    def newest(self) -> datetime | None:
        return max((t for t, _ in self.rows_in), default=None)


@dataclass
class Provider:
    """Rows sorted by time; a capped answer holds the oldest (or newest) `cap` rows."""

    rows: list[tuple[datetime, int]]
    cap: int
    keep_newest: bool = False
    requests: list[Window] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rows.sort()
        self.times = [t for t, _ in self.rows]

    async def fetch(self, window: Window) -> Rows:
        self.requests.append(window)
        low = bisect.bisect_left(self.times, window.start)
        high = bisect.bisect_left(self.times, window.end)
        found = self.rows[low:high]
        if len(found) >= self.cap:
            kept = found[-self.cap :] if self.keep_newest else found[: self.cap]
            return Rows(tuple(kept), capped_at=self.cap)
        return Rows(tuple(found))


class Splits:
    """A span rule that replays hypothesis's choices: a fraction of the window (of the longest
    window, when choosing the next one), a boundary exactly on one of the answer's rows, or a
    microsecond after it (the shape of the old gap)."""

    def __init__(self, choices: list[tuple[str, float]], *, of_longest: bool = False) -> None:
        self.choices = itertools.cycle(choices or [("fraction", 0.5)])
        self.of_longest = of_longest

    def __call__(self, window: Window, answer: Answer, limits: Limits) -> timedelta:
        kind, value = next(self.choices)
        rows = sorted(t for t, _ in getattr(answer, "rows_in", ()))
        if kind == "fraction" or not rows:
            return (limits.max_window if self.of_longest else window.span) * value
        row = rows[min(len(rows) - 1, int(value * len(rows)))]
        return row - window.start + timedelta(microseconds=1 if kind == "after" else 0)


async def collect(
    provider: Provider,
    start: datetime,
    end: datetime,
    limits: Limits,
    split: Splits | None = None,
    advance: Splits | None = None,
    stop_after: int | None = None,
) -> list[tuple[Window, Rows]]:
    found = []
    kwargs = {}
    if split is not None:
        kwargs["split"] = split
    if advance is not None:
        kwargs["advance"] = advance
    async for fetched in plan_windows(provider.fetch, start, end, limits, **kwargs):
        found.append((fetched.window, fetched.answer))
        if stop_after is not None and len(found) == stop_after:
            break
    return found


def instants(max_ms: int) -> st.SearchStrategy[list[int]]:
    """Times in whole ms, with runs of equal instants (several rows at one time)."""
    single = st.integers(0, max_ms)
    clustered = st.tuples(single, st.integers(1, 6)).map(lambda pair: [pair[0]] * pair[1])
    return st.lists(st.one_of(single.map(lambda t: [t]), clustered), max_size=60).map(
        lambda groups: [t for group in groups for t in group]
    )


choice = st.tuples(st.sampled_from(["fraction", "on", "after"]), st.floats(0.05, 0.95))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    times=instants(4000),
    cap=st.integers(2, 12),
    splits=st.lists(choice, max_size=8),
    advances=st.lists(choice, max_size=8),
    start_us=st.integers(0, 1500 * 1000),
    end_us=st.integers(2500 * 1000, 4200 * 1000),
    keep_newest=st.booleans(),
)
async def test_windows_partition_the_range_and_fetch_every_row_once(
    times: list[int],
    cap: int,
    splits: list[tuple[str, float]],
    advances: list[tuple[str, float]],
    start_us: int,
    end_us: int,
    keep_newest: bool,
) -> None:
    provider = Provider([(at(t), n) for n, t in enumerate(times)], cap, keep_newest)
    limits = Limits(row_cap=cap, max_window=1000 * MS, min_window=MS)
    start, end = at(0, start_us), at(0, end_us)
    inside = {n for n, t in enumerate(times) if align(start) <= at(t) < align(end)}
    crowded = Counter(t for n, t in enumerate(times) if n in inside).most_common(1)

    if crowded and crowded[0][1] >= cap:  # more rows at one instant than any answer holds
        with pytest.raises(WindowError):
            await collect(
                provider, start, end, limits, Splits(splits), Splits(advances, of_longest=True)
            )
        return
    found = await collect(
        provider, start, end, limits, Splits(splits), Splits(advances, of_longest=True)
    )

    windows = [w for w, _ in found]
    assert windows[0].start == align(start)
    assert windows[-1].end == align(end)
    assert all(a.end == b.start for a, b in itertools.pairwise(windows))
    assert all(answer.capped_at is None for _, answer in found)
    fetched = Counter(n for _, answer in found for _, n in answer.rows_in)
    assert set(fetched) == inside
    assert set(fetched.values()) <= {1}
    assert all(t in w for w, answer in found for t, _ in answer.rows_in)
    assert all(w.span <= limits.max_window for w in windows)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    times=instants(6000),
    pending=st.sets(st.integers(0, 59), max_size=5),
    cap=st.integers(3, 12),
    attempts=st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 400), st.lists(choice, max_size=4)),
        min_size=1,
        max_size=5,
    ),
    overlap_ms=st.integers(0, 800),
)
async def test_a_run_that_dies_and_resumes_leaves_no_gap(
    times: list[int],
    pending: set[int],
    cap: int,
    attempts: list[tuple[int, int, list[tuple[str, float]]]],
    overlap_ms: int,
) -> None:
    """Each attempt commits some windows (the watermark is the last one's end) and dies; the
    next one starts where sync would start it, a little later; the last one finishes."""
    if Counter(times).most_common(1) and Counter(times).most_common(1)[0][1] >= cap:
        times = sorted(set(times))  # the crowded case is the test above's
    provider = Provider([(at(t), n) for n, t in enumerate(times)], cap)
    limits = Limits(row_cap=cap, max_window=1500 * MS, min_window=MS)
    history = 5000 * MS
    now = at(4000, 123)
    store: dict[int, datetime] = {}
    watermark: datetime | None = None
    for number, (windows_committed, later_ms, splits) in enumerate(attempts):
        last = number == len(attempts) - 1
        now += later_ms * MS + timedelta(microseconds=7)
        oldest_pending = min((store[n] for n in store if n in pending), default=None)
        start = resume_start(now - history, watermark, overlap_ms * MS, oldest_pending)
        if watermark is not None:
            assert start <= max(watermark, align(now - history))
        if last:
            found = await collect(provider, start, now, limits, Splits(splits))
        elif windows_committed:
            found = await collect(
                provider, start, now, limits, Splits(splits), stop_after=windows_committed
            )
        else:
            found = []  # died before its first commit
        for window, answer in found:
            store.update({n: t for t, n in answer.rows_in})
            watermark = window.end

    expected = {n for n, t in enumerate(times) if align(now - history) <= at(t) < align(now)}
    assert expected <= set(store)
    assert set(store) <= set(range(len(times)))


async def test_a_capped_answer_at_the_shortest_window_names_the_window() -> None:
    provider = Provider([(at(500), n) for n in range(5)], cap=5)

    with pytest.raises(WindowError, match=r"maximum of 5 rows for \[2025-01-01T00:00:00\.500Z"):
        await collect(provider, at(0), at(1000), Limits(5, 1000 * MS, min_window=MS))


async def test_realistic_density_wastes_few_requests() -> None:
    """Two years of 40,000 rows at Schwab's limits: a handful of capped answers, not dozens."""
    step = timedelta(days=730) / 40_000
    rows = [(align(BASE + step * n), n) for n in range(40_000)]
    provider = Provider(rows, cap=3000)
    limits = Limits(3000, timedelta(days=364))

    found = await collect(provider, BASE, BASE + timedelta(days=730), limits)

    assert sum(len(answer.rows_in) for _, answer in found) == 40_000
    assert len(provider.requests) - len(found) <= 3


def test_windows_refuse_ends_finer_than_the_resolution() -> None:
    with pytest.raises(ValueError, match="whole milliseconds"):
        Window(at(0, 1), at(10))
    with pytest.raises(ValueError, match="start before"):
        Window(at(10), at(10))
    assert at(5) in Window(at(5), at(6))
    assert at(6) not in Window(at(5), at(6))


def test_a_resumed_run_starts_at_or_before_the_watermark() -> None:
    earliest, mark = at(0, 999), at(3000, 500)
    assert resume_start(earliest, None, MS * 100, None) == at(0)
    assert resume_start(earliest, mark, MS * 100, None) == at(2900)
    assert resume_start(earliest, mark, MS * 100, at(1000, 1)) == at(1000)
    assert resume_start(earliest, mark, MS * 9000, None) == at(0)
