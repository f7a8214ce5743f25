"""audit_log (at, id) and (actor, at): the audit log as supervisors read it (`GET /api/audit`,
the dashboard's Audit page), newest first and by who, from an index rather than by sorting
every audit record ever written (5 M a year, never purged) for each page. Actions and
accounts have theirs already (0023, 0032). The (actor, at) index finds what a call's caller
did (its timeline) too: 0032's partial index of caller actors goes.

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-05 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0035"
down_revision: str | None = "0034"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VALID = (
    "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
    " WHERE c.oid = to_regclass(%(name)s)"
)
INDEXES = [
    ("ix_audit_log_at_id", ["at", "id"]),
    ("ix_audit_log_actor_at", ["actor", "at"]),
]
# Replaced by ix_audit_log_actor_at, which finds a caller's entries as well (0032's).
CALLER_ACTOR = "ix_audit_log_caller_actor"
CALLER_ACTOR_WHERE = "actor LIKE 'caller:%'"


def upgrade() -> None:
    # As 0023's: built CONCURRENTLY on PostgreSQL (a plain build holds back every audit
    # record, a freeze's too, until it ends); an INVALID one left by a stopped build is built
    # again, a valid one kept. The index replaced goes once its replacement is built.
    context = op.get_context()
    postgresql = context.dialect.name == "postgresql" and not context.as_sql
    with context.autocommit_block():
        for name, columns in INDEXES:
            if postgresql:
                valid = op.get_bind().exec_driver_sql(VALID, {"name": name}).scalar()
                if valid:
                    continue
                if valid is not None:
                    op.drop_index(name, table_name="audit_log", postgresql_concurrently=True)
            op.create_index(name, "audit_log", columns, unique=False, postgresql_concurrently=True)
        op.drop_index(
            CALLER_ACTOR, table_name="audit_log", postgresql_concurrently=True, if_exists=True
        )


def downgrade() -> None:
    context = op.get_context()
    with context.autocommit_block():
        op.create_index(
            CALLER_ACTOR,
            "audit_log",
            ["actor"],
            unique=False,
            postgresql_concurrently=True,
            sqlite_where=sa.text(CALLER_ACTOR_WHERE),
            postgresql_where=sa.text(CALLER_ACTOR_WHERE),
        )
        for name, _ in reversed(INDEXES):
            op.drop_index(name, table_name="audit_log", postgresql_concurrently=True)
