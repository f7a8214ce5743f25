"""The call log as supervisors read it: filtered lists, one call's timeline, CSV rows.

A call's outcome is derived, not stored, as the figures count it (`ivr.stats`): from its
newest case (hung up on the way to an emergency queue, call back, abandoned, answered by an
agent, still queued, or closed without anyone speaking to the caller: ended) or, with no
case, from how it ended (self-service when the caller heard advice on their topic;
otherwise ended, or still in progress).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Connection,
    FromClause,
    and_,
    case,
    func,
    or_,
    select,
    true,
    union,
)

from ivr import recordings
from ivr.cases import SENT_AFTER_HANG_UP, audit
from ivr.db import audit_log, call_events, calls, cases, in_utc, users
from ivr.engine import HUNG_UP_AT
from ivr.retention import masked
from ivr.stats import AGENT_KINDS, SELF_HELP_KINDS
from ivr.store import reading

# How a call ended, as the log says it (`_outcome_expr`), and what its verification came to.
Outcome = Literal[
    "agent",
    "abandoned",
    "hung_up_on_the_way",
    "callback",
    "queued",
    "self_service",
    "in_progress",
    "ended",
]
Verified = Literal["yes", "no", "skipped", "locked", "unavailable", "not_attempted"]
# A caller to look for: their whole number, or its last digits (two at least).
CALLER_PATTERN = r"^\+?\d{2,15}$"


@dataclass(frozen=True)
class CallFilter:
    since: datetime | None = None
    until: datetime | None = None
    outcome: str | None = None
    topic: str | None = None
    queue: str | None = None
    verified: str | None = None  # yes, no, skipped, locked, unavailable, not_attempted
    emergency: bool | None = None
    caller: str | None = None  # a number or its last digits: matched on the last 4
    ticket: str | None = None  # a case of the call has it, or follows it up (main menu 9)
    account: str | None = None  # a case of the call is about this account UID
    agent: str | None = None  # a case of the call is this agent's, by name (users.name)


# The audit actions of reading callers' data in bulk: a CSV export (any filters), and a list
# looked up by a caller's number or an account UID (`audit_lookup`).
EXPORT_CALLS = "export_calls"
SEARCH_CALLS = "search_calls"
# And from a terminal: one call's timeline (`ivr calls show`, its CallSid the reason), and
# every call's events as they come (`ivr calls tail`, audited as it starts).
SHOW_CALL = "show_call"
TAIL_CALLS = "tail_calls"


def searches_someone(f: CallFilter) -> bool:
    """Whether the filters look for one person's calls: by their number, or their account."""
    return bool(f.caller or f.account)


def filters_said(f: CallFilter) -> str:
    """The filters used, as an audit entry says them: a caller's number masked as the log
    shows numbers (the audit log outlives an erasure of the number), an account by name only
    (its UID is the entry's `account_uid`)."""
    said = []
    for field in fields(f):
        value = getattr(f, field.name)
        if value is None:
            continue
        if field.name == "caller":
            said.append(f"caller={masked(value)}")
        elif field.name == "account":
            said.append("account")
        else:
            shown = value.isoformat() if isinstance(value, datetime) else value
            said.append(f"{field.name}={shown}")
    return " ".join(said) or "no filters"


def audit_shown(conn: Connection, *, actor: str, call_sid: str, now: datetime) -> None:
    """Who read which call's timeline (`SHOW_CALL`: the API, the dashboard, `ivr calls
    show`). One insert, off the webhooks."""
    audit(
        conn,
        actor=actor,
        action=SHOW_CALL,
        uid=None,
        case_id=None,
        reason=call_sid[:64],
        result="ok",
        now=now,
    )


def audit_lookup(
    conn: Connection,
    *,
    actor: str,
    action: str,
    filters: CallFilter,
    rows: int,
    now: datetime,
    cut: bool = False,
) -> None:
    """Who read which calls (`EXPORT_CALLS`, `SEARCH_CALLS`): the filters (`filters_said`)
    and how many rows they got. One insert, off the webhooks."""
    audit(
        conn,
        actor=actor,
        action=action,
        uid=filters.account,
        case_id=None,
        reason=f"{filters_said(filters)}; {rows} row(s)" + ("; more left out" if cut else ""),
        result="ok",
        now=now,
    )


def _fact(name: str) -> ColumnElement[str]:
    fact: ColumnElement[str] = calls.c.state[("facts", name)].as_string()
    return fact


# A call's latest case, looked up per call listed (ix_cases_call_sid: a few rows),
# not grouped over every case ever opened before the page's calls are picked.
_latest_case_id = (
    select(func.max(cases.c.id)).where(cases.c.call_sid == calls.c.call_sid).scalar_subquery()
)
_case = cases.alias("call_case")


def _entered(*kinds: str) -> ColumnElement[bool]:
    """The call entered a node of one of these kinds (its `entered` events)."""
    return (
        select(call_events.c.id)
        .where(
            call_events.c.call_sid == calls.c.call_sid,
            call_events.c.kind == "entered",
            call_events.c.detail["node_kind"].as_string().in_(kinds),
        )
        .exists()
    )


# The same classes as the figures (`stats._judge`, and `stats` containment), of a
# call's latest case: a caller who hung up on their way to an emergency queue is counted
# apart there (`hung_up_on_the_way`: never in line, so no abandon), whoever called them back
# since; a call back asked for, or made, is a call back whoever closed it; an
# abandoned case an agent took later is still abandoned; only a caller an agent spoke to is
# `agent`. Without a case, self-service is a call that heard advice on its topic and ended
# normally, never passed to a person. Not the figures' count itself: those count every case
# (and every line a transferred caller went through) by when it was opened, the log one row
# per call by when it started, judged by its latest case; a caller answered, then back in
# line from the survey and hung up, is one answer and one abandon there, "abandoned" here.
_outcome_expr = case(
    (_case.c.flags[HUNG_UP_AT].as_string().is_not(None), "hung_up_on_the_way"),
    (
        or_(
            _case.c.status == "callback_requested",
            _case.c.claimed_from == "callback_requested",
            _case.c.callback_number.is_not(None),
            _case.c.flags[SENT_AFTER_HANG_UP].as_string() == "yes",
        ),
        "callback",
    ),
    (or_(_case.c.status == "abandoned", _case.c.claimed_from == "abandoned"), "abandoned"),
    (_case.c.connected_at.is_not(None), "agent"),
    (_case.c.status.in_(("waiting", "offered", "connected")), "queued"),
    (_case.c.id.is_not(None), "ended"),  # closed without anyone speaking to the caller
    (calls.c.ended_at.is_(None), "in_progress"),
    (
        and_(
            calls.c.status == "completed",
            _fact("topic").is_not(None),
            _entered(*SELF_HELP_KINDS),
            ~_entered(*AGENT_KINDS),
        ),
        "self_service",
    ),
    else_="ended",
).label("outcome")


def _base() -> Any:
    return (
        select(
            calls.c.call_sid,
            calls.c.from_number,
            calls.c.started_at,
            calls.c.ended_at,
            calls.c.duration_seconds,
            calls.c.status,
            calls.c.state,
            _outcome_expr,
            _case.c.id.label("case_id"),
            _case.c.ticket,
            _case.c.queue.label("case_queue"),
            _case.c.priority.label("case_priority"),
            _case.c.agent_id,
            _case.c.accept_by.label("case_accept_by"),
        )
        .select_from(calls)
        .outerjoin(_case, _case.c.id == _latest_case_id)
    )


def _where(f: CallFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if f.since:
        where.append(calls.c.started_at >= f.since)
    if f.until:
        where.append(calls.c.started_at < f.until)
    if f.outcome:
        where.append(_outcome_expr == f.outcome)
    if f.topic:
        where.append(_fact("topic") == f.topic)
    if f.queue:
        where.append(or_(_case.c.queue == f.queue, _fact("queue") == f.queue))
    if f.verified == "not_attempted":
        where.append(_fact("verified").is_(None))
    elif f.verified:
        where.append(_fact("verified") == f.verified)
    if f.emergency is not None:
        # The case's priority too: a victim who hung up on the way to the emergency queue has
        # an emergency case their call's state never reached.
        is_emergency = func.coalesce(_case.c.priority, _fact("priority"), "") == "emergency"
        where.append(is_emergency if f.emergency else ~is_emergency)
    if f.caller:
        # Numbers are shown masked (the last 4 digits): matched on more, a number's other
        # digits would be read off the answers one by one.
        digits = "".join(c for c in f.caller if c.isdigit())[-4:]
        where.append(calls.c.from_number.like(f"%{digits}"))
    # Any case of the call, not only its latest: a call that reached two queues has two.
    if f.account:
        # The account's cases from their index, then their calls by key; and the cases an
        # agent froze it on while the case is another account's (`also_frozen`), from the
        # audit log's freezes (its action index).
        frozen_on = select(audit_log.c.case_id).where(
            audit_log.c.action == "freeze",
            audit_log.c.account_uid == f.account,
            audit_log.c.result == "ok",
        )
        about = union(
            select(cases.c.call_sid).where(cases.c.account_uid == f.account),
            select(cases.c.call_sid).where(cases.c.id.in_(frozen_on)),
        )
        where.append(calls.c.call_sid.in_(about))
    if f.agent:
        # A case of the call this agent had (still has, or closed): a shift's work, by whom.
        theirs = (
            select(cases.c.call_sid)
            .join(users, users.c.id == cases.c.agent_id)
            .where(users.c.name == f.agent)
        )
        where.append(calls.c.call_sid.in_(theirs))
    return where


def _ticket_calls(conn: Connection, ticket: str) -> list[str]:
    """The calls of a ticket's case and of the follow-ups linked to it (main menu 9): a few,
    each found from its index (the ticket's, the parent ticket's). Looked up first: in one
    statement, SQLite walks every call newest first, testing each against the two."""
    found = union(
        select(cases.c.call_sid).where(cases.c.ticket == ticket),
        select(cases.c.call_sid).where(cases.c.parent_ticket == ticket),
    )
    return list(conn.execute(found).scalars())


def encode_cursor(row: dict[str, Any]) -> str:
    raw = f"{row['started_at'].isoformat()}|{row['call_sid']}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValueError for a cursor this module did not make."""
    try:
        started, sid = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        moment = datetime.fromisoformat(started)
        if moment.tzinfo is None:  # encode_cursor's times are aware: this one was made up
            raise ValueError(started)
        return in_utc(moment), sid
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("not a cursor from this API") from None


def list_calls(
    conn: Connection, *, filters: CallFilter, limit: int = 50, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Calls newest first; the cursor for the next page, if there is one."""
    where = _where(filters)
    if cursor:
        started, sid = decode_cursor(cursor)
        # The first term alone is the index range a page starts from; the OR is its
        # edge (equal times, by call sid). Without it, each page re-read those before it.
        where.append(calls.c.started_at <= started)
        where.append(
            or_(
                calls.c.started_at < started,
                and_(calls.c.started_at == started, calls.c.call_sid < sid),
            )
        )
    with conn.begin():
        if filters.ticket:
            where.append(calls.c.call_sid.in_(_ticket_calls(conn, filters.ticket)))
        query = (
            _base()
            .where(*where)
            .order_by(calls.c.started_at.desc(), calls.c.call_sid.desc())
            .limit(limit + 1)
        )
        rows = [dict(r) for r in conn.execute(query).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1]) if more and rows else None


def timeline(conn: Connection, *, call_sid: str) -> dict[str, Any] | None:
    """One call whole: the call, every event in order, its cases, what was done to them, and
    the recordings of their calls with agents."""
    with conn.begin():
        call = conn.execute(_base().where(calls.c.call_sid == call_sid)).mappings().first()
        if call is None:
            return None
        events = (
            conn.execute(
                select(call_events)
                .where(call_events.c.call_sid == call_sid)
                .order_by(call_events.c.id)
            )
            .mappings()
            .all()
        )
        call_cases = (
            conn.execute(
                select(cases, users.c.name.label("agent"))
                .outerjoin(users, users.c.id == cases.c.agent_id)
                .where(cases.c.call_sid == call_sid)
                .order_by(cases.c.id)
            )
            .mappings()
            .all()
        )
        audits = (
            conn.execute(
                select(audit_log)
                .where(
                    or_(
                        audit_log.c.case_id.in_([c["id"] for c in call_cases] or [-1]),
                        # Both arms looked up (ix_audit_log_actor_at), not the whole log read.
                        audit_log.c.actor == f"caller:{call_sid}",
                    )
                )
                .order_by(audit_log.c.id)
            )
            .mappings()
            .all()
        )
    kept = recordings.of_cases(conn, case_ids=[c["id"] for c in call_cases])
    return {
        "call": dict(call),
        "events": [dict(e) for e in events],
        "cases": [dict(c) for c in call_cases],
        "audit": [dict(a) for a in audits],
        "recordings": kept,
    }


# The audit actions of a freeze: a verified caller's own on the emergency path, an agent's,
# and an operator's unfreeze (`ivr accounts unfreeze`).
FREEZE_ACTIONS = ("self_freeze", "freeze", "unfreeze")
_later = audit_log.alias("later")


def _made(entry: FromClause) -> ColumnElement[bool]:
    """An audit entry (of `audit_log` or an alias of it) of a freeze that was made: by the
    caller or an agent, confirmed by the account service."""
    return and_(entry.c.action.in_(("self_freeze", "freeze")), entry.c.result == "ok")


def freezes(
    conn: Connection,
    *,
    since: datetime,
    until: datetime | None,
    limit: int,
    open_only: bool = False,
) -> list[dict[str, Any]]:
    """Every freeze and unfreeze in [since, until) (None: up to now), newest first, with its
    case's ticket and call; for one that failed (the account service did not confirm it),
    when the account was frozen after it (`frozen_after`): None while nobody has, whatever
    the period asked.
    `open_only`: only those failed ones nobody has made since."""
    frozen_after = (
        select(func.min(_later.c.at))
        .where(
            _later.c.account_uid == audit_log.c.account_uid,
            _made(_later),
            _later.c.at >= audit_log.c.at,
        )
        .scalar_subquery()
    )
    query = (
        select(
            audit_log.c.at,
            audit_log.c.action,
            audit_log.c.account_uid,
            audit_log.c.actor,
            audit_log.c.result,
            audit_log.c.reason,
            audit_log.c.case_id,
            cases.c.ticket,
            cases.c.call_sid,
            case((audit_log.c.result == "failed", frozen_after), else_=None).label("frozen_after"),
        )
        .outerjoin(cases, cases.c.id == audit_log.c.case_id)
        .where(
            audit_log.c.action.in_(FREEZE_ACTIONS),
            audit_log.c.at >= since,
            audit_log.c.at < until if until is not None else true(),
        )
        .where((audit_log.c.result == "failed") & frozen_after.is_(None) if open_only else true())
        .order_by(audit_log.c.at.desc(), audit_log.c.id.desc())
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def account_frozen(conn: Connection, *, uid: str) -> dict[str, Any] | None:
    """The account's freeze in force, as the hotline knows it: its latest freeze that was made
    (as `freezes` tells one, by anyone, on any case) with no unfreeze after it; its time,
    action, actor and case's ticket. None: not frozen by the hotline (the exchange may have
    frozen it, or lifted a freeze, by its own means)."""
    unfrozen = (audit_log.c.action == "unfreeze") & (audit_log.c.result == "ok")
    with reading(conn):
        latest = (
            conn.execute(
                select(
                    audit_log.c.at,
                    audit_log.c.action,
                    audit_log.c.actor,
                    audit_log.c.case_id,
                    cases.c.ticket,
                )
                .outerjoin(cases, cases.c.id == audit_log.c.case_id)
                .where(audit_log.c.account_uid == uid, _made(audit_log) | unfrozen)
                .order_by(audit_log.c.at.desc(), audit_log.c.id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
    return dict(latest) if latest is not None and latest["action"] != "unfreeze" else None


def last_freeze(conn: Connection, *, case_id: int, actor: str) -> dict[str, Any] | None:
    """`actor`'s latest freeze on the case (its account, result and reason): what the desk
    says of the freeze just asked, from the record, not from words in its address."""
    with reading(conn):
        found = (
            conn.execute(
                select(audit_log.c.account_uid, audit_log.c.result, audit_log.c.reason)
                .where(
                    audit_log.c.case_id == case_id,
                    audit_log.c.actor == actor,
                    audit_log.c.action == "freeze",
                )
                .order_by(audit_log.c.id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
    return dict(found) if found is not None else None


# What sends a case an agent had back in line, as the audit log says: a requeue (its agent
# gave it back, a supervisor took it) or an offer missed (a phone that did not take the call,
# one at the desk not accepted in time).
TAKEN_BACK = ("requeue", "missed_offer")


def last_taken_back(conn: Connection, *, case_id: int) -> dict[str, Any] | None:
    """The case's latest requeue or missed offer: its time, action, actor and reason."""
    with reading(conn):
        found = (
            conn.execute(
                select(audit_log.c.at, audit_log.c.action, audit_log.c.actor, audit_log.c.reason)
                .where(audit_log.c.case_id == case_id, audit_log.c.action.in_(TAKEN_BACK))
                .order_by(audit_log.c.id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
    return dict(found) if found is not None else None


def calls_begun(conn: Connection, *, now: datetime, over: timedelta) -> tuple[int, int]:
    """Calls that began in the last `over`, and in the `over` before that: whether more are
    coming than a while ago (a surge), on the calls' start index."""
    start = calls.c.started_at
    recent = func.sum(case((start >= now - over, 1), else_=0))
    with reading(conn):
        row = conn.execute(
            select(func.count(), recent).where(start >= now - 2 * over, start <= now)
        ).one()
    total, last = int(row[0]), int(row[1] or 0)
    return last, total - last


# -- the audit log, as supervisors read it ------------------------------------------------

# The audit actions of reading the audit log itself: a CSV export (any filters), and a list
# looked up by an account UID (as `SEARCH_CALLS`).
EXPORT_AUDIT = "export_audit"
SEARCH_AUDIT = "search_audit"
ACTION_PATTERN = r"^[a-z_]{1,32}$"


@dataclass(frozen=True)
class AuditFilter:
    since: datetime | None = None
    until: datetime | None = None
    # Who, as the entries name them (`agent:alice`, `cli:alice via sudo as root`), or every
    # actor of a kind (`cli:`, `caller:`: a value ending in a colon).
    actor: str | None = None
    action: str | None = None
    account_uid: str | None = None


def audit_filters_said(f: AuditFilter) -> str:
    """The filters used, as the audit entry of a read says them: the account by name only
    (its UID is the entry's `account_uid`)."""
    said = []
    for field in fields(f):
        value = getattr(f, field.name)
        if value is None:
            continue
        if field.name == "account_uid":
            said.append("account")
        else:
            shown = value.isoformat() if isinstance(value, datetime) else value
            said.append(f"{field.name}={shown}")
    return " ".join(said) or "no filters"


def _audit_where(f: AuditFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if f.since:
        where.append(audit_log.c.at >= f.since)
    if f.until:
        where.append(audit_log.c.at < f.until)
    if f.actor and f.actor.endswith(":"):
        # A kind: no index range for a LIKE under most collations; the period's entries
        # are read (newest first, from ix_audit_log_at_id) until the page is full.
        where.append(audit_log.c.actor.startswith(f.actor, autoescape=True))
    elif f.actor:
        where.append(audit_log.c.actor == f.actor)  # ix_audit_log_actor_at
    if f.action:
        where.append(audit_log.c.action == f.action)
    if f.account_uid:
        where.append(audit_log.c.account_uid == f.account_uid)
    return where


def encode_audit_cursor(row: dict[str, Any]) -> str:
    raw = f"{row['at'].isoformat()}|{row['id']}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_audit_cursor(cursor: str) -> tuple[datetime, int]:
    """Raises ValueError for a cursor this module did not make."""
    try:
        at, entry = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None or not entry.isdigit() or len(entry) > 18:
            raise ValueError(at)
        return in_utc(moment), int(entry)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        raise ValueError("not a cursor from this API") from None


def list_audit(
    conn: Connection, *, filters: AuditFilter, limit: int = 50, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Audit entries newest first, each with its case's ticket and call (if it names a case
    still kept); the cursor for the next page, if there is one. Rows as stored: their free
    text was masked or blanked as the purge and erasures do, and no entry ever holds a
    verification factor's digits or a token."""
    where = _audit_where(filters)
    if cursor:
        at, entry = decode_audit_cursor(cursor)
        # As `list_calls`: the first term is the index range, the OR its edge.
        where.append(audit_log.c.at <= at)
        where.append(or_(audit_log.c.at < at, and_(audit_log.c.at == at, audit_log.c.id < entry)))
    query = (
        select(audit_log, cases.c.ticket, cases.c.call_sid)
        .outerjoin(cases, cases.c.id == audit_log.c.case_id)
        .where(*where)
        .order_by(audit_log.c.at.desc(), audit_log.c.id.desc())
        .limit(limit + 1)
    )
    with reading(conn):
        rows = [dict(r) for r in conn.execute(query).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_audit_cursor(rows[-1]) if more and rows else None


def audit_read(
    conn: Connection,
    *,
    actor: str,
    action: str,
    filters: AuditFilter,
    rows: int,
    now: datetime,
    cut: bool = False,
) -> None:
    """Who read which audit entries (`EXPORT_AUDIT`, `SEARCH_AUDIT`), as `audit_lookup`."""
    audit(
        conn,
        actor=actor,
        action=action,
        uid=filters.account_uid,
        case_id=None,
        reason=f"{audit_filters_said(filters)}; {rows} row(s)" + ("; more left out" if cut else ""),
        result="ok",
        now=now,
    )
