"""A pytest plugin for the isolation benchmark: each test's setup+call+teardown time.

pytest's own junit timings are rounded to milliseconds, too coarse for a 2 ms budget.
Writes `{test name: seconds}` as JSON to the path in DASHTAM_BENCH_TIMINGS.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator
from pathlib import Path

import pytest

_timings: dict[str, float] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    started = time.perf_counter()
    try:
        return (yield)
    finally:
        _timings[item.name] = time.perf_counter() - started


def pytest_sessionfinish() -> None:
    Path(os.environ["DASHTAM_BENCH_TIMINGS"]).write_text(json.dumps(_timings))
