"""presence_changes: each agent's presence as it changes, for time available and occupancy.

A row each time an agent's availability is written (said available or away, set away by a
missed offer or a supervisor, signed out, revoked, or available again from a case's end):
`available_since` as `users.available_since` is then (NULL: away, `away_reason` why). The
figures read from it how long each agent was available in a period, and their occupancy.
Agents' presence before this revision is not known: their time available starts with their
first change after it.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-05 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "presence_changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("available_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("away_reason", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("presence_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_presence_changes_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("presence_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_presence_changes_at"))
    op.drop_table("presence_changes")
