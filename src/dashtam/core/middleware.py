"""Middleware as plain ASGI (cheaper on the hot path than BaseHTTPMiddleware)."""

from __future__ import annotations

import uuid

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from dashtam.core.config import Settings
from dashtam.core.logging import request_id_var

REQUEST_ID_HEADER = "X-Request-ID"


def _accept(incoming: str) -> str:
    """Keep a caller's id when it is sane, so logs correlate across services."""
    if 8 <= len(incoming) <= 64 and incoming.isascii() and incoming.isprintable():
        return incoming
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
        rid = _accept(incoming)
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        token = request_id_var.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


def trust_proxies(app: Starlette, settings: Settings) -> None:
    """Believe X-Forwarded-For/-Proto from the configured proxies only; add it last (outermost).

    uvicorn's own middleware does the parsing: the client is the rightmost forwarded address
    that is not a trusted proxy, so a client's own header entries, which come first, never win.
    With no proxy configured nothing is added and the headers mean nothing. The servers run
    with `--no-proxy-headers`, so this is the only place that decides.
    """
    if settings.TRUSTED_PROXIES:
        app.add_middleware(
            ProxyHeadersMiddleware,
            trusted_hosts=settings.TRUSTED_PROXIES.split(","),
        )
