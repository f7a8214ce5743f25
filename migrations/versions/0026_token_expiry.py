"""users.token_expires_at: when a staff API token (and the dashboard sign-in it is) expires.

A token copied once (shell history, a screenshot) worked forever, until someone noticed and
revoked it. `ivr users add` and `ivr users token` now set an expiry (IVR_TOKEN_DAYS); the
tokens made before this migration keep working (NULL: no expiry), and `ivr users list` shows
them so that operators rotate them.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-05 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("token_expires_at")
