"""the cases agents hold now, and the cases ended lately, found without reading the whole
cases table: an agent's desk, the supervisors' view, the sweep, and who is at work

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As ivr.db.HELD_WHERE says it today; a migration keeps its own copy, as it was written.
HELD_WHERE = "status IN ('offered', 'connected')"


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.create_index(
            "ix_cases_held",
            ["agent_id"],
            unique=False,
            sqlite_where=sa.text(HELD_WHERE),
            postgresql_where=sa.text(HELD_WHERE),
        )
        batch_op.create_index(batch_op.f("ix_cases_ended_at"), ["ended_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cases_ended_at"))
        batch_op.drop_index("ix_cases_held")
