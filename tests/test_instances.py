"""Several instances: two real `ivr serve` processes on one PostgreSQL database, with every
request of a call going to the other one in turn (a round-robin load balancer).

Nothing about a call lives in a process: a call goes exactly as on one server, each case goes
to exactly one agent whichever instance the agents ask, and failed verifications on either
instance add up to one lockout.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text, update

from ivr import cases as case_queue
from ivr import instances as instances_module
from ivr.db import accounts, call_events, calls, cases, create_db_engine, engine_from_settings
from ivr.db import instances as db_instances
from ivr.engine import OpenCase
from ivr.exceptions import ConfigError
from ivr.identity import LocalDirectory
from ivr.phone import Answer, CallRecord, Phone, Press, ScriptedParty, Silent, Speak
from ivr.settings import PROJECT_ROOT, load_settings
from ivr.tree import CompiledTree
from ivr.web import create_app
from tests.conftest import (
    HTTPS_CLIENT,
    PUBLIC_URL,
    SECRET_KEY,
    TOKEN,
    FakeClock,
    bearer,
    eventually,
    make_settings,
    make_user,
)
from tests.support.pg import truncate_all
from tests.support.servers import Balancer, ServerProcess, server_env, serving

PIN = "739182"


@pytest.fixture(scope="module")
def pg(pg_database_url: str) -> Iterator[Engine]:
    truncate_all(pg_database_url)
    engine = create_db_engine(pg_database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def instances(
    pg: Engine, pg_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Instances A and B: the same database, public URL, auth token and secret key."""
    workdir = tmp_path_factory.mktemp("instances")
    env = server_env(
        TWILIO_AUTH_TOKEN=TOKEN,
        IVR_PUBLIC_URL=PUBLIC_URL,
        IVR_DATABASE_URL=pg_database_url,
        IVR_SECRET_KEY=SECRET_KEY,
        IVR_LOG_FORMAT="text",
        IVR_METRICS_OPEN="true",  # scraped below without a token, on the https PUBLIC_URL
        # Both offer cases to the available agents, often, so that their offers overlap.
        IVR_DISPATCH_INTERVAL="0.05",
    )
    a, b = ServerProcess("a", env, workdir), ServerProcess("b", env, workdir)
    with serving(a, b):
        yield a, b


def phone_via(backends: list[str], check_twiml: Callable[[str], None]) -> tuple[Phone, Balancer]:
    balancer = Balancer(backends)
    client = httpx.Client(transport=balancer, timeout=20)
    return Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml), balancer


def add_account(db: Engine, uid: str, phone: str) -> None:
    LocalDirectory(db, SECRET_KEY).add(
        uid=uid, pin=PIN, id_last4="5064", phone=phone, totp_secret=None, now=datetime.now(UTC)
    )


# A 7-digit ticket number read digit by digit (Mandarin says a lone 1 as 幺).
TICKET = re.compile(r"\b[\d幺]( [\d幺]){6}\b")


def transcript(record: CallRecord) -> list[str]:
    return [TICKET.sub("<ticket>", line) for line in record.heard]


def outcome(db: Engine, call_sid: str) -> dict[str, Any]:
    """What a call left behind, less what differs by nature (ticket numbers, UIDs, times)."""
    with db.connect() as conn:
        call = conn.execute(select(calls).where(calls.c.call_sid == call_sid)).mappings().one()
        events = conn.execute(
            select(
                call_events.c.step,
                call_events.c.node,
                call_events.c.kind,
                call_events.c.input_kind,
                call_events.c.option,
                call_events.c.prompt_key,
                call_events.c.outcome,
            )
            .where(call_events.c.call_sid == call_sid)
            .order_by(call_events.c.id)
        ).all()
        opened = conn.execute(
            select(cases.c.queue, cases.c.priority, cases.c.reason, cases.c.status, cases.c.flags)
            .where(cases.c.call_sid == call_sid)
            .order_by(cases.c.id)
        ).all()
    facts = {k: v for k, v in call["state"]["facts"].items() if k not in ("ticket", "uid")}
    return {
        "call": (call["status"], call["step"], call["state"]["node"], call["state"]["lang"], facts),
        "events": [tuple(e) for e in events],
        "cases": [
            (
                c.queue,
                c.priority,
                c.reason,
                c.status,
                c.flags.get("verified"),
                c.flags.get("self_freeze"),
            )
            for c in opened
        ],
    }


def clear_queue(db: Engine) -> None:
    """Take every case out of line, so the next call hears the same place in line."""
    with db.begin() as conn:
        conn.execute(update(cases).values(queued=0, status="resolved"))


def keys(*items: str | Answer) -> list[Answer]:
    return [Press(i) if isinstance(i, str) else i for i in items]


SCENARIOS: dict[str, tuple[list[Answer], int]] = {
    # deposits -> not credited -> silence -> an agent, two rounds of the hold loop
    "deposit_agent": (keys("1", "3", "1", Silent(), "1"), 2),
    # stolen account, verified with the PIN: frozen at once, security queue
    "hijack_verified": (keys("1", "1", "{uid}", PIN), 1),
    # stolen account in Mandarin by voice, verification skipped
    "hijack_mandarin": (keys("2", Speak("我的账户被盗了"), "*"), 2),
    # silence three times at the main menu
    "silence": (keys("1", Silent(), Silent(), Silent()), 1),
    # advice, then back to the main menu, then hanging up
    "advice": (keys("1", "2", "1", "2"), 1),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_call_alternating_between_instances_goes_as_on_one(
    name: str,
    instances: tuple[ServerProcess, ServerProcess],
    pg: Engine,
    check_twiml: Callable[[str], None],
) -> None:
    a, b = instances
    script, hold_polls = SCENARIOS[name]
    records: dict[int, tuple[CallRecord, Balancer, dict[str, Any], str]] = {}
    index = list(SCENARIOS).index(name)
    for run, backends in enumerate(([a.url], [a.url, b.url])):
        uid, caller = f"3000{index:02d}{run:02d}", f"+1500555{index:02d}{run:02d}"
        add_account(pg, uid, caller)
        phone, balancer = phone_via(backends, check_twiml)
        answers = [Press(uid) if answer == Press("{uid}") else answer for answer in script]
        record = phone.call(ScriptedParty(answers, hold_polls=hold_polls), from_number=caller)
        records[run] = (record, balancer, outcome(pg, record.call_sid), uid)
        clear_queue(pg)
    (one, _, one_outcome, _), (both, balancer, both_outcome, uid) = records[0], records[1]
    # Every request of the call went to the other instance than the one before.
    assert set(balancer.served) == {a.url, b.url}
    assert all(x != y for x, y in zip(balancer.order, balancer.order[1:], strict=False))
    assert len(balancer.order) == len(both.requests) >= 4
    # ...and the caller heard, and the hotline stored, exactly what one server gives.
    assert transcript(both) == transcript(one)
    assert (both.queue, both.ended_by, both.hold_polls) == (one.queue, one.ended_by, one.hold_polls)
    assert both_outcome == one_outcome
    if name == "hijack_verified":
        assert both_outcome["cases"] == [
            ("security", "emergency", "account_hijack", "abandoned", "yes", "done")
        ]
        with pg.connect() as conn:
            frozen = conn.execute(select(accounts.c.frozen).where(accounts.c.uid == uid)).scalar()
        assert frozen == 1


def test_agents_on_both_instances_get_every_case_exactly_once(
    instances: tuple[ServerProcess, ServerProcess], pg: Engine
) -> None:
    a, b = instances
    clear_queue(pg)
    now = datetime.now(UTC)
    with pg.begin() as conn:
        for n in range(30):
            spec = OpenCase(
                ticket=f"9{n:06d}",
                queue="security" if n % 5 == 0 else "general",
                priority=("emergency", "high", "normal")[n % 3],
                reason="test",
                flags={},
                path=[],
            )
            conn.execute(
                case_queue.open_case(
                    spec,
                    call_sid="CA" + f"{n:032x}",
                    caller=None,
                    risk={},
                    now=now - timedelta(seconds=n),
                    # Call backs: each agent closes one before the next (one case at a time).
                    gone=True,
                )
            )
        waiting = {
            r.id: r.status
            for r in conn.execute(select(cases.c.id, cases.c.status).where(cases.c.queued == 1))
        }
    assert len(waiting) == 30
    agents = [(make_user(pg, f"agent{n}", "agent"), (a, b)[n % 2]) for n in range(4)]
    barrier = threading.Barrier(len(agents))
    claimed: dict[int, list[tuple[int, str]]] = {n: [] for n in range(len(agents))}
    errors: list[str] = []

    def take_all(n: int, token: str, server: ServerProcess) -> None:
        with httpx.Client(base_url=server.url, headers=bearer(token), timeout=20) as http:
            barrier.wait(timeout=30)
            while True:
                response = http.post("/api/agents/next")
                if response.status_code != 200:
                    errors.append(f"{server.name}: {response.status_code} {response.text}")
                    return
                case = response.json()["case"]
                if case is None:
                    return
                claimed[n].append((case["id"], server.name))
                done = http.post(f"/api/cases/{case['id']}/resolve", json={"notes": "called"})
                if done.status_code != 200:
                    errors.append(f"{server.name}: {done.status_code} {done.text}")
                    return

    threads = [
        threading.Thread(target=take_all, args=(n, token, server))
        for n, (token, server) in enumerate(agents)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    ids = [case_id for taken in claimed.values() for case_id, _ in taken]
    assert sorted(ids) == sorted(waiting)  # every case, none twice
    assert {server for taken in claimed.values() for _, server in taken} == {"a", "b"}
    with pg.connect() as conn:
        rows = {
            r.id: r
            for r in conn.execute(
                select(cases.c.id, cases.c.status, cases.c.agent_id, cases.c.queued)
            )
        }
        users = dict(conn.execute(text("SELECT name, id FROM users")).all())
    for n, taken in claimed.items():
        for case_id, _ in taken:
            row = rows[case_id]
            assert (row.status, row.queued, row.agent_id) == ("resolved", 0, users[f"agent{n}"])


def test_both_instances_offer_cases_to_available_agents_each_once_one_at_a_time(
    instances: tuple[ServerProcess, ServerProcess], pg: Engine
) -> None:
    """Twelve callers wait on the line; eight agents say they are available, half on each
    instance. Both instances' timed jobs offer cases every 50 ms, racing each other: eight
    offers, each case to one agent, each agent one case, and no more however long they go on
    (every agent holds one)."""
    a, b = instances
    clear_queue(pg)
    now = datetime.now(UTC)
    with pg.begin() as conn:
        for n in range(12):
            spec = OpenCase(f"8{n:06d}", "general", "normal", "test", {}, [])
            conn.execute(
                case_queue.open_case(
                    spec,
                    call_sid=f"CA{n:032x}",
                    caller=None,
                    risk={},
                    now=now - timedelta(seconds=n),
                )
            )
    agents = [make_user(pg, f"avail{n}", "agent") for n in range(8)]
    try:
        for n, token in enumerate(agents):
            server = (a, b)[n % 2]
            answer = httpx.put(
                server.url + "/api/agents/presence",
                json={"available": True},
                headers=bearer(token),
                timeout=10,
            )
            assert answer.status_code == 200 and answer.json()["available"] is True

        def offered() -> list[Any]:
            with pg.connect() as conn:
                return list(
                    conn.execute(
                        select(cases.c.id, cases.c.agent_id).where(cases.c.status == "offered")
                    )
                )

        deadline = time.monotonic() + 30
        while len(offered()) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1)  # 20 more rounds of both jobs: nothing more may be offered
        rows = offered()
    finally:
        with pg.begin() as conn:  # away: the next tests' cases are nobody's until asked for
            conn.execute(text("UPDATE users SET available_since = NULL"))
    assert len(rows) == 8
    assert len({r.id for r in rows}) == 8 and len({r.agent_id for r in rows}) == 8
    pushed = [
        float(m.group(1))
        for server in (a, b)
        if (m := re.search(r'ivr_offers_total\{outcome="pushed"\} (\S+)', metrics(server)))
    ]
    assert sum(pushed) == 8


def metrics(server: ServerProcess) -> str:
    return httpx.get(server.url + "/metrics", timeout=10).text


def test_failed_verifications_on_both_instances_add_up_to_a_lockout(
    instances: tuple[ServerProcess, ServerProcess],
    pg: Engine,
    check_twiml: Callable[[str], None],
) -> None:
    a, b = instances
    uid, caller = "40000001", "+15005550401"
    add_account(pg, uid, caller)
    clear_queue(pg)

    def attempt(backends: list[str], pins: list[str]) -> CallRecord:
        phone, _ = phone_via(backends, check_twiml)
        answers: list[Answer] = [Press("1"), Press("1")]
        for pin in pins:
            answers += [Press(uid), Press(pin)]
        return phone.call(ScriptedParty(answers), from_number=caller)

    attempt([a.url], ["000001", "000002"])  # failures 1, 2 on A
    second = attempt([b.url], ["000003", "000004"])  # failures 3, 4 on B
    # The 5th failure (A or B) locks: then even the right PIN is not checked.
    third = attempt([a.url, b.url], ["000005", PIN])
    with pg.connect() as conn:
        rows = conn.execute(
            select(cases.c.flags, cases.c.queued)
            .where(cases.c.account_uid == uid)
            .order_by(cases.c.id)
        ).all()
        frozen = conn.execute(select(accounts.c.frozen).where(accounts.c.uid == uid)).scalar()
        failures = conn.execute(
            text("SELECT count(*) FROM verification_failures WHERE uid = :uid"), {"uid": uid}
        ).scalar()
    # Each call hung up waiting, and called again: one call back in line for the number, the
    # latest call's (locked out of verifying), in the first one's place.
    assert [(r.flags["verified"], r.queued) for r in rows] == [
        ("no", 0),
        ("no", 0),
        ("locked", 1),
    ]
    assert second.queue == third.queue == "security"
    assert not any("freeze" in line and "protective" in line for line in third.heard)
    assert frozen == 0
    assert failures >= 5


def test_the_same_webhook_delivered_to_both_instances_at_once_counts_once(
    instances: tuple[ServerProcess, ServerProcess],
    pg: Engine,
    check_twiml: Callable[[str], None],
) -> None:
    a, b = instances
    clear_queue(pg)
    sid = "CA" + "e" * 32
    phone, _ = phone_via([a.url], check_twiml)
    base = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": "+15005550402"}
    first = phone.signed_post(PUBLIC_URL + "/twilio/voice", {**base, "CallStatus": "ringing"})
    language = re.search(r'action="([^"]+)"', first.text)
    assert first.status_code == 200 and language
    english = phone.signed_post(language.group(1).replace("&amp;", "&"), {**base, "Digits": "1"})
    menu = re.search(r'action="([^"]+)"', english.text)
    assert english.status_code == 200 and menu
    action = menu.group(1).replace("&amp;", "&")
    # Twilio delivers "0" (an agent) four times, two copies to each instance, all at once.
    phones = [phone_via([server.url], check_twiml)[0] for server in (a, b, a, b)]
    barrier = threading.Barrier(len(phones))
    answers: list[httpx.Response] = []

    def deliver(p: Phone) -> None:
        barrier.wait(timeout=30)
        answers.append(p.signed_post(action, {**base, "Digits": "0"}))

    threads = [threading.Thread(target=deliver, args=(p,)) for p in phones]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert [r.status_code for r in answers] == [200] * 4
    assert len({r.text for r in answers}) == 1 and "<Enqueue" in answers[0].text
    check_twiml(answers[0].text)
    with pg.connect() as conn:
        step = conn.execute(select(calls.c.step).where(calls.c.call_sid == sid)).scalar()
        opened = conn.execute(
            text("SELECT count(*) FROM cases WHERE call_sid = :sid"), {"sid": sid}
        ).scalar()
        events = conn.execute(
            select(call_events.c.step, call_events.c.kind, call_events.c.node)
            .where(call_events.c.call_sid == sid)
            .order_by(call_events.c.id)
        ).all()
    # One step taken (voice 1, language 2, the agent 3), logged once, one case.
    assert (step, opened) == (3, 1)
    assert max(e.step for e in events) == 3
    assert len(events) == len(set(events))


# -- settings that must match, compared between instances --------------------------------------


def test_an_instance_started_with_another_setting_is_named_by_every_instance(
    instances: tuple[ServerProcess, ServerProcess],
    pg_database_url: str,
    tmp_path: Path,
) -> None:
    """Behind a balancer, an instance with another IVR_OFFER_TIMEOUT gives every caller a
    different rule on some of their requests, and nothing else would say why. The new one and
    those already serving name the setting (never its value) in their logs as an error, once;
    one that may differ (IVR_TREE_SYNC) is not named; once it stops, the others say they
    agree again."""
    a, b = instances
    env = {**a.env, "IVR_OFFER_TIMEOUT": "900", "IVR_TREE_SYNC": "0.5"}
    c = ServerProcess("c", env, tmp_path)
    with serving(c):
        said = eventually(lambda: _disagree_lines(c.log()))
        [line] = said
        assert "IVR_OFFER_TIMEOUT differs on" in line and "IVR_TREE_SYNC" not in line
        assert f"(pid {a.proc.pid})" in line and f"(pid {b.proc.pid})" in line  # type: ignore[union-attr]
        assert "900" not in line.split("differs on", 1)[1] and "600" not in line
        for instance in (a, b):  # within its IVR_TREE_SYNC (5 s)
            [seen] = eventually(lambda i=instance: _disagree_lines(i.log()))
            assert f"IVR_OFFER_TIMEOUT differs on {socket.gethostname()} (pid {c.proc.pid})" in seen  # type: ignore[union-attr]
            assert "ERROR" in seen
    for instance in (a, b):  # C's row is of a stopped instance after 3 of its IVR_TREE_SYNC
        eventually(lambda i=instance: "the instances' settings agree again" in i.log())
    assert len(_disagree_lines(a.log())) == 1  # said once, not every IVR_TREE_SYNC


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "ivr.sqlite3"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


def test_digests_change_with_what_must_match_and_only_that(tmp_path: Path) -> None:
    """A digest per setting that must match: another value of one changes its digest alone;
    one that may differ, the database's URL, or the same files at another path changes
    none; the prompts' files changed do. No value is in them, secrets least of all."""
    prompts = tmp_path / "prompts"
    shutil.copytree(PROJECT_ROOT / "prompts", prompts)
    base = instances_module.digests(make_settings(IVR_PROMPTS=str(PROJECT_ROOT / "prompts")))
    assert set(base) & instances_module.MAY_DIFFER == set()
    assert "IVR_DATABASE_URL" not in base and {"TWILIO_AUTH_TOKEN", "IVR_PROMPTS"} <= set(base)
    assert not {TOKEN, SECRET_KEY, "600"} & set(base.values())
    # A secret's is slow to try words against (PBKDF2), not a plain SHA-256 of it.
    plain = hashlib.sha256(b"ivr.instances:TWILIO_AUTH_TOKEN\0" + json.dumps(TOKEN).encode())
    assert base["TWILIO_AUTH_TOKEN"] != plain.hexdigest()[: instances_module.DIGEST_CHARS]
    assert all(len(d) == instances_module.DIGEST_CHARS for d in base.values())

    def changed(**overrides: object) -> set[str]:
        found = instances_module.digests(make_settings(**overrides))
        return {k for k in base.keys() | found.keys() if base.get(k) != found.get(k)}

    assert changed(IVR_PROMPTS=str(PROJECT_ROOT / "prompts")) == set()
    assert changed(IVR_OFFER_TIMEOUT=900) == {"IVR_OFFER_TIMEOUT"}
    assert changed(TWILIO_AUTH_TOKEN="f" * 31 + "e") == {"TWILIO_AUTH_TOKEN"}
    assert changed(IVR_TREE_SYNC=0.5, IVR_LOG_FORMAT="text", IVR_DB_POOL_SIZE=9) == set()
    assert changed(IVR_DATABASE_URL="sqlite:////elsewhere.sqlite3") == set()
    assert changed(IVR_PROMPTS=str(prompts)) == set()  # the same files elsewhere
    catalog = next(p for p in sorted(prompts.rglob("*")) if p.is_file())
    catalog.write_text(catalog.read_text() + "\n# edited on this instance only\n")
    assert changed(IVR_PROMPTS=str(prompts)) == {"IVR_PROMPTS"}
    assert changed(IVR_PROMPTS=str(tmp_path / "nowhere")) == {"IVR_PROMPTS"}


def test_the_queue_page_tells_supervisors_which_settings_differ(
    sqlite_url: str,
    hotline_tree: CompiledTree,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    """Another instance alive with another IVR_MAX_WAIT: the supervisor's queue page names the
    setting and the instance, an agent's does not; an instance that stopped writing its row
    (three of its IVR_TREE_SYNC) no longer counts, and a day later its row is gone."""
    clock = FakeClock()
    settings = make_settings(IVR_DATABASE_URL=sqlite_url)
    app = create_app(settings, tree=hotline_tree, clock=clock)
    hotline = app.state.hotline
    other = instances_module.Me(
        digests={**instances_module.digests(settings), "IVR_MAX_WAIT": "0" * 16},
        every=10.0,
        started_at=clock(),
        host="web-2",
        pid=4242,
    )
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        assert hotline.compare_instances() == []
        with hotline.db.connect() as conn:
            instances_module.compare(conn, me=other, now=clock())
        sam = make_user(hotline.db, "sam", "supervisor")
        ann = make_user(hotline.db, "ann", "agent")
        with caplog.at_level(logging.INFO, logger="ivr"):
            [found] = hotline.compare_instances()
            assert hotline.compare_instances() == [found]
        assert (found.setting, found.instances) == ("IVR_MAX_WAIT", ("web-2 (pid 4242)",))
        [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert error.endswith("IVR_MAX_WAIT differs on web-2 (pid 4242)")
        client.post("/dashboard/login", data={"token": sam}, follow_redirects=False)
        shown = client.get("/dashboard/queue/rows").text
        assert "The instances' settings disagree" in shown
        assert '<span class="mono">IVR_MAX_WAIT</span> differs on web-2 (pid 4242)' in shown
        client.post("/dashboard/login", data={"token": ann}, follow_redirects=False)
        assert "settings disagree" not in client.get("/dashboard/queue/rows").text

        # A prompts file edited here (and reloaded): this instance's row says so at once.
        before = hotline.me.digests["IVR_PROMPTS"]
        hotline.settings = hotline.settings.model_copy(update={"prompts_dir": tmp_path})
        assert [d.setting for d in hotline.compare_instances()] == ["IVR_MAX_WAIT", "IVR_PROMPTS"]
        assert hotline.me.digests["IVR_PROMPTS"] != before
        hotline.settings = settings
        assert hotline.compare_instances() == [found]
        clock.advance(seconds=30)  # web-2 writes every 10 s: alive until 30 s after
        assert hotline.compare_instances() == [found]
        clock.advance(seconds=1)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="ivr"):
            assert hotline.compare_instances() == []
        assert "the instances' settings agree again" in caplog.text
        clock.advance(days=1)
        hotline.compare_instances()
    with hotline.db.connect() as conn:
        assert conn.execute(select(db_instances.c.host)).scalars().all() == [socket.gethostname()]


def _disagree_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "instances disagree on settings" in line]


# -- the pool settings that matter with several instances ----------------------------------------


def test_pool_size_and_overflow_come_from_the_settings(pg_database_url: str) -> None:
    settings = make_settings(
        IVR_DATABASE_URL=pg_database_url, IVR_DB_POOL_SIZE=3, IVR_DB_MAX_OVERFLOW=0
    )
    engine = engine_from_settings(settings)
    try:
        assert engine.pool.size() == 3  # type: ignore[attr-defined]
        held = [engine.connect() for _ in range(3)]
        with pytest.raises(Exception, match="QueuePool limit of size 3 overflow 0"):
            engine.connect()
        for conn in held:
            conn.close()
    finally:
        engine.dispose()
    defaults = make_settings()
    assert (defaults.db_pool_size, defaults.db_max_overflow) == (5, 10)


@pytest.mark.parametrize(
    ("name", "value"),
    [("IVR_DB_POOL_SIZE", "0"), ("IVR_DB_MAX_OVERFLOW", "-1"), ("IVR_DB_POOL_SIZE", "many")],
)
def test_bad_pool_settings_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("IVR_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings(_env_file=None)


def test_a_pool_too_small_for_a_verifying_webhook_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("IVR_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.setenv("IVR_DB_POOL_SIZE", "1")
    monkeypatch.setenv("IVR_DB_MAX_OVERFLOW", "0")
    with pytest.raises(ConfigError, match="at least 2"):
        load_settings(_env_file=None)
    monkeypatch.setenv("IVR_DB_MAX_OVERFLOW", "1")
    assert load_settings(_env_file=None).db_pool_size == 1


def test_pooled_connections_detect_a_dead_database_host(pg: Engine) -> None:
    """Keepalives and TCP_USER_TIMEOUT on every webhook connection: a database host that
    vanished without a reset is noticed in seconds, not after minutes of retransmissions."""
    with pg.connect() as conn:
        fd = conn.connection.driver_connection.pgconn.socket  # type: ignore[union-attr]
        sock = socket.socket(fileno=os.dup(fd))
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 5
            assert sock.getsockopt(socket.IPPROTO_TCP, 18) == 9000  # TCP_USER_TIMEOUT
        finally:
            sock.close()


def test_the_app_sizes_its_pool_from_the_settings(pg_database_url: str) -> None:
    from ivr.web import create_app

    settings = make_settings(
        IVR_DATABASE_URL=pg_database_url, IVR_DB_POOL_SIZE=2, IVR_DB_MAX_OVERFLOW=0
    )
    app = create_app(settings)
    engine: Engine = app.state.hotline.db
    try:
        assert engine.pool.size() == 2  # type: ignore[attr-defined]
        assert engine.pool._max_overflow == 0  # type: ignore[attr-defined]
    finally:
        engine.dispose()
