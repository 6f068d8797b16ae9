"""Background server processes: pid files that are verified, never trusted, and port checks.

Each server runs in a session of its own (``start_new_session``) and carries a marker variable
naming its pid file, so everything it starts (uvicorn's reload worker, PostgreSQL's backends)
is known as ours even after the process we launched is gone, and is stopped with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from dashtam.core.errors import UserError

MARKER = "DASHTAM_PROCESS"  # in every managed process's environment: the pid file's path


@dataclass(frozen=True)
class ManagedProcess:
    """A server we start, known by a pid file that records the pid and the process start time.

    A pid alone is not trusted after a crash or reboot (pids get reused); the start time
    pins the file to exactly the process we launched. Beside it, ``<name>.json`` records
    the command and settings it was started with, so a changed configuration is noticed.
    """

    name: str
    pid_file: Path
    log_file: Path
    stop_signal: signal.Signals = signal.SIGTERM

    @property
    def config_file(self) -> Path:
        return self.pid_file.with_suffix(".json")

    def _record(self) -> tuple[int, float] | None:
        try:
            pid_text, started_text = self.pid_file.read_text().split()[:2]
            return int(pid_text), float(started_text)
        except (FileNotFoundError, ValueError):
            return None

    def running_pid(self) -> int | None:
        """The pid if the pid file names our live process; a file naming nothing is removed."""
        record = self._record()
        if record is None:
            return None
        pid, started = record
        if _is_live(pid, started):
            return pid
        if not self.members():
            self._forget()
        return None

    def members(self) -> list[psutil.Process]:
        """Every live process of the session we started, its leader or not: when the leader
        was killed, its children (uvicorn's reload worker) keep serving, and are ours.

        While the leader lives, its session id cannot be anyone else's. Once it is gone, a
        process must also carry our marker: the id may have been reused by then. (Servers
        that rewrite their process title, like redis-server, garble the environment the
        marker is read from; they leave no children behind.)
        """
        record = self._record()
        if record is None:
            return []
        session, started = record
        leader_lives = _is_live(session, started)
        return [
            process
            for process in psutil.process_iter(["create_time", "status"])
            if _in_session(process, session, started) and (leader_lives or self.owns(process))
        ]

    def owns(self, process: psutil.Process) -> bool:
        """Was `process` started by us for this pid file (its marker variable says so)?"""
        try:
            return process.environ().get(MARKER) == str(self.pid_file)
        except psutil.Error:
            return False

    def has_child(self, marker: str) -> bool:
        """Does the live process have a child whose command line contains `marker`?"""
        pid = self.running_pid()
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(pid).children() if pid is not None else []
            return any(marker in " ".join(child.cmdline()) for child in children)
        return False

    def started_with(self) -> dict[str, Any] | None:
        """The command and settings the running process was started with (None: unknown)."""
        try:
            recorded: dict[str, Any] = json.loads(self.config_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return recorded

    def start(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        cwd: Path | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `command` in a session of its own; `settings` (digests, never values) are
        recorded with the command for `started_with`."""
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        environment = {**(os.environ if env is None else env), MARKER: str(self.pid_file)}
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                list(command),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=environment,
                user=user,
                cwd=cwd,
                start_new_session=True,  # survives the CLI that started it; stopped as a whole
            )
        started = psutil.Process(process.pid).create_time()
        self.pid_file.write_text(f"{process.pid} {started}\n")
        config = {"command": list(command), "settings": dict(settings or {})}
        self.config_file.write_text(json.dumps(config, indent=1) + "\n")
        return process

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the whole session: `stop_signal` to the leader (or, when it is gone, to every
        process left in the session), SIGKILL whatever remains after `timeout`. True if
        anything was running."""
        members = self.members()
        if not members:
            self._forget()
            return False
        pid = self.running_pid()
        leader = [m for m in members if m.pid == pid]
        stop_processes(members, self.stop_signal, timeout, first=leader)
        self._forget()
        return True

    def _forget(self) -> None:
        self.pid_file.unlink(missing_ok=True)
        self.config_file.unlink(missing_ok=True)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log yet)"


def digests(values: Mapping[str, object]) -> dict[str, str]:
    """A digest per setting (never its value: many are secrets), so a process's recorded
    settings tell which ones changed since it started."""
    return {
        key: hashlib.sha256(f"{key}={value!r}".encode()).hexdigest()[:16]
        for key, value in sorted(values.items())
    }


def _is_live(pid: int, started: float) -> bool:
    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - started) < 0.05 and _still_running(process)
    except psutil.Error:
        return False


def _in_session(process: psutil.Process, session: int, started: float) -> bool:
    """In our session and not older than its leader (an older one would be a reused id)."""
    try:
        return (
            os.getsid(process.pid) == session
            and process.info["create_time"] >= started - 0.05
            and process.info["status"] != psutil.STATUS_ZOMBIE
        )
    except (OSError, psutil.Error):
        return False


def _still_running(process: psutil.Process) -> bool:
    """A zombie counts as gone: its reaper may be another process, or slow."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_processes(
    processes: Sequence[psutil.Process],
    sig: signal.Signals,
    timeout: float,
    first: Sequence[psutil.Process] = (),
) -> None:
    """`sig` to `first` (a leader that stops its own children), or else to all; SIGKILL
    whatever still runs after `timeout`."""
    _signal_all(first or processes, sig)
    alive = _wait_gone(processes, timeout)
    if alive:
        _signal_all(alive, signal.SIGKILL)
        _wait_gone(alive, 5)


def _wait_gone(processes: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Poll until every process has exited; the ones still running after `timeout`."""
    deadline = time.monotonic() + timeout
    alive = list(processes)
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if _still_running(p)]
    return alive


def _signal_all(processes: Sequence[psutil.Process], sig: signal.Signals) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.send_signal(sig)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def port_owner(port: int) -> psutil.Process | None:
    """The process listening on `port`, when the system lets us see it."""
    with contextlib.suppress(psutil.Error):
        for connection in psutil.net_connections(kind="tcp"):
            if (
                connection.laddr
                and connection.laddr.port == port
                and connection.status == psutil.CONN_LISTEN
                and connection.pid
            ):
                return psutil.Process(connection.pid)
    return None


def describe(process: psutil.Process | None) -> str:
    """` (pid 123: python -m uvicorn …)` for messages; empty when unknown."""
    if process is None:
        return ""
    try:
        command = " ".join(process.cmdline()) or process.name()
    except psutil.Error:
        return f" (pid {process.pid})"
    return f" (pid {process.pid}: {command[:100]})"


def require_free_port(port: int, variable: str, env_file: Path) -> None:
    """Refuse a busy port, naming its holder and the setting that moves it."""
    if port_in_use(port):
        raise UserError(
            f"Port {port} ({variable}) is already in use{describe(port_owner(port))}.",
            hint=f"Stop whatever holds it, or set {variable} in {env_file} to another port.",
        )


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    process: ManagedProcess | None = None,
    interval: float = 0.05,
    worker: Callable[[], bool] | None = None,
) -> None:
    """Poll `check` until true; fail early (with the log) if the process died.

    A supervisor (uvicorn's reloader) outlives a `worker` that crashed while starting: once
    its worker was seen, the worker's exit is failure too, not a reason to wait out the
    timeout.
    """
    deadline = time.monotonic() + timeout
    had_worker = False
    while time.monotonic() < deadline:
        if check():
            return
        if process is not None:
            exited = process.running_pid() is None
            if worker is not None and not exited:
                working = worker()
                exited = had_worker and not working
                had_worker = had_worker or working
            if exited:
                raise UserError(
                    f"{what} exited while starting. Last lines of {process.log_file}:\n"
                    f"{process.log_tail()}"
                )
        time.sleep(interval)
    tail = f"\nLast lines of {process.log_file}:\n{process.log_tail()}" if process else ""
    raise UserError(f"{what} did not become ready within {timeout:.0f}s.{tail}")
