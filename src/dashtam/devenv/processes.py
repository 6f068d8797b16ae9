"""Background server processes: pid files that are verified, never trusted, and port checks."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from dashtam.core.errors import UserError


@dataclass(frozen=True)
class ManagedProcess:
    """A server we start, known by a pid file that records the pid and the process start time.

    A pid alone is not trusted after a crash or reboot (pids get reused); the start time
    pins the file to exactly the process we launched.
    """

    name: str
    pid_file: Path
    log_file: Path

    def running_pid(self) -> int | None:
        """The pid if the pid file names our live process; a stale file is removed."""
        try:
            pid_text, started_text = self.pid_file.read_text().split()
            pid, started = int(pid_text), float(started_text)
        except (FileNotFoundError, ValueError):
            return None
        try:
            process = psutil.Process(pid)
            ours = abs(process.create_time() - started) < 0.05
            ours = ours and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            ours = False
        if not ours:
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def start(
        self,
        command: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        user: str | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                list(command),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                user=user,
                cwd=cwd,
                start_new_session=True,  # survives the CLI that started it
            )
        started = psutil.Process(process.pid).create_time()
        self.pid_file.write_text(f"{process.pid} {started}\n")
        return process

    def stop(self, timeout: float = 10.0) -> bool:
        """SIGTERM the process group, then SIGKILL after `timeout`; True if one was running."""
        pid = self.running_pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        if not _exits_within(pid, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log yet)"


def _exits_within(pid: int, timeout: float) -> bool:
    """Poll for exit; a zombie counts as gone (its reaper may be another process, or slow)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def describe_port_owner(port: int) -> str:
    try:
        for connection in psutil.net_connections(kind="tcp"):
            if connection.laddr and connection.laddr.port == port and connection.pid:
                name = psutil.Process(connection.pid).name()
                return f" (pid {connection.pid}, {name})"
    except psutil.Error:
        pass
    return ""


def require_free_port(port: int, variable: str, env_file: Path) -> None:
    if port_in_use(port):
        raise UserError(
            f"Port {port} is already in use{describe_port_owner(port)}.",
            hint=f"Stop whatever holds it, or set {variable} in {env_file} to another port.",
        )


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    process: ManagedProcess | None = None,
    interval: float = 0.05,
) -> None:
    """Poll `check` until true; fail early (with the log) if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if process is not None and process.running_pid() is None:
            raise UserError(
                f"{what} exited while starting. Last lines of {process.log_file}:\n"
                f"{process.log_tail()}"
            )
        time.sleep(interval)
    tail = f"\nLast lines of {process.log_file}:\n{process.log_tail()}" if process else ""
    raise UserError(f"{what} did not become ready within {timeout:.0f}s.{tail}")
