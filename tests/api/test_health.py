"""`GET /health` reports the environment, version, and each dependency."""

from __future__ import annotations

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from tests.test_config import TestSettings

from dashtam import __version__
from dashtam.main import AppResources, create_app


async def test_healthy(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "healthy",
        "environment": "testing",
        "version": __version__,
        "checks": {"database": "ok", "redis": "ok"},
    }
    assert len(response.headers["x-request-id"]) == 32


async def _health_with(resources: AppResources, settings: TestSettings) -> httpx.Response:
    app = create_app(settings, resources=resources)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.get("/health")


async def test_redis_down_is_503(
    settings: TestSettings,
    engine: AsyncEngine,
    session_factory: async_sessionmaker[AsyncSession],
    unused_tcp_port: int,
) -> None:
    dead_redis = Redis(host="127.0.0.1", port=unused_tcp_port, socket_connect_timeout=0.5)
    response = await _health_with(AppResources(engine, session_factory, dead_redis), settings)
    await dead_redis.aclose()
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "redis": "unavailable"}


async def test_database_down_is_503(
    settings: TestSettings,
    session_factory: async_sessionmaker[AsyncSession],
    redis: Redis,
    unused_tcp_port: int,
) -> None:
    dead_engine = create_async_engine(
        settings.database_url.set(port=unused_tcp_port), connect_args={"timeout": 0.5}
    )
    response = await _health_with(AppResources(dead_engine, session_factory, redis), settings)
    await dead_engine.dispose()
    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"
    assert response.json()["checks"] == {"database": "unavailable", "redis": "ok"}


async def test_openapi_docs_are_served(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    assert (await client.get("/openapi.json")).json()["info"]["title"] == "Dashtam"


async def test_openapi_marks_protected_routes_with_the_bearer_scheme(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    paths = schema["paths"]
    assert paths["/api/v1/users/me"]["get"]["security"] == [{"HTTPBearer": []}]
    assert paths["/api/v1/auth/logout"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in paths["/api/v1/auth/login"]["post"]
