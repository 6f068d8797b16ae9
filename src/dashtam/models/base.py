"""Shared column helpers: UUID keys and timezone-aware timestamps set by the database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, func
from sqlmodel import Field


def utcnow() -> datetime:
    return datetime.now(UTC)


def uuid_pk() -> Any:
    return Field(default_factory=uuid.uuid4, primary_key=True)


def timestamp(*, nullable: bool = True, server_now: bool = False, on_update: bool = False) -> Any:
    """A `timestamptz` column; `server_now` gives it a database default of now()."""
    return Field(
        default=None,
        sa_column=Column(
            DateTime(timezone=True),
            nullable=nullable,
            server_default=func.now() if server_now else None,
            onupdate=func.now() if on_update else None,
        ),
    )
