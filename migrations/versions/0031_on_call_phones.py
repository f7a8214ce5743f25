"""on_call_phones: what the on-call numbers' texts to the hotline did.

One row an on-call number, written when it texts: when it was last told how to reply to a
page (once per ten minutes: an auto-reply to it no longer starts an SMS loop that costs a
text each way), and whether it opted out of texts at Twilio (STOP, or a page text refused
with error 21610), which the queue page shows supervisors until it opts in again.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-06 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0031"
down_revision: str | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "on_call_phones",
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("told_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("opted_out_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("opted_out", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("number"),
    )


def downgrade() -> None:
    op.drop_table("on_call_phones")
