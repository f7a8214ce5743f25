"""An agent sends the caller they are talking to on: another team, their language, the
emergency lane. Every call goes through the Twilio-like phone; agents act through the JSON
API at the moment a real one would (while the caller holds, or while their phone talks)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient
from lxml import etree, html
from sqlalchemy import Engine, select

from ivr import cases as cases_module
from ivr import oncall, stats
from ivr.cases import SECRET_LIKE
from ivr.db import audit_log, call_events, cases, users
from ivr.phone import Answer, CallRecord, HangsUp, HangUp, Phone, Press, Prompt, ScriptedParty
from ivr.settings import PROJECT_ROOT
from ivr.tree import CompiledTree, load_tree
from ivr.web import create_app
from tests.conftest import (
    HTTPS_CLIENT,
    PUBLIC_URL,
    TOKEN,
    FakeClock,
    RecordingTwilio,
    bearer,
    make_settings,
    make_user,
)
from tests.support.catalogs import catalogs_without
from tests.support.parties import Caller, Talks
from tests.support.twilio import app_with_twilio, on_the_line, placed_calls

ALICE_PHONE, BEN_PHONE = "+15005559999", "+15005559998"
PAYMENTS = [Press("1"), Press("3"), Press("1"), Press("1")]  # English, deposits, not credited
HOUR = timedelta(hours=1)
# English, the general queue; at the hold loop's offer 1 for a call back, and 2 to confirm.
CALL_ME_BACK = (Press("1"), Press("0"), Press("1"), Press("2"))  # a tuple: a party pops a list
HIJACKED = [Press("1"), Press("1"), Press("*")]  # English, stolen account, verification skipped
TRANSFERRED_EN = "Please hold: we are passing your call to the team who can help."
TRANSFERRED_ZH = "请稍候,正在为您转接能够处理您问题的团队。"
TO_SECURITY = {
    "queue": "security",
    "language": "zh-CN",
    "note": "funds leaving the account now: a hijack",
}

# Asking for the next case and accepting one: the desk's own entries, left out where a test
# reads what was done to a case.
not_desk = audit_log.c.action.not_in((cases_module.TAKE, cases_module.ACCEPT))


def api(client: TestClient, token: str, method: str, path: str, **kw: Any) -> Any:
    response = client.request(method, path, headers=bearer(token), **kw)
    assert response.status_code == 200, response.text
    return response.json()


def taken_at_first_round(
    client: TestClient, token: str, seen: dict[str, Any], *, then_holds: bool = False
) -> Callable[[int], bool]:
    """A caller's hold rounds: at the first, the agent of `token` takes the case (what they
    got in seen["first"]) and the caller holds on to be put through; in a queue after that
    (where they were sent), they hold on only if `then_holds`."""

    def holds(poll: int) -> bool:
        if "first" not in seen:
            seen["first"] = api(client, token, "POST", "/api/agents/next")
            return True
        return then_holds

    return holds


def heard(record: CallRecord, words: str) -> bool:
    return any(words in line for line in record.heard)


def the_case(db: Engine) -> dict[str, Any]:
    with db.connect() as conn:
        [row] = conn.execute(select(cases)).mappings().all()
    return dict(row)


def transfers_logged(db: Engine) -> list[dict[str, Any]]:
    with db.connect() as conn:
        rows = conn.execute(
            select(call_events.c.detail).where(call_events.c.outcome == "transferred")
        ).all()
    return [r.detail for r in rows]


@pytest.fixture
def alice(db: Engine) -> str:
    return make_user(db, "alice", "agent", ALICE_PHONE)


@pytest.fixture
def ben(db: Engine) -> str:
    return make_user(db, "ben", "agent", BEN_PHONE)


@pytest.fixture
def rest(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
    twilio_http: RecordingTwilio,
) -> Iterator[tuple[TestClient, Phone]]:
    """The app with Twilio's REST API (recorded), and a phone that follows its redirects."""
    app = app_with_twilio(database_url, hotline_tree, db, clock, twilio_http)
    with on_the_line(app, check_twiml, twilio_http) as line:
        yield line


def test_a_hijack_found_on_a_deposit_call_goes_to_the_emergency_lane_in_the_callers_language(
    phone: Phone, client: TestClient, db: Engine, alice: str, ben: str
) -> None:
    """Without Twilio's REST API: the caller goes when the agent hangs up. They hear it in the
    language the agent said they speak, wait in the emergency lane of the security queue,
    and the agent who takes them next sees who sent them and why."""
    supervisor = make_user(db, "sam", "supervisor")
    api(client, supervisor, "PUT", "/api/agents/ben/languages", json={"languages": ["zh-CN"]})
    seen: dict[str, Any] = {}

    def holds(poll: int) -> bool:
        if poll == 1 and "first" not in seen:
            seen["first"] = api(client, alice, "POST", "/api/agents/next")
        elif poll == 1 and "next" not in seen:
            seen["queue"] = api(client, ben, "GET", "/api/queue")
            seen["next"] = api(client, ben, "POST", "/api/agents/next")
        return poll < 3

    def talks(number: str) -> str:
        if number == ALICE_PHONE:
            case_id = seen["first"]["case"]["id"]
            seen["sent"] = api(
                client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY
            )
            seen["alice_holds"] = api(client, alice, "GET", "/api/agents/cases")
        return "completed"  # the agent hangs up; then ben's call ends too

    record = phone.call(Talks(PAYMENTS, holds, talks))

    sent = seen["sent"]
    assert sent["mode"] == "on_hang_up"
    assert sent["case"]["transfer"] == {
        "by": "alice",
        "note": TO_SECURITY["note"],
        "to": "security",
        "from_queue": None,
        "count": 0,
        "earlier": [],
    }
    assert [c["status"] for c in seen["alice_holds"]] == ["connected"]  # until they hang up
    # Told in Mandarin, then queued in security; put through to ben, who speaks it.
    assert heard(record, TRANSFERRED_ZH) and not heard(record, TRANSFERRED_EN)
    assert record.dialed == BEN_PHONE and record.queue == "security"
    [waiting] = seen["queue"]
    assert (waiting["queue"], waiting["priority"], waiting["language"]) == (
        "security",
        "emergency",
        "zh-CN",
    )
    taken = seen["next"]["case"]
    assert taken["ticket"] == seen["first"]["case"]["ticket"]  # the ticket they were told
    assert taken["transfer"] == {
        "by": "alice",
        "note": TO_SECURITY["note"],
        "to": None,
        "from_queue": "payments",
        "count": 1,
        "earlier": [],
    }
    row = the_case(db)
    assert (row["queue"], row["priority"], row["lane"], row["language"]) == (
        "security",
        "emergency",
        0,
        "zh-CN",
    )
    assert row["agent_id"] is not None and row["status"] == "connected"  # ben's now
    assert transfers_logged(db) == [{"case": row["id"], "priority": "emergency"}]
    assert api(client, alice, "GET", "/api/agents/cases") == []
    with db.connect() as conn:
        audits = conn.execute(
            select(audit_log.c.actor, audit_log.c.action, audit_log.c.reason).where(not_desk)
        ).all()
    assert [tuple(a) for a in audits] == [
        ("supervisor:sam", "languages_set", "agent:ben, speaks zh-CN"),
        ("agent:alice", "transfer", f"to security (emergency): {TO_SECURITY['note']}"),
    ]


def test_each_agent_a_caller_is_sent_on_to_reads_every_note_left_before(
    phone: Phone, client: TestClient, db: Engine, alice: str, ben: str
) -> None:
    """alice sends the caller from payments to security, ben from security to account: cy,
    who takes them last, reads ben's note and alice's, not ben's alone."""
    cy = make_user(db, "cy", "agent", "+15005559997")
    to_account = {"queue": "account", "note": "their 2FA was reset by someone"}
    seen: dict[str, Any] = {}
    order = [(alice, TO_SECURITY), (ben, to_account), (cy, None)]

    def holds(poll: int) -> bool:
        if poll == 1 and len(seen) < len(order):
            agent, _ = order[len(seen)]
            seen[agent] = api(client, agent, "POST", "/api/agents/next")
        return poll < 3

    def talks(number: str) -> str:
        agent, to = order[len(seen) - 1]
        if to is not None:
            case_id = seen[agent]["case"]["id"]
            api(client, agent, "POST", f"/api/cases/{case_id}/transfer", json=to)
        return "completed"

    phone.call(Talks(PAYMENTS, holds, talks))
    transfer = seen[cy]["case"]["transfer"]
    assert (transfer["by"], transfer["from_queue"], transfer["note"]) == (
        "ben",
        "security",
        to_account["note"],
    )
    assert transfer["count"] == 2
    assert transfer["earlier"] == [
        {"by": "alice", "from_queue": "payments", "note": TO_SECURITY["note"]}
    ]
    # And at cy's desk, while the case is hers.
    client.post("/dashboard/login", data={"token": cy}, follow_redirects=False)
    desk = html.fromstring(client.get("/dashboard/desk").text)
    notes = [n.text_content() for n in desk.xpath("//*[contains(@class, 'transfer-note')]")]
    assert notes == [
        f"from security by ben: {to_account['note']}",
        f"from payments by alice: {TO_SECURITY['note']}",
    ]


def test_with_twilios_rest_api_the_caller_goes_at_once(
    rest: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, alice: str
) -> None:
    """Twilio redirects the caller's call out of the agent's <Dial>: it reports the leg's end
    to the <Dial>'s action (and plays none of that answer) and fetches the transfer. The
    caller hangs up while waiting there: a call back, in the lane they were sent to."""
    client, phone = rest
    seen: dict[str, Any] = {}

    def holds(poll: int) -> bool:
        if "first" not in seen:
            seen["first"] = api(client, alice, "POST", "/api/agents/next")
        elif poll == 1:
            seen["queue"] = api(client, alice, "GET", "/api/queue")
        return poll < 2

    def talks(number: str) -> str:
        case_id = seen["first"]["case"]["id"]
        seen["sent"] = api(
            client,
            alice,
            "POST",
            f"/api/cases/{case_id}/transfer",
            json={"queue": "security", "priority": "high", "note": "a phishing link clicked"},
        )
        return "completed"

    record = phone.call(Talks(PAYMENTS, holds, talks))

    assert seen["first"]["connect"]["mode"] == "redirected"
    assert seen["sent"]["mode"] == "redirected"
    assert record.dialed == ALICE_PHONE and record.queue == "security"
    assert heard(record, TRANSFERRED_EN)
    # What Twilio asked for, in order: the <Dial>'s end, then the transfer; made once.
    urls = [url.split("?")[0].removeprefix(PUBLIC_URL) for url, _ in record.requests]
    dial_end = urls.index("/twilio/connect-done")
    assert urls[dial_end + 1] == "/twilio/transfer"
    [waiting] = seen["queue"]
    assert (waiting["queue"], waiting["priority"], waiting["language"]) == (
        "security",
        "high",
        "en",
    )
    row = the_case(db)
    assert (row["status"], row["queued"], row["agent_id"]) == ("abandoned", 1, None)
    assert (row["queue"], row["priority"], row["lane"]) == ("security", "high", 1)
    assert len(transfers_logged(db)) == 1


def test_the_transfer_and_the_dial_report_in_either_order_and_twice_make_one_transfer(
    rest: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    alice: str,
    check_twiml: Callable[[str], None],
) -> None:
    """Twilio fetches the transfer before it reports the <Dial>'s end, and repeats both: the
    same answer each time, one transfer, the call's step moved once."""
    client, phone = rest
    seen: dict[str, Any] = {}

    holds = taken_at_first_round(client, alice, seen)

    def talks(number: str) -> str:
        case_id = seen["first"]["case"]["id"]
        api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY)
        (sid, connect_url), (_, transfer_url) = twilio_http.redirects
        [moved] = [f for _, url, f in twilio_http.requests if f.get("Url") == transfer_url]
        assert moved["FallbackUrl"] == f"{PUBLIC_URL}/twilio/fallback"  # never an app error
        params = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "CallStatus": "in-progress"}
        # The <Dial> the caller is in (Twilio asking for it again gets the same).
        dial = etree.fromstring(phone.signed_post(connect_url, params).content).find("Dial")
        done = {**params, "DialCallStatus": "completed"}
        seen["answers"] = [
            phone.signed_post(transfer_url, params).text,
            phone.signed_post(transfer_url, params).text,
            phone.signed_post(dial.get("action"), done).text,
            phone.signed_post(dial.get("action"), done).text,
        ]
        return "completed"

    record = phone.call(Talks(PAYMENTS, holds, talks))
    first, *others = seen["answers"]
    check_twiml(first)
    assert "<Enqueue" in first and TRANSFERRED_ZH in first
    assert others == [first] * 3
    assert record.queue == "security"  # the phone's own copies were answered the same
    assert record.documents.count(first) == 2  # the <Dial>'s end, and the transfer
    assert len(transfers_logged(db)) == 1
    assert the_case(db)["flags"]["transfers"] == "1"


def dial_action(documents: list[str]) -> str:
    """The action of the last <Dial> the caller was sent (the agent's phone they talk to)."""
    for body in reversed(documents):
        dial = etree.fromstring(body.encode()).find("Dial")
        if dial is not None:
            return str(dial.get("action"))
    raise AssertionError("no <Dial> yet")


def test_a_caller_who_hangs_up_before_the_transfer_is_called_back_where_they_were_sent(
    client: TestClient, db: Engine, alice: str, ben: str, check_twiml: Callable[[str], None]
) -> None:
    """alice sent the caller on, and the caller hung up before she did: Twilio reports the
    <Dial>'s end with the call over. Nobody is lost: a call back in the emergency lane of
    the queue they were sent to, nobody's, and the next agent calls them."""
    documents: list[str] = []

    def keep(body: str) -> None:
        check_twiml(body)
        documents.append(body)

    phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=keep)
    seen: dict[str, Any] = {}

    holds = taken_at_first_round(client, alice, seen, then_holds=True)

    def talks(number: str) -> str:
        case_id = seen["first"]["case"]["id"]
        api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY)
        sid = the_case(db)["call_sid"]
        seen["end"] = phone.signed_post(
            dial_action(documents),
            {
                "CallSid": sid,
                "AccountSid": "AC" + "0" * 32,
                "CallStatus": "completed",
                "DialCallStatus": "completed",
            },
        )
        raise HangsUp

    record = phone.call(Talks(PAYMENTS, holds, talks))
    assert record.ended_by == "caller"
    check_twiml(seen["end"].text)
    assert "<Enqueue" not in seen["end"].text
    row = the_case(db)
    assert (row["status"], row["queued"], row["agent_id"]) == ("abandoned", 1, None)
    assert (row["queue"], row["priority"], row["lane"]) == ("security", "emergency", 0)
    assert row["flags"]["transfers"] == "1" and "transfer_to" not in row["flags"]
    again = api(client, ben, "POST", "/api/agents/next")
    assert again["case"]["id"] == row["id"] and again["connect"]["mode"] == "call_back"


def refused(client: TestClient, token: str, case_id: int, body: dict[str, Any]) -> tuple[int, str]:
    response = client.post(f"/api/cases/{case_id}/transfer", json=body, headers=bearer(token))
    return response.status_code, response.json()["detail"]


def test_only_the_agent_talking_to_the_caller_sends_them_on_and_only_where_the_tree_has(
    phone: Phone, client: TestClient, db: Engine, alice: str, ben: str
) -> None:
    sam = make_user(db, "sam", "supervisor")
    seen: dict[str, Any] = {}

    def holds(poll: int) -> bool:
        if "first" not in seen:
            seen["first"] = api(client, alice, "POST", "/api/agents/next")
            # Taken, not put through yet: nobody is on the line with alice to send on.
            seen["not_yet"] = refused(client, alice, seen["first"]["case"]["id"], TO_SECURITY)
        return "twice" not in seen  # sent on: hangs up there

    def talks(number: str) -> str:
        case_id = seen["first"]["case"]["id"]
        seen["ben"] = refused(client, ben, case_id, TO_SECURITY)
        seen["sam"] = client.post(
            f"/api/cases/{case_id}/transfer", json=TO_SECURITY, headers=bearer(sam)
        ).status_code
        seen["no_queue"] = refused(client, alice, case_id, {**TO_SECURITY, "queue": "lunar"})
        seen["no_language"] = refused(client, alice, case_id, {**TO_SECURITY, "language": "fr"})
        seen["no_note"] = client.post(
            f"/api/cases/{case_id}/transfer",
            json={**TO_SECURITY, "note": " "},
            headers=bearer(alice),
        ).status_code
        seen["none"] = refused(client, alice, 999_999, TO_SECURITY)
        # The next agent reads the note: never what may be the caller's PIN.
        seen["secret"] = refused(
            client, alice, case_id, {**TO_SECURITY, "note": "she read me her PIN 739 182"}
        )
        seen["untouched"] = the_case(db)
        api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY)
        seen["twice"] = refused(client, alice, case_id, {**TO_SECURITY, "queue": "kyc"})
        return "completed"

    record = phone.call(Talks(PAYMENTS, holds, talks))
    assert seen["not_yet"][0] == 409 and "put through to you" in seen["not_yet"][1]
    assert seen["ben"][0] == 409 and "not your case" in seen["ben"][1]
    assert seen["sam"] == 403
    assert seen["no_queue"][0] == 422 and "security" in seen["no_queue"][1]  # it lists them
    assert seen["no_language"][0] == 422 and "zh-CN" in seen["no_language"][1]
    assert seen["no_note"] == 422
    assert seen["none"][0] == 404
    assert seen["secret"] == (422, SECRET_LIKE)
    untouched = seen["untouched"]
    assert (untouched["status"], untouched["queue"]) == ("connected", "payments")
    assert not any(k.startswith("transfer") for k in untouched["flags"])
    assert seen["twice"][0] == 409 and "already" in seen["twice"][1]
    assert record.queue == "security"  # the first transfer stands
    with db.connect() as conn:
        done = conn.execute(select(audit_log.c.action).where(not_desk))
        assert [a.action for a in done] == ["transfer"]


TO_SECURITY_EN = {"queue": "security", "note": "a SIM swap: security calls"}
SENT_ON_EN = "they will call you back shortly"


@pytest.fixture
def screened_or_not(
    request: pytest.FixtureRequest,
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
    twilio_http: RecordingTwilio,
) -> Iterator[tuple[TestClient, Phone]]:
    """As `rest`, with IVR_AGENT_SCREENING as the test's parameter says."""
    app = app_with_twilio(
        database_url, hotline_tree, db, clock, twilio_http, IVR_AGENT_SCREENING=request.param
    )
    with on_the_line(app, check_twiml, twilio_http) as line:
        yield line


def called_back(client: TestClient, phone: Phone, token: str) -> int:
    """A caller asked to be called back; the agent of `token` takes it, and Twilio calls."""
    phone.call(ScriptedParty(list(CALL_ME_BACK)), from_number="+15005554321")
    claimed = api(client, token, "POST", "/api/agents/next")
    assert claimed["connect"]["mode"] == "calling_back"
    return int(claimed["case"]["id"])


@pytest.mark.parametrize("listed", ["queued", "in-progress"])
def test_a_call_back_twilio_placed_without_answering_is_not_dialled_again(
    rest: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    alice: str,
    listed: str,
) -> None:
    """Twilio took the call back and its answer was lost (no answer in time): it is found
    among the calls Twilio is placing to that number, and alice waits for it as for any call
    back, rather than dialling the customer herself while Twilio rings them too; answered
    already (in-progress) too. The customer answers, and is put through to her."""
    client, phone = rest
    phone.call(ScriptedParty(list(CALL_ME_BACK)), from_number="+15005554321")
    twilio_http.placed_status = listed

    def lose_the_answer() -> None:
        twilio_http.meanwhile = None
        raise requests.exceptions.ReadTimeout("Twilio took it; its answer never came")

    twilio_http.meanwhile = lose_the_answer
    claimed = api(client, alice, "POST", "/api/agents/next")
    assert claimed["connect"]["mode"] == "calling_back"
    [placed] = twilio_http.placed
    assert the_case(db)["offer"] == f"calling_back:{placed['sid']}"
    talks = Talks([], lambda poll: False, lambda number: None)
    record = phone.answer(placed_calls(twilio_http)[-1], talks, call_sid=placed["sid"])
    assert record.dialed is not None and the_case(db)["status"] == "connected"
    assert len(placed_calls(twilio_http)) == 1


def test_a_call_back_twilio_failed_to_answer_for_and_did_not_place_is_dialled_by_hand(
    rest: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, alice: str
) -> None:
    """A 500, and no call to that number among those Twilio is placing: alice dials it."""
    client, phone = rest
    phone.call(ScriptedParty(list(CALL_ME_BACK)), from_number="+15005554321")
    twilio_http.error = (500, 20500)
    claimed = api(client, alice, "POST", "/api/agents/next")
    assert claimed["connect"] == {"mode": "call_back", "number": "+15005554321"}
    asked = [(method, url.rsplit("/", 1)[-1]) for method, url, _ in twilio_http.requests]
    assert asked[-2:] == [("POST", "Calls.json"), ("GET", "Calls.json")]


def answered(phone: Phone, twilio: RecordingTwilio, on_talk: Callable[[str], Any]) -> CallRecord:
    """The customer answers the last call Twilio placed, and talks as `on_talk` says."""
    return phone.answer(
        placed_calls(twilio)[-1], Talks([], lambda poll: False, on_talk), call_sid=twilio.sids[-1]
    )


def in_securitys_line(db: Engine, *, not_before: Any = None) -> dict[str, Any]:
    """The call back in security's line, nobody's: to be called from `not_before` (None: at
    once; made while the customer was still on the line, once they have heard so)."""
    row = the_case(db)
    assert (row["status"], row["queued"], row["agent_id"], row["offer"]) == (
        "callback_requested",
        1,
        None,
        None,
    )
    assert (row["queue"], row["priority"], row["not_before"]) == (
        "security",
        "emergency",
        not_before,
    )
    assert row["flags"]["transferred_from"] == "general"
    assert not {"transfer_to", cases_module.CALL_BACK_SID} & set(row["flags"])
    return row


@pytest.mark.parametrize("screened_or_not", [True, False], indirect=True)
def test_a_call_back_twilio_placed_is_sent_on_while_the_customer_talks(
    screened_or_not: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    clock: FakeClock,
    alice: str,
    ben: str,
) -> None:
    """Twilio calls the customer back for alice. While it rings the case cannot be sent on
    (they may answer any moment, to be put through to her). Talking, she finds it is the
    security team's and sends it there: the customer's call is moved out of her <Dial> to
    hear that security will call them, and ends. The case is in security's line, a call
    back nobody has; her leg's report and the call's end are not news (not a miss of hers,
    not a second transfer). Security calls once the customer has heard so and hung up, not
    while they still listen: ben takes it then, and Twilio calls the customer again."""
    client, phone = screened_or_not
    case_id = called_back(client, phone, alice)
    ringing = refused(client, alice, case_id, TO_SECURITY_EN)
    assert ringing[0] == 409 and "calling the customer now" in ringing[1]
    seen: dict[str, Any] = {}

    def talks(number: str) -> None:
        path = f"/api/cases/{case_id}/transfer"
        seen["sent"] = api(client, alice, "POST", path, json=TO_SECURITY_EN)
        seen["held"] = the_case(db)

    customer = answered(phone, twilio_http, talks)
    assert seen["sent"]["mode"] == "redirected"
    held = seen["held"]  # hers until the customer's call left hers
    assert (held["status"], held["agent_id"] is not None, held["queue"]) == (
        "connected",
        True,
        "general",
    )
    assert heard(customer, SENT_ON_EN) and customer.ended_by == "hotline"
    assert customer.transcript.count(SENT_ON_EN) == 1
    in_securitys_line(db, not_before=clock() + cases_module.HEARD_AND_HUNG_UP)
    assert api(client, alice, "GET", "/api/agents/cases") == []
    with db.connect() as conn:
        logged = conn.execute(select(audit_log.c.action, audit_log.c.result).where(not_desk)).all()
    assert [tuple(r) for r in logged] == [("transfer", "asked")]  # no missed offer of hers
    assert api(client, ben, "POST", "/api/agents/next")["case"] is None  # still listening
    clock.advance(seconds=31)
    again = api(client, ben, "POST", "/api/agents/next")
    assert (again["case"]["id"], again["connect"]["mode"]) == (case_id, "calling_back")
    assert len(placed_calls(twilio_http)) == 2


def test_a_call_back_sent_on_goes_when_the_agent_hangs_up_if_twilio_cannot_redirect(
    rest: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    clock: FakeClock,
    alice: str,
) -> None:
    """Twilio's REST API fails as alice sends the call back on: it stays hers, asked (the
    sweep, which makes inbound callers' lost transfers, leaves it: the customer still
    talks), and goes to security when her leg ends; the customer hears so then."""
    client, phone = rest
    case_id = called_back(client, phone, alice)
    seen: dict[str, Any] = {}

    def talks(number: str) -> None:
        twilio_http.refuse = True
        path = f"/api/cases/{case_id}/transfer"
        seen["sent"] = api(client, alice, "POST", path, json=TO_SECURITY_EN)
        twilio_http.refuse = False
        seen["again"] = refused(client, alice, case_id, TO_SECURITY_EN)
        seen["resolve"] = client.post(
            f"/api/cases/{case_id}/resolve", json={"notes": "done"}, headers=bearer(alice)
        ).status_code
        hotline = client.app.state.hotline  # type: ignore[attr-defined]
        seen["swept"] = hotline.finish_stale_transfers()
        # A late copy of the first call's final status: that call ended long ago; it says
        # nothing of the call back talking now.
        base = {"CallSid": the_case(db)["call_sid"], "AccountSid": "AC" + "0" * 32}
        phone.signed_post(f"{PUBLIC_URL}/twilio/status", {**base, "CallStatus": "completed"})
        seen["held"] = the_case(db)

    customer = answered(phone, twilio_http, talks)
    assert seen["sent"]["mode"] == "on_hang_up"
    assert seen["again"][0] == 409 and "already" in seen["again"][1]
    assert seen["resolve"] == 409
    assert seen["swept"] == 0
    assert (seen["held"]["status"], seen["held"]["flags"]["transfer_to"]) == (
        "connected",
        "security",
    )
    assert heard(customer, SENT_ON_EN)
    in_securitys_line(db, not_before=clock() + cases_module.HEARD_AND_HUNG_UP)


@pytest.mark.parametrize("reported_by", ["dial", "status_callback"])
def test_a_call_back_sent_on_after_its_call_ended_goes_at_once(
    reported_by: str,
    rest: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    alice: str,
) -> None:
    """alice talks to the customer, the call ends, and only then she sends the case on (the
    notes of a call are written after it): its end was reported (by her <Dial>'s end, or
    by the call's status callback alone), so it goes at once, without asking Twilio
    anything (whose REST API is failing just then)."""
    client, phone = rest
    case_id = called_back(client, phone, alice)
    placed = placed_calls(twilio_http)[-1]

    def talks(number: str) -> None:
        if reported_by == "status_callback":
            raise HangsUp  # no report of the <Dial> reaches the hotline

    if reported_by == "dial":
        placed = {k: v for k, v in placed.items() if k != "StatusCallback"}
    phone.answer(placed, Talks([], lambda poll: False, talks), call_sid=twilio_http.sids[-1])
    assert the_case(db)["status"] == "connected"
    asked_before = len(twilio_http.requests)
    twilio_http.refuse = True
    sent = api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY_EN)
    assert sent["mode"] == "call_back"
    assert len(twilio_http.requests) == asked_before
    in_securitys_line(db)


def test_a_call_back_sent_on_after_its_call_ended_unreported_goes_when_twilio_says_so(
    rest: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, alice: str
) -> None:
    """The customer hung up on alice, and neither report of it (her <Dial>'s, the call's
    status callback) has reached the hotline when she sends the case on: Twilio refuses to
    move a call that is not in progress, so it goes at once."""
    client, phone = rest
    case_id = called_back(client, phone, alice)
    placed = {k: v for k, v in placed_calls(twilio_http)[-1].items() if k != "StatusCallback"}

    def hangs_up(number: str) -> None:
        raise HangsUp  # and no report of the <Dial> reaches the hotline

    phone.answer(placed, Talks([], lambda poll: False, hangs_up), call_sid=twilio_http.sids[-1])
    assert cases_module.CALL_BACK_SID in the_case(db)["flags"]  # nothing said it ended
    twilio_http.error = (400, 21220)  # Twilio: the call is not in progress
    sent = api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY_EN)
    assert sent["mode"] == "call_back"
    in_securitys_line(db)


def test_a_call_back_sent_on_in_another_language_is_told_so_in_it(
    rest: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, alice: str
) -> None:
    """alice hears the customer speaks Mandarin and sends them to security's Mandarin
    speakers: the customer hears that security will call them in Mandarin, whichever of
    Twilio's requests makes the transfer (here her <Dial>'s end, Twilio's REST API failing:
    the case read before it is made)."""
    client, phone = rest
    case_id = called_back(client, phone, alice)
    to_mandarin = {**TO_SECURITY_EN, "language": "zh-CN"}

    def talks(number: str) -> None:
        twilio_http.refuse = True
        api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=to_mandarin)
        twilio_http.refuse = False

    customer = answered(phone, twilio_http, talks)
    assert heard(customer, "您的工单已转交给能够处理您问题的团队")
    assert not heard(customer, SENT_ON_EN)
    assert the_case(db)["language"] == "zh-CN"


def test_a_call_back_sent_on_whose_dial_report_was_lost_goes_with_the_calls_end(
    rest: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, alice: str
) -> None:
    """Twilio cannot redirect, and the customer hangs up with no report of alice's <Dial>
    reaching the hotline: the status callback of the call Twilio placed makes the transfer."""
    client, phone = rest
    case_id = called_back(client, phone, alice)

    def talks(number: str) -> None:
        twilio_http.refuse = True
        api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY_EN)
        twilio_http.refuse = False
        raise HangsUp

    answered(phone, twilio_http, talks)
    in_securitys_line(db)


def test_a_late_report_of_an_earlier_call_back_leaves_the_next_one_alone(
    rest: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    clock: FakeClock,
    alice: str,
) -> None:
    """alice sends a call back on and takes it again herself (she is on the security team
    too); Twilio calls the customer a second time. A copy of the first call's <Dial> report,
    arriving late, must not take that call back from her nor count it a miss of hers."""
    client, phone = rest
    case_id = called_back(client, phone, alice)

    def talks(number: str) -> None:
        api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY_EN)

    first = answered(phone, twilio_http, talks)
    clock.advance(seconds=31)  # the customer has heard so
    again = api(client, alice, "POST", "/api/agents/next")
    assert (again["case"]["id"], again["connect"]["mode"]) == (case_id, "calling_back")
    [(url, params)] = [(u, p) for u, p in first.requests if "/connect-done" in u]
    late = phone.signed_post(url, params)
    assert late.status_code == 200 and "<Hangup" in late.text
    row = the_case(db)
    assert (row["status"], row["queue"], row["queued"]) == ("offered", "security", 0)
    assert cases_module.calling_back(row["offer"])
    with db.connect() as conn:
        assert (
            conn.execute(select(users.c.away_reason).where(users.c.name == "alice")).scalar()
            is None
        )
        assert [a for (a,) in conn.execute(select(audit_log.c.action).where(not_desk))] == [
            "transfer"
        ]


def test_a_call_back_to_dial_by_hand_is_sent_on_before_it_is_dialled(
    phone: Phone, client: TestClient, db: Engine, alice: str
) -> None:
    """Without Twilio's REST API alice dials call backs herself; she sees the case is the
    security team's and sends it on before calling."""
    phone.call(ScriptedParty(list(CALL_ME_BACK)), from_number="+15005554321")
    claimed = api(client, alice, "POST", "/api/agents/next")
    assert claimed["connect"]["mode"] == "call_back"
    body = {"queue": "security", "note": "a SIM swap: security calls"}
    sent = api(client, alice, "POST", f"/api/cases/{claimed['case']['id']}/transfer", json=body)
    assert sent["mode"] == "call_back"
    row = the_case(db)
    assert (row["status"], row["agent_id"], row["queue"], row["priority"]) == (
        "callback_requested",
        None,
        "security",
        "emergency",  # the queue's own: security's node is the emergency lane
    )


def test_a_case_a_supervisor_moved_says_so_until_an_agent_sends_it_on(
    phone: Phone, client: TestClient, db: Engine, alice: str
) -> None:
    """The agent who takes a case a supervisor moved in line reads who moved it, from what
    and why. Sent on, its priority is the agent's choice there, and the move is no longer
    said: it was of the line it left."""
    phone.call(ScriptedParty(list(CALL_ME_BACK)), from_number="+15005554321")
    sam = make_user(db, "sam", "supervisor")
    [waiting] = api(client, sam, "GET", "/api/queue")
    why = {"priority": "high", "reason": "asked twice today"}
    api(client, sam, "POST", f"/api/cases/{waiting['case_id']}/priority", json=why)
    claimed = api(client, alice, "POST", "/api/agents/next")["case"]
    assert (claimed["priority"], claimed["moved"]) == (
        "high",
        {"by": "supervisor:sam", "was": "normal", "why": "asked twice today"},
    )
    sent = api(client, alice, "POST", f"/api/cases/{claimed['id']}/transfer", json=TO_SECURITY_EN)
    assert (sent["case"]["priority"], sent["case"]["moved"]) == ("emergency", None)


@pytest.mark.parametrize("final_status", [True, False])
def test_a_transfer_whose_dial_report_never_came_is_finished_by_the_calls_end(
    phone: Phone, client: TestClient, db: Engine, alice: str, final_status: bool
) -> None:
    """The caller hung up after alice sent them on, and Twilio's report of her leg was lost:
    the call ended, the case still hers with the transfer asked. The call's final status
    puts it where it was sent, for a call back, at once: alice is free, not told both
    "resolve it" and "it is resolved there" until the sweep. With that report lost too, the
    sweep does, once, when it closes the call by its age."""
    seen: dict[str, Any] = {}

    holds = taken_at_first_round(client, alice, seen, then_holds=True)

    def talks(number: str) -> str:
        case_id = seen["first"]["case"]["id"]
        api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY)
        raise HangsUp  # and no report of the <Dial> reaches the hotline

    phone.call(Talks(PAYMENTS, holds, talks), final_status=final_status)
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    if not final_status:
        row = the_case(db)
        assert (row["status"], row["flags"]["transfer_to"]) == ("connected", "security")
        hotline.clock.advance(seconds=hotline.settings.call_max_age_seconds + 1)
        assert hotline.close_stale_calls() == 1
        assert hotline.finish_stale_transfers() == 1
    assert hotline.finish_stale_transfers() == 0
    row = the_case(db)
    assert (row["status"], row["queued"], row["agent_id"]) == ("abandoned", 1, None)
    assert (row["queue"], row["priority"], row["lane"]) == ("security", "emergency", 0)
    assert api(client, alice, "GET", "/api/agents/cases") == []


def test_a_case_being_sent_on_is_not_resolved_away(
    phone: Phone, client: TestClient, db: Engine, alice: str
) -> None:
    """alice sends the victim on and, out of habit, resolves before hanging up: refused (the
    caller would be told goodbye instead), and the victim reaches security."""
    seen: dict[str, Any] = {}

    def holds(poll: int) -> bool:
        if "first" not in seen:
            seen["first"] = api(client, alice, "POST", "/api/agents/next")
        return "resolve" not in seen

    def talks(number: str) -> None:
        case_id = seen["first"]["case"]["id"]
        api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY)
        seen["resolve"] = client.post(
            f"/api/cases/{case_id}/resolve", json={"notes": "sent on"}, headers=bearer(alice)
        )

    record = phone.call(Talks(PAYMENTS, holds, talks))
    assert seen["resolve"].status_code == 409
    assert "being sent on to security" in seen["resolve"].json()["detail"]
    assert heard(record, TRANSFERRED_ZH) and record.queue == "security"
    assert the_case(db)["status"] == "abandoned"  # hung up there: a call back, in its lane


def test_a_caller_whose_line_dropped_is_sent_on_for_a_call_back_at_once(
    phone: Phone, client: TestClient, db: Engine, alice: str
) -> None:
    """The caller's line drops while they talk to alice (the case stays hers); she sends
    the case to security, so that team calls back: no hang-up is coming to make it, so it is
    made now."""
    seen: dict[str, Any] = {}

    holds = taken_at_first_round(client, alice, seen, then_holds=True)

    def drops(number: str) -> None:
        raise HangsUp

    phone.call(Talks(PAYMENTS, holds, drops))
    assert the_case(db)["status"] == "connected"  # they talked: alice's to finish
    case_id = seen["first"]["case"]["id"]
    sent = api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY)
    assert sent["mode"] == "call_back" and sent["case"]["transfer"]["from_queue"] == "payments"
    row = the_case(db)
    assert (row["status"], row["queued"], row["agent_id"]) == ("abandoned", 1, None)
    assert (row["queue"], row["lane"]) == ("security", 0)
    assert api(client, alice, "GET", "/api/agents/cases") == []
    # Answered by alice, then a call back she asked for: not a caller who gave up waiting.
    with db.connect() as conn:
        report = stats.figures(conn, start=row["created_at"], end=row["created_at"] + HOUR)
    security = report.by_queue["security"]
    assert (security.abandoned, security.callbacks_requested) == (0, 1)


class Rates(Talks):
    """Talks, then at the survey after the agent (a keypad question, not on hold) has the
    agent try to send them on; then hangs up."""

    def __init__(self, *args: Any, at_survey: Callable[[], None]) -> None:
        super().__init__(*args)
        self.at_survey = at_survey
        self.talked = False

    def talk(self, number: str) -> None:
        self.talked = True

    def answer(self, prompt: Prompt) -> Answer:
        if self.talked and not prompt.in_queue:
            self.at_survey()
            return HangUp()
        return super().answer(prompt)


class BackInLine(Talks):
    """Talks; at the survey after the agent, presses 0 (not done yet: back in line), then
    holds while `on_hold` says so."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.talked = False

    def talk(self, number: str) -> None:
        self.talked = True

    def answer(self, prompt: Prompt) -> Answer:
        if self.talked and not prompt.in_queue:
            self.talked = False
            return Press("0")
        return super().answer(prompt)


@pytest.mark.parametrize("with_rest", [False, True])
def test_the_agent_a_caller_left_for_the_line_again_cannot_send_them_on(
    request: pytest.FixtureRequest, db: Engine, alice: str, with_rest: bool
) -> None:
    """Back in line from the survey, the caller is no longer on alice's call: her case
    cannot take them anywhere (the new case, in line, is whoever takes it next), nor can
    Twilio's REST API pull them out of the line they are in."""
    if with_rest:
        client, phone = request.getfixturevalue("rest")
    else:
        client, phone = request.getfixturevalue("client"), request.getfixturevalue("phone")
    seen: dict[str, Any] = {}
    polls: list[int] = []

    def holds(poll: int) -> bool:
        if "first" not in seen:
            seen["first"] = api(client, alice, "POST", "/api/agents/next")
            return True
        polls.append(poll)
        if len(polls) == 1:
            seen["refused"] = refused(client, alice, seen["first"]["case"]["id"], TO_SECURITY)
        return len(polls) < 2

    phone.call(BackInLine(PAYMENTS, holds, lambda number: None))
    assert seen["refused"][0] == 409 and "left your call" in seen["refused"][1]
    with db.connect() as conn:
        rows = conn.execute(select(cases.c.queue, cases.c.flags).order_by(cases.c.id)).all()
    assert [queue for queue, _ in rows] == ["payments", "payments"]
    assert all("transfer_to" not in (flags or {}) for _, flags in rows)


def test_a_caller_who_left_the_agents_call_cannot_be_sent_on_without_twilios_rest_api(
    phone: Phone, client: TestClient, db: Engine, alice: str
) -> None:
    seen: dict[str, Any] = {}

    holds = taken_at_first_round(client, alice, seen, then_holds=True)

    def at_survey() -> None:
        case_id = seen["first"]["case"]["id"]
        seen["refused"] = refused(client, alice, case_id, TO_SECURITY)

    phone.call(Rates(PAYMENTS, holds, lambda number: None, at_survey=at_survey))
    assert seen["refused"][0] == 409 and "left your call" in seen["refused"][1]
    assert "transfer_to" not in the_case(db)["flags"]


def test_unscreened_a_hang_up_reported_before_the_dial_end_still_sends_the_case_on(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
) -> None:
    """IVR_AGENT_SCREENING off: nothing marks the agent's answer until the <Dial> ends. The
    caller hangs up after alice sent them on, and the call's final status is handled before
    the <Dial>'s report: the case is a call back in the lane it was sent to, nobody's."""
    settings = make_settings(IVR_DATABASE_URL=database_url, IVR_AGENT_SCREENING=False)
    alice = make_user(db, "alice", "agent", ALICE_PHONE)
    documents: list[str] = []

    def keep(body: str) -> None:
        check_twiml(body)
        documents.append(body)

    with TestClient(
        create_app(settings, tree=hotline_tree, db=db, clock=clock), base_url=HTTPS_CLIENT
    ) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=keep)
        seen: dict[str, Any] = {}

        holds = taken_at_first_round(client, alice, seen, then_holds=True)

        def talks(number: str) -> None:
            case_id = seen["first"]["case"]["id"]
            api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY)
            sid = the_case(db)["call_sid"]
            base = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "CallStatus": "completed"}
            phone.signed_post(f"{PUBLIC_URL}/twilio/status", {**base, "CallDuration": "60"})
            phone.signed_post(dial_action(documents), {**base, "DialCallStatus": "completed"})
            raise HangsUp

        phone.call(Talks(PAYMENTS, holds, talks))
        assert api(client, alice, "GET", "/api/agents/cases") == []
    row = the_case(db)
    assert (row["status"], row["agent_id"], row["queue"], row["lane"]) == (
        "abandoned",
        None,
        "security",
        0,
    )


def test_a_transferred_case_waits_from_when_it_was_sent_in_the_figures_and_the_pages(
    phone: Phone, client: TestClient, db: Engine, clock: FakeClock, alice: str, ben: str
) -> None:
    """alice talks ten minutes, then sends the victim to the emergency lane, where ben takes
    them at once: nobody waited ten minutes for an agent, nobody is paged for it, and the
    security queue answered within its target. Each line counts its own answer, and each
    agent their own talk: alice's ten minutes are hers, not lost with the transfer."""
    seen: dict[str, Any] = {}

    def holds(poll: int) -> bool:
        if "first" not in seen:
            seen["first"] = api(client, alice, "POST", "/api/agents/next")
        elif "next" not in seen:
            with db.connect() as conn:
                seen["overdue"] = oncall.overdue(conn, now=clock(), after=timedelta(seconds=60))
            seen["next"] = api(client, ben, "POST", "/api/agents/next")
        return poll < 2

    def talks(number: str) -> None:
        if number == ALICE_PHONE:
            clock.advance(minutes=10)
            case_id = seen["first"]["case"]["id"]
            api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY)

    record = phone.call(Talks(PAYMENTS, holds, talks))
    assert record.dialed == BEN_PHONE
    assert seen["overdue"] is None
    with db.connect() as conn:
        # Half-open: the transfer was made at clock(), which an `end` of clock() leaves out.
        end = clock() + timedelta(seconds=1)
        report = stats.figures(conn, start=clock() - timedelta(hours=1), end=end)
    security = report.by_queue["security"]
    assert (security.answered, security.average_speed_of_answer_seconds) == (1, 0.0)
    assert security.service_level == 1.0
    payments = report.by_queue["payments"]  # answered there first, at once
    assert (payments.offered, payments.answered, payments.abandoned) == (1, 1, 0)
    assert (payments.average_speed_of_answer_seconds, payments.service_level) == (0.0, 1.0)
    assert payments.average_handle_time_seconds == 600.0  # until she sent them on
    assert (report.overall.offered, report.overall.answered) == (2, 2)
    by_agent = report.by_agent
    assert (by_agent["ben"].handled, by_agent["ben"].transfers) == (1, 0)
    alice_did = by_agent["alice"]
    assert (alice_did.handled, alice_did.transfers) == (1, 1)
    assert alice_did.average_handle_time_seconds == 600.0


def test_unscreened_the_report_of_the_leg_a_transfer_cut_is_not_news(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
    twilio_http: RecordingTwilio,
) -> None:
    """IVR_AGENT_SCREENING off, with Twilio's REST API: the transfer is fetched first, and
    then Twilio reports the cut leg as answered and over. That is not the agent hanging up on
    a caller they served: the caller stays where they were sent, not told goodbye."""
    app = app_with_twilio(
        database_url, hotline_tree, db, clock, twilio_http, IVR_AGENT_SCREENING=False
    )
    alice = make_user(db, "alice", "agent", ALICE_PHONE)
    seen: dict[str, Any] = {}
    with on_the_line(app, check_twiml, twilio_http) as (client, phone):
        holds = taken_at_first_round(client, alice, seen)

        def talks(number: str) -> None:
            case_id = seen["first"]["case"]["id"]
            api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY)
            (sid, connect_url), (_, transfer_url) = twilio_http.redirects
            params = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "CallStatus": "in-progress"}
            dial = etree.fromstring(phone.signed_post(connect_url, params).content).find("Dial")
            seen["reached"] = clock()
            clock.advance(seconds=315)  # her phone rang 15 s; they talked 300 s
            seen["sent"] = phone.signed_post(transfer_url, params).text
            seen["cut"] = phone.signed_post(
                dial.get("action"),
                {**params, "DialCallStatus": "completed", "DialCallDuration": "300"},
            ).text

        record = phone.call(Talks(PAYMENTS, holds, talks))
    assert seen["cut"] == seen["sent"] and "<Enqueue" in seen["sent"]
    # Late, the report still dates her answer in the talk the figures keep: after the ring.
    [leg] = the_case(db)["legs"]
    assert leg["answered_at"] == (seen["reached"] + timedelta(seconds=15)).isoformat()
    assert record.queue == "security" and record.ended_by == "caller"
    with db.connect() as conn:
        outcomes = conn.execute(
            select(call_events.c.outcome).where(call_events.c.kind == "input")
        ).scalars()
        assert "agent_done" not in list(outcomes)  # nobody told them goodbye


def test_a_caller_sent_on_from_the_survey_hears_the_next_agents_survey_not_the_queue(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
    twilio_http: RecordingTwilio,
    ben: str,
) -> None:
    """alice hung up and the caller is at her survey when she sends them on (Twilio's REST
    API moves the call). ben serves them and hangs up: his survey, not back on hold where
    no case of theirs waits. (Screening off: ben's phone answering is his taking the call.)"""
    app = app_with_twilio(
        database_url, hotline_tree, db, clock, twilio_http, IVR_AGENT_SCREENING=False
    )
    alice = make_user(db, "alice", "agent", ALICE_PHONE)
    seen: dict[str, Any] = {}
    with on_the_line(app, check_twiml, twilio_http) as (client, phone):
        holds = taken_at_first_round(client, alice, seen, then_holds=True)

        def at_survey() -> None:
            case_id = seen["first"]["case"]["id"]
            sent = api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY)
            assert sent["mode"] == "redirected"
            sid, transfer_url = twilio_http.redirects[-1]
            base = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "CallStatus": "in-progress"}
            assert "<Enqueue" in phone.signed_post(transfer_url, base).text
            assert api(client, ben, "POST", "/api/agents/next")["case"]["id"] == case_id
            _, connect_url = twilio_http.redirects[-1]
            dial = etree.fromstring(phone.signed_post(connect_url, base).content).find("Dial")
            assert dial is not None and BEN_PHONE in "".join(dial.itertext())
            seen["after_ben"] = phone.signed_post(
                str(dial.get("action")), {**base, "DialCallStatus": "completed"}
            ).text

        phone.call(Rates(PAYMENTS, holds, lambda number: None, at_survey=at_survey))
    check_twiml(seen["after_ben"])
    assert "<Enqueue" not in seen["after_ben"] and "<Gather" in seen["after_ben"]


def test_a_caller_whose_transfer_failed_is_sent_on_by_the_hold_loop(
    phone: Phone, client: TestClient, db: Engine, alice: str
) -> None:
    """alice sends the caller on and hangs up, and the report of her leg fails once (a
    database blip): the fallback queues the caller. Holding, they are out of her call: the
    hold loop sends them on, and alice is free for the next case."""
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    seen: dict[str, Any] = {}

    def blip(*args: Any, **kwargs: Any) -> str:
        del hotline.transferred  # once
        raise RuntimeError("database blip")

    def holds(poll: int) -> bool:
        if "first" not in seen:
            seen["first"] = api(client, alice, "POST", "/api/agents/next")
            return True
        seen["queue"] = api(client, alice, "GET", "/api/queue")
        seen["mine"] = api(client, alice, "GET", "/api/agents/cases")
        return False

    def talks(number: str) -> None:
        case_id = seen["first"]["case"]["id"]
        api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY)
        hotline.transferred = blip

    record = phone.call(Talks(PAYMENTS, holds, talks))
    assert record.queue == "general"  # the fallback's queue, holding
    [waiting] = seen["queue"]
    assert (waiting["queue"], waiting["priority"]) == ("security", "emergency")
    assert seen["mine"] == []
    row = the_case(db)
    assert (row["status"], row["lane"], row["flags"]["transfers"]) == ("abandoned", 0, "1")


def test_a_caller_sent_to_agents_who_speak_their_language_waits_for_one_from_then(
    phone: Phone, client: TestClient, db: Engine, clock: FakeClock, alice: str
) -> None:
    """alice talks ten minutes and sends the caller to a Mandarin speaker. The language wait
    (IVR_LANGUAGE_OVERFLOW, 60 s) counts from then, not from their call: carl, who speaks
    only English, is not given them at once; a minute later he is."""
    carl = make_user(db, "carl", "agent", "+15005550007")
    with db.connect() as conn:
        carl_id = conn.execute(select(users.c.id).where(users.c.name == "carl")).scalar_one()
    seen: dict[str, Any] = {}
    to = {"queue": "account", "priority": "high", "language": "zh-CN", "note": "speaks Mandarin"}

    def carl_claims() -> Any:
        with db.connect() as conn:
            return cases_module.claim_next(
                conn,
                agent_id=carl_id,
                now=clock(),
                speaks=["en"],
                wait=cases_module.LanguageWait(timedelta(seconds=60), timedelta(seconds=15)),
                on_shift=None,
            )

    def holds(poll: int) -> bool:
        if "first" not in seen:
            seen["first"] = api(client, alice, "POST", "/api/agents/next")
            return True
        seen["at_once"] = carl_claims()
        clock.advance(seconds=61)
        seen["later"] = carl_claims()
        return False

    def talks(number: str) -> None:
        clock.advance(minutes=10)
        case_id = seen["first"]["case"]["id"]
        api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=to)

    phone.call(Talks(PAYMENTS, holds, talks))
    assert seen["at_once"] is None
    assert seen["later"] is not None and seen["later"]["language"] == "zh-CN"
    assert carl


def test_an_emergency_sent_on_without_a_priority_stays_an_emergency(
    phone: Phone, client: TestClient, db: Engine, alice: str
) -> None:
    """A hijack victim in security sent on to the account team, the priority left to the
    queue's own (high): still an emergency. Said outright, it is what the agent says."""
    seen: dict[str, Any] = {}

    holds = taken_at_first_round(client, alice, seen)

    def talks(number: str) -> None:
        case_id = seen["first"]["case"]["id"]
        body = {"queue": "account", "note": "their 2FA was reset by someone"}
        seen["sent"] = api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=body)

    phone.call(Talks(HIJACKED, holds, talks))
    assert seen["first"]["case"]["priority"] == "emergency"
    assert (seen["sent"]["case"]["transfer"]["to"], the_case(db)["priority"]) == (
        "account",
        "emergency",
    )
    assert the_case(db)["lane"] == 0


def test_a_supervisor_may_close_a_case_being_sent_on(
    phone: Phone, client: TestClient, db: Engine, alice: str
) -> None:
    sam = make_user(db, "sam", "supervisor")
    seen: dict[str, Any] = {}

    holds = taken_at_first_round(client, alice, seen)

    def talks(number: str) -> None:
        case_id = seen["first"]["case"]["id"]
        api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY)
        seen["sam"] = api(
            client, sam, "POST", f"/api/cases/{case_id}/resolve", json={"notes": "a prank"}
        )

    record = phone.call(Talks(PAYMENTS, holds, talks))
    assert seen["sam"]["status"] == "resolved" and seen["sam"]["transfer"]["to"] is None
    assert not heard(record, TRANSFERRED_ZH)  # nobody sent on: the case was closed


def test_a_call_back_sent_on_where_the_number_has_one_already_is_one_call_back(
    phone: Phone, client: TestClient, db: Engine, alice: str
) -> None:
    """The number called twice and hung up twice, in two queues; alice sends the first call
    back to the other's queue: one call back there, not two calls to the same customer."""
    phone.call(ScriptedParty(list(CALL_ME_BACK)), from_number="+15005554321")
    phone.call(ScriptedParty(list(PAYMENTS)), from_number="+15005554321")
    claimed = api(client, alice, "POST", "/api/agents/next")
    body = {"queue": "payments", "note": "the deposit, as in their other call"}
    api(client, alice, "POST", f"/api/cases/{claimed['case']['id']}/transfer", json=body)
    waiting = api(client, alice, "GET", "/api/queue")
    assert [(w["queue"], w["caller"]) for w in waiting] == [("payments", "***4321")]


def test_a_call_back_offered_at_the_desk_is_accepted_before_it_is_sent_on(
    phone: Phone, client: TestClient, db: Engine, alice: str
) -> None:
    phone.call(ScriptedParty(list(CALL_ME_BACK)), from_number="+15005554321")
    claimed = api(client, alice, "POST", "/api/agents/next")
    with db.begin() as conn:  # as dispatch offers it to an available agent, at her desk
        conn.execute(cases.update().values(accept_by=the_case(db)["created_at"] + HOUR))
    status, detail = refused(client, alice, claimed["case"]["id"], TO_SECURITY)
    assert (status, detail) == (409, "accept the case first")


def test_a_call_back_sent_on_after_a_long_wait_is_still_a_late_abandon(
    phone: Phone, client: TestClient, db: Engine, clock: FakeClock, alice: str
) -> None:
    """The caller waited five minutes and hung up; sent on to security since, their case is
    still an abandon after the target in the figures (their wait was in the line they left)."""

    def holds(poll: int) -> bool:
        clock.advance(minutes=5)
        return False

    phone.call(Talks(list(PAYMENTS), holds, lambda number: None))
    row = the_case(db)
    clock.advance(minutes=1)
    claimed = api(client, alice, "POST", "/api/agents/next")
    assert claimed["connect"]["mode"] == "call_back"
    body = {"queue": "security", "note": "security calls back"}
    api(client, alice, "POST", f"/api/cases/{claimed['case']['id']}/transfer", json=body)
    with db.connect() as conn:
        report = stats.figures(conn, start=row["created_at"], end=row["created_at"] + HOUR)
    assert (report.overall.abandoned, report.overall.service_level) == (1, 0.0)


@pytest.fixture
def old_catalogs(
    tmp_path: Path,
    database_url: str,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
    twilio_http: RecordingTwilio,
) -> Iterator[tuple[TestClient, Phone]]:
    """As `rest`, on an operator's catalogs (or a tree version stored) from before
    `call_transferred` and `callback_sent_on` were shipped: warned of, not refused."""
    prompts = catalogs_without(tmp_path / "prompts", "call_transferred", "callback_sent_on")
    tree = load_tree(PROJECT_ROOT / "routes" / "hotline.yaml", prompts)
    warned = " ".join(p.message for p in tree.warnings)
    assert "'call_transferred' is missing" in warned and "'callback_sent_on' is missing" in warned
    app = app_with_twilio(database_url, tree, db, clock, twilio_http)
    with on_the_line(app, check_twiml, twilio_http) as line:
        yield line


def test_catalogs_from_before_the_transfer_prompt_still_send_callers_on(
    old_catalogs: tuple[TestClient, Phone], alice: str
) -> None:
    """The caller sent on hears nothing before the new queue's hold loop, and is there."""
    client, phone = old_catalogs
    seen: dict[str, Any] = {}
    holds = taken_at_first_round(client, alice, seen)

    def sends(number: str) -> None:
        case_id = seen["first"]["case"]["id"]
        api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY_EN)

    caller = phone.call(Talks(PAYMENTS, holds, sends))
    assert caller.queue == "security" and not heard(caller, TRANSFERRED_EN)


def test_catalogs_from_before_the_call_back_prompt_still_send_call_backs_on(
    old_catalogs: tuple[TestClient, Phone], twilio_http: RecordingTwilio, db: Engine, alice: str
) -> None:
    """The customer called back and sent on hears goodbye; the case is in security's line."""
    client, phone = old_catalogs
    case_id = called_back(client, phone, alice)

    def sends(number: str) -> None:
        api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY_EN)

    customer = answered(phone, twilio_http, sends)
    assert customer.ended_by == "hotline" and not heard(customer, SENT_ON_EN)
    assert heard(customer, "Thank you for calling. Goodbye.")
    assert (the_case(db)["queue"], the_case(db)["agent_id"]) == ("security", None)


def test_a_late_report_of_an_earlier_call_back_does_not_make_the_next_ones_transfer(
    rest: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    clock: FakeClock,
    alice: str,
) -> None:
    """Screened, alice took the first call back with a key (its offer says only that it was
    answered, not which call). She sends it on, takes it again, and talking to the customer
    on Twilio's second call asks to send it on again (Twilio's REST API failing: made when
    that call ends). A late copy of the first call's <Dial> report must not make it while
    they still talk."""
    client, phone = rest
    case_id = called_back(client, phone, alice)

    def sends(number: str) -> None:
        api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY_EN)

    first = answered(phone, twilio_http, sends)
    [(late_url, late_params)] = [(u, p) for u, p in first.requests if "/connect-done" in u]
    clock.advance(seconds=31)
    assert api(client, alice, "POST", "/api/agents/next")["case"]["id"] == case_id
    seen: dict[str, Any] = {}

    def asks_again(number: str) -> None:
        twilio_http.refuse = True
        to_kyc = {"queue": "kyc", "note": "a KYC matter after all"}
        seen["sent"] = api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=to_kyc)
        twilio_http.refuse = False
        seen["late"] = phone.signed_post(late_url, late_params)
        seen["meanwhile"] = the_case(db)

    answered(phone, twilio_http, asks_again)
    assert seen["sent"]["mode"] == "on_hang_up"
    assert seen["late"].status_code == 200 and "<Hangup" in seen["late"].text
    meanwhile = seen["meanwhile"]
    assert (meanwhile["status"], meanwhile["queue"], meanwhile["flags"]["transfer_to"]) == (
        "connected",
        "security",
        "kyc",
    )
    row = the_case(db)  # made when the second call ended
    assert (row["queue"], row["agent_id"], row["queued"]) == ("kyc", None, 1)


def test_a_call_back_sent_on_whose_calls_end_went_unreported_does_not_stay_with_its_agent(
    rest: tuple[TestClient, Phone],
    twilio_http: RecordingTwilio,
    db: Engine,
    clock: FakeClock,
    alice: str,
) -> None:
    """Twilio cannot redirect as alice sends the call back on ("on_hang_up"); the customer
    hangs up, and neither report of it (her <Dial>'s, the call's status callback) reaches
    the hotline (an instance restarting, a database blip). alice can neither resolve it
    (being sent on) nor send it again (asked already): once no call can still be going on
    (IVR_CALL_MAX_AGE after it was put through), the sweep makes the transfer, as it does
    for callers who called in, and security calls them back."""
    client, phone = rest
    case_id = called_back(client, phone, alice)
    placed = {k: v for k, v in placed_calls(twilio_http)[-1].items() if k != "StatusCallback"}

    def talks(number: str) -> None:
        twilio_http.refuse = True
        api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY_EN)
        twilio_http.refuse = False
        raise HangsUp  # and no report of the <Dial> reaches the hotline

    phone.answer(placed, Talks([], lambda poll: False, talks), call_sid=twilio_http.sids[-1])
    assert (the_case(db)["status"], the_case(db)["flags"]["transfer_to"]) == (
        "connected",
        "security",
    )
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    assert hotline.finish_stale_transfers() == 0  # the call may still be going on
    clock.advance(hours=6)  # IVR_CALL_MAX_AGE: it cannot be any more
    assert hotline.finish_stale_transfers() == 1
    assert hotline.finish_stale_transfers() == 0
    in_securitys_line(db)
    assert api(client, alice, "GET", "/api/agents/cases") == []


def test_catalogs_from_before_the_transfer_prompt_still_send_callers_on_in_their_language(
    old_catalogs: tuple[TestClient, Phone], alice: str
) -> None:
    """Catalogs without `call_transferred` (an operator's older copy, a stored version): alice
    sends the caller to security's Mandarin speakers. They hear nothing before the new
    queue, as the fallback says, but the queue must still speak Mandarin to them: the
    language they were sent on in does not depend on the prompt that says so."""
    client, phone = old_catalogs
    seen: dict[str, Any] = {}

    def holds(poll: int) -> bool:
        if "first" not in seen:
            seen["first"] = api(client, alice, "POST", "/api/agents/next")
            return True
        return poll < 2  # a round in security's line, then they hang up

    def sends(number: str) -> None:
        case_id = seen["first"]["case"]["id"]
        api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=TO_SECURITY)

    caller = phone.call(Talks(PAYMENTS, holds, sends))
    assert caller.queue == "security"
    assert any("感谢您的耐心等待" in line or "您目前排在第" in line for line in caller.heard), (
        caller.heard[-6:]
    )


# -- a caller sent on does not go back to the agent who sent them ----------------------------


def ben_busy_with_a_call_back(phone: Phone, client: TestClient, ben: str) -> None:
    """A caller who hung up on hold, and ben dialling their call back himself: he has a case
    (one at a time) until he resolves it."""
    phone.call(Caller(list(PAYMENTS), lambda poll: False), from_number="+15005550111")
    taken = api(client, ben, "POST", "/api/agents/next")
    assert taken["connect"]["mode"] == "call_back"


def test_a_caller_sent_on_goes_to_another_agent_not_back_to_the_one_who_sent_them(
    phone: Phone, client: TestClient, db: Engine, alice: str, ben: str
) -> None:
    """alice and ben speak every language and have no teams: "security" is served by them
    both. ben is on a call back when alice sends her caller to security: the caller hears
    they are passed to the team who can help, and must not get alice again because she is
    the one free. Neither the offers pushed to available agents nor her own "next" give it
    to her; ben, once free, gets it."""
    ben_busy_with_a_call_back(phone, client, ben)
    for agent in (alice, ben):
        api(client, agent, "PUT", "/api/agents/presence", json={"available": True})
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    seen: dict[str, Any] = {}

    def holds(poll: int) -> bool:
        if "first" not in seen:
            seen["first"] = hotline.dispatch()  # alice: ben has a case
        elif "sent" in seen and "alice_pushed" not in seen:
            seen["alice_pushed"] = hotline.dispatch()
            seen["alice_asked"] = api(client, alice, "POST", "/api/agents/next")
            [ben_case] = api(client, ben, "GET", "/api/agents/cases")
            done = {"notes": "called back, sorted", "reached": True}
            api(client, ben, "POST", f"/api/cases/{ben_case['id']}/resolve", json=done)
            seen["ben_pushed"] = hotline.dispatch()
        return poll < 3

    def talks(number: str) -> str:
        if number == ALICE_PHONE:
            [mine] = api(client, alice, "GET", "/api/agents/cases")
            body = {"queue": "security", "note": "a hijack: funds leaving"}
            seen["sent"] = api(
                client, alice, "POST", f"/api/cases/{mine['id']}/transfer", json=body
            )
        return "completed"

    record = phone.call(Talks(PAYMENTS, holds, talks))
    assert seen["first"] == 1 and seen["sent"]["mode"] == "on_hang_up"
    assert heard(record, TRANSFERRED_EN) and record.queue == "security"
    assert (seen["alice_pushed"], seen["alice_asked"]["case"]) == (0, None)
    assert seen["ben_pushed"] == 1
    assert record.dialed == BEN_PHONE
    with db.connect() as conn:
        ben_id = conn.execute(select(users.c.id).where(users.c.name == "ben")).scalar_one()
        [(status, agent_id)] = conn.execute(
            select(cases.c.status, cases.c.agent_id).where(cases.c.queue == "security")
        ).all()
    assert (status, agent_id) == ("connected", ben_id)


@pytest.mark.parametrize(
    ("queue", "wait"), [("security", 20), ("trading", 120)], ids=["emergency", "normal"]
)
def test_a_caller_sent_on_goes_back_to_its_sender_only_once_nobody_else_came_for_a_while(
    phone: Phone,
    client: TestClient,
    db: Engine,
    clock: FakeClock,
    alice: str,
    ben: str,
    queue: str,
    wait: int,
) -> None:
    """ben is busy the whole time: alice, the one free, is not offered the caller she sent
    on until it waited IVR_EMERGENCY_TRANSFER_RETURN (20 s) in the emergency lane, or
    IVR_TRANSFER_RETURN (120 s) in the others; then she is, asking or not: a victim never
    waits for nobody."""
    ben_busy_with_a_call_back(phone, client, ben)
    api(client, alice, "PUT", "/api/agents/presence", json={"available": True})
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    seen: dict[str, Any] = {}

    def holds(poll: int) -> bool:
        if "first" not in seen:
            seen["first"] = api(client, alice, "POST", "/api/agents/next")
        elif "sent" in seen and "at_once" not in seen:
            seen["at_once"] = (hotline.dispatch(), api(client, alice, "POST", "/api/agents/next"))
            clock.advance(seconds=wait - 1)
            seen["nearly"] = (hotline.dispatch(), api(client, alice, "POST", "/api/agents/next"))
            clock.advance(seconds=1)
            seen["then"] = hotline.dispatch()
        return poll < 3

    def talks(number: str) -> str:
        if "sent" not in seen:
            case_id = seen["first"]["case"]["id"]
            body = {"queue": queue, "note": "theirs, not payments'"}
            seen["sent"] = api(client, alice, "POST", f"/api/cases/{case_id}/transfer", json=body)
        return "completed"

    record = phone.call(Talks(PAYMENTS, holds, talks))
    with db.connect() as conn:
        lane = conn.execute(select(cases.c.lane).where(cases.c.queue == queue)).scalar_one()
    assert lane == (0 if queue == "security" else 1)
    assert record.queue == queue
    assert [(n, asked["case"]) for n, asked in (seen["at_once"], seen["nearly"])] == [(0, None)] * 2
    assert seen["then"] == 1 and record.dialed == ALICE_PHONE


def test_a_transfer_that_changes_nothing_is_refused(
    phone: Phone, client: TestClient, db: Engine, alice: str
) -> None:
    """The desk's transfer form opens on the caller's own queue and language, the priority
    the queue's own: a note typed and Transfer pressed would tell the caller they are passed
    on and put them back in the same line. Refused (422), by the API and at the desk, with
    nothing changed; another language is a transfer."""
    client.post("/dashboard/login", data={"token": alice}, follow_redirects=False)
    seen: dict[str, Any] = {}
    holds = taken_at_first_round(client, alice, seen)

    def talks(number: str) -> str:
        case_id = seen["first"]["case"]["id"]
        path = f"/api/cases/{case_id}/transfer"
        note = "same queue mistake"
        seen["default"] = refused(client, alice, case_id, {"queue": "payments", "note": note})
        same = {"queue": "payments", "priority": "normal", "language": "en", "note": note}
        seen["spelled_out"] = refused(client, alice, case_id, same)
        desk = client.post(
            f"/dashboard/desk/{case_id}/transfer",
            data={"queue": "payments", "priority": "", "language": "en", "note": note},
            follow_redirects=False,
        )
        seen["desk"] = (desk.status_code, html.fromstring(desk.text))
        seen["flags"] = dict(the_case(db)["flags"])
        other = {**same, "language": "zh-CN", "note": "speaks Mandarin"}
        seen["other"] = api(client, alice, "POST", path, json=other)
        return "completed"

    record = phone.call(Talks(PAYMENTS, holds, talks))
    for status, detail in (seen["default"], seen["spelled_out"]):
        assert status == 422
        assert detail.startswith("that transfer changes nothing: the case is in payments at ")
    status, desk = seen["desk"]
    assert status == 422
    [error] = desk.xpath("//p[@id='desk-error']/text()")
    assert "changes nothing" in error
    assert desk.xpath("//input[@name='note']/@value") == ["same queue mistake"]
    assert "transfer_to" not in seen["flags"] and "transferred_by" not in seen["flags"]
    assert seen["other"]["mode"] == "on_hang_up"
    assert heard(record, TRANSFERRED_ZH)
    with db.connect() as conn:
        reasons = (
            conn.execute(select(audit_log.c.reason).where(audit_log.c.action == "transfer"))
            .scalars()
            .all()
        )
    assert reasons == ["to payments (normal): speaks Mandarin"]
