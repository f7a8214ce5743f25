"""cases.talk_ended_at: when the agent's leg of a connected case ended (Twilio's report of
the <Dial>), so its agent resolves it after the call, not during it. Null while in line or
talking; a case connected before this revision is taken to be talked on until its caller's
call is over (a call back: until its status callback), as any whose report is lost.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04 16:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column: no rewrite of the table, nothing to fill in.
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("talk_ended_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("talk_ended_at")
