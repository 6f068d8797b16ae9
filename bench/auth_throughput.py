"""Authenticated read throughput vs a bare endpoint on the same server, and login latency.

A real uvicorn process (one worker, test settings, production argon2 parameters) serves the app
plus `/bench/bare`. It uses its own database, cloned from the migrated test template and dropped
afterwards, and its own Redis key prefix, so the test environment is left as it was.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import ssl
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from fastapi import FastAPI
from redis.asyncio import Redis
from tests.support.databases import create_worker_database, drop_worker_database
from tests.test_config import TEST_ENV_FILE

from dashtam.core.config import ENV_FILE_VARIABLE, Settings, load_settings
from dashtam.core.init_test_db import check_settings_are_for_testing
from dashtam.devenv.isolated import free_port
from dashtam.main import create_app

CONCURRENCY = 32
SECONDS = 8.0  # per endpoint, in ROUNDS alternating rounds
ROUNDS = 4
WARM_UP_SECONDS = 1.0
LOGINS = 15
PASSWORD = "bench-lantern-orbit-42"
PRODUCTION_HASHING = (
    "PASSWORD_HASH_TIME_COST",
    "PASSWORD_HASH_MEMORY_KIB",
    "PASSWORD_HASH_PARALLELISM",
)


def bench_app() -> FastAPI:
    """The app as configured by the environment, plus the bare endpoint to compare with."""
    app = create_app()

    async def bare() -> dict[str, bool]:
        return {"ok": True}

    app.add_api_route("/bench/bare", bare)
    return app


async def _load(
    port: int,
    path: str,
    headers: dict[str, str],
    seconds: float,
    *,
    tls: ssl.SSLContext | None = None,
    host: str = "127.0.0.1",
) -> float:
    """Requests/s over `CONCURRENCY` keep-alive connections (a minimal HTTP/1.1 client, so the
    load generator costs far less CPU than the server it measures); `tls` and `host` for a
    server that speaks HTTPS and picks its site by name (Caddy)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    deadline = time.perf_counter() + seconds

    async def connection() -> int:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=tls, server_hostname=host if tls else None
        )
        done = 0
        try:
            while time.perf_counter() < deadline:
                writer.write(request)
                status = await reader.readline()
                if b" 200 " not in status:
                    raise RuntimeError(f"{path} answered {status!r}")
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                done += 1
        finally:
            writer.close()
            await writer.wait_closed()
        return done

    started = time.perf_counter()
    counts = await asyncio.gather(*(connection() for _ in range(CONCURRENCY)))
    return sum(counts) / (time.perf_counter() - started)


async def _login_latencies(base: str, email: str) -> list[float]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        latencies = []
        for _ in range(LOGINS):
            started = time.perf_counter()
            response = await client.post(
                "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
            )
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()
        return latencies


async def _measure(port: int) -> dict[str, float]:
    base = f"http://127.0.0.1:{port}"
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        registered = await client.post(
            "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "Bench"}
        )
        registered.raise_for_status()
    latencies = await _login_latencies(base, email)
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        tokens = (
            await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        ).json()
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    await _load(port, "/bench/bare", {}, WARM_UP_SECONDS)
    await _load(port, "/api/v1/users/me", auth, WARM_UP_SECONDS)
    # Alternating short rounds, so a machine that slows down mid-run weighs on both sides alike.
    bare, me = [], []
    for _ in range(ROUNDS):
        bare.append(await _load(port, "/bench/bare", {}, SECONDS / ROUNDS))
        me.append(await _load(port, "/api/v1/users/me", auth, SECONDS / ROUNDS))
    return {
        "bare_rps": statistics.median(bare),
        "users_me_rps": statistics.median(me),
        "users_me_vs_bare_ratio": statistics.median(m / b for m, b in zip(me, bare, strict=True)),
        "login_median_ms": statistics.median(latencies) * 1000,
    }


@contextmanager
def _server(env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "uvicorn", "bench.auth_throughput:bench_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--log-level", "warning", "--no-access-log"]
    process = subprocess.Popen(command, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the benchmark server did not become healthy")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


async def _forget_redis_keys(settings: Settings, prefix: str) -> None:
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    async for key in redis.scan_iter(match=f"{prefix}*", count=500):
        await redis.delete(key)
    await redis.aclose()


def run() -> dict[str, float]:
    settings = load_settings(TEST_ENV_FILE)
    check_settings_are_for_testing(settings)
    run_id = f"{os.getpid()}x{secrets.token_hex(3)}"
    database = f"{settings.database_name}_{run_id}_bench"
    prefix = f"{settings.REDIS_KEY_PREFIX}bench{run_id}:"
    url = asyncio.run(create_worker_database(settings, database))
    defaults = {name: str(Settings.model_fields[name].default) for name in PRODUCTION_HASHING}
    env = {
        **os.environ,
        ENV_FILE_VARIABLE: str(TEST_ENV_FILE),
        "DATABASE_URL": url.render_as_string(hide_password=False),
        "REDIS_KEY_PREFIX": prefix,
        # Limits on, as in production, but high enough never to refuse: the authenticated
        # endpoint pays for counting every request, the bare one (no route limit) does not.
        "RATE_LIMITS_ENABLED": "true",
        "RATE_LIMIT_AUTHENTICATED": "10000000/60",
        "RATE_LIMIT_ANONYMOUS": "100000/60",
        "RATE_LIMIT_LOGIN": "1000/60",
        "RATE_LIMIT_REGISTER": "1000/60",
        **defaults,
    }
    port = free_port()
    try:
        with _server(env, port):
            return asyncio.run(_measure(port))
    finally:
        asyncio.run(drop_worker_database(settings, database))
        asyncio.run(_forget_redis_keys(settings, prefix))


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name:28s} {value:12.2f}")
    print("target: users_me_vs_bare_ratio >= 0.5")
