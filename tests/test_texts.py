"""Tickets texted to callers (IVR_TEXT_TICKETS, `Hotline.text_tickets`): the reference the
seed article tells callers to keep, sent to the calling number once per case, in the
caller's language, by whichever instance takes it first; never to a withheld number or one
outside IVR_CALLBACK_PREFIXES."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Engine, event, select, update
from twilio.rest import Client as TwilioClient
from urllib3.exceptions import MaxRetryError, NewConnectionError

from ivr.db import cases
from ivr.exceptions import SourceError
from ivr.hotline import TwilioFailing
from ivr.phone import Phone, Press
from ivr.settings import PROJECT_ROOT
from ivr.tree import CompiledTree, load_tree
from ivr.web import create_app
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
from tests.support.catalogs import catalogs_without
from tests.support.parties import Caller
from tests.support.twilio import app_with_twilio, on_the_line, texts

VICTIM = "+15005550006"
HIJACKED = [Press("1"), Press("1"), Press("*")]  # English, account stolen, skip verifying
HIJACKED_ZH = [Press("2"), Press("1"), Press("*")]  # the same in Mandarin
DEPOSITS = [Press("1"), Press("3"), Press("1"), Press("1")]  # a routine question


def texting_app(
    database_url: str,
    tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    twilio: RecordingTwilio,
    **settings: object,
) -> FastAPI:
    texting: dict[str, object] = {"IVR_TEXT_TICKETS": True, "IVR_CALLBACK_PREFIXES": "+1,+86"}
    return app_with_twilio(database_url, tree, db, clock, twilio, **{**texting, **settings})


@pytest.fixture
def line(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    twilio_http: RecordingTwilio,
    check_twiml: Callable[[str], None],
) -> Iterator[tuple[TestClient, Phone]]:
    # The tests text by hand (`Hotline.text_tickets`), at the moment they say: the app's own
    # timed job, every IVR_TREE_SYNC, would text in between on a slow run.
    app = texting_app(database_url, hotline_tree, db, clock, twilio_http, IVR_TREE_SYNC=3600)
    with on_the_line(app, check_twiml) as line:
        yield line


def case_rows(db: Engine) -> list[dict[str, Any]]:
    with db.connect() as conn:
        return [dict(r) for r in conn.execute(select(cases).order_by(cases.c.id)).mappings()]


def calls(phone: Phone, keys: list[Any], number: str = VICTIM) -> None:
    """A caller who reaches a queue, holds once and hangs up: their case stays."""
    phone.call(Caller(keys, lambda poll: False), from_number=number)


def test_each_caller_is_texted_their_ticket_once_in_their_language(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine
) -> None:
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    calls(phone, HIJACKED)
    calls(phone, HIJACKED_ZH, "+8613800138000")
    calls(phone, DEPOSITS, "+15005550008")
    assert texts(twilio_http) == []  # not while the webhooks answer: a timed job sends them
    assert hotline.text_tickets() == 3
    english, mandarin, routine = case_rows(db)
    sent = texts(twilio_http)
    assert [(t["To"], t["From"]) for t in sent] == [
        (VICTIM, CALLER_ID),
        ("+8613800138000", CALLER_ID),
        ("+15005550008", CALLER_ID),
    ]
    # Its number's owner learns of a call made in their name (a spoofed caller ID).
    assert sent[0]["Body"] == (
        f"Exchange support: ticket {english['ticket']}. Follow up: call, press 1, then 9. We "
        "never ask for passwords, 2FA codes, keys or transfers. Not you? Call us via our app."
    )
    assert len(sent[0]["Body"]) <= 160  # one SMS
    assert f"工单号{mandarin['ticket']}。来电先按2选中文,再按9查询。" in sent[1]["Body"]
    assert sent[1]["Body"].endswith("非本人来电请速联系客服。")
    assert len(sent[1]["Body"]) <= 70
    assert routine["ticket"] in sent[2]["Body"]
    assert [c["ticket_text"] for c in case_rows(db)] == ["sent"] * 3
    assert hotline.text_tickets() == 0 and len(texts(twilio_http)) == 3  # once
    assert 'ivr_ticket_texts_total{result="sent"} 3.0' in client.get("/metrics").text
    # The agent who takes a case sees the caller has their ticket.
    alice = make_user(db, "alice", "agent", "+15005559999")
    taken = client.post("/api/agents/next", headers=bearer(alice)).json()["case"]
    assert (taken["ticket"], taken["ticket_text"]) == (english["ticket"], "sent")
    client.post("/dashboard/login", data={"token": alice}, follow_redirects=False)
    assert (
        '<dt>Ticket texted</dt><dd class="ticket-text">yes</dd>'
        in client.get("/dashboard/desk").text
    )


def test_withheld_numbers_and_numbers_outside_the_prefixes_get_no_text(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    twilio_http: RecordingTwilio,
    check_twiml: Callable[[str], None],
) -> None:
    """Caller IDs are spoofed at will: only the country codes the exchange serves
    (IVR_CALLBACK_PREFIXES) are texted, as only they are called back on a keyed number."""
    app = texting_app(
        database_url, hotline_tree, db, clock, twilio_http, IVR_CALLBACK_PREFIXES="+86"
    )
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        calls(phone, HIJACKED, "anonymous")
        calls(phone, HIJACKED, "+15005550007")
        calls(phone, HIJACKED_ZH, "+8613800138000")
        assert app.state.hotline.text_tickets() == 1
    assert [t["To"] for t in texts(twilio_http)] == ["+8613800138000"]
    assert [c["ticket_text"] for c in case_rows(db)] == [None, None, "sent"]


def test_of_two_instances_one_texts_each_ticket(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    line: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
) -> None:
    client, phone = line
    other_http = RecordingTwilio()
    other = texting_app(database_url, hotline_tree, db, clock, other_http).state.hotline
    calls(phone, HIJACKED)
    assert other.text_tickets() == 1
    assert client.app.state.hotline.text_tickets() == 0  # type: ignore[attr-defined]
    assert len(texts(other_http)) == 1 and texts(twilio_http) == []


def test_a_ticket_taken_by_another_instance_meanwhile_is_not_texted_twice(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    line: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
) -> None:
    """While this instance texts the first due case, the other instance's round does not
    take it again; it takes the next one: each ticket is texted once, by one of them."""
    client, phone = line
    other_http = RecordingTwilio()
    other = texting_app(database_url, hotline_tree, db, clock, other_http).state.hotline
    calls(phone, HIJACKED)
    calls(phone, HIJACKED, "+15005550007")
    rounds: list[int] = []
    twilio_http.meanwhile = lambda: rounds.append(other.text_tickets())
    assert client.app.state.hotline.text_tickets() == 1  # type: ignore[attr-defined]
    assert rounds == [1]
    assert [t["To"] for t in texts(twilio_http)] == [VICTIM]
    assert [t["To"] for t in texts(other_http)] == ["+15005550007"]
    assert [c["ticket_text"] for c in case_rows(db)] == ["sent", "sent"]


def test_a_database_blip_while_texting_leaves_the_ticket_due(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine
) -> None:
    """The database fails between taking a case and texting it: nothing went, so the case
    is due again (not stuck as being sent) and the next round texts it."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    calls(phone, HIJACKED)
    taken: list[str] = []
    failed: list[str] = []

    def blip(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        words = statement.split()
        if words[0].upper() == "UPDATE" and "ticket_text" in statement:
            taken.append(statement)  # the case taken to text
        elif taken and not failed and words[0].upper() == "SELECT":
            failed.append(statement)  # the next read, before the text goes
            raise RuntimeError("database blip")

    event.listen(db, "before_cursor_execute", blip)
    try:
        with pytest.raises(RuntimeError, match="database blip"):
            hotline.text_tickets()
    finally:
        event.remove(db, "before_cursor_execute", blip)
    assert failed and texts(twilio_http) == []
    assert case_rows(db)[0]["ticket_text"] == "due"
    assert hotline.text_tickets() == 1 and len(texts(twilio_http)) == 1


def test_a_ticket_due_before_the_prefixes_were_narrowed_is_not_texted(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    line: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
) -> None:
    """SMS pumping to a country is seen and IVR_CALLBACK_PREFIXES narrowed (or another
    instance has it narrower): tickets already due to numbers outside it are not texted."""
    _client, phone = line
    calls(phone, HIJACKED, "+15005550007")
    calls(phone, HIJACKED_ZH, "+8613800138000")
    narrowed_http = RecordingTwilio()
    narrowed = texting_app(
        database_url, hotline_tree, db, clock, narrowed_http, IVR_CALLBACK_PREFIXES="+86"
    ).state.hotline
    assert narrowed.text_tickets() == 1
    assert [t["To"] for t in texts(narrowed_http)] == ["+8613800138000"]
    assert [c["ticket_text"] for c in case_rows(db)] == ["skipped", "sent"]


def test_a_callers_earlier_ticket_held_by_a_webhook_is_texted_first(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine
) -> None:
    """On PostgreSQL a round skips a case whose row a webhook is writing just then. If it
    is the caller's earlier case, their later one waits for it, rather than both being
    texted to the same number minutes apart: one text, the first ticket. Another caller's
    is texted meanwhile, not held up behind them."""
    if db.dialect.name != "postgresql":
        pytest.skip("SQLite locks the whole database: no row is skipped")
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    calls(phone, HIJACKED)
    calls(phone, DEPOSITS)
    calls(phone, DEPOSITS, "+15005550007")
    first, *_ = case_rows(db)
    with db.connect() as webhook, webhook.begin():
        webhook.execute(select(cases.c.id).where(cases.c.id == first["id"]).with_for_update())
        assert hotline.text_tickets() == 1
        assert [c["ticket_text"] for c in case_rows(db)] == ["due", "due", "sent"]
    assert [t["To"] for t in texts(twilio_http)] == ["+15005550007"]
    assert hotline.text_tickets() == 1
    assert [c["ticket_text"] for c in case_rows(db)] == ["sent", "skipped", "sent"]
    _, sent = texts(twilio_http)
    assert sent["To"] == VICTIM and first["ticket"] in sent["Body"]


def test_a_text_twilio_refuses_is_recorded_and_not_tried_again(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine
) -> None:
    """A number that cannot take texts (a landline) would be refused again: one try."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    calls(phone, HIJACKED)
    twilio_http.error = (400, 21614)  # not a mobile number
    assert hotline.text_tickets() == 0
    twilio_http.error = None
    assert hotline.text_tickets() == 0 and len(texts(twilio_http)) == 1
    assert case_rows(db)[0]["ticket_text"] == "failed"
    assert 'ivr_ticket_texts_total{result="failed"} 1.0' in client.get("/metrics").text


def test_a_number_twilio_refuses_holds_up_no_other_callers_text(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine
) -> None:
    """A caller who spoofed our own number (21266: To and From the same), or any number
    Twilio refuses: that text fails for good, and the round goes on to the next caller's."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    calls(phone, HIJACKED, CALLER_ID)
    calls(phone, HIJACKED, "+15005550007")

    def refuse_our_own_number() -> None:
        twilio_http.error = (400, 21266) if texts(twilio_http)[-1]["To"] == CALLER_ID else None

    twilio_http.meanwhile = refuse_our_own_number
    assert hotline.text_tickets() == 1
    assert [c["ticket_text"] for c in case_rows(db)] == ["failed", "sent"]


@pytest.mark.parametrize(
    "failing", [(503, 20503), (429, 20429), (401, 20003), (400, 21606), (400, 21212), (404, 20404)]
)
def test_texts_wait_while_twilio_fails_and_go_once_it_is_back(
    line: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    failing: tuple[int, int],
) -> None:
    """A surge after a hack is announced, and Twilio throttling (429) or down (503), or
    refusing us, not the caller (401 while credentials are rotated, 21606 or 21212: the
    caller ID cannot text, or is not ours; a 404: the account's SID wrong): the tickets are
    not lost; the round stops, says so (the timed job's
    outage log), and the next round after it is mended sends them all."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    calls(phone, HIJACKED)
    calls(phone, HIJACKED, "+15005550007")
    twilio_http.error = failing
    with pytest.raises(TwilioFailing):
        hotline.text_tickets()
    assert len(texts(twilio_http)) == 1  # the first tried, the second not
    assert [c["ticket_text"] for c in case_rows(db)] == ["due", "due"]
    twilio_http.error = None
    assert hotline.text_tickets() == 2
    assert [c["ticket_text"] for c in case_rows(db)] == ["sent", "sent"]


def no_answer() -> None:
    raise requests.exceptions.ReadTimeout("Twilio took the text, and did not answer in time")


def no_connection() -> None:
    refused = NewConnectionError(None, "Failed to establish a new connection")  # type: ignore[arg-type]
    raise requests.exceptions.ConnectionError(MaxRetryError(None, "/Messages.json", refused))  # type: ignore[arg-type]


@pytest.mark.parametrize("unanswered", ["500", "504", "read timeout"])
def test_a_text_twilio_may_have_taken_is_not_sent_twice(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, unanswered: str
) -> None:
    """No answer in time, or a 500 or 504: Twilio may have sent it. Left `sending`, as one
    an instance stopped in the middle of, counted `unknown`, and never sent again; the
    round goes on with the next caller's."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    calls(phone, HIJACKED)
    calls(phone, HIJACKED, "+15005550007")
    if unanswered == "read timeout":
        twilio_http.meanwhile = no_answer
    else:
        twilio_http.error = (int(unanswered), 20500)
    assert hotline.text_tickets() == 0
    assert len(texts(twilio_http)) == 2  # both tried once
    assert [c["ticket_text"] for c in case_rows(db)] == ["sending", "sending"]
    twilio_http.meanwhile, twilio_http.error = None, None
    assert hotline.text_tickets() == 0 and len(texts(twilio_http)) == 2
    assert 'ivr_ticket_texts_total{result="unknown"} 2.0' in client.get("/metrics").text


def test_a_text_that_never_reached_twilio_goes_at_the_next_round(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine
) -> None:
    """No connection made (refused, DNS): Twilio never saw it. Due again, and sent."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    calls(phone, HIJACKED)
    twilio_http.meanwhile = no_connection
    with pytest.raises(TwilioFailing):
        hotline.text_tickets()
    assert case_rows(db)[0]["ticket_text"] == "due"
    twilio_http.meanwhile = None
    assert hotline.text_tickets() == 1
    assert case_rows(db)[0]["ticket_text"] == "sent"


def test_one_ticket_per_call_and_one_per_number_in_ten_minutes(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """A caller whose case was closed while they held gets a new one from the hold loop: they
    have the first ticket already. A number that calls again and again (or is spoofed on
    every call) gets one text in ten minutes."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]

    def closed_meanwhile(poll: int) -> bool:
        if poll == 1:  # a supervisor closed it (straight in the table: the API would not)
            with db.begin() as conn:
                conn.execute(update(cases).values(status="resolved", queued=0))
        return poll < 3

    phone.call(Caller(DEPOSITS, closed_meanwhile), from_number=VICTIM)
    first, reopened = case_rows(db)
    assert first["call_sid"] == reopened["call_sid"] and reopened["ticket_text"] == "due"
    assert hotline.text_tickets() == 1
    assert [c["ticket_text"] for c in case_rows(db)] == ["sent", "skipped"]
    clock.advance(minutes=5)
    calls(phone, DEPOSITS)
    assert hotline.text_tickets() == 0 and case_rows(db)[-1]["ticket_text"] == "skipped"
    clock.advance(minutes=6)
    calls(phone, DEPOSITS)
    assert hotline.text_tickets() == 1 and case_rows(db)[-1]["ticket_text"] == "sent"
    bodies = [t["Body"] for t in texts(twilio_http)]
    assert len(bodies) == 2 and first["ticket"] in bodies[0]
    assert case_rows(db)[-1]["ticket"] in bodies[1]
    assert 'ivr_ticket_texts_total{result="skipped"} 2.0' in client.get("/metrics").text


def test_the_hold_loops_own_case_is_texted(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine
) -> None:
    """The case the hold loop opens for a caller it finds without one (theirs closed while
    they held, opened before tickets were texted) is texted like any other."""
    client, phone = line

    def closed_meanwhile(poll: int) -> bool:
        if poll == 1:
            with db.begin() as conn:
                conn.execute(update(cases).values(status="resolved", queued=0, ticket_text=None))
        return poll < 3

    phone.call(Caller(DEPOSITS, closed_meanwhile), from_number=VICTIM)
    _, reopened = case_rows(db)
    assert client.app.state.hotline.text_tickets() == 1  # type: ignore[attr-defined]
    [sent] = texts(twilio_http)
    assert reopened["ticket"] in sent["Body"]


def test_a_backlog_is_sent_in_one_round(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine
) -> None:
    """Many tickets due at once (after an outage, or a surge): all of them in one round,
    one after another."""
    client, phone = line
    for n in range(25):
        calls(phone, DEPOSITS, f"+1500555{n:04d}")
    assert client.app.state.hotline.text_tickets() == 25  # type: ignore[attr-defined]
    assert len({t["To"] for t in texts(twilio_http)}) == 25


def test_a_live_tree_that_cannot_say_the_text_leaves_the_tickets_due(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, tmp_path: Path
) -> None:
    """Another instance (older code, or the setting off there) made live a tree whose
    catalogs have no `ticket_text`: this one sends nothing, says so, and keeps them due."""
    client, phone = line
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    # Loaded before the call: between the call and the swap, the app's own timed job would
    # text the ticket (loading a tree takes a while).
    prompts = catalogs_without(tmp_path / "prompts", "ticket_text")
    mute = load_tree(PROJECT_ROOT / "routes" / "hotline.yaml", prompts)
    calls(phone, HIJACKED)
    hotline.trees.set_current(mute)
    assert hotline.text_tickets() == 0
    assert texts(twilio_http) == [] and case_rows(db)[0]["ticket_text"] == "due"


def test_a_ticket_found_an_hour_late_is_not_texted(
    line: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """Every instance was down for hours, or the setting was turned off and on again: a
    ticket texted that late is no help."""
    client, phone = line
    calls(phone, HIJACKED)
    clock.advance(hours=1, seconds=1)
    assert client.app.state.hotline.text_tickets() == 0  # type: ignore[attr-defined]
    assert texts(twilio_http) == [] and case_rows(db)[0]["ticket_text"] == "stale"


def test_without_the_setting_nothing_is_due_or_texted(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    twilio_http: RecordingTwilio,
    check_twiml: Callable[[str], None],
) -> None:
    app = texting_app(database_url, hotline_tree, db, clock, twilio_http, IVR_TEXT_TICKETS=False)
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        calls(phone, HIJACKED)
        assert app.state.hotline.text_tickets() == 0
    assert texts(twilio_http) == [] and case_rows(db)[0]["ticket_text"] is None


def test_the_running_server_texts_by_itself(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    twilio_http: RecordingTwilio,
    check_twiml: Callable[[str], None],
) -> None:
    app = texting_app(database_url, hotline_tree, db, clock, twilio_http, IVR_TREE_SYNC=0.05)
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        calls(phone, DEPOSITS)
        eventually(lambda: texts(twilio_http))
    assert [t["To"] for t in texts(twilio_http)] == [VICTIM]


def test_texting_tickets_needs_twilio_and_words_to_text(
    tmp_path: Path, hotline_tree: CompiledTree, db: Engine
) -> None:
    """Catalogs without `ticket_text` (an operator's own, from before it shipped) still load;
    with IVR_TEXT_TICKETS they are refused, at start and on a reload."""
    with pytest.raises(ValidationError, match="IVR_TEXT_TICKETS needs TWILIO_ACCOUNT_SID"):
        make_settings(IVR_TEXT_TICKETS=True, IVR_CALLBACK_PREFIXES="+1")
    with pytest.raises(ValidationError, match="IVR_TEXT_TICKETS needs IVR_CALLBACK_PREFIXES"):
        make_settings(IVR_TEXT_TICKETS=True, TWILIO_ACCOUNT_SID="AC" + "0" * 32)
    prompts = catalogs_without(tmp_path / "prompts", "ticket_text")
    wordless = load_tree(PROJECT_ROOT / "routes" / "hotline.yaml", prompts)
    settings = make_settings(
        IVR_TEXT_TICKETS=True,
        TWILIO_ACCOUNT_SID="AC" + "0" * 32,
        IVR_CALLBACK_PREFIXES="+1",
        IVR_PROMPTS=str(prompts),
    )
    twilio = TwilioClient("AC" + "0" * 32, TOKEN, http_client=RecordingTwilio())
    with pytest.raises(SourceError, match="'ticket_text' is missing from the en catalog"):
        create_app(settings, tree=wordless, db=db, twilio=twilio)
    app = create_app(settings, tree=hotline_tree, db=db, twilio=twilio)
    with pytest.raises(SourceError, match="ticket_text"):
        app.state.hotline.reload(by="test")
    assert app.state.hotline.trees.current is hotline_tree
