"""What staff see of a customer who has not proved who they are."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from lxml import html
from sqlalchemy import Engine, select

from ivr.db import audit_log, users
from ivr.identity import LocalDirectory
from ivr.phone import Phone, Press, ScriptedParty
from ivr.settings import Settings
from tests.conftest import bearer, make_user

UID, PIN, ID4 = "10000001", "739182", "5064"
OWNER = "+15005550006"
STRANGER = "+15005550123"
OWNERS_CALL = [Press("1"), Press("1"), Press(UID), Press(PIN)]  # a stolen account, verified
STRANGERS_CALL = [Press("1"), Press("1"), Press(UID), Press("*")]  # the UID, the PIN skipped


@pytest.fixture(autouse=True)
def account(db: Engine, settings: Settings) -> None:
    LocalDirectory(db, settings.secret_key).add(
        uid=UID,
        pin=PIN,
        id_last4=None,
        phone=OWNER,
        totp_secret=None,
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )


def api(client: TestClient, token: str, method: str, path: str, **kw: Any) -> Any:
    response = client.request(method, path, headers=bearer(token), **kw)
    assert response.status_code == 200, response.text
    return response.json()


def test_an_unverified_callers_agent_sees_no_ticket_of_the_accounts_earlier_cases(
    phone: Phone, client: TestClient, db: Engine
) -> None:
    """Someone who keys the owner's UID and skips the PIN: their agent sees that the account
    had a case, when, and that it is resolved; not its ticket (main menu 9 would take them
    to its team as the owner), what it was about, or its notes. The owner, verified, is
    shown it whole."""
    alice = make_user(db, "alice", "agent", "+15005559999")
    phone.call(ScriptedParty(list(OWNERS_CALL)), from_number=OWNER)
    owners = api(client, alice, "POST", "/api/agents/next")["case"]
    notes = {"notes": "new email owner@mail.test", "reached": True}
    api(client, alice, "POST", f"/api/cases/{owners['id']}/resolve", json=notes)

    phone.call(ScriptedParty(list(STRANGERS_CALL)), from_number=STRANGER)
    strangers = api(client, alice, "POST", "/api/agents/next")["case"]
    assert strangers["verification"]["result"] == "skipped"
    assert strangers["earlier_cases"] == [
        {
            "id": None,
            "ticket": None,
            "reason": None,
            "status": "resolved",
            "created_at": owners["created_at"],
            "notes": None,
        }
    ]
    assert owners["ticket"] not in json.dumps(strangers)
    api(
        client,
        alice,
        "POST",
        f"/api/cases/{strangers['id']}/resolve",
        json={"notes": "not the owner", "reached": True},
    )

    phone.call(ScriptedParty(list(OWNERS_CALL)), from_number=OWNER)
    again = api(client, alice, "POST", "/api/agents/next")["case"]
    assert again["verification"]["result"] == "yes"
    assert [(e["ticket"], e["reason"], e["notes"]) for e in again["earlier_cases"]] == [
        (strangers["ticket"], strangers["reason"], "not the owner"),
        (owners["ticket"], owners["reason"], notes["notes"]),
    ]


def test_a_caller_verified_by_id_digits_alone_sees_the_earlier_cases_as_an_unverified_one(
    phone: Phone, client: TestClient, db: Engine, settings: Settings
) -> None:
    """The ID document's last 4 digits leak with the ID number (and a Chinese ID's are
    nearly given by the holder's birth date): their agent is told the caller is only partly
    verified, and sees the earlier cases' status and date only."""
    LocalDirectory(db, settings.secret_key).add(
        uid=UID,
        pin=PIN,
        id_last4=ID4,
        phone=OWNER,
        totp_secret=None,
        now=datetime(2026, 1, 2, tzinfo=UTC),
    )
    alice = make_user(db, "alice", "agent", "+15005559999")
    phone.call(ScriptedParty(list(OWNERS_CALL)), from_number=OWNER)
    owners = api(client, alice, "POST", "/api/agents/next")["case"]
    notes = {"notes": "new email owner@mail.test", "reached": True}
    api(client, alice, "POST", f"/api/cases/{owners['id']}/resolve", json=notes)

    ids_only = [Press("1"), Press("1"), Press(UID), Press(ID4)]
    phone.call(ScriptedParty(ids_only), from_number=STRANGER)
    strangers = api(client, alice, "POST", "/api/agents/next")["case"]
    assert strangers["verification"] == {
        "result": "yes",
        "factors": ["uid", "id_last4"],
        "partial": True,
    }
    assert [(e["ticket"], e["notes"], e["status"]) for e in strangers["earlier_cases"]] == [
        (None, None, "resolved")
    ]
    assert "owner@mail.test" not in json.dumps(strangers)


def test_a_desks_unsent_notes_are_the_agents_own_and_forgotten_at_sign_out(
    client: TestClient, db: Engine, phone: Phone
) -> None:
    """The notes an agent writes on the desk are kept in the tab until sent (they may hold
    a new email, a date of birth): kept under their own name, so the next agent to sign in
    in that tab is not handed them with the case, and the browser is told to forget them
    when they sign out."""
    phone.call(ScriptedParty(list(OWNERS_CALL)), from_number=OWNER)
    token = make_user(db, "alice", "agent", "+15005559999")
    with db.connect() as conn:
        alice = conn.execute(select(users.c.id).where(users.c.name == "alice")).scalar_one()
    signed_in = client.post("/dashboard/login", data={"token": token}, follow_redirects=False)
    assert signed_in.status_code == 303
    assert client.post("/dashboard/desk/next", follow_redirects=False).status_code == 303
    [case] = api(client, token, "GET", "/api/agents/cases")
    desk = html.fromstring(client.get("/dashboard/desk").text)
    assert desk.xpath("//textarea[@name='notes']/@data-keep") == [f"ivr-notes-{alice}-{case['id']}"]
    # Holding the case, she is asked first (`test_dashboard`); she signs out anyway.
    assert client.post("/dashboard/logout", follow_redirects=False).status_code == 409
    out = client.post("/dashboard/logout", data={"anyway": "yes"}, follow_redirects=False)
    assert out.status_code == 303
    assert out.headers["clear-site-data"] == '"storage"'


def test_another_agents_case_id_tells_an_agent_neither_its_account_nor_its_ticket(
    client: TestClient, db: Engine, phone: Phone
) -> None:
    """Any agent may post a desk form to any case id. A freeze refused for a reason that is
    only digits names the verified caller's account only to the agent who has the case; an
    action on a case that is closed names its ticket only to the agent whose it was (a
    ticket is what main menu 9 puts a caller through with)."""
    phone.call(ScriptedParty(list(OWNERS_CALL)), from_number=OWNER)
    alice = make_user(db, "alice", "agent", "+15005559999")
    bob = make_user(db, "bob", "agent", "+15005559998")
    case = api(client, alice, "POST", "/api/agents/next")["case"]
    freeze = f"/dashboard/desk/{case['id']}/freeze"

    def desk_error(token: str, path: str, status: int, **form: str) -> str:
        client.post("/dashboard/login", data={"token": token}, follow_redirects=False)
        refused = client.post(path, data=form, follow_redirects=False)
        assert refused.status_code == status, refused.text
        [said] = html.fromstring(refused.text).xpath("//*[@id='desk-error']")
        return " ".join(said.text_content().split())

    said = desk_error(bob, freeze, 422, reason="1", account_uid="", confirm="yes")
    assert UID not in said and "an account to freeze goes in the UID box" in said
    said = desk_error(alice, freeze, 422, reason="1", account_uid="", confirm="yes")
    assert f"this form freezes the verified caller's account {UID} only" in said

    api(
        client,
        alice,
        "POST",
        f"/api/cases/{case['id']}/resolve",
        json={"notes": "froze it by phone", "reached": True},
    )
    resolve = f"/dashboard/desk/{case['id']}/resolve"
    said = desk_error(bob, resolve, 409, notes="")
    assert said.startswith("That case is closed already.") and case["ticket"] not in said
    said = desk_error(alice, resolve, 409, notes="")
    assert said.startswith(f"Ticket {case['ticket']} is closed already.")


def test_an_agent_reads_in_the_call_log_only_their_own_cases_tickets(
    client: TestClient, db: Engine, phone: Phone
) -> None:
    """The call log is open to every agent; a ticket is what main menu 9 puts a caller
    through with. Another agent's case's ticket is in no list, CSV, timeline, event or
    recording row an agent reads, unless they searched by it (they have it then); the agent
    who had the case and supervisors read it, and a case still in line shows its ticket to
    any agent (as the queue does)."""
    record = phone.call(ScriptedParty(list(OWNERS_CALL)), from_number=OWNER)
    alice = make_user(db, "alice", "agent", "+15005559999")
    bob = make_user(db, "bob", "agent", "+15005559998")
    sam = make_user(db, "sam", "supervisor")
    sid = record.call_sid
    timeline = api(client, bob, "GET", f"/api/calls/{sid}")
    [in_line] = timeline["cases"]
    assert in_line["ticket"] is not None  # in line: on every agent's queue already
    case = api(client, alice, "POST", "/api/agents/next")["case"]
    ticket = case["ticket"]
    notes = {"notes": "froze it by phone", "reached": True}
    api(client, alice, "POST", f"/api/cases/{case['id']}/resolve", json=notes)

    listed = api(client, bob, "GET", "/api/calls")["calls"]
    assert [c["ticket"] for c in listed if c["call_sid"] == sid] == [None]
    timeline = api(client, bob, "GET", f"/api/calls/{sid}")
    assert [c["ticket"] for c in timeline["cases"]] == [None]
    assert ticket not in json.dumps(timeline)  # the case's event detail too
    csv = client.get("/api/calls.csv", headers=bearer(bob))
    assert csv.status_code == 200 and ticket not in csv.text
    page = client.post("/dashboard/login", data={"token": bob}, follow_redirects=False)
    assert page.status_code == 303
    for path in (f"/dashboard/calls/{sid}", "/dashboard/calls"):
        shown = client.get(path)
        assert shown.status_code == 200 and sid in shown.text and ticket not in shown.text

    # A follow-up (main menu 9, the ticket keyed) names the case it followed up in its
    # look-up event: not to an agent whose case that was not.
    follow_up = phone.call(ScriptedParty([Press("1"), Press("9"), Press(ticket)]))
    later = api(client, bob, "GET", f"/api/calls/{follow_up.call_sid}")
    assert later["events"] and ticket not in json.dumps(later)

    searched = api(client, bob, "GET", "/api/calls", params={"ticket": ticket})["calls"]
    assert ticket in [c["ticket"] for c in searched]
    for reader in (alice, sam):
        assert ticket in json.dumps(api(client, reader, "GET", f"/api/calls/{sid}"))
        listed = api(client, reader, "GET", "/api/calls")["calls"]
        assert [c["ticket"] for c in listed if c["call_sid"] == sid] == [ticket]
    # Every look at the call's timeline is audited, by whom (the API's and the page's).
    with db.connect() as conn:
        looked = conn.execute(
            select(audit_log.c.actor, audit_log.c.reason)
            .where(audit_log.c.action == "show_call")
            .order_by(audit_log.c.id)
        ).all()
    assert [tuple(r) for r in looked] == [
        ("agent:bob", sid),
        ("agent:bob", sid),
        ("agent:bob", sid),
        ("agent:bob", follow_up.call_sid),
        ("agent:alice", sid),
        ("supervisor:sam", sid),
    ]
