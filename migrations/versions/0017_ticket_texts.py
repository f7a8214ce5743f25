"""cases.ticket_text: a case's ticket texted to its caller (IVR_TEXT_TICKETS): `due` from its
opening until an instance sends it, then `sending`, `sent` or `failed`; found by a partial
index of the few cases due

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 20:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As ivr.db.TEXT_DUE_WHERE says it today; a migration keeps its own copy, as it was written.
TEXT_DUE_WHERE = "ticket_text = 'due'"


def upgrade() -> None:
    # A nullable column (no rewrite of the table) and an index of no rows yet.
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ticket_text", sa.String(length=8), nullable=True))
        batch_op.create_index(
            "ix_cases_ticket_text_due",
            ["id"],
            unique=False,
            sqlite_where=sa.text(TEXT_DUE_WHERE),
            postgresql_where=sa.text(TEXT_DUE_WHERE),
        )


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index("ix_cases_ticket_text_due")
        batch_op.drop_column("ticket_text")
