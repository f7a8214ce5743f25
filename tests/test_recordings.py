"""Calls with agents recorded by Twilio (IVR_RECORD_AGENT_CALLS): the caller is told before
the agent's phone rings, Twilio records from the agent's answer, and its report of the
recording is kept with the case, once, and shown in the call's timeline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from lxml import etree
from sqlalchemy import Engine

from ivr.db import recordings
from ivr.phone import CallRecord, Phone, Press
from ivr.tree import CompiledTree
from ivr.web import create_app
from tests.conftest import (
    PUBLIC_URL,
    TOKEN,
    FakeClock,
    bearer,
    count,
    make_settings,
    make_user,
)
from tests.support.parties import Caller

AGENT_PHONE = "+15005559999"
CALLER = "+15005550008"
DEPOSITS = [Press("1"), Press("3"), Press("1"), Press("1")]  # a question for an agent
ACCOUNT = "AC" + "0" * 32
RECORDING = "RE" + "a" * 32
MEDIA = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings/{RECORDING}"
NOTICE = "This call will be recorded, for your protection and for the quality of our service."


def put_through(client: TestClient, phone: Phone, agent: str) -> tuple[CallRecord, Any]:
    """A caller holds; the agent takes their case, and the next hold round puts them through
    to the agent's phone. The call, and the TwiML document that dialled the agent."""

    def holds(poll: int) -> bool:
        if poll == 1:
            taken = client.post("/api/agents/next", headers=bearer(agent))
            assert taken.status_code == 200, taken.text
        return poll < 5

    record = phone.call(Caller(DEPOSITS, holds), from_number=CALLER)
    assert record.dialed == AGENT_PHONE and record.agent_took is True
    [dialled] = [d for d in record.documents if "<Dial" in d and AGENT_PHONE in d]
    return record, etree.fromstring(dialled.encode())


def report(record: CallRecord, **fields: str) -> dict[str, str]:
    """Twilio's recording status callback, as it sends it."""
    return {
        "AccountSid": ACCOUNT,
        "CallSid": record.call_sid,
        "RecordingSid": RECORDING,
        "RecordingUrl": MEDIA,
        "RecordingStatus": "completed",
        "RecordingDuration": "151",
        "RecordingChannels": "2",
        "RecordingSource": "DialVerb",
        **fields,
    }


def test_a_call_with_an_agent_is_recorded_after_the_caller_is_told(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
) -> None:
    settings = make_settings(IVR_DATABASE_URL=database_url, IVR_RECORD_AGENT_CALLS=True)
    app = create_app(settings, tree=hotline_tree, db=db, clock=clock)
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    sam = make_user(db, "sam", "supervisor")
    with TestClient(app) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        record, doc = put_through(client, phone, alice)
        # Told before the agent's phone rings; recorded from the agent's answer, each side on
        # its own channel (the agent's screen and the ringing are not the conversation).
        said = [say.text for say in doc.iter("Say")]
        assert NOTICE in said and doc[-1].tag == "Dial"
        dial = doc.find("Dial")
        assert dial.get("record") == "record-from-answer-dual"
        where = dial.get("recordingStatusCallback")
        assert where.startswith(f"{PUBLIC_URL}/twilio/recording?case=")
        # Twilio reports the recording (twice, as it may): kept once.
        for _ in range(2):
            answer = phone.signed_post(where, report(record))
            assert (answer.status_code, answer.text) == (204, "")
        assert count(db, recordings) == 1
        # Unsigned, or signed for another case's URL: refused, nothing kept.
        forged = client.post(where, data=report(record, RecordingSid="RE" + "b" * 32))
        assert forged.status_code == 403
        # Signed, but a recording somewhere that is not Twilio's: not kept.
        elsewhere = report(
            record, RecordingSid="RE" + "c" * 32, RecordingUrl="https://evil.example/x.mp3"
        )
        assert phone.signed_post(where, elsewhere).status_code == 204
        assert count(db, recordings) == 1
        timeline = client.get(f"/api/calls/{record.call_sid}", headers=bearer(sam)).json()
        [case] = timeline["cases"]
        [kept] = timeline["recordings"]
        assert (kept["ticket"], kept["recording_sid"], kept["status"]) == (
            case["ticket"],
            RECORDING,
            "completed",
        )
        assert (kept["seconds"], kept["url"]) == (151, MEDIA)
        client.post("/dashboard/login", data={"token": sam}, follow_redirects=False)
        page = client.get(f"/dashboard/calls/{record.call_sid}").text
        assert "<h2>Recordings</h2>" in page and RECORDING in page and "02:31" in page


def test_calls_are_not_recorded_unless_the_operator_says_so(
    client: TestClient, phone: Phone, db: Engine
) -> None:
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    _, doc = put_through(client, phone, alice)
    dial = doc.find("Dial")
    assert dial.get("record") is None and dial.get("recordingStatusCallback") is None
    assert NOTICE not in [say.text for say in doc.iter("Say")]
