"""Worker processes for tests that start many: forked from a process that has already imported
the worker, so each one starts in milliseconds instead of seconds of imports.

Each worker is still its own process running `dashtam.jobs`'s `main()` with its own environment,
sockets and pid, and dies for real when killed; only the interpreter start-up is shared. The
fork server is `python -m tests.support.workers`: it reads one JSON environment per line on
stdin, forks a worker with it, and answers with the worker's pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import psutil


class WorkerForks:
    """The test side: start workers, kill them, wait for them to be gone."""

    def __init__(self, server: subprocess.Popen[str], log_dir: Path) -> None:
        self.server = server
        self.log_dir = log_dir
        self.started: list[int] = []

    def start(self, env: dict[str, str]) -> int:
        assert self.server.stdin is not None
        assert self.server.stdout is not None
        log = self.log_dir / f"worker-{len(self.started) + 1}.log"
        self.server.stdin.write(json.dumps({"env": env, "log": str(log)}) + "\n")
        self.server.stdin.flush()
        pid = int(json.loads(self.server.stdout.readline())["pid"])
        self.started.append(pid)
        return pid

    @staticmethod
    def alive(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def kill(self, pid: int, sig: signal.Signals = signal.SIGKILL, timeout: float = 10) -> None:
        """Send `sig` and return once the process is gone."""
        if self.alive(pid):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while self.alive(pid):
            assert time.monotonic() < deadline, f"worker {pid} did not exit after {sig.name}"
            time.sleep(0.01)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))


@contextmanager
def worker_forks(log_dir: Path, env: dict[str, str]) -> Iterator[WorkerForks]:
    """A fork server (started with `env`, so imports see the test settings); every worker it
    started is stopped at the end."""
    root = Path(__file__).resolve().parents[2]
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.support.workers"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env=env,
    )
    forks = WorkerForks(server, log_dir)
    try:
        assert server.stdout is not None
        assert json.loads(server.stdout.readline()) == {"ready": True}
        yield forks
    finally:
        for pid in forks.started:
            forks.kill(pid, signal.SIGTERM, timeout=15)
        server.terminate()
        server.wait(10)


def _reap(_signum: int, _frame: object) -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _child(env: dict[str, str], log: str) -> None:
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    with open(log, "ab", buffering=0) as out:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    os.environ.clear()
    os.environ.update(env)
    from dashtam.jobs.__main__ import main

    try:
        main()
    finally:
        os._exit(0)


def serve(requests: IO[str], answers: IO[str]) -> None:
    import dashtam.jobs.__main__  # noqa: F401 - the imports every worker would otherwise repeat

    signal.signal(signal.SIGCHLD, _reap)
    print(json.dumps({"ready": True}), file=answers, flush=True)
    for line in requests:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request["env"], request["log"])
        print(json.dumps({"pid": pid}), file=answers, flush=True)


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
