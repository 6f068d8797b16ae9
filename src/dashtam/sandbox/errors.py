"""The two error shapes Schwab uses: OAuth errors and Trader API service errors."""

from collections.abc import Mapping
from typing import Any


class SandboxError(Exception):
    """An error answer: raised anywhere, rendered as JSON by one exception handler."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def oauth_error(
    status: int, error: str, description: str, headers: Mapping[str, str] | None = None
) -> SandboxError:
    """RFC 6749 error body, as the token endpoint answers."""
    return SandboxError(status, {"error": error, "error_description": description}, headers)


def trader_error(
    status: int, message: str, *errors: str, headers: Mapping[str, str] | None = None
) -> SandboxError:
    """Schwab's ServiceError body (``message`` plus a list of ``errors``)."""
    return SandboxError(status, {"message": message, "errors": list(errors) or [message]}, headers)
