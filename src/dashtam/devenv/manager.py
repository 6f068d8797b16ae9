"""Bringing an environment up and down: services, database initialisation, app processes.

What only some commands need (migrations, the app's Redis client, certificates, the job queue)
is imported where it is used, so `dashtam status` and `dashtam down` start fast.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import redis
from rich.console import Console
from rich.table import Table

from dashtam.core.config import PROJECT_ROOT, Settings
from dashtam.core.errors import UserError
from dashtam.devenv.postgres import PostgresService
from dashtam.devenv.processes import ManagedProcess, port_in_use, require_free_port, wait_until
from dashtam.devenv.profiles import PROFILES, Profile, ServiceMode
from dashtam.devenv.redis import RedisService
from dashtam.devenv.setup import generate_env_file

console = Console(stderr=True, highlight=False)


@dataclass(frozen=True)
class ServerProcess:
    """An HTTP server of ours (app, callback, sandbox) run as a background process."""

    process: ManagedProcess
    command: list[str]
    port: int
    port_variable: str
    health_url: str
    verify: str | bool

    @property
    def name(self) -> str:
        return self.process.name

    def healthy(self) -> bool:
        try:
            return httpx.get(self.health_url, verify=self.verify, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False


@dataclass(frozen=True)
class WorkerProcess:
    """The background job worker: no port; healthy while its arq health-check key lives."""

    process: ManagedProcess
    settings: Settings
    command: tuple[str, ...] = (sys.executable, "-m", "dashtam.jobs")

    @property
    def name(self) -> str:
        return self.process.name

    def _redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.redis_url, socket_timeout=1)

    def healthy(self) -> bool:
        from dashtam.jobs.queue import health_check_key

        try:
            with self._redis() as client:
                return bool(client.exists(health_check_key(self.settings)))
        except redis.RedisError:
            return False

    def queue_depth(self) -> int | None:
        """Jobs due now (cron jobs wait in the queue with a future score; they do not count)."""
        from dashtam.jobs.queue import queue_name

        try:
            with self._redis() as client:
                now_ms = int(time.time() * 1000)
                return int(client.zcount(queue_name(self.settings), "-inf", now_ms))
        except redis.RedisError:
            return None


def worker_process(profile: Profile, settings: Settings) -> WorkerProcess | None:
    """Dev runs a worker; tests start their own where they need one."""
    if profile.ephemeral:
        return None
    process = ManagedProcess(
        name="worker",
        pid_file=profile.run_dir / "worker.pid",
        log_file=profile.log_dir / "worker.log",
    )
    return WorkerProcess(process, settings)


def uvicorn_command(
    target: str, settings: Settings, port: int, tls: bool, reload: bool
) -> list[str]:
    """How `up` serves an app. uvicorn ignores proxy headers: the apps believe them only from
    TRUSTED_PROXIES (`core.middleware.trust_proxies`), whatever server runs them."""
    command = [sys.executable, "-m", "uvicorn", target, "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-server-header"]
    command += ["--no-proxy-headers"]
    if tls:
        command += ["--ssl-certfile", str(settings.tls_cert_path)]
        command += ["--ssl-keyfile", str(settings.tls_key_path)]
    if reload:
        command += ["--reload", "--reload-dir", str(PROJECT_ROOT / "src")]
    return command


def server_processes(profile: Profile, settings: Settings) -> list[ServerProcess]:
    """What `up` runs above the services: the app, the callback server, and the sandbox."""
    reload = not profile.ephemeral

    def managed(name: str, port: int) -> ManagedProcess:
        return ManagedProcess(
            name=name,
            pid_file=profile.run_dir / f"{name}.pid",
            log_file=profile.log_dir / f"{name}.log",
        )

    cert: str | bool = str(settings.tls_cert_path)
    servers = [
        ServerProcess(
            managed("app", settings.APP_PORT),
            uvicorn_command(
                "dashtam.main:create_app", settings, settings.APP_PORT, settings.APP_TLS, reload
            ),
            settings.APP_PORT,
            "APP_PORT",
            f"{settings.app_base_url}/health",
            cert if settings.APP_TLS else True,
        ),
        ServerProcess(
            managed("callback", settings.CALLBACK_PORT),
            uvicorn_command(
                "dashtam.callback.app:create_app",
                settings,
                settings.CALLBACK_PORT,
                settings.CALLBACK_TLS,
                reload,
            ),
            settings.CALLBACK_PORT,
            "CALLBACK_PORT",
            f"{settings.callback_base_url}/health",
            cert if settings.CALLBACK_TLS else True,
        ),
    ]
    if settings.uses_sandbox:
        port = settings.SANDBOX_PORT
        servers.append(
            ServerProcess(
                managed("sandbox", port),
                [
                    sys.executable,
                    "-m",
                    "dashtam.sandbox",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                port,
                "SANDBOX_PORT",
                f"{settings.sandbox_base_url}/sandbox/stats",
                True,
            )
        )
    return servers


def process_env(profile: Profile, settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["DASHTAM_ENV_FILE"] = str(profile.env_file)
    env["PYTHONUNBUFFERED"] = "1"
    env["SANDBOX_REDIRECT_URIS"] = f'["{settings.SCHWAB_REDIRECT_URI}"]'
    return env


class EnvironmentManager:
    def __init__(self, profile: Profile, say: Callable[[str], None] | None = None) -> None:
        self.profile = profile
        self.say = say or (lambda message: console.print(message))
        generate_env_file(profile)
        self.settings = profile.settings()
        self.mode = profile.service_mode()
        self.postgres = PostgresService(profile, self.settings)
        self.redis = RedisService(profile, self.settings)

    # -- services ---------------------------------------------------------------------------
    def start_services(self) -> None:
        if self.mode is ServiceMode.EXTERNAL:
            self.say("external mode: using DATABASE_URL / REDIS_URL; starting no servers")
            return
        if self.mode is ServiceMode.DOCKER:
            self._compose("up", "-d", "--wait", "postgres", "redis")
            return
        for label, service in (("PostgreSQL", self.postgres), ("Redis", self.redis)):
            started_at = time.perf_counter()
            if service.start():
                elapsed = time.perf_counter() - started_at
                self.say(f"  started {label} on port {service.port} ({elapsed:.1f}s)")
            else:
                self.say(f"  {label} already running on port {service.port}")

    def stop_services(self) -> None:
        if self.mode is ServiceMode.DOCKER:
            self._compose("down")
            return
        for label, service in (("Redis", self.redis), ("PostgreSQL", self.postgres)):
            if service.stop():
                self.say(f"  stopped {label}")

    # -- databases --------------------------------------------------------------------------
    def init_database(self, *, rebuild: bool = False) -> str:
        """Dev: migrate to head. Test: the migrated template, reused unless it must be (or
        `rebuild` says to be) rebuilt."""
        if self.profile.ephemeral:
            from dashtam.core.init_test_db import init_test_db

            return asyncio.run(init_test_db(self.settings, rebuild=rebuild)).describe()
        from dashtam.core.init_db import init_db

        return asyncio.run(init_db(self.settings))

    # -- app processes ----------------------------------------------------------------------
    def start_servers(self, timeout: float = 60.0) -> None:
        from dashtam.devenv.certs import ensure_certificates
        from dashtam.jobs.queue import queue_name

        settings = self.settings
        servers = server_processes(self.profile, settings)
        uses_tls = settings.APP_TLS or settings.CALLBACK_TLS
        if uses_tls and ensure_certificates(settings.tls_cert_path, settings.tls_key_path):
            self.say(f"  generated a self-signed certificate in {settings.tls_cert_path.parent}")
        env = process_env(self.profile, settings)
        # Start everything first, then wait: the processes import the app in parallel.
        starting: list[tuple[str, ManagedProcess, Callable[[], bool], str]] = []
        for server in servers:
            if server.process.running_pid() is not None:
                self.say(f"  {server.name} already running on port {server.port}")
                continue
            require_free_port(server.port, server.port_variable, self.profile.env_file)
            server.process.start(server.command, env=env, cwd=PROJECT_ROOT)
            where = server.health_url.rsplit("/", 1)[0]
            starting.append(
                (f"{server.name} on port {server.port}", server.process, server.healthy, where)
            )
        worker = worker_process(self.profile, settings)
        if worker is not None and worker.process.running_pid() is not None:
            self.say("  worker already running")
        elif worker is not None:
            if settings.WORKER_METRICS_PORT:
                port = settings.WORKER_METRICS_PORT
                require_free_port(port, "WORKER_METRICS_PORT", self.profile.env_file)
            worker.process.start(worker.command, env=env, cwd=PROJECT_ROOT)
            starting.append(
                ("worker", worker.process, worker.healthy, f"queue {queue_name(settings)}")
            )
        for what, process, healthy, where in starting:
            wait_until(healthy, timeout=timeout, what=what, process=process, interval=0.1)
            self.say(f"  started {what.split()[0]}: {where}")

    def stop_servers(self) -> None:
        worker = worker_process(self.profile, self.settings)
        for server in [*server_processes(self.profile, self.settings), worker]:
            if server is not None and server.process.stop():
                self.say(f"  stopped {server.name}")

    # -- whole environment ------------------------------------------------------------------
    def up(self, *, servers: bool) -> None:
        from dashtam.core.redis import check_redis

        self.start_services()
        check_redis(self.settings)  # before migrating or starting anything that needs it
        self.say(f"  {self.init_database()}")
        if servers:
            self.start_servers()

    def down(self) -> None:
        self.stop_servers()
        self.stop_services()

    def destroy(self) -> None:
        self.down()
        self.postgres.destroy()
        self.redis.destroy()
        shutil.rmtree(self.profile.data_dir, ignore_errors=True)
        shutil.rmtree(self.profile.state_dir, ignore_errors=True)

    def status_rows(self) -> list[tuple[str, str, str, str, str]]:
        settings = self.settings
        rows: list[tuple[str, str, str, str, str]] = []

        def row(name: str, port: int, running: bool, healthy: bool) -> None:
            state = "running" if running else ("port in use" if port_in_use(port) else "stopped")
            rows.append((self.profile.name, name, str(port), state, "healthy" if healthy else "-"))

        pg_running = self.postgres.is_running()
        row("postgres", self.postgres.port, pg_running, pg_running and self.postgres.is_ready())
        redis_running = self.redis.is_running()
        row("redis", self.redis.port, redis_running, redis_running and self.redis.is_ready())
        for server in server_processes(self.profile, settings):
            running = server.process.running_pid() is not None
            row(server.name, server.port, running, running and server.healthy())
        worker = worker_process(self.profile, settings)
        if worker is not None:
            running = worker.process.running_pid() is not None
            health = "healthy" if running and worker.healthy() else "-"
            depth = worker.queue_depth()
            queued = f", {depth} queued" if depth is not None else ""
            state = "running" if running else "stopped"
            rows.append((self.profile.name, "worker", "-", state, health + queued))
        return rows

    def _compose(self, *args: str) -> None:
        if shutil.which("docker") is None:
            raise UserError(
                "DASHTAM_SERVICES=docker needs the docker CLI and a running engine.",
                hint="Install Docker, or unset DASHTAM_SERVICES to use local mode.",
            )
        compose_file = PROJECT_ROOT / "compose" / f"docker-compose.{self.profile.name}.yml"
        command = ["docker", "compose", "-f", str(compose_file)]
        command += ["--env-file", str(self.profile.env_file), *args]
        if subprocess.run(command, check=False).returncode != 0:
            raise UserError(f"`{' '.join(command)}` failed; see its output above.")


def status_table() -> Table:
    table = Table(title="Dashtam environments")
    for column in ("environment", "service", "port", "state", "health"):
        table.add_column(column)
    for profile in PROFILES.values():
        if not profile.env_file.is_file():
            table.add_row(profile.name, "(not set up)", "-", "-", "-")
            continue
        for row in EnvironmentManager(profile, say=lambda _m: None).status_rows():
            table.add_row(*row)
    return table


__all__ = ["EnvironmentManager", "require_free_port", "status_table"]
