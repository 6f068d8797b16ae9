"""Fault injection: make the sandbox fail the way Schwab does, on demand.

Three sources, first match wins: the ``X-Sandbox-Fault`` request header, faults scheduled with
``POST /sandbox/faults`` (for tests driving the sandbox from another process), and the
``fault_*_every`` settings. ``latency_ms`` delays every guarded request.
"""

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from dashtam.sandbox.config import SandboxConfig
from dashtam.sandbox.errors import SandboxError, oauth_error, trader_error
from dashtam.sandbox.stats import Stats

FAULT_HEADER = "X-Sandbox-Fault"
FaultKind = Literal["rate_limit", "server_error", "expired_token", "slow"]
Target = Literal["trader", "token"]


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    delay_ms: int = 0


def parse_fault(text: str) -> Fault:
    """``rate_limit``, ``server_error``, ``expired_token`` or ``slow:<ms>``, else ValueError."""
    kind, _, argument = text.strip().partition(":")
    if kind == "slow" and argument.isdigit():
        return Fault("slow", int(argument))
    for known in get_args(FaultKind):
        if kind == known and known != "slow" and not argument:
            return Fault(known)
    raise ValueError(
        f"Unknown fault {text!r}; use rate_limit, server_error, expired_token, slow:<ms>."
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
        self._scheduled: dict[Target, deque[Fault]] = {"trader": deque(), "token": deque()}
        self._calls: dict[Target, int] = {"trader": 0, "token": 0}

    def scheduled(self) -> dict[Target, list[str]]:
        """The faults still to come, per target, in order (kept across restarts)."""
        return {target: [fault_text(f) for f in queue] for target, queue in self._scheduled.items()}

    def restore(self, scheduled: Mapping[str, list[str]]) -> None:
        for target, queue in self._scheduled.items():
            queue.extend(parse_fault(text) for text in scheduled.get(target, []))

    def schedule(self, fault: Fault, count: int, target: Target) -> None:
        """Make the next ``count`` requests to ``target`` fail with ``fault``."""
        self._scheduled[target].extend([fault] * count)
        self.on_change()

    def clear(self) -> None:
        for queue in self._scheduled.values():
            queue.clear()
        self.on_change()

    def _next(self, header: str | None, target: Target) -> Fault | None:
        self._calls[target] += 1
        if header:
            try:
                return parse_fault(header)
            except ValueError as exc:
                raise trader_error(400, "Bad Request", str(exc)) from exc
        if self._scheduled[target]:
            fault = self._scheduled[target].popleft()
            self.on_change()
            return fault
        if target == "trader":
            rules: tuple[tuple[int, FaultKind], ...] = (
                (self.config.fault_rate_limit_every, "rate_limit"),
                (self.config.fault_server_error_every, "server_error"),
            )
            for every, kind in rules:
                if every and self._calls[target] % every == 0:
                    return Fault(kind)
        return None

    async def apply(self, header: str | None, target: Target) -> None:
        """Sleep and/or raise as the active fault says; return normally otherwise."""
        fault = self._next(header, target)
        delay_ms = self.config.latency_ms + (fault.delay_ms if fault else 0)
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        if fault is not None:
            self.stats.faults_injected += 1
            error = fault_error(fault.kind, target)
            if error is not None:
                raise error
