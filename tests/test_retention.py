"""Retention: the purge of old caller data, its daily job and command, and a caller's erasure."""

from __future__ import annotations

import itertools
import json
import logging
import os
import pwd
import re
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
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client as TwilioClient
from typer.testing import CliRunner

from ivr import cli, retention
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
from tests.conftest import HTTPS_CLIENT, TOKEN, FakeClock, RecordingTwilio, make_settings

NOW = datetime(2027, 6, 1, tzinfo=UTC)
KEEP = timedelta(days=400)
LONG_AGO = NOW - KEEP - timedelta(days=10)
LATELY = NOW - timedelta(days=10)
ALICE = "+8613800138000"
BOB = "+8613900139000"

ACCOUNT = "AC" + "0" * 32
_ids = itertools.count(1)


def media_url(recording_sid: str, host: str = "api.twilio.com", account: str = ACCOUNT) -> str:
    return f"https://{host}/2010-04-01/Accounts/{account}/Recordings/{recording_sid}"


class TwilioRecordings(RecordingTwilio):
    """Twilio's REST API as it answers a recording's DELETE: 204 while it holds the audio
    (every recording, unless `gone`), 404 after; a 503 for those `failing`, or all with
    `refuse`."""

    def __init__(self) -> None:
        super().__init__()
        self.gone: set[str] = set()
        self.failing: set[str] = set()
        self.asked: list[str] = []  # the recordings each DELETE named, in order

    def request(
        self,
        method: str,
        url: str,
        params: object = None,
        data: object = None,
        headers: object = None,
        auth: object = None,
        timeout: object = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        named = re.search(rf"/Accounts/{ACCOUNT}/Recordings/(RE[0-9a-f]{{32}})\.json$", url)
        if method != "DELETE" or named is None:
            return super().request(method, url, params, data, headers, auth, timeout)
        sid = named[1]
        self.asked.append(sid)
        if self.meanwhile is not None:
            self.meanwhile()
        if self.refuse or sid in self.failing:
            body = {"code": 20503, "message": "unavailable", "status": 503}
            return TwilioResponse(503, json.dumps(body))
        if sid in self.gone:
            body = {"code": 20404, "message": "not found", "status": 404}
            return TwilioResponse(404, json.dumps(body))
        self.gone.add(sid)
        return TwilioResponse(204, "")


def client_on(twilio: TwilioRecordings) -> TwilioClient:
    return TwilioClient(ACCOUNT, TOKEN, http_client=twilio)


@pytest.fixture
def twilio() -> TwilioRecordings:
    return TwilioRecordings()


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
    recorded: bool = True,
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
    if recorded:
        add_recording(db, case_id, call_sid, at=created)
    return case_id


def add_recording(
    db: Engine, case_id: int, call_sid: str, *, at: datetime, url: str | None = ""
) -> str:
    """A recording of the case's call, at api.twilio.com unless `url` says otherwise."""
    sid = f"RE{next(_ids):032d}"
    with db.begin() as conn:
        conn.execute(
            insert(recordings).values(
                case_id=case_id,
                recording_sid=sid,
                call_sid=call_sid,
                status="completed",
                url=media_url(sid) if url == "" else url,
                at=at,
            )
        )
    return sid


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


def rows(db: Engine, table: Any, *where: Any) -> list[Any]:
    with db.connect() as conn:
        return list(conn.execute(select(table).where(*where).order_by(*table.primary_key)))


def run_purge(db: Engine, twilio: TwilioRecordings | None = None, **kwargs: Any) -> Purged:
    """The purge, recordings kept as long as the rest, deleted at `twilio` (a Twilio that
    holds every recording, if none is given)."""
    kwargs.setdefault("keep_recordings", KEEP)
    kwargs.setdefault("twilio", client_on(twilio or TwilioRecordings()))
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
        return purgeable(
            conn, now=NOW, keep=KEEP, twilio=client_on(TwilioRecordings()), keep_recordings=KEEP
        )


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


def test_each_batch_of_a_run_reads_on_from_where_the_last_stopped(
    db: Engine, twilio: TwilioRecordings
) -> None:
    """Old cases kept for their recordings (a regulator's years) and the calls they hold are
    read past once a run, not again at every batch: at a year's volume each pass cost
    seconds, and a run spent its time on them. Cases in the order of their ids, calls of
    when they ended."""
    for n in range(3):  # kept, and their calls, first in both orders
        add_case(db, add_call(db, ended=LONG_AGO - timedelta(days=1, minutes=n)))
    going = [
        add_case(db, add_call(db, ended=LONG_AGO - timedelta(minutes=n)), recorded=False)
        for n in range(5)
    ]
    ends = sorted(
        (c.ended_at, c.call_sid)
        for c in rows(db, calls)
        if c.call_sid not in {k.call_sid for k in rows(db, cases, cases.c.id.not_in(going))}
    )
    after: dict[str, list[Any]] = {"cases": [], "calls": []}

    def before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, *_: Any) -> None:
        flat = " ".join(statement.split())
        bound = context.compiled_parameters[0]
        if flat.startswith("SELECT cases.id FROM cases"):
            after["cases"].append(next((v for k, v in bound.items() if k.startswith("id_")), 0))
        elif flat.startswith("SELECT calls.call_sid, calls.ended_at FROM calls"):
            sids = [v for k, v in bound.items() if k.startswith("call_sid_")]
            after["calls"].append(sids[0] if sids else None)

    event.listen(db, "before_cursor_execute", before)
    try:
        purged = run_purge(db, twilio, batch=2, keep_recordings=timedelta(days=5 * 365))
    finally:
        event.remove(db, "before_cursor_execute", before)
    assert (purged.cases, purged.calls) == (5, 5)
    assert count(db, cases) == count(db, calls) == 3
    assert after["cases"] == [0, going[1], going[3], going[4]]
    assert after["calls"] == [None, ends[1][1], ends[3][1], ends[4][1]]


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
        would = purgeable(
            conn, now=NOW, keep=KEEP, twilio=client_on(TwilioRecordings()), keep_recordings=KEEP
        )

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


# -- recordings at Twilio ---------------------------------------------------------------------


def sids_of(db: Engine, *where: Any) -> list[str]:
    return [r.recording_sid for r in rows(db, recordings, *where)]


def test_old_recordings_are_deleted_at_twilio_before_their_rows_and_cases(
    db: Engine, twilio: TwilioRecordings
) -> None:
    old = add_case(db, add_call(db, ended=LONG_AGO))
    recent = add_case(db, add_call(db, ended=LATELY), ended=LATELY)
    old_sid, recent_sid = sids_of(db, recordings.c.case_id == old)[0], sids_of(db)[1]
    twilio.gone.add(second := add_recording(db, old, "CA-a-call-back", at=LONG_AGO))

    purged = run_purge(db, twilio)

    # Twilio was asked for each old one once, by the account's REST API; a 404 is gone too.
    assert twilio.asked == [old_sid, second]
    assert (purged.recordings, purged.recordings_left, purged.cases) == (2, 0, 1)
    assert sids_of(db) == [recent_sid]
    assert not exists(db, cases, cases.c.id == old) and exists(db, cases, cases.c.id == recent)


def test_a_recording_twilio_failed_to_delete_keeps_its_row_and_case_until_a_later_purge(
    db: Engine, twilio: TwilioRecordings
) -> None:
    case_id = add_case(db, add_call(db, ended=LONG_AGO))
    [sid] = sids_of(db)
    twilio.failing.add(sid)

    first = run_purge(db, twilio)

    assert (first.recordings, first.recordings_left, first.cases, first.calls) == (0, 1, 0, 0)
    assert twilio.asked == [sid]  # once a run: not in a loop
    assert sids_of(db) == [sid] and exists(db, cases, cases.c.id == case_id)
    assert count(db, calls) == 1

    twilio.failing.clear()
    again = run_purge(db, twilio)
    assert (again.recordings, again.recordings_left, again.cases, again.calls) == (1, 0, 1, 1)
    assert sids_of(db) == [] and count(db, cases) == 0


def test_a_twilio_that_keeps_failing_is_not_asked_for_every_recording(
    db: Engine, twilio: TwilioRecordings
) -> None:
    for _ in range(retention.FAILING_IN_A_ROW + 3):
        add_case(db, add_call(db, ended=LONG_AGO))
    twilio.refuse = True

    purged = run_purge(db, twilio)

    assert len(twilio.asked) == retention.FAILING_IN_A_ROW
    assert purged.recordings == purged.cases == 0
    assert count(db, recordings) == count(db, cases) == retention.FAILING_IN_A_ROW + 3


def test_without_a_twilio_client_no_recording_goes_nor_its_case(db: Engine) -> None:
    recorded = add_case(db, add_call(db, ended=LONG_AGO))
    add_case(db, add_call(db, ended=LONG_AGO), recorded=False)

    with db.connect() as conn:
        purged = purge(conn, now=NOW, keep=KEEP, twilio=None, keep_recordings=KEEP)

    assert (purged.cases, purged.recordings, purged.recordings_left) == (1, 0, 1)
    assert [c.id for c in rows(db, cases)] == [recorded] and count(db, recordings) == 1


@pytest.mark.parametrize(
    "url",
    [
        media_url("{sid}", host="api.dublin.ie1.twilio.com"),  # a region's: its own credentials
        media_url("{sid}", account="AC" + "1" * 32),  # another account's
    ],
)
def test_a_recording_the_accounts_api_cannot_answer_for_is_not_asked_and_stays(
    db: Engine, twilio: TwilioRecordings, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """api.twilio.com answers 404 for a region's recording, or another account's: that is
    no word that it is gone, and its row is the only way to find it."""
    case_id = add_case(db, add_call(db, ended=LONG_AGO), recorded=False)
    sid = add_recording(db, case_id, "CA-the-call", at=LONG_AGO, url=None)
    with db.begin() as conn:
        conn.execute(update(recordings).values(url=url.format(sid=sid)))

    with db.connect() as conn:
        would = purgeable(conn, now=NOW, keep=KEEP, twilio=client_on(twilio), keep_recordings=KEEP)
    with caplog.at_level(logging.WARNING, logger="ivr.retention"):
        purged = run_purge(db, twilio)

    assert twilio.asked == []
    assert (purged.recordings, purged.recordings_left, purged.cases) == (0, 1, 0)
    assert would == purged  # the dry run counts it left, and its case kept, as the purge does
    assert sids_of(db) == [sid] and exists(db, cases, cases.c.id == case_id)
    assert sid in caplog.text and "by hand" in caplog.text


def test_recordings_kept_longer_than_the_rest_keep_their_cases_and_calls(
    db: Engine, twilio: TwilioRecordings
) -> None:
    """A regulator's years for recordings: the case stays with its recording, so it is found
    by its caller's number (and erased); unrecorded cases go at IVR_RETENTION_DAYS."""
    call = add_call(db, ended=LONG_AGO)
    recorded = add_case(db, call)
    add_case(db, add_call(db, ended=LONG_AGO), recorded=False)

    purged = run_purge(db, twilio, keep_recordings=timedelta(days=5 * 365))

    assert twilio.asked == []
    assert (purged.cases, purged.calls, purged.recordings, purged.recordings_left) == (1, 1, 0, 0)
    assert [c.id for c in rows(db, cases)] == [recorded]
    assert [c.call_sid for c in rows(db, calls)] == [call] and count(db, recordings) == 1

    with db.connect() as conn:
        later = NOW + timedelta(days=5 * 365)
        purge(conn, now=later, keep=KEEP, twilio=client_on(twilio), keep_recordings=5 * KEEP)
    assert len(twilio.asked) == 1 and count(db, recordings) == count(db, cases) == 0


def test_recordings_kept_shorter_go_and_their_cases_stay_their_own_time(
    db: Engine, twilio: TwilioRecordings
) -> None:
    call = add_call(db, ended=LATELY)
    case_id = add_case(db, call, ended=LATELY, created=NOW - timedelta(days=100))

    purged = run_purge(db, twilio, keep_recordings=timedelta(days=90))

    assert (purged.recordings, purged.cases) == (1, 0)
    assert count(db, recordings) == 0 and exists(db, cases, cases.c.id == case_id)


def test_the_recording_of_an_open_case_stays_however_old(
    db: Engine, twilio: TwilioRecordings
) -> None:
    add_case(db, add_call(db, ended=LONG_AGO), status="abandoned", queued=1)
    assert run_purge(db, twilio) == Purged() and twilio.asked == []
    assert count(db, recordings) == 1


def test_recordings_only_are_purged_while_the_rest_is_kept_for_ever(
    db: Engine, twilio: TwilioRecordings
) -> None:
    case_id = add_case(db, add_call(db, ended=LONG_AGO))
    with db.connect() as conn:
        purged = purge(conn, now=NOW, keep=None, twilio=client_on(twilio), keep_recordings=KEEP)
    assert purged == Purged(recordings=1)
    assert count(db, recordings) == 0 and exists(db, cases, cases.c.id == case_id)


def test_two_purges_at_once_delete_each_recording_once_and_its_row_once_twilio_said(
    db: Engine, twilio: TwilioRecordings
) -> None:
    """No transaction is held while Twilio is asked: both may ask for one recording, and the
    second's 404 is gone, as it is. None is left, and no case goes before its recording."""
    for _ in range(12):
        add_case(db, add_call(db, ended=LONG_AGO))
    all_sids = set(sids_of(db))
    results: list[Purged] = []
    failures: list[BaseException] = []
    start = threading.Barrier(2)
    seen_cases_without_audio: list[int] = []

    def before_each_delete() -> None:
        # Each time Twilio is asked: no case is gone whose recording Twilio still holds.
        held = all_sids - twilio.gone
        with db.connect() as conn:
            owners = conn.execute(
                select(recordings.c.case_id).where(recordings.c.recording_sid.in_(held))
            ).scalars()
            for case_id in owners:
                if not conn.execute(select(cases.c.id).where(cases.c.id == case_id)).first():
                    seen_cases_without_audio.append(case_id)

    twilio.meanwhile = before_each_delete

    def run() -> None:
        try:
            start.wait()
            results.append(run_purge(db, twilio, batch=4))
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert failures == [] and len(results) == 2
    total = results[0] + results[1]
    assert (total.cases, total.recordings, total.recordings_left) == (12, 12, 0)
    assert twilio.gone == all_sids and seen_cases_without_audio == []
    assert count(db, recordings) == count(db, cases) == 0


@pytest.mark.parametrize(("value", "days"), [(None, 400), ("0", 0), ("3650", 3650), ("31", 31)])
def test_recordings_are_kept_as_long_as_the_rest_unless_said(
    monkeypatch: pytest.MonkeyPatch, value: str | None, days: int
) -> None:
    monkeypatch.delenv("IVR_RETENTION_DAYS", raising=False)
    if value is None:
        monkeypatch.delenv("IVR_RECORDING_RETENTION_DAYS", raising=False)
    else:
        monkeypatch.setenv("IVR_RECORDING_RETENTION_DAYS", value)
    assert load_settings(DatabaseSettings, _env_file=None).recording_keep_days == days


def test_recordings_kept_shorter_than_a_month_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_RECORDING_RETENTION_DAYS", "7")
    with pytest.raises(Exception, match="IVR_RECORDING_RETENTION_DAYS"):
        load_settings(DatabaseSettings, _env_file=None)


# -- the daily job ----------------------------------------------------------------------------


def fake_hotline(
    db: Engine,
    clock: FakeClock,
    days: int,
    recording_days: int | None = None,
    twilio: TwilioRecordings | None = None,
) -> Any:
    settings = SimpleNamespace(
        retention_days=days, recording_keep_days=days if recording_days is None else recording_days
    )
    return SimpleNamespace(
        db=db, clock=clock, settings=settings, twilio=client_on(twilio or TwilioRecordings())
    )


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
        add_case(db, add_call(db, ended=LONG_AGO), recorded=False)
    clock = FakeClock(NOW)
    hotline = fake_hotline(db, clock, 400)
    job = retention.Daily(seconds=0, batch=1)  # one batch a sweep

    with caplog.at_level(logging.INFO, logger="ivr.retention"):
        first = job(hotline)
    assert first == Purged(cases=1)
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


def test_the_daily_job_deletes_recordings_at_twilio_with_the_hotlines_client(
    db: Engine, twilio: TwilioRecordings, caplog: pytest.LogCaptureFixture
) -> None:
    add_case(db, add_call(db, ended=LONG_AGO))
    hotline = fake_hotline(db, FakeClock(NOW), 0, recording_days=400, twilio=twilio)

    purged = retention.Daily()(hotline)

    assert purged == Purged(recordings=1) and len(twilio.asked) == 1
    assert count(db, recordings) == 0 and count(db, cases) == 1

    add_case(db, add_call(db, ended=LONG_AGO))
    hotline.twilio = None  # no TWILIO_ACCOUNT_SID
    with caplog.at_level(logging.WARNING, logger="ivr.retention"):
        left = retention.Daily()(hotline)
    assert left == Purged(recordings_left=1) and "TWILIO_ACCOUNT_SID" in caplog.text


@pytest.mark.parametrize("days", [400, 0])
def test_each_instance_runs_the_purge_as_a_timed_job(
    database_url: str,
    db: Engine,
    hotline_tree: CompiledTree,
    days: int,
    twilio: TwilioRecordings,
) -> None:
    gone = add_case(db, add_call(db, ended=LONG_AGO))
    with db.connect() as conn:
        recording = conn.execute(select(recordings.c.recording_sid)).scalar_one()
    settings = make_settings(
        IVR_DATABASE_URL=database_url, IVR_SWEEP_INTERVAL=0.05, IVR_RETENTION_DAYS=days
    )
    app = create_app(
        settings, tree=hotline_tree, db=db, clock=FakeClock(NOW), twilio=client_on(twilio)
    )
    with TestClient(app, base_url=HTTPS_CLIENT):
        deadline = time.monotonic() + 10
        while exists(db, cases, cases.c.id == gone) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not days:
            time.sleep(0.5)  # ten sweeps: time enough for a purge that should not happen
    assert exists(db, cases, cases.c.id == gone) == (days == 0)
    assert twilio.asked == ([recording] if days else [])


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
    written = [add_audit(db, alices, "freeze", at=LATELY) for _ in range(4)]
    said = {
        frozen: f"call from {ALICE}, says her SIM was swapped",
        unfrozen: f"owner confirmed on {ALICE[1:]} by video",
        on_bobs: f"her husband; her number {ALICE}",
        about_bob: f"called from {BOB}",
        written[0]: "UID 10000001, caller on 13800138000",
        written[1]: "callback to +86 138-0013-8000 asked",
        written[2]: "her number (0086) 138 0013 8000; order 12345678",
        written[3]: "case 12 13800138000 called 2 times",  # digits beside it, apart
    }
    with db.begin() as conn:
        for audit_id, reason in said.items():
            conn.execute(update(audit_log).where(audit_log.c.id == audit_id).values(reason=reason))

    erased = erase_alice(db)

    assert erased.audit_masked == 7
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
        "case 12 ***8000 called 2 times",
    ]
    assert not any(ALICE[1:] in (r.reason or "") for r in rows.values())


def say(db: Engine, said: dict[int, str]) -> None:
    """The audit entries' reasons: what agents typed."""
    with db.begin() as conn:
        for audit_id, reason in said.items():
            conn.execute(update(audit_log).where(audit_log.c.id == audit_id).values(reason=reason))


def reasons(db: Engine) -> dict[int, str | None]:
    with db.connect() as conn:
        return {r.id: r.reason for r in conn.execute(select(audit_log))}


def erase_number(db: Engine, number: str) -> retention.Erased:
    with db.connect() as conn:
        return erase(conn, number=number, actor="cli:ops", reason="GDPR", now=NOW)


UK = "+447700900123"


@pytest.mark.parametrize(
    ("number", "written"),
    [
        # As at home, after the trunk prefix the country dials before a national number.
        (UK, "07700 900123"),
        (UK, "07700900123"),
        ("+33612345678", "06 12 34 56 78"),  # the last 4 digits apart too
        ("+886912345678", "0912-345-678"),
        ("+61412345678", "0412 345 678"),
        ("+79123456789", "8 (912) 345-67-89"),
        # With the country code and the trunk 0 kept, as in the UK.
        (UK, "+44 (0)7700 900123"),
        (UK, "+44 07700900123"),
        # No trunk 0: North America's (its trunk 1 is its country code), China's mobiles.
        ("+14155550123", "(415) 555-0123"),
        ("+14155550123", "1-415-555-0123"),
        (ALICE, "138 0013 8000"),
    ],
)
def test_erasure_masks_the_number_as_written_at_home(db: Engine, number: str, written: str) -> None:
    """Staff write a caller's number as they would dial it at home: the trunk 0 before the
    national number (07700 900123 for +447700900123), in groups that split the last 4."""
    case_id = add_case(db, add_call(db, ended=LATELY, number=number), caller=number, ended=LATELY)
    frozen = add_audit(db, case_id, "freeze", at=LATELY)
    unfrozen = add_audit(db, None, "unfreeze", at=LATELY)  # no case: found by its text alone
    say(db, {frozen: f"SIM swap, call her back on {written} today", unfrozen: f"{written}: ok"})

    erased = erase_number(db, number)

    assert erased.audit_masked == 2
    masked = f"***{number[-4:]}"
    assert reasons(db)[frozen] == f"SIM swap, call her back on {masked} today"
    assert reasons(db)[unfrozen] == f"{masked}: ok"


def full_width(text: str) -> str:
    """`text` as a Chinese input method's full-width mode types it: its digits, +, brackets
    and dashes (U+FF01 to U+FF5E for ! to ~), and spaces (the ideographic one)."""
    return text.translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789+()-"} | {32: 0x3000})


def test_erasure_masks_the_number_written_in_full_width_digits(db: Engine) -> None:
    """A Chinese input method types full-width digits (+86 138... each character wide): the
    number is masked however wide its characters, and the rest of the text stays as the agent
    typed it."""
    case_id = add_case(db, add_call(db, ended=LATELY), ended=LATELY)
    entries = [add_audit(db, case_id, "freeze", at=LATELY) for _ in range(2)]
    entries += [add_audit(db, None, "unfreeze", at=LATELY) for _ in range(3)]
    uid = full_width("UID 10000001")
    said = {
        entries[0]: f"来电号码{full_width('+86 138-0013-8000')},{uid}",
        entries[1]: f"回拨{full_width('(0086)138 0013 8000')}",
        entries[2]: f"本人视频确认:{full_width('13800138000')}",
        entries[3]: f"订单 {full_width('138001380001')} 已退款",  # inside a longer number
        entries[4]: f"号码 {full_width('13800138001')}",  # another number
    }
    say(db, said)

    erased = erase_alice(db, reason=f"用户来信要求删除{full_width(ALICE)}")

    assert erased.audit_masked == 3
    assert [reasons(db)[i] for i in entries] == [
        f"来电号码***8000,{uid}",
        "回拨***8000",
        "本人视频确认:***8000",
        said[entries[3]],
        said[entries[4]],
    ]
    with db.connect() as conn:
        entry = conn.execute(select(audit_log.c.reason).where(audit_log.c.action == "erase"))
    assert entry.scalar_one().startswith("用户来信要求删除***8000 (number ***8000: ")


def test_a_purged_cases_freezes_lose_the_number_written_in_full_width_digits(
    db: Engine,
) -> None:
    """Read whole (a purge reads its cases' freezes), a reason masks the number typed half in
    full-width digits too."""
    gone = add_case(db, add_call(db, ended=LONG_AGO))
    frozen = [add_audit(db, gone, "freeze") for _ in range(2)]
    halves = f"138 {full_width('0013')} 8000"
    say(db, {frozen[0]: f"来电 {full_width('13800138000')} 称被盗", frozen[1]: f"来电 {halves}"})

    assert run_purge(db).audit_masked == 2

    assert [reasons(db)[i] for i in frozen] == ["来电 ***8000 称被盗", "来电 ***8000"]


def test_erasure_leaves_the_national_digits_inside_a_longer_number(db: Engine) -> None:
    """07700900123 inside an order number, a wallet's or an account's digits is not the
    caller's number: it stays, as every other digit in the entry does."""
    entries = [add_audit(db, None, "unfreeze", at=LATELY) for _ in range(4)]
    said = {
        entries[0]: "order 107700900123 refunded",
        entries[1]: "UID 77009001230 frozen",
        entries[2]: "withdrawal 12 07700900123456 held",
        entries[3]: "tx 0612345678901 (not hers)",
    }
    say(db, said)

    assert erase_number(db, UK).audit_masked == 0
    assert erase_number(db, "+33612345678").audit_masked == 0

    assert {i: reasons(db)[i] for i in entries} == said


def test_erasure_reads_only_the_audit_entries_naming_the_numbers_last_digits(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit log is never purged: the database picks the entries that may name the
    number, rather than every entry being read into Python at each erasure."""
    naming = add_audit(db, None, "unfreeze", at=LATELY)
    others = [add_audit(db, None, "unfreeze", at=LATELY) for _ in range(3)]
    say(
        db,
        {
            naming: "call back on 07700 900123",
            others[0]: "call back on 07700 900124",
            others[1]: "UID 10000123, amount 900.123",
            others[2]: "her number +8613800138000",
        },
    )
    texts: list[str] = []
    masking = retention._masking

    def reading(number: str, text: str) -> str:
        texts.append(text)
        return masking(number, text)

    monkeypatch.setattr(retention, "_masking", reading)

    assert erase_number(db, UK).audit_masked == 1

    assert "call back on 07700 900123" in texts
    assert not set(texts) & {reasons(db)[i] for i in others}


def test_a_purged_cases_freezes_lose_the_number_written_as_at_home(db: Engine) -> None:
    gone = add_case(db, add_call(db, ended=LONG_AGO, number=UK), caller=UK)
    frozen = add_audit(db, gone, "freeze")
    say(db, {frozen: "caller 07700900123 says SIM swapped"})

    assert run_purge(db).audit_masked == 1

    assert reasons(db)[frozen] == "caller ***0123 says SIM swapped"


def test_a_purge_searches_only_the_freezes_that_may_name_the_callers_number(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A purge batch masks the numbers in its cases' freezes: a number's pattern is long to
    build (in a backlog, 4 s of a batch's 6, its cases locked meanwhile). Only a reason with
    the number's last digits is searched, and a caller's pattern is built once for all
    their cases."""
    gone = [add_case(db, add_call(db, ended=LONG_AGO), recorded=False) for _ in range(4)]
    entries = [add_audit(db, case_id, "freeze") for case_id in gone]
    said = {
        entries[0]: f"called from {ALICE}",
        entries[1]: "called from 138 0013 8000, SIM swapped",
        entries[2]: "UID 10000123, amount 900.123",
        entries[3]: "called from +8613800138001",
    }
    say(db, said)
    texts: list[str] = []
    masking = retention._masking

    def reading(number: str, text: str) -> str:
        texts.append(text)
        return masking(number, text)

    monkeypatch.setattr(retention, "_masking", reading)
    retention._number_pattern.cache_clear()

    assert run_purge(db).audit_masked == 2

    assert sorted(texts) == sorted([said[entries[0]], said[entries[1]]])
    built = retention._number_pattern.cache_info()
    assert (built.misses, built.hits) == (1, 1)
    assert [reasons(db)[i] for i in entries] == [
        "called from ***8000",
        "called from ***8000, SIM swapped",
        *(said[i] for i in entries[2:]),
    ]


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
    for name in ("IVR_RETENTION_DAYS", "IVR_MIGRATIONS", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IVR_DATABASE_URL", database_url)
    monkeypatch.delenv("SUDO_USER", raising=False)


# Who the commands audit: the system's user running them (`ivr.cli.cli_actor`).
OS_ACTOR = f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"


def ivr(*args: str, answer: str | None = None) -> Any:
    return CliRunner().invoke(cli_app, list(args), input=answer)


def with_twilio_account(monkeypatch: pytest.MonkeyPatch, twilio: TwilioRecordings) -> None:
    """The commands' Twilio credentials set, their REST client on `twilio`."""
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    monkeypatch.setattr(cli, "_twilio_client", lambda account: client_on(twilio))


def test_db_purge_prints_what_it_deletes_and_the_dry_run_deletes_nothing(
    cli_env: None, db: Engine, monkeypatch: pytest.MonkeyPatch, twilio: TwilioRecordings
) -> None:
    with_twilio_account(monkeypatch, twilio)
    long_ago = datetime.now(UTC) - timedelta(days=410)
    add_case(db, add_call(db, ended=long_ago), ended=long_ago)

    dry = ivr("db", "purge", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would delete" in dry.output and "cases 1" in dry.output and "calls 1" in dry.output
    assert "recordings 1" in dry.output and twilio.asked == []
    assert count(db, cases) == count(db, calls) == count(db, recordings) == 1
    assert not exists(db, audit_log, audit_log.c.action == "purge")  # a dry run did nothing

    done = ivr("db", "purge")
    assert done.exit_code == 0, done.output
    assert "deleted" in done.output and "cases 1" in done.output and "call_events 2" in done.output
    assert "recordings 1" in done.output and len(twilio.asked) == 1
    assert count(db, cases) == count(db, calls) == count(db, recordings) == 0
    # The retention policy's record of being kept: who purged, under which periods, what went.
    with db.connect() as conn:
        [entry] = conn.execute(select(audit_log).where(audit_log.c.action == "purge")).all()
    assert (entry.actor, entry.result, entry.case_id) == (OS_ACTOR, "ok", None)
    assert entry.reason.startswith("kept 400 days, recordings 400 days: cases 1, recordings 1")
    assert ivr("db", "purge").exit_code == 0  # nothing left: nothing to audit
    assert count(db, audit_log, audit_log.c.action == "purge") == 1

    monkeypatch.setenv("IVR_RETENTION_DAYS", "0")
    never = ivr("db", "purge")
    assert never.exit_code == 1 and "never purged" in never.output


def test_db_purge_without_twilio_credentials_keeps_the_recorded_cases_and_says_so(
    cli_env: None, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    long_ago = datetime.now(UTC) - timedelta(days=410)
    recorded = add_case(db, add_call(db, ended=long_ago), ended=long_ago)
    add_case(db, add_call(db, ended=long_ago), ended=long_ago, recorded=False)

    done = ivr("db", "purge")

    assert done.exit_code == 0, done.output
    assert "cases 1" in done.output and "recordings_left 1" in done.output
    assert "TWILIO_ACCOUNT_SID" in done.output
    assert [r.case_id for r in rows(db, recordings)] == [recorded]
    assert [r.id for r in rows(db, cases)] == [recorded]


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
    assert "cases 2" in done.output and f"audited as {OS_ACTOR}" in done.output
    assert "Twilio" in done.output and sid in done.output
    # No Twilio credentials: the recordings to delete there are listed.
    assert "recordings: RE" in done.output and "Delete its" not in done.output
    assert at_twilio_audited(db)[0] == "incomplete"
    assert "(no TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN)" in at_twilio_audited(db)[1]
    assert count(db, cases) == count(db, calls) == 0
    with db.connect() as conn:
        actor = conn.execute(select(audit_log.c.actor).where(audit_log.c.action == "erase"))
        assert actor.scalar() == OS_ACTOR

    assert ivr("calls", "erase", "8613800138000", "--reason", "asked").exit_code == 1
    assert ivr("calls", "erase", ALICE, "--reason", "").exit_code == 1


def test_calls_erase_offers_to_delete_the_recordings_at_twilio(
    cli_env: None, db: Engine, monkeypatch: pytest.MonkeyPatch, twilio: TwilioRecordings
) -> None:
    with_twilio_account(monkeypatch, twilio)
    case_id = add_case(db, add_call(db, ended=LATELY), ended=LATELY)
    failing = add_recording(db, case_id, "CA-a-call-back", at=LATELY)
    twilio.failing.add(failing)
    deleted, _ = sids_of(db)

    done = ivr("calls", "erase", ALICE, "--reason", "GDPR request #42", answer="y\n")

    assert done.exit_code == 0, done.output
    assert "Delete its 2 recordings at Twilio now?" in done.output
    assert twilio.asked == [deleted, failing] and twilio.gone == {deleted}
    assert "deleted at Twilio: 1 recordings; NOT deleted" in done.output
    assert f"recordings: {failing}" in done.output and f"recordings: {deleted}" not in done.output
    # The rows are gone: the audit log keeps what is left at Twilio, past the terminal.
    assert at_twilio_audited(db) == (
        "incomplete",
        f"deleted at Twilio 1; left at Twilio (Twilio failed, or a region's or another "
        f"account's), to delete there by hand: {failing}",
    )

    declined_case = add_case(db, add_call(db, ended=LATELY), ended=LATELY)
    [kept] = sids_of(db, recordings.c.case_id == declined_case)
    declined = ivr("calls", "erase", ALICE, "--reason", "GDPR request #43", answer="n\n")
    assert declined.exit_code == 0, declined.output
    assert twilio.asked == [deleted, failing] and f"recordings: {kept}" in declined.output
    assert at_twilio_audited(db)[1].endswith(
        f"(not deleted when asked), to delete there by hand: {kept}"
    )

    add_case(db, add_call(db, ended=LATELY), ended=LATELY)
    unasked = ivr("calls", "erase", ALICE, "--reason", "GDPR request #44", "--yes")
    assert unasked.exit_code == 0 and "Delete its" not in unasked.output
    assert len(twilio.asked) == 3 and "deleted at Twilio: 1 recordings" in unasked.output
    assert at_twilio_audited(db) == ("ok", "deleted at Twilio 1")


def at_twilio_audited(db: Engine) -> tuple[str, str]:
    """The latest erasure's audit of its recordings at Twilio: result and reason."""
    with db.connect() as conn:
        row = conn.execute(
            select(audit_log.c.result, audit_log.c.reason)
            .where(audit_log.c.action == "erase_at_twilio")
            .order_by(audit_log.c.id.desc())
            .limit(1)
        ).one()
    return row.result, row.reason


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


def test_a_slow_failing_twilio_never_starves_the_case_purge(
    db: Engine, twilio: TwilioRecordings
) -> None:
    """Twilio unreachable: each DELETE takes longer than the run's budget (a connect that
    times out and is retried, ~10 s, vs RUN_SECONDS 10) then fails. The daily job runs again
    at every sweep; the old case without a recording must still go at some point."""
    recorded = add_case(db, add_call(db, ended=LONG_AGO), ended=LONG_AGO)
    [sid] = sids_of(db, recordings.c.case_id == recorded)
    twilio.failing.add(sid)
    twilio.meanwhile = lambda: time.sleep(0.05)
    plain = add_case(db, add_call(db, ended=LONG_AGO), ended=LONG_AGO, recorded=False)
    for _sweep in range(5):
        with db.connect() as conn:
            retention.purge_for(
                conn,
                now=NOW,
                keep=timedelta(days=400),
                seconds=0.01,
                twilio=client_on(twilio),
                keep_recordings=timedelta(days=400),
            )
    assert len(twilio.asked) == 5  # asked again every sweep
    assert plain not in [r.id for r in rows(db, cases)]


def test_erase_without_a_terminal_still_lists_what_is_left_at_twilio(
    cli_env: None, db: Engine, monkeypatch: pytest.MonkeyPatch, twilio: TwilioRecordings
) -> None:
    """Run from a script (stdin closed) without --yes: the erasure is committed before the
    prompt; the prompt's EOF must not lose the only list of the recordings at Twilio."""
    with_twilio_account(monkeypatch, twilio)
    case_id = add_case(db, add_call(db, ended=LATELY), ended=LATELY)
    [sid] = sids_of(db, recordings.c.case_id == case_id)
    done = ivr("calls", "erase", ALICE, "--reason", "GDPR request #42", answer="")
    assert count(db, recordings) == 0  # erased already
    assert twilio.asked == []
    assert sid in done.output, done.output
