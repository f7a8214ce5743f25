"""audit_log (action, at): the freezes supervisors list (`GET /api/freezes`, the dashboard's
Freezes page) and the figures' count of missed offers and transfers, read from an index of
the few actions asked for in a period, not by reading every audit record ever written.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04 23:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_audit_log_action_at"
VALID = (
    "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
    " WHERE c.oid = to_regclass(%(name)s)"
)


def upgrade() -> None:
    # On PostgreSQL, built CONCURRENTLY (outside the migration's transaction), as 0019's:
    # a plain build holds back every freeze's audit record until it ends. Run again after a
    # failure, a build stopped midway left its index INVALID: built again; a valid one kept.
    context = op.get_context()
    postgresql = context.dialect.name == "postgresql" and not context.as_sql
    with context.autocommit_block():
        if postgresql:
            valid = op.get_bind().exec_driver_sql(VALID, {"name": NAME}).scalar()
            if valid:
                return
            if valid is not None:
                op.drop_index(NAME, table_name="audit_log", postgresql_concurrently=True)
        op.create_index(
            NAME, "audit_log", ["action", "at"], unique=False, postgresql_concurrently=True
        )


def downgrade() -> None:
    context = op.get_context()
    with context.autocommit_block():
        op.drop_index(NAME, table_name="audit_log", postgresql_concurrently=True)
