"""cases.lane_at: when a supervisor moved a case into the emergency lane.

A caller a supervisor learns is a hijack victim keeps their place by arrival when moved to
the emergency lane, but the on-call were never paged for them: a page sent before the move
was about others, and must not hold the next page back for them until its hold ends. The
pager counts a moved case's wait in the lane from this (`oncall.joined_lane`).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-05 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lane_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("lane_at")
