"""verification_failures.attested: whether a failed verification came with full attestation.

A call from an account's registered number with STIR/SHAKEN full attestation (Twilio's
TN-Validation-Passed-A) is checked against failures of its own kind only, so that guesses
from spoofed or withheld numbers cannot lock the owner out of the self-freeze; and failures
from withheld or unattested calls across all accounts share one budget (password spraying
from rotating numbers). NULL: a row of another kind (sign-in failures, ticket misses), or one
recorded before this revision (minutes old at most, as far as any lockout is concerned).

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-05 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("verification_failures", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attested", sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_verification_failures_attested_at"), ["attested", "at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("verification_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_verification_failures_attested_at"))
        batch_op.drop_column("attested")
