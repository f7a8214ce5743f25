"""The call engine: a call's state plus one input gives the next state, its TwiML and log.

Pure: no HTTP, no database, no clock of its own (`now` is passed in), so every rule about
timeouts, wrong keys and escalation is tested without a server. The web layer stores the
state, sends the TwiML and appends the log.

Every TwiML action URL carries the step number `s` the next request must answer. The web
layer uses it to recognise a request Twilio delivered twice, so no attempt counts twice.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import Gather, Play, Say, VoiceResponse

from ivr.numbers import country_code, dialable, last4
from ivr.prompts import BASE_LANGUAGE, Catalogs, Moment
from ivr.tree import (
    CALLBACK_CONFIRM_PROMPT,
    HOLD_TIP_PREFIX,
    MAX_PASS_THROUGH,
    SURVEY_SCALE,
    CompiledMenu,
    CompiledTree,
    HangupNode,
    HoursNode,
    LanguageNode,
    MenuNode,
    Node,
    NumberCheckNode,
    Option,
    QueueNode,
    SayNode,
    SurveyNode,
    TicketNode,
    TransferNode,
    VerifyNode,
    asks_again,
    hints_of,
    match_speech,
    normalise_speech,
    spoken_key,
)

# Webhook paths under IVR_PUBLIC_URL. voice, status and fallback are what an operator enters
# in the Twilio console; the others only ever appear in TwiML this engine writes.
# A Twilio Call SID, as webhooks post it and as the call log is looked up by.
CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")

VOICE_PATH = "/twilio/voice"
STATUS_PATH = "/twilio/status"
SMS_PATH = "/twilio/sms"  # the number's Messaging webhook: texts to the hotline
FALLBACK_PATH = "/twilio/fallback"
GATHER_PATH = "/twilio/gather"
DIAL_PATH = "/twilio/dial"
QUEUE_EXIT_PATH = "/twilio/queue-exit"
WAIT_PATH = "/twilio/wait"
CALLBACK_KEY_PATH = "/twilio/callback-request"
CALLBACK_NUMBER_PATH = "/twilio/callback-number"
CONNECT_PATH = "/twilio/connect"
CONNECT_DONE_PATH = "/twilio/connect-done"
CALLBACK_STATUS_PATH = "/twilio/callback-status"
AGENT_ACCEPT_PATH = "/twilio/agent-accept"
RECORDING_PATH = "/twilio/recording"
TRANSFER_PATH = "/twilio/transfer"
PAGE_ACK_PATH = "/twilio/page-ack"
PAGE_STATUS_PATH = "/twilio/page-status"
ACCEPT_KEY = "1"

# Nodes in one turn; the loader refuses cycles and longer runs, this is the backstop.
MAX_HOPS = MAX_PASS_THROUGH
MAX_TRAIL = 10
MAX_REQUEUES = 3
# Twilio's QueueResult when its queue holds its max size of callers (error 14207): no fault
# of ours, and no reason to apologise for one. Told once (optional prompt, else the
# apology), and waited out between tries, so a full queue is not a loop of webhooks.
QUEUE_FULL = "queue-full"
QUEUE_FULL_PROMPT = "queue_full"
QUEUE_FULL_PAUSE = 10
# Said to a caller the agent sends on to another team (`tree.LATER_ENGINE_PROMPTS`).
TRANSFERRED_PROMPT = "call_transferred"
# A customer Twilio called back, sent on by the agent: that team calls them.
CALL_BACK_SENT_ON_PROMPT = "callback_sent_on"
# A wait of one minute, said in the singular where the language has one, and of two, said
# as the language counts two (两分钟: Polly reads "2分钟" as 二分钟, which no one says):
# optional, a catalog without one says `hold_position` with the number.
ONE_MINUTE_PROMPT = "hold_position_one_minute"
TWO_MINUTES_PROMPT = "hold_position_two_minutes"
COUNTED_WAIT_PROMPTS = {1: ONE_MINUTE_PROMPT, 2: TWO_MINUTES_PROMPT}
# The place in line with no estimate, nobody being at work; optional (else `hold`).
NO_ESTIMATE_PROMPT = "hold_position_no_estimate"
# A caller whose number's country names a language, who keyed another at the language menu:
# asked once, in their likely language, for its key (`language_check`, optional: without it,
# no question), then told in the one keyed that the call goes on in it (`language_stay`).
LANGUAGE_CHECK_PROMPT = "language_check"
LANGUAGE_STAY_PROMPT = "language_stay"
LANGUAGE_PICKED = "language_picked"  # a fact while the question waits: the language keyed
LANGUAGE_CHECK_SECONDS = 4
# What the call found out on the way that its case carries to the agent: how the caller was
# verified, and a number they were contacted from that is not ours (a scam to look into).
# `under_guessing`: someone keyed wrong answers for the account lately ("failures/numbers").
CASE_FACTS = ("verified", "factors", "uid", "reported_number", "under_guessing")
# Said when no digits came where some were asked for; optional (else `no_input`).
NO_DIGITS_PROMPT = "no_digits"
# Said when what was keyed at the UID step is no UID (too short, too long), where the
# catalog has it; else the UID is asked for again without it.
NOT_A_UID_PROMPT = "verify_not_a_uid"
# Said at a victim's first hold round when the self-freeze they were told of failed: optional
# (shipped later); without it, `account_not_frozen` where the catalog has that.
FREEZE_FAILED_PROMPT = "account_freeze_failed"
# Our own QueueExit result: the agent who took the case did not answer; back in line.
AGENT_NO_ANSWER = "agent-no-answer"


@dataclass(frozen=True)
class Links:
    """Absolute URLs Twilio will call back; `base` is IVR_PUBLIC_URL (what signatures cover)."""

    base: str

    def _url(self, path: str, **query: Any) -> str:
        return f"{self.base}{path}?{urlencode(query)}" if query else f"{self.base}{path}"

    def gather(self, step: int) -> str:
        return self._url(GATHER_PATH, s=step)

    def fallback(self) -> str:
        return self._url(FALLBACK_PATH)

    def dial(self, step: int) -> str:
        return self._url(DIAL_PATH, s=step)

    def queue_exit(self, step: int) -> str:
        return self._url(QUEUE_EXIT_PATH, s=step)

    def wait(self, language: str, queue: str) -> str:
        return self._url(WAIT_PATH, lang=language, queue=queue)

    def callback_request(self, language: str, *, confirming: bool = False) -> str:
        if confirming:
            return self._url(CALLBACK_KEY_PATH, lang=language, confirm=1)
        return self._url(CALLBACK_KEY_PATH, lang=language)

    def callback_number(self, language: str, tries: int = 1) -> str:
        return self._url(CALLBACK_NUMBER_PATH, lang=language, n=tries)

    def connect(self, case_id: int, *, outbound: bool = False, placing: str | None = None) -> str:
        if placing is None:
            return self._url(CONNECT_PATH, case=case_id, out=int(outbound))
        return self._url(CONNECT_PATH, case=case_id, out=int(outbound), placing=placing)

    def connect_done(
        self,
        case_id: int,
        *,
        outbound: bool = False,
        agent: int | None = None,
        placing: str | None = None,
    ) -> str:
        # The agent whose phone it dials: a late report of theirs must not touch the case
        # once another agent has it. A call back's placement: nor a later call back's.
        query: dict[str, Any] = {"case": case_id, "out": int(outbound)}
        if agent is not None:
            query["agent"] = agent
        if placing is not None:
            query["placing"] = placing
        return self._url(CONNECT_DONE_PATH, **query)

    def agent_accept(self, case_id: int, *, agent: int) -> str:
        return self._url(AGENT_ACCEPT_PATH, case=case_id, agent=agent)

    def transfer(self, case_id: int) -> str:
        return self._url(TRANSFER_PATH, case=case_id)

    def recording(self, case_id: int) -> str:
        return self._url(RECORDING_PATH, case=case_id)

    def page_ack(self, page_id: int, *, again: bool = False) -> str:
        if again:
            return self._url(PAGE_ACK_PATH, page=page_id, again=1)
        return self._url(PAGE_ACK_PATH, page=page_id)

    def page_status(self, page_id: int, by: str) -> str:
        return self._url(PAGE_STATUS_PATH, page=page_id, by=by)

    def callback_status(self, case_id: int, *, placing: str) -> str:
        # The placement: a late report of an earlier call back of the case is not this one's.
        return self._url(CALLBACK_STATUS_PATH, case=case_id, placing=placing)


class CallState(BaseModel):
    """Everything the engine needs between two webhooks; stored as JSON keyed by CallSid."""

    model_config = ConfigDict(frozen=True)

    node: str
    lang: str = BASE_LANGUAGE
    no_input: int = 0
    invalid: int = 0
    trail: tuple[str, ...] = ()  # menus the caller came through, newest last (the back key)
    facts: dict[str, str] = {}  # non-secret facts collected on the way: topic, queue, ...
    ended: bool = False


# -- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    digits: str


@dataclass(frozen=True)
class Speech:
    text: str
    confidence: float | None = None


@dataclass(frozen=True)
class Silence:
    pass


@dataclass(frozen=True)
class DialDone:
    status: str


@dataclass(frozen=True)
class QueueExit:
    result: str


@dataclass(frozen=True)
class AgentDone:
    """The agent who took `case_id` hung up while the caller stayed on the line."""

    case_id: int


@dataclass(frozen=True)
class Transferred:
    """The agent who had `case_id` sent its caller on: to `queue` at `priority`, spoken to
    in `language` from now on (None: as before)."""

    case_id: int
    queue: str
    priority: str
    language: str | None = None


@dataclass(frozen=True)
class Checked:
    """A secret factor the hotline checked: only whether it matched ever reaches the engine.
    `unavailable`: the identity service gave no verdict, so nobody can be verified now;
    `throttled` with it: not checked, as calls without full attestation failed too often
    across accounts (password spraying). `factor`: the factor that matched (`pin` or
    `id_last4` for a `pin_or_id_last4` step), its name only. `guessed`: the account's
    failures lately and the numbers they came from, "failures/numbers", when they reach the
    lockout rule (someone is keying wrong answers for it)."""

    ok: bool
    locked: bool = False
    unavailable: bool = False
    throttled: bool = False
    factor: str | None = None
    guessed: str | None = None


@dataclass(frozen=True)
class CaseSummary:
    ticket: str
    status: str
    queue: str
    priority: str
    reason: str


@dataclass(frozen=True)
class TicketLookup:
    found: CaseSummary | None
    locked: bool = False  # the calling number missed too often: not looked up at all


@dataclass(frozen=True)
class NumberLookup:
    """A number keyed at a number_check node, as the hotline read it: `number` the likeliest
    reading (None: it cannot be a number), `official` whether any reading is one of ours."""

    number: str | None
    official: bool = False
    # Fewer than 8 digits, none of our short codes: not ours, and not said back nor kept.
    short: bool = False

    @property
    def result(self) -> str:
        """official, not_official, or not_a_number: its log line and metric label."""
        if self.official:
            return "official"
        return "not_official" if self.short or self.number is not None else "not_a_number"


Input = (
    Keys
    | Speech
    | Silence
    | DialDone
    | QueueExit
    | AgentDone
    | Transferred
    | Checked
    | TicketLookup
    | NumberLookup
)
InputKind = Literal["dtmf", "speech", "silence", "dial", "queue"]


def input_kind(event: Input) -> InputKind:
    kinds: dict[type, InputKind] = {
        Keys: "dtmf",
        Speech: "speech",
        Silence: "silence",
        DialDone: "dial",
        QueueExit: "queue",
        AgentDone: "dial",  # the agent's <Dial> ended
        Transferred: "dial",  # ...cut by the agent's transfer
        Checked: "dtmf",
        TicketLookup: "dtmf",
        NumberLookup: "dtmf",
    }
    return kinds[type(event)]


def awaiting(tree: CompiledTree, state: CallState) -> str | None:
    """What keyed-in digits at this point are, when the hotline must resolve them first:
    a factor to check ("pin", "totp", ...), "ticket" or "number". None: plain keys."""
    if state.ended:
        return None
    node = tree.node(state.node)
    if isinstance(node, TicketNode):
        return "ticket"
    if isinstance(node, NumberCheckNode):
        return "number"
    if isinstance(node, VerifyNode):
        step = node.steps[int(state.facts.get("verify_step", "0"))]
        return None if step == "uid" else step
    return None


# -- effects: what the hotline must do besides answering ---------------------------------------


@dataclass(frozen=True)
class OpenCase:
    ticket: str
    queue: str
    priority: str
    reason: str
    flags: dict[str, str]
    path: list[str]
    parent_ticket: str | None = None
    # Takes the parent case's place in line (in the same lane): a caller whose agent left
    # them was served in their turn, and must not go behind everyone who came after.
    keeps_place: bool = False


@dataclass(frozen=True)
class Freeze:
    uid: str


Effect = OpenCase | Freeze


# -- output ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogEntry:
    """One line of a call's event log. Never holds what the caller typed beyond a menu key."""

    node: str
    kind: str  # entered | input | escalated | ended
    input_kind: str | None = None
    option: str | None = None
    prompt_key: str | None = None
    outcome: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    state: CallState
    twiml: str
    log: list[LogEntry]
    effects: list[Effect] = field(default_factory=list)


@dataclass(frozen=True)
class Announcement:
    """What supervisors want every caller to hear first on a bad day (an incident, a known
    delay), by language; `id` tells a caller who heard it from one who has not."""

    id: str
    texts: Mapping[str, str]


def begin(
    tree: CompiledTree,
    *,
    links: Links,
    step: int,
    now: datetime,
    ticket: str = "",
    announcement: Announcement | None = None,
    caller: str | None = None,
    called: str | None = None,
) -> Step:
    """A new call from `caller` (their number, if shown) to `called`: enter the start node.
    Their country calling code is kept, for a language menu's likely language; and, for a
    caller who withheld their number, the number they called (`shown_as`): a transfer
    node's <Dial> shows it, as a carrier may refuse a call from "anonymous" (Twilio's 13214)."""
    turn = _Turn(tree, links, step, now, ticket, announcement)
    country = country_code(caller)
    facts = {"country": country} if country else {}
    if not dialable(caller) and dialable(called):
        facts["shown_as"] = str(called)
    state = turn.enter(tree.tree.start, CallState(node=tree.tree.start, facts=facts))
    return turn.finish(state)


def advance(
    tree: CompiledTree,
    state: CallState,
    event: Input,
    *,
    links: Links,
    step: int,
    now: datetime,
    ticket: str = "",
    announcement: Announcement | None = None,
) -> Step:
    """Apply one input to a call in progress. `ticket` numbers a case, should one be opened;
    `announcement` is played where the tree says, once per call."""
    turn = _Turn(tree, links, step, now, ticket, announcement)
    if state.ended:
        turn.response.hangup()
        return turn.finish(state)
    node = tree.node(state.node)
    if isinstance(event, AgentDone):
        new = turn.on_agent_done(node, state, event)
    elif isinstance(event, Transferred):
        new = turn.on_transferred(state, event)
    elif isinstance(node, MenuNode):
        new = turn.on_menu(tree.menus[state.node], state, event)
    elif isinstance(node, LanguageNode):
        new = turn.on_language(node, state, event)
    elif isinstance(event, QueueExit) and "queue" in state.facts:
        new = turn.on_queue_exit(node if isinstance(node, QueueNode) else None, state, event)
    elif isinstance(node, TransferNode) and isinstance(event, DialDone):
        new = turn.on_dial_done(node, state, event)
    elif isinstance(node, VerifyNode) and not isinstance(event, DialDone | QueueExit):
        new = turn.on_verify(node, state, event)
    elif isinstance(node, TicketNode) and not isinstance(event, DialDone | QueueExit):
        new = turn.on_ticket(node, state, event)
    elif isinstance(node, NumberCheckNode) and not isinstance(event, DialDone | QueueExit):
        new = turn.on_number_check(node, state, event)
    elif isinstance(node, SurveyNode) and isinstance(event, Keys | Speech | Silence):
        new = turn.on_survey(node, state, event)
    else:
        # An input the node does not take (a stale or reordered request): present it again.
        turn.log.append(LogEntry(state.node, "input", input_kind(event), outcome="ignored"))
        new = turn.present(state)
    return turn.finish(new)


# The flag of a case opened for a caller who hung up on the way (`hung_up_on_the_way`): the
# node they were at. Such a case never was in line (the figures do not count it offered).
HUNG_UP_AT = "hung_up_at"


def hung_up_on_the_way(tree: CompiledTree, state: CallState, *, ticket: str) -> OpenCase | None:
    """The case of a caller who hung up on the way to an emergency queue (hearing its notice,
    keying their UID) before the queue opened one: they asked for urgent help, so an agent
    calls them back. None for any other caller, or one whose case is open already."""
    target = tree.emergency_bound.get(state.node)
    if target is None or state.ended:
        return None
    node = tree.node(target)
    if not isinstance(node, QueueNode):
        return None
    facts = state.facts
    if facts.get("ticket") and facts.get("queue") == node.queue:
        return None
    flags: dict[str, str] = {k: facts[k] for k in CASE_FACTS if k in facts}
    flags[HUNG_UP_AT] = state.node
    reason = node.reason or node.topic or target
    return OpenCase(ticket, node.queue, node.priority, reason, flags, list(state.trail))


def minutes_said(seconds: float) -> int:
    """A wait as the hold loop says it: whole minutes, rounded up, one at least (nobody is
    told "about 0 minutes")."""
    return max(1, math.ceil(seconds / 60))


def hold_twiml(
    catalogs: Catalogs,
    language: str,
    music_url: str | None,
    *,
    position: int | None = None,
    wait_minutes: int | None = None,
    tip: int = 0,
    callback_url: str | None = None,
    offer_first: bool = False,
    news: str | None = None,
    announcement: str | None = None,
) -> str:
    """The <Enqueue waitUrl> document: Twilio plays it, then asks for it again.

    `news` (a prompt key) first: what the caller must know about their case (the freeze
    they were told of failed). Then `announcement`, the supervisors' words (text, in the
    caller's language) for callers who were holding when it went up, inside the offer's
    <Gather> (1 for a call back heard while it plays). Then the place in line (ours, by
    priority, not Twilio's FIFO position) and an estimate, one security tip per round (they
    rotate), the call-back offer, then music: inside the offer's <Gather>, so a caller who
    makes up their mind while it plays is heard (keys pressed outside a <Gather> are lost).
    """
    response = VoiceResponse()
    if news:
        _say(response, catalogs, news, language)
    target: VoiceResponse | Gather = response
    if callback_url:
        # finishOnKey="": the offer is "press 1"; nothing else may end the hold quietly.
        target = Gather(
            action=callback_url,
            method="POST",
            input="dtmf",
            num_digits=1,
            finish_on_key="",
            timeout=2,
        )
    if announcement:
        catalog = catalogs.catalog(language)
        text = NOT_XML.sub("", announcement)  # refused when set; never let one break the hold
        target.say(text, voice=catalog.voice, language=catalog.say_language)
    if offer_first and isinstance(target, Gather):
        # Waited past IVR_MAX_WAIT: the way out comes first, before the place in line.
        _say(target, catalogs, "hold_callback_offer", language)
    if position is not None and wait_minutes is None:
        if catalogs.has(NO_ESTIMATE_PROMPT, language):
            _say(target, catalogs, NO_ESTIMATE_PROMPT, language, position=position)
        else:
            _say(target, catalogs, "hold", language)
    elif position is not None:
        minutes = max(1, wait_minutes or 1)
        counted = COUNTED_WAIT_PROMPTS.get(minutes)
        _say(
            target,
            catalogs,
            counted if counted and catalogs.has(counted, language) else "hold_position",
            language,
            position=position,
            minutes=minutes,
        )
    else:
        _say(target, catalogs, "hold", language)
    tips = catalogs.keys_starting(HOLD_TIP_PREFIX)
    if tips:
        _say(target, catalogs, tips[tip % len(tips)], language)
    if isinstance(target, Gather) and not offer_first:
        _say(target, catalogs, "hold_callback_offer", language)
    if music_url:
        target.play(music_url)
    else:
        target.pause(length=20)
    if isinstance(target, Gather):
        response.append(target)
    return str(response)


def hangup_twiml(
    catalogs: Catalogs, language: str, key: str = "goodbye", /, **variables: Any
) -> str:
    response = VoiceResponse()
    _say(response, catalogs, key, language, **variables)
    response.hangup()
    return str(response)


PAGE_ACK_PROMPT = "Press 1 if you are coming."


def _page_key(action: str) -> Gather:
    # One key, nothing that ends it early (finishOnKey=""): 1 or not.
    return Gather(
        action=action, method="POST", input="dtmf", num_digits=1, finish_on_key="", timeout=6
    )


def page_call_twiml(speech: str, *, action: str) -> str:
    """What an on-call phone hears when the hotline rings it about an emergency left waiting
    (`ivr.oncall`): the page, said twice, as whoever answers may be waking up, and a key to
    say they are coming (`action`). A key ends the saying; nothing pressed, it hangs up."""
    response = VoiceResponse()
    gather = _page_key(action)
    for again in (False, True):
        if again:
            gather.pause(length=1)
        gather.say(speech, language="en-US")
        gather.say(PAGE_ACK_PROMPT, language="en-US")
    response.append(gather)
    response.hangup()
    return str(response)


def page_answer_twiml(said: str, *, ask_again: str | None = None) -> str:
    """The hotline's answer to a key on a page's call: `said`, then goodbye, or the key asked
    for again at `ask_again` (another key was pressed)."""
    response = VoiceResponse()
    response.say(said, language="en-US")
    if ask_again is not None:
        gather = _page_key(ask_again)
        gather.say(PAGE_ACK_PROMPT, language="en-US")
        response.append(gather)
    response.hangup()
    return str(response)


def text_reply_twiml(body: str | None) -> str:
    """The answer to a text to the hotline's number: a text back saying `body`, or nothing."""
    response = MessagingResponse()
    if body is not None:
        response.message(body)
    return str(response)


def leave_twiml() -> str:
    """Sent to the hold loop when an agent has taken the case: the caller leaves the queue."""
    response = VoiceResponse()
    response.leave()
    return str(response)


CALLBACK_ENTER_NUMBER = "callback_enter_number"
# "2 to confirm the call back to the number ending in ..." (`tree.CALLBACK_CONFIRM_PROMPT`,
# `tree.CALLBACK_CONFIRM_KEY`): optional, a catalog without it takes the first 1
# (`callback_confirm_twiml`).


def callback_number_twiml(
    catalogs: Catalogs, language: str, *, action: str, again: bool = False
) -> str:
    """A caller who withheld their number asked to be called back: the number to call, keyed
    with its country code and #. Nothing keyed: the hold loop goes on (Twilio asks for the
    wait URL again once this document ends), their place kept."""
    response = VoiceResponse()
    gather = Gather(action=action, method="POST", input="dtmf", finish_on_key="#", timeout=10)
    if again:
        _say(gather, catalogs, "callback_number_invalid", language)
    _say(gather, catalogs, CALLBACK_ENTER_NUMBER, language)
    response.append(gather)
    return str(response)


def callback_confirm_twiml(catalogs: Catalogs, language: str, *, action: str, last4: str) -> str:
    """A caller pressed 1 for a call back: the number it would go to, and
    CALLBACK_CONFIRM_KEY to have it. A key pressed by mistake (a frightened caller, a
    pocket) must not end their call: any other key goes back to holding, and so does
    nothing (Twilio asks for the wait URL again once this document ends), their place
    kept."""
    response = VoiceResponse()
    gather = Gather(
        action=action, method="POST", input="dtmf", num_digits=1, finish_on_key="", timeout=6
    )
    _say(gather, catalogs, CALLBACK_CONFIRM_PROMPT, language, last4=last4)
    response.append(gather)
    return str(response)


def callback_confirmed_twiml(catalogs: Catalogs, language: str, *, last4: str, ticket: str) -> str:
    response = VoiceResponse()
    _say(response, catalogs, "callback_confirmed", language, last4=last4, ticket=ticket)
    response.hangup()
    return str(response)


def connect_twiml(
    catalogs: Catalogs,
    language: str,
    *,
    agent_phone: str | None,
    agent_name: str,
    action: str,
    greeting: str = "connecting_agent",
    ticket: str = "",
    screen: str | None = None,
    recording: str | None = None,
    caller_id: str | None = None,
) -> str:
    """Bridge the caller to the agent who took the case: their phone, else their Twilio Client.
    `caller_id`: what the agent's phone shows (None: the caller's own number, Twilio's way).
    `screen`: the agent's leg first runs that URL's TwiML (`accept_twiml`), and the caller,
    hearing ringing meanwhile, is put through only once the agent takes the call.
    `recording`: Twilio records the call from the agent's phone answering, each side on its
    own channel, and reports the recording to that URL; the caller is told first."""
    response = VoiceResponse()
    _say(response, catalogs, greeting, language, ticket=ticket)
    bridge: dict[str, Any] = {} if screen is None else {"answer_on_bridge": True}
    if recording is not None:
        _say(response, catalogs, "recording_notice", language)
        bridge |= {
            "record": "record-from-answer-dual",
            "recording_status_callback": recording,
            "recording_status_callback_method": "POST",
            "recording_status_callback_event": "completed absent",
        }
    screened: dict[str, Any] = {} if screen is None else {"url": screen, "method": "POST"}
    if caller_id is not None:
        bridge["caller_id"] = caller_id
    dial = response.dial(action=action, method="POST", timeout=25, **bridge)
    if agent_phone:
        dial.number(agent_phone, **screened)
    else:
        dial.client(agent_name, **screened)
    return str(response)


def accept_twiml(
    catalogs: Catalogs, *, ticket: str, priority: str, action: str, language: str | None = None
) -> str:
    """Said to the agent's phone when it answers: the case, the language its caller chose
    (by its catalog's English name), and a key to take the call. Nothing pressed (a
    voicemail that picked up): the agent's leg ends, unbridged."""
    response = VoiceResponse()
    gather = Gather(
        action=action, method="POST", input="dtmf", num_digits=1, finish_on_key="", timeout=8
    )
    spoken = catalogs.by_language.get(language or "")
    named = (spoken.english_name or spoken.name) if spoken is not None else (language or "")
    _say(
        gather,
        catalogs,
        "agent_accept",
        BASE_LANGUAGE,
        ticket=ticket,
        priority=priority,
        language=named,
    )
    response.append(gather)
    response.hangup()
    return str(response)


def not_taken_twiml() -> str:
    """The agent's leg ends without the caller put through."""
    response = VoiceResponse()
    response.hangup()
    return str(response)


def accepted_twiml() -> str:
    """Taken: an empty document ends the agent's TwiML, and Twilio bridges the two calls."""
    return str(VoiceResponse())


def fallback_twiml(
    catalogs: Catalogs, links: Links, queue: str, language: str | None = None
) -> str:
    """What a caller hears when the hotline itself failed: an apology and an agent queue.
    In every language, the caller's likely one (`language`, by their number) first; and
    their hold rounds in it."""
    response = VoiceResponse()
    first = catalogs.spoken(language)
    for each in sorted(catalogs.languages, key=lambda lang: lang != first):
        _say(response, catalogs, "fallback_apology", each)
    # The action lets the hold loop hand this caller to an agent (<Leave/>) like any other.
    response.enqueue(
        queue,
        action=links.queue_exit(0),
        method="POST",
        wait_url=links.wait(first, queue),
        wait_url_method="POST",
    )
    return str(response)


# What XML 1.0 cannot carry at all (TwiML is XML).
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _say(
    parent: VoiceResponse | Gather, catalogs: Catalogs, key: str, language: str, /, **variables: Any
) -> None:
    u = catalogs.render(key, language, **variables)
    if u.audio:
        parent.play(u.audio)
    else:
        parent.say(u.text, voice=u.voice, language=u.say_language)


class _Turn:
    """One webhook's worth of work: collects TwiML and log entries while moving the state."""

    def __init__(
        self,
        tree: CompiledTree,
        links: Links,
        step: int,
        now: datetime,
        ticket: str,
        announcement: Announcement | None = None,
    ) -> None:
        self.tree = tree
        self.links = links
        self.step = step
        self.now = now
        self.ticket = ticket
        self.announcement = announcement
        self.response = VoiceResponse()
        self.log: list[LogEntry] = []
        self.effects: list[Effect] = []
        # Variables a node on the way gives the prompts after it: `opens`, after closed hours.
        self.variables: dict[str, Any] = {}
        # The verbs before this one are a say node's (a notice, advice): heard whole, never
        # stopped by a key, which would also be taken as an answer to the prompt after it.
        self.heard_whole = 0

    def finish(self, state: CallState) -> Step:
        return Step(state, str(self.response), self.log, self.effects)

    def say(self, key: str, language: str, /, **variables: Any) -> None:
        _say(self.response, self.tree.catalogs, key, language, **{**self.variables, **variables})

    # -- moving between nodes

    def enter(self, name: str, state: CallState, trail: tuple[str, ...] | None = None) -> CallState:
        """Move to `name`, running pass-through nodes, until a node waits for the caller. A
        menu they passed through already in this call (back to it, or an option leading up
        to it) is presented with its short prompt: they have heard the long one."""
        heard = set(state.trail)
        for _ in range(MAX_HOPS):
            node = self.tree.node(name)
            facts = {**state.facts, "topic": node.topic} if node.topic else state.facts
            state = state.model_copy(
                update={
                    "node": name,
                    "no_input": 0,
                    "invalid": 0,
                    "facts": facts,
                    "trail": state.trail if trail is None else trail,
                }
            )
            trail = None
            prompt = getattr(node, "prompt", None)
            detail: dict[str, Any] = {"node_kind": node.kind}
            served = state.facts.get("served_case")
            if isinstance(node, SurveyNode) and served and served.isdigit():
                detail["case"] = int(served)  # asked, whether or not they answer
            self.log.append(LogEntry(name, "entered", prompt_key=prompt, detail=detail))
            if isinstance(node, SayNode):
                self.say(node.prompt, state.lang)
                self.heard_whole = len(self.response.verbs)
                name = node.next
            elif isinstance(node, HoursNode):
                local = self.now.astimezone(ZoneInfo(node.timezone))
                is_open = node.is_open(local.date(), local.time())
                self.log[-1] = LogEntry(
                    name,
                    "entered",
                    outcome="open" if is_open else "closed",
                    detail={"node_kind": node.kind},
                )
                if not is_open:
                    opens = node.next_opening(self.now)
                    if opens is not None:
                        self.variables["opens"] = Moment(opens, local)
                name = node.on_open if is_open else node.on_closed
            else:
                if state.trail and state.trail[-1] == name:
                    # Back from here must leave here: replaying advice returns to this same menu.
                    state = state.model_copy(update={"trail": state.trail[:-1]})
                return self.present(state, first=True, short=name in heard)
        # Unreachable for a loaded tree; still, never leave a caller in silence.
        self.log.append(LogEntry(name, "escalated", outcome="too_many_hops"))
        self.say("fallback_apology", state.lang)
        self.response.hangup()
        return state.model_copy(update={"ended": True})

    def present(self, state: CallState, *, first: bool = False, short: bool = False) -> CallState:
        """The TwiML for the node the caller is waiting at."""
        node = self.tree.node(state.node)
        if isinstance(node, MenuNode):
            key = node.short_prompt if short and node.short_prompt else node.prompt
            news = self._unheard_announcement(node, state)
            self.gather_menu(self.tree.menus[state.node], state, key, before=news)
            if news is not None:
                assert self.announcement is not None
                facts = {**state.facts, "announced": self.announcement.id}
                state = state.model_copy(update={"facts": facts})
                self.log.append(
                    LogEntry(state.node, "announced", detail={"announcement": self.announcement.id})
                )
        elif isinstance(node, LanguageNode):
            self.gather_language(node, state)
        elif isinstance(node, QueueNode):
            if first:
                if node.prompt:
                    self.say(node.prompt, state.lang)
                state = self.open_case(
                    state,
                    node.queue,
                    node.priority,
                    node.reason or node.topic or state.node,
                    announce=node.ticket_prompt if node.announce_ticket else None,
                    freeze=node.freeze_prompt if node.self_freeze else None,
                    not_frozen=node.not_frozen_prompt if node.self_freeze else None,
                )
            state = self.enqueue(state, node.queue, node.priority)
        elif isinstance(node, VerifyNode):
            if first and node.prompt:
                self.say(node.prompt, state.lang)
            step = node.steps[int(state.facts.get("verify_step", "0"))]
            self.gather_digits(node.step_prompt(step), state, node.timeout)
        elif isinstance(node, NumberCheckNode):
            self.gather_digits(node.prompt, state, node.timeout)
        elif isinstance(node, TicketNode):
            if "queue" in state.facts:  # found earlier: the caller is queued behind it
                state = self.enqueue(state, state.facts["queue"], state.facts["priority"])
            else:
                self.gather_digits(node.prompt, state, node.timeout)
        elif isinstance(node, TransferNode):
            if node.prompt and first:
                self.say(node.prompt, state.lang)
            self.response.dial(
                node.number,
                action=self.links.dial(self.step),
                method="POST",
                timeout=node.timeout,
                caller_id=state.facts.get("shown_as"),
            )
        elif isinstance(node, SurveyNode):
            gather = Gather(
                action=self.links.gather(self.step),
                method="POST",
                input="dtmf",
                num_digits=1,
                finish_on_key="",
                timeout=node.timeout,
                action_on_empty_result=True,
            )
            _say(gather, self.tree.catalogs, node.prompt, state.lang)
            self.response.append(gather)
            self.response.redirect(self.links.gather(self.step), method="POST")
        elif isinstance(node, HangupNode):
            self.say(node.prompt or "goodbye", state.lang)
            self.response.hangup()
            self.log.append(LogEntry(state.node, "ended", outcome="hangup"))
            state = state.model_copy(update={"ended": True})
        return state

    def open_case(
        self,
        state: CallState,
        queue: str,
        priority: str,
        reason: str,
        *,
        announce: str | None,
        freeze: str | None,
        not_frozen: str | None = None,
        parent_ticket: str | None = None,
        keeps_place: bool = False,
    ) -> CallState:
        """Open the caller's case (one per queue a call reaches) and read its ticket back.
        `freeze`: a verified caller's account is frozen, and they are told so; `not_frozen`
        is said to one who was not. `keeps_place`: the case takes its parent's place."""
        facts = dict(state.facts)
        if facts.get("ticket") and facts.get("queue") == queue:
            return state
        facts["ticket"] = self.ticket
        flags: dict[str, str] = {k: facts[k] for k in CASE_FACTS if k in facts}
        uid = facts.get("uid") if facts.get("verified") == "yes" else None
        if freeze and uid:
            self.effects.append(Freeze(uid))
            flags["self_freeze"] = "requested"
            self.say(freeze, state.lang)
        elif not_frozen:
            self.say(not_frozen, state.lang)
        self.effects.append(
            OpenCase(
                self.ticket,
                queue,
                priority,
                reason,
                flags,
                list(state.trail),
                parent_ticket,
                keeps_place=keeps_place and parent_ticket is not None,
            )
        )
        self.log.append(
            LogEntry(
                state.node, "case", outcome=priority, detail={"queue": queue, "ticket": self.ticket}
            )
        )
        if announce:
            self.say(announce, state.lang, ticket=self.ticket)
        return state.model_copy(update={"facts": facts})

    def enqueue(self, state: CallState, queue: str, priority: str) -> CallState:
        self.response.enqueue(
            queue,
            action=self.links.queue_exit(self.step),
            method="POST",
            wait_url=self.links.wait(state.lang, queue),
            wait_url_method="POST",
        )
        self.log.append(
            LogEntry(state.node, "queued", outcome=queue, detail={"priority": priority})
        )
        return state.model_copy(
            update={"facts": {**state.facts, "queue": queue, "priority": priority}}
        )

    def gather_digits(self, prompt_key: str, state: CallState, timeout: int) -> None:
        """Several digits ended by # (an account UID, a PIN, a ticket number).

        What the asking node said just before (a verify node's intro, "could not verify")
        goes inside the <Gather> with the prompt, so a key stops it: a victim calling again,
        who knows the way to skip, keys their UID (or *) at once. A say node's words before
        it (the emergency notice) are heard whole: a key there ("*" to hear the menu again,
        a repeated 1) must not be taken for an answer to a prompt not yet heard."""
        gather = Gather(
            action=self.links.gather(self.step),
            method="POST",
            input="dtmf",
            finish_on_key="#",
            timeout=timeout,
            action_on_empty_result=True,
        )
        said: list[Say | Play] = []
        verbs = self.response.verbs
        while len(verbs) > self.heard_whole and isinstance(verbs[-1], Say | Play):
            said.insert(0, verbs.pop())
        for verb in said:
            gather.append(verb)
        _say(gather, self.tree.catalogs, prompt_key, state.lang)
        self.response.append(gather)
        self.response.redirect(self.links.gather(self.step), method="POST")

    def _unheard_announcement(self, node: MenuNode, state: CallState) -> str | None:
        """The announcement's text for this caller, if this menu plays it and they have not
        heard this one yet (a caller who goes back to the menu is not told twice)."""
        news = self.announcement
        if not node.announcement or news is None or state.facts.get("announced") == news.id:
            return None
        return news.texts.get(state.lang) or None

    def _incident_live(self, node: MenuNode, language: str) -> bool:
        """Whether this menu's `incident_options` are offered now: an announcement is up with
        words in the caller's language (an option about "the incident we told you about"
        means nothing to one who heard none), and the menu is one that plays it (heard
        already or not)."""
        news = self.announcement
        return news is not None and node.announcement and bool(news.texts.get(language))

    def gather_menu(
        self, menu: CompiledMenu, state: CallState, prompt_key: str, before: str | None = None
    ) -> None:
        # finishOnKey="": # and * are menu keys here. Twilio's default finishOnKey is "#",
        # which would turn the back key into an empty result (heard as silence).
        catalog = self.tree.catalogs.catalog(state.lang)
        hints = menu.hints.get(state.lang) or menu.hints.get(BASE_LANGUAGE)
        speech = {"language": catalog.speech_language, "hints": hints, "speech_timeout": "auto"}
        gather = Gather(
            action=self.links.gather(self.step),
            method="POST",
            num_digits=1,
            finish_on_key="",
            timeout=menu.node.timeout,
            action_on_empty_result=True,
            input="dtmf speech" if hints else "dtmf",
            **(speech if hints else {}),
        )
        if before:
            # Inside the Gather: a key or a word interrupts it, so a victim who knows to press
            # 1 is not held up by news they do not need.
            catalog = self.tree.catalogs.catalog(state.lang)
            text = NOT_XML.sub("", before)  # refused when set; never let one break the menu
            gather.say(text, voice=catalog.voice, language=catalog.say_language)
        _say(gather, self.tree.catalogs, prompt_key, state.lang)
        if self._incident_live(menu.node, state.lang):
            # Keys offered only while an announcement is up: after the menu's own, each time.
            for incident in menu.node.incident_options:
                _say(gather, self.tree.catalogs, incident.prompt, state.lang)
        self.response.append(gather)
        # If Twilio ever goes past the Gather (no actionOnEmptyResult), silence still reaches us.
        self.response.redirect(self.links.gather(self.step), method="POST")

    def gather_language(self, node: LanguageNode, state: CallState) -> None:
        """Every language's welcome, then each option in its own language; the caller's
        likely language (by their number's country) first, and after a miss an apology in
        each language before the options again."""
        catalogs = self.tree.catalogs
        likely = node.likely(state.facts.get("country"))
        picked = state.facts.get(LANGUAGE_PICKED)
        if picked and likely is not None:
            self.gather_language_check(node, likely, picked)
            return
        languages = sorted(catalogs.languages, key=lambda lang: lang != likely)
        options = sorted(node.options, key=lambda o: o.language != likely)
        shortcuts = self.tree.shortcuts.get(state.node)
        has_speech = any(o.speech for o in node.options) or bool(shortcuts and shortcuts.by_speech)
        # One recogniser per <Gather>; before the caller has chosen, their likely language's
        # (a caller from China says 中文, or 账户被盗, in Mandarin), else the base language's.
        # After a miss, the next language's, only where their number's country names none:
        # a Mandarin speaker from Hong Kong, Singapore or abroad is heard in it on their
        # second try, and a caller from China in Mandarin on every try.
        known = likely is not None and likely in catalogs.by_language
        first = likely if known and likely is not None else BASE_LANGUAGE
        turns = [first] if known else [first, *(c for c in catalogs.languages if c != first)]
        heard_in = turns[(state.no_input + state.invalid) % len(turns)]
        hints = [w for o in node.options for w in o.speech]
        hints += [w for o in node.shortcuts for w in o.speech.get(heard_in, [])]
        speech = {
            "language": catalogs.catalog(heard_in).speech_language,
            "hints": hints_of(hints),
            "speech_timeout": "auto",
        }
        gather = Gather(
            action=self.links.gather(self.step),
            method="POST",
            num_digits=1,
            finish_on_key="",
            timeout=node.timeout,
            action_on_empty_result=True,
            input="dtmf speech" if has_speech else "dtmf",
            **(speech if has_speech else {}),
        )
        if state.no_input == 0 and state.invalid == 0:
            if node.prompt:
                for language in languages:
                    _say(gather, catalogs, node.prompt, language)
        else:
            missed = "invalid" if state.invalid > state.no_input else "no_input"
            for language in languages:
                if catalogs.has(missed, language):
                    _say(gather, catalogs, missed, language)
        for option in options:
            _say(gather, catalogs, node.option_prompt, option.language, key=option.key)
        self.response.append(gather)
        self.response.redirect(self.links.gather(self.step), method="POST")

    def gather_language_check(self, node: LanguageNode, likely: str, picked: str) -> None:
        """A caller whose number's country names a language keyed another one (a caller
        from China used to 中文请按1, where 1 is English here): one line in the likely
        language with its key, then that the call goes on in the one keyed. Keys only."""
        # None: a tree made live between the two turns dropped it; then only the second line.
        theirs = next((o for o in node.options if o.language == likely), None)
        gather = Gather(
            action=self.links.gather(self.step),
            method="POST",
            num_digits=1,
            finish_on_key="",
            timeout=LANGUAGE_CHECK_SECONDS,
            action_on_empty_result=True,
            input="dtmf",
        )
        if theirs is not None:
            _say(gather, self.tree.catalogs, LANGUAGE_CHECK_PROMPT, likely, key=theirs.key)
        if self.tree.catalogs.has(LANGUAGE_STAY_PROMPT, picked):
            _say(gather, self.tree.catalogs, LANGUAGE_STAY_PROMPT, picked)
        self.response.append(gather)
        self.response.redirect(self.links.gather(self.step), method="POST")

    # -- inputs at each kind of waiting node

    def on_menu(self, menu: CompiledMenu, state: CallState, event: Input) -> CallState:
        node, name = menu.node, state.node
        kind = input_kind(event)
        if isinstance(event, Silence):
            return self.no_input(node, state)
        digits = event.digits if isinstance(event, Keys) else None
        option = None
        detail: dict[str, Any] = {}
        if isinstance(event, Speech):
            option = match_speech(menu, state.lang, event.text)
            if option is None:
                # A key said instead of pressed ("one", 按二), or "repeat": as the key.
                digits = spoken_key(event.text)
                if digits is None and asks_again(event.text):
                    digits = node.repeat_key or ("*" if "*" in menu.by_key else None)
        if digits is not None:
            if digits == node.repeat_key:
                self.log.append(LogEntry(name, "input", kind, option="repeat"))
                return self.present(state)
            if node.back_key is not None and digits == node.back_key and state.trail:
                self.log.append(LogEntry(name, "input", kind, option="back"))
                return self.enter(state.trail[-1], state, trail=state.trail[:-1])
            if digits == node.operator_key and node.operator:
                self.log.append(
                    LogEntry(name, "input", kind, option="operator", outcome=node.operator)
                )
                return self.enter(node.operator, state)
            option = menu.by_key.get(digits)
            if option is None and self._incident_live(node, state.lang):
                # An incident's key, offered (and taken) only while an announcement is up.
                assert self.announcement is not None
                option = menu.while_announced.get(digits)
                if option is not None:
                    detail["announcement"] = self.announcement.id
            if (
                isinstance(event, Speech)
                and option is not None
                and isinstance(self.tree.node(option.target), HangupNode)
            ):
                option = None  # "nine" misheard in "don't hang up" never ends a call
        if option is None:
            return self.invalid(node, state, event)
        return self.choose(name, option, state, event, detail)

    def choose(
        self,
        name: str,
        option: Option,
        state: CallState,
        event: Input,
        detail: dict[str, Any] | None = None,
    ) -> CallState:
        label = option.key if option.key is not None else option.target
        detail = dict(detail or {})
        if isinstance(event, Speech):
            detail["confidence"] = event.confidence
        self.log.append(
            LogEntry(
                name, "input", input_kind(event), option=label, outcome=option.target, detail=detail
            )
        )
        return self.enter(option.target, state, trail=(*state.trail, name)[-MAX_TRAIL:])

    @staticmethod
    def _missed_enough(node: MenuNode, state: CallState) -> bool:
        """Silences and wrong keys together, with this one: as many as the larger limit. A
        caller who is silent, then presses a wrong key, then is silent again is as lost as
        one silent three times, and reaches a person as soon."""
        return state.no_input + state.invalid + 1 >= max(node.max_no_input, node.max_invalid)

    def no_input(self, node: MenuNode, state: CallState) -> CallState:
        count = state.no_input + 1
        if count >= node.max_no_input or self._missed_enough(node, state):
            reason = "max_no_input" if count >= node.max_no_input else "max_misses"
            self.log.append(
                LogEntry(
                    state.node,
                    "escalated",
                    "silence",
                    outcome=node.on_no_input,
                    detail={"reason": reason, "count": count},
                )
            )
            return self.enter(node.on_no_input, state)
        self.log.append(
            LogEntry(state.node, "input", "silence", outcome="reprompt", detail={"count": count})
        )
        if node.no_input_prompt:
            self.say(node.no_input_prompt, state.lang)
        return self.present(state.model_copy(update={"no_input": count}), short=True)

    def invalid(self, node: MenuNode, state: CallState, event: Input) -> CallState:
        count = state.invalid + 1
        # What was pressed or said is not kept: a caller may type a secret at the wrong prompt.
        detail: dict[str, Any] = {"count": count}
        if isinstance(event, Keys):
            detail["length"] = len(event.digits)
        if count >= node.max_invalid or self._missed_enough(node, state):
            reason = "max_invalid" if count >= node.max_invalid else "max_misses"
            self.log.append(
                LogEntry(
                    state.node,
                    "escalated",
                    input_kind(event),
                    outcome=node.on_invalid,
                    detail={**detail, "reason": reason},
                )
            )
            return self.enter(node.on_invalid, state)
        self.log.append(
            LogEntry(state.node, "input", input_kind(event), outcome="invalid", detail=detail)
        )
        if node.invalid_prompt:
            self.say(node.invalid_prompt, state.lang)
        return self.present(state.model_copy(update={"invalid": count}), short=True)

    def on_language(self, node: LanguageNode, state: CallState, event: Input) -> CallState:
        chosen = None
        shortcut: tuple[Option, str | None] | None = None
        shortcuts = self.tree.shortcuts.get(state.node)
        likely = node.likely(state.facts.get("country"))
        picked = state.facts.get(LANGUAGE_PICKED)
        if picked:
            # The answer to `gather_language_check`: their likely language's key, or on in
            # the one they keyed (silence, or any other key: never asked again).
            facts = {k: v for k, v in state.facts.items() if k != LANGUAGE_PICKED}
            theirs = next((o for o in node.options if o.language == likely), None)
            keyed = isinstance(event, Keys) and theirs is not None and event.digits == theirs.key
            lang = likely if keyed and likely else picked
            self.log.append(
                LogEntry(state.node, "input", input_kind(event), outcome=f"checked:{lang}")
            )
            return self.enter(node.next, state.model_copy(update={"lang": lang, "facts": facts}))
        if isinstance(event, Keys):
            chosen = next((o for o in node.options if o.key == event.digits), None)
            if shortcuts and event.digits in shortcuts.by_key:
                shortcut = (shortcuts.by_key[event.digits], None)
        elif isinstance(event, Speech):
            heard = normalise_speech(event.text)
            chosen = next(
                (
                    o
                    for o in node.options
                    if any(normalise_speech(w) in heard for w in o.speech if w.strip())
                ),
                None,
            )
            if shortcuts:
                order = [likely or BASE_LANGUAGE, *self.tree.catalogs.languages]
                shortcut = shortcuts.heard(event.text, list(dict.fromkeys(order)))
            said = spoken_key(event.text)  # "one", 二: the key said instead of pressed
            if chosen is None and shortcut is None and said is not None:
                chosen = next((o for o in node.options if o.key == said), None)
        if shortcut is not None:
            # Straight on, in the language of the words heard (or chosen with them).
            option, spoken_in = shortcut
            lang = chosen.language if chosen else spoken_in or likely or BASE_LANGUAGE
            self.log.append(
                LogEntry(
                    state.node,
                    "input",
                    input_kind(event),
                    option=option.key,
                    outcome=f"shortcut:{option.target}",
                    detail={"language": lang},
                )
            )
            return self.enter(option.target, state.model_copy(update={"lang": lang}))
        if chosen is not None:
            self.log.append(
                LogEntry(
                    state.node,
                    "input",
                    input_kind(event),
                    option=chosen.key,
                    outcome=chosen.language,
                )
            )
            if (
                isinstance(event, Keys)
                and likely is not None
                and chosen.language != likely
                and any(o.language == likely for o in node.options)
                and self.tree.catalogs.has(LANGUAGE_CHECK_PROMPT, likely)
            ):
                # Keyed, not said: a habit's key (中文请按1) may be the wrong one. Asked once.
                facts = {**state.facts, LANGUAGE_PICKED: chosen.language}
                return self.present(
                    state.model_copy(update={"facts": facts, "lang": chosen.language})
                )
            return self.enter(node.next, state.model_copy(update={"lang": chosen.language}))
        attempts = state.no_input + state.invalid + 1
        outcome = "silence" if isinstance(event, Silence) else "invalid"
        if attempts >= node.max_attempts:
            # A caller who cannot choose still gets help: in the language of their number's
            # country, where the menu names one, else the base language.
            lang = node.likely(state.facts.get("country")) or BASE_LANGUAGE
            self.log.append(
                LogEntry(
                    state.node,
                    "escalated",
                    input_kind(event),
                    outcome=lang,
                    detail={"reason": outcome, "count": attempts},
                )
            )
            return self.enter(node.next, state.model_copy(update={"lang": lang}))
        self.log.append(
            LogEntry(
                state.node, "input", input_kind(event), outcome=outcome, detail={"count": attempts}
            )
        )
        counter = "no_input" if isinstance(event, Silence) else "invalid"
        return self.present(state.model_copy(update={counter: getattr(state, counter) + 1}))

    def on_verify(self, node: VerifyNode, state: CallState, event: Input) -> CallState:
        if isinstance(event, Checked) and event.guessed:
            # Whatever this answer was: the agent hears that the account is being guessed.
            facts = {**state.facts, "under_guessing": event.guessed}
            state = state.model_copy(update={"facts": facts})
        index = int(state.facts.get("verify_step", "0"))
        step = node.steps[index]
        facts = dict(state.facts)
        kind = input_kind(event)
        # A wrong answer earlier in this verification stands whatever comes after: skipping,
        # silence or an outage (which an attacker may cause) never hides it.
        wrong_before = facts.get("verify_bad") == "1" or state.invalid > 0
        gave_up = "no" if wrong_before else "skipped"
        if isinstance(event, Keys) and node.skips(event.digits):
            self.log.append(LogEntry(state.node, "verify", kind, outcome="skipped"))
            return self.verified(node, state, gave_up)
        if isinstance(event, Checked) and event.locked:
            self.log.append(
                LogEntry(state.node, "verify", kind, outcome="locked", detail={"factor": step})
            )
            return self.verified(node, state, "locked")
        if isinstance(event, Silence) or (isinstance(event, Keys) and not event.digits):
            # Nothing keyed is no wrong answer, and says nothing of one: the same step is asked
            # again, once; silent again, they have not got it to hand, and a frightened caller
            # is not kept from an agent by prompts they cannot answer: on, as if they skipped.
            self.log.append(
                LogEntry(state.node, "verify", kind, outcome="silent", detail={"factor": step})
            )
            if facts.get("verify_silent") == "1":
                return self.verified(node, state, gave_up)
            self.say(self.no_keys(state.lang), state.lang)
            facts["verify_silent"] = "1"
            return self.present(state.model_copy(update={"facts": facts}))
        if isinstance(event, Checked) and event.unavailable:
            # Asking again would only meet the same outage: on to the agent, who verifies.
            self.log.append(
                LogEntry(state.node, "verify", kind, outcome="unavailable", detail={"factor": step})
            )
            return self.verified(node, state, "no" if wrong_before else "unavailable")
        if step == "uid" and isinstance(event, Keys) and not node.is_uid(event.digits):
            # No UID (a PIN keyed too early, a typo): nothing of it is kept, and it is no
            # wrong answer. Asked again, once, as after silence; then on, as if skipped.
            self.log.append(
                LogEntry(state.node, "verify", kind, outcome="not_a_uid", detail={"factor": step})
            )
            if facts.get("verify_silent") == "1":
                return self.verified(node, state, gave_up)
            if self.tree.catalogs.has(NOT_A_UID_PROMPT, state.lang):
                self.say(NOT_A_UID_PROMPT, state.lang)
            facts["verify_silent"] = "1"
            return self.present(state.model_copy(update={"facts": facts}))
        if step == "uid" and isinstance(event, Keys):
            facts["uid"] = event.digits
            ok = True
        else:
            # Only a Checked verdict can pass a secret step; raw keys there never count.
            ok = isinstance(event, Checked) and event.ok
        if ok:
            # Which factor matched (a PIN, or only the ID's last 4), for the agent to weigh.
            matched = event.factor if isinstance(event, Checked) and event.factor else step
            facts["verify_factors"] = ",".join(
                [*filter(None, facts.get("verify_factors", "").split(",")), matched]
            )
        # The outcome per step goes to the log, not to the caller: they hear nothing until
        # every step is in, and then only that the details did not match.
        self.log.append(
            LogEntry(
                state.node,
                "verify",
                kind,
                outcome="ok" if ok else "no_match",
                detail={"factor": step},
            )
        )
        bad = facts.get("verify_bad") == "1" or not ok
        if index + 1 < len(node.steps):
            facts.update(
                verify_step=str(index + 1), verify_bad="1" if bad else "0", verify_silent="0"
            )
            return self.present(state.model_copy(update={"facts": facts}))
        if not bad:
            return self.verified(node, state.model_copy(update={"facts": facts}), "yes")
        attempts = state.invalid + 1
        if attempts >= node.attempts:
            return self.verified(node, state.model_copy(update={"facts": facts}), "no")
        self.say(node.failed_prompt, state.lang)
        # Not verified so far: what the case says if they hang up before another try (an
        # agent calling back must not read "not attempted" after details that did not match).
        facts.update(
            verify_step="0", verify_bad="0", verify_silent="0", verify_factors="", verified="no"
        )
        return self.present(state.model_copy(update={"facts": facts, "invalid": attempts}))

    def verified(self, node: VerifyNode, state: CallState, result: str) -> CallState:
        transient = ("verify_step", "verify_bad", "verify_silent", "verify_factors")
        facts = {k: v for k, v in state.facts.items() if k not in transient}
        facts["verified"] = result
        if result == "yes":
            facts["factors"] = state.facts.get("verify_factors") or ",".join(node.steps)
        target = {"yes": node.on_success, "locked": node.on_locked or node.on_failure}.get(
            result, node.on_failure
        )
        self.log.append(LogEntry(state.node, "verified", outcome=result))
        return self.enter(target, state.model_copy(update={"facts": facts}))

    def on_ticket(self, node: TicketNode, state: CallState, event: Input) -> CallState:
        if isinstance(event, TicketLookup) and event.found is not None:
            case = event.found
            self.log.append(
                LogEntry(
                    state.node,
                    "input",
                    "dtmf",
                    outcome="found",
                    detail={"ticket": case.ticket, "status": case.status},
                )
            )
            self.say(node.status_prompt, state.lang, ticket=case.ticket)
            self.say(f"case_status_{case.status}", state.lang)
            self.say("ticket_requeued", state.lang)
            facts = {**state.facts, "parent_ticket": case.ticket}
            # A victim following their emergency up (as the ticket text tells them to: main menu
            # 9) is one still: it stays in the emergency lane, which main menu 1 opens to anyone
            # anyway. One resolved already is a question about it: high, not an emergency.
            resolved = case.status == "resolved"
            priority = "high" if case.priority == "emergency" and resolved else case.priority
            state = self.open_case(
                state.model_copy(update={"facts": facts}),
                case.queue,
                priority,
                case.reason,
                announce=None,
                freeze=None,
                parent_ticket=case.ticket,
            )
            return self.enqueue(state, case.queue, priority)
        # A number locked out of lookups is not looked up, and hears exactly what a miss does
        # (asked again, then on to an agent): a guesser cannot tell the lock from a miss.
        locked = isinstance(event, TicketLookup) and event.locked
        silent = isinstance(event, Silence) or (isinstance(event, Keys) and not event.digits)
        return self.missed(
            state,
            event,
            outcome="locked" if locked else "silent" if silent else "not_found",
            said=self.no_keys(state.lang) if silent else node.not_found_prompt,
            attempts=node.attempts,
            then=node.on_not_found,
        )

    def no_keys(self, language: str) -> str:
        """What is said when no digits came where some were asked for (a UID, a ticket):
        `no_digits` where the catalog words it apart from a menu's `no_input` (Mandarin's
        says "your choice"), else `no_input`."""
        return (
            NO_DIGITS_PROMPT if self.tree.catalogs.has(NO_DIGITS_PROMPT, language) else "no_input"
        )

    def missed(
        self, state: CallState, event: Input, *, outcome: str, said: str, attempts: int, then: str
    ) -> CallState:
        """Digits asked for and not given usably: counted, logged, `said`; asked again, or
        on to `then` once `attempts` in all have missed."""
        count = state.invalid + 1
        self.log.append(
            LogEntry(
                state.node, "input", input_kind(event), outcome=outcome, detail={"count": count}
            )
        )
        self.say(said, state.lang)
        if count >= attempts:
            return self.enter(then, state)
        return self.present(state.model_copy(update={"invalid": count}))

    def on_number_check(self, node: NumberCheckNode, state: CallState, event: Input) -> CallState:
        """Ours or not, the caller hears it with the number's last four digits and goes on;
        a number that is not ours stays with the call, for the case an agent may open. Keys
        that are not a number, or nothing, are asked again `attempts` times in all; * or 0
        alone is a caller who wants out: `on_failure` at once."""
        if isinstance(event, NumberLookup) and event.number is not None:
            self.log.append(LogEntry(state.node, "input", "dtmf", outcome=event.result))
            prompt = node.official_prompt if event.official else node.not_official_prompt
            self.say(prompt, state.lang, last4=last4(event.number))
            if event.official:
                return self.enter(node.on_official, state)
            facts = {**state.facts, "reported_number": event.number}
            return self.enter(node.on_not_official, state.model_copy(update={"facts": facts}))
        if isinstance(event, NumberLookup) and event.short:
            self.log.append(LogEntry(state.node, "input", "dtmf", outcome=event.result))
            self.say(node.short_code_prompt, state.lang)
            return self.enter(node.on_not_official, state)
        if isinstance(event, Keys) and event.digits in ("*", "0"):
            self.log.append(LogEntry(state.node, "input", "dtmf", outcome="skipped"))
            return self.enter(node.on_failure, state)
        silent = isinstance(event, Silence) or (isinstance(event, Keys) and not event.digits)
        return self.missed(
            state,
            event,
            outcome="silent" if silent else "not_a_number",
            said=self.no_keys(state.lang) if silent else node.invalid_prompt,
            attempts=node.attempts,
            then=node.on_failure,
        )

    def on_queue_exit(
        self, node: QueueNode | None, state: CallState, event: QueueExit
    ) -> CallState:
        result = event.result
        if result in ("bridged", "hangup"):
            self.log.append(LogEntry(state.node, "ended", "queue", outcome=result))
            if result == "bridged":
                self.say("goodbye", state.lang)
            self.response.hangup()
            return state.model_copy(update={"ended": True})
        self.log.append(LogEntry(state.node, "input", "queue", outcome=result))
        if result == AGENT_NO_ANSWER:
            return self.enqueue(state, state.facts["queue"], state.facts["priority"])
        if node is not None and node.on_leave:
            return self.enter(node.on_leave, state)
        # Left unserved (queue full, an error): apologise and queue again; when this queue
        # keeps failing, the tree's fallback queue. The case stays in line meanwhile: its
        # place is the hotline's, not Twilio's queue's, so nobody loses their turn.
        requeues = int(state.facts.get("requeues", "0")) + 1
        current = state.facts["queue"]
        fallback = self.tree.tree.fallback_queue
        full = result == QUEUE_FULL
        if not full:
            self.say("fallback_apology", state.lang)
        elif "queue_full" not in state.facts:
            told = self.tree.catalogs.has(QUEUE_FULL_PROMPT, BASE_LANGUAGE)  # shipped later
            self.say(QUEUE_FULL_PROMPT if told else "fallback_apology", state.lang)
            state = state.model_copy(update={"facts": {**state.facts, "queue_full": "told"}})
        else:
            # Each try after: a word, never dead air the caller takes for a dropped call.
            self.say("hold", state.lang)
        if full:
            self.response.pause(length=QUEUE_FULL_PAUSE)
        if requeues <= MAX_REQUEUES:
            state = state.model_copy(update={"facts": {**state.facts, "requeues": str(requeues)}})
            return self.enqueue(state, current, state.facts["priority"])
        if current != fallback or state.facts["priority"] == "emergency" or full:
            # Another queue; a hijack victim is never hung up on, whatever fails; nor anyone
            # a full queue refuses: the line is long, not broken, and their case is in it.
            state = state.model_copy(update={"facts": {**state.facts, "requeues": "0"}})
            return self.enqueue(state, fallback, state.facts["priority"])
        # Even the fallback queue refuses callers: Twilio itself is failing. The case is kept
        # (abandoned on hang-up, still claimable) so an agent calls back.
        self.say("goodbye", state.lang)
        self.response.hangup()
        self.log.append(LogEntry(state.node, "ended", "queue", outcome="requeue_limit"))
        return state.model_copy(update={"ended": True})

    def on_agent_done(self, node: Node, state: CallState, event: AgentDone) -> CallState:
        """The agent hung up first: the caller goes where their queue says (a survey), or is
        told goodbye. Twilio asking again changes nothing: the caller is where they were."""
        served = str(event.case_id)
        if state.facts.get("served_case") == served:
            self.log.append(LogEntry(state.node, "input", "dial", outcome="ignored"))
            return self.present(state)
        detail = {"case": event.case_id}
        self.log.append(LogEntry(state.node, "input", "dial", outcome="agent_done", detail=detail))
        state = state.model_copy(update={"facts": {**state.facts, "served_case": served}})
        after = self._after_agent(node, state.facts.get("queue"))
        if after:
            return self.enter(after, state)
        self.say("goodbye", state.lang)
        self.response.hangup()
        self.log.append(LogEntry(state.node, "ended", "dial", outcome="agent_done"))
        return state.model_copy(update={"ended": True})

    def on_transferred(self, state: CallState, event: Transferred) -> CallState:
        """The agent sent the caller on: told so, in the language they are sent on in (when
        a catalog speaks it), and queued where they were sent, their case with them. The
        hotline gives each transfer once: the webhook that loses the step answers as the
        one that won."""
        lang = state.lang
        if event.language and event.language in self.tree.catalogs.by_language:
            lang = event.language
        detail = {"case": event.case_id, "priority": event.priority}
        self.log.append(LogEntry(state.node, "input", "dial", outcome="transferred", detail=detail))
        if self.tree.catalogs.has(TRANSFERRED_PROMPT, BASE_LANGUAGE):  # shipped later
            self.say(TRANSFERRED_PROMPT, lang)
        # Served by no one there yet: the next agent's hang-up is news (their survey).
        facts = {k: v for k, v in state.facts.items() if k != "served_case"} | {"requeues": "0"}
        # At the queue's node from now on (not entered: no prompt, no new case), so that its
        # `on_leave` and `after_agent` are what happens to them next.
        there = self._queue_node(event.queue) or state.node
        state = state.model_copy(update={"node": there, "lang": lang, "facts": facts})
        return self.enqueue(state, event.queue, event.priority)

    def _after_agent(self, node: Node, queue: str | None) -> str | None:
        """Where a caller goes after the agent: their queue node's `after_agent`. A caller
        queued otherwise (back to an earlier case's team by a ticket node) takes it from the
        tree's first queue node for the same queue."""
        if isinstance(node, QueueNode):
            return node.after_agent
        other = self.tree.node(name) if queue and (name := self._queue_node(queue)) else None
        return other.after_agent if isinstance(other, QueueNode) else None

    def _queue_node(self, queue: str) -> str | None:
        """The tree's first queue node for `queue`."""
        for name, node in self.tree.tree.nodes.items():
            if isinstance(node, QueueNode) and node.queue == queue:
                return name
        return None

    def on_survey(self, node: SurveyNode, state: CallState, event: Input) -> CallState:
        """One key, 1 to 5; anything else, or nothing, is no answer. Asked once either way:
        a caller who does not want to answer is not kept on the line for it. The operator
        key: not done yet, back in line with the same team."""
        keys = event.digits if isinstance(event, Keys) else ""
        score = keys if len(keys) == 1 and keys in SURVEY_SCALE else ""
        back = bool(keys) and keys == node.operator_key and "queue" in state.facts
        served = state.facts.get("served_case")
        self.log.append(
            LogEntry(
                state.node,
                "survey",
                input_kind(event),
                outcome=score or ("back" if back else "none"),
                detail={"case": int(served)} if served and served.isdigit() else {},
            )
        )
        if back:
            return self.back_in_line(state)
        return self.enter(node.next if score else node.on_no_answer or node.next, state)

    def back_in_line(self, state: CallState) -> CallState:
        """The caller the agent left goes back in their team's line at the same priority (an
        emergency stays one), with a new case following the last up, and is told so. From
        the queue's node, as after a transfer: its after_agent is what comes next."""
        queue, priority = state.facts["queue"], state.facts.get("priority", "normal")
        parent = state.facts.get("ticket")
        there = self._queue_node(queue) or state.node
        node = self.tree.node(there)
        reason = (node.reason or node.topic) if isinstance(node, QueueNode) else None
        # `served_case` stays: the agent who left is done with this call (no transfer of that
        # case takes the caller now, and a late copy of their report is still no news).
        gone = ("ticket", "requeues")
        facts = {k: v for k, v in state.facts.items() if k not in gone}
        if parent:
            facts["parent_ticket"] = parent
        state = state.model_copy(update={"node": there, "facts": facts})
        self.say("ticket_requeued", state.lang)
        state = self.open_case(
            state,
            queue,
            priority,
            reason or queue,
            announce=None,
            freeze=None,
            parent_ticket=parent,
            keeps_place=True,
        )
        return self.enqueue(state, queue, priority)

    def on_dial_done(self, node: TransferNode, state: CallState, event: DialDone) -> CallState:
        if event.status in ("completed", "answered"):
            self.log.append(LogEntry(state.node, "ended", "dial", outcome=event.status))
            self.response.hangup()
            return state.model_copy(update={"ended": True})
        self.log.append(LogEntry(state.node, "input", "dial", outcome=event.status))
        if node.on_failure:
            return self.enter(node.on_failure, state)
        # Nobody answered and the tree says nothing more: a person in the fallback queue.
        self.say("fallback_apology", state.lang)
        fallback = self.tree.tree.fallback_queue
        state = self.open_case(
            state, fallback, "normal", node.topic or "transfer_failed", announce=None, freeze=None
        )
        return self.enqueue(state, fallback, "normal")
