"""Signing up and in over the API, for tests of any protected route."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from typing import Any

import httpx
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from dashtam.auth.mailer import get_mailer
from dashtam.core.config import Settings
from dashtam.main import AppResources, create_app
from dashtam.models.auth import AuthAuditLog
from dashtam.models.user import User

API = "/api/v1"
DEFAULT_PASSWORD = "correct-lantern-orbit-42"
TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$", re.MULTILINE)


class Outbox:
    """A mailer that keeps messages in memory (install it with dependency_overrides)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def send(self, message: EmailMessage) -> None:
        self.messages.append(message)

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]

    def token(self, address: str, subject_word: str) -> str:
        """The token in the latest mail to `address` whose subject mentions `subject_word`."""
        mail = [m for m in self.to(address) if subject_word in m["Subject"]][-1]
        body = mail.get_content()
        match = TOKEN.search(body)
        assert match, body
        return match.group(0)


def unique_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


async def register(
    client: httpx.AsyncClient,
    *,
    email: str | None = None,
    password: str = DEFAULT_PASSWORD,
    name: str = "Test User",
) -> dict[str, Any]:
    response = await client.post(
        f"{API}/auth/register",
        json={"email": email or unique_email(), "password": password, "name": name},
    )
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


async def login(
    client: httpx.AsyncClient, email: str, password: str = DEFAULT_PASSWORD, **headers: str
) -> dict[str, Any]:
    """The token pair of a fresh session."""
    response = await client.post(
        f"{API}/auth/login", json={"email": email, "password": password}, headers=headers
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def signup_and_login(
    client: httpx.AsyncClient, *, email: str | None = None, password: str = DEFAULT_PASSWORD
) -> dict[str, str]:
    """Register a new user, sign in, and return the Authorization headers to send."""
    email = email or unique_email()
    await register(client, email=email, password=password)
    return bearer(await login(client, email, password))


async def audit_rows(session: AsyncSession, action: str) -> list[AuthAuditLog]:
    """This test's auth audit rows of one action, oldest first (read fresh, not from the
    identity map). Rows other tests committed for real stay (the trail is append-only): they
    are older than this test's transaction, whose now() stamps every row the test writes."""
    rows = await session.scalars(
        select(AuthAuditLog)
        .where(AuthAuditLog.action == action, AuthAuditLog.created_at >= func.now())
        .order_by(AuthAuditLog.created_at)
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def user_row(session: AsyncSession, email: str) -> User:
    user = await session.scalar(
        select(User).where(User.email == email).execution_options(populate_existing=True)
    )
    assert user is not None
    return user


@asynccontextmanager
async def client_for(
    settings: Settings, resources: AppResources, outbox: Outbox | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A client for an app of its own (other settings or resources than the `client` fixture's)."""
    app = create_app(settings, resources=resources)
    mailer = outbox or Outbox()
    app.dependency_overrides[get_mailer] = lambda: mailer
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client
