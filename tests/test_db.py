"""Schema and persistence details, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import Engine, create_engine, inspect, text

from ivr import cli
from ivr.db import create_db_engine, engine_from_settings, metadata, normalise_url, upgrade
from ivr.engine import CallState, LogEntry
from ivr.settings import DatabaseSettings
from ivr.store import close_stale_calls, create_call, get_call, load_call, save_step
from tests.conftest import PG_ADMIN_URL, make_settings


def test_migrations_match_the_models(db: Engine) -> None:
    with db.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_upgrade_twice_is_harmless_and_downgrade_works(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x.sqlite3"
    upgrade(url)
    upgrade(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent.parent / "migrations"))
    cfg.attributes["url"] = url
    command.downgrade(cfg, "base")
    engine = create_db_engine(url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    upgrade(url)


def test_times_come_back_as_aware_utc(db: Engine) -> None:
    singapore = timezone(timedelta(hours=8))
    at = datetime(2026, 11, 23, 20, 0, tzinfo=singapore)
    with db.connect() as conn:
        create_call(
            conn,
            call_sid="CA" + "a" * 32,
            account_sid=None,
            from_number=None,
            to_number=None,
            tree_version="v",
            step=1,
            state=CallState(node="n"),
            twiml="<Response/>",
            log=[LogEntry("n", "entered")],
            now=at,
        )
        row = get_call(conn, call_sid="CA" + "a" * 32)
    assert row is not None
    assert row["started_at"] == at and row["started_at"].tzinfo is not None
    assert row["started_at"].utcoffset() == timedelta(0)


def test_save_step_refuses_a_stale_step(db: Engine) -> None:
    sid, now = "CA" + "b" * 32, datetime(2026, 1, 1, tzinfo=UTC)
    with db.connect() as conn:
        create_call(
            conn,
            call_sid=sid,
            account_sid=None,
            from_number=None,
            to_number=None,
            tree_version="v",
            step=1,
            state=CallState(node="a"),
            twiml="<Response/>",
            log=[],
            now=now,
        )
        assert save_step(
            conn,
            call_sid=sid,
            expected_step=1,
            state=CallState(node="b"),
            twiml="<Response/>",
            log=[],
            now=now,
        )
        # A concurrent copy of the same request, also read at step 1, must not apply again.
        assert not save_step(
            conn,
            call_sid=sid,
            expected_step=1,
            state=CallState(node="c"),
            twiml="<Response/>",
            log=[],
            now=now,
        )
        row = load_call(conn, call_sid=sid)
        assert row is not None and (row.step, row.state.node) == (2, "b")
        two_hours = timedelta(hours=2)
        assert close_stale_calls(conn, now=now + timedelta(hours=1), max_age=two_hours) == []
        [closed] = close_stale_calls(conn, now=now + timedelta(hours=3), max_age=two_hours)
        assert (closed.call_sid, closed.status) == (sid, "stale")


def test_database_urls_people_paste_get_the_psycopg_driver() -> None:
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgresql://u:p@h:5432/db") == "postgresql+psycopg://u:p@h:5432/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


@contextlib.contextmanager
def scratch_database(prefix: str) -> Iterator[tuple[str, Engine]]:
    """A PostgreSQL database of its own, empty (no migration run): its URL, and an admin
    engine in autocommit (to watch and cancel its sessions). Dropped after, sessions and
    all."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name, admin
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# Processes, not threads: Alembic's `context` is one per process.
UPGRADE = "import sys; from ivr.db import upgrade; upgrade(sys.argv[1])"
# An index build of migration 0019, held up by a lock (an open transaction writing its table).
BUILD_WAITING = text(
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
    "AND query ILIKE 'CREATE INDEX%' AND query LIKE '%' || :index || '%' "
    "AND wait_event_type = 'Lock'"
)
# A write to each table that takes the table's write lock and changes nothing.
WRITES = {
    "cases": text("UPDATE cases SET notes = notes WHERE id = 0"),
    "calls": text("UPDATE calls SET status = status WHERE call_sid = ''"),
}
WRITE_CASES = WRITES["cases"]


def build_waiting(url: str, index: str = "ix_cases_parent_ticket") -> int:
    """The pid of 0019's build of `index` once it waits for a lock (within 30 s)."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            deadline = time.monotonic() + 30
            while (pid := conn.execute(BUILD_WAITING, {"index": index}).scalar()) is None:
                assert time.monotonic() < deadline, "the index build never started"
                time.sleep(0.05)
            return int(pid)
    finally:
        engine.dispose()


def test_instances_starting_together_migrate_once() -> None:
    """Every `ivr serve` upgrades at start: on PostgreSQL one migrates, the others wait."""
    with scratch_database("ivr_race") as (url, _):
        starts = [
            subprocess.Popen(
                [sys.executable, "-c", UPGRADE, url], stderr=subprocess.PIPE, text=True
            )
            for _ in range(4)
        ]
        errors = [p.communicate(timeout=120)[1] for p in starts]
        assert [p.returncode for p in starts] == [0, 0, 0, 0], "\n".join(errors)
        engine = create_db_engine(url)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        engine.dispose()


@pytest.mark.parametrize(
    ("table", "index"),
    [("calls", "ix_calls_started_at_call_sid"), ("cases", "ix_cases_parent_ticket")],
)
def test_the_call_log_indexes_are_built_without_holding_back_webhooks_writes(
    table: str, index: str
) -> None:
    """PostgreSQL, migration 0019 on a live hotline: a transaction writing to the table
    holds its index build up (as a webhook's would), and meanwhile the next webhook's write
    still goes through. A plain CREATE INDEX would queue it behind the build, and every call
    with it. The upgrade finishes once the old transaction does."""
    failed: list[BaseException] = []
    with scratch_database("ivr_cic") as (url, _):

        def upgrade_to_0019() -> None:
            try:
                upgrade(url, "0019")
            except BaseException as exc:  # seen by the test, not lost in the thread
                failed.append(exc)

        upgrade(url, "0018")
        engine = create_db_engine(url)
        try:
            with engine.connect() as old:
                old.execute(WRITES[table])  # and stays open
                migrating = threading.Thread(target=upgrade_to_0019)
                migrating.start()
                build_waiting(url, index)
                with engine.connect() as webhook:
                    webhook.execute(text("SET lock_timeout = '2s'"))
                    webhook.execute(WRITES[table])  # LockNotAvailable if writes were held back
                    webhook.commit()
                old.rollback()
            migrating.join(timeout=60)
            assert not migrating.is_alive() and failed == []
            with engine.connect() as conn:
                indexes = {i["name"] for i in inspect(conn).get_indexes(table)}
            assert index in indexes
        finally:
            engine.dispose()


def test_an_upgrade_after_a_failed_parent_ticket_index_build_succeeds() -> None:
    """PostgreSQL: the 0019 build of an `ivr serve` is stopped midway (the pod killed by its
    start-up probe, a role's statement_timeout, a cancel): PostgreSQL leaves the index behind,
    INVALID, and the schema at 0018. The next start upgrades again: it must not fail on
    "already exists" (every instance refusing to start), nor keep the invalid index."""
    with scratch_database("ivr_cic") as (url, admin):
        upgrade(url, "0018")
        engine = create_db_engine(url)
        try:
            with engine.connect() as old:
                old.execute(WRITE_CASES)  # holds the build
                start = subprocess.Popen(
                    [sys.executable, "-c", UPGRADE, url], stderr=subprocess.PIPE, text=True
                )
                pid = build_waiting(url)
                with admin.connect() as conn:
                    conn.execute(text("SELECT pg_cancel_backend(:pid)"), {"pid": pid})
                start.communicate(timeout=60)
                assert start.returncode != 0  # that start failed, as it should
                old.rollback()
            upgrade(url)  # the next start
            with engine.connect() as conn:
                valid = conn.execute(
                    text(
                        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c "
                        "ON c.oid = i.indexrelid WHERE c.relname = 'ix_cases_parent_ticket'"
                    )
                ).scalar()
            assert valid is True
        finally:
            engine.dispose()


def test_every_partial_index_is_as_partial_as_the_model_says(db: Engine) -> None:
    """`test_migrations_match_the_models` (Alembic's comparison) does not compare an
    index's WHERE: a whole-column index where the model has a partial one would pass it."""

    def norm(where: str | None) -> str:
        return "".join(ch for ch in (where or "") if ch not in "() \n").lower()

    with db.connect() as conn:
        for table in metadata.tables.values():
            for index in table.indexes:
                want = index.dialect_options[db.dialect.name].get("where")
                if db.dialect.name == "sqlite":
                    sql = conn.execute(
                        text("SELECT sql FROM sqlite_master WHERE name = :n"), {"n": index.name}
                    ).scalar_one()
                    got = sql.split(" WHERE ", 1)[1] if " WHERE " in sql else None
                else:
                    got = conn.execute(
                        text(
                            "SELECT pg_get_expr(i.indpred, i.indrelid) FROM pg_index i "
                            "WHERE i.indexrelid = to_regclass(:n)"
                        ),
                        {"n": index.name},
                    ).scalar_one()
                assert (got is None) == (want is None), index.name
                # PostgreSQL rewrites a predicate (casts, ANY(ARRAY[...])): compared as
                # written on SQLite, and for the one that reads the same on both.
                if db.dialect.name == "sqlite" or index.name == "ix_cases_parent_ticket":
                    assert norm(got) == norm(None if want is None else str(want)), index.name


def test_an_erased_cases_id_is_never_a_new_cases(tmp_path: Path) -> None:
    """SQLite hands the newest row's id out again once it is deleted (erasure, the purge):
    the audit entries kept by that id would then be a new caller's. 0030 makes the id
    AUTOINCREMENT, keeps the rows and indexes, and sets the counter past every case id the
    database still names: one erased before the upgrade is not handed out either."""
    url = f"sqlite:///{tmp_path}/x.sqlite3"
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent.parent / "migrations"))
    cfg.attributes["url"] = url
    command.upgrade(cfg, "0029")
    engine = create_db_engine(url)
    at = "2026-12-05 10:00:00.000000"
    case = (
        "INSERT INTO cases (id, ticket, call_sid, reason, queue, priority, lane, sort_at, queued,"
        " status, flags, path, created_at) VALUES (:id, :t, 'CA1', 'hijack', 'security',"
        " 'emergency', 0, :at, 0, 'resolved', '{}', '[]', :at)"
    )
    with engine.begin() as conn:
        for n in (1, 2, 3):
            conn.execute(text(case), {"id": n, "t": f"T{n}", "at": at})
        conn.execute(
            text(
                "INSERT INTO audit_log (at, actor, action, account_uid, case_id, reason, result)"
                " VALUES (:at, 'agent:ann', 'freeze', '10000001', 3, 'hijack', 'ok')"
            ),
            {"at": at},
        )
        conn.execute(text("DELETE FROM cases WHERE id = 3"))  # erased before the upgrade
    engine.dispose()
    upgrade(url)
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            assert conn.execute(text("SELECT id, ticket FROM cases ORDER BY id")).all() == [
                (1, "T1"),
                (2, "T2"),
            ]
            conn.execute(
                text(case.replace("(id, ", "(").replace("(:id, ", "(")), {"t": "T4", "at": at}
            )
            conn.execute(text("DELETE FROM cases WHERE ticket = 'T4'"))  # erased after it
            conn.execute(
                text(case.replace("(id, ", "(").replace("(:id, ", "(")), {"t": "T5", "at": at}
            )
            assert conn.execute(text("SELECT id FROM cases WHERE ticket = 'T5'")).scalar() == 5
        indexes = {i["name"] for i in inspect(engine).get_indexes("cases")}
        assert {ix.name for ix in metadata.tables["cases"].indexes} <= indexes
    finally:
        engine.dispose()


def test_an_older_release_on_a_newer_database_says_what_to_do(tmp_path: Path) -> None:
    """A rollback of the code alone: its migrations end before the database's. Said in an
    operator's words (which migration, which release's newest, what to do), not Alembic's
    "Can't locate revision"; and a missing migrations folder is named as a setting, not
    answered with Alembic's advice to start a new history ('init')."""
    from ivr.exceptions import ConfigError

    url = f"sqlite:///{tmp_path}/x.sqlite3"
    upgrade(url)
    engine = create_db_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(ConfigError) as newer:
        upgrade(url)
    said = str(newer.value)
    assert said.startswith("the database is at migration 0099, which this release does not have")
    assert "a newer release migrated it" in said and "restore the dump" in said
    with pytest.raises(ConfigError, match=r"no migrations at .*: set IVR_MIGRATIONS"):
        upgrade(url, migrations=tmp_path / "nowhere")


def _prepared_after_repeats(engine: Engine) -> int:
    """Statements the server holds prepared for one connection, after the same statement ran
    on it ten times (psycopg prepares one by itself after five)."""
    with engine.connect() as conn:
        for n in range(10):
            conn.execute(text("SELECT count(*) FROM calls WHERE step > :n"), {"n": n})
        prepared = conn.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar_one()
    engine.dispose()
    return int(prepared)


def test_behind_a_pooler_in_transaction_mode_no_statement_is_prepared(
    database_url: str,
) -> None:
    """PgBouncer in transaction mode hands each transaction whichever server connection is
    free: a statement psycopg prepared on one (by a name, `_pg3_0`) is not on the next, or
    another statement is by that name (61 of 90 queue-page loads failed so at volume). With
    IVR_DATABASE_POOLER=transaction the app's engine, and the commands', prepare none."""
    if not database_url.startswith("postgresql"):
        pytest.skip("prepared statements are PostgreSQL's")
    assert _prepared_after_repeats(create_db_engine(database_url)) > 0  # the default
    assert _prepared_after_repeats(create_db_engine(database_url, pooler="session")) > 0
    assert _prepared_after_repeats(create_db_engine(database_url, pooler="transaction")) == 0
    pooled = {"IVR_DATABASE_URL": database_url, "IVR_DATABASE_POOLER": "transaction"}
    assert _prepared_after_repeats(engine_from_settings(make_settings(**pooled))) == 0
    database = DatabaseSettings(_env_file=None, **pooled)  # type: ignore[call-arg]
    assert _prepared_after_repeats(cli._database(database)) == 0
    with pytest.raises(ValidationError):
        DatabaseSettings(_env_file=None, IVR_DATABASE_POOLER="statement")  # type: ignore[call-arg]
