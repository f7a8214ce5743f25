"""Faults: a server killed mid-call, the database going away and coming back, and Twilio's
own habits (repeats, reordering, late requests).

The first two run real `ivr serve` processes on PostgreSQL. The database outage goes through
a TCP proxy the test cuts (tests/support/tcpproxy.py): the machine's PostgreSQL is shared and
is never stopped. Twilio's habits already covered in test_web.py / test_emergency.py (a
repeated Gather, a repeated first request, a PIN delivered four times, an older status
callback after the final one, a callback for an unknown CallSid) are not repeated here.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import make_url

from ivr.db import accounts, call_events, calls, cases, create_db_engine
from ivr.identity import LocalDirectory
from ivr.phone import Answer, CallRecord, Phone, Press, Prompt, ScriptedParty, Silent
from tests.conftest import PUBLIC_URL, SECRET_KEY, TOKEN, bearer, make_user
from tests.support.pg import truncate_all
from tests.support.servers import Balancer, ServerProcess, server_env, serving_app
from tests.support.tcpproxy import TcpProxy

PIN = "739182"
AGENT_PHONE = "+15005559999"
APOLOGY = (
    "We're sorry, something went wrong on our side. "
    "Please stay on the line while we connect you to an agent."
)
WELCOME = "Thank you for calling the exchange support hotline."
# Twilio waits 15 s for a webhook's answer; every answer here must come well inside that.
TWILIO_LIMIT = 15.0
WITHIN = 10.0


@pytest.fixture
def pg(pg_database_url: str) -> Iterator[Engine]:
    """The session's PostgreSQL database, emptied for each test."""
    truncate_all(pg_database_url)
    engine = create_db_engine(pg_database_url)
    yield engine
    engine.dispose()


def env_for(database_url: str) -> dict[str, str]:
    return server_env(
        TWILIO_AUTH_TOKEN=TOKEN,
        IVR_PUBLIC_URL=PUBLIC_URL,
        IVR_DATABASE_URL=database_url,
        IVR_SECRET_KEY=SECRET_KEY,
        IVR_LOG_FORMAT="text",
    )


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[[str, str], ServerProcess]]:
    made: list[ServerProcess] = []

    def make(name: str, database_url: str) -> ServerProcess:
        server = ServerProcess(name, env_for(database_url), tmp_path)
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


def phone_for(server: ServerProcess, check: Callable[[str], None]) -> tuple[Phone, Balancer]:
    """A phone to one server that, like a balancer, retries while it is not listening."""
    balancer = Balancer([server.url], patience=45)
    client = httpx.Client(transport=balancer, timeout=TWILIO_LIMIT)
    return Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check), balancer


class Pausing(ScriptedParty):
    """A scripted caller that stops before its answer number `pause_at` and/or after its
    first round in the queue (`pause_in_queue`): it says so (`reached` / `holding`) and
    waits for the test (`go` / `hold_go`)."""

    def __init__(
        self,
        answers: list[Answer],
        *,
        pause_at: int | None = None,
        pause_in_queue: bool = False,
        hold_polls: int = 1,
    ) -> None:
        super().__init__(answers, hold_polls=hold_polls)
        self.pause_at = pause_at
        self.pause_in_queue = pause_in_queue
        self.given = 0
        self.reached, self.go = threading.Event(), threading.Event()
        self.holding, self.hold_go = threading.Event(), threading.Event()
        self.heard_before_pause = 0

    def answer(self, prompt: Prompt) -> Answer:
        if not prompt.in_queue:
            if self.given == self.pause_at:
                self.heard_before_pause = len(self.heard)
                self.reached.set()
                assert self.go.wait(90), "never released"
            self.given += 1
        return super().answer(prompt)

    def keep_holding(self, queue: str, polls: int) -> bool:
        if self.pause_in_queue and polls == 1:
            if self.pause_at is None:
                self.heard_before_pause = len(self.heard)
            self.holding.set()
            assert self.hold_go.wait(90), "never released"
        return super().keep_holding(queue, polls)

    def release(self) -> None:
        self.go.set()
        self.hold_go.set()

    @property
    def after_pause(self) -> list[str]:
        return self.heard[self.heard_before_pause :]


class CallThread(threading.Thread):
    def __init__(self, phone: Phone, party: ScriptedParty, from_number: str) -> None:
        super().__init__(daemon=True)
        self.phone, self.party, self.from_number = phone, party, from_number
        self.record: CallRecord | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.record = self.phone.call(self.party, from_number=self.from_number)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self) -> CallRecord:
        self.join(timeout=120)
        assert not self.is_alive(), "the call never ended"
        if self.error is not None:
            raise AssertionError(f"call from {self.from_number} failed") from self.error
        assert self.record is not None
        return self.record


def keys(*items: str) -> list[Answer]:
    return [Press(i) for i in items]


def add_account(db: Engine, uid: str, phone: str) -> None:
    LocalDirectory(db, SECRET_KEY).add(
        uid=uid, pin=PIN, id_last4="5064", phone=phone, totp_secret=None, now=datetime.now(UTC)
    )


def case_rows(db: Engine, call_sid: str) -> list[dict[str, Any]]:
    with db.connect() as conn:
        rows = conn.execute(select(cases).where(cases.c.call_sid == call_sid).order_by(cases.c.id))
        return [dict(r) for r in rows.mappings()]


def steps_logged_once(db: Engine, call_sid: str) -> bool:
    """No step of the call was taken twice: each step's entries were written by one request."""
    with db.connect() as conn:
        rows = conn.execute(
            select(
                call_events.c.step,
                call_events.c.kind,
                call_events.c.node,
                call_events.c.input_kind,
                call_events.c.prompt_key,
                call_events.c.outcome,
            )
            .where(call_events.c.call_sid == call_sid, call_events.c.kind != "status")
            .order_by(call_events.c.id)
        ).all()
    steps = [r.step for r in rows]
    return bool(rows) and len(rows) == len(set(rows)) and steps == sorted(steps)


# -- (a) a server killed with SIGKILL mid-call, restarted on the same database -------------


def test_a_server_killed_mid_call_and_restarted_loses_and_repeats_nothing(
    pg: Engine,
    pg_database_url: str,
    server_factory: Callable[[str, str], ServerProcess],
    check_twiml: Callable[[str], None],
) -> None:
    server = server_factory("killed", pg_database_url)
    server.start()
    add_account(pg, "50000001", "+15005550501")
    add_account(pg, "50000002", "+15005550502")
    agent = make_user(pg, "kill-agent", "agent", AGENT_PHONE)
    parties = {
        # English, deposits; killed at the deposits menu; then "not credited", silence, agent
        "menu": Pausing([Press("1"), Press("3"), Press("1"), Silent(), Press("1")], pause_at=2),
        # Mandarin; killed at the main menu; then 0 for an agent
        "mandarin": Pausing([Press("2"), Press("0")], pause_at=1),
        # stolen account, UID given; killed at the PIN prompt; then the right PIN
        "verifying": Pausing([Press("1"), Press("1"), Press("50000001"), Press(PIN)], pause_at=3),
        # one wrong PIN, UID again; killed at the second PIN prompt; then wrong again
        "failing": Pausing(
            keys("1", "1", "50000002", "000000", "50000002", "000001"),
            pause_at=5,
        ),
        # an agent, then waiting in the queue; killed while holding; an agent takes the case
        "queued": Pausing([Press("1"), Press("0")], pause_in_queue=True, hold_polls=3),
    }
    numbers = {
        "menu": "+15005550500",
        "mandarin": "+15005550503",
        "verifying": "+15005550501",
        "failing": "+15005550502",
        "queued": "+15005550504",
    }
    threads = {
        name: CallThread(phone_for(server, check_twiml)[0], party, numbers[name])
        for name, party in parties.items()
    }
    try:
        for t in threads.values():
            t.start()
        for name, party in parties.items():
            event = party.holding if name == "queued" else party.reached
            assert event.wait(60), f"{name} never reached its node"
        server.kill()
        # Two callers press their next key at once: their requests find nobody listening
        # until the new process is up (the phone, like a balancer, retries refused connections).
        parties["menu"].go.set()
        parties["mandarin"].go.set()
        server.start()
        # An agent takes the waiting caller's case from the new process (before the two
        # verifying callers reach the security queue: emergencies are served first).
        taken = httpx.post(server.url + "/api/agents/next", headers=bearer(agent), timeout=15)
        assert taken.status_code == 200, taken.text
        for party in parties.values():
            party.release()
        records = {name: t.finish() for name, t in threads.items()}
    finally:
        for party in parties.values():
            party.release()
    assert server.starts == 2

    for name, record in records.items():
        assert record.heard.count(WELCOME) == 1, f"{name} started over"
        assert APOLOGY not in record.heard, f"{name} got the fallback"
        assert steps_logged_once(pg, record.call_sid), f"{name} has a step taken twice"
    menu, mandarin = parties["menu"].after_pause, parties["mandarin"].after_pause
    assert menu[0].startswith("A deposit is credited")  # continued at the deposits menu
    assert records["menu"].queue == "payments"
    assert mandarin and all(re.search("[\u4e00-\u9fff]", line) for line in mandarin[:2])
    assert records["mandarin"].queue == "general"
    assert records["verifying"].queue == records["failing"].queue == "security"
    failing = records["failing"].heard
    assert sum("Let's try once more" in line for line in failing) == 1  # attempts were kept
    assert records["queued"].dialed == AGENT_PHONE  # taken from the queue by the new process
    # Every queued caller has exactly one case; nothing lost, nothing twice.
    opened = {name: case_rows(pg, r.call_sid) for name, r in records.items()}
    assert {name: len(rows) for name, rows in opened.items()} == dict.fromkeys(records, 1)
    assert taken.json()["case"]["id"] == opened["queued"][0]["id"]
    assert opened["queued"][0]["status"] == "connected"
    assert opened["verifying"][0]["flags"]["verified"] == "yes"
    assert opened["verifying"][0]["flags"]["self_freeze"] == "done"
    assert opened["failing"][0]["flags"]["verified"] == "no"
    assert taken.json()["case"]["ticket"] in " ".join(records["queued"].heard).replace(" ", "")
    with pg.connect() as conn:
        frozen = (
            conn.execute(
                select(accounts.c.uid).where(accounts.c.frozen == 1).order_by(accounts.c.uid)
            )
            .scalars()
            .all()
        )
        tickets = conn.execute(select(func.count(), func.count(cases.c.ticket.distinct()))).one()
    assert frozen == ["50000001"]
    assert tickets[0] == tickets[1]


# -- (b) PostgreSQL unreachable during calls, then back -------------------------------------


def test_database_outage_hands_callers_to_agents_and_the_service_recovers_by_itself(
    pg: Engine,
    pg_database_url: str,
    server_factory: Callable[[str, str], ServerProcess],
    check_twiml: Callable[[str], None],
) -> None:
    url = make_url(pg_database_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        server = server_factory("outage", proxied)
        server.start()
        agent = make_user(pg, "outage-agent", "agent", AGENT_PHONE)

        # Warm up: a whole call, so the server's pool holds connections when the cut comes.
        phone, warm = phone_for(server, check_twiml)
        phone.call(ScriptedParty([Press("1"), Press("2"), Press("1"), Press("9")]))
        assert proxy.open_connections() >= 1

        # One caller at the main menu when the database goes; one calls during the outage.
        during_menu = Pausing(
            [Press("1"), Press("3")], pause_at=1, pause_in_queue=True, hold_polls=3
        )
        newcomer = Pausing([], pause_in_queue=True, hold_polls=3)
        balancers: list[Balancer] = [warm]
        calls_: dict[str, CallThread] = {}
        for name, party, number in (
            ("during_menu", during_menu, "+15005550601"),
            ("newcomer", newcomer, "+15005550602"),
        ):
            p, b = phone_for(server, check_twiml)
            balancers.append(b)
            calls_[name] = CallThread(p, party, number)
        try:
            calls_["during_menu"].start()
            assert during_menu.reached.wait(30)

            proxy.cut()  # every pooled connection reset; new ones refused
            assert proxy.open_connections() == 0
            started = time.monotonic()
            ready = httpx.get(server.url + "/readyz", timeout=TWILIO_LIMIT)
            assert ready.status_code == 503 and time.monotonic() - started < WITHIN
            assert httpx.get(server.url + "/healthz", timeout=TWILIO_LIMIT).status_code == 200

            during_menu.go.set()  # presses 3: the database is gone
            assert during_menu.holding.wait(60)  # ...and is holding in the agent queue
            calls_["newcomer"].start()  # a new call comes in
            assert newcomer.holding.wait(60)  # ...and is holding too
            # A status callback during the outage: accepted, nothing to retry.
            status = phone.signed_post(
                PUBLIC_URL + "/twilio/status",
                {"CallSid": "CA" + "f" * 32, "CallStatus": "completed", "SequenceNumber": "1"},
            )
            assert status.status_code == 204
            assert httpx.get(server.url + "/readyz", timeout=TWILIO_LIMIT).status_code == 503

            proxy.restore()
            deadline = time.monotonic() + 20
            while httpx.get(server.url + "/readyz", timeout=TWILIO_LIMIT).status_code != 200:
                assert time.monotonic() < deadline, "the service did not recover by itself"
                time.sleep(0.2)
            during_menu.release()  # the next round of their hold loops has the database
            newcomer.release()
            records = {name: t.finish() for name, t in calls_.items()}
            held = {name: case_rows(pg, r.call_sid) for name, r in records.items()}
            # After the outage: a call goes normally through the menus.
            after_phone, after = phone_for(server, check_twiml)
            balancers.append(after)
            normal = after_phone.call(
                ScriptedParty([Press("1"), Press("3"), Press("1"), Silent(), Press("1")]),
                from_number="+15005550603",
            )
            # The callers the fallback queued are in our line: an agent gets them.
            taken = httpx.post(server.url + "/api/agents/next", headers=bearer(agent), timeout=15)
        finally:
            during_menu.release()
            newcomer.release()
        log = server.log()

    # During the outage: the fallback, in valid TwiML (the phone checked every document).
    menu = during_menu.after_pause
    assert menu[:1] == [APOLOGY] and records["during_menu"].queue == "general"
    assert records["newcomer"].heard[0] == APOLOGY and records["newcomer"].queue == "general"
    # Every answer came, in time, and none was an error.
    timings = [t for b in balancers for t in b.timings]
    assert timings and all(status < 500 for _, status, _ in timings)
    assert max(seconds for _, _, seconds in timings) < WITHIN
    assert '" 500' not in log
    # After it: normal service, and the held callers have cases an agent can take.
    assert APOLOGY not in normal.heard and normal.queue == "payments"
    assert {name: len(rows) for name, rows in held.items()} == {"during_menu": 1, "newcomer": 1}
    assert {rows[0]["queue"] for rows in held.values()} == {"general"}
    # They hung up after the outage: a case waits for a call back, and goes first.
    assert held["during_menu"][0]["status"] == "abandoned"
    assert held["newcomer"][0]["status"] == "abandoned"
    assert taken.status_code == 200
    assert taken.json()["case"]["id"] in {rows[0]["id"] for rows in held.values()}
    assert proxy.refused >= 1  # the server did try the database during the outage


# -- (c) Twilio's habits, each handled idempotently -----------------------------------------


def _menu_action(record: CallRecord) -> str:
    """The Gather action of the last document the call got."""
    found = re.search(r'<Gather[^>]*action="([^"]+)"', record.documents[-1])
    assert found, record.documents[-1]
    return found.group(1).replace("&amp;", "&")


def _params(record: CallRecord, **extra: str) -> dict[str, str]:
    keep = ("AccountSid", "CallSid", "From", "To", "Caller", "Called", "Direction", "ApiVersion")
    return {**{k: v for k, v in record.requests[0][1].items() if k in keep}, **extra}


def test_a_gather_action_after_the_call_completed_leaves_a_case_for_a_call_back(
    phone: Phone, db: Engine, check_twiml: Callable[[str], None]
) -> None:
    # The caller hangs up at the main menu; Twilio's final status callback arrives first and
    # the Gather action ("0", an agent) after it.
    record = phone.call(ScriptedParty([Press("1")]))
    with db.connect() as conn:
        before = conn.execute(select(calls.c.status, calls.c.step)).one()
    assert before.status == "completed"
    late = phone.signed_post(_menu_action(record), _params(record, Digits="0"))
    assert late.status_code == 200
    check_twiml(late.text)
    assert "<Enqueue" not in late.text  # nobody is there to queue
    with db.connect() as conn:
        after = conn.execute(select(calls.c.status, calls.c.step)).one()
        opened = conn.execute(select(cases.c.status, cases.c.queued, cases.c.agent_id)).all()
    # What they asked for is not lost, and no agent is sent to an empty line: a call back.
    assert [tuple(row) for row in opened] == [("abandoned", 1, None)]
    assert after.status == "completed"
    again = phone.signed_post(_menu_action(record), _params(record, Digits="0"))
    assert again.text == late.text  # Twilio repeating it changes nothing more
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(cases)).scalar() == 1


def test_a_pin_delivered_after_the_victim_hung_up_still_freezes(
    phone: Phone, db: Engine, clock: Any
) -> None:
    LocalDirectory(db, SECRET_KEY).add(
        uid="10000001", pin=PIN, id_last4=None, phone=None, totp_secret=None, now=clock.now
    )
    # Hijack path, UID given; the victim hangs up at the PIN prompt, then the PIN arrives.
    record = phone.call(ScriptedParty([Press("1"), Press("1"), Press("10000001")]))
    late = phone.signed_post(_menu_action(record), _params(record, Digits=PIN))
    assert late.status_code == 200 and "<Hangup" in late.text
    with db.connect() as conn:
        frozen = conn.execute(select(accounts.c.frozen)).scalar()
        [case] = conn.execute(select(cases.c.status, cases.c.priority, cases.c.queue)).all()
    assert frozen == 1
    assert tuple(case) == ("abandoned", "emergency", "security")


def test_status_callbacks_repeated_and_reordered_for_a_queued_caller(
    phone: Phone, db: Engine
) -> None:
    # A caller waiting in the queue hangs up; Twilio sends the final callback twice, and an
    # older one (in-progress, a lower SequenceNumber) last.
    record = phone.call(ScriptedParty([Press("1"), Press("0")], hold_polls=1))
    sid = record.call_sid
    status = PUBLIC_URL + "/twilio/status"
    with db.connect() as conn:
        conn.execute(text("SELECT 1"))
        events_before = conn.execute(
            select(func.count()).select_from(call_events).where(call_events.c.call_sid == sid)
        ).scalar()
    final = _params(record, CallStatus="completed", CallDuration="30", SequenceNumber="4")
    assert phone.signed_post(status, final).status_code == 204
    assert phone.signed_post(status, final).status_code == 204
    older = _params(record, CallStatus="in-progress", SequenceNumber="2")
    assert phone.signed_post(status, older).status_code == 204
    with db.connect() as conn:
        call = conn.execute(select(calls).where(calls.c.call_sid == sid)).mappings().one()
        events_after = conn.execute(
            select(func.count()).select_from(call_events).where(call_events.c.call_sid == sid)
        ).scalar()
    assert call["status"] == "completed" and call["ended_at"] is not None
    assert events_after == events_before  # the call had already ended: nothing re-recorded
    [case] = case_rows(db, sid)
    assert (case["status"], case["queued"]) == ("abandoned", 1)  # still in line for a call back


def test_a_queue_exit_after_the_final_status_leaves_one_abandoned_case(
    client: TestClient, db: Engine, check_twiml: Callable[[str], None]
) -> None:
    # The caller hangs up in the queue: Twilio's final status callback arrives before the
    # <Enqueue> action (QueueResult=hangup), and the action is delivered twice.
    phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
    documents: list[str] = []
    sid = "CA" + "c" * 32
    base = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": "+15005550701"}
    answer = phone.signed_post(PUBLIC_URL + "/twilio/voice", {**base, "CallStatus": "ringing"})
    for digits in ("1", "0"):
        documents.append(answer.text)
        action = re.search(r'action="([^"]+)"', answer.text)
        assert action
        answer = phone.signed_post(
            action.group(1).replace("&amp;", "&"), {**base, "Digits": digits}
        )
    check_twiml(answer.text)
    exit_url = re.search(r'<Enqueue action="([^"]+)"', answer.text)
    assert exit_url
    final = {**base, "CallStatus": "completed", "CallDuration": "20", "SequenceNumber": "3"}
    assert phone.signed_post(PUBLIC_URL + "/twilio/status", final).status_code == 204
    for _ in range(2):
        late = phone.signed_post(
            exit_url.group(1).replace("&amp;", "&"), {**base, "QueueResult": "hangup"}
        )
        assert late.status_code == 200
        check_twiml(late.text)
        assert "<Enqueue" not in late.text
    [case] = case_rows(db, sid)
    assert (case["status"], case["queued"]) == ("abandoned", 1)
    with db.connect() as conn:
        call = conn.execute(select(calls.c.status, calls.c.ended_at)).one()
    assert call.status == "completed" and call.ended_at is not None


def test_a_caller_only_the_fallback_queued_is_abandoned_on_hang_up(
    client: TestClient, db: Engine, check_twiml: Callable[[str], None]
) -> None:
    # The database failed at the first webhook: the fallback queued the caller, no call row.
    # When the database is back, the hold loop opens a case; then the caller hangs up.
    phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
    sid = "CA" + "b" * 32
    base = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": "+15005550801"}
    held = phone.signed_post(
        PUBLIC_URL + "/twilio/wait?lang=en&queue=general", {**base, "QueueTime": "40"}
    )
    assert held.status_code == 200
    check_twiml(held.text)
    [case] = case_rows(db, sid)
    assert case["status"] == "waiting"
    final = {**base, "CallStatus": "completed", "CallDuration": "50", "SequenceNumber": "2"}
    assert phone.signed_post(PUBLIC_URL + "/twilio/status", final).status_code == 204
    [case] = case_rows(db, sid)
    # Not "waiting": an agent would take it as a live caller and find nobody on the line.
    assert (case["status"], case["queued"]) == ("abandoned", 1)


# -- (d) a webhook stuck past the deadline ----------------------------------------------------


def test_a_webhook_stuck_past_the_deadline_is_answered_from_memory(
    database_url: str,
    db: Engine,
    check_twiml: Callable[[str], None],
) -> None:
    """A database that hangs without failing must not hold a caller past Twilio's 15 s: after
    IVR_WEBHOOK_DEADLINE the caller hears the fallback, the hold loop keeps holding, a status
    callback gets its 204.

    PostgreSQL: a stalled path (every connection hangs). SQLite: another process holds the
    write lock (a backup, a long `ivr` command): the webhooks that answer on the event loop
    must not wait for it there, or every call would wait with them."""
    from ivr.tree import load_tree
    from ivr.web import create_app
    from tests.conftest import PROJECT_ROOT, make_settings

    stall = threading.Event()
    released = threading.Event()
    sqlite = database_url.startswith("sqlite")

    def on_checkout(*_: Any) -> None:  # the engine's own event: a connection that hangs
        if stall.is_set() and not sqlite:
            released.wait(20)

    from sqlalchemy import event

    event.listen(db, "checkout", on_checkout)
    other_process = sqlite3.connect(database_url.removeprefix("sqlite:///")) if sqlite else None
    settings = make_settings(IVR_DATABASE_URL=database_url, IVR_WEBHOOK_DEADLINE=0.5)
    tree = load_tree(PROJECT_ROOT / "routes" / "hotline.yaml", PROJECT_ROOT / "prompts")
    app = create_app(settings, tree=tree, db=db)
    try:
        # A real server: the caller hears the answer when it is sent, before the late work ends.
        with serving_app(app) as base, httpx.Client(timeout=30) as client:
            phone = Phone(
                client,
                public_url=PUBLIC_URL,
                auth_token=TOKEN,
                server_url=base,
                check_twiml=check_twiml,
            )
            base = {"AccountSid": "AC" + "0" * 32, "From": "+15005550006"}
            # Warm up (first connections, first statements compiled): on a loaded machine a
            # cold first webhook can itself take longer than the short deadline set here.
            for warm_up in "123":
                warm = {**base, "CallSid": "CA" + warm_up * 32}
                if "<Gather" in phone.signed_post(PUBLIC_URL + "/twilio/voice", warm).text:
                    break
            registry = app.state.hotline.metrics.registry
            late_before = registry.get_sample_value("ivr_late_webhooks_total") or 0.0
            base["CallSid"] = "CA" + "7" * 32
            assert "<Gather" in phone.signed_post(PUBLIC_URL + "/twilio/voice", base).text
            stall.set()
            if other_process is not None:
                other_process.execute("BEGIN IMMEDIATE")  # holds the write lock until rollback
            answers = {}
            for path, extra in (
                ("/twilio/gather?s=1", {"Digits": "1"}),
                ("/twilio/wait?lang=en&queue=security", {"QueueTime": "30"}),
                ("/twilio/status", {"CallStatus": "completed", "SequenceNumber": "3"}),
                ("/twilio/agent-accept?case=1&agent=1", {"Digits": "1"}),
                ("/twilio/page-ack?page=1", {"Digits": "1", "To": "+15005550100"}),
                ("/twilio/callback-number?lang=en", {"Digits": "8613800138000"}),
            ):
                started = time.monotonic()
                answers[path] = phone.signed_post(PUBLIC_URL + path, {**base, **extra})
                assert time.monotonic() - started < 5, path
            late = (registry.get_sample_value("ivr_late_webhooks_total") or 0.0) - late_before
            released.set()
    finally:
        released.set()
        if other_process is not None:
            other_process.rollback()
            other_process.close()
        event.remove(db, "checkout", on_checkout)
    menu = answers["/twilio/gather?s=1"]
    assert menu.status_code == 200 and APOLOGY in menu.text and "<Enqueue" in menu.text
    hold = answers["/twilio/wait?lang=en&queue=security"]
    assert hold.status_code == 200 and "<Enqueue" not in hold.text and "holding" in hold.text
    check_twiml(menu.text)
    check_twiml(hold.text)
    assert answers["/twilio/status"].status_code == 204
    # An agent's screen not answered in time is not taken: the caller goes back in line.
    screen = answers["/twilio/agent-accept?case=1&agent=1"]
    check_twiml(screen.text)
    assert screen.status_code == 200 and "<Hangup" in screen.text
    # The on-call's key on a page's call: the late work may still record it, so they hear
    # it could not be, and where to make sure.
    page_key = answers["/twilio/page-ack?page=1"]
    check_twiml(page_key.text)
    assert page_key.status_code == 200 and "<Hangup" in page_key.text
    assert "could not be recorded" in page_key.text and "queue page" in page_key.text
    # A caller keying a number to be called back on is holding in a queue: held on.
    keyed = answers["/twilio/callback-number?lang=en"]
    check_twiml(keyed.text)
    assert keyed.status_code == 200 and "<Enqueue" not in keyed.text and "holding" in keyed.text
    # On SQLite the screen only reads (no such case), which the writer's lock does not hold up.
    assert late == (5 if sqlite else 6)


def test_only_a_signed_webhook_past_the_deadline_is_answered_from_memory(
    database_url: str, db: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """A stranger whose request trickles its body in past IVR_WEBHOOK_DEADLINE hears nothing
    from memory (no TwiML, no error logged, no late webhook counted): a 403 once the body is
    in. A body Twilio signed that was slow to arrive, to a database that hangs, still gets
    its answer soon after the deadline (PostgreSQL: its stall is the pool's)."""
    from sqlalchemy import event

    from ivr.tree import load_tree
    from ivr.web import create_app
    from tests.conftest import PROJECT_ROOT, make_settings

    settings = make_settings(IVR_DATABASE_URL=database_url, IVR_WEBHOOK_DEADLINE=0.3)
    tree = load_tree(PROJECT_ROOT / "routes" / "hotline.yaml", PROJECT_ROOT / "prompts")
    app = create_app(settings, tree=tree, db=db)
    registry = app.state.hotline.metrics.registry
    url = PUBLIC_URL + "/twilio/voice"
    form = {"AccountSid": "AC" + "0" * 32, "From": "+15005550006", "CallSid": "CA" + "8" * 32}
    body = urlencode(form).encode()

    def trickled() -> Iterator[bytes]:
        yield body[:20]
        time.sleep(1.0)  # past the deadline, and past a recheck or two
        yield body[20:]

    def post(base: str, client: httpx.Client, signature: str) -> httpx.Response:
        return client.post(
            base + "/twilio/voice",
            content=trickled(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            },
        )

    stall, released = threading.Event(), threading.Event()

    def on_checkout(*_: Any) -> None:
        if stall.is_set():
            released.wait(20)

    with serving_app(app) as base, httpx.Client(timeout=30) as client:
        caplog.clear()
        forged = post(base, client, "not-a-signature")
        assert forged.status_code == 403 and "<Response" not in forged.text
        assert (registry.get_sample_value("ivr_late_webhooks_total") or 0.0) == 0.0
        assert [r for r in caplog.records if r.levelname == "ERROR"] == []
        if db.dialect.name == "postgresql":
            signature = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN).validator
            event.listen(db, "checkout", on_checkout)
            stall.set()
            try:
                started = time.monotonic()
                answered = post(base, client, signature.compute_signature(url, form))
                took = time.monotonic() - started
            finally:
                released.set()
                event.remove(db, "checkout", on_checkout)
            assert answered.status_code == 200 and "<Enqueue" in answered.text  # the fallback
            assert took < 5  # the stall is 20 s
            assert registry.get_sample_value("ivr_late_webhooks_total") == 1.0
