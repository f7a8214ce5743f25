"""An index on cases.parent_ticket: the call log's ticket filter finds the follow-up calls
linked to a ticket (main menu 9) from it, as it finds the ticket's own case from its unique
index, not by reading every case.

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
    # call. Run again after a failure: a build stopped midway (a cancel, a timeout, the
    # process killed) left the index behind INVALID, built again; a valid one (built, the
    # version not stamped) is kept.
    with op.get_context().autocommit_block():
        if op.get_context().dialect.name == "postgresql" and not op.get_context().as_sql:
            valid = (
                op.get_bind()
                .exec_driver_sql(
                    "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                    " WHERE c.oid = to_regclass('ix_cases_parent_ticket')"
                )
                .scalar()
            )
            if valid:
                return
            if valid is not None:
                op.drop_index(
                    "ix_cases_parent_ticket", table_name="cases", postgresql_concurrently=True
                )
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
