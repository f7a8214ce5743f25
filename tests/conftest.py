"""Shared fixtures: settings, both databases, the app, and the Twilio-like phone.

Tests that take `database_url` run twice, on SQLite and on PostgreSQL. PostgreSQL is
required: if it does not answer, those tests fail loudly instead of being skipped.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from lxml import etree
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.exc import OperationalError
from twilio.http import HttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client as TwilioClient

from ivr.cases import create_user
from ivr.db import create_db_engine, metadata, upgrade
from ivr.phone import Phone
from ivr.settings import PROJECT_ROOT, Settings
from ivr.tree import CompiledTree, load_tree
from ivr.web import create_app

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
TOKEN = "0123456789abcdef0123456789abcdef"
SECRET_KEY = "q0lkSCRwEcs2w1J4yqS5o1yVLUCQdZ3N1D6oU6y2h0k="  # a Fernet key for tests only
CALLER_ID = "+15005550001"
PUBLIC_URL = "https://hotline.example.test"
# The dashboard's cookie is Secure (the public URL is https): browsers and httpx send it
# back over https only.
HTTPS_CLIENT = "https://testserver"
PG_ADMIN_URL = os.environ.get(
    "IVR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def make_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "TWILIO_AUTH_TOKEN": TOKEN,
        "IVR_PUBLIC_URL": PUBLIC_URL,
        "IVR_DATABASE_URL": "sqlite://",
        "IVR_HOLD_MUSIC_URL": None,
        "IVR_SECRET_KEY": SECRET_KEY,
        "IVR_CALLER_ID": CALLER_ID,
        # Cases are offered to available agents when a test says so (`Hotline.dispatch`),
        # not by the app's timed job at a moment of its own; a test of that job sets it.
        "IVR_DISPATCH_INTERVAL": 3600,
        # The tests scrape /metrics without a token; on the https PUBLIC_URL it would be 404
        # (test_observe checks that default).
        "IVR_METRICS_OPEN": True,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class FakeClock:
    """The app's clock, moved by the test (a Monday inside business hours by default)."""

    def __init__(self, start: datetime = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


# -- TwiML schema -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def check_twiml() -> Callable[[str], None]:
    schema = etree.XMLSchema(etree.parse(str(HERE / "twiml_schema" / "voice.xsd")))

    def check(body: str) -> None:
        doc = etree.fromstring(body.encode())
        if not schema.validate(doc):
            errors = "\n".join(f"line {e.line}: {e.message}" for e in schema.error_log)
            raise AssertionError(f"invalid TwiML:\n{errors}\n{body}")

    return check


# -- databases --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "ivr.sqlite3"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"ivr_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is required for the suite and does not answer at {PG_ADMIN_URL}: {exc}"
        )
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "ivr.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_database_url")
    engine = create_db_engine(url)
    with engine.begin() as conn:
        names = ", ".join(t.name for t in reversed(metadata.sorted_tables))
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def db(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


# -- trees, app, phone --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mini_tree() -> CompiledTree:
    return load_tree(DATA / "mini.yaml", DATA / "prompts")


@pytest.fixture(scope="session")
def hotline_tree() -> CompiledTree:
    return load_tree(PROJECT_ROOT / "routes" / "hotline.yaml", PROJECT_ROOT / "prompts")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(IVR_DATABASE_URL=database_url)


@pytest.fixture
def app(settings: Settings, hotline_tree: CompiledTree, db: Engine, clock: FakeClock) -> FastAPI:
    """The app on the default hotline tree."""
    return create_app(settings, tree=hotline_tree, db=db, clock=clock)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url=HTTPS_CLIENT) as c:
        yield c


@pytest.fixture
def phone(client: TestClient, check_twiml: Callable[[str], None], clock: FakeClock) -> Phone:
    """The Twilio-like driver: signs, follows TwiML, validates every document against the schema."""
    return Phone(
        client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml, clock=clock
    )


# -- the Twilio REST API, agents ------------------------------------------------------------


class RecordingTwilio(HttpClient):
    """twilio.rest.Client's transport, recording each REST call instead of sending it."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("tests.twilio"), False)
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.refuse = False  # answer every REST call with Twilio's error, as in an outage
        # Or answer with this (HTTP status, Twilio error code), e.g. (400, 21220): a redirect
        # of a call that has ended.
        self.error: tuple[int, int] | None = None
        self.sids: list[str] = []  # the call sid each answer gave, in order
        self.redirects: list[tuple[str, str]] = []  # live calls moved (CallSid, Url), in order
        # Run as each REST call arrives, before it is answered: what else happens meanwhile.
        self.meanwhile: Callable[[], None] | None = None
        # The account's queues, as Twilio lists them (friendly_name, max_size, sid), a page
        # of `queue_page` at a time.
        self.queues: list[dict[str, object]] = []
        self.queue_page = 50
        # The calls it placed (sid, To, From), listed by a GET of Calls.json as Twilio's
        # queued: made before `meanwhile` runs, so an answer lost there still placed one.
        self.placed: list[dict[str, str]] = []
        self.placed_status = "queued"  # as those calls are listed

    def request(
        self,
        method: str,
        url: str,
        params: object = None,
        data: object = None,
        headers: object = None,
        auth: object = None,
        timeout: object = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        self.requests.append((method, url, dict(data or {})))  # type: ignore[call-overload]
        where = urlsplit(url)
        placing = method == "POST" and where.path.endswith("/Calls.json")
        if placing and not (self.error or self.refuse):
            form = self.requests[-1][2]
            sid = "CA" + uuid.uuid4().hex
            self.placed.append({"sid": sid, "to": form.get("To", ""), "from": form.get("From", "")})
        if self.meanwhile is not None:
            self.meanwhile()
        status, code = self.error or ((503, 20503) if self.refuse else (0, 0))
        if status:
            return TwilioResponse(
                status, json.dumps({"code": code, "message": "refused", "status": status})
            )
        query = {**dict(parse_qsl(where.query)), **dict(params or {})}  # type: ignore[call-overload]
        if method == "GET" and where.path.endswith("/Queues.json"):
            return self._queues(query)
        if method == "GET" and where.path.endswith("/Calls.json"):
            listed = [
                {**call, "status": self.placed_status}
                for call in self.placed
                if call["to"] == query.get("To", call["to"])
                and call["from"] == query.get("From", call["from"])
            ]
            return TwilioResponse(200, json.dumps({"calls": listed, "next_page_uri": None}))
        form = self.requests[-1][2]
        if "/Calls/" in url and "Url" in form:  # a live call Twilio moved: its sid, and where
            self.redirects.append((url.rsplit("/", 1)[-1].removesuffix(".json"), form["Url"]))
        sid = self.placed[-1]["sid"] if placing else "CA" + uuid.uuid4().hex
        self.sids.append(sid)
        return TwilioResponse(
            200 if "/Calls/" in url else 201, json.dumps({"sid": sid, "status": "queued"})
        )

    def _queues(self, params: dict[str, str]) -> TwilioResponse:
        page = int(params.get("Page", "0"))
        start = page * self.queue_page
        more = start + self.queue_page < len(self.queues)
        following = f"/2010-04-01/Accounts/AC/Queues.json?Page={page + 1}" if more else None
        body = {"queues": self.queues[start : start + self.queue_page], "next_page_uri": following}
        return TwilioResponse(200, json.dumps(body))


def redirected(twilio: RecordingTwilio) -> Callable[[str], list[str]]:
    """For the phone: where the hotline had Twilio redirect a call so far (what Twilio took)."""
    return lambda call_sid: [url for sid, url in twilio.redirects if sid == call_sid]


@pytest.fixture
def twilio_http() -> RecordingTwilio:
    return RecordingTwilio()


@pytest.fixture
def twilio_client(twilio_http: RecordingTwilio) -> TwilioClient:
    return TwilioClient("AC" + "0" * 32, TOKEN, http_client=twilio_http)


def eventually(what: Callable[[], Any], seconds: float = 15.0) -> Any:
    """What `what` gives once it gives something: the app's timed job is on its own clock."""
    deadline = time.monotonic() + seconds
    while not (found := what()):
        assert time.monotonic() < deadline, "the timed job never did it"
        time.sleep(0.02)
    return found


def count(db: Engine, table: Any) -> int:
    """The rows in `table`."""
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def first_request(sid: str = "CA" + "1" * 32) -> dict[str, str]:
    """The parameters of the first webhook of an inbound call, as Twilio sends them."""
    return {
        "CallSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": "+15005550006",
        "To": "+15005550001",
        "CallStatus": "ringing",
    }


def make_user(db: Engine, name: str, role: str, phone: str | None = None) -> str:
    """A user of the JSON API; returns the bearer token."""
    with db.connect() as conn:
        return create_user(
            conn, name=name, role=role, phone=phone, now=datetime(2026, 11, 23, tzinfo=UTC)
        )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
