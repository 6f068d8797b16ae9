"""The first hour of a new user, on environments of its own: every command with the
environment stopped, wrong ports, then the README's commands and paths and what newcomers get
wrong, in the order a newcomer meets them.

Each copy of both environments is isolated (its own env files, state folder and free ports), so
the developer's environments are never touched. The stopped cases share one copy that is never
started; the first hour itself is one test, because each step starts from where the last one
left the environment (xdist's loadgroup cannot keep separate tests in order on one worker).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import typer
from tests.support.auth import DEFAULT_PASSWORD, unique_email

from dashtam.cli import app as cli_app
from dashtam.core.config import PROJECT_ROOT, Settings
from dashtam.core.envfile import parse_env_file
from dashtam.devenv.isolated import PORT_SETTINGS, IsolatedCopy, free_port, make_isolated_copy
from dashtam.devenv.processes import port_in_use

pytestmark = [pytest.mark.e2e]
README = (PROJECT_ROOT / "README.md").read_text()
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


@dataclass(frozen=True)
class Result:
    code: int
    output: str  # stdout and stderr
    stdout: str


@dataclass
class Newcomer:
    """A user of the isolated copy: runs its commands and reads its files."""

    copy: IsolatedCopy
    env: dict[str, str]

    @property
    def state(self) -> Path:
        return self.copy.folder / "state" / "dev"

    @property
    def env_file(self) -> Path:
        return self.copy.folder / "env" / ".env.dev"

    def setting(self, key: str) -> str:
        return parse_env_file(self.env_file)[key]

    def port(self, key: str) -> int:
        return int(self.setting(key))

    def set(self, **values: object) -> None:
        lines = self.env_file.read_text().splitlines()
        for key, value in values.items():
            lines = [f"{key}={value}" if line.startswith(f"{key}=") else line for line in lines]
        self.env_file.write_text("\n".join(lines) + "\n")

    def run(self, command: list[str], *, env: dict[str, str] | None = None) -> Result:
        done = subprocess.run(
            command,
            cwd=PROJECT_ROOT,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        return Result(done.returncode, done.stdout + done.stderr, done.stdout)

    def dashtam(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return self.run([sys.executable, "-m", "dashtam.cli", *args], env=env)

    def make(self, *targets: str) -> Result:
        return self.run(["make", "--no-print-directory", *targets])

    def batch(self, commands: list[list[str]]) -> dict[str, dict[str, Any]]:
        """Many commands in one interpreter (tests/support/cli_batch.py), keyed by argv."""
        done = subprocess.run(
            [sys.executable, "-m", "tests.support.cli_batch"],
            cwd=PROJECT_ROOT,
            env=self.env,
            input=json.dumps(commands),
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        return {" ".join(r["argv"]): r for r in json.loads(done.stdout)}

    def pid(self, name: str) -> int:
        return int((self.state / "run" / f"{name}.pid").read_text().split()[0])

    def nothing_runs(self) -> bool:
        pid_files = list((self.state / "run").glob("*.pid"))
        ports = ("POSTGRES_PORT", "REDIS_PORT", "APP_PORT", "SANDBOX_PORT")
        return not pid_files and not any(port_in_use(self.port(key)) for key in ports)

    @property
    def trust(self) -> ssl.SSLContext:
        """Trust in the self-signed dev certificate, instead of `curl -k`'s blind eye."""
        return ssl.create_default_context(
            cafile=self.copy.folder / "state" / "certs" / "dev-cert.pem"
        )

    def api(self) -> httpx.Client:
        base = f"https://127.0.0.1:{self.port('APP_PORT')}"
        return httpx.Client(base_url=base, verify=self.trust, timeout=60)


@contextmanager
def a_newcomer(folder: Path) -> Iterator[Newcomer]:
    copy = make_isolated_copy(folder)
    user = Newcomer(copy, copy.process_env | {"COLUMNS": "300", "NO_COLOR": "1"})
    try:
        yield user
    finally:
        user.batch([["clean", "--env", env, "--yes"] for env in ("dev", "test")])


@pytest.fixture(scope="module")
def stopped_copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Newcomer]:
    """A copy that is set up and never started."""
    with a_newcomer(tmp_path_factory.mktemp("stopped")) as user:
        yield user


@contextmanager
def holding(port: int) -> Iterator[None]:
    """A foreign process of sorts: this test's own socket, listening on `port`."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- every command, environment stopped ---------------------------------------------------------

# (command, argv, exit code, what the output must say). Commands that start what they need are
# run for real in test_the_first_hour (`db migrate`, `up`) and test_side_by_side (`test-prepare`).
Case = tuple[str, list[str], int, tuple[str, ...]]
NOT_RUNNING = ("The dev PostgreSQL is not running", "make up")
STOPPED: list[Case] = [
    ("setup", ["setup"], 0, ("kept /", "env/.env.dev")),
    ("certs", ["certs"], 0, ("dev-cert.pem",)),
    ("status", ["status"], 0, ("stopped",)),
    ("down", ["down"], 0, ("dev was not running; nothing to stop",)),
    ("logs", ["logs"], 2, ("dev has not run", "dashtam up --env dev")),
    ("sync", ["sync"], 2, NOT_RUNNING),
    ("sync", ["sync", "--wait"], 2, NOT_RUNNING),
    ("db revision", ["db", "revision", "add x"], 2, NOT_RUNNING),
    ("db shell", ["db", "shell"], 2, NOT_RUNNING),
    ("db shell", ["db", "shell", "--env", "test"], 2, ("test PostgreSQL", "make test-setup")),
    ("redis-cli", ["redis-cli"], 2, ("The dev Redis is not running", "make up")),
    ("keys rotate", ["keys", "rotate"], 2, NOT_RUNNING),
    ("keys generate", ["keys", "generate"], 0, ()),
    ("auth sweep", ["auth", "sweep"], 2, NOT_RUNNING),
    ("verify", ["verify"], 2, NOT_RUNNING),
    ("backup", ["backup"], 2, NOT_RUNNING),
    ("restore", ["restore", "no-such-backup.tar"], 2, ("no-such-backup.tar is not a file",)),
    ("monitor", ["monitor"], 2, ("The dev app is not running", "make up")),
    ("monitor", ["monitor", "--stop"], 0, ("Prometheus was not running",)),
    ("clean", ["clean", "--env", "test", "--yes"], 0, ("test data deleted",)),
]
RUN_FOR_REAL = {"up", "db migrate", "test-prepare"}


@pytest.fixture(scope="module")
def stopped(stopped_copy: Newcomer) -> dict[str, dict[str, Any]]:
    return stopped_copy.batch([argv for _, argv, _, _ in STOPPED])


def _command_paths(group: Any, prefix: str = "") -> set[str]:
    """Every command under a (typer) group, sub-groups spelled out: "db migrate"."""
    paths = set()
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            paths |= _command_paths(command, f"{prefix}{name} ")
        else:
            paths.add(prefix + name)
    return paths


def test_every_command_of_dashtam_help_has_a_stopped_case() -> None:
    assert (
        _command_paths(typer.main.get_command(cli_app))
        == {command for command, *_ in STOPPED} | RUN_FOR_REAL
    )


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [case[1:] for case in STOPPED],
    ids=[" ".join(argv) for _, argv, _, _ in STOPPED],
)
def test_with_the_environment_stopped(
    stopped: dict[str, dict[str, Any]], argv: list[str], code: int, says: tuple[str, ...]
) -> None:
    result = stopped[" ".join(argv)]
    assert result["error"] is None, result["error"]
    assert "Traceback" not in result["output"]
    assert result["exit_code"] == code, result["output"]
    for text in says:
        assert text in result["output"]


# -- wrong ports: refused before anything starts ------------------------------------------------


def test_a_busy_callback_port_names_every_setting_that_moves_with_it(
    stopped_copy: Newcomer,
) -> None:
    newcomer = stopped_copy
    callback_port = newcomer.port("CALLBACK_PORT")
    with holding(callback_port):
        busy = newcomer.dashtam("up")
    assert busy.code == 2, busy.output
    assert f"Port {callback_port} (CALLBACK_PORT" in busy.output
    assert "set CALLBACK_PORT" in busy.output
    assert "SCHWAB_REDIRECT_URI with it" in busy.output
    assert newcomer.nothing_runs()

    moved = free_port()
    newcomer.set(CALLBACK_PORT=moved)  # following only half of a hint
    try:
        half = newcomer.dashtam("up")
    finally:
        newcomer.set(CALLBACK_PORT=callback_port)
    assert half.code == 2, half.output
    assert f"set SCHWAB_REDIRECT_URI=https://127.0.0.1:{moved}/callback" in half.output
    assert "Traceback" not in half.output
    assert newcomer.nothing_runs()


def test_a_busy_app_port_starts_nothing(stopped_copy: Newcomer) -> None:
    newcomer = stopped_copy
    with holding(newcomer.port("APP_PORT")):
        busy = newcomer.dashtam("up")
    assert busy.code == 2, busy.output
    assert "APP_PORT, for app) is already in use" in busy.output
    assert "Nothing was started." in busy.output
    assert newcomer.nothing_runs()  # PostgreSQL and Redis included


# -- the first hour ---------------------------------------------------------------------------


def test_the_first_hour(tmp_path: Path) -> None:
    with a_newcomer(tmp_path / "copy") as newcomer:
        db_migrate_starts_the_services_it_needs(newcomer)
        sync_without_a_worker_says_so_at_once(newcomer)
        an_app_that_dies_starting_is_reported_and_its_start_undone(newcomer)
        the_readme_commands(newcomer)
        the_readme_api_walk_through(newcomer)
        a_restart_keeps_every_sandbox_login(newcomer)
        up_repairs_an_orphan_a_hung_server_a_crash_and_an_edited_env_file(newcomer)
        a_login_the_provider_refuses_says_how_to_reauthorize(newcomer)


# Its steps, in order.


def db_migrate_starts_the_services_it_needs(newcomer: Newcomer) -> None:
    result = newcomer.dashtam("db", "migrate")
    assert result.code == 0, result.output
    assert "migrated from empty" in result.output
    assert port_in_use(newcomer.port("POSTGRES_PORT"))
    assert port_in_use(newcomer.port("REDIS_PORT"))


def sync_without_a_worker_says_so_at_once(newcomer: Newcomer) -> None:
    result = newcomer.dashtam("sync", "--wait")
    assert result.code == 2, result.output
    assert "The dev worker is not running" in result.output
    assert "make up" in result.output


def an_app_that_dies_starting_is_reported_and_its_start_undone(newcomer: Newcomer) -> None:
    """A bug that kills the app as it starts (no configuration check can see one)."""
    site = newcomer.copy.folder / "a-bug"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        "if 'dashtam.main:create_app' in sys.argv:\n"
        "    raise SystemExit('a bug: the app exits as it starts')\n"
    )
    env = newcomer.env | {"PYTHONPATH": str(site)}
    result = newcomer.dashtam("up", env=env)
    assert result.code == 2, result.output
    assert f"app on port {newcomer.port('APP_PORT')} exited while starting" in result.output
    assert "a bug: the app exits as it starts" in result.output  # the log's last lines
    assert "Stopped what this start had begun: worker, sandbox, callback." in result.output
    for name in ("app", "callback", "sandbox", "worker"):
        assert not (newcomer.state / "run" / f"{name}.pid").exists()
    assert not port_in_use(newcomer.port("APP_PORT"))
    assert port_in_use(newcomer.port("POSTGRES_PORT"))  # it was running before; it is kept


# -- the README, as written ---------------------------------------------------------------------


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line]


def _on_this_copy(text: str, newcomer: Newcomer) -> str:
    """The README's default ports replaced by this copy's."""
    for key in PORT_SETTINGS:
        default = str(Settings.model_fields[key].default)
        text = re.sub(rf"(?<=:){default}\b", newcomer.setting(key), text)
    return text


def the_readme_commands(newcomer: Newcomer) -> None:
    commands = _readme_commands()
    assert commands == [
        "make up",
        "make test",  # the side-by-side test runs it (test-prepare, then pytest)
        "curl -k https://127.0.0.1:8000/health",
        "make status",
        "make logs",
        "make down",
    ]
    up = newcomer.make("up")
    assert up.code == 0, up.output
    api_row = re.search(r"\| API \| (https://\S+) ", README)
    callback_row = re.search(r"\| OAuth callback server \| (https://\S+) ", README)
    assert api_row is not None
    assert callback_row is not None
    assert f"API:      {_on_this_copy(api_row.group(1), newcomer)}" in up.output
    assert f"Callback: {_on_this_copy(callback_row.group(1), newcomer)}" in up.output

    health = newcomer.run(_on_this_copy(commands[2], newcomer).split())
    assert health.code == 0, health.output
    assert json.loads(health.stdout)["status"] == "healthy"

    status = newcomer.make("status")
    dev_rows = [line for line in status.output.splitlines() if "│ dev " in line]
    assert len(dev_rows) == 6
    assert all("healthy" in row for row in dev_rows), status.output

    again = newcomer.make("up")  # "A second `make up` … says so"
    assert "Everything was already running and healthy; nothing to do." in again.output

    with subprocess.Popen(
        ["make", "--no-print-directory", "logs"],
        cwd=PROJECT_ROOT,
        env=newcomer.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as logs:
        assert logs.stdout is not None
        header = next(line for line in logs.stdout if line.startswith("==> "))  # tail's
        os.killpg(logs.pid, signal.SIGTERM)
    assert "/state/dev/logs/" in header
    help_text = re.sub(r"\x1b\[[0-9;]*m", "", newcomer.make("help").output)
    for target in {c.split()[1] for c in commands if c.startswith("make ")} | {"restart"}:
        assert re.search(rf"^\s+{target}\s+\S", help_text, re.M), target
    # `make down` runs as part of `make restart` in a_restart_keeps_every_sandbox_login.


def _readme_api_paths() -> list[str]:
    section = README.split("## Using the API", 1)[1].split("\n## ", 1)[0]
    return [f"{m} {p}" for m, p in re.findall(r"`(GET|POST) (/api/v1/[^`]+)`", section)]


def _connect(
    api: httpx.Client, trust: ssl.SSLContext, paths: list[str]
) -> tuple[dict[str, str], str]:
    """The README's steps 1 and 2: a user, a provider, and its consent in the sandbox."""
    email = unique_email()
    register, login, create, authorize = paths[:4]
    body = {"email": email, "password": DEFAULT_PASSWORD, "name": "Newcomer"}
    assert api.post(register.split()[1], json=body).status_code == 201
    tokens = api.post(login.split()[1], json={"email": email, "password": DEFAULT_PASSWORD})
    headers = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
    provider = api.post(
        create.split()[1], json={"provider_key": "schwab", "alias": "My Schwab"}, headers=headers
    ).json()
    start = api.post(authorize.split()[1].replace("{id}", provider["id"]), headers=headers)
    url = start.json()["authorization_url"]
    with httpx.Client(follow_redirects=True, verify=trust, timeout=60) as browser:
        consent = browser.get(url)
        form = dict(HIDDEN.findall(consent.text)) | {"action": "approve"}
        done = browser.post(url.split("?")[0], data=form)
    assert done.status_code == 200, done.text
    assert 'id="result">Connected</h1>' in done.text
    return headers, provider["id"]


def _sync(newcomer: Newcomer) -> Result:
    return newcomer.dashtam("sync", "--wait", "--wait-limit", "120")


def the_readme_api_walk_through(newcomer: Newcomer) -> None:
    paths = _readme_api_paths()
    assert [p.split("/api/v1/")[1] for p in paths] == [
        "auth/register",
        "auth/login",
        "providers",
        "providers/{id}/authorization",
        "providers/{id}/syncs",
        "accounts",
        "accounts/{id}/positions",
        "accounts/{id}/transactions",
        "portfolio",
    ]
    with newcomer.api() as api:
        headers, provider_id = _connect(api, newcomer.trust, paths)
        run = api.post(paths[4].split()[1].replace("{id}", provider_id), headers=headers)
        assert run.status_code in (200, 201, 202), run.text
        wait_for(
            lambda: (
                api.get(f"/api/v1/syncs/{run.json()['id']}", headers=headers).json()["status"]
                == "succeeded"
            ),
            "the README's sync",
            timeout=120,
        )
        accounts = api.get(paths[5].split()[1], headers=headers).json()
        assert accounts
        for path in paths[6:8]:
            answer = api.get(path.split()[1].replace("{id}", accounts[0]["id"]), headers=headers)
            assert answer.status_code == 200, answer.text
        assert api.get(paths[8].split()[1], headers=headers).status_code == 200
        assert api.get("/docs").status_code == 200


# -- restarts, crashes and edits ----------------------------------------------------------------


def _sandbox(newcomer: Newcomer) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{newcomer.port('SANDBOX_PORT')}", timeout=30)


def a_restart_keeps_every_sandbox_login(newcomer: Newcomer) -> None:
    """`make restart` used to leave both connections needs_reauth (the sandbox forgot them)."""
    with _sandbox(newcomer) as sandbox:
        [account, *_] = sandbox.get("/sandbox/accounts").json()
        posted, removed = account["pending"]
        base = f"/sandbox/accounts/{account['hashValue']}/transactions"
        assert sandbox.post(f"{base}/{posted}/post").status_code == 200
        assert sandbox.delete(f"{base}/{removed}").status_code == 200
        assert sandbox.post("/sandbox/faults", json={"fault": "slow:1"}).status_code == 200
    os.kill(newcomer.pid("app"), signal.SIGKILL)  # its reload worker keeps serving

    restart = newcomer.make("restart")

    assert restart.code == 0, restart.output
    assert "stopped app" in restart.output  # the orphan; `up` would have found the port busy
    with _sandbox(newcomer) as sandbox:
        [kept] = sandbox.get("/sandbox/faults").json()["trader"]
        assert (kept["fault"], kept["count"]) == ("slow:1", 1)
        [again, *_] = sandbox.get("/sandbox/accounts").json()
        assert again["pending"] == []
    synced = _sync(newcomer)
    assert synced.code == 0, synced.output
    assert "succeeded" in synced.output
    assert "needs_reauth" not in synced.output


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _status(newcomer: Newcomer) -> dict[str, tuple[str, str]]:
    """{service: (state, health)} of the copy's dev environment, read from `make status`."""
    rows = [line.split("│")[1:-1] for line in newcomer.make("status").output.splitlines()]
    cells = [[cell.strip() for cell in row] for row in rows if len(row) == 5]
    return {service: (state, health) for env, service, _, state, health in cells if env == "dev"}


def up_repairs_an_orphan_a_hung_server_a_crash_and_an_edited_env_file(
    newcomer: Newcomer,
) -> None:
    orphan = [p.pid for p in psutil.Process(newcomer.pid("app")).children()]
    os.kill(newcomer.pid("app"), signal.SIGKILL)  # the reload parent: its worker keeps the port
    for child in psutil.Process(newcomer.pid("callback")).children():
        if "spawn_main" in " ".join(child.cmdline()):
            child.kill()  # the reloader lives on, answering nothing
    os.kill(newcomer.pid("sandbox"), signal.SIGKILL)  # a crash
    wait_for(lambda: not port_in_use(newcomer.port("SANDBOX_PORT")), "the sandbox to die")
    old_port, new_port = newcomer.port("CALLBACK_PORT"), free_port()
    newcomer.set(
        CALLBACK_PORT=new_port, SCHWAB_REDIRECT_URI=f"https://127.0.0.1:{new_port}/callback"
    )

    status = _status(newcomer)
    assert status["app"][0] == "orphaned"
    assert status["callback"][0] == "running"
    assert status["callback"][1].startswith("not answering; stale: CALLBACK_PORT")
    assert status["sandbox"][0] == "stopped"
    assert status["worker"][1].startswith("stale: CALLBACK_PORT")

    up = newcomer.make("up")

    assert up.code == 0, up.output
    assert "restarting app: it was killed but left pid" in up.output
    assert "restarting callback: it is running but does not answer" in up.output
    assert "restarting worker: it was started with other settings (CALLBACK_PORT" in up.output
    assert "started sandbox" in up.output
    assert "already in use" not in up.output
    assert not [pid for pid in orphan if _alive(pid)]
    assert not port_in_use(old_port)
    health = httpx.get(f"https://127.0.0.1:{new_port}/health", verify=newcomer.trust, timeout=30)
    assert health.status_code == 200
    healthy = {health for _, health in _status(newcomer).values()}
    assert healthy <= {"healthy", "healthy, 0 queued"}, healthy
    synced = _sync(newcomer)  # the crashed sandbox still knows the login
    assert synced.code == 0, synced.output


def a_login_the_provider_refuses_says_how_to_reauthorize(newcomer: Newcomer) -> None:
    with _sandbox(newcomer) as sandbox:
        assert sandbox.post("/sandbox/tokens/revoke").status_code == 200
        assert sandbox.post("/sandbox/tokens/expire").status_code == 200

    failed = _sync(newcomer)

    assert failed.code == 1, failed.output
    hint = re.search(
        r"Re-authorize it: POST /api/v1/providers/[0-9a-f-]{36}/authorization", failed.output
    )
    assert hint is not None, failed.output
    assert failed.output.count("needs_reauth") == 1
    log = (newcomer.state / "logs" / "worker.log").read_text()
    assert hint.group(0) in log
    again = newcomer.dashtam("sync")
    assert again.code == 2, again.output
    assert "need(s) re-authorization" in again.output
    assert hint.group(0) in again.output
