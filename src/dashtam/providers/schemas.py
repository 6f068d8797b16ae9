"""Request and response bodies of the provider endpoints; none of them carries a token."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyAddress,
    StringConstraints,
)

# asyncpg hands INET values back as ipaddress objects.
IpText = Annotated[str | None, BeforeValidator(lambda value: None if value is None else str(value))]
Alias = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class ProviderTypeOut(BaseModel):
    key: str
    name: str
    auth_type: str
    configured: bool = Field(description="True when the provider can be connected now.")
    mode: str = Field(description="`sandbox` (built-in emulator) or `live`.")
    pkce: bool


class ProviderCreate(BaseModel):
    provider_key: Annotated[str, StringConstraints(min_length=1, max_length=50)]
    alias: Alias


class ProviderUpdate(BaseModel):
    alias: Alias


class ProviderOut(BaseModel):
    id: uuid.UUID
    provider_key: str
    alias: str
    status: str
    created_at: datetime | None
    updated_at: datetime | None


class AuthorizationStart(BaseModel):
    authorization_url: str
    expires_at: datetime


class AuthorizationStatus(BaseModel):
    provider_id: uuid.UUID
    status: str
    connected_at: datetime | None
    access_expires_at: datetime | None
    refresh_expires_at: datetime | None
    last_refresh_at: datetime | None
    last_error: str | None
    last_error_code: str | None
    last_error_at: datetime | None
    warning: str | None = Field(
        description="Set when the refresh token has less than 24 hours left."
    )


class CallbackPayload(BaseModel):
    """What the callback server forwards; the code arrives already URL-decoded once."""

    state: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    code: Annotated[str, StringConstraints(max_length=2048)] | None = None
    error: Annotated[str, StringConstraints(max_length=200)] | None = None
    error_description: Annotated[str, StringConstraints(max_length=500)] | None = None
    # The browser's address as the callback server saw it: the rate limit and audit use it.
    client_ip: IPvAnyAddress | None = None


class CallbackResult(BaseModel):
    status: str
    message: str
    provider_id: uuid.UUID


class AuditLogOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    action: str
    outcome: str
    ip_address: IpText
    user_agent: str | None
    request_id: str | None
    provider_http_status: int | None
    provider_latency_ms: int | None
    details: dict[str, Any]
    created_at: datetime | None


class AuditLogPage(BaseModel):
    items: list[AuditLogOut]
    total: int
    limit: int
    offset: int
