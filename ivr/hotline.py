"""What each webhook does, minus HTTP: read the call, run the engine, write the step.

`Hotline` holds what every request shares (settings, the live tree and older versions, the
database, the clock, identity and account-action ports, the Twilio REST client). A menu key
costs one read and one write. Secret digits are resolved here into a pass/fail before the
engine sees them, and go no further.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import time
import zoneinfo
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal, Protocol

import httpx
import requests
from sqlalchemy import Connection, Engine, Executable, Insert, Update, func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from twilio.base.exceptions import TwilioRestException
from twilio.twiml.voice_response import VoiceResponse
from urllib3.exceptions import NameResolutionError, NewConnectionError

from ivr import (
    announcements,
    calllog,
    cases,
    engine,
    instances,
    oncall,
    queues,
    recordings,
    store,
)
from ivr.db import Busy, patient, users
from ivr.exceptions import IdentityUnavailable, NoSuchAccount, Problem, SourceError
from ivr.identity import AccountActions, IdentityProvider, LocalAccountActions, keyed_factor
from ivr.numbers import (
    callable_by_twilio,
    dialable,
    keyed,
    last4,
    readings,
    withheld,
    within,
)
from ivr.observe import AtWork, Metrics
from ivr.prompts import BASE_LANGUAGE, Catalogs
from ivr.settings import Settings
from ivr.tree import (
    CALLBACK_CONFIRM_PROMPT,
    CompiledTree,
    Priority,
    VerifyNode,
    callback_confirm_key,
    load_tree,
    tree_from_stored,
)

log = logging.getLogger("ivr.hotline")

# QueueResult values for a caller we took out of the queue ourselves (REST redirect).
DEQUEUED_ELSEWHERE = frozenset({"redirected", "bridging-in-process"})
AGENT_NO_ANSWER = engine.AGENT_NO_ANSWER
# Twilio's AnsweredBy for a call back placed with machine detection: a voicemail (machine_*,
# machine_end_beep say) or a fax. `human` and `unknown` are put through.
MACHINE_ANSWERS = ("machine", "fax")
# Said to a voicemail that answered a call back (the catalog's; else callback_agent_unavailable).
CALL_BACK_VOICEMAIL = "callback_voicemail"
# A case's flag: accounts an agent froze on it besides the one its caller verified for.
ALSO_FROZEN = "also_frozen"
# Accounts besides the case's an agent may freeze on one case (`Hotline.freeze_case`).
OTHER_FREEZES_AT_MOST = 2
FREEZE_LOCK = 0x46525A  # PostgreSQL advisory lock class ("FRZ") of a case's agent freezes


def _hang_up() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response)


HANG_UP = _hang_up()

Clock = Callable[[], datetime]


NOT_ACCEPTED_IN_TIME = (
    "not your case: it was not accepted in time (or it is not yours to accept), and went "
    "back in line"
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class ConnectFailed(Exception):
    """The case the agent took is not theirs to connect after all: its caller hung up as it
    was taken (back in line for a call back), or it was taken back at that very moment."""

    def __init__(self, case_id: int, detail: str) -> None:
        super().__init__(case_id, detail)
        self.case_id = case_id
        self.detail = detail


LOST_AS_TAKEN = "the case was taken back as you took it. Ask for the next case again."


# Twilio's error for a REST redirect of a call that is not in progress any more. Not 20404
# (not found): a live call this client cannot see (another region, a subaccount) says so
# too, and its caller is handed over at their next hold round instead.
CALL_NOT_IN_PROGRESS = 21220


def call_is_over(exc: BaseException) -> bool:
    """Whether Twilio refused to redirect a call because it is over."""
    return isinstance(exc, TwilioRestException) and exc.code == CALL_NOT_IN_PROGRESS


class WouldBlock(Exception):
    """This input needs work that may take long (a secret hashed and checked, an identity or
    account service called): run it again where blocking is allowed. Raised before anything
    of the input is written, so running it again is the same as running it once."""


@dataclass(frozen=True)
class Attempt:
    """A secret factor keyed in and counted towards the lockout, not checked yet (never the
    digits: they stay with the request)."""

    failure_id: int  # the counted failure, taken back if the factor matches
    uid: str
    factor: str
    # Not to be checked: calls without full attestation are over their shared budget.
    throttled: bool = False
    guessed: str | None = None  # the account's failures lately, "failures/numbers" (locked)


class Counted(Exception):
    """On the event loop: the input is a secret factor, and this attempt is now counted (and
    committed) towards the lockout. Advance again with `checked=(attempt, verdict)`: locked,
    if `locked`; otherwise whether it matched, checked in a worker thread (`Hotline.check`).
    Everything after the count happens in that second run, so no re-run counts it again."""

    def __init__(self, attempt: Attempt, *, locked: bool) -> None:
        super().__init__(attempt.factor)
        self.attempt = attempt
        self.locked = locked


def _same_number(registered: str, number: str) -> bool:
    """Whether a caller ID is the account's registered number."""
    return registered.lstrip("+") == number.lstrip("+")


def _with_signals(verdict: engine.Checked, attempt: Attempt) -> engine.Checked:
    """The verdict, with what the lockout's read found about the account."""
    return dataclasses.replace(verdict, guessed=attempt.guessed) if attempt.guessed else verdict


def _finish_first(held: dict[str, Any] | None, case_id: int) -> str:
    """Why an agent gets no next case, and what to do about it."""
    ticket = held["ticket"] if held else case_id
    if held and held["status"] == "connected":
        return (
            f"you have case {ticket} on the line: resolve it when you are done, then take the next"
        )
    return (
        f"you have case {ticket} still: resolve it once you have reached the caller, or give "
        "it back, then take the next"
    )


# Why a call back was not sent on to another team (`cases.send_call_back_on`).
CALL_BACK_NOT_SENT = {
    "ringing": "Twilio is calling the customer now: send the case on once you talk to them "
    "(if they do not answer, it comes back to the line by itself)",
    "asked_already": "the case is being sent on already: it goes when the call ends",
    "to_accept": "accept the case first",
    "not_yours": "the case changed meanwhile; look at it again",
}


class CaseRefused(Exception):
    """An agent may not do that to this case: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class TwilioRest(Protocol):
    """The part of twilio.rest.Client the hotline uses (calls.create, calls(sid).update,
    messages.create, and the queues `ivr.queues` sizes)."""

    @property
    def calls(self) -> Any: ...

    @property
    def messages(self) -> Any: ...

    @property
    def queues(self) -> Any: ...


@dataclass(frozen=True)
class Caller:
    """What Twilio tells us about a new call."""

    call_sid: str
    account_sid: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    stir_verstat: str | None = None


RECORDING_NOTICE = "recording_notice"
# Seconds in line within which a hold round is the first: Twilio asks for it as the caller
# joins (QueueTime 0), and each round lasts longer (its words, then 20 s of music or pause).
FIRST_ROUND = 10
KEYED_TRIES = 3  # numbers a caller who withheld theirs may key to be called back on
# Twilio's StirVerstat for STIR/SHAKEN full attestation: the originating carrier vouches that
# its customer may use the calling number. Spoofed calls do not get it; a SIM swap does.
FULL_ATTESTATION = "TN-Validation-Passed-A"


TICKET_TEXT = "ticket_text"
TEXT_AT_MOST = timedelta(hours=1)  # after its case opened, a ticket text is no help
TEXT_SPACING = timedelta(minutes=10)  # at most one ticket texted to a number in this time


class TwilioFailing(Exception):
    """Twilio's REST API did not take a text (429, unreachable, refused for a reason of ours
    such as credentials being rotated): to try again later."""


class SentOrNot(Exception):
    """Twilio's REST API may have taken a text, or not (no answer in time, a 500, 502 or 504,
    the connection lost after sending): not sent again, as a text twice is worse than none."""


# Twilio's error codes for a text the number cannot take: for good, and the round goes on.
# Any other refusal is taken for the account's or the caller ID's (credentials being
# rotated, a caller ID that cannot text): every text would fail alike until it is mended.
RECIPIENT_REFUSED = frozenset(
    {
        21211,  # not a valid phone number
        21266,  # To and From the same: a caller who spoofed our own number
        21408,  # a region the account may not text
        21608,  # an unverified number, on a trial account
        21610,  # the number replied STOP
        21612,  # no route to the number
        21614,  # not a mobile number
        21635,  # a landline or unreachable carrier
    }
)


def never_taken(exc: BaseException) -> bool:
    """Whether Twilio certainly did nothing with a request that raised `exc`: it never reached
    Twilio, or Twilio refused it (a 4xx, a 503) rather than failing to answer (a 500, a 502,
    a 504, no answer in time)."""
    if isinstance(exc, TwilioRestException):
        status = int(exc.status)
        return status < 500 or status == 503
    return never_sent(exc)


def never_sent(exc: BaseException) -> bool:
    """Whether a REST call that raised `exc` certainly never reached Twilio: no connection
    was made (refused, a DNS failure, the connect timeout)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        cause = exc.args[0] if exc.args else None
        reason = getattr(cause, "reason", cause)
        return isinstance(reason, (NewConnectionError, NameResolutionError))
    return False


# The audit actions of the call tree: a version made live (tree_versions keeps only each
# version's last activation), and a reload or rollback refused (the old tree stayed live).
TREE_ACTIVATED = "tree_activated"
TREE_REFUSED = "tree_refused"


def _system_actor(by: str) -> str:
    """Who loaded a tree, as the audit log names actors: `operator:name` as it is; what the
    process did by itself (startup, SIGHUP, file change) as `system:`'s."""
    return by if ":" in by else f"system:{by}"


def prompts_refused(settings: Settings, tree: CompiledTree) -> SourceError | None:
    """Catalogs that cannot say what the settings turned on are refused: calls with agents are
    recorded (IVR_RECORD_AGENT_CALLS) only after callers are told (`recording_notice`), and
    tickets texted (IVR_TEXT_TICKETS) in words the operator wrote (`ticket_text`). (Only
    then: neither is a prompt every catalog needs, so tree versions stored before them still
    serve their calls.)"""
    needed = (
        (
            settings.record_agent_calls,
            RECORDING_NOTICE,
            "IVR_RECORD_AGENT_CALLS records calls with agents once callers are told so",
        ),
        (
            settings.text_tickets,
            TICKET_TEXT,
            "IVR_TEXT_TICKETS texts callers their tickets in its words",
        ),
    )
    catalog = str(settings.prompts_dir / f"{BASE_LANGUAGE}.yaml")
    problems = [
        Problem(
            catalog,
            None,
            "",
            f"prompt '{key}' is missing from the {BASE_LANGUAGE} catalog: {why}",
        )
        for on, key, why in needed
        if on and not tree.catalogs.has(key, BASE_LANGUAGE)
    ]
    if settings.text_tickets and not problems:
        for language, file in tree.catalogs.by_language.items():
            said = file.prompts.get(TICKET_TEXT)
            if said is not None and not (isinstance(said, str) and "{ticket" in said):
                problems.append(
                    Problem(
                        str(settings.prompts_dir / f"{language}.yaml"),
                        None,
                        "",
                        f"prompt '{TICKET_TEXT}' must be words saying {{ticket}}: it is texted",
                    )
                )
    return SourceError(problems) if problems else None


class TreeRegistry:
    """The live tree plus the versions calls in progress were on lately: the
    `keep` most recently used (the live one always among them). An older one a call still
    needs is rebuilt from the database (about a second for the shipped tree, on a thread),
    as after a restart: a day of reloads on an incident does not grow the process."""

    def __init__(self, current: CompiledTree, keep: int = 32) -> None:
        self.current = current
        self.keep = keep
        self._versions: OrderedDict[str, CompiledTree] = OrderedDict({current.version: current})
        self._lock = threading.Lock()

    def has(self, version: str) -> bool:
        """Whether `version` is built already (else `get` rebuilds it)."""
        return version in self._versions

    def get(self, version: str, db: Engine) -> CompiledTree:
        tree = self._versions.get(version)
        if tree is not None:
            with self._lock:
                if version in self._versions:
                    self._versions.move_to_end(version)
            return tree
        # A call that began before a restart or reload: rebuild its tree from the stored text.
        with db.connect() as conn:
            stored = store.load_tree_version(conn, version=version)
        if stored is None:
            log.warning(
                "tree version %s is not stored; continuing on %s", version, self.current.version
            )
            tree = self.current  # and so from now on: no read, no thread, for its every step
        else:
            tree = tree_from_stored(stored.source, stored.file, stored.prompts, in_progress=True)
        self._keep(version, tree)
        return tree

    def set_current(self, tree: CompiledTree) -> None:
        """New calls get `tree`; calls in progress keep the version they started on."""
        with self._lock:
            self.current = tree
        self._keep(tree.version, tree)

    def _keep(self, version: str, tree: CompiledTree) -> None:
        with self._lock:
            self._versions[version] = tree
            self._versions.move_to_end(version)
            while len(self._versions) > self.keep:
                oldest = next(v for v in self._versions if v != self.current.version)
                del self._versions[oldest]


@dataclass(frozen=True)
class _Opening:
    """A case a step opens: its insert, or what it adds to the call's case in the same queue
    should one be open already (the hang-up's, when the input came after it)."""

    spec: engine.OpenCase
    insert: Insert
    flags: dict[str, str]
    uid: str | None

    def merge_into(self, existing: dict[str, Any]) -> Update:
        return cases.merge_into(existing, flags=self.flags, uid=self.uid)


class Hotline:
    def __init__(
        self,
        settings: Settings,
        tree: CompiledTree,
        db: Engine,
        *,
        identity: IdentityProvider,
        actions: AccountActions,
        twilio: TwilioRest | None = None,
        media: httpx.AsyncClient | None = None,
        clock: Clock = utcnow,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.trees = TreeRegistry(tree)
        self.db = db
        self.identity = identity
        self.actions = actions
        self._freezing = threading.Lock()
        self._freezing_cases: set[int] = set()  # the embedded SQLite's freezes being made
        # Freezes in this very database are written with the call's step, on the event loop
        # like it; any other account service is called once the step is stored, in a thread.
        self.local_actions = (
            actions if isinstance(actions, LocalAccountActions) and actions.db is db else None
        )
        self.twilio = twilio
        # Fetches recordings' audio from Twilio, with the account's credentials.
        self.media = media
        self.clock = clock
        self.links = engine.Links(settings.base_url)
        self.metrics = metrics or Metrics(
            db,
            clock=clock,
            at_work=self._at_work,
            held_after=timedelta(seconds=settings.offer_timeout_seconds),
        )
        # SQLite answers in microseconds from this process: webhooks run on the event loop.
        self.answers_on_the_loop = db.dialect.name == "sqlite"
        # Read from memory on the hot path; refreshed as often as the tree version is checked.
        self.current_announcement: announcements.Current | None = None
        # Who is answering, for the hold loop's estimate: refreshed with the announcement.
        self.staffing = cases.Staffing()
        self.staffing_at: datetime | None = None  # when `staffing` was last counted
        # The Twilio queues this instance has made to hold Twilio's most (`size_queues`).
        self.sized_queues: set[str] = set()
        # Until when this instance says no more of verification being over its shared budget.
        self.budget_warned_until: datetime | None = None
        # This process as the other instances see it (made at its first comparison), and the
        # settings they set otherwise.
        self.me: instances.Me | None = None
        self.disagreements: list[instances.Disagreement] = []

    # -- the call flow ---------------------------------------------------------------------------

    def start(self, caller: Caller) -> str:
        """A call comes in (or Twilio repeats that request): TwiML for its first node."""
        with self.db.connect() as conn:
            row = store.load_call(conn, call_sid=caller.call_sid)
            if row is not None:
                return row.last_twiml
            tree = self.trees.current
            now = self.clock()
            step = engine.begin(
                tree,
                links=self.links,
                step=1,
                now=now,
                ticket=cases.new_ticket(),
                announcement=self._announcement(now),
                caller=caller.from_number,
                called=caller.to_number,
            )
            state = step.state
            if caller.stir_verstat:  # a risk signal for the agent, never proof of identity
                state = state.model_copy(
                    update={"facts": {**state.facts, "stir_verstat": caller.stir_verstat}}
                )
            created = store.create_call(
                conn,
                call_sid=caller.call_sid,
                account_sid=caller.account_sid,
                from_number=caller.from_number,
                to_number=caller.to_number,
                tree_version=tree.version,
                step=1,
                state=state,
                twiml=step.twiml,
                log=step.log,
                now=now,
            )
            if created:
                return step.twiml
            return self._answer_again(conn, caller.call_sid)

    def advance(
        self,
        call_sid: str,
        step: int | None,
        event: engine.Input,
        *,
        may_block: bool = True,
        check_apart: bool = False,
        checked: tuple[Attempt, engine.Checked] | None = None,
    ) -> str:
        """An input for a call in progress, answering step `step` of it.

        `may_block=False` (on the event loop), or `check_apart`: a secret factor is counted,
        then Counted asks for this to be called again with `checked` (the check made
        elsewhere, holding no connection and no webhook thread meanwhile). `may_block=False`
        also raises WouldBlock (before anything is written) for work that must run in a
        thread: an outside service, or input after the hang-up."""
        if isinstance(event, engine.QueueExit) and event.result in DEQUEUED_ELSEWHERE:
            # Taken out of the queue by our own REST redirect: Twilio is already fetching
            # the agent's TwiML; this answer is not played. Nothing to advance.
            return str(VoiceResponse())
        if not may_block and isinstance(event, engine.QueueExit) and event.result == "leave":
            raise WouldBlock  # it writes twice (the case, then the step): in a thread
        with self.db.connect() as conn:
            if isinstance(event, engine.QueueExit) and event.result == "leave":
                # The hold loop said <Leave/> because an agent took the case (local mode). This
                # holds for a caller the fallback queued too, who has no call row.
                connect = self._connect_on_leave(conn, call_sid)
                if connect is not None:
                    row = store.load_call(conn, call_sid=call_sid)
                    if row is None or step != row.step:
                        return connect
                    return self._save(conn, row, row.state, connect, [], self.clock(), [])
            row = store.load_call(conn, call_sid=call_sid)
            if row is None or step != row.step:
                if checked is not None:  # counted for a step this request no longer moves
                    store.forget_failure(conn, failure_id=checked[0].failure_id)
                if row is None:
                    log.warning("input for unknown call %s: handing it to an agent", call_sid)
                    return self.fallback()
                # Twilio repeated an earlier request (or it came late): same answer, no count.
                return row.last_twiml
            if not may_block and not self.trees.has(row.tree_version):
                raise WouldBlock  # its tree is rebuilt from the stored text: not on the loop
            tree = self.trees.get(row.tree_version, self.db)
            now = self.clock()
            if not may_block and row.status in store.FINAL_STATUSES:
                raise WouldBlock  # input after the hang-up: rare, and it writes twice
            event, counted, also = self._resolve(
                conn, tree, row, event, now, may_block and not check_apart, checked
            )  # checks here only where it may block, unless asked to check apart
            return self._move(conn, tree, row, event, counted, now, may_block, also)

    def _move(
        self,
        conn: Connection,
        tree: CompiledTree,
        row: store.CallRow,
        event: engine.Input,
        counted: int | None,
        now: datetime,
        may_block: bool,
        also: list[Executable],
    ) -> str:
        """The engine's next step for `event`, stored if no copy of this request got there
        first; then what it asked for besides (a freeze, a case for a caller gone)."""
        call_sid = row.call_sid
        for _ in range(3):  # a new ticket number collides once in millions: draw again
            result = engine.advance(
                tree,
                row.state,
                event,
                links=self.links,
                step=row.step + 1,
                now=now,
                ticket=cases.new_ticket(),
                announcement=self._announcement(now),
            )
            if not may_block and self._calls_out(result.effects):
                raise WouldBlock  # a freeze by the exchange's account service
            # The final status callback came first (a Gather action or a <Dial> outcome
            # Twilio delivered after the hang-up): the caller is gone. What they asked for
            # still happens (a verified victim's freeze above all), but their case waits
            # for a call back instead of sending an agent to an empty line.
            gone = row.status in store.FINAL_STATUSES
            opens = [e for e in result.effects if isinstance(e, engine.OpenCase)]
            twiml = result.twiml
            if gone and opens:
                log.info("input for call %s after it ended: a case for a call back", call_sid)
                twiml = HANG_UP  # nobody is there to queue
            # A freeze in our own accounts table is written with the step, its case's note
            # and its audit record: one transaction, so a lock another process holds makes
            # the whole step give way (Busy) before anything is written, and a crash cannot
            # store the step without the freeze.
            frozen: dict[str, bool] = {}
            local = self._local_freezes(result.effects)
            # Built before the transaction: the risk signals may ask the identity directory.
            openings = self._openings(row, opens, now, gone=False)
            try:
                saved = store.save_step(
                    conn,
                    call_sid=row.call_sid,
                    expected_step=row.step,
                    state=result.state,
                    twiml=twiml,
                    log=result.log,
                    now=now,
                    also=also,
                    # A match, or no verdict at all, was no wrong guess: taken back. Nor is
                    # an attempt made while locked out, which was not checked: counted, the
                    # owner's own try would keep the lock on them (and anyone calling as
                    # them could keep it on for ever).
                    forget_failure=counted
                    if isinstance(event, engine.Checked)
                    and (event.ok or event.unavailable or event.locked)
                    else None,
                    then=partial(
                        self._with_step,
                        row=row,
                        opens=openings,
                        freezes=local,
                        now=now,
                        frozen=frozen,
                    )
                    if opens or local
                    else None,
                )
            except IntegrityError:
                log.warning("ticket number collision on %s; drawing another", call_sid)
                continue
            if saved is None:
                if counted is not None:
                    # A copy of this request won the step and counted its own failure.
                    store.forget_failure(conn, failure_id=counted)
                return self._answer_again(conn, call_sid)
            if isinstance(event, engine.TicketLookup) and event.locked:
                self.metrics.ticket_lookups_refused.inc()
            if isinstance(event, engine.NumberLookup):
                self.metrics.number_checks.labels(event.result).inc()
            if isinstance(event, engine.Checked):  # counted once: by the run that stored it
                if event.locked:
                    self.metrics.lockouts.inc()
                elif event.throttled:
                    self.metrics.verification_throttled.inc()
                elif event.unavailable:
                    self.metrics.identity_unavailable.inc()
                elif not event.ok:
                    self.metrics.verification_failures.inc()
            for done in frozen.values():
                self.metrics.freezes.labels("caller", "ok" if done else "failed").inc()
            # Only the request that won the step acts on the account: a duplicate
            # delivery of this webhook never freezes twice. The step is stored: from here
            # on nothing may give up on a lock and leave the freeze undone.
            if not local:
                with patient():
                    self._freeze(conn, row, result.effects, now)
            if saved in store.FINAL_STATUSES and not opens:
                # Their UID came after the hang-up, say, or the hang-up came while this step
                # was worked out: on the way to an emergency queue now, they get the case the
                # status callback could not open (it saw the step before). The step is
                # stored: a lock must be waited for here (even on the event loop, in this
                # rare race), or nobody would open the case.
                with patient():
                    self._hung_up_on_the_way(conn, row, result.state, now)
            return twiml
        raise RuntimeError("could not store the call step")

    def _save(
        self,
        conn: Connection,
        row: store.CallRow,
        state: engine.CallState,
        twiml: str,
        entries: list[engine.LogEntry],
        now: datetime,
        also: list[Executable],
    ) -> str:
        saved = store.save_step(
            conn,
            call_sid=row.call_sid,
            expected_step=row.step,
            state=state,
            twiml=twiml,
            log=entries,
            now=now,
            also=also,
        )
        return twiml if saved is not None else self._answer_again(conn, row.call_sid)

    def _answer_again(self, conn: Connection, call_sid: str) -> str:
        """A concurrent copy of this request won the write: send what it sent."""
        row = store.load_call(conn, call_sid=call_sid)
        return row.last_twiml if row is not None else self.fallback()

    def _resolve(
        self,
        conn: Connection,
        tree: CompiledTree,
        row: store.CallRow,
        event: engine.Input,
        now: datetime,
        check_here: bool,
        checked: tuple[Attempt, engine.Checked] | None,
    ) -> tuple[engine.Input, int | None, list[Executable]]:
        """Turn keyed digits the engine must not see into what they mean; with the attempt
        this counted, if it did (taken back if it matched, or should a copy of this request
        win the step, which counted its own), and what to write with the step. Not
        `check_here`: Counted, once counted."""
        awaiting = engine.awaiting(tree, row.state)
        if awaiting is None or not isinstance(event, engine.Keys):
            return event, None, []
        if awaiting == "ticket":
            lookup, miss = self._look_up_ticket(conn, row, event.digits, now)
            return lookup, None, miss
        if awaiting == "number":
            return self._read_number(tree, row, event), None, []
        node = tree.node(row.state.node)
        if isinstance(node, VerifyNode) and node.skips(event.digits):
            return event, None, []
        if not event.digits.isdigit():
            # `*` or `#` among them: no guess at any factor, and not checked. The engine
            # takes raw keys at a secret step as no match (this call's tries), and the
            # lockout, which counts guesses, does not count it.
            return event, None, []
        if checked is not None:
            attempt, verdict = checked
            return _with_signals(verdict, attempt), attempt.failure_id, []
        uid = row.state.facts.get("uid") or ""
        # Count the attempt before checking it: parallel calls guessing one account each see
        # the others' attempts, so the lockout cannot be outrun. A match takes it back.
        # PostgreSQL commits the count first (under READ COMMITTED a guess sees only the
        # committed counts of the others). SQLite writes one transaction at a time, so there
        # the count and the look-up are one: should the look-up meet another process's lock
        # (Busy: all of it runs again in a thread), the count goes back with it, not twice.
        # A withheld caller ID is nobody's number: counted per UID only, or one prankster
        # could lock every caller who withholds theirs out of verifying (the tree's own limit
        # of tries per call still holds, and a caller ID is spoofed at will anyway).
        number = None if withheld(row.from_number) else row.from_number
        # A call the carrier vouches for from the account's own number is the owner's (or a
        # SIM swapper's): checked against such calls' failures only, so that guesses from
        # spoofed or withheld numbers cannot lock the owner out of the self-freeze. Any other
        # call's failures count, across accounts, towards a budget against spraying.
        attested = number is not None and row.state.facts.get("stir_verstat") == FULL_ATTESTATION
        owner = attested and bool(uid) and self._registered(uid, number or "")
        together = store.writing(conn) if self.answers_on_the_loop else contextlib.nullcontext()
        with together:
            failure_id = store.record_failure(
                conn,
                uid=uid or None,
                caller=number,
                call_sid=row.call_sid,
                now=now,
                attested=attested,
            )
            found = self._lockout(
                conn,
                uid=uid or None,
                caller=number,
                now=now,
                exclude=failure_id,
                owner=owner,
                budget=not attested,
            )
        attempt = Attempt(
            failure_id,
            uid,
            awaiting,
            throttled=found.over_budget and not found.locked,
            guessed="/".join(map(str, found.guessed)) if found.guessed else None,
        )
        if attempt.throttled:
            self._over_budget(now)
        if not check_here:
            raise Counted(attempt, locked=found.locked)
        if found.locked:
            return _with_signals(engine.Checked(ok=False, locked=True), attempt), failure_id, []
        # A match is taken back with the step it moves.
        return _with_signals(self.check(attempt, event.digits), attempt), failure_id, []

    def _registered(self, uid: str, number: str) -> bool:
        """Whether `number` is the account's registered phone number. Not known (the
        directory failing): no count of its own, the lockout as for any other call."""
        try:
            registered = self.identity.registered_phone(uid=uid)
        except Exception:
            log.exception("could not read an account's registered number for the lockout")
            return False
        return bool(registered) and _same_number(registered or "", number)

    def _lockout(
        self,
        conn: Connection,
        *,
        uid: str | None,
        caller: str | None,
        now: datetime,
        exclude: int | None = None,
        owner: bool = False,
        budget: bool = False,
    ) -> store.Lockout:
        s = self.settings
        return store.lockout(
            conn,
            uid=uid,
            caller=caller,
            now=now,
            failures=s.lockout_failures,
            window=timedelta(seconds=s.lockout_window_seconds),
            duration=timedelta(seconds=s.lockout_seconds),
            exclude=exclude,
            owner=owner,
            budget=store.Budget(
                s.unattested_failures, timedelta(seconds=s.unattested_window_seconds)
            )
            if budget
            else None,
        )

    def _over_budget(self, now: datetime) -> None:
        """Tell the operators, once a window per instance, that secrets from withheld or
        unattested calls are not being checked (each such attempt is counted in a metric)."""
        if self.budget_warned_until is not None and now < self.budget_warned_until:
            return
        window = self.settings.unattested_window_seconds
        self.budget_warned_until = now + timedelta(seconds=window)
        log.warning(
            "verification from withheld or unattested calls failed %d times within %d s "
            "across accounts (password spraying?): their secrets are not checked; they reach "
            "an agent unverified",
            self.settings.unattested_failures,
            window,
        )

    def _look_up_ticket(
        self, conn: Connection, row: store.CallRow, digits: str, now: datetime
    ) -> tuple[engine.TicketLookup, list[Executable]]:
        """The case a keyed ticket number names; with a miss, its count, to be written with
        the step (so it counts once, whether Twilio repeats the request or the step gives way
        to a lock and runs again).

        A ticket number is a weak secret (7 digits, thousands of cases open on a bad day)
        and a found one puts the caller back in line, linked to that case, for an agent to
        talk to. A calling number that keeps missing is locked out of lookups by the rule of
        verification (`IVR_LOCKOUT_*`), counted apart from its verification failures. Its
        caller still reaches an agent, by the node's `on_not_found`. (Guesses from one number
        in parallel calls may pass the limit by a few: the count is checked before this one
        is stored. A caller ID can be spoofed, too: this slows harvesting, it cannot stop it.)

        Locked, a number still finds an open case of its own: one opened for a call from it.
        Misses spoofed as a victim's number would otherwise send the victim following up
        their emergency to the general line; guessing the tickets of one number's own cases
        harvests nothing."""
        bucket = store.ticket_misses(row.from_number) if row.from_number else None
        if bucket and self._lockout(conn, uid=None, caller=bucket, now=now).locked:
            own = (
                cases.find_ticket(conn, ticket=digits, caller=row.from_number)
                if digits.isdigit() and not withheld(row.from_number)
                else None
            )
            if own is not None and own.status != "resolved":
                return engine.TicketLookup(own), []
            log.warning("ticket lookup refused for call %s: its number is locked", row.call_sid)
            return engine.TicketLookup(None, locked=True), []
        found = cases.find_ticket(conn, ticket=digits) if digits.isdigit() else None
        if found is not None or not bucket or not digits:
            return engine.TicketLookup(found), []
        miss = store.failure_insert(uid=None, caller=bucket, call_sid=row.call_sid, now=now)
        return engine.TicketLookup(None), [miss]

    def _read_number(
        self, tree: CompiledTree, row: store.CallRow, event: engine.Keys
    ) -> engine.Input:
        """A number keyed at a number_check node: whether any reading of it is one the
        exchange calls or texts from (the tree's official_numbers, and IVR_CALLER_ID, which
        call backs and ticket texts come from). * or 0 alone, or nothing, is no number."""
        if event.digits in ("", "*", "0"):
            return event
        ours = set(tree.tree.official_numbers)
        if self.settings.caller_id:
            ours.add(self.settings.caller_id)
        found = readings(event.digits, row.from_number)
        official = [n for n in found if n in ours]
        if official:
            return engine.NumberLookup(official[0], official=True)
        # Not ours: only a phone number is said back and kept with the case. A short string
        # of digits that is none of our short codes may be a PIN keyed at the wrong prompt:
        # the caller is told it is not ours, and nothing of it is said back or kept.
        phones = [n for n in found if n.startswith("+")]
        if phones:
            return engine.NumberLookup(phones[0])
        return engine.NumberLookup(None, short=bool(found))

    def check(self, attempt: Attempt, digits: str) -> engine.Checked:
        """Whether `digits` are the factor `attempt` counted, or that nobody can tell now (the
        identity service gave no verdict). Slow on purpose (a password hash, or the
        exchange's identity service): never on the event loop. Not checked at all when
        calls like this one are over their budget of failures (`Attempt.throttled`)."""
        if attempt.throttled:
            return engine.Checked(ok=False, unavailable=True, throttled=True)
        try:
            ok = bool(attempt.uid) and self.identity.check(
                uid=attempt.uid, factor=attempt.factor, digits=digits, now=self.clock()
            )
            # The factor's name only: which one matched, for the agent to weigh.
            return engine.Checked(
                ok=ok, factor=keyed_factor(attempt.factor, digits) if ok else None
            )
        except IdentityUnavailable:
            pass
        except Exception:
            # The directory's database failed, say: no verdict either, and no count towards
            # a lockout. The traceback holds no digits (they are no SQL parameter, and SQL
            # parameters are hidden anyway).
            log.exception("a %s check failed; taken as no verdict", attempt.factor)
        return engine.Checked(ok=False, unavailable=True)

    def _calls_out(self, effects: list[engine.Effect]) -> bool:
        """Effects that call the exchange's account service (a freeze, unless local)."""
        return self.local_actions is None and any(isinstance(e, engine.Freeze) for e in effects)

    def _openings(
        self, row: store.CallRow, specs: Sequence[engine.OpenCase], now: datetime, *, gone: bool
    ) -> list[_Opening]:
        """The cases the engine opened, to be written with the step."""
        openings = []
        for spec in specs:
            uid = spec.flags.get("uid")
            risk = self._risk(row, uid)
            insert_case = cases.open_case(
                spec,
                call_sid=row.call_sid,
                caller=row.from_number,
                risk=risk,
                now=now,
                gone=gone,
                language=row.state.lang,
                text_ticket=self._texts_to(row.from_number),
            )
            # On a case opened already, a signal not known now must not hide one known then.
            known = {k: v for k, v in risk.items() if v not in ("", "unknown")}
            openings.append(_Opening(spec, insert_case, {**spec.flags, **known}, uid))
        return openings

    def _with_step(
        self,
        conn: Connection,
        status: str,
        *,
        row: store.CallRow,
        opens: list[_Opening],
        freezes: list[engine.Freeze],
        now: datetime,
        frozen: dict[str, bool],
    ) -> None:
        """Inside the step's transaction, once the call's row is updated: the cases the step
        opened, then the freezes (whose notes go on those cases)."""
        if opens:
            self._open_with_step(conn, row, opens, status, now)
        if freezes:
            self._freeze_with_step(conn, row=row, freezes=freezes, now=now, frozen=frozen)

    def _open_with_step(
        self,
        conn: Connection,
        row: store.CallRow,
        opens: list[_Opening],
        status: str,
        now: datetime,
    ) -> None:
        """The step's cases. `status` is the call's as the step's update stored it (on
        PostgreSQL the row is locked by that update until this commits): a final status
        callback that came since the call was read has finished (its waiting cases abandoned:
        this one would be missed), or waits for this to commit (and abandons it then). A
        caller gone gets a case for a call back; where the hang-up opened one in that queue
        already, it gains what the input added (verified, say) instead of a second one."""
        if status not in store.FINAL_STATUSES:
            for opening in opens:
                conn.execute(opening.insert)
                cases.on_the_line_again(conn, call_sid=row.call_sid, queue=opening.spec.queue)
            return
        for opening in opens:
            existing = cases.case_in_queue(conn, call_sid=row.call_sid, queue=opening.spec.queue)
            if existing is None:
                conn.execute(opening.insert.values(status="abandoned", ended_at=now))
            else:
                conn.execute(opening.merge_into(existing))

    def _local_freezes(self, effects: list[engine.Effect]) -> list[engine.Freeze]:
        """The freezes to write with the step: those of accounts in this very database."""
        if self.local_actions is None:
            return []
        return [e for e in effects if isinstance(e, engine.Freeze)]

    def _freeze_with_step(
        self,
        conn: Connection,
        row: store.CallRow,
        freezes: list[engine.Freeze],
        now: datetime,
        frozen: dict[str, bool],
    ) -> None:
        """Inside the step's transaction: each freeze, its note and audit; `frozen` says how
        each went, for the metrics once the step is stored. A freeze that fails (a lock on
        the account row that does not come, say) is rolled back alone, to a savepoint: the
        step and the victim's emergency case are stored all the same, the case flagged for
        the agent to freeze by hand."""
        actions = self.local_actions
        assert actions is not None  # see _local_freezes
        for effect in freezes:
            try:
                with conn.begin_nested():
                    done = actions.freeze_in(conn, uid=effect.uid, now=now)
            except (SQLAlchemyError, NoSuchAccount):  # the row gone since the check: failed
                log.exception("self-freeze failed for a verified caller")
                done = False
            self._note_freeze(conn, row, effect.uid, done, now)
            frozen[effect.uid] = done

    def _freeze(
        self, conn: Connection, row: store.CallRow, effects: list[engine.Effect], now: datetime
    ) -> None:
        """A verified caller's self-freeze by the exchange's account service, once the step is
        stored; audited and noted on their case for the agent."""
        for effect in effects:
            if not isinstance(effect, engine.Freeze):
                continue
            try:
                done = self.actions.freeze(uid=effect.uid, now=now)
            except Exception:  # the account service failed: the agent will freeze by hand
                log.exception("self-freeze failed for a verified caller")
                done = False
            self.metrics.freezes.labels("caller", "ok" if done else "failed").inc()
            with store.writing(conn):  # the note for the agent and the audit record, together
                self._note_freeze(conn, row, effect.uid, done, now)

    @staticmethod
    def _note_freeze(
        conn: Connection, row: store.CallRow, uid: str, done: bool, now: datetime
    ) -> None:
        """The freeze noted on the call's case for the agent, and its audit record."""
        case_id = cases.note_on_latest_case(
            conn, call_sid=row.call_sid, flags={"self_freeze": "done" if done else "failed"}
        )
        cases.audit(
            conn,
            actor=f"caller:{row.call_sid}",
            action="self_freeze",
            uid=uid,
            case_id=case_id,
            reason="verified caller on the emergency path",
            result="ok" if done else "failed",
            now=now,
        )

    def _risk(self, row: store.CallRow, uid: str | None) -> dict[str, str]:
        """Signals for the agent; none of them verifies anyone."""
        risk = {"stir_verstat": row.state.facts.get("stir_verstat", "")}
        if withheld(row.from_number):
            risk["caller_id_match"] = "withheld"
            return risk
        registered = self.identity.registered_phone(uid=uid) if uid else None
        if registered and row.from_number:
            risk["caller_id_match"] = "yes" if _same_number(registered, row.from_number) else "no"
        else:
            risk["caller_id_match"] = "unknown"
        return risk

    # -- the hold loop and call-backs ------------------------------------------------------

    def hold(
        self,
        call_sid: str,
        language: str,
        queue_time: int,
        queue: str | None = None,
        caller: str | None = None,
    ) -> str:
        """The queue's hold loop: our place in line, a tip, the call-back offer, music."""
        catalogs = self.trees.current.catalogs
        lang = catalogs.spoken(language)
        try:
            with self.db.connect() as conn:
                view = cases.case_for_call(conn, call_sid=call_sid, now=self.clock())
                if view is None or view.row["status"] == "resolved":
                    # Queued with no case (the fallback answered this call), or with one
                    # closed while they were on their way to an agent: open one now, or no
                    # agent would ever take this caller.
                    parent = view.row["ticket"] if view else None
                    self._open_orphan_case(conn, call_sid, queue, caller, parent)
                    view = cases.case_for_call(conn, call_sid=call_sid, now=self.clock())
        except Busy:
            raise  # on the event loop: the caller runs it again in a thread
        except Exception:
            # The database is down: keep holding from memory (a waitUrl may not <Enqueue>).
            log.exception("hold loop without the database for %s", call_sid)
            view = None
        if view is None:
            return self.hold_from_memory(lang)
        if view.row["language"]:
            # The caller's own choice, kept with their case: the URL's may be the fallback's
            # guess from their number (a caller from +1 who chose Mandarin).
            lang = catalogs.spoken(view.row["language"])
        if cases.transfer_asked(view.row) is not None:
            # Holding, so out of the agent's call: the webhook that was to send them on
            # failed (the fallback queued them). Sent on now, or the case stays the agent's.
            with self.db.connect() as conn:
                with store.writing(conn):
                    for statement in cases.transferred(view.row, now=self.clock()):
                        conn.execute(statement)
                view = cases.case_for_call(conn, call_sid=call_sid, now=self.clock())
            if view is None:
                return self.hold_from_memory(lang)
        if view.row["status"] == "offered" and (
            self.twilio is None or view.row["offer"] == cases.OFFER_HOLD_LOOP
        ):
            return engine.leave_twiml()  # an agent took it: out of the queue, to the agent
        # Nobody at work (as counted lately): no minutes said, which nothing would keep.
        nobody = self.staffing_at is not None and self.staffing.agents == 0
        wait = None
        if not nobody:
            wait = self.staffing.wait_seconds(
                view.position or 1, default_handle=self.settings.avg_handle_seconds
            )
        now = self.clock()
        # A caller who withheld their number keys the one to call back on, where the
        # catalogs can ask for it; not offered otherwise: nobody to call.
        callable_ = view.row["status"] == "waiting" and (
            dialable(caller or view.row["caller"]) or self._asks_for_numbers(catalogs)
        )
        offer = self.links.callback_request(lang) if callable_ else None
        return engine.hold_twiml(
            catalogs,
            lang,
            self.settings.hold_music_url_str,
            news=self._freeze_news(catalogs, view.row, queue_time),
            position=view.position,
            wait_minutes=None if wait is None else engine.minutes_said(wait),
            tip=queue_time // 30,
            callback_url=offer,
            # Waited too long already, or would, or nobody is at work: told before anything
            # else, not after a quarter of an hour, that they need not wait. Not a victim in
            # the emergency lane, whom the on-call are paged for: staying on the line is how
            # they are helped soonest, and 1 is the key they have pressed all along.
            offer_first=view.row["priority"] != "emergency"
            and (nobody or max(queue_time, wait or 0) >= self.settings.max_wait_seconds),
            # Holding already when a supervisor announced the incident: told too.
            announcement=announcements.for_holding(
                self.current_announcement,
                language=lang,
                now=now,
                # Twilio's QueueTime starts again at a new <Enqueue> (a transfer, a move):
                # the case says when they first joined the line, past the menus that say it.
                joined=min(now - timedelta(seconds=max(queue_time, 0)), view.row["created_at"]),
                within=timedelta(seconds=self.settings.announce_on_hold_seconds),
            ),
        )

    @staticmethod
    def _freeze_news(catalogs: Catalogs, case: dict[str, Any], queue_time: int) -> str | None:
        """A verified victim was told their account is being frozen as they joined the line;
        the freeze failed (the account service, a lock): at the first hold round they hear
        it is not frozen yet, and what to do meanwhile. The agent's case says it too."""
        if queue_time >= FIRST_ROUND or (case["flags"] or {}).get("self_freeze") != "failed":
            return None
        for key in (engine.FREEZE_FAILED_PROMPT, "account_not_frozen"):
            if catalogs.has(key, BASE_LANGUAGE):
                return key
        return None

    def _open_orphan_case(
        self,
        conn: Connection,
        call_sid: str,
        queue: str | None,
        caller: str | None,
        parent: str | None = None,
    ) -> None:
        row = store.load_call(conn, call_sid=call_sid)
        facts = row.state.facts if row else {}
        hijack = facts.get("priority") == "emergency" or facts.get("topic") == "account_hijack"
        spec = engine.OpenCase(
            ticket=cases.new_ticket(),
            queue=queue or self.settings.fallback_queue,
            priority="emergency" if hijack else "high",  # it already went wrong for them once
            reason=facts.get("topic") or "fallback",
            flags={k: facts[k] for k in ("verified", "factors", "uid") if k in facts},
            path=list(row.state.trail) if row else [],
            parent_ticket=parent,
        )
        with store.writing(conn):
            conn.execute(
                cases.open_case(
                    spec,
                    call_sid=call_sid,
                    caller=row.from_number if row else caller,
                    risk={"opened_by": "hold_loop"},
                    now=self.clock(),
                    language=row.state.lang if row else None,
                    text_ticket=self._texts_to(row.from_number if row else caller),
                )
            )

    def _texts_to(self, number: str | None) -> bool:
        """Whether a case opened for a call from `number` gets its ticket texted: with
        IVR_TEXT_TICKETS, to a number that can take one, in IVR_CALLBACK_PREFIXES if set."""
        return (
            self.settings.text_tickets
            and dialable(number)
            and within(str(number), self.settings.callback_prefixes)
        )

    def text_tickets(self) -> int:
        """Text the tickets of the cases opened since the last look to their callers, in
        their language: the reference callers are told to keep. One read while none is due.
        Each case is taken in one statement (`cases.take_tickets_to_text`: another instance
        takes the next), until none is left or IVR_TREE_SYNC has passed. Once per call, and
        once per number every TEXT_SPACING (a spoofed number texted on every call is how
        SMS pumping and harassment work): the others are `skipped`. None later than
        TEXT_AT_MOST after the case opened (`stale`: no help by then). A text Twilio refuses
        for good (4xx: a landline, a number it will not text) is `failed`; Twilio failing
        (5xx, 429, unreachable), or the database failing, puts the case back for the next
        round and raises, for the job's outage log. How many texts Twilio took."""
        now = self.clock()
        with self.db.connect() as conn:
            if not cases.tickets_to_text(conn, limit=1):
                return 0
        catalogs = self.trees.current.catalogs
        if not catalogs.has(TICKET_TEXT, BASE_LANGUAGE):
            # A tree made live by an instance that does not text (older code, the setting
            # off there): nothing to say. Left due until a tree that can say it is live.
            log.error("the live call tree's catalogs have no '%s': no ticket texted", TICKET_TEXT)
            return 0
        sent = 0
        waiting: list[int] = []  # put back this round, behind a caller's earlier case
        until = time.monotonic() + max(1.0, self.settings.tree_sync_seconds)
        while time.monotonic() < until:
            # One at a time: an instance that stops while texting leaves one case `sending`
            # (whether it went nobody knows, and it is not sent twice), not a batch of them.
            with self.db.connect() as conn:
                taken = cases.take_tickets_to_text(conn, limit=1, passing=waiting)
            if not taken:
                break
            [case] = taken
            try:
                result = self._ticket_text(case, catalogs, now)
            except SentOrNot as unknown:
                # Left `sending`, as a text an instance stopped in the middle of is: whether
                # it went nobody knows, and it is not sent twice.
                log.warning("the ticket text of case %s may not have gone: %s", case["id"], unknown)
                self.metrics.ticket_texts.labels("unknown").inc()
                continue
            except BaseException:
                # Not sent (Twilio failing, the database failing meanwhile): due again, for
                # the next round; the job's outage log says why.
                with self.db.connect() as conn:
                    cases.put_back_ticket_texts(conn, case_ids=[case["id"]])
                raise
            if result is None:
                # An earlier case of the caller's is due still, taken by nobody just now (a
                # webhook was writing it): that one is texted first, and this one then
                # skipped, on a later round; the other callers' go on meanwhile.
                with self.db.connect() as conn:
                    cases.put_back_ticket_texts(conn, case_ids=[case["id"]])
                waiting.append(case["id"])
                continue
            with self.db.connect() as conn:
                cases.ticket_texted(conn, case_id=case["id"], result=result)
            self.metrics.ticket_texts.labels(result).inc()
            sent += result == "sent"
        return sent

    def _ticket_text(
        self, case: dict[str, Any], catalogs: Catalogs, now: datetime
    ) -> cases.TextResult | None:
        """Text the case's ticket: what became of it, or None to wait for the texting of an
        earlier case of the caller's."""
        if now - case["created_at"] > TEXT_AT_MOST:
            return "stale"
        if not self._texts_to(case["caller"]):
            # Due before IVR_CALLBACK_PREFIXES was narrowed (SMS pumping to a country seen),
            # or marked due by an instance with other settings: not texted after all.
            return "skipped"
        with self.db.connect() as conn:
            lately = cases.texted_lately(conn, case=case, since=now - TEXT_SPACING)
        if lately == "due":
            return None
        if lately == "texted":
            return "skipped"
        body = catalogs.render(
            TICKET_TEXT, case["language"] or BASE_LANGUAGE, ticket=case["ticket"]
        ).text
        if not body:  # an audio prompt with no words
            return "failed"
        try:
            self._rest().messages.create(
                to=case["caller"], from_=self.settings.caller_id, body=body
            )
        except TwilioRestException as exc:
            if exc.status >= 500 and exc.status != 503:
                raise SentOrNot(f"Twilio answered {exc.status} to a text") from exc
            if exc.code in RECIPIENT_REFUSED:
                # This number (a landline, STOP, our own number spoofed): for good, and the
                # round goes on with the next caller's.
                log.warning(
                    "Twilio refused to text the ticket of case %s (%s)", case["id"], exc.code
                )
                return "failed"
            # Twilio took nothing (throttled, down), or refuses us (credentials being
            # rotated, the caller ID's settings, an error not known to be the number's):
            # every text would fail alike; again at the next round, until stale.
            raise TwilioFailing(f"Twilio answered {exc.status} ({exc.code}) to a text") from exc
        except Exception as exc:
            if never_sent(exc):
                raise TwilioFailing(f"no text sent ({type(exc).__name__})") from exc
            raise SentOrNot(f"no answer to a text ({type(exc).__name__})") from exc
        return "sent"

    def request_callback(
        self,
        call_sid: str,
        digits: str,
        language: str,
        number: str | None,
        *,
        confirmed: bool = False,
    ) -> str:
        """1 pressed while holding: asked to press CALLBACK_CONFIRM_KEY for the call back to
        their number (`confirmed`: the answer to that, where the catalogs can ask), then the
        call back is theirs; a caller who withheld their number keys the one to call.
        Anything else: holding on."""
        catalogs = self.trees.current.catalogs
        lang = catalogs.spoken(language)
        with self.db.connect() as conn:
            view = cases.case_for_call(conn, call_sid=call_sid, now=self.clock())
            waiting = view is not None and view.row["status"] == "waiting"
            if (
                digits == "1"
                and waiting
                and not confirmed
                and dialable(number)
                and catalogs.has(CALLBACK_CONFIRM_PROMPT, lang)
            ):
                action = self.links.callback_request(lang, confirming=True)
                return engine.callback_confirm_twiml(
                    catalogs, lang, action=action, last4=last4(number)
                )
            # Withheld: the number to call back on, keyed (`callback_number`).
            if (
                digits == "1"
                and waiting
                and not dialable(number)
                and self._asks_for_numbers(catalogs)
            ):
                action = self.links.callback_number(lang)
                return engine.callback_number_twiml(catalogs, lang, action=action)
            # The key its words asked for: 2, or 1 in a catalog of a version rolled back to.
            wanted = callback_confirm_key(catalogs, lang) if confirmed else "1"
            asked = (
                digits == wanted
                and view is not None
                and dialable(number)  # withheld: nobody to call
                and cases.request_callback(conn, call_sid=call_sid, number=number, now=self.clock())
            )
            if digits == wanted and not asked:
                # Twilio delivered this twice (one after the other, or both at once): the
                # same answer as the first got.
                view = self._called_back_on(conn, call_sid, number)
                asked = view is not None
        if not asked or view is None:
            return self.hold(call_sid, language, 0)
        return engine.callback_confirmed_twiml(
            catalogs, lang, last4=last4(number), ticket=view.row["ticket"]
        )

    def callback_number(self, call_sid: str, digits: str, language: str, tries: int = 1) -> str:
        """A caller who withheld their number keyed the one to call them back on (`tries`:
        this is their how-manieth): their case waits for a call back to it, flagged as keyed
        (an agent knows nobody vouched for it). Not a number we can call: asked again, up to
        KEYED_TRIES in all, then back to holding (as silence is)."""
        catalogs = self.trees.current.catalogs
        lang = catalogs.spoken(language)
        home = self.trees.current.home_country(lang)
        number = keyed(digits, self.settings.callback_prefixes, home)
        if number is None:
            if tries >= KEYED_TRIES:
                return self.hold(call_sid, language, 0)
            action = self.links.callback_number(lang, tries + 1)
            return engine.callback_number_twiml(catalogs, lang, action=action, again=True)
        with self.db.connect() as conn:
            view = cases.case_for_call(conn, call_sid=call_sid, now=self.clock())
            # Both, or neither: run again (in a thread), it would not find the case waiting.
            with store.writing(conn):
                asked = view is not None and cases.request_callback(
                    conn, call_sid=call_sid, number=number, now=self.clock()
                )
                if view is not None and asked:
                    flags = {"callback_keyed": "yes"}
                    cases.add_flags(conn, case_id=view.row["id"], flags=flags)
            if not asked:
                # Twilio delivered this twice (one after the other, or both at once): the
                # same answer as the first got.
                view = self._called_back_on(conn, call_sid, number)
        if view is None:
            return self.hold(call_sid, language, 0)  # taken meanwhile, say
        return engine.callback_confirmed_twiml(
            catalogs, lang, last4=last4(number), ticket=view.row["ticket"]
        )

    def _called_back_on(
        self, conn: Connection, call_sid: str, number: str | None
    ) -> cases.CaseView | None:
        """The call's case, if it waits for a call back to `number` already."""
        view = cases.case_for_call(conn, call_sid=call_sid, now=self.clock())
        if view is None or view.row["status"] != "callback_requested":
            return None
        return view if view.row["callback_number"] == number else None

    @staticmethod
    def _asks_for_numbers(catalogs: Catalogs) -> bool:
        """The catalogs can ask a caller who withheld their number for one to call back on
        (catalogs from before they could still serve, without the offer)."""
        return all(
            catalogs.has(key, BASE_LANGUAGE)
            for key in (engine.CALLBACK_ENTER_NUMBER, "callback_number_invalid")
        )

    def _connect_on_leave(self, conn: Connection, call_sid: str) -> str | None:
        """Local mode: the hold loop sent <Leave/> because an agent took the case."""
        view = cases.case_for_call(conn, call_sid=call_sid, now=self.clock())
        if view is None or view.row["status"] != "offered":
            return None
        return self.connect(view.row["id"], caller=view.row["caller"])

    def connect(
        self,
        case_id: int,
        *,
        outbound: bool = False,
        call_sid: str = "",
        placing: str | None = None,
        answered_by: str = "",
        caller: str | None = None,
        called: str | None = None,
    ) -> str:
        """TwiML bridging the case's caller to the agent who took it. If the offer ended on
        the way (given back, taken back, timed out), a waiting caller goes back to their
        place in the queue instead of to an agent who no longer has their case; a customer
        answering a call back (`outbound`, the call `call_sid`) that is no longer the offer's
        is told so, and called again later. A call back a machine answered (Twilio's
        `answered_by`) is no call back made: a short message, and tried again later, as if
        nobody had answered; the agent is not rung for a voicemail. `caller`, `called`: the
        From and To of the call Twilio asks for (the agent's phone shows the caller, or, for
        one who hid their number, ours)."""
        now = self.clock()
        with self.db.connect() as conn:
            case = cases.get_case(conn, case_id=case_id)
            if case is None:
                return self.fallback()
            if outbound and answered_by.startswith(MACHINE_ANSWERS):
                retry = timedelta(seconds=self.settings.callback_retry_seconds)
                cases.callback_missed(
                    conn, case_id=case_id, call_sid=call_sid, now=now, retry=retry, placing=placing
                )
                log.info("case %s: a machine answered its call back; tried again later", case_id)
                catalogs = self.trees.current.catalogs
                left = CALL_BACK_VOICEMAIL
                return self._to_customer(
                    case,
                    left if catalogs.has(left, BASE_LANGUAGE) else "callback_agent_unavailable",
                )
            agent_id = case["agent_id"]
            placed = call_sid if outbound else None
            ours = agent_id is not None and cases.connect_offer(
                conn, case_id=case_id, agent_id=agent_id, now=now, placed=placed, placing=placing
            )
            if agent_id is not None and not ours:  # or connected already: Twilio asked again
                again = cases.get_case(conn, case_id=case_id)
                ours = (
                    again is not None
                    and (again["status"], again["agent_id"]) == ("connected", agent_id)
                    and (placed is None or cases.placed_by(again["offer"], placed, placing))
                )
            call = store.load_call(conn, call_sid=case["call_sid"])
            agent = None
            if ours:
                with conn.begin():
                    agent = conn.execute(select(users).where(users.c.id == agent_id)).first()
        # A carrier may refuse a call showing "anonymous" (Twilio reports the dial failed),
        # and the agent would be set away for a call that never rang: ours is shown instead.
        caller_id = None
        if not outbound and not dialable(caller):
            caller_id = self.settings.caller_id or (called if dialable(called) else None)
        language = call.state.lang if call else "en"
        if not ours:
            log.warning("case %s: its offer ended before its caller reached the agent", case_id)
            if outbound:
                catalogs = self.trees.current.catalogs
                return engine.hangup_twiml(catalogs, language, "callback_agent_unavailable")
            if call is None or "queue" not in call.state.facts:
                return self.fallback()
            return self.advance(call.call_sid, call.step, engine.QueueExit(AGENT_NO_ANSWER))
        screen = None
        if self.settings.agent_screening and agent_id is not None:
            screen = self.links.agent_accept(case_id, agent=agent_id)
        return engine.connect_twiml(
            self.trees.current.catalogs,
            language,
            agent_phone=agent.phone if agent else None,
            agent_name=agent.name if agent else "agent",
            action=self.links.connect_done(
                case_id, outbound=outbound, agent=agent_id, placing=placing if outbound else None
            ),
            greeting="callback_greeting" if outbound else "connecting_agent",
            ticket=case["ticket"],
            screen=screen,
            caller_id=caller_id,
            # Told first, or not recorded (a tree refused that could not tell them, but a
            # version another instance made live before this one's settings changed might).
            recording=self.links.recording(case_id)
            if self.settings.record_agent_calls
            and self.trees.current.catalogs.has(RECORDING_NOTICE, BASE_LANGUAGE)
            else None,
        )

    def recorded(
        self,
        case_id: int,
        *,
        recording_sid: str,
        call_sid: str,
        status: str,
        url: str | None,
        seconds: int | None,
    ) -> recordings.Kept:
        """Twilio reports a recording of the case's call with its agent: kept (where, how
        long), once however often it is reported."""
        with self.db.connect() as conn:
            return recordings.add(
                conn,
                case_id=case_id,
                recording_sid=recording_sid,
                call_sid=call_sid,
                status=status,
                url=url,
                seconds=seconds,
                now=self.clock(),
            )

    def agent_accept(self, case_id: int, agent_id: int, digits: str) -> str:
        """The agent's phone answered a screened call: first the case and a key to take it;
        the key pressed, the caller is put through if they are still this agent's. Anything
        else (a voicemail, another key, the case gone meanwhile) ends the agent's leg, and
        the Dial's report puts the caller back in their place (`connect_done`)."""
        with self.db.connect() as conn:
            case = cases.get_case(conn, case_id=case_id)
            if case is None or case["agent_id"] != agent_id or case["status"] != "connected":
                return engine.not_taken_twiml()
            if digits == "":
                return engine.accept_twiml(
                    self.trees.current.catalogs,
                    ticket=case["ticket"],
                    priority=case["priority"],
                    action=self.links.agent_accept(case_id, agent=agent_id),
                    language=case["language"],
                )
            if digits == engine.ACCEPT_KEY and cases.agent_accepted(
                conn, case_id=case_id, agent_id=agent_id, now=self.clock()
            ):
                return engine.accepted_twiml()
        return engine.not_taken_twiml()

    def connect_done(
        self,
        case_id: int,
        dial_status: str,
        *,
        outbound: bool = False,
        agent_id: int | None = None,
        caller_gone: bool = False,
        call_sid: str = "",
        placing: str | None = None,
        talked: int | None = None,
    ) -> str:
        """The agent leg ended (`agent_id`'s phone; None from a link made before it was named).
        Answered: the case is the agent's to resolve. Nobody answered: the case goes back to
        its place, the caller too; a customer we called back is told we will call again, and
        let go; the agent missed it, and is set away. A late or repeated report changes
        nothing the next agent has. `caller_gone`: the caller's own call had ended (Twilio's
        CallStatus), so nobody missed anything: their hang-up is what ended the ringing.
        A call back's (`outbound`: the customer's call `call_sid`, placed as `placing`): one
        its agent sent on is another team's now, and one of an earlier placement changes
        nothing a later one has. `talked`: seconds the agent's phone was answered (Twilio's
        DialCallDuration), which dates their answer for the figures."""
        with self.db.connect() as conn:
            case = cases.get_case(conn, case_id=case_id)
        if case is None:
            return self.fallback()
        if outbound:
            if call_sid and not cases.same_call_back(case["offer"], call_sid, placing):
                # An earlier call back's leg: the one Twilio places now is not touched.
                return self._to_customer(case, "callback_agent_unavailable")
            if case["agent_id"] == agent_id and cases.transfer_asked(case):
                # The agent sent the case on while they talked: made now, the customer told.
                return self.transferred(
                    case_id, caller_gone=caller_gone, call_sid=call_sid, talked=talked
                )
            if cases.transferred_away(case, agent_id):
                # Sent on already (the call redirected, the case made): that team calls.
                return self._to_customer(case, engine.CALL_BACK_SENT_ON_PROMPT)
            if call_sid:
                # The customer's call ends with this: sent on from now, it goes at once.
                with self.db.connect() as conn:
                    ended = cases.call_back_ended(conn, case_id=case_id, call_sid=call_sid)
                if ended == "asked":  # just now
                    return self.transferred(
                        case_id, caller_gone=caller_gone, call_sid=call_sid, talked=talked
                    )
        if not outbound and agent_id is not None:
            if case["agent_id"] == agent_id and cases.transfer_asked(case):
                # The agent sent the caller on and hung up (or Twilio's redirect cut the
                # leg, and this came first): where they were sent.
                return self.transferred(case_id, caller_gone=caller_gone, talked=talked)
            if cases.transferred_away(case, agent_id):
                # The leg a transfer cut: Twilio plays none of this, the caller is on their
                # way already. What it says still dates the agent's answer, in the talk kept.
                with self.db.connect() as conn:
                    if talked is not None:
                        cases.date_last_leg(
                            conn,
                            case=case,
                            agent_id=agent_id,
                            answered=self.clock() - timedelta(seconds=talked),
                        )
                    sent = store.load_call(conn, call_sid=case["call_sid"])
                return sent.last_twiml if sent is not None else HANG_UP
        with self.db.connect() as conn:
            row = store.load_call(conn, call_sid=case["call_sid"])
        catalogs = self.trees.current.catalogs
        lang = row.state.lang if row else "en"
        screened_out = (
            self.settings.agent_screening
            and agent_id is not None
            and dial_status in ("completed", "answered")
            and not (case["agent_id"] == agent_id and case["offer"] == cases.OFFER_ANSWERED)
        )
        if screened_out:
            # The agent's phone answered, but nobody took the call (a voicemail, a key not
            # pressed): nobody has talked to the caller. As if it had not answered.
            dial_status = "no-answer"
        if dial_status in ("completed", "answered"):
            with self.db.connect() as conn:
                cases.agent_answered(
                    conn,
                    case_id=case_id,
                    agent_id=agent_id,
                    now=self.clock(),
                    talked=timedelta(seconds=talked) if talked is not None else None,
                )
            if outbound or row is None:
                return engine.hangup_twiml(catalogs, lang)
            # The caller is still on the line: where their queue says (a survey), or goodbye.
            return self.advance(row.call_sid, row.step, engine.AgentDone(case_id))
        # Canceled: the caller hung up (or the call was ended) before the agent answered.
        missed = agent_id if dial_status != "canceled" and not caller_gone else None
        if outbound:
            # Their inbound call ended long ago: no queue to put them back in. The case goes
            # back to its place, as the call back it was; still on the line to hear that we
            # will call again, they are not rung by the next agent before they have hung up
            # (busy: the next try would be a retry's wait away).
            later = None if caller_gone else self.clock() + cases.HEARD_AND_HUNG_UP
            self._back_in_line(case_id, agent_id, missed, dial_status, not_before=later)
            return engine.hangup_twiml(catalogs, lang, "callback_agent_unavailable")
        moved = self._back_in_line(case_id, agent_id, missed, dial_status)
        with self.db.connect() as conn:
            current = cases.get_case(conn, case_id=case_id) if not moved else None
        if row is None or "queue" not in row.state.facts:
            # Queued by the fallback (no call row): back into the general queue, case kept.
            return self.fallback()
        if current is not None and (current["queued"] or current["status"] in cases.HELD):
            # Twilio repeated this request (the caller is back in line already), or it is a
            # late one (another agent has them now): as answered before.
            return row.last_twiml
        # Back to their place, quietly: the agent's phone failing is not the caller's problem
        # and does not count towards giving up on the queue. (Their case closed meanwhile, a
        # supervisor resolving it while the phone rang: the hold loop opens them a new one.)
        return self.advance(row.call_sid, row.step, engine.QueueExit(AGENT_NO_ANSWER))

    def _to_customer(self, case: dict[str, Any], prompt: str) -> str:
        """What a customer we called back hears before the call ends, in their language
        (catalogs from before `prompt` was shipped: goodbye)."""
        catalogs = self.trees.current.catalogs
        if not catalogs.has(prompt, BASE_LANGUAGE):
            prompt = "goodbye"
        language = catalogs.spoken(case["language"])
        return engine.hangup_twiml(catalogs, language, prompt, ticket=case["ticket"])

    def _back_in_line(
        self,
        case_id: int,
        agent_id: int | None,
        missed: int | None,
        dial_status: str,
        *,
        not_before: datetime | None = None,
    ) -> bool:
        """The agent's leg ended untaken: the case back to its place (only while it is
        `agent_id`'s), offered to nobody before `not_before`. `missed`: the agent whose phone
        did not take it, set away and counted, once however often Twilio reports it."""
        with self.db.connect() as conn:
            if missed is None:
                return cases.requeue(
                    conn, case_id=case_id, agent_id=agent_id, not_before=not_before
                )
            moved = cases.missed_offer(
                conn,
                case_id=case_id,
                agent_id=missed,
                dial_status=dial_status,
                now=self.clock(),
                not_before=not_before,
            )
        if moved:
            self.metrics.offers.labels("missed").inc()
            log.warning("agent %s missed case %s: set away until they are back", missed, case_id)
        return moved

    def status(
        self,
        call_sid: str,
        status: str,
        *,
        duration: int | None,
        sequence: int | None,
        may_block: bool = True,
    ) -> bool:
        """Record a status callback; False if it was not news (unknown call, older, repeated).

        A final one, first or repeated, leaves the ended call's cases as they must be: the
        waiting one abandoned (kept for a call back), and the case of a caller who hung up on
        the way to an emergency queue opened. Each of those is safe to run again, so a repeated
        final callback (or this one run again in a thread) finishes what an earlier one left."""
        now = self.clock()
        with self.db.connect() as conn:
            with store.writing(conn):  # the status and the abandoned case: together or not at all
                row = store.record_status(
                    conn,
                    call_sid=call_sid,
                    status=status,
                    duration_seconds=duration,
                    sequence=sequence,
                    now=now,
                )
                if status not in store.FINAL_STATUSES:
                    return row is not None
                call = row or store.load_call(conn, call_sid=call_sid)
                if call is None or call.status in store.FINAL_STATUSES:
                    # A caller only the fallback queued has no call row, but may have a case
                    # (opened by the hold loop): abandoned on hang-up like any other.
                    cases.abandon_for_call(conn, call_sid=call_sid, now=now)
            if call is not None and call.status in store.FINAL_STATUSES:
                if not may_block and not self.trees.has(call.tree_version):
                    # Its tree is rebuilt from the stored text (a second, evicted after many
                    # reloads): not on the loop. The status is written; the rest runs again.
                    raise WouldBlock
                self._hung_up_on_the_way(conn, call, call.state, now)
                if "queue" in call.state.facts:  # only a caller who reached an agent's line
                    self._sent_on_after_hang_up(conn, call_sid, now)
        return row is not None

    def _sent_on_after_hang_up(self, conn: Connection, call_sid: str, now: datetime) -> None:
        """The caller hung up while their agent was sending them on (the transfer was to
        happen as the agent's leg ended, and its report has not come): the case goes where it
        was sent, for a call back, now; not at the next sweep, with its agent held meanwhile
        and told both "resolve it" and "it is resolved there"."""
        for case in cases.connected_of_call(conn, call_sid=call_sid):
            # This call's own caller only: a call back of its case is another call, which a
            # late copy of this one's final status says nothing of.
            if (case["claimed_from"] or "waiting") != "waiting" or not cases.transfer_asked(case):
                continue
            with store.writing(conn):
                for statement in cases.transferred(case, now=now, gone=True):
                    conn.execute(statement)
                cases.abandon_for_call(conn, call_sid=call_sid, now=now)
            log.info("case %s: its caller hung up before their transfer; a call back", case["id"])

    def _hung_up_on_the_way(
        self, conn: Connection, row: store.CallRow, state: engine.CallState, now: datetime
    ) -> None:
        """Hung up on the way to an emergency queue: the case they asked for, for a call back."""
        tree = self.trees.get(row.tree_version, self.db)
        spec = engine.hung_up_on_the_way(tree, state, ticket="")
        if spec is None:
            return
        # What needs reading (a free ticket number, the caller-ID signal) before the lock.
        spec = dataclasses.replace(spec, ticket=cases.unused_ticket(conn))
        [opening] = self._openings(row, [spec], now, gone=True)
        with store.writing(conn):
            # After a late input's step (which opens its cases holding the call's row) or
            # before it, never beside it: one case, not two.
            store.lock_call(conn, call_sid=row.call_sid)
            existing = cases.case_in_queue(conn, call_sid=row.call_sid, queue=spec.queue)
            if existing is not None:
                # Opened already: by a repeated status callback (nothing new), or by the
                # hang-up before this late input, which may have brought their UID.
                conn.execute(opening.merge_into(existing))
                return
            conn.execute(opening.insert)
            cases.tidy_call_backs(conn, call_sid=row.call_sid)
        log.warning(
            "call %s hung up on its way to the %s queue: a case for a call back",
            row.call_sid,
            spec.queue,
        )

    # -- agents ---------------------------------------------------------------------------

    def claim(
        self, agent: cases.User, *, unasked: bool = False
    ) -> tuple[dict[str, Any], dict[str, str]] | None:
        """Give the agent the next case and start connecting its caller; None when none waits.

        Whatever Twilio's REST API answers, the case goes to this agent and the line moves
        on: a refused redirect hands the caller over at their next hold round, a refused call
        back is the agent's to dial by hand, a withheld number is nobody's to dial (the agent
        acts on the account). Raises ConnectFailed only for a caller who hung up as they were
        taken: their case is back in line as a call back, and asking again gets it so.
        CaseRefused (409) while the agent has a case still (taken or connected).

        `unasked`: offered to an available agent (`dispatch`), only while they are still
        available (else cases.NotAvailable). A case nothing rings their phone for (a call back
        to dial by hand, a withheld number) is offered at their desk, to accept by
        IVR_ACCEPT_TIMEOUT (`accept_case`)."""
        now = self.clock()
        live = cases.OFFER_HOLD_LOOP if self.twilio is None else cases.OFFER_REDIRECTED
        with self.db.connect() as conn:
            # One case at a time, as one phone takes one call: a second would ring a phone
            # that is busy, and its caller wait for nothing.
            case, holding = cases.claim_if_free(
                conn,
                agent_id=agent.id,
                now=now,
                live_offer=live,
                unasked=unasked,
                wait=self.language_wait,
                sender_wait=self.sender_wait,
                actor=f"{agent.role}:{agent.name}",  # audited when asked for (`take`)
            )
            if holding is not None:
                held = cases.get_case(conn, case_id=holding)
                raise CaseRefused(409, _finish_first(held, holding))
        if case is None:
            return None
        if case["claimed_from"] == "waiting":
            connect = self._connect_live(case, agent, now)
        else:
            connect = self._call_back(case, agent, unasked=unasked)
        case["offer"] = connect["mode"]
        return case, connect

    def set_available(
        self, agent: cases.User, available: bool, *, why: cases.AwayReason | None = None
    ) -> datetime | None:
        """Presence: available agents are offered cases as they come; away, only when they
        ask (`why`: not their own doing). Since when they are available, None when away."""
        with self.db.connect() as conn:
            return cases.set_available(
                conn, agent_id=agent.id, available=available, now=self.clock(), why=why
            )

    def set_away(self, name: str, by: cases.User) -> bool:
        """A supervisor sets the agent `name` away (gone without saying so), audited. False
        if there is no such agent."""
        with self.db.connect() as conn:
            return cases.set_away_by_name(
                conn, name=name, actor=f"{by.role}:{by.name}", now=self.clock()
            )

    def presence(self, agent: cases.User) -> tuple[datetime | None, cases.AwayReason | None]:
        """(since when they are available, None), or (None, why they are away if it was not
        their own doing)."""
        with self.db.connect() as conn:
            return cases.presence(conn, agent_id=agent.id, now=self.clock())

    @property
    def language_wait(self) -> cases.LanguageWait:
        return cases.LanguageWait(
            normal=timedelta(seconds=self.settings.language_overflow_seconds),
            emergency=timedelta(seconds=self.settings.emergency_language_overflow_seconds),
        )

    @property
    def sender_wait(self) -> cases.SenderWait:
        return cases.SenderWait(
            normal=timedelta(seconds=self.settings.transfer_return_seconds),
            emergency=timedelta(seconds=self.settings.emergency_transfer_return_seconds),
        )

    def dispatch(self) -> int:
        """Offer the cases in line to the available agents who have none, the longest idle
        first, each as `claim` gives it: their phone rings (screened, they take it with 1),
        or, with nothing to ring it for, the case is offered at their desk to accept. An offer
        nobody takes (or accepts in time) goes back and sets them away. Every instance runs
        this every IVR_DISPATCH_INTERVAL: each claim locks the agent's row and checks they are
        still available and free, so nobody is offered two cases, and no case goes to two
        agents. How many cases were offered."""
        now = self.clock()
        with self.db.connect() as conn:
            overdue = cases.unaccepted(conn, now=now)
        # Back in line first, so that the next agent may be offered them on this round.
        for case_id, agent_id in overdue:  # unless accepted at the last moment
            self._back_in_line(case_id, agent_id, agent_id, cases.NOT_ACCEPTED)
        with self.db.connect() as conn:
            agents = cases.agents_to_offer(conn, now=now)
            if not agents or not cases.can_offer(conn, now=now):
                return 0
        offered = 0
        # Agents who speak only some languages: once nothing is left for one set of them,
        # nothing is for another agent who speaks the same; unless the one offered nothing
        # is kept from a case they sent on (`SenderWait`), which the next may take.
        nothing_for: set[str] = set()
        kept_waiting: set[str] | None = None
        for agent in agents:
            if agent.languages in nothing_for:
                continue
            try:
                claimed = self.claim(agent, unasked=True)
            except (CaseRefused, cases.NotAvailable):
                continue  # they took one themselves, or went away, meanwhile
            except ConnectFailed as failed:
                log.info("case %s was not offered after all: %s", failed.case_id, failed.detail)
                continue
            if claimed is None:
                if kept_waiting is None:
                    with self.db.connect() as conn:
                        kept_waiting = cases.senders_kept_waiting(
                            conn, now=now, wait=self.sender_wait
                        )
                if str(agent.id) not in kept_waiting:
                    if cases.spoken(agent.languages) is None:
                        break  # nothing left to offer anyone
                    nothing_for.add(agent.languages or "")
                continue
            offered += 1
            self.metrics.offers.labels("pushed").inc()
            log.info("case %s offered to available agent %s", claimed[0]["id"], agent.name)
        return offered

    def accept_case(self, case_id: int, agent: cases.User) -> None:
        """The agent accepts the case offered at their desk: theirs to finish now. CaseRefused
        once it is not theirs (not accepted in time: it went back, and maybe to another)."""
        with self.db.connect() as conn:
            if not cases.accept_offer(
                conn,
                case_id=case_id,
                agent_id=agent.id,
                actor=f"{agent.role}:{agent.name}",
                now=self.clock(),
            ):
                if cases.get_case(conn, case_id=case_id) is None:
                    raise CaseRefused(404, "no such case")
                raise CaseRefused(409, NOT_ACCEPTED_IN_TIME)

    def _offer(
        self, case: dict[str, Any], agent: cases.User, offer: str, *, at_desk: bool = False
    ) -> None:
        """Record how the offer reaches its caller; ConnectFailed if it is not the agent's
        any more (taken back between the claim and this), so nothing is dialled for it.
        `at_desk`: nothing rings the agent, who did not ask: theirs once they accept it."""
        with self.db.connect() as conn:
            if not at_desk:
                if not cases.set_offer(conn, case_id=case["id"], agent_id=agent.id, offer=offer):
                    raise ConnectFailed(case["id"], LOST_AS_TAKEN)
                return
            now = self.clock()
            placed = cases.offer_at_desk(
                conn,
                case_id=case["id"],
                agent_id=agent.id,
                offer=offer,
                now=now,
                accept_by=now + timedelta(seconds=self.settings.accept_timeout_seconds),
            )
        if placed == "lost":
            raise ConnectFailed(case["id"], LOST_AS_TAKEN)
        if placed == "away":
            raise ConnectFailed(case["id"], "its agent went away as it was offered: back in line")

    @property
    def _fallback(self) -> dict[str, str]:
        """For a caller's own call the hotline moves with Twilio's REST API (to the agent who
        took them, on where an agent sent them): where Twilio goes if the TwiML it is sent to
        cannot be fetched (an instance gone, a proxy's 502), instead of "an application
        error" and the end of the call: the fallback URL, which queues them for an agent with
        their case. Not for a call back the hotline placed: its "caller" is our own number,
        and its case waits for a call back anyway."""
        return {"fallback_url": self.links.fallback(), "fallback_method": "POST"}

    def _connect_live(
        self, case: dict[str, Any], agent: cases.User, now: datetime
    ) -> dict[str, str]:
        # The claim recorded the offer already (`cases.claim_next`'s live_offer).
        if self.twilio is None:
            return {"mode": cases.OFFER_HOLD_LOOP}  # the hold loop hands the caller over
        try:
            # Out of Twilio's queue and into TwiML that dials this agent.
            self.twilio.calls(case["call_sid"]).update(
                url=self.links.connect(case["id"]), method="POST", **self._fallback
            )
            return {"mode": cases.OFFER_REDIRECTED}
        except Exception as exc:
            self.metrics.twilio_refusals.labels("redirect").inc()
            if call_is_over(exc):
                log.warning("case %s: its caller hung up as it was taken; a call back", case["id"])
                with self.db.connect() as conn:
                    cases.abandon_for_call(conn, call_sid=case["call_sid"], now=now)
                raise ConnectFailed(
                    case["id"],
                    "the caller hung up as you took the case; it is back in line for a call "
                    "back. Ask for the next case again.",
                ) from None
            # Twilio's REST API failing (an outage, a limit) while its calls go on: put back
            # at the head of the line, the case would be taken and refused again and again.
            log.warning(
                "Twilio refused to redirect case %s (%s): the caller's next hold round hands "
                "them over",
                case["id"],
                type(exc).__name__,
            )
            self._offer(case, agent, cases.OFFER_HOLD_LOOP)
            return {"mode": cases.OFFER_HOLD_LOOP}

    def _call_back(
        self, case: dict[str, Any], agent: cases.User, *, unasked: bool = False
    ) -> dict[str, str]:
        number = case["callback_number"] or case["caller"]
        if not dialable(number):
            self._offer(case, agent, cases.OFFER_NO_NUMBER, at_desk=unasked)
            return {"mode": cases.OFFER_NO_NUMBER}
        # A number the caller keyed is never dialled by Twilio on their say-so, nor a caller
        # ID (spoofed at will) outside IVR_CALLBACK_PREFIXES or that costs to call: the agent
        # sees it (a premium-rate line abroad would cost the exchange) and dials it.
        keyed_number = (case["flags"] or {}).get("callback_keyed") == "yes"
        if (
            self.twilio is None
            or not self.settings.caller_id
            or keyed_number
            or not callable_by_twilio(number, self.settings.callback_prefixes)
        ):
            self._offer(case, agent, cases.OFFER_BY_HAND, at_desk=unasked)
            return {"mode": cases.OFFER_BY_HAND, "number": number}
        # Marked before the call is placed: nobody gives the case back while it rings.
        placing = cases.new_placing()
        self._offer(case, agent, cases.placing_offer(placing))
        try:
            call_sid = self.twilio.calls.create(
                to=number,
                from_=self.settings.caller_id,
                url=self.links.connect(case["id"], outbound=True, placing=placing),
                method="POST",
                # A voicemail is told we will call again, and is no call back made (connect):
                # no agent is rung to talk to a greeting. DetectMessageEnd: told once the
                # greeting is over (the beep), so the message is recorded; a person is put
                # through as soon as they are told apart.
                machine_detection="DetectMessageEnd",
                # Busy, no answer, failed: the case goes back in line (no connect-done comes
                # when the customer never picks up).
                status_callback=self.links.callback_status(case["id"], placing=placing),
                status_callback_method="POST",
            ).sid
        except Exception as exc:
            call_sid = None if never_taken(exc) else self._placed_anyway(number)
            if call_sid is None:
                # A number Twilio will not call (its geographic permissions, a bad number) or
                # an outage: the agent has the number, and another phone.
                self.metrics.twilio_refusals.labels("call_back").inc()
                log.warning(
                    "Twilio refused to call back for case %s (%s): the agent dials",
                    case["id"],
                    type(exc).__name__,
                )
                self._offer(case, agent, cases.OFFER_BY_HAND, at_desk=unasked)
                return {"mode": cases.OFFER_BY_HAND, "number": number}
            # No answer in time, but Twilio is placing it: the agent waits for it as for any
            # call back, and does not ring the customer a second time by hand.
            log.warning(
                "Twilio did not answer the call back of case %s (%s), and is placing it",
                case["id"],
                type(exc).__name__,
            )
        # Its status callback must be this call's: a late one of an earlier call is not news.
        # (The customer may have answered already: the offer is connected then, and stays.)
        with self.db.connect() as conn:
            cases.set_placed(
                conn, case_id=case["id"], agent_id=agent.id, call_sid=str(call_sid), placing=placing
            )
        return {"mode": cases.OFFER_CALLING, "number": number}

    def _placed_anyway(self, number: str) -> str | None:
        """A call back Twilio gave no answer for (a read timeout, a 500): the sid of a call
        to `number` from IVR_CALLER_ID Twilio is placing or ringing now, if it took it after
        all. None if it has none, or cannot say (one call back per number is in line)."""
        assert self.twilio is not None
        try:
            found = self.twilio.calls.list(to=number, from_=self.settings.caller_id, limit=20)
        except Exception:
            return None
        # Answered already, too (the customer may be on the line by now, after a 10 s wait and
        # the answering-machine check), but one still ringing first: an answered call to the
        # same number could be another case's call back.
        going = ("queued", "initiated", "ringing", "in-progress")
        live = sorted(
            (c for c in found if str(c.status) in going),
            key=lambda c: str(c.status) == "in-progress",
        )
        return str(live[0].sid) if live else None

    def callback_status(
        self, case_id: int, call_status: str, call_sid: str, placing: str | None = None
    ) -> None:
        """The outbound call-back ended: if nobody answered, the case goes back in line, to
        be tried again later (`cases.callback_missed`), if it was this placement's call.
        Answered, and sent on by its agent while they talked: made now, if the end of the
        agent's leg did not make it (its report lost)."""
        if call_status == "completed":
            with self.db.connect() as conn:
                case = cases.get_case(conn, case_id=case_id)
                if case is None or (case["flags"] or {}).get(cases.CALL_BACK_SID) != call_sid:
                    return
                if cases.transfer_asked(case) is None:
                    ended = cases.call_back_ended(conn, case_id=case_id, call_sid=call_sid)
                    if ended != "asked":  # else asked just now: made below
                        return
            self.transferred(case_id, caller_gone=True, call_sid=call_sid)
            return
        if call_status in ("busy", "no-answer", "failed", "canceled"):
            retry = timedelta(seconds=self.settings.callback_retry_seconds)
            with self.db.connect() as conn:
                cases.callback_missed(
                    conn,
                    case_id=case_id,
                    call_sid=call_sid,
                    now=self.clock(),
                    retry=retry,
                    placing=placing,
                )

    def finish_stale_transfers(self) -> int:
        """Transfers asked of calls that ended before the agent's leg reported its end (a
        report lost): their cases in line where they were sent, for a call back. An urgent
        case an agent sent on is never left with them (a call back's, once its call cannot
        be going on any more: IVR_CALL_MAX_AGE after it was put through)."""
        now = self.clock()
        talked_before = now - timedelta(seconds=self.settings.call_max_age_seconds)
        with self.db.connect() as conn:
            stale = cases.ended_with_transfer_asked(conn, talked_before=talked_before)
            for case in stale:
                if (case["claimed_from"] or "waiting") != "waiting":
                    self._call_back_transferred(conn, case, now, gone=True, call_sid="")
                    log.warning("case %s: its call back's end went unreported", case["id"])
                    continue
                with store.writing(conn):
                    for statement in cases.transferred(case, now=now, gone=True):
                        conn.execute(statement)
                    cases.abandon_for_call(conn, call_sid=case["call_sid"], now=now)
                log.warning(
                    "case %s: its caller hung up before their transfer; a call back", case["id"]
                )
        return len(stale)

    def requeue_stale_offers(self) -> int:
        """Cases an agent took but never reached (no answer, no callback): back in line."""
        now = self.clock()
        cutoff = now - timedelta(seconds=self.settings.offer_timeout_seconds)
        with self.db.connect() as conn:
            return cases.requeue_offers_before(conn, cutoff=cutoff, now=now)

    def recording_to_play(self, recording_sid: str) -> dict[str, Any]:
        """The recording a supervisor asked to play, if its audio can be fetched from Twilio
        with the account's credentials: CaseRefused 404 (no such recording, no audio of it,
        or a URL that is not api.twilio.com's: a region's host takes that region's
        credentials), 503 (no Twilio account set)."""
        with self.db.connect() as conn:
            found = recordings.get(conn, recording_sid=recording_sid)
        if found is None:
            raise CaseRefused(404, "no such recording")
        if found["status"] != "completed" or not recordings.playable(found["url"], recording_sid):
            raise CaseRefused(404, "no audio of it to play here: find it by its sid at Twilio")
        if self.media is None:
            raise CaseRefused(503, "TWILIO_ACCOUNT_SID is not set: nothing can fetch it")
        return found

    async def open_recording(
        self, found: dict[str, Any], *, byte_range: str | None
    ) -> httpx.Response:
        """Twilio's answer with the recording's audio (MP3), or the part `byte_range` asks
        for (a browser seeking), its body not read yet: whoever takes it closes it.
        CaseRefused 404 (not at Twilio any more: deleted by its retention, or not ready
        yet), 502 (Twilio failed or refused)."""
        assert self.media is not None  # recording_to_play said so
        headers = {"Range": byte_range} if byte_range else {}
        request = self.media.build_request("GET", recordings.mp3_url(found["url"]), headers=headers)
        try:
            response = await self.media.send(request, stream=True)
        except httpx.HTTPError as exc:
            self.metrics.twilio_refusals.labels("recording").inc()
            raise CaseRefused(502, f"Twilio could not be reached ({type(exc).__name__})") from None
        if response.status_code in (200, 206):
            return response
        await response.aclose()
        if response.status_code == 404:
            raise CaseRefused(404, "not at Twilio any more (deleted, or not ready yet)")
        self.metrics.twilio_refusals.labels("recording").inc()
        raise CaseRefused(502, f"Twilio answered {response.status_code} for the recording")

    def audit_listen(self, found: dict[str, Any], user: cases.User) -> None:
        """Who listened to which case's call."""
        with self.db.connect() as conn:
            cases.audit(
                conn,
                actor=f"{user.role}:{user.name}",
                action="listen",
                uid=None,
                case_id=found["case_id"],
                reason=found["recording_sid"],
                result="played",
                now=self.clock(),
            )

    def freeze_case(
        self, case_id: int, agent: cases.User, reason: str, *, uid: str | None = None
    ) -> bool:
        """Freeze the case's account, or `uid`, the one the agent found with a caller who
        keyed none (audited; a case with no account learns it). Freezing only protects;
        never unfrozen by phone. False: the account service did not confirm it. An account
        the service does not have (a UID keyed or typed wrong) is refused (422) once audited
        as `no_account`: not an outage, and no open freeze for a supervisor to chase."""
        now = self.clock()
        unknown = False
        with self.db.connect() as conn:
            case = self._case_for(conn, case_id, agent, ())  # the agent's own only
            # Acting on an offer at the desk accepts it; unless it went back meanwhile.
            if case["accept_by"] is not None and not cases.accept_offer(
                conn,
                case_id=case_id,
                agent_id=agent.id,
                actor=f"{agent.role}:{agent.name}",
                now=now,
                how="by freezing",
            ):
                raise CaseRefused(409, NOT_ACCEPTED_IN_TIME)
            keyed = case["account_uid"]
            uid = uid or keyed
            if not uid:
                raise CaseRefused(
                    409, "the caller gave no account UID: find the account with them, and give it"
                )
            # Two freezes on one case at once (a double click, a script) would both pass
            # the cap below: they take turns, from the look at the case's freezes to their
            # audit rows.
            with self._one_freeze_at_a_time(conn, case_id):
                frozen_here = cases.frozen_on_case(conn, case_id=case_id)
                others = [u for u in frozen_here if u != keyed]
                if uid != keyed and uid not in others and len(others) >= OTHER_FREEZES_AT_MOST:
                    # A victim's second account, or the right one of a mistyped UID; not a list
                    # of accounts frozen at will on one case (a stolen agent token, an insider).
                    log.warning(
                        "case %s: agent %s refused a freeze of one more account",
                        case_id,
                        agent.name,
                    )
                    raise CaseRefused(
                        409,
                        f"{len(others)} accounts besides the case's were frozen on it already: "
                        "one case freezes no more; the next account's owner calls on a case of "
                        "their own",
                    )
                try:
                    if self.local_actions is not None:  # in this transaction: no second one
                        # A savepoint on PostgreSQL: a statement of it failing (a lock wait
                        # past lock_timeout) is a failed freeze, and the audit still writes.
                        nested = (
                            conn.begin_nested()
                            if conn.in_transaction()
                            else contextlib.nullcontext()
                        )
                        with nested:
                            done = self.local_actions.freeze_in(conn, uid=uid, now=now)
                    else:
                        done = self.actions.freeze(uid=uid, now=now)
                except NoSuchAccount:
                    done, unknown = False, True
                except Exception:
                    log.exception("freeze failed for case %s", case_id)
                    done = False
                # Done if any freeze on the case was: a later one failing does not undo it.
                made = done or bool(frozen_here)
                # A UID that is no account changes nothing of the case's: it failed nowhere.
                flags = (
                    {} if unknown and not made else {"agent_freeze": "done" if made else "failed"}
                )
                if done and uid != keyed:
                    # The account frozen is found from the case (the call log's account filter):
                    # the agent found it with a caller who keyed none, or another than theirs.
                    # One the caller proved (verified) stays the case's; another is noted, as is
                    # every account frozen on the case that is not its account now.
                    proved = (case["flags"] or {}).get("verified") == "yes"
                    account = keyed if keyed is not None and proved else uid
                    if account != keyed:
                        cases.set_account(conn, case_id=case_id, uid=uid, was=keyed)
                    also = [u for u in dict.fromkeys([*frozen_here, uid]) if u != account]
                    if also:
                        flags[ALSO_FROZEN] = ",".join(also)
                result = "ok" if done else cases.NO_ACCOUNT if unknown else "failed"
                self.metrics.freezes.labels("agent", result).inc()
                cases.audit(
                    conn,
                    actor=f"agent:{agent.name}",
                    action="freeze",
                    uid=uid,
                    case_id=case_id,
                    reason=reason,
                    result=result,
                    now=now,
                )
                if flags:
                    cases.add_flags(conn, case_id=case_id, flags=flags)
        if unknown:  # audited above, committed: then refused
            raise CaseRefused(
                422,
                f"no such account {uid}: the account service does not know it, so nothing was "
                "frozen. Check the UID with the caller",
            )
        return done

    @contextlib.contextmanager
    def _one_freeze_at_a_time(self, conn: Connection, case_id: int) -> Iterator[None]:
        """A case's freezes one at a time, on every instance; a second one meanwhile (a
        double click) is refused at once (409), never left waiting on the account service.
        On PostgreSQL under an advisory lock of the transaction's (the case's row stays free
        for its call's webhooks); the embedded SQLite is one process's."""
        busy = CaseRefused(409, "a freeze of this case is being made now: look again in a moment")
        if conn.dialect.name == "postgresql":
            with store.writing(conn):
                got = conn.execute(select(func.pg_try_advisory_xact_lock(FREEZE_LOCK, case_id)))
                if not got.scalar():
                    raise busy
                yield
            return
        with self._freezing:
            if case_id in self._freezing_cases:
                raise busy
            self._freezing_cases.add(case_id)
        try:
            yield
        finally:
            with self._freezing:
                self._freezing_cases.discard(case_id)

    def _case_for(
        self, conn: Connection, case_id: int, user: cases.User, supervisor_may: tuple[str, ...]
    ) -> dict[str, Any]:
        """The case `user` may act on: their own while they have it; for a supervisor, any in
        one of `supervisor_may` (an agent who went home, was revoked, or forgot it)."""
        case = cases.get_case(conn, case_id=case_id)
        if case is None:
            raise CaseRefused(404, "no such case")
        if case["agent_id"] == user.id and case["status"] in cases.HELD:
            return case
        if case["status"] == "resolved":
            raise CaseRefused(409, "the case is resolved already")
        if user.role == "supervisor":
            if case["status"] in supervisor_may:
                return case
            raise CaseRefused(409, f"not while the case is {case['status']}")
        raise CaseRefused(409, "not your case: take it with /api/agents/next first")

    def add_case_note(self, case_id: int, user: cases.User, text: str) -> list[dict[str, str]]:
        """A working note on the case `user` has now (accepted), kept with it: the next agent
        after a transfer or a give-back reads it, and supervisors on the call's timeline.
        Never digits that may be a caller's secret (`cases.secret_like`: 422, nothing kept).
        The case's notes after it, earliest first."""
        text = text.strip()
        if not text:
            raise CaseRefused(422, "not saved: the note is empty")
        if len(text) > cases.NOTE_AT_MOST:
            raise CaseRefused(422, f"not saved: a note is {cases.NOTE_AT_MOST} characters at most")
        if cases.secret_like(text):
            raise CaseRefused(422, cases.SECRET_LIKE)
        now = self.clock()
        with self.db.connect() as conn:
            case = self._case_for(conn, case_id, user, ())
            if case["accept_by"] is not None:
                raise CaseRefused(409, "accept the case first")
            added = cases.add_note(
                conn,
                case_id=case_id,
                agent_id=user.id,
                by=f"{user.role}:{user.name}",
                text=text,
                now=now,
            )
            if added == "full":
                raise CaseRefused(
                    409,
                    f"the case has {cases.NOTES_AT_MOST} notes already: put the rest in the "
                    "closing notes",
                )
            if added == "not_yours":
                raise CaseRefused(409, "the case changed meanwhile; look at it again")
            after = cases.get_case(conn, case_id=case_id)
        return cases.working_notes(after or {})

    def resolve_case(
        self,
        case_id: int,
        user: cases.User,
        notes: str,
        *,
        reached: bool = False,
        nothing_needed: bool = False,
    ) -> None:
        """Close a case: its agent, while they have it; or a supervisor, whoever has it, and a
        call back nobody has taken (called back by other means, a prank). Never a caller
        waiting on the line: they are served, not resolved away. `reached`: a call back the
        agent dialled themselves reached the customer (no Twilio call tells the hotline so):
        made, and handled from when they took it. `nothing_needed`: the agent's word that an
        emergency whose caller dropped (`cases.dropped_after`) needs no freeze nor call back."""
        now = self.clock()
        with self.db.connect() as conn:
            case = self._case_for(conn, case_id, user, (*cases.HELD, *cases.CALL_BACKS))
            if case["status"] == "offered" and (case["claimed_from"] or "waiting") == "waiting":
                raise CaseRefused(
                    409,
                    "the caller is waiting on the line to be put through: serve them, or give "
                    "the case back",
                )
            sending = cases.transfer_asked(case)
            if sending is not None and user.role != "supervisor":  # who may close it anyway
                # Resolved now, the caller would be told goodbye instead of being sent on.
                raise CaseRefused(
                    409,
                    f"the caller is being sent on to {sending.queue}: it is resolved there, by "
                    "the agent who takes it",
                )
            if case["agent_id"] == user.id and self._on_the_call(conn, case, now):
                # Resolved mid-call, the handle time would end while they still talk, and
                # they would be offered the next caller with this one on the line.
                raise CaseRefused(
                    409,
                    "you are on the call with the caller still: resolve it once you have hung "
                    "up (write your notes meanwhile)",
                )
            if case["priority"] == "emergency" and len(notes.strip()) < 3:
                # Someone answers later for what was done about a stolen account.
                raise CaseRefused(409, "say in the notes what was done about this emergency")
            if cases.calling_back(case["offer"]) and case["status"] == "offered":
                raise CaseRefused(
                    409,
                    "Twilio is calling the customer back now: resolve it once you have talked, "
                    "or it comes back to the line by itself if they do not answer",
                )
            # Only the agent's own word for their own call: a call back they accepted and
            # dialled (not a withheld caller's case, with nobody to dial; not a supervisor).
            by_hand = (
                case["status"] == "offered"
                and case["offer"] == cases.OFFER_BY_HAND
                and case["agent_id"] == user.id
                and case["accept_by"] is None
            )
            if reached and not by_hand:
                raise CaseRefused(
                    409, "reached is for a call back you accepted and dialled yourself"
                )
            flags = case["flags"] or {}
            acted = flags.get("agent_freeze") == "done"
            # A withheld number's emergency whose caller proved the account, but whose freeze
            # did not happen on the call: the agent's to freeze, with nobody to call. Not one
            # whose caller only keyed a UID: UIDs are public (referral links, P2P pages), and
            # one anonymous call must not be enough to freeze a stranger's account.
            no_number = (
                case["status"] == "offered"
                and case["offer"] == cases.OFFER_NO_NUMBER
                and case["agent_id"] == user.id
                and case["account_uid"] is not None
                and flags.get("verified") == "yes"
                and flags.get("self_freeze") != "done"
            )
            if no_number and case["priority"] == "emergency" and not acted:
                raise CaseRefused(
                    409,
                    "the account of this emergency was not frozen, and there is nobody to call: "
                    "freeze it, or give the case back",
                )
            if by_hand and case["priority"] == "emergency" and not (reached or acted):
                # One click away from "Nobody answered", Resolve would close a hijack case
                # nobody did anything about. A supervisor may still (a prank, a duplicate).
                raise CaseRefused(
                    409,
                    'nobody was reached and the account was not frozen: tick "I spoke to the '
                    'customer" if you did, freeze the account, or press "Nobody answered" '
                    "(the call back is tried again)",
                )
            dropped = (
                cases.dropped_after(conn, case)
                if case["priority"] == "emergency"
                and case["agent_id"] == user.id
                and not (acted or flags.get("self_freeze") == "done")
                else None
            )
            if dropped is not None and not nothing_needed:
                # Gone before the agent could act, the victim is owed more than "dropped": a
                # freeze, a call back, or the agent's word that nothing was needed (a prank, a
                # wrong key). A supervisor may still, as above.
                raise CaseRefused(
                    409,
                    f"the caller dropped {dropped} s into the call and the account was not "
                    'frozen: freeze the account, press "Call them back" (back in line, a call '
                    'back owed), or tick "Nothing needed doing" if so (say why in the notes)',
                )
            if not cases.resolve(
                conn,
                case_id=case_id,
                status=case["status"],
                now=now,
                notes=notes,
                unless_sending=user.role != "supervisor",
                reached_at=case["offered_at"] if reached else None,
            ):
                raise CaseRefused(409, "the case changed meanwhile; look at it again")
            cases.audit(
                conn,
                actor=f"{user.role}:{user.name}",
                action=cases.RESOLVE,
                uid=None,
                case_id=case_id,
                reason="reached by hand"
                if reached
                else f"caller dropped after {dropped} s: nothing needed doing"
                if dropped is not None
                else None,
                result="ok",
                now=now,
            )

    def not_reached(self, case_id: int, agent: cases.User) -> None:
        """The agent dialled the call back and nobody answered: the attempt counts, and the
        case is tried again after IVR_CALLBACK_RETRY (doubled at each miss, as when Twilio
        calls), not offered to the next agent at once to ring the same number again. The
        agent stays as they were (a miss of the customer's is none of theirs). Audited."""
        now = self.clock()
        retry = timedelta(seconds=self.settings.callback_retry_seconds)
        with self.db.connect() as conn:
            case = self._case_for(conn, case_id, agent, ())  # the agent's own only
            if case["accept_by"] is not None and not cases.accept_offer(
                conn,
                case_id=case_id,
                agent_id=agent.id,
                actor=f"{agent.role}:{agent.name}",
                now=now,
                how="by saying nobody answered",
            ):
                raise CaseRefused(409, NOT_ACCEPTED_IN_TIME)
            if not cases.not_reached(
                conn, case_id=case_id, agent_id=agent.id, now=now, retry=retry
            ):
                raise CaseRefused(
                    409, "only a call back you dial yourself is not reached: this one is not"
                )
            cases.audit(
                conn,
                actor=f"agent:{agent.name}",
                action="call_back",
                uid=None,
                case_id=case_id,
                reason=None,
                result="not_reached",
                now=now,
            )

    def set_case_priority(
        self, case_id: int, supervisor: cases.User, priority: Priority, reason: str
    ) -> None:
        """A supervisor moves a case waiting in line to `priority` (a caller they learned is
        a hijack victim to the emergency lane; a case opened as an emergency by mistake out
        of it), keeping its arrival. Its caller hears their new place at their next hold
        round. Audited, with the reason; in the same transaction."""
        now = self.clock()
        with self.db.connect() as conn, store.writing(conn):
            actor = f"{supervisor.role}:{supervisor.name}"
            moved = cases.set_priority(
                conn, case_id=case_id, priority=priority, supervisor=actor, why=reason, now=now
            )
            if moved is None:
                case = cases.get_case(conn, case_id=case_id)
                if case is None:
                    raise CaseRefused(404, "no such case")
                raise CaseRefused(
                    409,
                    f"only a case waiting in line moves; this one is {case['status']}"
                    + (" (its agent can send it on)" if case["status"] in cases.HELD else ""),
                )
            cases.audit(
                conn,
                actor=actor,
                action=cases.PRIORITY,
                uid=None,
                case_id=case_id,
                reason=f"{moved[0]} to {moved[1]}: {reason}"[:500],
                result="ok",
                now=now,
            )

    def requeue_case(self, case_id: int, user: cases.User, reason: str) -> None:
        """Put a case taken but not yet connected back in its place in line, as it was: its
        agent giving it back, or a supervisor taking it from an agent who cannot serve it
        (what the offer timeout does by itself after IVR_OFFER_TIMEOUT). A connected caller
        is talking to someone: resolved, not requeued; once their call is over, a case its
        agent will not finish goes back to its place for a call back (`_back_after_talk`)."""
        now = self.clock()
        with self.db.connect() as conn:
            case = self._case_for(conn, case_id, user, ("offered", "connected"))
            if case["status"] == "connected":
                self._back_after_talk(conn, case, user, reason, now)
                return
            if cases.calling_back(case["offer"]):
                raise CaseRefused(
                    409,
                    "Twilio is calling the customer back now; if they do not answer, the case "
                    "comes back to the line by itself",
                )
            # Its agent gave it back, or could not serve it: away, or the next offer would
            # bring it straight back to them.
            if case["status"] != "offered" or not cases.requeue(
                conn,
                case_id=case_id,
                only_from=("offered",),
                unless_placing=True,
                away=case["agent_id"],
                away_why=cases.AWAY_GAVE_BACK
                if case["agent_id"] == user.id
                else cases.AWAY_TAKEN_BACK,
                now=now,
            ):
                raise CaseRefused(409, "only a case not yet connected goes back in line")
            cases.audit(
                conn,
                actor=f"{user.role}:{user.name}",
                action="requeue",
                uid=None,
                case_id=case_id,
                reason=reason or None,
                result="ok",
                now=now,
            )

    def _back_after_talk(
        self,
        conn: Connection,
        case: dict[str, Any],
        user: cases.User,
        reason: str,
        now: datetime,
    ) -> None:
        """A connected case whose call is over, back in its place in line to be called back:
        a hijack victim whose agent's phone dropped, or who hung up at the survey, while the
        agent went home, is called again by the next agent instead of waiting on a case only
        a supervisor's Close would end. Never while its agent is still on the call, nor when
        the caller is back in line already (the survey's "not done yet"). A supervisor's;
        and its agent's for a caller who dropped before they could act ("Call them back" on
        the desk). An agent who talked to the caller resolves it with what was done, or
        sends it on with a note for the next agent (a transfer). Audited."""
        # Its agent's own too for a caller who dropped (`cases.dropped_after`): a call back
        # owed, not yet talked through.
        if user.role != "supervisor" and cases.dropped_after(conn, case) is None:
            raise CaseRefused(
                409,
                "you talked to the caller: resolve it with what was done, or transfer it with "
                "a note for the next agent",
            )
        # Over as Twilio said so: the agent's leg ended, or the caller's call. Nothing else
        # tells the end of a call the fallback queued, or of a call back Twilio placed.
        over = case["talk_ended_at"] is not None
        if not over and (case["claimed_from"] or "waiting") == "waiting":
            call = store.load_call(conn, call_sid=case["call_sid"])
            over = call is not None and call.status in store.FINAL_STATUSES
        if not over or self._on_the_call(conn, case, now):
            raise CaseRefused(
                409, "its agent is on the call with the caller still: not while they talk"
            )
        follow_up = cases.open_follow_up(conn, ticket=case["ticket"])
        if follow_up is not None:
            raise CaseRefused(
                409,
                f"the caller is back in line already, as case {follow_up}: close this one",
            )
        if not cases.back_after_talk(conn, case=case, now=now):
            raise CaseRefused(409, "the case changed meanwhile; look at it again")
        cases.audit(
            conn,
            actor=f"{user.role}:{user.name}",
            action="requeue",
            uid=None,
            case_id=case["id"],
            reason=(f"after the call, for a call back: {reason}" if reason else None),
            result="ok",
            now=now,
        )

    def transfer_case(
        self, case_id: int, agent: cases.User, to: cases.Transfer, *, keep_higher: bool = False
    ) -> Literal["redirected", "on_hang_up", "call_back"]:
        """The agent on the line with the case's caller sends them on (`to`, audited). With
        Twilio's REST API their call is redirected now, ending the agent's leg ("redirected");
        without it, or if Twilio refuses, when the agent hangs up ("on_hang_up"). The case
        stays the agent's until the caller is back in line (`transferred`). A caller whose
        call has ended, and a call back the agent dials, are in line there at once, for that
        team to call back ("call_back"); a call back Twilio placed, once its customer leaves
        the agent's call (`_call_back_sent_on`).
        `keep_higher`: `to`'s priority is the queue's own, not the agent's choice: a case of a
        higher one keeps it (a hijack victim sent on to the account team stays an emergency)."""
        now = self.clock()
        with self.db.connect() as conn:
            case = self._case_for(conn, case_id, agent, ())
            if keep_higher:
                to = dataclasses.replace(to, priority=cases.higher(case["priority"], to.priority))
            if cases.changes_nothing(case, to):
                # The desk's form as it opens: a note typed and Transfer pressed would tell
                # the caller they are passed on, and put them back in the line they were in.
                raise CaseRefused(422, cases.NOTHING_CHANGED.format(**case))
            sent: cases.CallBackSent | None = None
            call: store.CallRow | None = None
            if (case["claimed_from"] or "waiting") != "waiting":
                sent = cases.send_call_back_on(conn, case_id=case_id, agent=agent, to=to, now=now)
            else:
                call = store.load_call(conn, call_sid=case["call_sid"])
                left = (
                    call is not None
                    and call.status not in store.FINAL_STATUSES
                    and call.state.facts.get("served_case") == str(case_id)
                )
                # Another case of theirs since (back in line from the survey): this one is
                # no longer where the caller is, with or without Twilio's REST API.
                moved_on = call is not None and call.state.facts.get("ticket") not in (
                    None,
                    case["ticket"],
                )
                if left and (self.twilio is None or moved_on):
                    # Their call with the agent is over, and they are somewhere else in the
                    # tree (a survey, a line): no hang-up of the agent's is coming to send
                    # them, and Twilio's REST API must not pull them out of where they are.
                    raise CaseRefused(
                        409, "the caller has left your call: nothing can send them on now"
                    )
                asked = cases.ask_transfer(conn, case_id=case_id, agent=agent, to=to, now=now)
        if sent is not None:  # a call back
            return self._call_back_sent_on(case, to, sent)
        if asked == "asked" and call is not None and call.status in store.FINAL_STATUSES:
            # They hung up already: no hang-up is coming to send them. In line there now, for
            # a call back.
            self.transferred(case_id, caller_gone=True)
            self.metrics.transfers.labels(to.priority).inc()
            return "call_back"
        if asked == "not_yours":
            raise CaseRefused(
                409, "only a caller put through to you can be transferred: not yet, or not now"
            )
        if asked == "call_back":  # it became one meanwhile
            raise CaseRefused(409, "the case changed meanwhile; look at it again")
        if asked == "asked_already":
            raise CaseRefused(409, "the caller is being transferred already: hang up to send them")
        self.metrics.transfers.labels(to.priority).inc()
        if self.twilio is None:
            return "on_hang_up"
        try:
            # Out of the agent's <Dial>: Twilio reports the leg's end (ignored) and fetches this.
            self.twilio.calls(case["call_sid"]).update(
                url=self.links.transfer(case_id), method="POST", **self._fallback
            )
        except Exception as exc:
            # Their call ended meanwhile, or Twilio's REST API fails: the end of the agent's
            # leg (a hang-up on either side) sends them, or puts them in line for a call back.
            self.metrics.twilio_refusals.labels("transfer").inc()
            log.warning(
                "Twilio refused to redirect case %s for its transfer (%s): it happens when the "
                "agent hangs up",
                case_id,
                type(exc).__name__,
            )
            return "on_hang_up"
        return "redirected"

    def _call_back_sent_on(
        self, case: dict[str, Any], to: cases.Transfer, sent: cases.CallBackSent
    ) -> Literal["redirected", "on_hang_up", "call_back"]:
        """A call back sent on (`cases.send_call_back_on`): in line there already
        ("call_back"); or, its agent talking to the customer on a call Twilio placed, that
        call moved out of the agent's <Dial> to hear so ("redirected"), the case made now if
        Twilio says the call has ended ("call_back"), else when it ends ("on_hang_up")."""
        if sent not in ("sent", "asked"):
            raise CaseRefused(409, CALL_BACK_NOT_SENT[sent])
        self.metrics.transfers.labels(to.priority).inc()
        case_id: int = case["id"]
        call_sid = (case["flags"] or {}).get(cases.CALL_BACK_SID)
        if sent == "sent":
            return "call_back"
        if self.twilio is None or call_sid is None:
            return "on_hang_up"
        try:
            self.twilio.calls(call_sid).update(url=self.links.transfer(case_id), method="POST")
        except Exception as exc:
            if call_is_over(exc):
                self.transferred(case_id, caller_gone=True)
                return "call_back"
            self.metrics.twilio_refusals.labels("transfer").inc()
            log.warning(
                "Twilio refused to redirect the call back of case %s for its transfer (%s): "
                "it happens when the call ends",
                case_id,
                type(exc).__name__,
            )
            return "on_hang_up"
        return "redirected"

    def transferred(
        self,
        case_id: int,
        *,
        caller_gone: bool = False,
        call_sid: str = "",
        talked: int | None = None,
    ) -> str:
        """The caller of a case whose agent sent them on (`transfer_case`) gets there: on
        Twilio's redirect of their call, or at the end of the agent's leg, whichever comes
        first (the other is not news). The case goes back in line where it was sent in the
        transaction of the call's step: a copy of this webhook that loses the step answers
        as the one that won. A caller who hung up meanwhile is in line there for a call
        back. A call back's (`_call_back_transferred`): `call_sid`, the call Twilio asks for.
        `talked`: the end of the agent's leg (DialCallDuration) made it: their answer is dated
        by it in the talk the figures keep (`cases.legs`)."""
        now = self.clock()
        with self.db.connect() as conn:
            case = cases.get_case(conn, case_id=case_id)
            if case is None:
                return self.fallback()
            if talked is not None and case["answered_at"] is None and case["connected_at"]:
                case = {
                    **case,
                    "answered_at": max(case["connected_at"], now - timedelta(seconds=talked)),
                }
            if (case["claimed_from"] or "waiting") != "waiting":
                return self._call_back_transferred(
                    conn, case, now, gone=caller_gone, call_sid=call_sid
                )
            row = store.load_call(conn, call_sid=case["call_sid"])
            to = cases.transfer_asked(case)
            if to is None:  # made already, or never asked
                return row.last_twiml if row is not None else self.fallback()
            gone = caller_gone or (row is not None and row.status in store.FINAL_STATUSES)
            moves = cases.transferred(case, now=now, gone=gone)
            if gone or row is None or "queue" not in row.state.facts:
                with store.writing(conn):
                    for statement in moves:
                        conn.execute(statement)
                    if gone:
                        cases.abandon_for_call(conn, call_sid=case["call_sid"], now=now)
                log.info("case %s transferred to %s", case_id, to.queue)
                # Queued by the fallback (no call row): back to it, their case in its new line.
                return HANG_UP if gone else self.fallback()
            tree = self.trees.get(row.tree_version, self.db)
            event = engine.Transferred(case_id, to.queue, to.priority, to.language)
            twiml = self._move(conn, tree, row, event, None, now, True, list(moves))
            log.info("case %s transferred to %s", case_id, to.queue)
            after = store.load_call(conn, call_sid=case["call_sid"])
            if after is not None and after.status in store.FINAL_STATUSES:
                # They hung up while this was stored: a call back, not a caller to wait for.
                cases.abandon_for_call(conn, call_sid=case["call_sid"], now=now)
        return twiml

    def _call_back_transferred(
        self, conn: Connection, case: dict[str, Any], now: datetime, *, gone: bool, call_sid: str
    ) -> str:
        """A call back whose agent sent it on: in line there (once however often this runs),
        and what the customer hears before their call ends, in the language they were sent
        on in. `gone`: their call has ended. `call_sid`: the call Twilio asks for, if it says
        (a request of another call back of the case, late or stray, makes nothing)."""
        to = cases.transfer_asked(case)
        talked_on = (case["flags"] or {}).get(cases.CALL_BACK_SID)
        if to is not None and call_sid and talked_on and talked_on != call_sid:
            catalogs = self.trees.current.catalogs
            return engine.hangup_twiml(catalogs, catalogs.spoken(case["language"]))
        if to is not None:
            with store.writing(conn):
                for statement in cases.transferred(case, now=now, gone=gone):
                    conn.execute(statement)
                cases.tidy_call_backs(conn, call_sid=case["call_sid"])
            log.info("case %s transferred to %s, a call back", case["id"], to.queue)
            case = {**case, "language": to.language or case["language"]}
        elif not (case["flags"] or {}).get("transferred_agent"):
            catalogs = self.trees.current.catalogs
            return engine.hangup_twiml(catalogs, catalogs.spoken(case["language"]))
        return self._to_customer(case, engine.CALL_BACK_SENT_ON_PROMPT)

    def case_detail(self, case_id: int) -> dict[str, Any] | None:
        """What an agent sees: the case, how the caller was verified (never the digits),
        risk signals, their path through the menus, earlier cases of the account, and its
        freeze in force."""
        with self.db.connect() as conn:
            case = cases.get_case(conn, case_id=case_id)
            if case is None:
                return None
            events = store.call_log(conn, call_sid=case["call_sid"])
            earlier = (
                cases.account_history(conn, uid=case["account_uid"], exclude=case_id)
                if case["account_uid"]
                else []
            )
            # Frozen by anyone, on any case: not this case's flags, which know only its own.
            case["account_frozen"] = (
                calllog.account_frozen(conn, uid=case["account_uid"])
                if case["account_uid"]
                else None
            )
            case["on_call"] = self._on_the_call(conn, case, self.clock())
            case["dropped_after"] = cases.dropped_after(conn, case)
            case["caller_left_at"] = cases.caller_left(conn, case)
        case["menu_path"] = [e["node"] for e in events if e["kind"] == "entered"]
        case["earlier_cases"] = earlier
        return case

    def _on_the_call(self, conn: Connection, case: dict[str, Any], now: datetime) -> bool:
        longest = timedelta(seconds=self.settings.call_max_age_seconds)
        return cases.on_the_call(conn, case, now=now, longest=longest)

    # -- from memory ----------------------------------------------------------------------

    def hold_from_memory(self, language: str | None) -> str:
        """A hold-loop round without the database: music and a tip, no place in line."""
        catalogs = self.trees.current.catalogs
        return engine.hold_twiml(
            catalogs, catalogs.spoken(language), self.settings.hold_music_url_str
        )

    def fallback(self, caller: str | None = None) -> str:
        """For when anything failed: from memory alone, apologise and queue for an agent;
        in the caller's likely language first, by their number (`caller`), where known."""
        tree = self.trees.current
        return engine.fallback_twiml(
            tree.catalogs,
            self.links,
            self.settings.fallback_queue,
            tree.likely_language(caller) if caller else None,
        )

    def close_stale_calls(self) -> int:
        """Close calls whose final status callback never came, as if it had: a waiting case
        abandoned (kept for a call back), a caller on the way to an emergency queue given one."""
        now = self.clock()
        with self.db.connect() as conn:
            closed = store.close_stale_calls(
                conn, now=now, max_age=timedelta(seconds=self.settings.call_max_age_seconds)
            )
            for row in closed:
                cases.abandon_for_call(conn, call_sid=row.call_sid, now=now)
                self._hung_up_on_the_way(conn, row, row.state, now)
        return len(closed)

    def prune_failures(self) -> int:
        """Forget failed attempts too old to count towards any lockout (kept a day at least)."""
        s = self.settings
        keep = max(
            timedelta(days=1), timedelta(seconds=s.lockout_window_seconds + s.lockout_seconds)
        )
        with self.db.connect() as conn:
            return store.prune_failures(conn, before=self.clock() - keep)

    def prune_sessions(self) -> int:
        """Forget dashboard sessions that have expired (they let nobody in already)."""
        with self.db.connect() as conn:
            return cases.prune_sessions(conn, now=self.clock())

    # -- call trees: reload, rollback, every instance on the same version -------------------

    def activate(
        self, tree: CompiledTree, *, by: str, how: str = "reload", at_start: bool = False
    ) -> CompiledTree:
        """Store `tree` as a version, make it the live one everywhere, and use it here now.
        SourceError (and the old tree stays) if it cannot serve these settings. Audited
        (`TREE_ACTIVATED`, `how`: reload, rollback, start; `TREE_REFUSED`): tree_versions
        keeps only each version's last activation. `at_start`: audited only when it replaces
        another live version (the first of a new database is its loaded_at, kept; an
        instance started on the live one changes nothing)."""
        refused = prompts_refused(self.settings, tree)
        if refused is not None:
            self._audit_tree_refused(refused, by=by, how=how)
            raise refused
        now = self.clock()
        with self.db.connect() as conn:
            store.store_tree_version(conn, tree=tree, loaded_by=by, now=now)
            with store.writing(conn):  # with its audit, or not at all
                live = store.active_tree_version(conn)
                store.activate_tree_version(conn, version=tree.version, by=by, now=now)
                if not at_start or live not in (None, tree.version):
                    cases.audit(
                        conn,
                        actor=_system_actor(by),
                        action=TREE_ACTIVATED,
                        uid=None,
                        case_id=None,
                        reason=f"{how}: version {tree.version} ({tree.file}), was {live or 'none'}",
                        result="ok",
                        now=now,
                    )
        self.trees.set_current(tree)
        log.info("call tree version %s is live (%s)", tree.version, by)
        for warning in tree.warnings:  # however it was loaded: watch, SIGHUP, API, start
            log.warning("call tree version %s: %s", tree.version, warning)
        return tree

    def reload(self, *, by: str) -> CompiledTree:
        """Load the tree file and catalogs again. SourceError (and the old tree stays) if bad:
        audited, as a refused reload."""
        try:
            tree = load_tree(self.settings.routes, self.settings.prompts_dir)
        except SourceError as exc:
            self._audit_tree_refused(exc, by=by, how="reload")
            raise
        return self.activate(tree, by=by)

    def _audit_tree_refused(self, error: SourceError, *, by: str, how: str) -> None:
        first = (str(error).splitlines() or ["(no message)"])[0]
        try:
            with self.db.connect() as conn:
                cases.audit(
                    conn,
                    actor=_system_actor(by),
                    action=TREE_REFUSED,
                    uid=None,
                    case_id=None,
                    reason=f"{how}: {first[:300]}",
                    result="refused",
                    now=self.clock(),
                )
        except Exception:  # the tree's own error is what the operator must see, not this
            log.exception("the refused call tree could not be audited")

    def size_queues(self) -> list[str]:
        """The live tree's queues, and the fallback's, made to hold Twilio's most callers
        (`ivr.queues`), each once per instance: a queue a reload or rollback adds is sized
        within IVR_TREE_SYNC seconds, not at the next restart (Twilio would make it with room
        for 1,000). Twilio failing raises, for the job's outage log: tried at the next round.
        What was done, a line per queue."""
        if self.twilio is None:
            return []
        wanted = {*self.trees.current.queues, self.settings.fallback_queue} - self.sized_queues
        if not wanted:
            return []
        done = queues.size_queues(self.twilio, wanted)
        self.sized_queues |= wanted
        for line in done:
            log.info("Twilio queue %s", line)
        return done

    def rollback(self, version: str, *, by: str) -> CompiledTree | None:
        with self.db.connect() as conn:
            stored = store.load_tree_version(conn, version=version)
        if stored is None:
            return None
        tree = tree_from_stored(stored.source, stored.file, stored.prompts)
        return self.activate(tree, by=by, how="rollback")

    # -- announcements ----------------------------------------------------------------------

    def _announcement(self, now: datetime) -> engine.Announcement | None:
        current = self.current_announcement
        return current.live(now) if current is not None else None

    def announce(
        self, texts: dict[str, str], *, by: cases.User, minutes: int
    ) -> announcements.Current:
        """Every caller hears `texts` (by language) where the tree plays the announcement,
        for `minutes`; on every instance within IVR_TREE_SYNC seconds, here at once."""
        now = self.clock()
        actor = f"{by.role}:{by.name}"
        with self.db.connect() as conn, store.writing(conn):  # with its audit, or not at all
            made = announcements.announce(
                conn, texts=texts, by=actor, now=now, expires_at=now + timedelta(minutes=minutes)
            )
            cases.audit(
                conn,
                actor=actor,
                action="announce",
                uid=None,
                case_id=None,
                reason=json.dumps(texts, ensure_ascii=False),
                result="ok",
                now=now,
            )
        self.current_announcement = made
        log.warning("announcement %s set by %s for %d minutes", made.id, actor, minutes)
        return made

    def clear_announcement(self, *, by: cases.User) -> bool:
        now = self.clock()
        actor = f"{by.role}:{by.name}"
        with self.db.connect() as conn, store.writing(conn):
            cleared = announcements.clear(conn, by=actor, now=now)
            if cleared:
                cases.audit(
                    conn,
                    actor=actor,
                    action="announce_clear",
                    uid=None,
                    case_id=None,
                    reason=None,
                    result="ok",
                    now=now,
                )
        self.current_announcement = None
        return cleared

    def refresh_announcement(self) -> None:
        """Another instance set or cleared the announcement: play what the database says."""
        with self.db.connect() as conn:
            self.current_announcement = announcements.current(conn, now=self.clock())

    def _at_work(self) -> AtWork:
        return AtWork(self.staffing.agents, self.staffing.handle(self.settings.avg_handle_seconds))

    def refresh_staffing(self) -> cases.Staffing:
        """Agents at work and their handle time, from the cases every instance shares."""
        now = self.clock()
        with self.db.connect() as conn:
            self.staffing = cases.staffing(conn, now=now)
        self.staffing_at = now
        return self.staffing

    def compare_instances(self) -> list[instances.Disagreement]:
        """Write this instance's row, and read whether the other instances alive set any
        setting that must match otherwise (`ivr.instances`): an error in the log when what
        differs changes, the queue page's warning while it does."""
        # The files' digests read again each time (a few small files): a tree file edited and
        # reloaded here must not read as another instance's difference until a restart.
        digests = instances.digests(self.settings)
        if self.me is None:
            self.me = instances.Me(
                digests=digests, every=self.settings.tree_sync_seconds, started_at=self.clock()
            )
        elif digests != self.me.digests:
            self.me = dataclasses.replace(self.me, digests=digests)
        with self.db.connect() as conn:
            found = instances.compare(conn, me=self.me, now=self.clock())
        if found != self.disagreements:
            if found:
                log.error(
                    "instances disagree on settings that must be the same on every instance "
                    "(docs/scaling.md), seen from %s: %s",
                    self.me.name,
                    instances.said(found),
                )
            else:
                log.info("the instances' settings agree again, seen from %s", self.me.name)
        self.disagreements = found
        return found

    def page_on_call(self) -> int | None:
        """Page the on-call numbers if the emergency case first in line has waited
        IVR_PAGE_AFTER, or at all while no agent is at work (as `refresh_staffing` last
        counted them: waiting for nobody helps nobody), and the page's turn is this
        instance's (`ivr.oncall`): one read while nothing has waited that long. The page's
        id, or None if none was due."""
        now = self.clock()
        after = timedelta(seconds=self.settings.page_after_seconds)
        # Nobody at work, as counted a moment ago: not a count left from start-up, or from
        # before the database failed (then IVR_PAGE_AFTER, as if someone were).
        counted = self.staffing_at is not None and now - self.staffing_at <= 2 * timedelta(
            seconds=self.settings.tree_sync_seconds
        )
        if counted and not self.staffing.agents:
            after = timedelta(0)
        ways: tuple[oncall.By, ...] = ("sms", "call") if self.settings.page_call else ("sms",)
        code = oncall.new_ack_code()
        with self.db.connect() as conn:
            late = oncall.overdue(conn, now=now, after=after, held_after=self._held_after)
            if late is None:
                return None
            # Nobody came for the last page: the next tier is paged too.
            escalated = bool(self.settings.page_escalate) and oncall.unacknowledged(
                conn, now=now, overdue=late
            )
            numbers = self.settings.on_call_numbers if escalated else self.settings.page_numbers
            # Every text first, then the calls: the second number's text must not wait for
            # the first number's call to be placed.
            to = [(number, by) for by in ways for number in numbers]
            page_id = oncall.take_turn(
                conn,
                now=now,
                overdue=late,
                sending=oncall.sending_at_most(len(to)),
                ack_code=code,
                to=to,
                surge=self.settings.page_surge,
            )
        if page_id is None:
            return None
        text = oncall.page_text(
            late,
            available=self.staffing.available,
            at_work=self.staffing.agents,
            queue_url=self._queue_url,
            # Nobody to text it back when the page is only logged: no "Reply ..." there.
            ack_code=code if self.settings.page_numbers else None,
            escalated=escalated,
        )
        speech = None
        if self.settings.page_call:
            speech = oncall.page_speech(
                late, available=self.staffing.available, at_work=self.staffing.agents
            )
        # The log's copy has no code: whoever reads the log (a log pipeline, an alert's
        # Slack channel) must not be able to acknowledge the page with a forged sender.
        logged = oncall.page_text(
            late,
            available=self.staffing.available,
            at_work=self.staffing.agents,
            queue_url=self._queue_url,
            escalated=escalated,
        )
        refused = self._page(page_id, text, speech, to)
        # Until someone says they are coming; their acknowledgement holds IVR_PAGE_REPEAT. A
        # shorter IVR_PAGE_REPEAT set before IVR_PAGE_UNACKED existed still holds, too.
        unacked = timedelta(
            seconds=min(self.settings.page_unacked_seconds, self.settings.page_repeat_seconds)
        )
        with self.db.connect() as conn:
            reach = oncall.record(
                conn, page_id=page_id, refused=refused, now=self.clock(), next_at=now + unacked
            )
        result = reach.result
        if result == "logged":
            log.error("%s (nobody paged: IVR_PAGE_NUMBERS is not set)", logged)
        elif result == "failed":
            log.error("%s (no on-call number could be paged; trying again in a minute)", logged)
        elif result == "undelivered":
            log.error("%s (it reached no on-call number; trying again in a minute)", logged)
        else:
            log.warning("%s (sent to %d on-call numbers)", logged, reach.sent)
        return page_id

    @property
    def _held_after(self) -> timedelta:
        """How long an agent may hold an emergency they finish by hand with no talk before it
        is paged for (`oncall.held_untalked`): IVR_OFFER_TIMEOUT, after which any other offer
        nobody was connected to goes back in line, and is paged for there."""
        return timedelta(seconds=self.settings.offer_timeout_seconds)

    def _page(
        self, page_id: int, text: str, speech: str | None, to: list[tuple[str, oncall.By]]
    ) -> list[tuple[str, oncall.By]]:
        """Text each on-call number (and ring it, to hear `speech`, with IVR_PAGE_CALL), each
        with a status callback (`page_reported`): those Twilio refused."""
        twiml = None
        if speech:
            twiml = engine.page_call_twiml(speech, action=self.links.page_ack(page_id))
        refused = []
        texted = []
        for number, by in to:
            content = text if by == "sms" else twiml
            if content is None:
                continue
            took = self._send_on_call(by, number, content, self.links.page_status(page_id, by))
            self.metrics.pages.labels(by, "sent" if took else "failed").inc()
            if not took:
                refused.append((number, by))
            elif by == "sms":
                texted.append(number)
        try:
            # Twilio took a text to them: they opted in again (maybe to another number of
            # the Messaging Service), and the queue page stops saying otherwise.
            if texted:
                with self.db.connect() as conn:
                    oncall.opted_in(conn, numbers=texted)
        except Exception:
            log.exception("the on-call numbers texted were not noted as reachable by text")
        return refused

    def _rest(self) -> TwilioRest:
        """The REST client for a text or call the hotline sends itself; RuntimeError without
        one (no TWILIO_ACCOUNT_SID): the sender treats it as Twilio failing."""
        if self.twilio is None:
            raise RuntimeError("no Twilio REST client (TWILIO_ACCOUNT_SID)")
        return self.twilio

    def _send_on_call(
        self, by: str, number: str, content: str, status_callback: str | None = None
    ) -> bool:
        """A text (`content`, its body) or a call (`content`, its TwiML) to an on-call number;
        whether Twilio took it."""
        # Twilio's default call events: `completed` only, which says answered or not.
        reports: dict[str, str] = {"status_callback": status_callback} if status_callback else {}
        try:
            twilio = self._rest()
            if by == "sms":
                sender = self.settings.page_from or self.settings.caller_id
                by_service = sender is not None and sender.startswith("MG")
                twilio.messages.create(
                    to=number,
                    **({"messaging_service_sid": sender} if by_service else {"from_": sender}),
                    body=content,
                    # Still queued at Twilio when the next page is due, it is stale: failed
                    # (30036) instead, it is a page that reached nobody, sent again.
                    validity_period=min(self.settings.page_unacked_seconds, 36_000),
                    **reports,
                )
            else:
                # Answering machine detection: a voicemail that takes the page is no one
                # reached (its status callback's AnsweredBy), and the page comes again in a
                # minute. The page is said once Twilio knows, to a machine too.
                twilio.calls.create(
                    to=number,
                    from_=self.settings.page_caller_id,
                    twiml=content,
                    machine_detection="Enable",
                    **reports,
                )
        except Exception as exc:
            code = exc.code if isinstance(exc, TwilioRestException) else None
            what = "text" if by == "sms" else "call"
            if code == int(oncall.OPTED_OUT):
                log.error(
                    "Twilio refused a %s to the on-call number ending %s (error %s: it opted out "
                    "of texts, with STOP or the like; none reaches it until it texts START)",
                    what,
                    last4(number),
                    code,
                )
                self._opted_out(number, oncall.OPTED_OUT)
            else:
                log.warning(
                    "Twilio refused a %s to the on-call number ending %s (%s)",
                    what,
                    last4(number),
                    f"error {code}" if code is not None else type(exc).__name__,
                )
            return False
        return True

    def _opted_out(self, number: str, why: str) -> None:
        """Note for the queue page that `number` opted out of texts (`why`)."""
        try:
            with self.db.connect() as conn:
                oncall.opted_out(conn, number=number, now=self.clock(), why=why)
        except Exception:
            log.exception("the on-call number ending %s was not noted as opted out", last4(number))

    def page_reported(
        self,
        page_id: int,
        by: oncall.By,
        number: str,
        status: str,
        error: str | None,
        *,
        answered_by: str | None = None,
    ) -> oncall.Report | None:
        """Twilio's status callback for a page's text or call to `number`: a page that reached
        none of the numbers it was taken for is sent again a minute later (`oncall`)."""
        with self.db.connect() as conn:
            report = oncall.reported(
                conn,
                page_id=page_id,
                number=number,
                by=by,
                status=status,
                error=error,
                now=self.clock(),
                answered_by=answered_by,
            )
        if report is None:
            return None
        self.metrics.page_reports.labels(by, report.status).inc()
        if report.status in ("undelivered", "unanswered"):
            what = "text" if by == "sms" else "call"
            why = f" (Twilio error {error})" if error and by == "sms" else ""
            log.warning(
                "the page's %s to the on-call number ending %s was %s%s",
                what,
                last4(number),
                report.status,
                why,
            )
        if report.reached_nobody:
            log.error(
                "the page of %s reached none of the %d on-call numbers Twilio took it for; "
                "paging again in a minute",
                report.page_at.strftime("%H:%M:%S UTC"),
                report.sent,
            )
        return report

    def acknowledge_page(
        self, page_id: int, by: str, *, how: str, but: str | None = None
    ) -> oncall.Acked | None:
        """`by` (an on-call number, or a user's name) is coming for page `page_id` (`how`:
        `phone` or `api`): recorded unless someone was first, the next page held back
        IVR_PAGE_REPEAT from now, and the on-call numbers but `but` (the one that said so)
        texted who is, in a thread of their own: nobody waits for Twilio for it. Who
        acknowledged it; None if there is no such page. oncall.PageOver for a page no longer
        in force."""
        now = self.clock()
        with self.db.connect() as conn:
            acked = oncall.acknowledge(
                conn,
                page_id=page_id,
                by=by,
                now=now,
                repeat=timedelta(seconds=self.settings.page_repeat_seconds),
                held_after=self._held_after,
            )
            # Told who is coming: those the page went to (the next tier only once it was
            # escalated to them), not every on-call number there is.
            went_to = oncall.numbers_paged(conn, page_id=page_id) if acked and acked.now else []
        if acked is not None and acked.now:
            self.metrics.page_acks.labels(how).inc()
            who = f"the on-call phone ending {last4(by)}" if by.startswith("+") else by
            log.warning("the page of %s was acknowledged by %s", acked.page_at, who)
            threading.Thread(
                target=self.tell_on_call,
                args=(acked,),
                kwargs={"but": but, "to": went_to},
                daemon=True,
            ).start()
        return acked

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The hotline's clock (IVR_REPORT_TZ, checked by Settings): where its supervisors
        and on-call read times, every dashboard page shows them, and the call log's form
        reads them."""
        return zoneinfo.ZoneInfo(self.settings.report_tz)

    @property
    def _queue_url(self) -> str:
        return f"{self.settings.base_url}/dashboard/queue"

    def page_texted(self, number: str, body: str) -> str | None:
        """A text to the hotline's number from `number`: an on-call number replying to a page
        with the code its text gave says they are coming (as pressing 1 on its call does),
        and is answered with a text. A text from any other number is not answered: replies
        to whoever texts are how SMS pumping costs an exchange, and callers are served by
        phone. The code, not the sender, is what counts: a text's sender can be forged.

        A text that acknowledges nothing is told how to reply at most once per
        `oncall.REPLY_EVERY` (an auto-reply would answer each answer). An opt-out word (STOP)
        is not answered (Twilio answers it), but logged as an error and shown on the queue
        page: Twilio will refuse that number's page texts from now on."""
        if number not in self.settings.on_call_numbers:
            return None
        word = oncall.keyword(body)
        if word in oncall.OPT_OUT_WORDS:
            log.error(
                "the on-call number ending %s texted %s: Twilio refuses every page text to it "
                "from now on (error 21610) until it texts START",
                last4(number),
                word,
            )
            self._opted_out(number, word)
            return None
        try:
            if word in oncall.OPT_IN_WORDS:
                with self.db.connect() as conn:
                    if oncall.opted_in(conn, numbers=[number]):
                        log.warning(
                            "the on-call number ending %s texted %s: texts reach it again",
                            last4(number),
                            word,
                        )
            code = oncall.ack_code_in(body)
            if code is None:
                return self._tell(number, oncall.REPLY_HOW)
            with self.db.connect() as conn:
                page_id = oncall.page_with_code(conn, code=code)
            acked = None
            if page_id is not None:
                acked = self.acknowledge_page(page_id, number, how="sms", but=number)
        except oncall.PageOver:
            return self._tell(number, oncall.REPLY_OVER)
        except Exception:
            log.exception("an on-call number's reply to a page was not recorded")
            return oncall.REPLY_NOT_RECORDED
        if acked is None:
            return self._tell(number, oncall.REPLY_HOW)  # no page asked for that code
        return oncall.ack_reply(acked, number=number, queue_url=self._queue_url, zone=self.zone)

    def _tell(self, number: str, reply: str) -> str | None:
        """`reply`, if the on-call number may be told how to reply now (`oncall.may_tell`);
        None (no answer) otherwise, or if that could not be noted: an answer nobody can
        count is how a loop with an auto-reply would go on."""
        try:
            with self.db.connect() as conn:
                if oncall.may_tell(conn, number=number, now=self.clock()):
                    return reply
        except Exception:
            log.exception("an on-call number's text was not answered: its answer went uncounted")
        return None

    def page_answered(self, page_id: int, digits: str, number: str, *, again: bool = False) -> str:
        """A key pressed on a page's call, rung at `number`: the TwiML to answer with. A
        wrong key is asked for again once (`again`: it was)."""
        if digits == "":
            return engine.not_taken_twiml()
        if digits != oncall.ACK_KEY:
            if again:
                return engine.page_answer_twiml("That was not 1 either. Goodbye.")
            ask = self.links.page_ack(page_id, again=True)
            return engine.page_answer_twiml("That was not 1.", ask_again=ask)
        # The number Twilio rang (signed): one of ours, or it is not named.
        by = number if number in self.settings.on_call_numbers else "an on-call phone"
        try:
            acked = self.acknowledge_page(page_id, by, how="phone", but=number)
        except oncall.PageOver:
            return engine.page_answer_twiml(oncall.OVER_SPEECH)
        if acked is None:
            return engine.page_answer_twiml("This page is not known. Goodbye.")
        return engine.page_answer_twiml(oncall.ack_speech(acked, zone=self.zone))

    def tell_on_call(
        self, acked: oncall.Acked, *, but: str | None = None, to: Sequence[str] = ()
    ) -> int:
        """Text the on-call numbers the page went to (`to`; by default the first tier), all
        but `but` (the one that acknowledged), who is coming: the rest may stand down. How
        many Twilio took."""
        text = oncall.ack_text(acked, queue_url=self._queue_url, zone=self.zone)
        sent = 0
        try:
            for number in to or self.settings.page_numbers:
                if number != but:
                    took = self._send_on_call("sms", number, text)
                    self.metrics.page_ack_texts.labels("sent" if took else "failed").inc()
                    sent += took
        except Exception:  # in a thread of its own: nobody else would hear of it
            log.exception("the on-call were not told who acknowledged the page")
        return sent

    def follow_active_version(self) -> None:
        """Another instance reloaded or rolled back: switch to the version it made live."""
        with self.db.connect() as conn:
            active = store.active_tree_version(conn)
        if active and active != self.trees.current.version:
            self.trees.set_current(self.trees.get(active, self.db))
            log.info("following call tree version %s", active)

    def record_tree(self, loaded_by: str) -> None:
        """At start-up: the tree file this instance was started with becomes the live one,
        on every instance. Another version live until now (a rollback, a reload of another
        file) is replaced: said, as a warning, with who made it live."""
        file = self.trees.current
        with self.db.connect() as conn:
            live = store.active_tree(conn)
        if live is not None and live.version != file.version:
            log.warning(
                "the tree file's version %s replaces version %s, live since %s (%s), on every "
                "instance: a restart makes the tree file live; roll back again if that was "
                "not meant",
                file.version,
                live.version,
                f"{live.activated_at:%Y-%m-%d %H:%M} UTC",
                live.activated_by,
            )
        self.activate(file, by=loaded_by, how="start", at_start=True)

    def warm_trees(self) -> None:
        """At start-up: build the tree versions calls in progress are on (after a restart onto
        a newer tree, say), before their next webhook needs one."""
        with self.db.connect() as conn:
            versions = store.versions_in_progress(conn)
        for version in versions:
            self.trees.get(version, self.db)
