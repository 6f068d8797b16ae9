"""All tables; importing this package registers them on `SQLModel.metadata`."""

from sqlmodel import SQLModel

from dashtam.models.auth import (
    AuthAuditLog,
    AuthSession,
    EmailToken,
    EmailTokenPurpose,
    RefreshToken,
)
from dashtam.models.provider import (
    ConnectionStatus,
    Provider,
    ProviderAuditLog,
    ProviderConnection,
    ProviderToken,
)
from dashtam.models.user import User

metadata = SQLModel.metadata

__all__ = [
    "AuthAuditLog",
    "AuthSession",
    "ConnectionStatus",
    "EmailToken",
    "EmailTokenPurpose",
    "Provider",
    "ProviderAuditLog",
    "ProviderConnection",
    "ProviderToken",
    "RefreshToken",
    "User",
    "metadata",
]
