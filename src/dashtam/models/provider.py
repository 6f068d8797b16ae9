"""Provider instances a user connects, their connection state, tokens and audit trail."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import INET, JSONB
from sqlmodel import Field, SQLModel

from dashtam.models.base import timestamp, uuid_pk


class ConnectionStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"
    ERROR = "error"
    DISCONNECTED = "disconnected"


def _owner_fk(target: str, *, nullable: bool = False, unique: bool = False) -> Any:
    return Field(
        sa_column=Column(
            ForeignKey(target, ondelete="CASCADE"),
            nullable=nullable,
            unique=unique,
            index=not unique,
        )
    )


class Provider(SQLModel, table=True):
    """One provider instance of a user (e.g. "My Schwab IRA")."""

    __tablename__ = "providers"
    __table_args__ = (UniqueConstraint("user_id", "alias", name="uq_providers_user_alias"),)

    id: uuid.UUID = uuid_pk()
    user_id: uuid.UUID = _owner_fk("users.id")
    provider_key: str = Field(max_length=50)
    alias: str = Field(max_length=100)
    created_at: datetime | None = timestamp(nullable=False, server_now=True)
    updated_at: datetime | None = timestamp(nullable=False, server_now=True, on_update=True)


class ProviderConnection(SQLModel, table=True):
    """The OAuth connection state of a provider instance (one per instance)."""

    __tablename__ = "provider_connections"

    id: uuid.UUID = uuid_pk()
    provider_id: uuid.UUID = _owner_fk("providers.id", unique=True)
    status: str = Field(default=ConnectionStatus.PENDING.value, max_length=20)
    connected_at: datetime | None = timestamp()
    last_refresh_at: datetime | None = timestamp()
    last_error: str | None = Field(default=None, max_length=500)
    last_error_code: str | None = Field(default=None, max_length=50)
    last_error_at: datetime | None = timestamp()
    created_at: datetime | None = timestamp(nullable=False, server_now=True)
    updated_at: datetime | None = timestamp(nullable=False, server_now=True, on_update=True)


class ProviderToken(SQLModel, table=True):
    """Encrypted tokens of a connection; ciphertexts are bound to their row and field."""

    __tablename__ = "provider_tokens"

    id: uuid.UUID = uuid_pk()
    connection_id: uuid.UUID = _owner_fk("provider_connections.id", unique=True)
    access_token_encrypted: str
    refresh_token_encrypted: str | None = None
    id_token_encrypted: str | None = None
    token_type: str = Field(default="Bearer", max_length=20)
    scope: str | None = Field(default=None, max_length=255)
    access_expires_at: datetime | None = timestamp()
    refresh_expires_at: datetime | None = timestamp()
    created_at: datetime | None = timestamp(nullable=False, server_now=True)
    updated_at: datetime | None = timestamp(nullable=False, server_now=True, on_update=True)


class ProviderAuditLog(SQLModel, table=True):
    """Append-only record of every provider operation; never holds a secret.

    The ids are plain columns, not foreign keys: the trail outlives the provider and user it
    describes, and a trigger refuses UPDATE and DELETE (ON DELETE SET NULL would be an UPDATE).
    """

    __tablename__ = "provider_audit_logs"
    __table_args__ = (
        Index("ix_provider_audit_logs_provider_created", "provider_id", "created_at"),
    )

    id: uuid.UUID = uuid_pk()
    provider_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = Field(default=None, index=True)
    action: str = Field(sa_column=Column(String(50), nullable=False, index=True))
    outcome: str = Field(max_length=20)
    ip_address: str | None = Field(default=None, sa_column=Column(INET))
    user_agent: str | None = Field(default=None, max_length=500)
    request_id: str | None = Field(default=None, max_length=64)
    provider_http_status: int | None = Field(default=None, sa_column=Column(Integer))
    provider_latency_ms: int | None = Field(default=None, sa_column=Column(Integer))
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    created_at: datetime | None = timestamp(nullable=False, server_now=True)
