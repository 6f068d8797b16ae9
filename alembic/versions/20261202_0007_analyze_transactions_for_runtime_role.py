"""statistics refresh the runtime role may ask for: analyze_transactions()

The app and the worker run as a role that owns no table, and PostgreSQL lets only a table's
owner ANALYZE it (before 17). The sync refreshes the transactions table's statistics after bulk
loads through this function, which runs as its owner, the migration role.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 12:00:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ANALYZE_FUNCTION = """
CREATE FUNCTION analyze_transactions() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    ANALYZE public.transactions;
END;
$$
"""


def upgrade() -> None:
    op.execute(ANALYZE_FUNCTION)
    op.execute("REVOKE ALL ON FUNCTION analyze_transactions() FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION analyze_transactions()")
