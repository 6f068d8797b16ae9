"""The API's own documentation routes, rate limited like every other route."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from dashtam.auth.ratelimit import Limit, rate_limited

OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"


def install_docs(app: FastAPI) -> None:
    """`/openapi.json` and the Swagger UI at `/docs` (the app is made with both switched off)."""
    limited = [Depends(rate_limited(Limit.ANONYMOUS))]

    @app.get(OPENAPI_PATH, include_in_schema=False, dependencies=limited)
    async def openapi_document() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get(DOCS_PATH, include_in_schema=False, dependencies=limited)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=OPENAPI_PATH, title=f"{app.title} API")
