"""sync runs: the result of verifying a run against the provider

A run that had to resume is re-read from the provider and compared with the store
(`dashtam.accounts.verify`); `verified` is true when they match, false when they do not or the
comparison could not finish, null when the run was not verified. `verification` says what was
compared or found.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 12:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sync_runs", sa.Column("verified", sa.Boolean(), nullable=True))
    op.add_column("sync_runs", sa.Column("verification", sa.String(length=500), nullable=True))


def downgrade() -> None:
    op.drop_column("sync_runs", "verification")
    op.drop_column("sync_runs", "verified")
