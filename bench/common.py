"""Small helpers shared by the benchmarks: timing, medians, subprocesses."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable

from dashtam.core.config import PROJECT_ROOT


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def median_of(
    action: Callable[[], object], runs: int, before: Callable[[], object] | None = None
) -> float:
    """Median wall time of `action` over `runs`; `before` runs untimed ahead of each."""
    samples = []
    for _ in range(runs):
        if before is not None:
            before()
        samples.append(timed(action))
    return statistics.median(samples)


def run_checked(command: list[str], env: dict[str, str], timeout: float = 300) -> str:
    result = subprocess.run(
        command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed:\n{(result.stdout + result.stderr)[-2000:]}"
        )
    return result.stdout + result.stderr
