"""accounts: one per (user, provider, provider account id), however many connections reach it

Two connections of one user to the same brokerage login used to give each account twice (and
its transactions, and the portfolio's totals). The account now carries its owner and provider
key, and a unique index makes one copy a database fact. Existing duplicates are merged first:
the copy synced furthest is kept, and it receives every transaction only another copy had.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-11 12:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Per (user, provider, provider account id), each copy but the one kept (synced furthest, then
# oldest) and the one it merges into.
_COPIES = """
    CREATE TEMPORARY TABLE account_copies ON COMMIT DROP AS
    SELECT id, keep FROM (
        SELECT a.id, first_value(a.id) OVER (
                   PARTITION BY a.user_id, a.provider_key, a.provider_account_id
                   ORDER BY a.transactions_synced_to DESC NULLS LAST, a.created_at, a.id) AS keep
        FROM accounts a) ranked
    WHERE id <> keep
"""
_MERGE_TRANSACTIONS = """
    INSERT INTO transactions (account_id, provider_transaction_id, time, trade_date,
        settlement_date, type, status, description, symbol, net_amount, items, content_hash,
        missing_since, created_at, updated_at)
    SELECT c.keep, t.provider_transaction_id, t.time, t.trade_date, t.settlement_date, t.type,
        t.status, t.description, t.symbol, t.net_amount, t.items, t.content_hash,
        t.missing_since, t.created_at, t.updated_at
    FROM transactions t JOIN account_copies c ON c.id = t.account_id
    ON CONFLICT (account_id, provider_transaction_id) DO NOTHING
"""
_DROP_COPIES = "DELETE FROM accounts WHERE id IN (SELECT id FROM account_copies)"


def upgrade() -> None:
    op.add_column("accounts", sa.Column("user_id", sa.Uuid(), nullable=True))
    op.add_column(
        "accounts",
        sa.Column("provider_key", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=True),
    )
    op.execute(
        """
        UPDATE accounts a SET user_id = p.user_id, provider_key = p.provider_key
        FROM provider_connections c JOIN providers p ON p.id = c.provider_id
        WHERE c.id = a.connection_id
        """
    )
    op.execute(_COPIES)
    op.execute(_MERGE_TRANSACTIONS)
    op.execute(_DROP_COPIES)
    op.alter_column("accounts", "user_id", nullable=False)
    op.alter_column("accounts", "provider_key", nullable=False)
    op.create_foreign_key(
        "accounts_user_id_fkey", "accounts", "users", ["user_id"], ["id"], ondelete="CASCADE"
    )
    op.drop_constraint("uq_accounts_provider_id", "accounts", type_="unique")
    op.create_unique_constraint(
        "uq_accounts_user_provider_account",
        "accounts",
        ["user_id", "provider_key", "provider_account_id"],
    )


def downgrade() -> None:
    op.drop_constraint("uq_accounts_user_provider_account", "accounts", type_="unique")
    op.create_unique_constraint(
        "uq_accounts_provider_id", "accounts", ["connection_id", "provider_account_id"]
    )
    op.drop_constraint("accounts_user_id_fkey", "accounts", type_="foreignkey")
    op.drop_column("accounts", "provider_key")
    op.drop_column("accounts", "user_id")
