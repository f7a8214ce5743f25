"""Tickets texted to callers (IVR_TEXT_TICKETS, `Hotline.text_tickets`): the reference the
seed article tells callers to keep, sent to the calling number once per case, in the
caller's language, by whichever instance takes it first; never to a withheld number or one
outside IVR_CALLBACK_PREFIXES."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Engine, select
from twilio.rest import Client as TwilioClient

from ivr.db import cases
from ivr.exceptions import SourceError
from ivr.phone import Phone, Press
from ivr.settings import PROJECT_ROOT
from ivr.tree import CompiledTree, load_tree
from ivr.web import create_app
from tests.conftest import (
    CALLER_ID,
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
    values: dict[str, object] = {
        "IVR_DATABASE_URL": database_url,
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "IVR_TEXT_TICKETS": True,
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
    app = texting_app(database_url, hotline_tree, db, clock, twilio_http)
    with TestClient(app) as client:
        yield (
            client,
            Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml),
        )


def texts(twilio: RecordingTwilio) -> list[dict[str, str]]:
    return [data for _, url, data in twilio.requests if url.endswith("/Messages.json")]


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
    assert sent[0]["Body"] == (
        f"Exchange support: your ticket number is {english['ticket']}. To follow it up, call "
        "us and press 9 in the main menu. We will never ask for your password, 2FA codes or "
        "private keys, nor ask you to move funds."
    )
    assert f"您的工单号是 {mandarin['ticket']}。" in sent[1]["Body"]
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
    with TestClient(app) as client:
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
    """Both instances see the case due; the other takes it while this one texts the one
    before it: this one finds it taken and leaves it."""
    client, phone = line
    other_http = RecordingTwilio()
    other = texting_app(database_url, hotline_tree, db, clock, other_http).state.hotline
    calls(phone, HIJACKED)
    calls(phone, HIJACKED, "+15005550007")
    twilio_http.meanwhile = lambda: other.text_tickets() if not texts(other_http) else None
    assert client.app.state.hotline.text_tickets() == 1  # type: ignore[attr-defined]
    assert [t["To"] for t in texts(twilio_http)] == [VICTIM]
    assert [t["To"] for t in texts(other_http)] == ["+15005550007"]
    assert [c["ticket_text"] for c in case_rows(db)] == ["sent", "sent"]


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
    with TestClient(app) as client:
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
    with TestClient(app) as client:
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
        make_settings(IVR_TEXT_TICKETS=True)
    prompts = catalogs_without(tmp_path / "prompts", "ticket_text")
    wordless = load_tree(PROJECT_ROOT / "routes" / "hotline.yaml", prompts)
    settings = make_settings(
        IVR_TEXT_TICKETS=True, TWILIO_ACCOUNT_SID="AC" + "0" * 32, IVR_PROMPTS=str(prompts)
    )
    twilio = TwilioClient("AC" + "0" * 32, TOKEN, http_client=RecordingTwilio())
    with pytest.raises(SourceError, match="'ticket_text' is missing from the en catalog"):
        create_app(settings, tree=wordless, db=db, twilio=twilio)
    app = create_app(settings, tree=hotline_tree, db=db, twilio=twilio)
    with pytest.raises(SourceError, match="ticket_text"):
        app.state.hotline.reload(by="test")
    assert app.state.hotline.trees.current is hotline_tree
