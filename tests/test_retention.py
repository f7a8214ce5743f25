"""Retention: the purge of old caller data, its daily job and command, and a caller's erasure."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, func, insert, select, update
from typer.testing import CliRunner

from ivr import retention
from ivr.cli import app as cli_app
from ivr.db import (
    audit_log,
    call_events,
    calls,
    cases,
    page_sends,
    pages,
    presence_changes,
    recordings,
    users,
    verification_failures,
)
from ivr.retention import Purged, StillOpen, erase, purge, purgeable
from ivr.settings import DatabaseSettings, load_settings
from ivr.tree import CompiledTree
from ivr.web import create_app
from tests.conftest import HTTPS_CLIENT, FakeClock, make_settings

NOW = datetime(2027, 6, 1, tzinfo=UTC)
KEEP = timedelta(days=400)
LONG_AGO = NOW - KEEP - timedelta(days=10)
LATELY = NOW - timedelta(days=10)
ALICE = "+8613800138000"
BOB = "+8613900139000"

_ids = itertools.count(1)


def add_call(
    db: Engine, *, ended: datetime | None, number: str | None = ALICE, events: int = 2
) -> str:
    sid = f"CA{next(_ids):032d}"
    started = (ended or NOW) - timedelta(minutes=5)
    with db.begin() as conn:
        conn.execute(
            insert(calls).values(
                call_sid=sid,
                from_number=number,
                tree_version="v1",
                step=1,
                state={},
                last_twiml="<Response/>",
                status="completed" if ended else "in-progress",
                started_at=started,
                updated_at=ended or started,
                ended_at=ended,
            )
        )
        for step in range(events):
            conn.execute(
                insert(call_events).values(call_sid=sid, step=step, at=started, kind="node")
            )
    return sid


def add_case(
    db: Engine,
    call_sid: str,
    *,
    status: str = "resolved",
    queued: int = 0,
    ended: datetime | None = LONG_AGO,
    created: datetime | None = None,
    caller: str | None = ALICE,
    callback_number: str | None = None,
) -> int:
    created = created or (ended or NOW) - timedelta(minutes=5)
    with db.begin() as conn:
        case_id: int = conn.execute(
            insert(cases)
            .values(
                ticket=str(1_000_000 + next(_ids)),
                call_sid=call_sid,
                caller=caller,
                reason="hijack",
                queue="emergency",
                priority="emergency",
                lane=0,
                sort_at=created,
                queued=queued,
                status=status,
                flags={},
                path=[],
                callback_number=callback_number,
                created_at=created,
                ended_at=ended,
            )
            .returning(cases.c.id)
        ).scalar_one()
        conn.execute(
            insert(recordings).values(
                case_id=case_id,
                recording_sid=f"RE{next(_ids):032d}",
                call_sid=call_sid,
                status="completed",
                at=created,
            )
        )
    return case_id


def add_audit(db: Engine, case_id: int | None, action: str, *, at: datetime = LONG_AGO) -> int:
    with db.begin() as conn:
        audit_id: int = conn.execute(
            insert(audit_log)
            .values(
                at=at,
                actor="agent:ann",
                action=action,
                account_uid="10000001",
                case_id=case_id,
                reason="the caller, Alice Wong, says her phone was stolen",
                result="ok",
            )
            .returning(audit_log.c.id)
        ).scalar_one()
    return audit_id


def add_page(db: Engine, *, turn: int, at: datetime) -> int:
    with db.begin() as conn:
        page_id: int = conn.execute(
            insert(pages)
            .values(
                turn=turn,
                at=at,
                next_at=at + timedelta(minutes=15),
                waiting=1,
                waited_seconds=60,
                result="sent",
                sent=1,
                failed=0,
            )
            .returning(pages.c.id)
        ).scalar_one()
        conn.execute(
            insert(page_sends).values(
                page_id=page_id, number="+15005550009", by="sms", status="delivered", at=at
            )
        )
    return page_id


def count(db: Engine, table: Any, *where: Any) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar())


def exists(db: Engine, table: Any, *where: Any) -> bool:
    return count(db, table, *where) > 0


def run_purge(db: Engine, **kwargs: Any) -> Purged:
    with db.connect() as conn:
        return purge(conn, now=NOW, keep=KEEP, **kwargs)


# -- the setting ------------------------------------------------------------------------------


def retention_setting(monkeypatch: pytest.MonkeyPatch, value: str | None) -> int:
    if value is None:
        monkeypatch.delenv("IVR_RETENTION_DAYS", raising=False)
    else:
        monkeypatch.setenv("IVR_RETENTION_DAYS", value)
    return load_settings(DatabaseSettings, _env_file=None).retention_days


@pytest.mark.parametrize(("value", "days"), [(None, 400), ("0", 0), ("31", 31), ("3650", 3650)])
def test_retention_days_default_to_400_and_0_is_never(
    monkeypatch: pytest.MonkeyPatch, value: str | None, days: int
) -> None:
    assert retention_setting(monkeypatch, value) == days


@pytest.mark.parametrize("value", ["1", "7", "30", "-1"])
def test_retention_shorter_than_a_month_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    with pytest.raises(Exception, match="IVR_RETENTION_DAYS"):
        retention_setting(monkeypatch, value)


def test_purge_refuses_too_short_a_retention(db: Engine) -> None:
    with db.connect() as conn, pytest.raises(ValueError, match="too short"):
        purge(conn, now=NOW, keep=timedelta(days=30))


# -- the purge --------------------------------------------------------------------------------


def test_old_closed_cases_go_with_their_calls_events_and_recordings(db: Engine) -> None:
    old_call = add_call(db, ended=LONG_AGO, events=3)
    resolved = add_case(db, old_call)
    # A call back taken out of line because the caller called again: no end of its own.
    replaced_call = add_call(db, ended=LONG_AGO, events=0)
    replaced = add_case(
        db, replaced_call, status="callback_requested", ended=None, created=LONG_AGO
    )
    lonely_call = add_call(db, ended=LONG_AGO, events=1)  # self-service, no case

    purged = run_purge(db)

    assert purged == Purged(cases=2, recordings=2, calls=3, call_events=4)
    for case_id in (resolved, replaced):
        assert not exists(db, cases, cases.c.id == case_id)
        assert not exists(db, recordings, recordings.c.case_id == case_id)
    for sid in (old_call, replaced_call, lonely_call):
        assert not exists(db, calls, calls.c.call_sid == sid)
        assert not exists(db, call_events, call_events.c.call_sid == sid)


def test_open_cases_and_owed_call_backs_stay_however_old(db: Engine) -> None:
    kept = {
        "waiting": add_case(db, add_call(db, ended=LONG_AGO), status="waiting", queued=1),
        # The caller hung up long ago: a call back is owed, and its case says it ended.
        "owed call back": add_case(db, add_call(db, ended=LONG_AGO), status="abandoned", queued=1),
        "asked call back": add_case(
            db, add_call(db, ended=LONG_AGO), status="callback_requested", queued=1, ended=None
        ),
        "offered": add_case(db, add_call(db, ended=LONG_AGO), status="offered"),
        "connected": add_case(db, add_call(db, ended=LONG_AGO), status="connected"),
        "resolved lately": add_case(db, add_call(db, ended=LATELY), ended=LATELY),
    }
    with db.connect() as conn:
        kept_calls = set(
            conn.execute(select(cases.c.call_sid).where(cases.c.id.in_(kept.values()))).scalars()
        )

    purged = run_purge(db)

    assert purged == Purged()
    for what, case_id in kept.items():
        assert exists(db, cases, cases.c.id == case_id), what
        assert exists(db, recordings, recordings.c.case_id == case_id), what
    assert count(db, calls, calls.c.call_sid.in_(kept_calls)) == len(kept_calls)
    assert count(db, call_events) == 2 * len(kept_calls)


def test_recent_and_unfinished_calls_stay(db: Engine) -> None:
    recent = add_call(db, ended=LATELY)
    in_progress = add_call(db, ended=None)
    just_inside = add_call(db, ended=NOW - KEEP + timedelta(minutes=1))

    assert run_purge(db) == Purged()
    assert count(db, calls) == 3
    with db.connect() as conn:
        left = set(conn.execute(select(calls.c.call_sid)).scalars())
    assert left == {recent, in_progress, just_inside}


def test_a_call_stays_while_any_case_of_it_stays(db: Engine) -> None:
    sid = add_call(db, ended=LONG_AGO)
    old = add_case(db, sid)
    owed = add_case(db, sid, status="abandoned", queued=1)

    assert run_purge(db) == Purged(cases=1, recordings=1)
    assert not exists(db, cases, cases.c.id == old)
    assert exists(db, cases, cases.c.id == owed)
    assert exists(db, calls, calls.c.call_sid == sid)
    assert count(db, call_events, call_events.c.call_sid == sid) == 2


def test_freezes_are_kept_whole_and_other_entries_of_purged_cases_blanked(db: Engine) -> None:
    gone = add_case(db, add_call(db, ended=LONG_AGO))
    stays = add_case(db, add_call(db, ended=LATELY), ended=LATELY)
    frozen = add_audit(db, gone, "freeze")
    self_frozen = add_audit(db, gone, "self_freeze")
    transfer = add_audit(db, gone, "transfer")
    recent = add_audit(db, stays, "transfer")

    assert run_purge(db).audit_blanked == 1

    with db.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(audit_log))}
    for kept in (frozen, self_frozen, recent):
        assert rows[kept].account_uid == "10000001"
        assert rows[kept].reason is not None and "stolen" in rows[kept].reason
    blanked = rows[transfer]
    assert (blanked.reason, blanked.account_uid) == (None, None)
    assert (blanked.actor, blanked.action, blanked.at) == ("agent:ann", "transfer", LONG_AGO)


def test_a_purged_cases_freezes_lose_the_callers_number_and_nothing_else(db: Engine) -> None:
    """A freeze's reason is what the agent typed, and agents type the number they were
    called from: the number outlives its case there unless masked."""
    gone = add_case(db, add_call(db, ended=LONG_AGO), callback_number=BOB)
    stays = add_case(db, add_call(db, ended=LATELY), ended=LATELY)
    frozen, without, recent = (
        add_audit(db, gone, "freeze"),
        add_audit(db, gone, "self_freeze"),
        add_audit(db, stays, "freeze"),
    )
    said = {
        frozen: f"called from {ALICE}, call back on {BOB[1:]}: SIM swapped",
        recent: f"called from {ALICE}",
    }
    with db.begin() as conn:
        for audit_id, reason in said.items():
            conn.execute(update(audit_log).where(audit_log.c.id == audit_id).values(reason=reason))

    assert retention_dry_run(db).audit_masked == 1
    assert run_purge(db).audit_masked == 1

    with db.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(audit_log))}
    assert rows[frozen].reason == "called from ***8000, call back on ***9000: SIM swapped"
    assert (rows[frozen].account_uid, rows[frozen].actor) == ("10000001", "agent:ann")
    assert rows[without].reason == "the caller, Alice Wong, says her phone was stolen"
    assert rows[recent].reason == f"called from {ALICE}"  # its case stays


def retention_dry_run(db: Engine) -> Purged:
    with db.connect() as conn:
        return purgeable(conn, now=NOW, keep=KEEP)


def plan_of(db: Engine, statement: Any) -> str:
    """How the database would run `statement` (not running it); on PostgreSQL with sequential
    scans made a last resort, as they are on a table of millions of rows."""
    sql = str(statement.compile(dialect=db.dialect, compile_kwargs={"literal_binds": True}))
    with db.connect() as conn:
        if db.dialect.name == "sqlite":
            return " ".join(
                str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")
            )
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plan = " ".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {sql}"))
        conn.rollback()
        return plan


def test_a_purged_cases_audit_entries_are_found_by_index(db: Engine) -> None:
    """The audit log is never purged: blanking a batch's entries by reading all of it would
    slow every batch as it grows, until each outlasts PostgreSQL's statement_timeout and the
    purge fails for good."""
    plan = plan_of(db, retention.blanking([1, 2, 3]))
    assert "ix_audit_log_case_id" in plan, plan


def test_old_pages_go_with_their_sends_but_the_latest_turn_stays(db: Engine) -> None:
    oldest = add_page(db, turn=1, at=LONG_AGO)
    last = add_page(db, turn=2, at=LONG_AGO + timedelta(hours=1))

    assert run_purge(db) == Purged(pages=1, page_sends=1)
    assert not exists(db, page_sends, page_sends.c.page_id == oldest)
    with db.connect() as conn:
        assert list(conn.execute(select(pages.c.id)).scalars()) == [last]

    recent = add_page(db, turn=3, at=LATELY)
    assert run_purge(db) == Purged(pages=1, page_sends=1)
    assert count(db, pages) == 1 and exists(db, pages, pages.c.id == recent)


def test_agents_presence_older_than_the_period_goes(db: Engine) -> None:
    """When each agent was available is their personal data: kept as long as the calls."""
    with db.begin() as conn:
        agent = conn.execute(
            insert(users)
            .values(name="ana", role="agent", token_hash="h-ana", created_at=LONG_AGO)
            .returning(users.c.id)
        ).scalar_one()
        for at in (LONG_AGO, LATELY):
            conn.execute(
                insert(presence_changes).values(
                    user_id=agent, at=at, available_since=at, away_reason=None
                )
            )
    with db.connect() as conn:
        assert purgeable(conn, now=NOW, keep=KEEP) == Purged(presence_changes=1)
    assert run_purge(db) == Purged(presence_changes=1)
    with db.connect() as conn:
        assert list(conn.execute(select(presence_changes.c.at)).scalars()) == [LATELY]


@pytest.fixture
def statements(db: Engine) -> Iterator[list[tuple[str, int]]]:
    """Each DELETE the database ran, with the rows it deleted."""
    seen: list[tuple[str, int]] = []

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            seen.append((statement.split()[2], cursor.rowcount))

    event.listen(db, "after_cursor_execute", after)
    yield seen
    event.remove(db, "after_cursor_execute", after)


def test_the_purge_deletes_in_batches(db: Engine, statements: list[tuple[str, int]]) -> None:
    for _ in range(7):
        add_case(db, add_call(db, ended=LONG_AGO))

    purged = run_purge(db, batch=3)

    assert (purged.cases, purged.calls, purged.call_events) == (7, 7, 14)
    by_table = {t: [n for table, n in statements if table == t and n] for t in ("cases", "calls")}
    assert by_table == {"cases": [3, 3, 1], "calls": [3, 3, 1]}
    assert count(db, cases) == count(db, calls) == 0


def test_the_purge_is_idempotent(db: Engine) -> None:
    add_case(db, add_call(db, ended=LONG_AGO))
    assert run_purge(db).total > 0
    assert run_purge(db) == Purged()


def test_the_dry_run_counts_what_the_purge_deletes_and_deletes_nothing(db: Engine) -> None:
    old = add_call(db, ended=LONG_AGO, events=4)
    gone = add_case(db, old)
    add_audit(db, gone, "transfer")
    add_case(db, add_call(db, ended=LONG_AGO), status="abandoned", queued=1)
    add_call(db, ended=LONG_AGO, events=1)
    add_page(db, turn=1, at=LONG_AGO)
    add_page(db, turn=2, at=LATELY)
    before = [count(db, t) for t in (cases, calls, call_events, recordings, pages, page_sends)]

    with db.connect() as conn:
        would = purgeable(conn, now=NOW, keep=KEEP)

    after = [count(db, t) for t in (cases, calls, call_events, recordings, pages, page_sends)]
    assert after == before
    assert exists(db, audit_log, audit_log.c.reason.is_not(None))
    assert would == Purged(
        cases=1, recordings=1, calls=2, call_events=5, pages=1, page_sends=1, audit_blanked=1
    )
    assert run_purge(db) == would


def test_two_purges_at_once_delete_everything_once(db: Engine) -> None:
    for _ in range(30):
        add_case(db, add_call(db, ended=LONG_AGO))
    kept = add_case(db, add_call(db, ended=LONG_AGO), status="abandoned", queued=1)
    results: list[Purged] = []
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait()
            results.append(run_purge(db, batch=4))
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert failures == []
    assert len(results) == 2
    total = results[0] + results[1]
    assert (total.cases, total.recordings, total.calls, total.call_events) == (30, 30, 30, 60)
    assert count(db, cases) == 1 and exists(db, cases, cases.c.id == kept)
    assert count(db, calls) == 1


# -- the daily job ----------------------------------------------------------------------------


def fake_hotline(db: Engine, clock: FakeClock, days: int) -> Any:
    return SimpleNamespace(db=db, clock=clock, settings=SimpleNamespace(retention_days=days))


def test_the_daily_job_purges_once_a_day_and_logs_it(
    db: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(NOW)
    hotline = fake_hotline(db, clock, 400)
    job = retention.Daily()
    add_case(db, add_call(db, ended=LONG_AGO))

    with caplog.at_level(logging.INFO, logger="ivr.retention"):
        first = job(hotline)
    assert first is not None and first.cases == 1
    assert "cases 1" in caplog.text and "calls 1" in caplog.text

    add_case(db, add_call(db, ended=LONG_AGO))
    clock.advance(hours=23)
    assert job(hotline) is None
    assert count(db, cases) == 1
    clock.advance(hours=1)
    again = job(hotline)
    assert again is not None and again.cases == 1
    assert count(db, cases) == 0


def test_the_daily_job_purges_a_backlog_a_little_at_each_sweep(
    db: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """It runs on a webhook thread and connection: a first purge of years of data must not
    keep them for the hour it takes. Each sweep purges for a while, the next goes on, and
    the day is counted from when nothing was left."""
    for _ in range(2):
        add_case(db, add_call(db, ended=LONG_AGO))
    clock = FakeClock(NOW)
    hotline = fake_hotline(db, clock, 400)
    job = retention.Daily(seconds=0, batch=1)  # one batch a sweep

    with caplog.at_level(logging.INFO, logger="ivr.retention"):
        first = job(hotline)
    assert first == Purged(cases=1, recordings=1)
    assert count(db, cases) == 1 and "more is left" in caplog.text

    sweeps = [first]
    while count(db, cases) + count(db, calls) and len(sweeps) < 10:
        clock.advance(minutes=5)  # the next sweep, not the next day
        sweeps.append(job(hotline))
    assert len(sweeps) == 4  # 2 cases, then 2 calls, one batch each
    clock.advance(minutes=5)
    last = job(hotline)  # finds nothing left: done for the day
    assert last == Purged()
    clock.advance(minutes=5)
    assert job(hotline) is None


def test_the_daily_job_does_nothing_when_retention_is_0(db: Engine) -> None:
    add_case(db, add_call(db, ended=LONG_AGO))
    assert retention.Daily()(fake_hotline(db, FakeClock(NOW), 0)) is None
    assert count(db, cases) == 1


@pytest.mark.parametrize("days", [400, 0])
def test_each_instance_runs_the_purge_as_a_timed_job(
    database_url: str, db: Engine, hotline_tree: CompiledTree, days: int
) -> None:
    gone = add_case(db, add_call(db, ended=LONG_AGO))
    settings = make_settings(
        IVR_DATABASE_URL=database_url, IVR_SWEEP_INTERVAL=0.05, IVR_RETENTION_DAYS=days
    )
    app = create_app(settings, tree=hotline_tree, db=db, clock=FakeClock(NOW))
    with TestClient(app, base_url=HTTPS_CLIENT):
        deadline = time.monotonic() + 10
        while exists(db, cases, cases.c.id == gone) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not days:
            time.sleep(0.5)  # ten sweeps: time enough for a purge that should not happen
    assert exists(db, cases, cases.c.id == gone) == (days == 0)


# -- a caller's erasure -----------------------------------------------------------------------


def erase_alice(db: Engine, reason: str = "GDPR request #42") -> retention.Erased:
    with db.connect() as conn:
        return erase(conn, number=ALICE, actor="cli:ops", reason=reason, now=NOW)


def add_failure(db: Engine, caller: str, call_sid: str) -> None:
    with db.begin() as conn:
        conn.execute(
            insert(verification_failures).values(caller=caller, call_sid=call_sid, at=LATELY)
        )


def test_erasure_deletes_every_call_and_case_of_the_number_and_nothing_else(db: Engine) -> None:
    call = add_call(db, ended=LATELY)
    by_caller = add_case(db, call, ended=LATELY)
    # A caller who withheld their number and keyed this one to be called back on.
    withheld_call = add_call(db, ended=LATELY, number="anonymous")
    by_callback = add_case(
        db, withheld_call, caller="anonymous", callback_number=ALICE, ended=LATELY
    )
    no_case = add_call(db, ended=LATELY)
    add_failure(db, ALICE, no_case)
    add_failure(db, f"ticket:{ALICE}", "CA-a-call-of-another-number")  # a ticket mistyped
    frozen = add_audit(db, by_caller, "freeze", at=LATELY)
    transfer = add_audit(db, by_caller, "transfer", at=LATELY)
    bobs_call = add_call(db, ended=LATELY, number=BOB)
    bobs_case = add_case(db, bobs_call, caller=BOB, ended=LATELY)
    add_failure(db, BOB, bobs_call)
    with db.connect() as conn:
        recording_sids = set(
            conn.execute(
                select(recordings.c.recording_sid).where(
                    recordings.c.case_id.in_([by_caller, by_callback])
                )
            ).scalars()
        )

    erased = erase_alice(db)

    assert (erased.cases, erased.recordings, erased.calls, erased.call_events) == (2, 2, 3, 6)
    assert (erased.verification_failures, erased.audit_blanked) == (2, 1)
    assert set(erased.call_sids) == {call, withheld_call, no_case}
    assert set(erased.recording_sids) == recording_sids
    assert not exists(db, cases, cases.c.id.in_([by_caller, by_callback]))
    assert not exists(db, calls, calls.c.call_sid.in_(erased.call_sids))
    assert not exists(db, call_events, call_events.c.call_sid.in_(erased.call_sids))
    assert not exists(db, recordings, recordings.c.case_id.in_([by_caller, by_callback]))
    assert not exists(db, verification_failures, verification_failures.c.caller != BOB)
    # Bob's are untouched.
    assert exists(db, cases, cases.c.id == bobs_case)
    assert exists(db, recordings, recordings.c.case_id == bobs_case)
    assert count(db, call_events, call_events.c.call_sid == bobs_call) == 2
    assert count(db, verification_failures) == 1
    with db.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(audit_log))}
    assert rows[frozen].reason is not None and rows[frozen].account_uid == "10000001"
    assert (rows[transfer].reason, rows[transfer].account_uid) == (None, None)


def test_erasure_masks_the_number_in_the_audit_entries_it_keeps(db: Engine) -> None:
    """A freeze's entry is kept whole but for the number: its reason is what an agent typed,
    and agents type the number they were called from. So are an unfreeze's (no case), and an
    entry of another caller's case naming this one; the number written without its + too."""
    alices = add_case(db, add_call(db, ended=LATELY), ended=LATELY)
    bobs = add_case(db, add_call(db, ended=LATELY, number=BOB), caller=BOB, ended=LATELY)
    frozen = add_audit(db, alices, "freeze", at=LATELY)
    unfrozen = add_audit(db, None, "unfreeze", at=LATELY)
    on_bobs = add_audit(db, bobs, "freeze", at=LATELY)
    about_bob = add_audit(db, bobs, "transfer", at=LATELY)
    # As agents write a number: without the country code, with spaces, dashes, 0086.
    written = [add_audit(db, alices, "freeze", at=LATELY) for _ in range(3)]
    said = {
        frozen: f"call from {ALICE}, says her SIM was swapped",
        unfrozen: f"owner confirmed on {ALICE[1:]} by video",
        on_bobs: f"her husband; her number {ALICE}",
        about_bob: f"called from {BOB}",
        written[0]: "UID 10000001, caller on 13800138000",
        written[1]: "callback to +86 138-0013-8000 asked",
        written[2]: "her number (0086) 138 0013 8000; order 12345678",
    }
    with db.begin() as conn:
        for audit_id, reason in said.items():
            conn.execute(update(audit_log).where(audit_log.c.id == audit_id).values(reason=reason))

    erased = erase_alice(db)

    assert erased.audit_masked == 6
    with db.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(audit_log))}
    assert rows[frozen].reason == "call from ***8000, says her SIM was swapped"
    assert rows[frozen].account_uid == "10000001"  # the freeze otherwise whole
    assert rows[unfrozen].reason == "owner confirmed on ***8000 by video"
    assert rows[on_bobs].reason == "her husband; her number ***8000"
    assert rows[about_bob].reason == f"called from {BOB}"
    assert [rows[i].reason for i in written] == [
        "UID 10000001, caller on ***8000",
        "callback to ***8000 asked",
        "her number ***8000; order 12345678",
    ]
    assert not any(ALICE[1:] in (r.reason or "") for r in rows.values())


def test_erasure_lists_the_call_backs_placed_to_the_number_for_deletion_at_twilio(
    db: Engine,
) -> None:
    """A call back is Twilio's call to the number, in no row here but its recording's: Twilio
    keeps its log (the number in it) until it is deleted there."""
    call = add_call(db, ended=LATELY)
    case_id = add_case(db, call, ended=LATELY)
    call_back = f"CA{next(_ids):032d}"
    with db.begin() as conn:
        conn.execute(
            insert(recordings).values(
                case_id=case_id,
                recording_sid=f"RE{next(_ids):032d}",
                call_sid=call_back,
                status="completed",
                at=LATELY,
            )
        )

    erased = erase_alice(db)

    assert set(erased.call_sids) == {call, call_back}
    assert erased.recordings == 2


def test_a_call_another_numbers_case_belongs_to_stays(db: Engine) -> None:
    withheld_call = add_call(db, ended=LATELY, number="anonymous")
    alices = add_case(db, withheld_call, caller="anonymous", callback_number=ALICE, ended=LATELY)
    bobs = add_case(db, withheld_call, caller="anonymous", callback_number=BOB, ended=LATELY)

    erased = erase_alice(db)

    assert (erased.cases, erased.calls, erased.call_sids) == (1, 0, ())
    assert not exists(db, cases, cases.c.id == alices)
    assert exists(db, cases, cases.c.id == bobs)
    assert count(db, call_events, call_events.c.call_sid == withheld_call) == 2


def test_the_erasure_is_audited_without_the_number(db: Engine) -> None:
    add_case(db, add_call(db, ended=LATELY), ended=LATELY)

    erase_alice(db, reason=f"request from {ALICE} by email ({ALICE[1:]})")

    with db.connect() as conn:
        [entry] = conn.execute(select(audit_log).where(audit_log.c.action == "erase")).all()
    assert entry.actor == "cli:ops"
    assert entry.reason is not None
    assert "***8000" in entry.reason and "cases 1" in entry.reason and "calls 1" in entry.reason
    assert ALICE[1:] not in entry.reason  # with or without its +
    assert "request from" in entry.reason


@pytest.mark.parametrize(
    ("status", "queued"),
    [("waiting", 1), ("abandoned", 1), ("callback_requested", 1), ("offered", 0), ("connected", 0)],
)
def test_erasure_is_refused_while_a_case_of_the_number_is_open(
    db: Engine, status: str, queued: int
) -> None:
    closed = add_case(db, add_call(db, ended=LATELY), ended=LATELY)
    open_case = add_case(db, add_call(db, ended=LATELY), status=status, queued=queued)
    with db.connect() as conn:
        ticket = conn.execute(select(cases.c.ticket).where(cases.c.id == open_case)).scalar()

    with pytest.raises(StillOpen) as refused:
        erase_alice(db)

    assert refused.value.tickets == [ticket]
    assert count(db, cases) == 2 and exists(db, cases, cases.c.id == closed)
    assert count(db, calls) == 2 and count(db, recordings) == 2
    assert not exists(db, audit_log)


def test_erasure_is_refused_during_a_call_from_the_number(db: Engine) -> None:
    add_call(db, ended=None)
    with pytest.raises(StillOpen) as refused:
        erase_alice(db)
    assert (refused.value.tickets, refused.value.calls_in_progress) == ([], 1)
    assert count(db, calls) == 1


@pytest.mark.parametrize("number", ["8613800138000", "+266696687", "anonymous"])
def test_erasure_needs_a_callers_whole_number(db: Engine, number: str) -> None:
    add_call(db, ended=LATELY, number=number)
    with db.connect() as conn, pytest.raises(ValueError):
        erase(conn, number=number, actor="cli:ops", reason="asked", now=NOW)
    assert count(db, calls) == 1


# -- the commands -----------------------------------------------------------------------------


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout's
    for name in ("IVR_RETENTION_DAYS", "IVR_MIGRATIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IVR_DATABASE_URL", database_url)
    monkeypatch.setenv("USER", "ops")
    monkeypatch.setenv("LOGNAME", "ops")


def ivr(*args: str) -> Any:
    return CliRunner().invoke(cli_app, list(args))


def test_db_purge_prints_what_it_deletes_and_the_dry_run_deletes_nothing(
    cli_env: None, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=410)
    add_case(db, add_call(db, ended=long_ago), ended=long_ago)

    dry = ivr("db", "purge", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would delete" in dry.output and "cases 1" in dry.output and "calls 1" in dry.output
    assert count(db, cases) == count(db, calls) == 1

    done = ivr("db", "purge")
    assert done.exit_code == 0, done.output
    assert "deleted" in done.output and "cases 1" in done.output and "call_events 2" in done.output
    assert count(db, cases) == count(db, calls) == 0

    monkeypatch.setenv("IVR_RETENTION_DAYS", "0")
    never = ivr("db", "purge")
    assert never.exit_code == 1 and "never purged" in never.output


def test_calls_erase_from_the_command_line(cli_env: None, db: Engine) -> None:
    sid = add_call(db, ended=LATELY)
    add_case(db, sid, ended=LATELY)
    waiting = add_case(db, add_call(db, ended=LATELY), status="waiting", queued=1)
    with db.connect() as conn:
        ticket = conn.execute(select(cases.c.ticket).where(cases.c.id == waiting)).scalar()

    refused = ivr("calls", "erase", ALICE, "--reason", "GDPR request #42")
    assert refused.exit_code == 1
    assert f"open tickets {ticket}" in refused.output and count(db, cases) == 2

    with db.begin() as conn:
        conn.execute(
            cases.update().where(cases.c.id == waiting).values(status="resolved", queued=0)
        )
    done = ivr("calls", "erase", ALICE, "--reason", "GDPR request #42")
    assert done.exit_code == 0, done.output
    assert "cases 2" in done.output and "audited as cli:ops" in done.output
    assert "Twilio" in done.output and sid in done.output
    assert count(db, cases) == count(db, calls) == 0
    with db.connect() as conn:
        actor = conn.execute(select(audit_log.c.actor).where(audit_log.c.action == "erase"))
        assert actor.scalar() == "cli:ops"

    assert ivr("calls", "erase", "8613800138000", "--reason", "asked").exit_code == 1
    assert ivr("calls", "erase", ALICE, "--reason", "").exit_code == 1


def test_calls_erase_outlasts_the_webhooks_statement_timeout(
    cli_env: None, db: Engine, database_url: str
) -> None:
    """PostgreSQL: an erasure reads the whole audit log for the number, and on a hotline that
    ran for years that takes longer than the 5 s a webhook's statement may. The command is
    not a webhook: it must not fail, erasing nothing, because the log is large. A statement
    made to take 5.5 s stands in for the large log."""
    if not database_url.startswith("postgresql"):
        pytest.skip("statement_timeout is PostgreSQL's")
    add_case(db, add_call(db, ended=LATELY), ended=LATELY)
    with db.begin() as conn:
        conn.exec_driver_sql(
            "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_sleep(5.5); RETURN NULL; END $$"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER slow BEFORE DELETE ON verification_failures "
            "FOR EACH STATEMENT EXECUTE FUNCTION slow()"
        )
    try:
        done = ivr("calls", "erase", ALICE, "--reason", "GDPR request #42")
    finally:
        with db.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER slow ON verification_failures")
            conn.exec_driver_sql("DROP FUNCTION slow()")
    assert done.exit_code == 0, done.output
    assert count(db, cases) == count(db, calls) == 0
