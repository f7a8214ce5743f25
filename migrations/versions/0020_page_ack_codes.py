"""pages.ack_code: the code an on-call number texts back to say they are coming (a reply
to the page's text, `/twilio/sms`); null for pages sent before, acknowledged by key or on
the queue page only.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 06:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column: no rewrite of the table, nothing to fill in.
    with op.batch_alter_table("pages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ack_code", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pages", schema=None) as batch_op:
        batch_op.drop_column("ack_code")
