"""The people who use Dashtam."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from dashtam.models.base import timestamp, uuid_pk


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: uuid.UUID = uuid_pk()
    email: str = Field(max_length=320, unique=True, index=True)
    name: str = Field(max_length=200)
    password_hash: str = Field(max_length=255)
    is_active: bool = Field(default=True)
    email_verified_at: datetime | None = timestamp()
    created_at: datetime | None = timestamp(nullable=False, server_now=True)
    updated_at: datetime | None = timestamp(nullable=False, server_now=True, on_update=True)
