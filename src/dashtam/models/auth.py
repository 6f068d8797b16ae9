"""Sign-in sessions, their rotating refresh tokens, e-mailed one-time tokens and the audit trail.

Secrets are never stored: refresh, verification and reset tokens are kept as SHA-256 hashes.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, ForeignKey, String
from sqlalchemy.dialects.postgresql import INET, JSONB
from sqlmodel import Field, SQLModel

from dashtam.models.base import timestamp, uuid_pk


class EmailTokenPurpose(StrEnum):
    VERIFY_EMAIL = "verify_email"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a purpose name, not a secret


def _fk(target: str) -> Any:
    """A required, indexed reference whose rows go with the row they belong to."""
    return Field(
        sa_column=Column(ForeignKey(target, ondelete="CASCADE"), nullable=False, index=True)
    )


def _token_hash() -> Any:
    """A hex SHA-256 digest, unique so a presented token finds its row by index."""
    return Field(sa_column=Column(String(64), nullable=False, unique=True))


class AuthSession(SQLModel, table=True):
    """One sign-in on one device; its id is the `sid` claim and the refresh-token family."""

    __tablename__ = "auth_sessions"

    id: uuid.UUID = uuid_pk()
    user_id: uuid.UUID = _fk("users.id")
    user_agent: str | None = Field(default=None, max_length=500)
    ip_address: str | None = Field(default=None, sa_column=Column(INET))
    created_at: datetime | None = timestamp(nullable=False, server_now=True)
    last_used_at: datetime | None = timestamp(nullable=False, server_now=True)
    revoked_at: datetime | None = timestamp()
    revoked_reason: str | None = Field(default=None, max_length=50)


class RefreshToken(SQLModel, table=True):
    """One link of a session's rotation chain; `used_at` set means it was exchanged."""

    __tablename__ = "refresh_tokens"

    id: uuid.UUID = uuid_pk()
    session_id: uuid.UUID = _fk("auth_sessions.id")
    token_hash: str = _token_hash()
    expires_at: datetime = timestamp(nullable=False)
    used_at: datetime | None = timestamp()
    created_at: datetime | None = timestamp(nullable=False, server_now=True)


class EmailToken(SQLModel, table=True):
    """A single-use token sent by mail (address verification, password reset)."""

    __tablename__ = "email_tokens"

    id: uuid.UUID = uuid_pk()
    user_id: uuid.UUID = _fk("users.id")
    purpose: str = Field(max_length=20)
    token_hash: str = _token_hash()
    expires_at: datetime = timestamp(nullable=False)
    used_at: datetime | None = timestamp()
    created_at: datetime | None = timestamp(nullable=False, server_now=True)


class AuthAuditLog(SQLModel, table=True):
    """Append-only record of authentication events; rows are inserted, never changed.

    `user_id` is a plain column, not a foreign key: the trail outlives the user, and a trigger
    refuses UPDATE and DELETE (ON DELETE SET NULL would be an UPDATE).
    """

    __tablename__ = "auth_audit_logs"

    id: uuid.UUID = uuid_pk()
    user_id: uuid.UUID | None = Field(default=None, index=True)
    action: str = Field(sa_column=Column(String(50), nullable=False, index=True))
    outcome: str = Field(max_length=20)
    ip_address: str | None = Field(default=None, sa_column=Column(INET))
    user_agent: str | None = Field(default=None, max_length=500)
    request_id: str | None = Field(default=None, max_length=64)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    created_at: datetime | None = timestamp(nullable=False, server_now=True)
