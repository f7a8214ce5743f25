"""The supervisors' figures at a month's volume: how long `ivr.stats.figures` takes, and
whether a change of it gives the same figures as the code it replaces.

    python -m bench.reports --db postgresql+psycopg://postgres@127.0.0.1:5432/stats_bench \\
        --cases 125000 [--fill] [--time 3] [--compare origin/main] [--profile out.prof] [--drop]

`--fill` (implied when the database has no cases) creates the database if it does not
exist (PostgreSQL), brings it to the migrations' head (`ivr.db.upgrade`, as `ivr db
upgrade` does) and writes `--cases` cases created over the 31 days from PERIOD_START, with
what a month of a busy hotline leaves around them (per case about what a year's copy of
production had: 1.36 calls (1.33 there), 15 call events (10.7: more here, never fewer),
3.3 audit rows, 0.93 presence changes (0.97)): their calls
(a tenth of them reaching two queues; a third of all calls never reaching one: self-help,
contained or not), answers, abandons, call backs asked for and made, transfers kept in
`cases.legs` (some from a call back, some without an answer time), callers still in line,
callers who hung up on the way to an emergency queue, cases a supervisor moved or closed,
after-agent surveys (answered, silent, asked twice), freezes, missed offers and the agents'
presence. Random but seeded (`--seed`): the same arguments give the same rows. The rows go
in by plain bulk INSERTs of the shapes the hotline writes (`ivr.cases.open_case`, `_leg`,
`ivr.store`'s events), then ANALYZE, as autovacuum would.

`--time N` runs the 31-day report N times in-process through the app's engine (and once
each of the 1- and 7-day ones), giving the time to read the rows and to count them apart.
`--compare REF` loads `ivr/stats.py` as it is at git REF (`git show`) beside the working
tree's and asserts that both give equal reports (every field, floats exactly) for 1, 7 and
31 days, default and custom thresholds, judged at the period's end and later, for the
figures page's reports per hour of a day, and for /api/stats/intervals' 15 minutes of a
day on another clock; it times REF's 31-day report too, the two taking turns. `--profile
FILE` writes a cProfile of one 31-day report. `--drop` drops the database at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import functools
import importlib.util
import json
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.engine import make_url

from ivr import stats
from ivr.db import (
    audit_log,
    call_events,
    calls,
    cases,
    create_db_engine,
    presence_changes,
    upgrade,
    users,
)

ROOT = Path(__file__).resolve().parent.parent
PERIOD_START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 31
# Cases are opened from a day before the period to a day after it: the report reads those
# taken or sent on in it too.
MARGIN = timedelta(days=1)
AGENTS = 60
QUEUES = (  # queue, priority, share
    ("security", "emergency", 0.05),
    ("account", "high", 0.15),
    ("general", "normal", 0.40),
    ("deposits", "normal", 0.20),
    ("withdrawals", "normal", 0.15),
    ("kyc", "normal", 0.05),
)
TOPICS = ("deposit", "withdrawal", "login", "2fa", "fees", "kyc", "hack", "card", None)
FILLER_EVENTS_PER_CALL = 8  # the prompts, keys and statuses no figure reads


def _sid(n: int) -> str:
    return "CA" + format(n, "032d")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


class _Rows:
    """The rows of one fill, by table, made in memory from one seeded random source."""

    def __init__(self, count: int, seed: int) -> None:
        self.r = random.Random(seed)
        self.count = count
        self.calls: list[dict[str, Any]] = []
        self.cases: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.audit: list[dict[str, Any]] = []
        self.presence: list[dict[str, Any]] = []
        self.agents = [f"agent{i:02d}" for i in range(1, AGENTS + 1)]
        span = (DAYS * timedelta(days=1) + 2 * MARGIN).total_seconds()
        # The cases over the margins too, as many a day as in the period.
        self.total = int(count * span / (DAYS * 86400))
        self.span = span

    def wait(self, mean: float) -> timedelta:
        return timedelta(seconds=round(self.r.expovariate(1 / mean), 3))

    def make(self) -> None:
        r = self.r
        start = PERIOD_START - MARGIN
        case_id = 0
        call_no = 0
        queues = [q for q, _, _ in QUEUES]
        weights = [w for _, _, w in QUEUES]
        priority_of = {q: p for q, p, _ in QUEUES}
        times = sorted(r.random() * self.span for _ in range(self.total))
        i = 0
        while i < len(times):
            call_no += 1
            sid = _sid(call_no)
            started = start + timedelta(seconds=times[i]) - self.wait(90)
            two = r.random() < 0.1 and i + 1 < len(times)
            opened = [times[i], times[i + 1]] if two else [times[i]]
            i += len(opened)
            topic = r.choice(TOPICS)
            ends: list[datetime] = []
            events = [("main_menu", "menu"), ("verify", "verify")]
            for created_s in opened:
                case_id += 1
                queue = r.choices(queues, weights)[0]
                case, end = self.case(case_id, sid, queue, priority_of[queue], start, created_s)
                case["call_started_at"] = started
                self.cases.append(case)
                ends.append(end)
                events.append((queue, "queue"))
            call_end = max(ends) + self.wait(20)
            # A few calls still going (a caller in line), their end not known.
            going = any(c["status"] in ("waiting", "offered") for c in self.cases[-len(opened) :])
            self.call(sid, started, None if going else call_end, topic, events)
            for case in self.cases[-len(opened) :]:
                case["call_ended_at"] = None if going else call_end
                self.survey(case, sid, call_end)
            # Calls that reached no queue: a third of all.
            if r.random() < 0.5:
                call_no += 1
                other = start + timedelta(seconds=r.random() * self.span)
                kinds = [("main_menu", "menu")]
                if r.random() < 0.7:
                    kinds.append(("advice", "say"))
                if r.random() < 0.05:
                    kinds.append(("partner", "transfer"))
                self.call(_sid(call_no), other, other + self.wait(120), r.choice(TOPICS), kinds)
        self.extra_audit_and_presence(start)

    def call(
        self,
        sid: str,
        started: datetime,
        ended: datetime | None,
        topic: str | None,
        entered: list[tuple[str, str]],
    ) -> None:
        r = self.r
        facts = {"lang": "en", "verified": "yes", "uid": str(10_000_000 + r.randrange(10**6))}
        if topic:
            facts["topic"] = topic
        status = (
            "in-progress"
            if ended is None
            else r.choices(("completed", "busy", "failed", "no-answer"), (0.97, 0.01, 0.01, 0.01))[
                0
            ]
        )
        self.calls.append(
            {
                "call_sid": sid,
                "account_sid": "AC" + "0" * 32,
                "from_number": f"+1500555{r.randrange(10000):04d}",
                "to_number": "+15005550006",
                "tree_version": "v1",
                "step": len(entered) + 3,
                "state": {
                    "node": entered[-1][0],
                    "lang": "en",
                    "trail": ["main_menu"],
                    "facts": facts,
                },
                "last_twiml": "<Response><Say>Goodbye</Say><Hangup/></Response>",
                "status": status,
                "started_at": started,
                "updated_at": ended or started,
                "ended_at": ended,
                "duration_seconds": None
                if ended is None
                else int((ended - started).total_seconds()),
            }
        )
        for step, (node, kind) in enumerate(entered):
            self.events.append(
                {
                    "call_sid": sid,
                    "step": step,
                    "at": started + timedelta(seconds=step * 10),
                    "node": node,
                    "kind": "entered",
                    "detail": {"node_kind": kind},
                }
            )

    def case(
        self, case_id: int, sid: str, queue: str, priority: str, start: datetime, at: float
    ) -> tuple[dict[str, Any], datetime]:
        """One case and when its caller's call was over with it."""
        r = self.r
        created = start + timedelta(seconds=at)
        agent_id = r.randrange(AGENTS) + 1
        flags: dict[str, str] = {
            "verified": r.choice(("yes", "yes", "no")),
            "factors": "pin,id_last4",
            "uid": str(10_000_000 + r.randrange(10**6)),
            "stir_verstat": "TN-Validation-Passed-A",
            "caller_id_match": r.choice(("yes", "no", "unknown")),
        }
        row: dict[str, Any] = {
            "id": case_id,
            "ticket": str(1_000_000 + case_id),
            "call_sid": sid,
            "account_uid": flags["uid"],
            "caller": f"+1500555{r.randrange(10000):04d}",
            "reason": "support",
            "queue": queue,
            "priority": priority,
            "lane": 0 if priority == "emergency" else 1,
            "sort_at": created,
            "queued": 0,
            "status": "resolved",
            "claimed_from": None,
            "path": ["main_menu"],
            "callback_number": None,
            "agent_id": None,
            "created_at": created,
            "offered_at": None,
            "connected_at": None,
            "ended_at": None,
            "talk_ended_at": None,
            "answered_at": None,
            "legs": None,
            "language": "en",
            "queued_at": None,
        }
        mean_wait = 15 if priority == "emergency" else 45
        outcome = r.random()
        if priority == "emergency" and r.random() < 0.06:
            # Hung up on the way: a call back owed, never in line.
            flags["hung_up_at"] = _iso(created) or ""
            row.update(status="callback_requested", queued=1)
            end = created
        elif outcome < 0.70:
            end = self.answered(row, agent_id, created, mean_wait, "waiting")
        elif outcome < 0.82:
            hung_up = created + self.wait(mean_wait * 1.3)
            end = hung_up
            if r.random() < 0.3:  # an agent called them back
                self.answered(row, agent_id, hung_up + self.wait(1800), 1, "abandoned")
            else:
                row.update(status="abandoned", queued=1, ended_at=hung_up)
        elif outcome < 0.92:
            asked = created + self.wait(mean_wait * 2)
            end = asked
            row["callback_number"] = row["caller"]
            if r.random() < 0.5:
                self.answered(row, agent_id, asked + self.wait(3600), 1, "callback_requested")
                if r.random() < 0.1:  # dialled, their customer never reached
                    row.update(connected_at=None, answered_at=None)
            else:
                row.update(status="callback_requested", queued=1)
                if r.random() < 0.1:
                    flags["superseded_by"] = str(1_000_000 + case_id + 7)
        elif outcome < 0.995:
            end = self.answered(row, agent_id, created, mean_wait, "waiting")
        else:  # in line or being offered
            end = created
            row.update(status=r.choice(("waiting", "offered")), queued=1)
            if row["status"] == "offered":
                row.update(agent_id=agent_id, offered_at=created + self.wait(10))
        if r.random() < 0.03 and row["connected_at"] is not None:
            self.sent_on(row, flags, created)
        if r.random() < 0.02:
            flags["entered_priority"] = r.choice(("emergency", "high", "normal"))
        elif r.random() < 0.005:
            flags["priority_was"] = r.choice(("emergency", "high", "normal"))
        if row["status"] == "resolved":
            name = self.agents[row["agent_id"] - 1] if row["agent_id"] else "agent01"
            actor = "supervisor:boss" if r.random() < 0.03 else f"agent:{name}"
            self.audit_row(row["ended_at"], actor, "resolve", case_id)
            self.presence.append(
                {
                    "user_id": row["agent_id"] or 1,
                    "at": row["ended_at"],
                    "available_since": row["ended_at"],
                    "away_reason": None,
                }
            )
        if priority == "emergency":
            if r.random() < 0.1:
                self.audit_row(created, f"caller:{sid}", "self_freeze", case_id)
            if r.random() < 0.4 and row["connected_at"] is not None:
                result = "ok" if r.random() < 0.9 else "failed"
                when = row["connected_at"] + self.wait(60)
                self.audit_row(when, "agent:x", "freeze", case_id, result=result)
        row["flags"] = flags
        return row, max(end, created)

    def answered(
        self, row: dict[str, Any], agent_id: int, since: datetime, mean_wait: float, frm: str
    ) -> datetime:
        """The case taken by `agent_id` after a wait from `since`: talked on and, mostly,
        closed. Returns when the caller's talk ended."""
        r = self.r
        connected = since + self.wait(mean_wait)
        answered = connected + self.wait(6) if r.random() < 0.9 else None
        talk_ended = (answered or connected) + self.wait(300)
        closed = r.random() < 0.97
        row.update(
            agent_id=agent_id,
            claimed_from=frm,
            offered_at=connected,
            connected_at=connected,
            answered_at=answered,
            talk_ended_at=talk_ended if r.random() < 0.95 else None,
            status="resolved" if closed else "connected",
            ended_at=talk_ended + self.wait(60) if closed else None,
        )
        if frm == "waiting":
            row["claimed_from"] = None if r.random() < 0.5 else "waiting"
        return talk_ended

    def sent_on(self, row: dict[str, Any], flags: dict[str, str], created: datetime) -> None:
        """The case's first talks (one or two) ended by a transfer, kept in `legs`."""
        r = self.r
        legs: list[dict[str, Any]] = []
        entered = created
        for _ in range(1 if r.random() < 0.9 else 2):
            connected = entered + self.wait(30)
            answered = connected + self.wait(5) if r.random() < 0.9 else None
            ended = (answered or connected) + self.wait(120)
            agent_id = r.randrange(AGENTS) + 1
            legs.append(
                {
                    "queue": row["queue"],
                    "priority": row["priority"],
                    "from": "callback_requested" if r.random() < 0.05 else "waiting",
                    "agent_id": agent_id,
                    "agent": self.agents[agent_id - 1],
                    "entered_at": _iso(entered),
                    "connected_at": _iso(connected),
                    "answered_at": _iso(answered),
                    "ended_at": _iso(ended),
                }
            )
            self.audit_row(ended, f"agent:{self.agents[agent_id - 1]}", "transfer", row["id"])
            entered = ended
        if r.random() < 0.02:
            legs.append({"queue": row["queue"], "hand": "edited"})  # not a leg: skipped
        shift = entered - created
        for key in ("connected_at", "answered_at", "talk_ended_at", "ended_at", "offered_at"):
            if row[key] is not None:
                row[key] += shift
        row.update(legs=legs, queued_at=entered)
        row["queue"] = r.choice([q for q, _, _ in QUEUES])
        flags.update(transferred_from=legs[0]["queue"], transfers=str(len(legs)))
        if r.random() < 0.05:
            flags["sent_after_hang_up"] = "yes"

    def survey(self, case: dict[str, Any], sid: str, call_end: datetime) -> None:
        r = self.r
        if case["connected_at"] is None or r.random() > 0.3:
            return
        asks = 2 if r.random() < 0.02 else 1
        for n in range(asks):
            at = call_end - timedelta(seconds=10 - n)
            detail = {"node_kind": "survey", "case": case["id"]}
            self.events.append(
                {
                    "call_sid": sid,
                    "step": 50 + 2 * n,
                    "at": at,
                    "node": "survey",
                    "kind": "entered",
                    "detail": detail,
                }
            )
            if r.random() < 0.85:  # else hung up on the question
                outcome = r.choice(("1", "2", "3", "4", "5", "5", "4", "none"))
                self.events.append(
                    {
                        "call_sid": sid,
                        "step": 51 + 2 * n,
                        "at": at,
                        "node": "survey",
                        "kind": "survey",
                        "outcome": outcome,
                        "detail": {"case": case["id"]},
                    }
                )

    def audit_row(
        self, at: datetime, actor: str, action: str, case_id: int | None, result: str = "ok"
    ) -> None:
        self.audit.append(
            {
                "at": at,
                "actor": actor,
                "action": action,
                "case_id": case_id,
                "account_uid": None,
                "reason": None,
                "result": result,
            }
        )

    def extra_audit_and_presence(self, start: datetime) -> None:
        """Missed offers (each setting the agent away), and the audit's other entries (claims,
        notes, sign-ins) to a year's copy's 3.3 rows per case."""
        r = self.r
        for _ in range(self.total // 10):
            at = start + timedelta(seconds=r.random() * self.span)
            user = r.randrange(AGENTS) + 1
            self.audit_row(
                at, f"agent:{self.agents[user - 1]}", "missed_offer", None, result="no-answer"
            )
            self.presence.append(
                {"user_id": user, "at": at, "available_since": None, "away_reason": "missed"}
            )
        for _ in range(int(self.total * 3.3) - len(self.audit)):
            at = start + timedelta(seconds=r.random() * self.span)
            self.audit_row(at, f"agent:{r.choice(self.agents)}", "claim", None)
        self.presence.sort(key=lambda p: p["at"])


def _chunks(rows: list[dict[str, Any]], size: int = 5000) -> Iterator[list[dict[str, Any]]]:
    """The rows, `size` at a time, each with every key of any (None where it has none)."""
    keys = {key for row in rows for key in row}
    for at in range(0, len(rows), size):
        yield [dict.fromkeys(keys) | row for row in rows[at : at + size]]


def _create_database(url: str) -> None:
    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql"):
        return
    admin = create_db_engine(
        parsed.set(database="postgres").render_as_string(hide_password=False),
        webhook_timeouts=False,
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        found = conn.scalar(
            text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": parsed.database}
        )
        if not found:
            conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    admin.dispose()


def drop_database(url: str) -> None:
    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql"):
        return
    admin = create_db_engine(
        parsed.set(database="postgres").render_as_string(hide_password=False),
        webhook_timeouts=False,
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
    admin.dispose()


def fill(url: str, count: int, seed: int) -> None:
    began = time.perf_counter()
    _create_database(url)
    upgrade(url)
    rows = _Rows(count, seed)
    rows.make()
    engine = create_db_engine(url, webhook_timeouts=False)
    now = PERIOD_START
    with engine.begin() as conn:
        conn.execute(
            insert(users),
            [
                {
                    "id": i + 1,
                    "name": name,
                    "role": "agent",
                    "token_hash": f"{i:064d}",
                    "created_at": now - timedelta(days=400),
                }
                for i, name in enumerate(rows.agents)
            ]
            + [
                {
                    "id": AGENTS + 1,
                    "name": "boss",
                    "role": "supervisor",
                    "token_hash": "f" * 64,
                    "created_at": now - timedelta(days=400),
                }
            ],
        )
        for chunk in _chunks(rows.calls):
            conn.execute(insert(calls), chunk)
        case_columns = {c.name for c in cases.c}
        for chunk in _chunks(rows.cases):
            conn.execute(
                insert(cases), [{k: v for k, v in c.items() if k in case_columns} for c in chunk]
            )
        for chunk in _chunks(rows.events):
            conn.execute(insert(call_events), chunk)
        for chunk in _chunks(rows.audit):
            conn.execute(insert(audit_log), chunk)
        for chunk in _chunks(rows.presence):
            conn.execute(insert(presence_changes), chunk)
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT setval('cases_id_seq', (SELECT max(id) FROM cases))"))
            conn.execute(text("SELECT setval('users_id_seq', (SELECT max(id) FROM users))"))
            # The events no figure reads: prompts said, keys pressed, statuses.
            conn.execute(
                text(
                    "INSERT INTO call_events (call_sid, step, at, node, kind, input_kind, "
                    "outcome, detail) SELECT call_sid, 10 + g, started_at, 'main_menu', "
                    "CASE WHEN g % 2 = 0 THEN 'prompt' ELSE 'input' END, 'dtmf', '1', "
                    '\'{"node_kind": "menu"}\' FROM calls, generate_series(1, :n) g'
                ),
                {"n": FILLER_EVENTS_PER_CALL},
            )
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
    with engine.connect() as conn:
        counts = {
            t.name: conn.scalar(select(func.count()).select_from(t))
            for t in (calls, cases, call_events, audit_log, presence_changes)
        }
    engine.dispose()
    print(f"filled in {time.perf_counter() - began:.0f} s: {json.dumps(counts)}", flush=True)


def _module_at(ref: str) -> ModuleType:
    """ivr/stats.py as it is at git `ref`, imported beside the working tree's."""
    source = subprocess.run(
        ["git", "show", f"{ref}:ivr/stats.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "stats_at_ref.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("stats_at_ref", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["stats_at_ref"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _timed(func: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = func()
    return time.perf_counter() - began, result


def _report(module: ModuleType, engine: Engine, days: float, **kwargs: Any) -> Any:
    end = PERIOD_START + timedelta(days=DAYS)
    with engine.connect() as conn:
        return module.figures(conn, start=end - timedelta(days=days), end=end, **kwargs)


def _parts(module: ModuleType, engine: Engine, days: float) -> tuple[float, float]:
    """Seconds to read a period's rows, and to count them (as `figures` does)."""
    end = PERIOD_START + timedelta(days=DAYS)
    start = end - timedelta(days=days)
    with engine.connect() as conn, conn.begin():
        read_s, read = _timed(lambda: module._read(conn, start=start, end=end))
        available = module.time_available(conn, start=start, end=end)
    count_s, _ = _timed(
        lambda: module._count(
            read,
            start=start,
            end=end,
            judged=end,
            thresholds=module.Thresholds(),
            top=5,
            case_rows=read.cases,
            call_rows=read.calls,
            agents_did=read.agents_did,
            available=available,
        )
    )
    return read_s, count_s


def time_reports(modules: dict[str, ModuleType], engine: Engine, repeats: int) -> None:
    """Each module's 1- and 7-day reports once, then its 31-day report `repeats` times,
    the modules taking turns (the machine's load then weighs on each alike), with the
    time to read its rows and to count them, measured apart after it."""
    for label, module in modules.items():
        for days in (1, 7):
            seconds, _ = _timed(functools.partial(_report, module, engine, days))
            print(f"{label}: figures {days} d: {seconds:.2f} s", flush=True)
    totals: dict[str, list[float]] = {label: [] for label in modules}
    for _ in range(repeats):
        for label, module in modules.items():
            seconds, _ = _timed(functools.partial(_report, module, engine, DAYS))
            totals[label].append(seconds)
            read_s, count_s = _parts(module, engine, DAYS)
            print(
                f"{label}: figures {DAYS} d: {seconds:.2f} s (then read {read_s:.2f} s, "
                f"count {count_s:.2f} s)",
                flush=True,
            )
    for label, times in totals.items():
        print(
            f"{label}: figures {DAYS} d over {repeats}: {min(times):.2f}-{max(times):.2f} s, "
            f"median {statistics.median(times):.2f} s",
            flush=True,
        )


def compare(before: ModuleType, engine: Engine) -> None:
    """Assert the working tree's figures are `before`'s, field by field."""
    end = PERIOD_START + timedelta(days=DAYS)
    custom = {
        "emergency": timedelta(seconds=10),
        "other": timedelta(seconds=30),
        "short_abandon": timedelta(seconds=2),
    }
    variants: list[tuple[str, dict[str, Any]]] = [
        ("default", {}),
        ("custom thresholds", {"thresholds": custom}),
        ("judged a day later", {"now": end + timedelta(days=1)}),
        ("top 3", {"top": 3}),
    ]
    for days in (1, 7, DAYS):
        for name, kwargs in variants:
            made = []
            for module in (before, stats):
                args = dict(kwargs)
                if "thresholds" in args:
                    args["thresholds"] = module.Thresholds(**args["thresholds"])
                made.append(dataclasses.asdict(_report(module, engine, days, **args)))
            assert made[0] == made[1], f"{days} d, {name}: the reports differ"
            overall = made[1]["overall"]
            print(
                f"equal: {days} d, {name} (offered {overall['offered']}, answered "
                f"{overall['answered']}, by_queue {len(made[1]['by_queue'])}, by_agent "
                f"{len(made[1]['by_agent'])})",
                flush=True,
            )
    # The figures page: the whole period and its bars, from one read.
    day = end - timedelta(days=1)
    pages = []
    for module in (before, stats):
        with engine.connect() as conn:
            whole, parts = module.figures_and_intervals(
                conn, start=day, end=end, size=timedelta(hours=1)
            )
        pages.append([dataclasses.asdict(r) for r in (whole, *parts)])
    assert pages[0] == pages[1], "the figures page's reports differ"
    print(f"equal: the figures page of a day ({len(pages[1]) - 1} bars)", flush=True)
    # /api/stats/intervals: a day of 15 minutes on another clock, judged an hour later.
    found = []
    for module in (before, stats):
        with engine.connect() as conn:
            bars = module.intervals(
                conn,
                start=day,
                end=end,
                size=timedelta(minutes=15),
                zone=ZoneInfo("Asia/Kolkata"),
                now=end + timedelta(hours=1),
            )
        found.append([dataclasses.asdict(r) for r in bars])
    assert found[0] == found[1], "the intervals differ"
    print(f"equal: a day of 15 minutes on Asia/Kolkata's clock ({len(found[1])})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="SQLAlchemy URL of the database to use")
    parser.add_argument("--cases", type=int, default=125_000, help="cases in the 31 days")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fill", action="store_true", help="fill even if it has cases")
    parser.add_argument("--time", type=int, default=0, metavar="N", help="time N reports")
    parser.add_argument("--compare", metavar="REF", help="assert equal to git REF's figures")
    parser.add_argument("--profile", type=Path, metavar="FILE", help="cProfile to FILE")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    args = parser.parse_args()
    _create_database(args.db)
    upgrade(args.db)
    engine = create_db_engine(args.db)
    with engine.connect() as conn:
        empty = not conn.scalar(select(func.count()).select_from(cases))
    if args.fill or empty:
        fill(args.db, args.cases, args.seed)
    before = _module_at(args.compare) if args.compare else None
    if args.time:
        modules = {"working tree": stats}
        if before is not None:
            modules[args.compare] = before
        time_reports(modules, engine, args.time)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(_report, stats, engine, DAYS)
        profiler.dump_stats(args.profile)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    if before is not None:
        compare(before, engine)
    engine.dispose()
    if args.drop:
        drop_database(args.db)


if __name__ == "__main__":
    main()
