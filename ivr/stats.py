"""Contact-centre figures over a period, overall and per queue: the definitions.

Every figure is computed by `figures(conn, start=..., end=..., now=...)` from the tables
alone; the period is the half-open interval [start, end): a case created exactly at `start`
counts, one created exactly at `end` belongs to the next period. `now` is when the report
runs (the app's clock; by default `end`): how long a caller still in line has waited.
Durations are differences of stored UTC timestamps, in seconds. A rate or an average with
nothing to divide by is None (shown as "n/a"), never 0. The figures depend on no time zone:
the one a report is shown in (`tz`, IVR_REPORT_TZ) only gives its period back on that clock,
and puts the figures page's hour and day bars on its hours and midnights.

Which rows
    Case figures are over the cases CREATED in the period (`cases.created_at`), each under its
    own `cases.queue`, and all of them together under "overall". A case is the caller entering
    an agent queue (one per queue a call reaches), so a call that reaches two queues is offered
    twice. A case is judged by its state when the report runs: its outcome is reported with the
    period it was created in, even if the outcome came later.
    Call figures (calls, containment, top topics) are over the calls STARTED in the period
    (`calls.started_at`).
    Agent figures (`by_agent`, below) are not: they are over the work each agent TOOK in the
    period (`cases.connected_at`), whenever its case was created.
    A case an agent sent on (a transfer) counts in each line it went through, as the
    industry counts a contact transferred to another queue: every line it left is in
    `cases.legs` (kept by the transfer), answered there by the agent who sent it on, its wait
    from when it joined that line to that agent's answer, and that agent's talk, to the
    transfer, as their handle time (no wrap-up: the case went on). Its last line is the case
    itself, its waits counted from when it joined that line (`cases.queued_at`) instead of
    `created_at` below. A caller sent on within the same queue (another language) counts
    there twice. One whose caller hung up while still with the agent who sent it is a call
    back that agent requested, not an abandon. A call back sent on is counted once, where
    it is now; the agent who talked to its customer before (one Twilio put through: a call
    back dialled by hand tells nobody whether it reached them) has it among their handled.
    A case opened for a caller who hung up on their way to an emergency queue (their notice,
    their UID; flag `hung_up_at`) never was in line: it is in no figure below but
    `hung_up_on_the_way` (and, once an agent calls them back, that agent's).

Each case has exactly one outcome, the first of these that applies:
    1. call back requested: the caller asked to be called back while waiting. The case's
       status is `callback_requested`, or an agent took it from there (`claimed_from` =
       `callback_requested`), or it has a `callback_number` (only a request sets it).
    2. abandoned: the caller hung up before an agent answered. The case's status is
       `abandoned`, or an agent took it from there (`claimed_from` = `abandoned`: an agent
       calling back a caller who hung up does not turn the case into an answered one).
    3. answered: an agent answered the caller on the call they made: `connected_at` is set.
       The answer is when the agent's phone picked up (`answered_at`: the key they pressed
       to take the call, or the end of their leg less Twilio's DialCallDuration); not known
       (a leg whose report is lost, a case from before it was kept, a call still going on
       without screening), when the caller reached the <Dial>, before the phone rang
       (`connected_at`).
    4. in progress: none of these yet (waiting, or being offered to an agent); such a case
       counts in `offered`, and in the service level once it has waited past its threshold
       (below).
    ("offered" below is the industry's word for a contact that reached a queue; it is not the
    case status `offered`, which means an agent has claimed the case.)

offered
    Cases created in the period.
answered
    Cases whose outcome is answered.
abandoned
    Cases whose outcome is abandoned. The caller's wait before hanging up is the case's
    `ended_at` - `created_at` while the case is still `abandoned` (set at the hang-up); once an
    agent has taken it, the case's `ended_at` is the agent's, so the call's `calls.ended_at`
    (the hang-up) is used instead. A wait that cannot be known counts as longer than any
    threshold.
abandonment_rate
    abandoned / (answered + abandoned): of the callers whose wait in line ended, those who
    hung up before an agent answered. Call-back requests are neither (the caller left the
    line with a promise, not in vain), and cases in progress have no outcome yet: both are
    out of the rate, so callers taking the call-back offer, or a line backing up, never
    make it look better. None when nothing was answered or abandoned.
short_abandoned
    Abandoned cases whose wait (above) is known and <= `Thresholds.short_abandon` (default
    5 s): a misdial, a change of mind, nothing the line could have done.
abandonment_rate_without_short
    (abandoned - short_abandoned) / (answered + abandoned - short_abandoned), as call centres
    report it beside the plain rate; None when nothing is left to divide by.
hung_up_on_the_way
    Cases opened for callers who hung up on their way to an emergency queue (above): call
    backs owed, not offered. Per queue, the queue they were on their way to.
service level threshold
    By the case's priority: `Thresholds.emergency` (default 20 s) for `emergency`,
    `Thresholds.other` (default 60 s) for `high` and `normal` (in `by_priority`, below: the
    priority it entered the line with).
answered_within_threshold
    Answered cases whose wait, from joining the line (`created_at`, or `queued_at` for a
    line an agent sent them to) to the answer (above), is <= the case's threshold.
abandoned_after_threshold
    Abandoned cases whose wait (above) is > their threshold (or not known).
callbacks_after_threshold
    Call-back requests the caller made after waiting > their threshold: from joining the
    line to the end of their call (Twilio hangs up a few seconds after the request is
    confirmed; the call not ended yet, `now`). A call back an agent sent on after its caller
    hung up on them (answered before) is not a request: in neither part.
waiting_after_threshold
    Cases in progress whose caller is still in line (status `waiting`, or `offered` to an
    agent, not put through yet) and has waited > their threshold by `now`.
service_level_counted
    answered + abandoned_after_threshold + callbacks_after_threshold +
    waiting_after_threshold: every caller who was answered, or who reached the threshold
    unanswered.
service_level
    answered_within_threshold / service_level_counted; None when that is 0. Cisco ICM's
    service level with "abandoned calls ignored": a call counts once it is answered or waits
    past the threshold, less those who hung up before it (a caller who gave up within the
    target could not have been answered within it; ICMI's formula #4). A caller who leaves
    the line by asking for a call back counts as one who hung up would: after the
    threshold, a miss; before, left out. A caller still waiting past it has missed it
    already, and counts now, not only once they leave: a line backing up shows at once.
average_speed_of_answer_seconds (ASA)
    Mean of the answer (above) - `created_at` over answered cases (call-backs and abandoned
    cases called back are not answers), and the answers of the lines they left; None when
    nothing was answered.
average_handle_time_seconds (AHT)
    Mean of `ended_at` - the answer over cases with status `resolved` that have both,
    whatever their outcome (answered, completed call-backs, abandoned callers an agent called
    back): an agent handled each of them; and of each line's talk a transfer ended (above).
    `ended_at` is when the agent resolved the case, so the time includes after-call work;
    the phone ringing before the answer is not in it. A case someone else closed for its
    agent (a supervisor, maybe hours later: `audit_log` action `resolve` by another) ends
    with the agent's talk (`talk_ended_at`), no after-call work of theirs; left out when
    that is not known. Cases still connected are left out. None when there are none.
callbacks_requested
    Cases whose outcome is call back requested.
callbacks_completed
    Of those, the ones an agent reached on the call back: `connected_at` is set.
callbacks_superseded
    Of those not completed, the ones the caller settled by calling again: their new call
    reached the same queue and took the call back out of the line
    (`cases.on_the_line_again`; flag `superseded_by`, the new case's ticket, which counts on
    its own). Nobody owes them a call back any more: callbacks_requested - callbacks_completed
    - callbacks_superseded are the ones still owed or given up on. (An abandoned case the
    caller settled so carries the flag too, and stays an abandon.)
longest_wait_seconds
    The longest wait in line of the cases offered (Amazon Connect's "maximum queued time"),
    each wait as the figures above measure it: an answered case's to the answer (ASA's; the
    lines a transfer left included), an abandoned case's to the hang-up (when known), a
    call-back request's to the end of the call it was asked on, and a caller's still in
    line to `now`. None when there is none.

by_priority: the queue figures above per priority (`emergency`, `high`, `normal`, each
listed even with nothing offered), over the same cases, each under the priority it entered
the line with and judged by that priority's target: so the emergency service level a
manager reports can be read off, whatever line the emergencies were in. A case a supervisor
moved (`cases.set_priority`) counts under the priority it had before the first move (flag
`entered_priority`; `priority_was` for a case moved before it was kept); a line a transfer
left, under the
priority it had there. "overall" and `by_queue` judge a case by its priority when the report
runs: when a supervisor moved a case out of (or into) the emergency line, their
answered_within_threshold need not be these added up.

emergency: how the period's emergencies were served, for whoever answers for the victims
(the security lead's "how long from a victim's call to the freeze"). Over the cases created
in the period whose priority is `emergency` when the report runs, those whose caller hung up
on the way included (they are no less victims). Times are from the start of the victim's
call (`calls.started_at`: the prompts, the verification and the wait are in them, unlike
ASA's, which start in the line). A median is the middle value (the mean of the two middle
ones); a 90th percentile is the nearest rank: the smallest time that at least 90 % of them
are at or under. None when there is none.
cases
    The emergency cases: offered + hung_up_on_the_way.
offered, hung_up_on_the_way, answered
    As above, for the emergency cases.
median_seconds_to_answer, p90_seconds_to_answer
    From the call's start to the answer (above), over the answered ones.
frozen_by_caller
    Cases whose verified caller froze their account on the call: an `audit_log` row
    `self_freeze` with result `ok` on the case (`case_id`).
frozen_by_agent
    Of the others, the cases an agent froze an account on: a row `freeze` with result `ok`
    on the case (whenever it was made: a freeze the morning after still counts).
frozen
    frozen_by_caller + frozen_by_agent.
median_seconds_to_agent_freeze, p90_seconds_to_agent_freeze
    From the call's start to the first such freeze of an agent's, over frozen_by_agent.
closed_without_freeze
    Cases resolved (status `resolved`) with no `ok` freeze on them; their tickets, in
    `closed_without_freeze_tickets`: the ones to look at again. A freeze of the same account
    made on another case (a follow-up call) is not seen here.

After-agent survey (a queue node's `after_agent` leading to a `survey` node): the caller was
asked when the call entered the survey node (an `entered` event whose detail.case is the case
the agent served), and answered with a `survey` event naming the same case, whose outcome is
the key pressed, 1 (not at all satisfied) to 5 (very), or "none" (silence, another key). A
caller who hangs up on the question was asked and did not answer. A case asked more than once
counts by its latest answer.
surveys_asked
    Cases whose caller was asked.
surveys_answered
    Of those, the ones answered with 1 to 5.
satisfaction_average
    Mean answer of surveys_answered; None when none.
satisfied_rate (CSAT)
    Answers of 4 or 5 / surveys_answered (the industry's "top two boxes"); None when none.

by_agent: per agent (`users.name`), the work they took in the period, whenever its case was
opened: the cases that agent talked to the caller on (`cases.agent_id` is theirs) whose
caller reached them in the period (`connected_at` in [start, end): the call put through to
them, or their call back begun; a case an agent gave back, or whose caller their phone never
reached, is not theirs any more), and the talks they ended by sending a caller on
(`cases.legs`) whose caller reached them in the period. So a call back opened on the night
shift and worked in the morning is the morning agent's, in the morning's report, while the
queue figures above count it in the night's, when it was offered (Amazon Connect's "contacts
handled", by the connected-to-agent time, beside its "contacts queued", by the enqueue time):
the agents' handled cases need not add up to the queues' answered and call backs done.
handled
    Those cases and talks.
average_handle_time_seconds, surveys_asked, surveys_answered, satisfaction_average,
satisfied_rate
    As above, over those cases.
average_after_call_work_seconds
    The part of the handle time after the call: mean of `ended_at` - `talk_ended_at` (the
    agent's leg ended; they resolve the case after it) over those of the handled cases that
    have both and that they closed themselves; None when there are none (cases connected
    before talk_ended_at was kept).
missed_offers
    Cases offered to the agent (asked for or not) that their phone did not take: rang out,
    busy, failed, or answered with no key pressed at the screen (a voicemail); or, offered at
    their desk while they were available, not accepted in time (`reason` "not accepted").
    Counted when it happened (`audit_log` action `missed_offer`, `at` in the period), once
    per offer; a caller hanging up while it rang is nobody's miss. An agent with misses and no case
    handled is listed too. Each miss also set the agent away (presence).
transfers
    Cases the agent sent on to another queue, priority or language (a caller they talked
    to, or a call back). Counted when they asked for it (`audit_log` action `transfer`, `at`
    in the period), once per transfer, made or not (a supervisor may close a case on its
    way). An agent with transfers and no case handled is listed too.
available_seconds
    How long the agent was available in the period (up to now for a period not over): from
    `presence_changes`, a row each time their presence was written (said available or away,
    signed out, set away by a miss or a supervisor, revoked, available again from a case's
    end): from each row that left them available to the next, or to when it lapsed
    (AVAILABLE_AT_MOST, 8 h, after its `available_since`, as the hotline stops offering them
    cases then). Time on a case counts: an agent on a case stays available. None when
    nothing of their presence is known (changes before this was kept); an agent available
    in the period with no case handled is listed too. The JSON adds, over all agents,
    `agent_seconds_available`, and `agents_available_average` (that / the part of the
    period that has passed: the staff beside the calls offered; also per bar in the figures
    page's table).
occupancy
    The handle times of the agent's handled cases (above) / available_seconds, as call centre
    software reports it (the part of the available time spent on callers). A case taken near
    the period's end counts whole, so it can pass 1 now and then. None when available_seconds
    is None or 0.

containment (self-service containment)
    contained_calls / completed_calls, None when no call completed, where
    completed_calls = calls started in the period with status `completed` (Twilio's status
    for a call that was answered and has ended normally), and a contained call is a completed
    call that
      - has no case (no `cases` row with its call_sid): it never reached an agent queue;
      - never entered a `queue` or `transfer` node (no `entered` event in `call_events`
        whose detail.node_kind is one of them): nobody else took it either;
      - entered at least one `say` node (an `entered` event with detail.node_kind `say`:
        self-help advice) and has a topic (`calls.state` facts.topic): the caller heard
        advice on their subject and then ended the call without asking for a person.
calls
    Calls started in the period, whatever their status.
top_topics
    The `top` (default 5) most frequent facts.topic of the calls started in the period (the
    topic of the last topical node each caller reached), with the number of calls; most
    frequent first, ties by topic name. Calls without a topic are not counted.
"""

from __future__ import annotations

import bisect
import functools
import math
import statistics
import zoneinfo
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, TypeVar

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    Connection,
    any_,
    bindparam,
    cast,
    extract,
    func,
    select,
    type_coerce,
)
from sqlalchemy import case as sql_case

from ivr.cases import (
    AVAILABLE_AT_MOST,
    ENTERED_PRIORITY,
    MISSED_OFFER,
    RESOLVE,
    SENT_AFTER_HANG_UP,
    SUPERSEDED_BY,
    TRANSFER,
)
from ivr.db import (
    ENTERED_WHERE,
    SURVEY_EVENTS_WHERE,
    audit_log,
    call_events,
    calls,
    cases,
    figures_events,
    in_utc,
    presence_changes,
    users,
)
from ivr.engine import HUNG_UP_AT

K = TypeVar("K")
SELF_HELP_KINDS = ("say",)
AGENT_KINDS = ("queue", "transfer")  # nodes that hand a caller to a person
COMPLETED = "completed"
SATISFIED = 4  # of 5
PRIORITIES = ("emergency", "high", "normal")  # by_priority's, always listed, in this order
PRIORITY_WAS = "priority_was"  # `cases.set_priority`'s: the priority before the move
# The audit actions of an account frozen (`ivr.hotline`): by its verified caller, by an agent.
SELF_FREEZE, AGENT_FREEZE = "self_freeze", "freeze"


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def time_zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone `name` (Asia/Shanghai, UTC) a report is shown in; ValueError for
    anything else (only the names the system's tz database lists are looked up)."""
    if name not in _zone_names():
        raise ValueError(f"tz: not an IANA time zone name: {name[:64]!r} (e.g. Asia/Shanghai)")
    return zoneinfo.ZoneInfo(name)


@dataclass(frozen=True)
class Thresholds:
    """Service-level targets: an answer within this long counts as on time."""

    emergency: timedelta = timedelta(seconds=20)
    other: timedelta = timedelta(seconds=60)
    # A caller who hangs up within this long of joining the line: a short abandon.
    short_abandon: timedelta = timedelta(seconds=5)

    def for_priority(self, priority: str) -> timedelta:
        return self.emergency if priority == "emergency" else self.other


@dataclass(frozen=True, kw_only=True)
class SurveyFigures:
    """The after-agent survey's figures (see the module), of a queue or of an agent."""

    surveys_asked: int
    surveys_answered: int
    satisfaction_average: float | None
    satisfied_rate: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class QueueFigures(SurveyFigures):
    offered: int
    answered: int
    answered_within_threshold: int
    abandoned: int
    abandonment_rate: float | None
    service_level: float | None
    average_speed_of_answer_seconds: float | None
    average_handle_time_seconds: float | None
    callbacks_requested: int
    callbacks_completed: int
    short_abandoned: int = 0
    abandonment_rate_without_short: float | None = None
    hung_up_on_the_way: int = 0
    abandoned_after_threshold: int = 0
    callbacks_after_threshold: int = 0
    waiting_after_threshold: int = 0
    service_level_counted: int = 0
    longest_wait_seconds: float | None = None
    callbacks_superseded: int = 0


@dataclass(frozen=True)
class AgentFigures(SurveyFigures):
    handled: int
    average_handle_time_seconds: float | None
    average_after_call_work_seconds: float | None = None
    missed_offers: int = 0
    transfers: int = 0
    available_seconds: float | None = None
    occupancy: float | None = None


@dataclass(frozen=True, kw_only=True)
class EmergencyFigures:
    """How the period's emergencies were answered and frozen (see the module)."""

    cases: int = 0
    offered: int = 0
    hung_up_on_the_way: int = 0
    answered: int = 0
    median_seconds_to_answer: float | None = None
    p90_seconds_to_answer: float | None = None
    frozen: int = 0
    frozen_by_caller: int = 0
    frozen_by_agent: int = 0
    median_seconds_to_agent_freeze: float | None = None
    p90_seconds_to_agent_freeze: float | None = None
    closed_without_freeze: int = 0
    closed_without_freeze_tickets: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Report:
    period_start: datetime
    period_end: datetime
    thresholds: Thresholds
    overall: QueueFigures
    by_queue: dict[str, QueueFigures]
    calls: int
    completed_calls: int
    contained_calls: int
    containment: float | None
    top_topics: list[tuple[str, int]]
    by_agent: dict[str, AgentFigures] = field(default_factory=dict)
    emergency: EmergencyFigures = field(default_factory=EmergencyFigures)
    by_priority: dict[str, QueueFigures] = field(default_factory=dict)
    agent_seconds_available: float | None = None
    # How much of the period had passed when the figures were made: all of it, but for a
    # period that ends later (the current hour's bar).
    seconds_passed: float | None = None

    @property
    def agents_available_average(self) -> float | None:
        """How many agents were available, on average over the part of the period that has
        passed (staffing beside the calls offered); None before any agent's presence was
        kept, or for a period not begun."""
        if self.agent_seconds_available is None:
            return None
        passed = self.seconds_passed
        if passed is None:
            passed = (self.period_end - self.period_start).total_seconds()
        return round(self.agent_seconds_available / passed, 2) if passed > 0 else None

    def as_dict(self, zone: tzinfo = UTC) -> dict[str, Any]:
        """Plain JSON types: ISO 8601 datetimes (the period's, in `zone`), seconds for
        durations."""
        return {
            "time_zone": str(zone),
            "period_start": self.period_start.astimezone(zone).isoformat(),
            "period_end": self.period_end.astimezone(zone).isoformat(),
            "thresholds_seconds": {
                "emergency": self.thresholds.emergency.total_seconds(),
                "other": self.thresholds.other.total_seconds(),
                "short_abandon": self.thresholds.short_abandon.total_seconds(),
            },
            "overall": self.overall.as_dict(),
            "by_queue": {name: q.as_dict() for name, q in self.by_queue.items()},
            "by_priority": {name: q.as_dict() for name, q in self.by_priority.items()},
            "calls": self.calls,
            "completed_calls": self.completed_calls,
            "contained_calls": self.contained_calls,
            "containment": self.containment,
            "top_topics": [{"topic": topic, "calls": n} for topic, n in self.top_topics],
            "by_agent": {name: a.as_dict() for name, a in self.by_agent.items()},
            "emergency": self.emergency.as_dict(),
            "agent_seconds_available": self.agent_seconds_available,
            "agents_available_average": self.agents_available_average,
        }


@dataclass
class _Tally:
    offered: int = 0
    answered: int = 0
    within: int = 0
    abandoned: int = 0
    late_abandons: int = 0
    late_callbacks: int = 0  # asked for after the threshold
    late_waiting: int = 0  # still in line, past the threshold when the report runs
    short_abandons: int = 0
    hung_up_on_the_way: int = 0
    handled: int = 0  # an agent's
    callbacks_requested: int = 0
    callbacks_completed: int = 0
    callbacks_superseded: int = 0
    answer_waits: list[float] = field(default_factory=list)
    answers_from_call: list[float] = field(default_factory=list)  # the emergency figures'
    handle_times: list[float] = field(default_factory=list)
    after_call_work: list[float] = field(default_factory=list)
    surveys_asked: int = 0
    scores: list[int] = field(default_factory=list)
    missed_offers: int = 0
    transfers: int = 0
    longest_wait: float | None = None

    def waited(self, seconds: float) -> None:
        """One more wait in line, however it ended: the longest so far stays."""
        self.longest_wait = (
            seconds if self.longest_wait is None else max(self.longest_wait, seconds)
        )

    def surveys(self) -> dict[str, Any]:
        return {
            "surveys_asked": self.surveys_asked,
            "surveys_answered": len(self.scores),
            "satisfaction_average": _mean([float(n) for n in self.scores]),
            "satisfied_rate": _ratio(sum(n >= SATISFIED for n in self.scores), len(self.scores)),
        }

    def agent_figures(self, available: float | None = None) -> AgentFigures:
        busy = sum(self.handle_times)
        return AgentFigures(
            handled=self.handled,
            average_handle_time_seconds=_mean(self.handle_times),
            average_after_call_work_seconds=_mean(self.after_call_work),
            missed_offers=self.missed_offers,
            transfers=self.transfers,
            available_seconds=available,
            occupancy=round(busy / available, 4) if available else None,
            **self.surveys(),
        )

    def _past_the_target(self) -> int:
        """The service level's denominator: the callers who had a service-level event, as
        Cisco ICM counts it ("Service Data", ICM 4.5 manual: answered, or the threshold
        reached unanswered), less those who hung up before the threshold (its "abandoned
        calls ignored" calculation; ICMI's formula #4, callcentrehelper.com, "Service
        Level Threshold Calculations"). A call-back request is one more way to leave the
        line unanswered (Genesys Cloud's "flow-out"; Vonage's "breakout"): after the
        threshold, a miss like a late abandon; before, left out like an early one. Callers
        still waiting past it have missed it already: counted now, not when they leave."""
        return self.answered + self.late_abandons + self.late_callbacks + self.late_waiting

    def figures(self) -> QueueFigures:
        return QueueFigures(
            offered=self.offered,
            answered=self.answered,
            answered_within_threshold=self.within,
            abandoned=self.abandoned,
            # Of the callers whose wait in line ended, answered or hung up: "calls offered"
            # as ICMI counts them (answered + abandoned; callcentrehelper.com, "Service Level
            # Threshold Calculations"). A call back asked for is no abandon (Amazon Connect,
            # "Abandonment rate": contacts queued for callback are not counted as abandoned),
            # nor an answer: out of both parts, so the more callers take the offer the less
            # the rate says about those who did not. Callers still waiting have no outcome.
            abandonment_rate=_ratio(self.abandoned, self.answered + self.abandoned),
            short_abandoned=self.short_abandons,
            abandonment_rate_without_short=_ratio(
                self.abandoned - self.short_abandons,
                self.answered + self.abandoned - self.short_abandons,
            ),
            hung_up_on_the_way=self.hung_up_on_the_way,
            service_level=_ratio(self.within, self._past_the_target()),
            abandoned_after_threshold=self.late_abandons,
            callbacks_after_threshold=self.late_callbacks,
            waiting_after_threshold=self.late_waiting,
            service_level_counted=self._past_the_target(),
            longest_wait_seconds=self.longest_wait,
            average_speed_of_answer_seconds=_mean(self.answer_waits),
            average_handle_time_seconds=_mean(self.handle_times),
            callbacks_requested=self.callbacks_requested,
            callbacks_completed=self.callbacks_completed,
            callbacks_superseded=self.callbacks_superseded,
            **self.surveys(),
        )


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _seconds(later: int, earlier: int) -> float:
    """Seconds from `earlier` to `later`, both in microseconds since 1970 (`_micros`): the
    very float `timedelta.total_seconds()` gives of the datetimes they are."""
    return (later - earlier) / 1_000_000


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _p90(values: list[float]) -> float | None:
    """The nearest rank: the smallest value at least 90 % of them are at or under."""
    return sorted(values)[math.ceil(0.9 * len(values)) - 1] if values else None


@dataclass(frozen=True)
class _Limits:
    """A report's thresholds in seconds, as its waits are counted."""

    emergency: float
    other: float
    short_abandon: float

    @classmethod
    def of(cls, thresholds: Thresholds) -> _Limits:
        return cls(
            thresholds.emergency.total_seconds(),
            thresholds.other.total_seconds(),
            thresholds.short_abandon.total_seconds(),
        )

    def for_priority(self, priority: str) -> float:
        return self.emergency if priority == "emergency" else self.other


@dataclass(frozen=True)
class _Leg:
    """A talk an agent ended by sending the caller on (`cases.legs`); its times in
    microseconds since 1970 (`_micros`)."""

    queue: str
    priority: str
    waiting: bool  # a caller in line (not a call back) when the agent took it
    agent: str
    entered_at: int
    taken_at: int  # the caller reached the agent: whose period the talk is in
    answered_at: int
    ended_at: int

    @classmethod
    def parse(cls, leg: Any) -> _Leg | None:
        """None for a talk nobody knows the customer was reached on (a call back dialled by
        hand, sent on), and for what is not a leg this module wrote (a hand-edited row)."""

        def at(value: Any) -> int:
            when = datetime.fromisoformat(value)
            return _micros(when if when.tzinfo is not None else when.replace(tzinfo=UTC))

        try:
            return cls(
                queue=str(leg["queue"]),
                priority=str(leg["priority"]),
                waiting=leg.get("from", "waiting") == "waiting",
                agent=str(leg.get("agent") or ""),
                entered_at=at(leg["entered_at"]),
                taken_at=at(leg.get("connected_at") or leg["answered_at"]),
                answered_at=at(leg.get("answered_at") or leg["connected_at"]),
                ended_at=at(leg["ended_at"]),
            )
        except (AttributeError, KeyError, TypeError, ValueError):
            return None


def _legs(legs: Any) -> list[_Leg]:
    return [leg for leg in map(_Leg.parse, legs) if leg] if isinstance(legs, list) else []


# The flags the figures read (`_Case`), each read alone: a case's flags whole (its caller's
# verification, risk signals...) cost more to parse than all the rest of its row.
_FLAGS_READ = (HUNG_UP_AT, SENT_AFTER_HANG_UP, SUPERSEDED_BY, ENTERED_PRIORITY, PRIORITY_WAS)


@dataclass(slots=True)
class _Case:
    """A case as the figures count it, made once from its row (`_read`): its times (and its
    call's) in microseconds since 1970 (`_micros`; None: not set), what its flags say, its
    legs parsed."""

    id: int
    ticket: str
    call_sid: str
    agent_id: int | None
    agent_name: str | None
    queue: str
    priority: str
    status: str
    claimed_from: str | None
    callback_number: str | None
    created_at: int
    queued_at: int | None
    connected_at: int | None
    ended_at: int | None
    talk_ended_at: int | None
    answered_at: int | None
    call_started_at: int | None
    call_ended_at: int | None
    on_the_way: bool  # hung up on their way to an emergency queue (flag HUNG_UP_AT)
    sent_after_hang_up: bool  # a call back an agent sent on after its caller hung up
    superseded: bool  # flag SUPERSEDED_BY: the caller settled it by calling again
    entered_as: str  # the priority it entered its line with (`_entered_as`)
    legs: list[_Leg]
    # Resolved by someone else than its agent (a supervisor): their handle time ends with
    # their talk, no wrap-up.
    closed_for_them: bool

    @classmethod
    def of(cls, row: Any, closer: str | None) -> _Case:
        """From a row of `_read`'s cases query (the fields above from `id` to
        `call_ended_at`, in their order, then the legs and the flags of _FLAGS_READ), and who
        closed the case last (None: nobody)."""
        (
            id_,
            ticket,
            call_sid,
            agent_id,
            agent_name,
            queue,
            priority,
            status,
            claimed_from,
            callback_number,
            created_at,
            queued_at,
            connected_at,
            ended_at,
            talk_ended_at,
            answered_at,
            call_started_at,
            call_ended_at,
            legs,
            hung_up_at,
            sent_after_hang_up,
            superseded_by,
            entered,
            was,
        ) = row
        return cls(
            id_,
            ticket,
            call_sid,
            agent_id,
            agent_name,
            queue,
            priority,
            status,
            claimed_from,
            callback_number,
            created_at,
            queued_at,
            connected_at,
            ended_at,
            talk_ended_at,
            answered_at,
            call_started_at,
            call_ended_at,
            on_the_way=bool(hung_up_at),
            sent_after_hang_up=sent_after_hang_up == "yes",
            superseded=bool(superseded_by),
            entered_as=_entered_as(entered, was, priority),
            legs=_legs(legs),
            # By name: an agent made supervisor since still closed their own case.
            closed_for_them=closer is not None and closer.partition(":")[2] != agent_name,
        )


def _entered_as(entered: Any, was: Any, priority: str) -> str:
    """The priority the case entered its line with: before a supervisor moved it, if one did
    (`cases.set_priority`'s flags: ENTERED_PRIORITY, PRIORITY_WAS for a case moved before it
    was kept)."""
    first = entered or was
    return first if isinstance(first, str) and first else str(priority)


@dataclass(slots=True)
class _Outcome:
    """What one case's last line came to as of when the report runs, whatever threshold it
    is judged by (`_judge`); `_count_case` adds it to tallies by one."""

    case: _Case
    callback: bool  # a call back requested
    abandoned: bool
    waited: float | None  # in line, however it ended; None: not known, or no wait
    wait: float | None  # to the answer: an answered case's
    from_call: float | None  # from the call's start to the answer, when both are known
    handle: float | None
    wrap_up: float | None
    short_abandon: bool
    asked: bool  # the survey
    score: int | None  # the survey's answer, 1 to 5


def _judge(case: _Case, survey: str | None, now: int, limits: _Limits) -> _Outcome:
    """The last line of one case (`_Case`), with its survey answer (None: not asked), as of
    `now` (microseconds since 1970)."""
    # When the agent answered: their phone picked up, or, not known, the caller reached the
    # <Dial> (connected_at).
    answered_at = case.answered_at if case.answered_at is not None else case.connected_at
    ended = case.talk_ended_at if case.closed_for_them else case.ended_at
    handle = (
        max(_seconds(ended, answered_at), 0.0)
        if case.status == "resolved" and answered_at is not None and ended is not None
        else None
    )
    wrap_up = (
        _seconds(case.ended_at, case.talk_ended_at)
        if handle is not None
        and case.ended_at is not None
        and case.talk_ended_at is not None
        and not case.closed_for_them
        else None
    )
    callback = (
        case.status == "callback_requested"
        or case.claimed_from == "callback_requested"
        or case.callback_number is not None
        or case.sent_after_hang_up
    )
    abandoned = not callback and (case.status == "abandoned" or case.claimed_from == "abandoned")
    # When the case joined the line it is counted in: created, or sent there by an agent.
    in_line = case.queued_at if case.queued_at is not None else case.created_at
    answered = not callback and not abandoned and answered_at is not None
    short_abandon = False
    waited: float | None = None
    if callback and not case.sent_after_hang_up:
        # The confirmation ends with Twilio hanging up: the call's end is when they asked,
        # give or take those seconds; not ended yet, they are hearing it now.
        asked = case.call_ended_at if case.call_ended_at is not None else now
        # Sent on since (a call back): they asked in the line they left.
        since = in_line if in_line < asked else case.created_at
        waited = _seconds(asked, since)
    elif not abandoned and answered_at is None and case.status in ("waiting", "offered"):
        waited = _seconds(now, in_line)
    if abandoned:
        hung_up = case.ended_at if case.status == "abandoned" else case.call_ended_at
        # Sent on after the hang-up (a call back): the wait was in the line they left.
        since = in_line if hung_up is None or in_line < hung_up else case.created_at
        waited = _seconds(hung_up, since) if hung_up is not None else None
        short_abandon = waited is not None and waited <= limits.short_abandon
    wait = (
        max(_seconds(answered_at, in_line), 0.0) if answered and answered_at is not None else None
    )
    from_call = None
    if wait is not None:
        waited = wait
        if answered_at is not None and case.call_started_at is not None:
            from_call = max(_seconds(answered_at, case.call_started_at), 0.0)
    return _Outcome(
        case=case,
        callback=callback,
        abandoned=abandoned,
        waited=waited,
        wait=wait,
        from_call=from_call,
        handle=handle,
        wrap_up=wrap_up,
        short_abandon=short_abandon,
        asked=survey is not None,
        score=int(survey) if survey is not None and survey.isdigit() else None,
    )


def _count_case(tallies: Iterable[_Tally], outcome: _Outcome, threshold: float) -> None:
    """Add one case's last line (`_judge`) to each tally, judged by `threshold` (seconds: its
    priority's target, or that of the priority it entered the line with)."""
    case, waited, wait = outcome.case, outcome.waited, outcome.wait
    if outcome.callback:
        # A call back an agent sent on after its caller hung up was no request: never late.
        late = not case.sent_after_hang_up and waited is not None and waited > threshold
    elif outcome.abandoned:
        late = waited is None or waited > threshold  # a wait not known: past any threshold
    else:  # still in line (an answer is judged by `wait`)
        late = waited is not None and waited > threshold
    for t in tallies:
        t.offered += 1
        if waited is not None:
            t.waited(max(waited, 0.0))
        if outcome.asked:
            t.surveys_asked += 1
            if outcome.score is not None:
                t.scores.append(outcome.score)
        if outcome.handle is not None:
            t.handle_times.append(outcome.handle)
        if outcome.wrap_up is not None:
            t.after_call_work.append(max(outcome.wrap_up, 0.0))
        if outcome.callback:
            t.callbacks_requested += 1
            t.callbacks_completed += case.connected_at is not None
            t.callbacks_superseded += case.connected_at is None and case.superseded
            t.late_callbacks += late
        elif outcome.abandoned:
            t.abandoned += 1
            t.late_abandons += late
            t.short_abandons += outcome.short_abandon
        elif wait is not None:
            t.answered += 1
            t.within += wait <= threshold
            t.answer_waits.append(wait)
            if outcome.from_call is not None:
                t.answers_from_call.append(outcome.from_call)
        else:
            t.late_waiting += late


@dataclass
class _Emergency:
    """The emergency figures being counted: the queue tally of the cases in line, and what
    the freezes came to for all of them."""

    tally: _Tally = field(default_factory=_Tally)
    hung_up_on_the_way: int = 0
    by_caller: int = 0
    by_agent: int = 0
    to_agent_freeze: list[float] = field(default_factory=list)
    not_frozen: list[str] = field(default_factory=list)  # the tickets of those closed so

    def add(self, case: _Case, first_freeze: dict[tuple[int, str], int]) -> None:
        """One emergency case's freezes (its answer is counted by `_count_case`)."""
        self.hung_up_on_the_way += case.on_the_way
        agent_froze = first_freeze.get((case.id, AGENT_FREEZE))
        if (case.id, SELF_FREEZE) in first_freeze:
            self.by_caller += 1
        elif agent_froze is not None:
            self.by_agent += 1
            # A call erased since (retention): frozen, but from when is not known.
            if case.call_started_at is not None:
                self.to_agent_freeze.append(max(_seconds(agent_froze, case.call_started_at), 0.0))
        elif case.status == "resolved":
            self.not_frozen.append(case.ticket)

    def figures(self) -> EmergencyFigures:
        answers = self.tally.answers_from_call
        return EmergencyFigures(
            cases=self.tally.offered + self.hung_up_on_the_way,
            offered=self.tally.offered,
            hung_up_on_the_way=self.hung_up_on_the_way,
            answered=self.tally.answered,
            median_seconds_to_answer=_median(answers),
            p90_seconds_to_answer=_p90(answers),
            frozen=self.by_caller + self.by_agent,
            frozen_by_caller=self.by_caller,
            frozen_by_agent=self.by_agent,
            median_seconds_to_agent_freeze=_median(self.to_agent_freeze),
            p90_seconds_to_agent_freeze=_p90(self.to_agent_freeze),
            closed_without_freeze=len(self.not_frozen),
            closed_without_freeze_tickets=sorted(self.not_frozen),
        )


def _count_leg(tallies: Iterable[_Tally], leg: _Leg, limits: _Limits) -> None:
    """Add one line a case went through before it was sent on: answered there (a caller
    waiting) or a call back made (counted where the case is now), handled until sent on."""
    threshold = limits.for_priority(leg.priority)
    wait = max(_seconds(leg.answered_at, leg.entered_at), 0.0)
    handle = max(_seconds(leg.ended_at, leg.answered_at), 0.0)
    for t in tallies:
        t.handle_times.append(handle)
        if leg.waiting:
            t.offered += 1
            t.answered += 1
            t.within += wait <= threshold
            t.answer_waits.append(wait)
            t.waited(wait)


def _tally(tallies: dict[str, _Tally], key: str) -> _Tally:
    return tallies.setdefault(key, _Tally())


def _lookback(start: datetime) -> datetime:
    """The earliest presence change that can have left anybody available at `start`: one
    older had lapsed by then."""
    try:
        return start - AVAILABLE_AT_MOST
    except OverflowError:  # a period from the first days of year 1 (a crafted query)
        return datetime.min.replace(tzinfo=UTC)


def _presence(conn: Connection, *, start: datetime, end: datetime) -> list[Any]:
    """The presence changes that tell who was available in [start, end): (user_id, name, at,
    available_since), each agent's in the order they were written (under the agent's row
    lock: two changes of one agent at the same moment may carry their `at`s the other way
    round)."""
    return list(
        conn.execute(
            select(
                presence_changes.c.user_id,
                users.c.name,
                presence_changes.c.at,
                presence_changes.c.available_since,
            )
            .join(users, users.c.id == presence_changes.c.user_id)
            .where(presence_changes.c.at >= _lookback(start), presence_changes.c.at < end)
            .order_by(presence_changes.c.user_id, presence_changes.c.id)
        )
    )


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
_LAPSE = AVAILABLE_AT_MOST // MICROSECOND


def _micros(moment: datetime) -> int:
    return (moment - EPOCH) // MICROSECOND


def _available(changes: Sequence[Any], start: datetime, end: datetime) -> dict[str, float]:
    """`time_available` from the changes `_presence` reads for [start, end), as its query
    counts them: in whole microseconds, added up exactly."""
    micros: dict[str, int] = {}
    begin, stop = _micros(start), _micros(end)
    for i, (user_id, name, at, since) in enumerate(changes):
        if since is None:
            continue
        later = changes[i + 1] if i + 1 < len(changes) else None
        until = _micros(later[2]) if later is not None and later[0] == user_id else stop
        gap = min(until, _micros(since) + _LAPSE, stop) - max(_micros(at), begin)
        if gap > 0:
            micros[name] = micros.get(name, 0) + gap
    return {name: total / 1_000_000 for name, total in micros.items()}


def _epoch_micros(column: ColumnElement[Any], dialect: str) -> ColumnElement[int]:
    """A UTCDateTime column's microseconds since 1970, exactly: PostgreSQL's epoch, or
    SQLite's text (SQLAlchemy's '2026-11-23 10:00:00.000000', in UTC) read in two parts: its
    whole seconds alone, as SQLite's strftime rounds a time to the millisecond first (10:59:
    59.9996 would be 11:00:00)."""
    if dialect == "postgresql":
        return cast(extract("epoch", column) * 1_000_000, BigInteger)
    return cast(func.strftime("%s", func.substr(column, 1, 19)), BigInteger) * 1_000_000 + cast(
        func.substr(column, 21, 6), BigInteger
    )


def _json_string(
    column: ColumnElement[Any], path: tuple[str, ...], dialect: str
) -> ColumnElement[str | None]:
    """The string at `path` in a JSON `column`, as text (nothing to parse); NULL where there
    is none, or what is there is no string (a number, an object)."""
    value = column[path]
    if dialect == "postgresql":
        is_string = func.json_typeof(value) == "string"
    else:
        where = "$" + "".join(f'."{key}"' for key in path)
        is_string = func.json_type(column, where) == "text"
    return sql_case((is_string, value.as_string()), else_=None)


def _json_array(column: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """A JSON `column` where it holds an array, else NULL: nothing to parse of the JSON
    nulls (a case never sent on) and hand-made values `_legs` would leave out anyway."""
    json_type = func.json_typeof if dialect == "postgresql" else func.json_type
    return type_coerce(
        sql_case((json_type(column) == "array", column), else_=None), column.type
    ).label(column.name)


def time_available(conn: Connection, *, start: datetime, end: datetime) -> dict[str, float]:
    """Seconds each agent (by name) was available in [start, end), from their presence's
    history: from each change that left them available to the next change, or to when their
    availability lapsed (AVAILABLE_AT_MOST after the `available_since` it left, as the
    hotline stops offering them cases then). Agents with no change kept in or shortly before
    the period are not listed: nothing is known of them.

    Added up by the database (`_available` says the same in Python): a month of changes,
    about one per case an agent closed, is 120 k rows, each read into Python before."""
    if end <= start:
        return {}
    dialect = conn.dialect.name
    least, greatest = (
        (func.least, func.greatest) if dialect == "postgresql" else (func.min, func.max)
    )
    at = _epoch_micros(presence_changes.c.at, dialect)
    changes = (
        select(
            presence_changes.c.user_id,
            at.label("at"),
            _epoch_micros(presence_changes.c.available_since, dialect).label("since"),
            # The agent's next change, in the order they were written (under their row lock:
            # two at the same moment may carry their `at`s the other way round).
            func.lead(at)
            .over(partition_by=presence_changes.c.user_id, order_by=presence_changes.c.id)
            .label("later"),
        )
        .where(presence_changes.c.at >= _lookback(start), presence_changes.c.at < end)
        .cte("changes")
    )
    begin, stop = _micros(start), _micros(end)
    until = least(func.coalesce(changes.c.later, stop), changes.c.since + _LAPSE, stop)
    since = greatest(changes.c.at, begin)
    return {
        name: int(total) / 1_000_000
        for name, total in conn.execute(
            select(users.c.name, func.sum(until - since))
            .join(users, users.c.id == changes.c.user_id)
            .where(changes.c.since.is_not(None), until > since)
            .group_by(users.c.name)
        )
    }


@dataclass(frozen=True)
class _Read:
    """The rows a period's figures are counted from, read once (`_read`): the figures of the
    period, and those of each interval of it (`intervals`), are counted from them alone."""

    cases: list[_Case]  # opened, taken or sent on in the period, with their call and agent
    # Started in the period: (call_sid, status, topic, started_at), its topic its state's
    # facts.topic if a string not empty (else None), its start in microseconds since 1970.
    calls: Sequence[Any]
    contained: set[str]  # of those calls, the ones self-service contained (see the module)
    # Per call of those cases, its survey events (id, kind, case asked about, answer).
    asked: dict[str, list[tuple[int, str, int | None, str | None]]]
    agents_did: Sequence[Any]  # (actor, action, at in microseconds): missed offers, transfers
    first_freeze: dict[tuple[int, str], int]  # (case, action): in microseconds since 1970


# Rows of the period's cases and calls are looked up by their keys, so many at a time: few
# enough for PostgreSQL to find each in an index, and for SQLite's limit on parameters.
# Asked for all at once (`IN (SELECT ... the period's cases)`), PostgreSQL reckons a month
# of them many enough to read all of call_events instead: millions of rows, past the
# statement timeout. On PostgreSQL the keys go as one array: a thousand parameters cost
# more to send than to look up.
LOOKUP_BATCH = {"postgresql": 5000, "sqlite": 500}


def _batches(keys: Iterable[K], dialect: str) -> Iterator[list[K]]:
    """`keys`, each once, as many at a time as `dialect` looks up at once."""
    unique = list(dict.fromkeys(keys))
    size = LOOKUP_BATCH.get(dialect, min(LOOKUP_BATCH.values()))
    for at in range(0, len(unique), size):
        yield unique[at : at + size]


def _among(column: ColumnElement[Any], keys: list[Any], dialect: str) -> ColumnElement[bool]:
    """`column` is one of `keys` (a batch of `_batches`)."""
    if dialect == "postgresql":
        return column == any_(bindparam(None, keys, type_=ARRAY(column.type)))
    return column.in_(keys)


def _read(conn: Connection, *, start: datetime, end: datetime) -> _Read:
    """What the figures of [start, end) and of any interval of it are counted from. Only
    what they count is read: times as microseconds since 1970 (no datetimes to make of a
    million values), the few flags they read, a call's topic rather than its state."""
    dialect = conn.dialect.name

    def micros(column: ColumnElement[Any], label: str) -> ColumnElement[int]:
        return _epoch_micros(column, dialect).label(label)

    opened = (cases.c.created_at >= start) & (cases.c.created_at < end)
    taken = (
        cases.c.agent_id.is_not(None)
        & (cases.c.connected_at >= start)
        & (cases.c.connected_at < end)
    )
    # A transfer dates the line the case joined (queued_at): a talk it ended in the period
    # leaves queued_at in or after the period. Which talks are in it: `_Leg.taken_at`.
    sent_on = (cases.c.queued_at >= start) & (cases.c.created_at < end)
    case_rows = conn.execute(
        select(  # in the order of `_Case.of`
            cases.c.id,
            cases.c.ticket,
            cases.c.call_sid,
            cases.c.agent_id,
            users.c.name.label("agent_name"),
            cases.c.queue,
            cases.c.priority,
            cases.c.status,
            cases.c.claimed_from,
            cases.c.callback_number,
            micros(cases.c.created_at, "created_at"),
            micros(cases.c.queued_at, "queued_at"),
            micros(cases.c.connected_at, "connected_at"),
            micros(cases.c.ended_at, "ended_at"),
            micros(cases.c.talk_ended_at, "talk_ended_at"),
            micros(cases.c.answered_at, "answered_at"),
            micros(calls.c.started_at, "call_started_at"),
            micros(calls.c.ended_at, "call_ended_at"),
            _json_array(cases.c.legs, dialect),
            *(cases.c.flags[key].label(f"flag_{key}") for key in _FLAGS_READ),
        )
        .select_from(
            cases.outerjoin(calls, calls.c.call_sid == cases.c.call_sid).outerjoin(
                users, users.c.id == cases.c.agent_id
            )
        )
        .where(opened | taken | sent_on)
    ).all()
    call_rows = conn.execute(
        select(
            calls.c.call_sid,
            calls.c.status,
            func.nullif(_json_string(calls.c.state, ("facts", "topic"), dialect), "").label(
                "topic"
            ),
            micros(calls.c.started_at, "started_at"),
        ).where(calls.c.started_at >= start, calls.c.started_at < end)
    ).all()
    # The rows of those cases and calls, looked up by their keys (`_batches`).
    # Who closed each case last: its agent, or someone for them (a supervisor).
    closed_by: dict[int, str] = {}
    for batch in _batches((case.id for case in case_rows), dialect):
        for case_id, actor in conn.execute(
            select(audit_log.c.case_id, audit_log.c.actor)
            .where(audit_log.c.action == RESOLVE, _among(audit_log.c.case_id, batch, dialect))
            .order_by(audit_log.c.id)
        ).all():
            closed_by[case_id] = actor
    case_list = [_Case.of(row, closed_by.get(row.id)) for row in case_rows]
    surveyed = call_events.c.detail["case"].as_integer()
    asked: dict[str, list[tuple[int, str, int | None, str | None]]] = {}
    for batch in _batches((case.call_sid for case in case_list), dialect):
        for event_id, sid, kind, case_id, outcome in conn.execute(
            select(
                call_events.c.id,
                call_events.c.call_sid,
                call_events.c.kind,
                surveyed,
                call_events.c.outcome,
            ).where(
                figures_events(dialect, SURVEY_EVENTS_WHERE),
                _among(call_events.c.call_sid, batch, dialect),
            )
        ).all():
            asked.setdefault(sid, []).append((event_id, kind, case_id, outcome))
    agents_did = conn.execute(
        select(audit_log.c.actor, audit_log.c.action, micros(audit_log.c.at, "at")).where(
            audit_log.c.action.in_((MISSED_OFFER, TRANSFER)),
            audit_log.c.actor.like("agent:%"),
            audit_log.c.at >= start,
            audit_log.c.at < end,
        )
    ).all()
    # Each emergency case's first freeze that was made, by its caller and by an agent.
    start_us, end_us = _micros(start), _micros(end)
    emergencies = [
        case.id
        for case in case_list
        if start_us <= case.created_at < end_us and case.priority == "emergency"
    ]
    first_freeze: dict[tuple[int, str], int] = {}
    for batch in _batches(emergencies, dialect):
        for case_id, action, when in conn.execute(
            select(audit_log.c.case_id, audit_log.c.action, func.min(audit_log.c.at))
            .where(
                audit_log.c.action.in_((SELF_FREEZE, AGENT_FREEZE)),
                audit_log.c.result == "ok",
                _among(audit_log.c.case_id, batch, dialect),
            )
            .group_by(audit_log.c.case_id, audit_log.c.action)
        ).all():
            first_freeze[case_id, action] = _micros(when)
    return _Read(
        cases=case_list,
        calls=call_rows,
        contained=_contained(conn, call_rows, {case.call_sid for case in case_list}),
        asked=asked,
        agents_did=agents_did,
        first_freeze=first_freeze,
    )


def _contained(conn: Connection, call_rows: Sequence[Any], with_case: set[str]) -> set[str]:
    """Of these calls, the ones self-service contained (see the module); `with_case`: some of
    the calls a case was opened on. Only the calls that may be are looked up: completed,
    with a topic and no case known, and of those, the ones that entered no agent's node and
    a self-help one."""
    dialect = conn.dialect.name
    maybe = [
        call.call_sid
        for call in call_rows
        if call.status == COMPLETED and call.topic is not None and call.call_sid not in with_case
    ]
    kinds_entered: dict[str, set[str]] = {}
    for batch in _batches(maybe, dialect):
        for sid, kind in conn.execute(
            select(call_events.c.call_sid, call_events.c.detail["node_kind"].as_string())
            .where(
                figures_events(dialect, ENTERED_WHERE),
                _among(call_events.c.call_sid, batch, dialect),
            )
            .distinct()
        ).all():
            kinds_entered.setdefault(sid, set()).add(kind)
    self_helped = [
        sid
        for sid, entered in kinds_entered.items()
        if entered.intersection(SELF_HELP_KINDS) and not entered.intersection(AGENT_KINDS)
    ]
    found: set[str] = set()
    for batch in _batches(self_helped, dialect):
        found.update(
            conn.execute(
                select(cases.c.call_sid).where(_among(cases.c.call_sid, batch, dialect)).distinct()
            ).scalars()
        )
    return set(self_helped) - found


def _surveys(read: _Read, case_rows: Iterable[Any]) -> dict[int, str | None]:
    """Per case asked, its latest answer ("" when none yet), from the survey events of these
    cases' calls in the order they were written."""
    events = sorted(
        (
            event
            for sid in {case.call_sid for case in case_rows}
            for event in read.asked.get(sid, ())
        ),
        key=lambda event: event[0],
    )
    surveys: dict[int, str | None] = {}
    for _, kind, case_id, outcome in events:
        if case_id is not None:
            surveys[case_id] = outcome if kind == "survey" else surveys.get(case_id, "")
    return surveys


def _checked(start: datetime, end: datetime, now: datetime | None, top: int = 0) -> datetime:
    """When a report over [start, end) judges its callers still waiting; ValueError for
    arguments it cannot be made of."""
    if start.tzinfo is None or end.tzinfo is None or (now is not None and now.tzinfo is None):
        raise ValueError("start, end and now must be aware datetimes")
    if end <= start:
        raise ValueError("end must be after start")
    if top < 0:
        raise ValueError("top must be 0 or more")
    return end if now is None else now


def figures(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    thresholds: Thresholds = Thresholds(),  # frozen: one shared default is safe
    top: int = 5,
    now: datetime | None = None,
) -> Report:
    """The figures for cases created and calls started in [start, end), and for the work
    agents took in it (see the module), as of `now` (by default the period's end)."""
    judged = _checked(start, end, now, top)
    with conn.begin():
        read = _read(conn, start=start, end=end)
        available = time_available(conn, start=start, end=min(end, judged))
    return _count(
        read,
        start=start,
        end=end,
        judged=judged,
        thresholds=thresholds,
        top=top,
        case_rows=read.cases,
        call_rows=read.calls,
        agents_did=read.agents_did,
        available=available,
    )


def _count(
    read: _Read,
    *,
    start: datetime,
    end: datetime,
    judged: datetime,
    thresholds: Thresholds,
    top: int,
    case_rows: list[_Case],
    call_rows: Sequence[Any],
    agents_did: Iterable[Any],
    available: dict[str, float],
) -> Report:
    """The report over [start, end) from the rows of it (`_Read`'s, of this period or of one
    it is part of: the cases opened, taken or sent on in it, the calls started in it, the
    agents' missed offers and transfers in it) and its agents' time available."""
    surveys = _surveys(read, case_rows)
    first_freeze = read.first_freeze
    limits = _Limits.of(thresholds)
    begin, stop, now = _micros(start), _micros(end), _micros(judged)
    overall = _Tally()
    by_queue: dict[str, _Tally] = {}
    by_agent: dict[str, _Tally] = {}
    by_priority: dict[str, _Tally] = {name: _Tally() for name in PRIORITIES}
    emergency = _Emergency()
    for case in case_rows:
        # Loaded for its agents' work in the period, opened before it: theirs only.
        offered_here = begin <= case.created_at < stop
        if offered_here and case.priority == "emergency":
            emergency.add(case, first_freeze)
        for leg in case.legs:
            if offered_here and not case.on_the_way:
                lines = (
                    by_queue.setdefault(leg.queue, _Tally()),
                    _tally(by_priority, leg.priority),
                )
                _count_leg((overall, *lines), leg, limits)
            if leg.agent and begin <= leg.taken_at < stop:
                theirs = by_agent.setdefault(leg.agent, _Tally())
                _count_leg((theirs,), leg, limits)
                theirs.handled += 1
        # Whether the case's agent took it in the period: the caller reached them then.
        taken_here = (
            case.agent_name is not None
            and case.connected_at is not None
            and begin <= case.connected_at < stop
        )
        outcome = (
            _judge(case, surveys.get(case.id), now, limits)
            if taken_here or (offered_here and not case.on_the_way)
            else None
        )
        if offered_here and case.on_the_way:
            # Never in line: the call back owed to a caller on their way to an emergency
            # queue. Not offered; an agent who calls them back handled it.
            overall.hung_up_on_the_way += 1
            by_queue.setdefault(case.queue, _Tally()).hung_up_on_the_way += 1
            _tally(by_priority, case.entered_as).hung_up_on_the_way += 1
        elif offered_here and outcome is not None:
            tallies = [overall, by_queue.setdefault(case.queue, _Tally())]
            if case.priority == "emergency":
                tallies.append(emergency.tally)
            _count_case(tallies, outcome, limits.for_priority(case.priority))
            # Judged by the target of the line it entered, whatever it was moved to since.
            _count_case(
                (_tally(by_priority, case.entered_as),),
                outcome,
                limits.for_priority(case.entered_as),
            )
        if taken_here and outcome is not None and case.agent_name is not None:
            # An agent's figures are what they handled: their answers and abandons not shown.
            mine = by_agent.setdefault(case.agent_name, _Tally())
            _count_case((mine,), outcome, limits.for_priority(case.priority))
            mine.handled += 1
    for (actor, action), count in sorted(Counter((a, b) for a, b, _ in agents_did).items()):
        tally = by_agent.setdefault(actor.removeprefix("agent:"), _Tally())
        if action == MISSED_OFFER:
            tally.missed_offers += count
        else:
            tally.transfers += count

    completed = contained = 0
    topics: Counter[str] = Counter()
    for call in call_rows:
        if call.topic is not None:
            topics[call.topic] += 1
        if call.status != COMPLETED:
            continue
        completed += 1
        contained += call.call_sid in read.contained

    return Report(
        period_start=start,
        period_end=end,
        thresholds=thresholds,
        overall=overall.figures(),
        by_queue={name: by_queue[name].figures() for name in sorted(by_queue)},
        calls=len(call_rows),
        completed_calls=completed,
        contained_calls=contained,
        containment=_ratio(contained, completed),
        top_topics=sorted(topics.items(), key=lambda item: (-item[1], item[0]))[:top],
        by_agent={
            name: by_agent.get(name, _Tally()).agent_figures(available.get(name))
            for name in sorted(by_agent.keys() | available.keys())
        },
        emergency=emergency.figures(),
        by_priority={name: tally.figures() for name, tally in by_priority.items()},
        agent_seconds_available=math.fsum(available.values()) if available else None,
        seconds_passed=max(0.0, (min(end, judged) - start).total_seconds()),
    )


DAY = timedelta(days=1)


def next_mark(moment: datetime, size: timedelta, zone: tzinfo) -> datetime:
    """The first time after `moment` that `zone`'s clock shows a whole multiple of `size`
    from its midnight (of 24 hours: its next midnight), in UTC: where a bar ends. A size
    that is no part of a day: `size` after `moment`. Raises OverflowError past year 9999."""
    if DAY % size:
        return moment + size
    local = moment.astimezone(zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    # On the wall clock: a day with a DST change still has its bars on the hour.
    count = (local.replace(tzinfo=None) - midnight.replace(tzinfo=None)) // size + 1
    mark = in_utc(midnight + count * size)
    while mark <= moment:  # a wall time the change skipped maps back before it
        count += 1
        mark = in_utc(midnight + count * size)
    return mark


def _bounds(start: datetime, end: datetime, size: timedelta, zone: tzinfo) -> list[datetime]:
    """Where the intervals of [start, end) begin (`intervals`), and `end`."""
    bounds = [start]
    while bounds[-1] < end:
        try:
            stop = min(end, next_mark(bounds[-1], size, zone))
        except (OverflowError, ValueError):  # the zone's clock past year 1 or 9999
            stop = end
        bounds.append(stop)
    return bounds


def intervals(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    size: timedelta,
    zone: tzinfo = UTC,
    thresholds: Thresholds = Thresholds(),
    now: datetime | None = None,
) -> list[Report]:
    """The period's figures, one report per interval on `zone`'s clock: each ends at a
    multiple of `size` from its midnight, so the first and the last may be shorter when the
    period does not begin or end on one (a workforce tool's 15 or 30 minutes, the figures
    page's bars). Each is the report `figures` makes of its interval, counted from one read
    of the period."""
    return _period(
        conn, start=start, end=end, size=size, zone=zone, thresholds=thresholds, now=now
    )[1]


def figures_and_intervals(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    size: timedelta,
    zone: tzinfo = UTC,
    thresholds: Thresholds = Thresholds(),
    now: datetime | None = None,
) -> tuple[Report, list[Report]]:
    """`figures` of [start, end) and `intervals` of it, from one read: the figures page's."""
    _checked(start, end, now)
    whole, parts = _period(
        conn,
        start=start,
        end=end,
        size=size,
        zone=zone,
        thresholds=thresholds,
        now=now,
        whole=True,
    )
    assert whole is not None  # a period that is not empty has its report
    return whole, parts


def _period(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    size: timedelta,
    zone: tzinfo,
    thresholds: Thresholds,
    now: datetime | None,
    whole: bool = False,
) -> tuple[Report | None, list[Report]]:
    if end <= start:
        return None, []
    judged = _checked(start, end, now)
    bounds = _bounds(start, end, size, zone)
    starts = bounds[:-1]
    with conn.begin():
        read = _read(conn, start=start, end=end)
        passed = min(end, judged)
        changes = _presence(conn, start=start, end=passed) if passed > start else []

    # The rows' times are microseconds since 1970 (`_read`).
    begin_us, end_us = _micros(start), _micros(end)
    starts_us = [_micros(moment) for moment in starts]

    def part(moment: int) -> int:
        """The interval `moment` is in, -1 for none."""
        return bisect.bisect_right(starts_us, moment) - 1 if begin_us <= moment < end_us else -1

    case_rows: list[list[_Case]] = [[] for _ in starts]
    for case in read.cases:
        # Which intervals load it, as `_read` loads a period's: opened, taken or sent on then.
        parts = {part(case.created_at)}
        if case.agent_id is not None and case.connected_at is not None:
            parts.add(part(case.connected_at))
        if case.queued_at is not None and case.created_at < end_us:
            first = max(bisect.bisect_right(starts_us, case.created_at) - 1, 0)
            parts.update(range(first, bisect.bisect_right(starts_us, case.queued_at)))
        for i in sorted(parts - {-1}):
            case_rows[i].append(case)
    # Started, made in the period: in one interval each.
    call_rows: list[list[Any]] = [[] for _ in starts]
    for call in read.calls:
        call_rows[part(call.started_at)].append(call)
    agents_did: list[list[Any]] = [[] for _ in starts]
    for did in read.agents_did:
        agents_did[part(did.at)].append(did)
    # Each interval's agents' time from the changes of it and of its lookback, as
    # `time_available` reads them: by when they were made, each in the order written.
    by_time = sorted(range(len(changes)), key=lambda k: changes[k].at)
    times = [changes[k].at for k in by_time]

    def available(begin: datetime, stop: datetime) -> dict[str, float]:
        if stop <= begin:
            return {}
        window = by_time[
            bisect.bisect_left(times, _lookback(begin)) : bisect.bisect_left(times, stop)
        ]
        return _available([changes[k] for k in sorted(window)], begin, stop)

    def count(begin: datetime, stop: datetime, **rows: Any) -> Report:
        # As `figures` of the interval alone: by default, judged at its end.
        judged = stop if now is None else now
        return _count(
            read,
            start=begin,
            end=stop,
            judged=judged,
            thresholds=thresholds,
            top=5,
            available=available(begin, min(stop, judged)),
            **rows,
        )

    overall = (
        count(start, end, case_rows=read.cases, call_rows=read.calls, agents_did=read.agents_did)
        if whole
        else None
    )
    return overall, [
        count(
            begin,
            stop,
            case_rows=case_rows[i],
            call_rows=call_rows[i],
            agents_did=agents_did[i],
        )
        for i, (begin, stop) in enumerate(zip(starts, bounds[1:], strict=True))
    ]
