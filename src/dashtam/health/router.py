"""`GET /health`: is this process able to serve (database and Redis reachable)?"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel
from sqlalchemy import text

from dashtam import __version__
from dashtam.auth.ratelimit import Limit, rate_limited

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_SECONDS = 2.0

Status = Literal["ok", "unavailable"]


class HealthChecks(BaseModel):
    database: Status
    redis: Status


class Health(BaseModel):
    status: Literal["healthy", "unhealthy"]
    environment: str
    version: str
    checks: HealthChecks


async def _database_ok(request: Request) -> bool:
    async with request.app.state.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return True


async def _redis_ok(request: Request) -> bool:
    return bool(await request.app.state.redis.ping())


async def _check(probe: Awaitable[bool]) -> Status:
    try:
        return "ok" if await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS) else "unavailable"
    except Exception:  # any failure to answer means unavailable; details stay in the logs
        return "unavailable"


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health}},
    dependencies=[Depends(rate_limited(Limit.ANONYMOUS))],
)
async def health(request: Request, response: Response) -> Health:
    database, redis = await asyncio.gather(
        _check(_database_ok(request)),
        _check(_redis_ok(request)),
    )
    healthy = database == "ok" and redis == "ok"
    if not healthy:
        response.status_code = 503
    return Health(
        status="healthy" if healthy else "unhealthy",
        environment=request.app.state.settings.ENVIRONMENT.value,
        version=__version__,
        checks=HealthChecks(database=database, redis=redis),
    )
