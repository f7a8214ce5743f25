"""tree version activation

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 19:23:17.677880
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tree_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("activated_by", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_tree_versions_activated_at"), ["activated_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("tree_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tree_versions_activated_at"))
        batch_op.drop_column("activated_by")
        batch_op.drop_column("activated_at")
