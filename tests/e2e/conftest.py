"""End-to-end fixtures: the app, the callback server and the sandbox as real processes.

They run on free ports against this xdist worker's database with a Redis prefix of their own,
started by the same code `dashtam up` uses (`server_processes`, `process_env`), with pid and log
files in a temporary folder so a running `make test-up` is never touched.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.support.auth import signup_and_login, unique_email
from tests.test_config import TestSettings

from dashtam.core.errors import UserError
from dashtam.devenv.apt import ensure_debian_package
from dashtam.devenv.isolated import free_ports
from dashtam.devenv.manager import ServerProcess, process_env, server_processes
from dashtam.devenv.processes import ManagedProcess, wait_until
from dashtam.devenv.profiles import TEST

CHROMIUM = "/usr/bin/chromium"


@dataclass(frozen=True)
class Stack:
    settings: TestSettings
    servers: list[ServerProcess]

    @property
    def app_url(self) -> str:
        return self.settings.app_base_url

    @property
    def callback_url(self) -> str:
        return self.settings.callback_base_url

    @property
    def sandbox_url(self) -> str:
        return self.settings.sandbox_base_url

    def logs(self) -> str:
        return "\n".join(
            server.process.log_file.read_text(errors="replace") for server in self.servers
        )


@pytest.fixture(scope="session")
def stack(
    base_settings: TestSettings, database_url: URL, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    app_port, callback_port, sandbox_port = free_ports(3)
    overrides: dict[str, str] = {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "REDIS_KEY_PREFIX": f"{base_settings.REDIS_KEY_PREFIX}e2e{uuid.uuid4().hex[:8]}:",
        "APP_PORT": str(app_port),
        "CALLBACK_PORT": str(callback_port),
        "SANDBOX_PORT": str(sandbox_port),
        "SCHWAB_REDIRECT_URI": f"http://127.0.0.1:{callback_port}/callback",
        "LOG_LEVEL": "DEBUG",  # the most the logs can say, for the no-plaintext scan
        "RATE_LIMITS_ENABLED": "false",  # every e2e test signs up from 127.0.0.1
    }
    settings = TestSettings(**overrides)  # type: ignore[arg-type]
    folder = tmp_path_factory.mktemp("e2e-stack")
    servers = [
        dataclasses.replace(
            server,
            process=ManagedProcess(
                server.name, folder / f"{server.name}.pid", folder / f"{server.name}.log"
            ),
        )
        for server in server_processes(TEST, settings)
    ]
    env = process_env(TEST, settings) | overrides
    started: list[ServerProcess] = []
    try:
        for server in servers:
            server.process.start(server.command, env=env)
            started.append(server)
        for server in servers:
            wait_until(server.healthy, timeout=60, what=server.name, process=server.process)
        yield Stack(settings, servers)
    finally:
        for server in started:
            server.process.stop()


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed here when missing and we are allowed to (one install at a
    time: two xdist workers once raced for apt's lock and the browser test was skipped)."""
    if not Path(CHROMIUM).exists():
        try:
            ensure_debian_package("chromium", "chromium")
        except UserError as error:
            pytest.skip(f"{CHROMIUM} is missing and could not be installed: {error.message}")
    return CHROMIUM


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.app_url, timeout=30) as client:
        yield client


@pytest.fixture
async def user_headers(
    api: httpx.AsyncClient, engine: AsyncEngine
) -> AsyncIterator[dict[str, str]]:
    """A user signed up over HTTP (committed); deleted afterwards with everything it owns."""
    email = unique_email()
    yield await signup_and_login(api, email=email)
    async with engine.begin() as connection:
        await connection.execute(text("DELETE FROM users WHERE email = :email"), {"email": email})
