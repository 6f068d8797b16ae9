"""Errors: user mistakes carry a hint; API errors carry what problem+json needs.

Kept free of web-framework imports so the CLI starts fast; `core.problems` renders them.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any


class UserError(Exception):
    """Something the user can fix; the CLI prints it without a stack trace."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigurationError(UserError):
    """A setting is missing or unusable; the message says which and how to fix it."""


class ProblemError(Exception):
    """An API error rendered as problem+json; `code` is a stable machine-readable slug."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str = "",
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code or HTTPStatus(status).phrase.lower().replace(" ", "_")
        self.headers = headers or {}
        self.extra = extra or {}
