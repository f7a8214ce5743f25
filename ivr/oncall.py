"""Paging the on-call when the emergency lane waits too long.

An exchange's hotline at three in the morning: nobody on shift, or everyone on a call, and a
hijack victim in the emergency lane. Every instance looks every IVR_TREE_SYNC seconds (one
read: the emergency case first in line). The first to see one that has waited IVR_PAGE_AFTER,
or one at all while no agent is at work (`Hotline.page_on_call`), takes the page's turn and
texts the on-call numbers (IVR_PAGE_NUMBERS) through Twilio, and rings them too with
IVR_PAGE_CALL (a text may not wake anyone): how many emergencies wait, the longest wait and
its ticket, the agents available and at work, and the queue page's address. Nothing about
the caller goes in it (no number, no account).

Turns are rows of `pages`, unique by `turn`: two instances seeing the same wait both try to
write the next turn, and one of them is refused, so the on-call get one text. A page holds
the next one back until IVR_PAGE_REPEAT has passed while emergencies keep waiting (while it
is being sent, only as long as sending may take: an instance that stops meanwhile leaves
the page to the next); one that Twilio refused for every number is tried again after
RETRY_FAILED (doubled for each such page in a row, up to RETRY_FAILED_AT_MOST). Without
numbers the page is only logged, as an error: the log is the alert then.

Someone on call acknowledges a page, by pressing 1 on its call, by texting back the code its
text gives, or from the queue page (`acknowledge`): everyone sees who is coming, the other
numbers are told, and the next page waits IVR_PAGE_REPEAT from then. It still comes if
emergencies are waiting then: whoever said they were coming may not have got there.

A surge does not wait for the hold: once the emergency lane is at least twice what the last
page said, and IVR_PAGE_SURGE more (`surged`), everyone is paged again, acknowledged or not.
Whoever said they were coming for two victims is not enough for forty, and the other on-call
numbers, told to stand down, must hear of it. Doubling keeps a hack day's wave of hundreds
to a handful of pages.

Twilio taking a text is not the on-call reading it: a carrier filters it, a phone is off the
network, a call rings out. Each text and call of a page is a row of `page_sends`, and its
status callback says what became of it (`reported`). A page that reached none of the
numbers Twilio took it for is sent again after RETRY_FAILED, as one Twilio refused, unless
someone acknowledged it meanwhile.

An emergency an agent took and never reached is no less waiting. Most offers no caller was
connected to go back in line after IVR_OFFER_TIMEOUT (`Hotline.requeue_stale_offers`), and are
paged for there; but a call back the agent dials by hand, or a withheld number's case they act
on, is theirs to finish and no timeout takes it back (taken in the middle of their own call,
another agent would ring the victim too). Held that long with no talk recorded, such a case is
paged for as if it were in line (`held_untalked`): the page names the agent who has it.

Replies to texts from on-call numbers are answered at most once per REPLY_EVERY each, and not
to Twilio's opt-out words (`OPT_OUT_WORDS`): Twilio answers those itself and refuses every
later text to that number (error 21610); the queue page says so (`on_call_phones`).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    case,
    cast,
    desc,
    func,
    insert,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError

from ivr.cases import AGENT_FINISHES, HELD_NOW, USER_NAME, audit
from ivr.db import cases, on_call_phones, page_sends, pages, users
from ivr.numbers import last4
from ivr.store import reading, writing

RETRY_FAILED = timedelta(minutes=1)
# Each page in a row that reaches nobody doubles the wait before the next, up to this: a
# carrier's filter, or numbers out of service, are not mended by a text a minute all night.
RETRY_FAILED_AT_MOST = timedelta(minutes=8)
# A text or call Twilio's REST API takes or refuses within its client's timeouts
# (`ivr.web.TwilioAdapter`): three tries, each 3 s to connect and 10 s to read (a 429 is
# retried), a second between the last two: 40 s, and some. Less, and a second instance
# takes the turn of a page still being sent on a slow day and pages everyone again.
SEND_AT_MOST = timedelta(seconds=45)


def sending_at_most(sends: int) -> timedelta:
    """How long a page of `sends` texts and calls, one after another, may take."""
    return SEND_AT_MOST * sends + timedelta(seconds=30)


PageResult = Literal["sending", "sent", "failed", "undelivered", "logged"]
By = Literal["sms", "call"]
# What Twilio's status callbacks say became of a text (MessageStatus) or a call (CallStatus):
# only what is final. A text's `sent` is the carrier taking it; `delivered` the phone.
_FINAL: dict[str, dict[str, str]] = {
    "sms": {
        "delivered": "delivered",
        "read": "delivered",
        "undelivered": "undelivered",
        "failed": "undelivered",
    },
    "call": {
        "completed": "answered",
        "busy": "unanswered",
        "no-answer": "unanswered",
        "failed": "unanswered",
        "canceled": "unanswered",
    },
}
_NOT_REACHED = ("refused", "undelivered", "unanswered")


@dataclass(frozen=True)
class Overdue:
    """The emergency case first in line, when it has waited too long, and the lane's size."""

    case_id: int
    ticket: str
    language: str | None
    waited: timedelta
    # Emergency cases in line now, this one included, and those an agent has held too long
    # with no talk (`held_untalked`). When this one is such a case: its agent's name, and how
    # long they have held it.
    waiting: int
    held_by: str | None = None
    held_for: timedelta | None = None


# When a case joined the emergency lane, as a page counts its wait: its place (`sort_at`; a
# victim who called again keeps their first call's), unless an agent had them since and they
# came back (`queued_at`: sent on by a transfer, or back from the survey after their agent's
# leg dropped): their place in the order is kept, but their talk was no wait. A case a
# supervisor moved into the lane joined it then (`lane_at`): no page was about it before.
_placed = case((cases.c.queued_at > cases.c.sort_at, cases.c.queued_at), else_=cases.c.sort_at)
joined_lane = case((cases.c.lane_at > _placed, cases.c.lane_at), else_=_placed)


def _ready(now: datetime) -> Any:
    # As the claim sees them: a call back nobody answered waits for its retry time, and
    # nobody can take it meanwhile, so it is no agent's delay.
    return cases.c.not_before.is_(None) | (cases.c.not_before <= now)


def held_untalked(since: datetime) -> tuple[Any, ...]:
    """An emergency an agent has held since before `since` with no talk recorded, that no
    timeout takes back: a call back they dial by hand, or a withheld number's case they act
    on (`cases.AGENT_FINISHES`). Any other offer that long unconnected goes back in line
    after IVR_OFFER_TIMEOUT, where it is paged for; this one is paged for while held. Down
    the partial index of the held cases (`cases.HELD_NOW`)."""
    return (
        HELD_NOW,
        cases.c.lane == 0,
        cases.c.status == "offered",
        cases.c.offer.in_(AGENT_FINISHES),
        cases.c.connected_at.is_(None),
        cases.c.offered_at <= bindparam("held_since", since, type_=cases.c.offered_at.type),
        # The agent froze the account: they reached the victim and are at work on it (a
        # hand-dialled talk is known only at Resolve); the on-call is not woken for it.
        func.coalesce(cases.c.flags["agent_freeze"].as_string(), "") != "done",
    )


def overdue(
    conn: Connection, *, now: datetime, after: timedelta, held_after: timedelta | None = None
) -> Overdue | None:
    """The emergency case first in line if it has waited `after` or longer (one read, down
    the serving-order index), with how many emergencies wait; None while none has.

    A wait is counted from when the case joined the lane (`joined_lane`): when the caller did,
    or first did, for a victim who called again and took their earlier call back's place;
    or came back to it after an agent had them. The one that has waited longest is about
    the first in line (the lane is read whole: a few thousand rows on the worst day).

    `held_after` (IVR_OFFER_TIMEOUT): an emergency an agent has held that long with no talk
    (`held_untalked`) waits too, from when it joined the lane, and is read in the same
    statement; None: not counted."""
    in_lane = (cases.c.queued == 1, cases.c.lane == 0, _ready(now))
    first_in_line = (
        select(
            cases.c.id,
            cases.c.ticket,
            cases.c.language,
            joined_lane.label("joined"),
            cast(None, users.c.name.type).label("agent"),
            cast(None, cases.c.offered_at.type).label("offered_at"),
        )
        .where(*in_lane)
        .order_by(joined_lane, cases.c.id)
        .limit(1)
    )
    candidates: Any = first_in_line
    held = held_untalked(now - held_after) if held_after is not None else None
    if held is not None:
        first_held = (
            select(
                cases.c.id,
                cases.c.ticket,
                cases.c.language,
                joined_lane.label("joined"),
                users.c.name.label("agent"),
                cases.c.offered_at,
            )
            .join(users, users.c.id == cases.c.agent_id)
            .where(*held)
            .order_by(joined_lane, cases.c.id)
            .limit(1)
        )
        candidates = union_all(select(first_in_line.subquery()), select(first_held.subquery()))
    with reading(conn):
        found = conn.execute(candidates).all()
        if not found:
            return None
        first = min(found, key=lambda row: (row.joined, row.id))
        if now - first.joined < after:
            return None
        counts = [select(func.count()).select_from(cases).where(*in_lane).scalar_subquery()]
        if held is not None:
            counts.append(select(func.count()).select_from(cases).where(*held).scalar_subquery())
        waiting, *holding = conn.execute(select(*counts)).one()
        return Overdue(
            case_id=first.id,
            ticket=first.ticket,
            language=first.language,
            waited=now - first.joined,
            waiting=int(waiting) + sum(holding),
            held_by=first.agent,
            held_for=None if first.offered_at is None else now - first.offered_at,
        )


def unacknowledged(conn: Connection, *, now: datetime, overdue: Overdue) -> bool:
    """Whether the latest page went out and nobody said they were coming, though the victim
    first in line now was waiting then already: the next page goes to the next tier too
    (IVR_PAGE_ESCALATE). Unless someone said they were coming for an earlier page about
    them and every page since came inside the hold that gave them (a surge's, which asked
    nothing new of them): they are on their way, not asleep. A page after that hold passed
    and not answered either (they never got there) escalates. Made only when a page may be
    due."""
    since = now - overdue.waited
    with reading(conn):
        # The pages about this victim, oldest first: the latest page of all is the last of
        # them, or none is (it went out before they waited).
        stretch = conn.execute(
            select(pages.c.at, pages.c.next_at, pages.c.acked_at)
            .where(pages.c.at >= bindparam("since", since, type_=pages.c.at.type))
            .order_by(pages.c.turn)
        ).all()
    if not stretch or stretch[-1].acked_at is not None:
        return False
    acked = [i for i, page in enumerate(stretch) if page.acked_at is not None]
    if not acked:
        return True
    coming = stretch[acked[-1]]
    return any(page.at >= coming.next_at for page in stretch[acked[-1] + 1 :])


def new_ack_code() -> str:
    """A page's code, for its text's reply: six digits, as easy to key as a PIN."""
    return f"{secrets.randbelow(10**ACK_CODE_DIGITS):0{ACK_CODE_DIGITS}d}"


ACK_CODE_DIGITS = 6
_ACK_CODE = re.compile(rf"(?<!\d)\d{{{ACK_CODE_DIGITS}}}(?!\d)")


# What only the page's own text says around its code: a reply that has it quotes the page
# (an auto-responder or a mail gateway sending the message back), and says nobody is coming.
_QUOTED_PAGE = re.compile(
    rf"reply\s*:?\s*\d{{{ACK_CODE_DIGITS}}}|agents available|emergency callers? waiting",
    re.IGNORECASE,
)


def ack_code_in(body: str) -> str | None:
    """The code in a text an on-call number sent ("123456", "coming 123456"), if any; none
    in a text that quotes the page back (what an auto-responder does), whose code is the
    page's, not someone's word that they are coming."""
    if _QUOTED_PAGE.search(body):
        return None
    found = _ACK_CODE.search(body)
    return found.group() if found else None


def surged(
    *,
    last_waiting: int,
    last_at: datetime,
    overdue: Overdue,
    now: datetime,
    surge: int,
    gap: timedelta,
) -> bool:
    """Whether the emergency lane has surged since the last page, which said `last_waiting`
    waited: at least twice as many wait now, and `surge` more (0: never), and the last page
    went out `gap` ago or longer (it has been sent: one page at a time)."""
    if surge <= 0 or now - last_at < gap:
        return False
    return overdue.waiting >= max(2 * last_waiting, last_waiting + surge)


def take_turn(
    conn: Connection,
    *,
    now: datetime,
    overdue: Overdue,
    sending: timedelta,
    ack_code: str | None = None,
    to: Sequence[tuple[str, By]] = (),
    surge: int = 0,
) -> int | None:
    """The page's turn, if it is due (no page yet, or the last one's `next_at` has come, or
    the lane `surged` since it) and no other instance took it first: the new page's id.
    None otherwise. The turn holds the next one back for `sending` only (the longest its
    texts and calls may take), and `record` then for IVR_PAGE_REPEAT: an instance that stops
    while sending loses the page for no longer than that. `ack_code`: what replying to its
    text with acknowledges it. `to`: the texts and calls it is about to send, (number, by)
    each, whose reports `reported` keeps. `surge`: IVR_PAGE_SURGE."""
    try:
        with writing(conn):
            # Locked: an acknowledgement of the last page being written meanwhile is seen.
            last = conn.execute(
                select(pages.c.turn, pages.c.at, pages.c.next_at, pages.c.waiting)
                .order_by(desc(pages.c.turn))
                .limit(1)
                .with_for_update()
            ).first()
            # The last page holds the next back only while it is about who waits now: a
            # victim who joined the line after it (everyone it was about answered since)
            # has nobody coming for them, and is paged for as soon as they have waited.
            # Nor does it hold back news of a surge: nobody was told of that many.
            if (
                last is not None
                and last.next_at > now
                and now - overdue.waited <= last.at
                and not surged(
                    last_waiting=last.waiting,
                    last_at=last.at,
                    overdue=overdue,
                    now=now,
                    surge=surge,
                    gap=max(sending, RETRY_FAILED),
                )
            ):
                return None
            page_id: int = conn.execute(
                insert(pages)
                .values(
                    turn=(last.turn + 1) if last else 1,
                    at=now,
                    next_at=now + sending,
                    case_id=overdue.case_id,
                    waiting=overdue.waiting,
                    waited_seconds=int(overdue.waited.total_seconds()),
                    result="sending",
                    sent=0,
                    failed=0,
                    ack_code=ack_code,
                )
                .returning(pages.c.id)
            ).scalar_one()
            if to:
                conn.execute(
                    insert(page_sends),
                    [
                        {
                            "page_id": page_id,
                            "number": number,
                            "by": by,
                            "status": "sending",
                            "at": now,
                        }
                        for number, by in to
                    ],
                )
            return page_id
    except IntegrityError:
        return None  # another instance wrote this turn first: it pages


def _lock_pages(conn: Connection, *, page_id: int) -> Any:
    """The page's row (at, result, acked_at), locked, and before it the latest page's, in the
    order `take_turn` and `acknowledge` lock them: `record` and a status callback arriving
    meanwhile (`reported`) wait for each other instead of deadlocking over `page_sends`."""
    conn.execute(select(pages.c.id).order_by(desc(pages.c.turn)).limit(1).with_for_update())
    return conn.execute(
        select(pages.c.at, pages.c.result, pages.c.acked_at)
        .where(pages.c.id == page_id)
        .with_for_update()
    ).first()


@dataclass(frozen=True)
class Reach:
    """Of a page's numbers: those Twilio took a text or call for (`sent`), those it refused
    both (`failed`), and of the first, those its reports say neither reached."""

    sent: int
    failed: int
    undelivered: int

    @property
    def result(self) -> PageResult:
        if self.sent and self.undelivered == self.sent:
            return "undelivered"
        return "sent" if self.sent else "failed" if self.failed else "logged"


def _reach(conn: Connection, *, page_id: int) -> Reach:
    numbers = conn.execute(
        select(
            page_sends.c.number,
            func.sum(case((page_sends.c.status == "refused", 0), else_=1)).label("taken"),
            func.sum(case((page_sends.c.status.in_(_NOT_REACHED), 0), else_=1)).label("maybe"),
        )
        .where(page_sends.c.page_id == page_id)
        .group_by(page_sends.c.number)
    ).all()
    taken = [n for n in numbers if n.taken]
    return Reach(
        sent=len(taken),
        failed=len(numbers) - len(taken),
        undelivered=sum(1 for n in taken if not n.maybe),
    )


def _retry_after(conn: Connection, *, page_id: int) -> timedelta:
    """How long after this page, which reached nobody, the next may come: RETRY_FAILED,
    doubled for each page before it in a row that reached nobody either, up to
    RETRY_FAILED_AT_MOST. Only the pages of this stretch count (each at most twice that
    long before the next): last week's outage does not put today's first retry off.
    Logged-only pages are another instance's to send: skipped, not counted."""
    this = conn.execute(select(pages.c.turn, pages.c.at).where(pages.c.id == page_id)).one()
    earlier = conn.execute(
        select(pages.c.result, pages.c.at)
        .where(pages.c.turn < this.turn)
        .order_by(desc(pages.c.turn))
        .limit(16)
    ).all()
    after = this.at
    in_a_row = 0
    for result, at in earlier:
        if after - at > 2 * RETRY_FAILED_AT_MOST:
            break
        after = at
        if result == "logged":
            continue
        if result not in ("failed", "undelivered"):
            break
        in_a_row += 1
    later: timedelta = RETRY_FAILED * (2 ** min(in_a_row, 8))
    return min(later, RETRY_FAILED_AT_MOST)


def _settle(conn: Connection, *, page_id: int, now: datetime, next_at: datetime | None) -> Reach:
    """The page's counts and result from its rows, and when the next may come: `next_at`
    (None: as it was), or after RETRY_FAILED when it reached no number. Inside `writing`."""
    reach = _reach(conn, page_id=page_id)
    result = reach.result
    values: dict[str, Any] = {
        "result": result,
        "sent": reach.sent,
        "failed": reach.failed,
        "undelivered": reach.undelivered,
    }
    # Logged only (this instance has no IVR_PAGE_NUMBERS: one started without them, say):
    # an instance that has them pages within a minute, not a quarter of an hour later.
    if result in ("failed", "undelivered", "logged"):
        retry = RETRY_FAILED if result == "logged" else _retry_after(conn, page_id=page_id)
        due: Any = literal(now + retry, pages.c.next_at.type)
        if next_at is None:  # reported later: never put the next page off
            due = case((pages.c.next_at < due, pages.c.next_at), else_=due)
    elif next_at is not None:
        due = literal(next_at, pages.c.next_at.type)
    else:
        due = pages.c.next_at
    # Acknowledged (the first number pressed 1 while the next was texted, or before the
    # report came): the acknowledgement's hold stands.
    values["next_at"] = case(
        (pages.c.acked_at.is_not(None) & (pages.c.next_at > due), pages.c.next_at), else_=due
    )
    conn.execute(update(pages).where(pages.c.id == page_id).values(**values))
    return reach


def record(
    conn: Connection,
    *,
    page_id: int,
    refused: Sequence[tuple[str, By]],
    now: datetime,
    next_at: datetime,
) -> Reach:
    """What became of a page's sends (Twilio took them but `refused`), and when the next may
    come: `next_at`, or after RETRY_FAILED when it reached no number (refused, or reported
    not reached already). What the page reached, and so its result."""
    with writing(conn):
        _lock_pages(conn, page_id=page_id)
        for number, by in refused:
            conn.execute(
                update(page_sends)
                .where(
                    page_sends.c.page_id == page_id,
                    page_sends.c.number == number,
                    page_sends.c.by == by,
                )
                .values(status="refused", at=now)
            )
        conn.execute(
            update(page_sends)
            .where(page_sends.c.page_id == page_id, page_sends.c.status == "sending")
            .values(status="sent", at=now)
        )
        return _settle(conn, page_id=page_id, now=now, next_at=next_at)


@dataclass(frozen=True)
class Report:
    """What a status callback changed: the send's new status, and whether it left the page
    (sent, not acknowledged) reaching nobody it was taken for."""

    status: str
    page_at: datetime
    reached_nobody: bool
    undelivered: int
    sent: int


def reported(
    conn: Connection,
    *,
    page_id: int,
    number: str,
    by: By,
    status: str,
    error: str | None,
    now: datetime,
    answered_by: str | None = None,
) -> Report | None:
    """Twilio's status callback for one of a page's texts or calls: kept if final (and the
    first final one: a report delivered twice counts once). None when it changes nothing
    (not final, already known, no such send). `answered_by`: Twilio's answering machine
    detection of a call (human, machine_start, fax, unknown): a voicemail that took the page
    woke nobody."""
    final = _FINAL[by].get(status)
    if final == "answered" and (answered_by or "").startswith(("machine", "fax")):
        final = "unanswered"
    if final is None:
        return None
    with writing(conn):
        page = _lock_pages(conn, page_id=page_id)
        if page is None:
            return None
        changed = conn.execute(
            update(page_sends)
            .where(
                page_sends.c.page_id == page_id,
                page_sends.c.number == number,
                page_sends.c.by == by,
                page_sends.c.status.in_(("sending", "sent")),
            )
            .values(status=final, error=error if final == "undelivered" else None, at=now)
        ).rowcount
        if not changed:
            return None
        if page.result == "sending":  # `record` settles it
            return Report(final, page.at, False, 0, 0)
        reach = _settle(conn, page_id=page_id, now=now, next_at=None)
    nobody = reach.result == "undelivered" and page.acked_at is None
    return Report(final, page.at, nobody, reach.undelivered, reach.sent)


def sends(conn: Connection, *, page_id: int) -> list[dict[str, Any]]:
    """A page's texts and calls, and what became of each."""
    with reading(conn):
        rows = conn.execute(
            select(page_sends)
            .where(page_sends.c.page_id == page_id)
            .order_by(page_sends.c.number, page_sends.c.by)
        ).mappings()
        return [dict(r) for r in rows]


ACK_KEY = "1"  # on the page's call: "I am coming"


@dataclass(frozen=True)
class Acked:
    """Who acknowledged a page, and when; `now`: this acknowledgement made it (False: someone
    had already)."""

    at: datetime
    by: str
    now: bool
    page_at: datetime


def numbers_paged(conn: Connection, *, page_id: int) -> list[str]:
    """The numbers a page was texted or called on, each once, in the order sent."""
    with reading(conn):
        found = conn.execute(
            select(page_sends.c.number)
            .where(page_sends.c.page_id == page_id)
            .order_by(page_sends.c.at)
        ).scalars()
        return list(dict.fromkeys(found))


class PageOver(Exception):
    """The page is not the one in force: a later page went out, or its hold has passed (its
    emergencies were served, or the next page is due). Coming for it would hold back the
    page for whoever waits now."""


def in_force(page: Any, *, latest: bool, now: datetime) -> bool:
    """Whether a page (its `next_at`), the latest one or not, may still be acknowledged (if
    someone it was about still waits: `_still_waiting`)."""
    return latest and now < page.next_at


def _still_waiting(
    conn: Connection, *, paged_at: datetime, now: datetime, held_after: timedelta | None
) -> bool:
    """Whether an emergency in line now was in line when the page of `paged_at` went out
    (its call back held for a retry too: nobody has helped them yet), or one an agent has
    held with no talk since `held_after` (`held_untalked`), which a page is about too."""
    waits = (cases.c.queued == 1) & (cases.c.lane == 0)
    if held_after is not None:
        waits = waits | and_(*held_untalked(now - held_after))
    found = conn.execute(select(cases.c.id).where(waits, joined_lane <= paged_at).limit(1)).first()
    return found is not None


PAGE_ACK = "page_ack"  # the audit action of someone saying they are coming for a page


def acker(by: str) -> str:
    """Who acknowledged a page, as the audit log names actors: an on-call number masked as
    the log shows callers' (***1234), a name as the supervisor's it is (the API's and the
    dashboard's acknowledgements are supervisors'), anything else as it was said."""
    if by.startswith("+"):
        return f"oncall:***{last4(by)}"
    return f"supervisor:{by}" if USER_NAME.match(by) else f"oncall:{by}"


def acknowledge(
    conn: Connection,
    *,
    page_id: int,
    by: str,
    now: datetime,
    repeat: timedelta,
    held_after: timedelta | None = None,
) -> Acked | None:
    """`by` is coming for page `page_id`: recorded unless someone acknowledged it first, and
    the next page held back until `repeat` from now. Who acknowledged it; None if there is no
    such page. PageOver for a page not in force (`in_force`). `held_after`: as `overdue`'s."""
    with writing(conn):
        # Locked in the order `take_turn` and `record` lock: the latest page first.
        last = conn.execute(
            select(pages.c.id).order_by(desc(pages.c.turn)).limit(1).with_for_update()
        ).first()
        page = conn.execute(
            select(pages.c.at, pages.c.next_at, pages.c.acked_at, pages.c.acked_by)
            .where(pages.c.id == page_id)
            .with_for_update()
        ).first()
        if page is None or last is None:
            return None
        if page.acked_at is not None:
            return Acked(at=page.acked_at, by=page.acked_by, now=False, page_at=page.at)
        if not in_force(page, latest=last.id == page_id, now=now):
            raise PageOver(page_id)
        if not _still_waiting(conn, paged_at=page.at, now=now, held_after=held_after):
            # Everyone it was about has been answered: coming for it would only hold back
            # the page for a victim who joins the line next.
            raise PageOver(page_id)
        conn.execute(
            update(pages)
            .where(pages.c.id == page_id)
            .values(acked_at=now, acked_by=by, next_at=max(page.next_at, now + repeat))
        )
        # The pages table goes at retention: the audit log keeps who came.
        audit(
            conn,
            actor=acker(by),
            action=PAGE_ACK,
            uid=None,
            case_id=None,
            reason=f"page {page_id}",
            result="ok",
            now=now,
        )
        return Acked(at=now, by=by, now=True, page_at=page.at)


def page_with_code(conn: Connection, *, code: str) -> int | None:
    """The latest page whose text asked for `code` in reply; None if none did."""
    with reading(conn):
        found = conn.execute(
            select(pages.c.id).where(pages.c.ack_code == code).order_by(desc(pages.c.turn)).limit(1)
        ).scalar()
    return None if found is None else int(found)


_PAGES = select(
    pages.c.id,
    pages.c.at,
    pages.c.next_at,
    pages.c.waiting,
    pages.c.waited_seconds,
    pages.c.result,
    pages.c.sent,
    pages.c.failed,
    pages.c.undelivered,
    pages.c.acked_at,
    pages.c.acked_by,
    cases.c.ticket,
).select_from(pages.outerjoin(cases, cases.c.id == pages.c.case_id))


def recent(conn: Connection, *, limit: int = 50) -> list[dict[str, Any]]:
    """The latest pages, newest first, with their cases' tickets."""
    with reading(conn):
        rows = conn.execute(_PAGES.order_by(desc(pages.c.turn)).limit(limit)).all()
    return [dict(row._mapping) for row in rows]


def get(conn: Connection, *, page_id: int) -> dict[str, Any] | None:
    with reading(conn):
        row = conn.execute(_PAGES.where(pages.c.id == page_id)).first()
    return None if row is None else dict(row._mapping)


def _counted(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def wait_text(waited: timedelta) -> str:
    minutes, seconds = divmod(int(waited.total_seconds()), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def page_speech(overdue: Overdue, *, available: int, at_work: int) -> str:
    """The page as a call to the on-call says it (IVR_PAGE_CALL): the ticket digit by digit,
    no address."""
    minutes, seconds = divmod(int(overdue.waited.total_seconds()), 60)
    waited = _counted(seconds, "second")
    if minutes:
        waited = f"{_counted(minutes, 'minute')} {waited}"
    callers = _counted(overdue.waiting, "emergency caller")
    held = f" It is with agent {overdue.held_by}, no talk recorded." if overdue.held_by else ""
    return (
        f"Support hotline emergency. {callers} waiting, the longest {waited}. Ticket "
        f"{' '.join(overdue.ticket)}.{held} Agents available: {available}. At work: "
        f"{at_work}. Open the queue page."
    )


ESCALATED = " (the last page: nobody coming)"


def page_text(
    overdue: Overdue,
    *,
    available: int,
    at_work: int,
    queue_url: str,
    ack_code: str | None = None,
    escalated: bool = False,
) -> str:
    """The text the on-call get: short enough for one or two SMS segments, nothing about the
    caller but the ticket and the language they chose (and the agent who holds them with no
    talk, if one does); what to reply to say they are coming (`ack_code`: None for the
    log's copy, whose readers must not be able to acknowledge it); whether nobody said they
    were coming to the last page (`escalated`)."""
    callers = _counted(overdue.waiting, "emergency caller")
    language = f", {overdue.language}" if overdue.language else ""
    if overdue.held_by and overdue.held_for is not None:
        # Taken by an agent who has not reached them (or not said so) in all that time.
        language += f", with agent {overdue.held_by} {wait_text(overdue.held_for)}, no talk"
    reply = f" Coming? Reply {ack_code}." if ack_code else ""
    head = "Hotline" + (ESCALATED if escalated else "")
    return (
        f"{head}: {callers} waiting, the longest {wait_text(overdue.waited)} "
        f"(ticket {overdue.ticket}{language}). Agents available: {available}, at work: "
        f"{at_work}.{reply} {queue_url}"
    )


def _spoken_by(by: str) -> str:
    # An on-call number is said by its last four digits, one by one; a user by name.
    if by.startswith("+"):
        return "the phone ending in " + " ".join(last4(by))
    return by


OVER_SPEECH = (
    "This page is over: a later one went out, or its emergencies were answered. If "
    "emergencies still wait, you will be paged again. Goodbye."
)
# A key the hotline could not record (it failed, or took too long to answer).
NOT_RECORDED_SPEECH = (
    "Your key could not be recorded. If you are coming, say so on the queue page. Goodbye."
)


def _clock(moment: datetime, zone: tzinfo) -> str:
    """A time as the on-call read it: on the hotline's clock (IVR_REPORT_TZ), zone named,
    and its offset where the name could be another's (CST: China's, or US Central)."""
    local = moment.astimezone(zone)
    offset = local.utcoffset()
    if not offset:
        return local.strftime("%H:%M %Z")
    minutes = int(offset.total_seconds()) // 60
    sign, minutes = ("+" if minutes >= 0 else "-"), abs(minutes)
    return f"{local:%H:%M %Z} (UTC{sign}{minutes // 60:02d}:{minutes % 60:02d})"


def ack_speech(acked: Acked, *, zone: tzinfo = UTC) -> str:
    """What the on-call phone that pressed the key hears back."""
    if acked.now:
        return (
            "Thank you: the page is acknowledged, and the other on-call numbers are told you "
            "are coming. Open the queue page."
        )
    return (
        f"This page was acknowledged already, by {_spoken_by(acked.by)}, at "
        f"{_clock(acked.at, zone)}. Thank you."
    )


def ack_text(acked: Acked, *, queue_url: str, zone: tzinfo = UTC) -> str:
    """The text the other on-call numbers get once someone acknowledged a page."""
    return (
        f"Hotline: the page of {_clock(acked.page_at, zone)} was acknowledged by {acked.by} "
        f"at {_clock(acked.at, zone)}: they are coming. {queue_url}"
    )


# Answers to a text from an on-call number (`Hotline.page_texted`), as texts.
REPLY_HOW = (
    "Hotline: to say you are coming, reply with the 6-digit code in the latest page, or say "
    "so on the queue page."
)
REPLY_OVER = "Hotline: " + OVER_SPEECH.removesuffix(" Goodbye.")
REPLY_NOT_RECORDED = (
    "Hotline: your reply could not be recorded. If you are coming, say so on the queue page."
)

# One answer that does nothing but say how to reply (REPLY_HOW, REPLY_OVER) per number per
# this long: an auto-reply (driving mode, out of office) to it would answer again, and each
# round costs a text each way, for ever. A page's code gets its answer every time.
REPLY_EVERY = timedelta(minutes=10)
# Twilio's default opt-out keywords (a text of one word, any case): Twilio answers it itself,
# and refuses every later text from this sender (or its Messaging Service) to that number
# with error 21610, until it texts an opt-in word (`OPT_IN_WORDS`). A Messaging Service's
# Advanced Opt-Out may add words of its own: those are not known here.
OPT_OUT_WORDS = frozenset(
    ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT")
)
OPT_IN_WORDS = frozenset(("START", "YES", "UNSTOP"))
OPTED_OUT = "21610"  # Twilio's error for a text to a number that opted out


def keyword(body: str) -> str:
    """A text as Twilio matches its keywords: one word, whatever its case and spaces."""
    return body.strip().upper()


def _upsert(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(on_call_phones)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(on_call_phones)


def may_tell(conn: Connection, *, number: str, now: datetime) -> bool:
    """Whether the on-call number may be answered how to reply now: not in the last
    REPLY_EVERY, and not opted out (Twilio would refuse the answer). Noted as told if so:
    one write, a row's upsert, whichever instance the texts reach."""
    cutoff = bindparam("told_before", now - REPLY_EVERY, type_=on_call_phones.c.told_at.type)
    upsert = _upsert(conn).values(number=number, told_at=now)
    upsert = upsert.on_conflict_do_update(
        index_elements=[on_call_phones.c.number],
        set_={"told_at": upsert.excluded.told_at},
        where=(
            (on_call_phones.c.told_at.is_(None) | (on_call_phones.c.told_at <= cutoff))
            & on_call_phones.c.opted_out_at.is_(None)
        ),
    )
    with writing(conn):
        # Returned only if written: inserted, or told long enough ago.
        return conn.execute(upsert.returning(on_call_phones.c.number)).first() is not None


def opted_out(conn: Connection, *, number: str, now: datetime, why: str) -> None:
    """The on-call number opted out of texts at Twilio: it texted `why` (an opt-out word), or
    a text to it was refused with OPTED_OUT."""
    upsert = _upsert(conn).values(number=number, opted_out_at=now, opted_out=why[:16])
    upsert = upsert.on_conflict_do_update(
        index_elements=[on_call_phones.c.number],
        set_={"opted_out_at": upsert.excluded.opted_out_at, "opted_out": upsert.excluded.opted_out},
    )
    with writing(conn):
        conn.execute(upsert)


def opted_in(conn: Connection, *, numbers: Sequence[str]) -> int:
    """The numbers texted an opt-in word, or Twilio took a text to them: no longer opted out.
    How many were."""
    if not numbers:
        return 0
    with writing(conn):
        cleared: int = conn.execute(
            update(on_call_phones)
            .where(
                on_call_phones.c.number.in_(numbers),
                on_call_phones.c.opted_out_at.is_not(None),
            )
            .values(opted_out_at=None, opted_out=None)
        ).rowcount
        return cleared


def opted_out_now(conn: Connection, *, numbers: Sequence[str]) -> list[dict[str, Any]]:
    """Of the on-call `numbers`, those opted out of texts now: number, opted_out_at (when
    learnt), opted_out (the word they texted, or OPTED_OUT), the earliest first."""
    if not numbers:
        return []
    with reading(conn):
        rows = conn.execute(
            select(
                on_call_phones.c.number, on_call_phones.c.opted_out_at, on_call_phones.c.opted_out
            )
            .where(
                on_call_phones.c.number.in_(numbers),
                on_call_phones.c.opted_out_at.is_not(None),
            )
            .order_by(on_call_phones.c.opted_out_at)
        ).mappings()
        return [dict(r) for r in rows]


def ack_reply(acked: Acked, *, number: str, queue_url: str, zone: tzinfo = UTC) -> str:
    """The answer to the on-call number `number` that texted a page's code back."""
    page = f"the page of {_clock(acked.page_at, zone)}"
    if acked.now:
        return (
            f"Hotline: thank you, {page} is acknowledged: the other on-call numbers are told "
            f"you are coming. {queue_url}"
        )
    if acked.by == number:
        return f"Hotline: you said you were coming to {page} already, at {_clock(acked.at, zone)}."
    return (
        f"Hotline: {page} was acknowledged already, by {acked.by} at {_clock(acked.at, zone)}: "
        f"they are coming. {queue_url}"
    )
