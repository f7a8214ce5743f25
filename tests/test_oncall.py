"""Paging the on-call (`ivr.oncall`, `Hotline.page_on_call`): an emergency left waiting texts
the on-call numbers through Twilio once, whichever instance sees it first, and again only
after IVR_PAGE_REPEAT while emergencies keep waiting; nothing about the caller goes in it."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from lxml import html
from pydantic import ValidationError
from sqlalchemy import Engine, delete, event, select

from ivr import oncall
from ivr.db import audit_log, cases, create_db_engine, pages, users
from ivr.phone import Phone, Press, ScriptedParty, Silent
from ivr.tree import CompiledTree
from ivr.web import Following, Paging
from tests.conftest import (
    CALLER_ID,
    HTTPS_CLIENT,
    PUBLIC_URL,
    TOKEN,
    FakeClock,
    RecordingTwilio,
    bearer,
    eventually,
    make_settings,
    make_user,
)
from tests.support.parties import Caller
from tests.support.twilio import app_with_twilio, on_the_line, placed_calls, texts

ON_CALL = ("+15005550100", "+15005550101")
VICTIM = "+15005550006"
SKIPS_VERIFYING = [Press("1"), Press("1"), Press("*")]  # English, account stolen, skip
DEPOSITS = [Press("1"), Press("3"), Press("1"), Press("1")]  # a routine question


def hijacked(phone: Phone, number: str = VICTIM) -> None:
    """A hijack victim who skips verifying, reaches the emergency queue and hangs up there:
    their case stays in the emergency lane, for a call back."""
    phone.call(Caller(SKIPS_VERIFYING, lambda poll: False), from_number=number)


def paging_app(
    database_url: str,
    tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    twilio: RecordingTwilio,
    **settings: object,
) -> FastAPI:
    """The app with on-call numbers, its REST client on a recording transport."""
    paging: dict[str, object] = {"IVR_PAGE_NUMBERS": ",".join(ON_CALL)}
    return app_with_twilio(database_url, tree, db, clock, twilio, **{**paging, **settings})


@pytest.fixture
def line(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    twilio_http: RecordingTwilio,
    check_twiml: Callable[[str], None],
) -> Iterator[tuple[TestClient, Phone]]:
    # The tests look by hand (`look`), at the moments they say: the app's own timed jobs,
    # every IVR_TREE_SYNC, would page in between on a slow run. (An hour: the staffing
    # counted by `look` is fresh for two of them, as it would be for 10 s at the default.)
    app = paging_app(database_url, hotline_tree, db, clock, twilio_http, IVR_TREE_SYNC=3600)
    with on_the_line(app, check_twiml) as line:
        yield line


def page_rows(db: Engine) -> list[dict[str, Any]]:
    with db.connect() as conn:
        return [dict(r) for r in conn.execute(select(pages).order_by(pages.c.turn)).mappings()]


def case_rows(db: Engine) -> list[dict[str, Any]]:
    with db.connect() as conn:
        return [dict(r) for r in conn.execute(select(cases).order_by(cases.c.id)).mappings()]


def look(hotline: Any) -> int | None:
    """What every instance does every IVR_TREE_SYNC seconds (`Following`), in its order:
    count the agents at work, then page if an emergency has waited too long."""
    hotline.refresh_staffing()
    page: int | None = hotline.page_on_call()
    return page


def test_an_emergency_left_waiting_texts_the_on_call_once(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """bob is on a call back; a hijack victim holds. While they have waited less than
    IVR_PAGE_AFTER (60 s) nobody is paged (bob may be done soon); then each on-call number
    gets one text, and no more while the victim waits on, within IVR_PAGE_REPEAT (15 min)."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    phone.call(Caller(DEPOSITS, lambda poll: False), from_number="+15005550008")
    bob = make_user(db, "bob", "agent", "+15005558888")
    assert client.post("/api/agents/next", headers=bearer(bob)).json()["case"] is not None
    rounds: list[tuple[timedelta, int | None]] = []

    def holds(poll: int) -> bool:
        clock.advance(seconds=15)
        victims = [c for c in case_rows(db) if c["priority"] == "emergency"]
        rounds.append((clock() - victims[0]["created_at"], look(hotline)))
        return poll < 12  # three minutes

    phone.call(Caller(SKIPS_VERIFYING, holds), from_number=VICTIM)
    early = [page for waited, page in rounds if waited < timedelta(seconds=60)]
    assert early and early == [None] * len(early)
    assert rounds[len(early)][1] is not None  # the first round past a minute
    assert [page for _, page in rounds if page is not None] == [rounds[len(early)][1]]
    sent = texts(twilio_http)
    assert [(t["To"], t["From"]) for t in sent] == [(n, CALLER_ID) for n in ON_CALL]
    [case] = [c for c in case_rows(db) if c["priority"] == "emergency"]
    body = sent[0]["Body"]
    assert body == sent[1]["Body"]
    [page] = page_rows(db)
    assert body == (
        f"Hotline: 1 emergency caller waiting, the longest 1 min 0 s (ticket {case['ticket']}, "
        f"en). Agents available: 0, at work: 1. Coming? Reply {page['ack_code']}. "
        f"{PUBLIC_URL}/dashboard/queue"
    )
    assert (page["result"], page["sent"], page["failed"]) == ("sent", 2, 0)
    assert (page["case_id"], page["waiting"], page["waited_seconds"]) == (case["id"], 1, 60)
    assert 'ivr_pages_total{by="sms",result="sent"} 2.0' in client.get("/metrics").text
    sam = make_user(db, "sam", "supervisor")
    listed = client.get("/api/oncall/pages", headers=bearer(sam))
    assert listed.status_code == 200
    assert [(p["ticket"], p["result"], p["sent"]) for p in listed.json()] == [
        (case["ticket"], "sent", 2)
    ]
    alice = make_user(db, "alice", "agent")
    assert client.get("/api/oncall/pages", headers=bearer(alice)).status_code == 403
    # The queue page's live part says it to supervisors, for an hour.
    client.post("/dashboard/login", data={"token": sam}, follow_redirects=False)
    shown = client.get("/dashboard/queue/rows").text
    assert "The on-call were paged at" in shown and "texted to 2 numbers" in shown
    assert f'ticket <span class="mono">{case["ticket"]}</span>' in shown
    clock.advance(hours=1)
    assert "paged" not in client.get("/dashboard/queue/rows").text


def test_a_caller_moved_into_the_emergency_lane_after_a_page_is_paged_for(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """A deposits caller has waited 20 minutes when a victim calls; the on-call are paged
    about the victim, whom alice takes. Then a supervisor learns the deposits caller is a
    hijack victim too and moves them to the emergency lane: nobody was paged about them, so
    once they have waited IVR_PAGE_AFTER there they are paged for, not held back by the page
    before until its hold ends. The page counts their wait from the move."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    phone.call(Caller(DEPOSITS, lambda poll: False), from_number="+15005550008")
    clock.advance(minutes=20)
    hijacked(phone)
    first = look(hotline)
    assert first is not None  # nobody at work: at once
    alice = make_user(db, "alice", "agent", "+15005558888")
    taken = client.post("/api/agents/next", headers=bearer(alice)).json()["case"]
    assert taken["priority"] == "emergency"
    sam = make_user(db, "sam", "supervisor")
    [deposits] = [c for c in case_rows(db) if c["priority"] != "emergency"]
    clock.advance(seconds=30)
    moved = client.post(
        f"/api/cases/{deposits['id']}/priority",
        headers=bearer(sam),
        json={"priority": "emergency", "reason": "their account is being emptied"},
    )
    assert moved.status_code == 200
    clock.advance(seconds=59)
    assert look(hotline) is None  # alice is at work: IVR_PAGE_AFTER from the move
    clock.advance(seconds=1)
    second = look(hotline)
    assert second is not None and second != first
    assert (page_rows(db)[-1]["case_id"], page_rows(db)[-1]["waited_seconds"]) == (
        deposits["id"],
        60,
    )


PAGES_FROM = "+15005550150"
SERVICE = "MG" + "ab" * 16


@pytest.mark.parametrize(
    ("page_from", "texted_as", "rung_from"),
    [
        (PAGES_FROM, {"From": PAGES_FROM}, PAGES_FROM),
        (SERVICE, {"MessagingServiceSid": SERVICE}, CALLER_ID),
    ],
)
def test_pages_come_from_their_own_sender_and_go_stale_before_the_next(
    page_from: str,
    texted_as: dict[str, str],
    rung_from: str,
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    twilio_http: RecordingTwilio,
    check_twiml: Callable[[str], None],
) -> None:
    """Ticket texts go from IVR_CALLER_ID, a queue of its own at Twilio (about one a second):
    pages from IVR_PAGE_FROM do not wait behind hundreds of them on a hack day. A Messaging
    Service sends texts only: the page's call comes from IVR_CALLER_ID. A page text still
    queued when the next page is due (IVR_PAGE_UNACKED) is failed by Twilio, not delivered
    stale."""
    app = paging_app(
        database_url,
        hotline_tree,
        db,
        clock,
        twilio_http,
        IVR_TREE_SYNC=3600,
        IVR_PAGE_FROM=page_from,
        IVR_PAGE_CALL=True,
        IVR_PAGE_UNACKED=240,
    )
    with on_the_line(app, check_twiml) as (client, phone):
        hijacked(phone)
        clock.advance(seconds=5)
        assert look(client.app.state.hotline) is not None  # type: ignore[attr-defined]
    sent = texts(twilio_http)
    assert [t["To"] for t in sent] == list(ON_CALL)
    for text in sent:
        assert {k: text.get(k) for k in texted_as} == texted_as
        assert ("From" in text, "MessagingServiceSid" in text) == (
            "From" in texted_as,
            "MessagingServiceSid" in texted_as,
        )
        assert str(text["ValidityPeriod"]) == "240"
    assert [(c["To"], c["From"]) for c in placed_calls(twilio_http)] == [
        (n, rung_from) for n in ON_CALL
    ]


def test_a_messaging_service_cannot_ring_the_on_call() -> None:
    with pytest.raises(ValidationError, match="IVR_PAGE_CALL needs a number to ring"):
        make_settings(
            IVR_PAGE_NUMBERS="+15005550100",
            TWILIO_ACCOUNT_SID="AC" + "0" * 32,
            IVR_CALLER_ID=None,
            IVR_PAGE_FROM=SERVICE,
            IVR_PAGE_CALL=True,
        )
    texts_only = make_settings(
        IVR_PAGE_NUMBERS="+15005550100",
        TWILIO_ACCOUNT_SID="AC" + "0" * 32,
        IVR_CALLER_ID=None,
        IVR_PAGE_FROM=SERVICE,
    )
    assert texts_only.page_caller_id is None
    with pytest.raises(ValidationError, match="IVR_PAGE_FROM"):
        make_settings(IVR_PAGE_FROM="MG123")


def test_with_nobody_at_work_the_page_comes_at_once_and_again_while_unacknowledged(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """At night nobody is at work: waiting IVR_PAGE_AFTER for an agent who is not there helps
    nobody, so the on-call are texted at the first look. Two victims hung up; they are still
    in the emergency lane, for a call back, and nobody's until an agent takes them: nobody
    said they are coming, so the on-call are texted again once IVR_PAGE_UNACKED (5 min) has
    passed, not IVR_PAGE_REPEAT (15 min). Once agents have taken both, nobody is paged."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    for number in (VICTIM, "+15005550007"):
        hijacked(phone, number)
    clock.advance(seconds=5)
    assert look(hotline) is not None
    assert "2 emergency callers waiting, the longest 5 s" in texts(twilio_http)[0]["Body"]
    assert "Agents available: 0, at work: 0" in texts(twilio_http)[0]["Body"]
    clock.advance(seconds=299)
    assert look(hotline) is None and len(texts(twilio_http)) == 2
    clock.advance(seconds=1)
    assert look(hotline) is not None
    again = texts(twilio_http)[2:]
    assert [t["To"] for t in again] == list(ON_CALL)
    assert "2 emergency callers waiting, the longest 5 min 5 s" in again[0]["Body"]
    assert [p["turn"] for p in page_rows(db)] == [1, 2]
    for name, phone_number in (("alice", "+15005559999"), ("bob", "+15005558888")):
        agent = make_user(db, name, "agent", phone_number)
        taken = client.post("/api/agents/next", headers=bearer(agent))
        assert taken.json()["case"]["priority"] == "emergency"  # Twilio calls them back
    clock.advance(hours=1)
    assert look(hotline) is None and len(texts(twilio_http)) == 4


def test_routine_callers_and_emergencies_an_agent_has_page_nobody(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """A routine question waiting an hour is the service level's concern, not the on-call's;
    nor is an emergency an agent has taken."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    phone.call(Caller(DEPOSITS, lambda poll: False), from_number="+15005550008")
    clock.advance(hours=1)
    assert hotline.page_on_call() is None
    hijacked(phone)
    alice = make_user(db, "alice", "agent", "+15005559999")
    taken = client.post("/api/agents/next", headers=bearer(alice))
    assert taken.json()["case"]["priority"] == "emergency"
    clock.advance(hours=1)
    assert hotline.page_on_call() is None
    assert texts(twilio_http) == [] and page_rows(db) == []


def test_of_two_instances_one_pages(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    line: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
) -> None:
    """Every instance looks; the first to see the wait takes the page's turn, and the other
    finds it taken: the on-call get one text each, not one from each instance."""
    client, phone = line
    other_http = RecordingTwilio()
    other = paging_app(database_url, hotline_tree, db, clock, other_http).state.hotline
    hijacked(phone)
    clock.advance(minutes=2)
    first = client.app.state.hotline.page_on_call()  # type: ignore[attr-defined]
    assert first is not None and other.page_on_call() is None
    assert len(texts(twilio_http)) == 2 and texts(other_http) == []


def test_two_instances_writing_the_same_turn_at_once_page_once(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    line: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
) -> None:
    """Both read that no page was sent, and both write the first turn: the second write is
    refused (the turn is unique), and that instance sends nothing."""
    client, phone = line
    hijacked(phone)
    clock.advance(minutes=2)
    other_http = RecordingTwilio()
    second = create_db_engine(database_url)  # the other instance's own connections
    other = paging_app(database_url, hotline_tree, second, clock, other_http).state.hotline
    raced: list[int | None] = []

    def meanwhile(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # This instance has read the last turn and is about to write the next: the other
        # instance pages in between, start to finish.
        if statement.startswith("INSERT INTO pages") and not raced:
            raced.append(other.page_on_call())

    event.listen(db, "before_cursor_execute", meanwhile)
    try:
        assert client.app.state.hotline.page_on_call() is None  # type: ignore[attr-defined]
    finally:
        event.remove(db, "before_cursor_execute", meanwhile)
        second.dispose()
    assert raced[0] is not None
    assert texts(twilio_http) == [] and len(texts(other_http)) == 2
    assert [p["turn"] for p in page_rows(db)] == [1]


def test_an_instance_that_stops_while_paging_leaves_the_page_to_another(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    line: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
) -> None:
    """An instance took the page's turn and stopped before sending (a deploy, a crash): the
    turn holds the next back only as long as sending may take, not IVR_PAGE_REPEAT."""
    client, phone = line
    hijacked(phone)
    clock.advance(minutes=2)
    with db.connect() as conn:
        late = oncall.overdue(conn, now=clock(), after=timedelta(minutes=1))
        assert late is not None
        gone = oncall.take_turn(conn, now=clock(), overdue=late, sending=oncall.sending_at_most(2))
    assert gone is not None  # and nothing more: the instance is gone
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    clock.advance(seconds=119)
    assert look(hotline) is None
    clock.advance(seconds=1)  # 30 s, and 45 s for each of the two texts
    assert look(hotline) is not None
    assert len(texts(twilio_http)) == 2
    assert [p["result"] for p in page_rows(db)] == ["sending", "sent"]


def test_the_running_server_pages_by_itself(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    twilio_http: RecordingTwilio,
    check_twiml: Callable[[str], None],
) -> None:
    """Nobody calls `page_on_call` here: the server's own timed jobs count nobody at work
    and page about the victim who just joined the line."""
    app = paging_app(database_url, hotline_tree, db, clock, twilio_http, IVR_TREE_SYNC=0.05)
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        hijacked(phone)
        eventually(lambda: page_rows(db) and page_rows(db)[0]["result"] == "sent")
    assert [t["To"] for t in texts(twilio_http)] == list(ON_CALL)


def test_a_count_of_nobody_at_work_that_is_not_fresh_does_not_page_at_once(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    twilio_http: RecordingTwilio,
    check_twiml: Callable[[str], None],
) -> None:
    """The instance counted nobody at work as it started; alice has made herself available
    since, but the count has not been made again (the database failing for that job, say).
    An old count (older than two IVR_TREE_SYNC, the default 5 s here) is no reason to page
    at once: the emergency waits IVR_PAGE_AFTER."""
    app = paging_app(database_url, hotline_tree, db, clock, twilio_http)
    with on_the_line(app, check_twiml) as (client, phone):
        hotline = client.app.state.hotline  # type: ignore[attr-defined]
        assert hotline.staffing.agents == 0  # counted at start-up
        alice = make_user(db, "alice", "agent", "+15005559999")
        client.put("/api/agents/presence", headers=bearer(alice), json={"available": True})
        hijacked(phone)
        clock.advance(seconds=30)
        asyncio.run(Paging()(hotline))
        assert texts(twilio_http) == []
        clock.advance(seconds=30)
        asyncio.run(Paging()(hotline))
        assert len(texts(twilio_http)) == 2


def test_a_call_back_held_back_until_its_retry_time_pages_nobody_until_then(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """A victim hung up; bob called them back at once and they did not answer: their case
    keeps its place, but nobody may take it for IVR_CALLBACK_RETRY (300 s). Nobody is late
    for it meanwhile; once it may be taken again, it is the on-call's concern."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone)
    bob = make_user(db, "bob", "agent", "+15005558888")
    taken = client.post("/api/agents/next", headers=bearer(bob)).json()
    assert taken["connect"]["mode"] == "calling_back"
    [placed] = [data for _, url, data in twilio_http.requests if url.endswith("/Calls.json")]
    missed = {"CallSid": twilio_http.sids[-1], "AccountSid": "AC" + "0" * 32}
    answer = phone.signed_post(placed["StatusCallback"], {**missed, "CallStatus": "no-answer"})
    assert answer.status_code == 204
    [case] = case_rows(db)
    assert (case["queued"], case["not_before"]) == (1, clock() + timedelta(seconds=300))
    clock.advance(seconds=299)
    assert look(hotline) is None and texts(twilio_http) == []
    clock.advance(seconds=1)
    assert look(hotline) is not None
    assert "the longest 5 min 0 s" in texts(twilio_http)[-1]["Body"]


def test_the_first_in_line_has_waited_longest_from_their_place(
    db: Engine, clock: FakeClock
) -> None:
    """A victim who calls again takes their earlier call back's place in line: they have
    waited since then, though their case is new. That is the wait the page is about."""
    now = clock()
    with db.begin() as conn:
        for n, (created, place) in enumerate(
            [
                (now - timedelta(seconds=30), now - timedelta(minutes=10)),
                (now - timedelta(minutes=5), now - timedelta(minutes=5)),
            ]
        ):
            conn.execute(
                cases.insert().values(
                    ticket=str(2_000_000 + n),
                    call_sid="CA" + str(n) * 32,
                    reason="account_stolen",
                    queue="security",
                    priority="emergency",
                    lane=0,
                    sort_at=place,
                    queued=1,
                    status="waiting",
                    flags={},
                    path=[],
                    created_at=created,
                )
            )
    with db.connect() as conn:
        late = oncall.overdue(conn, now=now, after=timedelta(minutes=1))
    assert late is not None
    assert (late.ticket, late.waited, late.waiting) == ("2000000", timedelta(minutes=10), 2)


def test_a_page_twilio_refuses_is_tried_again_a_minute_later(
    line: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone)
    clock.advance(minutes=2)
    twilio_http.refuse = True
    with caplog.at_level(logging.WARNING, logger="ivr.hotline"):
        assert hotline.page_on_call() is not None
    [page] = page_rows(db)
    assert (page["result"], page["sent"], page["failed"]) == ("failed", 0, 2)
    assert any("no on-call number could be paged" in r.getMessage() for r in caplog.records)
    assert 'ivr_pages_total{by="sms",result="failed"} 2.0' in client.get("/metrics").text
    twilio_http.refuse = False
    clock.advance(seconds=59)
    assert hotline.page_on_call() is None
    clock.advance(seconds=1)
    assert hotline.page_on_call() is not None
    assert [(p["result"], p["sent"]) for p in page_rows(db)] == [("failed", 0), ("sent", 2)]


def test_pages_that_keep_reaching_nobody_come_less_and_less_often(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """A carrier filtering the texts, numbers out of service: a text a minute all night
    mends nothing. Each page in a row that reaches nobody doubles the wait for the next (1,
    2, 4, then 8 minutes at most); one that reaches someone starts again at a minute."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone)
    clock.advance(minutes=2)
    twilio_http.refuse = True
    gaps = []
    for _ in range(5):
        at = clock()
        assert hotline.page_on_call() is not None
        [*_, page] = page_rows(db)
        gaps.append((page["next_at"] - at).total_seconds() / 60)
        clock.advance(seconds=int((page["next_at"] - at).total_seconds()) - 1)
        assert hotline.page_on_call() is None  # not a second early
        clock.advance(seconds=1)
    assert gaps == [1, 2, 4, 8, 8]
    # Another outage a day later starts again at a minute: last night's does not count.
    clock.advance(days=1)
    assert hotline.page_on_call() is not None
    [*_, page] = page_rows(db)
    assert (page["result"], page["next_at"] - clock()) == ("failed", timedelta(minutes=1))
    clock.advance(minutes=1)
    twilio_http.refuse = False
    assert hotline.page_on_call() is not None
    assert page_rows(db)[-1]["result"] == "sent"


def test_without_numbers_the_page_is_an_error_in_the_log(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    twilio_http: RecordingTwilio,
    check_twiml: Callable[[str], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No IVR_PAGE_NUMBERS: the page is logged as an error (what log alerts watch), once per
    IVR_PAGE_REPEAT, naming the ticket and never the caller's number."""
    app = paging_app(database_url, hotline_tree, db, clock, twilio_http, IVR_PAGE_NUMBERS="")
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        hijacked(phone)
        clock.advance(minutes=5)
        with caplog.at_level(logging.WARNING, logger="ivr.hotline"):
            assert app.state.hotline.page_on_call() is not None
            assert app.state.hotline.page_on_call() is None
    [case] = case_rows(db)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and case["ticket"] in errors[0]
    assert "IVR_PAGE_NUMBERS is not set" in errors[0] and "0006" not in errors[0]
    assert "Reply" not in errors[0]  # nobody to reply
    assert texts(twilio_http) == []
    assert [(p["result"], p["sent"], p["failed"]) for p in page_rows(db)] == [("logged", 0, 0)]


def test_each_instance_looks_every_tree_sync(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """The jobs every instance runs every IVR_TREE_SYNC seconds count the agents at work
    (`Following`), which the text names, and page (`Paging`)."""
    client, phone = line
    hijacked(phone)
    alice = make_user(db, "alice", "agent", "+15005559999")
    client.put("/api/agents/presence", headers=bearer(alice), json={"available": False})
    bob = make_user(db, "bob", "agent", "+15005558888")
    busy = client.post("/api/agents/next", headers=bearer(bob))
    assert busy.json()["case"]["priority"] == "emergency"
    hijacked(phone, "+15005550007")
    clock.advance(minutes=2)
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    asyncio.run(Following()(hotline))
    asyncio.run(Paging()(hotline))
    [body] = {t["Body"] for t in texts(twilio_http)}
    assert "1 emergency caller waiting, the longest 2 min 0 s" in body
    assert "Agents available: 0, at work: 1" in body  # bob, on the other victim's case


def test_with_page_call_the_on_call_are_rung_too(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    twilio_http: RecordingTwilio,
    check_twiml: Callable[[str], None],
) -> None:
    """IVR_PAGE_CALL: each on-call number is texted and rung, and hears the page twice
    (TwiML given with the call: nothing of ours to fetch), the ticket digit by digit."""
    app = paging_app(database_url, hotline_tree, db, clock, twilio_http, IVR_PAGE_CALL=True)
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        hijacked(phone)
        clock.advance(seconds=65)
        assert look(app.state.hotline) is not None
        metrics = client.get("/metrics").text
    [case] = case_rows(db)
    calls = [data for _, url, data in twilio_http.requests if url.endswith("/Calls.json")]
    assert [(c["To"], c["From"]) for c in calls] == [(n, CALLER_ID) for n in ON_CALL]
    assert len(texts(twilio_http)) == 2
    twiml = calls[0]["Twiml"]
    check_twiml(twiml)
    spoken = (
        "Support hotline emergency. 1 emergency caller waiting, the longest 1 minute 5 "
        f"seconds. Ticket {' '.join(case['ticket'])}. Agents available: 0. At work: 0."
    )
    assert twiml.count(spoken) == 2 and "<Hangup" in twiml and VICTIM not in twiml
    assert 'ivr_pages_total{by="call",result="sent"} 2.0' in metrics
    assert [(p["result"], p["sent"]) for p in page_rows(db)] == [("sent", 2)]  # numbers


@pytest.mark.parametrize(
    ("numbers", "refused"),
    [
        ("+15005550100,5550101", "5550101"),
        ("+15005550100;+15005550101", "+15005550100;+15005550101"),
    ],
)
def test_on_call_numbers_are_checked_at_start(numbers: str, refused: str) -> None:
    with pytest.raises(ValidationError, match=r"E\.164") as caught:
        make_settings(IVR_PAGE_NUMBERS=numbers, TWILIO_ACCOUNT_SID="AC" + "0" * 32)
    assert refused in str(caught.value)


def test_on_call_numbers_need_twilio_to_text_them() -> None:
    with pytest.raises(ValidationError, match="IVR_PAGE_NUMBERS needs TWILIO_ACCOUNT_SID"):
        make_settings(IVR_PAGE_NUMBERS="+15005550100")
    with pytest.raises(ValidationError, match="IVR_CALLER_ID"):
        make_settings(
            IVR_PAGE_NUMBERS="+15005550100", TWILIO_ACCOUNT_SID="AC" + "0" * 32, IVR_CALLER_ID=None
        )
    spaced = make_settings(
        IVR_PAGE_NUMBERS=" +15005550100 , +15005550101,+15005550100",
        TWILIO_ACCOUNT_SID="AC" + "0" * 32,
    )
    assert spaced.page_numbers == ON_CALL  # the same phone is paged once
    with pytest.raises(ValidationError, match="IVR_PAGE_CALL needs IVR_PAGE_NUMBERS"):
        make_settings(IVR_PAGE_CALL=True)


# -- acknowledging a page ---------------------------------------------------------------------


@pytest.fixture
def ringing(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    twilio_http: RecordingTwilio,
    check_twiml: Callable[[str], None],
) -> Iterator[tuple[TestClient, Phone]]:
    """The hotline with IVR_PAGE_CALL: the on-call numbers are rung as well as texted."""
    app = paging_app(database_url, hotline_tree, db, clock, twilio_http, IVR_PAGE_CALL=True)
    with on_the_line(app, check_twiml) as line:
        yield line


def test_the_on_call_who_presses_1_is_coming_and_the_others_are_told(
    ringing: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """A victim waits with nobody at work: both on-call phones ring. The first answers four
    minutes later, hears the page and presses 1: the page is theirs, the other number is
    texted who is coming, and the next page waits IVR_PAGE_REPEAT from the key, not from
    the page. The second phone, answered after, hears who acknowledged it; nothing more is
    sent. Nobody comes after all: the victim still waits 15 minutes after the key, and the
    on-call are paged again."""
    client, phone = ringing
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone)
    clock.advance(seconds=5)
    page_id = look(hotline)
    assert page_id is not None
    first, second = placed_calls(twilio_http)
    assert [first["To"], second["To"]] == list(ON_CALL)
    texted = len(texts(twilio_http))
    clock.advance(minutes=4)  # within IVR_PAGE_UNACKED: the page is in force
    answered = phone.answer(first, ScriptedParty([Press("1")]))
    assert "Support hotline emergency." in answered.heard[0]
    assert "Press 1 if you are coming." in answered.heard
    assert answered.heard[-1].startswith("Thank you: the page is acknowledged")
    assert answered.ended_by == "hotline"
    [page] = page_rows(db)
    assert (page["acked_by"], page["acked_at"]) == (ON_CALL[0], clock())
    [told] = eventually(lambda: texts(twilio_http)[texted:])  # the other number only
    assert told["To"] == ON_CALL[1]
    assert told["Body"] == (
        f"Hotline: the page of {page['at']:%H:%M} UTC was acknowledged by {ON_CALL[0]} at "
        f"{clock():%H:%M} UTC: they are coming. {PUBLIC_URL}/dashboard/queue"
    )
    metrics = client.get("/metrics").text
    assert 'ivr_page_acks_total{by="phone"} 1.0' in metrics
    assert 'ivr_page_ack_texts_total{result="sent"} 1.0' in metrics
    assert 'ivr_pages_total{by="sms",result="sent"} 2.0' in metrics  # the page's own

    later = phone.answer(second, ScriptedParty([Press("1")]))
    assert later.heard[-1] == (
        f"This page was acknowledged already, by the phone ending in 0 1 0 0, at "
        f"{page['acked_at']:%H:%M} UTC. Thank you."
    )
    assert len(texts(twilio_http)) == texted + 1 and page_rows(db)[0]["acked_by"] == ON_CALL[0]

    sam = make_user(db, "sam", "supervisor")
    [listed] = client.get("/api/oncall/pages", headers=bearer(sam)).json()
    assert (listed["id"], listed["acked_by"]) == (page_id, ON_CALL[0])
    client.post("/dashboard/login", data={"token": sam}, follow_redirects=False)
    shown = client.get("/dashboard/queue/rows").text
    assert f"{ON_CALL[0]} is coming" in shown and "I am coming" not in shown

    clock.advance(minutes=14)  # 18 minutes after the page, 14 after the key
    assert look(hotline) is None
    clock.advance(minutes=1)
    assert look(hotline) is not None
    assert [p["turn"] for p in page_rows(db)] == [1, 2]


def test_an_on_call_number_texting_the_pages_code_back_says_they_are_coming(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """Woken by the page's text, the on-call answer it: its code, as the text asks, is as
    good as 1 on the page's call. A stranger's text gets no answer (SMS pumping), and no
    sender alone acknowledges anything (a sender can be forged): the code of the page in
    force does, which only the texts carried. A page no longer in force is over; the other
    number is told who is coming, and the one who texted is answered by text."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone)
    clock.advance(seconds=5)
    assert look(hotline) is not None
    [first] = page_rows(db)
    assert first["ack_code"] is not None and len(first["ack_code"]) == oncall.ACK_CODE_DIGITS
    assert all(f"Coming? Reply {first['ack_code']}." in t["Body"] for t in texts(twilio_http))
    clock.advance(seconds=900)  # nobody said they were coming: paged again
    assert look(hotline) is not None
    [_, second] = page_rows(db)
    assert second["ack_code"] != first["ack_code"]
    texted = len(texts(twilio_http))

    stranger = "+15005550199"
    assert phone.text(second["ack_code"], from_number=stranger) == []
    assert phone.text("1", from_number=ON_CALL[0]) == [oncall.REPLY_HOW]
    wrong = f"{(int(second['ack_code']) + 1) % 10**6:06d}"
    assert phone.text(f"coming {wrong}", from_number=ON_CALL[1]) == [oncall.REPLY_HOW]
    # Told how to reply once per REPLY_EVERY (`test_an_auto_reply_is_answered_once...`).
    assert phone.text(first["ack_code"], from_number=ON_CALL[0]) == []
    assert [p["acked_at"] for p in page_rows(db)] == [None, None]
    assert len(texts(twilio_http)) == texted  # nothing sent but the answers

    clock.advance(minutes=2)
    [answer] = phone.text(f"Coming, {second['ack_code']}!", from_number=ON_CALL[0])
    assert answer == (
        f"Hotline: thank you, the page of {second['at']:%H:%M} UTC is acknowledged: the other "
        f"on-call numbers are told you are coming. {PUBLIC_URL}/dashboard/queue"
    )
    acked = page_rows(db)[1]
    assert (acked["acked_by"], acked["acked_at"]) == (ON_CALL[0], clock())
    [told] = eventually(lambda: texts(twilio_http)[texted:])  # the other number only
    assert told["To"] == ON_CALL[1] and f"acknowledged by {ON_CALL[0]}" in told["Body"]
    assert 'ivr_page_acks_total{by="sms"} 1.0' in client.get("/metrics").text
    assert phone.text(second["ack_code"], from_number=ON_CALL[0]) == [
        f"Hotline: you said you were coming to the page of {second['at']:%H:%M} UTC already, "
        f"at {clock():%H:%M} UTC."
    ]
    [already] = phone.text(second["ack_code"], from_number=ON_CALL[1])
    assert f"was acknowledged already, by {ON_CALL[0]} at {clock():%H:%M} UTC" in already
    assert len(texts(twilio_http)) == texted + 1 and page_rows(db)[1]["acked_by"] == ON_CALL[0]
    # The next page waits IVR_PAGE_REPEAT from the acknowledgement, not from the page.
    clock.advance(seconds=899)
    assert look(hotline) is None


def test_a_reply_that_quotes_the_page_back_acknowledges_nothing(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """An auto-responder (or a mail gateway) that sends the page's own text back has the
    page's code in it: nobody said they were coming, so the page stands, and the next one
    goes out on time. The same number keying the code in its own words still does."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone)
    clock.advance(seconds=5)
    assert look(hotline) is not None
    assert len(page_rows(db)) == 1
    [sent, *_] = [t["Body"] for t in texts(twilio_http) if t["To"] == ON_CALL[0]]
    assert phone.text(f"Auto-reply: I am away.\n> {sent}", from_number=ON_CALL[0]) == [
        oncall.REPLY_HOW
    ]
    assert phone.text(sent.lower(), from_number=ON_CALL[1]) == [oncall.REPLY_HOW]
    assert page_rows(db)[0]["acked_at"] is None
    clock.advance(seconds=900)
    assert look(hotline) is not None  # paged again: nobody is coming
    [_, second] = page_rows(db)
    [answer] = phone.text(f"on my way {second['ack_code']}", from_number=ON_CALL[0])
    assert "is acknowledged" in answer and page_rows(db)[1]["acked_by"] == ON_CALL[0]


def test_a_page_call_acknowledges_only_with_1(
    ringing: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """A voicemail that picks up presses nothing: the call ends, the page stands. A wrong key
    is asked again, once: another wrong one ends the call (a 1 after it would have been too
    late). Nobody is told anything, and the next page comes IVR_PAGE_REPEAT after the
    first."""
    client, phone = ringing
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone)
    clock.advance(seconds=5)
    assert look(hotline) is not None
    first, second = placed_calls(twilio_http)
    texted = len(texts(twilio_http))
    voicemail = phone.answer(first, ScriptedParty([Silent()]))
    keys = {"page-ack"}  # what the call asked; its status callback reports it answered
    asked = [url for url, _ in voicemail.requests if urlsplit(url).path.rsplit("/")[-1] in keys]
    assert voicemail.ended_by == "hotline" and asked == []
    fumbled = phone.answer(second, ScriptedParty([Press("5"), Press("9"), Press("1")]))
    assert fumbled.heard[-3:] == [
        "That was not 1.",
        "Press 1 if you are coming.",
        "That was not 1 either. Goodbye.",
    ]
    asked = [url for url, _ in fumbled.requests if urlsplit(url).path.rsplit("/")[-1] in keys]
    assert fumbled.ended_by == "hotline" and len(asked) == 2
    first_key, second_key = asked
    assert first_key.startswith(f"{PUBLIC_URL}/twilio/page-ack?page=")
    assert second_key == first_key + "&again=1"
    assert page_rows(db)[0]["acked_at"] is None and len(texts(twilio_http)) == texted
    clock.advance(seconds=900)
    assert look(hotline) is not None


def test_a_supervisor_says_they_are_coming_from_the_queue_page(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """The text's link leads to the queue page, where "I am coming" acknowledges the page:
    the page line says who is, the on-call numbers are texted (not the one that is the
    supervisor's own phone). Through the API, another supervisor is refused (409, saying
    who is coming), the same one is answered again, an agent is refused (403), an unknown
    page is 404."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone)
    clock.advance(seconds=5)
    page_id = look(hotline)
    texted = len(texts(twilio_http))
    sam = make_user(db, "sam", "supervisor", ON_CALL[1])
    client.post("/dashboard/login", data={"token": sam}, follow_redirects=False)
    shown = client.get("/dashboard/queue/rows").text
    assert "Nobody has said they are coming." in shown
    assert f'action="/dashboard/oncall/pages/{page_id}/ack"' in shown
    # The 3 a.m. control: a full-size button, not the browser's smallest default.
    [coming] = html.fromstring(shown).xpath("//button[normalize-space()='I am coming']")
    assert "primary" in coming.get("class", "").split()
    clock.advance(minutes=2)
    acked = client.post(
        f"/dashboard/oncall/pages/{page_id}/ack",
        headers={"Origin": "https://testserver"},
        follow_redirects=False,
    )
    assert acked.status_code == 303, acked.text
    assert "you are coming" in client.get(acked.headers["location"]).text
    assert "sam is coming" in client.get("/dashboard/queue/rows").text
    [told] = eventually(lambda: texts(twilio_http)[texted:])
    assert told["To"] == ON_CALL[0]
    assert f"acknowledged by sam at {clock():%H:%M} UTC" in told["Body"]
    assert 'ivr_page_acks_total{by="api"} 1.0' in client.get("/metrics").text

    kim = make_user(db, "kim", "supervisor")
    refused = client.post(f"/api/oncall/pages/{page_id}/ack", headers=bearer(kim))
    assert refused.status_code == 409
    assert refused.json()["detail"] == f"sam acknowledged it already, at {clock():%H:%M} UTC"
    again = client.post(f"/api/oncall/pages/{page_id}/ack", headers=bearer(sam))
    assert again.status_code == 200 and again.json()["acked_by"] == "sam"
    alice = make_user(db, "alice", "agent")
    assert client.post(f"/api/oncall/pages/{page_id}/ack", headers=bearer(alice)).status_code == 403
    assert client.post("/api/oncall/pages/999/ack", headers=bearer(sam)).status_code == 404
    assert len(texts(twilio_http)) == texted + 1


def test_an_acknowledgement_while_the_page_is_sent_holds(
    ringing: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """The first on-call phone answers and presses 1 while the hotline is still ringing the
    second: the page's own record of what it sent must not shorten the hold the key made."""
    client, phone = ringing
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone)
    clock.advance(seconds=5)
    pressed: list[object] = []

    def first_answers_meanwhile() -> None:
        calls = placed_calls(twilio_http)
        if len(calls) == 2 and not pressed:  # the second call is being placed
            clock.advance(seconds=30)
            pressed.append(phone.answer(calls[0], ScriptedParty([Press("1")])))

    twilio_http.meanwhile = first_answers_meanwhile
    assert look(hotline) is not None
    twilio_http.meanwhile = None
    assert pressed
    [page] = page_rows(db)
    assert (page["result"], page["acked_by"]) == ("sent", ON_CALL[0])
    assert page["next_at"] == page["acked_at"] + timedelta(seconds=900)


def test_a_page_that_is_over_cannot_be_acknowledged(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """The victim of a page is answered; half an hour later a supervisor still finds the
    page on the queue page. It is over: coming for it now would hold back the page for the
    next victim. So the page says it is over (no button), the API refuses it (409), nobody
    is texted, and a new victim is paged as soon as they have waited IVR_PAGE_AFTER."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone)
    clock.advance(seconds=5)
    old = look(hotline)
    alice = make_user(db, "alice", "agent", "+15005559999")
    assert client.post("/api/agents/next", headers=bearer(alice)).json()["case"] is not None
    clock.advance(minutes=30)
    assert look(hotline) is None
    texted = len(texts(twilio_http))
    sam = make_user(db, "sam", "supervisor")
    client.post("/dashboard/login", data={"token": sam}, follow_redirects=False)
    shown = client.get("/dashboard/queue/rows").text
    assert "the page is over" in shown and "I am coming" not in shown
    refused = client.post(f"/api/oncall/pages/{old}/ack", headers=bearer(sam))
    assert refused.status_code == 409 and "this page is over" in refused.json()["detail"]
    assert page_rows(db)[0]["acked_at"] is None
    clock.advance(minutes=1)
    hijacked(phone, "+15005550007")
    clock.advance(seconds=61)
    assert look(hotline) is not None
    assert len(texts(twilio_http)) == texted + len(ON_CALL)  # the new page, nothing else


def test_a_page_holds_back_the_next_only_while_someone_it_was_about_waits(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """A hack wave at night. X is paged for. Y joins while X waits: the on-call are coming
    to the line, so no second page within IVR_PAGE_REPEAT. An agent answers X: Y, first in
    line now, joined after the page, so nobody was told of Y, who is paged for at once (Y has
    waited longer than IVR_PAGE_AFTER). Z joins while Y waits: held back by Y's page. Y is
    answered: that page is over (coming for it would only hold back Z's), and Z is paged
    for, not once the 15 minutes of Y's page are up."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    sam = make_user(db, "sam", "supervisor")
    alice = make_user(db, "alice", "agent", "+15005559999")
    bob = make_user(db, "bob", "agent", "+15005558888")
    hijacked(phone)  # X
    clock.advance(seconds=5)
    assert look(hotline) is not None
    clock.advance(minutes=1)
    hijacked(phone, "+15005550007")  # Y
    for _ in range(3):
        clock.advance(seconds=61)
        assert look(hotline) is None  # X waits on, and the page is about them
    assert client.post("/api/agents/next", headers=bearer(alice)).json()["case"] is not None
    assert look(hotline) is not None
    y_page = page_rows(db)[1]
    [_, y] = case_rows(db)
    assert (y_page["case_id"], y_page["waiting"]) == (y["id"], 1)
    clock.advance(minutes=1)
    hijacked(phone, "+15005550008")  # Z
    clock.advance(seconds=61)
    assert look(hotline) is None  # Y waits on, and Y's page is about them
    assert client.post("/api/agents/next", headers=bearer(bob)).json()["case"]["id"] == y["id"]
    over = client.post(f"/api/oncall/pages/{y_page['id']}/ack", headers=bearer(sam))
    assert over.status_code == 409 and "this page is over" in over.json()["detail"]
    assert look(hotline) is not None
    z_page = page_rows(db)[2]
    assert z_page["case_id"] == case_rows(db)[2]["id"] and z_page["at"] - y_page["at"] < timedelta(
        minutes=3
    )


def test_only_the_latest_page_can_be_acknowledged(
    ringing: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """Nobody answered the first page's call; fifteen minutes on, the victim still waits and
    a second page goes out. The first page's call, answered now, is over: it says so and
    acknowledges nothing (the second page's hold is not touched); the second's works."""
    client, phone = ringing
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone)
    clock.advance(seconds=5)
    assert look(hotline) is not None
    clock.advance(seconds=900)
    assert look(hotline) is not None
    first_call, _, second_call, _ = placed_calls(twilio_http)
    late = phone.answer(first_call, ScriptedParty([Press("1")]))
    assert late.heard[-1].startswith("This page is over")
    assert [p["acked_at"] for p in page_rows(db)] == [None, None]
    held = page_rows(db)[1]["next_at"]
    clock.advance(minutes=1)
    taken = phone.answer(second_call, ScriptedParty([Press("1")]))
    assert taken.heard[-1].startswith("Thank you: the page is acknowledged")
    first, second = page_rows(db)
    assert first["acked_at"] is None and second["acked_by"] == ON_CALL[0]
    assert second["next_at"] == clock() + timedelta(seconds=900) > held


# -- what became of a page: Twilio's status callbacks --------------------------------------


def test_a_page_whose_texts_are_not_delivered_is_sent_again_a_minute_later(
    line: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Twilio took both texts, but a carrier filtered one (30007) and the other phone is off
    the network (30003): nobody was woken. Once both reports are in, the page is sent again a
    minute later, as one Twilio refused, not after IVR_PAGE_REPEAT (15 min). The same report
    delivered twice counts once; a supervisor sees which page reached nobody."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone)
    clock.advance(seconds=5)
    assert look(hotline) is not None
    first, second = texts(twilio_http)
    # One report address for the page's texts: the number each is about is its `To`.
    assert first["StatusCallback"] == second["StatusCallback"]
    assert first["StatusCallback"].startswith(f"{PUBLIC_URL}/twilio/page-status?page=")
    clock.advance(seconds=20)
    assert phone.text_reported(first, "sent") == 204  # the carrier took it: nothing yet
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ivr.hotline"):
        assert phone.text_reported(first, "undelivered", error_code="30007") == 204
        assert phone.text_reported(first, "undelivered", error_code="30007") == 204
    [page] = page_rows(db)
    assert (page["result"], page["sent"], page["undelivered"]) == ("sent", 2, 1)
    assert page["next_at"] == page["at"] + timedelta(seconds=300)  # the other may be read
    warned = [r.getMessage() for r in caplog.records]
    assert warned == [
        "the page's text to the on-call number ending 0100 was undelivered (Twilio error 30007)"
    ]
    clock.advance(seconds=10)
    with caplog.at_level(logging.ERROR, logger="ivr.hotline"):
        assert phone.text_reported(second, "failed", error_code="30003") == 204
    [page] = page_rows(db)
    assert (page["result"], page["undelivered"]) == ("undelivered", 2)
    assert page["next_at"] == clock() + oncall.RETRY_FAILED
    assert any(
        r.levelno == logging.ERROR and "reached none of the 2 on-call numbers" in r.getMessage()
        for r in caplog.records
    )
    sam = make_user(db, "sam", "supervisor")
    [listed] = client.get("/api/oncall/pages", headers=bearer(sam)).json()
    assert (listed["result"], listed["sent"], listed["undelivered"]) == ("undelivered", 2, 2)
    client.post("/dashboard/login", data={"token": sam}, follow_redirects=False)
    assert (
        "it reached none of the 2 numbers Twilio took it for"
        in client.get("/dashboard/queue/rows").text
    )
    metrics = client.get("/metrics").text
    assert 'ivr_page_reports_total{by="sms",result="undelivered"} 2.0' in metrics

    clock.advance(seconds=59)
    assert look(hotline) is None
    clock.advance(seconds=1)
    assert look(hotline) is not None
    assert [t["To"] for t in texts(twilio_http)[2:]] == list(ON_CALL)
    assert [p["result"] for p in page_rows(db)] == ["undelivered", "sent"]


def test_a_page_read_by_one_number_waits_its_repeat(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """One text was delivered, the other not: someone has it, and the page waits as one
    nobody acknowledged (IVR_PAGE_UNACKED); the supervisor sees the number it did not
    reach."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone)
    clock.advance(seconds=5)
    assert look(hotline) is not None
    first, second = texts(twilio_http)
    assert phone.text_reported(second, "delivered") == 204
    assert phone.text_reported(first, "undelivered", error_code="30003") == 204
    [page] = page_rows(db)
    assert (page["result"], page["sent"], page["undelivered"]) == ("sent", 2, 1)
    sam = make_user(db, "sam", "supervisor")
    client.post("/dashboard/login", data={"token": sam}, follow_redirects=False)
    assert (
        "texted to 2 numbers, <strong>1 not reached</strong>"
        in client.get("/dashboard/queue/rows").text
    )
    clock.advance(minutes=4)
    assert look(hotline) is None
    clock.advance(minutes=1)
    assert look(hotline) is not None


def test_an_acknowledged_page_that_reached_nobody_else_is_not_sent_again_early(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """A supervisor said they are coming (on the queue page); the texts' reports come after,
    both undelivered: whoever is coming is coming, and the acknowledgement's hold stands."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone)
    clock.advance(seconds=5)
    page_id = look(hotline)
    sam = make_user(db, "sam", "supervisor")
    acked = client.post(f"/api/oncall/pages/{page_id}/ack", headers=bearer(sam))
    assert acked.status_code == 200, acked.text
    for sent in texts(twilio_http)[:2]:
        assert phone.text_reported(sent, "undelivered", error_code="30003") == 204
    [page] = page_rows(db)
    assert (page["result"], page["acked_by"]) == ("undelivered", "sam")
    assert page["next_at"] == page["acked_at"] + timedelta(seconds=900)
    clock.advance(minutes=2)
    assert look(hotline) is None


def test_a_report_while_the_page_is_still_being_sent_is_kept(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """The first text is reported undelivered at once, while the hotline still texts the
    second number: the report is not lost, and when the second is reported too the page is
    sent again a minute later."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone)
    clock.advance(seconds=5)
    reported: list[int] = []

    def first_fails_meanwhile() -> None:
        sent = texts(twilio_http)
        if len(sent) == 2 and not reported:  # the second text is being sent
            reported.append(phone.text_reported(sent[0], "undelivered", error_code="30005"))

    twilio_http.meanwhile = first_fails_meanwhile
    assert look(hotline) is not None
    twilio_http.meanwhile = None
    assert reported == [204]
    [page] = page_rows(db)
    assert (page["result"], page["undelivered"]) == ("sent", 1)
    assert phone.text_reported(texts(twilio_http)[1], "undelivered", error_code="30005") == 204
    assert page_rows(db)[0]["result"] == "undelivered"
    clock.advance(seconds=60)
    assert look(hotline) is not None


def test_a_page_reported_unreached_before_it_is_recorded_is_sent_again_early(
    line: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With one on-call number, its text is reported undelivered before the hotline has
    recorded what it sent: the record must not put the next page off for 15 minutes, and
    says so once (the report does not, before it)."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hotline.settings = hotline.settings.model_copy(update={"page_numbers": [ON_CALL[0]]})
    hijacked(phone)
    clock.advance(seconds=5)
    sent_before: list[int] = []
    real_send = hotline._send_on_call

    def send_then_report(*args: Any, **kwargs: Any) -> bool:
        took: bool = real_send(*args, **kwargs)
        [sent] = texts(twilio_http)
        sent_before.append(phone.text_reported(sent, "undelivered", error_code="30003"))
        return took

    hotline._send_on_call = send_then_report
    with caplog.at_level(logging.ERROR, logger="ivr.hotline"):
        assert look(hotline) is not None
    assert sent_before == [204]
    [alert] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "(it reached no on-call number; trying again in a minute)" in alert
    [page] = page_rows(db)
    assert (page["result"], page["sent"], page["undelivered"]) == ("undelivered", 1, 1)
    assert page["next_at"] == clock() + oncall.RETRY_FAILED


@pytest.mark.parametrize(
    ("call_status", "again_in_a_minute"),
    [("no-answer", True), ("busy", True), ("completed", False), ("machine_start", True)],
)
def test_with_page_call_a_page_reached_nobody_when_texts_and_calls_both_failed(
    ringing: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    clock: FakeClock,
    call_status: str,
    again_in_a_minute: bool,
) -> None:
    """IVR_PAGE_CALL: a number is reached if its text was delivered or its call answered,
    by a person (a voicemail that took it, as Twilio's answering machine detection says,
    woke nobody). Both texts undelivered: the page reached nobody only once both calls rang
    out too."""
    client, phone = ringing
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone)
    clock.advance(seconds=5)
    assert look(hotline) is not None
    for sent in texts(twilio_http):
        assert phone.text_reported(sent, "undelivered", error_code="30003") == 204
    first, second = placed_calls(twilio_http)
    assert phone.ring_out(first) == 204
    assert page_rows(db)[0]["result"] == "sent"  # the second phone may still ring
    assert second["MachineDetection"] == "Enable"
    if call_status == "completed":
        phone.answer(second, ScriptedParty([Silent()]))
    elif call_status == "machine_start":
        phone.answer(second, ScriptedParty([Silent()]), answered_by="machine_start")
    else:
        assert phone.ring_out(second, call_status) == 204
    [page] = page_rows(db)
    assert page["result"] == ("undelivered" if again_in_a_minute else "sent")
    clock.advance(seconds=60)
    assert (look(hotline) is not None) == again_in_a_minute


def test_a_report_for_no_such_page_or_number_changes_nothing(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone)
    clock.advance(seconds=5)
    page_id = look(hotline)
    [sent, _] = texts(twilio_http)
    stranger = {**sent, "To": "+15005550199"}
    assert phone.text_reported(stranger, "undelivered", error_code="30003") == 204
    elsewhere = {
        **sent,
        "StatusCallback": sent["StatusCallback"].replace(f"page={page_id}", "page=999"),
    }
    assert phone.text_reported(elsewhere, "undelivered", error_code="30003") == 204
    assert (page_rows(db)[0]["result"], page_rows(db)[0]["undelivered"]) == ("sent", 0)


def test_the_emergency_wait_gauge_agrees_with_the_page(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """A victim hung up and called again ten minutes later: they keep their first place, and
    the page says they have waited ten minutes. So does the gauge an alert watches, not the
    seconds since their second call."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone)
    clock.advance(minutes=10)
    hijacked(phone)
    clock.advance(seconds=20)
    assert look(hotline) is not None
    assert "the longest 10 min 20 s" in texts(twilio_http)[0]["Body"]
    gauge = 'ivr_longest_wait_seconds{priority="emergency"} '
    [line_] = [x for x in client.get("/metrics").text.splitlines() if x.startswith(gauge)]
    assert float(line_.removeprefix(gauge)) == 620.0
    assert "ivr_database_up 1.0" in client.get("/metrics").text


def test_the_page_goes_to_every_number_by_text_before_any_call(
    ringing: tuple[TestClient, Phone], twilio_http: RecordingTwilio, clock: FakeClock
) -> None:
    """IVR_PAGE_CALL on a slow Twilio: the second number's text must not wait for the first
    number's call to be placed."""
    client, phone = ringing
    hijacked(phone)
    clock.advance(seconds=5)
    assert look(client.app.state.hotline) is not None  # type: ignore[attr-defined]
    sent = [
        (url.rsplit("/", 1)[-1], data["To"])
        for method, url, data in twilio_http.requests
        if method == "POST" and url.endswith(("/Messages.json", "/Calls.json"))
    ]
    assert sent == [
        ("Messages.json", ON_CALL[0]),
        ("Messages.json", ON_CALL[1]),
        ("Calls.json", ON_CALL[0]),
        ("Calls.json", ON_CALL[1]),
    ]


def test_an_instance_without_numbers_does_not_hold_back_the_page_of_one_with_them(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    line: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
) -> None:
    """One instance was started without IVR_PAGE_NUMBERS (an env file missed on a deploy) and
    took the page's turn: it can only log it. The instances that have the numbers text them
    a minute later, not a quarter of an hour later."""
    client, phone = line
    bare = paging_app(
        database_url, hotline_tree, db, clock, RecordingTwilio(), IVR_PAGE_NUMBERS=""
    ).state.hotline
    hijacked(phone)
    clock.advance(minutes=2)
    assert bare.page_on_call() is not None
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    clock.advance(seconds=59)
    assert look(hotline) is None
    clock.advance(seconds=1)
    assert look(hotline) is not None
    assert [t["To"] for t in texts(twilio_http)] == list(ON_CALL)
    assert [p["result"] for p in page_rows(db)] == ["logged", "sent"]


def test_a_report_while_the_page_is_recorded_waits_for_it(
    db: Engine,
    line: tuple[TestClient, Phone],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first text's report (undelivered) comes while the hotline records what it sent:
    each waits for the other's row locks, in one order, and neither is lost to a deadlock
    (PostgreSQL would abort one; the report's webhook then answers 204 and Twilio never
    sends it again)."""
    _, phone = line
    hijacked(phone)
    clock.advance(minutes=2)
    to: list[tuple[str, oncall.By]] = [(ON_CALL[0], "sms"), (ON_CALL[1], "sms")]
    with db.connect() as conn:
        late = oncall.overdue(conn, now=clock(), after=timedelta(minutes=1))
        assert late is not None
        page_id = oncall.take_turn(
            conn, now=clock(), overdue=late, sending=timedelta(minutes=2), to=to
        )
    assert page_id is not None
    halfway, errors = threading.Event(), []
    reach = oncall._reach

    def slow_reach(conn: Any, *, page_id: int) -> oncall.Reach:
        # The record has written its sends and is about to settle the page: the report
        # comes now.
        if threading.current_thread().name == "record" and not halfway.is_set():
            halfway.set()
            time.sleep(0.5)
        return reach(conn, page_id=page_id)

    monkeypatch.setattr(oncall, "_reach", slow_reach)

    def record() -> None:
        try:
            with db.connect() as conn:
                later = clock() + timedelta(minutes=5)
                oncall.record(conn, page_id=page_id, refused=[], now=clock(), next_at=later)
        except Exception as exc:
            errors.append(exc)

    def report() -> None:
        halfway.wait(5)
        try:
            with db.connect() as conn:
                oncall.reported(
                    conn,
                    page_id=page_id,
                    number=ON_CALL[0],
                    by="sms",
                    status="undelivered",
                    error="30003",
                    now=clock(),
                )
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=record, name="record"), threading.Thread(target=report)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert errors == []
    [page] = page_rows(db)
    assert (page["result"], page["undelivered"]) == ("sent", 1)


def test_a_shorter_page_repeat_still_holds_an_unacknowledged_page_only_that_long(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    twilio_http: RecordingTwilio,
    check_twiml: Callable[[str], None],
) -> None:
    """IVR_PAGE_REPEAT=120, set before IVR_PAGE_UNACKED (5 min) existed: nobody acknowledges,
    and the page comes again after 2 minutes, not 5."""
    app = paging_app(
        database_url, hotline_tree, db, clock, twilio_http, IVR_TREE_SYNC=3600, IVR_PAGE_REPEAT=120
    )
    with on_the_line(app, check_twiml) as (client, phone):
        hotline = client.app.state.hotline  # type: ignore[attr-defined]
        hijacked(phone)
        clock.advance(seconds=5)
        assert look(hotline) is not None
        clock.advance(seconds=119)
        assert look(hotline) is None
        clock.advance(seconds=1)
        assert look(hotline) is not None


def test_the_next_shift_finds_the_nights_pages_on_the_queue_page(
    line: tuple[TestClient, Phone], db: Engine, clock: FakeClock
) -> None:
    """A victim called at night; the on-call were paged and nobody said they were coming.
    Seven hours later the live line shows no page (an hour at most), but the supervisor who
    takes over finds it listed, unacknowledged, with its ticket; pages older than 12 hours
    are left to the API."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone)
    clock.advance(seconds=5)
    assert look(hotline) is not None
    [case] = case_rows(db)
    clock.advance(hours=7)
    sam = make_user(db, "sam", "supervisor")
    client.post("/dashboard/login", data={"token": sam}, follow_redirects=False)
    shown = client.get("/dashboard/queue")
    assert shown.status_code == 200
    rows = html.fromstring(shown.text).xpath("//table[contains(@class,'pages')]/tbody/tr")
    cells = [" ".join(td.text_content().split()) for td in rows[0].xpath("./td")]
    assert len(rows) == 1 and rows[0].get("class") == "unacked"
    assert cells[1:] == ["1", "00:05", case["ticket"], "2 numbers", "nobody said they were coming"]
    assert "The on-call were paged at" not in client.get("/dashboard/queue/rows").text
    clock.advance(hours=5, seconds=1)
    assert "No page in the last 12 hours." in client.get("/dashboard/queue").text
    alice = make_user(db, "alice", "agent")
    client.post("/dashboard/login", data={"token": alice}, follow_redirects=False)
    assert "Pages to the on-call" not in client.get("/dashboard/queue").text


def test_a_surge_pages_everyone_again_though_someone_said_they_were_coming(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """A hack goes public: the night's first victim pages the on-call, and sam says he is
    coming, which holds the next page back IVR_PAGE_REPEAT (15 min) and tells the others
    to stand down. Then the lane fills. Once it is twice what the page said and
    IVR_PAGE_SURGE (10) more, everyone is paged again at once, with how many wait now;
    not for every victim more: the next surge is twice that again."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone)
    first = look(hotline)
    assert first is not None
    sam = make_user(db, "sam", "supervisor")
    assert client.post(f"/api/oncall/pages/{first}/ack", headers=bearer(sam)).status_code == 200
    eventually(lambda: len(texts(twilio_http)) == 2 * len(ON_CALL))
    texted = len(texts(twilio_http))
    for n in range(9):  # ten wait: not yet a surge
        hijacked(phone, f"+1500555{7000 + n}")
    clock.advance(minutes=3)
    assert look(hotline) is None
    hijacked(phone, "+15005557100")  # eleven: twice one, and ten more
    surge = look(hotline)
    assert surge is not None and surge != first
    sent = texts(twilio_http)[texted:]
    assert sorted(t["To"] for t in sent) == sorted(ON_CALL)
    assert sent[0]["Body"].startswith("Hotline: 11 emergency callers waiting, the longest 3 min")
    assert page_rows(db)[-1]["waiting"] == 11 and page_rows(db)[-1]["acked_at"] is None
    for n in range(10):  # 21 wait: not twice eleven
        hijacked(phone, f"+1500555{7200 + n}")
    clock.advance(minutes=3)
    assert look(hotline) is None
    hijacked(phone, "+15005557300")
    assert look(hotline) not in (None, surge)
    assert page_rows(db)[-1]["waiting"] == 22


LEAD = "+15005550102"


def test_a_page_nobody_acknowledges_goes_to_the_next_tier_too(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    twilio_http: RecordingTwilio,
    check_twiml: Callable[[str], None],
) -> None:
    """The on-call sleep through the night's first page. The next one (IVR_PAGE_UNACKED
    later, while the victim still waits) goes to IVR_PAGE_ESCALATE too, saying nobody came
    for the last; the lead answers it with its code, as any on-call number may, and the
    on-call are told who is coming. A page after an acknowledged one is the on-call's
    alone again."""
    app = paging_app(
        database_url,
        hotline_tree,
        db,
        clock,
        twilio_http,
        IVR_TREE_SYNC=3600,
        IVR_PAGE_ESCALATE=f"{LEAD},{ON_CALL[0]}",
    )
    with on_the_line(app, check_twiml) as (client, phone):
        hotline = client.app.state.hotline  # type: ignore[attr-defined]
        hijacked(phone)
        assert look(hotline) is not None
        assert [t["To"] for t in texts(twilio_http)] == list(ON_CALL)
        assert texts(twilio_http)[0]["Body"].startswith("Hotline: 1 emergency caller")
        clock.advance(seconds=300)
        assert look(hotline) is not None
        escalated = texts(twilio_http)[2:]
        assert [t["To"] for t in escalated] == [*ON_CALL, LEAD]  # each number once
        assert escalated[2]["Body"].startswith(
            "Hotline (the last page: nobody coming): 1 emergency caller waiting"
        )
        second = page_rows(db)[-1]
        [answer] = phone.text(second["ack_code"], from_number=LEAD)
        assert answer.startswith("Hotline: thank you")
        assert page_rows(db)[-1]["acked_by"] == LEAD
        told = eventually(lambda: len(texts(twilio_http)) == 7 and texts(twilio_http)[5:])
        assert sorted(t["To"] for t in told) == sorted(ON_CALL)  # the lead answered itself
        clock.advance(seconds=900)  # acknowledged, and still waiting: the on-call again
        assert look(hotline) is not None
        assert [t["To"] for t in texts(twilio_http)[7:]] == list(ON_CALL)
        assert not texts(twilio_http)[7]["Body"].startswith("Hotline (")
        # Its acknowledgement is told to those it went to: not the lead, who never got it.
        [answer] = phone.text(page_rows(db)[-1]["ack_code"], from_number=ON_CALL[0])
        assert answer.startswith("Hotline: thank you")
        told = eventually(lambda: len(texts(twilio_http)) == 10 and texts(twilio_http)[9:])
        assert [t["To"] for t in told] == [ON_CALL[1]]
        time.sleep(0.5)  # the thread that texts them has sent all it was to
        assert len(texts(twilio_http)) == 10


def test_the_next_tier_needs_a_first() -> None:
    with pytest.raises(ValidationError, match="IVR_PAGE_ESCALATE needs IVR_PAGE_NUMBERS"):
        make_settings(TWILIO_ACCOUNT_SID="AC" + "0" * 32, IVR_PAGE_ESCALATE=LEAD)


def test_the_on_call_read_the_pages_times_on_the_hotlines_clock(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    twilio_http: RecordingTwilio,
    check_twiml: Callable[[str], None],
) -> None:
    """Woken at 3 a.m. in Shanghai, the on-call read Shanghai's clock (IVR_REPORT_TZ) in
    the texts that say who is coming, not UTC's, and the zone is named."""
    app = paging_app(
        database_url,
        hotline_tree,
        db,
        clock,
        twilio_http,
        IVR_TREE_SYNC=3600,
        IVR_REPORT_TZ="Asia/Shanghai",
    )
    with on_the_line(app, check_twiml) as (client, phone):
        hotline = client.app.state.hotline  # type: ignore[attr-defined]
        hijacked(phone)
        clock.advance(minutes=2)
        assert look(hotline) is not None
        [page] = page_rows(db)
        [answer] = phone.text(page["ack_code"], from_number=ON_CALL[0])
        told = eventually(lambda: texts(twilio_http)[2:])
    shanghai = ZoneInfo("Asia/Shanghai")
    paged_at = page["at"].astimezone(shanghai)
    assert f"the page of {paged_at:%H:%M} CST (UTC+08:00) is acknowledged" in answer
    [to_the_other] = told
    assert to_the_other["To"] == ON_CALL[1]
    assert to_the_other["Body"].startswith(
        f"Hotline: the page of {paged_at:%H:%M} CST (UTC+08:00) was acknowledged by "
        f"{ON_CALL[0]} at {clock().astimezone(shanghai):%H:%M} CST (UTC+08:00)"
    )
    assert " UTC" not in answer + to_the_other["Body"]  # the offset, not UTC's clock


def test_a_surge_nobody_answers_is_not_escalated_when_someone_is_coming_already(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    twilio_http: RecordingTwilio,
    check_twiml: Callable[[str], None],
) -> None:
    """sam said he is coming for the night's first victim; the surge page after it asks
    nothing new of him, and nobody answers it. The page after that is not the lead's to
    get: someone is on their way, nobody slept through it."""
    app = paging_app(
        database_url,
        hotline_tree,
        db,
        clock,
        twilio_http,
        IVR_TREE_SYNC=3600,
        IVR_PAGE_ESCALATE=LEAD,
    )
    with on_the_line(app, check_twiml) as (client, phone):
        hotline = client.app.state.hotline  # type: ignore[attr-defined]
        hijacked(phone)
        first = look(hotline)
        assert first is not None
        sam = make_user(db, "sam", "supervisor")
        acked = client.post(f"/api/oncall/pages/{first}/ack", headers=bearer(sam))
        assert acked.status_code == 200
        eventually(lambda: len(texts(twilio_http)) == 2 * len(ON_CALL))
        for n in range(10):  # eleven wait: a surge
            hijacked(phone, f"+1500555{7000 + n}")
        clock.advance(minutes=3)
        assert look(hotline) is not None
        assert page_rows(db)[-1]["acked_at"] is None
        texted = len(texts(twilio_http))
        clock.advance(minutes=16)  # past the surge's IVR_PAGE_UNACKED and sam's hold
        assert look(hotline) is not None
        again = texts(twilio_http)[texted:]
        assert sorted(t["To"] for t in again) == sorted(ON_CALL)  # not the lead
        assert not again[0]["Body"].startswith("Hotline (the last page: nobody coming)")


def test_an_acknowledged_page_whose_repeat_nobody_answers_still_escalates(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    twilio_http: RecordingTwilio,
    check_twiml: Callable[[str], None],
) -> None:
    """sam says he is coming for the first page, and never comes. The repeat page
    (IVR_PAGE_REPEAT later: 'whoever said they were coming may not have got there') is not
    answered either. The page after that must go to the next tier: nobody is coming."""
    app = paging_app(
        database_url,
        hotline_tree,
        db,
        clock,
        twilio_http,
        IVR_TREE_SYNC=3600,
        IVR_PAGE_ESCALATE=LEAD,
    )
    with on_the_line(app, check_twiml) as (client, phone):
        hotline = client.app.state.hotline  # type: ignore[attr-defined]
        hijacked(phone)
        first = look(hotline)
        assert first is not None
        sam = make_user(db, "sam", "supervisor")
        assert client.post(f"/api/oncall/pages/{first}/ack", headers=bearer(sam)).status_code == 200
        eventually(lambda: len(texts(twilio_http)) == 2 * len(ON_CALL))
        clock.advance(minutes=16)  # past sam's hold: the repeat page, nobody answers
        assert look(hotline) is not None
        assert page_rows(db)[-1]["acked_at"] is None
        texted = len(texts(twilio_http))
        clock.advance(minutes=16)
        assert look(hotline) is not None
        again = texts(twilio_http)[texted:]
        assert LEAD in [t["To"] for t in again]


HELD_AFTER = timedelta(seconds=600)  # IVR_OFFER_TIMEOUT's default


def emergency_gauge(client: TestClient) -> float:
    gauge = 'ivr_longest_wait_seconds{priority="emergency"} '
    [found] = [x for x in client.get("/metrics").text.splitlines() if x.startswith(gauge)]
    return float(found.removeprefix(gauge))


def test_an_emergency_an_agent_holds_with_no_talk_is_paged_for(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """A victim on a number outside IVR_CALLBACK_PREFIXES hangs up in the emergency lane; bob
    takes their call back with `next`, his to dial by hand (no timeout takes it back: in the
    middle of his call, another agent would ring the victim too), and does nothing. Once he
    has held it IVR_OFFER_TIMEOUT with no talk recorded, the on-call are paged as for a
    victim in line, told who has it, and can say they are coming; the gauge counts it too.
    Resolved with the customer reached, it pages nobody any more."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone, "+447700900123")
    bob = make_user(db, "bob", "agent", "+15005558888")
    taken = client.post("/api/agents/next", headers=bearer(bob)).json()
    assert (taken["connect"]["mode"], taken["case"]["priority"]) == ("call_back", "emergency")
    [case] = case_rows(db)
    clock.advance(seconds=30)
    assert look(hotline) is None  # bob may be talking to them now
    clock.advance(seconds=HELD_AFTER.total_seconds() - 31)
    assert look(hotline) is None and emergency_gauge(client) == 0.0
    clock.advance(seconds=1)
    page_id = look(hotline)
    assert page_id is not None
    [page] = page_rows(db)
    assert (page["case_id"], page["waiting"], page["waited_seconds"]) == (case["id"], 1, 600)
    assert texts(twilio_http)[0]["Body"] == (
        f"Hotline: 1 emergency caller waiting, the longest 10 min 0 s (ticket {case['ticket']}, "
        f"en, with agent bob 10 min 0 s, no talk). Agents available: 0, at work: 1. Coming? "
        f"Reply {page['ack_code']}. {PUBLIC_URL}/dashboard/queue"
    )
    assert emergency_gauge(client) == 600.0
    [answer] = phone.text(page["ack_code"], from_number=ON_CALL[0])
    assert "is acknowledged" in answer and page_rows(db)[0]["acked_by"] == ON_CALL[0]
    resolved = client.post(
        f"/api/cases/{case['id']}/resolve",
        headers=bearer(bob),
        json={"notes": "called back, froze it", "reached": True},
    )
    assert resolved.status_code == 200
    clock.advance(hours=1)
    assert look(hotline) is None and len(page_rows(db)) == 1
    assert emergency_gauge(client) == 0.0


def test_a_held_emergency_pages_with_the_one_in_line_and_only_that_long(db: Engine) -> None:
    """`overdue` reads the first in line and the first held with no talk in one statement:
    the one that has waited longest is the page's; both count. A held one that connected,
    or was held less long, or is no emergency, or whose account the agent froze, is nobody's
    concern here."""
    now = FakeClock()()
    make_user(db, "bob", "agent")
    with db.begin() as conn:
        bob = conn.execute(select(users.c.id).where(users.c.name == "bob")).scalar_one()

        def add(ticket: str, joined_ago: int, **values: object) -> None:
            joined = now - timedelta(minutes=joined_ago)
            emergency = {"reason": "hijack", "queue": "emergency", "priority": "emergency"}
            flags = values.pop("flags", {})
            conn.execute(
                cases.insert().values(
                    ticket=ticket,
                    call_sid="CA" + ticket,
                    **{"lane": 0, "queued": 0, "status": "offered", **emergency, **values},
                    sort_at=joined,
                    flags=flags,
                    path=[],
                    created_at=joined,
                )
            )

        add("1000001", 5, queued=1, status="abandoned")  # in line 5 min
        add("1000002", 30, agent_id=bob, offer="call_back", offered_at=now - HELD_AFTER)
        add("1000003", 40, agent_id=bob, offer="call_back", offered_at=now - HELD_AFTER / 2)
        add(
            "1000004",
            50,
            agent_id=bob,
            offer="no_number",
            offered_at=now - 2 * HELD_AFTER,
            connected_at=now - HELD_AFTER,
        )
        add("1000005", 60, agent_id=bob, offer="redirected", offered_at=now - 2 * HELD_AFTER)
        routine = {"lane": 1, "priority": "normal", "queue": "deposits", "reason": "deposit"}
        add(
            "1000006",
            70,
            agent_id=bob,
            offer="call_back",
            offered_at=now - 2 * HELD_AFTER,
            **routine,
        )
        # Frozen by the agent: they reached the victim and are at work on it.
        add(
            "1000007",
            80,
            agent_id=bob,
            offer="call_back",
            offered_at=now - 2 * HELD_AFTER,
            flags={"agent_freeze": "done"},
        )
    with db.connect() as conn:
        late = oncall.overdue(conn, now=now, after=timedelta(minutes=1), held_after=HELD_AFTER)
        plain = oncall.overdue(conn, now=now, after=timedelta(minutes=1))
    assert late is not None and plain is not None
    assert (late.ticket, late.waited, late.waiting) == ("1000002", timedelta(minutes=30), 2)
    assert (late.held_by, late.held_for) == ("bob", HELD_AFTER)
    assert (plain.ticket, plain.waiting, plain.held_by) == ("1000001", 1, None)


def test_the_log_does_not_carry_the_pages_code(
    line: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The code a page's text asks for acknowledges it, from any sender (senders can be
    forged): whoever reads the server's log (a log pipeline, an alert's channel) must not
    learn it. The log still says the page, its ticket, and whom it reached."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone)
    clock.advance(seconds=5)
    with caplog.at_level(logging.DEBUG, logger="ivr"):
        assert look(hotline) is not None
        twilio_http.refuse = True
        clock.advance(minutes=20)
        assert look(hotline) is not None  # refused: an error
    first, second = page_rows(db)
    assert first["ack_code"] in texts(twilio_http)[0]["Body"]
    assert first["ack_code"] not in caplog.text and second["ack_code"] not in caplog.text
    assert "Reply" not in caplog.text
    [case] = case_rows(db)
    assert f"(ticket {case['ticket']}, en)" in caplog.text
    assert "(sent to 2 on-call numbers)" in caplog.text
    assert "no on-call number could be paged" in caplog.text


def test_an_auto_reply_is_answered_once_and_stop_is_noticed(
    line: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A phone in driving mode answers every text: told how to reply once per REPLY_EVERY,
    it cannot start a loop that costs a text each way for ever. STOP (any of Twilio's
    opt-out words, in any case) is not answered: Twilio answers it and refuses every later
    text to that number (21610). It is an error in the log, by the number's last four
    digits, and the queue page tells supervisors, until the number texts START."""
    client, phone = line
    sam = make_user(db, "sam", "supervisor")
    client.post("/dashboard/login", data={"token": sam}, follow_redirects=False)
    driving = "I'm driving, I'll reply later"
    replies = [phone.text(driving, from_number=ON_CALL[0]) for _ in range(50)]
    assert replies == [[oncall.REPLY_HOW]] + [[]] * 49
    assert phone.text(driving, from_number=ON_CALL[1]) == [oncall.REPLY_HOW]  # its own
    clock.advance(seconds=oncall.REPLY_EVERY.total_seconds() - 1)
    assert phone.text(driving, from_number=ON_CALL[0]) == []
    clock.advance(seconds=1)
    assert phone.text("123456", from_number=ON_CALL[0]) == [oncall.REPLY_HOW]  # no such page
    assert "opted-out" not in client.get("/dashboard/queue/rows").text

    with caplog.at_level(logging.WARNING, logger="ivr"):
        assert phone.text(" stop ", from_number=ON_CALL[1]) == []
    [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "ending 0101 texted STOP" in error and "21610" in error
    assert ON_CALL[1] not in caplog.text
    shown = client.get("/dashboard/queue/rows").text
    assert "Twilio will not text the on-call phone ending" in shown
    assert '<span class="mono">0101</span>' in shown and "it texted STOP at 03:10" in shown
    clock.advance(hours=1)
    assert phone.text(driving, from_number=ON_CALL[1]) == []  # Twilio would refuse it
    assert phone.text("Cancel", from_number=ON_CALL[0]) == []
    shown = client.get("/dashboard/queue/rows").text
    assert shown.count("Twilio will not text the on-call phone ending") == 2

    assert phone.text("START", from_number=ON_CALL[1]) == [oncall.REPLY_HOW]
    shown = client.get("/dashboard/queue/rows").text
    assert shown.count("Twilio will not text the on-call phone ending") == 1
    assert '<span class="mono">0101</span>' not in shown
    # Not an opt-out word: Twilio blocks only on a text of the word alone.
    assert phone.text("please stop", from_number=ON_CALL[1]) == []  # told already
    assert client.get("/dashboard/queue/rows").text.count("Twilio will not") == 1


def test_a_page_text_refused_as_opted_out_is_an_error_naming_the_number(
    line: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Twilio refuses a page's text with 21610 (the number opted out, maybe before this
    hotline ever saw its STOP): an error, naming Twilio's code and the number's last four
    digits, and the queue page says so until Twilio takes a text to it again. Another
    refusal is a warning with its code."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    sam = make_user(db, "sam", "supervisor")
    client.post("/dashboard/login", data={"token": sam}, follow_redirects=False)
    hijacked(phone)
    clock.advance(seconds=5)
    twilio_http.error = (400, 21610)
    with caplog.at_level(logging.WARNING, logger="ivr"):
        assert look(hotline) is not None
    refused = [r for r in caplog.records if "Twilio refused a text" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in refused] == [
        (
            logging.ERROR,
            f"Twilio refused a text to the on-call number ending {n[-4:]} (error 21610: it "
            "opted out of texts, with STOP or the like; none reaches it until it texts START)",
        )
        for n in ON_CALL
    ]
    shown = client.get("/dashboard/queue/rows").text
    assert shown.count("a page text was refused with error 21610") == 2
    caplog.clear()
    twilio_http.error = (400, 21211)
    clock.advance(minutes=1)
    with caplog.at_level(logging.WARNING, logger="ivr"):
        assert look(hotline) is not None
    refused = [r for r in caplog.records if "Twilio refused a text" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in refused] == [
        (
            logging.WARNING,
            f"Twilio refused a text to the on-call number ending {n[-4:]} (error 21211)",
        )
        for n in ON_CALL
    ]
    twilio_http.error = None
    clock.advance(minutes=2)
    assert look(hotline) is not None
    assert "Twilio will not text" not in client.get("/dashboard/queue/rows").text


def test_each_acknowledgement_is_audited_and_outlives_the_pages(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """Who said they were coming is in the pages table, which the purge deletes: the audit
    log keeps each acknowledgement (the on-call number masked as the log shows numbers, a
    supervisor by name) with the page. One saying it again is no new acknowledgement."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    hijacked(phone)
    clock.advance(seconds=5)
    first = look(hotline)
    assert first is not None
    [page] = page_rows(db)
    phone.text(page["ack_code"], from_number=ON_CALL[0])
    phone.text(page["ack_code"], from_number=ON_CALL[0])  # again: acknowledged already
    eventually(lambda: texts(twilio_http))
    clock.advance(minutes=16)  # nobody came: paged again, and a supervisor is coming
    second = look(hotline)
    assert second is not None
    sam = make_user(db, "sam", "supervisor")
    assert client.post(f"/api/oncall/pages/{second}/ack", headers=bearer(sam)).status_code == 200
    with db.connect() as conn:
        conn.execute(delete(pages))  # as retention does
        conn.commit()
        rows = conn.execute(select(audit_log).order_by(audit_log.c.id)).mappings().all()
    acks = [(r["actor"], r["action"], r["reason"]) for r in rows if r["action"] == "page_ack"]
    assert acks == [
        ("oncall:***0100", "page_ack", f"page {first}"),
        ("supervisor:sam", "page_ack", f"page {second}"),
    ]
    assert not any(ON_CALL[0][1:] in str(v) for r in rows for v in r.values())
