"""Issue 3 end to end: verification by keypad, the emergency case first in line, agents.

Every call goes through the Twilio-like phone. Agents act through the JSON API while a
caller holds (from the party's keep_holding, the moment a real agent would act).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from lxml import etree
from sqlalchemy import Connection, Engine, event, select, text, update

from ivr import oncall
from ivr.api import mask
from ivr.cases import NOBODY_TO_CALL, agents_to_offer, on_the_call, revoke_user
from ivr.db import accounts, audit_log, calls, cases, metadata
from ivr.exceptions import IdentityUnavailable
from ivr.identity import LocalAccountActions, LocalDirectory
from ivr.phone import (
    VOICEMAIL,
    Answer,
    CallRecord,
    HangsUp,
    HangUp,
    Phone,
    Press,
    Prompt,
    ScriptedParty,
    Silent,
)
from ivr.settings import PROJECT_ROOT, Settings
from ivr.store import call_log
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
from tests.support.parties import Caller, Talks
from tests.support.twilio import app_with_twilio, on_the_line, placed_calls

UID, PIN, ID4 = "10000001", "739182", "5064"
VICTIM = "+15005550006"
AGENT_PHONE = "+15005559999"

# Asking for the next case and accepting one: the desk's own entries (`take`, `accept`), left
# out where a test reads what was done to a case.
not_desk = audit_log.c.action.not_in(("take", "accept"))


@pytest.fixture(autouse=True)
def account(db: Engine, settings: Settings) -> None:
    LocalDirectory(db, settings.secret_key).add(
        uid=UID,
        pin=PIN,
        id_last4=ID4,
        phone=VICTIM,
        totp_secret=None,
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )


@pytest.fixture
def agent(db: Engine) -> str:
    return make_user(db, "alice", "agent", AGENT_PHONE)


def api(client: TestClient, token: str, method: str, path: str, **kw: Any) -> Any:
    response = client.request(method, path, headers=bearer(token), **kw)
    assert response.status_code == 200, response.text
    return response.json()


def case_rows(db: Engine) -> list[dict[str, Any]]:
    with db.connect() as conn:
        return [dict(r) for r in conn.execute(select(cases).order_by(cases.c.id)).mappings()]


def take_in_turn(client: TestClient, agent: str, times: int) -> list[Any]:
    """The cases an agent gets from `next`, `times` times, each closed before the next (an
    agent has one case at a time); None once the line is empty."""
    taken = []
    for _ in range(times):
        case = api(client, agent, "POST", "/api/agents/next")["case"]
        taken.append(case)
        if case is not None:
            done = {"notes": "called back", "reached": True}
            api(client, agent, "POST", f"/api/cases/{case['id']}/resolve", json=done)
    return taken


HIJACK = [Press("1"), Press("1"), Press(UID), Press(PIN)]  # English, stolen account, UID, PIN
# English, the general queue; at the hold loop's offer 1 for a call back, and 2 to confirm.
CALL_ME_BACK = (Press("1"), Press("0"), Press("1"), Press("2"))  # a tuple: a party pops a list


def test_the_hijack_story(phone: Phone, client: TestClient, agent: str, db: Engine) -> None:
    seen: dict[str, Any] = {}

    def victim_holds(poll: int) -> bool:
        if poll == 1:  # an agent becomes free while the victim holds
            seen["queue"] = api(client, agent, "GET", "/api/queue")
            seen["claimed"] = api(client, agent, "POST", "/api/agents/next")
        return poll < 4

    def normal_caller_holds(poll: int) -> bool:
        if poll == 1:  # while the normal caller waits, the hijacked caller calls in
            seen["victim"] = phone.call(
                Caller(list(HIJACK), victim_holds),
                from_number=VICTIM,
                stir_verstat="TN-Validation-Passed-A",
            )
        return False  # and then the normal caller hangs up

    # The normal caller: deposits -> not credited -> agent, in the payments queue.
    normal = phone.call(
        Caller([Press("1"), Press("3"), Press("1"), Press("1")], normal_caller_holds),
        from_number="+15005550123",
    )
    victim: CallRecord = seen["victim"]

    # The queue, as the agent saw it: the emergency first although it came second.
    queue = seen["queue"]
    assert [(e["priority"], e["queue"]) for e in queue] == [
        ("emergency", "security"),
        ("normal", "payments"),
    ]
    assert queue[0]["verified"] == "yes" and queue[0]["caller"] == "***0006"

    # The agent got the emergency case, with what they need and no secret.
    claimed = seen["claimed"]
    case = claimed["case"]
    assert claimed["connect"] == {"mode": "next_hold_poll", "number": None}
    assert (case["priority"], case["reason"], case["account_uid"]) == (
        "emergency",
        "account_hijack",
        UID,
    )
    assert case["verification"] == {"result": "yes", "factors": ["uid", "pin"], "partial": False}
    assert case["risk"] == {"caller_id_match": "yes", "stir_verstat": "TN-Validation-Passed-A"}
    assert case["freeze"] == {"self_freeze": "done"}
    assert "emergency_verify" in case["menu_path"] and "main_menu" in case["menu_path"]
    assert PIN not in repr(claimed)

    # The victim heard their ticket digit by digit, the freeze, then was put through.
    ticket = case["ticket"]
    assert any(" ".join(ticket) in line for line in victim.heard)
    assert any("protective freeze" in line for line in victim.heard)
    assert not any("not frozen yet" in line for line in victim.heard)
    assert victim.dialed == AGENT_PHONE
    assert victim.queue == "security" and normal.queue == "payments"

    # The self-freeze happened and was audited.
    with db.connect() as conn:
        assert conn.execute(select(accounts.c.frozen).where(accounts.c.uid == UID)).scalar() == 1
        audits = conn.execute(select(audit_log.c.action, audit_log.c.result).where(not_desk)).all()
    assert [tuple(a) for a in audits] == [("self_freeze", "ok")]

    # The agent freezes (again, from their side) and resolves.
    frozen = api(
        client,
        agent,
        "POST",
        f"/api/cases/{case['id']}/freeze",
        json={"reason": "caller reports account takeover"},
    )
    assert frozen == {"frozen": True, "detail": "frozen"}
    done = api(
        client,
        agent,
        "POST",
        f"/api/cases/{case['id']}/resolve",
        json={"notes": "frozen; password reset advised"},
    )
    assert done["status"] == "resolved"

    rows = {r["ticket"]: r for r in case_rows(db)}
    assert rows[ticket]["status"] == "resolved" and rows[ticket]["connected_at"] is not None
    other = next(r for t, r in rows.items() if t != ticket)
    assert other["status"] == "abandoned" and other["queued"] == 1  # kept for a call back
    assert [e["ticket"] for e in api(client, agent, "GET", "/api/queue")] == [other["ticket"]]


def test_a_local_freeze_commits_with_the_verified_step(phone: Phone, db: Engine) -> None:
    """The verified caller's step, their account frozen, the note on their case and the audit
    record are one transaction: no crash, and no lock another process takes between them, can
    store the step (the caller told "your account is frozen") without the freeze."""
    transactions: list[list[str]] = []

    def began(_conn: Any) -> None:
        transactions.append([])

    def executed(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if transactions and statement.startswith(("INSERT", "UPDATE")):
            transactions[-1].append(" ".join(statement.split()[:3]))

    event.listen(db, "begin", began)
    event.listen(db, "before_cursor_execute", executed)
    try:
        record = phone.call(ScriptedParty(list(HIJACK)), from_number=VICTIM)
    finally:
        event.remove(db, "begin", began)
        event.remove(db, "before_cursor_execute", executed)
    assert any("protective freeze" in line for line in record.heard)
    freezes = [t for t in transactions if "UPDATE accounts SET" in t]
    assert len(freezes) == 1
    assert {"UPDATE calls SET", "INSERT INTO cases", "UPDATE cases SET"} <= set(freezes[0])
    assert "INSERT INTO audit_log" in freezes[0]
    with db.connect() as conn:
        assert conn.execute(select(accounts.c.frozen).where(accounts.c.uid == UID)).scalar() == 1
        audits = conn.execute(select(audit_log.c.action, audit_log.c.result)).all()
    assert [tuple(a) for a in audits] == [("self_freeze", "ok")]
    assert case_rows(db)[0]["flags"]["self_freeze"] == "done"


def test_an_identity_outage_sends_victims_on_unverified_and_locks_nobody_out(
    served: Served,
    database_url: str,
    db: Engine,
) -> None:
    """The exchange's identity service is down on the worst day: each victim reaches the
    security team at once, flagged `unavailable`, and none of it counts towards a lockout (the
    same victim calls six times, one more than the lockout allows)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens here
    settings = make_settings(
        IVR_DATABASE_URL=database_url, IVR_IDENTITY_URL=down, IVR_IDENTITY_KEY="k" * 32
    )
    with httpx.Client(timeout=1) as http, served(settings, http=http) as (client, phone):
        # The first PIN is delivered 4 times (a retry racing it): still one check without a
        # verdict in the metrics, as it is one step.
        records = [
            phone.call(
                ScriptedParty([*HIJACK[:-1], Press(PIN, deliveries=4 if n == 0 else 1)]),
                from_number=VICTIM,
            )
            for n in range(6)
        ]
        metrics = client.get("/metrics").text
    assert [r.queue for r in records] == ["security"] * 6
    # Straight on after the PIN: no "could not verify, try again" for an outage.
    asked = "enter your 6 digit phone PIN"
    assert all(r.transcript.count(asked) == 1 for r in records), records[0].transcript
    rows = case_rows(db)
    assert [(r["priority"], r["flags"]["verified"]) for r in rows] == [
        ("emergency", "unavailable")
    ] * 6
    with db.connect() as conn:
        failures = conn.execute(text("SELECT count(*) FROM verification_failures")).scalar()
    assert failures == 0
    assert "ivr_identity_unavailable_total 6.0" in metrics
    assert "ivr_verification_failures_total 0.0" in metrics


class WrongThenDown:
    """The identity service says the first answer is wrong, then goes down."""

    def __init__(self) -> None:
        self.checks = 0

    def check(self, *, uid: str, factor: str, digits: str, now: datetime) -> bool:
        self.checks += 1
        if self.checks == 1:
            return False
        raise IdentityUnavailable(factor)

    def registered_phone(self, *, uid: str) -> str | None:
        return None


def test_an_outage_after_a_wrong_answer_leaves_the_caller_flagged_unverified(
    served: Served,
    db: Engine,
) -> None:
    """A wrong PIN, then no verdict on the second try (an outage, or a service an attacker can
    make fail): the agent sees `no`, not `unavailable`."""
    identity = WrongThenDown()
    with served(identity=identity) as (_client, phone):
        record = phone.call(
            ScriptedParty([*HIJACK[:3], Press("000000"), Press(UID), Press(PIN)]),
            from_number=VICTIM,
        )
    assert identity.checks == 2 and record.queue == "security"
    assert [(r["priority"], r["flags"]["verified"]) for r in case_rows(db)] == [("emergency", "no")]
    with db.connect() as conn:  # the wrong answer counts; the one without a verdict does not
        failures = conn.execute(text("SELECT count(*) FROM verification_failures")).scalar()
    assert failures == 1


class FreezeFails(LocalAccountActions):
    """Our own accounts table, where the freeze statement fails (a lock that never comes)."""

    def freeze_in(self, conn: Connection, *, uid: str, now: datetime) -> bool:  # type: ignore[override]
        conn.execute(text("UPDATE no_such_table SET frozen = 1"))
        return True


def test_a_failed_local_freeze_still_stores_the_step_and_the_emergency_case(
    served: Served,
    db: Engine,
) -> None:
    """The freeze is rolled back alone: the verified victim is queued with their case, which
    tells the agent to freeze by hand, and the audit record says it failed."""
    with served(actions=FreezeFails(db)) as (client, phone):
        record = phone.call(ScriptedParty(list(HIJACK)), from_number=VICTIM)
        metrics = client.get("/metrics").text
    assert record.queue == "security"
    [case] = case_rows(db)
    assert (case["priority"], case["flags"]["verified"]) == ("emergency", "yes")
    assert case["flags"]["self_freeze"] == "failed"
    with db.connect() as conn:
        assert conn.execute(select(accounts.c.frozen).where(accounts.c.uid == UID)).scalar() == 0
        audits = conn.execute(select(audit_log.c.action, audit_log.c.result)).all()
    assert [tuple(a) for a in audits] == [("self_freeze", "failed")]
    assert 'ivr_freezes_total{by="caller",result="failed"} 1.0' in metrics
    # Told as they joined the line that the freeze was being placed: at the first hold round,
    # that it failed, before anything else.
    said = record.transcript
    told = said.index("placing a protective freeze")
    assert said.index("could not freeze your account automatically") > told


class FreezeFailsFirst(FreezeFails):
    """The first freeze fails (the account service down a moment); the next ones are made."""

    def __init__(self, db: Engine) -> None:
        super().__init__(db)
        self.tries = 0

    def freeze_in(self, conn: Connection, *, uid: str, now: datetime) -> bool:  # type: ignore[override]
        self.tries += 1
        if self.tries == 1:
            return super().freeze_in(conn, uid=uid, now=now)
        return LocalAccountActions.freeze_in(conn, uid=uid, now=now)


def test_supervisors_find_the_freezes_nobody_confirmed_until_someone_makes_them(
    served: Served, db: Engine, agent: str, clock: FakeClock
) -> None:
    """A victim's self-freeze fails: it is listed as open (`?open=true`) with the account,
    the ticket and the call, for a supervisor to chase. Once the agent freezes the account
    it is listed with when, and no longer open; a period before it lists nothing."""
    sam = make_user(db, "sam", "supervisor")
    with served(actions=FreezeFailsFirst(db)) as (client, phone):
        record = phone.call(ScriptedParty(list(HIJACK)), from_number=VICTIM)
        [case] = case_rows(db)
        [failed] = api(client, sam, "GET", "/api/freezes", params={"open": "true"})
        assert failed["action"] == "self_freeze" and failed["result"] == "failed"
        assert (failed["account_uid"], failed["ticket"], failed["call_sid"]) == (
            UID,
            case["ticket"],
            record.call_sid,
        )
        assert failed["frozen_after"] is None
        assert client.get("/api/freezes", headers=bearer(agent)).status_code == 403
        clock.advance(seconds=90)
        taken = api(client, agent, "POST", "/api/agents/next")["case"]
        why = {"reason": "self-freeze failed"}
        assert api(client, agent, "POST", f"/api/cases/{taken['id']}/freeze", json=why)
        assert api(client, sam, "GET", "/api/freezes", params={"open": "true"}) == []
        made, first = api(client, sam, "GET", "/api/freezes")
        assert (made["action"], made["result"], made["by"]) == ("freeze", "ok", "agent:alice")
        assert first["result"] == "failed" and first["frozen_after"] == made["at"]
        before = {"until": failed["at"]}
        assert api(client, sam, "GET", "/api/freezes", params=before) == []
        backwards = {"since": made["at"], "until": failed["at"]}
        assert client.get("/api/freezes", params=backwards, headers=bearer(sam)).status_code == 422


def test_a_frozen_victim_hears_no_word_of_a_failure_on_hold(served: Served, db: Engine) -> None:
    with served() as (_client, phone):
        record = phone.call(ScriptedParty(list(HIJACK), hold_polls=2), from_number=VICTIM)
    [case] = case_rows(db)
    assert case["flags"]["self_freeze"] == "done"
    assert "placing a protective freeze" in record.transcript
    assert "could not freeze" not in record.transcript
    assert "not frozen" not in record.transcript


class Broken:
    """A directory whose own database fails mid-check."""

    def check(self, *, uid: str, factor: str, digits: str, now: datetime) -> bool:
        raise RuntimeError("the directory's database went away")

    def registered_phone(self, *, uid: str) -> str | None:
        return None


def test_a_check_that_fails_inside_is_no_verdict_and_no_count(
    served: Served,
    db: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with served(identity=Broken()) as (_client, phone):
        record = phone.call(ScriptedParty(list(HIJACK)), from_number=VICTIM)
    assert record.queue == "security"  # straight on, not the general fallback queue
    assert [(r["priority"], r["flags"]["verified"]) for r in case_rows(db)] == [
        ("emergency", "unavailable")
    ]
    with db.connect() as conn:
        failures = conn.execute(text("SELECT count(*) FROM verification_failures")).scalar()
    assert failures == 0
    assert "taken as no verdict" in caplog.text and PIN not in caplog.text


def test_unverified_emergency_is_still_queued_first(
    phone: Phone, client: TestClient, agent: str, db: Engine
) -> None:
    normal = phone.call(ScriptedParty([Press("1"), Press("0")]))  # general queue first
    wrong = [Press("1"), Press("1"), Press(UID), Press("000000"), Press(UID), Press("111111")]
    record = phone.call(ScriptedParty(wrong), from_number="+15005550999")
    assert normal.queue == "general" and record.queue == "security"
    assert not any("protective freeze" in line for line in record.heard)
    assert any("could not verify" in line for line in record.heard)  # said once, generic
    # Nor left to believe it is frozen: told it is not yet, and what to do meanwhile.
    [not_yet] = [line for line in record.heard if "not frozen yet" in line]
    assert "change your password now" in not_yet
    queue = api(client, agent, "GET", "/api/queue")
    assert [(e["priority"], e["verified"]) for e in queue] == [
        ("emergency", "no"),
        ("normal", "not_attempted"),
    ]
    with db.connect() as conn:
        assert conn.execute(select(accounts.c.frozen).where(accounts.c.uid == UID)).scalar() == 0


def test_skipping_verification_still_opens_an_emergency_case(
    phone: Phone, client: TestClient, agent: str
) -> None:
    record = phone.call(ScriptedParty([Press("1"), Press("1"), Press("*")]))
    assert record.queue == "security"
    assert api(client, agent, "GET", "/api/queue")[0]["verified"] == "skipped"


@pytest.mark.parametrize("at", ["uid", "pin"])
def test_star_pressed_again_while_twilio_waits_for_more_is_still_a_skip(
    phone: Phone, client: TestClient, agent: str, db: Engine, at: str
) -> None:
    """Twilio waits the step's timeout for more keys after a lone `*`: a frightened caller
    presses it again meanwhile, and `**` comes. A skip still, not a UID or a wrong PIN
    counted towards the lockout of their own number."""
    keys = [Press("**")] if at == "uid" else [Press(UID), Press("***")]
    record = phone.call(ScriptedParty([Press("1"), Press("1"), *keys]), from_number=VICTIM)
    assert record.queue == "security"
    assert not any("could not verify" in line for line in record.heard)
    assert api(client, agent, "GET", "/api/queue")[0]["verified"] == "skipped"
    assert failures_counted(db) == 0


def test_keys_with_a_star_at_a_secret_step_are_no_guess_to_count(
    phone: Phone, client: TestClient, agent: str, db: Engine
) -> None:
    """12*456 at the PIN prompt is a slip, not a guess at any PIN: not checked, so not
    counted towards a lockout; it is still no match for this call's tries."""
    record = phone.call(
        ScriptedParty(
            [Press("1"), Press("1"), Press(UID), Press("12*456"), Press(UID), Press(PIN)]
        ),
        from_number=VICTIM,
    )
    assert any("could not verify" in line for line in record.heard)
    assert any("protective freeze" in line for line in record.heard)
    assert failures_counted(db) == 0


@pytest.mark.parametrize("keyed", [PIN, ID4, "12"])
def test_a_pin_keyed_at_the_uid_prompt_is_no_uid_and_is_kept_nowhere(
    phone: Phone, client: TestClient, agent: str, db: Engine, keyed: str
) -> None:
    """A victim keys their PIN (or the ID's last 4 digits) at the UID prompt: no UID has so
    few digits (uid_min_digits). Asked for the UID again; it is not kept, sent to the
    identity service, counted, or shown to an agent as the account."""
    record = phone.call(
        ScriptedParty([Press("1"), Press("1"), Press(keyed), Press(UID), Press(PIN)]),
        from_number=VICTIM,
    )
    heard = " ".join(record.heard)
    assert heard.count("Please enter your account U I D") == 2
    assert "That is not an account U I D" in heard
    assert "protective freeze" in heard
    assert failures_counted(db) == 0
    # Twice, and on to the security team unverified, as a skip: nothing of it kept.
    phone.call(ScriptedParty([Press("1"), Press("1"), Press(keyed), Press(keyed)]))
    skipped = [c for c in api(client, agent, "GET", "/api/queue") if c["verified"] == "skipped"]
    assert len(skipped) == 1
    with db.connect() as conn:
        kept = {row.account_uid for row in conn.execute(select(cases.c.account_uid))}
        facts = [row.state["facts"] for row in conn.execute(select(calls.c.state))]
    assert kept == {UID, None}
    assert {f.get("uid") for f in facts} <= {UID, None}
    assert failures_counted(db) == 0


def test_what_the_owner_told_us_is_not_shown_for_a_caller_who_only_keyed_their_uid(
    phone: Phone, client: TestClient, agent: str, db: Engine
) -> None:
    """The owner's earlier case says what they told alice (a new email). Someone who keys
    only the owner's UID and skips the PIN: bob's case shows that earlier case, not its
    ticket or notes, which he might read out. Nor does the call log show bob alice's notes or the
    reasons she gave. A supervisor sees them all."""
    owner = phone.call(ScriptedParty(list(HIJACK)), from_number=VICTIM)  # hangs up at the notice
    taken = api(client, agent, "POST", "/api/agents/next")["case"]
    note = {"notes": "new email owner@mail.test; date of birth 1980-02-03"}
    api(
        client, agent, "POST", f"/api/cases/{taken['id']}/freeze", json={"reason": "SIM swap 3 Dec"}
    )
    api(client, agent, "POST", f"/api/cases/{taken['id']}/resolve", json=note)
    phone.call(
        ScriptedParty([Press("1"), Press("1"), Press(UID), Press("*")]), from_number="+15005550123"
    )
    bob = make_user(db, "bob", "agent", "+15005558888")
    case = api(client, bob, "POST", "/api/agents/next")["case"]
    assert case["verification"]["result"] == "skipped"
    assert [(e["ticket"], e["status"]) for e in case["earlier_cases"]] == [(None, "resolved")]
    assert [e["notes"] for e in case["earlier_cases"]] == [None]
    seen_by_bob = api(client, bob, "GET", f"/api/calls/{owner.call_sid}")
    assert [c["notes"] for c in seen_by_bob["cases"]] == [None]
    assert {a["reason"] for a in seen_by_bob["audit"]} == {None}
    sam = make_user(db, "sam", "supervisor")
    for token in (agent, sam):
        seen = api(client, token, "GET", f"/api/calls/{owner.call_sid}")
        assert [c["notes"] for c in seen["cases"]] == [note["notes"]]
        assert "SIM swap 3 Dec" in {a["reason"] for a in seen["audit"]}
    # The owner, verified this time: their agent sees what they told us before.
    talked = {"notes": "not the owner", "reached": True}
    api(client, bob, "POST", f"/api/cases/{case['id']}/resolve", json=talked)
    phone.call(ScriptedParty(list(HIJACK)), from_number=VICTIM)
    again = api(client, bob, "POST", "/api/agents/next")["case"]
    assert again["verification"]["result"] == "yes"
    assert note["notes"] in [e["notes"] for e in again["earlier_cases"]]


def test_a_victim_without_their_details_to_hand_is_asked_once_more_then_let_through(
    phone: Phone, client: TestClient, agent: str, db: Engine
) -> None:
    """Silence at a verification step is no wrong answer: the same step again, once, with
    "I didn't hear anything"; silent again, on to the security team as if they skipped, not
    through a PIN prompt they cannot answer and a "could not verify". Nothing is counted
    against the account or the number."""
    record = phone.call(
        ScriptedParty([Press("1"), Press("1"), Silent(), Silent()]), from_number=VICTIM
    )
    assert record.queue == "security"
    heard = " ".join(record.heard)
    assert heard.count("Please enter your account U I D") == 2
    assert "didn't hear anything" in heard
    assert "PIN" not in heard and "could not verify" not in heard
    assert api(client, agent, "GET", "/api/queue")[0]["verified"] == "skipped"
    # Silent once at each step, they still verify.
    again = phone.call(
        ScriptedParty([Press("1"), Press("1"), Silent(), Press(UID), Silent(), Press(PIN)]),
        from_number="+15005550188",
    )
    assert any("protective freeze" in line for line in again.heard)
    assert case_rows(db)[-1]["flags"]["verified"] == "yes"
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM verification_failures")).scalar() == 0


def test_lockout_holds_across_calls_and_a_restart(
    settings: Settings,
    hotline_tree: CompiledTree,
    database_url: str,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
    agent: str,
) -> None:
    def hijack_call(client: TestClient, pins: list[str]) -> CallRecord:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        answers: list[Any] = [Press("1"), Press("1")]
        for pin in pins:
            answers += [Press(UID), Press(pin)]
        return phone.call(ScriptedParty(answers), from_number="+15005550777")

    with TestClient(
        create_app(settings, tree=hotline_tree, db=db, clock=clock), base_url=HTTPS_CLIENT
    ) as first:
        hijack_call(first, ["000001", "000002"])  # failures 1, 2
        clock.advance(minutes=5)
        hijack_call(first, ["000003", "000004"])  # failures 3, 4
    clock.advance(minutes=5)
    from ivr.db import create_db_engine

    fresh_db = create_db_engine(database_url)  # a restarted server: nothing kept in memory
    try:
        with TestClient(
            create_app(settings, tree=hotline_tree, db=fresh_db, clock=clock)
        ) as second:
            # The 5th failure locks; then even the right PIN is not checked, nor is the caller told.
            record = hijack_call(second, ["000005", PIN])
            queue = api(second, agent, "GET", "/api/queue")
    finally:
        fresh_db.dispose()
    assert record.queue == "security"
    assert not any("protective freeze" in line for line in record.heard)
    assert queue[-1]["verified"] == "locked"
    with db.connect() as conn:
        assert conn.execute(select(accounts.c.frozen).where(accounts.c.uid == UID)).scalar() == 0


@pytest.mark.parametrize("withheld", ["anonymous", "+266696687"])
def test_callers_who_withhold_their_number_are_not_locked_out_together(
    phone: Phone, client: TestClient, agent: str, db: Engine, withheld: str
) -> None:
    """Every caller who withholds their number has the same caller ID. Counted per number,
    five wrong PINs from a prankster would lock every one of them out of verifying; so such
    callers are counted per UID only (and by the tree's tries per call)."""
    for n in range(5):  # five wrong guesses, each on another account, all withheld
        guess = [Press("1"), Press("1"), Press(f"2000000{n}"), Press("000000")]
        phone.call(ScriptedParty(guess), from_number=withheld)
    record = phone.call(ScriptedParty(list(HIJACK)), from_number=withheld)
    assert any("protective freeze" in line for line in record.heard)
    queue = api(client, agent, "GET", "/api/queue")
    assert queue[-1]["verified"] == "yes"
    with db.connect() as conn:
        assert conn.execute(select(accounts.c.frozen).where(accounts.c.uid == UID)).scalar() == 1
    victim = case_rows(db)[-1]
    assert victim["flags"]["caller_id_match"] == "withheld"  # not "no": nothing to compare


def test_a_caller_who_hangs_up_after_details_that_did_not_match_is_not_verified(
    phone: Phone, db: Engine
) -> None:
    """One wrong PIN, then gone before the second try: the agent who calls back reads "no"
    (details did not match), not "not attempted". Gone before finishing the first try, it is
    "not attempted" still: nothing was checked."""
    wrong = [Press("1"), Press("1"), Press(UID), Press("000000")]
    phone.call(ScriptedParty(list(wrong)))
    phone.call(ScriptedParty([Press("1"), Press("1"), Press(UID)]), from_number="+15005550778")
    # Nor does skipping the second try, or staying silent through it, hide the first.
    phone.call(ScriptedParty([*wrong, Press("*")]), from_number="+15005550779")
    phone.call(ScriptedParty([*wrong, Silent(), Silent()]), from_number="+15005550780")
    missed, unfinished, skipped, silent = case_rows(db)
    assert (missed["priority"], missed["account_uid"]) == ("emergency", UID)
    assert missed["flags"]["verified"] == "no"
    assert "verified" not in unfinished["flags"]
    assert skipped["flags"]["verified"] == silent["flags"]["verified"] == "no"


def test_the_same_guesses_from_one_real_number_lock_it(phone: Phone, db: Engine) -> None:
    """The other side of the test above: from a number of its own, they lock that number."""
    for n in range(5):
        guess = [Press("1"), Press("1"), Press(f"2000000{n}"), Press("000000")]
        phone.call(ScriptedParty(guess), from_number="+15005550777")
    record = phone.call(ScriptedParty(list(HIJACK)), from_number="+15005550777")
    assert not any("protective freeze" in line for line in record.heard)
    assert any("not frozen yet" in line for line in record.heard)
    assert case_rows(db)[-1]["flags"]["verified"] == "locked"


def test_a_caller_who_withheld_their_number_and_keyed_none_is_not_dialled(
    rest: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    agent: str,
) -> None:
    client, phone = rest
    hidden = phone.call(
        ScriptedParty([Press("1"), Press("0")], hold_polls=2), from_number="anonymous"
    )
    shown = phone.call(ScriptedParty([Press("1"), Press("0")], hold_polls=2))
    # Offered to both (the hidden caller would key a number); neither took it.
    assert any("/twilio/callback-request" in doc for doc in hidden.documents)
    assert any("/twilio/callback-request" in doc for doc in shown.documents)
    # Gone with no account keyed: nobody to call back, nothing to act on, so not in line.
    # With the account keyed (hung up at the PIN), an agent acts on it, dialling nobody.
    phone.call(ScriptedParty([Press("1"), Press("1"), Press(UID)]), from_number="anonymous")
    hidden_case, shown_case, keyed_case = case_rows(db)
    assert (hidden_case["queued"], hidden_case["notes"]) == (0, NOBODY_TO_CALL)
    requests_before = len(twilio_http.requests)
    claimed = api(client, agent, "POST", "/api/agents/next")  # the emergency, first
    assert claimed["case"]["id"] == keyed_case["id"]
    assert claimed["connect"] == {"mode": "no_number", "number": None}
    assert len(twilio_http.requests) == requests_before  # nothing dialled
    claimed = api(client, make_user(db, "bob", "agent"), "POST", "/api/agents/next")
    assert claimed["case"]["id"] == shown_case["id"]
    assert claimed["connect"]["mode"] == "calling_back"


@pytest.mark.parametrize(
    ("caller", "prefixes", "by_twilio"),
    [
        ("+15005550006", "", True),
        ("+15005550006", "+86", False),  # outside IVR_CALLBACK_PREFIXES
        ("+19005551234", "", False),  # premium rate
        ("+447012345678", "", False),  # a UK personal number (070): as dear as premium rate
        ("+445512345678", "", False),  # UK 055: a corporate ("universal access") number
        ("+882164000001", "", False),  # an international network: no country's
    ],
)
def test_twilio_calls_back_only_a_caller_id_that_costs_nothing_to_call(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
    twilio_client: Any,
    twilio_http: RecordingTwilio,
    caller: str,
    prefixes: str,
    by_twilio: bool,
) -> None:
    """Caller IDs are spoofed at will: one that hangs up in the emergency lane from a
    premium-rate line, or from outside IVR_CALLBACK_PREFIXES, would have Twilio dial it for
    whoever rents it. The agent gets it to dial (or not) by hand instead."""
    settings = make_settings(IVR_DATABASE_URL=database_url, IVR_CALLBACK_PREFIXES=prefixes)
    app = create_app(settings, tree=hotline_tree, db=db, clock=clock, twilio=twilio_client)
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        phone.call(ScriptedParty([Press("1"), Press("1")]), from_number=caller)
        placed = len(placed_calls(twilio_http))
        claimed = api(client, make_user(db, "ana", "agent"), "POST", "/api/agents/next")
    if by_twilio:
        assert claimed["connect"]["mode"] == "calling_back"
        assert placed_calls(twilio_http)[placed:][0]["To"] == caller
    else:
        assert claimed["connect"] == {"mode": "call_back", "number": caller}
        assert placed_calls(twilio_http)[placed:] == []


def test_a_mandarin_caller_who_keys_a_mainland_mobile_without_86_is_called_back_in_china(
    rest: tuple[TestClient, Phone], db: Engine
) -> None:
    """13800138000 is no valid +1 number: the Mandarin menu's country (+86) is put first."""
    _, phone = rest
    keys = [Press("2"), Press("0"), Press("1"), Press("13800138000#")]
    phone.call(ScriptedParty(keys, hold_polls=3), from_number="anonymous")
    [row] = case_rows(db)
    assert (row["status"], row["callback_number"]) == ("callback_requested", "+8613800138000")


def test_a_caller_who_withheld_their_number_keys_one_to_be_called_back_on(
    rest: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    agent: str,
) -> None:
    """Their number is hidden, so the call-back offer asks for one: keyed with its country
    code and #. A number we cannot call is asked again; the one they key is read back (its
    last four digits) with their ticket (the same answer if Twilio delivers it twice), kept
    with their place in line, flagged as keyed (nobody vouched for it). Twilio does not
    dial it on the caller's say-so: the agent who takes the case sees it, and dials it."""
    client, phone = rest
    number = Press("008613800138000#", deliveries=2)
    keys = [Press("1"), Press("0"), Press("1"), Press("911#"), number]
    record = phone.call(ScriptedParty(keys, hold_polls=3), from_number="anonymous")
    heard = " ".join(record.heard)
    assert "Your number is hidden from us. Key the number we should call you back on" in heard
    assert "That is not a number we can call." in heard
    assert "at the number ending in 8 0 0 0" in heard and record.ended_by == "hotline"
    [row] = case_rows(db)
    assert (row["status"], row["queued"], row["callback_number"]) == (
        "callback_requested",
        1,
        "+8613800138000",
    )
    assert row["flags"]["callback_keyed"] == "yes"
    placed = len(twilio_http.requests)
    claimed = api(client, agent, "POST", "/api/agents/next")
    assert claimed["connect"] == {"mode": "call_back", "number": "+8613800138000"}
    assert len(twilio_http.requests) == placed  # nothing dialled by Twilio
    assert claimed["case"]["risk"]["callback_keyed"] == "yes"  # what the agent sees
    client.post("/dashboard/login", data={"token": agent}, follow_redirects=False)
    assert "keyed by the caller, who hid their number" in client.get("/dashboard/desk").text


def test_a_keyed_number_outside_the_countries_called_back_is_asked_again(
    settings: Settings,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
) -> None:
    only_china = settings.model_copy(update={"callback_prefixes": ("+86",)})
    with TestClient(
        create_app(only_china, tree=hotline_tree, db=db, clock=clock), base_url=HTTPS_CLIENT
    ) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        keys = [Press("1"), Press("0"), Press("1"), Press("447700900123#"), Press("8613800138000#")]
        record = phone.call(ScriptedParty(keys, hold_polls=3), from_number="anonymous")
    assert "That is not a number we can call." in record.heard
    [row] = case_rows(db)
    assert row["callback_number"] == "+8613800138000"


def test_a_keyed_number_delivered_twice_at_once_is_answered_the_same(
    phone: Phone, app: FastAPI, db: Engine
) -> None:
    """Twilio delivers the keyed number twice, at once: the second copy reads the case as
    waiting, and the first copy stores the number before the second writes. The second
    finds it stored already, and answers as the first did."""
    hotline = app.state.hotline
    sid = "CA" + "5" * 32
    answers: list[str] = []

    def race(poll: int) -> bool:
        armed = [True]

        def meanwhile(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if armed[0] and statement.startswith("SELECT mine.id"):  # the case, as it is
                armed[0] = False
                answers.append(hotline.callback_number(sid, "8613800138000", "en"))

        event.listen(db, "after_cursor_execute", meanwhile)
        try:
            answers.append(hotline.callback_number(sid, "8613800138000", "en"))
        finally:
            event.remove(db, "after_cursor_execute", meanwhile)
        return False

    phone.call(Caller([Press("1"), Press("0")], race), from_number="anonymous", call_sid=sid)
    first, second = answers
    assert first == second and "ending in 8 0 0 0" in first
    [row] = case_rows(db)
    assert (row["callback_number"], row["flags"]["callback_keyed"]) == ("+8613800138000", "yes")


@pytest.mark.parametrize("then", [Press("1"), Press("5"), Silent()])
def test_a_1_pressed_by_mistake_on_hold_keeps_the_caller_on_the_line(
    phone: Phone, db: Engine, then: Any
) -> None:
    """A frightened caller (or a pocket) presses 1 on hold: they hear the number the call
    back would go to and are asked for 2. 1 again (pressed over and over, for a person),
    another key, or nothing, and they are still holding in their place: no call back, no
    call ended."""
    keys = [Press("1"), Press("0"), Press("1"), then]
    record = phone.call(ScriptedParty(keys, hold_polls=2), from_number="+15005550144")
    asked = [i for i, line in enumerate(record.heard) if "To confirm, press 2" in line]
    assert len(asked) == 1 and "ending in 0 1 4 4" in record.heard[asked[0]]
    assert any(line.startswith("You are number") for line in record.heard[asked[0] + 1 :])
    assert record.ended_by == "caller" and not any("Goodbye" in line for line in record.heard)
    [row] = case_rows(db)
    assert (row["status"], row["callback_number"]) == ("abandoned", None)


def test_catalogs_without_the_confirmation_take_the_first_1(
    settings: Settings,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
    tmp_path: Path,
) -> None:
    """A tree whose catalogs were written before the confirmation: 1 asks for the call back."""
    prompts = catalogs_without(tmp_path / "prompts", "callback_confirm")
    tree = load_tree(PROJECT_ROOT / "routes" / "hotline.yaml", prompts)
    with TestClient(create_app(settings, tree=tree, db=db, clock=clock)) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        keys = [Press("1"), Press("0"), Press("1")]
        record = phone.call(ScriptedParty(keys), from_number="+15005550144")
    assert not any("To confirm" in line for line in record.heard)
    assert any("Goodbye" in line for line in record.heard)
    assert case_rows(db)[0]["status"] == "callback_requested"


@pytest.mark.parametrize(
    "asking",
    [
        "To confirm, press 1.",
        "To confirm, press one.",
        "To confirm, press 1; to key another number, press 2.",
    ],
)
def test_catalogs_that_ask_for_1_to_confirm_still_take_1(
    settings: Settings,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
    tmp_path: Path,
    asking: str,
) -> None:
    """A version rolled back to, or an operator's older catalogs, say "To confirm, press 1":
    the key the words name is the one taken, or the caller could never confirm. The tree
    check warns, at the catalog's line, that 2 is the safer key."""
    prompts = tmp_path / "prompts"
    shutil.copytree(PROJECT_ROOT / "prompts", prompts)
    en = prompts / "en.yaml"
    en.write_text(en.read_text().replace("To confirm, press 2.", asking))
    tree = load_tree(PROJECT_ROOT / "routes" / "hotline.yaml", prompts)
    [warned] = [str(w) for w in tree.warnings if "'callback_confirm' should tell" in str(w)]
    assert warned.startswith(f"{en}:") and "press 2" in warned
    with TestClient(create_app(settings, tree=tree, db=db, clock=clock)) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        keys = [Press("1"), Press("0"), Press("1"), Press("1")]
        record = phone.call(ScriptedParty(keys, hold_polls=2), from_number="+15005550144")
    assert any(asking in line for line in record.heard)
    assert case_rows(db)[0]["status"] == "callback_requested"


def test_a_call_back_asked_for_twice_is_answered_the_same(phone: Phone, db: Engine) -> None:
    """Twilio delivers the caller's keys twice: both answers ask to confirm, then both
    confirm the call back."""
    keys = [Press("1"), Press("0"), Press("1", deliveries=2), Press("2", deliveries=2)]
    record = phone.call(ScriptedParty(keys, hold_polls=3), from_number="+15005550144")
    assert any("at the number ending in 0 1 4 4" in line for line in record.heard)
    [row] = case_rows(db)
    assert (row["status"], row["callback_number"]) == ("callback_requested", "+15005550144")


def test_a_failure_while_keying_the_number_holds_on_from_memory(
    phone: Phone, db: Engine, check_twiml: Callable[[str], None]
) -> None:
    """The database fails as the keyed number arrives: the caller, in a queue, gets a hold
    round (the fallback's <Enqueue> is not an answer a queue's wait URL may give)."""
    keys = [Press("1"), Press("0"), Press("1"), Silent()]
    record = phone.call(ScriptedParty(keys, hold_polls=2), from_number="anonymous")
    [asking] = [d for d in record.documents if "/twilio/callback-number" in d]
    action = etree.fromstring(asking.encode()).find("Gather").get("action")
    keyed = {"CallSid": record.call_sid, "AccountSid": "AC" + "0" * 32, "Digits": "8613800138000"}
    with db.begin() as conn:
        conn.execute(text("ALTER TABLE cases RENAME TO cases_away"))
    try:
        answer = phone.signed_post(action, keyed)
    finally:
        with db.begin() as conn:
            conn.execute(text("ALTER TABLE cases_away RENAME TO cases"))
    assert answer.status_code == 200
    check_twiml(answer.text)
    assert "<Enqueue" not in answer.text and "<Say" in answer.text


def test_three_numbers_we_cannot_call_go_back_to_holding(phone: Phone, db: Engine) -> None:
    """Asked again after a number we cannot call, twice; the third goes back to holding, in
    their place (where pressing 1 starts again)."""
    keys = [Press("1"), Press("0"), Press("1"), Press("44#"), Press("55#"), Press("66#")]
    record = phone.call(ScriptedParty(keys, hold_polls=3), from_number="anonymous")
    assert record.heard.count("That is not a number we can call.") == 2
    asked = [i for i, line in enumerate(record.heard) if line.startswith("Your number is hidden")]
    assert len(asked) == 3
    assert any(line.startswith("You are number") for line in record.heard[asked[-1] + 1 :])
    [row] = case_rows(db)
    assert (row["callback_number"], row["status"]) == (None, "abandoned")


def test_keying_no_number_goes_back_to_holding(phone: Phone, db: Engine) -> None:
    """A caller who withheld their number presses 1, then keys nothing: back to holding, in
    their place, and asked nothing more until they press 1 again."""
    keys = [Press("1"), Press("0"), Press("1"), Silent()]
    record = phone.call(ScriptedParty(keys, hold_polls=3), from_number="anonymous")
    assert record.heard.count("That is not a number we can call.") == 0
    assert record.hold_polls >= 2 and record.ended_by == "caller"
    [row] = case_rows(db)
    assert (row["callback_number"], row["status"]) == (None, "abandoned")


@pytest.mark.parametrize("missing", ["callback_enter_number", "callback_number_invalid"])
def test_catalogs_that_cannot_ask_for_a_number_offer_withheld_callers_no_call_back(
    missing: str,
    tmp_path: Path,
    settings: Settings,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
) -> None:
    """An operator's catalogs from before they could ask for a number (or a tree version
    stored then): a caller who withheld theirs is offered no call back, as before."""
    prompts = catalogs_without(tmp_path / "prompts", missing)
    tree = load_tree(PROJECT_ROOT / "routes" / "hotline.yaml", prompts)
    with TestClient(
        create_app(settings, tree=tree, db=db, clock=clock), base_url=HTTPS_CLIENT
    ) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        hidden = phone.call(
            ScriptedParty([Press("1"), Press("0")], hold_polls=2), from_number="anonymous"
        )
        shown = phone.call(ScriptedParty([Press("1"), Press("0")], hold_polls=2))
    assert not any("/twilio/callback-request" in doc for doc in hidden.documents)
    assert any("/twilio/callback-request" in doc for doc in shown.documents)


def test_hanging_up_while_waiting_abandons_but_keeps_the_case(
    phone: Phone, client: TestClient, agent: str, db: Engine
) -> None:
    phone.call(ScriptedParty([Press("1"), Press("0")], hold_polls=1))
    [row] = case_rows(db)
    assert (row["status"], row["queued"]) == ("abandoned", 1)
    claimed = api(client, agent, "POST", "/api/agents/next")
    # No Twilio credentials here: the agent is told whom to call back.
    assert claimed["connect"] == {"mode": "call_back", "number": "+15005550006"}


def test_a_call_back_the_agent_dialled_and_nobody_answered_is_tried_again_later(
    phone: Phone, client: TestClient, agent: str, db: Engine, clock: FakeClock
) -> None:
    """The agent dials the customer, nobody answers: "not reached" counts the attempt and
    puts the call back aside for IVR_CALLBACK_RETRY (doubled at the next miss), as when
    Twilio's call is not answered; not offered to the next agent at once to ring the same
    number again, and the agent is not set away for it. A caller on the line is no call
    back to not reach."""
    phone.call(ScriptedParty(list(CALL_ME_BACK)))
    case_id = api(client, agent, "POST", "/api/agents/next")["case"]["id"]
    detail = api(client, agent, "POST", f"/api/cases/{case_id}/not-reached")
    assert (detail["status"], detail["callback_attempts"]) == ("callback_requested", 1)
    assert api(client, agent, "GET", "/api/agents/presence")["away_reason"] is None
    assert api(client, agent, "POST", "/api/agents/next")["case"] is None  # not yet
    clock.advance(seconds=300)
    assert api(client, agent, "POST", "/api/agents/next")["case"]["id"] == case_id
    api(client, agent, "POST", f"/api/cases/{case_id}/not-reached")
    clock.advance(seconds=300)
    assert api(client, agent, "POST", "/api/agents/next")["case"] is None  # 10 min, now
    clock.advance(seconds=300)
    assert api(client, agent, "POST", "/api/agents/next")["case"]["id"] == case_id
    [row] = case_rows(db)
    assert row["flags"]["callback_attempts"] == "2"
    with db.connect() as conn:
        audited = conn.execute(
            select(audit_log.c.action, audit_log.c.result).where(
                audit_log.c.case_id == case_id, not_desk
            )
        ).all()
    assert [tuple(a) for a in audited] == [("call_back", "not_reached")] * 2


def test_a_caller_waiting_on_the_line_is_no_call_back_to_not_reach(
    phone: Phone, client: TestClient, agent: str
) -> None:
    seen: dict[str, Any] = {}

    def holds(poll: int) -> bool:
        if poll == 1:
            case_id = api(client, agent, "POST", "/api/agents/next")["case"]["id"]
            seen["refused"] = client.post(
                f"/api/cases/{case_id}/not-reached", headers=bearer(agent)
            )
        return poll < 2

    phone.call(Caller(list(HIJACK), holds), from_number=VICTIM)
    assert seen["refused"].status_code == 409


@pytest.mark.parametrize("reached", [True, False])
def test_a_call_back_the_agent_dialled_themselves_counts_as_made_when_they_say_so(
    phone: Phone, client: TestClient, agent: str, db: Engine, clock: FakeClock, reached: bool
) -> None:
    """No Twilio call tells the hotline an agent reached a customer they dialled by hand:
    their word does, at the resolve, and the figures count the call back as made, handled
    from when they took it."""
    phone.call(ScriptedParty(list(CALL_ME_BACK)))
    claimed = api(client, agent, "POST", "/api/agents/next")
    assert claimed["connect"]["mode"] == "call_back"
    clock.advance(minutes=4)
    api(
        client,
        agent,
        "POST",
        f"/api/cases/{claimed['case']['id']}/resolve",
        json={"notes": "called back", "reached": reached},
    )
    [row] = case_rows(db)
    assert row["status"] == "resolved"
    period = {"since": (clock.now - timedelta(hours=1)).isoformat()}
    period["until"] = (clock.now + timedelta(hours=1)).isoformat()
    sam = make_user(db, "sam", "supervisor")
    general = api(client, sam, "GET", "/api/stats", params=period)["by_queue"]["general"]
    assert general["callbacks_completed"] == int(reached)
    if reached:
        assert row["connected_at"] == row["offered_at"]
        assert general["average_handle_time_seconds"] == 240
    else:
        assert row["connected_at"] is None


def test_reached_is_only_the_agents_word_for_a_call_back_they_dialled(
    phone: Phone, client: TestClient, agent: str, db: Engine
) -> None:
    """Nobody to dial (a caller who hid their number), or a supervisor closing an agent's
    call back: no word of reaching anyone counts, and the figures are not inflated."""
    phone.call(ScriptedParty([Press("1"), Press("1"), Press(UID)]), from_number="anonymous")
    nobody = api(client, agent, "POST", "/api/agents/next")
    assert nobody["connect"]["mode"] == "no_number"
    refused = client.post(
        f"/api/cases/{nobody['case']['id']}/resolve",
        headers=bearer(agent),
        json={"notes": "froze it", "reached": True},
    )
    assert refused.status_code == 409 and "dialled yourself" in refused.text
    freeze = {"reason": "hijack, hidden number"}
    api(client, agent, "POST", f"/api/cases/{nobody['case']['id']}/freeze", json=freeze)
    api(
        client,
        agent,
        "POST",
        f"/api/cases/{nobody['case']['id']}/resolve",
        json={"notes": "froze it"},
    )
    phone.call(ScriptedParty(list(CALL_ME_BACK)))
    theirs = api(client, agent, "POST", "/api/agents/next")
    assert theirs["connect"]["mode"] == "call_back"
    sam = make_user(db, "sam", "supervisor")
    refused = client.post(
        f"/api/cases/{theirs['case']['id']}/resolve",
        headers=bearer(sam),
        json={"notes": "closed", "reached": True},
    )
    assert refused.status_code == 409
    assert all(row["connected_at"] is None for row in case_rows(db))


@pytest.fixture
def rest(
    settings: Settings,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
    twilio_client: Any,
) -> Iterator[tuple[TestClient, Phone]]:
    """The app with Twilio credentials: a REST client on a recording transport."""
    app = create_app(settings, tree=hotline_tree, db=db, clock=clock, twilio=twilio_client)
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        yield (
            client,
            Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml),
        )


def test_callback_request_keeps_the_place_and_an_agent_calls_back(
    rest: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    agent: str,
    check_twiml: Callable[[str], None],
) -> None:
    client, phone = rest
    # General queue; at the hold loop's offer the caller presses 1.
    record = phone.call(ScriptedParty(list(CALL_ME_BACK)), from_number="+15005554321")
    assert any("ending in 4 3 2 1" in line for line in record.heard)
    assert record.ended_by == "hotline"
    [row] = case_rows(db)
    assert (row["status"], row["callback_number"]) == ("callback_requested", "+15005554321")
    claimed = api(client, agent, "POST", "/api/agents/next")
    assert claimed["connect"] == {"mode": "calling_back", "number": "+15005554321"}
    method, url, data = twilio_http.requests[-1]
    assert (method, url.rsplit("/", 1)[-1]) == ("POST", "Calls.json")
    assert (data["To"], data["From"]) == ("+15005554321", CALLER_ID)
    assert data["Url"].startswith(f"{PUBLIC_URL}/twilio/connect?case={row['id']}&out=1&placing=")
    # No fallback URL: its "caller" would be our own number, and its case waits anyway.
    assert "FallbackUrl" not in data
    # This placement's token, in both its links: an earlier call back's reports are not its.
    placing = parse_qs(urlsplit(data["Url"]).query)["placing"]
    assert placing == parse_qs(urlsplit(data["StatusCallback"]).query)["placing"]
    # Twilio fetches that URL when the customer answers: greeted, then the agent is dialled.
    # Only that call's: another call back to them (an earlier offer's, say) is not this one.
    stale = phone.signed_post(
        data["Url"], {"CallSid": "CA" + "7" * 32, "AccountSid": "AC" + "0" * 32}
    )
    check_twiml(stale.text)
    assert "<Dial" not in stale.text and "call you back shortly" in stale.text
    answered = phone.signed_post(
        data["Url"], {"CallSid": twilio_http.sids[-1], "AccountSid": "AC" + "0" * 32}
    )
    check_twiml(answered.text)
    assert " ".join(row["ticket"]) in answered.text and AGENT_PHONE in answered.text
    assert "out=1" in answered.text  # its end is a call back's, not a waiting caller's
    # The agent's phone does not answer: the customer is told we will call again and let go
    # (their own call ended long ago: no queue to hold in), the case is back in its place.
    action = etree.fromstring(answered.text.encode()).find("Dial").get("action")
    missed = phone.signed_post(
        action, {"CallSid": twilio_http.sids[-1], "DialCallStatus": "no-answer"}
    )
    check_twiml(missed.text)
    assert "call you back shortly" in missed.text and "<Hangup" in missed.text
    assert "<Enqueue" not in missed.text
    [again] = case_rows(db)
    assert (again["status"], again["queued"], again["agent_id"]) == ("callback_requested", 1, None)


def test_a_customer_who_answered_a_call_back_the_agent_missed_is_not_rung_while_listening(
    rest: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    agent: str,
    clock: FakeClock,
) -> None:
    """alice is available; the hijack victim's call back is pushed to her phone. The victim
    answers, but alice's phone rings out: they hear that we will call again, and the case is
    back in its place. bob, available too, is not pushed it at once, which would ring the
    victim while they still listen (busy: then a retry's wait, five minutes), but once they
    have heard so and hung up."""
    client, phone = rest
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    phone.call(ScriptedParty([Press("1"), Press("1")]), from_number=VICTIM)  # hung up on the way
    api(client, agent, "PUT", "/api/agents/presence", json={"available": True})
    assert hotline.dispatch() == 1
    customer = phone.answer(
        placed_calls(twilio_http)[-1],
        ScriptedParty([], dial_status="no-answer"),
        call_sid=twilio_http.sids[-1],
    )
    assert "call you back shortly" in customer.transcript and customer.ended_by == "hotline"
    [row] = case_rows(db)
    assert (row["status"], row["queued"], row["agent_id"]) == ("abandoned", 1, None)
    assert row["not_before"] == clock() + timedelta(seconds=30)
    assert "callback_attempts" not in (row["flags"] or {})  # they answered: no miss of theirs
    bob = make_user(db, "bob", "agent", "+15005558888")
    api(client, bob, "PUT", "/api/agents/presence", json={"available": True})
    calls = len(placed_calls(twilio_http))
    assert hotline.dispatch() == 0 and len(placed_calls(twilio_http)) == calls
    clock.advance(seconds=30)
    assert hotline.dispatch() == 1
    assert placed_calls(twilio_http)[-1]["To"] == VICTIM and len(placed_calls(twilio_http)) > calls
    assert case_rows(db)[0]["agent_id"] is not None


@pytest.mark.parametrize("machine", ["machine_start", "fax"])
def test_a_call_back_a_voicemail_answers_is_tried_again_and_rings_no_agent(
    rest: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    agent: str,
    clock: FakeClock,
    machine: str,
) -> None:
    """The victim's phone is off: their voicemail answers the call back. Twilio's machine
    detection says so, and alice's phone is not rung to talk to a greeting: the voicemail
    hears we will call again, and the case waits its retry as a call nobody answered. A
    person answering is put through, as before."""
    client, phone = rest
    phone.call(ScriptedParty([Press("1"), Press("1")]), from_number=VICTIM)  # hung up on the way
    claimed = api(client, agent, "POST", "/api/agents/next")
    assert claimed["connect"]["mode"] == "calling_back"
    placed = placed_calls(twilio_http)[-1]
    assert placed["MachineDetection"] == "DetectMessageEnd"
    voicemail = phone.answer(
        placed, ScriptedParty([]), call_sid=twilio_http.sids[-1], answered_by=machine
    )
    assert voicemail.dialed is None and "We will try again shortly" in voicemail.transcript
    [row] = case_rows(db)
    assert (row["status"], row["queued"], row["agent_id"]) == ("abandoned", 1, None)
    assert row["flags"]["callback_attempts"] == "1"
    assert row["not_before"] == clock() + timedelta(minutes=5)  # IVR_CALLBACK_RETRY
    clock.advance(minutes=5)
    again = api(client, agent, "POST", "/api/agents/next")
    assert again["case"]["id"] == row["id"] and again["connect"]["mode"] == "calling_back"
    person = phone.answer(
        placed_calls(twilio_http)[-1], ScriptedParty([]), call_sid=twilio_http.sids[-1]
    )
    assert person.dialed == AGENT_PHONE


def test_a_call_back_is_resolved_once_its_call_has_ended(
    rest: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    clock: FakeClock,
    agent: str,
) -> None:
    """alice calls the victim back through Twilio and talks to them: not resolved while
    they talk; once the call has ended (the customer's call reported over, as when the
    report of alice's leg is lost), it is."""
    client, phone = rest
    phone.call(ScriptedParty([Press("1"), Press("1")]), from_number=VICTIM)  # hung up on the way
    case_id = api(client, agent, "POST", "/api/agents/next")["case"]["id"]
    seen: list[Any] = []

    def talks(number: str) -> str:
        clock.advance(minutes=2)  # they talk: not a customer who dropped at once
        [mine] = api(client, agent, "GET", "/api/agents/cases")
        seen.append(mine["on_call"])
        path = f"/api/cases/{case_id}/resolve"
        seen.append(client.post(path, headers=bearer(agent), json={"notes": "frozen"}).status_code)
        return "completed"

    customer = Talks([], lambda poll: False, talks)
    phone.answer(placed_calls(twilio_http)[-1], customer, call_sid=twilio_http.sids[-1])
    assert seen == [True, 409]
    [mine] = api(client, agent, "GET", "/api/agents/cases")
    assert mine["on_call"] is False
    api(client, agent, "POST", f"/api/cases/{case_id}/resolve", json={"notes": "frozen"})
    with db.connect() as conn:
        case = dict(conn.execute(select(cases).where(cases.c.id == case_id)).mappings().one())
    # Had the report of her leg been lost: the customer's call over, the call back is too.
    case |= {"status": "connected", "talk_ended_at": None}
    assert "call_back_sid" not in case["flags"]
    with db.connect() as conn:
        assert not on_the_call(conn, case, now=case["connected_at"], longest=timedelta(hours=6))
        talking = case | {"flags": {**case["flags"], "call_back_sid": twilio_http.sids[-1]}}
        assert on_the_call(conn, talking, now=case["connected_at"], longest=timedelta(hours=6))


def test_agent_takes_a_live_caller_through_the_rest_api(
    rest: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, agent: str
) -> None:
    client, phone = rest
    seen: dict[str, Any] = {}

    def holds(poll: int) -> bool:
        seen["claimed"] = api(client, agent, "POST", "/api/agents/next")
        return False

    record = phone.call(Caller(list(HIJACK), holds), from_number=VICTIM)
    case = seen["claimed"]["case"]
    assert seen["claimed"]["connect"] == {"mode": "redirected", "number": None}
    _, url, data = twilio_http.requests[-1]
    assert url.endswith(f"/Calls/{record.call_sid}.json")
    assert data == {
        "Url": f"{PUBLIC_URL}/twilio/connect?case={case['id']}&out=0",
        "Method": "POST",
        # Should that URL fail, the fallback queues them: no "application error", no hang-up.
        "FallbackUrl": f"{PUBLIC_URL}/twilio/fallback",
        "FallbackMethod": "POST",
    }


def test_ticket_follow_up_queues_back_to_the_same_team(
    phone: Phone, client: TestClient, agent: str, db: Engine
) -> None:
    first = phone.call(ScriptedParty([Press("1"), Press("3"), Press("2"), Press("1")]))
    assert first.queue == "payments"
    [earlier] = case_rows(db)
    again = phone.call(ScriptedParty([Press("1"), Press("9"), Press(earlier["ticket"])]))
    assert again.queue == "payments"
    assert any("abandoned" in line.lower() or "call ended" in line.lower() for line in again.heard)
    later = case_rows(db)[-1]
    assert later["parent_ticket"] == earlier["ticket"] and later["queue"] == "payments"


def test_unknown_ticket_twice_reaches_the_general_queue(phone: Phone) -> None:
    """Each miss is said, the last one too, before the caller is handed to an agent."""
    record = phone.call(ScriptedParty([Press("1"), Press("9"), Press("1111111"), Press("2222222")]))
    assert record.queue == "general"
    assert record.transcript.count("could not find that ticket") == 2


def test_silence_at_the_ticket_prompt_is_not_a_ticket_not_found(phone: Phone, db: Engine) -> None:
    record = phone.call(ScriptedParty([Press("1"), Press("9"), Silent(), Silent()]))
    assert record.queue == "general"
    assert record.transcript.count("didn't hear anything") == 2
    assert "could not find that ticket" not in record.transcript
    assert failures_counted(db) == 0


GUESSER = "+15005550123"


def failures_counted(db: Engine) -> int:
    with db.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM verification_failures")).scalar_one())


@pytest.mark.parametrize("at", ["uid", "pin"])
def test_zero_at_a_verify_step_asks_for_a_person_and_is_no_wrong_answer(
    phone: Phone, db: Engine, at: str
) -> None:
    """0 is how a caller asks for a person in every menu: keyed alone for the UID or the
    PIN (neither is one digit), the victim is put through to security, as with *, and no
    failure counts towards a lockout of their account or number."""
    keys = [Press("1"), Press("1"), Press("0")] if at == "uid" else [*HIJACK[:3], Press("0")]
    record = phone.call(ScriptedParty(keys), from_number=VICTIM)
    assert record.queue == "security"
    assert not any("could not verify" in line for line in record.heard)
    assert failures_counted(db) == 0
    [case] = case_rows(db)
    assert (case["priority"], case["flags"]["verified"]) == ("emergency", "skipped")


def test_a_number_that_keeps_missing_tickets_is_locked_out_of_lookups(
    phone: Phone, client: TestClient, db: Engine, settings: Settings
) -> None:
    """Guessing ticket numbers (a found one is linked to its case, for an agent to talk to)
    counts towards the calling number's lockout like a wrong PIN."""
    phone.call(ScriptedParty([Press("1"), Press("3"), Press("2"), Press("1")]), from_number=VICTIM)
    [real] = case_rows(db)
    misses = ["1111111", "2222222", "3333333", "4444444", "5555555", "6666666"]
    for first, second in zip(misses[::2], misses[1::2], strict=True):
        record = phone.call(
            ScriptedParty([Press("1"), Press("9"), Press(first), Press(second)]),
            from_number=GUESSER,
        )
        assert record.queue == "general"
    # The fifth miss locked the number: the sixth lookup was not made, nor counted.
    assert settings.lockout_failures == 5 and failures_counted(db) == 5
    # Now even the right number finds nothing from there, and is not looked up: heard as a
    # miss, asked again as after a miss (the lock cannot be told from one), then an agent.
    locked = phone.call(
        ScriptedParty([Press("1"), Press("9"), Press(real["ticket"]), Press(real["ticket"])]),
        from_number=GUESSER,
    )
    assert locked.queue == "general"
    assert locked.transcript.count("could not find that ticket") == 2
    assert [c["parent_ticket"] for c in case_rows(db)[1:]] == [None] * 4  # linked to nothing
    assert failures_counted(db) == 5  # a refused lookup is no further guess
    with db.connect() as conn:
        outcome = (
            conn.execute(
                text("SELECT outcome FROM call_events WHERE call_sid = :sid AND kind = 'input'"),
                {"sid": locked.call_sid},
            )
            .scalars()
            .all()
        )
    assert "locked" in outcome
    # The sixth guess and these two lookups, refused: what a supervisor's alert watches.
    assert "ivr_ticket_lookups_refused_total 3.0" in client.get("/metrics").text
    # Another number with the same ticket is served as before; and a hit counts nothing.
    fine = phone.call(ScriptedParty([Press("1"), Press("9"), Press(real["ticket"])]))
    assert fine.queue == "payments"
    assert case_rows(db)[-1]["parent_ticket"] == real["ticket"]
    assert failures_counted(db) == 5
    # Ticket misses count apart: the same number still verifies (a victim who mistyped a
    # ticket number is not locked out of the freeze they call for).
    phone.call(ScriptedParty(list(HIJACK)), from_number=GUESSER)
    assert case_rows(db)[-1]["flags"]["verified"] == "yes"


def test_misses_spoofed_as_a_victims_number_do_not_keep_them_from_their_own_ticket(
    phone: Phone, db: Engine
) -> None:
    """The victim hung up on the way to the security team: an emergency case, its ticket
    texted to them. Someone calling as their number misses tickets until it is locked out
    of lookups. The victim, following their emergency up from their own phone, still finds
    it, and is in the emergency lane again; another case's ticket stays refused there."""
    phone.call(ScriptedParty([Press("1"), Press("1")]), from_number=VICTIM)
    phone.call(ScriptedParty([Press("1"), Press("3"), Press("2"), Press("1")]), from_number=GUESSER)
    emergency, other = case_rows(db)
    for first, second in (("1111111", "2222222"), ("3333333", "4444444"), ("5555555", "6666666")):
        phone.call(
            ScriptedParty([Press("1"), Press("9"), Press(first), Press(second)]),
            from_number=VICTIM,
        )
    own = phone.call(
        ScriptedParty([Press("1"), Press("9"), Press(emergency["ticket"])]), from_number=VICTIM
    )
    assert own.queue == "security"
    followed = case_rows(db)[-1]
    assert (followed["parent_ticket"], followed["priority"]) == (emergency["ticket"], "emergency")
    refused = phone.call(
        ScriptedParty([Press("1"), Press("9"), Press(other["ticket"]), Press(other["ticket"])]),
        from_number=VICTIM,
    )
    assert refused.queue == "general" and case_rows(db)[-1]["parent_ticket"] is None


def test_a_ticket_miss_delivered_four_times_counts_once(phone: Phone, db: Engine) -> None:
    script = [Press("1"), Press("9"), Press("1234567", deliveries=4), HangUp()]
    phone.call(ScriptedParty(script), from_number=GUESSER)  # the phone: same answer 4 times
    assert failures_counted(db) == 1


def test_a_ticket_step_run_again_for_a_lock_counts_its_miss_once(
    served: Served,
    db: Engine,
) -> None:
    """On SQLite the ticket step is stored on the event loop; another process's lock met
    there sends it to a thread, to run again: the miss counts once."""
    if db.dialect.name != "sqlite":
        pytest.skip("PostgreSQL steps run in threads: nothing gives way to run again")
    import sqlite3

    keyed, met = threading.Event(), []

    def locked_once(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        step = statement.lstrip().upper().startswith("UPDATE CALLS SET STEP")
        if keyed.is_set() and step and not met:  # the ticket's step, as if a backup ran
            met.append(statement)
            raise sqlite3.OperationalError("database is locked")

    class Keys(ScriptedParty):
        def answer(self, prompt: Prompt) -> Any:
            if len(self.answers) == 1:  # the ticket prompt
                keyed.set()
            return super().answer(prompt)

    event.listen(db, "before_cursor_execute", locked_once)
    try:
        with served() as (_client, phone):
            record = phone.call(Keys([Press("1"), Press("9"), Press("1234567")]))
    finally:
        event.remove(db, "before_cursor_execute", locked_once)
    assert met, "the step never met the lock"
    assert "could not find that ticket" in record.transcript
    assert failures_counted(db) == 1


def test_secret_digits_never_reach_the_database_or_logs(
    phone: Phone, db: Engine, caplog: pytest.LogCaptureFixture, database_url: str
) -> None:
    caplog.set_level("DEBUG")
    wrong_pin, wrong_id = "864209", "7318"
    records = [
        phone.call(
            ScriptedParty(
                [Press("1"), Press("1"), Press(UID), Press(wrong_pin), Press(UID), Press(wrong_id)]
            )
        ),
        phone.call(ScriptedParty([Press("1"), Press("1"), Press(UID), Press(ID4)])),
        phone.call(ScriptedParty([Press("2"), Press("1"), Press(UID), Press(PIN)])),
        # UID and PIN keyed in one go: no UID (too long), asked again; never kept as one.
        phone.call(
            ScriptedParty([Press("1"), Press("1"), Press(UID + PIN), Press(UID), Press(PIN)])
        ),
    ]
    assert "That is not an account U I D." in " ".join(records[-1].heard)
    dump = []
    with db.connect() as conn:
        for table in metadata.sorted_tables:
            dump += [repr(tuple(row)) for row in conn.execute(select(table))]
        tickets = [t for (t,) in conn.execute(select(cases.c.ticket))]
    # Random 7-digit tickets and random hex CallSids are no secrets: one of them holding a
    # secret's digits by chance is not a leak.
    chance = [*tickets, *(r.call_sid for r in records)]
    haystack = "\n".join(dump) + "\n" + caplog.text
    for value in chance:
        haystack = haystack.replace(value, "<random>")
    for secret in (PIN, ID4, wrong_pin, wrong_id):
        assert secret not in haystack, f"{secret} leaked"
    if database_url.startswith("sqlite"):
        path = database_url.removeprefix("sqlite:///")
        with db.connect() as conn:
            conn.execute(text("PRAGMA wal_checkpoint(FULL)"))
        raw = open(path, "rb").read()  # noqa: SIM115 - the whole file, pages and free space
        for value in chance:
            raw = raw.replace(value.encode(), b"<random>")
        for secret in (PIN, ID4, wrong_pin, wrong_id):
            assert secret.encode() not in raw


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url=HTTPS_CLIENT) as c:
        yield c


def test_agent_not_answering_puts_the_caller_back_in_line_once(
    client: TestClient, agent: str, db: Engine, check_twiml: Callable[[str], None]
) -> None:
    documents: list[str] = []

    def keep(body: str) -> None:
        check_twiml(body)
        documents.append(body)

    phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=keep)
    seen: dict[str, Any] = {}

    class Unanswered(Caller):
        def dial_outcome(self, number: str) -> str:
            return "no-answer"

    def holds(poll: int) -> bool:
        if "claimed" not in seen:  # one agent, once; their phone does not answer
            seen["claimed"] = api(client, agent, "POST", "/api/agents/next")
        elif "repeated" not in seen:  # back on hold: Twilio now repeats the Dial action
            dial = next(d for d in reversed(documents) if "<Dial" in d)
            action = dial.split('action="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
            with db.connect() as conn:
                sid = conn.execute(select(cases.c.call_sid)).scalar_one()
            repeat = phone.signed_post(
                action,
                {
                    "CallSid": sid,
                    "DialCallStatus": "no-answer",
                    "AccountSid": "AC" + "0" * 32,
                },
            )
            check_twiml(repeat.text)
            seen["repeated"] = True
        return poll < 2

    party = Unanswered([Press("1"), Press("0")], holds)
    record = phone.call(party)
    assert record.dialed == AGENT_PHONE and seen.get("repeated")
    with db.connect() as conn:
        errors = conn.execute(
            text("SELECT count(*) FROM call_events WHERE outcome = 'agent-no-answer'")
        ).scalar()
    assert errors == 1  # one quiet requeue, although Twilio said it twice
    [row] = case_rows(db)
    assert row["queued"] == 1 and row["agent_id"] is None  # in line again, not lost


# -- what goes wrong around the emergency path ----------------------------------------------------


class Counting:
    """An outside party (identity provider, account service) that counts what it was asked."""

    def __init__(self, ok: bool = False, fail: bool = False) -> None:
        self.ok, self.fail, self.calls = ok, fail, 0
        self.lock = threading.Lock()

    def check(self, *, uid: str, factor: str, digits: str, now: datetime) -> bool:
        with self.lock:
            self.calls += 1
        if self.fail:
            raise RuntimeError("identity service down")
        return self.ok

    def registered_phone(self, *, uid: str) -> str | None:
        if self.fail:  # read when the case opens, in the webhook's own work
            raise RuntimeError("identity directory down")
        return None

    def freeze(self, *, uid: str, now: datetime) -> bool:
        with self.lock:
            self.calls += 1
        return True


class Served(Protocol):
    def __call__(
        self, own: Settings | None = None, **parts: Any
    ) -> contextlib.AbstractContextManager[tuple[TestClient, Phone]]: ...


@pytest.fixture
def served(
    settings: Settings,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
) -> Served:
    """The hotline with parts of its own (an identity directory, account actions, an HTTP
    client, other settings), and a phone that calls it."""

    @contextlib.contextmanager
    def serve(own: Settings | None = None, **parts: Any) -> Iterator[tuple[TestClient, Phone]]:
        app = create_app(own or settings, tree=hotline_tree, db=db, clock=clock, **parts)
        with TestClient(app, base_url=HTTPS_CLIENT) as client:
            yield (
                client,
                Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml),
            )

    return serve


def test_a_caller_the_fallback_queued_still_gets_a_case_and_an_agent(
    served: Served,
    db: Engine,
    agent: str,
) -> None:
    broken = Counting(fail=True)  # a bug in the identity directory: the webhook fails inside
    with served(identity=broken) as (client, phone):
        seen: dict[str, Any] = {}

        def holds(poll: int) -> bool:
            if poll == 1:
                seen["queue"] = api(client, agent, "GET", "/api/queue")
                seen["claimed"] = api(client, agent, "POST", "/api/agents/next")
            return poll < 3

        record = phone.call(Caller(list(HIJACK), holds), from_number=VICTIM)
    assert record.queue == "general"  # the fallback answered
    assert [(e["priority"], e["reason"]) for e in seen["queue"]] == [
        ("emergency", "account_hijack")
    ]
    assert seen["claimed"]["connect"]["mode"] == "next_hold_poll"
    assert record.dialed == AGENT_PHONE  # and the agent reached them


def test_a_mandarin_caller_the_fallback_queued_holds_in_mandarin(
    served: Served, db: Engine
) -> None:
    """The fallback answers from memory, in the language of the caller's number: English
    for a +1 number. A caller who chose Mandarin and has a case keeps Mandarin on hold (the
    case says which), not English from the fallback's guess."""
    broken = Counting(fail=True)
    with served(identity=broken) as (_client, phone):
        record = phone.call(
            Caller([Press("2"), *HIJACK[1:]], lambda poll: poll < 3), from_number=VICTIM
        )
    assert record.queue == "general"  # the fallback answered
    with db.connect() as conn:
        assert conn.execute(select(cases.c.language)).scalars().all() == ["zh-CN"]
    # After the fallback's apology, in each language, every hold round is in Mandarin.
    rounds = record.heard[-3:]
    assert all(re.search("[\u4e00-\u9fff]", said) for said in rounds), rounds
    assert not any("position" in said.lower() for said in rounds), rounds


def test_a_victim_whose_queue_is_full_is_held_and_reaches_the_agent_when_it_frees(
    served: Served, db: Engine, agent: str
) -> None:
    """Twilio's security queue at its max size on the worst day: the victim hears once that
    every line is busy, is held between tries (no loop of webhooks, no apology each time, no
    fallback queue while theirs frees), keeps their case and its place, and reaches the agent
    who takes it."""
    with served() as (client, phone):
        phone.full_queues["security"] = 2  # two more tries are refused, then someone leaves
        seen: dict[str, Any] = {}

        def holds(poll: int) -> bool:
            if poll == 1:
                seen["claimed"] = api(client, agent, "POST", "/api/agents/next")
            return poll < 3

        record = phone.call(Caller(list(HIJACK), holds), from_number=VICTIM)
        scraped = client.get("/metrics").text
    assert "ivr_queue_full_total 2.0" in scraped  # for the alert: the queue wants sizing
    assert record.refused_by_full_queues == 2 and record.queue == "security"
    heard = " ".join(record.heard)
    assert heard.count("Every line is busy right now") == 1
    assert "something went wrong" not in heard
    assert seen["claimed"]["case"]["priority"] == "emergency"
    assert record.dialed == AGENT_PHONE
    with db.connect() as conn:
        assert len(conn.execute(select(cases.c.id)).all()) == 1  # one case, kept throughout


def test_a_caller_whose_offer_ends_on_the_way_goes_back_to_their_place(
    rest: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    agent: str,
    check_twiml: Callable[[str], None],
) -> None:
    """The agent takes the case (Twilio redirects the caller to TwiML dialling them) and gives
    it back before Twilio fetches that TwiML: the caller is queued again in their place, not
    put through to an agent who no longer has their case."""
    client, phone = rest
    seen: dict[str, Any] = {}

    def holds(poll: int) -> bool:
        if poll == 1:
            claimed = api(client, agent, "POST", "/api/agents/next")
            assert claimed["connect"]["mode"] == "redirected"
            _, url, data = twilio_http.requests[-1]
            api(client, agent, "POST", f"/api/cases/{claimed['case']['id']}/requeue")
            sid = url.rsplit("/", 1)[-1].removesuffix(".json")
            seen["answer"] = phone.signed_post(
                data["Url"], {"CallSid": sid, "AccountSid": "AC" + "0" * 32}
            ).text
        return poll < 2

    phone.call(Caller([Press("1"), Press("0")], holds))
    check_twiml(seen["answer"])
    assert "<Enqueue" in seen["answer"] and "<Dial" not in seen["answer"]
    [row] = case_rows(db)
    assert row["agent_id"] is None and row["offer"] is None


def test_an_offer_handed_to_the_hold_loop_ends_with_it(
    rest: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    agent: str,
) -> None:
    """Twilio refused the redirect, so the caller's next hold round was to take them to the
    agent; the case is taken back first, and the next agent's redirect works. The hold loop
    must not also send them out of the queue: they would be put through twice."""
    client, phone = rest
    supervisor = make_user(db, "sam", "supervisor")
    seen: dict[str, Any] = {}

    def holds(poll: int) -> bool:
        if poll == 1:
            twilio_http.refuse = True
            first = api(client, agent, "POST", "/api/agents/next")
            assert first["connect"]["mode"] == "next_hold_poll"
            api(client, supervisor, "POST", f"/api/cases/{first['case']['id']}/requeue")
            twilio_http.refuse = False
            seen["next"] = api(client, make_user(db, "bob", "agent"), "POST", "/api/agents/next")
        return poll < 3

    record = phone.call(Caller([Press("1"), Press("0")], holds))
    assert seen["next"]["connect"]["mode"] == "redirected"
    assert record.dialed is None  # the hold loop did not hand them over as well
    assert not any("<Leave" in doc for doc in record.documents)


def test_twilio_refusing_a_redirect_hands_the_caller_over_at_their_next_hold_round(
    rest: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    agent: str,
) -> None:
    """Twilio's REST API is failing while its calls go on (an outage of the API alone): the
    agent keeps the case, and the caller's next hold round takes them to the agent. Put back
    at the head of the line instead, the case would be taken and refused again and again."""
    client, phone = rest
    seen: dict[str, Any] = {}
    twilio_http.refuse = True

    def holds(poll: int) -> bool:
        if poll == 1:
            seen["claimed"] = api(client, agent, "POST", "/api/agents/next")
            seen["next"] = api(client, make_user(db, "bob", "agent"), "POST", "/api/agents/next")
        return poll < 5

    record = phone.call(Caller([Press("1"), Press("0")], holds))
    assert seen["claimed"]["connect"] == {"mode": "next_hold_poll", "number": None}
    assert seen["next"] == {"case": None, "connect": None}  # nobody else is handed it
    assert record.dialed == AGENT_PHONE  # at the very next hold round
    [row] = case_rows(db)
    # Handed over by the hold loop, and the agent answered: theirs to resolve.
    assert row["status"] == "connected" and row["offer"] == "answered"
    metrics = client.get("/metrics").text
    assert 'ivr_twilio_refusals_total{what="redirect"} 1.0' in metrics


def test_a_caller_gone_as_their_case_is_taken_is_called_back(
    rest: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    agent: str,
) -> None:
    """The agent takes the case as its caller hangs up: Twilio refuses the redirect, the call
    is not in progress (21220). The case is back in line as a call back, and the agent asking
    again gets it so, whether or not the hang-up's status callback has come yet."""
    client, phone = rest
    seen: dict[str, Any] = {}

    def holds(poll: int) -> bool:
        twilio_http.error = (400, 21220)
        seen["refused"] = client.post("/api/agents/next", headers=bearer(agent))
        twilio_http.error = None
        [row] = case_rows(db)
        seen["row"] = (row["status"], row["queued"], row["agent_id"])
        seen["again"] = api(client, agent, "POST", "/api/agents/next")
        return False

    phone.call(Caller([Press("1"), Press("0")], holds), from_number="+15005554321")
    assert seen["refused"].status_code == 503
    assert "call back" in seen["refused"].json()["detail"]
    assert seen["row"] == ("abandoned", 1, None)
    assert seen["again"]["connect"] == {"mode": "calling_back", "number": "+15005554321"}
    _, url, data = twilio_http.requests[-1]
    assert url.endswith("/Calls.json") and data["To"] == "+15005554321"


def test_twilio_refusing_a_call_back_leaves_the_number_to_the_agent(
    rest: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    agent: str,
) -> None:
    client, phone = rest
    phone.call(ScriptedParty(list(CALL_ME_BACK)), from_number="+15005554321")
    twilio_http.refuse = True
    claimed = api(client, agent, "POST", "/api/agents/next")
    assert claimed["connect"] == {"mode": "call_back", "number": "+15005554321"}
    assert api(client, make_user(db, "bob", "agent"), "POST", "/api/agents/next")["case"] is None
    [row] = case_rows(db)
    assert (row["status"], row["claimed_from"]) == ("offered", "callback_requested")
    metrics = client.get("/metrics").text
    assert 'ivr_twilio_refusals_total{what="call_back"} 1.0' in metrics


def test_an_unanswered_call_back_is_tried_again_later_not_at_once(
    rest: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    agent: str,
    clock: FakeClock,
) -> None:
    """Put back at its old place, a number nobody answers would be called again at once by
    every agent in turn while callers wait. It waits IVR_CALLBACK_RETRY behind new arrivals
    instead, twice as long after each miss."""
    client, phone = rest
    phone.call(ScriptedParty(list(CALL_ME_BACK)), from_number="+15005554321")
    claimed = api(client, agent, "POST", "/api/agents/next")
    assert claimed["connect"]["mode"] == "calling_back"
    assert claimed["case"]["callback_attempts"] == 0
    # Not given back nor resolved while Twilio is calling: the customer may answer any moment.
    ringing = client.post(f"/api/cases/{claimed['case']['id']}/requeue", headers=bearer(agent))
    assert ringing.status_code == 409 and "calling the customer back" in ringing.text
    resolving = client.post(
        f"/api/cases/{claimed['case']['id']}/resolve", json={"notes": ""}, headers=bearer(agent)
    )
    assert resolving.status_code == 409 and "calling the customer back" in resolving.text

    def missed() -> None:
        _, _, data = twilio_http.requests[-1]
        assert data["StatusCallback"].startswith(f"{PUBLIC_URL}/twilio/callback-status?case=")
        # A late report of some earlier call back is not news.
        stale = {"CallSid": "CA" + "5" * 32, "CallStatus": "no-answer"}
        assert phone.signed_post(data["StatusCallback"], stale).status_code == 204
        assert case_rows(db)[0]["status"] == "offered"
        status = {"CallSid": twilio_http.sids[-1], "CallStatus": "no-answer"}
        for _ in range(2):  # Twilio may deliver it twice: one miss all the same
            assert phone.signed_post(data["StatusCallback"], status).status_code == 204

    missed()
    [row] = case_rows(db)
    assert (row["status"], row["queued"], row["agent_id"]) == ("callback_requested", 1, None)
    assert row["flags"]["callback_attempts"] == "1"
    assert row["not_before"] - clock() == timedelta(seconds=300)
    # In line still (first, in its old place), but not offered for those five minutes:
    # someone who calls meanwhile is served; with nobody else, an agent gets nothing.
    bob = make_user(db, "bob", "agent")
    clock.advance(seconds=60)
    [first, *_] = api(client, agent, "GET", "/api/queue")
    assert first["case_id"] == row["id"] and first["not_before"] is not None
    phone.call(ScriptedParty([Press("1"), Press("0")]), from_number="+15005550111")
    assert api(client, agent, "POST", "/api/agents/next")["case"]["caller"] == "+15005550111"
    assert api(client, bob, "POST", "/api/agents/next")["case"] is None
    clock.advance(seconds=240)
    again = api(client, bob, "POST", "/api/agents/next")
    assert again["case"]["id"] == row["id"] and again["case"]["callback_attempts"] == 1
    missed()
    row = case_rows(db)[0]
    assert row["flags"]["callback_attempts"] == "2"
    assert row["not_before"] - clock() == timedelta(seconds=600)


def test_a_late_report_of_an_earlier_call_back_is_not_taken_for_the_one_being_placed(
    rest: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    agent: str,
    clock: FakeClock,
) -> None:
    """The first call back rang out. When the case is taken again, Twilio repeats that
    call's "no-answer" just as the second call back is being placed, before its CallSid is
    known: the second placement is not taken for the first and put back in line."""
    client, phone = rest
    phone.call(ScriptedParty(list(CALL_ME_BACK)), from_number="+15005554321")
    assert api(client, agent, "POST", "/api/agents/next")["connect"]["mode"] == "calling_back"
    _, _, first = twilio_http.requests[-1]
    first_report = {"CallSid": twilio_http.sids[-1], "CallStatus": "no-answer"}
    assert phone.signed_post(first["StatusCallback"], first_report).status_code == 204
    clock.advance(seconds=300)  # its retry time

    late: list[int] = []

    def report_the_first_again() -> None:
        twilio_http.meanwhile = None
        late.append(phone.signed_post(first["StatusCallback"], first_report).status_code)

    twilio_http.meanwhile = report_the_first_again
    again = api(client, agent, "POST", "/api/agents/next")
    assert late == [204] and again["connect"]["mode"] == "calling_back"
    [row] = case_rows(db)
    assert (row["status"], row["queued"]) == ("offered", 0)
    assert row["offer"] == f"calling_back:{twilio_http.sids[-1]}"
    assert row["flags"]["callback_attempts"] == "1"  # the first miss, once


def test_an_emergency_call_back_is_tried_again_as_soon_as_the_first_time(
    rest: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    agent: str,
    clock: FakeClock,
) -> None:
    """A hijack victim who missed a call back is tried again every IVR_CALLBACK_RETRY, not
    after a wait that doubles up to an hour."""
    client, phone = rest
    phone.call(ScriptedParty([Press("1"), Press("1")]), from_number=VICTIM)  # hung up on the way
    for _ in range(3):
        claimed = api(client, agent, "POST", "/api/agents/next")
        assert claimed["connect"]["mode"] == "calling_back"
        _, _, data = twilio_http.requests[-1]
        status = {"CallSid": twilio_http.sids[-1], "CallStatus": "no-answer"}
        assert phone.signed_post(data["StatusCallback"], status).status_code == 204
        [row] = case_rows(db)
        assert (row["status"], row["queued"]) == ("abandoned", 1)
        assert row["not_before"] - clock() == timedelta(seconds=300)
        clock.advance(seconds=300)
    assert row["flags"]["callback_attempts"] == "3"


def test_twilio_dequeuing_for_our_redirect_changes_nothing(phone: Phone, db: Engine) -> None:
    record = phone.call(ScriptedParty([Press("1"), Press("0")]))
    exit_url, params = next((u, p) for u, p in record.requests if "/twilio/queue-exit" in u)
    with db.connect() as conn:
        before = conn.execute(text("SELECT step, last_twiml FROM calls")).one()
    answer = phone.signed_post(exit_url, {**params, "QueueResult": "redirected"})
    assert answer.status_code == 200 and "<Say" not in answer.text and "<Enqueue" not in answer.text
    with db.connect() as conn:
        assert conn.execute(text("SELECT step, last_twiml FROM calls")).one() == before


def test_a_pin_step_run_again_for_a_lock_counts_its_guess_once(
    served: Served,
    db: Engine,
) -> None:
    """On SQLite the PIN is counted on the event loop; another process's lock met there sends
    the whole step to a thread, to run again. The attempt it counted before giving way must
    not stay counted beside the one the second run counts."""
    if db.dialect.name != "sqlite":
        pytest.skip("PostgreSQL steps run in threads: nothing gives way to run again")
    import sqlite3

    met: list[str] = []

    def locked_once(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # The lockout's look-up, the first time: as if a backup held the database.
        select = statement.lstrip().upper().startswith("SELECT")
        if not met and select and "verification_failures" in statement:
            met.append(statement)
            raise sqlite3.OperationalError("database is locked")

    event.listen(db, "before_cursor_execute", locked_once)
    try:
        with served() as (_client, phone):
            record = phone.call(
                ScriptedParty([Press("1"), Press("1"), Press(UID), Press("000000")])
            )
    finally:
        event.remove(db, "before_cursor_execute", locked_once)
    assert met, "the look-up never met the lock"
    assert "could not verify those details" in record.transcript  # a wrong PIN, as it was
    with db.connect() as conn:
        counted = conn.execute(text("SELECT count(*) FROM verification_failures")).scalar()
    assert counted == 1


def test_parallel_guesses_cannot_outrun_the_lockout(
    served: Served,
    settings: Settings,
    db: Engine,
) -> None:
    guesses, identity = 12, Counting(ok=False)
    barrier = threading.Barrier(guesses)
    with served(identity=identity) as (_client, phone):

        class Guesser(ScriptedParty):
            def answer(self, prompt: Prompt) -> Any:
                if len(self.answers) == 1:  # at the PIN prompt: everybody guesses at once
                    barrier.wait(timeout=30)
                return super().answer(prompt)

        def guess(n: int) -> None:
            phone.call(
                Guesser([Press("1"), Press("1"), Press(UID), Press(f"{n:06d}")]),
                from_number=f"+1500555{n:04d}",
            )

        threads = [threading.Thread(target=guess, args=(n,)) for n in range(guesses)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    # Each attempt is counted before it is checked: at most 5 guesses reach the directory
    # (none at all if every attempt was counted before any was checked).
    assert identity.calls <= settings.lockout_failures
    # The others were refused as locked, not told so, and queued for the security team.
    queued = case_rows(db)
    locked = [r for r in queued if r["flags"].get("verified") == "locked"]
    assert len(locked) == guesses - identity.calls
    # Those told their PIN was wrong hung up at the next prompt: on the emergency path still,
    # so each has a case for a call back too.
    hung_up = [r for r in queued if r["flags"].get("hung_up_at") == "emergency_verify"]
    assert len(hung_up) == identity.calls and len(queued) == guesses
    assert {r["queue"] for r in queued} == {"security"}


@pytest.mark.parametrize("digits", [PIN, "000000"], ids=["right", "wrong"])
@pytest.mark.parametrize("local", [False, True], ids=["service", "local"])
def test_a_duplicated_pin_webhook_freezes_once_or_counts_once(
    served: Served,
    db: Engine,
    digits: str,
    local: bool,
) -> None:
    """The exchange's account service (frozen after the step is stored) or our own accounts
    table (frozen in the step's transaction): once either way."""
    service = Counting()
    parts = {} if local else {"actions": service}
    with served(**parts) as (_client, phone):
        # Twilio delivers the PIN 4 times at once; each copy is answered alike.
        script = [*HIJACK[:-1], Press(digits, deliveries=4), HangUp()]
        phone.call(ScriptedParty(script), from_number=VICTIM)
    with db.connect() as conn:
        audits = conn.execute(text("SELECT count(*) FROM audit_log")).scalar()
        failures = conn.execute(text("SELECT count(*) FROM verification_failures")).scalar()
        frozen = conn.execute(select(accounts.c.frozen).where(accounts.c.uid == UID)).scalar()
    freezes = frozen if local else service.calls
    if digits == PIN:
        assert (freezes, audits, failures) == (1, 1, 0)  # one freeze, one audit
        assert len(case_rows(db)) == 1
    else:
        # One wrong PIN, however often Twilio delivers it: one step towards a lockout.
        assert (freezes, audits, failures) == (0, 0, 1)


def test_an_emergency_followed_up_stays_one_until_it_is_resolved(
    phone: Phone, client: TestClient, agent: str, db: Engine
) -> None:
    """The victim hung up before an agent answered and calls back with their ticket (main
    menu 9, as their ticket text says): still an emergency. Once resolved, a follow-up is a
    question about it, high but not in the emergency lane."""
    phone.call(ScriptedParty([Press("1"), Press("1"), Press("*")]))
    [emergency] = case_rows(db)
    assert emergency["status"] == "abandoned"
    phone.call(ScriptedParty([Press("1"), Press("9"), Press(emergency["ticket"])]))
    follow_up = case_rows(db)[-1]
    assert follow_up["parent_ticket"] == emergency["ticket"]
    assert (follow_up["priority"], follow_up["lane"]) == ("emergency", 0)
    with db.begin() as conn:
        resolved = update(cases).where(cases.c.id == emergency["id"])
        conn.execute(resolved.values(status="resolved", queued=0))  # by an agent, since
    phone.call(ScriptedParty([Press("1"), Press("9"), Press(emergency["ticket"])]))
    question = case_rows(db)[-1]
    assert (question["priority"], question["lane"]) == ("high", 1)


def test_the_sweep_forgets_failures_only_once_they_can_lock_nobody(
    app: FastAPI, phone: Phone, db: Engine, clock: FakeClock
) -> None:
    from ivr.db import verification_failures

    def failures() -> int:
        with db.connect() as conn:
            return len(conn.execute(select(verification_failures.c.id)).all())

    for pin in ("000001", "000002", "000003", "000004", "000005"):
        phone.call(ScriptedParty([Press("1"), Press("1"), Press(UID), Press(pin)]))
    assert failures() == 5
    hotline = app.state.hotline
    clock.advance(minutes=10)  # locked now: these rows are the lock
    assert hotline.prune_failures() == 0 and failures() == 5
    clock.advance(hours=23, minutes=40)  # long past the lock, but kept a day at least
    assert hotline.prune_failures() == 0 and failures() == 5
    clock.advance(hours=1, seconds=1)
    assert hotline.prune_failures() == 5 and failures() == 0


# -- a victim who hangs up before reaching the queue -----------------------------------------


@pytest.mark.parametrize(
    ("answers", "hung_up_at", "uid"),
    [
        ([Press("1"), Press("1")], "emergency_verify", None),  # at the UID prompt
        ([Press("1"), Press("1"), Press(UID)], "emergency_verify", UID),  # at the PIN prompt
    ],
    ids=["before-the-uid", "before-the-pin"],
)
def test_a_victim_who_hangs_up_on_the_way_still_gets_an_emergency_case(
    phone: Phone,
    client: TestClient,
    agent: str,
    db: Engine,
    answers: list[Press],
    hung_up_at: str,
    uid: str | None,
) -> None:
    phone.call(ScriptedParty(list(answers)), from_number=VICTIM)  # a party uses its list up
    [case] = case_rows(db)
    assert (case["status"], case["queued"]) == ("abandoned", 1)
    assert (case["queue"], case["priority"], case["lane"]) == ("security", "emergency", 0)
    assert case["account_uid"] == uid and case["caller"] == VICTIM
    assert case["flags"]["hung_up_at"] == hung_up_at
    assert case["flags"].get("verified") != "yes"
    # First in line for the next agent, who is told whom to call back.
    claimed = api(client, agent, "POST", "/api/agents/next")
    assert claimed["case"]["id"] == case["id"]
    assert claimed["connect"] == {"mode": "call_back", "number": VICTIM}


def test_a_number_that_keeps_hanging_up_has_one_call_back_in_line(
    phone: Phone, client: TestClient, agent: str, db: Engine
) -> None:
    """A frightened caller (or a prankster) rings the emergency line and hangs up, again and
    again: one call back in line, counting the calls, not one per call ahead of everyone
    waiting. Another account from the same number is another case."""
    on_the_way = [Press("1"), Press("1")]  # English, stolen account, then gone
    for _ in range(3):
        phone.call(ScriptedParty(list(on_the_way)), from_number=VICTIM)
    phone.call(ScriptedParty([*on_the_way, Press("10000002")]), from_number=VICTIM)
    rows = case_rows(db)
    assert [(r["queued"], r["account_uid"]) for r in rows] == [
        (1, None),
        (0, None),
        (0, None),
        (1, "10000002"),
    ]
    first = rows[0]
    assert first["flags"]["calls_unanswered"] == "3"
    assert all(first["ticket"] in (r["notes"] or "") for r in rows[1:3])
    assert {r["status"] for r in rows} == {"abandoned"}  # each call still counts as abandoned
    taken = take_in_turn(client, agent, 3)
    assert [c["id"] if c else None for c in taken] == [first["id"], rows[3]["id"], None]


def test_a_caller_on_the_line_again_is_served_on_the_call_in_their_old_place(
    phone: Phone, client: TestClient, agent: str, db: Engine, clock: FakeClock
) -> None:
    """They hung up waiting (a call back in line), someone else did too, and they call
    again: their new case takes the call back's place, and the agent gets them on the line,
    not a call back to a number that is busy talking to us."""
    again = "+15005550144"
    phone.call(ScriptedParty([Press("1"), Press("0")]), from_number=again)
    clock.advance(minutes=2)
    phone.call(ScriptedParty([Press("1"), Press("0")]), from_number="+15005550145")
    clock.advance(minutes=2)
    old, other = case_rows(db)
    taken: list[Any] = []

    def holds(poll: int) -> bool:
        if not taken:
            taken.append(api(client, agent, "POST", "/api/agents/next"))
        return poll < 3

    record = phone.call(Caller([Press("1"), Press("0")], holds), from_number=again)
    new = case_rows(db)[-1]
    assert taken[0]["case"]["id"] == new["id"]
    assert taken[0]["connect"]["mode"] == "next_hold_poll"  # on the line, not a call back
    assert record.dialed == AGENT_PHONE
    old, other = (r for r in case_rows(db) if r["id"] in (old["id"], other["id"]))
    assert (old["queued"], old["status"]) == (0, "abandoned")
    assert new["ticket"] in old["notes"]
    assert (other["queued"], other["status"]) == (1, "abandoned")  # someone else's: kept
    assert new["sort_at"] == old["sort_at"]


def test_a_call_back_offered_at_a_desk_leaves_it_when_its_caller_is_on_the_line_again(
    phone: Phone, client: TestClient, app: FastAPI, agent: str, db: Engine
) -> None:
    """The caller hung up waiting; their call back is offered at alice's desk, to accept.
    Before she does, they call again: the desk offer is withdrawn (not two agents on one
    customer, one dialling a line busy with the other), and the caller is served on the line."""
    again = "+15005550144"
    phone.call(ScriptedParty([Press("1"), Press("0")]), from_number=again)
    api(client, agent, "PUT", "/api/agents/presence", json={"available": True})
    assert app.state.hotline.dispatch() == 1
    [offered] = api(client, agent, "GET", "/api/agents/cases")
    assert offered["accept_by"] is not None
    seen: list[Any] = []

    def holds(poll: int) -> bool:
        if not seen:
            seen.append(api(client, agent, "GET", "/api/agents/cases"))
        return poll < 2

    phone.call(Caller([Press("1"), Press("0")], holds), from_number=again)
    assert offered["id"] not in [c["id"] for c in seen[0]]
    old = next(r for r in case_rows(db) if r["id"] == offered["id"])
    assert (old["queued"], old["status"], old["agent_id"]) == (0, "abandoned", None)
    assert "called again" in old["notes"]


def test_a_call_as_the_victims_number_does_not_take_their_verified_call_back_out_of_line(
    phone: Phone, client: TestClient, agent: str, db: Engine
) -> None:
    """The victim verified and hung up at the notice: an emergency call back. Someone calls
    as their number (spoofed), keys their UID and skips the PIN: while they hold, both cases
    are in line, so an agent told "a false alarm" on the line cannot close the victim's
    away. Hung up, theirs joins the victim's, which stays verified. The victim calling
    again, verified, is served on the call in place of their call back."""
    phone.call(ScriptedParty(list(HIJACK)), from_number=VICTIM)
    seen: list[list[dict[str, Any]]] = []

    def holds(poll: int) -> bool:
        seen.append(case_rows(db))
        return poll < 2

    phone.call(Caller([Press("1"), Press("1"), Press(UID), Press("*")], holds), from_number=VICTIM)
    victims, spoofed = seen[0]
    assert victims["flags"]["verified"] == "yes" and spoofed["flags"]["verified"] == "skipped"
    assert (victims["queued"], victims["notes"]) == (1, None)
    victims = case_rows(db)[0]
    assert (victims["queued"], victims["flags"]["verified"]) == (1, "yes")
    assert victims["flags"]["factors"] == "uid,pin"
    phone.call(Caller(list(HIJACK), lambda poll: poll < 2), from_number=VICTIM)
    assert case_rows(db)[0]["queued"] == 0  # served on the call: verified as well


@pytest.mark.parametrize("withheld_as", ["anonymous", "+266696687"])
def test_a_withheld_number_that_hangs_up_with_no_account_leaves_nobody_to_call(
    phone: Phone, client: TestClient, agent: str, db: Engine, withheld_as: str
) -> None:
    """Nobody can call them back and there is no account to act on: the case is kept (and
    counted as abandoned), not put in line for an agent. With the account they keyed, the
    agent can still freeze it: that one stays in line."""
    phone.call(ScriptedParty([Press("1"), Press("1")]), from_number=withheld_as)
    phone.call(ScriptedParty([Press("1"), Press("0")]), from_number=withheld_as)  # waited, gone
    phone.call(ScriptedParty([Press("1"), Press("1"), Press(UID)]), from_number=withheld_as)
    rows = case_rows(db)
    assert [(r["status"], r["queued"], r["account_uid"]) for r in rows] == [
        ("abandoned", 0, None),
        ("abandoned", 0, None),
        ("abandoned", 1, UID),
    ]
    assert rows[0]["notes"] == rows[1]["notes"] == NOBODY_TO_CALL
    claimed = api(client, agent, "POST", "/api/agents/next")
    assert claimed["case"]["id"] == rows[2]["id"]
    assert claimed["connect"]["mode"] == "no_number"
    other = make_user(db, "bob", "agent")
    assert api(client, other, "POST", "/api/agents/next")["case"] is None


def test_a_caller_who_hangs_up_at_a_menu_opens_no_case(phone: Phone, db: Engine) -> None:
    phone.call(ScriptedParty([Press("1")]))  # the main menu: they never asked for anything
    phone.call(ScriptedParty([Press("1"), Press("3")]))  # deposits menu
    assert case_rows(db) == []


def in_background(
    phone: Phone, url: str, params: dict[str, str], codes: list[int]
) -> threading.Thread:
    """Post `params` to `url` as Twilio would, from a thread of its own (started); the answer's
    status code goes to `codes`."""

    def post() -> None:
        codes.append(phone.signed_post(url, params).status_code)

    thread = threading.Thread(target=post)
    thread.start()
    return thread


class Pausing:
    """The identity directory (PIN matches), pausing in its first caller-ID look-up (the one
    a step that opens a case makes, between reading the call and storing the step) until
    told to go on."""

    def __init__(self) -> None:
        self.entered, self.go = threading.Event(), threading.Event()

    def check(self, *, uid: str, factor: str, digits: str, now: datetime) -> bool:
        return (uid, digits) == (UID, PIN)

    def registered_phone(self, *, uid: str) -> str | None:
        if not self.entered.is_set():  # the first look-up only: the status callback's is not
            self.entered.set()
            assert self.go.wait(30), "never told to go on"
        return VICTIM

    def freeze(self, *, uid: str, now: datetime) -> bool:
        return True


def test_a_final_status_between_reading_and_storing_a_step_leaves_one_case(
    served: Served,
    db: Engine,
) -> None:
    """The victim keys their PIN and hangs up at once: Twilio posts the PIN and the final
    status together. The status is stored (opening the hung-up victim's case) while the PIN's
    step is still being worked out: the step finds the call ended, and the case it opens is
    that same one, verified, waiting for a call back; not a second, live one for nobody."""
    identity, codes = Pausing(), []
    parts = {"identity": identity, "actions": identity}
    sid = "CA" + "f" * 32
    with served(**parts) as (_client, phone):
        base = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": VICTIM}

        class KeysAndHangsUp(ScriptedParty):
            def answer(self, prompt: Prompt) -> Any:
                if len(self.answers) != 1:
                    return super().answer(prompt)
                pin = in_background(phone, prompt.action, {**base, "Digits": PIN}, codes)
                assert identity.entered.wait(30)  # the PIN's step: read, not stored yet
                final = {**base, "CallStatus": "completed", "SequenceNumber": "9"}
                in_background(phone, PUBLIC_URL + "/twilio/status", final, codes).join(30)
                identity.go.set()
                pin.join(timeout=30)
                return HangUp()

        phone.call(KeysAndHangsUp(list(HIJACK)), from_number=VICTIM, call_sid=sid)
    assert sorted(codes) == [200, 204]
    [case] = case_rows(db)
    assert (case["queue"], case["priority"], case["status"]) == (
        "security",
        "emergency",
        "abandoned",
    )
    assert case["flags"]["verified"] == "yes" and case["flags"]["hung_up_at"] == "emergency_verify"


def test_a_late_input_and_the_final_status_never_both_open_the_case(
    served: Served,
    db: Engine,
) -> None:
    """The final status came first (the PIN arrives after the hang-up). Its case for a call
    back is being opened when the PIN's step, which opens the same case, is stored: the step
    waits for it and adds to it, rather than opening a second."""
    if db.dialect.name == "sqlite":
        pytest.skip("SQLite writes one transaction at a time: these cannot overlap")
    paused, go = threading.Event(), threading.Event()

    def pause_the_first_case(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO CASES") and not paused.is_set():
            paused.set()  # the status callback's, about to open the case
            assert go.wait(30), "never told to go on"

    service, codes = Counting(ok=True), []
    sid = "CA" + "9" * 32
    parts = {"identity": service, "actions": service}
    event.listen(db, "before_cursor_execute", pause_the_first_case)
    try:
        with served(**parts) as (_client, phone):
            base = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": VICTIM}

            class HangsUpThenKeys(ScriptedParty):
                def answer(self, prompt: Prompt) -> Any:
                    if len(self.answers) != 1:
                        return super().answer(prompt)
                    final = {**base, "CallStatus": "completed", "SequenceNumber": "9"}
                    status = in_background(phone, PUBLIC_URL + "/twilio/status", final, codes)
                    assert paused.wait(30)
                    pin = in_background(phone, prompt.action, {**base, "Digits": PIN}, codes)
                    pin.join(timeout=2)  # done by now, unless it waits for the case's opening
                    go.set()
                    status.join(timeout=30)
                    pin.join(timeout=30)
                    return HangUp()

            phone.call(HangsUpThenKeys(list(HIJACK)), from_number=VICTIM, call_sid=sid)
    finally:
        event.remove(db, "before_cursor_execute", pause_the_first_case)
    assert sorted(codes) == [200, 204]
    [case] = case_rows(db)
    assert (case["queue"], case["status"]) == ("security", "abandoned")
    assert case["flags"]["verified"] == "yes" and case["flags"]["hung_up_at"] == "emergency_verify"


def test_a_uid_keyed_after_the_hang_up_reaches_the_case_for_the_call_back(
    phone: Phone,
    client: TestClient,
    agent: str,
    db: Engine,
    check_twiml: Callable[[str], None],
) -> None:
    """The victim keys their UID and hangs up: Twilio's final status callback reaches us
    before the Gather action with the UID. The status opens the case for a call back (no
    account yet); the late UID must still reach it, so the agent who calls back can freeze
    the right account rather than start from nothing."""
    sid = "CA" + "7" * 32
    base = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": VICTIM}
    codes: list[int] = []

    class HangsUpThenTheUidArrives(ScriptedParty):
        def answer(self, prompt: Prompt) -> Any:
            if len(self.answers) != 2:  # at the UID prompt
                return super().answer(prompt)
            final = {**base, "CallStatus": "completed", "SequenceNumber": "9"}
            codes.append(phone.signed_post(PUBLIC_URL + "/twilio/status", final).status_code)
            [opened] = case_rows(db)
            assert opened["account_uid"] is None and opened["status"] == "abandoned"
            late = phone.signed_post(prompt.action, {**base, "Digits": UID})
            codes.append(late.status_code)
            check_twiml(late.text)
            return HangUp()

    phone.call(HangsUpThenTheUidArrives(list(HIJACK)), from_number=VICTIM, call_sid=sid)
    assert sorted(codes) == [200, 204]
    [case] = case_rows(db)
    assert (case["queue"], case["priority"], case["status"]) == (
        "security",
        "emergency",
        "abandoned",
    )
    assert case["account_uid"] == UID and case["flags"]["uid"] == UID
    assert case["flags"]["hung_up_at"] == "emergency_verify"
    assert case["flags"]["caller_id_match"] == "yes"  # known once the UID is
    assert case["flags"].get("verified") != "yes"
    claimed = api(client, agent, "POST", "/api/agents/next")
    assert claimed["case"]["account_uid"] == UID
    assert claimed["connect"] == {"mode": "call_back", "number": VICTIM}


def test_a_hang_up_while_the_step_onto_the_emergency_path_is_worked_out_gets_a_case(
    served: Served,
    db: Engine,
) -> None:
    """The victim presses 1 ("hacked") and hangs up at once; Twilio's one final status
    callback is stored between the step's reading the call and storing it. The status saw
    the main menu (nowhere urgent); the step sees the hang-up as it stores: the emergency
    case for a call back is opened all the same."""
    if db.dialect.name == "sqlite":
        pytest.skip("SQLite steps run on the event loop, one at a time: nothing comes between")
    armed, codes = threading.Event(), []
    sid = "CA" + "8" * 32
    base = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": VICTIM}
    with served() as (_client, phone):

        def hang_up_now(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            read = statement.lstrip().upper().startswith("SELECT CALLS.CALL_SID")
            if armed.is_set() and read:
                armed.clear()  # the step has read the call: the caller hangs up now
                final = {**base, "CallStatus": "completed", "SequenceNumber": "9"}
                in_background(phone, PUBLIC_URL + "/twilio/status", final, codes).join(30)

        seen: dict[str, Any] = {}

        class PressesOneAndHangsUp(ScriptedParty):
            def answer(self, prompt: Prompt) -> Any:
                if len(self.answers) == 1:  # the main menu: "1" and gone
                    armed.set()
                elif not self.answers:  # what the phone heard next: the cases by then
                    seen["cases"] = case_rows(db)  # (before the phone's own final callback)
                return super().answer(prompt)

        event.listen(db, "after_cursor_execute", hang_up_now)
        try:
            phone.call(
                PressesOneAndHangsUp([Press("1"), Press("1")]), from_number=VICTIM, call_sid=sid
            )
        finally:
            event.remove(db, "after_cursor_execute", hang_up_now)
    assert codes == [204]
    [case] = seen["cases"]
    assert (case["queue"], case["priority"], case["status"]) == (
        "security",
        "emergency",
        "abandoned",
    )
    assert case["flags"]["hung_up_at"] == "emergency_verify"


@pytest.mark.parametrize("locked", [False, True], ids=["free", "another-writer"])
def test_on_sqlite_a_hang_up_stored_while_the_step_is_worked_out_gets_a_case(
    served: Served,
    db: Engine,
    locked: bool,
) -> None:
    """As above, on SQLite, where the step runs on the event loop: the final status is
    stored by another thread (a callback sent there by a lock) between the step's reading
    the call and storing it. The step sees it as it stores, and opens the case after, even
    if another process holds the database for a moment then: the step is stored, so that
    write waits for the lock rather than giving up."""
    if db.dialect.name != "sqlite":
        pytest.skip("on PostgreSQL, the test above")
    import sqlite3

    sid, armed = "CA" + "7" * 32, threading.Event()
    phase, seen, blockers = [0], {}, []

    def meanwhile(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sql = statement.lstrip().upper()
        if armed.is_set() and sql.startswith("SELECT CALLS.CALL_SID"):
            armed.clear()  # the step has read the call: the hang-up is stored now
            hotline = client.app.state.hotline  # type: ignore[attr-defined]
            hang_up = threading.Thread(
                target=lambda: hotline.status(sid, "completed", duration=3, sequence=9)
            )
            hang_up.start()
            hang_up.join(30)
            phase[0] = 1
        elif phase[0] == 1 and sql.startswith("UPDATE CALLS SET STEP"):
            phase[0] = 2  # the step's update: it commits, then the case is worked out
        elif phase[0] == 2 and "FROM CASES" in sql:
            phase[0] = 3  # reading for the case (a free ticket): the lock is taken now
            if locked:
                other = sqlite3.connect(db.url.database or "", check_same_thread=False)
                other.isolation_level = None
                other.execute("BEGIN IMMEDIATE")
                blockers.append(other)
                threading.Timer(1.0, other.rollback).start()  # held 1 s: > 20 ms, < 5 s

    class PressesOneAndHangsUp(ScriptedParty):
        def answer(self, prompt: Prompt) -> Any:
            if len(self.answers) == 1:  # the main menu: "1" and gone
                armed.set()
            elif not self.answers:  # the cases by then, before the phone's own callback
                seen["cases"] = case_rows(db)
            return super().answer(prompt)

    event.listen(db, "after_cursor_execute", meanwhile)
    try:
        with served() as (client, phone):
            phone.call(
                PressesOneAndHangsUp([Press("1"), Press("1")]), from_number=VICTIM, call_sid=sid
            )
    finally:
        event.remove(db, "after_cursor_execute", meanwhile)
        for other in blockers:
            other.close()
    assert phase[0] == 3 and len(blockers) == int(locked)
    [case] = seen["cases"]
    assert (case["queue"], case["priority"], case["status"]) == (
        "security",
        "emergency",
        "abandoned",
    )


def test_a_repeated_final_status_opens_the_case_once(phone: Phone, db: Engine) -> None:
    record = phone.call(ScriptedParty([Press("1"), Press("1")]))
    params = {
        k: v for k, v in record.requests[0][1].items() if k in ("AccountSid", "CallSid", "From")
    }
    for sequence in ("5", "6"):
        answer = phone.signed_post(
            PUBLIC_URL + "/twilio/status",
            {**params, "CallStatus": "completed", "SequenceNumber": sequence},
        )
        assert answer.status_code == 204
    assert len(case_rows(db)) == 1


# -- a connected case and its caller's call ------------------------------------------------


def dial_action(documents: list[str], nth: int) -> str:
    """The action of the `nth` <Dial> the caller was sent, as Twilio would post to it."""
    dials = [etree.fromstring(d.encode()).find("Dial") for d in documents if "<Dial" in d]
    action = dials[nth].get("action") if dials[nth] is not None else None
    assert action
    return str(action)


def report_dial(phone: Phone, documents: list[str], call_sid: str, status: str) -> Any:
    """Twilio's report of the first <Dial> the caller was sent, posted now (late, say)."""
    return phone.signed_post(
        dial_action(documents, 0),
        {"CallSid": call_sid, "DialCallStatus": status, "AccountSid": "AC" + "0" * 32},
    )


class QuietOnHold(Caller):
    """Quiet through the hold loop's call-back offer; the keys are for the menus."""

    def answer(self, prompt: Prompt) -> Answer:
        return Silent() if prompt.in_queue else super().answer(prompt)


def test_a_victim_not_done_when_the_agent_hangs_up_presses_0_and_is_back_with_security(
    client: TestClient, db: Engine, check_twiml: Callable[[str], None]
) -> None:
    """Cut off by the agent, the victim is not asked to call again: 0 at the survey puts them
    back in the security line, at emergency priority, with a case following the last up."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
    taken: list[Any] = []

    def holds(poll: int) -> bool:
        if not taken:  # alice takes the first case; nobody the second, which waits
            taken.append(api(client, alice, "POST", "/api/agents/next")["case"])
        return poll < 3

    record = phone.call(QuietOnHold([*HIJACK, Press("0")], holds))
    assert record.dialed == AGENT_PHONE
    said = record.transcript
    assert said.index("If we have not finished helping you, press 0") < said.index(
        "We are connecting you back to the same team."
    )
    first, again = case_rows(db)
    assert (again["queue"], again["priority"]) == ("security", "emergency")
    assert again["parent_ticket"] == first["ticket"] and again["ticket"] != first["ticket"]
    with db.connect() as conn:
        events = [e for e in call_log(conn, call_sid=record.call_sid) if e["kind"] == "survey"]
    assert [e["outcome"] for e in events] == ["back"]


def test_a_victim_back_in_line_from_the_survey_keeps_their_place(
    client: TestClient, db: Engine, clock: FakeClock, check_twiml: Callable[[str], None]
) -> None:
    """Victim A is put through to alice; a minute after A, victim B joined the line. alice's
    leg drops before she has helped A: A presses 0 at the survey and is back in line, ahead
    of B, who came after (not behind every victim who called meanwhile). The next agent
    gets A."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    ben = make_user(db, "ben", "agent", "+15005557777")
    phone = Phone(
        client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml, clock=clock
    )
    taken: list[Any] = []

    def holds(poll: int) -> bool:
        if not taken:
            clock.advance(seconds=60)
            b = Caller([Press("1"), Press("1"), Press("*")], lambda poll: False)
            phone.call(b, from_number="+15005550102")  # B hangs up: kept for a call back
            clock.advance(seconds=60)
            taken.append(api(client, alice, "POST", "/api/agents/next")["case"])
        return poll < 3

    record = phone.call(QuietOnHold([*HIJACK, Press("0")], holds), from_number="+15005550006")
    assert record.dialed == AGENT_PHONE and taken[0]["caller"].endswith("0006")
    first, b_case, again = case_rows(db)
    assert again["parent_ticket"] == first["ticket"] and again["sort_at"] == first["sort_at"]
    assert again["sort_at"] < b_case["sort_at"]
    nxt = api(client, ben, "POST", "/api/agents/next")["case"]
    assert nxt["ticket"] == again["ticket"]


def test_a_supervisor_sends_a_victim_whose_agent_dropped_back_to_their_place(
    client: TestClient, db: Engine, clock: FakeClock, check_twiml: Callable[[str], None]
) -> None:
    """alice's leg drops while she helps victim A, A hangs up at the survey, and alice's phone
    is dead: her case would wait for a supervisor's Close. The supervisor sends it back
    instead: a call back, in A's own place ahead of victim B who came after, still counted
    answered (not abandoned), and the next agent calls A back."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    ben = make_user(db, "ben", "agent", "+15005557777")
    sam = make_user(db, "sam", "supervisor")
    phone = Phone(
        client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml, clock=clock
    )
    taken: list[Any] = []

    def holds(poll: int) -> bool:
        if not taken:
            clock.advance(seconds=60)
            b = Caller([Press("1"), Press("1"), Press("*")], lambda poll: False)
            phone.call(b, from_number="+15005550102")  # B hangs up: kept for a call back
            clock.advance(seconds=60)
            taken.append(api(client, alice, "POST", "/api/agents/next")["case"])
        return poll < 3

    def talks(number: str) -> None:
        clock.advance(minutes=3)

    record = phone.call(QuietTalks(list(HIJACK), holds, talks), from_number="+15005550006")
    assert record.dialed == AGENT_PHONE
    a_case, b_case = case_rows(db)
    assert (a_case["status"], a_case["talk_ended_at"] is not None) == ("connected", True)
    security = api(client, sam, "GET", "/api/stats")["by_queue"]["security"]
    assert (security["answered"], security["abandoned"]) == (1, 1)  # A, and B who hung up
    clock.advance(minutes=5)
    held = api(client, sam, "GET", "/api/cases/held")
    assert [(h["ticket"], h["status"]) for h in held] == [(a_case["ticket"], "connected")]
    # alice talked to A: hers to resolve with what was done, or to send on with a note.
    mine = client.post(f"/api/cases/{a_case['id']}/requeue", headers=bearer(alice))
    assert mine.status_code == 409 and "transfer it with a note" in mine.json()["detail"]
    api(client, sam, "POST", f"/api/cases/{a_case['id']}/requeue", json={"reason": "phone died"})
    a_now, _ = case_rows(db)
    assert (a_now["status"], a_now["agent_id"], a_now["queued"]) == ("abandoned", None, 1)
    assert a_now["sort_at"] == a_case["sort_at"] < b_case["sort_at"]
    security = api(client, sam, "GET", "/api/stats")["by_queue"]["security"]
    assert (security["answered"], security["abandoned"]) == (1, 1)
    assert security["average_handle_time_seconds"] == 180  # her talk, not the case's 5 min
    with db.connect() as conn:
        [why] = conn.execute(
            select(audit_log.c.reason).where(
                audit_log.c.action == "requeue", audit_log.c.case_id == a_case["id"]
            )
        ).scalars()
    assert why == "after the call, for a call back: phone died"
    nxt = api(client, ben, "POST", "/api/agents/next")["case"]
    assert nxt["ticket"] == a_case["ticket"] and nxt["status"] == "offered"


def test_a_case_whose_caller_is_still_with_its_agent_or_back_in_line_is_not_sent_back(
    client: TestClient, db: Engine, check_twiml: Callable[[str], None]
) -> None:
    """Sent back while its agent still talks, the caller would be called twice; once the
    survey's 0 put the caller back in line, they are there already: both refused."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    sam = make_user(db, "sam", "supervisor")
    phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
    taken: list[Any] = []
    refused: list[httpx.Response] = []

    def holds(poll: int) -> bool:
        if not taken:
            taken.append(api(client, alice, "POST", "/api/agents/next")["case"])
        return poll < 3

    def talks(number: str) -> None:
        path = f"/api/cases/{taken[0]['id']}/requeue"
        refused.append(client.post(path, headers=bearer(sam)))

    phone.call(QuietTalks([*HIJACK, Press("0")], holds, talks))
    [mid_call] = refused
    assert mid_call.status_code == 409 and "on the call" in mid_call.json()["detail"]
    first, again = case_rows(db)
    after = client.post(f"/api/cases/{first['id']}/requeue", headers=bearer(sam))
    assert after.status_code == 409
    assert f"back in line already, as case {again['id']}" in after.json()["detail"]
    assert case_rows(db)[0]["status"] == "connected"


def test_a_withheld_callers_unproved_uid_is_not_frozen_to_close_their_case(
    phone: Phone, client: TestClient, db: Engine
) -> None:
    """A hidden caller keyed a UID and hung up at the PIN: nobody to call, nothing proved.
    UIDs are public (referral links, P2P pages): one anonymous call must not make the agent
    freeze a stranger's account to close the case. Resolved with what they did, the
    account is as it was."""
    agent = make_user(db, "alice", "agent", AGENT_PHONE)
    phone.call(ScriptedParty([Press("1"), Press("1"), Press(UID)]), from_number="anonymous")
    claimed = api(client, agent, "POST", "/api/agents/next")
    assert claimed["connect"]["mode"] == "no_number"
    case_id = claimed["case"]["id"]
    done = {"notes": "unverified, hidden number, nobody to call: not frozen"}
    api(client, agent, "POST", f"/api/cases/{case_id}/resolve", json=done)
    with db.connect() as conn:
        assert conn.execute(select(accounts.c.frozen).where(accounts.c.uid == UID)).scalar() == 0


def test_a_withheld_victims_failed_freeze_is_made_before_their_case_closes(
    served: Served, db: Engine
) -> None:
    """A hidden caller proved the account, but its freeze failed on the call, and they hung
    up: nobody to call, the agent acts on the account. Resolved with nothing done, the
    hijack case would close with a proved victim's account open: refused until the agent
    froze it."""
    agent = make_user(db, "alice", "agent", AGENT_PHONE)
    with served(actions=FreezeFailsFirst(db)) as (client, phone):
        phone.call(ScriptedParty(list(HIJACK)), from_number="anonymous")
        claimed = api(client, agent, "POST", "/api/agents/next")
        assert claimed["connect"]["mode"] == "no_number"
        assert claimed["case"]["verification"]["result"] == "yes"
        case_id = claimed["case"]["id"]
        done = {"notes": "looked at the account"}
        refused = client.post(f"/api/cases/{case_id}/resolve", headers=bearer(agent), json=done)
        assert refused.status_code == 409 and "was not frozen" in refused.json()["detail"]
        freeze = {"reason": "hijack, hidden"}
        api(client, agent, "POST", f"/api/cases/{case_id}/freeze", json=freeze)
        api(client, agent, "POST", f"/api/cases/{case_id}/resolve", json=done)


class QuietTalks(Talks):
    """Quiet on hold; talks to the agent as `on_talk` says."""

    def answer(self, prompt: Prompt) -> Answer:
        return Silent() if prompt.in_queue else super().answer(prompt)


def test_a_victim_back_in_line_from_the_survey_has_not_waited_their_talk(
    client: TestClient, db: Engine, clock: FakeClock, check_twiml: Callable[[str], None]
) -> None:
    """The victim waited 10 s, talked 15 minutes with alice, her leg dropped, and 0 at the
    survey put them back in their place. Their talk was no wait: the on-call are not paged
    for a 15-minute wait, and the emergency gauge does not say one."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    phone = Phone(
        client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml, clock=clock
    )
    taken: list[Any] = []

    def holds(poll: int) -> bool:
        if not taken:
            clock.advance(seconds=10)
            taken.append(api(client, alice, "POST", "/api/agents/next")["case"])
        return poll < 3

    def talks(number: str) -> None:
        clock.advance(minutes=15)

    skips = [Press("1"), Press("1"), Press("*"), Press("0")]
    phone.call(QuietTalks(skips, holds, talks), from_number="+15005550006")
    first, again = case_rows(db)
    assert again["parent_ticket"] == first["ticket"] and again["sort_at"] == first["sort_at"]
    with db.connect() as conn:
        assert oncall.overdue(conn, now=clock(), after=timedelta(seconds=60)) is None
        late = oncall.overdue(conn, now=clock() + timedelta(seconds=61), after=timedelta(0))
    assert late is not None and late.waited < timedelta(seconds=70)
    gauge = 'ivr_longest_wait_seconds{priority="emergency"} '
    [line] = [x for x in client.get("/metrics").text.splitlines() if x.startswith(gauge)]
    assert float(line.removeprefix(gauge)) < 60


def keeping(check_twiml: Callable[[str], None], documents: list[str]) -> Callable[[str], None]:
    def keep(body: str) -> None:
        check_twiml(body)
        documents.append(body)

    return keep


def test_after_the_agent_hangs_up_the_caller_rates_the_help_once_and_supervisors_read_it(
    client: TestClient, db: Engine, check_twiml: Callable[[str], None]
) -> None:
    """The victim talks to alice; when alice hangs up, one question, one key: the answer is
    the case's, in the call log and in the supervisors' figures for the security queue."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    sam = make_user(db, "sam", "supervisor")
    phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
    taken: list[Any] = []

    def holds(poll: int) -> bool:
        if poll == 1:
            taken.append(api(client, alice, "POST", "/api/agents/next")["case"])
        return poll < 3

    record = phone.call(QuietOnHold([*HIJACK, Press("4")], holds))
    assert record.dialed == AGENT_PHONE  # put through to alice, whose leg then completed
    assert record.ended_by == "hotline"
    assert any("how satisfied are you" in line for line in record.heard)
    assert record.heard[-1] == "Thank you for telling us. Goodbye."
    case_id = taken[0]["id"]
    with db.connect() as conn:
        events = [e for e in call_log(conn, call_sid=record.call_sid) if e["kind"] == "survey"]
    assert [(e["outcome"], e["detail"]) for e in events] == [("4", {"case": case_id})]
    # The case is still alice's to resolve: the survey changes nothing of it.
    [row] = case_rows(db)
    assert (row["status"], row["agent_id"] is not None) == ("connected", True)
    hour = timedelta(hours=1)
    period = {"since": row["created_at"] - hour, "until": row["created_at"] + hour}
    stats = api(
        client, sam, "GET", "/api/stats", params={k: v.isoformat() for k, v in period.items()}
    )
    figures = stats["by_queue"]["security"]
    assert (figures["surveys_asked"], figures["surveys_answered"]) == (1, 1)
    assert (figures["satisfaction_average"], figures["satisfied_rate"]) == (4.0, 1.0)


def test_a_late_report_of_one_agents_phone_leaves_the_next_agent_their_case(
    client: TestClient, db: Engine, check_twiml: Callable[[str], None]
) -> None:
    """alice's phone does not answer, the caller goes back to their place, bob takes them and
    talks to them. A late (or repeated) report of alice's unanswered Dial changes nothing:
    bob keeps the case, and nobody else is offered a caller who is talking to bob."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    bob = make_user(db, "bob", "agent", "+15005558888")
    documents: list[str] = []
    phone = Phone(
        client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=keeping(check_twiml, documents)
    )
    outcomes = iter(["no-answer", "completed"])

    class Party(Caller):
        def dial_outcome(self, number: str) -> str:
            return next(outcomes)

    claims: list[Any] = []

    def holds(poll: int) -> bool:
        if poll == 1:  # first time on hold alice takes the case; back on hold, bob does
            claims.append(api(client, bob if claims else alice, "POST", "/api/agents/next"))
        return poll < 2

    record = phone.call(Party([Press("1"), Press("0")], holds))
    assert record.dialed == "+15005558888"
    [row] = case_rows(db)
    assert (row["status"], row["queued"], row["offer"]) == ("connected", 0, "answered")
    bob_has = row["agent_id"]
    late = report_dial(phone, documents, row["call_sid"], "no-answer")
    assert late.status_code == 200
    check_twiml(late.text)
    [row] = case_rows(db)
    assert (row["status"], row["queued"], row["agent_id"]) == ("connected", 0, bob_has)
    carol = make_user(db, "carol", "agent", "+15005557777")
    assert api(client, carol, "POST", "/api/agents/next")["case"] is None


def gone_while_it_rings(
    client: TestClient,
    db: Engine,
    check_twiml: Callable[[str], None],
    answers: list[Press],
    number: str,
) -> tuple[str, Phone, list[str], CallRecord]:
    """alice takes the caller at their first hold round; the caller hangs up while her phone
    rings: the phone sends the call's final status, and no Dial report (a test posts that,
    late). Her token, the phone, the TwiML documents the caller got, the call."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    documents: list[str] = []
    phone = Phone(
        client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=keeping(check_twiml, documents)
    )

    class HangsUpWhileItRings(Caller):
        def dial_outcome(self, number: str) -> str:
            raise HangsUp

    def holds(poll: int) -> bool:
        api(client, alice, "POST", "/api/agents/next")
        return True

    record = phone.call(HangsUpWhileItRings(list(answers), holds), from_number=number)
    return alice, phone, documents, record


def test_a_caller_who_hangs_up_while_the_agents_phone_rings_is_kept_for_a_call_back(
    client: TestClient, db: Engine, check_twiml: Callable[[str], None]
) -> None:
    """The caller hangs up while the agent's phone rings, and the call's final status is
    handled before the Dial's report (two instances, two webhooks at once): nobody has talked
    to them, so the case is a call back, in its place in line, whatever the report says."""
    alice, phone, documents, record = gone_while_it_rings(
        client, db, check_twiml, [Press("1"), Press("0")], VICTIM
    )
    assert (record.dialed, record.ended_by) == (AGENT_PHONE, "caller")
    [row] = case_rows(db)
    assert (row["status"], row["queued"], row["agent_id"]) == ("abandoned", 1, None)
    done = report_dial(phone, documents, row["call_sid"], "no-answer")
    assert done.status_code == 200
    [row] = case_rows(db)
    assert (row["status"], row["queued"], row["agent_id"]) == ("abandoned", 1, None)
    # Taken again, it is a call back: the agent calls them.
    assert api(client, alice, "POST", "/api/agents/next")["connect"]["mode"] == "call_back"


@pytest.fixture
def unscreened(
    database_url: str, hotline_tree: CompiledTree, db: Engine, clock: FakeClock
) -> Iterator[TestClient]:
    """The hotline with IVR_AGENT_SCREENING off: any answer of the agent's phone counts."""
    settings = make_settings(IVR_DATABASE_URL=database_url, IVR_AGENT_SCREENING=False)
    with TestClient(
        create_app(settings, tree=hotline_tree, db=db, clock=clock), base_url=HTTPS_CLIENT
    ) as client:
        yield client


def test_an_answered_report_after_the_hang_up_gives_the_agent_their_case_back(
    unscreened: TestClient, db: Engine, check_twiml: Callable[[str], None]
) -> None:
    """Unscreened, the same race the other way round: alice answered and they talked, but
    the call's final status was handled before the Dial's report. The hang-up put the case
    back in line for a call back; the report that alice answered gives it back to her to
    resolve, while nobody else has taken it. (Screened, she took the call with a key before
    they talked, and the hang-up leaves the case with her: the next test.)"""
    client = unscreened
    alice, phone, documents, _ = gone_while_it_rings(client, db, check_twiml, HIJACK, VICTIM)
    [row] = case_rows(db)
    assert (row["status"], row["queued"]) == ("abandoned", 1)
    answered = report_dial(phone, documents, row["call_sid"], "completed")
    assert answered.status_code == 200
    check_twiml(answered.text)
    [row] = case_rows(db)
    assert (row["status"], row["queued"], row["offer"], row["ended_at"]) == (
        "connected",
        0,
        "answered",
        None,
    )
    [held] = api(client, alice, "GET", "/api/agents/cases")
    assert held["id"] == row["id"]
    # An emergency is resolved with a word on what was done.
    resolve = f"/api/cases/{row['id']}/resolve"
    bare = client.post(resolve, json={"notes": " "}, headers=bearer(alice))
    assert bare.status_code == 409 and "what was done" in bare.json()["detail"]
    notes = {"notes": "froze the account; told to reset 2FA"}
    assert api(client, alice, "POST", f"/api/cases/{row['id']}/resolve", json=notes)
    # Had another agent taken the call back first, the report would change nothing.


def test_a_victim_put_through_to_an_agents_voicemail_goes_back_to_their_place(
    client: TestClient, db: Engine, check_twiml: Callable[[str], None]
) -> None:
    """alice's phone is answered by her voicemail. Nobody takes the call with a key, so the
    victim is never put through to the machine: back on hold, at the head of the line, bob
    takes them, presses 1, and they talk."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    bob = make_user(db, "bob", "agent", "+15005558888")
    documents: list[str] = []
    phone = Phone(
        client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=keeping(check_twiml, documents)
    )
    outcomes = iter([VOICEMAIL, "completed"])
    seen: list[Any] = []

    class Party(Caller):
        def dial_outcome(self, number: str) -> str:
            return next(outcomes)

        def answer(self, prompt: Prompt) -> Answer:
            return Silent() if prompt.in_queue else super().answer(prompt)

    rounds: list[int] = []

    def holds(poll: int) -> bool:
        rounds.append(poll)
        if len(rounds) == 1:
            api(client, alice, "POST", "/api/agents/next")
        elif not seen:  # back on hold after the voicemail
            [row] = case_rows(db)
            seen.append((row["status"], row["queued"], row["agent_id"], row["offer"]))
            seen.append(api(client, alice, "GET", "/api/agents/cases"))
            seen.append(api(client, bob, "POST", "/api/agents/next")["case"]["id"])
        return len(rounds) < 6

    record = phone.call(Party(list(HIJACK), holds), from_number=VICTIM)
    # Between the two: the case was back in line, nobody's, and alice holds nothing.
    assert seen[:2] == [("waiting", 1, None, None), []]
    assert record.dialed == "+15005558888" and record.agent_took is True
    # Both phones heard the case; only bob's key bridged a call (an empty document).
    screens = [d for d in documents if "Press 1 to take the call" in d]
    assert len(screens) == 2
    bridged = [
        d
        for d in documents
        if etree.fromstring(d.encode()).tag == "Response" and len(etree.fromstring(d.encode())) == 0
    ]
    assert len(bridged) == 1
    [row] = case_rows(db)
    assert (row["id"], row["status"], row["offer"]) == (seen[2], "connected", "answered")
    assert any("how satisfied are you" in line for line in record.heard)


@pytest.mark.parametrize("rest_api", [False, True], ids=["hold-loop", "rest-redirect"])
def test_a_victim_who_hid_their_number_is_put_through_with_the_hotlines_number_shown(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
    twilio_http: RecordingTwilio,
    rest_api: bool,
) -> None:
    """A carrier may refuse a call that shows "anonymous" (Twilio error 13214: the dial
    failed), and the agent would be set away for a call that never rang, the victim put back
    in line, again and again. Their call to the agent shows our number, whether their next
    hold round puts them through or Twilio's REST API moves their call; a caller with a
    number of their own shows it, as Twilio does by itself."""
    documents: list[str] = []
    checked = keeping(check_twiml, documents)
    app = (
        app_with_twilio(database_url, hotline_tree, db, clock, twilio_http)
        if rest_api
        else create_app(
            make_settings(IVR_DATABASE_URL=database_url), tree=hotline_tree, db=db, clock=clock
        )
    )
    with on_the_line(app, checked, twilio_http if rest_api else None) as (client, phone):
        _hid_their_number(client, phone, db, documents)


def _hid_their_number(client: TestClient, phone: Phone, db: Engine, documents: list[str]) -> None:
    alice = make_user(db, "alice", "agent", AGENT_PHONE)

    def holds(poll: int) -> bool:
        api(client, alice, "POST", "/api/agents/next")
        return poll < 3

    def shown() -> str | None:
        dial = etree.fromstring(next(d for d in documents if "<Dial" in d).encode()).find("Dial")
        assert dial is not None
        return dial.get("callerId")

    record = phone.call(Caller(list(HIJACK), holds), from_number="anonymous")
    assert record.agent_took is not False and record.dialed == AGENT_PHONE
    assert shown() == CALLER_ID  # IVR_CALLER_ID (else the number they called)
    [row] = case_rows(db)
    assert (row["status"], row["offer"]) == ("connected", "answered")
    assert api(client, alice, "GET", "/api/agents/presence")["away_reason"] is None  # no miss
    documents.clear()
    api(client, alice, "POST", f"/api/cases/{row['id']}/resolve", json={"notes": "frozen"})
    phone.call(Caller(list(HIJACK), holds), from_number=VICTIM)
    assert shown() is None


def test_a_screened_agent_takes_the_call_before_the_caller_is_put_through(
    client: TestClient, db: Engine, check_twiml: Callable[[str], None]
) -> None:
    """Screened: the caller hears ringing (answerOnBridge) while alice's phone says the case
    and asks for 1. Taken, the case is hers at once: the caller's hang-up, reported before
    the Dial's end, leaves it with her to resolve, not back in line."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    documents: list[str] = []
    phone = Phone(
        client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=keeping(check_twiml, documents)
    )

    def holds(poll: int) -> bool:
        api(client, alice, "POST", "/api/agents/next")
        return poll < 3

    record = phone.call(Caller(list(HIJACK), holds), from_number=VICTIM)
    assert record.agent_took is True
    dial = etree.fromstring(next(d for d in documents if "<Dial" in d).encode()).find("Dial")
    assert dial is not None and dial.get("answerOnBridge") == "true"
    number = dial.find("Number")
    assert number is not None and "/twilio/agent-accept?case=" in (number.get("url") or "")
    [row] = case_rows(db)
    assert (row["status"], row["offer"], row["queued"]) == ("connected", "answered", 0)
    [held] = api(client, alice, "GET", "/api/agents/cases")
    assert held["id"] == row["id"]


def talk_then(
    client: TestClient,
    phone: Phone,
    agent: str,
    before_hang_up: Callable[[int], None],
) -> tuple[CallRecord, int]:
    """A hijack victim whom `agent` takes while they hold and talks to; `before_hang_up(case
    id)` runs once while they still talk (before Twilio reports the end of the agent's leg).
    The call as the victim heard it, and the case."""

    class Party(Caller):
        def dial_outcome(self, number: str) -> str:
            return "completed"

    taken: list[int] = []

    def holds(poll: int) -> bool:
        if not taken:
            taken.append(api(client, agent, "POST", "/api/agents/next")["case"]["id"])
        return poll < 3

    original = phone.signed_post
    done: list[bool] = []

    def hanging_up(url: str, params: dict[str, str]) -> Any:
        if "/twilio/connect-done" in url and not done:
            done.append(True)
            before_hang_up(taken[0])
        return original(url, params)

    phone.signed_post = hanging_up  # type: ignore[method-assign]
    record = phone.call(Party(list(HIJACK), holds), from_number=VICTIM)
    assert record.agent_took is True
    return record, taken[0]


def test_an_agent_resolves_her_case_once_she_has_hung_up(
    client: TestClient, db: Engine, check_twiml: Callable[[str], None]
) -> None:
    """alice took the call and tries to resolve the case before she hangs up: refused, for
    she still talks (her handle time would end, and the next caller come to her phone, with
    this one on the line). Her desk says so. Hung up, she resolves it, and her handle time
    runs to then: the talk and the work after it."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
    notes = {"notes": "froze the account; 2FA reset explained"}
    during: list[Any] = []

    def tries(case_id: int) -> None:
        during.append(api(client, alice, "GET", "/api/agents/cases"))
        path = f"/api/cases/{case_id}/resolve"
        during.append(client.post(path, headers=bearer(alice), json=notes))

    record, case_id = talk_then(client, phone, alice, tries)
    [[mine], refused] = during
    assert mine["status"] == "connected" and mine["on_call"] is True
    assert refused.status_code == 409 and "on the call" in refused.json()["detail"]
    assert any("how satisfied are you" in line for line in record.heard)
    [held] = api(client, alice, "GET", "/api/agents/cases")
    assert (held["id"], held["status"], held["on_call"]) == (case_id, "connected", False)
    done = api(client, alice, "POST", f"/api/cases/{case_id}/resolve", json=notes)
    assert done["status"] == "resolved"
    [row] = case_rows(db)  # no new case: the caller was not put back on hold
    assert row["connected_at"] <= row["talk_ended_at"] <= row["ended_at"]


def test_a_case_a_supervisor_resolves_while_its_agent_still_talks_lets_the_caller_go(
    client: TestClient, db: Engine, check_twiml: Callable[[str], None]
) -> None:
    """A supervisor closes alice's case while she still talks (she forgot it, her desk is
    gone): the Dial's report still knows she talked, so the caller is asked the survey and
    let go, not put back on hold with a new case."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    sam = make_user(db, "sam", "supervisor")
    phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)

    def closes(case_id: int) -> None:
        notes = {"notes": "alice froze the account"}
        api(client, sam, "POST", f"/api/cases/{case_id}/resolve", json=notes)

    record, _ = talk_then(client, phone, alice, closes)
    assert any("how satisfied are you" in line for line in record.heard)
    [row] = case_rows(db)  # no new case: the caller was not put back on hold
    assert (row["status"], row["offer"]) == ("resolved", "answered")


def test_the_agents_screen_refuses_a_case_that_is_not_theirs_to_take(
    client: TestClient, db: Engine, check_twiml: Callable[[str], None]
) -> None:
    """A screen request for a case another agent has, or no longer connected, or any key but
    1, ends the agent's leg: nobody is put through to a phone that did not take the call."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    bob_id = 999
    documents: list[str] = []
    phone = Phone(
        client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=keeping(check_twiml, documents)
    )

    class Party(Caller):
        def dial_outcome(self, number: str) -> str:
            raise HangsUp  # before the agent's phone answers: the screen is posted by hand

    phone.call(
        Party(
            list(HIJACK),
            lambda poll: bool(api(client, alice, "POST", "/api/agents/next")) and poll < 3,
        ),
        from_number=VICTIM,
    )
    url = (
        etree.fromstring(next(d for d in documents if "<Dial" in d).encode())
        .find("Dial/Number")
        .get("url")
    )  # type: ignore[union-attr]
    leg = {"CallSid": "CA" + "8" * 32, "AccountSid": "AC" + "0" * 32}
    for wrong in (url.replace("agent=", f"agent={bob_id}&x="), url):
        answer = phone.signed_post(wrong, {**leg, "Digits": "1"})
        check_twiml(answer.text)
        assert "<Hangup" in answer.text  # not bob's; and the caller hung up: not connected
    [row] = case_rows(db)
    assert row["offer"] != "answered"


def test_a_case_closed_while_its_caller_rings_the_agent_leaves_them_a_way_to_an_agent(
    client: TestClient, db: Engine, check_twiml: Callable[[str], None]
) -> None:
    """The caller reaches the TwiML dialling alice; alice went home, so a supervisor
    resolves her case. Her phone does not answer. The caller is not dialled to her again,
    nor held in a queue with no case in line: back on hold, they have a new case, which
    names the closed one, and the next agent takes it."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    bob = make_user(db, "bob", "agent", "+15005558888")
    sam = make_user(db, "sam", "supervisor")
    phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
    dials: list[str] = []
    taken: list[Any] = []

    class Party(Caller):
        def dial_outcome(self, number: str) -> str:
            dials.append(number)
            if len(dials) == 1:
                [row] = case_rows(db)
                assert row["status"] == "connected"
                api(client, sam, "POST", f"/api/cases/{row['id']}/resolve", json={"notes": "gone"})
                return "no-answer"
            return "completed"

    def holds(poll: int) -> bool:
        if not dials:
            api(client, alice, "POST", "/api/agents/next")
        elif not taken:
            taken.append(api(client, bob, "POST", "/api/agents/next"))
        return poll < 4

    phone.call(Party([Press("1"), Press("0")], holds))
    assert dials == [AGENT_PHONE, "+15005558888"]
    closed, new = case_rows(db)
    assert (closed["status"], new["parent_ticket"]) == ("resolved", closed["ticket"])
    assert taken[0]["case"]["id"] == new["id"]
    assert (new["status"], new["offer"]) == ("connected", "answered")


def test_a_victim_who_hangs_up_as_they_are_put_through_is_called_back(
    client: TestClient, db: Engine, check_twiml: Callable[[str], None]
) -> None:
    """A hijack victim is put through ('connecting you now ...') and hangs up before the
    agent's phone is dialled: no Dial report ever comes. Nobody has talked to them, so their
    emergency is back in line for a call back, not left with an agent whose phone never
    rang."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)

    class Party(Caller):
        def hear(self, text: str) -> None:
            super().hear(text)
            if "Connecting you now" in text:
                raise HangsUp

    def holds(poll: int) -> bool:
        api(client, alice, "POST", "/api/agents/next")
        return poll < 3

    record = phone.call(Party(list(HIJACK), holds), from_number=VICTIM)
    assert (record.dialed, record.ended_by) == (None, "caller")
    [row] = case_rows(db)
    assert (row["priority"], row["status"], row["queued"], row["agent_id"]) == (
        "emergency",
        "abandoned",
        1,
        None,
    )
    again = api(client, alice, "POST", "/api/agents/next")
    assert again["case"]["id"] == row["id"] and again["connect"]["mode"] == "call_back"


# -- the wait a caller is told --------------------------------------------------------------

DEPOSITS = [Press("1"), Press("3"), Press("1"), Press("1")]  # English, deposit not credited


def test_the_wait_a_caller_hears_is_shared_among_the_agents_at_work(
    phone: Phone, client: TestClient, app: FastAPI, db: Engine, settings: Settings
) -> None:
    """Four callers hung up waiting: four call backs in line ahead of the next caller. With
    nobody at work no minutes are said (nothing would keep them), and the call-back offer
    comes first. Two agents take a case each while the caller holds: the next round says
    the 3 cases left shared between two agents, 3 x IVR_AVG_HANDLE_SECONDS (240 s) / 2."""
    assert (settings.avg_handle_seconds, settings.max_wait_seconds) == (240, 900)
    for n in range(4):
        gone = phone.call(Caller(list(DEPOSITS), lambda poll: False), from_number=f"+1500555020{n}")
        assert gone.queue == "payments"
    hotline = app.state.hotline
    assert hotline.refresh_staffing().agents == 0
    agents = [make_user(db, name, "agent", f"+1500555990{i}") for i, name in enumerate("bc")]

    def holds(poll: int) -> bool:
        if poll == 1:
            for token in agents:
                assert (
                    api(client, token, "POST", "/api/agents/next")["connect"]["mode"] == "call_back"
                )
            assert hotline.refresh_staffing().agents == 2
        return poll < 2

    record = phone.call(Caller(list(DEPOSITS), holds), from_number="+15005550299")
    offer = "To have us call you back instead of waiting, press 1. You keep your place in line."
    first = (
        "You are number 5 in line. No agent is free yet, so we cannot say how long the wait "
        "will be."
    )
    second = "You are number 3 in line. The estimated wait is about 6 minutes."
    assert first in record.heard and second in record.heard
    rounds = record.heard.index(first), record.heard.index(second)
    # Round one: the way out before the long wait. Round two: the wait, then the offer.
    assert record.heard[rounds[0] - 1] == offer
    assert record.heard[rounds[1] - 1] != offer and offer in record.heard[rounds[1] :]


def test_a_victim_holding_with_nobody_at_work_is_promised_no_minutes_nor_sent_away_first(
    phone: Phone, app: FastAPI
) -> None:
    """Nobody at work (the on-call are paged for the emergency lane): a hijack victim hears
    their place in line and no estimate, and the call-back offer after it, not before: on the
    line is how they are helped soonest, and they have pressed 1 twice already. Once agents
    are at work, a wait past IVR_MAX_WAIT does not put the offer first in their lane either."""
    hotline = app.state.hotline
    assert hotline.refresh_staffing().agents == 0
    offer = "To have us call you back instead of waiting, press 1. You keep your place in line."
    record = phone.call(ScriptedParty(list(HIJACK), hold_polls=2), from_number=VICTIM)
    assert record.queue == "security"
    place = "You are number 1 in line. No agent is free yet, so we cannot say how long the wait "
    rounds = [i for i, line in enumerate(record.heard) if line.startswith(place)]
    assert len(rounds) == 2 and not any("estimated wait" in line for line in record.heard)
    # Each round: the place, a tip, then the offer (never before the place).
    assert all(record.heard[i + 2] == offer and record.heard[i - 1] != offer for i in rounds[:1])
    assert all(record.heard[i + 2] == offer for i in rounds)
    hotline.staffing = dataclasses.replace(hotline.staffing, agents=1, handle_seconds=3600)
    record = phone.call(ScriptedParty(list(HIJACK), hold_polls=1), from_number=VICTIM)
    [at] = [i for i, line in enumerate(record.heard) if "estimated wait is about 60" in line]
    assert record.heard[at - 1] != offer and record.heard[at + 2] == offer


def test_a_supervisor_moves_a_holding_victim_to_the_emergency_lane(
    phone: Phone, client: TestClient, db: Engine
) -> None:
    """A caller who chose deposits turns out (to a supervisor listening in, or told by
    chat) to be a hijack victim: moved to the emergency lane, they hear at the next hold
    round that they are first, and the next agent gets them before the call backs that came
    before them. The audit log says who moved them, from what, and why."""
    for n in range(2):
        gone = phone.call(Caller(list(DEPOSITS), lambda poll: False), from_number=f"+1500555020{n}")
        assert gone.queue == "payments"
    sam = make_user(db, "sam", "supervisor")
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    moved: dict[str, Any] = {}

    def holds(poll: int) -> bool:
        if poll == 1:
            mine = api(client, sam, "GET", "/api/queue")[-1]
            assert (mine["position"], mine["priority"]) == (3, "normal")
            body = {"priority": "emergency", "reason": "caller says funds are leaving now"}
            path = f"/api/cases/{mine['case_id']}/priority"
            moved["case"] = api(client, sam, "POST", path, json=body)
        return poll < 2

    record = phone.call(Caller(list(DEPOSITS), holds), from_number="+15005550299")
    before = "You are number 3 in line."
    after = "You are number 1 in line."
    assert any(before in said for said in record.heard)
    assert any(after in said for said in record.heard)
    assert [i for i, s in enumerate(record.heard) if before in s] < [
        i for i, s in enumerate(record.heard) if after in s
    ]
    case = moved["case"]
    assert case["priority"] == "emergency"
    assert api(client, alice, "POST", "/api/agents/next")["case"]["id"] == case["id"]
    with db.connect() as conn:
        audit = conn.execute(
            select(audit_log.c.actor, audit_log.c.action, audit_log.c.reason).where(
                audit_log.c.case_id == case["id"], not_desk
            )
        ).all()
    assert [tuple(a) for a in audit] == [
        ("supervisor:sam", "priority", "normal to emergency: caller says funds are leaving now")
    ]


def test_only_a_supervisor_moves_only_a_case_in_line(
    phone: Phone, client: TestClient, db: Engine
) -> None:
    """An agent cannot reorder the line; a case an agent has is theirs to send on; a reason
    is asked for; and no case is no case."""
    gone = phone.call(Caller(list(DEPOSITS), lambda poll: False), from_number="+15005550201")
    assert gone.queue == "payments"
    sam = make_user(db, "sam", "supervisor")
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    waiting = api(client, sam, "GET", "/api/queue")[0]["case_id"]
    path = f"/api/cases/{waiting}/priority"
    body = {"priority": "high", "reason": "VIP"}

    def post(token: str, to: str, json: Any) -> httpx.Response:
        return client.post(to, json=json, headers=bearer(token))

    assert post(alice, path, body).status_code == 403
    assert post(sam, path, {"priority": "high", "reason": "\x00\x01\x02 "}).status_code == 422
    assert post(sam, path, {"priority": "urgent", "reason": "VIP"}).status_code == 422
    assert post(sam, "/api/cases/999999/priority", body).status_code == 404
    assert api(client, alice, "POST", "/api/agents/next")["case"]["id"] == waiting
    refused = post(sam, path, body)
    assert refused.status_code == 409 and "its agent can send it on" in refused.text
    assert case_rows(db)[0]["priority"] == "normal"


# -- presence: available agents are offered cases without asking ----------------------------


def presence(client: TestClient, token: str, available: bool | None = None) -> Any:
    if available is None:
        return api(client, token, "GET", "/api/agents/presence")
    return api(client, token, "PUT", "/api/agents/presence", json={"available": available})


def user_id(db: Engine, name: str) -> int:
    with db.connect() as conn:
        found: int = conn.execute(
            text("SELECT id FROM users WHERE name = :n"), {"n": name}
        ).scalar()
    return found


def test_a_victim_reaches_an_available_agent_without_anyone_asking(
    database_url: str, hotline_tree: CompiledTree, db: Engine, check_twiml: Callable[[str], None]
) -> None:
    """alice says she is available and waits. A victim joins the line; the app's own timed
    job offers her the case (nobody asks for `next`), her phone rings with the screen, she
    takes it with 1 and they talk. She stays available for the case after this one."""
    settings = make_settings(IVR_DATABASE_URL=database_url, IVR_DISPATCH_INTERVAL=0.05)
    app = create_app(settings, tree=hotline_tree, db=db, clock=FakeClock())
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        assert presence(client, alice) == {"available": False, "since": None, "away_reason": None}
        here = presence(client, alice, True)
        assert here["available"] is True and here["since"] is not None
        assert presence(client, alice, True) == here  # saying it again keeps her place
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        offered: list[Any] = []

        def holds(poll: int) -> bool:
            if not offered:
                offered.append(
                    eventually(lambda: [r for r in case_rows(db) if r["status"] == "offered"])
                )
            return poll < 5

        record = phone.call(Caller(list(HIJACK), holds), from_number=VICTIM)
        assert presence(client, alice)["available"] is True
        staffing = api(client, alice, "GET", "/api/staffing")
    assert record.dialed == AGENT_PHONE and record.agent_took is True
    [row] = case_rows(db)
    assert (row["status"], row["agent_id"], row["lane"]) == ("connected", user_id(db, "alice"), 0)
    assert (staffing["agents_available"], staffing["agents_at_work"]) == (1, 1)


def test_an_offer_the_agents_phone_does_not_take_sets_them_away_and_goes_to_the_next(
    client: TestClient,
    app: FastAPI,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
) -> None:
    """alice has waited longest, so the victim's case is offered to her first; her voicemail
    picks up. She is set away (the next case must not ring an empty desk), the victim goes
    back to their place, and the next offer goes to bob, who takes it."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    bob = make_user(db, "bob", "agent", "+15005558888")
    presence(client, alice, True)
    clock.advance(minutes=1)
    presence(client, bob, True)
    hotline = app.state.hotline
    phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
    outcomes = iter([VOICEMAIL, "completed"])
    dialed: list[str] = []
    offered: list[int] = []

    class Party(Caller):
        def dial_outcome(self, number: str) -> str:
            dialed.append(number)
            return next(outcomes)

    def holds(poll: int) -> bool:
        offered.append(hotline.dispatch())
        return poll < 6

    record = phone.call(Party(list(HIJACK), holds), from_number=VICTIM)
    assert dialed == [AGENT_PHONE, "+15005558888"] and record.agent_took is True
    assert offered[0] == 1 and sum(offered) == 2  # one case, offered twice
    assert presence(client, alice) == {"available": False, "since": None, "away_reason": "missed"}
    away = {a["name"]: a for a in api(client, bob, "GET", "/api/agents")}["alice"]
    assert (away["state"], away["away_reason"]) == ("away", "missed")
    assert presence(client, bob)["available"] is True
    [row] = case_rows(db)
    assert (row["status"], row["agent_id"]) == ("connected", user_id(db, "bob"))
    assert 'ivr_offers_total{outcome="missed"} 1.0' in client.get("/metrics").text
    sam = make_user(db, "sam", "supervisor")
    clock.advance(seconds=1)  # the figures' period ends now, and the miss was at its end
    by_agent = api(client, sam, "GET", "/api/stats")["by_agent"]
    assert (by_agent["alice"]["missed_offers"], by_agent["bob"]["missed_offers"]) == (1, 0)
    assert by_agent["alice"]["handled"] == 0 and by_agent["bob"]["handled"] == 1
    assert 'ivr_offers_total{outcome="pushed"} 2.0' in client.get("/metrics").text


def test_cases_go_to_available_agents_one_each_the_longest_idle_first(
    rest: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    clock: FakeClock,
) -> None:
    """Three callers hung up waiting: three call backs in line, behind a hijack victim who
    withheld their number. alice, then bob, say they are available, and count as at work;
    carol is away, dave revoked. One case each, in serving order, alice's first: the victim
    first, at her desk to accept (nothing can ring her phone for a withheld number), then
    bob's call back, placed by Twilio; none to an agent who holds one. Supervisors cannot be
    available."""
    client, phone = rest
    phone.call(Caller(list(HIJACK), lambda poll: False), from_number="anonymous")
    for n in range(3):
        phone.call(Caller(list(DEPOSITS), lambda poll: False), from_number=f"+1500555020{n}")
    alice, bob, carol, dave = (
        make_user(db, name, "agent", f"+1500555990{i}")
        for i, name in enumerate(("alice", "bob", "carol", "dave"))
    )
    sam = make_user(db, "sam", "supervisor")
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    for token in (alice, bob, dave):
        presence(client, token, True)
        clock.advance(minutes=1)
    presence(client, carol, False)
    with db.connect() as conn:
        revoke_user(conn, name="dave", now=clock())
    # A shift starting: nobody has taken a case yet, and the estimate shares the line among
    # the two available agents (not carol, away; not dave, revoked).
    assert (hotline.refresh_staffing().agents, hotline.staffing.available) == (2, 2)
    placed = len(twilio_http.requests)
    assert hotline.dispatch() == 2
    offered = {r["agent_id"]: r for r in case_rows(db) if r["status"] == "offered"}
    assert offered.keys() == {user_id(db, "alice"), user_id(db, "bob")}
    mine, bobs = offered[user_id(db, "alice")], offered[user_id(db, "bob")]
    assert (mine["caller"], mine["priority"], bobs["caller"]) == (
        "anonymous",
        "emergency",
        "+15005550200",
    )
    assert mine["accept_by"] == clock() + timedelta(seconds=30) and bobs["accept_by"] is None
    calls = [data["To"] for _, url, data in twilio_http.requests[placed:] if "Calls.json" in url]
    assert calls == ["+15005550200"]
    assert hotline.dispatch() == 0  # both hold a case; carol is away, dave revoked
    board = {a["name"]: a for a in api(client, sam, "GET", "/api/agents")}
    assert {n: (a["state"], a["available"], a["holding"]) for n, a in board.items()} == {
        "alice": ("on_case", True, 1),
        "bob": ("on_case", True, 1),
        "carol": ("away", False, 0),
    }
    assert board["alice"]["idle_seconds"] is None and board["carol"]["idle_seconds"] is None
    # carol, away, asks: the next call back, hers at once (she asked), placed by Twilio.
    asked = api(client, carol, "POST", "/api/agents/next")
    assert (asked["connect"]["mode"], asked["case"]["accept_by"]) == ("calling_back", None)
    answer = client.put("/api/agents/presence", json={"available": True}, headers=bearer(sam))
    assert answer.status_code == 403
    staffing = api(client, sam, "GET", "/api/staffing")
    assert staffing["agents_available"] == 2  # alice and bob; carol away, dave revoked


def test_offering_asks_once_for_agents_of_the_same_languages_when_nothing_is_theirs(
    rest: tuple[TestClient, Phone], db: Engine, clock: FakeClock
) -> None:
    """Every instance offers the line to the available agents every second: a Mandarin
    caller within their language wait is nobody's among three English speakers, and that is
    learnt by one claim, not one per agent (each a write to the cases), as long as none of
    them is kept from a case they sent on."""
    client, phone = rest
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    sam = make_user(db, "sam", "supervisor")
    mei = make_user(db, "mei", "agent", "+15005559800")
    api(client, sam, "PUT", "/api/agents/mei/languages", json={"languages": ["zh-CN"]})
    phone.call(Caller(list(DEPOSITS), lambda poll: False), from_number="+15005550201")
    api(client, mei, "POST", "/api/agents/next")  # mei, on shift, holds a case
    phone.call(Caller([Press("2"), Press("0")], lambda poll: False), from_number="+8613912340000")
    for i, name in enumerate(("alice", "bob", "carl")):
        token = make_user(db, name, "agent", f"+1500555990{i}")
        api(client, sam, "PUT", f"/api/agents/{name}/languages", json={"languages": ["en"]})
        presence(client, token, True)
        clock.advance(seconds=1)
    claims: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE CASES"):
            claims.append(statement)

    event.listen(db, "before_cursor_execute", seen)
    try:
        assert hotline.dispatch() == 0
    finally:
        event.remove(db, "before_cursor_execute", seen)
    assert len(claims) == 2  # one claim: its own languages first, then what else it may take
    clock.advance(seconds=60)  # past the language wait: the longest idle English speaker's
    assert hotline.dispatch() == 1


def test_a_call_back_to_dial_by_hand_is_offered_at_the_desk_and_moves_on_unless_accepted(
    client: TestClient,
    app: FastAPI,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
) -> None:
    """No Twilio credentials: a call back is dialled by hand, and nothing can ring an
    available agent's phone for it. The hijack victim who hung up is offered at alice's desk,
    to accept within IVR_ACCEPT_TIMEOUT (30 s). She is not there: the next round takes it
    back, sets her away and offers it to bob, who freezes the account at once, which
    accepts it. His, then: no timeout takes it back, and alice's late accept is refused."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    bob = make_user(db, "bob", "agent", "+15005558888")
    phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
    phone.call(Caller(list(HIJACK), lambda poll: False), from_number=VICTIM)
    presence(client, alice, True)
    clock.advance(minutes=1)
    presence(client, bob, True)
    hotline = app.state.hotline
    assert hotline.settings.accept_timeout_seconds == 30
    assert hotline.dispatch() == 1
    [offer] = api(client, alice, "GET", "/api/agents/cases")
    assert (offer["priority"], offer["offer"], offer["callback_number"]) == (
        "emergency",
        "call_back",
        None,
    )
    assert offer["caller"] == mask(VICTIM)  # the whole number once she accepts
    [logged] = api(client, alice, "GET", "/api/calls", params={"ticket": offer["ticket"]})["calls"]
    assert logged["caller"] == mask(VICTIM)  # nor read off the call log meanwhile
    assert datetime.fromisoformat(offer["accept_by"]) == clock() + timedelta(seconds=30)
    clock.advance(seconds=30)
    assert hotline.dispatch() == 0  # not yet past its time; bob has nothing to be offered
    clock.advance(seconds=1)
    assert hotline.dispatch() == 1
    assert presence(client, alice) == {
        "available": False,
        "since": None,
        "away_reason": "not_accepted",
    }
    assert api(client, alice, "GET", "/api/agents/cases") == []
    [offer] = api(client, bob, "GET", "/api/agents/cases")
    refused = client.post(f"/api/cases/{offer['id']}/accept", headers=bearer(alice))
    assert refused.status_code == 409 and "not accepted in time" in refused.json()["detail"]
    late = {"reason": "hijack"}
    frozen_late = client.post(f"/api/cases/{offer['id']}/freeze", json=late, headers=bearer(alice))
    assert frozen_late.status_code == 409  # not hers: nothing frozen on her say
    assert client.post("/api/cases/999999/accept", headers=bearer(alice)).status_code == 404
    # bob freezes the victim's account at once: acting on the case accepts it.
    frozen = api(client, bob, "POST", f"/api/cases/{offer['id']}/freeze", json={"reason": "hijack"})
    assert frozen["frozen"] is True
    [accepted] = api(client, bob, "GET", "/api/agents/cases")
    assert (accepted["accept_by"], accepted["offer"]) == (None, "call_back")
    assert accepted["caller"] == VICTIM  # his: the whole number, to dial
    [logged] = api(client, bob, "GET", "/api/calls", params={"ticket": offer["ticket"]})["calls"]
    assert logged["caller"] == VICTIM
    clock.advance(seconds=hotline.settings.offer_timeout_seconds + 60)
    assert hotline.requeue_stale_offers() == 0 and hotline.dispatch() == 0
    [row] = case_rows(db)
    assert (row["status"], row["agent_id"], row["queued"]) == ("offered", user_id(db, "bob"), 0)
    assert 'ivr_offers_total{outcome="missed"} 1.0' in client.get("/metrics").text
    sam = make_user(db, "sam", "supervisor")
    by_agent = api(client, sam, "GET", "/api/stats")["by_agent"]
    assert by_agent["alice"]["missed_offers"] == 1


def test_a_freeze_of_a_desk_offer_that_went_back_as_it_was_asked_does_nothing(
    client: TestClient,
    app: FastAPI,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
) -> None:
    """alice presses "Freeze" on the victim's case offered at her desk just as its time runs
    out: her request has read the case as hers when the dispatch round takes it back. The
    freeze is refused (409), and nothing is done on her say: no freeze, no audit, no flag."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
    phone.call(Caller(list(HIJACK), lambda poll: False), from_number="anonymous")
    presence(client, alice, True)
    hotline = app.state.hotline
    assert hotline.dispatch() == 1
    [offer] = api(client, alice, "GET", "/api/agents/cases")
    clock.advance(seconds=31)  # past its time; the next round has not come yet
    armed = [True]
    took_back: list[int] = []

    def meanwhile(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # The freeze has just read the case, still alice's: the round runs now.
        if armed[0] and statement.startswith("SELECT cases.id, cases.ticket, cases.call_sid"):
            armed[0] = False
            took_back.append(hotline.dispatch())

    event.listen(db, "after_cursor_execute", meanwhile)
    try:
        late = {"reason": "hijack"}
        refused = client.post(f"/api/cases/{offer['id']}/freeze", json=late, headers=bearer(alice))
    finally:
        event.remove(db, "after_cursor_execute", meanwhile)
    assert took_back == [0]  # taken back (nobody else available to offer it to)
    assert refused.status_code == 409 and "not accepted in time" in refused.json()["detail"]
    [row] = case_rows(db)
    assert (row["status"], row["agent_id"], row["queued"]) == ("abandoned", None, 1)
    assert "agent_freeze" not in row["flags"]
    with db.connect() as conn:
        actions = conn.execute(select(audit_log.c.action, audit_log.c.actor)).all()
    # The caller's own freeze as they verified, then alice's missed offer; nothing of hers.
    assert [action for action, _ in actions] == ["self_freeze", "missed_offer"]


def test_an_agent_who_gives_a_case_back_is_set_away_and_it_goes_to_the_next(
    client: TestClient,
    app: FastAPI,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
) -> None:
    """The victim's case is offered to alice; she gives it back. Available still, she would
    be offered it again at once: she is set away, and it goes to bob, who takes it."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    bob = make_user(db, "bob", "agent", "+15005558888")
    presence(client, alice, True)
    clock.advance(minutes=1)
    hotline = app.state.hotline
    phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
    seen: list[Any] = []

    def holds(poll: int) -> bool:
        if poll == 1:
            assert hotline.dispatch() == 1
            [row] = case_rows(db)
            api(client, alice, "POST", f"/api/cases/{row['id']}/requeue", json={"reason": "zh"})
            seen.append(presence(client, alice))
            seen.append(hotline.dispatch())
            presence(client, bob, True)
            seen.append(hotline.dispatch())
        return poll < 4

    record = phone.call(Caller(list(HIJACK), holds), from_number=VICTIM)
    assert seen == [{"available": False, "since": None, "away_reason": "gave_back"}, 0, 1]
    assert record.dialed == "+15005558888" and record.agent_took is True
    [row] = case_rows(db)
    assert (row["status"], row["agent_id"]) == ("connected", user_id(db, "bob"))


def test_a_caller_who_hangs_up_while_the_agents_phone_rings_leaves_the_agent_available(
    client: TestClient, app: FastAPI, db: Engine, check_twiml: Callable[[str], None]
) -> None:
    """Twilio ends the Dial when the caller hangs up as alice's phone rings: `canceled`, or
    the caller's own call reported ended. Nobody missed anything: alice stays available, and
    the next time her phone rings she takes the call."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    presence(client, alice, True)
    hotline = app.state.hotline
    phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
    outcomes = iter(["canceled", "no-answer", "completed"])
    seen: list[Any] = []

    class Party(Caller):
        def dial_outcome(self, number: str) -> str:
            seen.append(presence(client, alice)["available"])
            return next(outcomes)

    original = phone.signed_post

    def ended_once(url: str, params: dict[str, str]) -> Any:
        # The second Dial ends with the caller's own call reported ended, as when they hang
        # up while it rings (this caller hangs on, so that the third can be taken).
        if "/twilio/connect-done" in url and params.get("DialCallStatus") == "no-answer":
            params = {**params, "CallStatus": "completed"}
        return original(url, params)

    phone.signed_post = ended_once  # type: ignore[method-assign]

    def holds(poll: int) -> bool:
        hotline.dispatch()
        return poll < 8

    record = phone.call(Party(list(HIJACK), holds), from_number=VICTIM)
    assert seen == [True, True, True] and record.agent_took is True
    assert presence(client, alice)["available"] is True
    assert 'ivr_offers_total{outcome="missed"}' not in client.get("/metrics").text


def test_a_call_back_twilio_will_not_place_is_offered_at_the_desk_to_dial_by_hand(
    rest: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, clock: FakeClock
) -> None:
    """A call back is offered to alice, who did not ask, and Twilio refuses to place it:
    nothing will ring her phone. It is hers to accept at her desk and dial by hand, as if
    she had asked and Twilio had refused; she stays available meanwhile."""
    client, phone = rest
    phone.call(Caller(list(DEPOSITS), lambda poll: False), from_number="+15005550201")
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    presence(client, alice, True)
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    twilio_http.refuse = True
    assert hotline.dispatch() == 1
    [offer] = api(client, alice, "GET", "/api/agents/cases")
    assert (offer["offer"], offer["caller"]) == ("call_back", "***0201")  # not yet hers
    assert datetime.fromisoformat(offer["accept_by"]) == clock() + timedelta(seconds=30)
    assert presence(client, alice)["available"] is True
    accepted = api(client, alice, "POST", f"/api/cases/{offer['id']}/accept")
    assert (accepted["accept_by"], accepted["caller"]) == (None, "+15005550201")  # to dial


def test_a_supervisor_sets_an_agent_away_who_left_their_desk_available(
    client: TestClient, app: FastAPI, db: Engine, clock: FakeClock
) -> None:
    """alice went home available. sam sets her away: no case comes to her unasked, the
    wallboard says why, and the audit says who did it (once: she was away already the
    second time). Agents cannot; a name that is no agent's is 404."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    bob = make_user(db, "bob", "agent", "+15005558888")
    sam = make_user(db, "sam", "supervisor")
    presence(client, alice, True)
    presence(client, bob, True)
    assert client.post("/api/agents/alice/away", headers=bearer(bob)).status_code == 403
    state = api(client, sam, "POST", "/api/agents/alice/away")
    assert (state["name"], state["state"], state["away_reason"]) == ("alice", "away", "set_away")
    assert presence(client, alice) == {"available": False, "since": None, "away_reason": "set_away"}
    assert presence(client, bob)["available"] is True
    assert api(client, sam, "POST", "/api/agents/alice/away")["state"] == "away"
    for name, status in (("nobody", 404), ("sam", 404), ("bad name", 422)):
        assert client.post(f"/api/agents/{name}/away", headers=bearer(sam)).status_code == status
    with db.connect() as conn:
        audited = conn.execute(
            text("SELECT actor, action, reason FROM audit_log WHERE action = 'set_away'")
        ).all()
    assert [tuple(a) for a in audited] == [("supervisor:sam", "set_away", "agent:alice")]
    with db.connect() as conn:
        assert [a.name for a in agents_to_offer(conn, now=clock())] == ["bob"]


def test_a_mandarin_speaking_victim_is_offered_to_the_agent_who_speaks_mandarin(
    client: TestClient,
    app: FastAPI,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
) -> None:
    """alice speaks English and has waited longest; mei speaks Mandarin. A victim who chose
    中文 is offered to mei, whose phone rings and says the caller's language; alice is passed
    over, still available. The case says the language too, and a supervisor sets who speaks
    what."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    mei = make_user(db, "mei", "agent", "+15005558888")
    sam = make_user(db, "sam", "supervisor")
    for token in (alice, mei):
        presence(client, token, True)
        clock.advance(minutes=1)
    for name, spoken in (("alice", ["en"]), ("mei", ["zh-CN"])):
        state = api(client, sam, "PUT", f"/api/agents/{name}/languages", json={"languages": spoken})
        assert state["languages"] == spoken
    refused = client.put(
        "/api/agents/mei/languages", json={"languages": ["fr"]}, headers=bearer(sam)
    )
    assert refused.status_code == 422 and "callers choose from en, zh-CN" in refused.text
    for who, name, status in ((mei, "mei", 403), (sam, "nobody", 404)):
        answer = client.put(
            f"/api/agents/{name}/languages", json={"languages": None}, headers=bearer(who)
        )
        assert answer.status_code == status
    hotline = app.state.hotline
    documents: list[str] = []
    phone = Phone(
        client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=keeping(check_twiml, documents)
    )
    seen: list[Any] = []

    def holds(poll: int) -> bool:
        if poll == 1:
            seen.append(hotline.dispatch())
            seen.append(api(client, mei, "GET", "/api/agents/cases")[0]["language"])
        return poll < 4

    record = phone.call(
        Caller([Press("2"), Press("1"), Press(UID), Press(PIN)], holds), from_number=VICTIM
    )
    assert seen == [1, "zh-CN"]
    assert record.dialed == "+15005558888" and record.agent_took is True
    # mei's phone, before she takes the call, hears in English what language to answer in.
    [screen] = [d for d in documents if "Press 1 to take the call" in d]
    assert "emergency priority, in Mandarin Chinese. Press 1" in screen
    assert presence(client, alice)["available"] is True
    board = {a["name"]: a for a in api(client, sam, "GET", "/api/agents")}
    assert (board["alice"]["state"], board["mei"]["state"]) == ("available", "on_case")


# -- the lockout and the owner; what matched; spraying (the social-engineering review) ----------

FULL_ATTESTATION = "TN-Validation-Passed-A"


def guesses(*pins: str, uid: str = UID) -> list[Any]:
    """A hijack call that keys `uid` with each of `pins` in turn."""
    answers: list[Any] = [Press("1"), Press("1")]
    for pin in pins:
        answers += [Press(uid), Press(pin)]
    return answers


def frozen(db: Engine) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(accounts.c.frozen).where(accounts.c.uid == UID)).scalar())


def test_guesses_from_other_numbers_do_not_stop_the_owners_attested_call_from_freezing(
    phone: Phone, client: TestClient, agent: str, db: Engine
) -> None:
    """A thief keys wrong PINs for the victim's UID from numbers of their own until it locks.
    The owner calling from their registered number, which their carrier vouches for, is
    still checked and frozen; their agent is told that the account is being guessed."""
    for n in range(3):
        phone.call(ScriptedParty(guesses("000000", "000001")), from_number=f"+1500555078{n}")
    assert case_rows(db)[-1]["flags"]["verified"] == "locked"  # the account is locked
    record = phone.call(
        ScriptedParty(list(HIJACK)), from_number=VICTIM, stir_verstat=FULL_ATTESTATION
    )
    assert any("protective freeze" in line for line in record.heard)
    assert frozen(db) == 1
    victims = case_rows(db)[-1]
    assert victims["flags"]["verified"] == "yes"
    # 5 counted (the third caller's second try was locked: neither checked nor counted).
    assert victims["flags"]["under_guessing"] == "5/3"
    take_in_turn(client, agent, 3)  # the thief's three cases first, as they came first
    case = api(client, agent, "POST", "/api/agents/next")["case"]
    assert case["id"] == victims["id"]
    assert case["risk"]["under_guessing"] == "5/3"
    client.post("/dashboard/login", data={"token": agent}, follow_redirects=False)
    desk = client.get("/dashboard/desk").text
    assert "Someone has been keying wrong answers for this account" in desk
    assert "If this caller is the owner, freeze first" in desk


def test_an_attested_call_from_another_number_than_the_owners_is_locked_like_any(
    phone: Phone, db: Engine
) -> None:
    """Full attestation vouches for a number, not for an owner: the thief's own phone gets
    no count of its own for the victim's account."""
    for n in range(3):
        phone.call(ScriptedParty(guesses("000000", "000001")), from_number=f"+1500555078{n}")
    thief = phone.call(
        ScriptedParty(list(HIJACK)), from_number="+15005550790", stir_verstat=FULL_ATTESTATION
    )
    assert not any("protective freeze" in line for line in thief.heard)
    assert case_rows(db)[-1]["flags"]["verified"] == "locked"
    assert frozen(db) == 0


def test_the_owners_attested_number_is_still_locked_by_its_own_failures(
    phone: Phone, db: Engine
) -> None:
    """A count of its own is still a count: five wrong answers from the registered number
    with full attestation (the owner mistyping, or a SIM swapper guessing) lock it."""
    attested = {"from_number": VICTIM, "stir_verstat": FULL_ATTESTATION}
    phone.call(ScriptedParty(guesses("000001", "000002")), **attested)
    phone.call(ScriptedParty(guesses("000003", "000004")), **attested)
    record = phone.call(ScriptedParty(guesses("000005", PIN)), **attested)
    assert not any("protective freeze" in line for line in record.heard)
    assert case_rows(db)[-1]["flags"]["verified"] == "locked"
    assert frozen(db) == 0


def test_the_owners_number_spoofed_without_attestation_does_not_lock_the_owner_out(
    phone: Phone, db: Engine
) -> None:
    """Five misses on random UIDs from the owner's number, spoofed (no full attestation),
    lock that number for unattested calls only: the owner's own attested call still freezes."""
    spoofed = {"from_number": VICTIM, "stir_verstat": "TN-Validation-Passed-C"}
    phone.call(ScriptedParty(guesses("000001", "000002", uid="20000001")), **spoofed)
    phone.call(ScriptedParty(guesses("000003", "000004", uid="20000002")), **spoofed)
    phone.call(ScriptedParty(guesses("000005", uid="20000003")), **spoofed)
    again = phone.call(ScriptedParty(list(HIJACK)), **spoofed)
    assert not any("protective freeze" in line for line in again.heard)
    assert case_rows(db)[-1]["flags"]["verified"] == "locked"
    owner = phone.call(
        ScriptedParty(list(HIJACK)), from_number=VICTIM, stir_verstat=FULL_ATTESTATION
    )
    assert any("protective freeze" in line for line in owner.heard)
    assert frozen(db) == 1


@pytest.mark.parametrize(
    ("secret", "factors", "partial"),
    [(PIN, ["uid", "pin"], False), (ID4, ["uid", "id_last4"], True)],
    ids=["pin", "id-last4"],
)
def test_the_agent_sees_which_factor_matched(
    phone: Phone,
    client: TestClient,
    agent: str,
    secret: str,
    factors: list[str],
    partial: bool,
) -> None:
    """A `pin_or_id_last4` step records the factor that matched, by name: 4 digits of an ID
    document (which leak with the ID number) are shown to the agent as partly verified."""
    phone.call(ScriptedParty([Press("1"), Press("1"), Press(UID), Press(secret)]))
    case = api(client, agent, "POST", "/api/agents/next")["case"]
    assert case["verification"] == {"result": "yes", "factors": factors, "partial": partial}
    client.post("/dashboard/login", data={"token": agent}, follow_redirects=False)
    desk = client.get("/dashboard/desk").text
    assert ("Partly verified: ID digits only" in desk) is partial


def test_guesses_sprayed_across_accounts_from_withheld_numbers_stop_being_checked(
    settings: Settings,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One wrong PIN tried on many UIDs, each under its own lockout, from withheld numbers:
    past the budget, such calls' secrets are not checked (nor counted). The right PIN then
    freezes nothing: the caller reaches an agent as `unavailable`. A call its carrier vouches
    for is not held by it."""
    budget = settings.model_copy(update={"unattested_failures": 5})
    with TestClient(
        create_app(budget, tree=hotline_tree, db=db, clock=clock), base_url=HTTPS_CLIENT
    ) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        for n in range(3):  # 5 failures on 5 accounts; the sixth guess is not checked
            keys = [Press("1"), Press("1"), Press(f"2000000{n}"), Press("000000")]
            keys += [Press(f"2100000{n}"), Press("000000")]
            phone.call(ScriptedParty(keys), from_number="anonymous")
        record = phone.call(ScriptedParty(list(HIJACK)), from_number="anonymous")
        assert not any("protective freeze" in line for line in record.heard)
        assert case_rows(db)[-1]["flags"]["verified"] == "unavailable"
        assert case_rows(db)[-1]["priority"] == "emergency"
        assert frozen(db) == 0
        metrics = client.get("/metrics").text
        assert "ivr_verification_throttled_total 2.0" in metrics
        assert "ivr_verification_failures_total 5.0" in metrics
        assert caplog.text.count("password spraying") == 1  # once a window
        with db.connect() as conn:
            counted = conn.execute(text("SELECT count(*) FROM verification_failures")).scalar()
        assert counted == 5
        owner = phone.call(
            ScriptedParty(list(HIJACK)), from_number=VICTIM, stir_verstat=FULL_ATTESTATION
        )
        assert any("protective freeze" in line for line in owner.heard)
        assert frozen(db) == 1
