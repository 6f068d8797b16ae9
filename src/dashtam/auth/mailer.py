"""Outgoing mail: SMTP when configured, otherwise files in the environment's state folder."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from fastapi import BackgroundTasks, Request

from dashtam.core.config import Settings

logger = logging.getLogger(__name__)


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class FileMailer:
    """Development and tests: each message becomes an .eml file a person (or test) can open."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        path = self.directory / f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
        path.write_bytes(message.as_bytes())
        logger.info("mail written", extra={"path": str(path), "subject": message["Subject"]})


class SmtpMailer:
    def __init__(self, settings: Settings) -> None:
        self._host = settings.SMTP_HOST
        self._port = settings.SMTP_PORT
        self._username = settings.SMTP_USERNAME
        self._password = settings.SMTP_PASSWORD

    def _deliver(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self._host, self._port, timeout=10) as smtp:
            smtp.starttls()
            if self._username:
                smtp.login(self._username, self._password)
            smtp.send_message(message)

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._deliver, message)


class BackgroundMailer:
    """Sends after the response: callers answer at once and SMTP latency reveals nothing."""

    def __init__(self, mailer: Mailer, tasks: BackgroundTasks) -> None:
        self._mailer = mailer
        self._tasks = tasks

    async def send(self, message: EmailMessage) -> None:
        self._tasks.add_task(_deliver, self._mailer, message)


async def _deliver(mailer: Mailer, message: EmailMessage) -> None:
    try:
        await mailer.send(message)
    except Exception:  # a lost mail must not turn into an error after the response was sent
        logger.exception("mail delivery failed", extra={"subject": message["Subject"]})


def mailer_for(settings: Settings) -> Mailer:
    if settings.SMTP_HOST:
        return SmtpMailer(settings)
    return FileMailer(settings.state_dir / "mail")


def get_mailer(request: Request) -> Mailer:
    """FastAPI dependency (tests override it to capture messages)."""
    return mailer_for(request.app.state.settings)


def compose(settings: Settings, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.SMTP_FROM
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    return message
