"""cases.answered_at and cases.legs: the figures' answer time, and the talks a transfer ended.

`answered_at`: when the agent's phone picked up (Twilio's report of the <Dial>: its end less
DialCallDuration; or the key the agent pressed to take the call). `connected_at` is when the
caller's call reached the agent's TwiML, before the agent's phone rang: the speed of answer
and the service level counted from it left out the ring. Null until known (a case connected
before this revision, a leg whose report is lost): the figures use `connected_at` then.

`legs`: the talks an agent ended by sending the caller on (a transfer), earliest first, each
{queue, priority, agent_id, agent, entered_at, connected_at, answered_at, ended_at}. A
transfer resets the case for its next line, which lost the first agent's answer and talk
from every figure. Null for a case never sent on (and for those sent on before this
revision).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04 18:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns: no rewrite of the table, nothing to fill in.
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("legs", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("legs")
        batch_op.drop_column("answered_at")
