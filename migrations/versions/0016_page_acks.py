"""pages: acknowledged (acked_at, acked_by), by a key on the page's call or from the queue page

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 20:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Two nullable columns: no rewrite of the table, no lock held long on PostgreSQL.
    with op.batch_alter_table("pages") as batch:
        batch.add_column(sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("acked_by", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pages") as batch:
        batch.drop_column("acked_by")
        batch.drop_column("acked_at")
