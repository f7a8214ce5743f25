"""Tables, the database engine, and schema upgrades (Alembic, `migrations/`).

SQLite is the embedded default; PostgreSQL is production. Everything here works on both.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.sql.elements import TextClause

from ivr.exceptions import ConfigError

if TYPE_CHECKING:
    from ivr.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def in_utc(moment: datetime) -> datetime:
    """An aware time as UTC; ValueError for one the conversion takes past year 1 or 9999
    (`0001-01-01T00:00+14:00`): a time from a request, refused rather than a 500."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range once in UTC") from None


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite too (which stores them without a zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# A case an agent holds now: taken from the line (offered) or put through (connected).
HELD_STATUSES = ("offered", "connected")
HELD_WHERE = "status IN ({})".format(", ".join(f"'{s}'" for s in HELD_STATUSES))
# A case whose ticket is to be texted to its caller, not yet sent (IVR_TEXT_TICKETS).
TEXT_DUE_WHERE = "ticket_text = 'due'"
PARENT_TICKET_WHERE = "parent_ticket IS NOT NULL"

# An after-agent survey's events (`ivr.stats`): the caller asked (the survey node entered),
# and their answer.
SURVEY_EVENTS_WHERE = {
    "postgresql": "kind = 'survey' OR kind = 'entered' AND (detail ->> 'node_kind') = 'survey'",
    "sqlite": (
        "kind = 'survey' OR kind = 'entered' AND json_extract(detail, '$.node_kind') = 'survey'"
    ),
}
# The nodes entered that tell whether a call was contained (`ivr.stats`): self-help advice
# (say) heard, and no person (queue, transfer) reached.
ENTERED_NODE_KINDS = ("say", "queue", "transfer")
_KINDS = ", ".join(f"'{kind}'" for kind in ENTERED_NODE_KINDS)
ENTERED_WHERE = {
    "postgresql": f"kind = 'entered' AND (detail ->> 'node_kind') IN ({_KINDS})",
    "sqlite": f"kind = 'entered' AND json_extract(detail, '$.node_kind') IN ({_KINDS})",
}
# A case an agent sent on to another line (a transfer): few of all.
QUEUED_WHERE = "queued_at IS NOT NULL"
# An entry about an account (a freeze, an unfreeze, a transfer that names one).
ACCOUNT_WHERE = "account_uid IS NOT NULL"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

calls = Table(
    "calls",
    metadata,
    Column("call_sid", String(64), primary_key=True),
    Column("account_sid", String(64)),
    Column("from_number", String(32)),
    Column("to_number", String(32)),
    Column("tree_version", String(32), nullable=False),
    # The step the next webhook must carry (`s=`); a request with another step is a repeat.
    Column("step", Integer, nullable=False),
    Column("state", JSON, nullable=False),
    # The answer to the request that produced `step`, sent again if Twilio repeats it.
    Column("last_twiml", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_sequence", Integer),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("ended_at", UTCDateTime()),
    Column("duration_seconds", Integer),
    Index(None, "ended_at", "updated_at"),  # the sweep for calls whose last callback never came
    Index(None, "started_at", "call_sid"),  # the call log: newest first, a page at a time
)

call_events = Table(
    "call_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column(
        "call_sid", String(64), ForeignKey("calls.call_sid", ondelete="CASCADE"), nullable=False
    ),
    Column("step", Integer, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("node", String(64)),
    Column("kind", String(16), nullable=False),
    Column("input_kind", String(16)),
    Column("option", String(64)),
    Column("prompt_key", String(64)),
    Column("outcome", String(64)),
    Column("detail", JSON),
    Index(None, "call_sid", "id"),
    # The few events of each call the figures read (`ivr.stats`), looked up by call: a
    # month's figures would otherwise read each of its calls' events whole, or every event
    # ever logged. Partial: a query uses one only when its condition is this one, literally
    # (`figures_events`).
    Index(
        "ix_call_events_surveys",
        "call_sid",
        sqlite_where=text(SURVEY_EVENTS_WHERE["sqlite"]),
        postgresql_where=text(SURVEY_EVENTS_WHERE["postgresql"]),
    ),
    Index(
        "ix_call_events_entered",
        "call_sid",
        sqlite_where=text(ENTERED_WHERE["sqlite"]),
        postgresql_where=text(ENTERED_WHERE["postgresql"]),
    ),
)


def figures_events(dialect: str, where: dict[str, str]) -> TextClause:
    """The condition of one of call_events' partial indexes (SURVEY_EVENTS_WHERE,
    ENTERED_WHERE) in `dialect`, for a query of call_events alone that is to use it."""
    return text(f"({where[dialect]})")


tree_versions = Table(
    "tree_versions",
    metadata,
    Column("version", String(32), primary_key=True),
    Column("file", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("prompts", JSON, nullable=False),
    Column("loaded_at", UTCDateTime(), nullable=False),
    Column("loaded_by", String(64), nullable=False),
    # The live tree is the version activated last; every instance follows it.
    Column("activated_at", UTCDateTime(), index=True),
    Column("activated_by", String(64)),
)


users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),  # agent | supervisor | operator
    Column("phone", String(32)),
    Column("token_hash", String(64), nullable=False, unique=True),  # sha256 of the API token
    Column("created_at", UTCDateTime(), nullable=False),
    # Set by `ivr users revoke`: the token (and any dashboard session) stopped working then.
    Column("revoked_at", UTCDateTime()),
    # When the API token (the dashboard sign-in too) stops working, and its sessions with it:
    # set by `ivr users add` and `ivr users token` (IVR_TOKEN_DAYS). None: never, as for the
    # tokens made before tokens expired (`ivr users list` shows them, to be rotated).
    Column("token_expires_at", UTCDateTime()),
    # An agent taking cases as they come (presence): since when they have waited for one. Set
    # when they make themselves available, moved on as each case of theirs ends (the longest
    # idle is offered first); None is away, and cases come only when they ask.
    Column("available_since", UTCDateTime()),
    # Why they are away when it was not their own doing (cases.AWAY_*): what their desk says.
    Column("away_reason", String(16)),
    # The languages an agent speaks (catalog codes, comma-separated: "en,zh-CN"): callers in
    # them are offered to this agent first (cases.claim_next). None: every language.
    Column("languages", String(64)),
)

# Dashboard sign-ins: the browser holds a random session secret, never the API token; only
# its hash is stored. Signing out deletes the row; a revoked user's sessions stop at once.
sessions = Table(
    "sessions",
    metadata,
    Column("secret_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Index(None, "expires_at"),
)

# The built-in identity directory. No secret is stored in a form that can be read back:
# PIN and ID digits as argon2 hashes, the TOTP seed encrypted with IVR_SECRET_KEY.
accounts = Table(
    "accounts",
    metadata,
    Column("uid", String(32), primary_key=True),
    Column("phone", String(32)),
    Column("pin_hash", String(128)),
    Column("id_last4_hash", String(128)),
    Column("totp_secret", Text),
    Column("totp_last_step", BigInteger),  # a TOTP code is accepted once
    Column("frozen", Integer, nullable=False, default=0),
    Column("frozen_at", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
)

verification_failures = Table(
    "verification_failures",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("uid", String(32)),
    Column("caller", String(32)),
    Column("call_sid", String(64), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    # A verification failure's call: 1 with STIR/SHAKEN full attestation (Twilio's
    # TN-Validation-Passed-A), 0 without (withheld, or any lesser or no attestation); NULL
    # for rows of other kinds (sign-in failures, ticket misses).
    Column("attested", Integer),
    Index(None, "uid", "at"),
    Index(None, "caller", "at"),
    Index(None, "attested", "at"),
)

cases = Table(
    "cases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ticket", String(16), nullable=False, unique=True),
    Column("call_sid", String(64), nullable=False, index=True),
    Column("account_uid", String(32), index=True),
    Column("caller", String(32)),
    Column("reason", String(64), nullable=False),
    Column("queue", String(64), nullable=False),
    Column("priority", String(16), nullable=False),  # emergency | high | normal
    # Serving order: lane 0 (emergency) before lane 1, then by sort_at (arrival, moved earlier
    # for high priority: aging, so normal cases still move up), then id.
    Column("lane", Integer, nullable=False),
    Column("sort_at", UTCDateTime(), nullable=False),
    Column("queued", Integer, nullable=False),  # 1 while an agent can claim it
    Column("status", String(24), nullable=False),
    # What an agent took it from (waiting, callback_requested, abandoned): where it goes back
    # to if the agent's phone does not answer, and whether its caller is still on the line.
    Column("claimed_from", String(24)),
    Column("flags", JSON, nullable=False),  # verification result and factors, risk signals, freeze
    Column("path", JSON, nullable=False),  # the menus the caller went through
    Column("parent_ticket", String(16)),  # a follow-up call's (main menu 9)
    Column("callback_number", String(32)),
    Column("agent_id", Integer, ForeignKey("users.id")),
    Column("notes", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("offered_at", UTCDateTime()),
    Column("connected_at", UTCDateTime()),
    Column("ended_at", UTCDateTime()),
    # When the agent's leg of a connected case ended (Twilio's report of the <Dial>): its
    # agent resolves it after the call, not during it. None while in line or talking.
    Column("talk_ended_at", UTCDateTime()),
    # When the agent's phone picked up (the <Dial>'s end less its DialCallDuration, or the
    # key they pressed to take the call); `connected_at` is before it rang. None until known.
    Column("answered_at", UTCDateTime()),
    # The talks an agent ended by sending the caller on (`ivr.cases.Leg`), earliest first.
    Column("legs", JSON),
    # What the agents who had it wrote while they worked it (`ivr.cases.add_note`): each
    # note's author, time and text, earliest first; none: nobody wrote one. The resolving
    # agent's closing words are `notes`.
    Column("working_notes", JSON),
    # How the current offer reaches its caller (`ivr.cases.OFFER_*`; for a call back Twilio is
    # placing, with the outbound call's sid); none while the case is in line.
    Column("offer", String(80)),
    # An offer made at an agent's desk, not by ringing their phone (a call back to dial by
    # hand, a withheld number), that they have not accepted yet: by then, or it goes back.
    Column("accept_by", UTCDateTime()),
    # The language the caller chose (a catalog code): offered to an agent who speaks it first,
    # to anyone once it has waited IVR_LANGUAGE_OVERFLOW. None (opened before): anyone.
    Column("language", String(16)),
    # A call back nobody answered keeps its place in line but is not offered again before this.
    Column("not_before", UTCDateTime()),
    # Its ticket texted to its caller (IVR_TEXT_TICKETS): due, sending, then sent, failed,
    # skipped or stale (`Hotline.text_tickets`); none when it is not to be (the setting off,
    # a number that cannot take a text). `sending` stays if its instance stopped meanwhile:
    # nobody knows whether it went, and it is not sent twice.
    Column("ticket_text", String(8)),
    # When a case an agent sent on (a transfer) joined the line it is in now; none: when it
    # was created. Its waits count from it: language routing, the figures, the queue page.
    Column("queued_at", UTCDateTime()),
    # When a supervisor moved it into the emergency lane (`cases.set_priority`); none: it
    # was an emergency from the start, or is none. The page counts its wait there from then
    # (`oncall.joined_lane`): a page before was about others, and holds nobody back for it.
    Column("lane_at", UTCDateTime()),
    Index(None, "queued", "lane", "sort_at", "id"),
    # The call backs held back now: few, whatever the size of the table (see cases._ahead).
    Index(None, "not_before"),
    # A number's call backs in line, to keep one (cases.tidy_call_backs).
    Index(None, "caller"),
    # The cases agents hold now: a few rows of a table that keeps every case ever opened.
    # Partial, so it costs nothing for the cases in line or closed; a query uses it only when
    # its own condition is this one, literally (cases.HELD_NOW).
    Index(
        "ix_cases_held",
        "agent_id",
        sqlite_where=text(HELD_WHERE),
        postgresql_where=text(HELD_WHERE),
    ),
    # Cases ended lately: who is at work, and how long a case takes them (cases.staffing).
    Index(None, "ended_at"),
    # The figures' cases (`ivr.stats`): opened, taken by an agent or sent on in a period.
    Index(None, "created_at"),
    Index(None, "connected_at"),
    Index(
        "ix_cases_queued_at",
        "queued_at",
        sqlite_where=text(QUEUED_WHERE),
        postgresql_where=text(QUEUED_WHERE),
    ),
    # The few cases whose ticket is to be texted now (cases.tickets_to_text).
    Index(
        "ix_cases_ticket_text_due",
        "id",
        sqlite_where=text(TEXT_DUE_WHERE),
        postgresql_where=text(TEXT_DUE_WHERE),
    ),
    # The follow-ups of a ticket (the call log's ticket filter). Partial: most cases follow
    # nothing up, so it stays small; and a whole-column one, all NULL but a few, SQLite
    # stops using once the table is analysed.
    Index(
        "ix_cases_parent_ticket",
        "parent_ticket",
        sqlite_where=text(PARENT_TICKET_WHERE),
        postgresql_where=text(PARENT_TICKET_WHERE),
    ),
    # An erased or purged case's id never comes back on SQLite: its audit entries, kept by
    # case id, would be a new caller's (migration 0030).
    sqlite_autoincrement=True,
)

audit_log = Table(
    "audit_log",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(80), nullable=False),
    Column("action", String(32), nullable=False),
    Column("account_uid", String(32)),
    Column("case_id", Integer),
    Column("reason", Text),
    Column("result", String(32), nullable=False),
    # A period's freezes (calllog.freezes), missed offers and transfers (the figures).
    Index(None, "action", "at"),
    # The log newest first, and by who (`calllog.list_audit`: the Audit page, /api/audit);
    # the second also what a call's caller did, for its timeline (`calllog.timeline`),
    # beside its cases' entries, without reading the whole log.
    Index("ix_audit_log_at_id", "at", "id"),
    Index("ix_audit_log_actor_at", "actor", "at"),
    # A case's entries: blanked by the purge and an erasure (`ivr.retention`), read by its
    # call's timeline. The log is never purged: without it each of those reads all of it.
    Index(None, "case_id"),
    # An account's freezes in time: whether a failed one was made since (`calllog.freezes`:
    # once per freeze listed), and the call log's account filter. Partial: most entries
    # name no account.
    Index(
        "ix_audit_log_account_uid_at",
        "account_uid",
        "at",
        sqlite_where=text(ACCOUNT_WHERE),
        postgresql_where=text(ACCOUNT_WHERE),
    ),
)

# Each agent's presence as it changes (`cases.note_presence`): available (since when, as
# `users.available_since` says then) or away (and why). The figures' time available and
# occupancy per agent, and how many agents were at work in each of their periods.
presence_changes = Table(
    "presence_changes",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("available_since", UTCDateTime()),
    Column("away_reason", String(16)),
    Index(None, "at"),
)

# The on-call paged because an emergency waited too long (`ivr.oncall`): one row a page,
# unique by turn, so that of two instances seeing the same wait only one pages.
pages = Table(
    "pages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("turn", Integer, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("next_at", UTCDateTime(), nullable=False),  # no page before it
    Column("case_id", Integer),  # the emergency first in line
    Column("waiting", Integer, nullable=False),  # emergencies in line
    Column("waited_seconds", Integer, nullable=False),  # by the first of them
    # sending, sent, failed, logged; undelivered (`page_sends`: Twilio took it for some
    # numbers, and reached none of them)
    Column("result", String(16), nullable=False),
    Column("sent", Integer, nullable=False),  # numbers Twilio took a text or call for
    Column("failed", Integer, nullable=False),  # numbers it refused
    # Of those it took, the numbers its reports say were not reached: the text undelivered,
    # the call (IVR_PAGE_CALL) not answered.
    Column("undelivered", Integer, nullable=False, server_default="0"),
    # Someone on call said they are coming (a key on the page's call, or the queue page):
    # the on-call number that answered, or the user's name.
    Column("acked_at", UTCDateTime()),
    Column("acked_by", String(64)),
    # What an on-call number replies to the page's text to say they are coming: random, as
    # a text's sender can be forged and only those paged should hold back the next page.
    # None: a page of an earlier release, acknowledged by key or on the queue page only.
    Column("ack_code", String(8)),
    UniqueConstraint("turn"),
)

# Each text and call of a page, and what Twilio's status callback said became of it: a page
# it took but that reached nobody (texts undelivered: a carrier's filter, a phone off the
# network; calls unanswered) is sent again a minute later, as one it refused. Written before
# the texts are sent, so a report that comes back at once finds its row. The on-call's own
# numbers (IVR_PAGE_NUMBERS), not a caller's.
page_sends = Table(
    "page_sends",
    metadata,
    Column("page_id", Integer, nullable=False),
    Column("number", String(32), nullable=False),
    Column("by", String(8), nullable=False),  # sms, call
    # sending, refused (by Twilio's API); sent (taken, nothing reported yet); delivered,
    # undelivered (a text); answered, unanswered (a call)
    Column("status", String(16), nullable=False),
    Column("error", String(8)),  # Twilio's ErrorCode for a text not delivered (30003...)
    Column("at", UTCDateTime(), nullable=False),  # of the status
    PrimaryKeyConstraint("page_id", "number", "by"),
)

# What an on-call number's texts to the hotline did (`Hotline.page_texted`), one row a
# number, written only when one of them texts: when it was last told how to reply (one such
# answer per `oncall.REPLY_EVERY`: an auto-reply must not start an SMS loop), and whether it
# opted out of texts at Twilio (STOP, or a page text refused with 21610): its pages reach it
# only by call then, and the queue page says so until it opts in again.
on_call_phones = Table(
    "on_call_phones",
    metadata,
    Column("number", String(32), primary_key=True),
    Column("told_at", UTCDateTime()),
    Column("opted_out_at", UTCDateTime()),
    Column("opted_out", String(16)),  # the word it texted (STOP...), or Twilio's 21610
)

# The instances serving the hotline (`ivr.instances`): each rewrites its row every
# IVR_TREE_SYNC seconds, with a digest of each setting that must be the same on all of them.
instances = Table(
    "instances",
    metadata,
    Column("id", String(32), primary_key=True),  # a process's, made as it starts
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("seen_at", UTCDateTime(), nullable=False),
    Column("every_seconds", Float, nullable=False),
    Column("digests", JSON, nullable=False),
)

# Calls with agents that Twilio recorded (IVR_RECORD_AGENT_CALLS): where the audio is (at
# Twilio, behind the account's credentials), never the audio itself.
recordings = Table(
    "recordings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", Integer, nullable=False),
    Column("recording_sid", String(34), nullable=False),
    Column("call_sid", String(64), nullable=False),  # the parent call: the caller's, or a call back
    Column("status", String(16), nullable=False),  # completed, or absent (no audio)
    Column("url", String(255)),  # Twilio's media URL
    Column("seconds", Integer),
    Column("at", UTCDateTime(), nullable=False),
    UniqueConstraint("recording_sid"),
    Index(None, "case_id"),
)

# What supervisors want every caller to hear first on a bad day. One is current at most: the
# newest neither cleared nor expired.
announcements = Table(
    "announcements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("texts", JSON, nullable=False),  # language -> text
    Column("set_by", String(80), nullable=False),
    Column("set_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("cleared_by", String(80)),
    Column("cleared_at", UTCDateTime()),
)


def normalise_url(url: str) -> str:
    """Accept the URL forms people paste (postgres://, postgresql://); use the psycopg 3 driver."""
    u = make_url(
        url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url
    )
    if u.drivername == "postgresql":
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


# A dead database host sends no reset: without these, a pooled connection whose peer vanished
# waits for the kernel's retransmissions (minutes). Keepalive probes after 5 s idle, 2 s apart,
# and unacknowledged data for 9 s, declare it dead well inside Twilio's 15 s webhook limit.
TCP_DEAD_PEER = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "tcp_user_timeout": 9000,
}


def create_db_engine(
    url: str,
    *,
    webhook_timeouts: bool = True,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    pooler: str = "none",
    **kwargs: Any,
) -> Engine:
    """The engine. With webhook_timeouts, nothing waits long: Twilio gives up on a webhook after
    15 s, and a webhook that fails fast still hands its caller to an agent (the fallback).

    Connections are checked before use (pool_pre_ping), so after a database restart or
    failover the first request on each stale pooled connection reconnects by itself; a
    request made while the database is down (refused, reset, or a host gone) fails within a
    few seconds and its webhook answers with the fallback. One that hangs without failing (a
    stalled path) is not caught here: the webhook deadline in `ivr.web` answers for it.
    Nothing is retried here: a webhook's write is guarded by the
    call's step, and Twilio's time limit leaves no room for waiting out an outage.

    `pool_size` and `max_overflow` (IVR_DB_POOL_SIZE, IVR_DB_MAX_OVERFLOW) size the pool of a
    PostgreSQL engine; an instance opens at most their sum. `pooler` (IVR_DATABASE_POOLER):
    "transaction" behind a pooler in transaction mode, whose server connections serve
    another client between transactions: no statement is prepared."""
    url = normalise_url(url)
    connect_args: dict[str, Any] = kwargs.pop("connect_args", {})
    if url.startswith("sqlite"):
        connect_args.setdefault("timeout", 5 if webhook_timeouts else 60)
        if webhook_timeouts and make_url(url).database not in (None, "", ":memory:"):
            kwargs.setdefault("pool_timeout", 3)  # a file's pool: never wait long for one
            # The most recently returned connection first: the event loop keeps reusing the
            # one it just had, whose busy timeout is already what `impatient()` wants, instead
            # of resetting it on whichever connection a worker thread last returned.
            kwargs.setdefault("pool_use_lifo", True)
        engine = create_engine(url, connect_args=connect_args, hide_parameters=True, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "checkout", _sqlite_patience)
        return engine
    if pool_size is not None:
        kwargs.setdefault("pool_size", pool_size)
    if max_overflow is not None:
        kwargs.setdefault("max_overflow", max_overflow)
    if webhook_timeouts:
        connect_args.setdefault("connect_timeout", 3)
        connect_args.setdefault("options", "-c statement_timeout=5000 -c lock_timeout=3000")
        for name, value in TCP_DEAD_PEER.items():
            connect_args.setdefault(name, value)
        kwargs.setdefault("pool_timeout", 3)
    if pooler == "transaction":
        # psycopg prepares a statement run 5 times, by a name that lives on one server
        # connection: the pooler's next one may lack it or hold another by that name.
        connect_args.setdefault("prepare_threshold", None)
    # hide_parameters: a failed statement's message never carries call data into a log.
    return create_engine(
        url, pool_pre_ping=True, hide_parameters=True, connect_args=connect_args, **kwargs
    )


def engine_from_settings(settings: Settings) -> Engine:
    """The app's engine: IVR_DATABASE_URL with the pool sized by IVR_DB_POOL_SIZE and
    IVR_DB_MAX_OVERFLOW, made for IVR_DATABASE_POOLER."""
    return create_db_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pooler=settings.database_pooler,
    )


def _sqlite_pragmas(dbapi_conn: Any, record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the hold loop read while a webhook writes; foreign keys are off by default.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    record.info["busy_timeout"] = record.info["patient_ms"] = cur.execute(
        "PRAGMA busy_timeout"
    ).fetchone()[0]
    cur.close()


# Work on the event loop must never wait long: every other call waits with it. In `impatient()`
# a lock (SQLite's, or this process's writer lock in `ivr.store`) is waited for this long at
# most; then `Busy` is raised and the work runs again in a worker thread, where waiting holds
# up nobody else (and the webhook deadline still answers for it).
IMPATIENT_WAIT_SECONDS = 0.02
_impatient: ContextVar[bool] = ContextVar("ivr_db_impatient", default=False)


class Busy(Exception):
    """A lock was not free at once, in `impatient()`; nothing of the transaction was written."""


@contextlib.contextmanager
def impatient() -> Iterator[None]:
    token = _impatient.set(True)
    try:
        yield
    finally:
        _impatient.reset(token)


@contextlib.contextmanager
def patient() -> Iterator[None]:
    """Inside `impatient()`: wait for locks as usual again (for writes that must not give up
    halfway, once a webhook has stored its step)."""
    token = _impatient.set(False)
    try:
        yield
    finally:
        _impatient.reset(token)


def is_impatient() -> bool:
    return _impatient.get()


def _sqlite_patience(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    sqlite_patience(dbapi_conn, record.info)


def sqlite_patience(dbapi_conn: Any, info: dict[Any, Any]) -> None:
    """SQLite's busy timeout for this connection as the context wants it (`impatient()`)."""
    wanted = int(IMPATIENT_WAIT_SECONDS * 1000) if _impatient.get() else info["patient_ms"]
    if info["busy_timeout"] != wanted:
        dbapi_conn.execute(f"PRAGMA busy_timeout = {wanted:d}")
        info["busy_timeout"] = wanted


def upgrade(url: str, revision: str = "head", *, migrations: Path = MIGRATIONS_DIR) -> None:
    """Bring the schema to `revision` (what `ivr serve` and `ivr db upgrade` run)."""
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    if not (migrations / "env.py").is_file():
        # Alembic's own words would advise its 'init' command: a new, empty history.
        raise ConfigError(
            f"no migrations at {migrations}: set IVR_MIGRATIONS to the release's migrations"
            " folder (the checkout's, or /app/migrations in the image)"
        )
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations))
    cfg.attributes["url"] = normalise_url(url)
    try:
        command.upgrade(cfg, revision)
    except CommandError as exc:
        if "Can't locate revision" not in str(exc):
            raise
        # A release older than the one that migrated this database (a rollback of the code
        # alone): its migrations end before the database's.
        known = ScriptDirectory.from_config(cfg).get_current_head()
        found = re.search(r"identified by '([^']+)'", str(exc))
        at = f"migration {found[1]}" if found else "a migration"
        raise ConfigError(
            f"the database is at {at}, which this release does not have (its newest is"
            f" {known}): a newer release migrated it. Run that release, or restore the dump"
            " taken before the upgrade (docs/production.md, Migrations)"
        ) from None
