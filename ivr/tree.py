"""The call tree: its schema, the checks that refuse a bad tree, and the compiled form.

An operator writes `routes/*.yaml`. Every node has a `kind`; each kind says exactly what
happens on input, on silence (timeout) and on a wrong key, FreeSWITCH-menu style:

    menu      prompt (short_prompt when presented again), options by DTMF key and/or spoken
              keywords per language, `timeout`, `max_no_input` -> `on_no_input`,
              `max_invalid` -> `on_invalid`, repeat/back/operator keys; `incident_options`:
              keys offered (their own prompts said after the menu's) and taken only while the
              supervisors' announcement is up, invalid keys otherwise
    say       play a prompt, then go on to `next` (no input)
    language  choose the caller's language, then `next`; silence keeps the base language
    hours     business hours in a time zone with holiday dates -> `on_open` / `on_closed`
    verify    identity by keypad: `steps` (uid, phone, pin, totp, id_last4, pin_or_id_last4),
              at least one of them a secret (`SECRET_STEPS`), `attempts`, `skip_key`,
              `operator_key` -> `on_success` / `on_failure` / `on_locked`; the caller is never
              told which factor was wrong; silence asks a step again once, and twice is a skip;
              no verdict from the identity service goes to `on_failure` at once (verified:
              unavailable)
    ticket    look up an earlier case by its ticket number and queue the caller back to it
    number_check
              is a number that called or texted the caller one of the exchange's own (the
              tree's `official_numbers`)? -> `on_official` / `on_not_official`; not a number
              `attempts` times, or silence twice -> `on_failure`
    queue     open a case and hand the caller to a named agent queue with a priority
    transfer  dial a number (<Dial>); `on_failure` if nobody answers
    hangup    say goodbye and end the call
    survey    after an agent (a queue's `after_agent`): satisfaction 1-5 by one key, asked
              once; any other key or silence is no answer -> `next`

`load_tree` validates the whole graph and compiles it once; every error names the file,
the line and the node path.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import unicodedata
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ivr.exceptions import Problem, SourceError
from ivr.numbers import E164, SHORT_CODE, country_code
from ivr.prompts import (
    BASE_LANGUAGE,
    MOMENT_VARIABLES,
    VARIABLES,
    Catalogs,
    catalogs_from_sources,
    load_catalogs,
)
from ivr.yamlfile import PathKey, YamlDoc, load_text, read_source


def _digit_to_str(value: Any) -> Any:
    # `key: 2` unquoted is an int to YAML; the operator meant the key "2".
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Key = Annotated[
    str, BeforeValidator(_digit_to_str), Field(pattern=r"^[0-9*#]$", description="one keypad key")
]
NodeName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]
PromptKey = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]
Priority = Literal["emergency", "high", "normal"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Prompts the engine itself says, whatever the tree: every catalog must be able to say them.
ENGINE_PROMPTS = (
    "goodbye",
    "hold",
    "fallback_apology",
    "hold_position",
    "hold_callback_offer",
    "callback_confirmed",
    "connecting_agent",
    "callback_greeting",
    "callback_agent_unavailable",
    "ticket_requeued",
    "agent_accept",  # to the agent, before the caller is put through (IVR_AGENT_SCREENING)
    *(
        f"case_status_{s}"
        for s in ("waiting", "offered", "connected", "resolved", "abandoned", "callback_requested")
    ),
)
# Prompts the engine says that were shipped later: a catalog without one is warned of, not
# refused, so that tree versions stored before it still serve their calls (and the engine
# says less without it: nothing, or goodbye).
LATER_ENGINE_PROMPTS = {
    "call_transferred": "a caller an agent sends on hears nothing before the new queue",
    "callback_sent_on": "a customer whose call back an agent sends on hears only goodbye",
    "queue_full": "a caller whose Twilio queue is full is told something went wrong",
}
# Tips said between hold segments, in turn: hold_tip_1, hold_tip_2, ... (optional).
HOLD_TIP_PREFIX = "hold_tip_"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Node(_Model):
    topic: str | None = Field(default=None, description="recorded as the call's topic when entered")
    out_of_use: bool = Field(
        default=False,
        description="kept for later, with no path leading here: an incident's detour around "
        "a menu (its key sent elsewhere for a while). Neither it nor what only it leads to is "
        "refused as unreachable; each check warns instead, and warns once a path leads here "
        "again (the flag is then to go)",
    )


Keyword = Annotated[str, Field(min_length=1, max_length=100)]


class Option(_Model):
    key: Key | None = None
    speech: dict[str, list[Keyword]] = {}
    target: NodeName

    @model_validator(mode="after")
    def _reachable_somehow(self) -> Option:
        if self.key is None and not self.speech:
            raise ValueError("an option needs a key, spoken keywords, or both")
        return self


class IncidentOption(_Model):
    """A key a menu that plays the supervisors' announcement offers only while one is up (an
    incident): the worried whose account is fine, told where to find news and what to watch
    out for, kept out of the emergency lane. `prompt` offers it, said after the menu's
    prompt meanwhile; while no announcement is up the key is not said and is an invalid
    key."""

    key: Key
    prompt: PromptKey
    target: NodeName


class MenuNode(_Node):
    kind: Literal["menu"]
    prompt: PromptKey
    short_prompt: PromptKey | None = None
    options: list[Option] = Field(min_length=1)
    timeout: int = Field(default=6, ge=1, le=60)
    # Twilio's <Gather> has one timeout; menus take one key, so this only applies when a
    # future multi-key menu waits for more digits.
    inter_digit_timeout: int = Field(default=3, ge=1, le=30)
    max_no_input: int = Field(default=3, ge=1, le=10)
    on_no_input: NodeName
    no_input_prompt: PromptKey | None = "no_input"
    max_invalid: int = Field(default=3, ge=1, le=10)
    on_invalid: NodeName
    invalid_prompt: PromptKey | None = "invalid"
    repeat_key: Key | None = "*"
    back_key: Key | None = None
    operator_key: Key | None = None
    operator: NodeName | None = None
    # Words that reach the operator too ("agent", "人工"), per language; options are tried first.
    operator_speech: dict[str, list[Annotated[str, Field(min_length=1, max_length=100)]]] = {}
    # Plays the supervisors' current announcement (`PUT /api/announcement`) before its prompt,
    # once per call; a key or a word interrupts it.
    announcement: bool = False
    incident_options: list[IncidentOption] = Field(
        default=[],
        description="keys offered, each by its own prompt after the menu's, and taken only "
        "while the supervisors' announcement is up, on a menu that plays it; invalid keys, "
        "never said, otherwise",
    )

    @model_validator(mode="after")
    def _operator_pair(self) -> MenuNode:
        if (self.operator_key is None) != (self.operator is None):
            raise ValueError("operator_key and operator go together")
        if self.operator_speech and self.operator is None:
            raise ValueError("operator_speech needs operator (and operator_key)")
        return self


class LanguageOption(_Model):
    key: Key
    language: str
    speech: list[str] = []


class LanguageNode(_Node):
    kind: Literal["language"]
    prompt: PromptKey | None = Field(default=None, description="said in every language first")
    option_prompt: PromptKey = Field(
        default="language_option", description="said per option in its language"
    )
    options: list[LanguageOption] = Field(min_length=1)
    timeout: int = Field(default=5, ge=1, le=60)
    max_attempts: int = Field(default=2, ge=1, le=5)
    # The likely language of a caller by their number's country calling code ("+86": zh-CN):
    # offered first, and theirs if they choose none (else the base language).
    by_country: dict[
        Annotated[str, Field(pattern=r"^\+[1-9][0-9]{0,3}$")], Annotated[str, Field(min_length=1)]
    ] = {}
    # A key or words that skip the menus from the first prompt: "my account was hacked" said
    # at once, 0 for a person. In the language of the words heard (keyed: the language
    # chosen with them, else the caller's likely one, else the base language).
    shortcuts: list[Option] = []
    next: NodeName

    def likely(self, country: str | None) -> str | None:
        return self.by_country.get(country) if country else None


class SayNode(_Node):
    kind: Literal["say"]
    prompt: PromptKey
    next: NodeName


_RANGE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


def _time_range(value: str) -> str:
    m = _RANGE.match(value)
    if m and value[6:] == "00:00" and value[:5] != "00:00":
        raise ValueError(f"'{value}' ends at midnight: write '{value[:5]}-24:00'")
    if m and m[3] != "24" and value[:5] > value[6:]:
        # Open overnight: each day's ranges are that day's, so the night is two of them.
        raise ValueError(
            f"'{value}' runs past midnight: split it across two days, '{value[:5]}-24:00' "
            f"on the day it starts and '00:00-{value[6:]}' on the next"
        )
    if not m or (m[3] == "24" and m[4] != "00") or value[:5] >= value[6:]:
        raise ValueError(f"'{value}' is not a range like 09:00-18:00")
    return value


TimeRange = Annotated[str, AfterValidator(_time_range)]


class HoursNode(_Node):
    kind: Literal["hours"]
    timezone: str
    weekly: dict[Weekday, list[TimeRange]] = Field(description='e.g. mon: ["09:00-18:00"]')
    holidays: list[date] = []
    on_open: NodeName
    on_closed: NodeName

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone '{value}' (use an IANA name like Asia/Singapore)"
            ) from None
        return value

    def is_open(self, local_day: date, local_time: time) -> bool:
        if local_day in self.holidays:
            return False
        now = local_time.strftime("%H:%M")
        return any(r[:5] <= now < r[6:] for r in self.weekly.get(WEEKDAYS[local_day.weekday()], []))

    def next_opening(self, now: datetime) -> datetime | None:
        """When these hours next begin after `now`, in the node's time zone, holidays
        skipped; None if not within a year (every day a holiday)."""
        zone = ZoneInfo(self.timezone)
        local = now.astimezone(zone)
        for ahead in range(367):
            day = local.date() + timedelta(days=ahead)
            if day in self.holidays:
                continue
            for span in sorted(self.weekly.get(WEEKDAYS[day.weekday()], [])):
                opens = datetime.combine(day, time.fromisoformat(span[:5]), tzinfo=zone)
                if opens > local:
                    return opens
        return None


QueueName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class QueueNode(_Node):
    kind: Literal["queue"]
    prompt: PromptKey | None = None
    queue: QueueName
    priority: Priority = "normal"
    # The case's reason for agents and reports; the node's topic when not given.
    reason: str | None = None
    announce_ticket: bool = True
    ticket_prompt: PromptKey = "ticket_number"
    # A verified caller's account is frozen at once, before the wait (never unfrozen by phone).
    self_freeze: bool = False
    freeze_prompt: PromptKey = "account_freezing"
    # Said instead to a caller on a self_freeze queue who was not verified: nothing is frozen
    # yet, which they must not assume (and what they can do meanwhile). Optional.
    not_frozen_prompt: PromptKey | None = None
    on_leave: NodeName | None = Field(
        default=None, description="if the caller leaves the queue unserved"
    )
    after_agent: NodeName | None = Field(
        default=None,
        description="where the caller goes when the agent hangs up first (a survey); "
        "without it the call ends with goodbye",
    )


SecretOrId = Literal["uid", "phone", "pin", "totp", "id_last4", "pin_or_id_last4"]
# The steps a caller proves an account is theirs with: a UID and a phone number are no
# secret (UIDs are on referral links and P2P pages; an attacker has the victim's number), so a
# verification without one of these would freeze accounts and show their history on public
# data. The same as `ivr.identity.SECRET_FACTORS`, which cannot be imported here (identity
# imports the cases, which import the tree).
SECRET_STEPS: frozenset[SecretOrId] = frozenset({"pin", "totp", "id_last4", "pin_or_id_last4"})
DEFAULT_STEP_PROMPTS = {
    "uid": "verify_uid",
    "phone": "verify_phone",
    "pin": "verify_pin",
    "totp": "verify_totp",
    "id_last4": "verify_id_last4",
    "pin_or_id_last4": "verify_pin_or_id_last4",
}


class VerifyNode(_Node):
    kind: Literal["verify"]
    prompt: PromptKey | None = Field(default=None, description="said once, before the first step")
    steps: list[SecretOrId] = Field(min_length=1)
    step_prompts: dict[SecretOrId, PromptKey] = {}
    attempts: int = Field(default=2, ge=1, le=5)
    failed_prompt: PromptKey = "verify_failed"
    skip_key: Key | None = "*"
    # Keyed alone at any step, what the skip key does: a caller asking for a person (0, as in
    # every menu) is put through, not counted a wrong answer. No UID or secret is one digit.
    operator_key: Key | None = "0"
    timeout: int = Field(default=10, ge=3, le=60)
    # How many digits the exchange's UIDs have. Anything else keyed at the UID step (a PIN
    # or the ID's last 4 digits keyed a prompt too early, above all) is no UID: asked again,
    # and never kept, sent or shown as one.
    uid_min_digits: int = Field(default=7, ge=1, le=20)
    uid_max_digits: int = Field(default=20, ge=1, le=20)
    on_success: NodeName
    on_failure: NodeName
    on_locked: NodeName | None = None

    @model_validator(mode="after")
    def _uid_lengths(self) -> VerifyNode:
        if self.uid_min_digits > self.uid_max_digits:
            raise ValueError("uid_min_digits is more than uid_max_digits")
        return self

    def step_prompt(self, step: SecretOrId) -> str:
        return self.step_prompts.get(step) or DEFAULT_STEP_PROMPTS[step]

    def skips(self, digits: str) -> bool:
        """Whether these keys skip verifying: the skip key, or the operator key, alone; a
        key no answer has (`*`) pressed again and again too (Twilio waits `timeout` for more
        after a lone `*`, and a frightened caller presses it once more meanwhile). 000000
        may be a PIN."""
        return bool(digits) and any(
            key is not None
            and (digits == key or (not key.isdigit() and digits == key * len(digits)))
            for key in (self.skip_key, self.operator_key)
        )

    def is_uid(self, digits: str) -> bool:
        return digits.isdigit() and self.uid_min_digits <= len(digits) <= self.uid_max_digits


class TicketNode(_Node):
    kind: Literal["ticket"]
    prompt: PromptKey = "ticket_enter"
    not_found_prompt: PromptKey = "ticket_not_found"
    status_prompt: PromptKey = "ticket_status"
    attempts: int = Field(default=2, ge=1, le=5)
    timeout: int = Field(default=10, ge=3, le=60)
    on_not_found: NodeName


def _official_number(value: str) -> str:
    if not (E164.match(value) or SHORT_CODE.match(value)):
        raise ValueError(
            f"'{shown(value)}' is not a number callers can be told is ours: a phone number in "
            "E.164 form, in quotes, like '+15551230001', or a short code of 3 to 8 digits"
        )
    return value


OfficialNumber = Annotated[str, BeforeValidator(_digit_to_str), AfterValidator(_official_number)]


class NumberCheckNode(_Node):
    """Is the number that called or texted the caller, claiming to be the exchange, one of
    its own (the tree's `official_numbers`, and IVR_CALLER_ID)? Either way the caller is
    told that a number can be faked and what the exchange never asks for."""

    kind: Literal["number_check"]
    prompt: PromptKey = "number_check_enter"
    invalid_prompt: PromptKey = "number_check_invalid"
    official_prompt: PromptKey = "number_check_official"
    not_official_prompt: PromptKey = "number_check_not_official"
    # A short code (fewer than 8 digits) that is not ours: said without reading it back, and
    # not kept (it may be a secret keyed at the wrong prompt); on as for any number not ours.
    short_code_prompt: PromptKey = "number_check_short_code"
    attempts: int = Field(default=2, ge=1, le=5)
    timeout: int = Field(default=15, ge=3, le=60)
    on_official: NodeName
    on_not_official: NodeName
    on_failure: NodeName


class TransferNode(_Node):
    kind: Literal["transfer"]
    prompt: PromptKey | None = None
    number: str = Field(pattern=r"^\+[1-9]\d{6,14}$", description="E.164")
    timeout: int = Field(default=30, ge=5, le=120)
    on_failure: NodeName | None = None


class HangupNode(_Node):
    kind: Literal["hangup"]
    prompt: PromptKey | None = None


SURVEY_SCALE = "12345"  # 5 is very satisfied


class SurveyNode(_Node):
    """How satisfied the caller is with the agent who just served them, 1 to 5, asked once:
    any other key or silence is no answer (`on_no_answer`, else `next`), and the caller is
    not asked again. `operator_key` is a caller not done yet (cut off, or sent away too
    soon): back in line with the same team at the same priority, a new case following the
    last one up."""

    kind: Literal["survey"]
    prompt: PromptKey
    timeout: int = Field(default=6, ge=3, le=30)
    operator_key: Key | None = "0"
    next: NodeName
    on_no_answer: NodeName | None = None


Node = Annotated[
    Union[  # noqa: UP007
        MenuNode,
        SayNode,
        LanguageNode,
        HoursNode,
        QueueNode,
        TransferNode,
        HangupNode,
        VerifyNode,
        TicketNode,
        NumberCheckNode,
        SurveyNode,
    ],
    Field(discriminator="kind"),
]
# Every setting a node of some kind has: a node named like one (`on_failure:` among the
# nodes) is most likely that setting, indented too little.
NODE_SETTINGS = frozenset(
    name for kind in get_args(get_args(Node)[0]) for name in kind.model_fields
)
DEDENTED = "indented too little?"
# Nodes the engine passes straight through: a cycle made only of these would never stop.
PASS_THROUGH = (SayNode, HoursNode)
# Nodes the engine takes a caller through in one turn: pass-through nodes, and the node
# that waits for them.
MAX_PASS_THROUGH = 32


class TreeFile(_Model):
    start: NodeName
    max_menu_depth: int = Field(default=5, ge=1, le=20)
    # Where the engine puts a caller when a queue keeps refusing them or a transfer fails.
    fallback_queue: QueueName = "general"
    # A prompt that takes longer to say than this is more than a caller can hold in mind.
    max_prompt_seconds: int = Field(default=45, ge=5, le=600)
    menu_defaults: dict[str, Any] = {}
    # The numbers the exchange calls or texts customers from (a number_check node tells a
    # caller whether one is ours): E.164, or short codes.
    official_numbers: list[OfficialNumber] = []
    not_heard_with: dict[str, dict[Keyword, Annotated[list[Keyword], Field(min_length=1)]]] = Field(
        default={},
        description="per language, keywords that are not heard when one of these words is "
        "said right beside them (within 6 characters in Chinese, 12 in English; a word that "
        "holds the keyword, where it overlaps it), in any menu (突然停机, a SIM swap's sign, "
        "is no victim's in 是不是欠费了: a line cut for an unpaid bill); said further away it "
        "takes nothing back; the option's other keywords are heard as ever",
    )
    nodes: dict[NodeName, Node] = Field(min_length=1)


# -- compiled form --------------------------------------------------------------------------


@dataclass(frozen=True)
class Unless:
    """A keyword the tree's `not_heard_with` names, and its words: a word that holds the
    keyword (本人转走 of 人转走) takes back the keyword where it overlaps it; any other (欠费
    of 突然停机) where it is said within `near` characters of it. Said elsewhere in what was
    heard, a word takes nothing back: a victim's story holds 不要, "why is" or "address" too
    (骗子告诉我不要告诉任何人,我把验证码告诉了他)."""

    keyword: re.Pattern[str]
    inside: re.Pattern[str] | None
    beside: re.Pattern[str] | None
    near: int

    def heard_in(self, heard: str) -> bool:
        for found in self.keyword.finditer(heard):
            start, end = found.span()
            if self.inside is not None and any(
                w.start() <= start and w.end() >= end for w in self.inside.finditer(heard)
            ):
                continue
            if self.beside is not None and any(
                w.start() < end + self.near and w.end() > start - self.near
                for w in self.beside.finditer(heard)
            ):
                continue
            return True
        return False


@dataclass(frozen=True)
class Keywords:
    """An option's keywords in one language, as looked for in what was heard."""

    anywhere: re.Pattern[str] | None
    unless: tuple[Unless, ...] = ()

    def search(self, heard: str) -> bool:
        if self.anywhere is not None and self.anywhere.search(heard):
            return True
        return any(u.heard_in(heard) for u in self.unless)


# How near a `not_heard_with` word must be said to a keyword to take it back, in characters
# of what was heard: a few Chinese characters (突然停机了,是不是欠费了), about two English words
# ("why did you freeze my account", "told me to send my ID").
NEAR_CJK, NEAR_LATIN = 6, 12


def _unless(keyword: str, words: list[str], language: str) -> Unless:
    inside = [w for w in words if keyword in w]
    beside = [w for w in words if keyword not in w]
    return Unless(
        _keyword_pattern([keyword]),
        _keyword_pattern(inside, whole=True) if inside else None,
        _keyword_pattern(beside, whole=True) if beside else None,
        NEAR_CJK if language.startswith(("zh", "ja", "ko")) else NEAR_LATIN,
    )


# language -> [(option, its keywords)], in the operator's option order
BySpeech = Mapping[str, list[tuple[Option, Keywords]]]
# language -> keyword -> the words said with which it is not heard (both as normalised)
Exceptions = Mapping[str, Mapping[str, list[str]]]


@dataclass(frozen=True)
class CompiledMenu:
    node: MenuNode
    by_key: Mapping[str, Option]
    by_speech: BySpeech
    hints: Mapping[str, str]
    # The menu's `incident_options` by key: taken only while an announcement is up.
    while_announced: Mapping[str, Option] = field(default_factory=dict)


@dataclass(frozen=True)
class Shortcuts:
    """A language menu's shortcuts: by key, and by the keywords of each language."""

    by_key: Mapping[str, Option]
    by_speech: BySpeech

    def heard(self, said: str, languages: list[str]) -> tuple[Option, str] | None:
        """The first shortcut with a keyword of one of `languages` (tried in that order) in
        what was heard, and that language."""
        return _first_heard(self.by_speech, languages, said)


def _first_heard(
    by_speech: BySpeech, languages: Iterable[str], said: str
) -> tuple[Option, str] | None:
    """The first option, in the operator's order, with a keyword of the first of `languages`
    that has one in what was heard; and that language."""
    heard = normalise_speech(said)
    if not heard:
        return None
    for lang in languages:
        for option, keywords in by_speech.get(lang, ()):
            if keywords.search(heard):
                return option, lang
    return None


@dataclass(frozen=True)
class CompiledTree:
    """A validated tree, with its lookups built once; immutable, shared by every request."""

    file: str
    version: str
    source: str
    tree: TreeFile
    catalogs: Catalogs
    menus: Mapping[str, CompiledMenu]
    warnings: list[Problem] = field(default_factory=list)
    # Node -> the emergency queue node a caller there is already on the way to.
    emergency_bound: Mapping[str, str] = field(default_factory=dict)
    # Language node -> its shortcuts, as a menu of them (keys, words by language).
    shortcuts: Mapping[str, Shortcuts] = field(default_factory=dict)

    def node(self, name: str) -> Node:
        return self.tree.nodes[name]

    def likely_language(self, caller: str | None) -> str | None:
        """The language a caller likely speaks, by their number's country, as the first
        language menu naming it says: what a fallback with no call state speaks first."""
        country = country_code(caller)
        for node in self.tree.nodes.values():
            if isinstance(node, LanguageNode) and (language := node.likely(country)):
                return language
        return None

    def home_country(self, language: str) -> str | None:
        """The country calling code a language menu names first for `language` ("+86" for
        zh-CN): where a number its callers key without a country code likely is."""
        for node in self.tree.nodes.values():
            if isinstance(node, LanguageNode):
                for code, lang in node.by_country.items():
                    if lang == language:
                        return code
        return None

    @property
    def announced_at(self) -> list[str]:
        return announced_at(self.tree.nodes)

    @property
    def queues(self) -> dict[str, Priority]:
        """The tree's queues, each with the priority its first queue node gives it; the
        fallback queue too (normal, unless a node says otherwise): where an agent may send a
        caller on."""
        found: dict[str, Priority] = {}
        for node in self.tree.nodes.values():
            if isinstance(node, QueueNode):
                found.setdefault(node.queue, node.priority)
        found.setdefault(self.tree.fallback_queue, "normal")
        return found


NO_ANNOUNCEMENT = (
    "no menu plays the supervisors' announcement (announcement: true): what they announce "
    "during an incident would reach no caller"
)


def announced_at(nodes: Mapping[str, Node]) -> list[str]:
    """The menus that play the supervisors' announcement before their prompt."""
    return [n for n, node in nodes.items() if isinstance(node, MenuNode) and node.announcement]


# Han characters (CJK unified ideographs, extension A, compatibility ideographs).
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_BESIDE_HAN = re.compile(f"(?<=[{_HAN}]) | (?=[{_HAN}])")


def normalise_speech(text: str) -> str:
    """What was heard (or a keyword), as keywords are looked for in it: lower case, no
    punctuation, one space between words, and none beside a Han character. Chinese has no
    spaces, but some speech recognisers Twilio picks write a space between its words
    ("我的 账户 被盗 了"), and no keyword would match that."""
    words = " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())
    return _BESIDE_HAN.sub("", words)


# A key said instead of pressed (no keypad tones, or a caller who talks): the whole of what
# was heard, less the words around it ("press one", 按一, "number 1"), in any language.
_KEY_WORDS = {
    **{str(digit): str(digit) for digit in range(10)},
    # Not "oh": said alone it is a sigh ("Oh.") far more often than a zero.
    **dict.fromkeys(("zero", "零", "\u3007"), "0"),  # U+3007: the ideographic zero
    **dict.fromkeys(("one", "一", "幺"), "1"),
    **dict.fromkeys(("two", "二", "两"), "2"),
    **dict.fromkeys(("three", "三"), "3"),
    **dict.fromkeys(("four", "四"), "4"),
    **dict.fromkeys(("five", "五"), "5"),
    **dict.fromkeys(("six", "六"), "6"),
    **dict.fromkeys(("seven", "七"), "7"),
    **dict.fromkeys(("eight", "八"), "8"),
    **dict.fromkeys(("nine", "九"), "9"),
    **dict.fromkeys(("star", "asterisk", "星", "星号"), "*"),
    **dict.fromkeys(("pound", "hash", "井", "井号"), "#"),
}
_AROUND_A_KEY = re.compile(
    r"^(?:(?:please|press|push|number|option|key|button|the|嗯|好的|好|那就|那|我要|我选|我|请按|请|按|选择|选|数字)\s*)*"
    r"(.+?)"
    r"(?:\s*(?:key|button|please|号键|键|号|吧))*$"
)
# Asking to hear the menu again: the whole of what was heard.
_AGAIN = frozenset(
    {
        "repeat",
        "repeat that",
        "repeat please",
        "please repeat",
        "again",
        "say again",
        "say that again",
        "come again",
        "pardon",
        "sorry",
        "what",
        "one more time",
        "重复",
        "重听",
        "再说一遍",
        "再说一次",
        "再听一遍",
        "没听清",
        "没听清楚",
        "请再说一遍",
    }
)


def spoken_key(said: str) -> str | None:
    """The key a caller said ("one", "press 2", 按一, 井号), or None: only when that is all
    they said, so "one of my withdrawals" is words, not 1."""
    heard = normalise_speech(said)
    found = _AROUND_A_KEY.match(heard)
    return _KEY_WORDS.get(found[1]) if found else None


# The politeness around a Mandarin "again" (能再说一遍吗, 请再说一遍吧).
# The longer of two words that begin alike first: 能 first would leave 不能 of 能不能 behind.
_ASKING_POLITELY = re.compile(r"^(?:能不能|麻烦你|麻烦|可以|你|请|能)+|(?:可以吗|好吗|吗|吧)+$")
_POLITE_AT_MOST = 40  # characters: 麻烦你能不能再说一遍好吗 is 12


def asks_again(said: str) -> bool:
    """Whether all the caller said is to hear it again ("repeat", 再说一遍)."""
    heard = normalise_speech(said)
    if heard in _AGAIN:
        return True
    # Only a short request can be one: the politeness pattern's tail is tried at every place,
    # which on a long transcript (up to MAX_SPEECH) is quadratic, on the event loop.
    return len(heard) <= _POLITE_AT_MOST and _ASKING_POLITELY.sub("", heard) in _AGAIN


def match_speech(menu: CompiledMenu, language: str, said: str) -> Option | None:
    """The first option, in the order the operator listed them, with a keyword in what was heard.

    Order, not keyword length, decides: "someone hacked my account and withdrew everything"
    must reach the emergency option listed first, not the withdrawals one. The operator's
    words (operator_speech) come last.
    """
    found = _first_heard(menu.by_speech, dict.fromkeys((language, BASE_LANGUAGE)), said)
    return found[0] if found else None


def _keyword_pattern(keywords: list[str], *, whole: bool = False) -> re.Pattern[str]:
    """Latin keywords match at the start of a word ("api" not in "capital", "deposit" in
    "deposits"); `whole`: as whole words ("id", not "idiot"). Others (Chinese has no spaces)
    anywhere in what was heard."""
    parts = []
    for word in keywords:
        escaped = re.escape(word)
        if word[0].isascii() and word[0].isalnum():
            escaped = f"(?<![a-z0-9]){escaped}"
        if whole and word[-1].isascii() and word[-1].isalnum():
            escaped = f"{escaped}(?![a-z0-9])"
        parts.append(escaped)
    return re.compile("|".join(parts))


def _compile_menu(node: MenuNode, exceptions: Exceptions) -> CompiledMenu:
    incident = {o.key: Option(key=o.key, target=o.target) for o in node.incident_options}
    return CompiledMenu(node, *_compiled(node.options, spoken_options(node), exceptions), incident)


def spoken_options(node: MenuNode) -> list[Option]:
    """What a caller may say at a menu, in the order it is heard: its options, then the
    operator's words."""
    spoken = list(node.options)
    if node.operator and node.operator_speech:
        spoken.append(
            Option(key=node.operator_key, speech=node.operator_speech, target=node.operator)
        )
    return spoken


def _compile_shortcuts(node: LanguageNode, exceptions: Exceptions) -> Shortcuts:
    # Their hints join the language menu's own when it is said (`gather_language`).
    by_key, by_speech, _ = _compiled(node.shortcuts, node.shortcuts, exceptions)
    return Shortcuts(by_key, by_speech)


def exceptions_of(tree: TreeFile) -> dict[str, dict[str, list[str]]]:
    """The tree's `not_heard_with`, keywords and words as they are looked for (normalised)."""
    return {
        lang: {
            normalise_speech(word): [n for w in unless if (n := normalise_speech(w))]
            for word, unless in by_word.items()
        }
        for lang, by_word in tree.not_heard_with.items()
    }


def _compiled(
    keyed: list[Option], spoken: list[Option], exceptions: Exceptions
) -> tuple[dict[str, Option], dict[str, list[tuple[Option, Keywords]]], dict[str, str]]:
    """Options by key, by the keywords of each language (in the operator's order), and the
    recogniser's hints per language (a keyword's exceptions are no hints: the words it is
    heard by are)."""
    by_key = {o.key: o for o in keyed if o.key is not None}
    by_speech: dict[str, list[tuple[Option, Keywords]]] = {}
    words_by_lang: dict[str, list[str]] = {}
    for option in spoken:
        for lang, words in option.speech.items():
            keywords = [k for k in (normalise_speech(w) for w in words) if k]
            if keywords:
                unless = exceptions.get(lang, {})
                anywhere = [k for k in keywords if not unless.get(k)]
                compiled = Keywords(
                    _keyword_pattern(anywhere) if anywhere else None,
                    tuple(_unless(k, unless[k], lang) for k in keywords if unless.get(k)),
                )
                by_speech.setdefault(lang, []).append((option, compiled))
                words_by_lang.setdefault(lang, []).extend(words)
    hints = {lang: hints_of(words) for lang, words in words_by_lang.items()}
    return by_key, by_speech, hints


# Twilio takes hints as a comma-separated list of up to 500 words and phrases (each of 100
# characters at most, as keywords are): error 13330 past that.
MAX_HINTS = 500


def hints_of(words: Iterable[str]) -> str:
    """A <Gather>'s hints: the words, each once, in order (the operator's first options'
    first), as many as Twilio takes."""
    return ", ".join(_hint_words(words)[:MAX_HINTS])


def _hint_words(words: Iterable[str]) -> list[str]:
    """The words, each once, in order, as a hint (a comma would split it in two)."""
    return list(dict.fromkeys(w.replace(",", " ") for w in words))


# -- loading and checking ---------------------------------------------------------------------


def edges(node: Node) -> Iterator[tuple[PathKey, str]]:
    """Every static (relative path, target) the node can move a caller to."""
    if isinstance(node, MenuNode):
        for i, option in enumerate(node.options):
            yield ("options", i, "target"), option.target
        for i, incident in enumerate(node.incident_options):
            yield ("incident_options", i, "target"), incident.target
        yield ("on_no_input",), node.on_no_input
        yield ("on_invalid",), node.on_invalid
        if node.operator:
            yield ("operator",), node.operator
    elif isinstance(node, SayNode | LanguageNode | SurveyNode):
        if isinstance(node, LanguageNode):
            for i, shortcut in enumerate(node.shortcuts):
                yield ("shortcuts", i, "target"), shortcut.target
        yield ("next",), node.next
        if isinstance(node, SurveyNode) and node.on_no_answer:
            yield ("on_no_answer",), node.on_no_answer
    elif isinstance(node, HoursNode):
        yield ("on_open",), node.on_open
        yield ("on_closed",), node.on_closed
    elif isinstance(node, QueueNode):
        if node.on_leave:
            yield ("on_leave",), node.on_leave
        if node.after_agent:
            yield ("after_agent",), node.after_agent
    elif isinstance(node, VerifyNode):
        yield ("on_success",), node.on_success
        yield ("on_failure",), node.on_failure
        if node.on_locked:
            yield ("on_locked",), node.on_locked
    elif isinstance(node, TicketNode):
        yield ("on_not_found",), node.on_not_found
    elif isinstance(node, NumberCheckNode):
        yield ("on_official",), node.on_official
        yield ("on_not_official",), node.on_not_official
        yield ("on_failure",), node.on_failure
    elif isinstance(node, TransferNode) and node.on_failure:
        yield ("on_failure",), node.on_failure


def prompt_keys(node: Node) -> Iterator[tuple[PathKey, str]]:
    names = (
        "prompt",
        "short_prompt",
        "no_input_prompt",
        "invalid_prompt",
        "option_prompt",
        "failed_prompt",
        "not_found_prompt",
        "status_prompt",
        "official_prompt",
        "not_official_prompt",
        "short_code_prompt",
    )
    for name in names:
        value = getattr(node, name, None)
        if value:
            yield (name,), value
    if isinstance(node, QueueNode):
        if node.announce_ticket:
            yield ("ticket_prompt",), node.ticket_prompt
        if node.self_freeze:
            yield ("freeze_prompt",), node.freeze_prompt
            if node.not_frozen_prompt:
                yield ("not_frozen_prompt",), node.not_frozen_prompt
    if isinstance(node, VerifyNode):
        for step in node.steps:
            yield ("step_prompts", step), node.step_prompt(step)
    if isinstance(node, MenuNode):
        for i, incident in enumerate(node.incident_options):
            yield ("incident_options", i, "prompt"), incident.prompt


Inherited = Mapping[str, set[str]]  # menu name -> settings it took from menu_defaults


def _apply_menu_defaults(
    doc: YamlDoc, problems: list[Problem]
) -> tuple[dict[str, Any], Inherited] | None:
    data = doc.data
    if not isinstance(data, dict):
        problems.append(doc.problem((), "a call tree is a mapping with `start` and `nodes`"))
        return None
    defaults = data.get("menu_defaults") or {}
    nodes = data.get("nodes")
    if not isinstance(defaults, dict) or not isinstance(nodes, dict):
        return data, {}
    # An incident's options are one menu's, as its options are.
    allowed = set(MenuNode.model_fields) - {"kind", "prompt", "options", "incident_options"}
    for key in defaults:
        if key not in allowed:
            problems.append(doc.problem(("menu_defaults", key), f"'{key}' is not a menu setting"))
    usable = {k: v for k, v in defaults.items() if k in allowed}
    inherited: dict[str, set[str]] = {}
    merged: dict[Any, Any] = {}
    for name, node in nodes.items():
        if isinstance(node, dict) and node.get("kind") == "menu":
            inherited[name] = set(usable) - set(node)
            node = {**usable, **node}
        merged[name] = node
    return {**data, "nodes": merged}, inherited


def _from_defaults(loc: tuple[Any, ...], inherited: Inherited) -> tuple[Any, ...]:
    """A problem in a setting a menu took from menu_defaults belongs to menu_defaults."""
    if len(loc) >= 3 and loc[0] == "nodes" and loc[2] in inherited.get(str(loc[1]), ()):
        return ("menu_defaults", *loc[2:])
    return loc


def _check_graph(
    doc: YamlDoc, tree: TreeFile, catalogs: Catalogs, inherited: Inherited
) -> list[Problem]:
    problems: list[Problem] = []
    nodes = tree.nodes

    def at(name: str, rel: PathKey, message: str, severity: str = "error") -> None:
        loc = _from_defaults(("nodes", name, *rel), inherited)
        problems.append(doc.problem(loc, message, severity))

    # A misspelt target, taken to mean the node it is closest to (for reachability below:
    # one typo is one error, not one more for every node behind it).
    meant: dict[str, str] = {}
    if tree.start not in nodes:
        problems.append(
            doc.problem(
                ("start",), f"unknown node '{tree.start}'{_did_you_mean(tree.start, nodes)}"
            )
        )
    for name, node in nodes.items():
        for rel, target in edges(node):
            if target not in nodes:
                at(name, rel, f"unknown node '{target}'{_did_you_mean(target, nodes)}")
                if close := difflib.get_close_matches(target, nodes, n=1, cutoff=CLOSE):
                    meant[target] = close[0]
        if isinstance(node, MenuNode):
            _check_menu_keys(name, node, catalogs, at)
            _check_keys_said(name, node, catalogs, at)
            _check_keys_offered(name, node, catalogs, at)
            _check_incident_options(name, node, catalogs, at)
            spoken = spoken_options(node)
            _check_shadowed_words(name, spoken, len(node.options), at)
            _check_hint_count(name, spoken, at)
        if isinstance(node, LanguageNode):
            _check_shadowed_words(
                name, list(node.shortcuts), len(node.shortcuts), at, field_name="shortcuts"
            )
            seen: dict[str, int] = {}
            for i, lo in enumerate(node.options):
                if lo.key in seen:
                    at(
                        name,
                        ("options", i, "key"),
                        f"key '{lo.key}' is already options[{seen[lo.key]}]",
                    )
                seen.setdefault(lo.key, i)
                for word in lo.speech:
                    if not word.isascii() and set(node.by_country.values()) <= {BASE_LANGUAGE}:
                        at(
                            name,
                            ("options", i, "speech"),
                            f"'{word}' cannot be recognised here: the language choice is heard by "
                            f"the {BASE_LANGUAGE} speech recogniser (say 'Chinese', 'Mandarin'), "
                            "but for callers whose country `by_country` names another language",
                            "warning",
                        )
                if lo.language not in catalogs.by_language:
                    at(
                        name,
                        ("options", i, "language"),
                        f"no prompt catalog for language '{lo.language}' "
                        f"(have: {', '.join(catalogs.languages)})",
                    )
            for i, shortcut in enumerate(node.shortcuts):
                if shortcut.key is not None and shortcut.key in seen:
                    at(
                        name,
                        ("shortcuts", i, "key"),
                        f"key '{shortcut.key}' is already options[{seen[shortcut.key]}]",
                    )
                for lang in shortcut.speech:
                    if lang not in catalogs.by_language:
                        at(
                            name,
                            ("shortcuts", i, "speech", lang),
                            f"no prompt catalog for language '{lang}'",
                        )
            offered = {lo.language for lo in node.options}
            for code, language in node.by_country.items():
                if language not in offered:
                    at(
                        name,
                        ("by_country", code),
                        f"'{language}' is not one of this menu's options "
                        f"({', '.join(sorted(offered))})",
                    )
        if isinstance(node, VerifyNode):
            _check_verify_secrets(name, node, catalogs, at)
        for rel, key in prompt_keys(node):
            for message, severity in _prompt_findings(key, catalogs):
                at(name, rel, message, severity)
    if not announced_at(nodes):
        problems.append(doc.problem(("start",), NO_ANNOUNCEMENT, "warning"))
    for key in ENGINE_PROMPTS:
        for message, severity in _prompt_findings(key, catalogs):
            problems.append(
                Problem(doc.file, None, "", f"{message} (the engine says it)", severity)
            )
    for key, without in LATER_ENGINE_PROMPTS.items():
        for message, severity in _prompt_findings(key, catalogs):
            said = f"{message}: {without}" if severity == "error" else message
            problems.append(Problem(doc.file, None, "", said, "warning"))

    # Reachability and depth: breadth-first from start, counting menus passed through.
    # Unknown targets were reported above and are skipped here, so every check still runs.
    depth = {tree.start: 0} if tree.start in nodes else {}
    reached = _breadth_first(nodes, meant, depth)
    # Then from the nodes kept out of use: what only they lead to is kept with them.
    kept = {name: 0 for name, node in nodes.items() if node.out_of_use and name not in reached}
    if depth:
        depth |= kept
    order = deque(depth)
    while order:
        name = order.popleft()
        node = nodes[name]
        step = 1 if isinstance(node, MenuNode | LanguageNode) else 0
        for _, written in edges(node):
            target = meant.get(written, written)
            if target in nodes and target not in depth:
                depth[target] = depth[name] + step
                order.append(target)
    for name, node in nodes.items():
        if not depth:
            break  # no start node: that error says it all
        if node.out_of_use and name in reached:
            message = "out_of_use, but a path from the start node leads here: callers reach it"
            at(name, ("out_of_use",), f"{message} (take the flag away, or the path)", "warning")
        elif node.out_of_use:
            message = "out of use: no path from the start node leads here (nor to what only"
            at(name, ("out_of_use",), f"{message} it leads to)", "warning")
        if name not in depth:
            at(name, (), "unreachable: no path from the start node leads here")
        elif isinstance(node, MenuNode) and depth[name] >= tree.max_menu_depth:
            at(
                name,
                (),
                f"menu is {depth[name] + 1} menus deep; "
                f"the limit is max_menu_depth={tree.max_menu_depth}",
            )
    cycles = _pass_through_cycles(doc, nodes)
    problems.extend(cycles)
    if tree.start in nodes and not cycles:
        stuck = _no_way_out(nodes, set(depth), at)
        _unanswered_loops(nodes, [n for n in nodes if n in depth and n not in stuck], at)
        _emergency_lane(doc, nodes, tree.start, at)
    problems.extend(_long_prompts(tree, catalogs))
    problems.extend(_confirm_key_said(catalogs))
    problems.extend(_hours_bypassed(doc, nodes))
    problems.extend(_opens_without_hours(doc, nodes, catalogs))
    problems.extend(_unfilled_variables(doc, nodes, catalogs, inherited))
    for name, node in nodes.items():
        for rel, target in edges(node):
            if isinstance(nodes.get(target), SurveyNode) and rel != ("after_agent",):
                at(
                    name,
                    rel,
                    f"survey '{target}' reached before any agent: a caller there has no one to "
                    "rate (reach it by a queue's after_agent)",
                    "warning",
                )
        if isinstance(node, HoursNode) and not any(node.weekly.values()):
            at(
                name,
                ("weekly",),
                f"never open: every caller goes to '{node.on_closed}', and '{node.on_open}' "
                "is never reached this way",
                "warning",
            )
        if isinstance(node, MenuNode):
            for rel, target in (
                (("on_no_input",), node.on_no_input),
                (("on_invalid",), node.on_invalid),
            ):
                if _ends_in_hangup(nodes, target):
                    at(
                        name,
                        rel,
                        f"'{target}' hangs up on callers who cannot answer; send them to a queue",
                        "warning",
                    )
        if (
            isinstance(node, QueueNode)
            and node.on_leave
            and node.priority != "emergency"  # refused in `_emergency_lane`
            and _ends_in_hangup(nodes, node.on_leave)
        ):
            at(
                name,
                ("on_leave",),
                f"'{node.on_leave}' hangs up on callers the queue could not take (Twilio's "
                "queue full, an error); without on_leave they are queued again, then in the "
                "fallback queue",
                "warning",
            )
        if isinstance(node, SurveyNode) and node.operator_key and node.operator_key in SURVEY_SCALE:
            at(
                name,
                ("operator_key",),
                f"'{node.operator_key}' is a score here (1-5): a caller rating the help would be "
                "put back in line; use 0 (or null)",
            )
        if isinstance(node, NumberCheckNode) and not tree.official_numbers:
            at(
                name,
                (),
                f"the tree {NO_OFFICIAL_NUMBERS}: every number a caller checks but "
                "IVR_CALLER_ID would be called not ours, the exchange's other numbers included",
            )
    problems += _check_not_heard_with(doc, tree, catalogs)
    seen_numbers: dict[str, int] = {}
    for i, number in enumerate(tree.official_numbers):
        if number in seen_numbers:
            problems.append(
                doc.problem(
                    ("official_numbers", i),
                    f"'{number}' is listed already (official_numbers[{seen_numbers[number]}])",
                    "warning",
                )
            )
        seen_numbers.setdefault(number, i)
        if FICTIONAL_NUMBER.fullmatch(number):
            problems.append(
                doc.problem(
                    ("official_numbers", i),
                    f"'{number}' is a fictional number (555-0100 to 555-0199, for examples "
                    "only): replace it with the exchange's real numbers; a real one missing "
                    "here is called not ours to the customer it called",
                    "warning",
                )
            )
    return problems


def _check_not_heard_with(doc: YamlDoc, tree: TreeFile, catalogs: Catalogs) -> list[Problem]:
    """A keyword's exceptions (`not_heard_with`) are for a keyword an option has, in a
    language there is a catalog for; one misspelt would leave the keyword heard as before,
    and one that is in the keyword it is said with would leave it never heard."""
    problems: list[Problem] = []
    said: dict[str, set[str]] = {}
    for node in tree.nodes.values():
        spoken = [
            *(spoken_options(node) if isinstance(node, MenuNode) else ()),
            *(node.shortcuts if isinstance(node, LanguageNode) else ()),
        ]
        for option in spoken:
            for lang, words in option.speech.items():
                said.setdefault(lang, set()).update(normalise_speech(w) for w in words)
    for lang, by_word in tree.not_heard_with.items():
        if lang not in catalogs.by_language:
            problems.append(
                doc.problem(("not_heard_with", lang), f"no prompt catalog for language '{lang}'")
            )
        for word, unless in by_word.items():
            heard = normalise_speech(word)
            if heard not in said.get(lang, set()):
                problems.append(
                    doc.problem(
                        ("not_heard_with", lang, word),
                        f"'{word}' is no option's {lang} keyword: its exceptions change nothing"
                        f"{_did_you_mean(heard, said.get(lang, set()))}",
                    )
                )
            for i, but in enumerate(unless):
                if not (norm := normalise_speech(but)):
                    problems.append(
                        doc.problem(("not_heard_with", lang, word, i), f"'{but}' has no letters")
                    )
                elif _keyword_pattern([norm]).search(heard):
                    problems.append(
                        doc.problem(
                            ("not_heard_with", lang, word, i),
                            f"'{but}' is in '{word}' itself: the keyword would never be heard",
                        )
                    )
    return problems


# The North American numbers kept for fiction in every area code (NANPA: 555-0100 to
# 555-0199). The shipped tree's examples are such numbers, so a tree still listing one has
# not been given the exchange's own.
FICTIONAL_NUMBER = re.compile(r"\+1[2-9]\d{2}55501\d{2}")


EXITS = (QueueNode, TransferNode, HangupNode)
NO_WAY_OUT = "no way out"
NO_EMERGENCY = "never reaches an emergency"
NO_EMERGENCY_KEY = "no key leads straight to an emergency"
KEY_NOT_IN_MENU = "which this menu does not have"
KEY_NOT_OFFERED = "callers are not told of it"
IN_A_ROW = "say/hours nodes in a row"
FREEZE_NOT_EMERGENCY = "(self_freeze) must be priority: emergency"
UNANSWERED_LOOP = "silence or wrong keys go round for ever"
NO_OFFICIAL_NUMBERS = "lists no official_numbers"
NO_SECRET = "asks for no secret"
TOTP_ASKED = "asks callers for the code from their authenticator app"
# Refusals added after trees were stored and live: a version rebuilt for its calls in
# progress is only warned of them (`compile_source(in_progress=True)`).
LATER_CHECKS = (
    NO_WAY_OUT,
    NO_EMERGENCY,
    IN_A_ROW,
    FREEZE_NOT_EMERGENCY,
    NO_OFFICIAL_NUMBERS,
    UNANSWERED_LOOP,
    NO_SECRET,
)
# The outcomes the hotline chooses, not the caller: the clock, a verification's verdict, a
# number looked up. Whichever it is, a hijack victim must still reach the emergency queue.
_OUTCOMES: dict[type, tuple[str, ...]] = {
    HoursNode: ("on_open", "on_closed"),
    VerifyNode: ("on_success", "on_failure", "on_locked"),
    NumberCheckNode: ("on_official", "on_not_official", "on_failure"),
}


def _breadth_first(
    nodes: Mapping[str, Node], meant: Mapping[str, str], seeds: Iterable[str]
) -> set[str]:
    """The nodes a path leads to from `seeds` (themselves included)."""
    seen = set(seeds)
    order = deque(seen)
    while order:
        for _, written in edges(nodes[order.popleft()]):
            target = meant.get(written, written)
            if target in nodes and target not in seen:
                seen.add(target)
                order.append(target)
    return seen


def _no_way_out(nodes: Mapping[str, Node], reachable: set[str], at: Any) -> set[str]:
    """Nodes a caller reaches and can never leave for a person or a goodbye: menus that only
    lead to each other (no operator, every option and escalation to the other), a
    verification whose failure starts it again, and so on. The caller would go round for ever.
    Returns them."""
    leads_to: dict[str, set[str]] = {}
    for name, node in nodes.items():
        for _, target in edges(node):
            leads_to.setdefault(target, set()).add(name)
    # An unknown target is reported as such; where it leads is not known, so not this.
    out = {name for name, node in nodes.items() if isinstance(node, EXITS)}
    out |= {name for name, node in nodes.items() if any(t not in nodes for _, t in edges(node))}
    todo = list(out)
    while todo:
        for before in leads_to.get(todo.pop(), ()):
            if before not in out:
                out.add(before)
                todo.append(before)
    stuck = [name for name in nodes if name in reachable and name not in out]
    for name in stuck:
        at(
            name,
            (),
            f"{NO_WAY_OUT}: from here no path reaches a queue, a transfer or a hang-up, so a "
            "caller goes round for ever",
        )
    return set(stuck)


def unanswered(node: Node) -> Iterator[tuple[PathKey, str]]:
    """Where a node sends a caller who keys nothing, or only wrong keys: a menu's escalations,
    a verification or number check failed, a ticket not found, a survey not answered, and
    whatever passes on by itself (a notice, hours, the language menu's next). None from a
    queue, a transfer or a hang-up: a person or a goodbye is reached."""
    if isinstance(node, MenuNode):
        yield ("on_no_input",), node.on_no_input
        yield ("on_invalid",), node.on_invalid
    elif isinstance(node, SayNode | LanguageNode):
        yield ("next",), node.next
    elif isinstance(node, HoursNode):
        yield ("on_open",), node.on_open
        yield ("on_closed",), node.on_closed
    elif isinstance(node, VerifyNode):
        yield ("on_failure",), node.on_failure
        if node.on_locked:
            yield ("on_locked",), node.on_locked
    elif isinstance(node, NumberCheckNode):
        yield ("on_failure",), node.on_failure
    elif isinstance(node, TicketNode):
        yield ("on_not_found",), node.on_not_found
    elif isinstance(node, SurveyNode):
        yield ("on_no_answer",) if node.on_no_answer else ("next",), node.on_no_answer or node.next


def _unanswered_loops(nodes: Mapping[str, Node], roots: list[str], at: Any) -> None:
    """Menus whose silence or wrong keys lead back to themselves (on_no_input: itself, or
    round other menus by their escalations): a caller who cannot key (a frightened one, a
    phone whose keys do not reach us) hears menu after menu for ever and never reaches a
    person. Reported at the escalation that closes each loop; walked without recursion."""
    state: dict[str, int] = {}  # 1 on the path being walked, 2 done
    for root in roots:
        if root in state:
            continue
        path: list[tuple[str, PathKey]] = []  # each node on the way, and the edge taken on
        pending: list[list[tuple[PathKey, str]]] = []
        name: str | None = root
        while name is not None or pending:
            if name is not None:
                state[name] = 1
                path.append((name, ()))
                pending.append([(r, t) for r, t in unanswered(nodes[name]) if t in nodes])
                name = None
                continue
            if not pending[-1]:
                state[path.pop()[0]] = 2
                pending.pop()
                continue
            rel, target = pending[-1].pop(0)
            path[-1] = (path[-1][0], rel)
            if state.get(target) == 1:
                loop = path[[n for n, _ in path].index(target) :]
                said = " -> ".join(f"{n} ({r[0]})" for n, r in loop)
                # At a menu's escalation, where the operator meant to send the caller on.
                menus = [(n, r) for n, r in loop if isinstance(nodes[n], MenuNode)]
                where, edge = menus[0] if menus else loop[-1]
                at(
                    where,
                    edge,
                    f"{UNANSWERED_LOOP}: {said} -> {target}: a caller who keys nothing (or "
                    "only wrong keys) never reaches a queue, a transfer or a hang-up; "
                    "escalate to a queue",
                )
            elif target not in state:
                name = target


def _emergency_lane(doc: YamlDoc, nodes: Mapping[str, Node], start: str, at: Any) -> None:
    """A hijack victim reaches an emergency-priority queue whatever the hotline decides on
    the way: out of hours, not verified, locked out. An outcome of such a decision turns
    victims away when, followed alone (the node's other outcomes cut), either no emergency
    queue can be reached from the start any more, or the node was on the way to one (another
    of its outcomes leads there whatever happens) and this outcome can no longer reach one.
    And a self-freezing queue is an emergency one."""
    emergency = {
        name
        for name, node in nodes.items()
        if isinstance(node, QueueNode) and node.priority == "emergency"
    }
    for name, node in nodes.items():
        if isinstance(node, QueueNode) and node.self_freeze and node.priority != "emergency":
            at(
                name,
                ("priority",),
                f"a queue that freezes hijacked accounts {FREEZE_NOT_EMERGENCY}, not "
                f"{node.priority}: victims would wait behind everyone",
            )

    def reached(origin: str, forced: tuple[str, str] | None = None) -> set[str]:
        seen, todo = {origin}, [origin]
        while todo:
            name = todo.pop()
            node = nodes[name]
            cut = _OUTCOMES.get(type(node), ()) if forced and name == forced[0] else ()
            for rel, target in edges(node):
                if rel[0] in cut and rel[0] != forced[1]:  # type: ignore[index]
                    continue
                if target in nodes and target not in seen:
                    seen.add(target)
                    todo.append(target)
        return seen

    if any(t not in nodes for node in nodes.values() for _, t in edges(node)):
        return  # unknown targets are reported; what they cut off is not known yet
    everywhere = reached(start)
    if not everywhere & emergency:
        return  # a tree with no emergency lane (a test line, another product) has none to lose
    for first in _first_menus(nodes, start):
        menu = nodes[first]
        assert isinstance(menu, MenuNode)
        if not any(
            o.key is not None and _straight_to_emergency(nodes, o.target) for o in menu.options
        ):
            at(
                first,
                ("options",),
                f"{NO_EMERGENCY_KEY} queue ({', '.join(sorted(everywhere & emergency))}), "
                "through say or verify nodes only: the first menu callers hear must give a "
                "hijack victim one key to security, the key its prompt tells them to press",
                "warning",
            )
    bound = emergency | set(emergency_bound(nodes))
    for name, node in nodes.items():
        if name not in everywhere:
            continue
        outcomes = [
            (outcome, target)
            for outcome in _OUTCOMES.get(type(node), ())
            if (target := getattr(node, outcome)) is not None and target in nodes
        ]
        on_the_way = any(target in bound for _, target in outcomes)
        for outcome, target in outcomes:
            if target in bound:
                continue
            forced = (name, outcome)
            onward = reached(target, forced)
            if (on_the_way and not onward & emergency) or not reached(start, forced) & emergency:
                # Turned away, or only put in the line everyone else waits in.
                person = any(isinstance(nodes[n], QueueNode | TransferNode) for n in onward)
                at(
                    name,
                    (outcome,),
                    f"a caller sent to '{target}' here ({outcome}) {NO_EMERGENCY} queue"
                    + (
                        ": only one that every other caller waits in"
                        if person
                        else ": a hijack victim must reach security whatever the verdict"
                    ),
                    "warning" if person else "error",
                )
    # A victim the emergency queue could not serve (Twilio's queue full, an error) goes where
    # its `on_leave` says: the hotline decides that, not the caller, so the lane must go on.
    for name, node in nodes.items():
        target = node.on_leave if isinstance(node, QueueNode) else None
        if not (
            name in everywhere
            and isinstance(node, QueueNode)
            and node.priority == "emergency"
            and target in nodes
        ):
            continue
        assert target is not None
        onward = reached(target)
        if onward & emergency:
            continue
        person = any(isinstance(nodes[n], QueueNode | TransferNode) for n in onward)
        at(
            name,
            ("on_leave",),
            f"a caller sent to '{target}' here (on_leave) {NO_EMERGENCY} queue"
            + (
                ": only one that every other caller waits in"
                if person
                else ": a hijack victim the queue could not take (Twilio's queue full, an "
                "error) would be hung up on; without on_leave they are queued again, then "
                "in the fallback queue"
            ),
            "warning" if person else "error",
        )


def _first_menus(nodes: Mapping[str, Node], start: str) -> list[str]:
    """The menus callers meet first: after the language menu, notices and hours checks."""
    found: list[str] = []
    seen: set[str] = set()
    todo = deque([start])
    while todo:
        name = todo.popleft()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        node = nodes[name]
        if isinstance(node, MenuNode):
            found.append(name)
        elif isinstance(node, LanguageNode | SayNode):
            todo.append(node.next)
        elif isinstance(node, HoursNode):
            todo.extend((node.on_open, node.on_closed))
    return found


def _straight_to_emergency(nodes: Mapping[str, Node], name: str) -> bool:
    """Whether `name` leads to an emergency-priority queue through say and verify nodes
    only (no other menu, no hours check in between)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        name = todo.pop()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        node = nodes[name]
        if isinstance(node, QueueNode) and node.priority == "emergency":
            return True
        if isinstance(node, SayNode | VerifyNode):
            todo.extend(target for _, target in edges(node))
    return False


def speaking_seconds(text: str) -> float:
    """About how long TTS takes to say `text` (150 words, or 270 Chinese characters, a minute)."""
    words = len(re.findall(r"[A-Za-z0-9]+", text))
    hanzi = len(re.findall(r"[\u3400-\u9fff]", text))
    return words / 2.5 + hanzi / 4.5


# The key a caller presses to confirm the call back they asked for on hold (with 1): not 1
# again, which a frightened caller pressing 1 over and over would press (`ivr.engine`).
CALLBACK_CONFIRM_KEY = "2"
CALLBACK_CONFIRM_PROMPT = "callback_confirm"


_DIGIT_NAMES = {
    **dict.fromkeys(("one", "一"), "1"),
    **dict.fromkeys(("two", "二"), "2"),
    **dict.fromkeys(("three", "三"), "3"),
    **dict.fromkeys(("four", "四"), "4"),
    **dict.fromkeys(("five", "五"), "5"),
    **dict.fromkeys(("six", "六"), "6"),
    **dict.fromkeys(("seven", "七"), "7"),
    **dict.fromkeys(("eight", "八"), "8"),
    **dict.fromkeys(("nine", "九"), "9"),
    **dict.fromkeys(("zero", "零"), "0"),
}
# "press one", 按一 (not 按一下, "press once"): the digit, as keys_said reads it.
_KEY_NAMED = re.compile(
    r"(\bpress\s+(?:the\s+)?)(one|two|three|four|five|six|seven|eight|nine|zero)\b"
    r"|(按\s*)([一二三四五六七八九零])(?!下)",
    re.IGNORECASE,
)


# Where a sentence or a clause ends, in either language (the full-width marks Chinese uses).
_SENTENCE_END = re.compile("[.;!?\u3002\uff1b\uff01\uff1f]")
_CONFIRM = re.compile(r"confirm|确认", re.IGNORECASE)


def _confirm_text(value: object) -> str:
    """A `callback_confirm`'s words (an audio prompt's transcript), its digits' names as
    digits."""
    text = getattr(value, "text", value)
    if not isinstance(text, str):
        return ""
    return _KEY_NAMED.sub(lambda m: (m[1] or m[3]) + _DIGIT_NAMES[(m[2] or m[4]).lower()], text)


def confirm_keys(value: object) -> set[str]:
    """The keys a `callback_confirm` names for confirming: in its sentences that say
    confirm (确认), else anywhere in it."""
    text = _confirm_text(value)
    sentences = [s for s in _SENTENCE_END.split(text) if _CONFIRM.search(s)]
    named = {k for s in sentences for k in keys_said(s)}
    return named or set(keys_said(text))


def callback_confirm_key(catalogs: Catalogs, language: str) -> str:
    """The key `language`'s `callback_confirm` tells the caller to press: CALLBACK_CONFIRM_KEY,
    or 1 in a catalog written before it (a version rolled back to), which must still work."""
    named = confirm_keys(catalogs.catalog(language).prompts.get(CALLBACK_CONFIRM_PROMPT))
    return "1" if named == {"1"} else CALLBACK_CONFIRM_KEY


def _confirm_key_said(catalogs: Catalogs) -> list[Problem]:
    """A `callback_confirm` that does not name CALLBACK_CONFIRM_KEY alone for confirming:
    asking for 1 again, a caller pressing 1 over and over on hold ends their own call."""
    problems = []
    for lang, cat in catalogs.by_language.items():
        value = cat.prompts.get(CALLBACK_CONFIRM_PROMPT)
        if value is not None and confirm_keys(value) != {CALLBACK_CONFIRM_KEY}:
            problems.append(
                catalogs.problem(
                    lang,
                    ("prompts", CALLBACK_CONFIRM_PROMPT),
                    f"'{CALLBACK_CONFIRM_PROMPT}' should tell the caller to press "
                    f'{CALLBACK_CONFIRM_KEY} to confirm ("press {CALLBACK_CONFIRM_KEY}", '
                    f"按{CALLBACK_CONFIRM_KEY}): 1 again would let a caller pressing 1 over and "
                    "over end their own call; the key it names is the one taken",
                    "warning",
                )
            )
    return problems


def _long_prompts(tree: TreeFile, catalogs: Catalogs) -> list[Problem]:
    """Prompts too long to hold in mind: one warning per prompt and language, at the prompt's
    line in its catalog (where it is shortened), naming the nodes that say it; a shared
    prompt (`invalid`) is not warned of once per menu."""
    said_at: dict[str, list[str]] = {}
    for name, node in tree.nodes.items():
        for _, key in prompt_keys(node):
            said_at.setdefault(key, [])
            if name not in said_at[key]:
                said_at[key].append(name)
    problems = []
    for key, names in said_at.items():
        for lang, cat in catalogs.by_language.items():
            text = cat.prompts.get(key)
            if not isinstance(text, str):
                continue
            seconds = speaking_seconds(text)
            if seconds > tree.max_prompt_seconds:
                where = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if names[3:] else "")
                problems.append(
                    catalogs.problem(
                        lang,
                        ("prompts", key),
                        f"prompt '{key}' takes about {seconds:.0f} s to say: more than a caller "
                        f"can hold in mind (the tree's max_prompt_seconds="
                        f"{tree.max_prompt_seconds}); said at {where}",
                        "warning",
                    )
                )
    return problems


def _through_says(nodes: Mapping[str, Node], name: str) -> str:
    """Where `name` leads once the say nodes on the way are said."""
    seen: set[str] = set()
    while name in nodes and name not in seen and isinstance(nodes[name], SayNode):
        seen.add(name)
        name = nodes[name].next  # type: ignore[union-attr]
    return name


def _hours_bypassed(doc: YamlDoc, nodes: Mapping[str, Node]) -> list[Problem]:
    """A queue kept behind business hours somewhere, but reached directly from a menu option:
    callers get there outside the hours with no closed branch."""
    kept = {
        _through_says(nodes, node.on_open): hours_name
        for hours_name, node in nodes.items()
        if isinstance(node, HoursNode)
    }
    problems = []
    for name, node in nodes.items():
        if not isinstance(node, MenuNode):
            continue
        for i, option in enumerate(node.options):
            target = _through_says(nodes, option.target)
            if target in kept and isinstance(nodes.get(target), QueueNode):
                problems.append(
                    doc.problem(
                        ("nodes", name, "options", i, "target"),
                        f"reaches queue node '{target}' directly, outside the business hours that "
                        f"'{kept[target]}' keeps for it, with no closed branch",
                        "warning",
                    )
                )
    return problems


def _opens_without_hours(
    doc: YamlDoc, nodes: Mapping[str, Node], catalogs: Catalogs
) -> list[Problem]:
    """A prompt that says `{opens}` where a caller may arrive other than from a closed hours
    check (through say nodes only): they would hear the time left out."""
    into: dict[str, list[tuple[str, PathKey]]] = {}
    for name, node in nodes.items():
        for rel, target in edges(node):
            into.setdefault(target, []).append((name, rel))
    known: dict[str, bool] = {}

    def after_closed(name: str) -> bool:
        if name not in known:
            known[name] = False  # a loop of say nodes is not a closed check
            arrivals = into.get(name, [])
            known[name] = bool(arrivals) and all(
                (isinstance(nodes[src], HoursNode) and rel == ("on_closed",))
                or (isinstance(nodes[src], SayNode) and after_closed(src))
                for src, rel in arrivals
            )
        return known[name]

    problems = []
    for name, node in nodes.items():
        for rel, key in prompt_keys(node):
            if "opens" in catalogs.variables(key) and not after_closed(name):
                problems.append(
                    doc.problem(
                        ("nodes", name, *rel),
                        f"prompt '{key}' says {{opens}}, but callers reach '{name}' other than "
                        "from an hours check that found the hours closed: they would hear no time",
                        "warning",
                    )
                )
    return problems


def _ends_in_hangup(nodes: Mapping[str, Node], name: str) -> bool:
    """Whether going to `name` ends the call without the caller doing anything more."""
    seen: set[str] = set()
    while name in nodes and name not in seen:
        seen.add(name)
        node = nodes[name]
        if isinstance(node, HangupNode):
            return True
        if not isinstance(node, SayNode):
            return False
        name = node.next
    return False


def _check_menu_keys(name: str, node: MenuNode, catalogs: Catalogs, at: Any) -> None:
    used: dict[str, str] = {}
    special = {
        "repeat_key": node.repeat_key,
        "back_key": node.back_key,
        "operator_key": node.operator_key,
    }
    for field_name, key in special.items():
        if key is None:
            continue
        if key in used:
            at(name, (field_name,), f"key '{key}' is already the {used[key]}")
        used.setdefault(key, field_name)
    words: dict[tuple[str, str], int] = {}
    for i, option in enumerate(node.options):
        if option.key is not None:
            if option.key in used:
                at(name, ("options", i, "key"), f"key '{option.key}' is already {used[option.key]}")
            used.setdefault(option.key, f"options[{i}]")
        for lang, keywords in option.speech.items():
            if lang not in catalogs.by_language:
                at(name, ("options", i, "speech", lang), f"no prompt catalog for language '{lang}'")
            for word in keywords:
                norm = (lang, normalise_speech(word))
                if not norm[1]:
                    at(name, ("options", i, "speech", lang), f"keyword '{word}' has no letters")
                elif norm in words and words[norm] != i:
                    at(
                        name,
                        ("options", i, "speech", lang),
                        f"keyword '{word}' is already options[{words[norm]}]",
                    )
                words.setdefault(norm, i)
    for lang in node.operator_speech:
        if lang not in catalogs.by_language:
            at(name, ("operator_speech", lang), f"no prompt catalog for language '{lang}'")
    # Options reached only by speech are never read out: nothing for a caller to hold in mind.
    keyed = [o for o in node.options if o.key is not None]
    if len(keyed) > 9:
        at(
            name,
            ("options",),
            f"{len(keyed)} keyed options: callers cannot hold more than 9 in mind",
            "warning",
        )


# How the catalogs tell a caller which key to press: "press 1", "Press star", "press the pound
# key"; 请按1, 按井号键, 按星号键. (A list after one "press", "2 for ..., or 0 for ...", is not
# read: only the key right after the word.)
_SAID_KEYS = (
    re.compile(
        r"\bpress(?:es|ing)?\s+(?:the\s+)?([0-9](?![0-9])|star\b|pound\b|hash\b|\*|#)",
        re.IGNORECASE,
    ),
    re.compile(r"按\s*([0-9](?![0-9])|星号|井号|\*|#)"),
)
_PROMPT_KEY_WORDS = {"star": "*", "pound": "#", "hash": "#", "星号": "*", "井号": "#"}


def keys_said(text: str) -> dict[str, str]:
    """The keys a prompt tells the caller to press, each with the first words saying so."""
    found: dict[str, str] = {}
    for pattern in _SAID_KEYS:
        for m in pattern.finditer(text):
            key = _PROMPT_KEY_WORDS.get(m[1].lower(), m[1])
            found.setdefault(key, m[0])
    return found


def _check_keys_said(name: str, node: MenuNode, catalogs: Catalogs, at: Any) -> None:
    """A menu prompt that tells callers to press a key the menu does not have (its option
    moved or deleted, the prompt left as it was): the caller who does is told it is not a
    valid choice. Every catalog's text is read."""
    keys = {o.key for o in node.options} | {node.repeat_key, node.back_key, node.operator_key}
    # An incident option's prompt is said while it is offered; the menu's own prompts
    # naming it are `_check_incident_options`'s error.
    known = keys | {o.key for o in node.incident_options}
    for rel, prompt in prompt_keys(node):
        missing: dict[str, list[str]] = {}
        for lang, cat in catalogs.by_language.items():
            value = cat.prompts.get(prompt)
            text = value if isinstance(value, str) else value.text if value else None
            for key, words in keys_said(text or "").items():
                if key not in known:
                    missing.setdefault(key, []).append(f'"{words}" in {lang}')
        if missing:
            named = "; ".join(f"key {k} ({', '.join(said)})" for k, said in missing.items())
            at(
                name,
                rel,
                f"prompt '{prompt}' names {named}, {KEY_NOT_IN_MENU} (no option, repeat, back "
                "or operator key): a caller who presses it is told it is not a valid choice",
                "warning",
            )


# The rest of a list after one "press" (or 按): "Press 1 for help, 2 for more, or pound to go
# back", "Press 1, 2 or 0", 请按1、2或0.
_LISTED_KEY = re.compile(
    r"(?:[,;、]\s*(?:or\s+|and\s+)?|\s+or\s+|\s*或\s*)"
    r"([0-9](?![0-9])|star\b|pound\b|hash\b|\*|#|星号|井号)"
    r"(?:\s+(?:for|to|if)\b|(?=\s*(?:[,;、.]|or\b|或|$)))",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"[^.!?\u3002\uff01\uff1f]+")


def keys_offered(text: str) -> dict[str, str]:
    """The keys a prompt offers: those `keys_said` reads, and those listed after a "press"
    in the same sentence ("Press 1 for help, 2 for more, 0 for an agent")."""
    found = keys_said(text)
    for sentence in _SENTENCE.findall(text):
        if re.search(r"\bpress|按", sentence, re.IGNORECASE):
            for m in _LISTED_KEY.finditer(sentence):
                key = _PROMPT_KEY_WORDS.get(m[1].lower(), m[1])
                found.setdefault(key, m[0].lstrip(",;、 "))
    return found


def _check_keys_offered(name: str, node: MenuNode, catalogs: Catalogs, at: Any) -> None:
    """A keyed option the menu's prompts never tell callers to press, in a catalog whose
    prompt tells them which keys to press ("press 1", 请按2): an option added in the tree,
    or said in one catalog's prompt and not another's. Those callers never learn of it. Only
    a catalog's own text is read (an untranslated prompt is warned of already); a prompt
    that names no key at all ("Say what you need") is no list of keys."""
    for rel, prompt in (("prompt",), node.prompt), (("short_prompt",), node.short_prompt):
        if prompt is None:
            continue
        said: dict[str, dict[str, str]] = {}
        for lang, cat in catalogs.by_language.items():
            # A recording without its transcript: what it offers is not known.
            text = _prompt_text(cat.prompts.get(prompt))
            if text is not None and (keys := keys_offered(text)):
                said[lang] = keys
        for i, option in enumerate(node.options):
            silent = [lang for lang, keys in said.items() if option.key not in keys]
            if option.key is None or not silent:
                continue
            told = [
                f'"{k[option.key]}" in {lang}' for lang, k in said.items() if lang not in silent
            ]
            where = f"says {', '.join(told)} but never names it in" if told else "never names it in"
            languages = ", ".join(silent)
            at(
                name,
                ("options", i, "key"),
                f"key {option.key} (to '{option.target}'): {rel[0]} '{prompt}' {where} "
                f"{languages}: {languages} {KEY_NOT_OFFERED}; say it there "
                f'("press {option.key}", 请按{option.key}), or remove the option',
                "warning",
            )


INCIDENT_KEY_SAID = "which is offered only while an announcement is up"
INCIDENT_NEVER_OFFERED = "never offered"


def _prompt_text(catalog_value: object) -> str | None:
    """A prompt's words: its text, or a recording's transcript (None: not known)."""
    text = getattr(catalog_value, "text", catalog_value)
    return text if isinstance(text, str) else None


def _check_incident_options(name: str, node: MenuNode, catalogs: Catalogs, at: Any) -> None:
    """A menu's keys for an incident (`incident_options`), offered and taken only while the
    supervisors' announcement is up, on a menu that plays it (one that does not never offers
    them: warned of). Each key is its own, not an option's, repeat, back or operator key (it
    would change meaning while an announcement is up); the menu's own prompts never name
    one (callers would be told of it when no announcement is up, then hear it is not a valid
    choice); and each option's prompt names its key in every catalog (else which key?)."""
    if node.incident_options and not node.announcement:
        at(
            name,
            ("incident_options",),
            f"{INCIDENT_NEVER_OFFERED}: they are offered only where the supervisors' "
            "announcement is played, and this menu does not play it (announcement: true)",
            "warning",
        )
    used: dict[str, str] = {}
    for field_name in ("repeat_key", "back_key", "operator_key"):
        key = getattr(node, field_name)
        if key is not None:
            used.setdefault(key, f"the {field_name}")
    for i, option in enumerate(node.options):
        if option.key is not None:
            used.setdefault(option.key, f"options[{i}]")
    ordinary = set(used)
    for i, incident in enumerate(node.incident_options):
        if incident.key in used:
            at(
                name,
                ("incident_options", i, "key"),
                f"key '{incident.key}' is already {used[incident.key]}",
            )
        used.setdefault(incident.key, f"incident_options[{i}]")
        for lang, cat in catalogs.by_language.items():
            text = _prompt_text(cat.prompts.get(incident.prompt))
            if text is not None and incident.key not in keys_offered(text):
                at(
                    name,
                    ("incident_options", i, "prompt"),
                    f"prompt '{incident.prompt}' never names key {incident.key} in {lang}: "
                    f'{lang} callers are not told which key to press ("press '
                    f'{incident.key}", 请按{incident.key})',
                    "warning",
                )
    # (A key the menu has anyway is refused above, not this.)
    incident_keys: dict[str, int] = {}
    for i, incident in enumerate(node.incident_options):
        if incident.key not in ordinary:
            incident_keys.setdefault(incident.key, i)
    for rel, prompt in (("prompt",), node.prompt), (("short_prompt",), node.short_prompt):
        if prompt is None:
            continue
        named: dict[str, list[str]] = {}
        for lang, cat in catalogs.by_language.items():
            text = _prompt_text(cat.prompts.get(prompt))
            for key, words in keys_offered(text or "").items():
                if key in incident_keys:
                    named.setdefault(key, []).append(f'"{words}" in {lang}')
        for key, said in named.items():
            at(
                name,
                rel,
                f"prompt '{prompt}' names key {key} ({', '.join(said)}), {INCIDENT_KEY_SAID} "
                f"(incident_options[{incident_keys[key]}]): callers would be told of it when "
                "none is, and hear it is not a valid choice; say it in the option's own prompt",
            )


def _check_verify_secrets(name: str, node: VerifyNode, catalogs: Catalogs, at: Any) -> None:
    """A verification must ask for a secret: "verified" frees the self-freeze and the
    account's earlier cases for the agent. And one that asks for the authenticator's code
    contradicts the prompts that promise we never ask for it, the promise that keeps callers
    from reading that code out to a scammer posing as us."""
    if not SECRET_STEPS & set(node.steps):
        at(
            name,
            ("steps",),
            f"{NO_SECRET} ({', '.join(node.steps)}): a UID or a phone number is no proof, "
            "anyone who knows them would be verified, their account frozen and its earlier "
            f"cases shown to the agent; add one of {', '.join(sorted(SECRET_STEPS))}",
        )
    if "totp" in node.steps:
        prompt = node.step_prompt("totp")
        promised = promises_never_to_ask_for_codes(catalogs, but=prompt)
        contradicts = (
            f"which {', '.join(repr(key) for key in promised)} promise we never ask for"
            if promised
            else "what scammers posing as support ask for"
        )
        at(
            name,
            ("steps",),
            f"a totp step {TOTP_ASKED}, {contradicts}: callers who hear us ask for it are "
            "readier to read it out to a scammer posing as us; say in "
            f"'{prompt}' why this call differs (only on a call they made to the number in our "
            "app), or ask for pin or id_last4",
            "warning",
        )


# A promise never to ask for a two-factor code, in a prompt of any language: never (or not
# ever) asking, and a code of that kind, in the same prompt ("We will never ask for your
# two-factor code"; "No one from our support team will ever ask for it", after "a two-factor
# code"; 我们绝不会向您索要密码或两步验证码).
_NEVER_ASK = re.compile(
    r"\b(?:never|ever)\b[^.!?]*\bask|(?:绝不|不会)[^。!?\uff01\uff1f]*索要", re.IGNORECASE
)
_TWO_FACTOR_CODE = re.compile(
    r"two-factor|two factor|\b2fa\b|authenticator|verification code|验证码", re.IGNORECASE
)


def promises_never_to_ask_for_codes(catalogs: Catalogs, *, but: str) -> list[str]:
    """The prompts, in any catalog, that tell callers we never ask for their two-factor code
    (`but` that one), in catalog order."""
    found: dict[str, None] = {}
    for cat in catalogs.by_language.values():
        for key, value in cat.prompts.items():
            text = value if isinstance(value, str) else value.text
            if key != but and text and _NEVER_ASK.search(text) and _TWO_FACTOR_CODE.search(text):
                found[key] = None
    return list(found)


def _check_hint_count(name: str, spoken: list[Option], at: Any) -> None:
    """Twilio takes MAX_HINTS hints per <Gather> (error 13330): past them, the last options'
    words are heard as well as the recogniser hears them unhinted, which, for names and
    jargon (USDT, 提币), is worse."""
    words: dict[str, list[str]] = {}
    for option in spoken:
        for lang, said in option.speech.items():
            words.setdefault(lang, []).extend(said)
    for lang, said in words.items():
        distinct = _hint_words(said)
        if len(distinct) > MAX_HINTS:
            first_left_out = distinct[MAX_HINTS]
            at(
                name,
                (),
                f"{len(distinct)} {lang} keywords: Twilio takes {MAX_HINTS} hints, so from "
                f"'{first_left_out}' on they are not hinted to its recogniser (fewer words, "
                "or fewer options spoken here)",
                "warning",
            )


def _check_shadowed_words(
    name: str, spoken: list[Option], listed: int, at: Any, field_name: str = "options"
) -> None:
    """A keyword an earlier option's keyword always matches first is never heard: "password"
    after "pass" (Latin keywords match at a word's start), 密码 after 密 (Chinese, anywhere).
    The operator meant it to lead somewhere; it leads to the earlier option. `listed`: the
    menu's own options; the rest of `spoken` is its operator's words."""

    def where(i: int) -> str:
        return f"{field_name}[{i}]" if i < listed else "operator_speech"

    # Per language, each earlier option: its index, one pattern of all its words (one
    # search rules most out), and each word with its normal form.
    earlier: dict[str, list[tuple[int, re.Pattern[str], list[tuple[str, str]]]]] = {}
    for i, option in enumerate(spoken):
        for lang, said in option.speech.items():
            before = earlier.setdefault(lang, [])
            for word in said:
                heard = normalise_speech(word)
                if heard and (taker := _taker(spoken, before, i, listed, heard)) is not None:
                    rel: PathKey = (
                        (field_name, i, "speech", lang) if i < listed else ("operator_speech", lang)
                    )
                    at(
                        name,
                        rel,
                        f"keyword '{word}' is never heard: {where(taker[0])}'s '{taker[1]}' "
                        "matches it first (Latin keywords match at the start of a word, "
                        "Chinese anywhere; the first option listed wins)",
                        "warning",
                    )
            words = [(w, n) for w in said if (n := normalise_speech(w))]
            if words:
                before.append((i, _keyword_pattern([n for _, n in words]), words))


def _taker(
    spoken: list[Option],
    before: list[tuple[int, re.Pattern[str], list[tuple[str, str]]]],
    i: int,
    listed: int,
    heard: str,
) -> tuple[int, str] | None:
    """The earlier option, and its keyword, that takes what option `i`'s keyword `heard`
    says; None if none does."""
    for j, any_word, words in before:
        # One that leads where this one does takes nothing from it.
        if spoken[j].target == spoken[i].target or not any_word.search(heard):
            continue
        for word, normal in words:
            # Two options' same word is an error already (the operator's is not).
            if (i >= listed or normal != heard) and _keyword_pattern([normal]).search(heard):
                return j, word
    return None


CLOSE = 0.75  # how alike a name must be to one that exists to be offered instead


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    """ " (did you mean 'x'?)" for the known name closest to a misspelt one, else ""."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=CLOSE)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _prompt_findings(key: str, catalogs: Catalogs) -> list[tuple[str, Literal["error", "warning"]]]:
    if not catalogs.has(key, BASE_LANGUAGE):
        known = catalogs.catalog(BASE_LANGUAGE).prompts
        elsewhere = [f"{lang}.yaml" for lang in catalogs.languages if catalogs.has(key, lang)]
        return [
            (
                f"prompt '{key}' is missing from the {BASE_LANGUAGE} catalog"
                + (
                    f": it is in {' and '.join(elsewhere)}; add it to {BASE_LANGUAGE}.yaml "
                    f"(what {BASE_LANGUAGE} callers hear, and every other language's fallback)"
                    if elsewhere
                    else _did_you_mean(key, known)
                ),
                "error",
            )
        ]
    findings: list[tuple[str, Literal["error", "warning"]]] = []
    said = catalogs.variables_of(key, BASE_LANGUAGE)
    for lang in catalogs.languages:
        if not catalogs.has(key, lang):
            findings.append(
                (
                    f"prompt '{key}' has no {lang} translation; {BASE_LANGUAGE} is said instead",
                    "warning",
                )
            )
        elif missing := sorted(said - catalogs.variables_of(key, lang)):
            findings.append(
                (
                    f"prompt '{key}' in {lang} does not say {_braced(missing)}, which "
                    f"{BASE_LANGUAGE} does: {lang} callers do not hear "
                    + ("it" if len(missing) == 1 else "them"),
                    "warning",
                )
            )
    return findings


def _braced(names: Iterable[str]) -> str:
    """{a}, {b} and {c}."""
    said = [f"{{{n}}}" for n in names]
    return ", ".join(said[:-1]) + " and " + said[-1] if len(said) > 1 else "".join(said)


# The variables the engine fills in a node's prompts, by node kind and setting; any other
# prompt of a node is said with none (but {opens}: `_opens_without_hours`).
FILLED: dict[tuple[type, str], frozenset[str]] = {
    (QueueNode, "ticket_prompt"): frozenset({"ticket"}),
    (TicketNode, "status_prompt"): frozenset({"ticket"}),
    (NumberCheckNode, "official_prompt"): frozenset({"last4"}),
    (NumberCheckNode, "not_official_prompt"): frozenset({"last4"}),
    (LanguageNode, "option_prompt"): frozenset({"key"}),
}
_FILLED_WHERE = {
    "ticket": "a queue's ticket_prompt, a ticket node's status_prompt",
    "last4": "a number_check's official_prompt and not_official_prompt",
    "key": "a language menu's option_prompt",
}


def _unfilled_variables(
    doc: YamlDoc, nodes: Mapping[str, Node], catalogs: Catalogs, inherited: Inherited
) -> list[Problem]:
    """A node's prompt saying a variable the engine does not fill there ("Your ticket is
    {ticket}" as a menu's prompt): said as nothing, "Your ticket is ." Every such variable,
    in any catalog, is named."""
    problems = []
    for name, node in nodes.items():
        for rel, key in prompt_keys(node):
            filled = FILLED.get((type(node), str(rel[0])), frozenset()) | MOMENT_VARIABLES
            unfilled = sorted((catalogs.variables(key) & VARIABLES) - filled)
            if not unfilled:
                continue
            where = "; ".join(
                f"{{{v}}} is filled in {_FILLED_WHERE.get(v, 'what the engine says itself')}"
                for v in unfilled
            )
            problems.append(
                doc.problem(
                    _from_defaults(("nodes", name, *rel), inherited),
                    f"prompt '{key}' says {_braced(unfilled)}, which nothing fills at a "
                    f"{node.kind}'s {rel[0]}: callers would hear nothing in "
                    + ("its place" if len(unfilled) == 1 else "their places")
                    + f" ({where})",
                    "warning",
                )
            )
    return problems


def _pass_through_cycles(doc: YamlDoc, nodes: Mapping[str, Node]) -> list[Problem]:
    """Cycles of say/hours nodes only: the engine would loop without ever waiting for input.
    And chains of them longer than the engine follows in one turn (`MAX_PASS_THROUGH`): the
    caller would hear an apology and be hung up on. Walked without recursion: a tree of a
    thousand say nodes in a row is refused with a message, not a RecursionError."""
    problems: list[Problem] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def onward(name: str) -> list[str]:
        return [t for _, t in edges(nodes[name]) if isinstance(nodes.get(t), PASS_THROUGH)]

    for root, node in nodes.items():
        if not isinstance(node, PASS_THROUGH) or root in state:
            continue
        stack: list[str] = [root]
        pending: list[list[str]] = [onward(root)]
        state[root] = 1
        while stack:
            if not pending[-1]:
                state[stack.pop()] = 2
                pending.pop()
                continue
            target = pending[-1].pop(0)
            if state.get(target) == 1:
                loop = " -> ".join([*stack[stack.index(target) :], target])
                problems.append(
                    doc.problem(("nodes", target), f"loop with no input or exit: {loop}")
                )
            elif target not in state:
                state[target] = 1
                stack.append(target)
                pending.append(onward(target))
    if problems:
        return problems
    # No cycles: the longest run of pass-through nodes from each, the farthest first known.
    longest: dict[str, int] = {}
    order = [n for n, node in nodes.items() if isinstance(node, PASS_THROUGH)]
    while order:
        name = order[-1]
        missing = [t for t in onward(name) if t not in longest]
        if missing:
            order.extend(missing)
            continue
        order.pop()
        longest[name] = 1 + max((longest[t] for t in onward(name)), default=0)
    followed = {t for name in longest for t in onward(name)}
    for name, run in longest.items():
        if run >= MAX_PASS_THROUGH and name not in followed:
            problems.append(
                doc.problem(
                    ("nodes", name),
                    f"{run} {IN_A_ROW} from here: a caller is taken through at "
                    f"most {MAX_PASS_THROUGH - 1} before a node that waits for them",
                )
            )
    return problems


def version_of(source: str, catalogs: Catalogs) -> str:
    blob = json.dumps(
        {"tree": source, "prompts": dict(catalogs.sources)}, sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def compile_source(
    source: str,
    file: str,
    catalogs: Catalogs,
    *,
    in_progress: bool = False,
    keep_errors: bool = False,
) -> CompiledTree:
    """Validate a tree's text against the catalogs and compile it; SourceError lists every error.

    `in_progress`: a version stored earlier, rebuilt for the calls still on it. What checks
    added since then refuse (`LATER_CHECKS`: how a tree should treat callers, not whether the
    engine can run it) is only warned of: those calls end as they began.

    `keep_errors`: a tree to be drawn, never served (`load_tree_to_draw`): once its YAML and
    schema hold, what its graph gets wrong (unknown targets, loops, no way out, unreachable
    nodes, missing prompts) is kept among its `warnings`, as errors, instead of refusing it."""
    doc = load_text(source, file, stored=in_progress)
    problems: list[Problem] = []
    prepared = _apply_menu_defaults(doc, problems)
    if prepared is None:
        raise SourceError(problems)
    data, inherited = prepared
    try:
        tree = TreeFile.model_validate(data)
    except ValidationError as exc:
        problems += [_validation_problem(doc, e, data, inherited) for e in exc.errors()]
        problems += _check_the_rest(doc, data, exc, catalogs, inherited)
        raise SourceError(_unique(problems)) from None
    problems = _unique(problems + _check_graph(doc, tree, catalogs, inherited))
    if in_progress:
        problems = [
            Problem(p.file, p.line, p.path, p.message, "warning")
            if any(mark in p.message for mark in LATER_CHECKS)
            else p
            for p in problems
        ]
    if any(p.severity == "error" for p in problems) and not keep_errors:
        raise SourceError(problems)
    exceptions = exceptions_of(tree)
    menus = {
        n: _compile_menu(node, exceptions)
        for n, node in tree.nodes.items()
        if isinstance(node, MenuNode)
    }
    shortcuts = {
        n: _compile_shortcuts(node, exceptions)
        for n, node in tree.nodes.items()
        if isinstance(node, LanguageNode) and node.shortcuts
    }
    return CompiledTree(
        file,
        version_of(source, catalogs),
        source,
        tree,
        catalogs,
        menus,
        problems,
        emergency_bound(tree.nodes),
        shortcuts,
    )


def _check_the_rest(
    doc: YamlDoc,
    data: dict[str, Any],
    exc: ValidationError,
    catalogs: Catalogs,
    inherited: Inherited,
) -> list[Problem]:
    """The graph's findings (unknown targets, missing prompts, ...) about the nodes that are
    well formed, when others are not: one run of `routes check` shows every problem, not the
    type errors first and the rest after they are fixed. What depends on the broken nodes
    (links to them, what is reached only through them, menu depth, whether any menu plays
    the announcement) waits for them."""
    nodes = data.get("nodes")
    if not isinstance(nodes, dict):
        return []
    broken = {
        str(e["loc"][1]) for e in exc.errors() if len(e["loc"]) >= 2 and e["loc"][0] == "nodes"
    }
    rest = {**data, "nodes": {k: v for k, v in nodes.items() if k not in broken}}
    try:
        partial = TreeFile.model_validate(rest)
    except ValidationError:
        return []  # broken beyond the nodes (start, settings): those errors say it
    waits = {f"unknown node '{name}'" for name in broken}
    return [
        p
        for p in _check_graph(doc, partial, catalogs, inherited)
        if p.message.split(" (did you mean")[0] not in waits
        and not p.message.startswith("unreachable")
        and not p.message.startswith(NO_WAY_OUT)
        and NO_EMERGENCY not in p.message
        and "menus deep" not in p.message
        and p.message != NO_ANNOUNCEMENT
    ]


# Nodes that move a caller on by themselves, whatever they key: no choice is left to make.
_ON_THEIR_OWN = (SayNode, HoursNode, VerifyNode)


def emergency_bound(nodes: Mapping[str, Node]) -> dict[str, str]:
    """Each node from which the caller reaches an emergency queue whatever happens next, with
    the queue node they reach: a notice, an hours check or a verification, every outcome of
    which leads on by itself to an emergency-priority queue.

    A caller who hangs up there has already asked for emergency help: the hotline opens their
    case anyway, for a call back, rather than lose it because they never reached the queue.
    A node with one outcome elsewhere (a verification that, failed, sends the caller to the
    general queue) is not bound: where that caller was going is not known, nor is one in a
    loop of such nodes. Worked out from the queues backwards, once per edge, without
    recursion (any tree size)."""
    found: dict[str, str] = {
        name: name
        for name, node in nodes.items()
        if isinstance(node, QueueNode) and node.priority == "emergency"
    }
    own = {name: node for name, node in nodes.items() if isinstance(node, _ON_THEIR_OWN)}
    # Each own node waits for its distinct targets; one bound releases those waiting on it.
    targets = {name: [t for _, t in edges(node)] for name, node in own.items()}
    waiting = {name: len(set(ts)) for name, ts in targets.items() if ts}
    waits_on: dict[str, list[str]] = {}
    for name, ts in targets.items():
        for target in set(ts):
            waits_on.setdefault(target, []).append(name)
    ready = list(found)
    while ready:
        for name in waits_on.get(ready.pop(), ()):
            waiting[name] -= 1
            if waiting[name] == 0:
                found[name] = found[targets[name][0]]
                ready.append(name)
    return {name: queue for name, queue in found.items() if name in own}


def _unique(problems: list[Problem]) -> list[Problem]:
    """One report per place: a bad menu default fails in every menu that inherits it."""
    return list(dict.fromkeys(problems))


# What a pattern means, said to an operator instead of the regular expression.
_PATTERN_HINTS = {
    "key": "must be one keypad key: 0-9, * or # (in quotes)",
    "number": "must be a phone number in E.164 form, in quotes, like '+15551230001'",
    "queue": "must be 1-64 letters, digits, '_', '.' or '-'",
}


def _validation_problem(
    doc: YamlDoc, err: Any, data: dict[str, Any], inherited: Inherited
) -> Problem:
    loc = tuple(err["loc"])
    nodes = data.get("nodes")
    if len(loc) >= 3 and loc[0] == "nodes" and isinstance(nodes, dict):
        node = nodes.get(loc[1])
        if isinstance(node, dict) and node.get("kind") == loc[2]:
            loc = loc[:2] + loc[3:]  # pydantic's union tag; the file has no such level
    loc = _from_defaults(loc, inherited)
    message = str(err["msg"]).removeprefix("Value error, ")
    field_name = next((p for p in reversed(loc) if isinstance(p, str)), "")
    if err["type"] == "string_pattern_mismatch" and "by_country" in loc:
        message = f"'{shown(err['input'])}' must be a country calling code like '+86' (in quotes)"
    elif err["type"] == "string_pattern_mismatch":
        hint = _PATTERN_HINTS.get(
            field_name, "is not a valid name (ASCII letters a-z, digits, _ . -)"
        )
        message = f"'{shown(err['input'])}' {hint}"
        typed = str(err["input"])
        if any(unicodedata.east_asian_width(c) in ("F", "W") for c in typed):
            # An input method's full-width mode (U+FF19 is not 9), or a name in Chinese.
            message += ": a full-width or Chinese character; type it in half-width ASCII"
            message += " (switch the input method to English)"
    elif err["type"] == "string_type" and field_name == "number" and isinstance(err["input"], int):
        message = (
            f"{_PATTERN_HINTS['number']}; unquoted, YAML reads it as the number {err['input']}"
        )
    elif loc[-1:] == ("[key]",) and isinstance(err["input"], int | float | bool):
        loc = loc[:-1]
        kind = "boolean" if isinstance(err["input"], bool) else "number"
        message = (
            f"the key {err['input']} is read by YAML as a {kind}, not text: write it in "
            "quotes (a country code too: unquoted, +86 is the number 86)"
        )
    elif err["type"] == "string_type" and isinstance(err["input"], bool):
        message = (
            f"should be text: unquoted, YAML reads yes/no, on/off and true/false as the "
            f"boolean {str(err['input']).lower()} (write it in quotes)"
        )
    elif err["type"] == "string_type" and isinstance(err["input"], int | float):
        message = (
            f"should be text: unquoted, YAML reads {err['input']} as a number "
            f'(write it in quotes, "{err["input"]}")'
        )
    elif err["type"] == "union_tag_invalid":
        kind = err["input"].get("kind")
        message = f"unknown kind {kind!r}; expected one of: {err['ctx']['expected_tags']}"
    elif err["type"] in ("model_type", "model_attributes_type") and loc[:1] == ("nodes",):
        message = (
            f"a node is a mapping of settings starting with `kind`, not {_yaml_type(err['input'])}"
        )
        if len(loc) == 2 and loc[1] in NODE_SETTINGS:
            message += (
                f" (`{loc[1]}` is a node's setting, here read as a node of its own: "
                f"{DEDENTED} Indent it as the settings of the node above it)"
            )
    elif err["type"] == "dict_type":
        message = (
            f"should be a valid dictionary (`name: value` lines), not {_yaml_type(err['input'])}"
        )
    elif err["type"] == "list_type":
        message = f"must be a list (one `- ` line per item), not {_yaml_type(err['input'])}"
    elif err["type"] == "union_tag_not_found":
        message = (
            "a node needs a `kind` (menu, say, language, hours, queue, transfer, hangup, "
            "verify, ticket, number_check, survey)"
        )
    elif err["type"] == "extra_forbidden":
        message = f"unknown setting '{loc[-1]}'"
    elif err["type"] == "missing":
        message = f"'{field_name}' is required"
        if loc[:1] == ("nodes",) and isinstance(nodes, dict) and field_name in nodes:
            message += f" (a node is named '{field_name}': is that this setting, {DEDENTED})"
    return doc.problem(loc, message)


def shown(value: Any, limit: int = 60) -> str:
    """An operator's value as it can be printed in a message: control characters escaped
    (an ESC would otherwise drive the terminal), long values cut short."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _yaml_type(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"the {type(value).__name__} '{shown(value)}'"


def load_tree(routes: Path | str, prompts_dir: Path | str) -> CompiledTree:
    """Load, validate and compile a tree file with the prompt catalogs; SourceError on any error."""
    catalogs = load_catalogs(prompts_dir)
    path = Path(routes)
    return compile_source(read_source(path), str(path), catalogs)


def load_tree_to_draw(routes: Path | str, prompts_dir: Path | str) -> CompiledTree:
    """A tree file for its picture only, errors and all: drawn with its faults marked, so an
    operator sees where a loop, a dead end or an unknown target is. Its errors are among its
    `warnings` (severity "error"). SourceError when its YAML or schema has errors: then there
    is no graph to draw. Never served."""
    catalogs = load_catalogs(prompts_dir)
    path = Path(routes)
    return compile_source(read_source(path), str(path), catalogs, keep_errors=True)


def tree_from_stored(
    source: str, file: str, prompt_sources: Mapping[str, str], *, in_progress: bool = False
) -> CompiledTree:
    """Rebuild a tree version stored in the database: for the calls that began on it
    (`in_progress`), or to make it live again (a rollback: checked as any new tree)."""
    return compile_source(
        source, file, catalogs_from_sources(prompt_sources), in_progress=in_progress
    )


def check_tree(routes: Path | str, prompts_dir: Path | str) -> list[Problem]:
    """Every error and warning for a tree file; never raises for a bad file."""
    try:
        return load_tree(routes, prompts_dir).warnings
    except SourceError as exc:
        return exc.problems
