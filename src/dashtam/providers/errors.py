"""Provider errors: each says what happened and what the person can do about it."""

from __future__ import annotations

import uuid

from dashtam.core.errors import ProblemError


class ProviderNotFound(ProblemError):
    def __init__(self) -> None:
        super().__init__(404, "No such provider.", code="provider_not_found")


def reauthorize_hint(provider_id: uuid.UUID) -> str:
    """How a person gets a connection working again; said wherever one stops working."""
    return (
        f"Re-authorize it: POST /api/v1/providers/{provider_id}/authorization and open the "
        "authorization_url it returns."
    )


class ConnectionUnusable(ProblemError):
    """The connection has no usable tokens: pending, disconnected or needing a new login.

    ``reason`` says why; ``detail`` adds how to re-authorize.
    """

    def __init__(self, status: str, reason: str, provider_id: uuid.UUID) -> None:
        detail = f"{reason} {reauthorize_hint(provider_id)}"
        super().__init__(409, detail, code="connection_" + status, extra={"connection": status})
        self.connection_status = status
        self.reason = reason


class ProviderUnavailable(ProblemError):
    """The provider failed or could not be reached; retrying later may work."""

    def __init__(self, detail: str) -> None:
        super().__init__(502, detail, code="provider_unavailable")


class TokenUnreadable(ProblemError):
    """Stored tokens do not decrypt under any configured key: fail closed, never guess."""

    def __init__(self) -> None:
        super().__init__(
            500,
            "This connection's stored tokens could not be decrypted (a missing encryption key or "
            "altered data). Restore the key to TOKEN_ENCRYPTION_KEYS, or disconnect and connect "
            "again.",
            code="token_unreadable",
        )


class CallbackFailed(ProblemError):
    """The OAuth callback could not complete; ``detail`` is shown on the callback page."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(status, detail, code=code)
