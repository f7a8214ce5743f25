"""audit_log (case_id): the entries of a case, found by an index rather than by reading every
audit record ever written. The log is never purged (`ivr.retention`), so without it each
purge batch's blanking of its cases' entries, each erasure, and each call's timeline read
the whole log; past PostgreSQL's statement_timeout (5 s) every purge batch fails, and old
caller data stays.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-05 09:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_audit_log_case_id"
VALID = (
    "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
    " WHERE c.oid = to_regclass(%(name)s)"
)


def upgrade() -> None:
    # As 0023's: built CONCURRENTLY on PostgreSQL (a plain build holds back every audit
    # record, a freeze's too, until it ends); an INVALID one left by a stopped build is
    # built again, a valid one kept.
    context = op.get_context()
    postgresql = context.dialect.name == "postgresql" and not context.as_sql
    with context.autocommit_block():
        if postgresql:
            valid = op.get_bind().exec_driver_sql(VALID, {"name": NAME}).scalar()
            if valid:
                return
            if valid is not None:
                op.drop_index(NAME, table_name="audit_log", postgresql_concurrently=True)
        op.create_index(NAME, "audit_log", ["case_id"], unique=False, postgresql_concurrently=True)


def downgrade() -> None:
    context = op.get_context()
    with context.autocommit_block():
        op.drop_index(NAME, table_name="audit_log", postgresql_concurrently=True)
