"""Installed code ships compiled: with PYTHONDONTWRITEBYTECODE set (as on the development
machines and in the image) nothing writes a cache at import, so a missing .pyc is recompiled by
every process that imports it (seconds per `dashtam` command and per server started)."""

from __future__ import annotations

import importlib
import re
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_installed_module_the_cli_and_app_import_has_bytecode() -> None:
    for name in ("dashtam.cli", "dashtam.main", "dashtam.jobs.worker"):
        importlib.import_module(name)
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    installed = [
        module
        for module in list(sys.modules.values())
        if getattr(module, "__cached__", None)
        and str(module.__file__).endswith(".py")
        and Path(module.__file__).resolve().is_relative_to(site)
    ]
    assert len(installed) > 100
    missing = sorted(m.__name__ for m in installed if not Path(m.__cached__).is_file())
    assert not missing, f"{len(missing)} installed modules without bytecode, e.g. {missing[:5]}"


def test_make_install_compiles_bytecode() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("$(STAMP): pyproject.toml requirements.lock", 1)[1].split("\n\n")[0]
    assert re.search(r"uv pip sync .*--compile-bytecode", recipe)
    assert re.search(r"uv pip install .*--compile-bytecode .*-e \.", recipe)
    assert "compileall -q src" in recipe


def test_the_image_ships_bytecode() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert re.search(r"(?m)^\s+UV_COMPILE_BYTECODE=1\s*$", dockerfile)
    assert "python -m compileall -q src" in dockerfile
