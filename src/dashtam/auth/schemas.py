"""Request and response bodies; none of the responses ever carries a password or its hash."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, EmailStr, Field

from dashtam.auth.passwords import MAX_LENGTH


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


Email = Annotated[EmailStr, BeforeValidator(_strip), AfterValidator(str.lower)]
# Length and strength are checked by the service, which explains every problem at once.
NewPassword = Annotated[str, Field(max_length=MAX_LENGTH)]
Password = Annotated[str, Field(min_length=1, max_length=MAX_LENGTH)]
Name = Annotated[str, BeforeValidator(_strip), Field(min_length=1, max_length=200)]
OpaqueToken = Annotated[str, Field(min_length=1, max_length=200)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterRequest(Body):
    email: Email
    password: NewPassword
    name: Name


class LoginRequest(Body):
    email: Email
    password: Password


class RefreshRequest(Body):
    refresh_token: OpaqueToken


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type
    expires_in: int


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str
    email_verified_at: datetime | None
    created_at: datetime | None


class UserUpdate(Body):
    name: Name


class PasswordChange(Body):
    current_password: Password
    new_password: NewPassword


class VerifyEmailRequest(Body):
    token: OpaqueToken


class VerificationResendRequest(Body):
    email: Email


class PasswordResetRequest(Body):
    email: Email


class PasswordResetConfirm(Body):
    token: OpaqueToken
    new_password: NewPassword


class Message(BaseModel):
    detail: str


class SessionOut(BaseModel):
    id: uuid.UUID
    user_agent: str | None
    ip_address: str | None
    created_at: datetime | None
    last_used_at: datetime | None
    current: bool
