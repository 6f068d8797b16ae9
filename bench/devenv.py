"""How fast the environments come up, and what per-test isolation costs.

Everything runs on an isolated copy of the environments (own folder, own ports), so the
developer's dev and test environments are not touched.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

from bench.common import median_of, run_checked, timed
from dashtam.core.config import PROJECT_ROOT
from dashtam.devenv.isolated import IsolatedCopy, make_isolated_copy
from dashtam.devenv.manager import EnvironmentManager
from dashtam.devenv.profiles import Profile

RUNS = 5
ISOLATION_TESTS = 1000
DASHTAM = [sys.executable, "-m", "dashtam.cli"]

_GENERATED_TESTS = """
import pytest
from sqlalchemy import text


@pytest.mark.parametrize("n", range({count}))
async def test_trivial_db(session, n):
    assert await session.scalar(text("SELECT 1")) == 1


@pytest.mark.parametrize("n", range({count}))
async def test_trivial_plain(n):
    assert n >= 0
"""


def isolation_overhead_ms(copy: IsolatedCopy, folder: Path) -> dict[str, float]:
    """Median per-test time of trivial DB tests (transaction + rollback) over plain ones."""
    test_file = folder / "test_generated_isolation.py"
    test_file.write_text(textwrap.dedent(_GENERATED_TESTS.format(count=ISOLATION_TESTS)))
    timings_file = folder / "timings.json"
    pytest_command = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist"]
    pytest_command += ["-p", "tests.conftest", "-p", "bench.timing_plugin"]
    pytest_command += ["-c", str(PROJECT_ROOT / "pyproject.toml"), "--rootdir", str(PROJECT_ROOT)]
    run_checked(
        [*pytest_command, str(test_file)],
        {**copy.process_env, "DASHTAM_BENCH_TIMINGS": str(timings_file)},
    )
    timings: dict[str, float] = json.loads(timings_file.read_text())

    def median_ms(prefix: str) -> float:
        return statistics.median(v for k, v in timings.items() if k.startswith(prefix)) * 1000

    db, plain = median_ms("test_trivial_db"), median_ms("test_trivial_plain")
    return {
        "isolation_db_test_median_ms": db,
        "isolation_plain_test_median_ms": plain,
        "isolation_overhead_ms": db - plain,
    }


def run() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="dashtam-bench-", dir="/var/tmp") as tmp:
        folder = Path(tmp)
        copy = make_isolated_copy(folder)
        env = copy.process_env
        test = Profile("test", ephemeral=True, env_dir=folder / "env", state_root=folder / "state")

        def prepare() -> None:
            """What `make test` does before pytest: services up, test database rebuilt."""
            EnvironmentManager(test, say=lambda _message: None).up(servers=False)

        def stop_test() -> None:
            EnvironmentManager(test, say=lambda _message: None).stop_services()

        def cli(*args: str) -> Callable[[], str]:
            return lambda: run_checked([*DASHTAM, *args], env)

        def make(target: str) -> Callable[[], str]:
            return lambda: run_checked(["make", "-s", target], env)

        results: dict[str, float] = {}
        try:
            results["test_env_ready_from_nothing_s"] = timed(prepare)
            results["test_env_ready_running_s"] = median_of(prepare, RUNS)
            results["test_env_ready_from_stopped_s"] = median_of(prepare, RUNS, before=stop_test)
            results["test_prepare_cli_running_s"] = median_of(cli("test-prepare"), RUNS)
            results.update(isolation_overhead_ms(copy, folder))
            results["make_up_first_time_s"] = timed(make("up"))
            results["make_up_to_healthy_s"] = median_of(make("up"), 3, before=make("down"))
            results["make_up_when_running_s"] = median_of(make("up"), 3)
        finally:
            cli("clean", "--env", "dev", "--yes")()
            cli("clean", "--env", "test", "--yes")()
        return results


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name:40s} {value:10.3f}")
