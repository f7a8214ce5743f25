"""An index on cases.parent_ticket: the call log finds every call about a ticket, the
follow-up calls linked to it (main menu 9) too, without reading the whole table.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 03:45:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # On PostgreSQL, built CONCURRENTLY (outside the migration's transaction): a plain build
    # holds back every write to `cases` until it ends, and webhooks write there on every
    # call. Should it fail, PostgreSQL leaves an invalid index: drop it, and upgrade again.
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_cases_parent_ticket",
            "cases",
            ["parent_ticket"],
            unique=False,
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_cases_parent_ticket", table_name="cases", postgresql_concurrently=True)
