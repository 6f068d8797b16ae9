"""Bringing an environment up and down: services, database initialisation, app processes.

`up` first judges every process it runs (keep it, start it, or restart it and why: stopped,
left orphaned, started with other settings, not answering), checks the whole configuration
and every port it will need, and only then starts anything. What one `up` started is stopped
again when a later step fails, so a failed `up` leaves the environment as it found it.

What only some commands need (migrations, the app's Redis client, certificates, the job queue,
the provider settings check) is imported where it is used, so `dashtam status` and `dashtam
down` start fast.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import redis
from rich.console import Console
from rich.table import Table

from dashtam.core.config import PROJECT_ROOT, Settings
from dashtam.core.errors import UserError
from dashtam.devenv.postgres import PostgresService
from dashtam.devenv.processes import (
    MARKER,
    ManagedProcess,
    describe,
    digests,
    port_in_use,
    port_owner,
    stop_processes,
    wait_until,
)
from dashtam.devenv.profiles import PROFILES, Profile, ServiceMode
from dashtam.devenv.redis import RedisService
from dashtam.devenv.setup import generate_env_file

console = Console(stderr=True, highlight=False)
# prometheus_client's multiprocess folder (core.metrics reads it; not imported here: the CLI
# stays light).
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# Settings that must change as one: moving the callback server moves its redirect URI.
TOGETHER: dict[str, tuple[str, ...]] = {"CALLBACK_PORT": ("SCHWAB_REDIRECT_URI",)}
PORT_VARIABLES = (
    "POSTGRES_PORT",
    "REDIS_PORT",
    "APP_PORT",
    "CALLBACK_PORT",
    "SANDBOX_PORT",
    "WORKER_METRICS_PORT",
)


def settings_digests(settings: Settings, env: Mapping[str, str]) -> dict[str, str]:
    """Every setting an app process runs with, digested."""
    values: dict[str, object] = {name: getattr(settings, name) for name in Settings.model_fields}
    values |= {key: value for key, value in env.items() if key.startswith("SANDBOX_")}
    return digests(values)


@dataclass(frozen=True)
class ServerProcess:
    """An HTTP server of ours (app, callback, sandbox) run as a background process."""

    process: ManagedProcess
    command: list[str]
    port: int
    port_variable: str
    health_url: str
    verify: str | bool
    reloads: bool = False  # a supervisor (--reload, --workers) whose child serves
    env: dict[str, str] = field(default_factory=dict)  # on top of the environment's

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
    target: str, settings: Settings, port: int, tls: bool, reload: bool, workers: int = 1
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
    if workers > 1:
        command += ["--workers", str(workers)]
    return command


def metrics_dir(profile: Profile) -> Path:
    """Where the app's uvicorn workers write their metrics (emptied before they start)."""
    return profile.run_dir / "metrics"


def server_processes(profile: Profile, settings: Settings) -> list[ServerProcess]:
    """What `up` runs above the services: the app, the callback server, the sandbox, and in
    production Caddy in front (the app then with APP_WORKERS workers)."""
    reload = not profile.ephemeral and not profile.production
    workers = settings.APP_WORKERS

    def managed(name: str) -> ManagedProcess:
        return ManagedProcess(
            name=name,
            pid_file=profile.run_dir / f"{name}.pid",
            log_file=profile.log_dir / f"{name}.log",
        )

    cert: str | bool = str(settings.tls_cert_path)
    servers = [
        ServerProcess(
            managed("app"),
            uvicorn_command(
                "dashtam.main:create_app",
                settings,
                settings.APP_PORT,
                settings.APP_TLS,
                reload,
                workers,
            ),
            settings.APP_PORT,
            "APP_PORT",
            f"{settings.app_base_url}/health",
            cert if settings.APP_TLS else True,
            reload or workers > 1,
            {MULTIPROC_VARIABLE: str(metrics_dir(profile))} if workers > 1 else {},
        ),
        ServerProcess(
            managed("callback"),
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
            reload,
        ),
    ]
    if settings.uses_sandbox:
        port = settings.SANDBOX_PORT
        servers.append(
            ServerProcess(
                managed("sandbox"),
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
    if profile.production:
        from dashtam.devenv.proxy import caddy_command, caddy_environment

        servers.append(
            ServerProcess(
                managed("caddy"),
                caddy_command(),
                settings.PROXY_HTTPS_PORT,
                "PROXY_HTTPS_PORT",
                f"{settings.public_url}/health",
                str(settings.tls_cert_path) if settings.PROXY_TLS == "files" else True,
                env=caddy_environment(profile, settings),
            )
        )
    return servers


def process_env(profile: Profile, settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["DASHTAM_ENV_FILE"] = str(profile.env_file)
    env["PYTHONUNBUFFERED"] = "1"
    env["SANDBOX_REDIRECT_URIS"] = f'["{settings.SCHWAB_REDIRECT_URI}"]'
    if not profile.ephemeral:  # dev's sandbox remembers its logins across restarts
        env["SANDBOX_STATE_FILE"] = str(profile.state_dir / "sandbox" / "state.json")
    return env


class Action(StrEnum):
    KEEP = "keep"
    START = "start"
    RESTART = "restart"


@dataclass(frozen=True)
class Verdict:
    """What `up` finds a process doing, and so what it must do about it."""

    state: str  # "running", "orphaned" (its launcher died, a child still runs) or "stopped"
    healthy: bool = False
    changed: tuple[str, ...] = ()  # settings it runs with that differ from the current ones
    orphans: tuple[int, ...] = ()

    @property
    def action(self) -> Action:
        if self.state == "stopped":
            return Action.START
        if self.state == "orphaned" or self.changed or not self.healthy:
            return Action.RESTART
        return Action.KEEP

    @property
    def reason(self) -> str:
        if self.state == "orphaned":
            pids = ", ".join(map(str, self.orphans))
            return f"it was killed but left pid {pids} running; those are stopped first"
        reasons = [] if self.healthy else ["it is running but does not answer its health check"]
        if self.changed:
            reasons.append(f"it was started with other settings ({', '.join(self.changed)})")
        return "; ".join(reasons)


def _changed(recorded: dict[str, Any] | None, wanted: dict[str, Any]) -> tuple[str, ...]:
    if recorded is None:
        return ("not recorded: started by an older Dashtam",)
    before, now = recorded.get("settings", {}), wanted["settings"]
    names = tuple(sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k)))
    if names:
        return names
    return ("its command",) if recorded.get("command") != wanted["command"] else ()


@dataclass
class Unit:
    """One process `up` runs (a server of the environment's own, or one of its apps), seen the
    same way whatever it is: where it listens, how it is judged healthy, how it starts."""

    name: str
    label: str
    process: ManagedProcess
    port: int | None
    port_variable: str
    healthy: Callable[[], bool]
    command: Callable[[], list[str]]
    launch: Callable[[], object]
    settings: dict[str, str] = field(default_factory=dict)
    supervises: bool = False  # uvicorn's reloader: its (spawned) worker may die, it lives on
    where: str = ""

    def judge(self) -> Verdict:
        if self.process.running_pid() is None:
            orphans = tuple(process.pid for process in self.process.members())
            return Verdict("orphaned" if orphans else "stopped", orphans=orphans)
        wanted = {"command": self.command(), "settings": self.settings}
        changed = _changed(self.process.started_with(), wanted)
        return Verdict("running", healthy=self.healthy(), changed=changed)


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class EnvironmentManager:
    def __init__(self, profile: Profile, say: Callable[[str], None] | None = None) -> None:
        self.profile = profile
        self.say = say or (lambda message: console.print(message))
        generate_env_file(profile)
        self.settings = profile.settings()
        self.mode = profile.service_mode()
        self.postgres = PostgresService(profile, self.settings)
        self.redis = RedisService(profile, self.settings)

    # -- what runs --------------------------------------------------------------------------
    def service_units(self) -> list[Unit]:
        """PostgreSQL and Redis, when this project runs them (local mode)."""
        if self.mode is not ServiceMode.LOCAL:
            return []
        postgres, redis_service = self.postgres, self.redis
        return [
            Unit(
                "postgres",
                "PostgreSQL",
                postgres.process,
                postgres.port,
                "POSTGRES_PORT",
                postgres.is_ready,
                postgres.command,
                postgres.start,
                postgres.fingerprint(),
            ),
            Unit(
                "redis",
                "Redis",
                redis_service.process,
                redis_service.port,
                "REDIS_PORT",
                redis_service.is_ready,
                redis_service.command,
                redis_service.start,
                redis_service.fingerprint(),
            ),
        ]

    def server_units(self) -> list[Unit]:
        """The app, callback server, sandbox and worker, with the settings they start with."""
        settings = self.settings
        env = process_env(self.profile, settings)
        digests = settings_digests(settings, env)

        def launcher(
            process: ManagedProcess, command: list[str], extra: dict[str, str]
        ) -> Callable[[], object]:
            def launch() -> object:
                folder = extra.get(MULTIPROC_VARIABLE)
                if folder:  # the workers' metrics start from nothing
                    shutil.rmtree(folder, ignore_errors=True)
                    Path(folder).mkdir(parents=True)
                environment = env | extra
                return process.start(command, env=environment, cwd=PROJECT_ROOT, settings=digests)

            return launch

        units = [
            Unit(
                server.name,
                server.name,
                server.process,
                server.port,
                server.port_variable,
                server.healthy,
                server.command.copy,
                launcher(server.process, server.command, server.env),
                digests,
                supervises=server.reloads,
                where=server.health_url.rsplit("/", 1)[0],
            )
            for server in server_processes(self.profile, settings)
        ]
        worker = worker_process(self.profile, settings)
        if worker is not None:
            from dashtam.jobs.queue import queue_name

            command = list(worker.command)
            units.append(
                Unit(
                    "worker",
                    "worker",
                    worker.process,
                    settings.WORKER_METRICS_PORT or None,  # where it serves /metrics, if at all
                    "WORKER_METRICS_PORT",
                    worker.healthy,
                    command.copy,
                    launcher(worker.process, command, {}),
                    digests,
                    where=f"queue {queue_name(settings)}",
                )
            )
        return units

    def units(self, *, servers: bool) -> list[Unit]:
        return self.service_units() + (self.server_units() if servers else [])

    # -- checks before anything starts ------------------------------------------------------
    def check_configuration(self, units: list[Unit], *, servers: bool) -> None:
        """Everything the processes would refuse at start-up, refused here instead, before any
        of them starts: shared ports, a redirect URI that drifted, unreadable keys."""
        env_file = self.profile.env_file
        ports: dict[int, list[str]] = {}
        for unit in units:
            if unit.port is not None:
                if not 0 < unit.port < 65536:
                    raise UserError(
                        f"{unit.port_variable}={unit.port} in {env_file} is not a TCP port.",
                        hint="Use a number from 1024 to 65535.",
                    )
                ports.setdefault(unit.port, []).append(unit.port_variable)
        for port, variables in ports.items():
            if len(variables) > 1:
                raise UserError(
                    f"{' and '.join(variables)} are all {port} in {env_file}; every service "
                    "needs a port of its own.",
                    hint=f"Give {variables[-1]} another port.",
                )
        self._check_other_environment(ports)
        if servers:
            from dashtam.core.crypto import TokenCipher
            from dashtam.providers.registry import check_redirect_uri

            if self.profile.production:  # first: the redirect URI depends on the domain
                from dashtam.devenv.proxy import check_proxy

                check_proxy(self.settings)
            check_redirect_uri(self.settings, env_file)
            TokenCipher.from_setting(self.settings.TOKEN_ENCRYPTION_KEYS)

    def _check_other_environment(self, ports: dict[int, list[str]]) -> None:
        """Dev and test run side by side, so they may not share a port."""
        for name, other in PROFILES.items():
            other = Profile(name, other.ephemeral, self.profile.env_dir)
            if name == self.profile.name or not other.env_file.is_file():
                continue
            theirs = other.settings()
            for variable in PORT_VARIABLES:
                port = int(getattr(theirs, variable))
                if port in ports:
                    raise UserError(
                        f"{ports[port][0]}={port} in {self.profile.env_file} is also "
                        f"{variable} in {other.env_file}; dev and test run side by side, so "
                        "their ports must differ.",
                        hint=f"Change one of them{_with_companions(variable)}.",
                    )

    def _ours(self, process: psutil.Process) -> bool:
        """Started by this environment (its marker names a pid file in our run folder)?"""
        try:
            marker = process.environ().get(MARKER, "")
        except psutil.Error:
            return False
        return bool(marker) and os.path.dirname(marker) == str(self.profile.run_dir)

    def check_ports(self, units: list[Unit], verdicts: dict[str, Verdict]) -> None:
        """Every port a process will be started on is free, or held by one of our own that is
        about to be stopped; otherwise nothing starts and each busy port is named."""
        busy = []
        for unit in units:
            if verdicts[unit.name].action is Action.KEEP or unit.port is None:
                continue
            if not port_in_use(unit.port):
                continue
            holder = port_owner(unit.port)
            if holder is not None and (holder in unit.process.members() or self._ours(holder)):
                continue
            busy.append((unit, holder))
        if not busy:
            return
        lines = [
            f"Port {unit.port} ({unit.port_variable}, for {unit.label}) is already in use"
            f"{describe(holder)}."
            for unit, holder in busy
        ]
        settings = ", ".join(unit.port_variable for unit, _ in busy)
        companions = "".join(_with_companions(unit.port_variable) for unit, _ in busy)
        raise UserError(
            "\n".join(lines) + "\nNothing was started.",
            hint=f"Stop whatever holds it, or set {settings} in {self.profile.env_file} to a "
            f"free port{companions}.",
        )

    def _clear_leftover(self, unit: Unit) -> None:
        """A process of ours on the unit's port that its pid file no longer knows (the file was
        lost): it is stopped rather than blamed as foreign."""
        if unit.port is None or not port_in_use(unit.port):
            return
        holder = port_owner(unit.port)
        if holder is not None and self._ours(holder):
            session = os.getsid(holder.pid)
            leftovers = [
                p for p in psutil.process_iter() if _same_session(p, session) and self._ours(p)
            ]
            stop_processes(leftovers, unit.process.stop_signal, timeout=10)
            self.say(f"  stopped a leftover {unit.label} of {self.profile.name} (pid {holder.pid})")

    # -- starting and stopping --------------------------------------------------------------
    def _start(self, unit: Unit, verdict: Verdict, started: list[Unit]) -> bool:
        """Keep, start or restart one unit (without waiting); True if it was (re)started."""
        where = f" on port {unit.port}" if unit.port is not None else ""
        if verdict.action is Action.KEEP:
            self.say(f"  {unit.label} already running{where}")
            return False
        if verdict.action is Action.RESTART:
            self.say(f"  restarting {unit.label}: {verdict.reason}")
            unit.process.stop()
        self._clear_leftover(unit)
        started.append(unit)
        unit.launch()
        return True

    def _wait(self, unit: Unit, timeout: float, began: float) -> None:
        where = f" on port {unit.port}" if unit.port is not None else ""
        wait_until(
            unit.healthy,
            timeout=timeout,
            what=f"{unit.label}{where}",
            process=unit.process,
            interval=0.1,
            worker=(lambda: unit.process.has_child("spawn_main")) if unit.supervises else None,
        )
        detail = unit.where or f"port {unit.port}"
        self.say(f"  started {unit.label}: {detail} ({time.perf_counter() - began:.1f}s)")

    def _start_services(self, started: list[Unit], verdicts: dict[str, Verdict]) -> None:
        if self.mode is ServiceMode.EXTERNAL:
            self.say("external mode: using DATABASE_URL / REDIS_URL; starting no servers")
            return
        if self.mode is ServiceMode.DOCKER:
            self._compose("up", "-d", "--wait", "postgres", "redis")
            return
        for unit in self.service_units():
            began = time.perf_counter()
            if self._start(unit, verdicts[unit.name], started):
                self._wait(unit, 30.0, began)

    def _start_servers(
        self, started: list[Unit], verdicts: dict[str, Verdict], timeout: float = 60.0
    ) -> None:
        from dashtam.devenv.certs import ensure_certificates

        settings = self.settings
        uses_tls = settings.APP_TLS or settings.CALLBACK_TLS
        uses_tls |= self.profile.production and settings.PROXY_TLS == "files"
        if uses_tls and ensure_certificates(settings.tls_cert_path, settings.tls_key_path):
            self.say(f"  generated a self-signed certificate in {settings.tls_cert_path.parent}")
        began = time.perf_counter()
        # Start everything first, then wait: the processes import the app in parallel.
        starting = [u for u in self.server_units() if self._start(u, verdicts[u.name], started)]
        for unit in starting:
            self._wait(unit, timeout, began)

    def stop_servers(self) -> list[str]:
        return [unit.label for unit in reversed(self.server_units()) if self._stop(unit)]

    def stop_services(self) -> list[str]:
        if self.mode is ServiceMode.DOCKER:
            self._compose("down")
            return ["compose services"]
        return [unit.label for unit in reversed(self.service_units()) if self._stop(unit)]

    def _stop(self, unit: Unit) -> bool:
        stopped = unit.process.stop(timeout=15)
        if unit.port is not None and port_in_use(unit.port):
            holder = port_owner(unit.port)
            if holder is not None and self._ours(holder):
                self._clear_leftover(unit)
                stopped = True
        if stopped:
            self.say(f"  stopped {unit.label}")
        return stopped

    # -- databases --------------------------------------------------------------------------
    def init_database(self, *, rebuild: bool = False) -> str:
        """Dev: migrate to head. Test: the migrated template, reused unless it must be (or
        `rebuild` says to be) rebuilt."""
        if self.profile.ephemeral:
            from dashtam.core.init_test_db import init_test_db

            return asyncio.run(init_test_db(self.settings, rebuild=rebuild)).describe()
        from dashtam.core.init_db import init_db

        return asyncio.run(init_db(self.settings))

    # -- whole environment ------------------------------------------------------------------
    def up(self, *, servers: bool, rebuild: bool = False, migrate: bool = True) -> bool:
        """Bring the environment up; True if anything had to be (re)started. `rebuild`: the
        test template is rebuilt even when it is up to date; `migrate=False` leaves the
        database as it is (a restore needs it empty)."""
        from dashtam.core.redis import check_redis

        units = self.units(servers=servers)
        self.check_configuration(units, servers=servers)
        verdicts = {unit.name: unit.judge() for unit in units}
        self.check_ports(units, verdicts)
        started: list[Unit] = []
        try:
            self._start_services(started, verdicts)
            check_redis(self.settings)  # before migrating or starting anything that needs it
            if migrate:
                self.say(f"  {self.init_database(rebuild=rebuild)}")
            if servers:
                self._start_servers(started, verdicts)
        except BaseException as error:
            self._roll_back(started, error)
            raise
        return bool(started)

    def _roll_back(self, started: list[Unit], error: BaseException) -> None:
        """Stop what this `up` started, so a failure leaves nothing half running."""
        stopped = [unit.label for unit in reversed(started) if unit.process.stop()]
        if stopped and isinstance(error, UserError):
            error.message += f"\nStopped what this start had begun: {', '.join(stopped)}."

    def down(self) -> list[str]:
        """Stop everything; the labels of what was running."""
        return self.stop_servers() + self.stop_services()

    def destroy(self) -> None:
        self.down()
        self.postgres.destroy()
        self.redis.destroy()
        shutil.rmtree(self.profile.data_dir, ignore_errors=True)
        shutil.rmtree(self.profile.state_dir, ignore_errors=True)

    # -- commands that need a running environment -------------------------------------------
    def require(self, *needs: str) -> None:
        """Refuse, naming what is not running and the command that starts it."""
        settings = self.settings
        for need in needs:
            if need == "worker":
                worker = worker_process(self.profile, settings)
                if worker is None or not worker.healthy():
                    raise UserError(
                        f"The {self.profile.name} worker is not running, so nothing would do "
                        "the work.",
                        hint=self.start_hint(need),
                    )
                continue
            label, host, port = self._address(need)
            if not _answers(host, port):
                raise UserError(
                    f"The {self.profile.name} {label} is not running (nothing answers on "
                    f"{host}:{port}).",
                    hint=self.start_hint(need),
                )

    def _address(self, need: str) -> tuple[str, str, int]:
        settings = self.settings
        if need == "postgres":
            url = settings.database_url
            return "PostgreSQL", url.host or "127.0.0.1", url.port or 5432
        if need == "redis":
            parts = urlsplit(settings.redis_url)
            return "Redis", parts.hostname or "127.0.0.1", parts.port or 6379
        return "app", settings.APP_HOST, settings.APP_PORT

    def start_hint(self, need: str) -> str:
        if self.mode is ServiceMode.EXTERNAL and need in ("postgres", "redis"):
            variable = "DATABASE_URL" if need == "postgres" else "REDIS_URL"
            return f"Start the server {variable} points at, or fix {variable}."
        if self.profile.ephemeral:
            if need in ("worker", "app"):
                return f"The test environment's {need} runs only under `make test-up`."
            return "Start it: `make test-setup` (services only) or `make test-up`."
        return "Start it: `make up`."

    # -- status -----------------------------------------------------------------------------
    def status_rows(self) -> list[tuple[str, str, str, str, str]]:
        rows: list[tuple[str, str, str, str, str]] = []
        for unit in self.units(servers=True):
            verdict = unit.judge()
            rows.append((self.profile.name, unit.name, *self._status(unit, verdict)))
        if self.mode is not ServiceMode.LOCAL:
            settings, url = self.settings, self.settings.database_url
            for name, host, port in (
                ("postgres", url.host or "127.0.0.1", url.port or 5432),
                ("redis", settings.REDIS_HOST, settings.REDIS_PORT),
            ):
                health = "healthy" if _answers(host, port) else "not answering"
                rows.insert(0, (self.profile.name, name, str(port), self.mode.value, health))
        return rows

    def _status(self, unit: Unit, verdict: Verdict) -> tuple[str, str, str]:
        port = str(unit.port) if unit.port is not None else "-"
        state, health = verdict.state, "-"
        if verdict.state == "stopped" and unit.port is not None and port_in_use(unit.port):
            state = "port in use"
        elif verdict.state == "orphaned":
            health = f"pid {', '.join(map(str, verdict.orphans))} left running"
        elif verdict.state == "running":
            health = "healthy" if verdict.healthy else "not answering"
            if verdict.changed:
                stale = f"stale: {', '.join(verdict.changed)} changed"
                health = stale if verdict.healthy else f"{health}; {stale}"
        if unit.name == "worker":
            worker = worker_process(self.profile, self.settings)
            depth = worker.queue_depth() if worker is not None else None
            if depth is not None:
                health = f"{depth} queued" if health == "-" else f"{health}, {depth} queued"
        return port, state, health

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


def _with_companions(variable: str) -> str:
    """` (and SCHWAB_REDIRECT_URI with it)` for a setting that does not change alone."""
    together = TOGETHER.get(variable, ())
    return f" (and {' and '.join(together)} with it)" if together else ""


def _same_session(process: psutil.Process, session: int) -> bool:
    try:
        return os.getsid(process.pid) == session
    except OSError:
        return False


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


__all__ = ["EnvironmentManager", "status_table"]
