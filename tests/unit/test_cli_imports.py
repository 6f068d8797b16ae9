"""The `dashtam` command imports what a command needs when it runs: `--help` loads none of the
web, database or queue stacks, and `status`, `down` and `clean` none of FastAPI, SQLAlchemy or
Alembic (they were seconds of every command's start-up)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dashtam.core.config import PROJECT_ROOT
from dashtam.devenv.isolated import make_isolated_copy

APP_STACK = ("fastapi", "starlette", "sqlalchemy", "sqlmodel", "alembic")
EVERYTHING_BUT_THE_CLI = (*APP_STACK, "pydantic", "httpx", "redis", "arq", "asyncpg", "psutil")

# Runs the console script's entry point and reports which modules it loaded.
_PROBE = """
import json, sys
sys.argv = ["dashtam", *json.loads(sys.argv[1])]
from dashtam.cli import app
try:
    app()
except SystemExit as done:
    code = done.code
else:
    code = None
with open(OUT, "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""


def loaded_by(args: list[str], tmp_path: Path) -> tuple[object, set[str]]:
    """A fresh interpreter runs `dashtam *args` on an isolated copy of the environments."""
    copy = make_isolated_copy(tmp_path / "copy")
    out = tmp_path / "modules.json"
    probe = _PROBE.replace("OUT", repr(str(out)))
    subprocess.run(
        [sys.executable, "-c", probe, json.dumps(args)],
        env=copy.process_env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    )
    found = json.loads(out.read_text())
    return found["code"], {name.split(".")[0] for name in found["modules"]}


def test_help_loads_only_the_command_line(tmp_path: Path) -> None:
    code, modules = loaded_by(["--help"], tmp_path)
    assert code == 0
    assert "typer" in modules
    assert not modules & set(EVERYTHING_BUT_THE_CLI)


@pytest.mark.parametrize(
    "args", [["status"], ["down", "--env", "test"], ["clean", "--env", "dev", "--yes"]]
)
def test_service_commands_skip_the_app_stack(args: list[str], tmp_path: Path) -> None:
    code, modules = loaded_by(args, tmp_path)
    assert code == 0
    assert "pydantic_settings" in modules  # they did read the settings
    assert not modules & set(APP_STACK)
