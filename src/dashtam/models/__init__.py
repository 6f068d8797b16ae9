"""All tables; importing this package registers them on `SQLModel.metadata`."""

from sqlmodel import SQLModel

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
    "ConnectionStatus",
    "Provider",
    "ProviderAuditLog",
    "ProviderConnection",
    "ProviderToken",
    "User",
    "metadata",
]
