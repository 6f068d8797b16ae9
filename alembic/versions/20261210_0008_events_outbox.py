"""events: the outbox every change writes in its own transaction

Each event is placed by the id of the transaction that wrote it and a global sequence, so a
reader that only takes events of transactions older than all running ones never misses one
that commits late. A statement trigger wakes the relay (LISTEN dashtam_events) on every commit
that wrote events.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 12:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURRENT_TXID = "CAST(CAST(pg_current_xact_id() AS text) AS bigint)"
NOTIFY_FUNCTION = """
CREATE FUNCTION notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dashtam_events', '');
    RETURN NULL;
END;
$$
"""


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("txid", sa.BigInteger(), server_default=sa.text(CURRENT_TXID), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=50), nullable=False),
        sa.Column("subject_type", sa.String(length=20), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("txid", "seq"),
    )
    op.create_index("ix_events_user_position", "events", ["user_id", "txid", "seq"])
    op.create_index(
        "uq_events_dedupe_key",
        "events",
        ["dedupe_key"],
        unique=True,
        postgresql_where=sa.text("dedupe_key IS NOT NULL"),
    )
    op.execute(NOTIFY_FUNCTION)
    op.execute(
        "CREATE TRIGGER events_notify AFTER INSERT ON events "
        "FOR EACH STATEMENT EXECUTE FUNCTION notify_events()"
    )


def downgrade() -> None:
    op.drop_table("events")
    op.execute("DROP FUNCTION notify_events()")
