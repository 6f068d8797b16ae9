"""Redis always requires authentication: the test server as local mode runs it, the container
start script on a real server, and the start-up check that names the setting to fix."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
from tests.test_config import TestSettings

from dashtam.core.errors import ConfigurationError
from dashtam.core.redis import check_redis
from dashtam.devenv.binaries import find_redis_server
from dashtam.devenv.isolated import free_port, make_isolated_copy
from dashtam.devenv.processes import ManagedProcess, wait_until
from dashtam.devenv.profiles import TEST
from dashtam.devenv.redis import authenticated_ping
from dashtam.main import create_app

ROOT = Path(__file__).resolve().parents[2]
REDIS_START = ROOT / "docker" / "redis" / "start.sh"


def client(settings: TestSettings, **overrides: object) -> redis.Redis:
    options: dict[str, object] = {
        "host": "127.0.0.1",
        "port": settings.REDIS_PORT,
        "db": settings.redis_db,
        "socket_timeout": 2,
    }
    options.update(overrides)
    return redis.Redis(**options)  # type: ignore[arg-type]


def test_clients_without_the_password_are_refused(base_settings: TestSettings) -> None:
    with client(base_settings) as anonymous, pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    wrong = client(base_settings, username=base_settings.REDIS_USERNAME, password="wrong")
    with wrong, pytest.raises(redis.AuthenticationError):
        wrong.ping()
    with redis.Redis.from_url(base_settings.redis_url) as ours:
        assert ours.ping()


@pytest.mark.parametrize(
    "command",
    [
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("KEYS", "*"),
        ("CONFIG", "SET", "dir", "/tmp"),
        ("SHUTDOWN", "NOSAVE"),
        ("SAVE",),
        ("ACL", "SETUSER", "default", "on", "nopass"),
        ("MODULE", "LIST"),
    ],
)
def test_the_app_user_cannot_run_dangerous_commands(
    base_settings: TestSettings, command: tuple[str, ...]
) -> None:
    with redis.Redis.from_url(base_settings.redis_url) as ours:
        with pytest.raises(redis.exceptions.NoPermissionError):
            ours.execute_command(*command)
        assert ours.ping()  # still up: SHUTDOWN and friends were refused


def test_the_local_server_listens_on_loopback_only(base_settings: TestSettings) -> None:
    pid = ManagedProcess("redis", TEST.run_dir / "redis.pid", TEST.log_dir / "redis.log")
    running = pid.running_pid()
    if running is None:
        pytest.skip("the test Redis is not one local mode started (docker or external mode)")
    listening = [
        c.laddr
        for c in psutil.Process(running).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert listening, "the server listens nowhere"
    assert {address.ip for address in listening} == {"127.0.0.1"}
    assert {address.port for address in listening} == {base_settings.REDIS_PORT}
    config = (TEST.run_dir / "redis.conf").read_text()
    assert oct((TEST.run_dir / "redis.conf").stat().st_mode & 0o777) == "0o600"
    assert base_settings.REDIS_PASSWORD not in config  # only its SHA-256


@pytest.fixture
def container_redis(tmp_path: Path) -> Iterator[tuple[int, str, str]]:
    """docker/redis/start.sh run for real: the image's entrypoint and redis-server stood in for
    by a pass-through script and this machine's server binary."""
    (tmp_path / "docker-entrypoint.sh").write_text('#!/bin/sh\nexec "$@"\n')
    (tmp_path / "docker-entrypoint.sh").chmod(0o755)
    (tmp_path / "redis-server").symlink_to(find_redis_server())
    port, username, password = free_port(), "dashtam_box", "a password with spaces & $igns"
    process = ManagedProcess("redis", tmp_path / "redis.pid", tmp_path / "redis.log")
    env = {
        "PATH": f"{tmp_path}:{os.environ['PATH']}",
        "REDIS_USERNAME": username,
        "REDIS_PASSWORD": password,
    }
    options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    options += ["--dir", str(tmp_path)]
    process.start(["sh", str(REDIS_START), *options], env=env, cwd=tmp_path)
    try:
        wait_until(
            lambda: authenticated_ping(port, username, password),
            timeout=15,
            what="the container start script's Redis",
            process=process,
        )
        yield port, username, password
    finally:
        process.stop()


def test_the_container_start_script_runs_a_locked_down_server(
    container_redis: tuple[int, str, str],
) -> None:
    port, username, password = container_redis
    with redis.Redis(port=port) as anonymous, pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    with redis.Redis(port=port, username=username, password=password) as ours:
        assert ours.ping()
        with pytest.raises(redis.exceptions.NoPermissionError):
            ours.flushall()


# ---- the start-up check ----------------------------------------------------------------------
def test_check_passes_with_the_right_credentials(base_settings: TestSettings) -> None:
    check_redis(base_settings)


def test_check_names_the_credential_settings(base_settings: TestSettings) -> None:
    wrong = base_settings.model_copy(update={"REDIS_PASSWORD": "not-the-password"})
    with pytest.raises(ConfigurationError, match="refused REDIS_USERNAME / REDIS_PASSWORD"):
        check_redis(wrong)
    unset = base_settings.model_copy(update={"REDIS_PASSWORD": ""})
    with pytest.raises(ConfigurationError, match="requires authentication and REDIS_PASSWORD"):
        check_redis(unset)


def test_check_names_the_url_and_hides_the_password(base_settings: TestSettings) -> None:
    url = f"redis://dashtam_test:hunter2hunter2@127.0.0.1:{base_settings.REDIS_PORT}/1"
    wrong = base_settings.model_copy(update={"REDIS_URL": url})
    with pytest.raises(ConfigurationError, match="refused the credentials in REDIS_URL") as raised:
        check_redis(wrong)
    assert "hunter2" not in str(raised.value)


def test_check_names_the_address_settings_when_unreachable(
    base_settings: TestSettings, unused_tcp_port: int
) -> None:
    gone = base_settings.model_copy(update={"REDIS_PORT": unused_tcp_port})
    with pytest.raises(ConfigurationError, match="is unreachable") as raised:
        check_redis(gone, timeout=0.5)
    assert "REDIS_HOST / REDIS_PORT" in str(raised.value)


@pytest.fixture
def open_redis(tmp_path: Path) -> Iterator[int]:
    """A Redis anyone may use (no password): what Dashtam must refuse to run on."""
    port = free_port()
    process = ManagedProcess("redis", tmp_path / "redis.pid", tmp_path / "redis.log")
    options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process.start([find_redis_server(), *options, "--dir", str(tmp_path)], cwd=tmp_path)
    try:
        wait_until(
            lambda: authenticated_ping(port, "default", "any"),  # an open server takes any AUTH
            timeout=15,
            what="an open Redis",
            process=process,
        )
        yield port
    finally:
        process.stop()


def test_check_refuses_a_server_without_authentication(
    base_settings: TestSettings, open_redis: int
) -> None:
    settings = base_settings.model_copy(
        update={"REDIS_URL": f"redis://127.0.0.1:{open_redis}/1", "REDIS_PASSWORD": ""}
    )
    with pytest.raises(ConfigurationError, match="answers clients that send no password"):
        check_redis(settings)


async def test_the_app_refuses_to_start_with_wrong_credentials(
    base_settings: TestSettings,
) -> None:
    app = create_app(base_settings.model_copy(update={"REDIS_PASSWORD": "not-the-password"}))
    with pytest.raises(ConfigurationError, match="refused REDIS_USERNAME / REDIS_PASSWORD"):
        async with app.router.lifespan_context(app):
            pass


# ---- commands: a clear message, a non-zero exit, nothing started ------------------------------
def test_worker_with_wrong_credentials_exits_with_the_setting_named(
    base_settings: TestSettings,
) -> None:
    env = {**os.environ, "REDIS_PASSWORD": "not-the-password"}
    result = subprocess.run(
        [sys.executable, "-m", "dashtam.jobs"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "refused REDIS_USERNAME / REDIS_PASSWORD" in result.stderr
    assert "Traceback" not in result.stderr


def test_up_with_an_unreachable_redis_starts_nothing(tmp_path: Path, unused_tcp_port: int) -> None:
    copy = make_isolated_copy(tmp_path)
    env = copy.process_env | {
        "DASHTAM_SERVICES": "external",
        "REDIS_URL": f"redis://127.0.0.1:{unused_tcp_port}/0",
        # Unreachable too: were the Redis check skipped, migrating would fail on it instead.
        "DATABASE_URL": f"postgresql+asyncpg://u:p@127.0.0.1:{unused_tcp_port}/dashtam",
    }
    result = subprocess.run(
        [sys.executable, "-m", "dashtam.cli", "up", "--env", "dev"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Redis at 127.0.0.1:" in result.stderr
    assert "is unreachable" in result.stderr
    assert "REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "state" / "dev" / "run").glob("*.pid"))
