"""page_sends, pages.undelivered: what Twilio's status callbacks say became of a page.

A page's texts and calls (IVR_PAGE_CALL), one row each, with the status Twilio reported: a
text undelivered (a carrier's filter, a phone off the network) or a call unanswered. A page
Twilio took but that reached no on-call number is sent again a minute later, as one it
refused; before, it waited IVR_PAGE_REPEAT (15 minutes) while the victim did.
`pages.undelivered`: of the numbers Twilio took it for, those it did not reach.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05 02:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "page_sends",
        sa.Column("page_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("by", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.String(length=8), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("page_id", "number", "by"),
    )
    # A constant default: PostgreSQL adds it without rewriting the table.
    with op.batch_alter_table("pages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("undelivered", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("pages", schema=None) as batch_op:
        batch_op.drop_column("undelivered")
    op.drop_table("page_sends")
