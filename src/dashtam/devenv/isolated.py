"""A second, self-contained copy of both environments in a folder of its own.

Its env files, state and ports are its own, so it runs beside the developer's environments
without touching them. The side-by-side tests and the benchmarks use it.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from dashtam.core.envfile import parse_env_file, write_env_file
from dashtam.devenv.profiles import Profile
from dashtam.devenv.setup import generate_env_file

PORT_SETTINGS = (
    "POSTGRES_PORT",
    "REDIS_PORT",
    "APP_PORT",
    "CALLBACK_PORT",
    "SANDBOX_PORT",
    "WORKER_METRICS_PORT",
    "PROMETHEUS_PORT",
)
# Variables of the calling process that would point the copy at something else.
INHERITED_POINTERS = ("DASHTAM_ENV_FILE", "DASHTAM_TEST_RUN_ID", "DATABASE_URL", "REDIS_URL")


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: every socket stays bound until all are chosen, so the
    system cannot hand out the same port twice."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def free_port() -> int:
    return free_ports(1)[0]


@dataclass(frozen=True)
class IsolatedCopy:
    folder: Path
    settings: dict[str, dict[str, str]]  # env file values per environment ("dev", "test")

    @property
    def process_env(self) -> dict[str, str]:
        """The calling process's environment, re-pointed at this copy."""
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in INHERITED_POINTERS and not key.startswith("PYTEST_")
        }
        env["DASHTAM_ENV_DIR"] = str(self.folder / "env")
        env["DASHTAM_STATE_DIR"] = str(self.folder / "state")
        return env


def make_isolated_copy(folder: Path) -> IsolatedCopy:
    """Generate env files (fresh secrets, free ports) for both environments under `folder`."""
    values = {}
    ports = iter(free_ports(2 * len(PORT_SETTINGS)))
    for name, ephemeral in (("dev", False), ("test", True)):
        profile = Profile(name, ephemeral=ephemeral, env_dir=folder / "env")
        generate_env_file(profile)
        env = parse_env_file(profile.env_file)
        env.update({key: str(next(ports)) for key in PORT_SETTINGS})
        env["SCHWAB_REDIRECT_URI"] = env["SCHWAB_REDIRECT_URI"].replace(
            str(8182 if name == "dev" else 8183), env["CALLBACK_PORT"]
        )
        write_env_file(profile.env_file, env, "# an isolated copy of Dashtam's environments")
        values[name] = env
    return IsolatedCopy(folder, values)
