"""cases.queued_at: when a case an agent sent on (a transfer) joined the line it is in now;
null for the rest, whose line they joined when created. Its waits (language routing, the
figures, the queue's "waiting") count from it.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 23:55:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column: no rewrite of the table, nothing to fill in.
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("queued_at")
