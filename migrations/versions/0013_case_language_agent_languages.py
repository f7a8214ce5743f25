"""languages: the language a case's caller chose, and the languages an agent speaks, so that
callers are offered to agents who speak their language first

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 14:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: adding them rewrites nothing. A case opened before has no language
    # (any agent takes it), and an agent with none set speaks every language, as before.
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language", sa.String(length=16), nullable=True))
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("languages", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("languages")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("language")
