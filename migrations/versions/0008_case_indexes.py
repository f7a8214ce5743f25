"""the call backs held back now, and a number's call backs, found without reading the whole
cases table

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 03:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cases_not_before"), ["not_before"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_caller"), ["caller"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cases_caller"))
        batch_op.drop_index(batch_op.f("ix_cases_not_before"))
