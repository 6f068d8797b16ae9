"""A Redis server per environment: durable append-only file for dev, memory only for test."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from dashtam.core.config import Settings
from dashtam.devenv.binaries import find_redis_server
from dashtam.devenv.processes import ManagedProcess, require_free_port, wait_until
from dashtam.devenv.profiles import Profile


def ping(port: int, host: str = "127.0.0.1") -> bool:
    """A raw RESP PING: cheap enough to poll and needs no client library."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisService:
    def __init__(self, profile: Profile, settings: Settings) -> None:
        self.profile = profile
        self.port = settings.REDIS_PORT
        self.data_dir = profile.data_dir / "redis"
        self.process = ManagedProcess(
            name="redis",
            pid_file=profile.run_dir / "redis.pid",
            log_file=profile.log_dir / "redis.log",
        )

    def is_running(self) -> bool:
        return self.process.running_pid() is not None

    def is_ready(self) -> bool:
        return ping(self.port)

    def start(self, timeout: float = 15.0) -> bool:
        if self.is_running():
            return False
        binary = find_redis_server()
        require_free_port(self.port, "REDIS_PORT", self.profile.env_file)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        durability = (
            ["--save", "", "--appendonly", "no"]
            if self.profile.ephemeral
            else ["--appendonly", "yes", "--appendfsync", "everysec", "--save", "300 1"]
        )
        self.process.start(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--daemonize",
                "no",
                "--databases",
                "16",
                *durability,
            ],
            cwd=Path("/"),
        )
        wait_until(
            self.is_ready, timeout=timeout, what=f"Redis on port {self.port}", process=self.process
        )
        return True

    def stop(self) -> bool:
        return self.process.stop()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
