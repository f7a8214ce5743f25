"""The agent-side JSON API. Bearer tokens (`ivr users add`); a wrong role gets 403, none 401;
too many wrong tokens from one client address get 429 with Retry-After (`SignInThrottle`).

GET  /api/queue                 waiting cases, in exactly the order agents get them (the first 500)
GET  /api/staffing              agents at work, their handle time, the wait a new caller hears
POST /api/agents/next           claim the next case and connect its caller
GET|PUT /api/agents/presence    available (cases come as they come) or away
GET  /api/agents                every agent: on a case, available, or away
POST /api/cases/{id}/freeze     freeze the account (audited); never unfreeze by phone
POST /api/cases/{id}/notes      a working note, kept with the case for the next agent
POST /api/cases/{id}/resolve    close the case with notes
POST /api/cases/{id}/not-reached a call back dialled by hand that nobody answered: tried later
POST /api/cases/{id}/priority   a supervisor moves a waiting case (a victim to the emergency lane)
GET  /api/freezes               every freeze in a period; those not confirmed and not made since
GET  /api/audit                 the audit log, newest first, filtered (supervisors; .csv too)
GET  /api/oncall/pages          the on-call paged about emergencies left waiting
POST /api/oncall/pages/{id}/ack say you are coming: the other on-call numbers are told
GET  /api/recordings/{sid}      a call with an agent, as Twilio recorded it (MP3; audited)
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Annotated, Any, Literal

from defusedcsv import csv  # the stdlib's, with cells that read as formulas made text
from fastapi import APIRouter, Body, Depends, Header, HTTPException, Path, Query, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from fastapi.security import HTTPBearer
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from ivr import oncall, recordings
from ivr.announcements import Current, one_line, problems, tidied
from ivr.announcements import current as current_announcement
from ivr.calllog import (
    ACTION_PATTERN,
    CALLER_PATTERN,
    EXPORT_AUDIT,
    EXPORT_CALLS,
    SEARCH_AUDIT,
    SEARCH_CALLS,
    AuditFilter,
    CallFilter,
    Outcome,
    Verified,
    audit_lookup,
    audit_read,
    audit_shown,
    calls_begun,
    freezes,
    list_audit,
    list_calls,
    searches_someone,
    timeline,
)
from ivr.cases import (
    LANGUAGE_CODE,
    NOTE_AT_MOST,
    SECRET_LIKE,
    USER_NAME,
    AwayReason,
    Transfer,
    User,
    agent_gone,
    agents_presence,
    earlier_transfers,
    emergencies_by_verification,
    held_by,
    held_by_agents,
    ready_emergency_tickets,
    ready_in_line,
    repeated_callers,
    secret_like,
    set_languages,
    spoken,
    transfer_asked,
    unspoken,
    waiting_cases,
    waiting_counts,
    working_notes,
)
from ivr.db import in_utc
from ivr.deps import (
    AgentUser,
    AnnouncerUser,
    AnyUser,
    HotlineDep,
    OperatorUser,
    StaffUser,
    SupervisorUser,
    TreeReader,
    off_the_webhooks,
    reporting,
)
from ivr.exceptions import SourceError
from ivr.hotline import CaseRefused, ConnectFailed, Hotline
from ivr.numbers import withheld
from ivr.stats import Report, Thresholds, figures, intervals, time_zone
from ivr.store import reading, tree_version_list

# A time in a query: with a zone (`Z`, `+08:00`), and one that is a time in UTC too.
QueryTime = Annotated[AwareDatetime, AfterValidator(in_utc)]

# -- errors, as the OpenAPI schema documents them ------------------------------------------


class ErrorMessage(BaseModel):
    detail: str


class FieldError(BaseModel):
    """One of FastAPI's request validation errors."""

    model_config = ConfigDict(extra="allow")
    loc: list[str | int]
    msg: str
    type: str


class TreeProblems(BaseModel):
    message: str
    problems: list[str] = Field(description="`file:line: error: node.path: message`, each")


class Unprocessable(BaseModel):
    detail: list[FieldError] | TreeProblems | str = Field(
        description="the request's fields that are wrong, the call tree's problems (reload), "
        "or why the values cannot go together (an unknown cursor, since after until)"
    )


_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}


def _not_stored(response: Response) -> None:
    # Cases hold callers' numbers and what they told us: no browser or proxy cache keeps them.
    # (A route that returns a Response of its own says so itself: calls.csv, recordings.)
    response.headers["Cache-Control"] = "no-store"


router = APIRouter(
    prefix="/api",
    tags=["agents"],
    # HTTPBearer(auto_error=False) only declares the scheme in the OpenAPI schema; the tokens
    # are checked by the routes' user dependencies (401 without one, 403 for a wrong role, 429
    # for too many wrong ones: `ivr.deps.current_user`).
    dependencies=[Depends(HTTPBearer(auto_error=False)), Depends(_not_stored)],
    responses={
        401: {"model": ErrorMessage, "description": "no valid bearer token"},
        403: {"model": ErrorMessage, "description": "not for this user's role"},
        422: {"model": Unprocessable, "description": "the request cannot be processed"},
        429: {
            "model": ErrorMessage,
            "description": "too many wrong tokens from this client address",
            "headers": _RETRY_AFTER,
        },
    },
)


def not_found(what: str) -> dict[int | str, dict[str, Any]]:
    return {404: {"model": ErrorMessage, "description": f"no such {what}"}}


def mask(number: str | None) -> str:
    """A caller's number as supervisors and queue lists see it: the last 4 digits only;
    none for a withheld one (Twilio's +266696687, "ANONYMOUS" on a keypad, is no number)."""
    if withheld(number):
        return ""
    digits = "".join(c for c in number or "" if c.isdigit())
    return f"***{digits[-4:]}" if digits else ""


class QueueEntry(BaseModel):
    position: int
    case_id: int
    ticket: str
    priority: str
    reason: str
    queue: str
    status: str
    verified: str
    waiting_seconds: int
    caller: str
    not_before: datetime | None = Field(
        default=None, description="a call back nobody answered: not offered before this"
    )
    language: str | None = Field(
        default=None, description="the language the caller chose (a prompt catalog's code)"
    )
    same_number_on_the_line: int | None = Field(
        default=None,
        description="callers of this number holding on the line now, this one among them, "
        "when more than one (a dialer flooding the line, or one caller on two phones: the "
        "thief may spoof a victim's number, so neither is turned away); else null",
    )


class RepeatedNumber(BaseModel):
    """A number holding more than one place on the line at once."""

    caller: str  # masked
    on_the_line: int
    emergencies: int


class LineCount(BaseModel):
    """What waits in one queue."""

    queue: str
    waiting: int
    on_the_line: int
    longest_seconds: int


class LanguageCount(BaseModel):
    language: str | None  # None: not chosen (a case opened before languages were kept)
    waiting: int


class QueueCounts(BaseModel):
    """Every case in line counted, however many are listed (`WaitingLine.entries`)."""

    waiting: int
    on_the_line: int  # callers holding
    call_backs: int  # owed to callers who hung up or asked for one
    emergencies: int
    late_on_the_line: int  # holding past their service-level target
    late_call_backs: int  # emergency call backs owed past the emergency target
    ready: int  # those agents may take now: not held back until a retry time
    ready_emergencies: int
    ready_longest_seconds: int  # 0 when none is ready
    by_queue: list[LineCount]  # by queue name
    by_language: list[LanguageCount]  # by language code, "not chosen" among them


@dataclass(frozen=True)
class WaitingLine:
    entries: list[QueueEntry]  # the first QUEUE_LISTED in serving order
    counts: QueueCounts
    repeated: list[RepeatedNumber]  # numbers on the line more than once, the most first
    # The emergency callers on the line by how their verification went (yes, no, skipped...).
    emergency_verification: dict[str, int]
    # Calls that began in the last ARRIVALS_OVER, and in the same time before it: a surge.
    arrivals: tuple[int, int] = (0, 0)


ARRIVALS_OVER = timedelta(minutes=15)


QUEUE_LISTED = 500
# The figures' default service-level targets: a wait past them is late on the queue page.
QUEUE_TARGETS = Thresholds()


class Verification(BaseModel):
    result: str = Field(
        description="yes, no (details that did not match: on the last try, or on an earlier "
        "one before the caller hung up, skipped or fell silent), skipped, locked, unavailable "
        "or not_attempted"
    )
    factors: list[str] = Field(
        description="what matched, by name (never the digits): uid, pin, id_last4, totp, "
        "phone; a case from before this was recorded may say pin_or_id_last4"
    )
    partial: bool = Field(
        default=False,
        description="yes, but on no PIN or authenticator code (the ID document's last 4 "
        "digits, which leak with the ID number): weaker. The account's earlier cases stay "
        "hidden from the agent as for an unverified caller",
    )


class AccountFrozen(BaseModel):
    at: datetime
    action: Literal["self_freeze", "freeze"] = Field(
        description="self_freeze: the verified caller's own, on the emergency path; freeze: an "
        "agent's"
    )
    by: str = Field(description="caller:CallSid, or agent:name")
    ticket: str | None = Field(description="the case it was made on")
    this_case: bool = Field(description="made on this very case")


class CaseDetail(BaseModel):
    id: int
    ticket: str
    call_sid: str = Field(description="the call it was opened on: its timeline in the call log")
    status: str
    priority: str
    reason: str
    queue: str
    account_uid: str | None
    caller: str | None
    verification: Verification
    risk: dict[str, str] = Field(
        description="signals only: `caller_id_match` (yes, no, unknown, withheld), "
        "`stir_verstat` (Twilio's), `callback_keyed` (yes: the caller hid their number and "
        "keyed the one to call back on; nobody vouched for it), `reported_number` (a number "
        "that called or texted the caller claiming to be the exchange, and is not one of its "
        "own: a scam to look into), `under_guessing` (`failures/numbers`: someone keyed that "
        "many wrong answers for this account lately, from that many numbers (withheld ones "
        "counted as one), enough to lock it: if this caller is the owner, freeze first)"
    )
    freeze: dict[str, str]
    menu_path: list[str]
    parent_ticket: str | None
    callback_number: str | None
    notes: str | None
    created_at: datetime
    earlier_cases: list[dict[str, Any]] = Field(
        description="the account's earlier cases, newest first (up to 20): id, ticket, reason, "
        "status, created_at, notes. To an agent, whole only once the caller verified "
        "(`verification.result` yes); else their status and created_at, the rest null: anyone "
        "may key an account's UID, and a ticket takes them to the case's team by main menu 9"
    )
    callback_attempts: int = Field(default=0, description="call backs nobody answered so far")
    claimed_from: str | None = Field(
        default=None,
        description="what the case was when an agent took it: waiting (a caller on the "
        "line), abandoned or callback_requested (a call back)",
    )
    offer: str | None = Field(
        default=None,
        description="how the current offer reaches the caller (a Connect mode); none in line",
    )
    language: str | None = Field(
        default=None,
        description="the language the caller chose (a prompt catalog's code): speak it to them",
    )
    accept_by: datetime | None = Field(
        default=None,
        description="offered to you at your desk while you were available (nothing rang your "
        "phone for it: a call back to dial by hand, a withheld number): accept it by then "
        "(POST /api/cases/{id}/accept), or it goes to the next agent and you are set away",
    )
    transfer: TransferInfo | None = Field(
        default=None,
        description="an agent sent the caller on to this queue (POST /api/cases/{id}/transfer): "
        "who, and what they said",
    )
    moved: MovedInfo | None = Field(
        default=None,
        description="a supervisor moved it in line to its priority now "
        "(POST /api/cases/{id}/priority): who, from what, and why",
    )
    on_call: bool = Field(
        default=False,
        description="connected, and the agent's leg of the call has not ended yet: its agent "
        "resolves it once they have hung up",
    )
    dropped_after_seconds: int | None = Field(
        default=None,
        description="connected, and the caller's talk with its agent ended this many seconds "
        "after it began, under a minute: they dropped before much could be done. Its agent may "
        "put it back in line to be called back (POST /api/cases/{id}/requeue); an emergency "
        "such with nothing frozen is resolved only with a freeze or `nothing_needed`",
    )
    ticket_text: Literal["due", "sending", "sent", "failed", "stale", "skipped"] | None = Field(
        default=None,
        description="the ticket texted to the caller (IVR_TEXT_TICKETS): `sent` (Twilio took "
        "it), `failed` (refused: a landline, say), `due`/`sending` (on its way), `skipped` "
        "(another ticket of the call, or of the number within ten minutes, was texted), "
        "`stale` (not sent: found over an hour late); none: not texted (the setting off, a "
        "withheld number, or one outside IVR_CALLBACK_PREFIXES)",
    )
    account_frozen: AccountFrozen | None = Field(
        default=None,
        description="the case's account is frozen: its latest freeze that was made, by anyone "
        "on any case, with no unfreeze (`ivr accounts unfreeze`) since; `freeze` says only "
        "this case's. None: not frozen by the hotline (the exchange may have frozen it, or "
        "lifted a freeze, by its own means)",
    )
    working_notes: list[CaseNote] = Field(
        default=[],
        description="what the agents who had the case wrote on it while they worked it "
        "(POST /api/cases/{id}/notes), earliest first: the next agent after a transfer or a "
        "give-back reads them. To an agent, once the case is theirs (accepted, if offered at "
        "their desk)",
    )
    talk_started_at: datetime | None = Field(
        default=None,
        description="connected: when the agent's phone answered (or, not known, when the "
        "caller was put through to it); the talk timer counts from it",
    )
    talk_ended_at: datetime | None = Field(
        default=None,
        description="connected: when the talk ended, the agent's leg or the caller's call, "
        "whichever ended first; the after-call (wrap-up) timer counts from it. Null while "
        "they talk",
    )
    caller_left_at: datetime | None = Field(
        default=None,
        description="connected, and the caller's call is over (they hung up, or it dropped): "
        "call them back (POST /api/cases/{id}/requeue) or wrap up. Null while they are on the "
        "line, and for a call back (Twilio's call to them is not in the log: its end is "
        "`talk_ended_at`)",
    )


class CaseNote(BaseModel):
    by: str = Field(description="who wrote it, as the audit names staff (`agent:alice`)")
    at: datetime
    text: str


class NoteRequest(BaseModel):
    text: str = Field(
        min_length=1,
        max_length=NOTE_AT_MOST,
        description="what you want the next agent (and supervisors) to know. Never a "
        "caller's PIN, authenticator code or ID document digits: a run of 6 digits, or of 4 in "
        "a note about an ID document, a PIN or a code, is refused (422), nothing kept",
    )


class MovedInfo(BaseModel):
    by: str = Field(description="the supervisor (`supervisor:name`)")
    was: str = Field(description="its priority before")
    why: str


class EarlierTransfer(BaseModel):
    by: str = Field(description="the agent who sent the caller on")
    from_queue: str = Field(description="the queue the case was in before")
    note: str = Field(description="what they said for the next agent")


class TransferInfo(BaseModel):
    by: str = Field(description="the agent who sent the caller on")
    note: str = Field(description="what they said for the next agent")
    to: str | None = Field(
        default=None,
        description="asked, the caller not there yet: the queue they are on their way to "
        "(they go when the agent's leg ends)",
    )
    from_queue: str | None = Field(
        default=None, description="made: the queue the case was in before"
    )
    count: int = Field(default=0, description="transfers made so far")
    earlier: list[EarlierTransfer] = Field(
        default=[], description="the transfers made before this one, oldest first"
    )


class Connect(BaseModel):
    mode: str = Field(
        description="redirected (the caller is on the way to your phone), next_hold_poll (at "
        "their next hold round), calling_back (Twilio is calling them, then you), call_back "
        "(dial `number` yourself) or no_number (their number was withheld: act on the account, "
        "then resolve)"
    )
    number: str | None = None


class Claimed(BaseModel):
    case: CaseDetail | None
    connect: Connect | None


class FreezeRequest(BaseModel):
    reason: str = Field(min_length=3, max_length=500)
    account_uid: str | None = Field(
        default=None,
        pattern=r"^[0-9]{1,32}$",
        description="the account to freeze, when the caller keyed none on the phone (they "
        "skipped, or panicked) or keyed the wrong one: the agent found it with them. The "
        "case's own account otherwise.",
    )


class FreezeResult(BaseModel):
    frozen: bool
    detail: str


class ResolveRequest(BaseModel):
    notes: str = Field(default="", max_length=5000)
    reached: bool = Field(
        default=False,
        description="a call back you dialled yourself (connect mode call_back): you spoke to "
        "the customer. It counts as a call back made, its handle time from when you took it "
        "(the hotline knows of every other call itself: refused there, 409). Resolving an "
        "emergency call back of yours needs it, or an account frozen on the case",
    )
    nothing_needed: bool = Field(
        default=False,
        description="an emergency whose caller dropped (`dropped_after_seconds`) with nothing "
        "frozen: you say it needs no freeze nor call back (not a hijack, a prank, a wrong key; "
        "say why in the notes). Resolving such a case needs it, a freeze, or a call back "
        "(POST /api/cases/{id}/requeue) instead (409)",
    )


def _account_frozen(
    raw: dict[str, Any], user: User, verification: Verification
) -> AccountFrozen | None:
    """The account's freeze as `user` may see it: another case's ticket only as `_earlier`
    shows one (what main menu 9 takes to be put through as that case's caller)."""
    made = raw.get("account_frozen")
    if not made:
        return None
    this_case = made["case_id"] == raw["id"]
    whole = this_case or _sees_owners_cases(user, verification)
    return AccountFrozen(
        at=made["at"],
        action=made["action"],
        # A caller's own freeze is by `caller:<CallSid>`, and that call's timeline names its
        # ticket: to an agent who may not see it, "caller" only (staff are named).
        by="caller" if not whole and made["actor"].startswith("caller:") else made["actor"],
        ticket=made["ticket"] if whole else None,
        this_case=this_case,
    )


def _detail(raw: dict[str, Any], user: User) -> CaseDetail:
    """The case as `user` may see it: whole numbers only for the agent whose case it is, once
    they accepted it if it was offered at their desk (dialled before, it could go on to the
    next agent, who calls too; and an agent who never accepts would collect numbers)."""
    flags = raw["flags"] or {}
    theirs = user.role == "agent" and raw["agent_id"] == user.id and raw["accept_by"] is None
    shown = (lambda number: number) if theirs else (lambda number: mask(number) or None)
    verification = _verification(flags)
    return CaseDetail(
        id=raw["id"],
        ticket=raw["ticket"],
        call_sid=raw["call_sid"],
        status=raw["status"],
        priority=raw["priority"],
        reason=raw["reason"],
        queue=raw["queue"],
        account_uid=raw["account_uid"],
        caller=shown(raw["caller"]),
        verification=verification,
        risk={k: flags[k] for k in RISK_FLAGS if flags.get(k)},
        freeze={k: flags[k] for k in ("self_freeze", "agent_freeze", "also_frozen") if k in flags},
        menu_path=raw["menu_path"],
        parent_ticket=raw["parent_ticket"],
        callback_number=shown(raw["callback_number"]),
        notes=raw["notes"],
        created_at=raw["created_at"],
        earlier_cases=_earlier(raw["earlier_cases"], user, verification),
        callback_attempts=int(flags.get("callback_attempts", 0) or 0),
        claimed_from=raw["claimed_from"],
        offer=(raw["offer"] or "").split(":", 1)[0] or None,  # never the outbound call's sid
        accept_by=raw["accept_by"],
        language=raw["language"],
        ticket_text=raw["ticket_text"],
        on_call=raw.get("on_call", False),
        dropped_after_seconds=raw.get("dropped_after"),
        transfer=_transfer(raw),
        account_frozen=_account_frozen(raw, user, verification),
        working_notes=_notes(raw) if user.role != "agent" or theirs else [],
        **_talk(raw),
        moved=MovedInfo(
            by=flags["priority_set_by"],
            was=flags.get("priority_was", ""),
            why=flags.get("priority_note", ""),
        )
        if flags.get("priority_set_by")
        else None,
    )


def _notes(raw: dict[str, Any]) -> list[CaseNote]:
    return [CaseNote.model_validate(n) for n in working_notes(raw)]


def _talk(raw: dict[str, Any]) -> dict[str, datetime | None]:
    """A connected case's talk, for the desk's timers: from the agent's phone answering (or
    being put through to it), to the first end reported, the agent's leg or the caller's
    call; and that end of the caller's."""
    if raw["status"] != "connected":
        return {"talk_started_at": None, "talk_ended_at": None, "caller_left_at": None}
    left = raw.get("caller_left_at")
    ends = [e for e in (raw["talk_ended_at"], left) if e is not None]
    return {
        "talk_started_at": raw["answered_at"] or raw["connected_at"],
        "talk_ended_at": min(ends) if ends else None,
        "caller_left_at": left,
    }


RISK_FLAGS = (
    "caller_id_match",
    "stir_verstat",
    "callback_keyed",
    "reported_number",
    "under_guessing",
)
# Factors that prove more than an ID document's digits, which leak with the ID number.
# A verification by one of these is whole; by ID digits alone, partial. A case recorded
# before the matched factor was (`pin_or_id_last4`) is taken as whole, as it was shown then.
STRONG_FACTORS = frozenset({"pin", "totp", "pin_or_id_last4"})


def _verification(flags: dict[str, Any]) -> Verification:
    result = flags.get("verified", "not_attempted")
    factors = [f for f in flags.get("factors", "").split(",") if f]
    # A case from before the factor that matched was recorded says pin_or_id_last4: taken
    # as it was then, not marked down after the fact.
    partial = result == "yes" and not STRONG_FACTORS.intersection(factors)
    return Verification(result=result, factors=factors, partial=partial)


# What an agent sees of an earlier case of the account of a caller who did not verify: that
# there was one, when, and whether it is still open. Enough to know the account has a history
# (or a case in line now) and to ask the caller to verify; nothing of the owner's to read out.
_UNVERIFIED_SEES = ("status", "created_at")


def _earlier(
    earlier: list[dict[str, Any]], user: User, verification: Verification
) -> list[dict[str, Any]]:
    """An account's earlier cases, as `user` may see them for a caller verified so. Anyone
    may key an account's UID and skip the PIN: to an agent, such a caller's earlier cases are
    their status and date only; so are those of a caller verified by ID digits alone, which
    leak with the ID number. Notes say what the owner told us (a new email, a date of
    birth); a ticket is what main menu 9 takes to hear the case's status and be put through
    to its team as its owner; a reason says what the owner called about."""
    if _sees_owners_cases(user, verification):
        return earlier
    return [{k: v if k in _UNVERIFIED_SEES else None for k, v in case.items()} for case in earlier]


def _sees_owners_cases(user: User, verification: Verification) -> bool:
    """Whether `user` sees the account's other cases whole for a caller verified so."""
    return user.role != "agent" or (verification.result == "yes" and not verification.partial)


def _transfer(raw: dict[str, Any]) -> TransferInfo | None:
    flags = raw["flags"] or {}
    if not flags.get("transferred_by"):
        return None
    asked = transfer_asked(raw)
    return TransferInfo(
        by=flags["transferred_by"],
        note=flags.get("transfer_note", ""),
        to=asked.queue if asked else None,
        from_queue=flags.get("transferred_from") or None,
        count=int(flags.get("transfers", "0") or 0),
        earlier=[
            EarlierTransfer(
                by=t.get("by", ""), from_queue=t.get("from", ""), note=t.get("note", "")
            )
            for t in earlier_transfers(flags)
        ],
    )


class HeldEntry(BaseModel):
    case_id: int
    ticket: str
    priority: str
    queue: str
    reason: str
    status: str = Field(description="offered (taken, not connected yet) or connected")
    claimed_from: str | None = Field(description="waiting: a caller on the line; else a call back")
    offer: str | None = Field(description="how the offer reaches the caller (a Connect mode)")
    verified: str
    agent: str
    agent_revoked: bool
    held_seconds: int = Field(description="since the agent took it")
    accept_by: datetime | None = Field(
        default=None, description="offered at the agent's desk, not accepted yet: by then"
    )
    after_call_seconds: int | None = Field(
        default=None,
        description="since the agent's leg of the call ended (their notes, wrap-up); null "
        "while they talk, or before they were put through",
    )
    agent_gone: str | None = Field(
        default=None,
        description="why the agent is gone, if they are: signed_out, set_away (by a "
        "supervisor), missed, not_accepted (an offer), timed_out. Their case waits for a "
        "supervisor to take it back or close it",
    )


@router.get("/cases/held")
def held(user: SupervisorUser, hotline: HotlineDep) -> list[HeldEntry]:
    """Every case an agent has now, and who: emergencies first, then the longest held. A
    supervisor takes one back (`requeue`) or closes it (`resolve`) when its agent cannot."""
    now = hotline.clock()
    with hotline.db.connect() as conn:
        rows = held_by_agents(conn)
    return [
        HeldEntry(
            case_id=r["id"],
            ticket=r["ticket"],
            priority=r["priority"],
            queue=r["queue"],
            reason=r["reason"],
            status=r["status"],
            claimed_from=r["claimed_from"],
            offer=(r["offer"] or "").split(":", 1)[0] or None,
            verified=(r["flags"] or {}).get("verified", "not_attempted"),
            agent=r["agent"],
            agent_revoked=r["agent_revoked_at"] is not None,
            held_seconds=max(0, int((now - (r["offered_at"] or now)).total_seconds())),
            accept_by=r["accept_by"],
            after_call_seconds=None
            if r["talk_ended_at"] is None
            else max(0, int((now - r["talk_ended_at"]).total_seconds())),
            agent_gone=agent_gone(r),
        )
        for r in rows
    ]


class Page(BaseModel):
    """A text to the on-call about an emergency left waiting (IVR_PAGE_NUMBERS)."""

    at: datetime
    ticket: str | None = Field(description="the emergency case first in line then")
    waiting: int = Field(description="emergency cases in line then")
    waited_seconds: int = Field(description="how long the first of them had waited")
    result: oncall.PageResult = Field(
        description="`sent` to at least one number, `failed` (Twilio refused every number: "
        "tried again a minute later), `undelivered` (Twilio took it, and its reports say it "
        "reached none of those numbers: tried again a minute later), `logged` (no numbers "
        "set: the log's error is the alert), `sending` (being sent, or the instance stopped "
        "while sending)"
    )
    sent: int = Field(description="numbers Twilio took the text or call for")
    failed: int = Field(description="numbers it refused")
    undelivered: int = Field(
        description="of the numbers Twilio took it for, those its status callbacks say it "
        "did not reach: the text undelivered, the call (IVR_PAGE_CALL) not answered"
    )
    id: int
    next_at: datetime = Field(
        description="no page before then; the latest page may be acknowledged until then"
    )
    acked_at: datetime | None = Field(description="when someone said they were coming")
    acked_by: str | None = Field(
        description="who: the on-call number that pressed 1 on the page's call, or the user"
    )


@router.get("/oncall/pages")
def on_call_pages(
    user: SupervisorUser,
    hotline: HotlineDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[Page]:
    """The on-call paged because an emergency waited IVR_PAGE_AFTER seconds, newest first."""
    with hotline.db.connect() as conn:
        return [Page.model_validate(row) for row in oncall.recent(conn, limit=limit)]


PageIdPath = Annotated[int, Path(ge=1, le=2**31 - 1)]
OVER = (
    "this page is over: a later one went out, or its emergencies were answered (if they "
    "still wait, the on-call are paged again)"
)


@router.post(
    "/oncall/pages/{page_id}/ack",
    responses={
        404: {"model": ErrorMessage, "description": "no such page"},
        409: {
            "model": ErrorMessage,
            "description": "someone else acknowledged it first, or the page is over",
        },
    },
)
def acknowledge_page(
    page_id: PageIdPath,
    user: SupervisorUser,
    hotline: HotlineDep,
) -> Page:
    """You are coming: the page says so (the queue page too), the other on-call numbers are
    texted, and the next page waits IVR_PAGE_REPEAT from now (it still comes if
    emergencies are waiting then). Saying it again does nothing more. Only the page in
    force (the latest, until its `next_at`): one that is over would hold back the page
    for whoever waits now."""
    try:
        acked = hotline.acknowledge_page(page_id, user.name, how="api", but=user.phone)
    except oncall.PageOver:
        raise HTTPException(409, OVER) from None
    if acked is None:
        raise HTTPException(404, "no such page")
    if not acked.now and acked.by != user.name:
        raise HTTPException(409, f"{acked.by} acknowledged it already, at {acked.at:%H:%M} UTC")
    with hotline.db.connect() as conn:
        page = oncall.get(conn, page_id=page_id)
    assert page is not None
    return Page.model_validate(page)


@router.get(
    "/queue",
    responses={
        200: {
            "headers": {
                "X-Total-Count": {
                    "description": f"every case in line; the list stops at {QUEUE_LISTED}",
                    "schema": {"type": "integer"},
                }
            }
        }
    },
)
def queue(user: StaffUser, hotline: HotlineDep, response: Response) -> list[QueueEntry]:
    """Cases in line in serving order: the first 500; `X-Total-Count` counts them all."""
    line = waiting_line(user, hotline)
    response.headers["X-Total-Count"] = str(line.counts.waiting)
    return line.entries


def _waited(now: datetime, joined: datetime) -> int:
    return max(0, int((now - joined).total_seconds()))


def _late_if_joined_by(now: datetime, target: timedelta) -> datetime:
    """Waits are shown in whole seconds, and late once they show more than the target: by
    this the count and each row's mark agree to the second."""
    return now - timedelta(seconds=math.floor(target.total_seconds()) + 1)


def waiting_line(user: User, hotline: Hotline) -> WaitingLine:
    """The first QUEUE_LISTED cases in line and the counts of all of them, in one read."""
    now = hotline.clock()
    with hotline.db.connect() as conn, reading(conn):
        rows = waiting_cases(conn, limit=QUEUE_LISTED)
        counts = _queue_counts(conn, now)
        repeated = repeated_callers(conn)
        verification = emergencies_by_verification(conn)
        arrivals = calls_begun(conn, now=now, over=ARRIVALS_OVER)
    times = {r.caller: r.on_the_line for r in repeated}
    return WaitingLine(
        _entries(rows, now, times),
        counts,
        [
            RepeatedNumber(
                caller=mask(r.caller), on_the_line=r.on_the_line, emergencies=r.emergencies
            )
            for r in repeated
        ],
        verification,
        arrivals,
    )


def desk_line(user: User, hotline: Hotline) -> tuple[QueueCounts, list[str]]:
    """The counts, and the tickets of the emergencies agents may take now (the first 100),
    in one read: the desk's line, which says a new emergency by its ticket."""
    now = hotline.clock()
    with hotline.db.connect() as conn, reading(conn):
        return _queue_counts(conn, now), ready_emergency_tickets(conn, now=now)


def _queue_counts(conn: Connection, now: datetime) -> QueueCounts:
    groups = waiting_counts(
        conn,
        now=now,
        late_if_joined_by=_late_if_joined_by(now, QUEUE_TARGETS.other),
        emergency_late_if_joined_by=_late_if_joined_by(now, QUEUE_TARGETS.emergency),
    )
    by_queue: dict[str, LineCount] = {}
    by_language: dict[str | None, int] = {}
    for g in groups:
        line = by_queue.setdefault(
            g.queue, LineCount(queue=g.queue, waiting=0, on_the_line=0, longest_seconds=0)
        )
        line.waiting += g.cases
        line.on_the_line += g.cases if g.on_the_line else 0
        line.longest_seconds = max(line.longest_seconds, _waited(now, g.first_joined))
        by_language[g.language] = by_language.get(g.language, 0) + g.cases
    ready = [g for g in groups if not g.held_back]
    emergency = [g for g in groups if g.priority == "emergency"]
    return QueueCounts(
        waiting=sum(g.cases for g in groups),
        on_the_line=sum(g.cases for g in groups if g.on_the_line),
        call_backs=sum(g.cases for g in groups if not g.on_the_line),
        emergencies=sum(g.cases for g in emergency),
        late_on_the_line=sum(g.late for g in groups if g.on_the_line),
        late_call_backs=sum(g.late for g in emergency if not g.on_the_line),
        ready=sum(g.cases for g in ready),
        ready_emergencies=sum(g.cases for g in ready if g.priority == "emergency"),
        ready_longest_seconds=max((_waited(now, g.first_joined) for g in ready), default=0),
        by_queue=[by_queue[name] for name in sorted(by_queue)],
        # Sorted as the page always showed them: "not chosen" among the codes.
        by_language=[
            LanguageCount(language=language, waiting=n)
            for language, n in sorted(by_language.items(), key=lambda kv: kv[0] or "not chosen")
        ],
    )


def _entries(
    rows: list[dict[str, Any]], now: datetime, times: dict[str, int] | None = None
) -> list[QueueEntry]:
    """`times`: how many times each number repeated on the line holds a place there."""
    times = times or {}
    return [
        QueueEntry(
            position=i,
            case_id=r["id"],
            ticket=r["ticket"],
            priority=r["priority"],
            reason=r["reason"],
            queue=r["queue"],
            status=r["status"],
            verified=(r["flags"] or {}).get("verified", "not_attempted"),
            waiting_seconds=_waited(now, r["queued_at"] or r["created_at"]),
            caller=mask(r["caller"]),
            not_before=r["not_before"] if r["not_before"] and r["not_before"] > now else None,
            language=r["language"],
            same_number_on_the_line=times.get(r["caller"]) if r["status"] == "waiting" else None,
        )
        for i, r in enumerate(rows, start=1)
    ]


class Staffing(BaseModel):
    """What the hold loop's estimate is made of, and what a caller joining now would hear."""

    agents_at_work: int = Field(
        description="agents (not revoked) who are available, or hold a case they took or were "
        "put through on in the last 2 hours, or ended one in the last 30 minutes"
    )
    agents_available: int = Field(
        description="of them, those who said they are available: offered cases as they come"
    )
    handle_seconds: float = Field(
        description="what the estimate counts per case: the median time from an agent taking "
        "a case to its end over the last hour, or IVR_AVG_HANDLE_SECONDS"
    )
    handle_measured_over: int = Field(
        description="cases agents ended in the last hour (the latest 500; any held over 2 "
        "hours left out: left open, not worked)"
    )
    handle_source: Literal["measured", "setting"] = Field(
        description="measured once agents ended 5 cases in the last hour; the setting before"
    )
    ready_emergencies: int = Field(description="emergencies in line that agents may take now")
    ready_others: int = Field(description="the other cases in line that agents may take now")
    new_caller_wait_seconds: int | None = Field(
        description="the estimate a caller joining the line now at normal priority hears; "
        "null with nobody at work: no minutes are said"
    )
    new_emergency_wait_seconds: int | None = Field(
        description="the estimate a hijack victim joining the line now hears (null as above)"
    )


@router.get("/staffing")
def staffing(user: StaffUser, hotline: HotlineDep) -> Staffing:
    now = hotline.clock()
    figures_now = hotline.refresh_staffing()
    with hotline.db.connect() as conn:
        emergencies, others = ready_in_line(conn, now=now)
    default = hotline.settings.avg_handle_seconds
    nobody = figures_now.agents == 0  # as the hold loop says it: no minutes
    return Staffing(
        agents_at_work=figures_now.agents,
        agents_available=figures_now.available,
        handle_seconds=round(figures_now.handle(default), 1),
        handle_measured_over=figures_now.handled,
        handle_source="setting" if figures_now.handle_seconds is None else "measured",
        ready_emergencies=emergencies,
        ready_others=others,
        new_caller_wait_seconds=None
        if nobody
        else round(figures_now.wait_seconds(emergencies + others + 1, default_handle=default)),
        new_emergency_wait_seconds=None
        if nobody
        else round(figures_now.wait_seconds(emergencies + 1, default_handle=default)),
    )


class Presence(BaseModel):
    """Whether cases come to the agent as they come, or only when they ask (`next`)."""

    available: bool = Field(
        description="true: offered the next case in line whenever they have none (their phone "
        "rings within IVR_DISPATCH_INTERVAL); false (away): cases come only from `next`. An "
        "offer their phone does not take, a case they give back, or 8 hours without a case "
        "set them away"
    )
    since: datetime | None = Field(
        default=None,
        description="available: since when they have waited for a case (moved on as each of "
        "their cases ends; the longest idle is offered first)",
    )
    away_reason: AwayReason | None = Field(
        default=None,
        description="away, and not by their own say: missed (a case rang their phone and it "
        "did not take the call), gave_back, taken_back (by a supervisor), timed_out (a case "
        "offered to them never reached its caller), signed_out, set_away (by a supervisor), "
        "lapsed (8 hours without a case)",
    )


class PresenceChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    available: bool


class AgentState(BaseModel):
    """One agent as a wallboard shows them."""

    name: str
    state: Literal["on_case", "available", "away"] = Field(
        description="on_case: they have a case (taken or connected), whether available or "
        "not; available: waiting for the next case to come to them; away: cases come only "
        "when they ask"
    )
    available: bool
    idle_seconds: int | None = Field(
        description="available: how long they have waited for a case (since they said so, or "
        "since their last case ended); null when away or on a case"
    )
    holding: int = Field(description="the cases they have now")
    away_reason: AwayReason | None = Field(
        default=None, description="away, and not by their own say: why (as for presence)"
    )
    languages: list[str] | None = Field(
        default=None,
        description="the languages they speak: callers in them are offered to them first; "
        "null: every language",
    )


@router.get("/agents")
def agents(user: StaffUser, hotline: HotlineDep) -> list[AgentState]:
    """Every agent (not revoked), by name: on a case, available, or away."""
    now = hotline.clock()
    with hotline.db.connect() as conn:
        rows = agents_presence(conn, now=now)
    return [
        AgentState(
            name=r["name"],
            state="on_case" if r["holding"] else ("available" if r["available_since"] else "away"),
            available=r["available_since"] is not None,
            idle_seconds=None
            if r["available_since"] is None or r["holding"]
            else max(0, int((now - r["available_since"]).total_seconds())),
            holding=r["holding"],
            away_reason=r["away_reason"],
            languages=spoken(r["languages"]),
        )
        for r in rows
    ]


@router.get("/agents/presence")
def get_presence(user: AgentUser, hotline: HotlineDep) -> Presence:
    since, why = hotline.presence(user)
    return Presence(available=since is not None, since=since, away_reason=why)


@router.put("/agents/presence")
def put_presence(
    user: AgentUser, hotline: HotlineDep, change: Annotated[PresenceChange, Body()]
) -> Presence:
    since = hotline.set_available(user, change.available)
    return Presence(available=since is not None, since=since)


AgentName = Annotated[str, Path(pattern=USER_NAME.pattern)]


@router.post("/agents/{name}/away", responses=not_found("agent"))
def set_agent_away(name: AgentName, user: SupervisorUser, hotline: HotlineDep) -> AgentState:
    """Set an agent away who is gone without saying so (they left their desk available):
    no case comes to them unasked until they say they are available again, and they still
    take cases by asking. A case they have stays theirs (take it back with `requeue`).
    Audited (`set_away`), when they were available."""
    if not hotline.set_away(name, user):
        raise HTTPException(404, "no such agent")
    return _agent_state(name, user, hotline)


def _agent_state(name: str, user: User, hotline: Hotline) -> AgentState:
    found = next((a for a in agents(user, hotline) if a.name == name), None)
    if found is None:  # revoked meanwhile
        raise HTTPException(404, "no such agent")
    return found


LanguageCode = Annotated[str, Field(pattern=LANGUAGE_CODE.pattern)]


class Languages(BaseModel):
    languages: list[LanguageCode] | None = Field(
        description="the languages the agent speaks (prompt catalog codes: en, zh-CN); null: "
        "every language",
        min_length=1,
        max_length=16,
    )


@router.put(
    "/agents/{name}/languages",
    responses={
        **not_found("agent"),
        422: {"model": ErrorMessage, "description": "a language no prompt catalog speaks"},
    },
)
def set_agent_languages(
    name: AgentName, body: Languages, user: SupervisorUser, hotline: HotlineDep
) -> AgentState:
    """Say which languages an agent speaks (as `ivr users languages`): callers in them are
    offered to this agent first, and callers in others only once they have waited
    IVR_LANGUAGE_OVERFLOW (IVR_EMERGENCY_LANGUAGE_OVERFLOW in the emergency lane), or at
    once when no agent on shift speaks their language. Asking for the next case, they get
    an emergency in any language first, and the next of all when none in their languages
    waits."""
    why_not = unspoken(body.languages, hotline.trees.current.catalogs.languages)
    if why_not:
        raise HTTPException(422, why_not)
    try:
        with hotline.db.connect() as conn:
            found = set_languages(
                conn,
                name=name,
                languages=body.languages,
                actor=f"{user.role}:{user.name}",
                now=hotline.clock(),
            )
    except ValueError as exc:  # more than the column holds
        raise HTTPException(422, str(exc)) from None
    if not found:
        raise HTTPException(404, "no such agent")
    return _agent_state(name, user, hotline)


@off_the_webhooks(
    router.post(
        "/agents/next",
        responses={
            409: {
                "model": ErrorMessage,
                "description": "you have a case still (taken or connected): resolve it, or give "
                "it back, first",
            },
            503: {
                "model": ErrorMessage,
                "description": "the case is not yours to connect after all (its caller hung up as "
                "it was taken: back in line for a call back); ask again",
            },
        },
    )
)
def next_case(user: AgentUser, hotline: HotlineDep) -> Claimed:
    try:
        claimed = hotline.claim(user)
    except ConnectFailed as failed:
        raise HTTPException(503, failed.detail) from None
    except CaseRefused as refused:
        raise HTTPException(refused.status, refused.detail) from None
    if claimed is None:
        return Claimed(case=None, connect=None)
    case, connect = claimed
    detail = hotline.case_detail(case["id"])
    assert detail is not None
    return Claimed(case=_detail(detail, user), connect=Connect(**connect))


@router.get("/agents/cases")
def my_cases(user: AgentUser, hotline: HotlineDep) -> list[CaseDetail]:
    """The cases you have now (taken, or connected), emergencies first, then the longest held:
    what a console shows again after a reload."""
    with hotline.db.connect() as conn:
        ids = held_by(conn, agent_id=user.id)
    found = (hotline.case_detail(case_id) for case_id in ids)
    return [_detail(raw, user) for raw in found if raw is not None]


CaseIdPath = Annotated[int, Path(ge=1, le=2**31 - 1)]


CASE_REFUSED: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorMessage, "description": "no such case"},
    409: {"model": ErrorMessage, "description": "not your case, or no account to act on"},
}


@router.post(
    "/cases/{case_id}/freeze",
    responses={
        **CASE_REFUSED,
        422: {
            "model": Unprocessable,
            "description": "the fields are wrong, or no such account: the account service "
            "has none of that UID (audited as `no_account`; nothing frozen)",
        },
    },
)
def freeze(
    case_id: CaseIdPath, body: FreezeRequest, user: AgentUser, hotline: HotlineDep
) -> FreezeResult:
    """Only the agent who took the case, while they have it. `frozen` false: the account
    service did not confirm it (audited as failed: a supervisor's open freeze to chase)."""
    try:
        done = hotline.freeze_case(case_id, user, body.reason, uid=body.account_uid)
    except CaseRefused as refused:
        raise HTTPException(refused.status, refused.detail) from None
    return FreezeResult(
        frozen=done,
        detail="frozen"
        if done
        else "the account service did not confirm the freeze; it is audited as failed",
    )


@router.post("/cases/{case_id}/accept", responses=CASE_REFUSED)
def accept(case_id: CaseIdPath, user: AgentUser, hotline: HotlineDep) -> CaseDetail:
    """Accept a case offered at your desk (its `accept_by`): yours to finish from now on, as
    if you had asked for it. Accepting it again does nothing more. 409 once it is not yours:
    not accepted in time, it went back in line."""
    try:
        hotline.accept_case(case_id, user)
    except CaseRefused as refused:
        raise HTTPException(refused.status, refused.detail) from None
    detail = hotline.case_detail(case_id)
    assert detail is not None
    return _detail(detail, user)


@router.post("/cases/{case_id}/resolve", responses=CASE_REFUSED)
def resolve(
    case_id: CaseIdPath, body: ResolveRequest, user: StaffUser, hotline: HotlineDep
) -> CaseDetail:
    """The agent who took the case, while they have it, once their leg of the call has ended
    (`on_call` false); or a supervisor: a case another agent has (gone home, revoked), or a
    call back nobody has taken. Never a caller waiting on the line: they are served, not
    resolved away."""
    try:
        hotline.resolve_case(
            case_id, user, body.notes, reached=body.reached, nothing_needed=body.nothing_needed
        )
    except CaseRefused as refused:
        raise HTTPException(refused.status, refused.detail) from None
    detail = hotline.case_detail(case_id)
    assert detail is not None
    return _detail(detail, user)


@router.post(
    "/cases/{case_id}/notes",
    responses={
        **CASE_REFUSED,
        422: {
            "model": Unprocessable,
            "description": "empty, too long, or holding a run of 6 digits, or of 4 about an ID "
            "document, a PIN or a code (a caller's secrets never go in notes): nothing kept",
        },
    },
)
def add_note(
    case_id: CaseIdPath, body: NoteRequest, user: AgentUser, hotline: HotlineDep
) -> list[CaseNote]:
    """Write a note on the case you have now (accepted), kept with it, audited: the next
    agent after a transfer or a give-back reads it (`working_notes`), and supervisors on
    the call's timeline. The case's notes after it, earliest first."""
    try:
        noted = hotline.add_case_note(case_id, user, body.text)
    except CaseRefused as refused:
        raise HTTPException(refused.status, refused.detail) from None
    return [CaseNote.model_validate(n) for n in noted]


@router.post("/cases/{case_id}/not-reached", responses=CASE_REFUSED)
def not_reached(case_id: CaseIdPath, user: AgentUser, hotline: HotlineDep) -> CaseDetail:
    """A call back you dialled yourself (`offer` call_back) that nobody answered: the attempt
    counts (`callback_attempts`), and the case goes back in line to be tried again after
    IVR_CALLBACK_RETRY (doubled at each miss; an emergency's every time), as when Twilio's
    call back is not answered. You stay as you were, for the next case."""
    try:
        hotline.not_reached(case_id, user)
    except CaseRefused as refused:
        raise HTTPException(refused.status, refused.detail) from None
    detail = hotline.case_detail(case_id)
    assert detail is not None
    return _detail(detail, user)


class RequeueRequest(BaseModel):
    reason: str = Field(default="", max_length=500)


@router.post("/cases/{case_id}/requeue", responses=CASE_REFUSED)
def requeue(
    case_id: CaseIdPath,
    user: StaffUser,
    hotline: HotlineDep,
    body: Annotated[RequeueRequest | None, Body()] = None,
) -> CaseDetail:
    """Back in its place in line, as it was before it was taken, for the next agent: the
    agent who took it giving it back, or a supervisor taking it from any agent. A case not
    yet connected; or, for a supervisor, a connected one whose call is over, which its agent
    will not finish (their phone dropped, they went home): back in its place as a call
    back, its talk still counted answered; for its agent, one whose caller dropped
    (`dropped_after_seconds`): "Call them back". Audited."""
    try:
        hotline.requeue_case(case_id, user, body.reason if body else "")
    except CaseRefused as refused:
        raise HTTPException(refused.status, refused.detail) from None
    detail = hotline.case_detail(case_id)
    assert detail is not None
    return _detail(detail, user)


class PriorityRequest(BaseModel):
    priority: Literal["emergency", "high", "normal"] = Field(
        description="`emergency`: served before every other case (a hijack victim); `high`: "
        "as if it had arrived 10 minutes earlier; `normal`: in order of arrival"
    )
    reason: str = Field(min_length=3, max_length=400, description="why, for the audit log")


@router.post("/cases/{case_id}/priority", responses=CASE_REFUSED)
def set_priority(
    case_id: CaseIdPath, body: PriorityRequest, user: SupervisorUser, hotline: HotlineDep
) -> CaseDetail:
    """Move a case waiting in line (a caller holding, or a call back owed) to another
    priority in its queue, keeping its arrival: a caller found to be a hijack victim to the
    emergency lane, or a case opened as an emergency by mistake out of it. The caller hears
    their new place at their next hold round. A case an agent has is theirs to send on
    (409). Audited, with the reason."""
    reason = one_line(body.reason)
    if len(reason) < 3:
        raise HTTPException(422, "say why, in a few words")
    try:
        hotline.set_case_priority(case_id, user, body.priority, reason)
    except CaseRefused as refused:
        raise HTTPException(refused.status, refused.detail) from None
    detail = hotline.case_detail(case_id)
    assert detail is not None
    return _detail(detail, user)


class TransferRequest(BaseModel):
    queue: str = Field(
        max_length=64,
        description="one of the call tree's queues (GET /api/routes: its queue nodes)",
    )
    priority: Literal["emergency", "high", "normal"] | None = Field(
        default=None,
        description="in line there; if not given, the queue's own (its first queue node's), "
        "or the case's if that is higher (an emergency stays one unless you say otherwise). "
        "`emergency`: a caller found to be a victim of a hijack, served first",
    )
    language: str | None = Field(
        default=None,
        max_length=16,
        description="a prompt catalog's code: the caller speaks it (they chose another), so "
        "agents who speak it take the case, and they hear the hotline in it. Theirs if not given",
    )
    note: str = Field(
        min_length=3, max_length=500, description="for the agent who takes the case next"
    )


class Transferred(BaseModel):
    mode: Literal["redirected", "on_hang_up", "call_back"] = Field(
        description="redirected: the caller (or the customer of a call back Twilio placed) is "
        "on their way now (your leg ends); on_hang_up: they go when you hang up (no Twilio "
        "REST API, or it refused); call_back: a call back you dial, or a case whose call had "
        "ended: in line there at once, for that team to call back"
    )
    case: CaseDetail


@off_the_webhooks(
    router.post(
        "/cases/{case_id}/transfer",
        responses={
            **CASE_REFUSED,
            422: {
                "model": ErrorMessage,
                "description": "no such queue or language, or a transfer that changes "
                "nothing (the case's own queue, priority and language)",
            },
        },
    )
)
def transfer(
    case_id: CaseIdPath, body: TransferRequest, user: AgentUser, hotline: HotlineDep
) -> Transferred:
    """Send the caller you are talking to on: to another team's queue, an agent who speaks
    their language, or the emergency lane (a victim of a hijack who called about something
    else). They hear that they are being passed on, keep their ticket, and join that line
    (the same queue at the same priority: their place kept). A caller put through to you
    is yours until they are back in line; a call back you dial is in line there at once,
    for that team to call back; one Twilio called for you, once the customer's call leaves
    yours (moved at once with Twilio's REST API; 409 while it still rings). Audited."""
    queues = hotline.trees.current.queues
    if body.queue not in queues:
        raise HTTPException(422, f"no such queue: {body.queue} (have: {', '.join(sorted(queues))})")
    languages = hotline.trees.current.catalogs.languages
    if body.language is not None and body.language not in languages:
        raise HTTPException(
            422, f"no catalog speaks {body.language} (have: {', '.join(languages)})"
        )
    if secret_like(body.note):  # the next agent reads it, as a working note
        raise HTTPException(422, SECRET_LIKE)
    to = Transfer(
        queue=body.queue,
        priority=body.priority or queues[body.queue],
        language=body.language,
        note=one_line(body.note),
    )
    try:
        mode = hotline.transfer_case(case_id, user, to, keep_higher=body.priority is None)
    except CaseRefused as refused:
        raise HTTPException(refused.status, refused.detail) from None
    detail = hotline.case_detail(case_id)
    assert detail is not None
    return Transferred(mode=mode, case=_detail(detail, user))


# -- supervisors: the announcement callers hear first ----------------------------------------


class AnnouncementRequest(BaseModel):
    texts: dict[str, str] = Field(
        description="the text in every language callers choose in the call tree (en, zh-CN)"
    )
    minutes: int = Field(default=240, ge=1, le=7 * 24 * 60, description="how long it plays")


class AnnouncementNow(BaseModel):
    id: int
    texts: dict[str, str]
    set_by: str
    set_at: datetime
    expires_at: datetime
    heard_at: list[str] = Field(
        description="the menus of the live call tree that play it first; empty: no caller "
        "hears it (no menu has `announcement: true`)"
    )


class Cleared(BaseModel):
    cleared: bool


def _announcement(current: Current, hotline: Hotline) -> AnnouncementNow:
    return AnnouncementNow(
        id=current.id,
        texts=current.texts,
        set_by=current.set_by,
        set_at=current.set_at,
        expires_at=current.expires_at,
        heard_at=hotline.trees.current.announced_at,
    )


@router.get("/announcement")
def announcement(user: AnyUser, hotline: HotlineDep) -> AnnouncementNow | None:
    """What callers hear first now (where the call tree plays it), or null."""
    with hotline.db.connect() as conn:
        current = current_announcement(conn, now=hotline.clock())
    return None if current is None else _announcement(current, hotline)


@router.put("/announcement", responses={422: {"description": "a language missing, or text"}})
def announce(
    body: AnnouncementRequest, user: AnnouncerUser, hotline: HotlineDep
) -> AnnouncementNow:
    """Every caller hears this first (an incident, a known delay: "withdrawals are paused
    while we investigate; your funds are safe"), in their language, for `minutes`, replacing
    any other. A key or a word interrupts it, so nobody who knows what they need waits for it.
    Audited."""
    texts = tidied(body.texts)
    if found := problems(texts, languages=set(hotline.trees.current.catalogs.languages)):
        raise HTTPException(422, "; ".join(found))
    return _announcement(hotline.announce(texts, by=user, minutes=body.minutes), hotline)


@router.delete("/announcement")
def clear_announcement(user: AnnouncerUser, hotline: HotlineDep) -> Cleared:
    """Callers hear no announcement any more. Audited."""
    return Cleared(cleared=hotline.clear_announcement(by=user))


# -- supervisors: the call log --------------------------------------------------------------


class CallSummary(BaseModel):
    call_sid: str
    started_at: datetime
    ended_at: datetime | None
    duration_seconds: int | None
    status: str
    outcome: str
    topic: str | None
    queue: str | None
    priority: str | None
    verified: str
    caller: str
    ticket: str | None


class CallPage(BaseModel):
    calls: list[CallSummary]
    next_cursor: str | None


class Event(BaseModel):
    at: datetime
    node: str | None
    kind: str
    input_kind: str | None
    option: str | None
    prompt_key: str | None
    outcome: str | None
    detail: dict[str, Any] | None


class CaseRecord(BaseModel):
    id: int
    ticket: str | None = Field(
        description="null to an agent for a case not theirs and not in line (main menu 9 "
        "puts a caller through with a ticket)"
    )
    status: str
    priority: str
    queue: str
    reason: str
    verification: Verification
    agent_id: int | None
    agent: str | None = Field(description="the name of the agent who had it, if one did")
    created_at: datetime
    connected_at: datetime | None
    ended_at: datetime | None
    notes: str | None
    working_notes: list[CaseNote] | None = Field(
        default=None,
        description="what its agents wrote on it while they worked it, earliest first; to an "
        "agent, only on a case of theirs, as its closing `notes`",
    )


class AuditRecord(BaseModel):
    at: datetime
    actor: str
    action: str
    result: str
    reason: str | None
    account_uid: str | None = Field(
        description="the account acted on (a freeze's); to supervisors only, as the `account` "
        "filter is: agents see no account UIDs in the log"
    )


class RecordingRecord(BaseModel):
    """A recording of a case's call with its agent (IVR_RECORD_AGENT_CALLS), kept at Twilio."""

    ticket: str | None = Field(description="the case's (null to an agent, as in `cases`)")
    recording_sid: str | None = Field(
        description="to supervisors only (null to agents): with the account's SID it makes the "
        "media URL, which plays to anyone unless the account enforces HTTP auth on media"
    )
    status: Literal["completed", "absent"] = Field(description="`absent`: Twilio heard no audio")
    seconds: int | None
    url: str | None = Field(
        description="Twilio's media URL, to supervisors only (null to agents): fetched with the "
        "account's credentials, or found by its sid in the Twilio Console"
    )
    at: datetime = Field(description="when Twilio reported it")


_RECORDING_FIELDS = ("recording_sid", "status", "seconds", "url", "at")


class CallTimeline(BaseModel):
    call: CallSummary
    events: list[Event]
    cases: list[CaseRecord]
    audit: list[AuditRecord]
    recordings: list[RecordingRecord]


@dataclass
class CallQuery:
    """The filters every call-log route takes."""

    since: QueryTime | None = None
    until: QueryTime | None = None
    outcome: Outcome | None = None
    topic: str | None = Query(default=None, max_length=64)
    queue: str | None = Query(default=None, max_length=64)
    verified: Verified | None = None
    emergency: bool | None = None
    caller: str | None = Query(
        default=None,
        max_length=32,
        pattern=CALLER_PATTERN,
        description="a number or its last digits: matched on the last 4, as numbers are shown",
    )
    ticket: str | None = Query(
        default=None,
        pattern=r"^[0-9]{1,16}$",
        description="a case of the call has this ticket, or follows it up (main menu 9)",
    )
    account: str | None = Query(
        default=None,
        pattern=r"^[0-9]{1,32}$",
        description="the account UID of a case of the call (supervisors only)",
    )
    agent: str | None = Query(
        default=None,
        max_length=64,
        description="the name of the agent who had a case of the call (supervisors only)",
    )

    def filters(self, user: User) -> CallFilter:
        """The filters as `user` may use them: `account` is supervisors' (403: agents see no
        account UIDs in the log, and with `caller` it would tie a number to an account), and
        `agent` (a colleague's calls are their supervisor's to look through)."""
        if self.account and user.role != "supervisor":
            raise HTTPException(403, "the account filter is for supervisors")
        if self.agent and user.role != "supervisor":
            raise HTTPException(403, "the agent filter is for supervisors")
        return CallFilter(**{f: getattr(self, f) for f in CallFilter.__dataclass_fields__})


CallQueryDep = Annotated[CallQuery, Depends()]


def _sees_ticket(user: User, *, agent_id: int | None, queued: bool = False) -> bool:
    """Whether `user` is shown a case's ticket in the call log: staff but agents are; an agent
    only their own cases' (and those in line, which the queue shows every agent). A ticket is
    what main menu 9 puts a caller through with as its case's caller, and the log is open to
    every agent: joined with a time the desk shows, anyone's would be found."""
    return user.role != "agent" or agent_id == user.id or queued


def _summary(row: dict[str, Any], user: User, *, searched: str | None = None) -> CallSummary:
    """A call as `user` may see it; `searched`: the ticket they searched by (shown: they
    have it)."""
    facts = (row["state"] or {}).get("facts", {})
    own = user.role == "agent" and row["agent_id"] == user.id and row["case_accept_by"] is None
    ticket = row["ticket"]
    if ticket != searched and not _sees_ticket(user, agent_id=row["agent_id"]):
        ticket = None
    return CallSummary(
        call_sid=row["call_sid"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        duration_seconds=row["duration_seconds"],
        status=row["status"],
        outcome=row["outcome"],
        topic=facts.get("topic"),
        queue=row["case_queue"] or facts.get("queue"),
        priority=row["case_priority"] or facts.get("priority"),
        verified=facts.get("verified", "not_attempted"),
        caller=(row["from_number"] or "") if own else mask(row["from_number"]),
        ticket=ticket,
    )


@router.get("/calls")
def calls_list(
    user: StaffUser,
    hotline: HotlineDep,
    query: CallQueryDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> CallPage:
    """Calls newest first, filtered; `next_cursor` fetches the next page."""
    filters = query.filters(user)
    try:
        with hotline.db.connect() as conn:
            rows, after = list_calls(conn, filters=filters, limit=limit, cursor=cursor)
            if searches_someone(filters):
                audit_lookup(
                    conn,
                    actor=f"{user.role}:{user.name}",
                    action=SEARCH_CALLS,
                    filters=filters,
                    rows=len(rows),
                    now=hotline.clock(),
                )
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return CallPage(
        calls=[_summary(r, user, searched=filters.ticket) for r in rows], next_cursor=after
    )


class FreezeRecord(BaseModel):
    at: datetime
    action: Literal["self_freeze", "freeze", "unfreeze"] = Field(
        description="self_freeze: a verified caller's own, on the emergency path; freeze: an "
        "agent's; unfreeze: an operator's (`ivr accounts unfreeze`)"
    )
    account_uid: str | None
    by: str = Field(description="caller:CallSid, agent:name, or the operator's")
    result: str = Field(
        description="ok; failed: the account service did not confirm it; no_account: it has "
        "no account of that UID (keyed or typed wrong: nothing to chase)"
    )
    reason: str | None
    ticket: str | None = Field(description="the case it was done on")
    call_sid: str | None = Field(description="the case's call: GET /api/calls/{call_sid}")
    frozen_after: datetime | None = Field(
        default=None,
        description="a failed freeze: when the account was frozen after it (by anyone). None "
        "on a failed one: nobody has; the account may still be open to whoever took it",
    )


@router.get("/freezes")
def freezes_list(
    user: SupervisorUser,
    hotline: HotlineDep,
    since: QueryTime | None = None,
    until: QueryTime | None = None,
    open_only: Annotated[
        bool,
        Query(
            alias="open",
            description="only the failed freezes of accounts nobody has frozen since: to freeze "
            "by hand, or escalate, now",
        ),
    ] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> list[FreezeRecord]:
    """Every freeze and unfreeze in the period (by default the last 24 hours), newest first:
    what the exchange answers for after a bad day, and, above all, the freezes the account
    service did not confirm."""
    since = since or (until or hotline.clock()) - timedelta(hours=24)
    if until is not None and since >= until:
        raise HTTPException(422, "since must be before until")
    with hotline.db.connect() as conn:
        rows = freezes(conn, since=since, until=until, limit=limit, open_only=open_only)
    return [
        FreezeRecord(
            at=r["at"],
            action=r["action"],
            account_uid=r["account_uid"],
            by=r["actor"],
            result=r["result"],
            reason=r["reason"],
            ticket=r["ticket"],
            call_sid=r["call_sid"],
            frozen_after=r["frozen_after"],
        )
        for r in rows
    ]


CSV_COLUMNS = list(CallSummary.model_fields)
# The most rows one export holds (pages of CSV_PAGE): the whole file is built in memory.
CSV_PAGE, CSV_PAGES = 200, 50
CSV_MAX_ROWS = CSV_PAGE * CSV_PAGES
# A file cut at CSV_MAX_ROWS says so in its name: what a spreadsheet user sees of it.
CSV_CUT_NAME = f"calls-newest-{CSV_MAX_ROWS}-more-left-out.csv"


class CsvResponse(PlainTextResponse):
    media_type = "text/csv"


@reporting(
    router.get(
        "/calls.csv",
        # Not `response_class=CsvResponse`: the errors (403, 422, ...) are JSON, and documented so.
        response_class=Response,
        responses={
            200: {
                "content": {"text/csv": {"schema": {"type": "string"}}},
                "description": "the calls",
                "headers": {
                    "X-Truncated": {
                        "description": "`true`: more calls matched than the file holds (the"
                        f" newest {CSV_MAX_ROWS}; the file is then named {CSV_CUT_NAME}):"
                        " narrow since/until for the rest",
                        "schema": {"type": "string", "enum": ["true", "false"]},
                    }
                },
            }
        },
    )
)
def calls_csv(user: StaffUser, hotline: HotlineDep, query: CallQueryDep) -> CsvResponse:
    """The same calls as /api/calls, all pages up to 10,000 rows, as CSV for spreadsheets.
    More than that: the newest 10,000, `X-Truncated: true` and a file name that says so,
    never a file that looks whole."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    cursor = None
    filters = query.filters(user)
    written = 0
    with hotline.db.connect() as conn:
        for _ in range(CSV_PAGES):
            rows, cursor = list_calls(conn, filters=filters, limit=CSV_PAGE, cursor=cursor)
            for row in rows:
                summary = _summary(row, user, searched=filters.ticket)
                writer.writerow(summary.model_dump(mode="json"))
            written += len(rows)
            if cursor is None:
                break
        # A cursor left: calls after the last page read (list_calls looked one row further).
        cut = cursor is not None
        audit_lookup(
            conn,
            actor=f"{user.role}:{user.name}",
            action=EXPORT_CALLS,
            filters=filters,
            rows=written,
            now=hotline.clock(),
            cut=cut,
        )
    return CsvResponse(
        out.getvalue(),
        headers={
            "Content-Disposition": f'attachment; filename="{CSV_CUT_NAME if cut else "calls.csv"}"',
            "X-Truncated": "true" if cut else "false",
            "Cache-Control": "no-store",  # returned whole: the router's header is not added
        },
    )


_CASE_RECORD_OWN = ("verification", "notes", "working_notes", "ticket")


def _event(row: dict[str, Any], shown: set[str] | None) -> Event:
    """A call's event, without a ticket in its detail that its reader may not see (`shown`:
    the tickets they may; None: all). Not only the call's own cases': a follow-up's ticket
    look-up (main menu 9) names the case it followed up."""
    detail = row["detail"]
    if shown is not None and detail and "ticket" in detail and detail["ticket"] not in shown:
        detail = {k: v for k, v in detail.items() if k != "ticket"}
    return Event(**{k: row[k] for k in Event.model_fields if k != "detail"}, detail=detail)


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str = Field(
        description="who: `role:name` (staff), `caller:CallSid`, `cli:LOGIN` (or `cli:LOGIN "
        "via sudo as USER`), `system:...`, `client:DIGEST` (a failed sign-in's source)"
    )
    action: str
    result: str
    account_uid: str | None
    reason: str | None = Field(
        description="as stored: free text an agent typed, callers' numbers in it masked "
        "(`***1234`) by an erasure, blanked with its case by the purge; never a token or a "
        "verification factor's digits"
    )
    ticket: str | None = Field(description="the case it names, while the case is kept")
    call_sid: str | None = Field(description="that case's call: GET /api/calls/{call_sid}")


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_cursor: str | None


@dataclass
class AuditQuery:
    """The filters of the audit log's routes."""

    since: QueryTime | None = None
    until: QueryTime | None = None
    actor: str | None = Query(
        default=None,
        min_length=2,
        max_length=80,
        description="who, exactly as the entries name them (`agent:alice`, `cli:alice via "
        "sudo as root`), or a kind of actor, ending in a colon (`cli:`, `supervisor:`: on a "
        "long log, give since and until with it)",
    )
    action: str | None = Query(default=None, pattern=ACTION_PATTERN)
    account_uid: str | None = Query(default=None, pattern=r"^[0-9]{1,32}$")

    def filters(self) -> AuditFilter:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise HTTPException(422, "since must be before until")
        return AuditFilter(**{f: getattr(self, f) for f in AuditFilter.__dataclass_fields__})


AuditQueryDep = Annotated[AuditQuery, Depends()]


def _entry(row: dict[str, Any]) -> AuditEntry:
    return AuditEntry(**{k: row[k] for k in AuditEntry.model_fields})


@router.get("/audit")
def audit_list(
    user: SupervisorUser,
    hotline: HotlineDep,
    query: AuditQueryDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> AuditPage:
    """Who did what, when: every staff action, account change, export, search, tree
    activation, freeze, sign-in (and failed one) in the audit log, newest first, filtered;
    `next_cursor` fetches the next page. Supervisors': they see all of it already, entry by
    entry (the freezes, the calls' timelines, account UIDs and staff's reasons). A look by
    account is audited (`search_audit`), as a look through the call log by one is."""
    filters = query.filters()
    try:
        with hotline.db.connect() as conn:
            rows, after = list_audit(conn, filters=filters, limit=limit, cursor=cursor)
            if filters.account_uid:
                audit_read(
                    conn,
                    actor=f"{user.role}:{user.name}",
                    action=SEARCH_AUDIT,
                    filters=filters,
                    rows=len(rows),
                    now=hotline.clock(),
                )
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return AuditPage(entries=[_entry(r) for r in rows], next_cursor=after)


AUDIT_CSV_COLUMNS = list(AuditEntry.model_fields)
AUDIT_CSV_CUT_NAME = f"audit-newest-{CSV_MAX_ROWS}-more-left-out.csv"


@reporting(
    router.get(
        "/audit.csv",
        response_class=Response,
        responses={
            200: {
                "content": {"text/csv": {"schema": {"type": "string"}}},
                "description": "the audit entries",
                "headers": {
                    "X-Truncated": {
                        "description": "`true`: more entries matched than the file holds (the"
                        f" newest {CSV_MAX_ROWS}; the file is then named"
                        f" {AUDIT_CSV_CUT_NAME}): narrow since/until for the rest",
                        "schema": {"type": "string", "enum": ["true", "false"]},
                    }
                },
            }
        },
    )
)
def audit_csv(user: SupervisorUser, hotline: HotlineDep, query: AuditQueryDep) -> CsvResponse:
    """The same entries as /api/audit, all pages up to 10,000 rows, as CSV; more: the
    newest 10,000, `X-Truncated: true` and a file name that says so. Audited
    (`export_audit`: the filters and the row count), as a calls export is."""
    filters = query.filters()
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=AUDIT_CSV_COLUMNS)
    writer.writeheader()
    cursor, written = None, 0
    with hotline.db.connect() as conn:
        for _ in range(CSV_PAGES):
            rows, cursor = list_audit(conn, filters=filters, limit=CSV_PAGE, cursor=cursor)
            for row in rows:
                writer.writerow(_entry(row).model_dump(mode="json"))
            written += len(rows)
            if cursor is None:
                break
        cut = cursor is not None
        audit_read(
            conn,
            actor=f"{user.role}:{user.name}",
            action=EXPORT_AUDIT,
            filters=filters,
            rows=written,
            now=hotline.clock(),
            cut=cut,
        )
    name = AUDIT_CSV_CUT_NAME if cut else "audit.csv"
    return CsvResponse(
        out.getvalue(),
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Truncated": "true" if cut else "false",
            "Cache-Control": "no-store",
        },
    )


@router.get("/calls/{call_sid}", responses=not_found("call"))
def call_timeline(
    call_sid: Annotated[str, Path(pattern=r"^CA[0-9a-fA-F]{32}$")],
    user: StaffUser,
    hotline: HotlineDep,
) -> CallTimeline:
    """One call whole: every node, input kind, option, prompt, verification result (never
    digits), case, agent, freeze and hang-up, in order. To an agent, the notes of other
    agents' cases and the reasons other staff gave are hidden: they say what a customer
    told us, and the log is open to every agent. So are recordings' media URLs: listening
    is supervisors', through the audited /api/recordings."""
    with hotline.db.connect() as conn:
        found = timeline(conn, call_sid=call_sid)
        if found is not None:
            # Who read which caller's call (as `ivr calls show` is): the log is open to every
            # agent, and a look at a call that was never theirs leaves a trace.
            audit_shown(
                conn, actor=f"{user.role}:{user.name}", call_sid=call_sid, now=hotline.clock()
            )
    if found is None:
        raise HTTPException(404, "no such call")
    tickets = {
        c["id"]: c["ticket"]
        for c in found["cases"]
        if _sees_ticket(user, agent_id=c["agent_id"], queued=bool(c["queued"]))
    }
    agent = user.role == "agent"
    shown = set(tickets.values()) if agent else None
    me = f"agent:{user.name}"
    return CallTimeline(
        call=_summary(found["call"], user),
        events=[_event(e, shown) for e in found["events"]],
        cases=[
            CaseRecord(
                **{k: c[k] for k in CaseRecord.model_fields if k not in _CASE_RECORD_OWN},
                ticket=tickets.get(c["id"]),
                notes=None if agent and c["agent_id"] != user.id else c["notes"],
                working_notes=None if agent and c["agent_id"] != user.id else _notes(c),
                verification=_verification(c["flags"] or {}),
            )
            for c in found["cases"]
        ],
        audit=[
            AuditRecord(
                **{k: a[k] for k in AuditRecord.model_fields if k not in ("reason", "account_uid")},
                reason=None if agent and a["actor"] != me else a["reason"],
                account_uid=None if agent else a["account_uid"],
            )
            for a in found["audit"]
        ],
        recordings=[
            RecordingRecord(
                ticket=tickets.get(r["case_id"]),
                **{k: r[k] for k in _RECORDING_FIELDS if k not in ("url", "recording_sid")},
                # Twilio serves the audio at this URL to anyone who has it unless the account
                # enforces HTTP auth on media, and the sid makes the URL: only supervisors, who
                # may play it anyway (and are audited doing so, through /api/recordings), see
                # either.
                recording_sid=r["recording_sid"] if user.role == "supervisor" else None,
                url=r["url"] if user.role == "supervisor" else None,
            )
            for r in found["recordings"]
        ],
    )


@router.get(
    "/recordings/{recording_sid}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"audio/mpeg": {}}, "description": "the recording, as MP3"},
        206: {"content": {"audio/mpeg": {}}, "description": "the part `Range` asked for"},
        404: {
            "model": ErrorMessage,
            "description": "no such recording, no audio of it to play here, or not at Twilio "
            "any more",
        },
        502: {"model": ErrorMessage, "description": "Twilio did not give the recording"},
        503: {"model": ErrorMessage, "description": "no Twilio account set to fetch it with"},
    },
)
async def recording_audio(
    recording_sid: Annotated[str, Path(pattern=r"^RE[0-9a-fA-F]{32}$")],
    user: SupervisorUser,
    hotline: HotlineDep,
    byte_range: Annotated[str | None, Header(alias="Range", max_length=100)] = None,
) -> Response:
    """A recording of a call with an agent, fetched from Twilio as it plays (nothing of it is
    kept here); `Range` is passed on, as a browser seeking asks. Audited once per play (a
    request from its start), and for any other range unless the same user's listen of it was
    audited within the last 10 minutes (the ranges a player asks for while it plays): who
    listened to which case's call."""
    try:
        found = await run_in_threadpool(hotline.recording_to_play, recording_sid)
        upstream = await hotline.open_recording(found, byte_range=byte_range)
    except CaseRefused as refused:
        raise HTTPException(refused.status, refused.detail) from None
    try:
        if await run_in_threadpool(
            lambda: recordings.audited_as_a_listen(
                hotline.db,
                byte_range,
                actor=f"{user.role}:{user.name}",  # as hotline.audit_listen audits it
                recording_sid=found["recording_sid"],
                now=hotline.clock(),
            )
        ):
            await run_in_threadpool(hotline.audit_listen, found, user)
    except BaseException:
        await upstream.aclose()
        raise
    return recordings.Relay(upstream)


# -- operators: the call tree ------------------------------------------------------------------


class TreeVersion(BaseModel):
    version: str
    file: str
    loaded_at: datetime
    loaded_by: str
    activated_at: datetime | None
    activated_by: str | None
    live: bool = Field(
        description="the version made live last, as the database says: every instance serves "
        "it new calls within IVR_TREE_SYNC"
    )
    served_here: bool = Field(
        description="the version the instance that answered serves new calls now (false for "
        "a moment after a reload on another instance)"
    )


class Loaded(BaseModel):
    version: str
    nodes: int
    warnings: list[str]


class Rollback(BaseModel):
    version: str = Field(pattern=r"^[0-9a-f]{16}$")


@router.post("/routes/reload")
def routes_reload(user: OperatorUser, hotline: HotlineDep) -> Loaded:
    """Validate the tree file and catalogs and make them live; on any error the old tree
    stays live and every problem comes back as `file:line: error: node.path: message`."""
    try:
        tree = hotline.reload(by=f"operator:{user.name}")
    except SourceError as exc:
        raise HTTPException(
            422,
            {
                "message": "the call tree has errors; the old tree stays live",
                "problems": [str(p) for p in exc.problems],
            },
        ) from None
    return Loaded(
        version=tree.version, nodes=len(tree.tree.nodes), warnings=[str(w) for w in tree.warnings]
    )


@router.get("/routes/versions")
def routes_versions(user: TreeReader, hotline: HotlineDep) -> list[TreeVersion]:
    here = hotline.trees.current.version
    with hotline.db.connect() as conn:
        rows = tree_version_list(conn)
    # The newest activation is the live one (`tree_version_list` lists by load, not by it).
    activated = [r for r in rows if r["activated_at"] is not None]
    live = max(activated, key=lambda r: r["activated_at"])["version"] if activated else here
    return [
        TreeVersion(**r, live=r["version"] == live, served_here=r["version"] == here) for r in rows
    ]


@router.post("/routes/rollback", responses=not_found("version"))
def routes_rollback(body: Rollback, user: OperatorUser, hotline: HotlineDep) -> Loaded:
    """Make an earlier version live again (calls in progress stay on theirs)."""
    tree = hotline.rollback(body.version, by=f"operator:{user.name}")
    if tree is None:
        raise HTTPException(404, "no such version")
    return Loaded(
        version=tree.version, nodes=len(tree.tree.nodes), warnings=[str(w) for w in tree.warnings]
    )


# -- supervisors: figures ------------------------------------------------------------------------

# The longest period one report counts (the figures page's too): a month at a year's volume is
# half a minute of a worker thread; a year would be minutes, which no caller's webhook waits for.
MAX_PERIOD = timedelta(days=31)


@reporting(router.get("/stats"))
def stats(
    user: StaffUser,
    hotline: HotlineDep,
    since: QueryTime | None = None,
    until: QueryTime | None = None,
    emergency_threshold: Annotated[int, Query(ge=1, le=3600)] = 20,
    threshold: Annotated[int, Query(ge=1, le=3600)] = 60,
    short_abandon: Annotated[int, Query(ge=0, le=60)] = 5,
    tz: Annotated[
        str | None,
        Query(
            max_length=64,
            description="IANA time zone the period is given back in (default IVR_REPORT_TZ)",
        ),
    ] = None,
) -> dict[str, Any]:
    """Offered, answered, abandoned, abandonment rate, service level, ASA, AHT, call-backs,
    after-agent surveys, the longest wait, containment and top topics over [since, until)
    (default: the last 24 hours), overall, per queue and per priority (`by_priority`: the
    priority each case entered the line with); the emergencies' answers and freezes, timed from the
    victim's call; per agent, the cases they took in the period and their surveys (an
    agent sees their own only, and no tickets). Callers still in line count by how long
    they have waited by now, whatever `until`.
    The period comes back in `tz` (an IANA name: Asia/Shanghai), as does `time_zone`.
    The definitions: ivr/stats.py, and the README."""
    try:
        zone = time_zone(tz or hotline.settings.report_tz)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    now = hotline.clock()
    end = until or now
    try:
        start = since or end - timedelta(days=1)
    except OverflowError:
        raise HTTPException(422, "until: no day before it to start from") from None
    if end - start > MAX_PERIOD:
        raise HTTPException(
            422, f"the period can be at most {MAX_PERIOD.days} days: ask for it a month at a time"
        )
    try:
        with hotline.db.connect() as conn:
            report = figures(
                conn,
                start=start,
                end=end,
                thresholds=Thresholds(
                    emergency=timedelta(seconds=emergency_threshold),
                    other=timedelta(seconds=threshold),
                    short_abandon=timedelta(seconds=short_abandon),
                ),
                now=now,
            )
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    shown = report.as_dict(zone)
    if user.role != "supervisor":
        # A ticket is what main menu 9 takes to be put through as its case's caller: the
        # cases to look at again are a supervisor's.
        shown["emergency"]["closed_without_freeze_tickets"] = []
        # An agent's handle times and survey scores are theirs and their supervisors'.
        shown["by_agent"] = {n: a for n, a in shown["by_agent"].items() if n == user.name}
    return shown


# -- supervisors: the figures per interval, for a workforce tool ---------------------------

INTERVAL_MINUTES = (15, 30, 60)
# A month of hours (the figures page's longest period), a week of 15 minutes.
MAX_INTERVALS = 31 * 24
INTERVAL_COLUMNS = (
    "interval_start",
    "interval_end",
    "queue",
    "offered",
    "answered",
    "answered_within_threshold",
    "abandoned",
    "short_abandoned",
    "abandonment_rate",
    "service_level",
    "average_speed_of_answer_seconds",
    "average_handle_time_seconds",
    "longest_wait_seconds",
    "callbacks_requested",
    "callbacks_completed",
    "agents_available_average",
)


@dataclass
class IntervalQuery:
    """What the intervals routes take (JSON and CSV alike)."""

    since: QueryTime | None = None
    until: QueryTime | None = None
    # Annotated, not `= Query(...)`: the defaults stay plain for a page that makes one.
    minutes: Annotated[
        int,
        Query(
            description="the intervals' length in minutes, on the clock of `tz`",
            json_schema_extra={"enum": list(INTERVAL_MINUTES)},
        ),
    ] = 30
    tz: Annotated[str | None, Query(max_length=64)] = None
    emergency_threshold: Annotated[int, Query(ge=1, le=3600)] = 20
    threshold: Annotated[int, Query(ge=1, le=3600)] = 60


IntervalQueryDep = Annotated[IntervalQuery, Depends()]


def _interval_reports(hotline: Hotline, q: IntervalQuery) -> tuple[tzinfo, list[Report]]:
    if q.minutes not in INTERVAL_MINUTES:
        raise HTTPException(422, f"minutes: one of {', '.join(map(str, INTERVAL_MINUTES))}")
    try:
        zone = time_zone(q.tz or hotline.settings.report_tz)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    since, until = q.since, q.until
    if since is None or until is None:
        # Yesterday on the hotline's clock: what a workforce tool imports each morning.
        today = hotline.clock().astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
        since = since or in_utc(today - timedelta(days=1))
        until = until or in_utc(today)
    size = timedelta(minutes=q.minutes)
    if until <= since:
        raise HTTPException(422, "until must be after since")
    if (until - since) / size > MAX_INTERVALS:
        raise HTTPException(422, f"at most {MAX_INTERVALS} intervals: narrow since/until")
    thresholds = Thresholds(
        emergency=timedelta(seconds=q.emergency_threshold), other=timedelta(seconds=q.threshold)
    )
    with hotline.db.connect() as conn:
        found = intervals(
            conn,
            start=since,
            end=until,
            size=size,
            zone=zone,
            thresholds=thresholds,
            now=hotline.clock(),
        )
    return zone, found


@reporting(router.get("/stats/intervals"))
def stats_intervals(
    user: SupervisorUser, hotline: HotlineDep, q: IntervalQueryDep
) -> dict[str, Any]:
    """The queue figures of /api/stats per interval of `minutes` on `tz`'s clock (default
    IVR_REPORT_TZ), overall and per queue, with the agents available on average: what a
    workforce-management tool forecasts and schedules from. Default period: yesterday, on
    that clock. At most 744 intervals (a month of hours, a week of 15 minutes). Each
    interval counts as /api/stats does for its own period."""
    zone, found = _interval_reports(hotline, q)
    return {
        "time_zone": str(zone),
        "minutes": q.minutes,
        "thresholds_seconds": {"emergency": q.emergency_threshold, "other": q.threshold},
        "intervals": [
            {
                "start": r.period_start.astimezone(zone).isoformat(),
                "end": r.period_end.astimezone(zone).isoformat(),
                "overall": r.overall.as_dict(),
                "by_queue": {name: q.as_dict() for name, q in r.by_queue.items()},
                "agents_available_average": r.agents_available_average,
            }
            for r in found
        ],
    }


@reporting(
    router.get(
        "/stats/intervals.csv",
        response_class=Response,
        responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
    )
)
def stats_intervals_csv(
    user: SupervisorUser, hotline: HotlineDep, q: IntervalQueryDep
) -> CsvResponse:
    """/api/stats/intervals as CSV: a row per interval for all queues (`queue` empty), then
    one per queue that had a case in it; rates as fractions, times in seconds, interval
    times in ISO 8601 with their offset."""
    zone, found = _interval_reports(hotline, q)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=INTERVAL_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for r in found:
        when = {
            "interval_start": r.period_start.astimezone(zone).isoformat(),
            "interval_end": r.period_end.astimezone(zone).isoformat(),
        }
        staffed = {"agents_available_average": r.agents_available_average}
        writer.writerow({**when, "queue": "", **r.overall.as_dict(), **staffed})
        for name, queue in sorted(r.by_queue.items()):
            writer.writerow({**when, "queue": name, **queue.as_dict()})
    first = found[0].period_start.astimezone(zone) if found else None
    name = f"intervals-{first:%Y-%m-%d}.csv" if first else "intervals.csv"
    return CsvResponse(
        out.getvalue(),
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )
