"""The webhook hot path's database budget: one read and one write per webhook.

Counted, not timed: every statement the app's engine sends is recorded
(`before_cursor_execute`), so a change that adds a query to a menu key press or a hold-loop
round fails here on any machine, however fast.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from twilio.request_validator import RequestValidator

from ivr.tree import CompiledTree
from ivr.web import create_app
from tests.conftest import HTTPS_CLIENT, PUBLIC_URL, TOKEN, FakeClock, make_settings


@dataclass
class Statements:
    sql: list[str] = field(default_factory=list)
    commits: int = 0

    @property
    def reads(self) -> list[str]:
        return [s for s in self.sql if s.lstrip().upper().startswith("SELECT")]

    @property
    def writes(self) -> list[str]:
        return [
            s for s in self.sql if s.lstrip().upper().split()[0] in ("INSERT", "UPDATE", "DELETE")
        ]


@contextmanager
def counting(db: Engine) -> Iterator[Statements]:
    seen = Statements()

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.sql.append(statement)

    def on_commit(_conn: Any) -> None:
        seen.commits += 1

    event.listen(db, "before_cursor_execute", on_execute)
    event.listen(db, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(db, "before_cursor_execute", on_execute)
        event.remove(db, "commit", on_commit)


class Line:
    """One call, posted as Twilio posts it, remembering where the last TwiML points."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.validator = RequestValidator(TOKEN)
        self.base = {
            "AccountSid": "AC" + "0" * 32,
            "CallSid": "CA" + "1" * 32,
            "From": "+15551230000",
        }
        self.doc = ET.Element("Response")

    def post(self, url: str, **params: str) -> ET.Element:
        form = {**self.base, **params}
        signature = self.validator.compute_signature(url, form)
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        response = self.client.post(path, data=form, headers={"X-Twilio-Signature": signature})
        assert response.status_code == 200, response.text
        self.doc = ET.fromstring(response.text)
        return self.doc

    def into_queue(self) -> ET.Element:
        """The call from its first webhook to an agent queue: English, 0 for an agent. The
        <Enqueue> it ends with."""
        self.post(PUBLIC_URL + "/twilio/voice", CallStatus="ringing")
        self.post(self.gather_action(), Digits="1")
        self.post(self.gather_action(), Digits="0")
        enqueue = self.doc.find("Enqueue")
        assert enqueue is not None, ET.tostring(self.doc)
        return enqueue

    def gather_action(self) -> str:
        gather = self.doc.find("Gather")
        assert gather is not None, ET.tostring(self.doc)
        return gather.get("action", "")


@pytest.fixture
def line(database_url: str, hotline_tree: CompiledTree, db: Engine) -> Iterator[Line]:
    # Background jobs far apart, so that only the webhook under test touches the database.
    settings = make_settings(
        IVR_DATABASE_URL=database_url,
        IVR_TREE_SYNC=3600,
        IVR_SWEEP_INTERVAL=3600,
        IVR_DISPATCH_INTERVAL=3600,
    )
    app = create_app(settings, tree=hotline_tree, db=db, clock=FakeClock())
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        yield Line(client)


def test_a_menu_key_is_one_read_and_one_write(line: Line, db: Engine) -> None:
    line.post(PUBLIC_URL + "/twilio/voice", CallStatus="ringing")
    line.post(line.gather_action(), Digits="1")  # English: now at the main menu
    with counting(db) as seen:
        line.post(line.gather_action(), Digits="3")  # deposits and withdrawals
    assert line.doc.find("Gather") is not None
    assert len(seen.reads) == 1, seen.sql  # the call
    assert len(seen.writes) == 2, seen.sql  # the call's new step, its log lines
    assert seen.commits == 2, seen.sql  # the read's transaction, then one for both writes


@contextmanager
def round_trips(db: Engine, folder: Path) -> Iterator[list[str]]:
    """What the app's connections send PostgreSQL once checked out (libpq's trace of the
    wire protocol; the pool's check of a connection comes before): one entry per round trip,
    a simple query's text or an extended one's statement."""
    sent: list[str] = []
    traced: list[Any] = []
    trace = open(folder / "wire.txt", "w")  # noqa: SIM115 - open while connections write

    def on_checkout(dbapi_conn: Any, *_: Any) -> None:
        dbapi_conn.pgconn.trace(trace.fileno())
        traced.append(dbapi_conn)

    def on_checkin(dbapi_conn: Any, *_: Any) -> None:
        if dbapi_conn is not None:
            dbapi_conn.pgconn.untrace()

    event.listen(db, "checkout", on_checkout)
    event.listen(db, "checkin", on_checkin)
    try:
        yield sent
    finally:
        event.remove(db, "checkout", on_checkout)
        event.remove(db, "checkin", on_checkin)
        trace.close()
    statement, executed = "", False
    for entry in (folder / "wire.txt").read_text().splitlines():
        fields = entry.split("\t")
        if len(fields) < 4 or fields[1] != "F":  # the server's messages, or a wrapped line
            continue
        kind, rest = fields[3], " ".join(fields[4:])
        if kind == "Query":  # simple protocol: its own round trip
            sent.append(rest.strip().strip('"'))
        elif kind == "Parse":
            statement = rest.strip()
        elif kind == "Execute":
            executed = True
        elif kind == "Sync":  # the end of an extended query: one round trip
            # Not counted: psycopg preparing a statement it has run five times on this
            # connection (a Parse and a Sync of their own), which depends on what ran before.
            if executed:
                sent.append(statement or "(a statement prepared before)")
            statement, executed = "", False


def test_on_postgresql_a_read_of_its_own_is_one_round_trip(
    line: Line, db: Engine, tmp_path: Path
) -> None:
    """PostgreSQL at READ COMMITTED: a BEGIN and COMMIT around a webhook's one read buy
    nothing (each statement sees what was committed as it began) and cost two round trips
    (`store.reading` reads in autocommit). A menu key: the read, then the write's BEGIN,
    UPDATE, INSERT and COMMIT; one transaction, the write's. (It was seven.)"""
    if db.dialect.name != "postgresql":
        pytest.skip("SQLite is in this process: there are no round trips")
    line.post(PUBLIC_URL + "/twilio/voice", CallStatus="ringing")
    line.post(line.gather_action(), Digits="1")
    with round_trips(db, tmp_path) as sent:
        line.post(line.gather_action(), Digits="3")
    begins = [i for i, s in enumerate(sent) if s.upper().startswith("BEGIN")]
    reads = [i for i, s in enumerate(sent) if s.strip('" ').startswith("SELECT calls.")]
    assert len(begins) == 1 and len(reads) == 1, sent
    assert reads[0] < begins[0], sent  # the read came before any transaction
    assert len(sent) == 5, "\n".join(s[:60] for s in sent)


def test_a_hold_loop_round_is_one_read(line: Line, db: Engine) -> None:
    wait_url = line.into_queue().get("waitUrl", "")
    line.post(wait_url, QueueTime="0")  # the first round, as a warm-up
    with counting(db) as seen:
        line.post(wait_url, QueueTime="30")
    assert line.doc.find("Gather/Say") is not None  # the place in line was said
    assert len(seen.reads) == 1, seen.sql  # the case and its place in line, together
    assert seen.writes == [], seen.sql


def test_a_repeated_request_is_one_read(line: Line, db: Engine) -> None:
    line.post(PUBLIC_URL + "/twilio/voice", CallStatus="ringing")
    action = line.gather_action()
    line.post(action, Digits="1")
    with counting(db) as seen:
        line.post(action, Digits="1")  # Twilio delivered it twice: the stored answer again
    assert len(seen.reads) == 1, seen.sql
    assert seen.writes == [], seen.sql


def test_a_dispatch_round_with_nothing_to_offer_reads_little_and_writes_nothing(
    line: Line, db: Engine
) -> None:
    """Every instance offers cases to available agents every second (`Hotline.dispatch`):
    with a caller waiting and nobody available, a round is two small reads (offers at
    desks past their time, then the available agents) and no write, so it never takes
    SQLite's one writer from the webhooks."""
    line.into_queue()
    hotline = line.client.app.state.hotline  # type: ignore[attr-defined]
    with counting(db) as seen:
        assert hotline.dispatch() == 0
    assert len(seen.reads) == 2, seen.sql
    assert seen.writes == [], seen.sql


def test_looking_for_tickets_to_text_is_one_read(line: Line, db: Engine) -> None:
    """Every instance looks every IVR_TREE_SYNC seconds for tickets to text (with
    IVR_TEXT_TICKETS, `Hotline.text_tickets`): with a caller waiting and none due, one read
    and no write."""
    line.into_queue()
    hotline = line.client.app.state.hotline  # type: ignore[attr-defined]
    with counting(db) as seen:
        assert hotline.text_tickets() == 0
    assert len(seen.reads) == 1, seen.sql
    assert seen.writes == [], seen.sql


def test_looking_for_an_emergency_left_waiting_is_one_read(line: Line, db: Engine) -> None:
    """Every instance looks every IVR_TREE_SYNC seconds whether to page the on-call
    (`Hotline.page_on_call`): with a caller waiting and no emergency overdue, that is one
    read (the emergency lane's first case) and no write."""
    line.into_queue()
    hotline = line.client.app.state.hotline  # type: ignore[attr-defined]
    with counting(db) as seen:
        assert hotline.page_on_call() is None
    assert len(seen.reads) == 1, seen.sql
    assert seen.writes == [], seen.sql
