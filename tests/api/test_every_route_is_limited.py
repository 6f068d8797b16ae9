"""Every route the API serves has a rate limit: per user where it needs a token, per client IP
where it does not (a route added later without one fails here)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from dashtam.auth.ratelimit import Limit, route_limits


def _routes(app: FastAPI) -> dict[str, APIRoute]:
    """Full path and method of each route (included routers' routes too) -> the route."""
    found = {}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            found[f"{','.join(sorted(route.methods))} {context.path}"] = route
    return found


def test_every_route_has_a_rate_limit(app: FastAPI) -> None:
    routes = _routes(app)
    assert len(routes) >= 38
    assert [name for name, route in routes.items() if not route_limits(route.dependant)] == []
    assert {"GET /health", "GET /docs", "GET /openapi.json"} <= set(routes)


def test_routes_that_need_a_token_are_limited_per_user(app: FastAPI) -> None:
    for name, route in _routes(app).items():
        if name.split(" ")[1].startswith(("/api/v1/accounts", "/api/v1/users", "/api/v1/syncs")):
            assert Limit.AUTHENTICATED in route_limits(route.dependant), name
