"""The production topology on one machine (`dashtam up --env prod`), driven over HTTPS through
Caddy: several app workers whose metrics add up, the callback and the worker behind it, metrics
closed to the public, Prometheus scraping with the token. Bad settings stop it before anything
starts. Runs on an isolated copy (own folder, ports, secrets), never the developer's prod.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.auth import API, DEFAULT_PASSWORD, unique_email
from tests.support.metrics import Scrape

from dashtam.core.config import PROJECT_ROOT
from dashtam.core.envfile import parse_env_file, write_env_file
from dashtam.devenv.isolated import IsolatedCopy, make_isolated_copy
from dashtam.devenv.processes import port_in_use

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]
DASHTAM = [sys.executable, "-m", "dashtam.cli"]
USERS_ME = 12


def dashtam(
    copy: IsolatedCopy, *args: str, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DASHTAM, *args],
        env=copy.process_env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class Production:
    copy: IsolatedCopy

    @property
    def env(self) -> dict[str, str]:
        return self.copy.settings["prod"]

    @property
    def env_file(self) -> Path:
        return self.copy.folder / "env" / ".env.prod"

    @property
    def public_url(self) -> str:
        return f"https://localhost:{self.env['PROXY_HTTPS_PORT']}"

    @property
    def certificate(self) -> ssl.SSLContext:
        """Trust the copy's own certificate (the one Caddy serves), nothing else."""
        return ssl.create_default_context(
            cafile=self.copy.folder / "state" / "certs" / "dev-cert.pem"
        )

    def edited(self, **changes: str) -> dict[str, str]:
        """Rewrite the env file with `changes`; returns the values before."""
        before = parse_env_file(self.env_file)
        write_env_file(self.env_file, before | changes, "# an isolated copy")
        return before

    def nothing_started(self) -> None:
        run_dir = self.copy.folder / "state" / "prod" / "run"
        assert not list(run_dir.glob("*.pid")) if run_dir.is_dir() else True
        for name in ("POSTGRES_PORT", "REDIS_PORT", "APP_PORT", "PROXY_HTTPS_PORT"):
            assert not port_in_use(int(self.env[name])), name


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Production]:
    copy = make_isolated_copy(tmp_path_factory.mktemp("prod"), production=True)
    yield Production(copy)
    dashtam(copy, "monitor", "--env", "prod", "--stop")
    dashtam(copy, "clean", "--env", "prod", "--yes")


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"PUBLIC_DOMAIN": ""}, "PUBLIC_DOMAIN is not set"),
        ({"JWT_SECRET_KEY": ""}, "JWT_SECRET_KEY is missing"),
        ({"METRICS_TOKEN": ""}, "METRICS_TOKEN is missing"),
        ({"SANDBOX_ENABLED": ""}, "SANDBOX_ENABLED is not set"),
        ({"TLS_CERT_FILE": "/nonexistent/cert.pem"}, "TLS_CERT_FILE is /nonexistent/cert.pem"),
    ],
)
def test_a_bad_setting_names_itself_and_starts_nothing(
    production: Production, changes: dict[str, str], named: str
) -> None:
    before = production.edited(**changes)
    try:
        result = dashtam(production.copy, "up", "--env", "prod")
    finally:
        write_env_file(production.env_file, before, "# an isolated copy")
    assert result.returncode == 2, result.stdout + result.stderr
    assert named in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr
    production.nothing_started()


def _https(production: Production) -> httpx.Client:
    return httpx.Client(base_url=production.public_url, verify=production.certificate, timeout=30)


def test_the_topology_serves_https_through_caddy(production: Production, promtool: str) -> None:
    """One test, in order: up, HTTPS through Caddy, metrics, then Prometheus on it."""
    started = dashtam(production.copy, "up", "--env", "prod")
    assert started.returncode == 0, started.stdout + started.stderr
    with _https(production) as public:
        health = public.get("/health")
        assert health.status_code == 200
        assert health.json()["environment"] == "production"
        assert "server" not in health.headers  # neither Caddy's nor uvicorn's
        assert health.headers["strict-transport-security"].startswith("max-age=")
        email = unique_email()
        credentials = {"email": email, "password": DEFAULT_PASSWORD}
        registered = public.post(f"{API}/auth/register", json=credentials | {"name": "Prod"})
        assert registered.status_code == 201, registered.text
        tokens = public.post(f"{API}/auth/login", json=credentials).json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        for _ in range(USERS_ME):
            with _https(production) as fresh:  # new connections: spread over the workers
                assert fresh.get(f"{API}/users/me", headers=headers).status_code == 200
        assert public.get("/docs").status_code == 404  # API_DOCS_ENABLED=false
        assert public.get("/openapi.json").status_code == 404
        assert public.get("/metrics").status_code == 404  # Caddy does not forward it
        callback = public.get("/callback", params={"state": "unknown", "code": "x"})
        assert callback.status_code == 400  # the callback server answers through Caddy
        assert "expired or is not known" in callback.text

    direct = f"http://127.0.0.1:{production.env['APP_PORT']}/metrics"
    assert httpx.get(direct).status_code == 401
    token = {"Authorization": f"Bearer {production.env['METRICS_TOKEN']}"}
    scraped = httpx.get(direct, headers=token)
    assert scraped.status_code == 200
    served = Scrape.parse(scraped.text)
    me = {"method": "GET", "route": f"{API}/users/me", "status": "200"}
    assert served.value("dashtam_http_requests_total", **me) == USERS_ME  # every worker's
    # Every worker process keeps its values in the shared folder (a file per process); which
    # worker answered the scrape does not matter, the sum above is everyone's.
    folder = production.copy.folder / "state" / "prod" / "run" / "metrics"
    writers = {path.stem.rsplit("_", 1)[-1] for path in folder.glob("gauge_livesum_*.db")}
    assert len(writers) == int(production.env["APP_WORKERS"]) >= 2
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=scraped.text, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    worker = f"http://127.0.0.1:{production.env['WORKER_METRICS_PORT']}/metrics"
    assert httpx.get(worker).status_code == 401
    assert "dashtam_job_queue_depth" in httpx.get(worker, headers=token).text
    monitor_scrapes_the_app_and_worker(production)
    for stop in (("monitor", "--env", "prod", "--stop"), ("down", "--env", "prod")):
        assert dashtam(production.copy, *stop).returncode == 0
    production.nothing_started()  # and `down` left nothing behind


def monitor_scrapes_the_app_and_worker(production: Production) -> None:
    """`ENV=prod make monitor`: a real Prometheus, with the token, sees both targets up."""
    started = dashtam(production.copy, "monitor", "--env", "prod")
    assert started.returncode == 0, started.stdout + started.stderr
    api = f"http://127.0.0.1:{production.env['PROMETHEUS_PORT']}/api/v1"
    deadline = time.monotonic() + 60
    health: dict[str, str] = {}
    targets: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        targets = httpx.get(f"{api}/targets").json()["data"]["activeTargets"]
        health = {target["labels"]["job"]: target["health"] for target in targets}
        if health == {"dashtam-app": "up", "dashtam-worker": "up"}:
            break
        time.sleep(0.5)
    assert health == {"dashtam-app": "up", "dashtam-worker": "up"}, targets
    rules = httpx.get(f"{api}/rules").json()["data"]["groups"][0]["rules"]
    assert {rule["name"] for rule in rules} >= {"DashtamJobQueueLag", "DashtamHttp5xxRate"}
