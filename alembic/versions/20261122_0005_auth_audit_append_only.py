"""auth audit trail: append-only (a trigger refuses UPDATE and DELETE), no foreign key

The user id becomes a plain column, as in provider_audit_logs (0003): the trail outlives the
user it describes, and ON DELETE SET NULL would be an UPDATE the trigger refuses.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 12:00:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY_FUNCTION = """
CREATE FUNCTION auth_audit_logs_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'auth_audit_logs is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$
"""
APPEND_ONLY_TRIGGER = """
CREATE TRIGGER auth_audit_logs_append_only
BEFORE UPDATE OR DELETE ON auth_audit_logs
FOR EACH ROW EXECUTE FUNCTION auth_audit_logs_append_only()
"""


def upgrade() -> None:
    op.drop_constraint("auth_audit_logs_user_id_fkey", "auth_audit_logs", type_="foreignkey")
    op.execute(APPEND_ONLY_FUNCTION)
    op.execute(APPEND_ONLY_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER auth_audit_logs_append_only ON auth_audit_logs")
    op.execute("DROP FUNCTION auth_audit_logs_append_only()")
    # Rows of users deleted meanwhile would stop the foreign key from coming back.
    op.execute(
        "UPDATE auth_audit_logs a SET user_id = NULL WHERE user_id IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = a.user_id)"
    )
    op.create_foreign_key(
        "auth_audit_logs_user_id_fkey",
        "auth_audit_logs",
        "users",
        ["user_id"],
        ["id"],
        ondelete="SET NULL",
    )
