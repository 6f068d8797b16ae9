"""Mailers: files in the state folder by default, SMTP when configured, sent after the response."""

from __future__ import annotations

import logging
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path

import pytest
from fastapi import BackgroundTasks
from tests.test_config import get_test_settings

from dashtam.auth.mailer import BackgroundMailer, FileMailer, SmtpMailer, compose, mailer_for


def _message() -> EmailMessage:
    settings = get_test_settings()
    return compose(settings, "ada@example.com", "Hello", "Body text\n")


async def test_file_mailer_writes_an_eml_and_logs_where(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dashtam.auth.mailer")
    await FileMailer(tmp_path / "mail").send(_message())
    [written] = list((tmp_path / "mail").glob("*.eml"))
    parsed = message_from_bytes(written.read_bytes())
    assert parsed["To"] == "ada@example.com"
    assert parsed["Subject"] == "Hello"
    assert any(getattr(r, "path", None) == str(written) for r in caplog.records)


def test_without_smtp_host_mail_goes_to_the_state_folder(tmp_path: Path) -> None:
    mailer = mailer_for(get_test_settings(SMTP_HOST="", STATE_DIR=str(tmp_path)))
    assert isinstance(mailer, FileMailer)
    assert mailer.directory == tmp_path / "mail"


def test_with_smtp_host_mail_goes_over_smtp() -> None:
    assert isinstance(mailer_for(get_test_settings(SMTP_HOST="mail.internal")), SmtpMailer)


def test_compose_uses_the_configured_sender() -> None:
    message = compose(get_test_settings(SMTP_FROM="noreply@dashtam.test"), "a@b.c", "S", "B")
    assert message["From"] == "noreply@dashtam.test"


class _Failing:
    async def send(self, message: EmailMessage) -> None:
        raise ConnectionRefusedError("smtp down")


class _Recording:
    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []

    async def send(self, message: EmailMessage) -> None:
        self.sent.append(message)


async def test_background_mailer_sends_only_when_the_tasks_run() -> None:
    tasks, recording = BackgroundTasks(), _Recording()
    await BackgroundMailer(recording, tasks).send(_message())
    assert recording.sent == []
    await tasks()
    assert [m["Subject"] for m in recording.sent] == ["Hello"]


async def test_a_failed_delivery_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    tasks = BackgroundTasks()
    await BackgroundMailer(_Failing(), tasks).send(_message())
    await tasks()
    assert any(r.message == "mail delivery failed" for r in caplog.records)
