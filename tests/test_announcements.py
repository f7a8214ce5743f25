"""Announcements: set by a supervisor, heard first by every caller, everywhere, for a while."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from ivr.announcements import Current, for_holding
from ivr.db import audit_log
from ivr.phone import Phone, Press, ScriptedParty
from ivr.settings import Settings
from ivr.tree import CompiledTree, compile_source
from ivr.web import create_app
from tests.conftest import (
    HTTPS_CLIENT,
    PUBLIC_URL,
    TOKEN,
    FakeClock,
    bearer,
    make_settings,
    make_user,
)
from tests.test_hotpath import Line, counting

EN = "We know withdrawals are paused while we investigate. Your funds are safe."
ZH = "我们已知晓提现暂停,正在调查。您的资产安全。"
INCIDENT = {"texts": {"en": EN, "zh-CN": ZH}, "minutes": 60}
MAIN_MENU = "If your account has been hacked or stolen"
EMERGENCY = "Emergency service for hacked accounts"


def put(client: TestClient, token: str, body: dict[str, Any]) -> Any:
    return client.put("/api/announcement", json=body, headers=bearer(token))


def test_every_caller_hears_it_first_in_their_language(
    client: TestClient, phone: Phone, db: Engine
) -> None:
    sam = make_user(db, "sam", "supervisor")
    made = put(client, sam, INCIDENT)
    assert made.status_code == 200, made.text
    assert made.json()["set_by"] == "supervisor:sam"
    english = phone.call(ScriptedParty([Press("1")]))
    at = english.heard.index(EN)  # after the language choice, right before the main menu
    assert english.heard[at + 1].startswith(MAIN_MENU) and MAIN_MENU not in english.heard[:at]
    mandarin = phone.call(ScriptedParty([Press("2")]))
    assert ZH in mandarin.heard and EN not in mandarin.heard
    # Told once: a caller back at the main menu does not hear it again.
    again = phone.call(ScriptedParty([Press("1"), Press("3"), Press("#")]))
    assert sum(line.startswith(MAIN_MENU) for line in again.heard) == 1  # then its reminder
    assert again.heard[-2].startswith("Press 1 for a hacked or stolen account")
    assert again.heard[-1].startswith(WORRIED_OFFER)  # while it is up: after the menu
    assert again.heard.count(EN) == 1
    # Who set it, and what, is in the audit log.
    with db.connect() as conn:
        entry = conn.execute(select(audit_log)).mappings().one()
    assert (entry["actor"], entry["action"]) == ("supervisor:sam", "announce")
    assert EN in entry["reason"] and ZH in entry["reason"]


def test_a_victim_is_not_held_up_by_it(client: TestClient, phone: Phone, db: Engine) -> None:
    """Keys pressed while it plays cut it short: the emergency path is as fast as ever."""
    put(client, make_user(db, "sam", "supervisor"), INCIDENT)
    record = phone.call(ScriptedParty([Press("1"), Press("1")]))
    assert any(line.startswith(EMERGENCY) for line in record.heard)
    gather = next(doc for doc in record.documents if EN in doc)
    assert gather.index("<Gather") < gather.index(EN) < gather.index("</Gather>")


def test_it_ends_when_it_expires_or_is_cleared(
    client: TestClient, phone: Phone, db: Engine, clock: FakeClock
) -> None:
    sam = make_user(db, "sam", "supervisor")
    put(client, sam, INCIDENT)
    clock.advance(minutes=61)
    assert client.get("/api/announcement", headers=bearer(sam)).json() is None
    assert EN not in phone.call(ScriptedParty([Press("1")])).heard
    put(client, sam, INCIDENT)
    assert client.get("/api/announcement", headers=bearer(sam)).json()["texts"]["en"] == EN
    cleared = client.delete("/api/announcement", headers=bearer(sam))
    assert cleared.json() == {"cleared": True}
    assert client.delete("/api/announcement", headers=bearer(sam)).json() == {"cleared": False}
    assert EN not in phone.call(ScriptedParty([Press("1")])).heard
    with db.connect() as conn:
        actions = conn.execute(select(audit_log.c.action).order_by(audit_log.c.id)).scalars()
        assert list(actions) == ["announce", "announce", "announce_clear"]


def test_another_instance_plays_it_once_it_looks(
    client: TestClient,
    db: Engine,
    settings: Settings,
    hotline_tree: CompiledTree,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
) -> None:
    """Set on one instance; the other reads it from the database when it checks for a new
    tree version (every IVR_TREE_SYNC seconds), and plays it from then on."""
    other_app = create_app(settings, tree=hotline_tree, db=db, clock=clock)
    with TestClient(other_app, base_url=HTTPS_CLIENT) as other:
        phone = Phone(other, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        put(client, make_user(db, "sam", "supervisor"), INCIDENT)
        assert EN not in phone.call(ScriptedParty([Press("1")])).heard  # not looked yet
        other_app.state.hotline.refresh_announcement()
        assert EN in phone.call(ScriptedParty([Press("1")])).heard


def test_only_supervisors_and_operators_set_it_and_in_every_language(
    client: TestClient, db: Engine
) -> None:
    sam, olga = make_user(db, "sam", "supervisor"), make_user(db, "olga", "operator")
    ana = make_user(db, "ana", "agent")
    assert put(client, ana, INCIDENT).status_code == 403
    assert client.delete("/api/announcement", headers=bearer(ana)).status_code == 403
    assert client.get("/api/announcement", headers=bearer(ana)).status_code == 200
    assert put(client, olga, INCIDENT).status_code == 200
    refused = [
        ({"texts": {"en": EN}}, "every language callers choose: zh-CN"),
        ({"texts": {"en": EN, "zh-CN": " \x00 "}}, "every language callers choose: zh-CN"),
        ({"texts": {"en": EN, "zh-CN": ZH, "fr": "Bonjour"}}, "no caller chooses fr"),
        ({"texts": {"en": "x" * 601, "zh-CN": ZH}}, "600 characters at most: en"),
        # XML cannot carry these: every caller's main menu would be unreadable to Twilio.
        ({"texts": {"en": "Hello \uffff world", "zh-CN": ZH}}, "no call can carry: en"),
        ({"texts": {"en": EN, "zh-CN": ZH}, "minutes": 0}, "minutes"),
    ]
    for body, why in refused:
        r = put(client, sam, body)
        assert r.status_code == 422 and why in r.text, (body, r.text)
    # A lone surrogate (JSON allows "\ud800"; no text encoding does): refused, not a 500.
    lone = client.put(
        "/api/announcement",
        content='{"texts": {"en": "Paused.", "zh-CN": "\\ud800"}}',
        headers={**bearer(sam), "Content-Type": "application/json"},
    )
    assert lone.status_code == 422 and "no call can carry: zh-CN" in lone.text
    # Control characters go; the words stay.
    r = put(client, sam, {"texts": {"en": "Line one.\r\nLine\ttwo.", "zh-CN": ZH}})
    assert r.json()["texts"]["en"] == "Line one. Line two."
    assert client.get("/api/announcement", headers=bearer(sam)).json()["set_by"] == (
        "supervisor:sam"
    )


def test_supervisors_see_where_callers_hear_it_and_when_nobody_would(
    client: TestClient, db: Engine, settings: Settings, clock: FakeClock, hotline_tree: CompiledTree
) -> None:
    """The live tree plays it at the main menu: said so. A tree whose menus play it nowhere
    (an operator dropped `announcement: true`): the API says nobody hears it, and the queue
    page says so before a supervisor announces anything during an incident."""
    sam = make_user(db, "sam", "supervisor")
    assert put(client, sam, INCIDENT).json()["heard_at"] == ["main_menu"]
    quiet = compile_source(
        hotline_tree.source.replace("    announcement: true", "    announcement: false"),
        hotline_tree.file,
        hotline_tree.catalogs,
    )
    assert quiet.announced_at == []
    with TestClient(
        create_app(settings, tree=quiet, db=db, clock=clock), base_url=HTTPS_CLIENT
    ) as other:
        assert other.get("/api/announcement", headers=bearer(sam)).json()["heard_at"] == []
        assert other.post("/dashboard/login", data={"token": sam}).status_code == 200
        page = other.get("/dashboard/queue").text
    assert "No menu of the live call tree plays announcements" in page
    assert client.post("/dashboard/login", data={"token": sam}).status_code == 200
    page = client.get("/dashboard/queue").text
    assert "Callers hear this as they reach main_menu, from now on" in page
    assert "No menu of the live call tree" not in page


def test_callers_already_holding_hear_it_at_their_next_round(
    client: TestClient, db: Engine, clock: FakeClock, check_twiml: Callable[[str], None]
) -> None:
    """On the worst day most callers are holding already when the incident is announced:
    they went through the main menu before it, so their hold round says it first, inside the
    call-back offer's <Gather> (1 for a call back is heard while it plays), for the rounds
    that begin within IVR_ANNOUNCE_ON_HOLD (240 s) of it. A caller who joined the line after
    it heard it at the main menu and is not told again while holding."""
    line = Line(client)
    wait_url = line.into_queue().get("waitUrl", "")
    check_twiml(ET.tostring(line.post(wait_url, QueueTime="0"), encoding="unicode"))
    clock.advance(seconds=30)
    assert put(client, make_user(db, "sam", "supervisor"), INCIDENT).status_code == 200
    clock.advance(seconds=20)
    round_ = ET.tostring(line.post(wait_url, QueueTime="50"), encoding="unicode")
    check_twiml(round_)
    gather = line.doc.find("Gather")
    assert gather is not None
    said = [say.text for say in gather.iter("Say")]
    # Nobody is at work here: the call-back offer comes next, then the place in line.
    assert said[0] == EN and said[1].startswith("To have us call you back"), said
    assert said[2].startswith("You are number 1 in line"), said
    assert ZH not in round_
    clock.advance(seconds=200)  # 220 s after it went up: still in the window
    assert EN in ET.tostring(line.post(wait_url, QueueTime="250"), encoding="unicode")
    clock.advance(seconds=30)  # 250 s: past it
    assert EN not in ET.tostring(line.post(wait_url, QueueTime="280"), encoding="unicode")
    # Joined after it went up: the main menu said it; holding does not say it again.
    later = Line(client)
    later.base["CallSid"] = "CA" + "2" * 32
    later.post(PUBLIC_URL + "/twilio/voice", CallStatus="ringing")
    later.post(later.gather_action(), Digits="1")
    assert EN in ET.tostring(later.doc, encoding="unicode")
    enqueue = later.post(later.gather_action(), Digits="0").find("Enqueue")
    assert enqueue is not None
    later_wait = enqueue.get("waitUrl", "")
    clock.advance(seconds=10)
    assert EN not in ET.tostring(later.post(later_wait, QueueTime="10"), encoding="unicode")


def test_a_caller_enqueued_again_still_hears_what_went_up_while_they_held(
    client: TestClient, db: Engine, clock: FakeClock
) -> None:
    """Twilio's QueueTime starts again at 0 at each <Enqueue> (a transfer to another team, a
    move): a caller who joined the line before the announcement never heard it at the main
    menu, however short their time in this queue says they have held."""
    line = Line(client)
    wait_url = line.into_queue().get("waitUrl", "")
    line.post(wait_url, QueueTime="0")
    clock.advance(seconds=120)
    assert put(client, make_user(db, "sam", "supervisor"), INCIDENT).status_code == 200
    clock.advance(seconds=20)
    assert EN in ET.tostring(line.post(wait_url, QueueTime="5"), encoding="unicode")


def test_what_a_holding_caller_hears_of_it() -> None:
    """`for_holding`: in the caller's language, only if it went up after they joined the line
    and within the window, and never once it has expired."""
    at = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
    news = Current(7, {"en": EN, "zh-CN": ZH}, "supervisor:sam", at, at + timedelta(minutes=3))
    window = timedelta(seconds=240)

    def heard(*, after: int, held: int, language: str = "en") -> str | None:
        now = at + timedelta(seconds=after)
        joined = now - timedelta(seconds=held)
        return for_holding(news, language=language, now=now, joined=joined, within=window)

    assert heard(after=10, held=60) == EN
    assert heard(after=10, held=60, language="zh-CN") == ZH
    assert heard(after=10, held=60, language="fr") is None
    assert heard(after=10, held=10) is None  # joined as it went up: the menu said it
    assert heard(after=10, held=5) is None  # joined after it
    assert heard(after=-1, held=60) is None  # not up yet
    assert heard(after=179, held=600) == EN
    assert heard(after=180, held=600) is None  # expired (3 minutes)
    long_news = Current(7, news.texts, news.set_by, at, at + timedelta(hours=2))
    now = at + timedelta(seconds=240)
    joined = now - timedelta(seconds=600)
    assert for_holding(long_news, language="en", now=now, joined=joined, within=window) is None
    assert for_holding(None, language="en", now=now, joined=joined, within=window) is None
    assert for_holding(long_news, language="en", now=now, joined=joined, within=timedelta()) is None


def test_an_announcement_that_names_a_key_is_refused(client: TestClient, db: Engine) -> None:
    """It plays inside the main menu's <Gather>: "press 1 for a call back" there is main
    menu 1, the emergency lane, for every worried caller who does as told; and while callers
    hold, 1 asks for a call back. Refused, in any language and spelling, saying where; the
    same words without a key go up."""
    sam = make_user(db, "sam", "supervisor")
    for en, zh, said in [
        (EN + " Press 1 for a call back.", ZH, '"Press 1" in en'),
        (EN + " To be called back, press one.", ZH, '"press one" in en'),
        (EN, ZH + "回电请按1。", '"按1" in zh-CN'),
        (EN, ZH + "回电请按一。", '"按一" in zh-CN'),
        (EN + " Or press the pound key.", ZH, '"press the pound" in en'),
        # Any verb of keying, and a full-width digit as a Chinese input method types it.
        (EN + " For a call back, dial 1.", ZH, '"dial 1" in en'),
        (EN + " Select 1 to hear more.", ZH, '"Select 1" in en'),
        (EN + " Enter 1 now.", ZH, '"Enter 1" in en'),
        (EN, ZH + "如需回电请按１。", '"按1" in zh-CN'),
        (EN, ZH + "回电请拨1。", '"拨1" in zh-CN'),
        (EN, ZH + "请输入1。", '"输入1" in zh-CN'),
    ]:
        r = put(client, sam, {"texts": {"en": en, "zh-CN": zh}})
        assert r.status_code == 422, r.text
        assert f"no key to press ({said})" in r.json()["detail"], r.text
    assert client.get("/api/announcement", headers=bearer(sam)).json() is None
    fine = {"en": EN + " You do not need to hold: we will post updates.", "zh-CN": ZH + "请按一下"}
    assert put(client, sam, {"texts": fine}).status_code == 200
    # A count or a phone number after the verb is no key.
    counts = {
        "en": EN + " From abroad, dial 1-800-555-0100. Never enter 6 digits a caller asks for.",
        "zh-CN": ZH + "请勿向任何人输入6位验证码。预计下午3点5分恢复。",
    }
    assert put(client, sam, {"texts": counts}).status_code == 200


WORRIED_OFFER = "If you are calling about the incident we just told you about"
WORRIED_ADVICE = "Thank you for checking on your account."


def test_the_worried_callers_key_lasts_as_long_as_the_announcement(
    client: TestClient, phone: Phone, db: Engine, clock: FakeClock
) -> None:
    """Main menu # (the tree's `incident_options`): offered and taken while an announcement
    is up, on every instance that plays it; cleared or expired, # is an invalid key again and
    nobody is told of it."""
    sam = make_user(db, "sam", "supervisor")

    def pound() -> list[str]:
        return phone.call(ScriptedParty([Press("1"), Press("#")])).heard

    put(client, sam, INCIDENT)
    heard = pound()
    assert any(line.startswith(WORRIED_OFFER) for line in heard)
    assert any(line.startswith(WORRIED_ADVICE) for line in heard)
    client.delete("/api/announcement", headers=bearer(sam))
    heard = pound()
    assert "Sorry, that is not a valid choice." in heard
    assert not any(WORRIED_OFFER in line or WORRIED_ADVICE in line for line in heard)
    put(client, sam, INCIDENT)
    assert any(line.startswith(WORRIED_ADVICE) for line in pound())
    clock.advance(minutes=61)  # INCIDENT is up for 60
    heard = pound()
    assert "Sorry, that is not a valid choice." in heard
    assert not any(WORRIED_OFFER in line or WORRIED_ADVICE in line for line in heard)


def test_the_worried_callers_key_is_a_menu_key_on_the_hot_path(
    database_url: str, hotline_tree: CompiledTree, db: Engine, clock: FakeClock
) -> None:
    """Whether an announcement is up is known from memory (where the menu plays it): # is
    one read and one write, as every menu key."""
    settings = make_settings(
        IVR_DATABASE_URL=database_url,
        IVR_TREE_SYNC=3600,
        IVR_SWEEP_INTERVAL=3600,
        IVR_DISPATCH_INTERVAL=3600,
    )
    app = create_app(settings, tree=hotline_tree, db=db, clock=clock)
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        assert put(client, make_user(db, "sam", "supervisor"), INCIDENT).status_code == 200
        line = Line(client)
        line.post(PUBLIC_URL + "/twilio/voice", CallStatus="ringing")
        line.post(line.gather_action(), Digits="1")  # English: the main menu, and its offer
        assert WORRIED_OFFER in ET.tostring(line.doc, encoding="unicode")
        with counting(db) as seen:
            line.post(line.gather_action(), Digits="#")
        assert WORRIED_ADVICE in ET.tostring(line.doc, encoding="unicode")
        assert len(seen.reads) == 1, seen.sql  # the call
        assert len(seen.writes) == 2, seen.sql  # its new step, its log lines
