"""A phone that calls the hotline exactly as Twilio would, for people and for tests.

It signs every request with the auth token (X-Twilio-Signature over the URL and form),
sends Twilio's parameters, and follows the TwiML it gets back (or, for a call the hotline
placed, the TwiML given with it: `Phone.answer`): it speaks <Say>, waits at
<Gather> for the party's keys or words and posts them to the action (an empty result too,
when actionOnEmptyResult is set), follows <Redirect>, holds in <Enqueue> by polling the
waitUrl, reports a <Dial>'s outcome to its action, and sends the status callback when the
call ends. `ivr dial` puts a person (or a `--keys` script) on the line; tests put a script.

The HTTP client is injected (`httpx.Client`): a real one for a running server, the app's
TestClient in tests.
"""

from __future__ import annotations

import re
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import httpx
from twilio.request_validator import RequestValidator

from ivr.engine import SMS_PATH, STATUS_PATH, VOICE_PATH
from ivr.exceptions import PhoneError
from ivr.numbers import E164

MAX_REQUESTS = 400  # per call; a hotline that loops forever is a bug the phone reports


# -- what the party on the line does -------------------------------------------------------


@dataclass(frozen=True)
class Press:
    digits: str
    # Twilio may deliver one request more than once (a retry racing the first): these many
    # copies are posted at once, each must get the same answer, and the call follows it.
    deliveries: int = 1


@dataclass(frozen=True)
class Speak:
    words: str
    confidence: float = 0.92


# Han characters: what a Chinese recogniser writes, and no other does.
_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def heard_in(words: str, language: str) -> bool:
    """Whether a recogniser of `language` (a Gather's) would write down `words` as said:
    Chinese speech only a Chinese one (zh, cmn, yue). Twilio's docs say only that `language`
    is the one recognised; an English recogniser may write something English-sounding for
    我的账户被盗了, never the Chinese words a keyword matches, and the phone models that as
    nothing understood (an empty result). A Mandarin one writes the English words callers
    mix in (API, USDT), so those are passed on."""
    chinese = language.lower().split("-")[0] in ("zh", "cmn", "yue")
    return chinese or not _HAN.search(words)


@dataclass(frozen=True)
class Silent:
    pass


@dataclass(frozen=True)
class HangUp:
    pass


class HangsUp(Exception):
    """A party raises this from `hear`, `keep_holding` or `dial_outcome` to hang up there and
    then: in the middle of a prompt, on hold, or while the agent's phone rings (then no Dial
    report comes from the phone; a test may post one itself, late)."""


Answer = Press | Speak | Silent | HangUp


@dataclass(frozen=True)
class Prompt:
    """A <Gather> the party is asked to answer, with what it said."""

    said: list[str]
    input: str
    num_digits: int | None
    timeout: int | None
    in_queue: bool = False
    action: str = ""  # where the answer is posted (a test may post something else there)


class Party(Protocol):
    def hear(self, text: str) -> None: ...
    def answer(self, prompt: Prompt) -> Answer: ...
    def keep_holding(self, queue: str, polls: int) -> bool: ...
    def dial_outcome(self, number: str) -> str: ...
    def talk(self, number: str) -> None: ...


def parse_script(spec: str) -> list[Answer]:
    """`--keys "1,2,#"`: one answer per prompt; `-` or empty is silence, `say:words` is speech."""
    answers: list[Answer] = []
    for raw in spec.split(","):
        item = raw.strip()
        if item in ("", "-"):
            answers.append(Silent())
        elif item.lower().startswith("say:"):
            answers.append(Speak(item[4:].strip()))
        elif re.fullmatch(r"[0-9*#]+", item):
            answers.append(Press(item))
        else:
            raise ValueError(f"'{item}' is not keys (0-9 * #), '-' for silence, or say:words")
    return answers


# A party's `dial_outcome` for a phone a machine answers: Twilio reports "completed".
VOICEMAIL = "voicemail"


@dataclass
class ScriptedParty:
    """Answers prompts from a list; hangs up when the list runs out."""

    answers: list[Answer]
    hold_polls: int = 1
    dial_status: str = "completed"
    on_hear: Callable[[str], None] | None = None
    on_answer: Callable[[Answer], None] | None = None
    heard: list[str] = field(default_factory=list)
    # Seconds each hold round lasts, as the hold music would (0: none, as in tests): long
    # enough for someone to take the case meanwhile.
    hold_seconds: float = 0.0

    def hear(self, text: str) -> None:
        self.heard.append(text)
        if self.on_hear:
            self.on_hear(text)

    def answer(self, prompt: Prompt) -> Answer:
        # Out of answers: hang up at a prompt, but stay silent on hold (keep_holding decides).
        fallback: Answer = Silent() if prompt.in_queue else HangUp()
        choice = self.answers.pop(0) if self.answers else fallback
        if self.on_answer:
            self.on_answer(choice)
        return choice

    def keep_holding(self, queue: str, polls: int) -> bool:
        if polls >= self.hold_polls:
            return False
        if self.hold_seconds:
            time.sleep(self.hold_seconds)
        return True

    def dial_outcome(self, number: str) -> str:
        return self.dial_status

    def talk(self, number: str) -> None:
        """While bridged to `number` (its phone answered, the agent took the call): raise
        HangsUp to hang up first."""


# -- the call ---------------------------------------------------------------------------------


@dataclass
class CallRecord:
    call_sid: str
    heard: list[str] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)
    queue: str | None = None
    hold_polls: int = 0
    refused_by_full_queues: int = 0  # <Enqueue>s Twilio answered with queue-full
    dialed: str | None = None
    # A screened <Dial> (IVR_AGENT_SCREENING): whether the agent took the call; None if the
    # dialled phone was not screened.
    agent_took: bool | None = None
    ended_by: str = ""  # "hotline" or "caller"

    @property
    def transcript(self) -> str:
        return "\n".join(self.heard)


class _Ended(Exception):
    def __init__(self, by: str) -> None:
        self.by = by


class Phone:
    """Places calls to the hotline at `public_url` as Twilio would."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        public_url: str,
        auth_token: str,
        account_sid: str = "AC" + "0" * 32,
        server_url: str | None = None,
        check_twiml: Callable[[str], None] | None = None,
        redirected: Callable[[str], list[str]] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.client = client
        # What dates the agent's talk it reports (DialCallDuration): a test's clock, moved by
        # its parties while they talk, or the wall clock.
        self.clock = clock or (lambda: datetime.now(UTC))
        # The URLs Twilio's REST API redirected a call to so far (the hotline's own REST
        # client, as a test records it): a redirect made while an agent talks ends the
        # <Dial>, and the call goes on at its URL.
        self.redirected = redirected
        self.public_url = public_url.rstrip("/")
        self.server_url = server_url.rstrip("/") if server_url else None
        self.account_sid = account_sid
        self.validator = RequestValidator(auth_token)
        self.check_twiml = check_twiml
        # Queues at their max size (error 14207), each with how many more <Enqueue>s in it
        # Twilio refuses (the caller's action told QueueResult=queue-full at once) before
        # someone leaves it and the next is let in.
        self.full_queues: dict[str, int] = {}

    def call(
        self,
        party: Party,
        *,
        from_number: str = "+15005550006",
        to_number: str = "+15005550001",
        call_sid: str | None = None,
        stir_verstat: str | None = None,
        final_status: bool = True,
    ) -> CallRecord:
        """`final_status`: False, Twilio's report that the call completed is lost (its
        status callback failed), as the hotline must cope with."""
        record = CallRecord(call_sid or "CA" + uuid.uuid4().hex)
        base = {
            "AccountSid": self.account_sid,
            "CallSid": record.call_sid,
            "From": from_number,
            "To": to_number,
            "Caller": from_number,
            "Called": to_number,
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
        }
        started = time.monotonic()
        session = _Session(self, party, record, base)
        first = {"CallStatus": "ringing"}
        if stir_verstat:  # SHAKEN/STIR attestation, as Twilio adds to inbound calls
            first["StirVerstat"] = stir_verstat
        session.play(lambda: session.post(self.public_url + VOICE_PATH, first))
        duration = max(1, round(time.monotonic() - started))
        if not final_status:
            return record
        session.post(
            self.public_url + STATUS_PATH,
            {
                "CallStatus": "completed",
                "CallDuration": str(duration),
                "SequenceNumber": "0",
                "CallbackSource": "call-progress-events",
            },
            expect_twiml=False,
        )
        return record

    def answer(
        self,
        placed: Mapping[str, str],
        party: Party,
        *,
        call_sid: str | None = None,
        answered_by: str = "human",
    ) -> CallRecord:
        """A call the hotline placed through Twilio's REST API, answered by `party`:
        `placed` is the form it posted to Calls.json (`call_sid`: the sid Twilio answered
        it with). Twilio runs the call's `Twiml`, or fetches its `Url`, and follows what it
        gets as on a call to the hotline; its StatusCallback, if any, hears that it
        completed. Placed with MachineDetection, Twilio says who answered (`answered_by`:
        human, machine_start, fax, unknown) in the Url's request."""
        record = CallRecord(call_sid or "CA" + uuid.uuid4().hex)
        base = {
            "AccountSid": self.account_sid,
            "CallSid": record.call_sid,
            "From": placed["From"],
            "To": placed["To"],
            "Caller": placed["From"],
            "Called": placed["To"],
            "Direction": "outbound-api",
            "ApiVersion": "2010-04-01",
        }
        session = _Session(self, party, record, base)
        if "Twiml" in placed:
            session.play(lambda: session.document("the call's Twiml", placed["Twiml"]))
        else:
            detected = {"AnsweredBy": answered_by} if placed.get("MachineDetection") else {}
            session.play(lambda: session.post(placed["Url"], detected))
        if placed.get("StatusCallback"):
            status = {"CallStatus": "completed"}
            if placed.get("MachineDetection"):  # its verdict is in the report too
                status["AnsweredBy"] = answered_by
            session.post(placed["StatusCallback"], status, expect_twiml=False)
        return record

    def ring_out(
        self, placed: Mapping[str, str], status: str = "no-answer", *, call_sid: str | None = None
    ) -> int:
        """A call the hotline placed that nobody answered (`status`: no-answer, busy, failed,
        canceled), as its StatusCallback hears it (`call_sid`: the sid Twilio answered it
        with): the HTTP status of that request."""
        params = {
            "AccountSid": self.account_sid,
            "CallSid": call_sid or "CA" + uuid.uuid4().hex,
            "From": placed["From"],
            "To": placed["To"],
            "Direction": "outbound-api",
            "ApiVersion": "2010-04-01",
            "CallStatus": status,
            "CallDuration": "0",
        }
        return self.signed_post(placed["StatusCallback"], params).status_code

    def text_reported(
        self, sent: Mapping[str, str], status: str, *, error_code: str | None = None
    ) -> int:
        """What became of a text the hotline sent (`sent`: the form it posted to
        Messages.json), as Twilio posts it to the text's StatusCallback: `status` (sent,
        delivered, undelivered, failed), and for a text not delivered its ErrorCode (30003:
        unreachable, 30007: filtered...). The HTTP status of that request."""
        sid = "SM" + uuid.uuid4().hex
        params = {
            "AccountSid": self.account_sid,
            "MessageSid": sid,
            "SmsSid": sid,
            "From": sent["From"],
            "To": sent["To"],
            "MessageStatus": status,
            "SmsStatus": status,
            "ApiVersion": "2010-04-01",
        }
        if error_code is not None:
            params["ErrorCode"] = error_code
        return self.signed_post(sent["StatusCallback"], params).status_code

    def text(
        self,
        body: str,
        *,
        from_number: str,
        to_number: str = "+15005550001",
        message_sid: str | None = None,
    ) -> list[str]:
        """An SMS to the hotline's number, as Twilio posts it to the number's Messaging
        webhook: the texts the hotline answers with (its <Message>s), in order."""
        sid = message_sid or "SM" + uuid.uuid4().hex
        params = {
            "AccountSid": self.account_sid,
            "MessageSid": sid,
            "SmsSid": sid,
            "From": from_number,
            "To": to_number,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": "1",
            "ApiVersion": "2010-04-01",
        }
        response = self.signed_post(self.public_url + SMS_PATH, params)
        if response.status_code != 200:
            raise PhoneError(f"{SMS_PATH} answered {response.status_code}: {response.text:.200}")
        doc = ET.fromstring(response.text)
        verbs = [child.tag for child in doc]
        if doc.tag != "Response" or set(verbs) - {"Message"}:
            raise PhoneError(f"not a messaging TwiML response: {response.text:.200}")
        return [(child.text or "").strip() for child in doc]

    def signed_post(self, url: str, params: dict[str, str]) -> httpx.Response:
        signature = self.validator.compute_signature(url, params)
        target = url
        if self.server_url and url.startswith(self.public_url):
            target = self.server_url + url[len(self.public_url) :]
        try:
            return self.client.post(target, data=params, headers={"X-Twilio-Signature": signature})
        except httpx.HTTPError as exc:
            raise PhoneError(f"cannot reach the hotline at {target}: {exc}") from None


class _Session:
    def __init__(
        self, phone: Phone, party: Party, record: CallRecord, base: dict[str, str]
    ) -> None:
        self.phone = phone
        self.party = party
        self.record = record
        self.base = base

    def post(
        self,
        url: str,
        extra: dict[str, str],
        *,
        expect_twiml: bool = True,
        deliveries: int = 1,
    ) -> ET.Element:
        if len(self.record.requests) >= MAX_REQUESTS:
            raise PhoneError(
                f"more than {MAX_REQUESTS} requests in one call: the hotline is looping"
            )
        params = {**self.base, "CallStatus": "in-progress", **extra}
        self.record.requests.append((url, params))
        if deliveries > 1:
            with ThreadPoolExecutor(deliveries) as pool:
                copies = list(
                    pool.map(lambda _: self.phone.signed_post(url, params), range(deliveries))
                )
            if len({(r.status_code, r.text) for r in copies}) > 1:
                raise PhoneError(f"{url} delivered {deliveries} times gave different answers")
            response = copies[0]
        else:
            response = self.phone.signed_post(url, params)
        if response.status_code >= 400 or (expect_twiml and response.status_code != 200):
            raise PhoneError(f"{url} answered {response.status_code}: {response.text[:200]}")
        if not expect_twiml:
            return ET.Element("Response")
        return self.document(url, response.text)

    def document(self, source: str, body: str) -> ET.Element:
        """A TwiML document from `source` (a URL that answered it), checked."""
        self.record.documents.append(body)
        if self.phone.check_twiml:
            self.phone.check_twiml(body)
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            raise PhoneError(f"{source} answered something that is not XML: {exc}") from None
        if root.tag != "Response":
            raise PhoneError(f"{source} answered <{root.tag}>, not a TwiML <Response>")
        return root

    def play(self, first: Callable[[], ET.Element]) -> None:
        """The call from its `first` document until it ends, and who ended it."""
        try:
            doc = first()
            while True:
                doc = self.run(doc)
        except _Ended as end:
            self.record.ended_by = end.by
        except HangsUp:
            self.record.ended_by = "caller"

    def hear(self, verb: ET.Element) -> str | None:
        if verb.tag == "Say":
            text = "".join(verb.itertext()).strip()
        elif verb.tag == "Play":
            text = f"[audio {(verb.text or '').strip()}]"
        else:
            return None
        self.record.heard.append(text)
        self.party.hear(text)
        return text

    def run(self, doc: ET.Element, *, in_queue: bool = False) -> ET.Element:
        """Play one document; return the next document Twilio would fetch."""
        for verb in doc:
            tag = verb.tag
            if tag in ("Say", "Play", "Pause"):
                self.hear(verb)
            elif tag == "Gather":
                said = [t for t in (self.hear(v) for v in verb) if t]
                if not verb.get("action") and not self.record.requests:
                    raise PhoneError("a <Gather> without an action, in TwiML given with the call")
                action = verb.get("action") or self.record.requests[-1][0]
                answer = self.party.answer(
                    Prompt(
                        said,
                        verb.get("input", "dtmf"),
                        _int(verb.get("numDigits")),
                        _int(verb.get("timeout")),
                        in_queue,
                        action,
                    )
                )
                self.record.answers.append(answer)
                if isinstance(answer, HangUp):
                    raise _Ended("caller")
                if isinstance(answer, Press):
                    digits, finished_on = keypad(
                        answer.digits, verb.get("finishOnKey", "#"), _int(verb.get("numDigits"))
                    )
                    if digits:
                        return self.post(
                            action,
                            {"Digits": digits, "FinishedOnKey": finished_on},
                            deliveries=answer.deliveries,
                        )
                    # Only the finish key: an empty result, as if nothing was pressed.
                # Words at a keypad-only <Gather> are not heard: an empty result too; nor
                # Chinese words by a recogniser of another language (Gather `language`).
                if (
                    isinstance(answer, Speak)
                    and "speech" in verb.get("input", "dtmf")
                    and heard_in(answer.words, verb.get("language", "en-US"))
                ):
                    return self.post(
                        action, {"SpeechResult": answer.words, "Confidence": str(answer.confidence)}
                    )
                if verb.get("actionOnEmptyResult") == "true":
                    return self.post(action, {})
            elif tag == "Redirect":
                return self.post((verb.text or "").strip(), {})
            elif in_queue and tag not in WAIT_VERBS:
                # Twilio ends the queue with QueueResult=error: the hotline must not answer so.
                raise PhoneError(f"<{tag}> is not TwiML a queue's wait URL may answer with")
            elif tag == "Enqueue":
                return self.enqueue(verb)
            elif tag == "Dial":
                return self.dial(verb)
            elif tag in ("Hangup", "Reject"):
                raise _Ended("hotline")
            elif tag == "Leave" and in_queue:
                raise _Left()
            else:
                raise PhoneError(f"the phone does not know <{tag}>")
        if in_queue:
            return doc  # Twilio asks for the waitUrl again
        raise _Ended("hotline")  # end of the document: Twilio hangs up

    def enqueue(self, verb: ET.Element) -> ET.Element:
        queue = (verb.text or "").strip()
        wait_url, action = verb.get("waitUrl"), verb.get("action")
        if self.phone.full_queues.get(queue, 0) > 0:
            self.phone.full_queues[queue] -= 1
            self.record.refused_by_full_queues += 1
            if not action:  # Twilio would go on to the next verb; the hotline never asks so
                raise PhoneError("a full queue's <Enqueue> has no action to report to")
            return self.post(action, {"QueueResult": "queue-full", "QueueTime": "0"})
        self.record.queue = queue
        polls, entered = 0, time.monotonic()
        result = "hangup"
        redirects = self._redirects()
        try:
            while True:
                waited = str(round(time.monotonic() - entered))
                if wait_url:
                    wait_doc = self.post(
                        wait_url,
                        {
                            "QueueSid": "QU" + "0" * 32,
                            "QueuePosition": "1",
                            "QueueTime": waited,
                            "AvgQueueTime": waited,
                            "CurrentQueueSize": "1",
                            "MaxQueueSize": "100",
                        },
                    )
                    # A <Gather> or <Redirect> in the hold loop leads to another hold document.
                    while (following := self.run(wait_doc, in_queue=True)) is not wait_doc:
                        wait_doc = following
                polls += 1
                self.record.hold_polls = polls
                holding = self.party.keep_holding(queue, polls)
                if moved := self._redirects()[len(redirects) :]:
                    # Taken out of the queue by a REST redirect: Twilio reports it to the
                    # <Enqueue>'s action (an answer it does not play) and fetches the URL.
                    if action:
                        self.post(
                            action, {"QueueResult": "redirected", "QueueSid": "QU" + "0" * 32}
                        )
                    return self.post(moved[-1], {})
                if not holding:
                    break
        except _Left:
            result = "leave"
        except _Ended as end:
            if end.by == "hotline":
                raise
        if action:
            doc = self.post(
                action,
                {
                    "QueueResult": result,
                    "QueueSid": "QU" + "0" * 32,
                    "QueueTime": str(round(time.monotonic() - entered)),
                },
            )
            if result == "leave":
                return doc
        raise _Ended("caller" if result == "hangup" else "hotline")

    def dial(self, verb: ET.Element) -> ET.Element:
        number = (verb.text or "").strip() or "".join(verb.itertext()).strip()
        self.record.dialed = number
        redirects = self._redirects()
        status = self.party.dial_outcome(number)
        shown = verb.get("callerId") or self.base["From"]
        if not E164.match(shown):
            # Twilio passes the caller's own number on; a carrier may refuse a call from one
            # that is not a number (a withheld caller ID): error 13214, the dial failed.
            status = "failed"
        target = next((child for child in verb if child.tag in ("Number", "Client")), None)
        talked = 0
        screen = target.get("url") if target is not None else None
        if status == VOICEMAIL:
            # The phone answered, by a machine: Twilio reports only that it answered.
            status = "completed"
            if screen:
                self.record.agent_took = self.agent_leg(screen, number, takes=False)
        elif status in ("completed", "answered"):
            if screen:
                self.record.agent_took = self.agent_leg(screen, number, takes=True)
            if not screen or self.record.agent_took:
                answered = self.phone.clock()
                self.party.talk(number)  # bridged: the caller and the agent talk
                talked = round((self.phone.clock() - answered).total_seconds())
        action = verb.get("action")
        # Twilio's DialCallDuration: how long the dialled phone was answered (0 if never).
        duration = str(talked) if status in ("completed", "answered") else "0"
        moved = self._redirects()[len(redirects) :]
        if moved:
            # Redirected while bridged: Twilio still reports the <Dial>'s end to its action,
            # but plays none of the answer; the call goes on at the redirect's URL.
            if action:
                self.post(action, {"DialCallStatus": "completed", "DialCallDuration": duration})
            return self.post(moved[-1], {})
        if action:
            return self.post(action, {"DialCallStatus": status, "DialCallDuration": duration})
        raise _Ended("hotline")

    def _redirects(self) -> list[str]:
        return self.phone.redirected(self.record.call_sid) if self.phone.redirected else []

    def agent_leg(self, url: str, number: str, *, takes: bool) -> bool:
        """The dialled phone's own TwiML, as Twilio runs a <Number url> once it answers: the
        agent presses 1 when asked (`takes`), a voicemail presses nothing. Whether the calls
        were bridged: the agent's document ended without <Hangup>."""
        params = {
            "AccountSid": self.base["AccountSid"],
            "CallSid": "CA" + uuid.uuid4().hex,
            "ParentCallSid": self.record.call_sid,
            "From": self.base["To"],
            "To": number,
            "Direction": "outbound-dial",
            "CallStatus": "in-progress",
        }
        doc = self._agent_post(url, params)
        gather = doc.find("Gather")
        if gather is not None and takes:
            doc = self._agent_post(gather.get("action") or url, {**params, "Digits": "1"})
        elif gather is not None:
            return False  # the Gather times out; the document's <Hangup/> ends the leg
        return doc.find("Hangup") is None

    def _agent_post(self, url: str, params: dict[str, str]) -> ET.Element:
        response = self.phone.signed_post(url, params)
        if response.status_code != 200:
            raise PhoneError(f"{url} answered {response.status_code}: {response.text[:200]}")
        self.record.documents.append(response.text)
        if self.phone.check_twiml:
            self.phone.check_twiml(response.text)
        return ET.fromstring(response.text)


# What Twilio plays from a queue's waitUrl (and the documents its <Gather>s and <Redirect>s
# lead to): https://www.twilio.com/docs/voice/twiml/enqueue#attributes-waiturl
WAIT_VERBS = frozenset({"Play", "Say", "Pause", "Hangup", "Redirect", "Leave", "Gather"})


class _Left(Exception):
    pass


def keypad(pressed: str, finish_on_key: str, num_digits: int | None) -> tuple[str, str]:
    """What Twilio posts for keys pressed at a <Gather>: (Digits, FinishedOnKey).

    The finish key (default "#") ends input and is not part of Digits; numDigits ends it too.
    """
    digits = ""
    for key in pressed:
        if finish_on_key and key == finish_on_key:
            return digits, key
        digits += key
        if num_digits and len(digits) >= num_digits:
            break
    return digits, ""


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None
