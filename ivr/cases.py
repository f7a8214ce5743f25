"""The case queue: cases in serving order, claims, callbacks, freezes; agents and their tokens.

Serving order is (lane, sort_at, id) over cases an agent can claim (`queued` = 1):
lane 0 holds emergencies, served before anything else whatever the order of arrival;
lane 1 holds the rest, where a high-priority case counts as having arrived HIGH_BOOST
earlier than it did (aging: a normal case that has waited longer still goes first).
Callers who asked for a call back, or hung up, keep their place.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import statistics
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import (
    Connection,
    Insert,
    String,
    Update,
    bindparam,
    delete,
    desc,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    union,
    update,
)
from sqlalchemy import case as case_when  # `case` is what this module calls a case
from sqlalchemy.exc import IntegrityError

from ivr import prompts
from ivr.db import HELD_STATUSES, audit_log, calls, cases, presence_changes, sessions, users
from ivr.engine import CaseSummary, OpenCase
from ivr.numbers import WITHHELD, dialable, withheld
from ivr.store import reading, writing
from ivr.tree import Priority

HIGH_BOOST = timedelta(minutes=10)
# A case an agent has; and the call backs (their callers gone) waiting for one.
HELD = HELD_STATUSES
# "An agent holds it", as the partial index `ix_cases_held` says it: the statuses written into
# the statement, not bound, or neither database could tell the index covers the query.
HELD_NOW = cases.c.status.in_([literal(status, literal_execute=True) for status in HELD])
CALL_BACKS = ("abandoned", "callback_requested")
CLAIMABLE = ("waiting", "callback_requested", "abandoned")
ROLES = ("agent", "supervisor", "operator")


def new_ticket() -> str:
    """A short number a frightened caller can write down: 7 digits, no leading zero."""
    return str(secrets.randbelow(9_000_000) + 1_000_000)


_TICKET_TAKEN = select(cases.c.id).where(cases.c.ticket == bindparam("ticket"))


def unused_ticket(conn: Connection) -> str:
    """A ticket number no case has yet, for a write that cannot simply draw again on a
    collision (one in millions per case already open)."""
    with reading(conn):
        while True:
            ticket = new_ticket()
            if conn.execute(_TICKET_TAKEN, {"ticket": ticket}).first() is None:
                return ticket


def open_case(
    spec: OpenCase,
    *,
    call_sid: str,
    caller: str | None,
    risk: dict[str, str],
    now: datetime,
    gone: bool = False,
    language: str | None = None,
    text_ticket: bool = False,
) -> Insert:
    """The insert for a new case, run by the hotline in the same transaction as the call step.
    `gone`: the caller hung up already (their input came after the call ended): the case is
    abandoned at once, kept in line for a call back like any caller who hung up waiting.
    `language`: the one the caller chose, offered first to agents who speak it.
    `text_ticket`: its ticket is to be texted to the caller (`tickets_to_text`)."""
    lane = 0 if spec.priority == "emergency" else 1
    sort_at: Any = now - HIGH_BOOST if spec.priority == "high" else now
    if spec.keeps_place and spec.parent_ticket:
        # Read in the insert itself: the webhook's one write, no read before it.
        parents = cases.alias("parent")
        place = (
            select(parents.c.sort_at)
            .where(parents.c.ticket == spec.parent_ticket, parents.c.lane == lane)
            .scalar_subquery()
        )
        sort_at = func.coalesce(place, literal(sort_at, cases.c.sort_at.type))
    return insert(cases).values(
        # Back in the line now (its waits, the page's, count from here), in its old place.
        queued_at=now if spec.keeps_place and spec.parent_ticket else None,
        ticket=spec.ticket,
        call_sid=call_sid,
        account_uid=spec.flags.get("uid"),
        caller=caller,
        reason=spec.reason,
        queue=spec.queue,
        priority=spec.priority,
        lane=lane,
        sort_at=sort_at,
        queued=1,
        status="abandoned" if gone else "waiting",
        flags={**spec.flags, **risk},
        path=spec.path,
        parent_ticket=spec.parent_ticket,
        created_at=now,
        ended_at=now if gone else None,
        language=language,
        ticket_text=TEXT_DUE if text_ticket else None,
    )


# -- tickets texted to callers (IVR_TEXT_TICKETS) ----------------------------------------------

TEXT_DUE = "due"
TextResult = Literal["sent", "failed", "stale", "skipped"]
# Literally the partial index's condition (ix_cases_ticket_text_due), so both databases use it.
_TEXT_DUE_NOW = cases.c.ticket_text == literal(TEXT_DUE, literal_execute=True)


def tickets_to_text(conn: Connection, *, limit: int = 20) -> list[int]:
    """The ids of cases whose ticket is to be texted, oldest first (the partial index: a few
    rows whatever the size of the table)."""
    with reading(conn):
        found = conn.execute(
            select(cases.c.id).where(_TEXT_DUE_NOW).order_by(cases.c.id).limit(limit)
        )
        return list(found.scalars())


def take_tickets_to_text(
    conn: Connection, *, limit: int, passing: Sequence[int] = ()
) -> list[dict[str, Any]]:
    """Up to `limit` cases whose ticket is to be texted, oldest first, now this instance's
    to text (`sending`), but not those `passing` (put back this round, to wait): one
    statement; on PostgreSQL another instance's batch is skipped, not waited for."""
    due = (
        select(cases.c.id)
        .where(_TEXT_DUE_NOW, cases.c.id.not_in(passing) if passing else true())
        .order_by(cases.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    with writing(conn):
        rows = conn.execute(
            update(cases)
            .where(cases.c.id.in_(due))
            .values(ticket_text="sending")
            .returning(
                cases.c.id,
                cases.c.ticket,
                cases.c.call_sid,
                cases.c.caller,
                cases.c.language,
                cases.c.created_at,
            )
        ).mappings()
        return sorted((dict(row) for row in rows), key=lambda row: int(row["id"]))


def put_back_ticket_texts(conn: Connection, *, case_ids: list[int]) -> None:
    """Taken to text, not texted (Twilio failing): due again, for the next round."""
    with writing(conn):
        conn.execute(
            update(cases)
            .where(cases.c.id.in_(case_ids), cases.c.ticket_text == "sending")
            .values(ticket_text=TEXT_DUE)
        )


def texted_lately(
    conn: Connection, *, case: dict[str, Any], since: datetime
) -> Literal["texted", "due"] | None:
    """Whether the case's caller has a ticket texted (or being texted, from an earlier case)
    already, of the same call or to the same number since `since` ("texted"); or an earlier
    case's still to be texted ("due": one another instance skipped as a webhook was writing
    it, to be texted first); None: neither."""
    earlier = cases.c.id < case["id"]
    texted = (cases.c.ticket_text == "sent") | ((cases.c.ticket_text == "sending") & earlier)
    due = (cases.c.ticket_text == TEXT_DUE) & earlier
    same = (cases.c.call_sid == case["call_sid"]) | (
        (cases.c.caller == case["caller"]) & (cases.c.created_at >= since)
    )
    with reading(conn):
        found = conn.execute(
            select(texted.label("texted"))
            .where(cases.c.id != case["id"], texted | due, same)
            .order_by(desc(texted))
            .limit(1)
        ).first()
    if found is None:
        return None
    return "texted" if found.texted else "due"


def ticket_texted(conn: Connection, *, case_id: int, result: TextResult) -> None:
    with writing(conn):
        conn.execute(update(cases).where(cases.c.id == case_id).values(ticket_text=result))


def _ahead(case: Any) -> Any:
    """How many cases are served before `case` (a row of the cases table, aliased), as of the
    bound `now`.

    Three counts over disjoint ranges of the serving-order index, summed, rather than one
    count over an OR of them: each is a plain index range both databases count from the index
    alone, where the OR made PostgreSQL scan the whole table and SQLite build a set of row
    ids, for every hold-loop round of every waiting caller. Less the call backs ahead that
    are held back until their retry time (`not_before`): agents are not offered them before
    it, so a caller waiting on the line is not behind them now. Those are a few rows of the
    `not_before` index, however long the line."""
    waiting = cases.c.queued == 1

    def count(*where: Any) -> Any:
        return select(func.count()).select_from(cases).where(waiting, *where).scalar_subquery()

    same_lane = cases.c.lane == case.lane
    before = (
        (cases.c.lane < case.lane)
        | (same_lane & (cases.c.sort_at < case.sort_at))
        | (same_lane & (cases.c.sort_at == case.sort_at) & (cases.c.id < case.id))
    )
    # `queued + 0`: no index can answer it, so both databases count from the `not_before`
    # index. As `queued = 1`, SQLite (no statistics) took it for the narrower term and walked
    # the whole line: 6.5 ms a hold round with 10,000 waiting.
    held_back = (
        select(func.count())
        .select_from(cases)
        .where(
            (cases.c.queued + 0) == 1,
            cases.c.not_before > bindparam("now", type_=cases.c.not_before.type),
            before,
        )
        .scalar_subquery()
    )
    return (
        count(cases.c.lane < case.lane)
        + count(same_lane, cases.c.sort_at < case.sort_at)
        + count(same_lane, cases.c.sort_at == case.sort_at, cases.c.id < case.id)
        - held_back
    )


@dataclass(frozen=True)
class CaseView:
    row: dict[str, Any]
    position: int | None  # 1 = next to be served; None once it is not waiting any more


def _case_for_call() -> Any:
    mine = cases.alias("mine")
    return (
        select(mine, _ahead(mine.c).label("ahead"))
        .where(mine.c.call_sid == bindparam("sid"))
        .order_by(mine.c.id.desc())
        .limit(1)
    )


# Built once: the hold loop asks this on every round of every waiting caller.
_CASE_FOR_CALL = _case_for_call()


def case_for_call(conn: Connection, *, call_sid: str, now: datetime) -> CaseView | None:
    """The call's newest case and its place in line at `now`, in one statement."""
    with reading(conn):
        row = conn.execute(_CASE_FOR_CALL, {"sid": call_sid, "now": now}).mappings().first()
    if row is None:
        return None
    data = dict(row)
    ahead_count = data.pop("ahead")
    return CaseView(data, ahead_count + 1 if data["queued"] else None)


_CASE_IN_QUEUE = (
    select(cases.c.id, cases.c.flags)
    .where(cases.c.call_sid == bindparam("sid"), cases.c.queue == bindparam("queue"))
    .order_by(cases.c.id.desc())
    .limit(1)
    .with_for_update()  # PostgreSQL: its flags are merged into, nobody else's meanwhile
)


def case_in_queue(conn: Connection, *, call_sid: str, queue: str) -> dict[str, Any] | None:
    """The call's case in `queue` (its id and flags), if it has one."""
    with reading(conn):
        row = conn.execute(_CASE_IN_QUEUE, {"sid": call_sid, "queue": queue}).mappings().first()
    return None if row is None else dict(row)


def merge_into(case: dict[str, Any], *, flags: dict[str, Any], uid: str | None) -> Update:
    """What a later step adds to a call's case opened already (by its hang-up, say): the
    flags it gathered since, and the account once the caller keyed it, so the agent who
    calls back can act on it. A statement for the step's own transaction, or to run alone."""
    values: dict[str, Any] = {"flags": {**(case["flags"] or {}), **flags}}
    if uid:
        values["account_uid"] = func.coalesce(cases.c.account_uid, uid)
    return update(cases).where(cases.c.id == case["id"]).values(**values)


def waiting_cases(conn: Connection, *, limit: int = 500) -> list[dict[str, Any]]:
    """Claimable cases in serving order: the order agents get them in (an agent who speaks
    only some languages may be passed a case in another: `claim_next`)."""
    with reading(conn):
        rows = (
            conn.execute(
                select(cases)
                .where(cases.c.queued == 1)
                .order_by(cases.c.lane, cases.c.sort_at, cases.c.id)
                .limit(limit)
            )
            .mappings()
            .all()
        )
    return [dict(r) for r in rows]


@dataclass(frozen=True)
class WaitingCount:
    """The cases in line of one queue, language and priority, on the line or owed a call
    back, held back until a retry time or not (`waiting_counts`)."""

    queue: str
    language: str | None
    priority: str
    on_the_line: bool  # a caller holding (status waiting); else a call back owed
    held_back: bool  # a call back nobody answered, not offered before its retry time
    cases: int
    late: int  # of them, those who joined the line by their priority's `late_if_joined_by`
    first_joined: datetime  # when the longest wait among them began


def waiting_counts(
    conn: Connection,
    *,
    now: datetime,
    late_if_joined_by: datetime,
    emergency_late_if_joined_by: datetime,
) -> list[WaitingCount]:
    """Every claimable case counted, however long the line (`waiting_cases` lists at most
    its limit), in one grouped statement: a few rows per queue and language."""
    joined = func.coalesce(cases.c.queued_at, cases.c.created_at)
    on_the_line = case_when((cases.c.status == "waiting", 1), else_=0)
    held_back = case_when(
        (cases.c.not_before > bindparam("now", type_=cases.c.created_at.type), 1), else_=0
    )
    late_by = case_when(
        (
            cases.c.priority == "emergency",
            bindparam("emergency_late", type_=cases.c.created_at.type),
        ),
        else_=bindparam("late", type_=cases.c.created_at.type),
    )
    statement = (
        select(
            cases.c.queue,
            cases.c.language,
            cases.c.priority,
            on_the_line,
            held_back,
            func.count(),
            func.sum(case_when((joined <= late_by, 1), else_=0)),
            func.min(joined),
        )
        .where(cases.c.queued == 1)
        .group_by(cases.c.queue, cases.c.language, cases.c.priority, on_the_line, held_back)
    )
    values = {
        "now": now,
        "late": late_if_joined_by,
        "emergency_late": emergency_late_if_joined_by,
    }
    with reading(conn):
        rows = conn.execute(statement, values).all()
    return [
        WaitingCount(
            queue=queue,
            language=language,
            priority=priority,
            on_the_line=bool(line),
            held_back=bool(held),
            cases=count,
            late=int(late or 0),
            first_joined=first,
        )
        for queue, language, priority, line, held, count, late, first in rows
    ]


@dataclass(frozen=True)
class Repeated:
    """A number holding more than one place on the line at once."""

    caller: str
    on_the_line: int
    emergencies: int


def repeated_callers(conn: Connection, *, at_least: int = 2, limit: int = 20) -> list[Repeated]:
    """Numbers with `at_least` callers holding on the line at once, the most first: a dialer
    flooding the emergency lane, or a caller on two phones. Shown, never acted on by itself:
    the thief may spoof the victim's own number, so the hotline turns neither call away."""
    count = func.count().label("n")
    statement = (
        select(
            cases.c.caller,
            count,
            func.sum(case_when((cases.c.priority == "emergency", 1), else_=0)),
        )
        .where(
            cases.c.queued == 1,
            cases.c.status == "waiting",
            cases.c.caller.is_not(None),
            # Withheld numbers are nobody's: not a number holding places (nor a slot below).
            func.lower(func.trim(cases.c.caller)).not_in(sorted(WITHHELD)),
        )
        .group_by(cases.c.caller)
        .having(func.count() >= at_least)
        .order_by(count.desc(), cases.c.caller)
        .limit(limit)
    )
    with reading(conn):
        rows = conn.execute(statement).all()
    return [Repeated(caller, int(n), int(emergencies or 0)) for caller, n, emergencies in rows]


def emergencies_by_verification(conn: Connection) -> dict[str, int]:
    """The emergency callers holding on the line, by how their verification went (`yes`,
    `no`, `skipped`, `locked`, `unavailable`, `not_attempted`): on a hack day, how many of
    the lane are proved victims. Shown to supervisors; the lane's order does not change."""
    verified = func.coalesce(cases.c.flags["verified"].as_string(), "not_attempted")
    with reading(conn):
        rows = conn.execute(
            select(verified, func.count())
            .where(
                cases.c.queued == 1, cases.c.status == "waiting", cases.c.priority == "emergency"
            )
            .group_by(verified)
        ).all()
    return {str(how): int(n) for how, n in rows}


# The next case in serving order, locked for this claim. PostgreSQL: SKIP LOCKED lets agents
# asking at the same moment take different cases instead of queueing on one row. SQLite takes
# one writer at a time, which serialises claims just as well.
# A call back nobody answered waits for its retry time, keeping its place meanwhile.
_READY = cases.c.not_before.is_(None) | (
    cases.c.not_before <= bindparam("now", type_=cases.c.not_before.type)
)
_IN_LINE = (cases.c.queued == 1, _READY)

_CLAIM = (
    update(cases)
    .where(cases.c.queued == 1)
    .values(
        queued=0,
        status="offered",
        claimed_from=cases.c.status,  # the status before this update: waiting or abandoned
        agent_id=bindparam("agent"),
        offered_at=bindparam("now", type_=cases.c.offered_at.type),
        # A caller waiting on the line: how they reach the agent, in the claim itself. Set by
        # a second statement, a hold round in between saw a case taken with no way to the
        # agent yet, and could put the caller through while the claim was being refused.
        offer=case_when(
            (cases.c.status == "waiting", bindparam("live_offer", type_=cases.c.offer.type)),
            else_=None,
        ),
    )
    .returning(*cases.c)
)
# A case for an agent who speaks its caller's language (`speaks`), or one that has waited
# long enough for such an agent (created by `overflow_at`, or `emergency_overflow_at` in the
# emergency lane): then it is anyone's. A case with no language (opened before they were
# kept) is anyone's too.
# When a case joined the line it is in: created, or sent there by an agent (a transfer).
_joined_line = func.coalesce(cases.c.queued_at, cases.c.created_at)
_SPOKEN = (
    cases.c.language.is_(None)
    | cases.c.language.in_(bindparam("speaks", expanding=True))
    | (_joined_line <= bindparam("overflow_at", type_=cases.c.created_at.type))
    | (
        (cases.c.lane == 0)
        & (_joined_line <= bindparam("emergency_overflow_at", type_=cases.c.created_at.type))
    )
)


_AT = cases.c.created_at.type
# A case this agent sent on (a transfer, or back in line to be called back: `_sent_on`'s
# `transferred_agent`) within their wait (`SenderWait`): not theirs yet. The line it joined
# then (`queued_at`) dates it, so a miss of another agent's since does not start it again.
_SENT_BY_THEM = (
    func.coalesce(cases.c.flags["transferred_agent"].as_string(), "")
    == bindparam("sender", type_=String())
) & (
    ((cases.c.lane == 0) & (_joined_line > bindparam("emergency_back_at", type_=_AT)))
    | ((cases.c.lane != 0) & (_joined_line > bindparam("back_at", type_=_AT)))
)


def senders_kept_waiting(conn: Connection, *, now: datetime, wait: SenderWait) -> set[str]:
    """The agents (ids, as `transferred_agent` keeps them) kept from a case in line that they
    sent on, within their wait: nothing offered to one of them is not nothing for the next
    agent who speaks their languages (`Hotline.dispatch`). Read once a dispatch round, only
    when an agent was offered nothing."""
    sender = cases.c.flags["transferred_agent"].as_string()
    since = now - max(wait.normal, wait.emergency)
    with reading(conn):
        return set(
            conn.execute(
                select(sender)
                .where(
                    *_IN_LINE,
                    sender.is_not(None),
                    _joined_line > bindparam("since", since, type_=_AT),
                )
                .distinct(),
                {"now": now},
            ).scalars()
        )


def _claim_first(*where: Any) -> Update:
    """The claim of the next case in serving order (of those `where` allows), locked; never
    one the agent sent on within their wait (`SenderWait`)."""
    return _CLAIM.where(
        cases.c.id
        == select(cases.c.id)
        .where(*_IN_LINE, ~_SENT_BY_THEM, *where)
        .order_by(cases.c.lane, cases.c.sort_at, cases.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )


# ...and a case in a language no agent on shift speaks is anyone's at once: waiting for an
# agent who is not there helps nobody.
_UNCOVERED = cases.c.language.not_in(bindparam("covered", expanding=True))
_CLAIM_NEXT = _claim_first()


def _may_take(asked: bool, all_covered: bool) -> Any:
    """The cases an agent who speaks only some languages may take (`_SPOKEN`, or in a
    language nobody on shift speaks); asking, an emergency in any language too, as the desk
    promises."""
    return (
        _SPOKEN
        | (false() if all_covered else _UNCOVERED)
        | ((cases.c.lane == 0) if asked else false())
    )


# (asked, some agent on shift speaks every language): the claim of an agent who speaks only
# some.
_CLAIMS_SPOKEN: dict[tuple[bool, bool], Update] = {
    (asked, all_covered): _claim_first(_may_take(asked, all_covered))
    for asked in (False, True)
    for all_covered in (False, True)
}
# Tried first, with the same keys: what the agent speaks in any lane, and in the emergency
# lane whatever `_CLAIMS_SPOKEN` allows. A Mandarin speaker is not given an English call back
# that waited out its language wait while Mandarin callers wait; an emergency still comes
# before everything else.
_OWN = cases.c.language.in_(bindparam("speaks", expanding=True))
_CLAIMS_OWN_FIRST: dict[tuple[bool, bool], Update] = {
    (asked, all_covered): _claim_first(_OWN | ((cases.c.lane == 0) & _may_take(asked, all_covered)))
    for asked in (False, True)
    for all_covered in (False, True)
}


@dataclass(frozen=True)
class LanguageWait:
    """How long a case waits for an agent who speaks its caller's language before any agent
    is offered it (IVR_LANGUAGE_OVERFLOW): shorter in the emergency lane."""

    normal: timedelta = timedelta(0)
    emergency: timedelta = timedelta(0)


@dataclass(frozen=True)
class SenderWait:
    """How long a case an agent sent on is not offered back to them (IVR_TRANSFER_RETURN):
    a caller they passed to "the team who can help" must not reach them again because the
    others are busy. Another agent gets it meanwhile; after it, they may too (shorter in the
    emergency lane): a victim never waits for nobody while only they are free."""

    normal: timedelta = timedelta(0)
    emergency: timedelta = timedelta(0)


LANGUAGE_CODE = re.compile(prompts.LANGUAGE_CODE)


def spoken(languages: str | None) -> list[str] | None:
    """An agent's languages as stored ("en,zh-CN"); None: every language."""
    found = [code for code in (languages or "").split(",") if code]
    return found or None


def languages_typed(text: str) -> list[str] | None:
    """An agent's languages as a person types them: codes, comma-separated ("en, zh-CN");
    "all", or nothing, for every language."""
    codes = [code.strip() for code in text.split(",") if code.strip()]
    return None if codes in ([], ["all"]) else codes


def unspoken(codes: list[str] | None, known: list[str]) -> str | None:
    """Why `codes` cannot be an agent's languages (one no prompt catalog speaks), or None."""
    unknown = [code for code in codes or [] if code not in known]
    if not unknown:
        return None
    return f"no prompt catalog speaks {', '.join(unknown)}: callers choose from {', '.join(known)}"


def covered(conn: Connection, *, now: datetime) -> list[str] | None:
    """The languages spoken by the agents on shift (available, or with a case now): None when
    one of them speaks every language."""
    holding = select(cases.c.id).where(cases.c.agent_id == users.c.id, HELD_NOW).exists()
    with reading(conn):
        rows = conn.execute(
            select(users.c.languages)
            .distinct()
            .where(
                users.c.role == "agent",
                users.c.revoked_at.is_(None),
                _available_after(now) | holding,
            )
        ).scalars()
        found: set[str] = set()
        for languages in rows:
            codes = spoken(languages)
            if codes is None:
                return None
            found.update(codes)
    return sorted(found)


def claim_next(
    conn: Connection,
    *,
    agent_id: int,
    now: datetime,
    live_offer: str | None = None,
    speaks: list[str] | None = None,
    wait: LanguageWait = LanguageWait(),
    on_shift: list[str] | None = None,
    asked: bool = False,
    sender_wait: SenderWait = SenderWait(),
) -> dict[str, Any] | None:
    """Hand the next case to an agent; each case goes to exactly one agent, however many ask.
    One statement (one round trip; two for an agent who speaks only some languages, whose
    own come first); None when no case is waiting, or when every waiting case
    is being claimed by another agent at this very moment. `live_offer`: the offer recorded
    if the case's caller is waiting on the line (OFFER_HOLD_LOOP, OFFER_REDIRECTED); a call
    back's offer is set once it is known how the caller will be reached. `speaks`: the
    agent's languages; only a case in one of them, one that has waited `wait` for such an
    agent, or one in a language no agent on shift speaks (`on_shift`, as `covered` gives
    it; None: someone speaks every language). `asked`: an emergency in any language too.
    (`speaks` None: any case.) Never a case this agent sent on less than `sender_wait` ago:
    the next agent's, as a contact centre keeps a transfer from its sender."""
    params: dict[str, Any] = {
        "agent": agent_id,
        "now": now,
        "live_offer": live_offer,
        "sender": str(agent_id),
        "back_at": now - sender_wait.normal,
        "emergency_back_at": now - sender_wait.emergency,
    }
    statement = _CLAIM_NEXT
    if speaks is not None:
        statement = _CLAIMS_SPOKEN[asked, on_shift is None]
        params |= {
            "speaks": speaks,
            "overflow_at": now - wait.normal,
            "emergency_overflow_at": now - wait.emergency,
        }
        if on_shift is not None:
            params["covered"] = on_shift
    with writing(conn):
        claimed = None
        if speaks is not None:
            first = _CLAIMS_OWN_FIRST[asked, on_shift is None]
            claimed = conn.execute(first, params).mappings().first()
        if claimed is None:
            claimed = conn.execute(statement, params).mappings().first()
    return None if claimed is None else dict(claimed)


class NotAvailable(Exception):
    """The agent is away (or revoked) now: no case is offered to them unasked."""


_AGENT_TURN = (
    select(users.c.available_since, users.c.revoked_at, users.c.languages)
    .where(users.c.id == bindparam("agent"))
    .with_for_update()
)


def claim_if_free(
    conn: Connection,
    *,
    agent_id: int,
    now: datetime,
    live_offer: str | None = None,
    unasked: bool = False,
    wait: LanguageWait = LanguageWait(),
    sender_wait: SenderWait = SenderWait(),
    actor: str | None = None,
) -> tuple[dict[str, Any] | None, int | None]:
    """One case at a time, as one phone takes one call: (the next case, None) as
    `claim_next` gives it, or (None, the case the agent has) and nothing taken. `unasked`:
    an offer to an available agent (presence), made only while they still are (else
    NotAvailable). An agent who speaks only some languages is offered a case in one of them,
    one that has waited `wait` for such an agent, or one no agent on shift speaks the
    language of; asking, an emergency in any language first, and the next case of all when
    none of those waits (a caller is better served than an idle agent). Never, asked or
    not, one they sent on within `sender_wait`.

    The check and the claim are one transaction, and two of one agent's asks (a double
    click, two tabs, two instances) take turns: on PostgreSQL by locking the agent's row, on
    SQLite by its one writer. A case taken when asked is audited as `actor`'s (`TAKE`, in
    the same transaction; None: not audited, tests only); one offered unasked is the
    dispatcher's doing, not theirs (its miss, or its acceptance at the desk, is audited)."""
    with writing(conn):
        agent = conn.execute(_AGENT_TURN, {"agent": agent_id}).first()
        if unasked and (
            agent is None or agent.revoked_at is not None or not _still_available(agent, now)
        ):
            raise NotAvailable(agent_id)
        holding = held_by(conn, agent_id=agent_id)
        if holding:
            return None, holding[0]
        speaks = spoken(agent.languages) if agent is not None else None
        on_shift = None if speaks is None else covered(conn, now=now)
        case = claim_next(
            conn,
            agent_id=agent_id,
            now=now,
            live_offer=live_offer,
            speaks=speaks,
            wait=wait,
            on_shift=on_shift,
            asked=not unasked,
            sender_wait=sender_wait,
        )
        if case is None and speaks is not None and not unasked:
            case = claim_next(
                conn, agent_id=agent_id, now=now, live_offer=live_offer, sender_wait=sender_wait
            )
        if case is not None and not unasked and actor is not None:
            audit(
                conn,
                actor=actor,
                action=TAKE,
                uid=None,
                case_id=case["id"],
                reason=None,
                result="ok",
                now=now,
            )
        return case, None


def can_offer(conn: Connection, *, now: datetime) -> bool:
    """Whether a case in line may be offered now."""
    with reading(conn):
        found = conn.execute(select(cases.c.id).where(*_IN_LINE).limit(1), {"now": now})
        return found.first() is not None


# -- presence: agents offered cases as they come, without asking ----------------------------


# Available lapses after this long without a case (each case's end moves it on), as long as a
# dashboard session: an agent who went home without saying so is no longer counted at work
# the next day, nor rung by its first case (an offer they miss sets them away anyway).
AVAILABLE_AT_MOST = timedelta(hours=8)


def _available_after(now: datetime) -> Any:
    return users.c.available_since >= bindparam(
        "available_after", now - AVAILABLE_AT_MOST, type_=users.c.available_since.type
    )


def _still_available(agent: Any, now: datetime) -> bool:
    since: datetime | None = agent.available_since
    return since is not None and since >= now - AVAILABLE_AT_MOST


# Why an agent is away when it was not their own doing: what their desk tells them.
AwayReason = Literal[
    "missed",
    "gave_back",
    "taken_back",
    "timed_out",
    "signed_out",
    "set_away",
    "not_accepted",
    "lapsed",
]
AWAY_MISSED: AwayReason = "missed"  # a case rang their phone, and it did not take the call
AWAY_GAVE_BACK: AwayReason = "gave_back"  # they gave a case back
AWAY_TAKEN_BACK: AwayReason = "taken_back"  # a supervisor took a case of theirs back
AWAY_TIMED_OUT: AwayReason = "timed_out"  # a case offered to them never reached its caller
AWAY_SIGNED_OUT: AwayReason = "signed_out"  # they signed out of the dashboard
AWAY_SET: AwayReason = "set_away"  # a supervisor set them away (`ivr users away`)
AWAY_NOT_ACCEPTED: AwayReason = "not_accepted"  # a case offered at their desk, not accepted
AWAY_LAPSED: AwayReason = "lapsed"  # AVAILABLE_AT_MOST without a case (worked out, not stored)
# Away for these, an agent is not at work (`staffing`), whatever cases they ended lately.
GONE: tuple[AwayReason, ...] = (
    AWAY_SIGNED_OUT,
    AWAY_SET,
    AWAY_MISSED,
    AWAY_NOT_ACCEPTED,
    AWAY_TIMED_OUT,
)


def set_available(
    conn: Connection,
    *,
    agent_id: int,
    available: bool,
    now: datetime,
    why: AwayReason | None = None,
) -> datetime | None:
    """Available: offered cases as they come (`Hotline.dispatch`), from `now` or from when
    they already were (unless that lapsed); away: cases come only when they ask (`why`: not
    their own doing). Their available-since after this, None when away (or no such agent).
    Away, a case offered at their desk and not accepted yet goes back in line at once: it
    is nobody's miss, and it must not wait at a desk they left. Signed out, so does every
    case offered to them and not put through yet (a caller to be put through at their next
    hold round): their phone would ring with nobody at the desk; and every call back they
    took to dial themselves (or to act on, the number withheld) and did not resolve, audited:
    no timeout takes those back, and a victim's case would leave the line for good with
    whoever went home. An agent who sets themselves away keeps the case they took: away is
    "no more cases", not "not this one"."""
    since = bindparam("now", now, type_=users.c.available_since.type)
    kept = case_when((_available_after(now), users.c.available_since), else_=since)
    with writing(conn):
        if why == AWAY_SIGNED_OUT:
            # A caller holding to be put through, an offer at the desk, a call back left to
            # them; not a call back Twilio is ringing the customer for now (its report puts
            # it back if nobody answers).
            live_caller = func.coalesce(cases.c.claimed_from, "waiting") == "waiting"
            theirs = func.coalesce(cases.c.offer, "").in_(AGENT_FINISHES)
            mine = (cases.c.agent_id == agent_id, cases.c.status == "offered")
            left = conn.execute(
                select(cases.c.id, users.c.name)
                .join(users, users.c.id == cases.c.agent_id)
                .where(*mine, theirs, cases.c.accept_by.is_(None))
            ).all()
            conn.execute(
                update(cases)
                .where(*mine, live_caller | cases.c.accept_by.is_not(None) | theirs)
                .values(**_BACK_IN_LINE)
            )
            for row in left:
                audit(
                    conn,
                    actor=f"agent:{row.name}",
                    action="requeue",
                    uid=None,
                    case_id=row.id,
                    reason="signed out without resolving this call back: back in its place",
                    result="ok",
                    now=now,
                )
        elif not available:
            _withdraw_desk_offers(conn, agent_id)
        value: datetime | None = conn.execute(
            update(users)
            .where(users.c.id == agent_id, users.c.role == "agent")
            .values(available_since=kept if available else None, away_reason=why)
            .returning(users.c.available_since)
        ).scalar()
        if value is None or value == now:  # not one kept from before: nothing new then
            conn.execute(presence_noted([agent_id], now))
    return value


def _withdraw_desk_offers(conn: Connection, agent_id: int) -> None:
    """The agent's offers at their desk not accepted yet: back in line (before the agent's
    row is written: every writer of both takes the case first)."""
    conn.execute(
        update(cases)
        .where(cases.c.agent_id == agent_id, HELD_NOW, cases.c.accept_by.is_not(None))
        .values(**_BACK_IN_LINE)
    )


def presence(
    conn: Connection, *, agent_id: int, now: datetime
) -> tuple[datetime | None, AwayReason | None]:
    """(since when the agent is available, None) or (None, why they are away if it was not
    their own doing: an AWAY_* reason, AWAY_LAPSED included)."""
    with reading(conn):
        row = conn.execute(
            select(users.c.available_since, users.c.away_reason).where(users.c.id == agent_id)
        ).first()
    if row is None:
        return None, None
    if row.available_since is not None:
        if _still_available(row, now):
            return row.available_since, None
        return None, AWAY_LAPSED
    return None, row.away_reason


def available_since(conn: Connection, *, agent_id: int, now: datetime) -> datetime | None:
    """Since when the agent is available; None when away (or it lapsed)."""
    with reading(conn):
        value: datetime | None = conn.execute(
            select(users.c.available_since).where(users.c.id == agent_id, _available_after(now))
        ).scalar()
    return value


def agents_to_offer(conn: Connection, *, now: datetime) -> list[User]:
    """Available agents (not revoked) who have no case now: whom the next cases are offered
    to, the longest idle first."""
    holding = select(cases.c.id).where(cases.c.agent_id == users.c.id, HELD_NOW).exists()
    with reading(conn):
        rows = conn.execute(
            select(users.c.id, users.c.name, users.c.role, users.c.phone, users.c.languages)
            .where(
                users.c.role == "agent",
                users.c.revoked_at.is_(None),
                _available_after(now),
                ~holding,
            )
            .order_by(users.c.available_since, users.c.id)
        ).all()
    return [User(r.id, r.name, r.role, r.phone, r.languages) for r in rows]


def _set_away(conn: Connection, agent_ids: list[int], why: AwayReason, now: datetime) -> None:
    """Those of them who were available, away now, and why (an agent away already keeps
    their own reason)."""
    if agent_ids:
        gone = conn.execute(
            update(users)
            .where(users.c.id.in_(agent_ids), users.c.available_since.is_not(None))
            .values(available_since=None, away_reason=why)
            .returning(users.c.id)
        ).scalars()
        if went := list(gone):
            conn.execute(presence_noted(went, now))


def agents_presence(conn: Connection, *, now: datetime) -> list[dict[str, Any]]:
    """Every agent not revoked, by name: `name`, `available_since` (None: away, or it lapsed),
    `away_reason` (as `presence` gives it), `holding`, the cases they have now, and
    `languages` (as stored; `spoken` reads it)."""
    holding = select(func.count()).where(cases.c.agent_id == users.c.id, HELD_NOW).scalar_subquery()
    since = case_when((_available_after(now), users.c.available_since), else_=None)
    why = case_when(
        (users.c.available_since.is_(None), users.c.away_reason),
        (_available_after(now), None),
        else_=AWAY_LAPSED,
    )
    with reading(conn):
        rows = conn.execute(
            select(
                users.c.name,
                since.label("available_since"),
                why.label("away_reason"),
                holding.label("holding"),
                users.c.languages,
            )
            .where(users.c.role == "agent", users.c.revoked_at.is_(None))
            .order_by(users.c.name)
        ).mappings()
        return [dict(r) for r in rows]


def get_case(conn: Connection, *, case_id: int) -> dict[str, Any] | None:
    with reading(conn):
        row = conn.execute(select(cases).where(cases.c.id == case_id)).mappings().first()
    return dict(row) if row else None


def resolve(
    conn: Connection,
    *,
    case_id: int,
    status: str,
    now: datetime,
    notes: str,
    unless_sending: bool = False,
    reached_at: datetime | None = None,
) -> bool:
    """Close the case if it is still `status`; never while its caller waits on the line (an
    offer not yet connected of a caller who was waiting: resolved, nobody would put them
    through, and their hang-up would leave no call back). `unless_sending`: nor while its
    agent is sending its caller on (`transfer_asked`), looked at under the row's lock, since
    an ask can land between the caller's look at the case and this write. `reached_at`: the
    agent reached the customer on a call of their own, from then (their connected_at)."""
    live_offer = (cases.c.status == "offered") & (
        func.coalesce(cases.c.claimed_from, "waiting") == "waiting"
    )
    with writing(conn):
        if unless_sending:
            row = conn.execute(
                select(cases.c.flags, cases.c.status, cases.c.agent_id)
                .where(cases.c.id == case_id)
                .with_for_update()
            ).first()
            if row is not None and transfer_asked(dict(row._mapping)) is not None:
                return False
        done = conn.execute(
            update(cases)
            .where(
                cases.c.id == case_id,
                cases.c.status == status,
                ~live_offer,
                # Connected, a call back is resolved like any case; ringing, it is not.
                (cases.c.status != "offered") | _NOT_PLACING,
            )
            .values(
                status="resolved",
                queued=0,
                notes=notes,
                ended_at=now,
                **({"connected_at": reached_at} if reached_at is not None else {}),
                # Kept once the agent took the call: resolved while they still talk, the
                # Dial's report at the hang-up must still know they did (agent screening).
                offer=case_when((cases.c.offer == OFFER_ANSWERED, OFFER_ANSWERED), else_=None),
            )
            .returning(cases.c.agent_id, cases.c.offered_at)
        ).first()
        if done is not None and done.agent_id is not None and done.offered_at is not None:
            conn.execute(_idle_from(done.agent_id, done.offered_at, now))
            conn.execute(presence_noted([done.agent_id], now))
        return done is not None


def on_the_call(
    conn: Connection, case: dict[str, Any], *, now: datetime, longest: timedelta
) -> bool:
    """Its agent is still on the call with its caller: connected, and neither Twilio's report
    of the agent's leg ending (`talk_ended_at`) nor the end of the caller's call has come,
    nor, both reports lost, has it been connected for as long as any call lasts (`longest`).
    A call back's customer was called by Twilio: no call row here tells its end, but the
    call's sid is kept with the case until its end is reported (`call_back_ended`)."""
    if case["status"] != "connected" or case["talk_ended_at"] is not None:
        return False
    if case["connected_at"] is None or case["connected_at"] <= now - longest:
        return False
    if (case["claimed_from"] or "waiting") != "waiting":
        return CALL_BACK_SID in (case["flags"] or {})
    with reading(conn):
        call = conn.execute(
            select(calls.c.ended_at).where(calls.c.call_sid == case["call_sid"])
        ).first()
    # No call row (the fallback queued them): nothing here tells its end; as before.
    return call is not None and call.ended_at is None


# A caller gone this soon after reaching the agent dropped before the agent could do much:
# not the minutes a hijack victim's story, the checks and a freeze take. An emergency such,
# with nothing frozen, is not resolved without a freeze, a call back or the agent's word.
DROPPED_WITHIN = timedelta(seconds=60)


def dropped_after(conn: Connection, case: dict[str, Any]) -> int | None:
    """How many seconds a connected case's caller talked to its agent before the talk ended
    (their call ended, or the agent's leg: whichever Twilio reported first), if under
    DROPPED_WITHIN; from when the agent's phone answered (from when they were put through,
    not known). None: not connected, still talking (or its end not reported yet), or a
    longer talk."""
    if case["status"] != "connected" or case["connected_at"] is None:
        return None
    ends: list[datetime] = [case["talk_ended_at"]] if case["talk_ended_at"] else []
    if (case["claimed_from"] or "waiting") == "waiting":  # a call back's call has no row here
        with reading(conn):
            ended = conn.execute(
                select(calls.c.ended_at).where(calls.c.call_sid == case["call_sid"])
            ).scalar()
        if ended is not None:
            ends.append(ended)
    if not ends:
        return None
    talked = max(min(ends) - (case["answered_at"] or case["connected_at"]), timedelta(0))
    return int(talked.total_seconds()) if talked < DROPPED_WITHIN else None


def caller_left(conn: Connection, case: dict[str, Any]) -> datetime | None:
    """When a connected case's caller left the call (their call's end, as its status
    callback or the stale-call sweep recorded it), while the case still reads connected:
    the agent calls them back or wraps up. None: not connected, still on the line, or a
    call back (the customer's call is Twilio's outbound one: no row here tells its end;
    the agent's own leg ending, `talk_ended_at`, does)."""
    if case["status"] != "connected" or (case["claimed_from"] or "waiting") != "waiting":
        return None
    with reading(conn):
        ended: datetime | None = conn.execute(
            select(calls.c.ended_at).where(calls.c.call_sid == case["call_sid"])
        ).scalar()
    return ended


# -- the notes agents write on a case while they work it --------------------------------------

NOTE = "note"  # the audit action of a working note written on a case
NOTE_AT_MOST = 2000  # characters in one note
NOTES_AT_MOST = 100  # notes on one case: a case's row is read at every desk refresh
# A caller's secrets are digits (`ivr.identity`): the PIN and an authenticator's code are 6,
# an ID document's last 4 are 4. A run of digits joined by single spaces or hyphens is one
# number as it is read out ("739 182", "73-91-82"): of 6 digits in all, or holding a group of
# 6, it may be a PIN or a code. Four digits are also a year, an amount or a time ("lost 5000
# USDT at 1430"), which an agent's notes are full of: a run of 4 is refused where the note
# speaks of an ID document, a PIN or a code, or is all the note says. A ticket (7), a UID or
# a phone number is longer.
_DIGIT_RUN = re.compile(r"\d+(?:[ -]\d+)*")
_DIGIT_GROUP = re.compile(r"\d+")
# Letters either side, not \b: "ID1234" and "PIN是1234" name one too (a digit and a Han
# character are word characters).
_SECRET_WORDS = re.compile(
    r"(?<![a-z])(?:id|identity|passport|document|pin|code|digits)(?![a-z])"
    r"|证件|身份证|护照|密码|验证码|后四位",
    re.IGNORECASE,
)
SECRET_LIKE = (
    "not saved: a run of 6 digits (or of 4, in a note about an ID document, a PIN or a code) "
    "reads like a caller's PIN, authenticator code or ID document digits, which never go in "
    "notes. If it is none of those, write it otherwise: an amount with a comma (2,500), a "
    "date whole (2026-05-01)"
)


def secret_like(text: str) -> bool:
    """Whether staff's free text holds digits that may be a caller's secret (`_DIGIT_RUN`):
    refused, never stored, since notes are read by every agent the case goes to next."""
    text = unicodedata.normalize("NFKC", text)  # an input method's full-width digits, spaces
    speaks_of_secrets = _SECRET_WORDS.search(text) is not None
    for run in _DIGIT_RUN.finditer(text):
        groups = [len(g) for g in _DIGIT_GROUP.findall(run.group())]
        if sum(groups) == 6 or max(groups) == 6:
            return True
        if sum(groups) == 4 and (speaks_of_secrets or run.group() == text.strip()):
            return True
    return False


def working_notes(case: dict[str, Any]) -> list[dict[str, str]]:
    """A case's working notes, earliest first: each its author (`by`, as the audit names
    staff: `agent:alice`), time (`at`, ISO 8601 UTC) and `text`."""
    found = case.get("working_notes") or []
    return [n for n in found if isinstance(n, dict)] if isinstance(found, list) else []


NoteAdded = Literal["added", "not_yours", "full"]


def add_note(
    conn: Connection, *, case_id: int, agent_id: int, by: str, text: str, now: datetime
) -> NoteAdded:
    """A note on the case `agent_id` has now (and accepted, if it was offered at their
    desk), audited: "added"; "not_yours" once it is not theirs (read under the row's lock,
    as a transfer or a supervisor's take-back writes it); "full" at NOTES_AT_MOST. `text`
    is checked by the caller (`secret_like`, NOTE_AT_MOST)."""
    with writing(conn):
        row = conn.execute(
            select(cases.c.working_notes, cases.c.status, cases.c.agent_id, cases.c.accept_by)
            .where(cases.c.id == case_id)
            .with_for_update()
        ).first()
        if (
            row is None
            or row.agent_id != agent_id
            or row.status not in HELD
            or row.accept_by is not None
        ):
            return "not_yours"
        noted = working_notes({"working_notes": row.working_notes})
        if len(noted) >= NOTES_AT_MOST:
            return "full"
        note = {"by": by, "at": now.astimezone(UTC).isoformat(), "text": text}
        conn.execute(
            update(cases).where(cases.c.id == case_id).values(working_notes=[*noted, note])
        )
        # Who wrote on the case and when; the words are the case's (purged and erased with
        # it), not the log's, which outlives it.
        audit(
            conn,
            actor=by,
            action=NOTE,
            uid=None,
            case_id=case_id,
            reason=None,
            result="ok",
            now=now,
        )
    return "added"


def _idle_from(agent_id: int, offered_at: datetime, now: datetime) -> Update:
    """The agent's case ended: one available when it came to them waits for the next from
    now (the longest idle first); one whose availability had lapsed stays away."""
    return (
        update(users)
        .where(
            users.c.id == agent_id,
            users.c.available_since
            >= bindparam(
                "offered_after", offered_at - AVAILABLE_AT_MOST, type_=users.c.available_since.type
            ),
        )
        .values(available_since=now)
    )


def presence_noted(agent_ids: Sequence[int], now: datetime) -> Insert:
    """The agents' presence as it is now (after the statement that changed it, in the same
    transaction): a row of its history, which the figures read their time available from."""
    return insert(presence_changes).from_select(
        ["user_id", "at", "available_since", "away_reason"],
        select(
            users.c.id,
            bindparam("noted_at", now, type_=presence_changes.c.at.type),
            users.c.available_since,
            users.c.away_reason,
        ).where(users.c.id.in_(list(agent_ids)), users.c.role == "agent"),
    )


def set_account(conn: Connection, *, case_id: int, uid: str, was: str | None = None) -> bool:
    """The account an agent found for a case whose caller keyed none (`was` None), or
    another than the one they keyed, `was` (and did not prove theirs)."""
    same = cases.c.account_uid.is_(None) if was is None else cases.c.account_uid == was
    with writing(conn):
        return (
            conn.execute(
                update(cases).where(cases.c.id == case_id, same).values(account_uid=uid)
            ).rowcount
            == 1
        )


def held_by(conn: Connection, *, agent_id: int) -> list[int]:
    """The cases an agent has now (taken, or connected): emergencies first, then the longest
    held."""
    with reading(conn):
        return list(
            conn.execute(
                select(cases.c.id)
                .where(cases.c.agent_id == agent_id, HELD_NOW)
                .order_by(cases.c.lane, cases.c.offered_at, cases.c.id)
            ).scalars()
        )


def held_by_agents(conn: Connection, *, limit: int = 500) -> list[dict[str, Any]]:
    """Every case an agent has now, with the agent's name (whether they were revoked, and
    why they are away: `agent_gone` tells who has gone), when their leg of the call ended:
    emergencies first, then the longest held."""
    with reading(conn):
        rows = conn.execute(
            select(
                cases.c.id,
                cases.c.ticket,
                cases.c.priority,
                cases.c.queue,
                cases.c.reason,
                cases.c.status,
                cases.c.claimed_from,
                cases.c.offer,
                cases.c.flags,
                cases.c.offered_at,
                cases.c.accept_by,
                cases.c.talk_ended_at,
                users.c.name.label("agent"),
                users.c.revoked_at.label("agent_revoked_at"),
                users.c.away_reason.label("agent_away_reason"),
                users.c.available_since.label("agent_available_since"),
            )
            .join(users, users.c.id == cases.c.agent_id)
            .where(HELD_NOW)
            .order_by(cases.c.lane, cases.c.offered_at, cases.c.id)
            .limit(limit)
        ).mappings()
        return [dict(r) for r in rows]


def agent_gone(row: dict[str, Any]) -> AwayReason | None:
    """Why the agent of a `held_by_agents` row is gone, if they are (signed out, set away by
    a supervisor, missed an offer: `GONE`): their case waits for nobody but a supervisor."""
    why = row["agent_away_reason"]
    if row["agent_available_since"] is None and why in GONE:
        return cast(AwayReason, why)
    return None


# -- who answers: what a caller's wait is estimated from ----------------------------------

AT_WORK = timedelta(minutes=30)
HANDLED_OVER = timedelta(hours=1)
MIN_HANDLED = 5
MEASURED_AT_MOST = 500  # the latest cases ended, on a line busier than that an hour
# A case held longer than this was left open (a shift ended on it), not worked: its agent is
# not at work because of it, and its time is not a handle time.
LEFT_AFTER = timedelta(hours=2)


@dataclass(frozen=True)
class Staffing:
    """Who is answering the line, as the cases show it: what a caller's estimate divides by.

    An agent is at work while they say they are available (presence), while they hold a case
    taken or put through in the last LEFT_AFTER, and for AT_WORK after their last one ended
    (an agent who only ever asks for cases says nothing else), unless they have gone since
    (GONE: signed out, set away, an offer not taken); a revoked agent is not. The
    handle time is the median time from an agent taking a case to its end, over the cases
    agents ended in the last HANDLED_OVER (the latest MEASURED_AT_MOST), leaving out any held
    longer than LEFT_AFTER; with fewer than MIN_HANDLED of them (a quiet hour, a new install)
    it is unknown, and the estimate takes the operator's `IVR_AVG_HANDLE_SECONDS` instead.
    Before anyone has taken a case or said they are available (a shift starting), the
    estimate is one agent's: too long rather than too short, and the call-back offer early."""

    agents: int = 0
    handle_seconds: float | None = None
    handled: int = 0  # the cases the handle time was measured over
    available: int = 0  # of the agents, those who said they are available (presence)

    def handle(self, default: float) -> float:
        return default if self.handle_seconds is None else self.handle_seconds

    def wait_seconds(self, position: int, *, default_handle: float) -> float:
        """How long the caller `position`th in line waits, about: the cases ahead of them and
        their own, shared among the agents at work (one, when none is)."""
        return position * self.handle(default_handle) / max(1, self.agents)


def staffing(conn: Connection, *, now: datetime) -> Staffing:
    """Agents at work and their handle time, as of `now` (three statements; a timed job's,
    never a webhook's)."""
    since = now - AT_WORK
    working = HELD_NOW & (
        func.coalesce(cases.c.connected_at, cases.c.offered_at) >= now - LEFT_AFTER
    )
    with reading(conn):
        # Not one who has gone since their last case (signed out, set away by a supervisor)
        # or whose phone or desk did not take the last offered (likely not there): counted,
        # they halve the wait a caller is told. Away by their own say, they may still work,
        # asking for cases.
        still_here = func.coalesce(users.c.away_reason, "").not_in(GONE)
        busy = (
            select(cases.c.agent_id.label("id"))
            .join(users, users.c.id == cases.c.agent_id)
            .where(
                users.c.revoked_at.is_(None),
                working | ((cases.c.ended_at >= since) & still_here),
            )
        )
        ready = select(users.c.id).where(
            users.c.role == "agent", users.c.revoked_at.is_(None), _available_after(now)
        )
        agents = conn.execute(
            select(func.count()).select_from(union(busy, ready).subquery())
        ).scalar_one()
        available = conn.execute(select(func.count()).select_from(ready.subquery())).scalar_one()
        ended = conn.execute(
            select(cases.c.offered_at, cases.c.ended_at)
            .where(
                cases.c.ended_at >= now - HANDLED_OVER,
                cases.c.status == "resolved",
                cases.c.agent_id.is_not(None),
                cases.c.offered_at.is_not(None),
            )
            .order_by(cases.c.ended_at.desc())
            .limit(MEASURED_AT_MOST)
        ).all()
    left = LEFT_AFTER.total_seconds()
    spans = [
        span for start, end in ended if (span := max(0.0, (end - start).total_seconds())) <= left
    ]
    if len(spans) < MIN_HANDLED:
        return Staffing(agents=agents, handled=len(spans), available=available)
    return Staffing(
        agents=agents,
        handle_seconds=statistics.median(spans),
        handled=len(spans),
        available=available,
    )


def ready_in_line(conn: Connection, *, now: datetime) -> tuple[int, int]:
    """The cases agents may take now (not the call backs held back until their retry time):
    emergencies, and the rest."""
    ready = (cases.c.not_before.is_(None)) | (cases.c.not_before <= now)
    with reading(conn):
        counts: dict[int, int] = {
            lane: n
            for lane, n in conn.execute(
                select(cases.c.lane, func.count())
                .where(cases.c.queued == 1, ready)
                .group_by(cases.c.lane)
            ).all()
        }
    return counts.get(0, 0), counts.get(1, 0)


def ready_emergency_tickets(conn: Connection, *, now: datetime, limit: int = 100) -> list[str]:
    """The tickets of the emergencies agents may take now, in serving order (the lane's rows of
    the serving-order index): the desk says a new one by its ticket, as one taken and another
    come leave the count as it was."""
    ready = (cases.c.not_before.is_(None)) | (cases.c.not_before <= now)
    with reading(conn):
        return list(
            conn.execute(
                select(cases.c.ticket)
                .where(cases.c.queued == 1, cases.c.lane == 0, ready)
                .order_by(cases.c.sort_at, cases.c.id)
                .limit(limit)
            ).scalars()
        )


def find_ticket(conn: Connection, *, ticket: str, caller: str | None = None) -> CaseSummary | None:
    """The case with this ticket number (`caller`: only if it was opened for a call from
    that number). Resolved, but followed up on the same call by a case still open (its caller
    said at the survey that they were not done): that one's state, under the ticket they
    have; they were never told the follow-up's, and "it was resolved" would be untrue."""
    where = [cases.c.ticket == ticket]
    if caller is not None:
        where.append(cases.c.caller == caller)
    with reading(conn):
        row = conn.execute(select(cases).where(*where)).first()
        if row is not None and row.status == "resolved":
            row = (
                conn.execute(
                    select(cases)
                    .where(
                        cases.c.parent_ticket == ticket,
                        cases.c.call_sid == row.call_sid,
                        cases.c.status != "resolved",
                    )
                    .order_by(cases.c.id.desc())
                    .limit(1)
                ).first()
                or row
            )
    if row is None:
        return None
    return CaseSummary(ticket, row.status, row.queue, row.priority, row.reason)


def account_history(conn: Connection, *, uid: str, exclude: int) -> list[dict[str, Any]]:
    with reading(conn):
        rows = (
            conn.execute(
                select(
                    cases.c.id,
                    cases.c.ticket,
                    cases.c.reason,
                    cases.c.status,
                    cases.c.created_at,
                    cases.c.notes,
                )
                .where(cases.c.account_uid == uid, cases.c.id != exclude)
                .order_by(cases.c.id.desc())
                .limit(20)
            )
            .mappings()
            .all()
        )
    return [dict(r) for r in rows]


def set_status(
    conn: Connection,
    *,
    case_id: int,
    status: str,
    now: datetime,
    only_from: tuple[str, ...] | None = None,
    **values: Any,
) -> bool:
    where = [cases.c.id == case_id]
    if only_from:
        where.append(cases.c.status.in_(only_from))
    if status == "connected":
        values.setdefault("connected_at", now)
        values.setdefault("talk_ended_at", None)
        values.setdefault("answered_at", None)
    if status in ("resolved",):
        values.setdefault("ended_at", now)
    with writing(conn):
        return (
            conn.execute(update(cases).where(*where).values(status=status, **values)).rowcount == 1
        )


# A claimed case back to what it was before it was claimed (waiting, or a call back).
_BACK_IN_LINE = {
    "status": func.coalesce(cases.c.claimed_from, "waiting"),
    "queued": 1,
    "agent_id": None,
    "offered_at": None,
    "offer": None,
    "accept_by": None,
    "talk_ended_at": None,
    "answered_at": None,
}

# How an offer reaches its caller (the case's `offer`; `Connect.mode` in the API).
OFFER_REDIRECTED = "redirected"  # Twilio redirects the live call to TwiML dialling the agent
OFFER_HOLD_LOOP = "next_hold_poll"  # the caller's next hold round takes them to the agent
# Twilio is placing the call back: "calling_back:~<placing>" until its CallSid is known, then
# "calling_back:<CallSid>". `placing` is a token of this one placement, in its links: a late
# report of an earlier call back of the case cannot be taken for this one's.
OFFER_CALLING = "calling_back"
OFFER_BY_HAND = "call_back"  # the agent dials the number themselves
OFFER_NO_NUMBER = "no_number"  # withheld: nobody to call; the agent acts on the account
# Connected, and the agent's phone answered (Twilio's report of the agent's <Dial>). Until
# then a connected caller is only on their way to the agent: their phone may ring unanswered,
# or the caller hang up meanwhile (and is then kept for a call back, as any caller waiting).
OFFER_ANSWERED = "answered"
# Offers only the agent can finish (their own call, their own judgement): once accepted, no
# timeout takes them back, a supervisor can.
AGENT_FINISHES = (OFFER_BY_HAND, OFFER_NO_NUMBER)


def _agents_offer(
    conn: Connection,
    *,
    case_id: int,
    agent_id: int,
    status: str,
    offer: str,
    accept_by: datetime | None = None,
    **values: Any,
) -> bool:
    """Set the case's offer (and `values`), if the case is still `agent_id`'s and `status`."""
    with writing(conn):
        return (
            conn.execute(
                update(cases)
                .where(
                    cases.c.id == case_id,
                    cases.c.agent_id == agent_id,
                    cases.c.status == status,
                )
                .values(offer=offer[:80], accept_by=accept_by, **values)
            ).rowcount
            == 1
        )


def set_offer(conn: Connection, *, case_id: int, agent_id: int, offer: str) -> bool:
    """Record how the agent's offer of the case reaches its caller, if it is still theirs."""
    return _agents_offer(conn, case_id=case_id, agent_id=agent_id, status="offered", offer=offer)


DeskOffer = Literal["offered", "lost", "away"]


def offer_at_desk(
    conn: Connection,
    *,
    case_id: int,
    agent_id: int,
    offer: str,
    now: datetime,
    accept_by: datetime,
) -> DeskOffer:
    """Offer the agent's case at their desk, to accept by `accept_by` (`accept_offer`):
    "offered"; "lost" if it is not theirs any more; "away" if they went away since it was
    claimed for them: it is back in line, as nobody's miss. The agent's row is read under
    its lock, after the case's (the lock order of every writer of both): going away either
    comes first and is seen here, or comes after and withdraws this offer."""
    with writing(conn):
        if not _agents_offer(
            conn,
            case_id=case_id,
            agent_id=agent_id,
            status="offered",
            offer=offer,
            accept_by=accept_by,
        ):
            return "lost"
        agent = conn.execute(_AGENT_TURN, {"agent": agent_id}).first()
        if agent is not None and agent.revoked_at is None and _still_available(agent, now):
            return "offered"
        conn.execute(update(cases).where(cases.c.id == case_id).values(**_BACK_IN_LINE))
        return "away"


# The audit actions of an agent's desk: a case taken when they asked for the next one, an
# offer at their desk accepted (by Accept, or by acting on it), and a dashboard sign-out.
TAKE = "take"
ACCEPT = "accept"
SIGN_OUT = "sign_out"


def accept_offer(
    conn: Connection,
    *,
    case_id: int,
    agent_id: int,
    actor: str | None = None,
    now: datetime | None = None,
    how: str | None = None,
) -> bool:
    """The agent accepts the case offered at their desk: theirs to finish from now on, as if
    they had asked for it. True while it is still theirs (accepted already, or never made
    to be accepted); False once it went back in line, or to someone else. The acceptance
    itself (not one again) is audited as `actor`'s (`ACCEPT`, at `now`; `how`: the reason,
    when it was by acting on the case) in the same transaction; None: not audited."""
    theirs = (cases.c.id == case_id, cases.c.agent_id == agent_id, HELD_NOW)
    with writing(conn):
        accepted = conn.execute(
            update(cases).where(*theirs, cases.c.accept_by.is_not(None)).values(accept_by=None)
        ).rowcount
        if accepted == 1 and actor is not None:
            audit(
                conn,
                actor=actor,
                action=ACCEPT,
                uid=None,
                case_id=case_id,
                reason=how,
                result="ok",
                now=now or datetime.now(UTC),
            )
            return True
        return conn.execute(select(cases.c.id).where(*theirs)).first() is not None


def unaccepted(conn: Connection, *, now: datetime) -> list[tuple[int, int]]:
    """The offers made at agents' desks and not accepted by their time: (case, agent)."""
    with reading(conn):
        rows = conn.execute(
            select(cases.c.id, cases.c.agent_id).where(
                HELD_NOW,  # the partial index: the offered cases among few
                cases.c.accept_by < bindparam("now", now, type_=cases.c.accept_by.type),
            )
        ).all()
    return [(r.id, r.agent_id) for r in rows if r.agent_id is not None]


def calling_back(offer: str | None) -> bool:
    return offer is not None and offer.split(":", 1)[0] == OFFER_CALLING


def new_placing() -> str:
    return secrets.token_hex(8)


def placing_offer(placing: str) -> str:
    """The offer of a call back being placed, before Twilio has said its CallSid."""
    return f"{OFFER_CALLING}:~{placing}"


def set_placed(
    conn: Connection, *, case_id: int, agent_id: int, call_sid: str, placing: str
) -> bool:
    """The call back Twilio placed for the agent's offer (`placing`) is `call_sid`: only its
    reports and its answer count from now on. Still the agent's offer, answered or not."""
    with writing(conn):
        return (
            conn.execute(
                update(cases)
                .where(
                    cases.c.id == case_id,
                    cases.c.agent_id == agent_id,
                    cases.c.status.in_(HELD),
                    cases.c.offer == placing_offer(placing),
                )
                .values(offer=f"{OFFER_CALLING}:{call_sid}"[:80])
            ).rowcount
            == 1
        )


def _placings(call_sid: str, placing: str | None) -> tuple[str, str]:
    """The offers that are the call back Twilio placed as `call_sid` (for `placing`, named
    in its links): with its sid, or still being placed. A link without `placing` (made by an
    older version) knows only the bare offer those versions stored."""
    return (placing_offer(placing) if placing else OFFER_CALLING, f"{OFFER_CALLING}:{call_sid}")


def placed_by(offer: str | None, call_sid: str, placing: str | None) -> bool:
    return offer in _placings(call_sid, placing)


def same_call_back(offer: str | None, call_sid: str, placing: str | None) -> bool:
    """A report of the call back `call_sid` (placed as `placing`) may touch the case: no
    other call back of it is being placed now."""
    return not calling_back(offer) or placed_by(offer, call_sid, placing)


def _placed_as(call_sid: str, placing: str | None) -> Any:
    return cases.c.offer.in_(_placings(call_sid, placing))


def connect_offer(
    conn: Connection,
    *,
    case_id: int,
    agent_id: int,
    now: datetime,
    placed: str | None,
    placing: str | None = None,
) -> bool:
    """The caller reached the agent's TwiML: their offer is connected, if it is still that
    agent's (and, for a call back, that call's `placed`, of the placement `placing`). A call
    back's call is kept in the case's flags (CALL_BACK_SID) until it ends (`call_back_ended`),
    to move it if the agent sends the case on while they talk."""
    where = [cases.c.id == case_id, cases.c.status == "offered", cases.c.agent_id == agent_id]
    if placed is not None:
        where.append(_placed_as(placed, placing))
    with writing(conn):
        connected = (
            conn.execute(
                update(cases)
                .where(*where)
                .values(status="connected", connected_at=now, talk_ended_at=None, answered_at=None)
            ).rowcount
            == 1
        )
        if connected and placed is not None:
            add_flags(conn, case_id=case_id, flags={CALL_BACK_SID: placed})
        return connected


CallBackEnded = Literal["ended", "asked", "not_this"]


def call_back_ended(conn: Connection, *, case_id: int, call_sid: str) -> CallBackEnded:
    """The call back's call `call_sid` is over (the agent's leg ended, or its status
    callback said so): its agent sending the case on from now sends it at once ("ended").
    "asked": its agent asked to send it on meanwhile (since the caller read the case), and
    nothing more will say the call ended: the caller makes that transfer now. Read and
    written under the row's lock, as `send_call_back_on` reads it."""
    with writing(conn):
        row = conn.execute(
            select(cases.c.flags, cases.c.status, cases.c.agent_id)
            .where(cases.c.id == case_id)
            .with_for_update()
        ).first()
        if row is None or (row.flags or {}).get(CALL_BACK_SID) != call_sid:
            return "not_this"
        if transfer_asked(dict(row._mapping)) is not None:
            return "asked"
        rest = {k: v for k, v in row.flags.items() if k != CALL_BACK_SID}
        conn.execute(_SET_FLAGS, {"case_id": case_id, "new_flags": rest})
        return "ended"


# The call Twilio placed for a call back, once its customer answered: the call to move out
# of the agent's <Dial> if the agent sends the case on while they talk.
CALL_BACK_SID = "call_back_sid"


# Twilio is placing the offer's call back: the customer may answer any moment, to be put
# through to this agent. Whatever ends the offer meanwhile leaves them nobody to talk to.
_PLACING = cases.c.offer.like(f"{OFFER_CALLING}%")
_NOT_PLACING = cases.c.offer.is_(None) | ~_PLACING
# An outbound call rings a minute at most (Twilio's default timeout is 60 s): a call back
# still marked as being placed after this lost its status callback, and the sweep may take it.
RING_AT_MOST = timedelta(minutes=2)


def requeue(
    conn: Connection,
    *,
    case_id: int,
    only_from: tuple[str, ...] = HELD,
    unless_placing: bool = False,
    agent_id: int | None = None,
    away: int | None = None,
    away_why: AwayReason = AWAY_MISSED,
    not_before: datetime | None = None,
    unaccepted_at: datetime | None = None,
    now: datetime | None = None,
) -> bool:
    """An agent's phone did not answer: the case goes back to its place in line, as what it
    was (a caller who asked for a call back, or hung up, is not on the line to redirect).
    `unless_placing`: not while Twilio places its call back (given back by hand). `agent_id`:
    only while it is that agent's (a late report of one agent's phone must not take the case
    from the next agent, who has it now). `away`: the agent who missed it, or gave it back,
    set away in the same transaction if it went back: nothing comes to them unasked until
    they say they are available again. `not_before`: nobody is offered it again until then.
    `unaccepted_at`: only an offer made at the agent's desk and not accepted by then.
    `now`: when (the agent's presence history says so); required with `away`.
    """
    if away is not None and now is None:
        raise TypeError("requeue: `now` is required with `away`")
    where = [cases.c.id == case_id, cases.c.status.in_(only_from)]
    if agent_id is not None:
        where.append(cases.c.agent_id == agent_id)
    if unless_placing:
        where.append(_NOT_PLACING)
    if unaccepted_at is not None:
        where.append(cases.c.accept_by < unaccepted_at)
    with writing(conn):
        later = {} if not_before is None else {"not_before": not_before}
        update_ = update(cases).where(*where).values(**_BACK_IN_LINE, connected_at=None, **later)
        moved = conn.execute(update_).rowcount == 1
        if moved and away is not None and now is not None:
            _set_away(conn, [away], away_why, now)
        return moved


MISSED_OFFER = "missed_offer"  # the audit action: what the figures count per agent
TRANSFER = "transfer"  # the audit action of a case sent on: counted per agent too


NOT_ACCEPTED = "not accepted"  # the missed offer's reason for one made at the desk


def missed_offer(
    conn: Connection,
    *,
    case_id: int,
    agent_id: int,
    dial_status: str,
    now: datetime,
    not_before: datetime | None = None,
) -> bool:
    """The agent's phone did not take the case offered to it (Twilio's `dial_status`: no
    answer, busy, failed; or answered with no key pressed at the screen), or they did not
    accept it at their desk in time (NOT_ACCEPTED): back to its place in line, the agent away
    (AWAY_MISSED, AWAY_NOT_ACCEPTED), and an audit record, which the figures count per agent.
    All in one transaction, once: False for a late or repeated report, or an offer accepted
    at the last moment. `not_before`: offered to nobody until then."""
    at_desk = dial_status == NOT_ACCEPTED
    with writing(conn):
        moved = requeue(
            conn,
            case_id=case_id,
            agent_id=agent_id,
            not_before=not_before,
            away=agent_id,
            away_why=AWAY_NOT_ACCEPTED if at_desk else AWAY_MISSED,
            unaccepted_at=now if at_desk else None,
            now=now,
        )
        if moved:
            name = conn.execute(select(users.c.name).where(users.c.id == agent_id)).scalar()
            audit(
                conn,
                actor=f"agent:{name}",
                action=MISSED_OFFER,
                uid=None,
                case_id=case_id,
                reason=dial_status,
                result="requeued",
                now=now,
            )
    return moved


def agent_accepted(conn: Connection, *, case_id: int, agent_id: int, now: datetime) -> bool:
    """The agent took the call with a key (IVR_AGENT_SCREENING): the caller on their way to
    this agent is theirs to talk to, and from now on a hang-up leaves the case with them.
    Answered now (`answered_at`), to the second, whatever the end of their leg reports."""
    return _agents_offer(
        conn,
        case_id=case_id,
        agent_id=agent_id,
        status="connected",
        offer=OFFER_ANSWERED,
        answered_at=now,
    )


def agent_answered(
    conn: Connection,
    *,
    case_id: int,
    agent_id: int | None,
    now: datetime,
    talked: timedelta | None = None,
) -> bool:
    """Twilio reports the agent's leg ended, answered: the case stays the agent's to resolve,
    now that they have hung up (`talk_ended_at`). If the caller's hang-up was stored first
    (the two reports raced) it abandoned the case for a call back; while no other agent has
    taken it, it is the agent's again, for they have talked. `talked`: how long the leg
    was answered (Twilio's DialCallDuration), which dates the answer (`answered_at`), unless
    the agent's key dated it already; never before the caller reached the <Dial>."""
    dated: dict[str, Any] = {}
    if talked is not None:
        at = bindparam("answered", now - talked, type_=cases.c.answered_at.type)
        dated["answered_at"] = func.coalesce(
            cases.c.answered_at,
            case_when((cases.c.connected_at > at, cases.c.connected_at), else_=at),
        )
    mine = [cases.c.id == case_id]
    if agent_id is not None:
        mine.append(cases.c.agent_id == agent_id)
    with writing(conn):
        if (
            conn.execute(
                update(cases)
                .where(*mine, cases.c.status == "connected")
                .values(offer=OFFER_ANSWERED, talk_ended_at=now, **dated)
            ).rowcount
            == 1
        ):
            return True
        if agent_id is None:
            return False
        return (
            conn.execute(
                update(cases)
                .where(
                    cases.c.id == case_id,
                    cases.c.status == "abandoned",
                    cases.c.queued == 1,
                    cases.c.connected_at.is_not(None),
                )
                .values(
                    status="connected",
                    queued=0,
                    agent_id=agent_id,
                    offered_at=cases.c.connected_at,
                    offer=OFFER_ANSWERED,
                    ended_at=None,
                    talk_ended_at=now,
                    **dated,
                )
            ).rowcount
            == 1
        )


# -- transfers: the agent on the call sends the caller on ----------------------------------

# A case whose caller hung up while still with the agent who sent them on: the agent asked
# for the call back (the figures do not count it abandoned: an agent had answered them).
SENT_AFTER_HANG_UP = "sent_after_hang_up"
RESOLVE = "resolve"  # the audit action of a case closed (by its agent, or a supervisor)
# A transfer asked, in the case's flags until the caller's call is back in line.
_ASKED = ("transfer_to", "transfer_priority", "transfer_language", "transfer_agent")
# What a case sent on leaves behind: the transfer made, the call it was talked on.
# A supervisor's move in line (`set_priority`) is of the line it was in; sent on, the agent
# chose its priority there.
_MOVED = ("priority_set_by", "priority_was", "priority_note")
# The priority a case entered its line with, kept through every move (the figures' by
# priority); `priority_was` says the last move's only.
ENTERED_PRIORITY = "entered_priority"
_NOT_SENT_ON = (*_ASKED, CALL_BACK_SID, *_MOVED, ENTERED_PRIORITY)


@dataclass(frozen=True)
class Transfer:
    """Where an agent sends a caller: `queue` at `priority`, to agents who speak `language`
    (None: the caller's own, unchanged); `note` for the agent who takes it next."""

    queue: str
    priority: Priority
    language: str | None = None
    note: str = ""


def changes_nothing(case: dict[str, Any], to: Transfer) -> bool:
    """Sending the case `to` leaves it where it is: its queue, priority and language."""
    language = to.language or case["language"]
    return (to.queue, to.priority, language) == (case["queue"], case["priority"], case["language"])


NOTHING_CHANGED = (
    "that transfer changes nothing: the case is in {queue} at {priority} priority in that "
    "language already. Choose another queue, priority or language (a caller who hung up: "
    '"Call them back")'
)

TransferAsked = Literal["asked", "not_yours", "call_back", "asked_already"]


def ask_transfer(
    conn: Connection, *, case_id: int, agent: User, to: Transfer, now: datetime
) -> TransferAsked:
    """The agent on the line with the case's caller sends them on (`to`): marked on the case,
    which stays theirs until the caller's call is back in line (`transferred`, run by the
    webhook that puts it there: Twilio's redirect, or the end of the agent's leg). Only a
    caller who called in and is connected to this agent: a call back has no queue to go back
    to. The agent talked to them, or could not send them on: their offer is answered from now
    on, so a hang-up leaves the case with them until the transfer is made (and puts it in
    line where it was sent, for a call back). Audited."""
    with writing(conn):
        row = conn.execute(
            select(cases.c.flags, cases.c.claimed_from, cases.c.offer)
            .where(cases.c.id == case_id, cases.c.agent_id == agent.id)
            .where(cases.c.status == "connected")
            .with_for_update()
        ).first()
        if row is None:
            return "not_yours"
        if (row.claimed_from or "waiting") != "waiting" or calling_back(row.offer):
            return "call_back"
        mine = {"flags": row.flags, "status": "connected", "agent_id": agent.id}
        if transfer_asked(mine) is not None:
            return "asked_already"
        conn.execute(
            update(cases)
            .where(cases.c.id == case_id)
            .values(flags=_asking(row.flags, agent, to), offer=OFFER_ANSWERED)
        )
        _audit_transfer(conn, agent=agent, case_id=case_id, to=to, result="asked", now=now)
        return "asked"


# A case's flag: the transfers made before its latest, oldest first, as a JSON list of
# {"by", "from", "note"}: what each agent said for the next is kept for all who follow.
EARLIER_TRANSFERS = "earlier_transfers"


def earlier_transfers(flags: dict[str, str] | None) -> list[dict[str, str]]:
    try:
        found = json.loads((flags or {}).get(EARLIER_TRANSFERS) or "[]")
    except ValueError:
        return []
    return [t for t in found if isinstance(t, dict)] if isinstance(found, list) else []


def _keeping_the_last_transfer(flags: dict[str, str] | None) -> dict[str, str]:
    """`flags` about to name a new transfer's agent and note: the last one made (not one
    still asked, which its agent is changing) joins the earlier ones first."""
    flags = dict(flags or {})
    if flags.get("transferred_by") and "transfer_agent" not in flags:
        made = {
            "by": flags["transferred_by"],
            "from": flags.get("transferred_from", ""),
            "note": flags.get("transfer_note", ""),
        }
        flags[EARLIER_TRANSFERS] = json.dumps([*earlier_transfers(flags), made], ensure_ascii=False)
    return flags


def _asking(flags: dict[str, str] | None, agent: User, to: Transfer) -> dict[str, str]:
    """The case's `flags` with `agent`'s transfer `to` asked (`transfer_asked`)."""
    asked = {
        **_keeping_the_last_transfer(flags),
        "transfer_to": to.queue,
        "transfer_priority": to.priority,
        "transfer_agent": str(agent.id),
        "transferred_by": agent.name,
        "transfer_note": to.note,
    }
    if to.language:
        asked["transfer_language"] = to.language
    return asked


def _audit_transfer(
    conn: Connection, *, agent: User, case_id: int, to: Transfer, result: str, now: datetime
) -> None:
    note = f": {to.note}" if to.note else ""
    reason = f"to {to.queue} ({to.priority}){note}"[:500]
    audit(
        conn,
        actor=f"agent:{agent.name}",
        action=TRANSFER,
        uid=None,
        case_id=case_id,
        reason=reason,
        result=result,
        now=now,
    )


def _sent_on(
    case: Any, to: Transfer, agent_id: int, now: datetime, *, agent: str
) -> dict[str, Any]:
    """The values of a case `agent_id` sent on `to`: back in line as what it was (a caller
    waiting, or a call back), nobody's, in that queue, lane and language; at the end of
    that line now, as any case of its priority, or in its own place when it stays in the
    same queue at the same priority. Its flags say who sent it on, from where, how often
    (the transfer asked, if any, is made)."""
    flags = {k: v for k, v in (case["flags"] or {}).items() if k not in _NOT_SENT_ON}
    flags |= {
        "transferred_from": case["queue"],
        "transferred_agent": str(agent_id),
        "transfers": str(int(flags.get("transfers", "0") or 0) + 1),
    }
    same_line = (to.queue, to.priority) == (case["queue"], case["priority"])
    joined = now - HIGH_BOOST if to.priority == "high" else now
    # Kept in its place in the same line (sort_at), but its wait there starts again now:
    # the queue page, the figures and the language wait count from it.
    place = {"queued_at": now} if same_line else {"sort_at": joined, "queued_at": now}
    return {
        **_BACK_IN_LINE,
        "legs": [*(case["legs"] or []), _leg(case, agent_id, agent, now)],
        "connected_at": None,
        "queue": to.queue,
        "priority": to.priority,
        "lane": 0 if to.priority == "emergency" else 1,
        "language": to.language or case["language"],
        "flags": flags,
        **place,
    }


def _leg(case: Any, agent_id: int, agent: str, now: datetime) -> dict[str, Any]:
    """The talk `agent_id` ends now by sending the case on, for the figures (`cases.legs`):
    the line it was in (and since when), as what (`from`: a caller waiting, or the call back
    it was), when the caller reached the agent and when they answered (None: not known)."""

    def at(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "queue": case["queue"],
        "priority": case["priority"],
        "from": case["claimed_from"] or "waiting",
        "agent_id": agent_id,
        "agent": agent,
        "entered_at": at(case["queued_at"] or case["created_at"]),
        "connected_at": at(case["connected_at"]),
        "answered_at": at(case["answered_at"]),
        "ended_at": at(now),
    }


def date_last_leg(
    conn: Connection, *, case: dict[str, Any], agent_id: int, answered: datetime
) -> bool:
    """The end of `agent_id`'s leg, reported after the redirect that sent their caller on
    (`transferred_away`), dates their answer in the talk that transfer kept (`legs`), if
    nothing dated it: within that talk, never before the caller reached them. Written only
    while that talk is still the case's last (a later transfer leaves it as it was)."""
    legs = list(case["legs"] or [])
    last = legs[-1] if legs and isinstance(legs[-1], dict) else None
    if last is None or last.get("agent_id") != agent_id or last.get("answered_at"):
        return False
    try:
        start = datetime.fromisoformat(last["connected_at"])
        end = datetime.fromisoformat(last["ended_at"])
        at = min(max(answered, start), end)
    except (KeyError, TypeError, ValueError):  # not as `_leg` wrote it (edited by hand)
        return False
    legs[-1] = {**last, "answered_at": at.isoformat()}
    with writing(conn):
        # The same number of talks as read: a transfer since then wrote another.
        return (
            conn.execute(
                update(cases)
                .where(
                    cases.c.id == case["id"],
                    func.json_array_length(cases.c.legs) == len(legs),
                )
                .values(legs=legs)
            ).rowcount
            == 1
        )


CallBackSent = Literal["sent", "asked", "asked_already", "not_yours", "to_accept", "ringing"]


def send_call_back_on(
    conn: Connection, *, case_id: int, agent: User, to: Transfer, now: datetime
) -> CallBackSent:
    """The agent who has a call back sends it on (`to`). One they make themselves (a number
    to dial by hand, or none: a withheld number), or one Twilio placed whose call has ended:
    back in line at once where it was sent ("sent"), the call back it was, nobody's, for that
    team; one call back per number and account in a line (`tidy_call_backs`). One Twilio
    placed whose customer is still on the line (its CALL_BACK_SID kept): asked ("asked"), and
    made as an inbound caller's is (`transferred`) when the customer's call leaves the
    agent's (a redirect, the agent's leg ending, the call ending), so that team does not
    call them while they still talk, nor does the agent get the next case then.
    Not while Twilio still rings the customer ("ringing": they may answer any moment, to be
    put through to this agent), nor one offered at their desk and not accepted
    ("to_accept"). Audited."""
    with writing(conn):
        row = (
            conn.execute(
                select(cases)
                .where(cases.c.id == case_id, cases.c.agent_id == agent.id, HELD_NOW)
                .with_for_update()
            )
            .mappings()
            .first()
        )
        if row is None or (row["claimed_from"] or "waiting") == "waiting":
            return "not_yours"
        if row["status"] == "offered" and row["offer"] not in AGENT_FINISHES:
            return "ringing"
        if row["accept_by"] is not None:
            return "to_accept"
        talking = row["status"] == "connected" and (row["flags"] or {}).get(CALL_BACK_SID)
        if talking:  # on Twilio's call, which has not ended
            if transfer_asked(dict(row)) is not None:
                return "asked_already"
            conn.execute(
                update(cases)
                .where(cases.c.id == case_id)
                .values(flags=_asking(row["flags"], agent, to))
            )
            _audit_transfer(conn, agent=agent, case_id=case_id, to=to, result="asked", now=now)
            return "asked"
        values = _sent_on(row, to, agent.id, now, agent=agent.name)
        kept = _keeping_the_last_transfer(row["flags"]).get(EARLIER_TRANSFERS)
        if kept:
            values["flags"][EARLIER_TRANSFERS] = kept
        values["flags"] |= {"transferred_by": agent.name, "transfer_note": to.note}
        conn.execute(
            update(cases)
            .where(cases.c.id == case_id)
            # The agent meant to call now: that team may at once.
            .values(**values, not_before=None)
        )
        if row["offered_at"] is not None:
            conn.execute(_idle_from(agent.id, row["offered_at"], now))
            conn.execute(presence_noted([agent.id], now))
        _audit_transfer(conn, agent=agent, case_id=case_id, to=to, result="call_back", now=now)
        tidy_call_backs(conn, call_sid=row["call_sid"])
        return "sent"


def transfer_asked(case: dict[str, Any]) -> Transfer | None:
    """The transfer the case's agent asked for and its caller has not made yet (one asked by
    an agent who no longer has the case is nobody's to make)."""
    flags = case["flags"] or {}
    if (
        case["status"] != "connected"
        or not flags.get("transfer_to")
        or flags.get("transfer_agent") != str(case["agent_id"])
    ):
        return None
    priority = flags.get("transfer_priority", "normal")
    return Transfer(
        queue=flags["transfer_to"],
        priority=priority if priority in ("emergency", "high") else "normal",
        language=flags.get("transfer_language") or None,
        note=flags.get("transfer_note", ""),
    )


def transferred_away(case: dict[str, Any], agent_id: int | None) -> bool:
    """The case went on from `agent_id` by a transfer they asked for: a report of their
    leg's end (the <Dial> a transfer cut) is not news."""
    flags = case["flags"] or {}
    return (
        agent_id is not None
        and flags.get("transferred_agent") == str(agent_id)
        and not (case["status"] in HELD and case["agent_id"] == agent_id)
    )


def connected_of_call(conn: Connection, *, call_sid: str) -> list[dict[str, Any]]:
    """The call's cases put through to an agent now (one, but for a bug)."""
    with reading(conn):
        rows = conn.execute(
            select(cases).where(cases.c.call_sid == call_sid, cases.c.status == "connected")
        )
        return [dict(r._mapping) for r in rows]


def ended_with_transfer_asked(conn: Connection, *, talked_before: datetime) -> list[dict[str, Any]]:
    """Cases put through whose call has ended with their transfer still asked: the report
    of the agent's leg, which would have made it, never came. A call back's caller is the
    customer Twilio called, whose call the hotline keeps no row of: its call is taken to
    have ended when it was put through by `talked_before` (as long as any call lasts,
    IVR_CALL_MAX_AGE), both of its reports lost."""
    call_ended = or_(
        (func.coalesce(cases.c.claimed_from, "waiting") == "waiting")
        & calls.c.ended_at.is_not(None),
        (func.coalesce(cases.c.claimed_from, "waiting") != "waiting")
        & (
            cases.c.connected_at
            <= bindparam("talked_before", talked_before, type_=cases.c.connected_at.type)
        ),
    )
    with reading(conn):
        rows = conn.execute(
            select(cases)
            .outerjoin(calls, calls.c.call_sid == cases.c.call_sid)
            .where(HELD_NOW, cases.c.status == "connected", call_ended)
        ).mappings()
        return [dict(row) for row in rows if transfer_asked(dict(row))]


PRIORITY = "priority"  # the audit action of a supervisor moving a case in line


def set_priority(
    conn: Connection,
    *,
    case_id: int,
    priority: Priority,
    supervisor: str,
    why: str,
    now: datetime,
) -> tuple[Priority, Priority] | None:
    """A supervisor moves a case waiting in line (a caller holding, a call back owed) to
    `priority`, in the same queue (`why`, for the agent who takes it): from and to, or None
    for a case not in line (an agent has it, or it is closed). Its place is where it would
    be had it arrived at that priority: its arrival kept (a call back's place, a transfer's
    kept place), HIGH_BOOST earlier when high; an emergency before the rest whatever its
    arrival. Moved into the emergency lane, it joined it `now` (`lane_at`), as the pager
    counts its wait there."""
    with writing(conn):
        row = conn.execute(
            select(cases.c.priority, cases.c.sort_at, cases.c.flags, cases.c.lane_at)
            .where(cases.c.id == case_id, cases.c.queued == 1)
            .with_for_update()  # PostgreSQL: nobody else merges into its flags meanwhile
        ).first()
        if row is None:
            return None
        was: Priority = row.priority
        arrived = row.sort_at + HIGH_BOOST if was == "high" else row.sort_at
        flags = {
            ENTERED_PRIORITY: was,  # the first move's: kept by the ones after it
            **(row.flags or {}),
            **dict(zip(_MOVED, (supervisor, was, why), strict=True)),
        }
        conn.execute(
            update(cases)
            .where(cases.c.id == case_id)
            .values(
                priority=priority,
                lane=0 if priority == "emergency" else 1,
                sort_at=arrived - HIGH_BOOST if priority == "high" else arrived,
                flags=flags,
                lane_at=(row.lane_at if was == "emergency" else now)
                if priority == "emergency"
                else None,
            )
        )
        return was, priority


def higher(one: Priority, other: Priority) -> Priority:
    order: tuple[Priority, ...] = ("emergency", "high", "normal")
    return one if order.index(one) <= order.index(other) else other


def transferred(
    case: dict[str, Any], *, now: datetime, gone: bool = False
) -> list[Update | Insert]:
    """The statements that put a case whose transfer was asked (`transfer_asked`) back in
    line where it was sent, run with its caller's call step (or their hang-up): waiting in
    the new queue, lane and language, joining its line now as any case of its priority
    (those waiting there have had no help yet; an emergency's lane is served first anyway),
    nobody's; its agent free for the next. Sent on in the same queue at the same priority
    (another language, say), it keeps its place. `gone`: its caller hung up while still with
    the agent (SENT_AFTER_HANG_UP). A call back (the customer Twilio called) goes back in
    line the call back it was, for that team to call: at once if `gone` (their call has
    ended), else once they have heard so (HEARD_AND_HUNG_UP). Only while the case is still
    the asking agent's and connected: a copy of the webhook that lost the call's step
    changes nothing."""
    to = transfer_asked(case)
    assert to is not None and case["agent_id"] is not None
    agent = (case["flags"] or {}).get("transferred_by", "")  # `_asking` this agent
    values = _sent_on(case, to, case["agent_id"], now, agent=agent)
    if (case["claimed_from"] or "waiting") != "waiting":
        # A call back: called by that team once the customer has heard so and hung up, not
        # while they still listen (busy: the next try would be a retry's wait away).
        values["not_before"] = None if gone else now + HEARD_AND_HUNG_UP
    elif gone:
        values["flags"][SENT_AFTER_HANG_UP] = "yes"
    return _leaving_agent(case, values, now)


def _leaving_agent(
    case: dict[str, Any], values: dict[str, Any], now: datetime
) -> list[Update | Insert]:
    """The statements that write `values` to a case its agent no longer has, while it is
    still theirs and connected, and free that agent for the next."""
    statements: list[Update | Insert] = [
        update(cases)
        .where(
            cases.c.id == case["id"],
            cases.c.status == "connected",
            cases.c.agent_id == case["agent_id"],
        )
        .values(**values)
    ]
    if case["offered_at"] is not None:
        statements.append(_idle_from(case["agent_id"], case["offered_at"], now))
        statements.append(presence_noted([case["agent_id"]], now))
    return statements


def back_after_talk(conn: Connection, *, case: dict[str, Any], now: datetime) -> bool:
    """A connected case whose call is over (the caller hung up, or the agent's leg ended
    and the caller left) and which its agent will not finish (their phone dropped, they
    went home): back in its own place in its line, for the next agent to call back, as
    a transfer to the same line makes it (`_sent_on`): the talk is kept in its `legs`, so
    the figures still count it answered, and not abandoned (SENT_AFTER_HANG_UP). Only
    while it is still its agent's and connected."""
    to = Transfer(queue=case["queue"], priority=case["priority"])
    with reading(conn):
        agent = conn.execute(select(users.c.name).where(users.c.id == case["agent_id"])).scalar()
    values = _sent_on(case, to, case["agent_id"], now, agent=agent or "")
    if case["talk_ended_at"] is not None:
        # Their talk ended then: the time the case lay with an agent gone is not handled.
        values["legs"][-1]["ended_at"] = case["talk_ended_at"].isoformat()
    if (case["claimed_from"] or "waiting") == "waiting":
        values |= {"status": "abandoned", "ended_at": now}
        values["flags"][SENT_AFTER_HANG_UP] = "yes"
    else:
        values["not_before"] = None
    first, *rest = _leaving_agent(case, values, now)
    with writing(conn):
        moved = conn.execute(first).rowcount == 1
        for statement in rest if moved else ():
            conn.execute(statement)
        return moved


def open_follow_up(conn: Connection, *, ticket: str) -> int | None:
    """An open case of the caller's made from this one (back in line from the survey):
    where they are now."""
    with reading(conn):
        return conn.execute(
            select(cases.c.id)
            .where(cases.c.parent_ticket == ticket, cases.c.status != "resolved")
            .limit(1)
        ).scalar()


MAX_CALLBACK_DELAY = timedelta(hours=1)
# A customer sent on from a call back Twilio placed hears so (about 10 s) and is hung up on.
HEARD_AND_HUNG_UP = timedelta(seconds=30)


def callback_missed(
    conn: Connection,
    *,
    case_id: int,
    call_sid: str,
    now: datetime,
    retry: timedelta,
    placing: str | None = None,
) -> bool:
    """The customer did not answer the call back (busy, no answer, failed): the case goes
    back to its place in line as the call back it was, not offered again for `retry`,
    doubled at each miss (an hour at most). Offered again at once, an unreachable number
    would be called by every agent in turn while callers wait. An emergency is tried again
    every `retry`, never later: a hijack victim who missed one call is not left an hour. Only
    the offer's own outbound call counts: a late report of an earlier one changes nothing."""
    return _missed(conn, case_id, _placed_as(call_sid, placing), now=now, retry=retry)


def not_reached(
    conn: Connection, *, case_id: int, agent_id: int, now: datetime, retry: timedelta
) -> bool:
    """The agent dialled the call back themselves (OFFER_BY_HAND) and nobody answered: as a
    call back Twilio placed that was not answered (`callback_missed`), the attempt counted
    and tried again later; the agent goes on with the next case. False if the case is not
    that agent's call back to dial (any more)."""
    theirs = (cases.c.agent_id == agent_id) & (cases.c.offer == OFFER_BY_HAND)
    return _missed(conn, case_id, theirs, now=now, retry=retry)


def _missed(
    conn: Connection, case_id: int, current: Any, *, now: datetime, retry: timedelta
) -> bool:
    with writing(conn):
        row = conn.execute(
            select(cases.c.flags, cases.c.lane)
            .where(cases.c.id == case_id, cases.c.status.in_(HELD), current)
            .with_for_update()
        ).first()
        if row is None:
            return False  # delivered again, or the case moved on meanwhile
        flags = dict(row.flags or {})
        missed = int(flags.get("callback_attempts", "0") or 0) + 1
        flags["callback_attempts"] = str(missed)
        backoff = retry if row.lane == 0 else retry * 2 ** (missed - 1)
        delay = min(backoff, MAX_CALLBACK_DELAY)
        return (
            conn.execute(
                update(cases)
                .where(cases.c.id == case_id, cases.c.status.in_(HELD), current)
                .values(**_BACK_IN_LINE, connected_at=None, not_before=now + delay, flags=flags)
            ).rowcount
            == 1
        )


_LATEST_CASE = (
    select(cases.c.id, cases.c.flags)
    .where(cases.c.call_sid == bindparam("sid"))
    .order_by(cases.c.id.desc())
    .limit(1)
    .with_for_update()  # PostgreSQL: nobody else merges into these flags meanwhile
)
_SET_FLAGS = (
    update(cases)
    .where(cases.c.id == bindparam("case_id"))
    .values(flags=bindparam("new_flags", type_=cases.c.flags.type))
)


def note_on_latest_case(conn: Connection, *, call_sid: str, flags: dict[str, str]) -> int | None:
    """Add flags to the call's newest case; its id, if it has one."""
    with writing(conn):
        row = conn.execute(_LATEST_CASE, {"sid": call_sid}).first()
        if row is None:
            return None
        conn.execute(_SET_FLAGS, {"case_id": row.id, "new_flags": {**(row.flags or {}), **flags}})
        return int(row.id)


def requeue_offers_before(conn: Connection, *, cutoff: datetime, now: datetime) -> int:
    """Offered cases no caller was connected to since `cutoff`: back to what they were. Not
    those the agent finishes by hand (a call back they dial, a withheld number): taken back
    in the middle of their call, another agent would call the customer again. (One of those
    offered at an agent's desk goes back if not accepted in time: `unaccepted`.)"""
    stale = (
        HELD_NOW,  # the partial index: the offered cases among few
        cases.c.status == "offered",
        cases.c.offered_at < cutoff,
        func.coalesce(cases.c.offer, "").not_in(AGENT_FINISHES),
        _NOT_PLACING | (cases.c.offered_at < cutoff - RING_AT_MOST),
    )
    with writing(conn):
        agents = conn.execute(select(cases.c.agent_id).where(*stale).with_for_update()).scalars()
        # Their agents never reached the callers: away, as after an offer they missed.
        _set_away(conn, [a for a in agents if a is not None], AWAY_TIMED_OUT, now)
        moved: int = conn.execute(update(cases).where(*stale).values(**_BACK_IN_LINE)).rowcount
        return moved


def add_flags(conn: Connection, *, case_id: int, flags: dict[str, str]) -> None:
    """Add to a case's flags, touching nothing else (its status may be changing meanwhile);
    read and written under the row's lock, so what another writer added stays."""
    with writing(conn):
        row = conn.execute(
            select(cases.c.flags).where(cases.c.id == case_id).with_for_update()
        ).first()
        if row is not None:
            merged = {**(row.flags or {}), **flags}
            conn.execute(_SET_FLAGS, {"case_id": case_id, "new_flags": merged})


def request_callback(conn: Connection, *, call_sid: str, number: str | None, now: datetime) -> bool:
    with writing(conn):
        return (
            conn.execute(
                update(cases)
                .where(cases.c.call_sid == call_sid, cases.c.status == "waiting")
                .values(status="callback_requested", callback_number=number)
            ).rowcount
            >= 1
        )


_ABANDON = (
    update(cases)
    .where(
        cases.c.call_sid == bindparam("sid"),
        (cases.c.status == "waiting")
        # An offer of this caller, not of a call back: that is a new call, and an agent is
        # already on it (a late or repeated status callback must not take it away).
        | (
            (cases.c.status == "offered")
            & (func.coalesce(cases.c.claimed_from, "waiting") == "waiting")
        )
        # On their way to the agent (the greeting, the agent's phone ringing): nobody has
        # talked to them yet.
        | (
            (cases.c.status == "connected")
            & (func.coalesce(cases.c.claimed_from, "waiting") == "waiting")
            & (func.coalesce(cases.c.offer, "") != OFFER_ANSWERED)
        ),
    )
    .values(
        status="abandoned",
        queued=1,
        agent_id=None,
        offered_at=None,
        offer=None,
        ended_at=bindparam("now", type_=cases.c.ended_at.type),
    )
)


def abandon_for_call(conn: Connection, *, call_sid: str, now: datetime) -> int:
    """The caller hung up before an agent had them: kept, visible and claimable, for a call
    back (see `tidy_call_backs` for the ones nobody can call back)."""
    with writing(conn):
        abandoned: int = conn.execute(_ABANDON, {"sid": call_sid, "now": now}).rowcount
        if abandoned:
            tidy_call_backs(conn, call_sid=call_sid)
        return abandoned


# A call back the caller settled by calling again (`on_the_line_again`): their new ticket.
SUPERSEDED_BY = "superseded_by"


def on_the_line_again(conn: Connection, *, call_sid: str, queue: str) -> int:
    """A caller whose number has a call back in line for `queue` (the same account, or none
    known), or offered at a desk and not accepted yet, is on the line again, and their new
    case was just opened: it takes the call back's place (the best of theirs in the same
    lane), and the call back leaves the line (and the desk), noted. They are served on the
    call instead of being rung on a busy line later. How many call backs left the line. In
    the transaction that opened the case.

    A call back whose caller verified stays, unless this one verified too: caller IDs are
    spoofed at will, and a call as the victim's number, keying their UID, must not take the
    victim's case out of line (and talk an agent into "a false alarm").

    Each call back that left says so in its flags (SUPERSEDED_BY, the new ticket), for the
    figures: a request the caller settled, not one the line failed to keep."""
    with writing(conn):
        live = conn.execute(
            select(cases.c.id, cases.c.caller, cases.c.account_uid, cases.c.lane)
            .add_columns(cases.c.sort_at, cases.c.ticket, cases.c.flags)
            .where(cases.c.call_sid == call_sid, cases.c.queue == queue, cases.c.queued == 1)
            .order_by(cases.c.id.desc())
            .limit(1)
        ).first()
        if live is None or withheld(live.caller):
            return 0
        same_account = cases.c.account_uid.is_(None)
        if live.account_uid:
            same_account = same_account | (cases.c.account_uid == live.account_uid)
        # In line, or offered at an agent's desk and not accepted yet (nobody dials it yet;
        # accepted, the agent has the number in hand, and the call back stays theirs).
        waiting_or_at_a_desk = ((cases.c.queued == 1) & cases.c.status.in_(CALL_BACKS)) | (
            (cases.c.status == "offered")
            & cases.c.accept_by.is_not(None)
            & cases.c.claimed_from.in_(CALL_BACKS)
        )
        earlier = conn.execute(
            select(cases.c.id, cases.c.lane, cases.c.sort_at, cases.c.flags, cases.c.status)
            .where(
                cases.c.caller == live.caller,
                cases.c.queue == queue,
                cases.c.id != live.id,
                waiting_or_at_a_desk,
                same_account,
                # One in a better lane (an emergency) stays: the new case cannot take that.
                cases.c.lane >= live.lane,
            )
            .with_for_update()
        ).all()
        if _verified(live.flags) != "yes":
            earlier = [e for e in earlier if _verified(e.flags) != "yes"]
        if not earlier:
            return 0
        place = min([e.sort_at for e in earlier if e.lane == live.lane], default=live.sort_at)
        if place < live.sort_at:
            conn.execute(update(cases).where(cases.c.id == live.id).values(sort_at=place))
        offered = [e.id for e in earlier if e.status == "offered"]
        if offered:  # off the agent's desk first, back to the call back it was
            conn.execute(update(cases).where(cases.c.id.in_(offered)).values(**_BACK_IN_LINE))
        conn.execute(
            update(cases)
            .where(cases.c.id.in_([e.id for e in earlier]))
            .values(queued=0, notes=f"The caller called again: ticket {live.ticket}, on the line.")
        )
        # Each merged into its own flags, read above under the rows' locks.
        conn.execute(
            _SET_FLAGS,
            [
                {"case_id": e.id, "new_flags": {**(e.flags or {}), SUPERSEDED_BY: live.ticket}}
                for e in earlier
            ],
        )
        return len(earlier)


def _verified(flags: dict[str, str] | None) -> str:
    return (flags or {}).get("verified", "not_attempted")


NOBODY_TO_CALL = "The caller withheld their number and gave no account: nobody to call back."


_VERIFICATION = ("verified", "factors")


def tidy_call_backs(conn: Connection, *, call_sid: str) -> int:
    """After a caller hung up, their call backs in line: one per number, queue and account.

    A frightened caller who rings and hangs up ten times (or a prankster) would otherwise
    put ten call backs ahead of every caller waiting on the line. The best placed of them
    stays, counting the calls (`calls_unanswered`) and taking the newest of what they
    learnt (their flags: a later call locked out of verifying, say); the others leave the
    line, kept and noted, still counted as abandoned. A caller who withheld their number
    and gave no account leaves nobody to call back and nothing to act on: out of the line
    too. How many cases left the line."""
    with writing(conn):
        caller = conn.execute(
            select(cases.c.caller).where(cases.c.call_sid == call_sid).limit(1)
        ).scalar()
        in_line = [cases.c.queued == 1, cases.c.status.in_(CALL_BACKS)]
        if withheld(caller):
            return conn.execute(
                update(cases)
                .where(cases.c.call_sid == call_sid, cases.c.account_uid.is_(None), *in_line)
                .values(queued=0, notes=NOBODY_TO_CALL)
            ).rowcount
        rows = conn.execute(
            select(cases.c.id, cases.c.ticket, cases.c.queue, cases.c.account_uid, cases.c.flags)
            .where(cases.c.caller == caller, *in_line)
            .order_by(cases.c.lane, cases.c.sort_at, cases.c.id)
            .with_for_update()
        ).all()
        kept: dict[tuple[str, str | None], Any] = {}
        merged: dict[int, list[int]] = {}
        for row in rows:
            best = kept.setdefault((row.queue, row.account_uid), row)
            if best is not row:
                merged.setdefault(best.id, []).append(row.id)
        by_id = {row.id: row for row in rows}

        def calls(row: Any) -> int:
            return int((row.flags or {}).get("calls_unanswered", "1") or 1)

        for best_id, others in merged.items():
            best = by_id[best_id]
            flags = dict(best.flags or {})
            for other in sorted(others):  # opened later, known later
                later = dict(by_id[other].flags or {})
                if flags.get("verified") == "yes" and later.get("verified") != "yes":
                    # Once the caller proved the account theirs, a later call from the number
                    # (spoofed at will) that did not does not undo it for the agent.
                    for key in _VERIFICATION:
                        later.pop(key, None)
                flags.update(later)
            flags["calls_unanswered"] = str(calls(best) + sum(calls(by_id[o]) for o in others))
            conn.execute(update(cases).where(cases.c.id == best_id).values(flags=flags))
            conn.execute(
                update(cases)
                .where(cases.c.id.in_(others), *in_line)
                .values(
                    queued=0,
                    notes=f"The same number called again: ticket {best.ticket} is in line "
                    "for the call back.",
                )
            )
        return sum(len(others) for others in merged.values())


_INSERT_AUDIT = insert(audit_log)
# A freeze's audit result besides ok (made) and failed (not confirmed: an outage, the account
# maybe still open): the account service has no account of that UID (keyed or typed wrong).
NO_ACCOUNT = "no_account"


def frozen_on_case(conn: Connection, *, case_id: int) -> list[str]:
    """The accounts agents froze on a case (the audit log's freezes that were made), oldest
    first, each once."""
    with reading(conn):
        found = conn.execute(
            select(audit_log.c.account_uid)
            .where(
                audit_log.c.action == "freeze",
                audit_log.c.case_id == case_id,
                audit_log.c.result == "ok",
                audit_log.c.account_uid.is_not(None),
            )
            .order_by(audit_log.c.id)
        ).scalars()
        return list(dict.fromkeys(found))


def audit(
    conn: Connection,
    *,
    actor: str,
    action: str,
    uid: str | None,
    case_id: int | None,
    reason: str | None,
    result: str,
    now: datetime,
) -> None:
    with writing(conn):
        conn.execute(
            _INSERT_AUDIT,
            {
                "at": now,
                "actor": actor,
                "action": action,
                "account_uid": uid,
                "case_id": case_id,
                "reason": reason,
                "result": result,
            },
        )


# -- users ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    phone: str | None
    languages: str | None = None  # as stored: `spoken` reads it


def _token_hash(token: str) -> str:
    # Tokens are 256 random bits: a plain SHA-256 is the right hash (no dictionary to guess from).
    return hashlib.sha256(token.encode()).hexdigest()


USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")

# The audit actions of staff administration (`ivr users`, the languages API). The user acted
# on is named in `reason` as `role:name`, as `set_away` names the agent; never a token.
USER_ADD = "user_add"
TOKEN_ISSUED = "token_issued"
USER_REVOKED = "user_revoked"
LANGUAGES_SET = "languages_set"


def _expiry_said(expires_at: datetime | None) -> str:
    return f"token expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "token never expires"


def _audit_staff(
    conn: Connection, actor: str, action: str, role: str, name: str, said: str, now: datetime
) -> None:
    audit(
        conn,
        actor=actor,
        action=action,
        uid=None,
        case_id=None,
        reason=f"{role}:{name}, {said}",
        result="ok",
        now=now,
    )


def create_user(
    conn: Connection,
    *,
    name: str,
    role: str,
    phone: str | None,
    now: datetime,
    expires_at: datetime | None = None,
    actor: str | None = None,
) -> str:
    """Create a user and return their API token, which works until `expires_at` (None:
    never); only its hash is stored. Audited as `actor`'s (`USER_ADD`) in the same
    transaction; None: not audited (tests' and the benchmark's staff only)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not USER_NAME.match(name):
        raise ValueError(
            "a user name is 1 to 64 letters, digits and . _ @ - (it names them in the audit)"
        )
    if phone is not None and not dialable(phone):
        raise ValueError(f"{phone!r} is no number to dial: give it in E.164, like +4420...")
    token = secrets.token_urlsafe(32)
    try:
        with writing(conn):
            conn.execute(
                insert(users).values(
                    name=name,
                    role=role,
                    phone=phone,
                    token_hash=_token_hash(token),
                    created_at=now,
                    token_expires_at=expires_at,
                )
            )
            if actor is not None:
                _audit_staff(conn, actor, USER_ADD, role, name, _expiry_said(expires_at), now)
    except IntegrityError:
        raise ValueError(f"a user named {name!r} exists already") from None
    return token


def _token_owner(conn: Connection, token: str) -> Any:
    with reading(conn):
        return conn.execute(
            select(users).where(
                users.c.token_hash == _token_hash(token), users.c.revoked_at.is_(None)
            )
        ).first()


def _expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and expires_at <= now


def user_by_token(conn: Connection, *, token: str, now: datetime | None = None) -> User | None:
    """The user whose API token this is, unless it has expired by `now` (by default the
    current time) or they are revoked."""
    row = _token_owner(conn, token)
    if row is None or _expired(row.token_expires_at, now or datetime.now(UTC)):
        return None
    return User(row.id, row.name, row.role, row.phone)


def expired_token_owner(conn: Connection, *, token: str, now: datetime) -> User | None:
    """The user whose API token this was, if it has expired by `now` (and they are not
    revoked): someone to tell to ask for a new one, not a guess."""
    row = _token_owner(conn, token)
    if row is None or not _expired(row.token_expires_at, now):
        return None
    return User(row.id, row.name, row.role, row.phone)


def open_session(conn: Connection, *, user_id: int, now: datetime, lasts: timedelta) -> str:
    """A dashboard sign-in: the secret for the browser's cookie (only its hash is kept)."""
    secret = secrets.token_urlsafe(32)
    with writing(conn):
        conn.execute(
            insert(sessions).values(
                secret_hash=_token_hash(secret),
                user_id=user_id,
                created_at=now,
                expires_at=now + lasts,
            )
        )
    return secret


_NOW = bindparam("now", type_=sessions.c.expires_at.type)
_SESSION_USER = (
    select(users, sessions.c.expires_at.label("session_expires_at"))
    .join(sessions, sessions.c.user_id == users.c.id)
    .where(
        sessions.c.secret_hash == bindparam("hash"),
        sessions.c.expires_at > _NOW,
        users.c.revoked_at.is_(None),
        # A session lasts no longer than the token it was signed in with.
        or_(users.c.token_expires_at.is_(None), users.c.token_expires_at > _NOW),
    )
)


@dataclass(frozen=True)
class Session:
    """A dashboard sign-in in force: whose, and when it ends (its own end, or its token's
    expiry if sooner)."""

    user: User
    ends: datetime


def session_by_secret(conn: Connection, *, secret: str, now: datetime) -> Session | None:
    """The session of this secret, while it lasts, its token has not expired and its user is
    not revoked."""
    with reading(conn):
        row = conn.execute(_SESSION_USER, {"hash": _token_hash(secret), "now": now}).first()
    if row is None:
        return None
    ends: datetime = row.session_expires_at
    if row.token_expires_at is not None:
        ends = min(ends, row.token_expires_at)
    return Session(User(row.id, row.name, row.role, row.phone), ends)


def user_by_session(conn: Connection, *, secret: str, now: datetime) -> User | None:
    """The user signed in with this session secret (`session_by_secret`)."""
    found = session_by_secret(conn, secret=secret, now=now)
    return found.user if found else None


def close_session(conn: Connection, *, secret: str) -> bool:
    with writing(conn):
        gone: int = conn.execute(
            delete(sessions).where(sessions.c.secret_hash == _token_hash(secret))
        ).rowcount
    return gone == 1


SIGN_IN = "sign_in"  # the audit action of a dashboard sign-in


def sign_out(conn: Connection, *, secret: str, now: datetime) -> User | None:
    """End the dashboard session of `secret` on the server (a copy of its cookie is void):
    its user, audited (`SIGN_OUT`, in the same transaction); None for no live session (signed
    out already, expired: nothing to audit)."""
    with writing(conn):
        user = user_by_session(conn, secret=secret, now=now)
        close_session(conn, secret=secret)
        if user is not None:
            audit(
                conn,
                actor=f"{user.role}:{user.name}",
                action=SIGN_OUT,
                uid=None,
                case_id=None,
                reason=None,
                result="ok",
                now=now,
            )
    return user


def sign_in(
    conn: Connection, *, user: User, now: datetime, lasts: timedelta, replacing: str | None
) -> str:
    """A dashboard sign-in of `user`, audited: the secret of a new session, for the browser's
    cookie. The session of the cookie it replaces (`replacing`: its secret) ends with it, not
    `lasts` later: a cookie the browser no longer holds must not be a session still open."""
    with writing(conn):
        if replacing:
            close_session(conn, secret=replacing)
        secret = open_session(conn, user_id=user.id, now=now, lasts=lasts)
        audit(
            conn,
            actor=f"{user.role}:{user.name}",
            action=SIGN_IN,
            uid=None,
            case_id=None,
            reason=None,
            result="ok",
            now=now,
        )
    return secret


def prune_sessions(conn: Connection, *, now: datetime) -> int:
    with writing(conn):
        gone: int = conn.execute(delete(sessions).where(sessions.c.expires_at <= now)).rowcount
    return gone


def list_users(conn: Connection, *, now: datetime) -> list[dict[str, Any]]:
    """Every user, oldest first: name, role, phone, created_at, revoked_at, available_since
    (an agent's presence: None when away or lapsed), languages, expires_at (when their token
    does; None: one made before tokens expired, which never does). Never a token (nor a key
    naming one)."""
    since = case_when((_available_after(now), users.c.available_since), else_=None)
    columns = (
        users.c.name,
        users.c.role,
        users.c.phone,
        users.c.created_at,
        users.c.revoked_at,
        since.label("available_since"),
        users.c.languages,
        users.c.token_expires_at.label("expires_at"),
    )
    with reading(conn):
        return [dict(r) for r in conn.execute(select(*columns).order_by(users.c.id)).mappings()]


def set_languages(
    conn: Connection,
    *,
    name: str,
    languages: list[str] | None,
    actor: str | None = None,
    now: datetime | None = None,
) -> bool:
    """The languages agent `name` speaks (catalog codes); None: every language. Callers in
    them are offered to this agent first: audited as `actor`'s (`LANGUAGES_SET`, at `now`)
    in the same transaction; None: not audited (tests only). False if there is no such
    agent (or revoked); ValueError for a code that is no language code."""
    stored = None
    if languages is not None:
        bad = [code for code in languages if not LANGUAGE_CODE.match(code)]
        if bad or not languages:
            raise ValueError(f"not a language code (en, zh-CN, ...): {', '.join(bad) or '-'}")
        stored = ",".join(sorted(set(languages)))
        if len(stored) > users.c.languages.type.length:  # type: ignore[attr-defined]
            raise ValueError("too many languages for one agent")
    agent = (users.c.name == name) & (users.c.role == "agent") & users.c.revoked_at.is_(None)
    with writing(conn):
        found = conn.execute(update(users).where(agent).values(languages=stored)).rowcount == 1
        if found and actor is not None:
            said = f"speaks {stored}" if stored else "speaks every language"
            _audit_staff(conn, actor, LANGUAGES_SET, "agent", name, said, now or datetime.now(UTC))
    return found


SET_AWAY = "set_away"  # the audit action of a supervisor setting an agent away


def set_away_by_name(conn: Connection, *, name: str, actor: str, now: datetime) -> bool:
    """A supervisor sets an agent away (gone without saying so): nothing comes to them
    unasked until they say they are available again, and a case offered at their desk and
    not accepted yet goes back in line. Audited with `actor` (who, their name in `reason`),
    in the same transaction, if they were available (not lapsed). False if there is no such
    agent (revoked ones included: they are away for good)."""
    agent = (users.c.name == name) & (users.c.role == "agent") & users.c.revoked_at.is_(None)
    with writing(conn):
        found = conn.execute(select(users.c.id).where(agent)).scalar()
        if found is None:
            return False
        _withdraw_desk_offers(conn, found)
        changed = conn.execute(
            update(users)
            .where(users.c.id == found, _available_after(now))
            .values(available_since=None, away_reason=AWAY_SET)
        ).rowcount
        if changed:
            conn.execute(presence_noted([found], now))
        # A lapsed availability too: else the end of a case they hold would revive it.
        _set_away(conn, [found], AWAY_SET, now)
        if changed == 1:
            audit(
                conn,
                actor=actor,
                action=SET_AWAY,
                uid=None,
                case_id=None,
                reason=f"agent:{name}",
                result="ok",
                now=now,
            )
    return True


def reissue_token(
    conn: Connection,
    *,
    name: str,
    expires_at: datetime | None = None,
    actor: str | None = None,
    now: datetime | None = None,
) -> str:
    """A new API token for `name` (shown once), working until `expires_at` (None: never): the
    old one, and every dashboard session signed in with it, stop working at once, on every
    instance. Lifts a revocation. Audited as `actor`'s (`TOKEN_ISSUED`, at `now`) in the same
    transaction, saying "reinstated" when it lifted a revocation; None: not audited (tests
    only)."""
    token = secrets.token_urlsafe(32)
    with writing(conn):
        # Read before the update clears it: a lifted revocation would leave no trace at all.
        before = conn.execute(
            select(users.c.role, users.c.revoked_at).where(users.c.name == name)
        ).first()
        changed = conn.execute(
            update(users)
            .where(users.c.name == name)
            .values(token_hash=_token_hash(token), revoked_at=None, token_expires_at=expires_at)
        ).rowcount
        # Sessions signed in with the old token (a leaked token's thief's too) end with it.
        conn.execute(
            delete(sessions).where(
                sessions.c.user_id.in_(select(users.c.id).where(users.c.name == name))
            )
        )
        if changed == 1 and before is not None and actor is not None:
            said = _expiry_said(expires_at)
            if before.revoked_at is not None:
                said = f"reinstated (revoked {before.revoked_at:%Y-%m-%d %H:%M} UTC), {said}"
            _audit_staff(
                conn, actor, TOKEN_ISSUED, before.role, name, said, now or datetime.now(UTC)
            )
    if changed != 1:
        raise ValueError(f"no user named {name!r}")
    return token


def revoke_user(conn: Connection, *, name: str, now: datetime, actor: str | None = None) -> int:
    """Someone left, or their token leaked: their token and sessions stop working at once, on
    every instance, and the cases offered to them and not connected yet go back in line now
    rather than after IVR_OFFER_TIMEOUT. A live call they are on goes on (its case stays
    theirs). A claim already past its token check as this commits still offers them its case,
    which goes back after IVR_OFFER_TIMEOUT. Audited as `actor`'s (`USER_REVOKED`) in the same
    transaction; None: not audited (tests only). How many cases went back; ValueError if
    there is no such user."""
    with writing(conn):
        found = conn.execute(select(users.c.id, users.c.role).where(users.c.name == name)).first()
        if found is None:
            raise ValueError(f"no user named {name!r}")
        user_id = found.id
        # The cases first, then the user's row: the order every other writer of both takes
        # (a requeue that sets its agent away), so that two of them never wait on each other.
        requeued: int = conn.execute(
            update(cases)
            .where(cases.c.status == "offered", cases.c.agent_id == user_id)
            .values(**_BACK_IN_LINE)
        ).rowcount
        conn.execute(
            update(users)
            .where(users.c.id == user_id)
            # The hash of a token nobody has: the column stays unique and never matches. Away:
            # a token issued again later lifts the revocation, not the presence.
            .values(
                token_hash=_token_hash(secrets.token_urlsafe(32)),
                revoked_at=now,
                available_since=None,
            )
        )
        conn.execute(presence_noted([user_id], now))
        conn.execute(delete(sessions).where(sessions.c.user_id == user_id))
        if actor is not None:
            said = f"{requeued} offered case(s) back in line"
            _audit_staff(conn, actor, USER_REVOKED, found.role, name, said, now)
        return requeued
