"""Contact-centre figures against a hand-computed scenario, on SQLite and PostgreSQL.

Every expected number below was worked out by hand from the scenario table; the arithmetic is
in the comment next to it.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Connection, Engine, event, insert, select, update

from ivr import cases as case_queue
from ivr import stats
from ivr.db import ENTERED_NODE_KINDS, call_events, calls, cases, presence_changes, users
from ivr.engine import HUNG_UP_AT
from ivr.phone import Phone, Press, ScriptedParty
from ivr.stats import AgentFigures, QueueFigures, Report, Thresholds, figures, time_zone
from ivr.tree import CompiledTree
from ivr.web import create_app
from tests.conftest import HTTPS_CLIENT, FakeClock, bearer, make_settings, make_user
from tests.support.parties import Talks
from tests.support.twilio import on_the_line
from tests.test_transfer import ALICE_PHONE, BEN_PHONE, CALL_ME_BACK, PAYMENTS, TO_SECURITY, api

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # the period is [10:00, 11:00)
START = T0
END = T0 + timedelta(hours=1)
SECOND = timedelta(seconds=1)
DEFAULT = Thresholds()


def at(seconds: float) -> datetime:
    """10:00:00 plus `seconds`."""
    return T0 + timedelta(seconds=seconds)


def sid(name: str) -> str:
    return f"CA{name:0>32}"


def add_call(
    conn: Connection,
    name: str,
    *,
    started: datetime,
    status: str = "completed",
    ended: datetime | None = None,
    topic: str | None = None,
    entered: Sequence[tuple[str, str]] = (),
) -> None:
    """A call row and its log: `entered` is (node, node kind) in order, as the engine logs it."""
    facts = {"lang": "en", **({"topic": topic} if topic else {})}
    conn.execute(
        insert(calls).values(
            call_sid=sid(name),
            tree_version="v1",
            step=len(entered),
            state={"node": entered[-1][0] if entered else "language", "facts": facts},
            last_twiml="<Response/>",
            status=status,
            started_at=started,
            updated_at=ended or started,
            ended_at=ended,
        )
    )
    for step, (node, kind) in enumerate(entered):
        conn.execute(
            insert(call_events).values(
                call_sid=sid(name),
                step=step,
                at=started + timedelta(seconds=step),
                node=node,
                kind="entered",
                detail={"node_kind": kind},
            )
        )
        # Other log lines (here an input carrying a misleading node_kind) are not entries.
        conn.execute(
            insert(call_events).values(
                call_sid=sid(name),
                step=step,
                at=started + timedelta(seconds=step),
                node=node,
                kind="input",
                input_kind="dtmf",
                option="1",
                detail={"node_kind": "say"} if kind != "say" else None,
            )
        )
    if status != "in-progress":
        conn.execute(
            insert(call_events).values(
                call_sid=sid(name), step=len(entered), at=ended or started, kind="status"
            )
        )


def add_case(
    conn: Connection,
    name: str,
    *,
    queue: str,
    priority: str,
    created: datetime,
    status: str,
    claimed_from: str | None = None,
    callback_number: str | None = None,
    connected: datetime | None = None,
    ended: datetime | None = None,
) -> None:
    conn.execute(
        insert(cases).values(
            ticket=f"T-{name}",
            call_sid=sid(name),
            reason="test",
            queue=queue,
            priority=priority,
            lane=0 if priority == "emergency" else 1,
            sort_at=created,
            queued=1 if status in ("waiting", "callback_requested", "abandoned") else 0,
            status=status,
            claimed_from=claimed_from,
            flags={},
            path=[],
            callback_number=callback_number,
            created_at=created,
            offered_at=connected,
            connected_at=connected,
            ended_at=ended,
        )
    )


MENU = [("language", "language"), ("main_menu", "menu")]


def scenario(db: Engine) -> None:
    """The hour 10:00-11:00 (offsets in seconds from 10:00:00).

    case  queue     prio       created  what happened                              handle
    C1    security  emergency     0     answered at 10 s (within 20), resolved     300 s
    C2    security  emergency   300     answered at 30 s (outside 20), resolved    420 s
    C3    payments  normal      600     answered at 45 s (within 60), resolved     240 s
    C4    payments  normal      900     answered at 90 s (outside 60), still on    -
    C5    payments  normal     1200     hung up at 5 s; an agent called back       200 s
    C6    account   high       1500     hung up at 120 s (outside 60), not taken   -
    C7    account   high       1800     asked for a call back; called back         500 s
    C8    account   normal     2100     asked for a call back; not taken yet       -
    C9    payments  normal     3000     still waiting                              -
    No case: S1, S2 heard advice and hung up (contained); N1 hung up at a topic menu before
    any advice; N2 heard advice and is still on the line; N3 heard advice, then was
    transferred; N4 heard a notice without a topic and hung up at the main menu.
    Outside: X1 (09:59, a case), X2 (11:00 exactly, advice), X3 (11:00 exactly, a case).
    """
    with db.begin() as conn:
        emergency = [*MENU, ("emergency", "say"), ("emergency_queue", "queue")]
        add_call(
            conn, "C1", started=at(0), ended=at(315), topic="account_hijack", entered=emergency
        )
        add_case(
            conn,
            "C1",
            queue="security",
            priority="emergency",
            created=at(0),  # exactly at the start of the period: counts
            status="resolved",
            claimed_from="waiting",
            connected=at(10),
            ended=at(310),
        )
        add_call(
            conn, "C2", started=at(270), ended=at(755), topic="account_hijack", entered=emergency
        )
        add_case(
            conn,
            "C2",
            queue="security",
            priority="emergency",
            created=at(300),
            status="resolved",
            claimed_from="waiting",
            connected=at(330),
            ended=at(750),
        )
        payments = [*MENU, ("deposits_menu", "menu"), ("agent_payments", "queue")]
        add_call(
            conn,
            "C3",
            started=at(570),
            ended=at(890),
            topic="deposits_withdrawals",
            entered=payments,
        )
        add_case(
            conn,
            "C3",
            queue="payments",
            priority="normal",
            created=at(600),
            status="resolved",
            claimed_from="waiting",
            connected=at(645),
            ended=at(885),
        )
        add_call(
            conn,
            "C4",
            started=at(870),
            status="in-progress",
            topic="deposits_withdrawals",
            entered=payments,
        )
        add_case(
            conn,
            "C4",
            queue="payments",
            priority="normal",
            created=at(900),
            status="connected",
            claimed_from="waiting",
            connected=at(990),
        )
        # The call's end is the hang-up; the case's ended_at is the agent's resolution later.
        add_call(
            conn,
            "C5",
            started=at(1170),
            ended=at(1205),
            topic="deposits_withdrawals",
            entered=payments,
        )
        add_case(
            conn,
            "C5",
            queue="payments",
            priority="normal",
            created=at(1200),
            status="resolved",
            claimed_from="abandoned",
            connected=at(1800),
            ended=at(2000),
        )
        account = [*MENU, ("account_menu", "menu"), ("agent_account", "queue")]
        add_call(
            conn, "C6", started=at(1470), ended=at(1620), topic="account_access", entered=account
        )
        add_case(
            conn,
            "C6",
            queue="account",
            priority="high",
            created=at(1500),
            status="abandoned",
            ended=at(1620),
        )
        add_call(
            conn, "C7", started=at(1770), ended=at(1860), topic="account_access", entered=account
        )
        add_case(
            conn,
            "C7",
            queue="account",
            priority="high",
            created=at(1800),
            status="resolved",
            claimed_from="callback_requested",
            callback_number="+15005550107",
            connected=at(2700),
            ended=at(3200),
        )
        # A ticket follow-up: heard a `say` node and has a topic, but a case was opened at the
        # ticket node (no queue node entered), so it is not contained.
        add_call(
            conn,
            "C8",
            started=at(2070),
            ended=at(2160),
            topic="ticket_followup",
            entered=[*MENU, ("ticket_followup", "say"), ("ticket_lookup", "ticket")],
        )
        add_case(
            conn,
            "C8",
            queue="account",
            priority="normal",
            created=at(2100),
            status="callback_requested",
            callback_number="+15005550108",
        )
        add_call(
            conn,
            "C9",
            started=at(2970),
            status="in-progress",
            topic="deposits_withdrawals",
            entered=payments,
        )
        add_case(
            conn, "C9", queue="payments", priority="normal", created=at(3000), status="waiting"
        )

        add_call(
            conn,
            "S1",
            started=at(720),
            ended=at(840),
            topic="deposits_withdrawals",
            entered=[
                *MENU,
                ("deposits_menu", "menu"),
                ("deposits_not_credited", "say"),
                ("deposits_not_credited_next", "menu"),
            ],
        )
        add_call(
            conn,
            "S2",
            started=at(2400),
            ended=at(2500),
            topic="trading",
            entered=[
                *MENU,
                ("trading_menu", "menu"),
                ("trading_fees", "say"),
                ("trading_fees_next", "menu"),
            ],
        )
        add_call(
            conn,
            "N1",
            started=at(2640),
            ended=at(2660),
            topic="kyc",
            entered=[*MENU, ("kyc_menu", "menu")],
        )
        add_call(
            conn,
            "N2",
            started=at(2760),
            status="in-progress",
            topic="kyc",
            entered=[*MENU, ("kyc_menu", "menu"), ("kyc_upload", "say")],
        )
        add_call(
            conn,
            "N3",
            started=at(2880),
            ended=at(3100),
            topic="api",
            entered=[
                *MENU,
                ("api_menu", "menu"),
                ("api_signature", "say"),
                ("api_signature_next", "menu"),
                ("api_desk", "transfer"),
            ],
        )
        # A notice without a topic (say "we are busy today") is not self-help advice.
        add_call(
            conn,
            "N4",
            started=at(3300),
            ended=at(3330),
            entered=[("language", "language"), ("service_notice", "say"), ("main_menu", "menu")],
        )

        # Outside the period: none of these may count anywhere.
        add_call(
            conn, "X1", started=at(-60), ended=at(105), topic="account_hijack", entered=emergency
        )
        add_case(
            conn,
            "X1",
            queue="security",
            priority="emergency",
            created=at(-30),
            status="resolved",
            claimed_from="waiting",
            connected=at(-25),
            ended=at(100),
        )
        add_call(
            conn,
            "X2",
            started=at(3600),  # exactly at the end: the next period's
            ended=at(3700),
            topic="kyc",
            entered=[*MENU, ("kyc_failed", "say"), ("kyc_failed_next", "menu")],
        )
        add_call(conn, "X3", started=at(3600), ended=at(3700), topic="trading", entered=payments)
        add_case(
            conn,
            "X3",
            queue="payments",
            priority="normal",
            created=at(3600),  # exactly at the end: the next period's
            status="resolved",
            claimed_from="waiting",
            connected=at(3602),
            ended=at(3650),
        )


def report(db: Engine, *, thresholds: Thresholds = DEFAULT, top: int = 5) -> Report:
    with db.connect() as conn:
        return figures(conn, start=START, end=END, thresholds=thresholds, top=top)


def test_scenario_overall(db: Engine) -> None:
    scenario(db)
    r = report(db)
    o = r.overall
    assert o.offered == 9  # C1..C9 (X1 before, X3 at the end)
    assert o.answered == 4  # C1 C2 C3 C4; not C5 (abandoned) nor C7 (call back)
    assert o.answered_within_threshold == 2  # C1 10<=20, C3 45<=60; C2 30>20, C4 90>60
    assert o.abandoned == 2  # C5 C6
    # 2 / (4 answered + 2 abandoned): C7 C8 asked for a call back, C9 still waits
    assert o.abandonment_rate == pytest.approx(0.3333, abs=1e-4)
    assert o.short_abandoned == 1  # C5 hung up at 5 s; C6 at 120 s
    assert o.abandonment_rate_without_short == 0.2  # (2 - 1) / (6 - 1)
    # 2 within / (4 answered + 1 abandoned after its threshold: C6 120>60 (C5 5<=60 is
    # short) + 0 call backs asked for after it: C7 C8 60<=60 + 1 still waiting past it at
    # the end of the period: C9 600>60)
    assert (o.abandoned_after_threshold, o.callbacks_after_threshold) == (1, 0)
    assert (o.waiting_after_threshold, o.service_level_counted) == (1, 6)
    assert o.service_level == pytest.approx(1 / 3)
    assert o.average_speed_of_answer_seconds == pytest.approx(43.75)  # (10+30+45+90) / 4
    # resolved after an agent had them: C1 300, C2 420, C3 240, C5 200, C7 500 = 1660 / 5
    assert o.average_handle_time_seconds == pytest.approx(332.0)
    assert o.callbacks_requested == 2  # C7 C8
    assert o.callbacks_completed == 1  # C7


def test_scenario_per_queue(db: Engine) -> None:
    scenario(db)
    r = report(db)
    assert list(r.by_queue) == ["account", "payments", "security"]

    assert r.by_queue["security"] == QueueFigures(
        offered=2,  # C1 C2
        answered=2,
        answered_within_threshold=1,  # C1 10<=20; C2 30>20
        abandoned=0,
        abandonment_rate=0.0,  # 0 / (2 answered + 0 abandoned)
        service_level=0.5,  # 1 / (2 + 0)
        average_speed_of_answer_seconds=20.0,  # (10+30) / 2
        average_handle_time_seconds=360.0,  # (300+420) / 2
        callbacks_requested=0,
        callbacks_completed=0,
        short_abandoned=0,
        abandonment_rate_without_short=0.0,  # 0 / 2
        hung_up_on_the_way=0,
        surveys_asked=0,
        surveys_answered=0,
        satisfaction_average=None,
        satisfied_rate=None,
        service_level_counted=2,
        longest_wait_seconds=30.0,  # C2 answered at 30 s; C1 at 10
    )
    assert r.by_queue["payments"] == QueueFigures(
        offered=4,  # C3 C4 C5 C9
        answered=2,  # C3 C4
        answered_within_threshold=1,  # C3 45<=60; C4 90>60
        abandoned=1,  # C5
        abandonment_rate=1 / 3,  # 1 / (2 answered + 1 abandoned); C9 still waits
        # 1 / (2 + 0 + 1): C5 hung up at 5 s, a short abandon; C9 waits 600 > 60
        service_level=1 / 3,
        average_speed_of_answer_seconds=67.5,  # (45+90) / 2
        average_handle_time_seconds=220.0,  # C3 240, C5 200: 440 / 2; C4 still connected
        callbacks_requested=0,
        callbacks_completed=0,
        short_abandoned=1,  # C5: 5 s, within the 5 s a short abandon is
        abandonment_rate_without_short=0.0,  # (1 - 1) / (3 - 1)
        hung_up_on_the_way=0,
        surveys_asked=0,
        surveys_answered=0,
        satisfaction_average=None,
        satisfied_rate=None,
        waiting_after_threshold=1,  # C9
        service_level_counted=3,  # C3 C4 C9
        longest_wait_seconds=600.0,  # C9 still waiting at 11:00: 3600 - 3000
    )
    account = r.by_queue["account"]
    assert (account.offered, account.answered, account.answered_within_threshold) == (3, 0, 0)
    assert account.abandoned == 1  # C6
    assert account.abandonment_rate == 1.0  # 1 / (0 + 1): C7 C8 asked for a call back
    # 0 / (0 + 1): C6 waited 120 > 60; C7 and C8 asked for a call back at 60 <= 60
    assert (account.service_level, account.service_level_counted) == (0.0, 1)
    assert account.average_speed_of_answer_seconds is None  # nothing answered
    assert account.average_handle_time_seconds == 500.0  # C7 alone
    assert (account.callbacks_requested, account.callbacks_completed) == (2, 1)  # C7 C8; C7


def test_scenario_calls_containment_topics(db: Engine) -> None:
    scenario(db)
    r = report(db)
    assert r.calls == 15  # C1..C9, S1 S2, N1..N4
    # completed: C1 C2 C3 C5 C6 C7 C8, S1 S2 N1 N3 N4 = 12 (C4 C9 N2 still on the line)
    assert r.completed_calls == 12
    # S1 S2; not C8 (a case), N1 (no advice), N3 (transferred), N4 (advice without a topic)
    assert r.contained_calls == 2
    assert r.containment == pytest.approx(0.1667, abs=1e-4)  # 2 / 12
    # deposits_withdrawals C3 C4 C5 C9 S1 = 5; account_access C6 C7 = 2; account_hijack
    # C1 C2 = 2; kyc N1 N2 = 2; api, ticket_followup, trading 1 each; ties by name; first 5
    assert r.top_topics == [
        ("deposits_withdrawals", 5),
        ("account_access", 2),
        ("account_hijack", 2),
        ("kyc", 2),
        ("api", 1),
    ]
    assert report(db, top=2).top_topics == [("deposits_withdrawals", 5), ("account_access", 2)]
    assert report(db, top=0).top_topics == []


def test_custom_thresholds_change_the_service_level(db: Engine) -> None:
    scenario(db)
    lenient = report(db, thresholds=Thresholds(timedelta(seconds=30), timedelta(seconds=90)))
    # within: C1 10<=30, C2 30<=30, C3 45<=90, C4 90<=90 = 4; after: C6 120>90 = 1
    assert lenient.overall.answered_within_threshold == 4
    # 4 / (4 + 1 + C9 waiting 600 > 90)
    assert lenient.overall.service_level == pytest.approx(4 / 6)
    assert lenient.by_queue["security"].service_level == 1.0  # 2 / 2
    assert lenient.by_queue["payments"].service_level == pytest.approx(2 / 3)  # 2 / (2 + 1)
    assert lenient.by_queue["account"].service_level == 0.0  # 0 / (0 + 1)

    split = report(db, thresholds=Thresholds(emergency=timedelta(seconds=5), other=150 * SECOND))
    # within: C3 45<=150, C4 90<=150 = 2 (C1 10>5, C2 30>5); after: C9 waiting 600>150
    # (C6 120<=150)
    assert split.overall.answered_within_threshold == 2
    assert split.overall.service_level == pytest.approx(0.4)  # 2 / (4 + 1)
    assert split.by_queue["security"].service_level == 0.0  # 0 / 2
    assert split.by_queue["payments"].service_level == pytest.approx(2 / 3)  # 2 / (2 + 1)
    assert split.by_queue["account"].service_level is None  # 0 / (0 + 0): undefined
    # The threshold moves the service level only.
    assert split.overall.average_speed_of_answer_seconds == pytest.approx(43.75)
    assert split.overall.abandoned == 2


def test_empty_period(db: Engine) -> None:
    nothing = QueueFigures(
        offered=0,
        answered=0,
        answered_within_threshold=0,
        abandoned=0,
        abandonment_rate=None,
        service_level=None,
        average_speed_of_answer_seconds=None,
        average_handle_time_seconds=None,
        callbacks_requested=0,
        callbacks_completed=0,
        surveys_asked=0,
        surveys_answered=0,
        satisfaction_average=None,
        satisfied_rate=None,
    )
    for populated in (False, True):
        if populated:
            scenario(db)  # and ask about the next hour, where nothing happened but X2 and X3
        with db.connect() as conn:
            r = figures(conn, start=END + timedelta(hours=1), end=END + timedelta(hours=2))
        assert r.overall == nothing
        assert r.by_queue == {}
        assert (r.calls, r.completed_calls, r.contained_calls) == (0, 0, 0)
        assert r.containment is None
        assert r.top_topics == []


def test_period_is_start_inclusive_end_exclusive(db: Engine) -> None:
    micro = timedelta(microseconds=1)
    moments = {"before": START - micro, "first": START, "last": END - micro, "after": END}
    with db.begin() as conn:
        for name, moment in moments.items():
            add_call(conn, name, started=moment, ended=moment + SECOND, topic=name)
            add_case(conn, name, queue=name, priority="normal", created=moment, status="waiting")
    r = report(db)
    assert list(r.by_queue) == ["first", "last"]
    assert r.overall.offered == 2
    assert r.calls == 2
    assert r.top_topics == [("first", 1), ("last", 1)]


def test_outcomes_at_the_edges(db: Engine) -> None:
    with db.begin() as conn:
        # An agent has claimed it and is being connected: offered, nothing else yet.
        add_case(
            conn,
            "E1",
            queue="q",
            priority="normal",
            created=at(0),
            status="offered",
            claimed_from="waiting",
        )
        # Asked for a call back, dropped while offered, then taken again from `abandoned`:
        # the call-back number says it was a call-back request, completed.
        add_case(
            conn,
            "E2",
            queue="q",
            priority="normal",
            created=at(100),
            status="resolved",
            claimed_from="abandoned",
            callback_number="+15005550109",
            connected=at(400),
            ended=at(460),
        )
        # Abandoned at 30 s (ended_at, kept by the claim), now being called back, its call
        # row gone: the wait is unknown, so it counts as after the threshold; still connected,
        # so no handle time (its ended_at is the hang-up, not the end of the agent's work).
        add_case(
            conn,
            "E3",
            queue="q",
            priority="normal",
            created=at(200),
            status="connected",
            claimed_from="abandoned",
            connected=at(900),
            ended=at(230),
        )
        # Closed by hand while its caller waited, never answered: nobody waits any more.
        add_case(
            conn,
            "E4",
            queue="q",
            priority="normal",
            created=at(300),
            status="resolved",
            claimed_from="waiting",
            ended=at(400),
        )
    q = report(db).by_queue["q"]
    assert (q.offered, q.answered, q.answered_within_threshold) == (4, 0, 0)
    assert q.abandoned == 1  # E3
    assert q.abandonment_rate == 1.0  # 1 / (0 answered + 1): E1 in progress, E2 a call back
    # 0 / (0 answered + E3 abandoned after the threshold + E2 asked for a call back, its
    # call row gone: as if asking at the end + E1 still waiting at the end, 3600 > 60;
    # not E4, which waits no more)
    assert (q.service_level, q.service_level_counted) == (0.0, 3)
    assert q.average_speed_of_answer_seconds is None
    assert q.average_handle_time_seconds == 60.0  # E2: 460 - 400; E3 is still connected
    assert (q.callbacks_requested, q.callbacks_completed) == (1, 1)  # E2


def test_as_dict_is_json(db: Engine) -> None:
    scenario(db)
    data = json.loads(json.dumps(report(db).as_dict()))
    assert data["period_start"] == "2026-11-23T10:00:00+00:00"
    assert data["period_end"] == "2026-11-23T11:00:00+00:00"
    assert data["thresholds_seconds"] == {"emergency": 20.0, "other": 60.0, "short_abandon": 5.0}
    assert data["overall"]["offered"] == 9
    assert data["by_queue"]["account"]["average_speed_of_answer_seconds"] is None
    assert data["by_queue"]["payments"]["abandonment_rate"] == 1 / 3
    assert data["top_topics"][0] == {"topic": "deposits_withdrawals", "calls": 5}
    assert data["containment"] == pytest.approx(0.1667, abs=1e-4)


HACK_END = T0 + timedelta(minutes=30)  # the hack day's window is [10:00, 10:30)


def hack_day(db: Engine) -> None:
    """Victims of a hack between 10:00 and 10:30, all in the security line (emergency,
    target 20 s), judged at 10:30 (offsets in seconds from 10:00:00):

    A1-A3    created 60, 120, 180; answered 8 s later, still talking
    W1-W40   created 0, 20, ... 780 (by 10:13); still holding at 10:30: 17 to 30 min
    B1-B20   created 30, 60, ... 600; pressed 1 for a call back 10 min in; not called yet
    H1-H5    created 300, 360, ... 540; hung up after 12 min, not called back
    """
    hijack = [*MENU, ("emergency", "say"), ("emergency_queue", "queue")]
    with db.begin() as conn:

        def victim(name: str, created: float, **case: Any) -> None:
            ended = case.pop("call_ended", None)
            add_call(
                conn,
                name,
                started=at(created - 30),
                status="in-progress" if ended is None else "completed",
                ended=None if ended is None else at(ended),
                topic="account_hijack",
                entered=hijack,
            )
            add_case(
                conn, name, queue="security", priority="emergency", created=at(created), **case
            )

        for n in range(3):
            created = 60 * (n + 1)
            victim(f"A{n}", created, status="connected", connected=at(created + 8))
        for n in range(40):
            victim(f"W{n}", 20 * n, status="waiting")
        for n in range(20):
            created = 30 * (n + 1)
            # The caller hangs up after the confirmation: their call's end is when they asked.
            victim(
                f"B{n}",
                created,
                status="callback_requested",
                callback_number=f"+1500555{n:04d}",
                call_ended=created + 600,
            )
        for n in range(5):
            created = 300 + 60 * n
            hung_up = created + 720
            victim(f"H{n}", created, status="abandoned", ended=at(hung_up), call_ended=hung_up)


def test_on_a_hack_day_the_abandonment_rate_is_of_the_callers_whose_wait_ended(
    db: Engine,
) -> None:
    """5 victims hung up, 3 were answered: 62.5 % of those whose wait in line ended gave up.
    The 40 still holding and the 20 who asked for a call back have not abandoned, nor been
    answered: counted in neither part (divided by all 68 offered, it read 7 %)."""
    hack_day(db)
    with db.connect() as conn:
        r = figures(conn, start=T0, end=HACK_END)
    for q in (r.overall, r.by_queue["security"]):
        assert (q.offered, q.answered, q.abandoned, q.callbacks_requested) == (68, 3, 5, 20)
        assert q.abandonment_rate == 0.625  # 5 / (3 + 5)
        assert q.short_abandoned == 0
        assert q.abandonment_rate_without_short == 0.625


def test_on_a_hack_day_the_service_level_counts_every_victim_kept_past_the_target(
    db: Engine,
) -> None:
    """3 answered within 20 s, of the 68 victims who had waited 20 s when the report ran:
    the 5 who hung up after 12 min, the 20 who gave up holding after 10 min and asked for a
    call back, and the 40 still holding (it read 37.5 %: 3 / (3 + 5))."""
    hack_day(db)
    with db.connect() as conn:
        r = figures(conn, start=T0, end=HACK_END, now=HACK_END)
    for q in (r.overall, r.by_queue["security"]):
        assert q.answered_within_threshold == 3
        assert (q.abandoned_after_threshold, q.callbacks_after_threshold) == (5, 20)
        assert q.waiting_after_threshold == 40
        assert q.service_level_counted == 68  # 3 + 5 + 20 + 40
        assert q.service_level == 3 / 68


def test_call_backs_and_callers_waiting_count_by_their_prioritys_target(db: Engine) -> None:
    """Asked for a call back 45 s in, or waiting 45 s when the report runs: late for an
    emergency (20 s), on time for the rest (60 s), so left out of the service level as a
    caller who hung up before the target is. A call back with no end of call yet (the
    caller still hears the confirmation) is judged by the wait until the report."""
    with db.begin() as conn:
        for prio in ("emergency", "normal"):
            add_call(conn, f"B{prio}", started=at(0), ended=at(45))
            add_case(
                conn,
                f"B{prio}",
                queue=prio,
                priority=prio,
                created=at(0),
                status="callback_requested",
                callback_number="+15005550100",
            )
            add_call(conn, f"W{prio}", started=at(1155), status="in-progress")
            add_case(
                conn, f"W{prio}", queue=prio, priority=prio, created=at(1155), status="waiting"
            )
            add_call(conn, f"N{prio}", started=at(1190), status="in-progress")
            add_case(
                conn,
                f"N{prio}",
                queue=prio,
                priority=prio,
                created=at(1190),
                status="callback_requested",
                callback_number="+15005550101",
            )
    with db.connect() as conn:
        r = figures(conn, start=START, end=END, now=at(1200))
    emergency, normal = r.by_queue["emergency"], r.by_queue["normal"]
    assert (emergency.callbacks_after_threshold, emergency.waiting_after_threshold) == (1, 1)
    assert (emergency.service_level_counted, emergency.service_level) == (2, 0.0)
    assert (normal.callbacks_after_threshold, normal.waiting_after_threshold) == (0, 0)
    assert (normal.service_level_counted, normal.service_level) == (0, None)


def test_a_call_back_an_agent_sent_on_after_the_line_dropped_is_no_late_request(
    db: Engine,
) -> None:
    """Answered in payments within 10 s, the caller's line dropped ten minutes into the
    talk, and the agent sent the case to security for a call back: the caller asked for
    nothing and waited in no line past a target. Their answer counts in payments."""
    leg = {
        "queue": "payments",
        "priority": "normal",
        "from": "waiting",
        "agent": "alice",
        "entered_at": at(0).isoformat(),
        "connected_at": at(10).isoformat(),
        "answered_at": at(10).isoformat(),
        "ended_at": at(700).isoformat(),
    }
    with db.begin() as conn:
        add_call(conn, "D1", started=at(-30), ended=at(610))
        add_case(
            conn, "D1", queue="security", priority="emergency", created=at(0), status="abandoned"
        )
        conn.execute(
            update(cases)
            .where(cases.c.call_sid == sid("D1"))
            .values(legs=[leg], queued_at=at(700), flags={case_queue.SENT_AFTER_HANG_UP: "yes"})
        )
    r = report(db)
    security, payments = r.by_queue["security"], r.by_queue["payments"]
    assert (security.callbacks_requested, security.callbacks_after_threshold) == (1, 0)
    assert (security.service_level_counted, security.service_level) == (0, None)
    assert (payments.service_level_counted, payments.service_level) == (1, 1.0)


def test_a_call_back_sent_on_was_asked_for_in_the_line_it_left(db: Engine) -> None:
    """Asked for 5 min into the payments line; called back and sent on to security at
    1000 s, where it waits as a call back: asked after the target, wherever it is now."""
    leg = {
        "queue": "payments",
        "priority": "normal",
        "from": "callback_requested",
        "agent": "alice",
        "entered_at": at(0).isoformat(),
        "connected_at": at(900).isoformat(),
        "ended_at": at(1000).isoformat(),
    }
    with db.begin() as conn:
        add_call(conn, "K1", started=at(-30), ended=at(300))
        add_case(
            conn,
            "K1",
            queue="security",
            priority="emergency",
            created=at(0),
            status="callback_requested",
            callback_number="+15005550100",
        )
        conn.execute(
            update(cases)
            .where(cases.c.call_sid == sid("K1"))
            .values(legs=[leg], queued_at=at(1000))
        )
    security = report(db).by_queue["security"]
    assert (security.callbacks_requested, security.callbacks_after_threshold) == (1, 1)
    assert security.service_level == 0.0


def test_callers_still_waiting_are_judged_when_the_report_runs(db: Engine) -> None:
    """A caller who joined 10 s before the period's end and still waits: on time at the
    end, late five minutes later. Without `now`, the period's end."""
    with db.begin() as conn:
        add_case(
            conn, "W1", queue="q", priority="normal", created=END - 10 * SECOND, status="waiting"
        )
    with db.connect() as conn:
        at_end = figures(conn, start=START, end=END).by_queue["q"]
        later = figures(conn, start=START, end=END, now=END + timedelta(minutes=5)).by_queue["q"]
        with pytest.raises(ValueError, match="aware"):
            figures(conn, start=START, end=END, now=datetime(2026, 11, 23, 11))
    assert (at_end.waiting_after_threshold, at_end.service_level) == (0, None)
    assert (later.waiting_after_threshold, later.service_level) == (1, 0.0)


def test_the_api_judges_callers_still_waiting_by_its_clock_not_by_until(
    client: TestClient, db: Engine, clock: FakeClock
) -> None:
    """Asked about a period that ended a minute ago, a caller who joined 30 s before its end
    and still waits has waited 90 s now: past the 60 s target."""
    with db.begin() as conn:
        add_case(
            conn,
            "W1",
            queue="payments",
            priority="normal",
            created=clock() - timedelta(seconds=90),
            status="waiting",
        )
    token = make_user(db, "sam", "supervisor")
    until = (clock() - timedelta(seconds=60)).isoformat()
    data = api(client, token, "GET", "/api/stats", params={"until": until})
    payments = data["by_queue"]["payments"]
    assert (payments["waiting_after_threshold"], payments["service_level"]) == (1, 0.0)


def test_rejects_bad_arguments(db: Engine) -> None:
    with db.connect() as conn:
        with pytest.raises(ValueError, match="aware"):
            figures(conn, start=datetime(2026, 11, 23, 10), end=END)
        with pytest.raises(ValueError, match="after start"):
            figures(conn, start=END, end=START)
        with pytest.raises(ValueError, match="top"):
            figures(conn, start=START, end=END, top=-1)


# -- the after-agent survey -----------------------------------------------------------------------


def add_survey(
    conn: Connection, name: str, case_of: str, answer: str | None, *, after: float
) -> None:
    """The survey's log lines on call `name` for the case of call `case_of`, as the engine
    logs them: entered (asked), then the answer (None: the caller hung up on the question)."""
    case_id = conn.execute(select(cases.c.id).where(cases.c.call_sid == sid(case_of))).scalar_one()
    lines: list[dict[str, Any]] = [
        {"step": 98, "kind": "entered", "detail": {"node_kind": "survey", "case": case_id}}
    ]
    if answer is not None:
        silent = answer == "none"
        lines.append(
            {
                "step": 99,
                "kind": "survey",
                "input_kind": "silence" if silent else "dtmf",
                "outcome": answer,
                "detail": {"case": case_id},
            }
        )
    for line in lines:
        conn.execute(
            insert(call_events).values(call_sid=sid(name), at=at(after), node="survey", **line)
        )


def test_survey_answers_count_per_case_by_the_latest_asking(db: Engine) -> None:
    scenario(db)
    with db.begin() as conn:
        add_survey(conn, "C1", "C1", "5", after=320)
        add_survey(conn, "C2", "C2", "none", after=760)  # silence, then asked again: 2
        add_survey(conn, "C2", "C2", "2", after=770)
        add_survey(conn, "C3", "C3", "4", after=890)
        add_survey(conn, "C4", "C4", None, after=1000)  # hung up on the question
        add_survey(conn, "X1", "X1", "1", after=-30)  # a case of the hour before
    r = report(db)
    o = r.overall
    assert (o.surveys_asked, o.surveys_answered) == (4, 3)  # C1 C2 C3 C4; C1 C2 C3
    assert o.satisfaction_average == pytest.approx(11 / 3)  # (5 + 2 + 4) / 3
    assert o.satisfied_rate == pytest.approx(2 / 3)  # C1 5, C3 4 of 3 answers
    security, payments = r.by_queue["security"], r.by_queue["payments"]
    assert (security.surveys_asked, security.surveys_answered) == (2, 2)  # C1 C2
    assert security.satisfaction_average == pytest.approx(3.5)  # (5 + 2) / 2
    assert security.satisfied_rate == pytest.approx(0.5)  # C1 of C1 C2
    assert (payments.surveys_asked, payments.surveys_answered) == (2, 1)  # C3 C4; C3
    assert (payments.satisfaction_average, payments.satisfied_rate) == (4.0, 1.0)
    account = r.by_queue["account"]
    assert (account.surveys_asked, account.satisfaction_average, account.satisfied_rate) == (
        0,
        None,
        None,
    )
    assert report_as_json(r)["overall"]["satisfied_rate"] == pytest.approx(2 / 3)


def report_as_json(r: Report) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(r.as_dict()))
    return loaded


def test_per_agent_figures_count_the_cases_each_agent_talked_on(db: Engine) -> None:
    scenario(db)
    with db.begin() as conn:
        ids = {}
        for name in ("alice", "bob", "carol"):
            ids[name] = conn.execute(
                insert(users)
                .values(name=name, role="agent", token_hash=f"h-{name}", created_at=T0)
                .returning(users.c.id)
            ).scalar_one()
        for agent, case_names in (
            ("alice", ["C1", "C2"]),
            ("bob", ["C3", "C4", "C5"]),
            ("carol", ["C9"]),  # still waiting: taken, never reached (no connected_at)
        ):
            for name in case_names:
                conn.execute(
                    update(cases).where(cases.c.call_sid == sid(name)).values(agent_id=ids[agent])
                )
        # alice hung up on C1 a minute before she resolved it, on C2 three; C3 was connected
        # before the end of the agent's leg was kept, so it has no after-call work.
        for name, before in (("C1", 60), ("C2", 180)):
            this = cases.c.call_sid == sid(name)
            ended = conn.execute(select(cases.c.ended_at).where(this)).scalar_one()
            hung_up = ended - timedelta(seconds=before)
            conn.execute(update(cases).where(this).values(talk_ended_at=hung_up))
        add_survey(conn, "C1", "C1", "5", after=320)
        add_survey(conn, "C2", "C2", "2", after=770)
        add_survey(conn, "C3", "C3", "4", after=890)
        add_survey(conn, "C4", "C4", None, after=1000)
    r = report(db)
    assert list(r.by_agent) == ["alice", "bob"]  # carol talked to nobody
    alice, bob = r.by_agent["alice"], r.by_agent["bob"]
    assert alice == AgentFigures(
        handled=2,  # C1 C2
        average_handle_time_seconds=360.0,  # (300 + 420) / 2
        average_after_call_work_seconds=120.0,  # (60 + 180) / 2: part of the handle time
        surveys_asked=2,
        surveys_answered=2,
        satisfaction_average=3.5,  # (5 + 2) / 2
        satisfied_rate=0.5,  # C1 of C1 C2
    )
    assert bob == AgentFigures(
        handled=3,  # C3 C4 (still talking) C5 (called back)
        average_handle_time_seconds=220.0,  # C3 240, C5 200; C4 not resolved yet
        surveys_asked=2,  # C3 C4
        surveys_answered=1,  # C3
        satisfaction_average=4.0,
        satisfied_rate=1.0,
    )
    assert report_as_json(r)["by_agent"]["bob"]["handled"] == 3
    assert (alice.missed_offers, bob.missed_offers) == (0, 0)


def test_each_agents_time_available_and_occupancy_come_from_their_presence(db: Engine) -> None:
    """Staffing beside the work: how long each agent was available in the period, and the
    part of it their cases took. Written by the hotline's own presence changes: said
    available, a case's end (available again from then), said away; an availability that
    lapsed (8 h with no case) ends there, not at the period's end."""
    ids: dict[str, int] = {}
    with db.begin() as conn:
        for name in ("alice", "bob", "carol", "dave", "erin"):
            ids[name] = conn.execute(
                insert(users)
                .values(name=name, role="agent", token_hash=f"h-{name}", created_at=T0)
                .returning(users.c.id)
            ).scalar_one()
    with db.connect() as conn:

        def available(name: str, when: datetime, yes: bool = True) -> None:
            case_queue.set_available(conn, agent_id=ids[name], available=yes, now=when)

        available("bob", T0 - timedelta(hours=9))  # lapsed at 09:00: not in the period
        available("erin", T0 - timedelta(hours=7, minutes=30))  # lapses at 10:30
        available("dave", T0 - timedelta(hours=7, minutes=30))  # would too, but for a case
        available("alice", T0)
        available("alice", at(2400), yes=False)  # away at 10:40
        available("carol", at(1800))  # from 10:30 to the end
        with conn.begin():
            add_case(
                conn,
                "D1",
                queue="support",
                priority="normal",
                created=at(300),
                status="connected",
                claimed_from="waiting",
                connected=at(600),
            )
            case_id = conn.execute(
                update(cases)
                .where(cases.c.call_sid == sid("D1"))
                .values(agent_id=ids["dave"])
                .returning(cases.c.id)
            ).scalar_one()
        # Resolved at 10:20: available again from then (the longest idle first), not lapsed.
        assert case_queue.resolve(
            conn, case_id=case_id, status="connected", now=at(1200), notes="ok"
        )
    r = report(db)
    assert sorted(r.by_agent) == ["alice", "carol", "dave", "erin"]
    alice, carol, dave, erin = (r.by_agent[n] for n in ("alice", "carol", "dave", "erin"))
    assert (dave.handled, dave.average_handle_time_seconds) == (1, 600.0)
    assert (dave.available_seconds, dave.occupancy) == (3600.0, 0.1667)
    assert (alice.handled, alice.available_seconds, alice.occupancy) == (0, 2400.0, 0.0)
    assert (carol.available_seconds, erin.available_seconds) == (1800.0, 1800.0)
    assert r.agent_seconds_available == 9600.0
    shown = report_as_json(r)
    assert shown["agents_available_average"] == 2.67  # 9600 s of agents over 3600 s
    assert shown["by_agent"]["dave"]["occupancy"] == 0.1667
    with db.connect() as conn:  # the first half hour: carol not yet
        half = figures(conn, start=START, end=T0 + timedelta(minutes=30))
    assert {n: a.available_seconds for n, a in half.by_agent.items()} == {
        "alice": 1800.0,
        "dave": 1800.0,
        "erin": 1800.0,
    }
    with db.connect() as conn:  # the hour, half gone: averaged over the half that passed
        so_far = figures(conn, start=START, end=END, now=T0 + timedelta(minutes=30))
    assert (so_far.agent_seconds_available, so_far.agents_available_average) == (5400.0, 3.0)


def test_an_agents_presence_counts_in_the_order_it_was_written(db: Engine) -> None:
    """Two changes of one agent at the same moment may carry their `at`s the other way round
    (written under the agent's row lock, timed before it): alice said available, then was
    set away, a microsecond "earlier". She was never available, by the report or its bars."""
    with db.begin() as conn:
        alice = add_agent(conn, "alice")
        for when, since in ((at(600.000002), at(600.000002)), (at(600.000001), None)):
            conn.execute(
                insert(presence_changes).values(user_id=alice, at=when, available_since=since)
            )
    with db.connect() as conn:
        assert stats.time_available(conn, start=START, end=END) == {}
    with db.connect() as conn:
        bars = stats.intervals(conn, start=START, end=END, size=timedelta(minutes=15))
    assert [bar.agent_seconds_available for bar in bars] == [None] * 4
    assert report(db).by_agent == {}


def test_offers_an_agents_phone_missed_are_counted_per_agent_in_the_period(db: Engine) -> None:
    """As the hotline records them (`cases.missed_offer`): alice missed one in the period,
    dave two and talked to nobody (listed all the same), bob one before the period."""
    scenario(db)
    with db.connect() as conn:
        for name, minutes in (("alice", 5), ("dave", 10), ("dave", 50), ("bob", -5)):
            case_queue.audit(
                conn,
                actor=f"agent:{name}",
                action=case_queue.MISSED_OFFER,
                uid=None,
                case_id=None,
                reason="no-answer",
                result="requeued",
                now=T0 + timedelta(minutes=minutes),
            )
    r = report(db)
    assert {n: a.missed_offers for n, a in r.by_agent.items()} == {"alice": 1, "dave": 2}
    assert (r.by_agent["dave"].handled, r.by_agent["dave"].average_handle_time_seconds) == (0, None)
    assert report_as_json(r)["by_agent"]["dave"]["missed_offers"] == 2


def test_cases_an_agent_sent_on_are_counted_per_agent_in_the_period(db: Engine) -> None:
    """As the hotline records them (`cases.ask_transfer`, `send_call_back_on`): alice sent
    two on in the period (one asked while talking, one call back), erin one and talked to
    nobody (listed all the same), bob one before the period; alice also missed an offer."""
    scenario(db)
    with db.connect() as conn:
        for name, minutes, result in (
            ("alice", 5, "asked"),
            ("alice", 20, "call_back"),
            ("erin", 30, "asked"),
            ("bob", -5, "asked"),
        ):
            case_queue.audit(
                conn,
                actor=f"agent:{name}",
                action=case_queue.TRANSFER,
                uid=None,
                case_id=None,
                reason="to security (emergency): funds leaving",
                result=result,
                now=T0 + timedelta(minutes=minutes),
            )
        case_queue.audit(
            conn,
            actor="agent:alice",
            action=case_queue.MISSED_OFFER,
            uid=None,
            case_id=None,
            reason="no-answer",
            result="requeued",
            now=T0 + timedelta(minutes=7),
        )
    r = report(db)
    assert {n: a.transfers for n, a in r.by_agent.items()} == {"alice": 2, "erin": 1}
    assert (r.by_agent["alice"].missed_offers, r.by_agent["erin"].missed_offers) == (1, 0)
    assert r.by_agent["erin"].handled == 0
    assert report_as_json(r)["by_agent"]["alice"]["transfers"] == 2


# -- journeys through the phone: transfers, the ring, hang-ups on the way, short abandons -------


def journey_report(db: Engine, clock: FakeClock) -> Report:
    with db.connect() as conn:
        return figures(conn, start=clock() - timedelta(hours=2), end=clock() + timedelta(hours=1))


def taken(
    client: TestClient,
    token: str,
    seen: dict[str, Any],
    clock: FakeClock,
    *,
    after: float = 0,
    then_waits: float = 0,
) -> Callable[[int], bool]:
    """A caller's hold rounds: `after` seconds in line, the agent of `token` takes the case
    (seen["first"]) and the caller holds on to be put through; in line again after that
    (sent on), they wait `then_waits` seconds and hang up."""

    def holds(poll: int) -> bool:
        if "first" not in seen:
            clock.advance(seconds=after)
            seen["first"] = api(client, token, "POST", "/api/agents/next")
            return True
        clock.advance(seconds=then_waits)
        return False

    return holds


def screened_app(
    database_url: str, tree: CompiledTree, db: Engine, clock: FakeClock, *, screening: bool
) -> FastAPI:
    return create_app(
        make_settings(IVR_DATABASE_URL=database_url, IVR_AGENT_SCREENING=screening),
        tree=tree,
        db=db,
        clock=clock,
    )


def sent_on_journey(
    phone: Phone, client: TestClient, db: Engine, clock: FakeClock, to: dict[str, Any]
) -> dict[str, Any]:
    """A caller waits 30 s in payments; alice answers, talks 600 s and sends them on (`to`);
    ben, who speaks Mandarin, takes them at once, talks 120 s and resolves 60 s later."""
    alice = make_user(db, "alice", "agent", ALICE_PHONE)
    ben = make_user(db, "ben", "agent", BEN_PHONE)
    sam = make_user(db, "sam", "supervisor")
    api(client, sam, "PUT", "/api/agents/ben/languages", json={"languages": ["zh-CN"]})
    seen: dict[str, Any] = {}

    def holds(poll: int) -> bool:
        if "first" not in seen:
            clock.advance(seconds=30)
            seen["first"] = api(client, alice, "POST", "/api/agents/next")
        elif "next" not in seen:
            seen["queue"] = api(client, sam, "GET", "/api/queue")
            seen["next"] = api(client, ben, "POST", "/api/agents/next")
        return poll < 2

    def talks(number: str) -> None:
        if number == ALICE_PHONE:
            clock.advance(seconds=600)
            case_id = seen["first"]["case"]["id"]
            api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=to)
        else:
            clock.advance(seconds=120)

    assert phone.call(Talks(PAYMENTS, holds, talks)).dialed == BEN_PHONE
    clock.advance(seconds=60)
    case_id = seen["next"]["case"]["id"]
    api(client, ben, "POST", f"/api/cases/{case_id}/resolve", json={"notes": "done"})
    return seen


def test_sent_on_in_the_same_queue_each_answer_counts_its_own_wait(
    phone: Phone, client: TestClient, db: Engine, clock: FakeClock
) -> None:
    """Only the language changes: the caller keeps their place, but alice's ten minutes of
    talk are not a wait in line, on the queue page or in the figures."""
    mandarin = {"queue": "payments", "language": "zh-CN", "note": "speaks Mandarin only"}
    seen = sent_on_journey(phone, client, db, clock, mandarin)
    [entry] = seen["queue"]
    assert entry["waiting_seconds"] == 0  # just sent on, not 630
    payments = journey_report(db, clock).by_queue["payments"]
    assert (payments.offered, payments.answered) == (2, 2)  # alice's answer, then ben's
    assert payments.average_speed_of_answer_seconds == 15.0  # (30 + 0) / 2, not 630
    assert payments.service_level == 1.0
    assert payments.average_handle_time_seconds == 390.0  # (alice 600 + ben 120 + 60) / 2


def test_sent_on_to_another_queue_the_first_answer_and_talk_stay_counted(
    phone: Phone, client: TestClient, db: Engine, clock: FakeClock
) -> None:
    sent_on_journey(phone, client, db, clock, TO_SECURITY)
    report = journey_report(db, clock)
    payments, security = report.by_queue["payments"], report.by_queue["security"]
    assert (payments.answered, payments.average_speed_of_answer_seconds) == (1, 30.0)
    assert payments.average_handle_time_seconds == 600.0
    assert (security.answered, security.average_speed_of_answer_seconds) == (1, 0.0)
    assert security.average_handle_time_seconds == 180.0
    overall = report.overall
    assert (overall.offered, overall.answered, overall.average_speed_of_answer_seconds) == (
        2,
        2,
        15.0,
    )
    alice = report.by_agent["alice"]
    assert (alice.handled, alice.average_handle_time_seconds, alice.transfers) == (1, 600.0, 1)
    assert alice.average_after_call_work_seconds is None  # the case went on: no wrap-up of hers
    ben = report.by_agent["ben"]
    assert (ben.handled, ben.average_handle_time_seconds) == (1, 180.0)


def test_answered_then_sent_on_and_hung_up_there_is_an_answer_and_an_abandon(
    phone: Phone, client: TestClient, db: Engine, clock: FakeClock
) -> None:
    """alice answered within target; in the security line, nobody took them for 90 s."""
    alice = make_user(db, "alice", "agent", ALICE_PHONE)
    seen: dict[str, Any] = {}

    def talks(number: str) -> None:
        clock.advance(seconds=600)
        case_id = seen["first"]["case"]["id"]
        api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY)

    holds = taken(client, alice, seen, clock, after=30, then_waits=90)
    phone.call(Talks(PAYMENTS, holds, talks))
    report = journey_report(db, clock)
    assert (report.by_queue["payments"].answered, report.by_queue["payments"].abandoned) == (1, 0)
    security = report.by_queue["security"]
    assert (security.offered, security.answered, security.abandoned) == (1, 0, 1)
    assert security.service_level == 0.0  # 90 s > 20 s
    overall = report.overall
    assert (overall.offered, overall.answered, overall.abandoned) == (2, 1, 1)
    assert overall.average_speed_of_answer_seconds == 30.0
    assert report.by_agent["alice"].handled == 1


class RingsFirst(Talks):
    """The agent's phone rings `ring` seconds before they answer."""

    def __init__(self, *args: Any, clock: FakeClock, ring: float) -> None:
        super().__init__(*args)
        self.clock, self.ring = clock, ring

    def dial_outcome(self, number: str) -> str:
        self.clock.advance(seconds=self.ring)
        return "completed"


@pytest.mark.parametrize("screening", [True, False])
def test_the_speed_of_answer_counts_the_agents_phone_ringing(
    screening: bool,
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
) -> None:
    """45 s in line, then alice's phone rings 25 s: the caller waited 70 s for a person,
    over the 60 s target; her handle time is her 120 s talk and 60 s wrap-up, not the ring.
    Dated by the key she pressed to take it (screening), or else by Twilio's report of
    how long her phone was answered (DialCallDuration)."""
    app = screened_app(database_url, hotline_tree, db, clock, screening=screening)
    alice = make_user(db, "alice", "agent", ALICE_PHONE)
    seen: dict[str, Any] = {}
    with on_the_line(app, check_twiml) as (client, phone):
        holds = taken(client, alice, seen, clock, after=45)
        talks = RingsFirst(
            PAYMENTS, holds, lambda number: clock.advance(seconds=120), clock=clock, ring=25
        )
        assert phone.call(talks).dialed == ALICE_PHONE
        clock.advance(seconds=60)
        case_id = seen["first"]["case"]["id"]
        api(client, alice, "POST", f"/api/cases/{case_id}/resolve", json={"notes": "done"})
    report = journey_report(db, clock)
    payments = report.by_queue["payments"]
    assert payments.average_speed_of_answer_seconds == 70.0
    assert payments.service_level == 0.0
    assert payments.average_handle_time_seconds == 180.0
    assert report.by_agent["alice"].average_after_call_work_seconds == 60.0


def test_a_caller_who_hung_up_on_the_way_was_never_offered_nor_abandoned(
    phone: Phone, client: TestClient, db: Engine, clock: FakeClock
) -> None:
    """One victim hangs up at the UID prompt, on their way to the security line: the case
    opened for their call back is counted apart, not as a caller the line lost."""
    alice = make_user(db, "alice", "agent", ALICE_PHONE)
    holds = taken(client, alice, {}, clock)
    hijacked = [Press("1"), Press("1"), Press("*")]
    phone.call(Talks(hijacked, holds, lambda number: None), from_number="+15005550077")
    phone.call(ScriptedParty([Press("1"), Press("1")]), from_number="+15005550006")
    security = journey_report(db, clock).by_queue["security"]
    assert (security.offered, security.answered, security.abandoned) == (1, 1, 0)
    assert security.abandonment_rate == 0.0
    assert security.hung_up_on_the_way == 1


def test_short_abandons_are_counted_apart(
    phone: Phone, client: TestClient, db: Engine, clock: FakeClock
) -> None:
    """Three callers hang up 3 s into the line (a misdial, a change of mind), one is
    answered: the abandonment rate counts them (75 %), the rate without them does not."""
    alice = make_user(db, "alice", "agent", ALICE_PHONE)
    holds = taken(client, alice, {}, clock)

    def quick(poll: int) -> bool:
        clock.advance(seconds=3)
        return False

    def slow(poll: int) -> bool:
        clock.advance(seconds=8)
        return False

    phone.call(Talks(PAYMENTS, holds, lambda number: None), from_number="+15005550199")
    for n in range(3):
        phone.call(Talks(PAYMENTS, quick, lambda number: None), from_number=f"+1500555010{n}")
    phone.call(Talks(PAYMENTS, slow, lambda number: None), from_number="+15005550109")
    payments = journey_report(db, clock).by_queue["payments"]
    assert (payments.offered, payments.answered, payments.abandoned) == (5, 1, 4)
    assert payments.short_abandoned == 3
    assert payments.abandonment_rate == 0.8
    assert payments.abandonment_rate_without_short == 0.5  # (4 - 3) / (5 - 3)


def test_a_case_a_supervisor_closed_for_its_agent_is_no_wrap_up_of_theirs(
    phone: Phone, client: TestClient, db: Engine, clock: FakeClock
) -> None:
    """alice talks 120 s to each of two callers; she resolves the first a minute later, and
    forgets the second, which a supervisor closes the next morning: fourteen hours are not
    her handle time, nor her after-call work."""
    alice = make_user(db, "alice", "agent", ALICE_PHONE)
    sam = make_user(db, "sam", "supervisor")
    case_ids: list[int] = []
    for n in range(2):
        seen: dict[str, Any] = {}
        holds = taken(client, alice, seen, clock)
        talks = Talks(PAYMENTS, holds, lambda number: clock.advance(seconds=120))
        phone.call(talks, from_number=f"+1500555020{n}")
        case_ids.append(seen["first"]["case"]["id"])
        clock.advance(seconds=60)
        if n == 0:
            api(client, alice, "POST", f"/api/cases/{case_ids[0]}/resolve", json={"notes": "ok"})
    clock.advance(hours=14)
    api(client, sam, "POST", f"/api/cases/{case_ids[1]}/resolve", json={"notes": "left open"})
    with db.connect() as conn:
        report = figures(conn, start=clock() - timedelta(hours=16), end=clock())
    theirs = report.by_agent["alice"]
    assert theirs.handled == 2
    assert theirs.average_handle_time_seconds == 150.0  # (120 + 60, then 120) / 2
    assert theirs.average_after_call_work_seconds == 60.0  # hers alone
    assert report.by_queue["payments"].average_handle_time_seconds == 150.0


def test_the_answer_of_a_talk_a_transfer_ended_counts_the_ring_too(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
) -> None:
    """No screening key to date it: alice's phone rings 20 s after the caller's 30 s in line,
    she talks ten minutes and sends them on; the end of her leg (its DialCallDuration)
    dates her answer, 50 s after they joined the line, in the talk the figures keep."""
    app = screened_app(database_url, hotline_tree, db, clock, screening=False)
    alice = make_user(db, "alice", "agent", ALICE_PHONE)
    seen: dict[str, Any] = {}
    with on_the_line(app, check_twiml) as (client, phone):
        holds = taken(client, alice, seen, clock, after=30)

        def talks(number: str) -> None:
            clock.advance(seconds=600)
            case_id = seen["first"]["case"]["id"]
            api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY)

        phone.call(RingsFirst(PAYMENTS, holds, talks, clock=clock, ring=20))
    payments = journey_report(db, clock).by_queue["payments"]
    assert payments.average_speed_of_answer_seconds == 50.0
    assert payments.average_handle_time_seconds == 600.0


def test_talks_edited_by_hand_never_break_the_figures(db: Engine) -> None:
    """A leg without a zone is taken as UTC; one that is no leg, or legs that are no list,
    are left out: the figures page never answers 500 for a row someone mended by hand."""
    naive = {
        "queue": "payments",
        "priority": "normal",
        "from": "waiting",
        "agent": "",
        "entered_at": "2026-11-23T10:00:00",
        "connected_at": "2026-11-23T10:00:30",
        "ended_at": "2026-11-23T10:05:30",
    }
    with db.begin() as conn:
        for name, legs in (("H1", [naive, "no leg", {"queue": "x"}]), ("H2", {"not": "a list"})):
            add_case(
                conn,
                name,
                queue="security",
                priority="normal",
                created=at(0),
                status="resolved",
                claimed_from="waiting",
                connected=at(400),
                ended=at(500),
            )
            conn.execute(update(cases).where(cases.c.call_sid == sid(name)).values(legs=legs))
    r = report(db)
    assert r.by_queue["payments"].average_speed_of_answer_seconds == 30.0  # the naive leg
    assert (r.overall.offered, r.overall.answered) == (3, 3)  # its line, and both cases


# -- an agent's work counts when they took it, not when its case was opened --------------------


def add_agent(conn: Connection, name: str) -> int:
    user_id: int = conn.execute(
        insert(users)
        .values(name=name, role="agent", token_hash=f"h-{name}", created_at=T0)
        .returning(users.c.id)
    ).scalar_one()
    return user_id


def test_an_agent_is_credited_in_the_period_they_worked_a_case_opened_before_it(
    db: Engine,
) -> None:
    """P1 hung up in the hour before (09:45) and bob called them back at 10:10: the call back
    is bob's in this hour, while the abandon stays offered in the hour it was opened. P2 is
    offered at 10:50 and taken by bob only at 11:05: offered here, bob's next hour."""
    with db.begin() as conn:
        bob = add_agent(conn, "bob")
        add_call(conn, "P1", started=at(-900), ended=at(-880))
        add_case(
            conn,
            "P1",
            queue="payments",
            priority="normal",
            created=at(-890),
            status="resolved",
            claimed_from="abandoned",
            connected=at(600),
            ended=at(900),
        )
        add_call(conn, "P2", started=at(2990), ended=at(3800))
        add_case(
            conn,
            "P2",
            queue="payments",
            priority="normal",
            created=at(3000),
            status="resolved",
            claimed_from="waiting",
            connected=at(3900),
            ended=at(4000),
        )
        conn.execute(
            update(cases).where(cases.c.call_sid.in_([sid("P1"), sid("P2")])).values(agent_id=bob)
        )
    r = report(db)  # [10:00, 11:00)
    assert (r.overall.offered, r.overall.abandoned) == (1, 0)  # P2; P1 in the hour before
    assert r.overall.average_handle_time_seconds == 100.0  # P2's, as offered here
    assert list(r.by_agent) == ["bob"]
    assert r.by_agent["bob"].handled == 1  # P1, not P2
    assert r.by_agent["bob"].average_handle_time_seconds == 300.0  # 10:10 to 10:15
    with db.connect() as conn:
        before = figures(conn, start=START - timedelta(hours=1), end=START)
        after = figures(conn, start=END, end=END + timedelta(hours=1))
    assert (before.overall.offered, before.overall.abandoned, before.by_agent) == (1, 1, {})
    assert (after.overall.offered, after.by_agent["bob"].handled) == (0, 1)


def test_a_talk_sent_on_counts_for_its_agent_in_the_period_they_took_it(db: Engine) -> None:
    """Q1 was opened at 09:40 in payments; alice took it at 10:05, talked until 10:10 and
    sent it on to security, where it waits: her talk is in this hour's figures."""
    leg = {
        "queue": "payments",
        "priority": "normal",
        "from": "waiting",
        "agent": "alice",
        "entered_at": at(-1200).isoformat(),
        "connected_at": at(300).isoformat(),
        "answered_at": at(310).isoformat(),
        "ended_at": at(600).isoformat(),
    }
    with db.begin() as conn:
        add_call(conn, "Q1", started=at(-1230), status="in-progress")
        add_case(conn, "Q1", queue="security", priority="high", created=at(-1200), status="waiting")
        conn.execute(
            update(cases).where(cases.c.call_sid == sid("Q1")).values(legs=[leg], queued_at=at(600))
        )
    r = report(db)
    assert r.overall.offered == 0  # opened, and first offered, in the hour before
    alice = r.by_agent["alice"]
    assert (alice.handled, alice.average_handle_time_seconds) == (1, 290.0)
    with db.connect() as conn:
        before = figures(conn, start=START - timedelta(hours=1), end=START, now=at(700))
    assert before.by_agent == {}
    assert before.by_queue["payments"].answered == 1  # the line it left, where it was offered


# -- the emergency block: answers and freezes timed from the victim's call -----------------------


def add_freeze(db: Engine, name: str, action: str, result: str, after: float) -> None:
    """A freeze audited on case `name`, `after` seconds from 10:00, as the hotline audits it."""
    with db.connect() as conn:
        case_id = conn.execute(select(cases.c.id).where(cases.c.call_sid == sid(name))).scalar()
    with db.connect() as conn:
        case_queue.audit(
            conn,
            actor=f"caller:{sid(name)}" if action == "self_freeze" else "agent:alice",
            action=action,
            uid="U1",
            case_id=case_id,
            reason="test",
            result=result,
            now=at(after),
        )


def test_the_emergency_block_times_answers_and_freezes_from_the_call(db: Engine) -> None:
    """C1 (call 0 s, answered 10 s) froze their own account at 5 s; C2 (call 270 s,
    answered 330 s) had a freeze fail at 340 s and alice's made at 365 s; E3 (call 990 s,
    answered 1020 s) was resolved after a self-freeze that failed; E4 hung up on the way.
    C3, a payments case with a freeze, is no emergency."""
    scenario(db)
    with db.begin() as conn:
        add_call(conn, "E3", started=at(990), ended=at(1100))
        add_case(
            conn,
            "E3",
            queue="security",
            priority="emergency",
            created=at(1000),
            status="resolved",
            claimed_from="waiting",
            connected=at(1020),
            ended=at(1200),
        )
        add_call(conn, "E4", started=at(1300), ended=at(1330))
        add_case(
            conn,
            "E4",
            queue="security",
            priority="emergency",
            created=at(1320),
            status="callback_requested",
        )
        conn.execute(
            update(cases).where(cases.c.call_sid == sid("E4")).values(flags={HUNG_UP_AT: "uid"})
        )
    add_freeze(db, "C1", "self_freeze", "ok", 5)
    add_freeze(db, "C2", "freeze", "failed", 340)
    add_freeze(db, "C2", "freeze", "ok", 365)
    add_freeze(db, "C2", "freeze", "ok", 400)  # another account: the first counts
    add_freeze(db, "E3", "self_freeze", "failed", 995)
    add_freeze(db, "C3", "freeze", "ok", 700)
    e = report(db).emergency
    assert (e.cases, e.offered, e.hung_up_on_the_way, e.answered) == (4, 3, 1, 3)
    assert e.median_seconds_to_answer == 30.0  # of 10, 30 (E3) and 60 (C2)
    assert e.p90_seconds_to_answer == 60.0  # nearest rank: the 3rd of 3
    assert (e.frozen, e.frozen_by_caller, e.frozen_by_agent) == (2, 1, 1)
    assert e.median_seconds_to_agent_freeze == 95.0  # 365 - 270
    assert e.p90_seconds_to_agent_freeze == 95.0
    assert (e.closed_without_freeze, e.closed_without_freeze_tickets) == (1, ["T-E3"])
    assert report_as_json(report(db))["emergency"]["frozen_by_agent"] == 1


def test_a_period_without_emergencies_has_no_times_to_show(db: Engine) -> None:
    with db.connect() as conn:
        e = figures(conn, start=START, end=END).emergency
    assert (e.cases, e.frozen, e.closed_without_freeze) == (0, 0, 0)
    assert (e.median_seconds_to_answer, e.p90_seconds_to_agent_freeze) == (None, None)


# -- the time zone a report is shown in ------------------------------------------------------------


def test_the_api_gives_the_period_back_in_the_zone_asked(
    client: TestClient, db: Engine, clock: FakeClock
) -> None:
    """A Shanghai shift asked with +08:00 comes back in Shanghai time, not as UTC; a zone
    that is none is refused."""
    token = make_user(db, "sam", "supervisor")
    shift = {"since": "2026-12-05T08:00+08:00", "until": "2026-12-05T16:00+08:00"}
    data = api(client, token, "GET", "/api/stats", params={**shift, "tz": "Asia/Shanghai"})
    assert data["time_zone"] == "Asia/Shanghai"
    assert (data["period_start"], data["period_end"]) == (
        "2026-12-05T08:00:00+08:00",
        "2026-12-05T16:00:00+08:00",
    )
    plain = api(client, token, "GET", "/api/stats", params=shift)
    assert (plain["time_zone"], plain["period_start"]) == ("UTC", "2026-12-05T00:00:00+00:00")
    for wrong in ("Mars/Olympus_Mons", "../../etc/passwd", "+08:00"):
        refused = client.get("/api/stats", headers=bearer(token), params={**shift, "tz": wrong})
        assert refused.status_code == 422
        assert "not an IANA time zone name" in refused.json()["detail"]


def test_the_api_counts_a_month_at_most(client: TestClient, db: Engine) -> None:
    """A period of 31 days is counted, a longer one refused (422, saying how to ask), as the
    figures page does: a year's rows would hold a thread that callers' webhooks need for
    minutes. Any agent may ask for the figures."""
    agent = make_user(db, "ann", "agent")
    month = {"since": "2026-10-01T00:00Z", "until": "2026-11-01T00:00Z"}
    assert api(client, agent, "GET", "/api/stats", params=month)["period_end"].startswith(
        "2026-11-01"
    )
    for since, until in (
        ("2026-10-01T00:00Z", "2026-11-01T00:00:01Z"),
        ("0001-01-02T00:00Z", "9999-12-30T00:00Z"),
    ):
        refused = client.get(
            "/api/stats", headers=bearer(agent), params={"since": since, "until": until}
        )
        assert refused.status_code == 422
        assert refused.json()["detail"] == (
            "the period can be at most 31 days: ask for it a month at a time"
        )


def test_the_report_zone_setting_is_the_default_and_must_be_a_zone(
    database_url: str, hotline_tree: CompiledTree, db: Engine, clock: FakeClock
) -> None:
    settings = make_settings(IVR_DATABASE_URL=database_url, IVR_REPORT_TZ="Asia/Singapore")
    app = create_app(settings, tree=hotline_tree, db=db, clock=clock)
    token = make_user(db, "sam", "supervisor")
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        data = api(
            client,
            token,
            "GET",
            "/api/stats",
            params={"since": "2026-12-05T00:00Z", "until": "2026-12-06T00:00Z"},
        )
    assert (data["time_zone"], data["period_start"]) == (
        "Asia/Singapore",
        "2026-12-05T08:00:00+08:00",
    )
    with pytest.raises(ValidationError, match="IANA time zone"):
        make_settings(IVR_REPORT_TZ="Singapore Time")


def test_the_longest_wait_is_of_every_wait_however_it_ended(db: Engine) -> None:
    scenario(db)
    r = report(db)
    assert r.overall.longest_wait_seconds == 600.0  # C9, still in line at 11:00: 3600 - 3000
    assert r.by_queue["security"].longest_wait_seconds == 30.0  # C2 answered at 30 s
    # C6 hung up at 120 s; C7 and C8 asked for a call back at 60 s
    assert r.by_queue["account"].longest_wait_seconds == 120.0
    with db.connect() as conn:  # before C9 joined the line (and C4 was answered, at 990)
        early = figures(conn, start=START, end=at(900))
    assert early.overall.longest_wait_seconds == 45.0  # C3 answered at 45 s, C1 10, C2 30
    assert report_as_json(r)["by_queue"]["payments"]["longest_wait_seconds"] == 600.0


def test_each_priority_is_judged_by_the_line_the_case_entered(db: Engine) -> None:
    """C2 waited 30 s in the emergency line before a supervisor moved it to normal: it is
    still an emergency answered late (20 s), not a normal one answered in time (60 s)."""
    scenario(db)
    with db.begin() as conn:
        conn.execute(
            update(cases)
            .where(cases.c.call_sid == sid("C2"))
            .values(
                priority="normal",
                lane=1,
                flags={"priority_set_by": "sam", "priority_was": "emergency"},
            )
        )
    r = report(db)
    assert list(r.by_priority) == ["emergency", "high", "normal"]
    emergency = r.by_priority["emergency"]
    assert (emergency.offered, emergency.answered, emergency.answered_within_threshold) == (2, 2, 1)
    assert emergency.service_level == 0.5  # C1 10 <= 20; C2 30 > 20
    assert emergency.average_speed_of_answer_seconds == 20.0  # (10 + 30) / 2
    assert emergency.longest_wait_seconds == 30.0
    # The queues judge C2 by its priority now: 30 <= 60, in time.
    assert r.by_queue["security"].service_level == 1.0
    assert r.overall.answered_within_threshold == 3  # C1 C2 C3
    high = r.by_priority["high"]  # C6 C7
    assert (high.offered, high.abandoned, high.callbacks_requested) == (2, 1, 1)
    assert (high.service_level, high.service_level_counted) == (0.0, 1)  # C6 120 > 60
    assert high.longest_wait_seconds == 120.0  # C6; C7 asked at 60 s
    normal = r.by_priority["normal"]  # C3 C4 C5 C8 C9
    assert (normal.offered, normal.answered, normal.answered_within_threshold) == (5, 2, 1)
    # 1 / (C3 + C4 + C9 waiting 600 > 60): C5 a short abandon, C8 asked at 60 <= 60
    assert normal.service_level == pytest.approx(1 / 3)
    assert normal.longest_wait_seconds == 600.0
    assert report_as_json(r)["by_priority"]["emergency"]["service_level"] == 0.5


def test_a_case_moved_twice_counts_under_the_priority_it_entered_with(db: Engine) -> None:
    """C9 entered the payments line as normal; a supervisor moved it to emergency, then to
    high: it is a normal case in the figures by priority, not the emergency it was between
    the two moves (the last move's "from")."""
    scenario(db)
    with db.connect() as conn:
        [c9] = conn.execute(select(cases.c.id).where(cases.c.call_sid == sid("C9"))).scalars()
    with db.connect() as conn:
        for to in ("emergency", "high"):
            moved = case_queue.set_priority(
                conn, case_id=c9, priority=to, supervisor="supervisor:sam", why="test", now=END
            )
            assert moved is not None
    r = report(db)
    assert r.by_priority["normal"].offered == 5  # C3 C4 C5 C8 C9
    assert r.by_priority["emergency"].offered == 2  # C1 C2
    assert r.by_priority["high"].offered == 2  # C6 C7


def test_every_priority_is_listed_even_with_nothing_offered(db: Engine) -> None:
    r = report(db)
    assert list(r.by_priority) == ["emergency", "high", "normal"]
    assert r.by_priority["emergency"].offered == 0
    assert r.by_priority["emergency"].service_level is None
    assert r.by_priority["emergency"].longest_wait_seconds is None


def test_a_call_back_the_caller_settled_by_calling_again_is_counted_apart(db: Engine) -> None:
    """C8's caller (a call back not taken yet) called again and the new call took it out of
    the line: settled, not owed. C7, called back, is completed whatever its flags say."""
    scenario(db)
    with db.begin() as conn:
        for name in ("C7", "C8"):
            conn.execute(
                update(cases)
                .where(cases.c.call_sid == sid(name))
                .values(queued=0, flags={"superseded_by": "T-again"})
            )
    r = report(db)
    o, account = r.overall, r.by_queue["account"]
    assert (o.callbacks_requested, o.callbacks_completed, o.callbacks_superseded) == (2, 1, 1)
    assert (account.callbacks_completed, account.callbacks_superseded) == (1, 1)  # C7; C8
    assert r.by_queue["payments"].callbacks_superseded == 0
    assert r.by_priority["normal"].callbacks_superseded == 1  # C8
    assert report_as_json(r)["overall"]["callbacks_superseded"] == 1


def test_a_caller_who_asked_for_a_call_back_and_rang_again_settled_it(
    phone: Phone, client: TestClient, db: Engine, clock: FakeClock
) -> None:
    """They asked to be called back, then called again 5 minutes later and alice answered:
    the call back left the line naming the new ticket, and the figures count it settled."""
    alice = make_user(db, "alice", "agent", ALICE_PHONE)
    phone.call(ScriptedParty(list(CALL_ME_BACK)), from_number="+15005550042")
    clock.advance(minutes=5)
    holds = taken(client, alice, {}, clock)
    phone.call(
        Talks(list(CALL_ME_BACK[:2]), holds, lambda number: None), from_number="+15005550042"
    )
    with db.connect() as conn:
        asked, again = conn.execute(select(cases.c.flags, cases.c.ticket).order_by(cases.c.id))
    assert asked.flags["superseded_by"] == again.ticket
    o = journey_report(db, clock).overall
    assert (o.offered, o.answered) == (2, 1)
    assert (o.callbacks_requested, o.callbacks_completed, o.callbacks_superseded) == (1, 0, 1)


# -- the figures per interval, for a workforce tool -----------------------------------------------


def test_the_figures_per_interval_add_up_to_the_period_on_the_hotlines_clock(
    client: TestClient, phone: Phone, db: Engine, clock: FakeClock
) -> None:
    """A workforce tool forecasts from offered, answered and abandoned per 15 or 30 minutes
    and per queue: each interval counts as /api/stats counts its own period, the intervals
    meet end to end on the asked clock's quarter hours, and the CSV holds the same rows."""
    sam = make_user(db, "sam", "supervisor")
    clock.advance(minutes=5)  # 03:05 UTC: a victim, then (at 03:25) a question on deposits
    phone.call(ScriptedParty([Press("1"), Press("1"), Press("*")]), from_number="+15005550102")
    clock.advance(minutes=20)
    phone.call(ScriptedParty([Press("1"), Press("3"), Press("2"), Press("1")]))
    clock.advance(minutes=20)
    # An hour from 10:50 in Shanghai (02:50 UTC): a first interval of 10 minutes, then
    # quarter hours, then 5 minutes to 11:50.
    period = {"since": "2026-11-23T10:50+08:00", "until": "2026-11-23T11:50+08:00"}
    asked = {**period, "minutes": 15, "tz": "Asia/Shanghai"}
    data = api(client, sam, "GET", "/api/stats/intervals", params=asked)
    spans = [(i["start"], i["end"]) for i in data["intervals"]]
    assert spans == [
        ("2026-11-23T10:50:00+08:00", "2026-11-23T11:00:00+08:00"),
        ("2026-11-23T11:00:00+08:00", "2026-11-23T11:15:00+08:00"),
        ("2026-11-23T11:15:00+08:00", "2026-11-23T11:30:00+08:00"),
        ("2026-11-23T11:30:00+08:00", "2026-11-23T11:45:00+08:00"),
        ("2026-11-23T11:45:00+08:00", "2026-11-23T11:50:00+08:00"),
    ]
    offered = [i["overall"]["offered"] for i in data["intervals"]]
    assert offered == [0, 1, 1, 0, 0]
    assert data["intervals"][1]["by_queue"]["security"]["abandoned"] == 1
    assert data["intervals"][2]["by_queue"]["payments"]["offered"] == 1
    whole = api(client, sam, "GET", "/api/stats", params=period)["overall"]
    assert sum(offered) == whole["offered"] == 2
    assert sum(i["overall"]["abandoned"] for i in data["intervals"]) == whole["abandoned"]

    sheet = client.get("/api/stats/intervals.csv", headers=bearer(sam), params=asked)
    assert sheet.status_code == 200 and sheet.headers["content-type"].startswith("text/csv")
    assert 'filename="intervals-2026-11-23.csv"' in sheet.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(sheet.text)))
    assert [r["queue"] for r in rows] == ["", "", "security", "", "payments", "", ""]
    assert [r["offered"] for r in rows if r["queue"] == ""] == ["0", "1", "1", "0", "0"]
    assert rows[2]["interval_start"] == "2026-11-23T11:00:00+08:00"

    # Yesterday by default, on the report zone's clock (UTC here): 48 half hours.
    yesterday = api(client, sam, "GET", "/api/stats/intervals")["intervals"]
    assert len(yesterday) == 48 and yesterday[0]["start"] == "2026-11-22T00:00:00+00:00"
    eight_days = {"since": "2026-11-01T00:00Z", "until": "2026-11-09T00:00Z", "minutes": 15}
    for wrong in ({"minutes": 20}, eight_days):
        refused = client.get("/api/stats/intervals", headers=bearer(sam), params=wrong)
        assert refused.status_code == 422, wrong
    backwards = {"since": period["until"], "until": period["since"]}
    assert (
        client.get("/api/stats/intervals", headers=bearer(sam), params=backwards).status_code == 422
    )
    agent = make_user(db, "alice", "agent")
    for path in ("/api/stats/intervals", "/api/stats/intervals.csv"):
        assert client.get(path, headers=bearer(agent)).status_code == 403


def busy_hours(db: Engine) -> None:
    """Every kind of row the figures count, around 10:00-11:00 (`scenario`, `hack_day`): the
    agents' cases, one closed by a supervisor, a talk sent on, a call back of the hour
    before, a case taken the hour after, a caller who hung up on the way, a case moved into
    the emergency line, surveys, freezes, missed offers, transfers, and presence changes
    at odd fractions of a second (one older than the lookback, one lapsing)."""
    scenario(db)
    hack_day(db)
    with db.begin() as conn:
        alice, bob, dave = (add_agent(conn, name) for name in ("alice", "bob", "dave"))
        for agent, names in ((alice, ["C1", "C2"]), (bob, ["C3", "C4", "C5"]), (dave, ["C7"])):
            conn.execute(
                update(cases)
                .where(cases.c.call_sid.in_([sid(n) for n in names]))
                .values(agent_id=agent, talk_ended_at=at(2300), answered_at=None)
            )
        conn.execute(
            update(cases)
            .where(cases.c.call_sid.in_([sid(f"A{n}") for n in range(3)]))
            .values(agent_id=dave)
        )
        conn.execute(
            update(cases)
            .where(cases.c.call_sid == sid("C9"))
            .values(flags={"priority_was": "normal"}, priority="emergency", lane=0)
        )
        add_call(conn, "P1", started=at(-900), ended=at(-880))
        add_case(
            conn,
            "P1",
            queue="payments",
            priority="normal",
            created=at(-890),
            status="resolved",
            claimed_from="abandoned",
            connected=at(600),
            ended=at(900),
        )
        add_call(conn, "P2", started=at(2990), ended=at(3800))
        add_case(
            conn,
            "P2",
            queue="payments",
            priority="normal",
            created=at(3000),
            status="resolved",
            claimed_from="waiting",
            connected=at(3900),
            ended=at(4000),
        )
        conn.execute(
            update(cases).where(cases.c.call_sid.in_([sid("P1"), sid("P2")])).values(agent_id=bob)
        )
        leg = {
            "queue": "payments",
            "priority": "normal",
            "from": "waiting",
            "agent": "alice",
            "entered_at": at(-1200).isoformat(),
            "connected_at": at(300).isoformat(),
            "answered_at": at(310.25).isoformat(),
            "ended_at": at(1900.5).isoformat(),
        }
        add_call(conn, "Q1", started=at(-1230), status="in-progress")
        add_case(conn, "Q1", queue="security", priority="high", created=at(-1200), status="waiting")
        conn.execute(
            update(cases)
            .where(cases.c.call_sid == sid("Q1"))
            .values(legs=[leg], queued_at=at(1900.5))
        )
        # Opened before the period, taken and sent on in its first minutes.
        add_call(conn, "Q2", started=at(-3030), status="in-progress")
        add_case(conn, "Q2", queue="security", priority="high", created=at(-3000), status="waiting")
        early = {**leg, "connected_at": at(-1900).isoformat(), "answered_at": at(-1890).isoformat()}
        conn.execute(
            update(cases)
            .where(cases.c.call_sid == sid("Q2"))
            .values(legs=[{**early, "ended_at": at(-1000).isoformat()}], queued_at=at(-1000))
        )
        add_call(conn, "E4", started=at(1300), ended=at(1330))
        add_case(
            conn,
            "E4",
            queue="security",
            priority="emergency",
            created=at(1310),
            status="callback_requested",
        )
        conn.execute(
            update(cases)
            .where(cases.c.call_sid == sid("E4"))
            .values(flags={HUNG_UP_AT: at(1330).isoformat()})
        )
        add_survey(conn, "C1", "C1", "5", after=320)
        add_survey(conn, "C2", "C2", "none", after=760)
        add_survey(conn, "C2", "C2", "2", after=770)
        add_survey(conn, "C3", "C3", "4", after=890)
        add_survey(conn, "C4", "C4", None, after=1000)
        # Asked on another case's call (C6, in another interval): counted with the cases of
        # the call it was asked on, as `figures` of that interval alone counts it.
        add_survey(conn, "C6", "C1", "1", after=1600)
        for user_id, when, since in (
            (alice, -40000.5, -40000.5),  # older than the lookback of every interval
            (alice, -3600.125, -3600.125),
            (alice, 1234.5, None),
            (bob, -27000.75, -27000.75),  # lapses 8 h later, at 10:30:00.25
            # Available since after the change itself (a clock put back): left out once
            # older than the lookback, as of every change.
            (dave, -29000, 3000),
            (dave, 100.333333, 100.333333),
            (dave, 2000.000001, 1500.5),  # a case's end: available from then on
            (dave, 4000.2, None),
        ):
            conn.execute(
                insert(presence_changes).values(
                    user_id=user_id,
                    at=at(when),
                    available_since=None if since is None else at(since),
                )
            )
    for name, action, result, after in (
        ("C1", "self_freeze", "ok", 5),
        ("C2", "freeze", "failed", 340),
        ("C2", "freeze", "ok", 365),
    ):
        add_freeze(db, name, action, result, after)
    with db.connect() as conn:
        [c3] = conn.execute(select(cases.c.id).where(cases.c.call_sid == sid("C3"))).scalars()
    with db.connect() as conn:
        for actor, action, case_id, minutes in (
            ("supervisor:sam", case_queue.RESOLVE, c3, 15),
            ("agent:alice", case_queue.MISSED_OFFER, None, 5),
            ("agent:dave", case_queue.MISSED_OFFER, None, 50),
            ("agent:dave", case_queue.MISSED_OFFER, None, 65),
            ("agent:alice", case_queue.TRANSFER, None, 20),
            ("agent:erin", case_queue.TRANSFER, None, -5),
        ):
            case_queue.audit(
                conn,
                actor=actor,
                action=action,
                uid=None,
                case_id=case_id,
                reason="test",
                result="ok",
                now=T0 + timedelta(minutes=minutes),
            )


@pytest.mark.parametrize(
    ("size", "zone", "now"),
    [
        (timedelta(minutes=15), "Asia/Kathmandu", None),
        (timedelta(minutes=5), "UTC", at(1500.5)),  # some intervals not begun, one half gone
        (timedelta(hours=1), "Asia/Kolkata", at(7200)),
    ],
)
def test_the_figures_per_interval_are_those_of_each_interval_on_its_own(
    db: Engine, size: timedelta, zone: str, now: datetime | None
) -> None:
    """`intervals` reads the period once and counts each interval from those rows: each of
    its reports is the one `figures` makes of that interval alone, every field of it, and
    the whole period's beside them (the figures page's) is `figures`' of the period."""
    busy_hours(db)
    start, end = at(-2000), at(5000.5)  # 09:26:40 to 11:23:20.5: both ends off the marks
    thresholds = Thresholds(emergency=timedelta(seconds=15), other=timedelta(seconds=45))
    with db.connect() as conn:
        whole, found = stats.figures_and_intervals(
            conn,
            start=start,
            end=end,
            size=size,
            zone=time_zone(zone),
            thresholds=thresholds,
            now=now,
        )
        alone = [
            figures(conn, start=r.period_start, end=r.period_end, thresholds=thresholds, now=now)
            for r in found
        ]
        assert whole == figures(conn, start=start, end=end, thresholds=thresholds, now=now)
        assert (
            stats.intervals(
                conn,
                start=start,
                end=end,
                size=size,
                zone=time_zone(zone),
                thresholds=thresholds,
                now=now,
            )
            == found
        )
    assert (found[0].period_start, found[-1].period_end) == (start, end) and len(found) > 2
    assert all(a.period_end == b.period_start for a, b in itertools.pairwise(found))
    for mine, theirs in zip(found, alone, strict=True):
        assert mine == theirs, (mine.period_start, mine.period_end)
    # Not vacuous: the intervals between them hold every kind of figure.
    assert sum(r.overall.offered for r in found) == whole.overall.offered > 60
    assert sum(r.overall.surveys_asked for r in found) == 4
    assert any(r.agent_seconds_available for r in found)
    assert any(a.missed_offers for r in found for a in r.by_agent.values())
    assert any(a.transfers for r in found for a in r.by_agent.values())
    assert any(r.emergency.frozen_by_agent for r in found)
    assert any(r.overall.hung_up_on_the_way for r in found)
    assert any(r.by_agent["alice"].handled for r in found if "alice" in r.by_agent)


def test_the_figures_look_their_rows_up_by_index(db: Engine) -> None:
    """At a year's volume (2 M calls, 16 M call events) a read of every case or event passes
    PostgreSQL's statement timeout: the period's cases are found by the indexes of when they
    were opened, taken and sent on, and their calls' survey events and the nodes a contained
    call entered by partial indexes, which a query uses only if its condition is theirs."""
    busy_hours(db)
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, stmt: str, params: Any, ctx: Any, many: bool) -> None:
        sent.append((stmt, params))

    with db.connect() as conn:
        event.listen(db, "before_cursor_execute", capture)
        try:
            figures(conn, start=START, end=END)
        finally:
            event.remove(db, "before_cursor_execute", capture)
        wanted = {
            "FROM cases LEFT OUTER JOIN calls": (
                "ix_cases_created_at",
                "ix_cases_connected_at",
                "ix_cases_queued_at",
            ),
            "FROM call_events WHERE (kind = 'survey'": ("ix_call_events_surveys",),
            "FROM call_events WHERE (kind = 'entered'": ("ix_call_events_entered",),
        }
        for stmt, params in sent:
            flat = " ".join(stmt.split())
            for marker, indexes in list(wanted.items()):
                if marker not in flat:
                    continue
                if db.dialect.name == "sqlite":
                    found = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + stmt, params)
                    plan = "\n".join(r[3] for r in found)
                else:  # on a few rows a scan is cheaper: asked to do without one
                    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
                    plan = "\n".join(conn.exec_driver_sql("EXPLAIN " + stmt, params).scalars())
                for index in indexes:
                    assert index in plan, (index, flat, plan)
                del wanted[marker]
        conn.rollback()
    assert wanted == {}  # each statement was seen


def test_the_partial_indexes_hold_every_node_kind_the_containment_reads() -> None:
    assert set(stats.SELF_HELP_KINDS + stats.AGENT_KINDS) == set(ENTERED_NODE_KINDS)


# -- what the figures read alone of a row (`stats._read`) ---------------------------------------


ADVICE = [*MENU, ("advice", "say")]  # self-help heard: contained, if nothing else


def test_a_topic_that_is_no_string_is_no_topic(db: Engine) -> None:
    """The figures read a call's facts.topic alone, not its state: a state mended by hand
    whose topic is a number, empty, or whose facts are no object has no topic, as before."""
    with db.begin() as conn:
        add_call(conn, "fees", started=at(0), ended=at(60), topic="fees", entered=ADVICE)
        for name, facts in (("number", {"topic": 5}), ("empty", {"topic": ""}), ("list", [1])):
            add_call(conn, name, started=at(0), ended=at(60), entered=ADVICE)
            conn.execute(
                update(calls)
                .where(calls.c.call_sid == sid(name))
                .values(state={"node": "advice", "facts": facts})
            )
    r = report(db)
    assert r.top_topics == [("fees", 1)]
    assert (r.calls, r.completed_calls, r.contained_calls) == (4, 4, 1)  # a topic is asked


def test_a_call_whose_case_was_opened_after_the_period_was_not_contained(db: Engine) -> None:
    """Its case is not among the period's, and still it reached a person: looked up."""
    with db.begin() as conn:
        add_call(
            conn,
            "late",
            started=END - SECOND,
            ended=END + 60 * SECOND,
            topic="fees",
            entered=ADVICE,
        )
        add_case(
            conn,
            "late",
            queue="payments",
            priority="normal",
            created=END + SECOND,
            status="waiting",
        )
        add_call(conn, "kept", started=at(0), ended=at(60), topic="fees", entered=ADVICE)
    r = report(db)
    assert (r.completed_calls, r.contained_calls) == (2, 1)  # kept only


def test_times_a_hair_before_a_whole_second_count_to_the_microsecond(db: Engine) -> None:
    """SQLite's strftime rounds a time to the millisecond: 10:09:59.999999 read whole would
    be 10:10:00.999999. The figures read their times as microseconds, on both databases."""
    hair = timedelta(microseconds=999_999)
    with db.begin() as conn:
        alice = add_agent(conn, "alice")
        for when, since in ((at(599) + hair, at(599) + hair), (at(601), None)):
            conn.execute(
                insert(presence_changes).values(user_id=alice, at=when, available_since=since)
            )
        add_call(conn, "A", started=at(0), ended=at(900))
        add_case(
            conn,
            "A",
            queue="payments",
            priority="normal",
            created=at(59) + hair,
            status="resolved",
            claimed_from="waiting",
            connected=at(119) + hair,
            ended=at(400),
        )
    with db.connect() as conn:
        assert stats.time_available(conn, start=START, end=END) == {"alice": 1.000001}
    r = report(db)
    assert r.overall.average_speed_of_answer_seconds == 60.0
    assert r.overall.average_handle_time_seconds == 280.000001  # 400 - 119.999999


def test_a_talk_without_its_end_is_no_talk(db: Engine) -> None:
    """A leg missing when it ended (a row mended by hand) is left out, as one that is no
    leg: its line is not offered, its agent handled nothing."""
    unended = {
        "queue": "payments",
        "priority": "normal",
        "from": "waiting",
        "agent": "alice",
        "entered_at": at(0).isoformat(),
        "connected_at": at(30).isoformat(),
        "answered_at": at(35).isoformat(),
    }
    with db.begin() as conn:
        add_case(
            conn,
            "E1",
            queue="security",
            priority="normal",
            created=at(0),
            status="resolved",
            claimed_from="waiting",
            connected=at(400),
            ended=at(500),
        )
        conn.execute(update(cases).where(cases.c.call_sid == sid("E1")).values(legs=[unended]))
    r = report(db)
    assert list(r.by_queue) == ["security"]
    assert (r.overall.offered, r.overall.answered) == (1, 1)
    assert "alice" not in r.by_agent
