"""cases: an id is never given again on SQLite (AUTOINCREMENT). SQLite's plain integer key
hands the newest row's id out again once that row is deleted, and erasure and the purge
delete cases; their audit entries are kept, by case id. A new caller's case then took an
erased caller's id, and with it their freezes and account on its timeline, and the agent
freeze check read them as this case's. PostgreSQL's sequences never go back: nothing to do.

The table is made again with its id AUTOINCREMENT, its rows and indexes as they were, and the
counter set past every case id the database still names (the audit log's, recordings'), so
an id erased before this upgrade is not handed out either.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-05 12:10:00.000000
"""

import re
from collections.abc import Sequence

from alembic import op

revision: str = "0030"
down_revision: str | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEY_COLUMN = re.compile(r"(\n\s*)id INTEGER NOT NULL, ")
_KEY_CONSTRAINT = re.compile(r"CONSTRAINT pk_cases PRIMARY KEY \(id\), ")
HIGHEST_NAMED = (
    "SELECT max(n) FROM (SELECT max(id) AS n FROM cases"
    " UNION ALL SELECT max(case_id) FROM audit_log"
    " UNION ALL SELECT max(case_id) FROM recordings)"
)


def upgrade() -> None:
    context = op.get_context()
    if context.dialect.name != "sqlite" or context.as_sql:
        return
    bind = op.get_bind()
    table = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'cases'"
    ).scalar_one()
    if "AUTOINCREMENT" in table:
        return
    made, keyed = _KEY_COLUMN.subn(
        r"\1id INTEGER NOT NULL CONSTRAINT pk_cases PRIMARY KEY AUTOINCREMENT, ", table, count=1
    )
    made, unkeyed = _KEY_CONSTRAINT.subn("", made, count=1)
    if not (keyed and unkeyed):
        raise RuntimeError(f"cases is not the table this migration knows: {table}")
    indexes = list(
        bind.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'cases'"
            " AND sql IS NOT NULL"
        ).scalars()
    )
    highest = bind.exec_driver_sql(HIGHEST_NAMED).scalar() or 0
    made, named = re.subn(r'^CREATE TABLE "?cases"?', "CREATE TABLE cases_0030", made, count=1)
    if not named:
        raise RuntimeError(f"cases is not the table this migration knows: {table}")
    bind.exec_driver_sql(made)
    bind.exec_driver_sql("INSERT INTO cases_0030 SELECT * FROM cases")
    bind.exec_driver_sql("DROP TABLE cases")
    bind.exec_driver_sql("ALTER TABLE cases_0030 RENAME TO cases")
    for index in indexes:
        bind.exec_driver_sql(index)
    bind.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = 'cases'")
    bind.exec_driver_sql(
        "INSERT INTO sqlite_sequence (name, seq) VALUES ('cases', ?)", (int(highest),)
    )


def downgrade() -> None:
    # AUTOINCREMENT only keeps ids from coming back; the schema before it reads the same.
    pass
