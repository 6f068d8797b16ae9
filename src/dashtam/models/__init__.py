"""All tables; importing this package registers them on `SQLModel.metadata`."""

from sqlmodel import SQLModel

from dashtam.models.account import (
    ACTIVE_SYNC_STATUSES,
    Account,
    AccountStatus,
    AccountType,
    BalanceSnapshot,
    Position,
    SyncRun,
    SyncStatus,
    Transaction,
    TransactionStatus,
)
from dashtam.models.auth import (
    AuthAuditLog,
    AuthSession,
    EmailToken,
    EmailTokenPurpose,
    RefreshToken,
)
from dashtam.models.event import Event
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
    "ACTIVE_SYNC_STATUSES",
    "Account",
    "AccountStatus",
    "AccountType",
    "AuthAuditLog",
    "AuthSession",
    "BalanceSnapshot",
    "ConnectionStatus",
    "EmailToken",
    "EmailTokenPurpose",
    "Event",
    "Position",
    "Provider",
    "ProviderAuditLog",
    "ProviderConnection",
    "ProviderToken",
    "RefreshToken",
    "SyncRun",
    "SyncStatus",
    "Transaction",
    "TransactionStatus",
    "User",
    "metadata",
]
