"""Paging the on-call (`ivr.oncall`, `Hotline.page_on_call`): an emergency left waiting texts
the on-call numbers through Twilio once, whichever instance sees it first, and again only
after IVR_PAGE_REPEAT while emergencies keep waiting; nothing about the caller goes in it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Engine, event, select
from twilio.rest import Client as TwilioClient

from ivr.db import cases, create_db_engine, pages
from ivr.phone import Phone, Press, ScriptedParty
from ivr.tree import CompiledTree
from ivr.web import Following, create_app
from tests.conftest import (
    CALLER_ID,
    PUBLIC_URL,
    TOKEN,
    FakeClock,
    RecordingTwilio,
    bearer,
    make_settings,
    make_user,
)

ON_CALL = ("+15005550100", "+15005550101")
VICTIM = "+15005550006"
SKIPS_VERIFYING = [Press("1"), Press("1"), Press("*")]  # English, account stolen, skip
DEPOSITS = [Press("1"), Press("3"), Press("1"), Press("1")]  # a routine question


class Holding(ScriptedParty):
    """A caller who keys `answers` (a copy: the party uses them up), then holds while
    `on_hold(poll)` says so."""

    def __init__(self, answers: list[Any], on_hold: Callable[[int], bool]) -> None:
        super().__init__(list(answers))
        self.on_hold = on_hold

    def keep_holding(self, queue: str, polls: int) -> bool:
        return self.on_hold(polls)


def paging_app(
    database_url: str,
    tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    twilio: RecordingTwilio,
    **settings: object,
) -> FastAPI:
    """The app with on-call numbers, its REST client on a recording transport."""
    values: dict[str, object] = {
        "IVR_DATABASE_URL": database_url,
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "IVR_PAGE_NUMBERS": ",".join(ON_CALL),
        **settings,
    }
    client = TwilioClient("AC" + "0" * 32, TOKEN, http_client=twilio)
    return create_app(make_settings(**values), tree=tree, db=db, clock=clock, twilio=client)


@pytest.fixture
def line(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    twilio_http: RecordingTwilio,
    check_twiml: Callable[[str], None],
) -> Iterator[tuple[TestClient, Phone]]:
    app = paging_app(database_url, hotline_tree, db, clock, twilio_http)
    with TestClient(app) as client:
        yield (
            client,
            Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml),
        )


def texts(twilio: RecordingTwilio) -> list[dict[str, str]]:
    """The SMS the hotline asked Twilio to send, in order."""
    return [data for _, url, data in twilio.requests if url.endswith("/Messages.json")]


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
    phone.call(Holding(DEPOSITS, lambda poll: False), from_number="+15005550008")
    bob = make_user(db, "bob", "agent", "+15005558888")
    assert client.post("/api/agents/next", headers=bearer(bob)).json()["case"] is not None
    rounds: list[tuple[timedelta, int | None]] = []

    def holds(poll: int) -> bool:
        clock.advance(seconds=15)
        victims = [c for c in case_rows(db) if c["priority"] == "emergency"]
        rounds.append((clock() - victims[0]["created_at"], look(hotline)))
        return poll < 12  # three minutes

    phone.call(Holding(SKIPS_VERIFYING, holds), from_number=VICTIM)
    early = [page for waited, page in rounds if waited < timedelta(seconds=60)]
    assert early and early == [None] * len(early)
    assert rounds[len(early)][1] is not None  # the first round past a minute
    assert [page for _, page in rounds if page is not None] == [rounds[len(early)][1]]
    sent = texts(twilio_http)
    assert [(t["To"], t["From"]) for t in sent] == [(n, CALLER_ID) for n in ON_CALL]
    [case] = [c for c in case_rows(db) if c["priority"] == "emergency"]
    body = sent[0]["Body"]
    assert body == sent[1]["Body"]
    assert body == (
        f"Hotline: 1 emergency caller waiting, the longest 1 min 0 s (ticket {case['ticket']}, "
        f"en). Agents available: 0, at work: 1. {PUBLIC_URL}/dashboard/queue"
    )
    [page] = page_rows(db)
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


def test_with_nobody_at_work_the_page_comes_at_once_and_again_after_the_repeat(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """At night nobody is at work: waiting IVR_PAGE_AFTER for an agent who is not there helps
    nobody, so the on-call are texted at the first look. Two victims hung up; they are still
    in the emergency lane, for a call back, and nobody's until an agent takes them: the
    on-call are texted again once IVR_PAGE_REPEAT has passed. Once agents have taken both,
    nobody is paged."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    for number in (VICTIM, "+15005550007"):
        phone.call(Holding(SKIPS_VERIFYING, lambda poll: False), from_number=number)
    clock.advance(seconds=5)
    assert look(hotline) is not None
    assert "2 emergency callers waiting, the longest 5 s" in texts(twilio_http)[0]["Body"]
    assert "Agents available: 0, at work: 0" in texts(twilio_http)[0]["Body"]
    clock.advance(seconds=899)
    assert look(hotline) is None and len(texts(twilio_http)) == 2
    clock.advance(seconds=1)
    assert look(hotline) is not None
    again = texts(twilio_http)[2:]
    assert [t["To"] for t in again] == list(ON_CALL)
    assert "2 emergency callers waiting, the longest 15 min 5 s" in again[0]["Body"]
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
    phone.call(Holding(DEPOSITS, lambda poll: False), from_number="+15005550008")
    clock.advance(hours=1)
    assert hotline.page_on_call() is None
    phone.call(Holding(SKIPS_VERIFYING, lambda poll: False), from_number=VICTIM)
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
    phone.call(Holding(SKIPS_VERIFYING, lambda poll: False), from_number=VICTIM)
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
    refused (the turn is unique), and that instance sends nothing. PostgreSQL only: that is
    where several instances share a database (SQLite has one writer, and one instance)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("several instances run on PostgreSQL")
    client, phone = line
    phone.call(Holding(SKIPS_VERIFYING, lambda poll: False), from_number=VICTIM)
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


def test_a_page_twilio_refuses_is_tried_again_a_minute_later(
    line: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    phone.call(Holding(SKIPS_VERIFYING, lambda poll: False), from_number=VICTIM)
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
    with TestClient(app) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        phone.call(Holding(SKIPS_VERIFYING, lambda poll: False), from_number=VICTIM)
        clock.advance(minutes=5)
        with caplog.at_level(logging.WARNING, logger="ivr.hotline"):
            assert app.state.hotline.page_on_call() is not None
            assert app.state.hotline.page_on_call() is None
    [case] = case_rows(db)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and case["ticket"] in errors[0]
    assert "IVR_PAGE_NUMBERS is not set" in errors[0] and "0006" not in errors[0]
    assert texts(twilio_http) == []
    assert [(p["result"], p["sent"], p["failed"]) for p in page_rows(db)] == [("logged", 0, 0)]


def test_each_instance_looks_every_tree_sync(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """The job every instance runs every IVR_TREE_SYNC seconds pages, after counting the
    agents at work that the text names."""
    client, phone = line
    phone.call(Holding(SKIPS_VERIFYING, lambda poll: False), from_number=VICTIM)
    alice = make_user(db, "alice", "agent", "+15005559999")
    client.put("/api/agents/presence", headers=bearer(alice), json={"available": False})
    bob = make_user(db, "bob", "agent", "+15005558888")
    busy = client.post("/api/agents/next", headers=bearer(bob))
    assert busy.json()["case"]["priority"] == "emergency"
    phone.call(Holding(SKIPS_VERIFYING, lambda poll: False), from_number="+15005550007")
    clock.advance(minutes=2)
    asyncio.run(Following()(client.app.state.hotline))  # type: ignore[attr-defined]
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
    with TestClient(app) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        phone.call(Holding(SKIPS_VERIFYING, lambda poll: False), from_number=VICTIM)
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
        IVR_PAGE_NUMBERS=" +15005550100 , +15005550101,", TWILIO_ACCOUNT_SID="AC" + "0" * 32
    )
    assert spaced.page_numbers == ON_CALL
