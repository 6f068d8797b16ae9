"""A PostgreSQL cluster per environment: init, start, bootstrap the role and database, stop."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

import asyncpg

from dashtam.core.config import Settings
from dashtam.core.errors import UserError
from dashtam.devenv.binaries import PostgresBinaries, find_postgres
from dashtam.devenv.processes import ManagedProcess, digests, wait_until
from dashtam.devenv.profiles import Profile

ADMIN_ROLE = "postgres"
# Durability off for the throwaway test cluster: its data lives on tmpfs anyway. No autovacuum:
# nothing there lives long enough to need it, and a worker busy in a per-test-worker database
# is a backend the test role may not terminate when it drops that database.
EPHEMERAL_SETTINGS = (
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "autovacuum=off",
)
# What `bootstrap` applies; a change restarts the server so that it is applied.
BOOTSTRAP_SETTINGS = (
    "POSTGRES_DB",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_OWNER_USER",
    "POSTGRES_OWNER_PASSWORD",
    "POSTGRES_ADMIN_PASSWORD",
)
HBA = """# Written by Dashtam: password (SCRAM) logins over loopback only.
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
"""


def _server_user() -> str | None:
    """PostgreSQL refuses to run as root: use the `postgres` account, else `nobody`."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise UserError(
        "Running as root and no unprivileged `postgres` or `nobody` account exists.",
        hint="Create one (`useradd --system postgres`) or run as a normal user.",
    )


def _traversable_by(path: Path, user: str) -> bool:
    """Can `user` reach `path` (execute permission on every existing ancestor)?"""
    entry = pwd.getpwnam(user)
    groups = set(os.getgrouplist(user, entry.pw_gid))
    for folder in [path, *path.parents]:
        if not folder.exists():
            continue
        info = folder.stat()
        if info.st_uid == entry.pw_uid:
            allowed = bool(info.st_mode & stat.S_IXUSR)
        elif info.st_gid in groups:
            allowed = bool(info.st_mode & stat.S_IXGRP)
        else:
            allowed = bool(info.st_mode & stat.S_IXOTH)
        if not allowed:
            return False
    return True


def postgres_data_dir(profile: Profile, user: str | None) -> Path:
    """The cluster's folder: in the state folder, unless the server user cannot reach it.

    As root we run PostgreSQL as an unprivileged account; a project inside a private folder
    (a home directory, a pytest tmp dir) is out of its reach, so the cluster then lives in
    /var/lib/dashtam/<state-folder tag>/ instead, and `make clean` removes it from there.
    """
    preferred = profile.data_dir / "postgres"
    if user is None or _traversable_by(preferred.parent, user):
        return preferred
    return Path("/var/lib/dashtam") / profile.tag / "postgres"


def _chown(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


class PostgresService:
    def __init__(self, profile: Profile, settings: Settings) -> None:
        self.profile = profile
        self.settings = settings
        self.port = settings.POSTGRES_PORT
        self.user = _server_user()
        self.pgdata = postgres_data_dir(profile, self.user)
        self.process = ManagedProcess(
            name="postgres",
            pid_file=profile.run_dir / "postgres.pid",
            log_file=profile.log_dir / "postgres.log",
            stop_signal=signal.SIGINT,  # fast shutdown: clients are disconnected, not awaited
        )

    def is_running(self) -> bool:
        return self.process.running_pid() is not None

    def is_ready(self, binaries: PostgresBinaries | None = None) -> bool:
        tool = (binaries or find_postgres())("pg_isready")
        result = subprocess.run(
            [tool, "-q", "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"], check=False
        )
        return result.returncode == 0

    def command(self, binaries: PostgresBinaries | None = None) -> list[str]:
        command = [
            (binaries or find_postgres())("postgres"),
            "-D",
            str(self.pgdata),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
        ]
        if self.profile.ephemeral:
            for setting in EPHEMERAL_SETTINGS:
                command += ["-c", setting]
        return command

    def fingerprint(self) -> dict[str, str]:
        """The settings `bootstrap` applies (roles, passwords, database): when one changes, the
        server is restarted so that they are applied."""
        settings = self.settings
        return digests({name: getattr(settings, name) for name in BOOTSTRAP_SETTINGS})

    def start(self, timeout: float = 30.0) -> bool:
        """Start if not running; True when this call started it. The port was checked by the
        manager before anything started."""
        if self.is_running():
            return False
        binaries = find_postgres()
        user = self.user
        if not (self.pgdata / "PG_VERSION").is_file() or not self._made_with_these_secrets():
            self._initdb(binaries, user)
        self.process.start(
            self.command(binaries), user=user, cwd=Path("/"), settings=self.fingerprint()
        )
        wait_until(
            lambda: self.is_ready(binaries),
            timeout=timeout,
            what=f"PostgreSQL on port {self.port}",
            process=self.process,
        )
        asyncio.run(self.bootstrap())
        return True

    @property
    def _fingerprint_file(self) -> Path:
        return self.pgdata.parent / "postgres.admin.sha256"

    def _fingerprint(self) -> str:
        return hashlib.sha256(self.settings.POSTGRES_ADMIN_PASSWORD.encode()).hexdigest()

    def _made_with_these_secrets(self) -> bool:
        """Was the existing cluster made with this env file's superuser password?

        A re-cloned checkout at the same path generates new secrets but finds the old test
        cluster still on tmpfs: that one is thrown away and made again. A dev cluster holds
        data, so a mismatch there is the user's to resolve.
        """
        try:
            matches = self._fingerprint_file.read_text().strip() == self._fingerprint()
        except FileNotFoundError:  # made before fingerprints: only a test cluster is remade
            return not self.profile.ephemeral
        if matches or self.profile.ephemeral:
            return matches
        raise UserError(
            f"The PostgreSQL cluster in {self.pgdata} was created with another "
            f"POSTGRES_ADMIN_PASSWORD than the one in {self.profile.env_file}.",
            hint="Restore the env file that created it, or delete that data with "
            "`make clean` (dev) and run `make up` again.",
        )

    def _initdb(self, binaries: PostgresBinaries, user: str | None) -> None:
        if not self.settings.POSTGRES_ADMIN_PASSWORD:
            raise UserError(
                f"POSTGRES_ADMIN_PASSWORD is not set in {self.profile.env_file}.",
                hint="Run `make setup` to generate the env files.",
            )
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)  # a half-made cluster from an interrupted init
        self.pgdata.mkdir(parents=True, mode=0o700)
        self.pgdata.chmod(0o700)
        _chown(self.pgdata, user)
        with tempfile.NamedTemporaryFile("w", dir=self.pgdata.parent, delete=False) as pwfile:
            pwfile.write(self.settings.POSTGRES_ADMIN_PASSWORD)
        pwpath = Path(pwfile.name)
        _chown(pwpath, user)
        try:
            result = subprocess.run(
                [
                    binaries("initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    ADMIN_ROLE,
                    "--pwfile",
                    str(pwpath),
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-instructions",
                    *(["--no-sync"] if self.profile.ephemeral else []),
                ],
                capture_output=True,
                text=True,
                user=user,
                cwd="/",
                check=False,
            )
        finally:
            pwpath.unlink(missing_ok=True)
        if result.returncode != 0:
            raise UserError(f"initdb failed for {self.pgdata}:\n{result.stderr.strip()}")
        (self.pgdata / "pg_hba.conf").write_text(HBA)
        self._fingerprint_file.write_text(self._fingerprint())

    async def bootstrap(self) -> None:
        """Create (or re-password) the environment's two roles and its database; idempotent.

        The owner role owns the database and, through migrations, every object in it; the
        runtime role (the app's) may only connect, and gets its DML rights from `init_db`. A
        database from before the split, owned by the app's role, is handed to the owner.
        """
        settings = self.settings
        owner, runtime = settings.POSTGRES_OWNER_USER, settings.POSTGRES_USER
        database = settings.POSTGRES_DB
        try:
            connection = await asyncpg.connect(
                host="127.0.0.1",
                port=self.port,
                user=ADMIN_ROLE,
                password=settings.POSTGRES_ADMIN_PASSWORD,
                database="postgres",
            )
        except asyncpg.InvalidPasswordError:
            raise UserError(
                f"PostgreSQL on port {self.port} refused POSTGRES_ADMIN_PASSWORD from "
                f"{self.profile.env_file}: the cluster in {self.pgdata} was made with another.",
                hint="Restore the env file that created it, or `make clean` and `make up`.",
            ) from None
        try:
            # The test owner creates per-worker databases cloned from the migrated template.
            createdb = "CREATEDB" if self.profile.ephemeral else "NOCREATEDB"
            await _login_role(connection, owner, settings.POSTGRES_OWNER_PASSWORD, createdb)
            await _login_role(connection, runtime, settings.POSTGRES_PASSWORD, "NOCREATEDB")
            if not await connection.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", database
            ):
                await connection.execute(
                    f"CREATE DATABASE {_ident(database)} OWNER {_ident(owner)}"
                )
            inside = await asyncpg.connect(
                host="127.0.0.1",
                port=self.port,
                user=ADMIN_ROLE,
                password=settings.POSTGRES_ADMIN_PASSWORD,
                database=database,
            )
            try:  # the runtime role owns nothing: what it owned before the split goes to the owner
                await inside.execute(f"REASSIGN OWNED BY {_ident(runtime)} TO {_ident(owner)}")
            finally:
                await inside.close()
            # After the reassignment, which rewrites the old owner's grants as the new owner's.
            await connection.execute(f"REVOKE CONNECT ON DATABASE {_ident(database)} FROM PUBLIC")
            await connection.execute(
                f"GRANT CONNECT ON DATABASE {_ident(database)} TO {_ident(runtime)}"
            )
        finally:
            await connection.close()

    def stop(self) -> bool:
        return self.process.stop(timeout=15)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.pgdata.parent, ignore_errors=True)


async def _login_role(
    connection: asyncpg.Connection, role: str, password: str, createdb: str
) -> None:
    exists = await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    verb = "ALTER" if exists else "CREATE"
    quoted = password.replace("'", "''")
    await connection.execute(
        f"{verb} ROLE {_ident(role)} LOGIN NOSUPERUSER NOCREATEROLE NOBYPASSRLS {createdb} "
        f"PASSWORD '{quoted}'"
    )


def _ident(name: str) -> str:
    """Quote an identifier from settings (names are ours, but quote them anyway)."""
    return '"' + name.replace('"', '""') + '"'
