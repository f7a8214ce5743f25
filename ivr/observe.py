"""What the hotline tells its operators about itself: Prometheus metrics and JSON logs.

Metrics (GET /metrics):
    ivr_webhook_seconds{endpoint}          latency of each Twilio webhook (histogram)
    ivr_signature_failures_total           requests refused for a missing or wrong signature
    ivr_late_webhooks_total                webhooks answered from memory after the deadline
    ivr_verification_failures_total        secret factors that did not match
    ivr_lockouts_total                     verification attempts refused by a lockout
    ivr_verification_throttled_total       secrets from withheld or unattested calls not
                                           checked: such calls failed too often across
                                           accounts (IVR_UNATTESTED_*; password spraying)
    ivr_verification_check_seconds         a secret factor's check, waiting for a turn included
    ivr_verification_checks_in_progress    checks asked for and not answered yet (a wave of
                                           victims keying PINs shows here first)
    ivr_identity_unavailable_total         steps whose check gave no verdict (the identity
                                           service down or failing, the directory's database
                                           failing); a webhook Twilio repeats counts once
    ivr_freezes_total{by,result}           account freezes (by caller or agent)
    ivr_staff_auth_failures_total{where,reason}
                                           staff tokens refused (`where`: api, dashboard;
                                           `reason`: wrong, or expired), those answered 429
                                           included: a rise of `wrong` is someone guessing
    ivr_staff_auth_blocked_total{where}    of those, the ones answered 429 (their address sent
                                           too many wrong tokens lately)
    ivr_pages_total{by,result}             texts and calls to the on-call about an emergency
                                           left waiting (ivr.oncall), sent or refused
    ivr_calls_in_progress                  calls not yet ended            } read from the
    ivr_queue_depth{priority}              cases waiting for an agent     } database when
    ivr_longest_wait_seconds{priority}     the oldest of them              } scraped
    ivr_agents_at_work                     agents at work, and what a case } as this
    ivr_handle_seconds                     takes them: the hold loop's      } instance's hold
                                           estimate (ivr.cases.Staffing)    } loop uses them

Logs are JSON lines with the CallSid of the call being served; nothing a caller typed and no
caller number is ever put in a log line.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, case, func, select

from ivr import oncall
from ivr.db import calls, cases

CALL_SID: contextvars.ContextVar[str | None] = contextvars.ContextVar("call_sid", default=None)


class Metrics:
    """One registry per app, so that two apps in one process (tests) do not share counts."""

    def __init__(
        self,
        db: Engine,
        *,
        clock: Callable[[], datetime],
        at_work: Callable[[], AtWork],
        held_after: timedelta | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self.webhook_seconds = Histogram(
            "ivr_webhook_seconds",
            "Twilio webhook latency",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.signature_failures = Counter(
            "ivr_signature_failures",
            "requests refused: missing or wrong signature",
            registry=self.registry,
        )
        self.verification_failures = Counter(
            "ivr_verification_failures", "secret factors that did not match", registry=self.registry
        )
        self.late_webhooks = Counter(
            "ivr_late_webhooks",
            "webhooks answered from memory because the real answer was too late",
            registry=self.registry,
        )
        self.check_seconds = Histogram(
            "ivr_verification_check_seconds",
            "time to check a secret factor, waiting for a turn to hash included",
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.checks_in_progress = Gauge(
            "ivr_verification_checks_in_progress",
            "secret factors being checked or waiting to be",
            registry=self.registry,
        )
        self.identity_unavailable = Counter(
            "ivr_identity_unavailable",
            "verification steps stored without a verdict (identity service down, slow, failing)",
            registry=self.registry,
        )
        self.twilio_refusals = Counter(
            "ivr_twilio_refusals",
            "what Twilio's REST API refused: an agent's connection (`redirect` of a waiting "
            "caller, or a `call_back`; the agent was given the case all the same), a caller's "
            "`transfer` (they go when the agent hangs up), or a recording's audio a "
            "supervisor asked for (`recording`)",
            ["what"],
            registry=self.registry,
        )
        self.lockouts = Counter(
            "ivr_lockouts", "verification refused by a lockout", registry=self.registry
        )
        self.verification_throttled = Counter(
            "ivr_verification_throttled",
            "secrets from withheld or unattested calls not checked: such calls failed too "
            "often across accounts (password spraying)",
            registry=self.registry,
        )
        self.ticket_lookups_refused = Counter(
            "ivr_ticket_lookups_refused",
            "ticket lookups not made: the calling number missed too often (someone dialling "
            "through ticket numbers)",
            registry=self.registry,
        )
        self.number_checks = Counter(
            "ivr_number_checks",
            "numbers callers checked (number_check): result official, not_official, or "
            "not_a_number; a wave of not_official is a scam campaign under way",
            ["result"],
            registry=self.registry,
        )
        self.freezes = Counter(
            "ivr_freezes", "account freezes", ["by", "result"], registry=self.registry
        )
        self.staff_auth_failures = Counter(
            "ivr_staff_auth_failures",
            "staff tokens and dashboard sessions refused, at `where` (api, dashboard), for "
            "`reason` (wrong: no such token, session or user; expired: a user's token past its "
            "expiry), the ones answered 429 included",
            ["where", "reason"],
            registry=self.registry,
        )
        self.staff_auth_blocked = Counter(
            "ivr_staff_auth_blocked",
            "staff tokens answered 429 at `where`: their client address sent too many wrong "
            "tokens lately (ivr.identity.SignInThrottle)",
            ["where"],
            registry=self.registry,
        )
        self.offers = Counter(
            "ivr_offers",
            "cases offered to available agents without their asking (`pushed`), and those "
            "offers their phone did not take (`missed`: the agent was set away)",
            ["outcome"],
            registry=self.registry,
        )
        self.pages = Counter(
            "ivr_pages",
            "texts (`sms`) and calls (`call`, IVR_PAGE_CALL) to the on-call numbers about an "
            "emergency left waiting (IVR_PAGE_NUMBERS): `sent` (Twilio took it), `failed` "
            "(refused; a page no number could be sent is tried again a minute later)",
            ["by", "result"],
            registry=self.registry,
        )
        self.page_reports = Counter(
            "ivr_page_reports",
            "what Twilio's status callbacks said became of a page's texts (`sms`: `delivered`, "
            "`undelivered`) and calls (`call`: `answered`, `unanswered`)",
            ["by", "result"],
            registry=self.registry,
        )
        self.page_acks = Counter(
            "ivr_page_acks",
            "pages acknowledged by someone coming: a key on the page's call (`phone`), its "
            "code texted back (`sms`), or the API and the queue page (`api`)",
            ["by"],
            registry=self.registry,
        )
        self.ticket_texts = Counter(
            "ivr_ticket_texts",
            "tickets texted to callers (IVR_TEXT_TICKETS): `sent` (Twilio took it), `failed` "
            "(refused for good: a landline), `skipped` (the call, or the number within ten "
            "minutes, was texted a ticket already), `stale` (not sent: found over an hour "
            "after the case opened), `unknown` (Twilio did not say whether it took it: not "
            "sent again)",
            ["result"],
            registry=self.registry,
        )
        self.page_ack_texts = Counter(
            "ivr_page_ack_texts",
            "texts telling the other on-call numbers who acknowledged a page: `sent`, `failed`",
            ["result"],
            registry=self.registry,
        )
        self.transfers = Counter(
            "ivr_transfers",
            "callers an agent sent on to another team, back in line at `priority`",
            ["priority"],
            registry=self.registry,
        )
        self.queue_full = Counter(
            "ivr_queue_full",
            "callers Twilio refused into a full queue (error 14207; each try counts): they are "
            "held and tried again, but the queue wants sizing (`ivr serve` does it at start)",
            registry=self.registry,
        )
        self.registry.register(_FromDatabase(db, clock, held_after))
        self.registry.register(_AtWork(at_work))


class AtWork(NamedTuple):
    agents: int
    handle_seconds: float


class _AtWork(Collector):
    """The figures the hold loop's estimate uses, from memory: every IVR_TREE_SYNC seconds
    each instance reads them from the database, and a scrape need not read them again."""

    def __init__(self, at_work: Callable[[], AtWork]) -> None:
        self.at_work = at_work

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.at_work()
        yield GaugeMetricFamily(
            "ivr_agents_at_work",
            "agents at work (ivr.cases.Staffing): holding a case, or who ended one in the last "
            "30 minutes",
            value=now.agents,
        )
        yield GaugeMetricFamily(
            "ivr_handle_seconds",
            "what the hold loop's estimate counts per case: the median over the last hour, "
            "or IVR_AVG_HANDLE_SECONDS",
            value=now.handle_seconds,
        )


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite gives an aggregate of times back without its zone: they are UTC.
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


class _FromDatabase(Collector):
    def __init__(
        self, db: Engine, clock: Callable[[], datetime], held_after: timedelta | None = None
    ) -> None:
        self.db = db
        self.clock = clock
        self.held_after = held_after  # IVR_OFFER_TIMEOUT: as `oncall.overdue` counts it

    def collect(self) -> Iterator[GaugeMetricFamily]:
        in_progress = GaugeMetricFamily("ivr_calls_in_progress", "calls not yet ended")
        depth = GaugeMetricFamily(
            "ivr_queue_depth", "cases waiting for an agent", labels=["priority"]
        )
        longest = GaugeMetricFamily(
            "ivr_longest_wait_seconds",
            "longest wait among them; for emergencies as the on-call are paged for it: from "
            "the victim's place in line, leaving out a call back held for its retry time, "
            "and counting one an agent has held IVR_OFFER_TIMEOUT with no talk",
            labels=["priority"],
        )
        up = GaugeMetricFamily(
            "ivr_database_up",
            "1 if this scrape read the database; 0 if it could not (the other gauges are "
            "left out then: an alert on the lane's wait sees no data, this one fires)",
        )
        now = self.clock()
        # As `ivr.oncall.overdue` counts it, so that the gauge and the page agree: a victim
        # who called again keeps their first place (`sort_at`), and a call back nobody may
        # take before its retry time is nobody's delay yet.
        ready = cases.c.not_before.is_(None) | (cases.c.not_before <= now)
        started = case((cases.c.lane == 0, oncall.joined_lane), else_=cases.c.created_at)
        try:
            with self.db.connect() as conn:
                open_calls = conn.execute(
                    select(func.count()).select_from(calls).where(calls.c.ended_at.is_(None))
                ).scalar_one()
                waiting = conn.execute(
                    select(cases.c.priority, func.count(), func.min(case((ready, started))))
                    .where(cases.c.queued == 1)
                    .group_by(cases.c.priority)
                ).all()
                held = None
                if self.held_after is not None:
                    # Down the partial index of the held cases: a few rows.
                    held = conn.execute(
                        select(func.min(oncall.joined_lane)).where(
                            *oncall.held_untalked(now - self.held_after)
                        )
                    ).scalar()
        except Exception:
            up.add_metric([], 0)
            yield up
            return  # the database is down: no gauges rather than a failed scrape
        up.add_metric([], 1)
        yield up
        in_progress.add_metric([], open_calls)
        seen = {row[0]: row for row in waiting}
        for priority in ("emergency", "high", "normal"):
            row = seen.get(priority)
            depth.add_metric([priority], row[1] if row else 0)
            oldest = _aware(row[2] if row else None)
            if priority == "emergency":  # and those an agent holds with no talk
                oldest = min((t for t in (oldest, _aware(held)) if t is not None), default=None)
            longest.add_metric([priority], (now - oldest).total_seconds() if oldest else 0)
        yield in_progress
        yield depth
        yield longest


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the call being served."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        call_sid = CALL_SID.get()
        if call_sid:
            line["call_sid"] = call_sid
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            # Fields a log pipeline filters on (5xx, one path) without parsing the message;
            # the target as QueryNamesOnly left it.
            line["method"], line["path"], line["status"] = args[1], args[2], args[4]
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class QueryNamesOnly(logging.Filter):
    """uvicorn's access lines with the query's names and not its values, outside /twilio/:
    `/api/calls?caller=0321&account=10000001` is logged as `/api/calls?caller&account`.
    A supervisor's search names a caller or an account, which a log shipped elsewhere must
    not hold; the webhooks' queries are the hotline's own (`?lang=en&queue=security`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn's access record: (client address, method, path with query, version, status)
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            path, _, query = args[2].partition("?")
            target = args[2]
            if query and not path.startswith("/twilio/"):
                names = [pair.partition("=")[0] for pair in query.split("&")]
                target = f"{path}?{'&'.join(names)}"
            # Cut short: anyone may send a URL of 60 KB, and a line is written for each.
            if len(target) > ACCESS_TARGET_LIMIT:
                target = target[:ACCESS_TARGET_LIMIT] + "..."
            record.args = (args[0], args[1], target, *args[3:])
        return True


# Longer than any URL of the hotline's own (a webhook's is under 100 characters).
ACCESS_TARGET_LIMIT = 300


def log_config(fmt: str) -> dict[str, Any]:
    """A logging config for uvicorn and the hotline's loggers: JSON lines, or plain text."""
    formatter = (
        {"()": JsonFormatter}
        if fmt == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"query_names_only": {"()": QueryNamesOnly}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "ivr": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {
                "handlers": ["default"],
                "level": "INFO",
                "propagate": False,
                "filters": ["query_names_only"],
            },
        },
    }
