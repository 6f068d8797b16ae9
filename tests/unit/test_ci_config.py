"""The CI workflow and the coverage setup, read as data: what CI runs, on what, what it keeps."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def test_workflow_runs_make_ci_on_push_and_pull_request_for_each_python() -> None:
    flow = workflow()
    triggers = flow[True]  # YAML 1.1 reads the key `on` as true
    assert set(triggers) == {"push", "pull_request"}
    (job,) = flow["jobs"].values()
    assert job["runs-on"].startswith("ubuntu-")
    assert job["strategy"]["matrix"]["python-version"] == ["3.11", "3.12", "3.13"]
    runs = [step.get("run", "") for step in job["steps"]]
    assert any(re.match(r"make ci\b", command) for command in runs)
    uv = next(step for step in job["steps"] if "setup-uv" in step.get("uses", ""))
    assert uv["with"]["enable-cache"] is True
    upload = next(step for step in job["steps"] if "upload-artifact" in step.get("uses", ""))
    assert upload["if"] == "always()"  # a failing run keeps its reports too
    paths = upload["with"]["path"].split()
    assert {"reports/coverage.xml", "reports/junit.xml"} <= set(paths)


def test_coverage_measures_src_and_the_processes_tests_start() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["coverage"]["run"]
    assert config["source_pkgs"] == ["dashtam"]
    assert "subprocess" in config["patch"]
    assert config["sigterm"] is True  # uvicorn re-raises SIGTERM: no atexit
    makefile = (ROOT / "Makefile").read_text()
    floor = re.search(r"(?m)^COVERAGE_FLOOR := (\d+)$", makefile)
    assert floor
    assert int(floor.group(1)) >= 80
    ci = re.search(r"(?ms)^ci:.*?\n\n", makefile)
    assert ci
    assert "--cov-fail-under=$(COVERAGE_FLOOR)" in ci.group(0)
    test = re.search(r"(?ms)^test: .*?\n\n", makefile)
    assert test
    assert "--cov" not in test.group(0)  # `make test` stays fast
