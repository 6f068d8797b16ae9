"""The OAuth callback server: receives the provider's redirect, hands it to the app, shows a page.

It is a separate process (its own port, TLS in dev) so the registered redirect URI stays fixed
while the API moves or restarts. It never logs the code or state: uvicorn's access log lines go
through the redacting formatter, and this module logs only outcomes.
"""

from __future__ import annotations

import html
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse

from dashtam.auth.audit import RequestContext
from dashtam.core.config import Settings, load_settings
from dashtam.core.logging import configure_logging
from dashtam.core.middleware import REQUEST_ID_HEADER, RequestIdMiddleware, trust_proxies

logger = logging.getLogger(__name__)

INTERNAL_CALLBACK_PATH = "/api/v1/internal/oauth/callback"
SECRET_HEADER = "X-Dashtam-Callback-Secret"  # noqa: S105 - a header name

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · Dashtam</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem}}
.ok{{color:#1a7f37}}.fail{{color:#cf222e}}</style></head>
<body><h1 class="{css}" id="result">{title}</h1><p id="message">{message}</p>{extra}</body></html>
"""


def page(title: str, message: str, *, ok: bool, status: int = 200, extra: str = "") -> HTMLResponse:
    body = _PAGE.format(
        title=html.escape(title),
        message=html.escape(message),
        css="ok" if ok else "fail",
        extra=extra,
    )
    return HTMLResponse(body, status_code=status)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    configure_logging(settings.LOG_LEVEL)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The app's certificate is our own self-signed one: trust exactly that file.
        verify: str | bool = str(settings.tls_cert_path) if settings.APP_TLS else True
        async with httpx.AsyncClient(
            base_url=settings.app_base_url, verify=verify, timeout=30.0
        ) as client:
            app.state.app_client = client
            yield

    app = FastAPI(title="Dashtam OAuth callback", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(RequestIdMiddleware)
    trust_proxies(app, settings)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return page(
            "Dashtam OAuth callback server",
            "This server receives the redirect from your brokerage after you approve access. "
            "Start a connection from the Dashtam API to use it.",
            ok=True,
        )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy", "service": "callback"}

    @app.get("/callback", response_class=HTMLResponse)
    async def callback(
        request: Request,
        code: Annotated[str | None, Query(max_length=2048)] = None,
        state: Annotated[str | None, Query(max_length=512)] = None,
        error: Annotated[str | None, Query(max_length=200)] = None,
        error_description: Annotated[str | None, Query(max_length=500)] = None,
    ) -> HTMLResponse:
        if not state or not (code or error):
            return page(
                "Connection failed",
                "This page was opened without the provider's answer (code or error, and state). "
                "Start the connection again from Dashtam.",
                ok=False,
                status=400,
            )
        client: httpx.AsyncClient = request.app.state.app_client
        try:
            answer = await client.post(
                INTERNAL_CALLBACK_PATH,
                json={
                    "code": code,
                    "state": state,
                    "error": error,
                    "error_description": error_description,
                    "client_ip": RequestContext.from_request(request).ip,
                },
                headers={
                    SECRET_HEADER: settings.CALLBACK_SHARED_SECRET,
                    REQUEST_ID_HEADER: request.state.request_id,
                },
            )
        except httpx.HTTPError as exc:
            logger.warning("callback could not reach the app", extra={"error": type(exc).__name__})
            return page(
                "Connection failed",
                "Dashtam's API could not be reached, so the connection was not completed. "
                "Check that Dashtam is running (`make status`) and start the connection again.",
                ok=False,
                status=502,
            )
        result = answer.json() if answer.headers.get("content-type", "").endswith("json") else {}
        message = str(result.get("message") or result.get("detail") or "")
        if answer.is_success and result.get("status") == "active":
            logger.info("callback completed", extra={"outcome": "success"})
            return page(
                "Connected",
                message or "Your account is connected. You can close this window.",
                ok=True,
            )
        logger.info("callback failed", extra={"outcome": "failure", "status": answer.status_code})
        refusal = answer.status_code in (429, 503)  # rate limited, or limiting unavailable
        response = page(
            "Connection failed",
            message or f"Dashtam could not complete the connection (HTTP {answer.status_code}).",
            ok=False,
            status=answer.status_code if refusal else 400 if answer.status_code < 500 else 502,
        )
        if refusal and "retry-after" in answer.headers:
            response.headers["Retry-After"] = answer.headers["retry-after"]
        return response

    return app
