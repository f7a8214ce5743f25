"""The call log's indexes: `calls (started_at, call_sid)`, its order (newest first, a page
at a time: the first page read from the index, not by sorting every call ever made), and
`cases.parent_ticket`, for its ticket filter to find the follow-up calls linked to a ticket
(main menu 9) as it finds the ticket's own case, from an index.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 03:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Partial: most cases follow nothing up, so it stays small; and a whole-column one, all NULL
# but a few, SQLite stops using once the table is analysed.
FOLLOW_UPS = sa.text("parent_ticket IS NOT NULL")
INDEXES = (
    ("ix_calls_started_at_call_sid", "calls", ["started_at", "call_sid"], None),
    ("ix_cases_parent_ticket", "cases", ["parent_ticket"], FOLLOW_UPS),
)
VALID = (
    "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
    " WHERE c.oid = to_regclass(%(name)s)"
)


def upgrade() -> None:
    # On PostgreSQL, built CONCURRENTLY (outside the migration's transaction): a plain build
    # holds back every write to the table until it ends, and webhooks write to both on every
    # call. Run again after a failure: a build stopped midway (a cancel, a timeout, the
    # process killed) left its index behind INVALID, built again; a valid one (built, the
    # version not stamped) is kept.
    context = op.get_context()
    postgresql = context.dialect.name == "postgresql" and not context.as_sql
    with context.autocommit_block():
        for name, table, columns, where in INDEXES:
            if postgresql:
                valid = op.get_bind().exec_driver_sql(VALID, {"name": name}).scalar()
                if valid:
                    continue
                if valid is not None:
                    op.drop_index(name, table_name=table, postgresql_concurrently=True)
            op.create_index(
                name,
                table,
                columns,
                unique=False,
                postgresql_concurrently=True,
                postgresql_where=where,
                sqlite_where=where,
            )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, _, _ in reversed(INDEXES):
            op.drop_index(name, table_name=table, postgresql_concurrently=True)
