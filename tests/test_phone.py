"""The Twilio-like phone itself: it must behave like Twilio, or scenario tests lie."""

from __future__ import annotations

import itertools

import httpx
import pytest

from ivr.exceptions import PhoneError
from ivr.phone import HangUp, Phone, Press, ScriptedParty, Silent, Speak, keypad, parse_script


@pytest.mark.parametrize(
    ("pressed", "finish", "num", "expected"),
    [
        ("1", "#", 1, ("1", "")),
        ("#", "#", 1, ("", "#")),  # Twilio's default finish key swallows '#'
        ("#", "", 1, ("#", "")),  # with finishOnKey="" it is a digit like any other
        ("123#", "#", None, ("123", "#")),
        ("12345", "#", 3, ("123", "")),
        ("*", "#", 1, ("*", "")),
    ],
)
def test_keypad_matches_twilio_gather(
    pressed: str, finish: str, num: int | None, expected: tuple[str, str]
) -> None:
    assert keypad(pressed, finish, num) == expected


def test_parse_script() -> None:
    assert parse_script("1, -,say:my account was hacked,#,") == [
        Press("1"),
        Silent(),
        Speak("my account was hacked"),
        Press("#"),
        Silent(),
    ]
    with pytest.raises(ValueError, match="'x' is not keys"):
        parse_script("1,x")
    assert HangUp() == HangUp()


MENU = (
    '<?xml version="1.0" encoding="UTF-8"?><Response>'
    '<Gather action="https://h.test/twilio/gather" numDigits="1"><Say>Press 1.</Say></Gather>'
    "</Response>"
)


@pytest.mark.parametrize("same", [True, False], ids=["alike", "different"])
def test_a_press_delivered_several_times_must_be_answered_alike(same: bool) -> None:
    """`Press(deliveries=N)` posts N copies at once; a hotline that answers them differently
    (not idempotent) fails the call."""
    seen: list[str] = []
    count = itertools.count()

    def hotline(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path == "/twilio/voice":
            return httpx.Response(200, text=MENU)
        if request.url.path == "/twilio/status":
            return httpx.Response(204)
        n = 0 if same else next(count)
        return httpx.Response(200, text=f"<Response><Say>answer {n}</Say><Hangup/></Response>")

    phone = Phone(
        httpx.Client(transport=httpx.MockTransport(hotline), base_url="https://h.test"),
        public_url="https://h.test",
        auth_token="t" * 32,
    )
    party = ScriptedParty([Press("1", deliveries=3)])
    if same:
        record = phone.call(party)
        assert record.heard[-1] == "answer 0" and seen.count("/twilio/gather") == 3
    else:
        with pytest.raises(PhoneError, match="delivered 3 times gave different answers"):
            phone.call(party)


@pytest.mark.parametrize("verb", ["Enqueue", "Dial"])
def test_a_wait_document_may_only_hold_what_twilio_plays_there(verb: str) -> None:
    """Twilio ends the queue with an error when a waitUrl answers with a verb it does not
    play there (an <Enqueue>, a <Dial>): the phone refuses it, so no test passes on it."""

    def hotline(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/twilio/voice":
            text = (
                '<Response><Enqueue waitUrl="https://h.test/twilio/wait">general</Enqueue>'
                "</Response>"
            )
        elif request.url.path == "/twilio/wait":
            text = f"<Response><Say>Sorry.</Say><{verb}>general</{verb}></Response>"
        else:
            return httpx.Response(204)
        return httpx.Response(200, text=text)

    phone = Phone(
        httpx.Client(transport=httpx.MockTransport(hotline), base_url="https://h.test"),
        public_url="https://h.test",
        auth_token="t" * 32,
    )
    with pytest.raises(PhoneError, match=f"<{verb}> is not TwiML a queue's wait URL may"):
        phone.call(ScriptedParty([]))
