"""Persistence: keyword-only functions over a SQLAlchemy Connection, each its own transaction.

The webhook hot path is `load_call` (one read) then `create_call` or `save_step` (one write
transaction: the call row and its new log lines together). Core, not the ORM: these run
on every key press.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Executable,
    Insert,
    Integer,
    and_,
    bindparam,
    delete,
    insert,
    literal_column,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from ivr.db import (
    IMPATIENT_WAIT_SECONDS,
    Busy,
    call_events,
    calls,
    is_impatient,
    sqlite_patience,
    tree_versions,
    verification_failures,
)
from ivr.engine import CallState, LogEntry
from ivr.tree import CompiledTree

OPEN = "in-progress"
FINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
STALE = "stale"  # closed by age: its final status callback never came


# SQLite takes one writer at a time and makes the others poll for the lock, sleeping up to
# 100 ms between tries: under load that sleep, not the write, is the latency. Writers of one
# process queue on a lock instead and go the moment it is free (other processes still meet
# SQLite's own busy wait). Reentrant: a write made while another is open in the same thread
# must not wait on itself.
_SQLITE_WRITERS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
_WRITERS_LOCK = threading.Lock()
WRITE_WAIT_SECONDS = 5.0  # as SQLite's busy timeout: a webhook fails fast, to the fallback


def _writer_lock(engine: Engine) -> threading.RLock:
    with _WRITERS_LOCK:
        lock = _SQLITE_WRITERS.get(engine)
        if lock is None:
            lock = _SQLITE_WRITERS[engine] = threading.RLock()
        return lock


@contextlib.contextmanager
def writing(conn: Connection) -> Iterator[None]:
    """A write transaction on `conn` (on SQLite, one writer of this process at a time). Inside
    one that `writing` or `reading` began on `conn`, the writes join it: they commit with it,
    or not at all."""
    if conn.dialect.name != "sqlite":
        with _transaction(conn):
            yield
        return
    hurry = is_impatient()
    fairy = conn.connection
    if "patient_ms" in fairy.info:  # an engine of ours: set as `impatient()` says, now
        sqlite_patience(fairy.dbapi_connection, fairy.info)
    lock = _writer_lock(conn.engine)
    if not lock.acquire(timeout=IMPATIENT_WAIT_SECONDS if hurry else WRITE_WAIT_SECONDS):
        if hurry:
            raise Busy("another writer of this process")
        raise OperationalError("BEGIN", None, TimeoutError("waited too long to write"))
    try:
        with _transaction(conn):
            yield
    finally:
        lock.release()


def reading(conn: Connection) -> contextlib.AbstractContextManager[None]:
    """A read transaction on `conn`; inside one that `writing` or `reading` began, it joins.

    On PostgreSQL a read of its own runs in autocommit: under READ COMMITTED each statement
    sees what was committed when it began, with or without a transaction around it, so a
    BEGIN and a COMMIT would be two round trips that buy nothing (a webhook's read was three
    round trips; it is one). Nothing may write inside it (RuntimeError)."""
    return _transaction(conn, read_only=conn.dialect.name == "postgresql")


_OURS = "ivr.store.transaction"
_AUTOCOMMIT_READ = "ivr.store.autocommit_read"


@contextlib.contextmanager
def _transaction(conn: Connection, *, read_only: bool = False) -> Iterator[None]:
    try:
        if conn.in_transaction():
            if conn.info.get(_OURS) is not conn.get_transaction():
                # SQLAlchemy began it by itself (a bare execute): nobody would commit it.
                raise RuntimeError("a transaction begun elsewhere is open on this connection")
            if not read_only and conn.info.get(_AUTOCOMMIT_READ):
                raise RuntimeError("a write inside a read: it would not be one transaction")
            yield
            return
        # Taken now: after a disconnect, `conn.info` in a `finally` would reconnect (or
        # raise PendingRollbackError) and hide what went wrong.
        info = conn.info
        if read_only:  # the DBAPI's own flag: BEGIN and COMMIT are not sent
            conn.execution_options(isolation_level="AUTOCOMMIT")
            info[_AUTOCOMMIT_READ] = True
        try:
            with conn.begin() as transaction:
                info[_OURS] = transaction
                try:
                    yield
                finally:
                    info.pop(_OURS, None)
        finally:
            if read_only:
                info.pop(_AUTOCOMMIT_READ, None)
                if not conn.invalidated:  # an invalidated one the pool throws away
                    conn.execution_options(isolation_level=conn.default_isolation_level)
    except OperationalError as exc:
        # SQLite's own lock, held by another process (an `ivr` command, a backup): on the
        # event loop, give up at once and run this elsewhere.
        if is_impatient() and "locked" in str(exc.orig):
            raise Busy("another process writing") from exc
        raise


@dataclass(frozen=True)
class CallRow:
    call_sid: str
    from_number: str | None
    tree_version: str
    step: int
    state: CallState
    last_twiml: str
    status: str


# The hot path's statements, built once: building and hashing a statement per request costs
# more than running it (SQLAlchemy memoises the cache key on the statement object).
_CALL_ROW = (
    calls.c.call_sid,
    calls.c.from_number,
    calls.c.tree_version,
    calls.c.step,
    calls.c.state,
    calls.c.last_twiml,
    calls.c.status,
)
_LOAD_CALL = select(*_CALL_ROW).where(calls.c.call_sid == bindparam("sid"))
_INSERT_CALL = insert(calls)
_INSERT_EVENTS = insert(call_events)
_SAVE_STEP = (
    update(calls)
    .where(calls.c.call_sid == bindparam("sid"), calls.c.step == bindparam("expected"))
    .values(
        step=bindparam("new_step"),
        state=bindparam("new_state", type_=calls.c.state.type),
        last_twiml=bindparam("new_twiml"),
        updated_at=bindparam("now", type_=calls.c.updated_at.type),
    )
    # The status as the step is stored: on PostgreSQL read under the row's lock, so a final
    # status callback that came since the call was read is seen here.
    .returning(calls.c.status)
)


def load_call(conn: Connection, *, call_sid: str) -> CallRow | None:
    with reading(conn):
        row = conn.execute(_LOAD_CALL, {"sid": call_sid}).one_or_none()
    return None if row is None else _call_row(row)


_LOCK_CALL = select(calls.c.status).where(calls.c.call_sid == bindparam("sid")).with_for_update()


def lock_call(conn: Connection, *, call_sid: str) -> None:
    """Inside a write transaction: hold the call's row until it ends, as a step's update of
    it does. What checks for a case before opening one does this first, or two (a status
    callback and a late input, say) could both find none. SQLite needs nothing: its writes
    are one at a time already."""
    if conn.dialect.name != "sqlite":
        conn.execute(_LOCK_CALL, {"sid": call_sid})


def _call_row(row: Any) -> CallRow:
    return CallRow(
        row.call_sid,
        row.from_number,
        row.tree_version,
        row.step,
        CallState.model_validate(row.state),
        row.last_twiml,
        row.status,
    )


def _event_rows(
    call_sid: str, step: int, now: datetime, log: Sequence[LogEntry]
) -> list[dict[str, Any]]:
    return [
        {
            "call_sid": call_sid,
            "step": step,
            "at": now,
            "node": e.node,
            "kind": e.kind,
            "input_kind": e.input_kind,
            "option": e.option,
            "prompt_key": e.prompt_key,
            "outcome": e.outcome,
            "detail": e.detail or None,
        }
        for e in log
    ]


def create_call(
    conn: Connection,
    *,
    call_sid: str,
    account_sid: str | None,
    from_number: str | None,
    to_number: str | None,
    tree_version: str,
    step: int,
    state: CallState,
    twiml: str,
    log: Sequence[LogEntry],
    now: datetime,
    also: Sequence[Executable] = (),
) -> bool:
    """Insert a new call with its first log lines; False if the CallSid already exists."""
    try:
        with writing(conn):
            conn.execute(
                _INSERT_CALL,
                {
                    "call_sid": call_sid,
                    "account_sid": account_sid,
                    "from_number": from_number,
                    "to_number": to_number,
                    "tree_version": tree_version,
                    "step": step,
                    "state": state.model_dump(mode="json"),
                    "last_twiml": twiml,
                    "status": OPEN,
                    "started_at": now,
                    "updated_at": now,
                },
            )
            if log:
                conn.execute(_INSERT_EVENTS, _event_rows(call_sid, step, now, log))
            for statement in also:
                conn.execute(statement)
    except IntegrityError:
        return False
    return True


def save_step(
    conn: Connection,
    *,
    call_sid: str,
    expected_step: int,
    state: CallState,
    twiml: str,
    log: Sequence[LogEntry],
    now: datetime,
    also: Sequence[Executable] = (),
    forget_failure: int | None = None,
    then: Callable[[Connection, str], None] | None = None,
) -> str | None:
    """Move a call from `expected_step` to the next; the call's status as it was stored (a
    final status callback may have come since the call was read), or None if another request
    got there first.

    `also` runs in the same transaction (a count towards a lockout), and so does taking back
    `forget_failure`, the attempt a right answer had counted (see `record_failure`), and
    last `then(conn, status)`, for writes that depend on what the ones before found (the
    step's cases, a freeze)."""
    step = expected_step + 1
    with writing(conn):
        status: str | None = conn.execute(
            _SAVE_STEP,
            {
                "sid": call_sid,
                "expected": expected_step,
                "new_step": step,
                "new_state": state.model_dump(mode="json"),
                "new_twiml": twiml,
                "now": now,
            },
        ).scalar_one_or_none()
        if status is None:
            return None
        if log:
            conn.execute(_INSERT_EVENTS, _event_rows(call_sid, step, now, log))
        for statement in also:
            conn.execute(statement)
        if forget_failure is not None:
            conn.execute(_FORGET_FAILURE, {"id": forget_failure})
        if then is not None:
            then(conn, status)
    return status


def _record_status(final: bool, sequenced: bool) -> Executable:
    values: dict[str, Any] = {
        "status": bindparam("new_status"),
        "updated_at": bindparam("now", type_=calls.c.updated_at.type),
        "status_sequence": bindparam("sequence", type_=calls.c.status_sequence.type),
    }
    if final:
        values["ended_at"] = bindparam("now", type_=calls.c.ended_at.type)
        values["duration_seconds"] = bindparam("duration", type_=calls.c.duration_seconds.type)
    # Only a newer callback counts (Twilio may deliver them out of order).
    newer = (
        or_(calls.c.status_sequence.is_(None), calls.c.status_sequence < bindparam("sequence"))
        if sequenced
        else calls.c.status_sequence.is_(None)
    )
    return (
        update(calls)
        .where(calls.c.call_sid == bindparam("sid"), calls.c.ended_at.is_(None), newer)
        .values(**values)
        .returning(*_CALL_ROW)
    )


_RECORD_STATUS = {(f, q): _record_status(f, q) for f in (False, True) for q in (False, True)}


def record_status(
    conn: Connection,
    *,
    call_sid: str,
    status: str,
    duration_seconds: int | None,
    sequence: int | None,
    now: datetime,
) -> CallRow | None:
    """Apply a status callback: the call as it now is, or None for an unknown call or a
    callback older than what we have."""
    final = status in FINAL_STATUSES
    with writing(conn):
        row = conn.execute(
            _RECORD_STATUS[final, sequence is not None],
            {
                "sid": call_sid,
                "new_status": status,
                "now": now,
                "sequence": sequence,
                "duration": duration_seconds,
            },
        ).one_or_none()
        if row is None:
            return None
        conn.execute(
            _INSERT_EVENTS,
            {
                "call_sid": call_sid,
                "step": row.step,
                "at": now,
                "node": None,
                "kind": "status",
                "input_kind": None,
                "option": None,
                "prompt_key": None,
                "outcome": status,
                "detail": {"duration": duration_seconds} if duration_seconds is not None else None,
            },
        )
    return _call_row(row)


def versions_in_progress(conn: Connection) -> list[str]:
    """The call-tree versions of calls not yet ended."""
    with reading(conn):
        found = conn.execute(
            select(calls.c.tree_version).where(calls.c.ended_at.is_(None)).distinct()
        )
        return list(found.scalars())


def close_stale_calls(conn: Connection, *, now: datetime, max_age: timedelta) -> list[CallRow]:
    """Close calls that went quiet longer than `max_age` without a final status callback;
    the calls closed, as they now are."""
    with writing(conn):
        rows = conn.execute(
            update(calls)
            .where(and_(calls.c.ended_at.is_(None), calls.c.updated_at < now - max_age))
            .values(status=STALE, ended_at=now)
            .returning(*_CALL_ROW)
        ).all()
    return [_call_row(row) for row in rows]


def store_tree_version(
    conn: Connection, *, tree: CompiledTree, loaded_by: str, now: datetime
) -> bool:
    """Record a loaded tree (its text and prompts) so calls that began on it can finish on it."""
    try:
        with writing(conn):
            if conn.execute(
                select(tree_versions.c.version).where(tree_versions.c.version == tree.version)
            ).first():
                return False
            conn.execute(
                insert(tree_versions).values(
                    version=tree.version,
                    file=tree.file,
                    source=tree.source,
                    prompts=dict(tree.catalogs.sources),
                    loaded_at=now,
                    loaded_by=loaded_by,
                )
            )
    except IntegrityError:  # another instance stored the same version at the same moment
        return False
    return True


@dataclass(frozen=True)
class StoredTree:
    version: str
    file: str
    source: str
    prompts: Mapping[str, str]


def load_tree_version(conn: Connection, *, version: str) -> StoredTree | None:
    with reading(conn):
        row = conn.execute(
            select(tree_versions).where(tree_versions.c.version == version)
        ).one_or_none()
    return None if row is None else StoredTree(row.version, row.file, row.source, row.prompts)


def call_log(conn: Connection, *, call_sid: str) -> list[dict[str, Any]]:
    """A call's event log, oldest first."""
    with reading(conn):
        rows = (
            conn.execute(
                select(call_events)
                .where(call_events.c.call_sid == call_sid)
                .order_by(call_events.c.id)
            )
            .mappings()
            .all()
        )
    return [dict(r) for r in rows]


def get_call(conn: Connection, *, call_sid: str) -> dict[str, Any] | None:
    with reading(conn):
        row = (
            conn.execute(select(calls).where(calls.c.call_sid == call_sid)).mappings().one_or_none()
        )
    return None if row is None else dict(row)


# -- verification lockout -------------------------------------------------------------------


_F = verification_failures.c
_RECORD_FAILURE = (
    insert(verification_failures)
    .values(
        uid=bindparam("b_uid"),
        caller=bindparam("b_caller"),
        call_sid=bindparam("sid"),
        at=bindparam("now", type_=_F.at.type),
        attested=bindparam("b_attested"),
    )
    .returning(_F.id)
)
_FORGET_FAILURE = delete(verification_failures).where(_F.id == bindparam("id"))


def _recent(leg: str, where: Any, *, since: str = "since", rows: Any = 500) -> Any:
    """One leg of the lockout's read: failures since `since`, newest first."""
    return (
        select(literal_column(f"'{leg}'").label("leg"), _F.at, _F.caller, _F.attested)
        .where(where, _F.at > bindparam(since, type_=_F.at.type), _F.id != bindparam("exclude"))
        .order_by(_F.at.desc())
        .limit(rows)
        .subquery()
    )


def _lockout_read(*, budget: bool) -> Any:
    """Failures of the UID and of the calling number, and, for a call without full
    attestation, the latest of every such call's within the budget's window: one read."""
    legs = [
        _recent("uid", _F.uid == bindparam("uid")),
        _recent("caller", _F.caller == bindparam("caller")),
    ]
    if budget:
        legs.append(
            _recent(
                "budget",
                _F.attested == 0,
                since="budget_since",
                rows=bindparam("budget_rows", type_=Integer()),
            )
        )
    return union_all(*(select(leg) for leg in legs))


_LOCKOUT_READ = {budget: _lockout_read(budget=budget) for budget in (False, True)}


def record_failure(
    conn: Connection,
    *,
    uid: str | None,
    caller: str | None,
    call_sid: str,
    now: datetime,
    attested: bool | None = None,
) -> int:
    """Count an attempt as failed (never what was typed), committed at once so that parallel
    attempts see it; taken back (`forget_failure`, or with the step) if it matched.
    `attested`: whether the call came with STIR/SHAKEN full attestation."""
    with writing(conn):
        new_id: int = conn.execute(
            _RECORD_FAILURE,
            {
                "b_uid": uid,
                "b_caller": caller,
                "sid": call_sid,
                "now": now,
                "b_attested": None if attested is None else int(attested),
            },
        ).scalar_one()
    return new_id


def failure_insert(*, uid: str | None, caller: str | None, call_sid: str, now: datetime) -> Insert:
    """A failure counted as a statement for the call step's own transaction: it counts if,
    and only if, the step is stored (once, however often Twilio delivers the request)."""
    return insert(verification_failures).values(uid=uid, caller=caller, call_sid=call_sid, at=now)


def ticket_misses(number: str) -> str:
    """The bucket a calling number's ticket-lookup misses count in (the `caller` column):
    apart from its verification failures, so that a victim who mistyped a ticket number is
    not locked out of verifying, and the other way round."""
    return f"ticket:{number}"[:32]  # the column's width


def forget_failure(conn: Connection, *, failure_id: int) -> None:
    with writing(conn):
        conn.execute(_FORGET_FAILURE, {"id": failure_id})


def prune_failures(conn: Connection, *, before: datetime) -> int:
    """Drop counted failures (verification and sign-in) from before `before`: older than any
    lockout or sign-in window, they decide nothing any more."""
    with writing(conn):
        return conn.execute(
            delete(verification_failures).where(verification_failures.c.at < before)
        ).rowcount


@dataclass(frozen=True)
class Budget:
    """Failures from withheld or unattested calls, across every account, that may be made
    within `window` before such calls' secrets stop being checked (password spraying)."""

    failures: int
    window: timedelta


@dataclass(frozen=True)
class Lockout:
    """What the lockout's read found for one attempt.

    `locked`: not to be checked. `guessed`: the failures for the UID lately and how many
    numbers made them (withheld ones counted as one), when they reach the lockout rule:
    someone has been keying wrong answers for this account (a call from its owner's number
    with full attestation is checked all the same).
    `over_budget`: withheld or unattested calls failed `Budget.failures` times or more
    within its window, across accounts; such a call's secret is not checked."""

    locked: bool
    guessed: tuple[int, int] | None = None
    over_budget: bool = False


def _runs(
    times: Sequence[datetime],
    *,
    failures: int,
    window: timedelta,
    duration: timedelta,
    now: datetime,
) -> bool:
    """Whether `failures` of `times` (newest first) fall within `window`, the last of them
    less than `duration` before `now`. Every run, not only the latest: one more failure
    recorded during a lock (two requests racing) must not lift it."""
    return any(
        newest - oldest <= window and now < newest + duration
        for newest, oldest in zip(times, times[failures - 1 :], strict=False)
    )


def lockout(
    conn: Connection,
    *,
    uid: str | None,
    caller: str | None,
    now: datetime,
    failures: int,
    window: timedelta,
    duration: timedelta,
    exclude: int | None = None,
    owner: bool = False,
    budget: Budget | None = None,
) -> Lockout:
    """Locked: `failures` failed factors within `window` (per UID, or per calling number),
    the last of them less than `duration` ago. Kept in the database, so it holds across
    calls, restarts and instances.

    `owner`: the call comes from the account's registered number with full attestation,
    so only the failures of such calls from that number count (on any UID, its own tries
    included): guesses from spoofed or withheld numbers cannot lock the owner out, and the
    owner's number is still locked after its own repeated failures. `budget`: for a call
    without full attestation, whether such calls are over the shared budget. One read."""
    since = now - window - duration

    def runs(times: Sequence[datetime]) -> bool:
        return _runs(times, failures=failures, window=window, duration=duration, now=now)

    params: dict[str, Any] = {
        "uid": uid or None,
        "caller": caller or None,
        "since": since,
        "exclude": exclude or -1,
    }
    if budget is not None:
        params.update(budget_since=now - budget.window, budget_rows=budget.failures)
    with reading(conn):
        rows = conn.execute(_LOCKOUT_READ[budget is not None], params).all()
    by_uid = sorted((r for r in rows if r.leg == "uid"), key=lambda r: r.at, reverse=True)
    by_caller = sorted((r.at for r in rows if r.leg == "caller"), reverse=True)
    # The account is locked to all but its owner's number: someone is guessing at it.
    uid_locked = runs([r.at for r in by_uid])
    if owner:
        own = sorted((r.at for r in rows if r.leg == "caller" and r.attested == 1), reverse=True)
        locked = runs(own)
    else:
        locked = uid_locked or runs(by_caller)
    guessed = (len(by_uid), len({r.caller for r in by_uid})) if uid_locked else None
    over = budget is not None and sum(r.leg == "budget" for r in rows) >= budget.failures
    return Lockout(locked=locked, guessed=guessed, over_budget=over)


def activate_tree_version(conn: Connection, *, version: str, by: str, now: datetime) -> None:
    """Make a stored version the live one, for every instance."""
    with writing(conn):
        conn.execute(
            update(tree_versions)
            .where(tree_versions.c.version == version)
            .values(activated_at=now, activated_by=by)
        )


def active_tree_version(conn: Connection) -> str | None:
    with reading(conn):
        return conn.execute(
            select(tree_versions.c.version)
            .where(tree_versions.c.activated_at.is_not(None))
            .order_by(tree_versions.c.activated_at.desc())
            .limit(1)
        ).scalar()


def active_tree(conn: Connection) -> Any:
    """The live version's row (version, activated_by, activated_at), or None."""
    with reading(conn):
        return conn.execute(
            select(
                tree_versions.c.version,
                tree_versions.c.activated_by,
                tree_versions.c.activated_at,
            )
            .where(tree_versions.c.activated_at.is_not(None))
            .order_by(tree_versions.c.activated_at.desc())
            .limit(1)
        ).first()


def tree_version_list(conn: Connection) -> list[dict[str, Any]]:
    with reading(conn):
        rows = (
            conn.execute(
                select(
                    tree_versions.c.version,
                    tree_versions.c.file,
                    tree_versions.c.loaded_at,
                    tree_versions.c.loaded_by,
                    tree_versions.c.activated_at,
                    tree_versions.c.activated_by,
                ).order_by(tree_versions.c.loaded_at.desc())
            )
            .mappings()
            .all()
        )
    return [dict(r) for r in rows]
