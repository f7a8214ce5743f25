"""The case queue: serving order, claims under concurrency, requeue and callbacks; the agent API."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, event, insert, select, update

from ivr import cases, store
from ivr.db import accounts, audit_log, calls, users
from ivr.engine import CallState, OpenCase
from ivr.identity import LocalAccountActions, LocalDirectory
from ivr.settings import Settings
from ivr.tree import CompiledTree
from ivr.web import create_app
from tests.conftest import HTTPS_CLIENT, FakeClock, bearer, make_user

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)


def sid(n: int) -> str:
    return f"CA{n:032d}"


def add_case(
    db: Engine,
    n: int,
    priority: str,
    at: datetime,
    *,
    uid: str | None = None,
    caller: str | None = "+15005550006",
    language: str | None = None,
) -> int:
    """Open case number `n` (its call is sid(n)) as the hotline does, in a transaction."""
    spec = OpenCase(
        ticket=str(1_000_000 + n),
        queue="support",
        priority=priority,
        reason="account_access",
        flags={"uid": uid, "verified": "yes"} if uid else {},
        path=["main", "access"],
    )
    with db.begin() as conn:
        key = conn.execute(
            cases.open_case(
                spec, call_sid=sid(n), caller=caller, risk={}, now=at, language=language
            )
        ).inserted_primary_key
    assert key is not None
    case_id: int = key[0]
    return case_id


def agent_id(db: Engine, name: str = "ana") -> int:
    token = make_user(db, name, "agent", "+15005550100")
    with db.connect() as conn:
        user = cases.user_by_token(conn, token=token)
    assert user is not None
    return user.id


def waiting_ids(db: Engine) -> list[int]:
    with db.connect() as conn:
        return [r["id"] for r in cases.waiting_cases(conn)]


def claim(db: Engine, agent: int, now: datetime = T0) -> dict[str, Any] | None:
    with db.connect() as conn:
        return cases.claim_next(conn, agent_id=agent, now=now)


def claim_all(db: Engine, agent: int) -> list[int]:
    out = []
    while (row := claim(db, agent)) is not None:
        out.append(row["id"])
    return out


def position(db: Engine, n: int) -> int | None:
    with db.connect() as conn:
        view = cases.case_for_call(conn, call_sid=sid(n), now=T0)
    assert view is not None
    return view.position


def get(db: Engine, case_id: int) -> dict[str, Any]:
    with db.connect() as conn:
        row = cases.get_case(conn, case_id=case_id)
    assert row is not None
    return row


# -- serving order --------------------------------------------------------------------------------


def test_open_case_row(db: Engine) -> None:
    case_id = add_case(db, 1, "high", T0, uid="10000001", caller="+15005551234")
    row = get(db, case_id)
    assert row["ticket"] == "1000001"
    assert row["call_sid"] == sid(1)
    assert row["account_uid"] == "10000001"
    assert row["caller"] == "+15005551234"
    assert (row["status"], row["queued"], row["lane"]) == ("waiting", 1, 1)
    assert row["created_at"] == T0
    assert row["sort_at"] == T0 - cases.HIGH_BOOST
    assert row["flags"] == {"uid": "10000001", "verified": "yes"}
    assert row["path"] == ["main", "access"]


def test_emergency_arriving_last_is_served_first(db: Engine) -> None:
    agent = agent_id(db)
    normal = add_case(db, 1, "normal", T0)
    high = add_case(db, 2, "high", T0 + MINUTE)
    emergency = add_case(db, 3, "emergency", T0 + 30 * MINUTE)
    assert waiting_ids(db) == [emergency, high, normal]
    assert claim_all(db, agent) == [emergency, high, normal]


def test_emergencies_among_themselves_first_come_first_served(db: Engine) -> None:
    agent = agent_id(db)
    later = add_case(db, 1, "emergency", T0 + MINUTE)
    earlier = add_case(db, 2, "emergency", T0)
    assert claim_all(db, agent) == [earlier, later]


def test_high_counts_high_boost_earlier(db: Engine) -> None:
    agent = agent_id(db)
    boost = cases.HIGH_BOOST
    old_normal = add_case(db, 1, "normal", T0)  # will have waited more than the boost
    new_normal = add_case(db, 2, "normal", T0 + 5 * MINUTE)
    high = add_case(db, 3, "high", T0 + boost + MINUTE)
    assert waiting_ids(db) == [old_normal, high, new_normal]
    assert claim_all(db, agent) == [old_normal, high, new_normal]


def test_high_just_inside_the_boost_goes_first(db: Engine) -> None:
    agent = agent_id(db)
    normal = add_case(db, 1, "normal", T0)
    high = add_case(db, 2, "high", T0 + cases.HIGH_BOOST - timedelta(seconds=1))
    assert claim_all(db, agent) == [high, normal]


def test_equal_sort_time_goes_by_arrival(db: Engine) -> None:
    agent = agent_id(db)
    normal = add_case(db, 1, "normal", T0)
    high = add_case(db, 2, "high", T0 + cases.HIGH_BOOST)  # same sort_at
    assert claim_all(db, agent) == [normal, high]


def test_waiting_order_and_positions_match_the_claim_order(db: Engine) -> None:
    agent = agent_id(db)
    specs = [
        ("normal", 0),
        ("high", 3),
        ("normal", 4),
        ("emergency", 20),
        ("high", 25),
        ("normal", 26),
        ("emergency", 2),
        ("normal", 15),
        ("high", 10),  # counts as arrived at 0: the same moment as the first, served after it
        ("emergency", 20),  # two emergencies at one moment: by arrival
    ]
    assert cases.HIGH_BOOST == 10 * MINUTE
    ids = {n: add_case(db, n, p, T0 + m * MINUTE) for n, (p, m) in enumerate(specs, start=1)}
    by_id = {case_id: n for n, case_id in ids.items()}
    order = waiting_ids(db)
    assert sorted(order) == sorted(ids.values())
    # Each call's place in line is its index in the waiting list.
    assert [position(db, by_id[case_id]) for case_id in order] == list(range(1, len(order) + 1))

    first = claim(db, agent)
    assert first is not None and first["id"] == order[0]
    assert position(db, by_id[order[0]]) is None  # not waiting any more
    assert [position(db, by_id[case_id]) for case_id in order[1:]] == list(range(1, len(order)))
    assert claim_all(db, agent) == order[1:]


def test_call_backs_held_back_are_not_ahead_of_a_caller_until_their_retry_time(
    db: Engine,
) -> None:
    """A caller on the line hears their place among the cases agents will be offered before
    them: a call back nobody answered, waiting for its retry time, is not one of those yet."""
    agent = agent_id(db)
    early, held, later = (add_case(db, n, "normal", T0 + n * MINUTE) for n in (1, 2, 3))
    live = 4
    live_case = add_case(db, live, "normal", T0 + 4 * MINUTE)
    retry = T0 + 30 * MINUTE
    with db.begin() as conn:
        conn.execute(
            cases.cases.update().where(cases.cases.c.id.in_([held, later])).values(not_before=retry)
        )
    now = retry - MINUTE
    with db.connect() as conn:
        view = cases.case_for_call(conn, call_sid=sid(live), now=now)
    assert view is not None and view.position == 2  # only `early` is offered before them
    first = claim(db, agent, now)
    assert first is not None and first["id"] == early
    with db.connect() as conn:
        view = cases.case_for_call(conn, call_sid=sid(live), now=now)
        assert view is not None and view.position == 1
        # At the retry time the call backs are offered again, in their old places: ahead.
        view = cases.case_for_call(conn, call_sid=sid(live), now=retry)
        assert view is not None and view.position == 3
    served = [claim(db, agent, retry) for _ in range(3)]
    assert [c["id"] for c in served if c] == [held, later, live_case]


def test_a_resolved_ticket_followed_up_and_still_open_is_found_as_its_follow_up(
    db: Engine,
) -> None:
    """Resolved, then its caller said at the survey they were not done: their ticket finds
    the follow-up's state (in line), not "resolved"; once that is resolved too, resolved."""
    first = add_case(db, 1, "normal", T0)
    with db.connect() as conn:
        assert cases.resolve(conn, case_id=first, notes="done", now=T0, status="waiting")
    spec = OpenCase("2000001", "payments", "high", "deposits", {}, [], parent_ticket="1000001")
    with db.begin() as conn:
        conn.execute(cases.open_case(spec, call_sid=sid(1), caller=None, risk={}, now=T0))
    with db.connect() as conn:
        found = cases.find_ticket(conn, ticket="1000001")
        assert found is not None
        assert (found.ticket, found.status, found.queue, found.priority) == (
            "1000001",
            "waiting",
            "payments",
            "high",
        )
        conn.execute(
            update(cases.cases).where(cases.cases.c.ticket == "2000001").values(status="resolved")
        )
        conn.commit()
        found = cases.find_ticket(conn, ticket="1000001")
    assert found is not None and (found.status, found.queue) == ("resolved", "support")


def test_case_for_call_is_the_newest_case_of_the_call(db: Engine) -> None:
    add_case(db, 1, "normal", T0)
    spec = OpenCase("2000001", "support", "normal", "lost_2fa", {}, [], parent_ticket="1000001")
    with db.begin() as conn:
        key = conn.execute(
            cases.open_case(spec, call_sid=sid(1), caller=None, risk={}, now=T0 + MINUTE)
        ).inserted_primary_key
    assert key is not None
    newer = key[0]
    with db.connect() as conn:
        view = cases.case_for_call(conn, call_sid=sid(1), now=T0)
        assert cases.case_for_call(conn, call_sid=sid(99), now=T0) is None
    assert view is not None
    assert view.row["id"] == newer and view.row["parent_ticket"] == "1000001"
    assert view.position == 2


def test_waiting_cases_limit(db: Engine) -> None:
    ids = [add_case(db, n, "normal", T0 + n * MINUTE) for n in range(5)]
    with db.connect() as conn:
        assert [r["id"] for r in cases.waiting_cases(conn, limit=3)] == ids[:3]


# -- claims ---------------------------------------------------------------------------------------


def test_claim_marks_the_case_offered(db: Engine) -> None:
    agent = agent_id(db)
    case_id = add_case(db, 1, "normal", T0)
    claimed = claim(db, agent, T0 + MINUTE)
    assert claimed is not None
    assert claimed["id"] == case_id and claimed["claimed_from"] == "waiting"
    row = get(db, case_id)
    assert (row["status"], row["queued"], row["agent_id"]) == ("offered", 0, agent)
    assert row["offered_at"] == T0 + MINUTE
    assert claim(db, agent) is None
    assert waiting_ids(db) == []


def test_claim_on_an_empty_queue_is_none(db: Engine) -> None:
    assert claim(db, agent_id(db)) is None


CASES = 40
CLAIMERS = 8


def test_each_case_is_claimed_exactly_once_by_concurrent_agents(db: Engine) -> None:
    agents = [agent_id(db, f"agent{k}") for k in range(CLAIMERS)]
    ids = [
        add_case(db, n, ("normal", "high", "emergency")[n % 3], T0 + n * MINUTE)
        for n in range(CASES)
    ]
    start = threading.Barrier(CLAIMERS)

    def claimer(agent: int) -> list[tuple[int, int]]:
        got = []
        with db.connect() as conn:
            start.wait(timeout=10)
            while (row := cases.claim_next(conn, agent_id=agent, now=T0)) is not None:
                got.append((row["id"], row["agent_id"]))
        return got

    with ThreadPoolExecutor(CLAIMERS) as pool:
        results = list(pool.map(claimer, agents))

    claimed = [case_id for got in results for case_id, _ in got]
    assert len(claimed) == len(set(claimed)) == CASES
    assert sorted(claimed) == sorted(ids)
    # Each claimer was told it got the case, and the row agrees.
    for agent, got in zip(agents, results, strict=True):
        for case_id, told in got:
            assert told == agent
            assert get(db, case_id)["agent_id"] == agent
    assert waiting_ids(db) == []


# -- requeue, abandon, callback -------------------------------------------------------------------


def test_a_case_moved_in_line_takes_the_place_of_its_arrival_at_that_priority(
    db: Engine,
) -> None:
    """Moved, a case stands where it would had it arrived at the new priority when it did:
    high is 10 minutes earlier than its arrival (ahead of a normal case 5 minutes older),
    normal is its arrival, emergency is first. Moved back, it is where it was."""
    older = add_case(db, 1, "normal", T0)
    later = add_case(db, 2, "high", T0 + 5 * MINUTE)
    newest = add_case(db, 3, "normal", T0 + 6 * MINUTE)
    assert waiting_ids(db) == [later, older, newest]

    def move(case_id: int, to: str) -> tuple[str, str] | None:
        with db.connect() as conn:
            return cases.set_priority(
                conn,
                case_id=case_id,
                priority=to,
                supervisor="supervisor:sam",
                why="test",
                now=T0 + 7 * MINUTE,
            )

    assert move(later, "normal") == ("high", "normal")
    assert waiting_ids(db) == [older, later, newest]
    assert move(newest, "high") == ("normal", "high")
    assert waiting_ids(db) == [newest, older, later]
    assert move(later, "high") == ("normal", "high")
    assert waiting_ids(db) == [later, newest, older]
    assert get(db, later)["sort_at"] == T0 - 5 * MINUTE
    assert move(older, "emergency") == ("normal", "emergency")
    assert waiting_ids(db) == [older, later, newest]
    assert get(db, older)["flags"]["priority_set_by"] == "supervisor:sam"
    claimed = claim(db, agent_id(db))
    assert claimed is not None and claimed["id"] == older
    assert move(older, "normal") is None  # an agent has it now


def test_requeue_puts_a_claimed_case_back_in_its_place(db: Engine) -> None:
    agent = agent_id(db)
    a = add_case(db, 1, "normal", T0)
    b = add_case(db, 2, "normal", T0 + MINUTE)
    c = add_case(db, 3, "normal", T0 + 2 * MINUTE)
    claimed = claim(db, agent)
    assert claimed is not None and claimed["id"] == a
    assert waiting_ids(db) == [b, c]
    with db.connect() as conn:
        assert cases.requeue(conn, case_id=a) is True
        assert cases.requeue(conn, case_id=a) is False  # waiting already
        assert cases.requeue(conn, case_id=999) is False
    assert waiting_ids(db) == [a, b, c]
    assert position(db, 1) == 1
    row = get(db, a)
    assert (row["status"], row["queued"], row["agent_id"], row["offered_at"]) == (
        "waiting",
        1,
        None,
        None,
    )
    assert claim_all(db, agent) == [a, b, c]


def claimed_call_back(db: Engine, gone: str) -> tuple[int, int, dict[str, Any] | None]:
    """An agent, a case whose caller asked for a call back or hung up waiting (`gone`), and
    what the agent got on asking for the next case."""
    agent = agent_id(db)
    a = add_case(db, 1, "normal", T0)
    with db.connect() as conn:
        if gone == "callback_requested":
            assert cases.request_callback(conn, call_sid=sid(1), number="+15005550042", now=T0)
        else:
            assert cases.abandon_for_call(conn, call_sid=sid(1), now=T0) == 1
    return agent, a, claim(db, agent)


@pytest.mark.parametrize("gone", ["callback_requested", "abandoned"])
def test_requeue_keeps_a_call_back_case_a_call_back(db: Engine, gone: str) -> None:
    agent, a, claimed = claimed_call_back(db, gone)
    assert claimed is not None and claimed["claimed_from"] == gone
    with db.connect() as conn:
        assert cases.requeue(conn, case_id=a) is True  # the agent's phone did not answer
    assert get(db, a)["status"] == gone
    again = claim(db, agent)
    assert again is not None
    assert again["id"] == a and again["claimed_from"] == gone


def test_requeue_from_connected(db: Engine) -> None:
    agent = agent_id(db)
    a = add_case(db, 1, "normal", T0)
    assert claim(db, agent) is not None
    with db.connect() as conn:
        assert cases.set_status(conn, case_id=a, status="connected", now=T0 + MINUTE)
        assert get(db, a)["connected_at"] == T0 + MINUTE
        assert cases.requeue(conn, case_id=a) is True
    row = get(db, a)
    assert (row["status"], row["queued"], row["connected_at"]) == ("waiting", 1, None)


def test_requeue_does_not_reopen_a_resolved_case(db: Engine) -> None:
    a = add_case(db, 1, "normal", T0)
    with db.connect() as conn:
        assert cases.set_status(conn, case_id=a, status="resolved", now=T0, queued=0)
        assert cases.requeue(conn, case_id=a) is False
    assert waiting_ids(db) == []


def test_abandoned_case_stays_claimable_in_its_place(db: Engine) -> None:
    agent = agent_id(db)
    a = add_case(db, 1, "normal", T0)
    b = add_case(db, 2, "normal", T0 + MINUTE)
    claimed = claim(db, agent)
    assert claimed is not None and claimed["id"] == a
    hung_up = T0 + 3 * MINUTE
    with db.connect() as conn:
        assert cases.abandon_for_call(conn, call_sid=sid(1), now=hung_up) == 1
        assert cases.abandon_for_call(conn, call_sid=sid(99), now=hung_up) == 0
    row = get(db, a)
    assert (row["status"], row["queued"], row["agent_id"]) == ("abandoned", 1, None)
    assert row["ended_at"] == hung_up
    assert waiting_ids(db) == [a, b]
    again = claim(db, agent)
    assert again is not None
    assert again["id"] == a and again["claimed_from"] == "abandoned"
    assert again["status"] == "offered"


def test_abandon_while_waiting_keeps_the_place(db: Engine) -> None:
    a = add_case(db, 1, "normal", T0)
    b = add_case(db, 2, "normal", T0 + MINUTE)
    with db.connect() as conn:
        assert cases.abandon_for_call(conn, call_sid=sid(2), now=T0 + 2 * MINUTE) == 1
        # An abandoned case is not abandoned twice, nor is a resolved one.
        assert cases.abandon_for_call(conn, call_sid=sid(2), now=T0 + 3 * MINUTE) == 0
        assert cases.set_status(conn, case_id=a, status="resolved", now=T0, queued=0)
        assert cases.abandon_for_call(conn, call_sid=sid(1), now=T0 + 3 * MINUTE) == 0
    assert get(db, b)["status"] == "abandoned"
    assert get(db, a)["status"] == "resolved"
    assert waiting_ids(db) == [b]


def test_request_callback_only_from_waiting(db: Engine) -> None:
    agent = agent_id(db)
    a = add_case(db, 1, "normal", T0)
    b = add_case(db, 2, "normal", T0 + MINUTE)
    c = add_case(db, 3, "normal", T0 + 2 * MINUTE)
    with db.connect() as conn:
        assert cases.request_callback(conn, call_sid=sid(2), number="+15005550042", now=T0)
        # Asked already: not again (the number stays the first one).
        assert not cases.request_callback(conn, call_sid=sid(2), number="+15005550043", now=T0)
        assert not cases.request_callback(conn, call_sid=sid(99), number="+1", now=T0)
    row = get(db, b)
    assert (row["status"], row["queued"], row["callback_number"]) == (
        "callback_requested",
        1,
        "+15005550042",
    )
    assert waiting_ids(db) == [a, b, c]  # keeps its place
    assert position(db, 2) == 2

    first = claim(db, agent)
    assert first is not None and first["id"] == a
    with db.connect() as conn:
        # Offered to an agent: too late to ask for a call back.
        assert not cases.request_callback(conn, call_sid=sid(1), number="+15005550044", now=T0)
    assert get(db, a)["status"] == "offered"
    second = claim(db, agent)
    assert second is not None
    assert second["id"] == b and second["claimed_from"] == "callback_requested"
    assert second["callback_number"] == "+15005550042"


# -- users ----------------------------------------------------------------------------------------


def test_users_tokens_are_stored_hashed(db: Engine) -> None:
    token = make_user(db, "sam", "supervisor")
    with db.connect() as conn:
        user = cases.user_by_token(conn, token=token)
        assert cases.user_by_token(conn, token=token + "x") is None
        stored = conn.execute(select(users.c.token_hash)).scalar_one()
    assert user is not None and (user.name, user.role) == ("sam", "supervisor")
    assert token not in stored
    with pytest.raises(ValueError):
        make_user(db, "sam", "agent")
    with pytest.raises(ValueError):
        make_user(db, "root", "admin")


def test_a_revoked_user_is_shut_out_and_their_offers_go_back_in_line(
    client: TestClient, db: Engine
) -> None:
    token = make_user(db, "ana", "agent")
    other = make_user(db, "bo", "agent")
    add_case(db, 1, "emergency", T0)
    add_case(db, 2, "normal", T0)
    claimed = client.post("/api/agents/next", headers=bearer(token))
    assert claimed.status_code == 200 and claimed.json()["case"]["id"] == 1  # offered to ana
    with db.connect() as conn:
        assert cases.revoke_user(conn, name="ana", now=T0 + MINUTE) == 1
        assert cases.user_by_token(conn, token=token) is None
        listed = {u["name"]: u for u in cases.list_users(conn, now=T0)}
        with pytest.raises(ValueError, match="no user named 'nobody'"):
            cases.revoke_user(conn, name="nobody", now=T0)
    assert listed["ana"]["revoked_at"] == T0 + MINUTE and listed["bo"]["revoked_at"] is None
    assert all("token" not in key for user in listed.values() for key in user)
    assert client.get("/api/queue", headers=bearer(token)).status_code == 401
    # The emergency she was offered is first in line again, for the next agent.
    assert client.post("/api/agents/next", headers=bearer(other)).json()["case"]["id"] == 1


def test_a_new_token_voids_the_old_one_and_lifts_a_revocation(
    client: TestClient, db: Engine
) -> None:
    old = make_user(db, "ana", "agent")
    with db.connect() as conn:
        cases.revoke_user(conn, name="ana", now=T0)
        new = cases.reissue_token(conn, name="ana")
        with pytest.raises(ValueError, match="no user named 'nobody'"):
            cases.reissue_token(conn, name="nobody")
        assert cases.user_by_token(conn, token=old) is None
        user = cases.user_by_token(conn, token=new)
        [listed] = cases.list_users(conn, now=T0)
    assert user is not None and user.name == "ana" and listed["revoked_at"] is None
    assert client.get("/api/queue", headers=bearer(old)).status_code == 401
    assert client.get("/api/queue", headers=bearer(new)).status_code == 200


# -- the API over HTTP ----------------------------------------------------------------------------

ROUTES: list[tuple[str, str, dict[str, str] | None]] = [
    ("GET", "/api/queue", None),
    ("POST", "/api/agents/next", None),
    ("POST", "/api/cases/1/freeze", {"reason": "caller reports a stolen phone"}),
    ("POST", "/api/cases/1/resolve", {"notes": "done"}),
    ("POST", "/api/cases/1/requeue", {"reason": "wrong language"}),
]


# The audit entries of an agent's desk (asking for a case, accepting one, signing out): the
# tests of what is done to a case leave them out.
not_desk = audit_log.c.action.not_in((cases.TAKE, cases.ACCEPT, cases.SIGN_OUT))


def call(
    client: TestClient, method: str, url: str, body: dict[str, str] | None, token: str | None
) -> Any:
    headers = bearer(token) if token is not None else {}
    return client.request(method, url, json=body, headers=headers)


@pytest.mark.parametrize(("method", "url", "body"), ROUTES)
def test_api_without_a_token_is_401(
    client: TestClient, method: str, url: str, body: dict[str, str] | None
) -> None:
    r = call(client, method, url, body, None)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "url", "body"), ROUTES)
def test_api_with_a_garbage_token_is_401(
    client: TestClient, db: Engine, method: str, url: str, body: dict[str, str] | None
) -> None:
    token = make_user(db, "ana", "agent")
    for headers in (
        bearer("not-a-token"),
        bearer(token + "x"),
        {"Authorization": f"Basic {token}"},
        {"Authorization": "Bearer "},
        {"Authorization": token},
    ):
        r = client.request(method, url, json=body, headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "url", "body"), ROUTES)
def test_api_operator_is_403_everywhere(
    client: TestClient, db: Engine, method: str, url: str, body: dict[str, str] | None
) -> None:
    add_case(db, 1, "normal", T0, uid="10000001")
    token = make_user(db, "olga", "operator")
    assert call(client, method, url, body, token).status_code == 403
    assert waiting_ids(db) != []  # nothing was claimed or resolved


def test_api_supervisor_sees_the_queue_but_does_not_serve_callers(
    client: TestClient, db: Engine
) -> None:
    case_id = add_case(db, 1, "normal", T0, uid="10000001")
    token = make_user(db, "sam", "supervisor")
    r = call(client, "GET", "/api/queue", None, token)
    assert r.status_code == 200
    assert [e["case_id"] for e in r.json()] == [case_id]
    for method, url, body in ROUTES[1:3]:  # taking a case, freezing an account
        assert call(client, method, url, body, token).status_code == 403, url
    for method, url, body in ROUTES[3:]:  # a waiting caller is neither resolved nor requeued
        assert call(client, method, url, body, token).status_code == 409, url
    row = get(db, case_id)
    assert (row["status"], row["queued"]) == ("waiting", 1)


def test_api_next_on_an_empty_queue(client: TestClient, db: Engine) -> None:
    token = make_user(db, "ana", "agent")
    r = call(client, "POST", "/api/agents/next", None, token)
    assert r.status_code == 200
    assert r.json() == {"case": None, "connect": None}


def test_api_next_hands_out_the_first_case(client: TestClient, db: Engine) -> None:
    token = make_user(db, "ana", "agent")
    add_case(db, 1, "normal", T0, uid="10000001")
    first = add_case(db, 2, "emergency", T0 + MINUTE, uid="10000002")
    r = call(client, "POST", "/api/agents/next", None, token)
    assert r.status_code == 200
    body = r.json()
    assert body["case"]["id"] == first
    assert body["case"]["status"] == "offered"
    assert body["case"]["account_uid"] == "10000002"
    assert body["case"]["verification"]["result"] == "yes"
    assert body["connect"] == {"mode": "next_hold_poll", "number": None}
    assert get(db, first)["status"] == "offered"


def test_api_an_agent_has_one_case_at_a_time(client: TestClient, db: Engine) -> None:
    """One phone, one call: while an agent has a case (taken or connected), `next` says which
    and takes nothing, and the line stays as it was. Given back or closed, the next comes."""
    token = make_user(db, "ana", "agent")
    first = add_case(db, 1, "emergency", T0, uid="10000001")
    second = add_case(db, 2, "normal", T0)
    taken = call(client, "POST", "/api/agents/next", None, token).json()["case"]
    assert taken["id"] == first

    def refused(detail: str) -> None:
        answer = call(client, "POST", "/api/agents/next", None, token)
        assert answer.status_code == 409
        assert answer.json()["detail"] == f"you have case {taken['ticket']} {detail}"
        assert get(db, second)["queued"] == 1  # the line as it was

    refused(
        "still: resolve it once you have reached the caller, or give it back, then take the next"
    )
    with db.connect() as conn:
        assert cases.set_status(conn, case_id=first, status="connected", now=T0)
    refused("on the line: resolve it when you are done, then take the next")
    with db.connect() as conn:  # she hung up
        assert cases.agent_answered(conn, case_id=first, agent_id=None, now=T0 + MINUTE)
    closed = call(client, "POST", f"/api/cases/{first}/resolve", {"notes": "frozen"}, token)
    assert closed.status_code == 200, closed.text
    assert call(client, "POST", "/api/agents/next", None, token).json()["case"]["id"] == second


def test_one_agents_two_asks_at_once_take_one_case(db: Engine) -> None:
    """A double click, two tabs, two instances: one agent's asks for the next case at the same
    moment take turns, and the second finds the case the first took."""
    ana = agent_id(db)
    for n in range(4):
        add_case(db, n, "normal", T0 + n * MINUTE)

    def ask(barrier: threading.Barrier) -> tuple[dict[str, Any] | None, int | None]:
        with db.connect() as conn:
            barrier.wait(timeout=10)
            return cases.claim_if_free(conn, agent_id=ana, now=T0)

    for _ in range(10):
        together = threading.Barrier(2)
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(ask, [together, together]))
        taken = [case for case, _ in answers if case is not None]
        [case] = taken
        assert [holding for _, holding in answers if holding is not None] == [case["id"]]
        with db.connect() as conn:
            assert cases.held_by(conn, agent_id=ana) == [case["id"]]
            assert cases.requeue(conn, case_id=case["id"])  # back in line, for the next try


def test_api_queue_masks_caller_numbers(client: TestClient, db: Engine, clock: FakeClock) -> None:
    token = make_user(db, "ana", "agent")
    a = add_case(db, 1, "normal", clock.now - 90 * timedelta(seconds=1), caller="+15005551234")
    b = add_case(db, 2, "emergency", clock.now - MINUTE, caller="+442071838750")
    c = add_case(db, 3, "normal", clock.now, caller=None)
    r = call(client, "GET", "/api/queue", None, token)
    assert r.status_code == 200
    entries = r.json()
    assert [(e["position"], e["case_id"]) for e in entries] == [(1, b), (2, a), (3, c)]
    assert [e["caller"] for e in entries] == ["***8750", "***1234", ""]
    assert [e["waiting_seconds"] for e in entries] == [60, 90, 0]
    for number in ("5005551234", "2071838750", "15005551234"):
        assert number not in r.text


def test_a_number_holding_several_places_on_the_line_is_marked_not_turned_away(
    client: TestClient, db: Engine, clock: FakeClock
) -> None:
    """A dialer flooding the emergency lane from one number, or a caller on two phones:
    every call keeps its place (the thief may spoof the victim's own number, so turning one
    away could be turning the victim away), and each of them says how many places the
    number holds, for a supervisor to look at. A call back owed is not on the line."""
    token = make_user(db, "sam", "supervisor")
    flood = [
        add_case(db, n, "emergency", clock.now - n * MINUTE, caller="+15005550666")
        for n in (1, 2, 3)
    ]
    once = add_case(db, 4, "emergency", clock.now, caller="+15005550777")
    owed = add_case(db, 5, "normal", clock.now, caller="+15005550777")
    with db.connect() as conn:
        assert cases.abandon_for_call(conn, call_sid=sid(5), now=clock.now) == 1
        withheld_ = [add_case(db, n, "normal", clock.now, caller="+266696687") for n in (6, 7)]
        repeated = cases.repeated_callers(conn)
    assert repeated == [cases.Repeated("+15005550666", 3, 3)]  # not the withheld ones
    entries = {e["case_id"]: e for e in call(client, "GET", "/api/queue", None, token).json()}
    assert [entries[i]["same_number_on_the_line"] for i in flood] == [3, 3, 3]
    assert [entries[i]["same_number_on_the_line"] for i in (once, owed, *withheld_)] == [None] * 4
    assert "5005550666" not in str(entries)


def test_api_freeze_unknown_case_is_404(client: TestClient, db: Engine) -> None:
    token = make_user(db, "ana", "agent")
    r = call(client, "POST", "/api/cases/999/freeze", {"reason": "stolen phone"}, token)
    assert r.status_code == 404
    with db.connect() as conn:
        assert conn.execute(select(audit_log)).first() is None


def test_an_agent_freezes_the_account_they_found_for_a_caller_who_keyed_none(
    client: TestClient, db: Engine
) -> None:
    """A panicked victim skipped the account step: the agent finds the account with them and
    freezes it by its UID; the case learns it. Without one there is nothing to freeze."""
    token = make_user(db, "ana", "agent")
    LocalDirectory(db, None).add(
        uid="10000002", pin=None, id_last4=None, phone=None, totp_secret=None, now=T0
    )
    case_id = add_case(db, 1, "emergency", T0, uid=None)
    path = f"/api/cases/{case_id}/freeze"
    assert call(client, "POST", path, {"reason": "stolen phone"}, token).status_code == 409
    assert call(client, "POST", "/api/agents/next", None, token).json()["case"]["id"] == case_id
    r = call(client, "POST", path, {"reason": "stolen phone"}, token)
    assert r.status_code == 409 and "give it" in r.json()["detail"]
    for bad in ("", "10000002a", "1" * 33):
        body = {"reason": "stolen phone", "account_uid": bad}
        assert call(client, "POST", path, body, token).status_code == 422, bad
    with db.connect() as conn:
        assert conn.execute(select(audit_log).where(not_desk)).first() is None
    body = {"reason": "caller confirmed email and last deposit", "account_uid": "10000002"}
    r = call(client, "POST", path, body, token)
    assert r.status_code == 200 and r.json() == {"frozen": True, "detail": "frozen"}
    row = get(db, case_id)
    assert (row["account_uid"], row["flags"]["agent_freeze"]) == ("10000002", "done")
    with db.connect() as conn:
        frozen = conn.execute(select(accounts.c.frozen).where(accounts.c.uid == "10000002"))
        assert frozen.scalar() == 1
        entry = conn.execute(select(audit_log).where(not_desk)).mappings().one()
    assert (entry["actor"], entry["account_uid"], entry["case_id"]) == (
        "agent:ana",
        "10000002",
        case_id,
    )


def test_a_freeze_of_another_account_than_the_cases_is_found_from_the_case(
    client: TestClient, db: Engine
) -> None:
    """The agent freezes an account the caller did not key: the call log's account filter
    and the timeline find which. A case's proved account stays its own (the other is noted);
    a keyed, unproved one gives way to the account found; a freeze not done changes nothing."""
    token = make_user(db, "ana", "agent")
    directory = LocalDirectory(db, None)
    for uid in ("10000001", "10000002"):
        directory.add(uid=uid, pin=None, id_last4=None, phone=None, totp_secret=None, now=T0)
    proved = add_case(db, 1, "emergency", T0, uid="10000002")
    keyed = add_case(db, 2, "emergency", T0 + MINUTE, uid="10000009")
    with db.begin() as conn:
        for n in (1, 2):  # their calls, for the call log
            conn.execute(
                insert(calls).values(
                    call_sid=sid(n),
                    tree_version="v1",
                    step=1,
                    state={"node": "queue", "facts": {"lang": "en"}},
                    last_twiml="<Response/>",
                    status="in-progress",
                    started_at=T0,
                    updated_at=T0,
                )
            )
    with db.connect() as conn:
        cases.add_flags(conn, case_id=keyed, flags={"verified": "no"})

    def freeze(case_id: int, uid: str) -> Any:
        body = {"reason": "caller named it", "account_uid": uid}
        return call(client, "POST", f"/api/cases/{case_id}/freeze", body, token).json()

    assert call(client, "POST", "/api/agents/next", None, token).json()["case"]["id"] == proved
    assert freeze(proved, "10000001")["frozen"] is True
    assert freeze(proved, "10000001")["frozen"] is True  # again: noted once
    assert freeze(proved, "99999999")["detail"].startswith("no such account 99999999")
    row = get(db, proved)
    assert (row["account_uid"], row["flags"]["also_frozen"]) == ("10000002", "10000001")
    held = call(client, "GET", "/api/agents/cases", None, token).json()
    # A freeze that failed after one made does not say the case's freeze failed.
    assert held[0]["freeze"] == {"agent_freeze": "done", "also_frozen": "10000001"}
    boss = make_user(db, "sam", "supervisor")  # who answers the owner's "why am I frozen?"
    timeline = call(client, "GET", f"/api/calls/{sid(1)}", None, boss).json()
    assert [
        (a["account_uid"], a["result"]) for a in timeline["audit"] if a["action"] != "take"
    ] == [
        ("10000001", "ok"),
        ("10000001", "ok"),
        ("99999999", "no_account"),
    ]
    # Agents see no account UIDs in the log.
    timeline = call(client, "GET", f"/api/calls/{sid(1)}", None, token).json()
    assert {a["account_uid"] for a in timeline["audit"]} == {None}
    token = make_user(db, "bo", "agent")  # ana has her case
    assert call(client, "POST", "/api/agents/next", None, token).json()["case"]["id"] == keyed
    assert freeze(keyed, "10000001")["frozen"] is True
    assert get(db, keyed)["account_uid"] == "10000001"
    found = call(client, "GET", "/api/calls?account=10000001", None, boss)
    # Both: the case it is now, and the proved caller's case it was frozen on besides theirs.
    assert sorted(c["call_sid"] for c in found.json()["calls"]) == [sid(1), sid(2)], found.text
    found = call(client, "GET", "/api/calls?account=10000002", None, boss)
    assert [c["call_sid"] for c in found.json()["calls"]] == [sid(1)], found.text


def test_a_freeze_of_a_uid_that_is_no_account_is_told_apart_from_an_outage(
    client: TestClient, db: Engine
) -> None:
    """An unverified caller keyed a UID nobody has (or the agent typed one): the freeze is
    refused, 422, naming the UID; audited as `no_account`, the case's freeze flags untouched,
    and nothing on the supervisors' list of open freezes (no account there is to chase)."""
    token = make_user(db, "ana", "agent")
    boss = make_user(db, "sam", "supervisor")
    case_id = add_case(db, 1, "emergency", T0, uid="99999999")
    with db.connect() as conn:
        cases.add_flags(conn, case_id=case_id, flags={"verified": "no"})
    assert call(client, "POST", "/api/agents/next", None, token).json()["case"]["id"] == case_id
    path = f"/api/cases/{case_id}/freeze"
    for body in ({"reason": "hijack"}, {"reason": "hijack", "account_uid": "99999998"}):
        r = call(client, "POST", path, body, token)
        uid = body.get("account_uid", "99999999")
        assert r.status_code == 422, r.text
        assert r.json()["detail"].startswith(f"no such account {uid}: "), r.text
    assert "agent_freeze" not in get(db, case_id)["flags"]
    with db.connect() as conn:
        audits = conn.execute(
            select(audit_log.c.account_uid, audit_log.c.result).where(not_desk)
        ).all()
    assert sorted(tuple(a) for a in audits) == [
        ("99999998", "no_account"),
        ("99999999", "no_account"),
    ]
    assert call(client, "GET", "/api/freezes?open=true", None, boss).json() == []
    listed = call(client, "GET", "/api/freezes", None, boss).json()
    assert {f["result"] for f in listed} == {"no_account"}
    assert 'ivr_freezes_total{by="agent",result="no_account"} 2.0' in client.get("/metrics").text


def test_a_case_says_its_account_is_frozen_whoever_froze_it_on_whatever_case(
    client: TestClient, db: Engine, clock: FakeClock
) -> None:
    """ana freezes the account on her case; bo's case of the same account says it is frozen
    (when, by whom, on which ticket), though nothing was frozen on his; an audited unfreeze
    lifts it. A case whose own freeze failed says only what the hotline knows."""
    ana = make_user(db, "ana", "agent")
    bo = make_user(db, "bo", "agent")
    directory = LocalDirectory(db, None)
    directory.add(uid="10000002", pin=None, id_last4=None, phone=None, totp_secret=None, now=T0)
    first = add_case(db, 1, "emergency", T0, uid="10000002")
    second = add_case(db, 2, "emergency", T0 + MINUTE, uid="10000002")
    assert call(client, "POST", "/api/agents/next", None, ana).json()["case"]["id"] == first
    assert call(client, "POST", "/api/agents/next", None, bo).json()["case"]["id"] == second
    [held] = call(client, "GET", "/api/agents/cases", None, bo).json()
    assert held["account_frozen"] is None
    froze = call(client, "POST", f"/api/cases/{first}/freeze", {"reason": "hijack"}, ana)
    assert froze.json()["frozen"] is True
    [mine] = call(client, "GET", "/api/agents/cases", None, ana).json()
    [held] = call(client, "GET", "/api/agents/cases", None, bo).json()
    assert held["freeze"] == {}  # nothing frozen on his case
    assert datetime.fromisoformat(held["account_frozen"].pop("at")) == clock.now
    assert held["account_frozen"] == {
        "action": "freeze",
        "by": "agent:ana",
        # His caller proved nothing: another case's ticket (what main menu 9 takes to be put
        # through as its caller) is not his to see, as the account's earlier cases' are not.
        "ticket": None,
        "this_case": False,
    }
    assert mine["account_frozen"]["this_case"] is True
    assert directory.unfreeze(uid="10000002", actor="cli:ops", reason="owner", now=clock.now)
    [held] = call(client, "GET", "/api/agents/cases", None, bo).json()
    assert held["account_frozen"] is None


def test_one_case_freezes_two_accounts_besides_its_own_at_most_and_keeps_them_all(
    client: TestClient, db: Engine
) -> None:
    """An unverified caller's agent freezes the UID they keyed, then the right one found
    with them, then a second account of theirs: each is found from the case, the first too
    (it gave way as the case's account, and is noted). A fourth is refused before anything
    is frozen: a stolen agent token, or an insider, does not freeze accounts at will on one
    case."""
    token = make_user(db, "ana", "agent")
    directory = LocalDirectory(db, None)
    uids = ("10000001", "10000002", "10000003", "10000004")
    for uid in uids:
        directory.add(uid=uid, pin=None, id_last4=None, phone=None, totp_secret=None, now=T0)
    case_id = add_case(db, 1, "emergency", T0, uid="10000001")
    with db.begin() as conn:
        conn.execute(
            insert(calls).values(
                call_sid=sid(1),
                tree_version="v1",
                step=1,
                state={"node": "queue", "facts": {"lang": "en"}},
                last_twiml="<Response/>",
                status="in-progress",
                started_at=T0,
                updated_at=T0,
            )
        )
    with db.connect() as conn:
        cases.add_flags(conn, case_id=case_id, flags={"verified": "no"})
    assert call(client, "POST", "/api/agents/next", None, token).json()["case"]["id"] == case_id

    def freeze(uid: str | None) -> Any:
        body = {"reason": "caller named it", **({"account_uid": uid} if uid else {})}
        return call(client, "POST", f"/api/cases/{case_id}/freeze", body, token)

    assert freeze(None).json()["frozen"] is True  # the keyed one
    assert freeze("10000002").json()["frozen"] is True  # the right one: now the case's
    assert freeze("10000003").json()["frozen"] is True
    refused = freeze("10000004")
    assert refused.status_code == 409 and "2 accounts besides" in refused.json()["detail"]
    assert freeze("10000003").json()["frozen"] is True  # one frozen on it already: again
    row = get(db, case_id)
    assert (row["account_uid"], row["flags"]["also_frozen"]) == ("10000003", "10000001,10000002")
    with db.connect() as conn:
        frozen = dict(conn.execute(select(accounts.c.uid, accounts.c.frozen)).all())
    assert [frozen[u] for u in uids] == [1, 1, 1, 0]
    boss = make_user(db, "sam", "supervisor")
    for uid in uids[:3]:
        found = call(client, "GET", f"/api/calls?account={uid}", None, boss).json()
        assert [c["call_sid"] for c in found["calls"]] == [sid(1)], uid


class SlowActions:
    """A remote account service taking its time over each freeze (the directory's table
    behind it)."""

    def __init__(self, db: Engine) -> None:
        self.behind = LocalAccountActions(db)

    def freeze(self, *, uid: str, now: datetime) -> bool:
        time.sleep(0.4)
        return self.behind.freeze(uid=uid, now=now)


def test_two_freezes_at_once_on_one_case_do_not_both_pass_the_cap(
    settings: Settings, hotline_tree: CompiledTree, db: Engine, clock: FakeClock
) -> None:
    """A double click, or a script with a stolen agent token, posting two freezes of two
    more accounts at the same moment: both looked at the case's freezes before either was
    made, and both passed the cap. One is made; the other is refused at once."""
    app = create_app(settings, tree=hotline_tree, db=db, clock=clock, actions=SlowActions(db))
    token = make_user(db, "ana", "agent")
    directory = LocalDirectory(db, None)
    uids = ("10000001", "10000002", "10000003", "10000004")
    for uid in uids:
        directory.add(uid=uid, pin=None, id_last4=None, phone=None, totp_secret=None, now=T0)
    case_id = add_case(db, 1, "emergency", T0, uid="10000001")
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        assert call(client, "POST", "/api/agents/next", None, token).json()["case"]["id"] == case_id

        def freeze(uid: str) -> Any:
            body = {"reason": "caller named it", "account_uid": uid}
            return call(client, "POST", f"/api/cases/{case_id}/freeze", body, token)

        assert freeze("10000002").json()["frozen"] is True  # one besides its own
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(freeze, ["10000003", "10000004"]))
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    # Refused at once, not left waiting on the account service (nor failing on a lock wait).
    [refused] = [a for a in answers if a.status_code == 409]
    assert "being made now" in refused.json()["detail"]
    with db.connect() as conn:
        frozen = dict(conn.execute(select(accounts.c.uid, accounts.c.frozen)).all())
    assert sum(frozen[u] for u in uids[2:]) == 1


def test_api_freeze_needs_a_reason(client: TestClient, db: Engine) -> None:
    token = make_user(db, "ana", "agent")
    case_id = add_case(db, 1, "normal", T0, uid="10000001")
    for body in ({}, {"reason": ""}, {"reason": "x"}):
        r = client.post(f"/api/cases/{case_id}/freeze", json=body, headers=bearer(token))
        assert r.status_code == 422, body


def test_api_resolve_unknown_case_is_404(client: TestClient, db: Engine) -> None:
    token = make_user(db, "ana", "agent")
    r = call(client, "POST", "/api/cases/999/resolve", {"notes": "done"}, token)
    assert r.status_code == 404


def test_api_resolve_takes_the_case_out_of_the_queue(client: TestClient, db: Engine) -> None:
    token = make_user(db, "ana", "agent")
    other = make_user(db, "ben", "agent")
    case_id = add_case(db, 1, "normal", T0)
    # Nobody resolves a caller who is still waiting, and only the agent who took a case may.
    waiting = call(client, "POST", f"/api/cases/{case_id}/resolve", {"notes": "x"}, token)
    assert waiting.status_code == 409 and waiting_ids(db) == [case_id]
    assert call(client, "POST", "/api/agents/next", None, token).json()["case"]["id"] == case_id
    stolen = call(client, "POST", f"/api/cases/{case_id}/resolve", {"notes": "x"}, other)
    assert stolen.status_code == 409
    frozen_by_other = call(client, "POST", f"/api/cases/{case_id}/freeze", {"reason": "xyz"}, other)
    assert frozen_by_other.status_code == 409
    # Taken but not yet put through, the caller still waits on the line: not resolved away.
    early = call(client, "POST", f"/api/cases/{case_id}/resolve", {"notes": "x"}, token)
    assert early.status_code == 409 and "waiting on the line" in early.json()["detail"]
    with db.connect() as conn:
        assert cases.set_status(conn, case_id=case_id, status="connected", now=T0)
        store.create_call(  # the caller's call, on the line
            conn,
            call_sid=sid(1),
            account_sid=None,
            from_number="+15005550006",
            to_number=None,
            tree_version="v",
            step=1,
            state=CallState(node="queue"),
            twiml="<Response/>",
            log=[],
            now=T0,
        )
    # Put through, she talks to the caller: resolved once she has hung up, not before.
    talking = call(client, "POST", f"/api/cases/{case_id}/resolve", {"notes": "x"}, token)
    assert talking.status_code == 409 and "on the call" in talking.json()["detail"]
    [mine] = call(client, "GET", "/api/agents/cases", None, token).json()
    assert mine["on_call"] is True
    with db.connect() as conn:
        assert cases.agent_answered(conn, case_id=case_id, agent_id=None, now=T0 + MINUTE)
    [mine] = call(client, "GET", "/api/agents/cases", None, token).json()
    assert mine["on_call"] is False
    r = call(client, "POST", f"/api/cases/{case_id}/resolve", {"notes": "reset 2FA"}, token)
    assert r.status_code == 200
    assert r.json()["status"] == "resolved" and r.json()["notes"] == "reset 2FA"
    again = call(client, "POST", f"/api/cases/{case_id}/resolve", {"notes": "again"}, token)
    assert again.status_code == 409 and again.json()["detail"] == "the case is resolved already"
    assert waiting_ids(db) == []
    assert call(client, "POST", "/api/agents/next", None, token).json()["case"] is None
    huge = call(client, "POST", "/api/cases/99999999999999999999/resolve", {"notes": ""}, token)
    assert huge.status_code == 422


def audit_rows(db: Engine) -> list[tuple[str, str, str | None]]:
    """The audit log but for the desk's takes and acceptances (`not_desk`)."""
    with db.connect() as conn:
        rows = conn.execute(select(audit_log).where(not_desk).order_by(audit_log.c.id))
        return [(r.actor, r.action, r.reason) for r in rows]


def test_a_supervisor_resolves_a_case_its_agent_left(client: TestClient, db: Engine) -> None:
    """The agent who has the case went home, or was revoked, with it connected: only a
    supervisor can close it. A caller still waiting on the line is never resolved away."""
    ana = make_user(db, "ana", "agent")
    sam = make_user(db, "sam", "supervisor")
    taken, waiting = add_case(db, 1, "normal", T0), add_case(db, 2, "normal", T0 + MINUTE)
    assert call(client, "POST", "/api/agents/next", None, ana).json()["case"]["id"] == taken
    with db.connect() as conn:
        assert cases.set_status(conn, case_id=taken, status="connected", now=T0)
        cases.revoke_user(conn, name="ana", now=T0 + MINUTE)
    r = call(client, "POST", f"/api/cases/{taken}/resolve", {"notes": "ana left"}, sam)
    assert r.status_code == 200 and r.json()["status"] == "resolved"
    assert r.json()["caller"] == "***0006"  # not their case to call: masked
    refused = call(client, "POST", f"/api/cases/{waiting}/resolve", {"notes": "x"}, sam)
    assert refused.status_code == 409 and "waiting" in refused.json()["detail"]
    assert get(db, waiting)["status"] == "waiting" and waiting_ids(db) == [waiting]
    assert audit_rows(db) == [("supervisor:sam", "resolve", None)]


@pytest.mark.parametrize("gone", ["callback_requested", "abandoned"])
def test_a_supervisor_closes_a_call_back_nobody_took(
    client: TestClient, db: Engine, gone: str
) -> None:
    """A call back for a caller reached some other way, or a prank: the supervisor closes it
    without an agent taking it first. An agent may not."""
    ana, sam = make_user(db, "ana", "agent"), make_user(db, "sam", "supervisor")
    case_id = add_case(db, 1, "emergency", T0)
    with db.connect() as conn:
        if gone == "callback_requested":
            assert cases.request_callback(conn, call_sid=sid(1), number="+15005550042", now=T0)
        else:
            assert cases.abandon_for_call(conn, call_sid=sid(1), now=T0) == 1
    by_agent = call(client, "POST", f"/api/cases/{case_id}/resolve", {"notes": ""}, ana)
    assert by_agent.status_code == 409
    r = call(client, "POST", f"/api/cases/{case_id}/resolve", {"notes": "emailed"}, sam)
    assert r.status_code == 200
    assert (get(db, case_id)["status"], get(db, case_id)["queued"]) == ("resolved", 0)
    assert call(client, "POST", "/api/agents/next", None, ana).json()["case"] is None


def test_a_case_taken_goes_back_in_its_place(client: TestClient, db: Engine) -> None:
    """Its agent gives it back (a caller who needs another language), or a supervisor takes it
    from an agent who cannot serve it: it is back where it was, first for the next agent."""
    ana, ben = make_user(db, "ana", "agent"), make_user(db, "ben", "agent")
    sam = make_user(db, "sam", "supervisor")
    first, second = add_case(db, 1, "emergency", T0), add_case(db, 2, "emergency", T0 + MINUTE)
    for agent in (ana, ben):  # available: each is set away, or the case would come back
        assert call(client, "PUT", "/api/agents/presence", {"available": True}, agent).is_success
    assert call(client, "POST", "/api/agents/next", None, ana).json()["case"]["id"] == first
    # Nobody but its agent or a supervisor.
    assert call(client, "POST", f"/api/cases/{first}/requeue", {}, ben).status_code == 409
    r = call(client, "POST", f"/api/cases/{first}/requeue", {"reason": "needs Mandarin"}, ana)
    assert r.status_code == 200 and r.json()["status"] == "waiting"
    assert waiting_ids(db) == [first, second]
    assert call(client, "POST", "/api/agents/next", None, ben).json()["case"]["id"] == first
    r = call(client, "POST", f"/api/cases/{first}/requeue", {"reason": "ben is away"}, sam)
    assert r.status_code == 200 and get(db, first)["agent_id"] is None
    assert waiting_ids(db) == [first, second]
    presences = [call(client, "GET", "/api/agents/presence", None, a).json() for a in (ana, ben)]
    assert [(p["available"], p["away_reason"]) for p in presences] == [
        (False, "gave_back"),
        (False, "taken_back"),
    ]
    # A caller connected to someone is talking to them: resolved, not requeued.
    assert call(client, "POST", "/api/agents/next", None, ana).json()["case"]["id"] == first
    with db.connect() as conn:
        assert cases.set_status(conn, case_id=first, status="connected", now=T0)
    for who in (ana, sam):
        assert call(client, "POST", f"/api/cases/{first}/requeue", {}, who).status_code == 409
    assert get(db, first)["status"] == "connected"
    assert call(client, "POST", f"/api/cases/{second}/requeue", {}, sam).status_code == 409
    assert audit_rows(db) == [
        ("agent:ana", "requeue", "needs Mandarin"),
        ("supervisor:sam", "requeue", "ben is away"),
    ]


def test_the_offer_timeout_leaves_the_agent_what_they_finish_by_hand(db: Engine) -> None:
    """A call back the agent dials themselves, or a withheld number they act on, is theirs
    until they resolve or give it back: taken back mid-call, another agent would call the
    customer again. Offers Twilio connects go back in line when nobody is reached."""
    agent = agent_id(db)
    by_hand, no_number, live = (
        add_case(db, n, "normal", T0, caller=f"+1500555010{n}") for n in (1, 2, 3)
    )
    with db.connect() as conn:
        assert cases.abandon_for_call(conn, call_sid=sid(1), now=T0) == 1
        assert cases.abandon_for_call(conn, call_sid=sid(2), now=T0) == 1
    assert claim_all(db, agent) == [by_hand, no_number, live]
    with db.connect() as conn:
        offers = {by_hand: "call_back", no_number: "no_number", live: "redirected"}
        for case_id, offer in offers.items():
            assert cases.set_offer(conn, case_id=case_id, agent_id=agent, offer=offer)
        assert (
            cases.requeue_offers_before(
                conn, cutoff=T0 + timedelta(hours=1), now=T0 + timedelta(hours=1)
            )
            == 1
        )
    assert [get(db, c)["status"] for c in (by_hand, no_number, live)] == [
        "offered",
        "offered",
        "waiting",
    ]
    assert get(db, live)["offer"] is None


def test_an_offer_is_recorded_and_connected_only_while_it_is_that_agents(db: Engine) -> None:
    """What the hotline records after a claim, and the connect Twilio's request makes, hold
    only for the agent who has the case still (and, for a call back, for its own call)."""
    ana, ben = agent_id(db), agent_id(db, "ben")
    live, back = add_case(db, 1, "normal", T0), add_case(db, 2, "normal", T0)
    with db.connect() as conn:
        assert cases.abandon_for_call(conn, call_sid=sid(2), now=T0) == 1
    assert claim_all(db, ana) == [live, back]
    with db.connect() as conn:
        assert not cases.set_offer(conn, case_id=live, agent_id=ben, offer="redirected")
        assert cases.set_offer(conn, case_id=live, agent_id=ana, offer="redirected")
        assert cases.set_offer(conn, case_id=back, agent_id=ana, offer="calling_back:CA1")
        # Given back by hand while Twilio places the call: refused.
        assert not cases.requeue(conn, case_id=back, only_from=("offered",), unless_placing=True)
        assert not cases.connect_offer(conn, case_id=live, agent_id=ben, now=T0, placed=None)
        assert not cases.connect_offer(conn, case_id=back, agent_id=ana, now=T0, placed="CA2")
        assert cases.connect_offer(conn, case_id=back, agent_id=ana, now=T0, placed="CA1")
        # Answered before the REST reply with its sid came back: the sid is stored all the
        # same, on the connected offer, and it stays connected.
        third = add_case(db, 3, "normal", T0)
        assert cases.abandon_for_call(conn, call_sid=sid(3), now=T0) == 1
        assert cases.claim_next(conn, agent_id=ana, now=T0)["id"] == third  # type: ignore[index]
        placing = cases.placing_offer("p1")
        assert cases.set_offer(conn, case_id=third, agent_id=ana, offer=placing)
        # Another placement's call (an earlier one's late answer) is not this one's.
        assert not cases.connect_offer(
            conn, case_id=third, agent_id=ana, now=T0, placed="CA8", placing="p0"
        )
        assert cases.connect_offer(
            conn, case_id=third, agent_id=ana, now=T0, placed="CA9", placing="p1"
        )
        assert not cases.set_placed(conn, case_id=third, agent_id=ana, call_sid="CA9", placing="p0")
        assert cases.set_placed(conn, case_id=third, agent_id=ana, call_sid="CA9", placing="p1")
        assert not cases.set_placed(conn, case_id=third, agent_id=ben, call_sid="CA9", placing="p1")
        assert cases.requeue(conn, case_id=live, only_from=("offered",), unless_placing=True)
        assert not cases.set_offer(conn, case_id=live, agent_id=ana, offer="next_hold_poll")
    assert get(db, live)["offer"] is None and get(db, back)["status"] == "connected"
    assert (get(db, third)["status"], get(db, third)["offer"]) == ("connected", "calling_back:CA9")


def test_a_requeued_call_back_stays_a_call_back(client: TestClient, db: Engine) -> None:
    ben = make_user(db, "ben", "agent")
    _, case_id, claimed = claimed_call_back(db, "callback_requested")  # taken by ana
    assert claimed is not None and claimed["id"] == case_id
    sam = make_user(db, "sam", "supervisor")
    assert call(client, "POST", f"/api/cases/{case_id}/requeue", {}, sam).status_code == 200
    assert get(db, case_id)["status"] == "callback_requested"
    claimed_again = call(client, "POST", "/api/agents/next", None, ben).json()
    assert claimed_again["connect"] == {"mode": "call_back", "number": "+15005550042"}


@pytest.mark.parametrize("gone", ["callback_requested", "abandoned"])
def test_a_late_status_callback_leaves_a_call_back_with_its_agent(db: Engine, gone: str) -> None:
    """The caller's own call ended earlier; an agent now has the case to call them back."""
    agent, a, claimed = claimed_call_back(db, gone)
    assert claimed is not None and claimed["id"] == a
    with db.connect() as conn:  # that call's final status, late or delivered again
        assert cases.abandon_for_call(conn, call_sid=sid(1), now=T0 + timedelta(seconds=5)) == 0
    assert get(db, a)["status"] == "offered" and get(db, a)["agent_id"] == agent


def test_a_caller_who_hangs_up_while_offered_is_abandoned(db: Engine) -> None:
    agent = agent_id(db)
    a = add_case(db, 1, "normal", T0)
    assert claim(db, agent) is not None
    with db.connect() as conn:
        assert cases.abandon_for_call(conn, call_sid=sid(1), now=T0) == 1
    assert get(db, a)["status"] == "abandoned" and get(db, a)["agent_id"] is None


# -- who answers: the figures a caller's wait is estimated from ------------------------------


def handle(db: Engine, agent: int, taken: datetime, ended: datetime) -> int:
    """One case through an agent's hands as the hotline does it: taken from the line, put
    through, resolved."""
    case = claim(db, agent, taken)
    assert case is not None
    with db.connect() as conn:
        assert cases.set_status(conn, case_id=case["id"], status="connected", now=taken)
        assert cases.resolve(conn, case_id=case["id"], status="connected", now=ended, notes="ok")
    return int(case["id"])


def staffing_at(db: Engine, now: datetime) -> cases.Staffing:
    with db.connect() as conn:
        return cases.staffing(conn, now=now)


def test_agents_are_at_work_while_they_hold_a_case_and_for_half_an_hour_after(db: Engine) -> None:
    ana, bo, cy, di = (agent_id(db, name) for name in ("ana", "bo", "cy", "di"))
    for n in range(5):
        add_case(db, n, "normal", T0 - 3 * 60 * MINUTE + n * MINUTE)
    handle(db, cy, T0 - 2 * 60 * MINUTE, T0 - 60 * MINUTE)  # their last case, an hour ago
    handle(db, ana, T0, T0 + 4 * MINUTE)
    assert claim(db, bo, T0 + MINUTE) is not None  # holds it, a long call
    taken_back = claim(db, di, T0 + 2 * MINUTE)
    assert taken_back is not None
    with db.connect() as conn:  # their phone did not answer: the case is in line again
        assert cases.requeue(conn, case_id=taken_back["id"])
    assert staffing_at(db, T0 + 5 * MINUTE).agents == 2  # ana and bo
    assert staffing_at(db, T0 + 34 * MINUTE).agents == 2  # ana ended hers 30 minutes ago
    assert staffing_at(db, T0 + 35 * MINUTE).agents == 1  # bo, still on his call
    assert staffing_at(db, T0 + 121 * MINUTE).agents == 1  # taken two hours ago
    # Held longer than that: left open at the end of a shift, no sign of anyone at work.
    assert staffing_at(db, T0 + 122 * MINUTE).agents == 0
    with db.connect() as conn:
        cases.revoke_user(conn, name="ana", now=T0 + 5 * MINUTE)
    assert staffing_at(db, T0 + 5 * MINUTE).agents == 1  # a revoked agent answers nobody


@pytest.mark.parametrize(
    ("why", "at_work"),
    [
        (cases.AWAY_SIGNED_OUT, 0),
        (cases.AWAY_SET, 0),
        (cases.AWAY_NOT_ACCEPTED, 0),
        (cases.AWAY_MISSED, 0),
        (None, 1),  # away by her own say: she may ask for the next case
        (cases.AWAY_GAVE_BACK, 1),
    ],
)
def test_an_agent_gone_since_her_last_case_is_not_at_work(
    db: Engine, why: cases.AwayReason | None, at_work: int
) -> None:
    """Counted, an agent who signed out (or was set away, or whose phone did not take the
    last case) halves the wait a caller is told."""
    ana = agent_id(db, "ana")
    add_case(db, 1, "normal", T0 - MINUTE)
    handle(db, ana, T0, T0 + 4 * MINUTE)
    with db.connect() as conn:
        cases.set_available(conn, agent_id=ana, available=False, now=T0 + 5 * MINUTE, why=why)
    assert staffing_at(db, T0 + 6 * MINUTE).agents == at_work


def test_the_handle_time_is_the_median_of_the_last_hour_once_there_are_five(db: Engine) -> None:
    ana, bo = agent_id(db, "ana"), agent_id(db, "bo")
    for n in range(7):
        add_case(db, n, "normal", T0 - 3 * 60 * MINUTE + n * MINUTE)
    handle(db, ana, T0 - 90 * MINUTE, T0 - 62 * MINUTE)  # ended over an hour before: not counted
    long_call = claim(db, bo, T0 - 44 * MINUTE)
    assert long_call is not None
    start = T0
    for minutes in (1, 2, 3, 10):
        handle(db, ana, start, start + minutes * MINUTE)
        start += minutes * MINUTE
    four = staffing_at(db, start)
    assert (four.handle_seconds, four.handled) == (None, 4)  # too few to say: the setting
    assert four.handle(240) == 240
    with db.connect() as conn:  # one long case (an hour) does not make them all long
        assert cases.set_status(conn, case_id=long_call["id"], status="connected", now=T0)
        assert cases.resolve(
            conn, case_id=long_call["id"], status="connected", now=start, notes="ok"
        )
    five = staffing_at(db, start)
    assert (five.handle_seconds, five.handled) == (180, 5)  # the median, where the mean is 912
    # A case left open for hours and closed now is no handle time.
    left = claim(db, bo, start - 3 * 60 * MINUTE)
    assert left is not None
    with db.connect() as conn:
        assert cases.set_status(conn, case_id=left["id"], status="connected", now=start)
        assert cases.resolve(conn, case_id=left["id"], status="connected", now=start, notes="x")
    assert staffing_at(db, start).handled == 5


def test_the_wait_is_the_cases_up_to_the_callers_own_shared_among_the_agents() -> None:
    assert cases.Staffing(agents=4, handle_seconds=300).wait_seconds(8, default_handle=240) == 600
    assert cases.Staffing(agents=4).wait_seconds(8, default_handle=240) == 480
    # Nobody at work: the caller is not told a wait of nothing.
    assert cases.Staffing(agents=0).wait_seconds(3, default_handle=240) == 720


def test_ready_in_line_leaves_out_the_call_backs_held_back(db: Engine) -> None:
    held_back = add_case(db, 1, "emergency", T0)
    add_case(db, 2, "emergency", T0)
    add_case(db, 3, "normal", T0)
    add_case(db, 4, "high", T0)
    with db.begin() as conn:
        conn.execute(
            cases.cases.update()
            .where(cases.cases.c.id == held_back)
            .values(not_before=T0 + 10 * MINUTE)
        )
    with db.connect() as conn:
        assert cases.ready_in_line(conn, now=T0) == (1, 2)
        assert cases.ready_in_line(conn, now=T0 + 10 * MINUTE) == (2, 2)


def test_the_ready_emergencies_tickets_in_serving_order(db: Engine) -> None:
    """The desk's line says a new emergency by its ticket: those agents may take now, first
    come first, neither a call back held back until its retry time nor another priority."""
    held_back = add_case(db, 1, "emergency", T0)
    add_case(db, 2, "emergency", T0 + MINUTE)
    add_case(db, 3, "emergency", T0)
    add_case(db, 4, "high", T0)
    with db.begin() as conn:
        conn.execute(
            cases.cases.update()
            .where(cases.cases.c.id == held_back)
            .values(not_before=T0 + 10 * MINUTE)
        )
    with db.connect() as conn:
        assert cases.ready_emergency_tickets(conn, now=T0) == ["1000003", "1000002"]
        assert cases.ready_emergency_tickets(conn, now=T0 + 10 * MINUTE, limit=2) == [
            "1000001",
            "1000003",
        ]


def plans(db: Engine, run: Callable[[Connection], object]) -> list[tuple[str, str]]:
    """Each statement on the cases table that `run` makes, with its query plan as the
    database would carry it out (PostgreSQL told to use an index wherever one can serve:
    these tables are tiny)."""
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM cases" in statement:
            seen.append((statement, parameters))

    event.listen(db, "before_cursor_execute", capture)
    try:
        with db.connect() as conn:
            run(conn)
    finally:
        event.remove(db, "before_cursor_execute", capture)
    out = []
    with db.connect() as conn:
        if db.dialect.name == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")
            explain = "EXPLAIN "
        else:
            explain = "EXPLAIN QUERY PLAN "
        for statement, parameters in seen:
            rows = conn.exec_driver_sql(explain + statement, parameters)
            out.append((statement, "\n".join(str(r) for r in rows)))
    return out


def test_the_cases_agents_hold_are_found_by_their_own_index(db: Engine) -> None:
    """Every desk asks for its agent's cases every few seconds, from a table that keeps every
    case ever opened: the partial index `ix_cases_held` answers, which it can only while the
    statuses are written into the statement. Bound, SQLite cannot tell that it applies, nor
    PostgreSQL once it plans the statement for any values (which EXPLAIN with the values
    would not show: hence the statement's own words too)."""
    ana = agent_id(db)
    add_case(db, 1, "normal", T0)
    assert claim(db, ana) is not None

    def run(conn: Connection) -> None:
        assert len(cases.held_by(conn, agent_id=ana)) == 1
        assert len(cases.held_by_agents(conn)) == 1

    found = plans(db, run)
    assert len(found) == 2
    for statement, plan in found:
        assert "IN ('offered', 'connected')" in statement, statement
        assert "ix_cases_held" in plan, plan


def test_the_tickets_to_text_are_found_by_their_own_index(db: Engine) -> None:
    """Every instance looks for tickets to text every IVR_TREE_SYNC seconds, in a table that
    keeps every case ever opened: the partial index `ix_cases_ticket_text_due` answers."""
    add_case(db, 1, "normal", T0)

    def run(conn: Connection) -> None:
        assert cases.tickets_to_text(conn) == []

    [(statement, plan)] = plans(db, run)
    assert "ticket_text = 'due'" in statement, statement
    assert "ix_cases_ticket_text_due" in plan, plan


def test_a_hold_round_counts_the_call_backs_held_back_from_their_own_index(db: Engine) -> None:
    """The count of call backs ahead that wait for their retry time: a few rows of the
    `not_before` index. SQLite once counted them by walking the whole line instead (6.5 ms a
    round with 10,000 waiting, every round of every caller)."""
    add_case(db, 1, "normal", T0)

    def run(conn: Connection) -> None:
        assert cases.case_for_call(conn, call_sid=sid(1), now=T0) is not None

    [(_, plan)] = plans(db, run)
    assert "ix_cases_not_before" in plan, plan


def test_the_claim_itself_says_how_a_waiting_caller_reaches_the_agent(db: Engine) -> None:
    """No moment when a waiting caller's case is taken with no way to the agent: a hold round
    then could put the caller through while the agent's claim was refused as taken back. A
    call back's offer is left to be set once it is known how its caller will be reached."""
    ana = agent_id(db)
    waiting = add_case(db, 1, "normal", T0)
    gone = add_case(db, 2, "normal", T0 + MINUTE)
    with db.connect() as conn:
        assert cases.abandon_for_call(conn, call_sid=sid(2), now=T0 + 2 * MINUTE) == 1
        live = cases.claim_next(conn, agent_id=ana, now=T0, live_offer=cases.OFFER_HOLD_LOOP)
        call_back = cases.claim_next(conn, agent_id=ana, now=T0, live_offer=cases.OFFER_HOLD_LOOP)
    assert live is not None and call_back is not None
    assert (live["id"], live["offer"]) == (waiting, cases.OFFER_HOLD_LOOP)
    assert (call_back["id"], call_back["offer"]) == (gone, None)
    assert get(db, waiting)["offer"] == cases.OFFER_HOLD_LOOP


# -- presence: cases offered to available agents unasked ----------------------------------------


def available(db: Engine, agent: int, now: datetime, yes: bool = True) -> datetime | None:
    with db.connect() as conn:
        return cases.set_available(conn, agent_id=agent, available=yes, now=now)


def since(db: Engine, agent: int, now: datetime) -> datetime | None:
    with db.connect() as conn:
        return cases.available_since(conn, agent_id=agent, now=now)


def case_row(db: Engine, case_id: int) -> dict[str, Any]:
    with db.connect() as conn:
        found = cases.get_case(conn, case_id=case_id)
    assert found is not None
    return found


def withheld_victim(db: Engine, n: int = 1) -> int:
    """A verified hijack victim who withheld their number and hung up: a call back nothing
    can ring an agent's phone for."""
    victim = add_case(db, n, "emergency", T0, caller="anonymous", uid="10000001")
    with db.connect() as conn:
        cases.abandon_for_call(conn, call_sid=sid(n), now=T0)
    return victim


def at_desk(db: Engine, case_id: int, agent: int, now: datetime) -> cases.DeskOffer:
    """Offer the agent's case at their desk, to accept within a minute."""
    with db.connect() as conn:
        return cases.offer_at_desk(
            conn,
            case_id=case_id,
            agent_id=agent,
            offer=cases.OFFER_NO_NUMBER,
            now=now,
            accept_by=now + MINUTE,
        )


def unasked(db: Engine, agent: int, now: datetime) -> Any:
    with db.connect() as conn:
        return cases.claim_if_free(conn, agent_id=agent, now=now, unasked=True)


def test_an_unasked_claim_is_made_only_while_the_agent_is_still_available(db: Engine) -> None:
    """The dispatcher's list of available agents is a moment old when it claims: the claim
    itself checks, under the agent's row lock. Away, revoked, or available so long ago that
    it lapsed: nothing is taken."""
    case_id = add_case(db, 1, "normal", T0)
    ana, bo = agent_id(db), agent_id(db, "bo")
    with pytest.raises(cases.NotAvailable):
        unasked(db, ana, T0)  # away
    assert available(db, ana, T0) == T0
    assert available(db, ana, T0 + MINUTE) == T0  # said again: waiting since the first time
    lapsed = T0 + cases.AVAILABLE_AT_MOST + MINUTE
    assert since(db, ana, lapsed) is None
    with db.connect() as conn:
        assert cases.presence(conn, agent_id=ana, now=lapsed) == (None, cases.AWAY_LAPSED)
    with pytest.raises(cases.NotAvailable):
        unasked(db, ana, lapsed)
    available(db, bo, T0)
    with db.connect() as conn:
        cases.revoke_user(conn, name="bo", now=T0)
    with pytest.raises(cases.NotAvailable):
        unasked(db, bo, T0 + MINUTE)
    assert waiting_ids(db) == [case_id]
    taken, holding = unasked(db, ana, T0 + MINUTE)
    assert (taken["id"], holding) == (case_id, None)
    assert available(db, ana, lapsed) == lapsed  # saying it again after a lapse starts afresh


def test_an_offer_at_the_desk_goes_back_unless_accepted_in_time(db: Engine) -> None:
    """A hijack victim who withheld their number hung up: nothing can ring an agent's phone
    for them, so ana, available, is offered the case at her desk, to accept by a time. She
    does not: it goes back to its place (first in line), she is set away and the miss is
    audited, in one transaction. bo is offered it next and accepts at the last moment: the
    take-back that comes after finds nothing to take, and no offer timeout takes it later
    (he finishes it by hand)."""
    withheld = add_case(db, 1, "emergency", T0, caller="anonymous", uid="10000001")
    call_back = add_case(db, 2, "normal", T0, caller="+15005550002")
    with db.connect() as conn:
        for n in (1, 2):
            cases.abandon_for_call(conn, call_sid=sid(n), now=T0)
    ana, bo = agent_id(db), agent_id(db, "bo")
    available(db, ana, T0)
    available(db, bo, T0 + MINUTE)
    now = T0 + 2 * MINUTE
    accept_by = now + 30 * SECOND
    taken, _ = unasked(db, ana, now)
    assert taken["id"] == withheld
    with db.connect() as conn:
        assert (
            cases.offer_at_desk(
                conn,
                case_id=withheld,
                agent_id=ana,
                offer=cases.OFFER_NO_NUMBER,
                now=now,
                accept_by=accept_by,
            )
            == "offered"
        )
        assert cases.unaccepted(conn, now=accept_by) == []
        late = accept_by + SECOND
        assert cases.unaccepted(conn, now=late) == [(withheld, ana)]
        assert not cases.accept_offer(conn, case_id=withheld, agent_id=bo)  # not his
        assert cases.missed_offer(
            conn, case_id=withheld, agent_id=ana, dial_status=cases.NOT_ACCEPTED, now=late
        )
        assert cases.presence(conn, agent_id=ana, now=late) == (None, cases.AWAY_NOT_ACCEPTED)
        audited = conn.execute(
            select(audit_log.c.action, audit_log.c.reason).where(audit_log.c.case_id == withheld)
        ).all()
    assert [tuple(a) for a in audited] == [(cases.MISSED_OFFER, cases.NOT_ACCEPTED)]
    assert waiting_ids(db) == [withheld, call_back]
    row = case_row(db, withheld)
    assert (row["agent_id"], row["offer"], row["accept_by"]) == (None, None, None)

    taken, _ = unasked(db, bo, late)
    assert taken["id"] == withheld
    with db.connect() as conn:
        cases.offer_at_desk(
            conn,
            case_id=withheld,
            agent_id=bo,
            offer=cases.OFFER_NO_NUMBER,
            now=late,
            accept_by=accept_by,
        )
        assert cases.accept_offer(conn, case_id=withheld, agent_id=bo)
        assert cases.accept_offer(conn, case_id=withheld, agent_id=bo)  # again: still his
        assert cases.unaccepted(conn, now=late) == []
        assert not cases.missed_offer(
            conn, case_id=withheld, agent_id=bo, dial_status=cases.NOT_ACCEPTED, now=late
        )
        assert (
            cases.requeue_offers_before(
                conn, cutoff=late + timedelta(days=1), now=late + timedelta(days=1)
            )
            == 0
        )
        assert cases.presence(conn, agent_id=bo, now=late)[0] == T0 + MINUTE
    row = case_row(db, withheld)
    assert (row["status"], row["agent_id"], row["accept_by"]) == ("offered", bo, None)


def test_the_available_agent_waiting_longest_is_offered_first(db: Engine) -> None:
    """ana says she is available, then bo. ana's case (a call back) ends: she has waited
    least now, so the next case goes to bo, and ana's wait starts again from her case's
    end."""
    first = add_case(db, 1, "normal", T0, caller="+15005550001")
    second = add_case(db, 2, "normal", T0, caller="+15005550002")
    with db.connect() as conn:
        for n in (1, 2):
            cases.abandon_for_call(conn, call_sid=sid(n), now=T0)
    ana, bo = agent_id(db), agent_id(db, "bo")
    available(db, ana, T0)
    available(db, bo, T0 + MINUTE)
    with db.connect() as conn:
        assert [a.name for a in cases.agents_to_offer(conn, now=T0 + MINUTE)] == ["ana", "bo"]
    assert unasked(db, ana, T0 + 2 * MINUTE)[0]["id"] == first
    with db.connect() as conn:
        assert [a.name for a in cases.agents_to_offer(conn, now=T0 + 2 * MINUTE)] == ["bo"]
        assert cases.resolve(
            conn, case_id=first, status="offered", now=T0 + 3 * MINUTE, notes="called back"
        )
        assert [a.name for a in cases.agents_to_offer(conn, now=T0 + 3 * MINUTE)] == [
            "bo",
            "ana",
        ]
    assert since(db, ana, T0 + 3 * MINUTE) == T0 + 3 * MINUTE
    assert since(db, bo, T0 + 3 * MINUTE) == T0 + MINUTE
    assert second in waiting_ids(db)


def test_a_case_asked_for_after_availability_lapsed_leaves_the_agent_away(db: Engine) -> None:
    """bo said he was available, then nothing came for longer than AVAILABLE_AT_MOST: he is
    away. He asks for a case himself and resolves it: still away (its end does not say he
    is back), as he never said so again."""
    add_case(db, 1, "normal", T0, caller="+15005550001")
    with db.connect() as conn:
        cases.abandon_for_call(conn, call_sid=sid(1), now=T0)
    bo = agent_id(db, "bo")
    available(db, bo, T0)
    later = T0 + cases.AVAILABLE_AT_MOST + 10 * MINUTE
    taken = claim(db, bo, later)
    assert taken is not None
    with db.connect() as conn:
        assert cases.resolve(
            conn, case_id=taken["id"], status="offered", now=later + MINUTE, notes="called back"
        )
    assert since(db, bo, later + MINUTE) is None


def test_a_case_given_back_or_never_reached_sets_its_agent_away(db: Engine) -> None:
    """A case back in line from an agent (given back, missed, or taken back after the
    offer timeout) would come straight back to them at the next offer: they are set away,
    in the same transaction, until they say they are available again. Not when the case
    did not go back (a repeated report)."""
    first = add_case(db, 1, "normal", T0)
    second = add_case(db, 2, "normal", T0 + MINUTE)
    ana, bo = agent_id(db), agent_id(db, "bo")
    for agent in (ana, bo):
        available(db, agent, T0)
    unasked(db, ana, T0 + MINUTE)
    unasked(db, bo, T0 + MINUTE)
    with db.connect() as conn:
        assert cases.requeue(
            conn, case_id=first, agent_id=ana, away=ana, away_why=cases.AWAY_GAVE_BACK, now=T0
        )
        assert not cases.requeue(conn, case_id=first, agent_id=ana, away=bo, now=T0)  # not hers now
    assert (since(db, ana, T0 + MINUTE), since(db, bo, T0 + MINUTE)) == (None, T0)
    with db.connect() as conn:
        assert cases.requeue_offers_before(conn, cutoff=T0 + 2 * MINUTE, now=T0 + 2 * MINUTE) == 1
        assert cases.presence(conn, agent_id=ana, now=T0) == (None, cases.AWAY_GAVE_BACK)
        assert cases.presence(conn, agent_id=bo, now=T0) == (None, cases.AWAY_TIMED_OUT)
    assert since(db, bo, T0 + 2 * MINUTE) is None
    available(db, bo, T0 + 3 * MINUTE)  # back: no reason any more
    with db.connect() as conn:
        assert cases.presence(conn, agent_id=bo, now=T0 + 3 * MINUTE) == (T0 + 3 * MINUTE, None)
    assert waiting_ids(db) == [first, second]


# -- languages: callers offered first to agents who speak theirs ------------------------------


def speaks(db: Engine, name: str, languages: list[str] | None) -> None:
    with db.connect() as conn:
        assert cases.set_languages(conn, name=name, languages=languages)


def test_a_caller_goes_first_to_an_agent_who_speaks_their_language(db: Engine) -> None:
    """In line: a Mandarin-speaking hijack victim, then an English caller, a Mandarin one,
    and a case from before languages were kept. ana speaks English, mei Mandarin, bo every
    language. Offered unasked, ana gets the English caller (the victim waits for mei), mei
    and bo the victim. Once a case has waited its overflow (15 s in the emergency lane, 60 s
    otherwise) it is anyone's; a case with no language always is. Asking, ana gets the next
    case of all when none in English waits."""
    wait = cases.LanguageWait(normal=timedelta(seconds=60), emergency=timedelta(seconds=15))
    victim = add_case(db, 1, "emergency", T0, language="zh-CN")
    english = add_case(db, 2, "normal", T0, language="en")
    mandarin = add_case(db, 3, "normal", T0 + SECOND, language="zh-CN")
    before = add_case(db, 4, "normal", T0 + 2 * SECOND)
    ana, mei, bo = agent_id(db), agent_id(db, "mei"), agent_id(db, "bo")
    speaks(db, "ana", ["en"])
    speaks(db, "mei", ["zh-CN"])
    for agent in (ana, mei, bo):
        available(db, agent, T0)

    def offered(agent: int, now: datetime, *, unasked: bool = True) -> int | None:
        """The case the agent would be offered now; put back at once."""
        with db.connect() as conn:
            row, _ = cases.claim_if_free(conn, agent_id=agent, now=now, unasked=unasked, wait=wait)
            if row is not None:
                assert cases.requeue(conn, case_id=row["id"])
        return None if row is None else int(row["id"])

    soon = T0 + 10 * SECOND
    assert [offered(a, soon) for a in (ana, mei, bo)] == [english, victim, victim]
    assert offered(ana, T0 + 16 * SECOND) == victim  # waited 15 s: anyone's
    with db.connect() as conn:
        for n in (1, 2):  # the victim and the English caller are served
            conn.execute(cases.cases.delete().where(cases.cases.c.call_sid == sid(n)))
        conn.commit()
    assert offered(ana, soon) == before  # no language: anyone's; Mandarin waits for mei
    assert offered(mei, soon) == mandarin
    assert offered(ana, T0 + 61 * SECOND) == mandarin
    with db.connect() as conn:
        conn.execute(cases.cases.delete().where(cases.cases.c.call_sid == sid(4)))
        conn.commit()
    assert offered(ana, soon) is None
    assert offered(ana, soon, unasked=False) == mandarin  # asked: better than nobody


def test_an_agent_gets_a_case_in_her_own_language_before_one_that_waited_out_its_own(
    db: Engine,
) -> None:
    """mei speaks Mandarin only: an English call back that waited out its language wait is
    anyone's, but not before the Mandarin caller who came after it; an emergency in any
    language she may take still comes first of all."""
    wait = cases.LanguageWait(normal=timedelta(seconds=60), emergency=timedelta(seconds=15))
    english = add_case(db, 1, "normal", T0 - 10 * MINUTE, language="en")
    mandarin = add_case(db, 2, "normal", T0, language="zh-CN")
    mei = agent_id(db, "mei")
    speaks(db, "mei", ["zh-CN"])
    available(db, mei, T0)

    def offered(now: datetime) -> int | None:
        with db.connect() as conn:
            row, _ = cases.claim_if_free(conn, agent_id=mei, now=now, unasked=True, wait=wait)
            if row is not None:
                assert cases.requeue(conn, case_id=row["id"])
        return None if row is None else int(row["id"])

    assert offered(T0 + SECOND) == mandarin
    victim = add_case(db, 3, "emergency", T0 - MINUTE, language="en")  # waited out its 15 s
    assert offered(T0 + SECOND) == victim
    with db.connect() as conn:
        for n in (2, 3):
            conn.execute(cases.cases.delete().where(cases.cases.c.call_sid == sid(n)))
        conn.commit()
    assert offered(T0 + SECOND) == english  # hers now: nobody else's language waits


def test_an_agents_languages_are_codes_and_all_means_every_one(db: Engine) -> None:
    agent_id(db)

    def stored() -> str | None:
        with db.connect() as conn:
            found: str | None = conn.execute(select(users.c.languages)).scalar()
        return found

    speaks(db, "ana", ["zh-CN", "en", "en"])
    assert stored() == "en,zh-CN" and cases.spoken(stored()) == ["en", "zh-CN"]
    speaks(db, "ana", None)
    assert stored() is None and cases.spoken(stored()) is None
    with db.connect() as conn:
        assert not cases.set_languages(conn, name="nobody", languages=["en"])
        many = [f"e{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
        for bad in (["english!"], [], ["x" * 20], many):
            with pytest.raises(ValueError):
                cases.set_languages(conn, name="ana", languages=bad)
    assert stored() is None


def test_a_language_no_agent_on_shift_speaks_waits_for_nobody(db: Engine) -> None:
    """Only ana is on shift, and she speaks English: a Mandarin caller is hers at once, not
    after the overflow (nobody who speaks Mandarin is there to wait for). mei, who does,
    comes on shift: the next Mandarin caller waits for her."""
    wait = cases.LanguageWait(normal=timedelta(seconds=60), emergency=timedelta(seconds=15))
    first = add_case(db, 1, "normal", T0, language="zh-CN", caller="+15005550001")
    second = add_case(db, 2, "normal", T0 + SECOND, language="zh-CN", caller="+15005550002")
    with db.connect() as conn:
        for n in (1, 2):  # call backs: a case is resolved once its agent has dealt with it
            cases.abandon_for_call(conn, call_sid=sid(n), now=T0 + SECOND)
    ana, mei = agent_id(db), agent_id(db, "mei")
    speaks(db, "ana", ["en"])
    speaks(db, "mei", ["zh-CN"])
    available(db, ana, T0)
    soon = T0 + 5 * SECOND
    with db.connect() as conn:
        assert cases.covered(conn, now=soon) == ["en"]
        taken, _ = cases.claim_if_free(conn, agent_id=ana, now=soon, unasked=True, wait=wait)
    assert taken["id"] == first
    available(db, mei, soon)
    with db.connect() as conn:
        assert cases.covered(conn, now=soon) == ["en", "zh-CN"]  # ana on her case, mei available
        assert cases.resolve(conn, case_id=first, status="offered", now=soon, notes="ok")
        assert cases.claim_if_free(conn, agent_id=ana, now=soon, unasked=True, wait=wait) == (
            None,
            None,
        )
    with db.connect() as conn:
        cases.set_available(conn, agent_id=mei, available=False, now=soon)  # mei leaves
        taken, _ = cases.claim_if_free(conn, agent_id=ana, now=soon, unasked=True, wait=wait)
    assert taken["id"] == second


def test_an_agent_who_asks_gets_an_emergency_in_any_language_first(db: Engine) -> None:
    """ana speaks English and asks for the next case: the Mandarin hijack victim (5 s in line,
    mei on shift to speak to them) comes before the English caller, as the desk promises;
    offered unasked, ana would get the English caller."""
    wait = cases.LanguageWait(normal=timedelta(seconds=60), emergency=timedelta(seconds=15))
    victim = add_case(db, 1, "emergency", T0, language="zh-CN")
    english = add_case(db, 2, "normal", T0, language="en")
    ana, mei = agent_id(db), agent_id(db, "mei")
    speaks(db, "ana", ["en"])
    speaks(db, "mei", ["zh-CN"])
    available(db, ana, T0)
    available(db, mei, T0)
    soon = T0 + 5 * SECOND
    with db.connect() as conn:
        unasked, _ = cases.claim_if_free(conn, agent_id=ana, now=soon, unasked=True, wait=wait)
        assert unasked["id"] == english
        assert cases.requeue(conn, case_id=english)
        asked, _ = cases.claim_if_free(conn, agent_id=ana, now=soon, wait=wait)
    assert asked["id"] == victim


def test_going_away_puts_an_offer_at_the_desk_back_at_once_as_nobodys_miss(db: Engine) -> None:
    """ana is offered a withheld victim's case at her desk, then goes away (or is set away by
    a supervisor, or signs out) before accepting: it does not wait at her empty desk for its
    time; it goes back, and nobody missed anything."""
    victim = withheld_victim(db)
    ana = agent_id(db)
    for away in ("herself", "supervisor"):
        available(db, ana, T0)
        taken, _ = unasked(db, ana, T0 + MINUTE)
        assert taken["id"] == victim
        assert at_desk(db, victim, ana, T0 + MINUTE) == "offered"
        with db.connect() as conn:
            if away == "herself":
                cases.set_available(conn, agent_id=ana, available=False, now=T0 + MINUTE)
            else:
                assert cases.set_away_by_name(conn, name="ana", actor="supervisor:sam", now=T0)
        assert waiting_ids(db) == [victim], away
        row = case_row(db, victim)
        assert (row["agent_id"], row["accept_by"], row["status"]) == (None, None, "abandoned")
    with db.connect() as conn:
        actions = conn.execute(select(audit_log.c.action)).scalars().all()
    assert actions == [cases.SET_AWAY]  # no missed offer; the supervisor's act audited


def test_setting_away_an_agent_already_away_audits_nothing(db: Engine) -> None:
    agent_id(db)
    lapsed = T0 + cases.AVAILABLE_AT_MOST + MINUTE
    available(db, agent_id(db, "bo"), T0)
    with db.connect() as conn:
        assert cases.set_away_by_name(conn, name="ana", actor="supervisor:sam", now=T0)
        assert cases.set_away_by_name(conn, name="bo", actor="supervisor:sam", now=lapsed)
        assert not cases.set_away_by_name(conn, name="nobody", actor="supervisor:sam", now=T0)
        assert conn.execute(select(audit_log)).first() is None


def test_an_agent_who_goes_away_as_a_case_is_offered_at_their_desk_is_not_given_it(
    db: Engine,
) -> None:
    """The dispatch claimed a case for ana; before it is offered at her desk she goes away:
    it goes back in line at once, as nobody's miss, not to wait at her empty desk."""
    victim = withheld_victim(db)
    ana = agent_id(db)
    available(db, ana, T0)
    assert unasked(db, ana, T0 + MINUTE)[0]["id"] == victim
    available(db, ana, T0 + MINUTE, yes=False)
    assert at_desk(db, victim, ana, T0 + MINUTE) == "away"
    with db.connect() as conn:
        assert conn.execute(select(audit_log)).first() is None
    assert waiting_ids(db) == [victim]
    assert case_row(db, victim)["accept_by"] is None


def test_going_away_leaves_an_agent_the_cases_they_are_serving(db: Engine) -> None:
    """Only an offer at the desk not yet accepted goes back when its agent goes away: a
    caller put through to them, and a desk offer they accepted, stay theirs."""
    connected = add_case(db, 1, "normal", T0, caller="+15005550001")
    accepted = withheld_victim(db, 2)
    ana, bo = agent_id(db), agent_id(db, "bo")
    for agent in (ana, bo):
        available(db, agent, T0)
    assert claim(db, ana, T0 + MINUTE)["id"] == accepted  # type: ignore[index]
    assert claim(db, bo, T0 + MINUTE)["id"] == connected  # type: ignore[index]
    assert at_desk(db, accepted, ana, T0 + MINUTE) == "offered"
    with db.connect() as conn:
        assert cases.accept_offer(conn, case_id=accepted, agent_id=ana)
        assert cases.set_status(conn, case_id=connected, status="connected", now=T0 + MINUTE)
        cases.set_available(conn, agent_id=ana, available=False, now=T0 + MINUTE)
        assert cases.set_away_by_name(conn, name="bo", actor="supervisor:sam", now=T0 + MINUTE)
    assert waiting_ids(db) == []
    assert (case_row(db, accepted)["agent_id"], case_row(db, connected)["agent_id"]) == (ana, bo)


def test_an_agent_set_away_after_their_availability_lapsed_stays_away(db: Engine) -> None:
    """bo's availability lapsed while he held a case; a supervisor sets him away (nothing to
    audit: he was away already). When his case ends he is not available again."""
    add_case(db, 1, "normal", T0, caller="+15005550001")
    with db.connect() as conn:
        cases.abandon_for_call(conn, call_sid=sid(1), now=T0)
    bo = agent_id(db, "bo")
    available(db, bo, T0)
    taken = claim(db, bo, T0 + cases.AVAILABLE_AT_MOST - MINUTE)
    assert taken is not None
    later = T0 + cases.AVAILABLE_AT_MOST + MINUTE
    with db.connect() as conn:
        assert cases.set_away_by_name(conn, name="bo", actor="supervisor:sam", now=later)
    with db.connect() as conn:
        assert conn.execute(select(audit_log)).first() is None
    with db.connect() as conn:
        assert cases.resolve(
            conn, case_id=taken["id"], status="offered", now=later + MINUTE, notes="done"
        )
        assert cases.presence(conn, agent_id=bo, now=later + MINUTE) == (None, cases.AWAY_SET)


def connected_with(db: Engine, case_id: int, agent: int, to: cases.Transfer) -> dict[str, Any]:
    """The case put through to `agent`, who asked to send its caller on `to`."""
    with db.connect() as conn:
        assert cases.claim_next(conn, agent_id=agent, now=T0 + 30 * MINUTE) is not None
        assert cases.connect_offer(
            conn, case_id=case_id, agent_id=agent, now=T0 + 30 * MINUTE, placed=None
        )
        user = cases.User(id=agent, name="ana", role="agent", phone=None)
        asked = cases.ask_transfer(conn, case_id=case_id, agent=user, to=to, now=T0 + 31 * MINUTE)
        assert asked == "asked"
        case = cases.get_case(conn, case_id=case_id)
    assert case is not None
    return case


@pytest.mark.parametrize(
    ("priority", "order"),
    [
        # The emergency lane, at its end: behind the victims already waiting, ahead of every
        # case of the other lane.
        ("emergency", ["before", "after", "moved", "normal", "late"]),
        # High counts HIGH_BOOST earlier than it was sent, as every high case does.
        ("high", ["before", "after", "normal", "moved", "late"]),
        ("normal", ["before", "after", "normal", "late", "moved"]),
    ],
)
def test_a_transferred_case_joins_its_new_line_when_it_is_sent_there(
    db: Engine, priority: str, order: list[str]
) -> None:
    """Sent on at T0 + 32 min, the caller joins that line then, as any case of its priority:
    those waiting there have had no help yet."""
    ids = {
        "before": add_case(db, 1, "emergency", T0 - MINUTE),
        "normal": add_case(db, 2, "normal", T0 - 5 * MINUTE),
        "moved": add_case(db, 3, "normal", T0),
        "after": add_case(db, 4, "emergency", T0 + MINUTE),
        "late": add_case(db, 5, "normal", T0 + 25 * MINUTE),
    }
    ana = agent_id(db)
    with db.begin() as conn:  # only the case to move is in line when ana, available, takes it
        conn.execute(cases.cases.update().where(cases.cases.c.id != ids["moved"]).values(queued=0))
        conn.execute(users.update().values(available_since=T0 + 29 * MINUTE))
    to = cases.Transfer(queue="security", priority=priority, language="zh-CN", note="sent")
    case = connected_with(db, ids["moved"], ana, to)
    assert cases.transfer_asked(case) == to
    with db.begin() as conn:
        for statement in cases.transferred(case, now=T0 + 32 * MINUTE):
            conn.execute(statement)
        conn.execute(cases.cases.update().values(queued=1))
        since = conn.execute(select(users.c.available_since).where(users.c.id == ana)).scalar()
    moved = get(db, ids["moved"])
    assert moved is not None and cases.transfer_asked(moved) is None
    assert (moved["status"], moved["agent_id"], moved["offer"]) == ("waiting", None, None)
    assert (moved["queue"], moved["priority"], moved["language"]) == ("security", priority, "zh-CN")
    assert moved["flags"]["transferred_from"] == "support" and moved["flags"]["transfers"] == "1"
    assert moved["queued_at"] == T0 + 32 * MINUTE
    names = {v: k for k, v in ids.items()}
    assert [names[i] for i in waiting_ids(db)] == order
    assert [names[c] for c in claim_all(db, agent_id(db, "bo"))] == order
    assert since == T0 + 32 * MINUTE  # ana's case ended: she waits for the next from then


def test_a_case_sent_on_in_its_own_queue_and_priority_keeps_its_place(db: Engine) -> None:
    """Sent on only to agents who speak the caller's language: the same line, the same
    place; but its wait there starts again (the queue page, the figures), and so does its
    language wait: an agent who does not speak it, the reason it was sent on, is not
    offered it again at once."""
    first = add_case(db, 1, "normal", T0)
    second = add_case(db, 2, "normal", T0 + MINUTE)
    ana = agent_id(db)
    to = cases.Transfer(queue="support", priority="normal", language="zh-CN", note="Mandarin")
    case = connected_with(db, first, ana, to)
    with db.begin() as conn:
        for statement in cases.transferred(case, now=T0 + 32 * MINUTE):
            conn.execute(statement)
    moved = get(db, first)
    assert (moved["sort_at"], moved["queued_at"], moved["language"]) == (
        T0,
        T0 + 32 * MINUTE,
        "zh-CN",
    )
    assert waiting_ids(db) == [first, second]
    [leg] = moved["legs"]
    assert (leg["queue"], leg["agent_id"], leg["from"]) == ("support", ana, "waiting")
    assert leg["entered_at"] == T0.isoformat()
    assert leg["ended_at"] == (T0 + 32 * MINUTE).isoformat()


def test_a_case_being_sent_on_is_not_resolved_by_an_agent_who_looked_before_the_ask(
    db: Engine,
) -> None:
    """The agent's resolve saw no transfer asked (the ask came between that look and its
    write, from another tab or the desk): the write itself still refuses, so the caller is
    sent on and not told goodbye. A supervisor's resolve closes it, as it may."""
    case_id = add_case(db, 1, "normal", T0)
    ana = agent_id(db)
    with db.begin() as conn:
        conn.execute(users.update().values(available_since=T0 + 29 * MINUTE))
    to = cases.Transfer(queue="security", priority="normal", language=None, note="sent")
    connected_with(db, case_id, ana, to)
    with db.connect() as conn:
        args = {"case_id": case_id, "status": "connected", "now": T0 + 32 * MINUTE, "notes": "x"}
        assert not cases.resolve(conn, **args, unless_sending=True)
        case = cases.get_case(conn, case_id=case_id)
        assert case is not None and case["status"] == "connected"
        assert cases.transfer_asked(case) == to
        assert cases.resolve(conn, **args)
    resolved = get(db, case_id)
    assert resolved is not None and resolved["status"] == "resolved"


def test_a_call_back_s_end_reported_as_its_agent_sends_it_on_is_theirs_to_make(
    db: Engine,
) -> None:
    """Twilio's call back CA1 is put through to ana; she sends the case on while they talk
    (asked). The report of CA1's end, read before her ask, must not just drop CA1 (nothing
    else would say the call ended): `call_back_ended` says "asked", and its caller makes
    the transfer. Without an ask it records the end; a report of another call changes
    nothing."""
    ana = agent_id(db)
    asked = add_case(db, 1, "normal", T0, caller="+15005550001")
    ended = add_case(db, 2, "normal", T0, caller="+15005550002")
    with db.connect() as conn:
        assert cases.abandon_for_call(conn, call_sid=sid(1), now=T0) == 1
        assert cases.abandon_for_call(conn, call_sid=sid(2), now=T0) == 1
    assert claim_all(db, ana) == [asked, ended]
    user = cases.User(id=ana, name="ana", role="agent", phone=None)
    to = cases.Transfer(queue="security", priority="emergency", note="a SIM swap")
    with db.connect() as conn:
        for case_id, call in ((asked, "CA1"), (ended, "CA2")):
            assert cases.set_offer(
                conn, case_id=case_id, agent_id=ana, offer=f"calling_back:{call}"
            )
            assert cases.connect_offer(conn, case_id=case_id, agent_id=ana, now=T0, placed=call)
        sent = cases.send_call_back_on(conn, case_id=asked, agent=user, to=to, now=T0)
        assert sent == "asked"
        assert cases.call_back_ended(conn, case_id=asked, call_sid="CA1") == "asked"
        assert cases.call_back_ended(conn, case_id=ended, call_sid="CA9") == "not_this"
        assert cases.call_back_ended(conn, case_id=ended, call_sid="CA2") == "ended"
        # Ended: sent on now, it goes at once.
        assert cases.send_call_back_on(conn, case_id=ended, agent=user, to=to, now=T0) == "sent"
    assert get(db, asked)["flags"][cases.CALL_BACK_SID] == "CA1"
    assert (get(db, ended)["queue"], get(db, ended)["agent_id"]) == ("security", None)


@pytest.mark.parametrize(
    "leg",
    [
        {"agent_id": 7, "connected_at": None, "ended_at": "2026-11-23T02:00:00+00:00"},
        {"agent_id": 7, "connected_at": "not a time", "ended_at": "2026-11-23T02:00:00+00:00"},
        {"agent_id": 7, "connected_at": "2026-11-23T01:00:00", "ended_at": 5},
        {"agent_id": 7},
    ],
)
def test_a_talk_edited_by_hand_is_left_as_it_is_by_a_late_report(
    db: Engine, leg: dict[str, Any]
) -> None:
    """Not as `_leg` writes it: the report of the cut leg (a webhook) changes nothing, and
    raises nothing."""
    case_id = add_case(db, 1, "normal", T0)
    with db.begin() as conn:
        conn.execute(update(cases.cases).where(cases.cases.c.id == case_id).values(legs=[leg]))
    case = get(db, case_id)
    with db.connect() as conn:
        assert not cases.date_last_leg(conn, case=case, agent_id=7, answered=T0)
    assert get(db, case_id)["legs"] == [leg]


def test_a_failed_statement_in_the_local_freeze_is_a_failed_freeze_not_a_500(
    client: TestClient, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local directory's freeze joins the freeze's transaction. A statement of it that
    fails there (PostgreSQL's lock_timeout on the account's row, held by a caller's
    self-freeze or an unfreeze; a statement_timeout) is caught as 'freeze failed', and the
    audit is written next: on PostgreSQL the transaction is aborted by then."""
    token = make_user(db, "ana", "agent")
    LocalDirectory(db, None).add(
        uid="10000002", pin=None, id_last4=None, phone=None, totp_secret=None, now=T0
    )
    case_id = add_case(db, 1, "emergency", T0, uid="10000002")
    assert call(client, "POST", "/api/agents/next", None, token).json()["case"]["id"] == case_id

    def failing(conn: Connection, *, uid: str, now: datetime) -> bool:
        with store.writing(conn):
            conn.exec_driver_sql("SELECT frozen FROM no_such_table")  # fails on both databases
        return True

    monkeypatch.setattr(LocalAccountActions, "freeze_in", staticmethod(failing))
    r = call(client, "POST", f"/api/cases/{case_id}/freeze", {"reason": "stolen"}, token)
    assert r.status_code == 200, r.text
    with db.connect() as conn:
        assert conn.execute(select(audit_log.c.result).where(not_desk)).scalars().all() == [
            "failed"
        ]


# -- working notes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "PIN 739182",
        "she read me 739 182",
        "code was 73-91-82, told her never again",
        "ID ends 5064",
        "身份证后四位 5064",
        "ID5064",  # no space: letters either side, not a word boundary
        "PIN是5064",
        "pin 739\u3000182",  # an ideographic space between the groups
        "his pin is 7391?",  # a half-remembered one: 4 digits where a PIN is spoken of
        "totp \uff11\uff12\uff13\uff14\uff15\uff16",  # a Chinese input method's digits
        "number 07700 900123",  # a group of 6 among others
        "5064",
    ],
)
def test_a_note_holding_what_may_be_a_callers_secret_is_refused(text: str) -> None:
    assert cases.secret_like(text)


@pytest.mark.parametrize(
    "text",
    [
        "follows ticket 1234567",
        "uid 10000001 owner confirmed",
        "withdrew 2,500 USDT and 0.5 BTC",
        "lost 5000 USDT at 1430, first noticed in 2026",
        "客户称损失 3000 USDT",
        "called at 14:30, again 2026-05-01",
        "call back on +1 415 555 0199",
        "客户确认账户被盗, 已冻结",
        "",
    ],
)
def test_a_note_with_tickets_uids_amounts_and_dates_is_kept(text: str) -> None:
    assert not cases.secret_like(text)


def test_api_notes_go_with_the_case_to_the_next_agent_audited_and_never_a_secret(
    client: TestClient, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ana writes on the case she has; nobody else may. Refused, a note is not kept: one
    that may hold a caller's PIN or code, an empty one, one too long. She gives the case
    back; ben, who takes it next, reads her note, by her, when she wrote it."""
    ana = make_user(db, "ana", "agent")
    ben = make_user(db, "ben", "agent")
    case_id = add_case(db, 1, "emergency", T0)
    url = f"/api/cases/{case_id}/notes"
    assert call(client, "POST", url, {"text": "before taking it"}, ana).status_code == 409
    assert call(client, "POST", "/api/agents/next", None, ana).json()["case"]["id"] == case_id
    assert call(client, "POST", url, {"text": "not mine"}, ben).status_code == 409
    words = "says the email changed yesterday, not by her"
    noted = call(client, "POST", url, {"text": f"  {words} "}, ana)
    assert noted.status_code == 200
    [note] = noted.json()
    assert (note["by"], note["text"]) == ("agent:ana", words)
    secret = call(client, "POST", url, {"text": "she keyed 739182 twice"}, ana)
    assert (secret.status_code, secret.json()["detail"]) == (422, cases.SECRET_LIKE)
    assert call(client, "POST", url, {"text": "   "}, ana).status_code == 422
    long = "x" * (cases.NOTE_AT_MOST + 1)
    assert call(client, "POST", url, {"text": long}, ana).status_code == 422
    monkeypatch.setattr(cases, "NOTES_AT_MOST", 2)
    assert call(client, "POST", url, {"text": "second"}, ana).status_code == 200
    full = call(client, "POST", url, {"text": "third"}, ana)
    assert full.status_code == 409 and "2 notes already" in full.json()["detail"]
    # Audited as written, by whom: the words are the case's (purged with it), not the log's.
    assert [r for r in audit_rows(db) if r[1] == "note"] == [("agent:ana", "note", None)] * 2
    assert call(client, "POST", f"/api/cases/{case_id}/requeue", {}, ana).status_code == 200
    assert call(client, "POST", "/api/agents/next", None, ben).json()["case"]["id"] == case_id
    [held] = call(client, "GET", "/api/agents/cases", None, ben).json()
    assert [(n["by"], n["text"]) for n in held["working_notes"]] == [
        ("agent:ana", words),
        ("agent:ana", "second"),
    ]
    assert held["working_notes"][0]["at"] == "2026-11-23T03:00:00Z"  # the app's clock
    assert "739182" not in str(get(db, case_id))


def test_an_agents_take_and_acceptance_are_audited_not_the_dispatchers_offer(
    client: TestClient, db: Engine
) -> None:
    """Asking for the next case is the agent's doing, audited (`take`, on the case); an
    offer the dispatcher makes an available agent is not theirs, until they accept it at
    their desk (`accept`, once: accepting again does nothing more)."""
    ana = make_user(db, "ana", "agent", "+15005550100")
    bo = make_user(db, "bo", "agent", "+15005550101")
    taken = add_case(db, 1, "normal", T0)
    assert call(client, "POST", "/api/agents/next", None, ana).json()["case"]["id"] == taken
    victim = withheld_victim(db, 2)
    presence = call(client, "PUT", "/api/agents/presence", {"available": True}, bo)
    assert presence.status_code == 200, presence.text
    assert client.app.state.hotline.dispatch() == 1  # type: ignore[attr-defined]
    assert case_row(db, victim)["accept_by"] is not None
    for _ in range(2):
        accepted = call(client, "POST", f"/api/cases/{victim}/accept", None, bo)
        assert accepted.status_code == 200, accepted.text
    with db.connect() as conn:
        rows = conn.execute(
            select(audit_log.c.actor, audit_log.c.action, audit_log.c.case_id).order_by(
                audit_log.c.id
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("agent:ana", cases.TAKE, taken),
        ("agent:bo", cases.ACCEPT, victim),
    ]
