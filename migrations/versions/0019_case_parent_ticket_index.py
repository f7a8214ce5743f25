"""An index on cases.parent_ticket: the call log finds every call about a ticket, the
follow-up calls linked to it (main menu 9) too, without reading the whole table.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 03:45:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Few rows have a parent ticket; the build reads the table once, as every index here does
    # (see the README's production section for running migrations).
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cases_parent_ticket"), ["parent_ticket"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cases_parent_ticket"))
