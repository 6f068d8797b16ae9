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
    settings: dict[str, dict[str, str]]  # env file values per environment ("dev", "test", ...)

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


PROXY_PORT_SETTINGS = ("PROXY_HTTPS_PORT", "PROXY_HTTP_PORT")


def make_isolated_copy(folder: Path, *, production: bool = False) -> IsolatedCopy:
    """Generate env files (fresh secrets, free ports) for both environments under `folder`;
    with `production`, for the prod environment too (its Caddy on free ports as well)."""
    values = {}
    profiles = [Profile("dev", ephemeral=False), Profile("test", ephemeral=True)]
    if production:
        profiles.append(Profile("prod", ephemeral=False, production=True))
    ports = iter(free_ports(len(profiles) * len(PORT_SETTINGS) + len(PROXY_PORT_SETTINGS)))
    for template in profiles:
        name = template.name
        profile = Profile(
            name, template.ephemeral, env_dir=folder / "env", production=template.production
        )
        generate_env_file(profile)
        env = parse_env_file(profile.env_file)
        env.update({key: str(next(ports)) for key in PORT_SETTINGS})
        if profile.production:  # the callback is reached through Caddy
            env.update({key: str(next(ports)) for key in PROXY_PORT_SETTINGS})
            public = f"https://{env['PUBLIC_DOMAIN']}:{env['PROXY_HTTPS_PORT']}"
            env["SCHWAB_REDIRECT_URI"] = f"{public}/callback"
        else:
            env["SCHWAB_REDIRECT_URI"] = env["SCHWAB_REDIRECT_URI"].replace(
                str(8182 if name == "dev" else 8183), env["CALLBACK_PORT"]
            )
        write_env_file(profile.env_file, env, "# an isolated copy of Dashtam's environments")
        values[name] = env
    return IsolatedCopy(folder, values)
