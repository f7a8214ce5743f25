"""cases.working_notes: what the agents who had a case wrote on it while they worked it (each
note its author, time and text, earliest first), kept with the case: the next agent after a
transfer or a give-back reads them, and so do supervisors on the call's timeline. Before,
they lived in one browser tab's storage, and went with a transfer (only its note went on)
or a sign-out. Null: nobody wrote one. Purged and erased with the case (its row).

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-07 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0034"
down_revision: str | None = "0033"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column: no rewrite of the table, nothing to fill in.
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("working_notes", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("working_notes")
