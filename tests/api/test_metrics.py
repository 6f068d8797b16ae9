"""GET /metrics: Prometheus text (read back with prometheus_client's parser), requests by route
template, auth outcomes, connections by status, Redis errors, and who may read it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
import redis as sync_redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from tests.support.auth import API, client_for, login, register, signup_and_login, unique_email
from tests.support.metrics import Scrape, queried_metric_names
from tests.test_config import TestSettings

from dashtam.core.metrics import render
from dashtam.core.redis import CountedRedis
from dashtam.jobs.metrics import queue_families
from dashtam.main import AppResources
from dashtam.models import Provider, ProviderConnection, ProviderToken, User
from dashtam.models.base import utcnow


async def scrape(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> Scrape:
    response = await client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return Scrape.parse(response.text)


async def test_requests_are_counted_by_route_template(client: httpx.AsyncClient) -> None:
    headers = await signup_and_login(client)
    provider_id = uuid.uuid4()
    template = f"{API}/providers/{{provider_id}}"
    before = await scrape(client)
    missing = await client.get(f"{API}/providers/{provider_id}", headers=headers)
    assert missing.status_code == 404
    assert (await client.get("/no/such/page")).status_code == 404
    after = await scrape(client)
    counted = "dashtam_http_requests_total"
    labels = {"method": "GET", "route": template, "status": "404"}
    assert after.value(counted, **labels) - before.value(counted, **labels) == 1
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert after.value(counted, **unmatched) - before.value(counted, **unmatched) == 1
    timed = "dashtam_http_request_duration_seconds_count"
    assert (
        after.value(timed, method="GET", route=template)
        - before.value(timed, method="GET", route=template)
        == 1
    )
    assert str(provider_id) not in str(after.samples)  # templates, never raw paths
    assert after.value(counted, method="GET", route="/metrics", status="200") >= 1
    assert after.types["dashtam_http_request_duration_seconds"] == "histogram"


async def test_the_scrape_itself_is_in_flight(client: httpx.AsyncClient) -> None:
    assert (await scrape(client)).value("dashtam_http_requests_in_flight") == 1


async def test_auth_outcomes(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email=email)
    before = await scrape(client)
    wrong = await client.post(f"{API}/auth/login", json={"email": email, "password": "nope" * 4})
    assert wrong.status_code == 401
    await login(client, email)
    after = await scrape(client)
    name = "dashtam_auth_events_total"
    for outcome in ("failure", "success"):
        delta = after.value(name, action="login", outcome=outcome) - before.value(
            name, action="login", outcome=outcome
        )
        assert delta == 1, outcome


async def test_connections_by_status_and_logins_expiring_within_a_day(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    before = await scrape(client)
    now = utcnow()
    user = User(email=unique_email(), name="M", password_hash="x")
    session.add(user)
    await session.flush()
    for number, (status, refresh_ends) in enumerate(
        (
            ("active", now + timedelta(hours=3)),  # ends within 24 h
            ("active", now + timedelta(days=5)),
            ("needs_reauth", now - timedelta(hours=1)),  # already over; not "expiring"
        )
    ):
        provider = Provider(user_id=user.id, provider_key="schwab", alias=f"Schwab {number}")
        session.add(provider)
        await session.flush()
        connection = ProviderConnection(provider_id=provider.id, status=status)
        session.add(connection)
        await session.flush()
        session.add(
            ProviderToken(
                connection_id=connection.id,
                access_token_encrypted="",
                refresh_expires_at=refresh_ends,
            )
        )
        await session.flush()
    await session.commit()
    after = await scrape(client)
    name = "dashtam_provider_connections"
    assert after.value(name, status="active") - before.value(name, status="active") == 2
    delta = after.value(name, status="needs_reauth") - before.value(name, status="needs_reauth")
    assert delta == 1
    assert after.value(name, status="disconnected") == before.value(name, status="disconnected")
    expiring = "dashtam_provider_logins_expiring"
    assert after.value(expiring) - before.value(expiring) == 1


@pytest.fixture
async def dead_redis_client(
    app_settings: TestSettings,
    engine: AsyncEngine,
    session_factory: async_sessionmaker[AsyncSession],
    unused_tcp_port: int,
) -> AsyncIterator[httpx.AsyncClient]:
    dead = CountedRedis(host="127.0.0.1", port=unused_tcp_port, socket_connect_timeout=0.5)
    async with client_for(app_settings, AppResources(engine, session_factory, dead)) as client:
        yield client
    await dead.aclose()


async def test_redis_errors_are_counted(dead_redis_client: httpx.AsyncClient) -> None:
    before = await scrape(dead_redis_client)
    login = {"email": unique_email(), "password": "not-the-password-x"}
    await dead_redis_client.post("/api/v1/auth/login", json=login)  # its limit fails open
    after = await scrape(dead_redis_client)
    name = "dashtam_redis_errors_total"
    assert after.total(name) - before.total(name) >= 1
    assert "EVALSHA" in after.label_values(name, "command")  # the rate-limit script


@pytest.fixture
async def guarded_client(
    app_settings: TestSettings,
    engine: AsyncEngine,
    session_factory: async_sessionmaker[AsyncSession],
    redis: object,
) -> AsyncIterator[httpx.AsyncClient]:
    settings = app_settings.model_copy(update={"METRICS_TOKEN": "metrics-token-for-tests"})
    resources = AppResources(engine, session_factory, redis)  # type: ignore[arg-type]
    async with client_for(settings, resources) as client:
        yield client


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "metrics-token-for-tests"])
async def test_with_a_token_only_its_bearer_reads_the_metrics(
    guarded_client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await guarded_client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "dashtam_" not in response.text


async def test_the_token_bearer_reads_the_metrics(guarded_client: httpx.AsyncClient) -> None:
    scraped = await scrape(guarded_client, {"Authorization": "Bearer metrics-token-for-tests"})
    assert "dashtam_http_requests_in_flight" in {name for name, _ in scraped.samples}


async def test_metrics_can_be_switched_off(
    app_settings: TestSettings,
    engine: AsyncEngine,
    session_factory: async_sessionmaker[AsyncSession],
    redis: object,
) -> None:
    settings = app_settings.model_copy(update={"METRICS_ENABLED": False})
    resources = AppResources(engine, session_factory, redis)  # type: ignore[arg-type]
    async with client_for(settings, resources) as client:
        assert (await client.get("/metrics")).status_code == 404


async def test_dashboard_and_alerts_query_only_metrics_that_exist(
    client: httpx.AsyncClient, settings: TestSettings
) -> None:
    """The app's scrape plus what the worker adds per scrape (this process defines the worker's
    metrics too: one module holds them all)."""
    exposed = (await scrape(client)).sample_names()
    with sync_redis.Redis.from_url(settings.redis_url) as queue_redis:
        exposed |= Scrape.parse(
            render(queue_families(settings, queue_redis)).decode()
        ).sample_names()
    missing = queried_metric_names() - exposed
    assert not missing, f"queried but never exposed: {sorted(missing)}"
