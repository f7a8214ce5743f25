"""Indexes for the reads of a year's volume: the figures' cases of a period (created_at,
connected_at, queued_at), and each of their calls' survey events and the nodes that tell a
contained call (call_events, partial). Without them every report read all the cases and all
of call_events (16 M rows a year): a day's figures passed the statement timeout (5 s), and
the figures page answered 500. And what a caller did (audit_log's caller actors, partial),
which each call's timeline read from the whole log (5 M rows), and each account's entries
in time (audit_log, partial), which the failed freezes nobody made since read once per
freeze listed (past the statement timeout for a week of them).

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-06 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0032"
down_revision: str | None = "0031"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VALID = (
    "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
    " WHERE c.oid = to_regclass(%(name)s)"
)
# As ivr.db says them today; a migration keeps its own copy, as it was written.
SURVEY_EVENTS_WHERE = {
    "postgresql": "kind = 'survey' OR kind = 'entered' AND (detail ->> 'node_kind') = 'survey'",
    "sqlite": (
        "kind = 'survey' OR kind = 'entered' AND json_extract(detail, '$.node_kind') = 'survey'"
    ),
}
ENTERED_WHERE = {
    "postgresql": "kind = 'entered' AND (detail ->> 'node_kind') IN ('say', 'queue', 'transfer')",
    "sqlite": (
        "kind = 'entered' AND json_extract(detail, '$.node_kind') IN ('say', 'queue', 'transfer')"
    ),
}
QUEUED_WHERE = "queued_at IS NOT NULL"
CALLER_ACTOR_WHERE = "actor LIKE 'caller:%'"
ACCOUNT_WHERE = "account_uid IS NOT NULL"
# (name, table, columns, WHERE per dialect: None for a whole-column index)
INDEXES: list[tuple[str, str, list[str], dict[str, str] | None]] = [
    ("ix_cases_created_at", "cases", ["created_at"], None),
    ("ix_cases_connected_at", "cases", ["connected_at"], None),
    (
        "ix_cases_queued_at",
        "cases",
        ["queued_at"],
        {"postgresql": QUEUED_WHERE, "sqlite": QUEUED_WHERE},
    ),
    ("ix_call_events_surveys", "call_events", ["call_sid"], SURVEY_EVENTS_WHERE),
    ("ix_call_events_entered", "call_events", ["call_sid"], ENTERED_WHERE),
    (
        "ix_audit_log_caller_actor",
        "audit_log",
        ["actor"],
        {"postgresql": CALLER_ACTOR_WHERE, "sqlite": CALLER_ACTOR_WHERE},
    ),
    (
        "ix_audit_log_account_uid_at",
        "audit_log",
        ["account_uid", "at"],
        {"postgresql": ACCOUNT_WHERE, "sqlite": ACCOUNT_WHERE},
    ),
]


def upgrade() -> None:
    # As 0023's: built CONCURRENTLY on PostgreSQL (a plain build holds back every webhook's
    # write to the table, a call's events too, until it ends: minutes on call_events); an
    # INVALID one left by a stopped build is built again, a valid one kept.
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
            partial = {
                f"{dialect}_where": sa.text(condition)
                for dialect, condition in (where or {}).items()
            }
            op.create_index(
                name, table, columns, unique=False, postgresql_concurrently=True, **partial
            )


def downgrade() -> None:
    context = op.get_context()
    with context.autocommit_block():
        for name, table, _, _ in reversed(INDEXES):
            op.drop_index(name, table_name=table, postgresql_concurrently=True)
