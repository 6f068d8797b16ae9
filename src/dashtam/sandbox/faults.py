"""Fault injection: make the sandbox fail the way Schwab does, on demand.

Three sources, first match wins: the ``X-Sandbox-Fault`` request header, faults scheduled with
``POST /sandbox/faults`` (for tests driving the sandbox from another process), and the
``fault_*_every`` settings. ``latency_ms`` delays every guarded request.

A scheduled fault may be aimed: at requests whose path matches a pattern (``fnmatch``), after
letting a number of them through. ``hold`` keeps a request waiting until
``POST /sandbox/faults/release``, so a test in another process can act at that exact point of a
client's work (kill it, say) before the answer is sent.
"""

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal, Self, get_args

from dashtam.sandbox.config import SandboxConfig
from dashtam.sandbox.errors import SandboxError, oauth_error, trader_error
from dashtam.sandbox.stats import Stats

FAULT_HEADER = "X-Sandbox-Fault"
FaultKind = Literal["rate_limit", "server_error", "expired_token", "slow", "hold"]
Target = Literal["trader", "token"]


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    delay_ms: int = 0


def parse_fault(text: str) -> Fault:
    """``rate_limit``, ``server_error``, ``expired_token``, ``hold`` or ``slow:<ms>``, else
    ValueError."""
    kind, _, argument = text.strip().partition(":")
    if kind == "slow" and argument.isdigit():
        return Fault("slow", int(argument))
    for known in get_args(FaultKind):
        if kind == known and known != "slow" and not argument:
            return Fault(known)
    raise ValueError(
        f"Unknown fault {text!r}; use rate_limit, server_error, expired_token, hold, slow:<ms>."
    )


def fault_error(kind: FaultKind, target: Target) -> SandboxError | None:
    """The answer Schwab gives in that situation; None for faults that only delay."""
    if kind == "rate_limit":
        headers = {"Retry-After": "1"}
        if target == "token":
            return oauth_error(429, "temporarily_unavailable", "Rate limit exceeded.", headers)
        return trader_error(429, "Too Many Requests", "Rate limit exceeded.", headers=headers)
    if kind == "server_error":
        if target == "token":
            return oauth_error(500, "server_error", "Internal server error.")
        return trader_error(500, "Internal Server Error", "Unexpected error.")
    if kind == "expired_token":
        if target == "token":
            return oauth_error(
                400, "invalid_grant", "Refresh token is invalid, expired or revoked."
            )
        return trader_error(401, "Unauthorized", "Access token is invalid or expired.")
    return None


def fault_text(fault: Fault) -> str:
    """The inverse of ``parse_fault``."""
    return f"slow:{fault.delay_ms}" if fault.kind == "slow" else fault.kind


@dataclass(slots=True)
class Scheduled:
    fault: Fault
    count: int  # requests it still fails
    path: str | None = None  # fnmatch pattern; None matches every request
    skip: int = 0  # matching requests to let through first (whatever else happens to them)

    def due(self, path: str) -> bool:
        """Count this request against the skip; whether it is this entry's to fail."""
        if self.path is not None and not fnmatchcase(path, self.path):
            return False
        if self.skip:
            self.skip -= 1
            return False
        return True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"fault": fault_text(self.fault)}

    @classmethod
    def from_saved(cls, saved: str | Mapping[str, Any]) -> Self:
        """From `as_dict`, or a bare fault text (state files written before faults were aimed)."""
        if isinstance(saved, str):
            return cls(parse_fault(saved), 1)
        return cls(parse_fault(saved["fault"]), saved["count"], saved["path"], saved["skip"])


@dataclass(slots=True)
class Held:
    path: str
    query: str
    released: asyncio.Event = field(default_factory=asyncio.Event)


class FaultInjector:
    def __init__(
        self,
        config: SandboxConfig,
        stats: Stats,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.stats = stats
        self.on_change = on_change
        self._scheduled: dict[Target, list[Scheduled]] = {"trader": [], "token": []}
        self._calls: dict[Target, int] = {"trader": 0, "token": 0}
        self.held: list[Held] = []

    def scheduled(self) -> dict[Target, list[dict[str, Any]]]:
        """The faults still to come, per target, in order (kept across restarts)."""
        return {t: [entry.as_dict() for entry in queue] for t, queue in self._scheduled.items()}

    def restore(self, scheduled: Mapping[str, list[Any]]) -> None:
        for target, queue in self._scheduled.items():
            queue.extend(Scheduled.from_saved(saved) for saved in scheduled.get(target, []))

    def schedule(
        self,
        fault: Fault,
        count: int,
        target: Target,
        *,
        path: str | None = None,
        skip: int = 0,
    ) -> None:
        """Make the next ``count`` requests to ``target`` (whose path matches ``path``, after
        ``skip`` of them) fail with ``fault``."""
        self._scheduled[target].append(Scheduled(fault, count, path, skip))
        self.on_change()

    def clear(self) -> None:
        for queue in self._scheduled.values():
            queue.clear()
        self.release()
        self.on_change()

    def release(self) -> int:
        """Let every held request go on; how many there were."""
        held, self.held = self.held, []
        for request in held:
            request.released.set()
        return len(held)

    def _next(self, header: str | None, target: Target, path: str) -> Fault | None:
        self._calls[target] += 1
        if header:
            try:
                return parse_fault(header)
            except ValueError as exc:
                raise trader_error(400, "Bad Request", str(exc)) from exc
        # Every entry counts every matching request, so each one's skip is independent of the
        # others'; the first one due fails it.
        due = [entry for entry in self._scheduled[target] if entry.due(path)]
        if due:
            entry = due[0]
            entry.count -= 1
            if entry.count == 0:
                self._scheduled[target].remove(entry)
            self.on_change()
            return entry.fault
        if target == "trader":
            rules: tuple[tuple[int, FaultKind], ...] = (
                (self.config.fault_rate_limit_every, "rate_limit"),
                (self.config.fault_server_error_every, "server_error"),
            )
            for every, kind in rules:
                if every and self._calls[target] % every == 0:
                    return Fault(kind)
        return None

    async def apply(
        self, header: str | None, target: Target, path: str = "", query: str = ""
    ) -> None:
        """Sleep, wait and/or raise as the active fault says; return normally otherwise."""
        fault = self._next(header, target, path)
        delay_ms = self.config.latency_ms + (fault.delay_ms if fault else 0)
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        if fault is not None:
            self.stats.faults_injected += 1
            if fault.kind == "hold":
                held = Held(path, query)
                self.held.append(held)
                await held.released.wait()
            error = fault_error(fault.kind, target)
            if error is not None:
                raise error
