"""A Redis server per environment: loopback only, one ACL user with a password, no default user.

Durable append-only file for dev, memory only for test. The configuration is written at each
start from the env file (owner-only; it holds the password's SHA-256, never the password).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import redis

from dashtam.core.config import Settings
from dashtam.core.errors import UserError
from dashtam.devenv.binaries import find_redis_server
from dashtam.devenv.processes import ManagedProcess, digests, wait_until
from dashtam.devenv.profiles import Profile

# What the app's user may do: every key and command except the @dangerous ones (FLUSHALL,
# FLUSHDB, KEYS, CONFIG, DEBUG, MODULE, SHUTDOWN, MONITOR, ...); INFO is back because arq logs
# it at start-up. docker/redis/start.sh writes the same rule for the containers.
APP_USER_RULES = "~* &* +@all -@dangerous +info"


def acl_lines(username: str, password: str) -> list[str]:
    digest = hashlib.sha256(password.encode()).hexdigest()
    return ["user default off", f"user {username} on #{digest} {APP_USER_RULES}"]


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authenticated_ping(port: int, username: str, password: str, host: str = "127.0.0.1") -> bool:
    """Cheap enough to poll; True only when the server answers these credentials."""
    client = redis.Redis(
        host=host,
        port=port,
        username=username,
        password=password,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
    )
    try:
        with client:
            return bool(client.ping())
    except redis.RedisError:
        return False


class RedisService:
    def __init__(self, profile: Profile, settings: Settings) -> None:
        self.profile = profile
        self.port = settings.REDIS_PORT
        self.username = settings.REDIS_USERNAME
        self.password = settings.REDIS_PASSWORD
        self.data_dir = profile.data_dir / "redis"
        self.config_file = profile.run_dir / "redis.conf"
        self.process = ManagedProcess(
            name="redis",
            pid_file=profile.run_dir / "redis.pid",
            log_file=profile.log_dir / "redis.log",
        )

    def is_running(self) -> bool:
        return self.process.running_pid() is not None

    def is_ready(self) -> bool:
        return authenticated_ping(self.port, self.username, self.password)

    def config(self) -> str:
        durability = (
            ['save ""', "appendonly no"]
            if self.profile.ephemeral
            else ["appendonly yes", "appendfsync everysec", "save 300 1"]
        )
        lines = [
            f"# Written by Dashtam from {self.profile.env_file} at each start; do not edit.",
            f"port {self.port}",
            "bind 127.0.0.1",
            "protected-mode yes",
            f"dir {_quoted(str(self.data_dir))}",
            "daemonize no",
            "databases 16",
            "enable-debug-command no",
            "enable-module-command no",
            *durability,
            *acl_lines(self.username, self.password),
        ]
        return "\n".join(lines) + "\n"

    def command(self) -> list[str]:
        return [find_redis_server(), str(self.config_file)]

    def fingerprint(self) -> dict[str, str]:
        """What it runs with, for `up` to notice a change: its settings are in the file it
        reads, not on its command line (a digest: the file names a password's hash)."""
        return digests({"redis.conf": self.config()})

    def start(self, timeout: float = 15.0) -> bool:
        """Start if not running; True when this call started it (the manager checked the port).

        Our server still running with another env file's credentials (the env file was
        regenerated, or it predates Redis authentication) is restarted with these.
        """
        if self.is_running():
            if self.is_ready():
                return False
            self.stop()
        if not self.password:
            raise UserError(
                f"REDIS_PASSWORD is not set in {self.profile.env_file}.",
                hint="Run `make setup` to add a generated one.",
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.touch(mode=0o600)
        self.config_file.chmod(0o600)
        self.config_file.write_text(self.config())
        self.process.start(self.command(), cwd=Path("/"), settings=self.fingerprint())
        wait_until(
            self.is_ready, timeout=timeout, what=f"Redis on port {self.port}", process=self.process
        )
        return True

    def stop(self) -> bool:
        return self.process.stop()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
