"""How long caller data is kept (IVR_RETENTION_DAYS), and a caller's own erased on request.

`purge` deletes what ended longer ago than the retention period: closed cases; the calls no
remaining case belongs to, with their events; the on-call's pages; agents' presence history.

Recordings of agents' calls (IVR_RECORD_AGENT_CALLS) are kept at Twilio; the `recordings` row
is the hotline's only record of whose they are. The purge first deletes at Twilio each
recording made longer ago than IVR_RECORDING_RETENTION_DAYS (IVR_RETENTION_DAYS unless set) of
a case no longer open, and its row once Twilio said the audio is gone (204, or 404: gone
before); a recording Twilio failed to delete keeps its row, and is tried again at the next
purge. A case is never deleted while a row of its recordings is left: a recording kept longer
than the case (a regulator's years) keeps its case, and so can still be found by its caller's
number, and erased. No transaction is held open while Twilio is asked: two instances purging
at once may both ask Twilio to delete one recording, and the second's 404 is taken for gone,
as it is. It never deletes a case that is still open: in line
(`queued`, which includes every call back owed, however old), or held by an agent (offered,
connected). It runs in batches,
each its own short transaction, so that a first purge of years of data never holds the
webhooks' locks for long; on PostgreSQL a batch another instance is deleting is skipped, not
waited for, so several instances may run it at once. The daily job (`Daily`) purges for
RUN_SECONDS at a time and goes on at the next sweep, as it holds a webhook thread meanwhile.

The audit log is kept: it is the record of what staff did, and the figures count missed
offers and transfers from it. Freezes and unfreezes are kept whole (the account, who, when,
why): security and legal must be able to answer for every freeze whatever became of its case.
Only the caller's number goes from a deleted case's freezes, masked where their reason (what
the agent typed) names the case's caller or call-back number.
The other entries of a deleted case lose what may be personal (the free text an agent typed,
the account), and keep who did what when.

`erase` deletes every call and case of one number at its owner's request, audited with the
number's last 4 digits at most; in the audit entries it keeps (freezes among them) the number
is masked wherever their free text names it. Twilio keeps its own call logs and recordings:
those are deleted at Twilio, not here (`erase` lists them; `ivr calls erase` offers to delete
the recordings there).
"""

from __future__ import annotations

import functools
import logging
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import phonenumbers
from sqlalchemy import (
    ColumnElement,
    Connection,
    Update,
    and_,
    bindparam,
    delete,
    exists,
    func,
    not_,
    or_,
    select,
    true,
    update,
)

from ivr.cases import HELD, audit
from ivr.db import (
    audit_log,
    call_events,
    calls,
    cases,
    page_sends,
    pages,
    presence_changes,
    recordings,
    verification_failures,
)
from ivr.numbers import E164, dialable, last4, withheld
from ivr.recordings import CONFIRMED, delete_at_twilio, ours_sql
from ivr.store import reading, ticket_misses, writing

if TYPE_CHECKING:
    from ivr.hotline import Hotline

log = logging.getLogger(__name__)

# Rows of the table being purged per transaction: a batch of calls takes their events with it.
BATCH = 1000
# How long the daily job purges at each sweep (`Daily`): it holds a webhook thread meanwhile.
RUN_SECONDS = 10.0
# Shorter than this and the figures (a period of up to 31 days) and follow-ups of recent
# tickets (main menu 9) would find nothing: refused, as IVR_RETENTION_DAYS refuses it.
SHORTEST = timedelta(days=31)
# Failures at Twilio in a row after which the purge asks it to delete no more recordings this
# run: Twilio is failing, or refusing the credentials, for all of them alike.
FAILING_IN_A_ROW = 5
FREEZE_ACTIONS = ("freeze", "self_freeze", "unfreeze")
ERASE = "erase"  # the audit action of an erasure
# What an erasure's recordings became at Twilio, audited after it: the rows are gone, so this
# entry is the lasting record of any audio left there.
ERASE_AT_TWILIO = "erase_at_twilio"
PURGE = "purge"  # a purge run that deleted something, or left recordings at Twilio


@dataclass(frozen=True)
class Purged:
    """Rows deleted (or, for a dry run, that would be), per table; `audit_blanked`: audit
    entries of deleted cases whose reason and account were blanked; `audit_masked`: their
    freezes' whose reason had the case's numbers masked."""

    cases: int = 0
    recordings: int = 0
    calls: int = 0
    call_events: int = 0
    pages: int = 0
    page_sends: int = 0
    presence_changes: int = 0
    audit_blanked: int = 0
    # Freeze entries of deleted cases, kept, whose reason named the case's caller or call-back
    # number: masked there.
    audit_masked: int = 0
    # Recordings old enough to go, not deleted at Twilio (it failed, no Twilio credentials, or
    # a region's): their rows are kept, and their cases, until a later purge deletes them.
    # Not a deletion: not in `total`.
    recordings_left: int = 0

    def __add__(self, other: Purged) -> Purged:
        return Purged(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self) if f.name != "recordings_left")

    def describe(self) -> str:
        return ", ".join(f"{f.name} {getattr(self, f.name)}" for f in fields(self))


def _closed() -> ColumnElement[bool]:
    """A case nobody owes anything any more: out of the line (a call back owed is in it) and
    held by no agent."""
    return and_(cases.c.queued == 0, cases.c.status.not_in(HELD))


def _old_case(cutoff: datetime) -> ColumnElement[bool]:
    # A call back taken out of line (its caller called again) has no end of its own: it
    # counts from its creation, as the case that replaced it is newer and is kept.
    return and_(
        _closed(),
        or_(
            cases.c.ended_at < cutoff,
            and_(cases.c.ended_at.is_(None), cases.c.created_at < cutoff),
        ),
    )


def _no_recording_left() -> ColumnElement[bool]:
    """A case none of whose recordings may still be at Twilio: its recordings' rows go only
    once Twilio said their audio is gone."""
    return not_(exists().where(recordings.c.case_id == cases.c.id))


def _old_recording(cutoff: datetime) -> ColumnElement[bool]:
    """A recording made before `cutoff`, of a case no longer open (or none, any more)."""
    owner = cases.alias("owner")  # its own: not correlated with a query's of cases
    open_case = exists().where(
        owner.c.id == recordings.c.case_id,
        or_(owner.c.queued != 0, owner.c.status.in_(HELD)),
    )
    return and_(recordings.c.at < cutoff, not_(open_case))


def _old_call(cutoff: datetime) -> ColumnElement[bool]:
    """An ended call no case belongs to any more (a call without an end is swept first)."""
    return and_(
        calls.c.ended_at < cutoff,
        not_(exists().where(cases.c.call_sid == calls.c.call_sid)),
    )


def _old_page(cutoff: datetime) -> ColumnElement[bool]:
    # The latest page stays whatever its age: the next page's turn is counted from it.
    latest = select(func.max(pages.c.turn)).scalar_subquery()
    return and_(pages.c.at < cutoff, pages.c.turn < latest)


def blanking(case_ids: Sequence[int]) -> Update:
    """The audit entries of cases about to go, but freezes, keep who did what and when, and
    lose the free text and the account they may hold. Found by their case (an index: the log
    is never purged, and grows for as long as the hotline runs)."""
    return (
        update(audit_log)
        .where(
            audit_log.c.case_id.in_(case_ids),
            audit_log.c.action.not_in(FREEZE_ACTIONS),
            or_(audit_log.c.reason.is_not(None), audit_log.c.account_uid.is_not(None)),
        )
        .values(reason=None, account_uid=None)
    )


def _blank_audit(conn: Connection, case_ids: Sequence[int]) -> int:
    blanked: int = conn.execute(blanking(case_ids)).rowcount
    return blanked


_MASK_REASON = (
    update(audit_log)
    .where(audit_log.c.id == bindparam("b_id"))
    .values(reason=bindparam("b_reason"))
)


def _freezes_to_mask(conn: Connection, of_cases: ColumnElement[bool]) -> list[dict[str, Any]]:
    """The freeze entries, kept whole, of the cases `of_cases` picks whose reason (what an
    agent typed) names the case's caller or call-back number: their reason with the numbers
    masked, as `_MASK_REASON` takes it. Freezes are few."""
    rows = conn.execute(
        select(audit_log.c.id, audit_log.c.reason, cases.c.caller, cases.c.callback_number)
        .join(cases, cases.c.id == audit_log.c.case_id)
        .where(of_cases, audit_log.c.action.in_(FREEZE_ACTIONS), audit_log.c.reason.is_not(None))
    )
    changed = []
    for row in rows:
        reason = row.reason
        digits = "".join(c for c in _folded(reason) if c.isdigit())
        for number in (row.caller, row.callback_number):
            # Only a reason that may name it is searched (`_naming`'s test): a pattern is
            # long to build, and most freezes' reasons name no number.
            if number is not None and dialable(number) and _tail(number) in digits:
                reason = _masking(number, reason)
        if reason != row.reason:
            changed.append({"b_id": row.id, "b_reason": reason})
    return changed


def _delete_calls(conn: Connection, call_sids: Sequence[str]) -> tuple[int, int]:
    # The events explicitly, not by the foreign key's cascade: SQLite applies it only on a
    # connection with PRAGMA foreign_keys on, and one opened elsewhere (a backup tool, a
    # script) would leave them behind; and so they are counted.
    events: int = conn.execute(
        delete(call_events).where(call_events.c.call_sid.in_(call_sids))
    ).rowcount
    deleted: int = conn.execute(delete(calls).where(calls.c.call_sid.in_(call_sids))).rowcount
    return deleted, events


@dataclass
class _Scan:
    """Where a run's purge of cases and calls has read to, in the order it reads them:
    each batch goes on from the last, not again past the old rows kept (a case whose
    recording is still at Twilio, a call whose case is kept), which at a year's volume
    cost seconds a batch, every batch."""

    case_id: int = 0
    call: tuple[datetime, str] | None = None  # (ended_at, call_sid) of the last call read


def _purge_cases(conn: Connection, cutoff: datetime, batch: int, scan: _Scan) -> Purged:
    with writing(conn):
        # Skipped, not waited for, when another instance's purge has them.
        ids = list(
            conn.execute(
                select(cases.c.id)
                .where(_old_case(cutoff), _no_recording_left(), cases.c.id > scan.case_id)
                .order_by(cases.c.id)
                .limit(batch)
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        if not ids:
            return Purged()
        scan.case_id = ids[-1]
        blanked = _blank_audit(conn, ids)
        to_mask = _freezes_to_mask(conn, audit_log.c.case_id.in_(ids))
        if to_mask:
            conn.execute(_MASK_REASON, to_mask)
        # The condition again as they are deleted: nothing can reopen them meanwhile (locked
        # on PostgreSQL, one writer on SQLite), but a case in line is never to go by a race.
        deleted = conn.execute(
            delete(cases).where(cases.c.id.in_(ids), _old_case(cutoff), _no_recording_left())
        ).rowcount
        return Purged(cases=deleted, audit_blanked=blanked, audit_masked=len(to_mask))


def _purge_calls(conn: Connection, cutoff: datetime, batch: int, scan: _Scan) -> Purged:
    after: ColumnElement[bool] = true()
    if scan.call is not None:
        ended, sid = scan.call
        after = and_(
            calls.c.ended_at >= ended,
            or_(calls.c.ended_at > ended, calls.c.call_sid > sid),
        )
    with writing(conn):
        found = conn.execute(
            select(calls.c.call_sid, calls.c.ended_at)
            .where(_old_call(cutoff), after)
            .order_by(calls.c.ended_at, calls.c.call_sid)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        if not found:
            return Purged()
        scan.call = (found[-1].ended_at, found[-1].call_sid)
        deleted, events = _delete_calls(conn, [row.call_sid for row in found])
        return Purged(calls=deleted, call_events=events)


def _purge_pages(conn: Connection, cutoff: datetime, batch: int, scan: _Scan) -> Purged:
    with writing(conn):
        ids = list(
            conn.execute(
                select(pages.c.id)
                .where(_old_page(cutoff))
                .limit(batch)
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        if not ids:
            return Purged()
        sends = conn.execute(delete(page_sends).where(page_sends.c.page_id.in_(ids))).rowcount
        deleted = conn.execute(delete(pages).where(pages.c.id.in_(ids))).rowcount
        return Purged(pages=deleted, page_sends=sends)


def _purge_presence(conn: Connection, cutoff: datetime, batch: int, scan: _Scan) -> Purged:
    """Agents' presence older than the period: when each was available is their personal
    data too, and the figures of a period that old are not asked for."""
    with writing(conn):
        ids = list(
            conn.execute(
                select(presence_changes.c.id)
                .where(presence_changes.c.at < cutoff)
                .limit(batch)
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        if not ids:
            return Purged()
        gone = conn.execute(delete(presence_changes).where(presence_changes.c.id.in_(ids)))
        return Purged(presence_changes=gone.rowcount)


def _checked(keep: timedelta | None) -> None:
    if keep is not None and keep < SHORTEST:
        raise ValueError(f"keeping data {keep} is too short: {SHORTEST.days} days at least")


def _unrecord(
    conn: Connection,
    twilio: Any,
    cutoff: datetime,
    batch: int,
    over: Callable[[], bool],
) -> tuple[Purged, bool]:
    """Delete at Twilio the recordings made before `cutoff` of cases no longer open, and the
    row of each Twilio confirmed gone, at once (one short transaction each): what was
    deleted and left, and whether every one was asked for (False: `over()` said to stop, or
    Twilio failed FAILING_IN_A_ROW times in a row). The rows are read a batch at a time,
    each once a run: one that failed is asked for again at the next run, not in a loop."""
    deleted = left = in_a_row = 0
    elsewhere: list[str] = []
    after = 0
    try:
        while True:
            with reading(conn):
                due = list(
                    conn.execute(
                        select(recordings.c.id, recordings.c.recording_sid, recordings.c.url)
                        .where(_old_recording(cutoff), recordings.c.id > after)
                        .order_by(recordings.c.id)
                        .limit(batch)
                    )
                )
            if not due:
                return Purged(recordings=deleted, recordings_left=left), True
            for row in due:
                after = row.id
                result = delete_at_twilio(twilio, row.recording_sid, row.url)
                if result in CONFIRMED:
                    with writing(conn):
                        gone = conn.execute(delete(recordings).where(recordings.c.id == row.id))
                    deleted += gone.rowcount  # 0: another instance's purge was first
                    in_a_row = 0
                else:
                    left += 1
                    if result == "elsewhere":
                        elsewhere.append(row.recording_sid)
                    else:
                        in_a_row += 1
                        if in_a_row >= FAILING_IN_A_ROW:
                            log.warning(
                                "Twilio failed to delete %d recordings in a row: the rest are"
                                " tried at the next purge, and their cases kept until then",
                                in_a_row,
                            )
                            return Purged(recordings=deleted, recordings_left=left), False
                if over():
                    return Purged(recordings=deleted, recordings_left=left), False
    finally:
        if elsewhere:
            log.warning(
                "%d recordings old enough to go are not the account's own at api.twilio.com"
                " (a region's, or another account's): delete them at Twilio by hand (%s%s);"
                " their cases are kept while their rows are",
                len(elsewhere),
                " ".join(elsewhere[:10]),
                " ..." if len(elsewhere) > 10 else "",
            )


def _recordings_left(conn: Connection, cutoff: datetime, *where: ColumnElement[bool]) -> int:
    with reading(conn):
        return int(
            conn.execute(
                select(func.count()).select_from(recordings).where(_old_recording(cutoff), *where)
            ).scalar_one()
        )


def purge(
    conn: Connection,
    *,
    now: datetime,
    keep: timedelta | None,
    batch: int = BATCH,
    twilio: Any = None,
    keep_recordings: timedelta | None = None,
    actor: str = "system:purge",
) -> Purged:
    """Delete what ended before `now - keep` (see the module's docstring), `batch` rows of a
    table per transaction, until nothing is left; what was deleted. Recordings go first (at
    Twilio, with `twilio`, a twilio.rest.Client, those made before `now - keep_recordings`),
    then cases, so that the cases and the calls they held go in the same run. `keep` None:
    no case, call, page or presence goes; `keep_recordings` None, or no `twilio`: no
    recording goes, and no case with one (those old enough to go are `recordings_left`)."""
    return purge_for(
        conn,
        now=now,
        keep=keep,
        seconds=None,
        batch=batch,
        twilio=twilio,
        keep_recordings=keep_recordings,
        actor=actor,
    )[0]


def purge_for(
    conn: Connection,
    *,
    now: datetime,
    keep: timedelta | None,
    seconds: float | None,
    batch: int = BATCH,
    twilio: Any = None,
    keep_recordings: timedelta | None = None,
    actor: str = "system:purge",
) -> tuple[Purged, bool]:
    """`purge`, stopping once a batch (or a recording) ends `seconds` after it began (one at
    least of the recordings, and of each table; None: never): what was deleted, and whether
    nothing is left. Run again, it goes on. A run whose recordings Twilio failed to delete
    is done all the same: they are asked for at the next run (the next day's, for the daily
    job), not at once again. A run that deleted something, or left recordings at Twilio, is
    audited as `actor` with its counts: the retention policy's record of being kept."""
    purged, finished = _purge_for(
        conn,
        now=now,
        keep=keep,
        seconds=seconds,
        batch=batch,
        twilio=twilio,
        keep_recordings=keep_recordings,
    )
    if purged.total or purged.recordings_left:
        days = "never" if keep is None else f"{keep.days} days"
        kept = "never" if keep_recordings is None else f"{keep_recordings.days} days"
        audit(
            conn,
            actor=actor,
            action=PURGE,
            uid=None,
            case_id=None,
            reason=f"kept {days}, recordings {kept}: {purged.describe()}",
            result="ok" if finished else "more_left",
            now=now,
        )
    return purged, finished


def _purge_for(
    conn: Connection,
    *,
    now: datetime,
    keep: timedelta | None,
    seconds: float | None,
    batch: int,
    twilio: Any,
    keep_recordings: timedelta | None,
) -> tuple[Purged, bool]:
    _checked(keep)
    _checked(keep_recordings)
    until = None if seconds is None else time.monotonic() + seconds

    def over() -> bool:
        return until is not None and time.monotonic() >= until

    total = Purged()
    recordings_done = True
    if keep_recordings is not None:
        rec_cutoff = now - keep_recordings
        if twilio is None:
            total = Purged(recordings_left=_recordings_left(conn, rec_cutoff))
        else:
            total, finished = _unrecord(conn, twilio, rec_cutoff, batch, over)
            # Out of time asking a slow Twilio: the rest still gets a batch of each table
            # below, so that a Twilio outage never keeps every other caller's data past
            # the period; the recordings go on at the next run.
            recordings_done = finished or not over()
    if keep is None:
        return total, recordings_done
    cutoff = now - keep
    scan = _Scan()
    for step in (_purge_cases, _purge_calls, _purge_pages, _purge_presence):
        while True:
            done = step(conn, cutoff, batch, scan)  # one batch at least, even out of time
            total += done
            if done.total == 0:
                break
            if over():
                return total, False
    return total, recordings_done


def purgeable(
    conn: Connection,
    *,
    now: datetime,
    keep: timedelta | None,
    twilio: Any = None,
    keep_recordings: timedelta | None = None,
) -> Purged:
    """What `purge` would delete now, deleting nothing (`ivr db purge --dry-run`), were every
    recording old enough to go deleted at Twilio (with `twilio`): Twilio is not asked."""
    _checked(keep)
    _checked(keep_recordings)
    going = Purged()
    rec_cutoff = None if keep_recordings is None else now - keep_recordings
    # A recording a region or another account holds is not asked for (`delete_at_twilio`):
    # it stays, with its case.
    deletable = None if twilio is None else ours_sql(getattr(twilio, "account_sid", ""))
    if rec_cutoff is not None:
        due = _recordings_left(conn, rec_cutoff)
        goes_too = 0 if deletable is None else _recordings_left(conn, rec_cutoff, deletable)
        going = Purged(recordings=goes_too, recordings_left=due - goes_too)
    if keep is None:
        return going
    cutoff = now - keep
    # A case goes once none of its recordings is left: those that go now go first.
    staying_recording = recordings.c.case_id == cases.c.id
    if rec_cutoff is not None and deletable is not None:
        staying_recording = and_(
            staying_recording, not_(and_(_old_recording(rec_cutoff), deletable))
        )
    goes = and_(_old_case(cutoff), not_(exists().where(staying_recording)))
    old_cases = select(cases.c.id).where(goes)
    # A call is deleted once every case of it is: those that stay keep it.
    staying = exists().where(cases.c.call_sid == calls.c.call_sid, not_(goes))
    old_calls = select(calls.c.call_sid).where(calls.c.ended_at < cutoff, not_(staying))
    old_pages = select(pages.c.id).where(_old_page(cutoff))

    def count(table: Any, *where: Any) -> int:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())

    with reading(conn):
        return going + Purged(
            cases=count(cases, cases.c.id.in_(old_cases)),
            calls=count(calls, calls.c.call_sid.in_(old_calls)),
            call_events=count(call_events, call_events.c.call_sid.in_(old_calls)),
            pages=count(pages, pages.c.id.in_(old_pages)),
            page_sends=count(page_sends, page_sends.c.page_id.in_(old_pages)),
            presence_changes=count(presence_changes, presence_changes.c.at < cutoff),
            audit_blanked=count(
                audit_log,
                audit_log.c.case_id.in_(old_cases),
                audit_log.c.action.not_in(FREEZE_ACTIONS),
                or_(audit_log.c.reason.is_not(None), audit_log.c.account_uid.is_not(None)),
            ),
            audit_masked=len(_freezes_to_mask(conn, audit_log.c.case_id.in_(old_cases))),
        )


class Daily:
    """The purge as an instance's timed job: called every sweep, it purges when
    IVR_RETENTION_DAYS (or IVR_RECORDING_RETENTION_DAYS) is set and it has not purged for a
    day. Recordings are deleted at Twilio with the hotline's REST client: without one
    (no TWILIO_ACCOUNT_SID), none is, and their cases stay (said, as a warning). Counted
    from this process's last purge, not from its start: an instance restarted more often
    than daily still purges.
    Several instances purging the same day is harmless (each deletes what the others left).

    It runs on a thread and a database connection of the instance's: each sweep it purges
    for `seconds` at most (RUN_SECONDS), and a purge not done by then goes on at the next
    sweep. A first purge of years of data (retention turned on, or lengthened then
    shortened) then takes hours of sweeps, never a thread and a connection for an hour."""

    def __init__(
        self,
        every: timedelta = timedelta(days=1),
        *,
        seconds: float = RUN_SECONDS,
        batch: int = BATCH,
    ) -> None:
        self.every = every
        self.seconds = seconds
        self.batch = batch
        self.last: datetime | None = None

    def __call__(self, hotline: Hotline) -> Purged | None:
        days = hotline.settings.retention_days
        recording_days = hotline.settings.recording_keep_days
        now = hotline.clock()
        if not (days or recording_days):
            return None
        if self.last is not None and now - self.last < self.every:
            return None
        with hotline.db.connect() as conn:
            purged, finished = purge_for(
                conn,
                now=now,
                keep=timedelta(days=days) if days else None,
                seconds=self.seconds,
                batch=self.batch,
                twilio=hotline.twilio,
                keep_recordings=timedelta(days=recording_days) if recording_days else None,
            )
        if purged.recordings_left and hotline.twilio is None:
            log.warning(
                "%d recordings are older than IVR_RECORDING_RETENTION_DAYS, and nothing can"
                " delete them at Twilio (TWILIO_ACCOUNT_SID is not set): their cases are kept",
                purged.recordings_left,
            )
        said = purged.describe()
        kept = f"{days} days, recordings {recording_days} days (0: for ever)"
        if finished:
            self.last = now
            log.info("purged caller data older than %s: %s", kept, said)
        else:
            log.info(
                "purged caller data older than %s: %s; more is left, purged at the next sweeps",
                kept,
                said,
            )
        return purged


# -- a caller's erasure ------------------------------------------------------------------------


def audit_erased_at_twilio(
    conn: Connection, *, actor: str, deleted: int, left: Sequence[str], why: str, now: datetime
) -> None:
    """What became of an erasure's recordings at Twilio, after it: `deleted` there, and the
    sids of those `left` (`why`: Twilio failed, a region's, not asked). The erasure deleted
    their rows: this entry is the lasting record of the audio still to delete by hand."""
    said = f"deleted at Twilio {deleted}"
    if left:
        said += f"; left at Twilio ({why}), to delete there by hand: {' '.join(left)}"
    audit(
        conn,
        actor=actor,
        action=ERASE_AT_TWILIO,
        uid=None,
        case_id=None,
        reason=said,
        result="incomplete" if left else "ok",
        now=now,
    )


@dataclass(frozen=True)
class Erased:
    cases: int
    recordings: int
    calls: int
    call_events: int
    verification_failures: int
    audit_blanked: int
    # Audit entries kept (a freeze's, kept whole; one not of these cases) whose free text
    # named the number: masked there.
    audit_masked: int
    # What to delete at Twilio too, which keeps its own call logs and recordings: the calls
    # deleted here, and the call backs placed to the number (the recordings' calls).
    call_sids: tuple[str, ...]
    recording_sids: tuple[str, ...]
    # Those recordings' Twilio media URLs (None: not known), as `recording_sids`: which of
    # them `recordings.delete_at_twilio` can delete.
    recording_urls: tuple[str | None, ...] = ()

    def describe(self) -> str:
        return ", ".join(f"{name} {getattr(self, name)}" for name in _ERASED_COUNTS)


_ERASED_COUNTS = (
    "cases",
    "recordings",
    "calls",
    "call_events",
    "verification_failures",
    "audit_blanked",
    "audit_masked",
)


class StillOpen(Exception):
    """A case of the number is open (in line, a call back owed, held by an agent), or a call
    from it is in progress: nothing was erased."""

    def __init__(self, tickets: list[str], calls_in_progress: int) -> None:
        super().__init__(tickets, calls_in_progress)
        self.tickets = tickets
        self.calls_in_progress = calls_in_progress


def masked(number: str) -> str:
    return f"***{last4(number)}"


# Between the digits of a number as people write one: spaces, dots, dashes, brackets.
_APART = r"[\s().\-]*"
# The fewest last digits of a number that name it in free text (a national number without
# its trunk 0 or country code is longer).
_NAMING_DIGITS = 7


def _parts(number: str) -> tuple[str, str, str]:
    """`number`'s country code, national (significant) number, and the trunk prefix its
    country dials before that at home (0 in most; 1 in North America, 8 in Russia, none in
    Italy, whose 0 is the number's own); ("", all its digits, "") for no known country."""
    digits = "".join(c for c in number if c.isdigit())
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        return "", digits, ""
    code = parsed.country_code
    national = phonenumbers.national_significant_number(parsed)
    if not code or len(national) < _NAMING_DIGITS:  # too short to name it without its code
        return "", digits, ""
    region = phonenumbers.region_code_for_country_code(code)
    trunk = phonenumbers.ndd_prefix_for_region(region, strip_non_digits=True) or ""
    return str(code), national, trunk


def _apart(digits: str) -> str:
    return _APART.join(digits)


def _tail(number: str) -> str:
    """The last _NAMING_DIGITS digits of `number`: in a text that names it, in this order
    with no other digit between (whatever else `_number_pattern` finds around them)."""
    return "".join(c for c in number if c.isdigit())[-_NAMING_DIGITS:]


# A purge batch masks the numbers of a thousand cases' freezes: a caller's pattern is built
# once for all their cases.
@functools.lru_cache(maxsize=1024)
def _number_pattern(number: str) -> re.Pattern[str]:
    """`number` however it is written in free text: with its country code (maybe a + or 00
    before, maybe its trunk 0 after: +44 (0)7700 900123), or as at home, its trunk prefix
    before (07700 900123, 06 12 34 56 78, 1-415-555-0199) or not ((202) 555-0199, 138 0013
    8000), or only its last _NAMING_DIGITS digits or more; separators anywhere between; not
    inside a longer run of digits."""
    code, national, trunk = _parts(number)
    head, tail = national[:-_NAMING_DIGITS], national[-_NAMING_DIGITS:]
    # The trunk prefix only before the whole national number: nesting makes each earlier
    # digit written only with every later one.
    written = f"(?:{_apart(trunk)}{_APART})?" if trunk else ""
    for digit in head:  # any last part of the national number: "", "0", "20", "202"...
        written = f"(?:{written}{digit}{_APART})?"
    at_home = rf"\(?{written}{_apart(tail)}"
    if not code:
        return re.compile(rf"(?<![\d+]){at_home}(?!\d)")
    trunk_after = f"(?:{_apart(trunk)}{_APART})?" if trunk else ""
    abroad = (
        rf"(?:(?:\+|\(?00){_APART})?\(?"  # +86, 0086, (0086), or a bracket: (44)
        rf"{_apart(code)}{_APART}{trunk_after}{_apart(national)}"
    )
    return re.compile(rf"(?<![\d+])(?:{abroad}|{at_home})(?!\d)")


def _folded(text: str) -> str:
    """`text` with each character that NFKC makes one other as that one: full-width digits,
    + and brackets (what a Chinese input method types in its full-width mode, U+FF10 to
    U+FF19 for 0 to 9) and the ideographic space as their plain ones. Character for
    character, so that a number found in it is at the same place in `text`."""
    return "".join(
        folded if len(folded := unicodedata.normalize("NFKC", c)) == 1 else c for c in text
    )


def _masking(number: str, text: str) -> str:
    """`text` with `number` masked however it is written there (`_number_pattern`), in
    full-width digits too (`_folded`): the text around it stays as written."""
    found = list(_number_pattern(number).finditer(_folded(text)))
    for match in reversed(found):
        text = text[: match.start()] + masked(number) + text[match.end() :]
    return text


def _naming(number: str) -> ColumnElement[bool]:
    """Whether an audit entry's reason may name `number`: true of every text in which
    `_number_pattern` finds it, and of few others, for the database to pick the entries
    to read. Its last _NAMING_DIGITS digits in order, with no other digit between (the
    separators are left to `_masking`; classes of listed characters only, alike in
    PostgreSQL's and Python's dialects); a LIKE first, which reads a row in a third of a
    regular expression's time and leaves it few. Written in plain digits or in full-width
    ones (a Chinese input method's), each throughout: a number typed half in each is found
    only where the text is read anyway (`_freezes_to_mask`)."""
    reason = audit_log.c.reason
    return or_(
        *(
            and_(
                reason.like(f"%{'%'.join(tail)}%"), reason.regexp_match(f"[^{_DIGITS}]*".join(tail))
            )
            for tail in (_tail(number), _tail(number).translate(_FULL_WIDTH))
        )
    )


# Digits as a Chinese input method types them (U+FF10-FF19), which `_folded` reads as digits.
_FULL_WIDTH = {ord(digit): 0xFF10 + int(digit) for digit in "0123456789"}
_DIGITS = "0-9" + "".join(map(chr, _FULL_WIDTH.values()))  # each listed: no range of them


def _mask_in_audit(conn: Connection, number: str) -> int:
    """Mask `number` wherever an audit entry's free text names it, however written (see
    `_masking`): a freeze's reason, which stays otherwise whole; an unfreeze's; an entry of
    another caller's case. Who did what, when and to which account stays. The whole log is
    searched, as the number may be anywhere in it, but by the database (`_naming`): an
    erasure reads into Python the entries naming it, not a log that is never purged."""
    rows = conn.execute(select(audit_log.c.id, audit_log.c.reason).where(_naming(number))).all()
    masked_rows = 0
    for row in rows:
        kept = _masking(number, row.reason)
        if kept != row.reason:
            conn.execute(update(audit_log).where(audit_log.c.id == row.id).values(reason=kept))
            masked_rows += 1
    return masked_rows


def erase(conn: Connection, *, number: str, actor: str, reason: str, now: datetime) -> Erased:
    """Delete every call from `number` and every case whose caller or call-back number it is
    (with the cases of its calls), their events and recordings rows, and the verification
    failures counted against it; the number masked in the audit entries kept that name it;
    audited by `actor` with the counts and the number's last 4 digits (in `reason` too,
    should it hold the number). StillOpen, deleting nothing, if one of
    those cases is open or one of those calls in progress; ValueError for a number that is not
    E.164. One transaction: a number's rows are few."""
    if not E164.match(number):
        raise ValueError(f"not an E.164 number: {masked(number)}")
    if withheld(number):  # Twilio's stand-in for every withheld caller ID: nobody's own
        raise ValueError("a withheld caller ID is nobody's number")
    with writing(conn):
        from_number = list(
            conn.execute(
                select(calls.c.call_sid, calls.c.ended_at)
                .where(calls.c.from_number == number)
                .with_for_update()
            )
        )
        found = list(
            conn.execute(
                select(cases.c.id, cases.c.ticket, cases.c.call_sid, cases.c.queued)
                .add_columns(cases.c.status)
                .where(
                    or_(
                        cases.c.caller == number,
                        cases.c.callback_number == number,
                        cases.c.call_sid.in_([c.call_sid for c in from_number]),
                    )
                )
                .order_by(cases.c.id)
                .with_for_update()
            )
        )
        open_tickets = [c.ticket for c in found if c.queued == 1 or c.status in HELD]
        case_ids = [c.id for c in found]
        call_sids = {c.call_sid for c in from_number} | {c.call_sid for c in found}
        # A call of these cases that another number's case also belongs to stays with it.
        shared = set(
            conn.execute(
                select(cases.c.call_sid).where(
                    cases.c.call_sid.in_(call_sids), cases.c.id.not_in(case_ids)
                )
            ).scalars()
        )
        call_sids -= shared
        in_progress = conn.execute(
            select(func.count())
            .select_from(calls)
            .where(calls.c.call_sid.in_(call_sids), calls.c.ended_at.is_(None))
        ).scalar_one()
        if open_tickets or in_progress:
            raise StillOpen(open_tickets, int(in_progress))
        sids = sorted(call_sids)
        of_them = or_(recordings.c.case_id.in_(case_ids), recordings.c.call_sid.in_(sids))
        recorded = list(
            conn.execute(
                select(recordings.c.recording_sid, recordings.c.call_sid, recordings.c.url)
                .where(of_them)
                .order_by(recordings.c.id)
            )
        )
        recording_sids = tuple(r.recording_sid for r in recorded)
        # A recording's call is a call back Twilio placed to the number (in no row here), or
        # the caller's own: deleted at Twilio too, but one another number's case keeps.
        at_twilio = sorted({*sids, *(r.call_sid for r in recorded if r.call_sid not in shared)})
        gone_recordings = conn.execute(delete(recordings).where(of_them)).rowcount
        blanked = _blank_audit(conn, case_ids)
        audit_masked = _mask_in_audit(conn, number)
        gone_cases = conn.execute(delete(cases).where(cases.c.id.in_(case_ids))).rowcount
        gone_calls, events = _delete_calls(conn, sids)
        failures = conn.execute(
            delete(verification_failures).where(
                or_(
                    verification_failures.c.caller.in_([number, ticket_misses(number)]),
                    verification_failures.c.call_sid.in_(sids),
                )
            )
        ).rowcount
        erased = Erased(
            cases=gone_cases,
            recordings=gone_recordings,
            calls=gone_calls,
            call_events=events,
            verification_failures=failures,
            audit_blanked=blanked,
            audit_masked=audit_masked,
            call_sids=tuple(at_twilio),
            recording_sids=recording_sids,
            recording_urls=tuple(r.url for r in recorded),
        )
        said = _masking(number, reason)
        audit(
            conn,
            actor=actor,
            action=ERASE,
            uid=None,
            case_id=None,
            reason=f"{said} (number {masked(number)}: {erased.describe()})",
            result="ok",
            now=now,
        )
        return erased
