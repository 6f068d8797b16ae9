"""The `dashtam` command: the logic behind the Makefile targets.

Each command imports what it needs when it runs: `dashtam --help`, `status` and `down` must not
pay for FastAPI, SQLAlchemy and Alembic (seconds of start-up on a small machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from enum import StrEnum
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console

from dashtam.core.errors import UserError

if TYPE_CHECKING:
    from dashtam.devenv.manager import EnvironmentManager
    from dashtam.devenv.profiles import Profile

app = typer.Typer(
    help="Dashtam: run and manage the dev and test environments.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")
keys_app = typer.Typer(help="Provider token encryption keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
auth_app = typer.Typer(help="Users and authentication upkeep.", no_args_is_help=True)
app.add_typer(auth_app, name="auth")
console = Console(stderr=True, highlight=False)

P = ParamSpec("P")
R = TypeVar("R")


class EnvName(StrEnum):
    dev = "dev"
    test = "test"
    prod = "prod"


EnvOption = Annotated[EnvName, typer.Option("--env", "-e", help="Which environment.")]


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Print a user mistake as a message with its hint, exit 2; no stack trace."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except UserError as error:
            _print_error(error.message, error.hint)
        except ConnectionError as error:  # a service stopped between the check and the use
            _print_error(
                f"A service this command needs stopped answering ({error}).",
                "`make status` shows what runs; `make up` starts dev.",
            )
        raise typer.Exit(2)

    return wrapper


def _print_error(message: str, hint: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    if hint:
        console.print(f"  [yellow]hint:[/] {hint}")


def _profile(env: EnvName) -> Profile:
    from dashtam.devenv.profiles import PROFILES

    return PROFILES[env.value]


def _manager(env: EnvName | Profile, *needs: str) -> EnvironmentManager:
    """The environment's manager; with `needs`, refuse unless those of its services run."""
    from dashtam.devenv.manager import EnvironmentManager

    manager = EnvironmentManager(env if not isinstance(env, EnvName) else _profile(env))
    manager.require(*needs)
    return manager


@app.command()
@user_errors
def setup(
    prod: Annotated[
        bool, typer.Option("--prod", help="Also env/.env.prod (the production topology).")
    ] = False,
) -> None:
    """Generate env/.env.dev and env/.env.test (fresh secrets) and the dev certificate."""
    from dashtam.core.config import PROJECT_ROOT
    from dashtam.devenv.certs import ensure_certificates
    from dashtam.devenv.profiles import DEV, PROD, TEST
    from dashtam.devenv.setup import generate_env_file

    for profile in (DEV, TEST, PROD) if prod else (DEV, TEST):
        written = generate_env_file(profile)
        shown = profile.env_file
        if shown.is_relative_to(PROJECT_ROOT):
            shown = shown.relative_to(PROJECT_ROOT)
        console.print(f"{'wrote' if written else 'kept'} {shown}")
    settings = DEV.settings()
    made = ensure_certificates(settings.tls_cert_path, settings.tls_key_path)
    console.print(f"{'generated' if made else 'kept'} certificate {settings.tls_cert_path}")


@app.command()
@user_errors
def certs() -> None:
    """Generate the self-signed dev certificate (SANs localhost, 127.0.0.1) if missing."""
    from dashtam.devenv.certs import ensure_certificates
    from dashtam.devenv.profiles import DEV
    from dashtam.devenv.setup import generate_env_file

    generate_env_file(DEV)
    settings = DEV.settings()
    made = ensure_certificates(settings.tls_cert_path, settings.tls_key_path)
    console.print(f"{'generated' if made else 'kept'} {settings.tls_cert_path}")


@app.command()
@user_errors
def up(
    env: EnvOption = EnvName.dev,
    services_only: Annotated[
        bool, typer.Option("--services-only", help="Only PostgreSQL and Redis.")
    ] = False,
) -> None:
    """Start an environment and return once everything is healthy (restarting what is not, or
    was started with other settings)."""
    from dashtam.devenv.manager import status_table

    started = time.perf_counter()
    manager = _manager(env)
    console.print(f"[bold]Dashtam {env.value}[/] ({manager.mode.value} services)")
    if not manager.up(servers=not services_only):
        console.print("Everything was already running and healthy; nothing to do.")
    console.print(status_table())
    if not services_only:
        settings = manager.settings
        console.print(f"API:      {settings.app_base_url}  (docs: {settings.app_base_url}/docs)")
        console.print(f"Callback: {settings.callback_base_url}")
        if manager.profile.production:
            console.print(f"Public:   {settings.public_url}  (Caddy in front of both)")
    console.print(f"ready in {time.perf_counter() - started:.1f}s")


@app.command()
@user_errors
def down(env: EnvOption = EnvName.dev) -> None:
    """Stop an environment (its data is kept)."""
    stopped = _manager(env).down()
    if stopped:
        console.print(f"{env.value} stopped ({', '.join(stopped)})")
    else:
        console.print(f"{env.value} was not running; nothing to stop")


@app.command()
@user_errors
def status() -> None:
    """Show every environment's services, ports and health."""
    from dashtam.devenv.manager import status_table

    Console(highlight=False).print(status_table())


@app.command()
@user_errors
def logs(
    env: EnvOption = EnvName.dev,
    follow: Annotated[bool, typer.Option("--follow/--no-follow", "-f")] = True,
) -> None:
    """Show (and follow) the logs of an environment's services."""
    log_dir = _profile(env).log_dir
    files = sorted(str(path) for path in log_dir.glob("*.log"))
    if not files:
        raise UserError(
            f"No logs in {log_dir} yet: {env.value} has not run.",
            hint=f"Start it: `dashtam up --env {env.value}`.",
        )
    if follow and not _anything_runs(_profile(env)):
        console.print(f"{env.value} is not running; its last log lines (nothing to follow):")
        follow = False
    command = ["tail", "-n", "30", *(["-F"] if follow else []), *files]
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(command, check=False)


def _anything_runs(profile: Profile) -> bool:
    from dashtam.devenv.processes import ManagedProcess

    return any(
        ManagedProcess(pid.stem, pid, profile.log_dir / f"{pid.stem}.log").members()
        for pid in profile.run_dir.glob("*.pid")
    )


@app.command()
@user_errors
def clean(
    env: EnvOption = EnvName.dev,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Stop an environment and DELETE its data (asks first unless --yes)."""
    profile = _profile(env)
    if not yes:
        if not sys.stdin.isatty():
            raise UserError(
                f"Refusing to delete {env.value} data without confirmation.",
                hint="Run `make clean CONFIRM=1` (or `dashtam clean --yes`).",
            )
        typer.confirm(f"Delete all {env.value} data in {profile.state_dir}?", abort=True)
    _manager(profile).destroy()
    console.print(f"{env.value} data deleted")


ProviderOption = Annotated[
    str | None, typer.Option("--provider", "-p", help="Only this provider's id.")
]


def _provider_id(provider: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(provider) if provider else None
    except ValueError:
        raise UserError(f"{provider!r} is not a provider id (a UUID).") from None


@app.command()
@user_errors
def sync(
    provider: ProviderOption = None,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Follow until done.")] = False,
    wait_limit: Annotated[
        float, typer.Option("--wait-limit", min=1, help="Seconds --wait follows at most.")
    ] = 600,
    env: EnvOption = EnvName.dev,
) -> None:
    """Sync accounts, balances, positions and transactions of active connections (the worker
    does the work; --wait shows progress and a summary)."""
    from dashtam.accounts.console import sync_command

    provider_id = _provider_id(provider)
    settings = _manager(env, "postgres", "redis", "worker").settings
    out = Console(highlight=False)
    if not asyncio.run(sync_command(settings, provider_id, wait, out, wait_limit)):
        raise typer.Exit(1)


@app.command()
@user_errors
def monitor(
    env: EnvOption = EnvName.dev,
    stop: Annotated[bool, typer.Option("--stop", help="Stop it instead.")] = False,
) -> None:
    """Start Prometheus scraping the environment's app and worker, with the alert rules."""
    from dashtam.devenv.monitor import KEY_QUERIES, Monitor

    profile = _profile(env)
    if stop:
        watcher = Monitor(profile, profile.settings())
        console.print("Prometheus stopped" if watcher.stop() else "Prometheus was not running")
        return
    watcher = Monitor(profile, _manager(env, "app").settings)
    started = watcher.start()
    console.print(f"Prometheus {'started' if started else 'already running'}: {watcher.url}")
    console.print(
        f"  targets: {watcher.url}/targets   alerts: {watcher.url}/alerts", soft_wrap=True
    )
    for label, query in KEY_QUERIES:
        console.print(f"  {label}: {query}", soft_wrap=True)
    console.print("  walkthrough: docs/monitoring.md")


@app.command()
@user_errors
def verify(
    provider: ProviderOption = None,
    all_windows: Annotated[
        bool, typer.Option("--all-windows", help="List every window, not only those that differ.")
    ] = False,
    env: EnvOption = EnvName.dev,
) -> None:
    """Re-read active connections from the provider and compare them with the store: accounts,
    latest balances, positions, and transactions window by window (ids and content). Writes
    nothing; exits 1 if anything differs."""
    from dashtam.accounts.console import verify_command

    provider_id = _provider_id(provider)
    settings = _manager(env, "postgres").settings
    if not asyncio.run(
        verify_command(settings, provider_id, all_windows, Console(highlight=False))
    ):
        raise typer.Exit(1)


@app.command()
@user_errors
def backup(
    env: EnvOption = EnvName.dev,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="A file, or a folder for a timestamped one."),
    ] = None,
    include_keys: Annotated[
        bool,
        typer.Option(
            "--include-keys",
            help="Also put the token keys the stored tokens need in the file (then keep it as "
            "safe as the env file).",
        ),
    ] = False,
) -> None:
    """Back up an environment's database: pg_dump (custom format) and a manifest of the token
    key ids it needs, in one tar file (default folder: backups/). No keys unless asked."""
    from dashtam.backups import backup as make_backup

    settings = _manager(env, "postgres").settings
    summary = asyncio.run(make_backup(settings, env.value, output, include_keys=include_keys))
    size = summary.path.stat().st_size
    console.print(
        f"wrote {summary.path} ({size:,} bytes): {len(summary.tables)} tables, "
        f"{summary.rows:,} row(s), migration {summary.migration}"
    )
    keys = ", ".join(summary.key_ids) or "none"
    where = (
        "included: keep this file as safe as the env file"
        if include_keys
        else "not included; restore needs them in TOKEN_ENCRYPTION_KEYS"
    )
    console.print(f"  token key ids: {keys} (keys {where})")


@app.command()
@user_errors
def restore(
    file: Annotated[Path, typer.Argument(help="A file made by `dashtam backup`.")],
    env: EnvOption = EnvName.dev,
) -> None:
    """Restore a backup into an environment's empty database (one that is not empty is
    refused), migrate it to head, and check every row count and token."""
    from dashtam.backups import restore as restore_backup

    if not file.is_file():
        raise UserError(f"{file} is not a file.", hint="Name a file `dashtam backup` wrote.")
    manager = _manager(env)
    manager.up(servers=False, migrate=False)  # the database must stay empty until restored
    summary, tokens = asyncio.run(restore_backup(manager.settings, file))
    console.print(
        f"restored {summary.path} into {manager.settings.database_name!r}: "
        f"{len(summary.tables)} tables, {summary.rows:,} row(s) (all counts match), "
        f"{tokens} provider token row(s) decrypt"
    )


@app.command("test-prepare")
@user_errors
def prepare_tests(
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Rebuild the template even if it is up to date.")
    ] = False,
) -> None:
    """Bring the test services up if needed and make the migrated test template ready: reused
    while migrations and models are unchanged, else rebuilt from nothing."""
    from dashtam.devenv.profiles import TEST

    started = time.perf_counter()
    _manager(TEST).up(servers=False, rebuild=rebuild)
    console.print(f"test environment ready in {time.perf_counter() - started:.2f}s")


@db_app.command("migrate")
@user_errors
def db_migrate(env: EnvOption = EnvName.dev) -> None:
    """Start the services if needed and apply migrations (dev: upgrade to head; test: rebuild
    from nothing)."""
    _manager(env).up(servers=False, rebuild=True)


@db_app.command("revision")
@user_errors
def db_revision(message: Annotated[str, typer.Argument(help="What the migration does.")]) -> None:
    """Autogenerate a migration from the models, against the running dev database."""
    from alembic import command

    from dashtam.core.migrations import alembic_config
    from dashtam.devenv.profiles import DEV

    manager = _manager(DEV, "postgres")
    console.print(manager.init_database())
    os.environ["DASHTAM_ENV_FILE"] = str(DEV.env_file)
    command.revision(alembic_config(), message=message, autogenerate=True)


@db_app.command("shell")
@user_errors
def db_shell(env: EnvOption = EnvName.dev) -> None:
    """Open psql on an environment's database."""
    from dashtam.devenv.binaries import find_postgres

    settings = _manager(env, "postgres").settings
    url = settings.database_url
    psql_env = {**os.environ, "PGPASSWORD": url.password or ""}
    command = [find_postgres()("psql"), "-h", url.host or "127.0.0.1", "-p", str(url.port)]
    command += ["-U", url.username or "", "-d", url.database or ""]
    os.execvpe(command[0], command, psql_env)  # noqa: S606 - replaces this process with psql


@app.command("redis-cli")
@user_errors
def redis_cli(env: EnvOption = EnvName.dev) -> None:
    """Open a Redis shell (iredis) on an environment's Redis index, as its ACL user."""
    import shutil

    settings = _manager(env, "redis").settings
    shell = shutil.which("iredis", path=os.path.dirname(sys.executable))
    if shell is None:
        raise UserError("iredis is not installed.", hint="Run `make install`.")
    # The URL carries the password: through the environment, never the command line.
    shell_env = {**os.environ, "IREDIS_URL": settings.redis_url}
    os.execve(shell, [shell], shell_env)  # noqa: S606 - replaces this process with iredis


@keys_app.command("rotate")
@user_errors
def keys_rotate(env: EnvOption = EnvName.dev) -> None:
    """Re-encrypt every provider token under the first key of TOKEN_ENCRYPTION_KEYS."""
    from dashtam.providers.keys import rotate

    count, key_id = asyncio.run(rotate(_manager(env, "postgres").settings))
    console.print(f"re-encrypted {count} provider token row(s) under key {key_id!r}")


@auth_app.command("sweep")
@user_errors
def auth_sweep(env: EnvOption = EnvName.dev) -> None:
    """Delete auth rows that stopped mattering more than AUTH_RETENTION_DAYS ago: expired refresh
    tokens, used or expired mailed tokens, revoked or expired sessions. The worker does this
    hourly; audit rows are never deleted."""
    from dashtam.auth.cleanup import sweep_database

    counts = asyncio.run(sweep_database(_manager(env, "postgres").settings))
    console.print(
        f"deleted {counts.refresh_tokens} refresh token(s), {counts.email_tokens} mailed "
        f"token(s) and {counts.auth_sessions} session(s)"
    )


@keys_app.command("generate")
def keys_generate() -> None:
    """Print a new random key; put it first in TOKEN_ENCRYPTION_KEYS as `<new id>:<key>`."""
    from dashtam.core.crypto import generate_key

    print(generate_key())


if __name__ == "__main__":
    app()
