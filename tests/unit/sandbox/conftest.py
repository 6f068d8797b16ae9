"""Fixtures for the sandbox tests: an in-process app and a client that speaks its OAuth flow.

Helpers live on fixtures (not importable functions) because tests run with importlib import mode.
"""

import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from dashtam.sandbox.app import SandboxState, create_app
from dashtam.sandbox.config import SandboxConfig

REDIRECT_URI = "https://127.0.0.1:8182/callback"
_SECRET = "test-secret"


def _config(**overrides: Any) -> SandboxConfig:
    """Explicit values, so SANDBOX_* variables in the environment cannot change a test."""
    values: dict[str, Any] = {
        "client_id": "test-client",
        "client_secret": _SECRET,
        "redirect_uris": [REDIRECT_URI],
        "seed": 7,
        "accounts": 3,
        "transactions_per_account": 250,
        "pending_per_account": 2,
        "history_days": 730,
        "reference_date": date(2025, 1, 15),
        "fault_rate_limit_every": 0,
        "fault_server_error_every": 0,
        "latency_ms": 0,
        "pkce_required": False,
    }
    return SandboxConfig(**(values | overrides))


@dataclass
class Sandbox:
    """One app plus a client, with the OAuth steps a provider integration performs."""

    app: FastAPI
    http: httpx.AsyncClient
    redirect_uri: str = REDIRECT_URI

    @property
    def state(self) -> SandboxState:
        state: SandboxState = self.app.state.sandbox
        return state

    @staticmethod
    def basic(secret: str = _SECRET) -> dict[str, str]:
        raw = base64.b64encode(f"test-client:{secret}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}

    @staticmethod
    def query(location: str) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}

    def authorize_params(self, **params: str) -> dict[str, str]:
        base = {"response_type": "code", "client_id": "test-client", "redirect_uri": REDIRECT_URI}
        return base | params

    async def decide(self, action: str, **params: str) -> httpx.Response:
        """Submit the consent form as the person would."""
        form = self.authorize_params(**params) | {"action": action}
        return await self.http.post("/v1/oauth/authorize", data=form)

    async def code(self, **params: str) -> str:
        response = await self.decide("approve", **params)
        assert response.status_code == 302, response.text
        return self.query(response.headers["location"])["code"]

    async def exchange(self, code: str, **extra: str) -> httpx.Response:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
        return await self.http.post("/v1/oauth/token", data=form | extra, headers=self.basic())

    async def refresh(self, refresh_token: str) -> httpx.Response:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return await self.http.post("/v1/oauth/token", data=form, headers=self.basic())

    async def login(self) -> dict[str, Any]:
        response = await self.exchange(await self.code(state="s"))
        assert response.status_code == 200, response.text
        tokens: dict[str, Any] = response.json()
        return tokens

    async def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {(await self.login())['access_token']}"}


@pytest.fixture
def make_config() -> Callable[..., SandboxConfig]:
    return _config


@pytest.fixture
def config() -> SandboxConfig:
    return _config()


@pytest.fixture
async def make_sandbox() -> AsyncIterator[Callable[[SandboxConfig], Sandbox]]:
    clients: list[httpx.AsyncClient] = []

    def make(config: SandboxConfig) -> Sandbox:
        app = create_app(config)
        transport = httpx.ASGITransport(app=app)
        clients.append(httpx.AsyncClient(transport=transport, base_url="http://sandbox"))
        return Sandbox(app, clients[-1])

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def sandbox(make_sandbox: Callable[[SandboxConfig], Sandbox], config: SandboxConfig) -> Sandbox:
    return make_sandbox(config)
