"""Transaction windows: half-open ``[start, end)`` intervals, and the planner that covers a range
with windows the provider answers in full.

Which window owns a transaction is decided here and nowhere else: ``start <= time < end``. The
planner, the provider client (what it asks for and what it keeps), the store (which stored rows a
window can mark missing) and verification all use `Window`, so no two of them can disagree.

Every end is a whole millisecond, the resolution of the provider's request parameters, so a
request states a window's ends exactly; before this, windows had microsecond ends that the
request rounded down, and a transaction in the millisecond before a boundary belonged to a window
whose request left it out (docs/accounts.md, "Windows").

Coverage holds by construction: consecutive windows share their boundary, the first starts at the
range's start and the last ends at its end, so the windows partition the range. An answer at the
provider's row cap may be incomplete; the planner then retries a strictly smaller window from the
same start, so it never moves past rows it has not seen. Whatever the split rule proposes is
clamped into that contract, which is why the rule only affects the number of calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, Protocol, TypeVar

RESOLUTION = timedelta(milliseconds=1)


class WindowError(Exception):
    """The planner cannot cover the range (more rows at one instant than the provider returns)."""


def align(instant: datetime) -> datetime:
    """Down to the request resolution."""
    return instant - timedelta(microseconds=instant.microsecond % 1000)


def _whole(span: timedelta) -> timedelta:
    """Down to a whole number of resolution steps."""
    return (span // RESOLUTION) * RESOLUTION


def instant_text(instant: datetime) -> str:
    """``2024-03-28T21:10:42.000Z``: the format of Schwab's request dates, and of our messages."""
    utc = instant.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if align(self.start) != self.start or align(self.end) != self.end:
            raise ValueError(f"window ends must be whole milliseconds: {self}")
        if self.start >= self.end:
            raise ValueError(f"a window must start before it ends: {self}")

    def __contains__(self, instant: datetime) -> bool:
        return self.start <= instant < self.end

    @property
    def span(self) -> timedelta:
        return self.end - self.start

    def __str__(self) -> str:
        return f"[{instant_text(self.start)}, {instant_text(self.end)})"


class Answer(Protocol):
    """What the planner needs of a provider's answer for one window."""

    @property
    def rows(self) -> int:
        """Rows as sent, to compare with the row cap."""

    @property
    def newest(self) -> datetime | None:
        """The latest time among the window's rows: it hints at how dense the rows are."""


A = TypeVar("A", bound=Answer)


@dataclass(frozen=True, slots=True)
class Limits:
    """What the provider allows per request."""

    row_cap: int  # an answer of this many rows may have been cut short
    max_window: timedelta  # the longest range one request may ask for
    min_window: timedelta = timedelta(seconds=1)  # below this, a capped answer is an error

    def __post_init__(self) -> None:
        if _whole(self.min_window) != self.min_window or self.min_window <= timedelta(0):
            raise ValueError("min_window must be a positive whole number of milliseconds")
        if _whole(self.max_window) < self.min_window:
            raise ValueError("max_window must be at least min_window")

    @property
    def target_rows(self) -> int:
        """Rows a window aims for: well under the cap, so density changes rarely hit it."""
        return max(1, self.row_cap // 2)


@dataclass(frozen=True, slots=True)
class Fetched(Generic[A]):
    window: Window
    answer: A
    calls: int  # requests it took, counting capped answers that were thrown away


SplitRule = Callable[[Window, Answer, Limits], timedelta]


def density_split(window: Window, answer: Answer, limits: Limits) -> timedelta:
    """After a capped answer: the span the rows seen suggest would hold `target_rows`."""
    if answer.newest is None or answer.newest <= window.start or answer.rows == 0:
        return window.span / 2
    return (answer.newest - window.start) * limits.target_rows / answer.rows


def next_span(window: Window, answer: Answer, limits: Limits) -> timedelta:
    """After a complete answer: the span that would hold `target_rows` at the density seen."""
    if answer.rows == 0:
        return limits.max_window
    return window.span * limits.target_rows / answer.rows


def _clamp(span: timedelta, low: timedelta, high: timedelta) -> timedelta:
    return max(low, min(high, _whole(span)))


async def plan_windows(
    fetch: Callable[[Window], Awaitable[A]],
    start: datetime,
    end: datetime,
    limits: Limits,
    split: SplitRule = density_split,
    advance: SplitRule = next_span,
) -> AsyncIterator[Fetched[A]]:
    """Complete answers for windows partitioning ``[align(start), align(end))``, oldest first.

    ``fetch`` must return every row the provider has with ``start <= time < end`` unless the
    answer reaches the row cap. ``split`` proposes the span to retry with after a capped answer,
    clamped to ``[min_window, half the capped span]`` so it shrinks every time; ``advance`` the
    span of the next window after a complete one, clamped to ``[min_window, max_window]``.
    """
    cursor, stop = align(start), align(end)
    span = _whole(limits.max_window)
    calls = 0
    while cursor < stop:
        window = Window(cursor, min(cursor + span, stop))
        answer = await fetch(window)
        calls += 1
        if answer.rows >= limits.row_cap:
            if window.span <= limits.min_window:
                raise WindowError(
                    f"the provider returned its maximum of {limits.row_cap} rows for {window}, "
                    f"which is already the shortest window ({limits.min_window}) Dashtam asks for"
                )
            half = max(limits.min_window, _whole(window.span / 2))
            span = _clamp(split(window, answer, limits), limits.min_window, half)
            continue
        yield Fetched(window, answer, calls)
        calls = 0
        span = _clamp(advance(window, answer, limits), limits.min_window, limits.max_window)
        cursor = window.end


def resume_start(
    earliest: datetime,
    synced_to: datetime | None,
    overlap: timedelta,
    oldest_pending: datetime | None,
) -> datetime:
    """Where a run starts: the history's start on a first sync, else the watermark less the
    overlap, or the oldest transaction still pending if that is earlier; never before `earliest`.

    The watermark is the end of the last window committed, so everything before it is stored and
    a run that starts at or before it leaves no gap.
    """
    if synced_to is None:
        return align(earliest)
    start = synced_to - overlap
    if oldest_pending is not None:
        start = min(start, oldest_pending)
    return align(max(earliest, start))
