"""Dev and test side by side: a dev environment with data survives two full test runs.

A second, isolated copy of both environments is made in a temporary folder (its own env
files, state and ports), so this never touches the developer's real dev environment. The
test runs are the same code path as `make test`: `dashtam test-prepare`, then pytest.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from dashtam.core.config import PROJECT_ROOT
from dashtam.devenv.isolated import make_isolated_copy
from dashtam.devenv.redis import authenticated_ping

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]
DEV_ROWS = 5


def run(command: list[str], env: dict[str, str], timeout: float = 240) -> str:
    result = subprocess.run(
        command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{output[-3000:]}"
    return output


async def dev_user_count(env: dict[str, str], add: int = 0) -> int:
    """Connect as the dev role; optionally add `add` users first. Returns the user count."""
    connection = await asyncpg.connect(
        host="127.0.0.1",
        port=int(env["POSTGRES_PORT"]),
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        database=env["POSTGRES_DB"],
    )
    try:
        await connection.execute(
            "INSERT INTO users (id, email, name, password_hash, is_active) "
            "SELECT gen_random_uuid(), 'dev' || n || '@example.com', 'Dev', 'x', true "
            "FROM generate_series(1, $1::int) AS n",
            add,
        )
        return int(await connection.fetchval("SELECT count(*) FROM users"))
    finally:
        await connection.close()


def test_dev_data_and_health_survive_two_test_runs(tmp_path: Path) -> None:
    copy = make_isolated_copy(tmp_path)
    dev = copy.settings["dev"]
    process_env = copy.process_env
    dashtam = [sys.executable, "-m", "dashtam.cli"]
    try:
        run([*dashtam, "up", "--env", "dev", "--services-only"], process_env)
        assert asyncio.run(dev_user_count(dev, add=DEV_ROWS)) == DEV_ROWS
        for _ in range(2):
            run([*dashtam, "test-prepare"], process_env)
            output = run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "tests/integration"],
                process_env,
            )
            assert " passed" in output
            assert " failed" not in output
        assert asyncio.run(dev_user_count(dev)) == DEV_ROWS
        assert authenticated_ping(
            int(dev["REDIS_PORT"]), dev["REDIS_USERNAME"], dev["REDIS_PASSWORD"]
        )
        status = run([*dashtam, "status"], process_env)
        dev_lines = [line for line in status.splitlines() if "│ dev " in line]
        assert any("postgres" in line and "healthy" in line for line in dev_lines), status
        assert any("redis" in line and "healthy" in line for line in dev_lines), status
    finally:
        subprocess.run([*dashtam, "clean", "--env", "test", "--yes"], env=process_env, check=False)
        subprocess.run([*dashtam, "clean", "--env", "dev", "--yes"], env=process_env, check=False)
