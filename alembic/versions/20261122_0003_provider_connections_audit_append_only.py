"""provider connections: error codes, append-only audit trail without foreign keys

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 12:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY_FUNCTION = """
CREATE FUNCTION provider_audit_logs_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'provider_audit_logs is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$
"""
APPEND_ONLY_TRIGGER = """
CREATE TRIGGER provider_audit_logs_append_only
BEFORE UPDATE OR DELETE ON provider_audit_logs
FOR EACH ROW EXECUTE FUNCTION provider_audit_logs_append_only()
"""


def upgrade() -> None:
    op.add_column(
        "provider_connections",
        sa.Column("last_error_code", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=True),
    )
    op.drop_constraint(
        "provider_audit_logs_provider_id_fkey", "provider_audit_logs", type_="foreignkey"
    )
    op.drop_constraint(
        "provider_audit_logs_user_id_fkey", "provider_audit_logs", type_="foreignkey"
    )
    op.drop_index("ix_provider_audit_logs_provider_id", table_name="provider_audit_logs")
    op.create_index(
        "ix_provider_audit_logs_provider_created",
        "provider_audit_logs",
        ["provider_id", "created_at"],
        unique=False,
    )
    op.execute(APPEND_ONLY_FUNCTION)
    op.execute(APPEND_ONLY_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER provider_audit_logs_append_only ON provider_audit_logs")
    op.execute("DROP FUNCTION provider_audit_logs_append_only()")
    op.drop_index("ix_provider_audit_logs_provider_created", table_name="provider_audit_logs")
    op.create_index(
        "ix_provider_audit_logs_provider_id", "provider_audit_logs", ["provider_id"], unique=False
    )
    op.create_foreign_key(
        "provider_audit_logs_user_id_fkey",
        "provider_audit_logs",
        "users",
        ["user_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_foreign_key(
        "provider_audit_logs_provider_id_fkey",
        "provider_audit_logs",
        "providers",
        ["provider_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.drop_column("provider_connections", "last_error_code")
