"""The webhooks over HTTP: signatures, idempotency, restarts, outages, status callbacks."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
from fastapi import FastAPI
from fastapi.testclient import TestClient
from lxml import etree
from pydantic import ValidationError
from requests.adapters import HTTPAdapter
from sqlalchemy import Engine, event, select
from starlette.datastructures import FormData
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator

from ivr.db import call_events, calls, cases, create_db_engine, upgrade
from ivr.deps import REPORTS_AT_ONCE, REST_THREADS
from ivr.hotline import Hotline, never_sent
from ivr.identity import LocalDirectory
from ivr.phone import CallRecord, HangUp, Phone, Press, Prompt, ScriptedParty, Silent
from ivr.settings import Settings
from ivr.store import call_log, get_call
from ivr.tree import CompiledTree
from ivr.web import (
    CHECK_THREADS,
    TWILIO_PATHS,
    TWILIO_REST_TIMEOUT,
    Following,
    TwilioAdapter,
    create_app,
    rest_client,
    rest_retries,
    worker_threads,
)
from ivr.web import router as twilio_router
from tests.conftest import (
    HTTPS_CLIENT,
    PUBLIC_URL,
    TOKEN,
    FakeClock,
    RecordingTwilio,
    bearer,
    count,
    first_request,
    make_settings,
    make_user,
)
from tests.support.twilio import app_with_twilio, on_the_line

VOICE = PUBLIC_URL + "/twilio/voice"
STATUS = PUBLIC_URL + "/twilio/status"
FALLBACK = PUBLIC_URL + "/twilio/fallback"
SID = "CA" + "1" * 32


@pytest.fixture
def mini_app(settings: Settings, mini_tree: CompiledTree, db: Engine, clock: FakeClock) -> FastAPI:
    return create_app(settings, tree=mini_tree, db=db, clock=clock)


@pytest.fixture
def mini_client(mini_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(mini_app, base_url=HTTPS_CLIENT) as c:
        yield c


@pytest.fixture
def mini_phone(mini_client: TestClient, check_twiml: Callable[[str], None]) -> Phone:
    return Phone(mini_client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)


# -- signatures -------------------------------------------------------------------------------


def test_unsigned_request_is_refused_and_nothing_is_stored(
    mini_client: TestClient, db: Engine
) -> None:
    response = mini_client.post(VOICE, data=first_request())
    assert response.status_code == 403
    assert count(db, calls) == 0


@pytest.mark.parametrize("tamper", ["other_url", "other_param", "other_token", "garbage"])
def test_wrongly_signed_requests_are_refused(
    mini_client: TestClient, mini_phone: Phone, db: Engine, tamper: str
) -> None:
    params = first_request()
    signer = Phone(
        mini_client,
        public_url=PUBLIC_URL,
        auth_token="f" * 32 if tamper == "other_token" else TOKEN,
    ).validator
    signed_url = VOICE + "?s=2" if tamper == "other_url" else VOICE
    signature = signer.compute_signature(signed_url, params)
    if tamper == "other_param":
        params["CallSid"] = "CA" + "2" * 32  # a replay for another call
    if tamper == "garbage":
        signature = "not-a-signature"
    response = mini_client.post(VOICE, data=params, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 403
    assert count(db, calls) == 0


@pytest.mark.parametrize("tamper", [False, True])
def test_a_field_sent_twice_is_signed_over_both_values(
    mini_client: TestClient, mini_phone: Phone, db: Engine, tamper: bool
) -> None:
    """Twilio's signature covers every value of a repeated field, sorted; so does the check."""
    params = first_request()
    pairs = [*params.items(), ("Forwarded", "b"), ("Forwarded", "a")]
    signature = mini_phone.validator.compute_signature(VOICE, FormData(pairs))
    sent = {**params, "Forwarded": ["b", "c" if tamper else "a"]}
    response = mini_client.post(VOICE, data=sent, headers={"X-Twilio-Signature": signature})
    assert response.status_code == (403 if tamper else 200)
    assert count(db, calls) == (0 if tamper else 1)


def test_every_twilio_path_requires_a_signature(mini_client: TestClient) -> None:
    served = {getattr(route, "path", "") for route in twilio_router.routes}
    assert served == TWILIO_PATHS  # each webhook is in the deadline's and the fuzzer's list
    for path in sorted(TWILIO_PATHS):
        assert mini_client.post(PUBLIC_URL + path, data=first_request()).status_code == 403, path


def test_signed_request_with_malformed_call_sid_is_a_4xx(mini_phone: Phone) -> None:
    response = mini_phone.signed_post(VOICE, {**first_request(), "CallSid": "../../etc"})
    assert response.status_code == 400


# -- the call and its log -----------------------------------------------------------------------


def test_call_state_and_log_are_stored_per_call_sid(mini_phone: Phone, db: Engine) -> None:
    record = mini_phone.call(ScriptedParty([Press("1"), Press("2"), Press("1")], hold_polls=1))
    assert record.queue == "general"  # advice -> hours (Monday 11:00 in Singapore: open) -> agent
    with db.connect() as conn:
        row = get_call(conn, call_sid=record.call_sid)
        events = call_log(conn, call_sid=record.call_sid)
    assert row is not None
    assert row["status"] == "completed" and row["duration_seconds"] is not None
    assert row["state"]["node"] == "agent" and row["state"]["facts"]["topic"] == "security_tips"
    entered = [e["node"] for e in events if e["kind"] == "entered"]
    assert entered == ["language", "main", "more", "advice", "hours", "agent"]
    inputs = [(e["node"], e["input_kind"], e["option"]) for e in events if e["kind"] == "input"]
    assert inputs == [("language", "dtmf", "1"), ("main", "dtmf", "2"), ("more", "dtmf", "1")]
    hours = next(e for e in events if e["node"] == "hours")
    assert hours["outcome"] == "open"
    assert events[-1]["kind"] == "status" and events[-1]["outcome"] == "completed"


def test_twilio_repeating_a_request_does_not_count_twice(mini_phone: Phone, db: Engine) -> None:
    record = mini_phone.call(ScriptedParty([Press("1"), Press("9")]))
    invalid_url, invalid_params = record.requests[2]
    assert invalid_params["Digits"] == "9"
    with db.connect() as conn:
        before = call_log(conn, call_sid=record.call_sid)
    again = mini_phone.signed_post(invalid_url, invalid_params)
    assert again.status_code == 200
    assert again.text == record.documents[2]  # the very same answer
    with db.connect() as conn:
        row = get_call(conn, call_sid=record.call_sid)
        assert call_log(conn, call_sid=record.call_sid) == before
    assert row is not None and row["state"]["invalid"] == 1


def test_repeated_first_request_answers_the_same_and_stores_one_call(
    mini_phone: Phone, db: Engine
) -> None:
    first = mini_phone.signed_post(VOICE, first_request())
    second = mini_phone.signed_post(VOICE, first_request())
    assert first.status_code == second.status_code == 200 and first.text == second.text
    assert count(db, calls) == 1


def call_across_a_restart(
    settings: Settings,
    database_url: str,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
    *,
    before: CompiledTree,
    after: CompiledTree,
    on_restart: Callable[[TestClient], object] = lambda _: None,
) -> CallRecord:
    """A call (main menu 2, a wrong 7, then 2) whose last key reaches a new server process on
    `after`: the one on `before` is stopped after the wrong key, the new one started."""
    first_db, second_db = create_db_engine(database_url), create_db_engine(database_url)
    first = TestClient(
        create_app(settings, tree=before, db=first_db, clock=clock), base_url=HTTPS_CLIENT
    )
    second = TestClient(
        create_app(settings, tree=after, db=second_db, clock=clock), base_url=HTTPS_CLIENT
    )
    first.__enter__()
    phone = Phone(first, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)

    class Restarting(ScriptedParty):
        def answer(self, prompt: Prompt) -> Any:
            if len(self.answers) == 1:  # after the invalid key: kill the server, start another
                first.__exit__(None, None, None)
                first_db.dispose()
                second.__enter__()
                on_restart(second)
                phone.client = second
            return super().answer(prompt)

    try:
        return phone.call(Restarting([Press("2"), Press("7"), Press("2")]))
    finally:
        second.__exit__(None, None, None)
        second_db.dispose()


def test_server_restart_between_key_presses_continues_the_call(
    settings: Settings,
    mini_tree: CompiledTree,
    database_url: str,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
) -> None:
    record = call_across_a_restart(
        settings, database_url, clock, check_twiml, before=mini_tree, after=mini_tree
    )
    assert record.heard[-1] == "More menu. Press 1 to hear advice. Press hash to go back."
    assert (
        "主菜单。求助请按1,更多请按2,人工服务请按0。" in record.heard
    )  # still in Mandarin after restart


# -- outages and odd input -------------------------------------------------------------------------


@pytest.fixture
def broken_client(mini_tree: CompiledTree, clock: FakeClock) -> Iterator[TestClient]:
    """The app with a database that does not answer (nothing listens on port 1)."""
    dead = create_db_engine(
        "postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 1}
    )
    settings = make_settings(IVR_DATABASE_URL="postgresql://postgres@127.0.0.1:1/none")
    with TestClient(
        create_app(settings, tree=mini_tree, db=dead, clock=clock), base_url=HTTPS_CLIENT
    ) as c:
        yield c


def test_database_outage_hands_callers_to_an_agent_not_an_error(
    broken_client: TestClient, check_twiml: Callable[[str], None]
) -> None:
    phone = Phone(broken_client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
    record = phone.call(ScriptedParty([]))
    assert record.queue == "general"
    assert record.heard[0] == "Sorry, we are having trouble. Connecting you to an agent."
    assert broken_client.get("/readyz").status_code == 503
    assert broken_client.get("/healthz").status_code == 200


def test_fallback_url_answers_from_memory(
    broken_client: TestClient, check_twiml: Callable[[str], None]
) -> None:
    phone = Phone(broken_client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
    response = phone.signed_post(FALLBACK, {**first_request(), "ErrorCode": "11200"})
    assert response.status_code == 200
    check_twiml(response.text)
    root = etree.fromstring(response.content)
    assert [e.tag for e in root] == ["Say", "Say", "Enqueue"] and root[2].text == "general"


def test_the_fallback_speaks_first_and_holds_in_the_callers_likely_language(
    hotline_tree: CompiledTree, clock: FakeClock, check_twiml: Callable[[str], None]
) -> None:
    """A caller from China whose webhook failed hears Mandarin first, and holds in it: the
    tree's language menu says +86 callers likely speak it. From memory, with no database."""
    dead = create_db_engine(
        "postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 1}
    )
    settings = make_settings(IVR_DATABASE_URL="postgresql://postgres@127.0.0.1:1/none")
    app = create_app(settings, tree=hotline_tree, db=dead, clock=clock)
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        chinese = {**first_request(), "From": "+8613912345678", "ErrorCode": "11200"}
        english = {**first_request(), "ErrorCode": "11200"}
        answers = [phone.signed_post(FALLBACK, form) for form in (chinese, english)]
    (zh_first, en_first) = (etree.fromstring(a.content) for a in answers)
    assert zh_first[0].get("language") == "cmn-CN" and en_first[0].get("language") == "en-US"
    assert [e.tag for e in zh_first] == ["Say", "Say", "Enqueue"]
    assert "lang=zh-CN" in zh_first[2].get("waitUrl", "")
    assert "lang=en" in en_first[2].get("waitUrl", "")


@pytest.mark.parametrize("error_url", ["http://[::1/twilio/wait", "https://[bad]/x", "%%%"])
def test_the_fallback_answers_whatever_error_url_twilio_sends(
    broken_client: TestClient, check_twiml: Callable[[str], None], error_url: str
) -> None:
    """The last resort: an ErrorUrl no URL parser reads is no reason to leave the caller
    with Twilio's application error."""
    phone = Phone(broken_client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
    response = phone.signed_post(FALLBACK, {**first_request(), "ErrorUrl": error_url})
    assert response.status_code == 200 and "<Enqueue" in response.text


def test_a_hold_round_twilio_could_not_fetch_falls_back_to_a_hold_round(
    broken_client: TestClient, check_twiml: Callable[[str], None]
) -> None:
    """Twilio asks the fallback URL when a wait URL's request failed on the way (a proxy's
    502, a reset): an <Enqueue> there would end the caller's wait with an error."""
    phone = Phone(broken_client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
    failed = PUBLIC_URL + "/twilio/wait?lang=zh-CN&queue=security"
    form = {**first_request(), "ErrorCode": "11205", "ErrorUrl": failed}
    response = phone.signed_post(FALLBACK, form)
    check_twiml(response.text)
    assert "<Enqueue" not in response.text and "<Leave" not in response.text
    root = etree.fromstring(response.content)
    assert {e.get("language") for e in root.iter("Say")} == {"cmn-CN"}


def test_a_hold_round_that_fails_inside_is_a_hold_round_from_memory(
    mini_phone: Phone, check_twiml: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A queue's wait URL that fails after its first read (a bug, a write that fails): the
    caller keeps holding where they are. The fallback's <Enqueue> is not TwiML Twilio plays
    from a wait URL: it would end their wait with an error."""

    def fails(*args: Any) -> None:
        raise RuntimeError("fails after the hold round's first read")

    monkeypatch.setattr(Hotline, "_freeze_news", staticmethod(fails))
    record = mini_phone.call(ScriptedParty([Press("1"), Press("1")], hold_polls=2))
    assert record.queue is not None and record.hold_polls == 2  # the phone refuses <Enqueue>


def test_gather_for_an_unknown_call_gets_an_agent(
    mini_phone: Phone, check_twiml: Callable[[str], None]
) -> None:
    response = mini_phone.signed_post(
        PUBLIC_URL + "/twilio/gather?s=3", {**first_request(), "Digits": "1"}
    )
    assert response.status_code == 200
    check_twiml(response.text)
    assert "<Enqueue" in response.text


class _Stop(Exception):
    pass


def call_at_main_menu(phone: Phone) -> str:
    """A call in progress at the main menu: the phone stops there without hanging up, so no
    final status callback ends the call (input after that is not acted on)."""

    class Stopping(ScriptedParty):
        def answer(self, prompt: Prompt) -> Any:
            if not self.answers:
                assert prompt.said[0].startswith("Main menu.")
                raise _Stop
            return super().answer(prompt)

    with pytest.raises(_Stop):
        phone.call(Stopping([Press("1")]), call_sid=SID)
    return SID


@pytest.mark.parametrize("digits", ["1" * 10_000, "\x00\x01", "١٢٣", "<Say>hi</Say>"])
def test_strange_digits_are_an_invalid_choice_not_an_error(
    mini_phone: Phone, db: Engine, check_twiml: Callable[[str], None], digits: str
) -> None:
    sid = call_at_main_menu(mini_phone)
    with db.connect() as conn:
        row = get_call(conn, call_sid=sid)
    assert row is not None
    step_url = PUBLIC_URL + f"/twilio/gather?s={row['step']}"
    response = mini_phone.signed_post(step_url, {**first_request(sid), "Digits": digits})
    assert response.status_code == 200
    check_twiml(response.text)
    with db.connect() as conn:
        row = get_call(conn, call_sid=sid)
    assert row is not None and row["state"]["invalid"] == 1


# -- status callbacks ---------------------------------------------------------------------------


def test_status_callback_closes_the_call_and_ignores_older_sequence(
    mini_phone: Phone, db: Engine
) -> None:
    mini_phone.signed_post(VOICE, first_request())
    status = {
        **first_request(),
        "CallStatus": "completed",
        "CallDuration": "42",
        "SequenceNumber": "3",
    }
    assert mini_phone.signed_post(STATUS, status).status_code == 204
    older = {**status, "CallStatus": "in-progress", "SequenceNumber": "1"}
    assert mini_phone.signed_post(STATUS, older).status_code == 204
    with db.connect() as conn:
        row = get_call(conn, call_sid=SID)
    assert row is not None
    assert (row["status"], row["duration_seconds"]) == ("completed", 42)
    assert row["ended_at"] is not None


def test_status_callback_for_unknown_call_is_accepted_and_ignored(
    mini_phone: Phone, db: Engine
) -> None:
    status = {**first_request(), "CallStatus": "completed", "CallDuration": "5"}
    assert mini_phone.signed_post(STATUS, status).status_code == 204
    assert count(db, calls) == 0 and count(db, call_events) == 0


def test_calls_whose_callbacks_never_come_are_closed_by_age(
    settings: Settings, mini_tree: CompiledTree, db: Engine, clock: FakeClock, mini_phone: Phone
) -> None:
    mini_phone.signed_post(VOICE, first_request())
    clock.advance(hours=5)
    with TestClient(
        create_app(settings, tree=mini_tree, db=db, clock=clock), base_url=HTTPS_CLIENT
    ):
        pass
    with db.connect() as conn:
        assert get_call(conn, call_sid=SID)["status"] == "in-progress"  # type: ignore[index]
    clock.advance(hours=2)  # now 7 h > IVR_CALL_MAX_AGE (6 h)
    with TestClient(
        create_app(settings, tree=mini_tree, db=db, clock=clock), base_url=HTTPS_CLIENT
    ):
        pass
    with db.connect() as conn:
        row = get_call(conn, call_sid=SID)
    assert row is not None and row["status"] == "stale" and row["ended_at"] is not None


def test_caller_hanging_up_at_a_prompt_sends_completed(mini_phone: Phone, db: Engine) -> None:
    record = mini_phone.call(ScriptedParty([Silent(), HangUp()]))
    assert record.ended_by == "caller"
    with db.connect() as conn:
        row = get_call(conn, call_sid=record.call_sid)
    assert row is not None and row["status"] == "completed"


def test_oversized_body_is_refused_before_parsing(mini_client: TestClient) -> None:
    response = mini_client.post(
        VOICE,
        content=b"x=" + b"1" * 100_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413


def test_only_url_encoded_forms_are_read(mini_client: TestClient) -> None:
    response = mini_client.post(
        VOICE,
        files={"f": ("a.txt", b"x")},
        data=first_request(),
        headers={"X-Twilio-Signature": "abc"},
    )
    assert response.status_code == 415


def test_chunked_body_over_the_limit_is_refused_while_reading(mini_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"CallSid=CA" + b"1" * 32
        for _ in range(100):
            yield b"&x=" + b"y" * 1000

    response = mini_client.post(
        VOICE, content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/api/cases/1/resolve", "application/json"),
        ("/dashboard/login", "application/x-www-form-urlencoded"),
        ("/dashboard/login", "multipart/form-data; boundary=b"),
    ],
)
@pytest.mark.parametrize("chunked", [False, True])
def test_a_strangers_huge_body_is_refused_before_it_is_read_or_signed_in(
    mini_client: TestClient, path: str, kind: str, chunked: bool
) -> None:
    """Not read whole into memory (or a temporary file, for a form's upload) and then 401:
    refused as too large first, on the API and the dashboard as on the webhooks."""
    body = b"a" * (200 * 1024)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    sent = mini_client.post(
        path, content=chunks() if chunked else body, headers={"content-type": kind}
    )
    assert sent.status_code == 413
    # A body of a usual size is read, and refused for what it is (no sign-in, a bad form).
    small = mini_client.post(path, content=b"{}", headers={"content-type": kind})
    assert small.status_code in (400, 401, 403, 422)


@pytest.mark.parametrize("confidence", ["NaN", "inf", "-1", "7", "abc"])
def test_odd_speech_confidence_is_dropped_not_stored(
    mini_phone: Phone, db: Engine, confidence: str
) -> None:
    sid = call_at_main_menu(mini_phone)
    with db.connect() as conn:
        row = get_call(conn, call_sid=sid)
    assert row is not None
    url = PUBLIC_URL + f"/twilio/gather?s={row['step']}"
    params = {**first_request(sid), "SpeechResult": "hacked", "Confidence": confidence}
    response = mini_phone.signed_post(url, params)
    assert response.status_code == 200
    assert ">security</Enqueue>" in response.text  # routed, not the fallback's general queue


# -- where a webhook runs ---------------------------------------------------------------------

WORKER = "AnyIO worker thread"  # anyio's name for the threads sync code is sent to
UID, PIN = "10000001", "739182"


def _call_writes(db: Engine) -> list[tuple[str, str]]:
    """(statement, thread) for every write to the calls table, as they happen."""
    seen: list[tuple[str, str]] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith(("INSERT INTO calls ", "UPDATE calls ")):
            seen.append((statement.split()[0], threading.current_thread().name))

    event.listen(db, "before_cursor_execute", record)
    return seen


def test_on_sqlite_a_call_is_written_on_the_event_loop_and_its_pin_checked_in_a_thread(
    phone: Phone, db: Engine, database_url: str, settings: Settings, clock: FakeClock
) -> None:
    LocalDirectory(db, settings.secret_key).add(
        uid=UID, pin=PIN, id_last4=None, phone=None, totp_secret=None, now=clock.now
    )
    writes = _call_writes(db)
    checks: list[str] = []

    def record_check(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("SELECT") and "pin_hash" in statement:  # the PIN's hash, read
            checks.append(threading.current_thread().name)

    event.listen(db, "before_cursor_execute", record_check)
    record = phone.call(ScriptedParty([Press("1"), Press("1"), Press(UID), Press(PIN)]))
    assert record.queue == "security"
    assert any("protective freeze" in line for line in record.heard)
    # The call: answered, language, emergency option, UID, PIN, hang-up in the queue, status.
    assert [kind for kind, _ in writes] == ["INSERT"] + ["UPDATE"] * 6
    # The PIN is hashed and checked: that takes long on purpose, so never on the event loop.
    assert checks and set(checks) == {WORKER}
    in_thread = {thread == WORKER for _, thread in writes}
    # SQLite: every write of the call on the event loop, the PIN's step and freeze included.
    # A network database: every round trip in a thread, never holding up other calls.
    assert in_thread == {not database_url.startswith("sqlite")}


def _tree_reads(db: Engine) -> list[str]:
    """The thread of every read of a stored call-tree version, as it happens."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM tree_versions" in statement:
            seen.append(threading.current_thread().name)

    event.listen(db, "before_cursor_execute", record)
    return seen


def test_a_call_on_a_tree_this_instance_has_not_built_is_built_in_a_thread(
    settings: Settings,
    mini_tree: CompiledTree,
    hotline_tree: CompiledTree,
    database_url: str,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
) -> None:
    """Instance B is up; instance A starts with another tree and takes a call, whose next key
    reaches B. B builds the call's tree from its stored text (a tenth of a second): in a
    worker thread, not on the event loop every other call of B waits on."""
    db_a, db_b = create_db_engine(database_url), create_db_engine(database_url)
    b = TestClient(
        create_app(settings, tree=hotline_tree, db=db_b, clock=clock), base_url=HTTPS_CLIENT
    )
    a = TestClient(
        create_app(settings, tree=mini_tree, db=db_a, clock=clock), base_url=HTTPS_CLIENT
    )
    try:
        with b, a:
            reads = _tree_reads(db_b)  # from here on: B has started already
            phone = Phone(a, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)

            class ToB(ScriptedParty):
                def answer(self, prompt: Prompt) -> Any:
                    if len(self.answers) == 1:  # the last key goes to instance B
                        phone.client = b
                    return super().answer(prompt)

            record = phone.call(ToB([Press("2"), Press("7"), Press("2")]))
    finally:
        db_a.dispose()
        db_b.dispose()
    assert record.heard[-1] == "More menu. Press 1 to hear advice. Press hash to go back."
    assert reads and set(reads) == {WORKER}


def test_a_restart_builds_the_trees_of_calls_in_progress_before_their_next_key(
    settings: Settings,
    mini_tree: CompiledTree,
    hotline_tree: CompiledTree,
    database_url: str,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
) -> None:
    built: list[bool] = []
    record = call_across_a_restart(
        settings,
        database_url,
        clock,
        check_twiml,
        before=mini_tree,
        after=hotline_tree,  # restarted onto another tree, calls in progress
        on_restart=lambda second: built.append(
            second.app.state.hotline.trees.has(mini_tree.version)
        ),
    )
    assert built == [True]  # at start-up, before the call's next key came
    assert record.heard[-1] == "More menu. Press 1 to hear advice. Press hash to go back."


@pytest.fixture
def another_process(database_url: str) -> Iterator[Callable[[], None]]:
    """Another process on the SQLite file (a backup, an `ivr` command): calling this makes it
    hold the write lock for 0.3 s."""
    other = sqlite3.connect(database_url.removeprefix("sqlite:///"), check_same_thread=False)

    def writes_for_a_moment() -> None:
        other.execute("BEGIN IMMEDIATE")
        threading.Timer(0.3, other.rollback).start()

    yield writes_for_a_moment
    other.close()


class WhileAnotherProcessWrites(ScriptedParty):
    """A caller whose next move (a key, or hanging up when `left` answers remain) comes while
    another process holds SQLite's write lock."""

    def __init__(self, answers: list[Any], left: int, writes: Callable[[], None]) -> None:
        super().__init__(answers)
        self.left, self.writes = left, writes

    def answer(self, prompt: Prompt) -> Any:
        if len(self.answers) == self.left:
            self.writes()
        return super().answer(prompt)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PostgreSQL: always threads
def test_a_write_lock_held_elsewhere_moves_the_webhook_to_a_thread_not_the_fallback(
    phone: Phone, db: Engine, another_process: Callable[[], None]
) -> None:
    writes = _call_writes(db)
    # The main-menu key comes while the other process writes.
    record = phone.call(WhileAnotherProcessWrites([Press("1"), Press("3")], 1, another_process))
    assert "If a deposit has not arrived" in record.transcript  # the menu, not an apology
    loop = writes[0][1]
    assert loop != WORKER
    # The key's write found the lock taken and gave up on the loop at once (nothing written),
    # then waited for it in a thread.
    assert writes[1:4] == [("UPDATE", loop), ("UPDATE", loop), ("UPDATE", WORKER)]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_final_status_meeting_a_held_lock_is_recorded_whole_from_a_thread(
    phone: Phone, db: Engine, another_process: Callable[[], None]
) -> None:
    writes = _call_writes(db)
    # Hangs up at the UID prompt of the hijack path while the other process writes.
    record = phone.call(WhileAnotherProcessWrites([Press("1"), Press("1")], 0, another_process))
    loop = writes[0][1]
    # The status found the lock taken on the loop, gave up at once, and was recorded whole in
    # a thread: the call ended, and the hijack caller's case opened for a call back.
    assert writes[3:] == [("UPDATE", loop), ("UPDATE", WORKER)]
    with db.connect() as conn:
        call = get_call(conn, call_sid=record.call_sid)
        opened = conn.execute(select(cases.c.priority, cases.c.status)).all()
    assert call is not None and call["status"] == "completed"
    assert [tuple(r) for r in opened] == [("emergency", "abandoned")]


class Gate:
    """An identity provider whose checks wait until the gate opens (a slow hash, a slow
    service), noting how many are waiting."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.waiting = 0
        self.lock = threading.Lock()

    def check(self, *, uid: str, factor: str, digits: str, now: Any) -> bool:
        with self.lock:
            self.waiting += 1
        self.opened.wait(timeout=30)
        return False

    def registered_phone(self, *, uid: str) -> str | None:
        return None


def a_menu_is_answered_meanwhile(phone: Phone, busy_with: str) -> None:
    """Another caller's menus are answered within 10 s while the hotline is `busy_with`."""
    other: dict[str, Any] = {}
    caller = threading.Thread(
        target=lambda: other.update(record=phone.call(ScriptedParty([Press("1"), Press("3")])))
    )
    caller.start()
    caller.join(timeout=10)
    assert not caller.is_alive(), f"a menu waited for {busy_with}"
    assert "If a deposit has not arrived" in other["record"].transcript


def test_callers_waiting_for_their_pin_check_hold_up_no_other_call(
    settings: Settings,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
) -> None:
    """More callers than there are webhook threads key their PINs and wait for the check:
    another caller's menus are answered meanwhile. The checks wait in threads of their own
    (CHECK_THREADS at most, the rest for a turn), holding no webhook thread and no database
    connection; the metrics count every one of them as waiting."""
    gate = Gate()
    app = create_app(settings, tree=hotline_tree, db=db, clock=clock, identity=gate)
    wave = CHECK_THREADS + 2
    assert wave > worker_threads(db)  # enough to hold every webhook thread, were checks in them
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        victims = [
            threading.Thread(
                target=phone.call,
                args=(ScriptedParty([Press("1"), Press("1"), Press(f"2000000{n}"), Press(PIN)]),),
                kwargs={"from_number": f"+1500555010{n}"},
            )
            for n in range(wave)
        ]
        waiting = f"ivr_verification_checks_in_progress {float(wave)}"
        try:
            for victim in victims:
                victim.start()
            for _ in range(300):
                metrics = client.get("/metrics").text  # what a supervisor sees of the wave
                if gate.waiting == CHECK_THREADS and waiting in metrics:
                    break
                threading.Event().wait(0.05)
            assert gate.waiting == CHECK_THREADS and waiting in metrics
            a_menu_is_answered_meanwhile(phone, "the PIN checks of other calls")
        finally:
            gate.opened.set()
            for victim in victims:
                victim.join(timeout=30)
        metrics = client.get("/metrics").text
    assert gate.waiting == wave
    assert "ivr_verification_checks_in_progress 0.0" in metrics
    assert f"ivr_verification_check_seconds_count {float(wave)}" in metrics


def test_agents_waiting_on_a_slow_twilio_hold_up_no_call(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
) -> None:
    """More agents than there are webhook threads ask for their next case while Twilio's
    REST API takes its time placing their call backs: a new caller's menus are answered
    meanwhile. Each wait holds a thread of REST_THREADS', none of the webhooks'."""
    if db.dialect.name == "sqlite":
        pytest.skip("on SQLite a webhook is answered on the event loop: no thread to wait for")
    twilio = RecordingTwilio()
    app = app_with_twilio(database_url, hotline_tree, db, clock, twilio)
    wave = worker_threads(db) + 1
    assert wave > REST_THREADS
    gate = Gate()

    def slow_twilio() -> None:
        with gate.lock:
            gate.waiting += 1
        gate.opened.wait(timeout=30)

    with on_the_line(app, check_twiml) as (client, phone):
        for n in range(wave):  # callers who asked to be called back, then hung up
            asked = phone.call(
                ScriptedParty([Press("1"), Press("0"), Press("1"), Press("2")]),
                from_number=f"+1500555{n:04d}",
            )
            assert asked.queue == "general"
        agents = [make_user(db, f"agent{n}", "agent", f"+1500555{9000 + n}") for n in range(wave)]
        twilio.meanwhile = slow_twilio
        asking = [
            threading.Thread(
                target=client.post, args=("/api/agents/next",), kwargs={"headers": bearer(a)}
            )
            for a in agents
        ]
        try:
            for agent in asking:
                agent.start()
            for _ in range(300):
                if gate.waiting == REST_THREADS:
                    break
                threading.Event().wait(0.05)
            assert gate.waiting == REST_THREADS
            a_menu_is_answered_meanwhile(phone, "Twilio's REST API")
        finally:
            gate.opened.set()
            for agent in asking:
                agent.join(timeout=30)
    assert gate.waiting == wave  # every agent's call back was placed in the end


def test_reports_asked_for_at_once_hold_up_no_call(
    app: FastAPI, db: Engine, check_twiml: Callable[[str], None]
) -> None:
    """More requests for the figures than there are webhook threads (supervisors opening the
    figures page on a bad day, or one token asking again and again), each a slow read: a
    caller's menus are answered meanwhile. REPORTS_AT_ONCE of them read at a time; the others
    wait for a turn holding no thread; every one is answered in the end."""
    if db.dialect.name == "sqlite":
        pytest.skip("on SQLite a webhook is answered on the event loop: no thread to wait for")
    wave = worker_threads(db) + 1
    assert wave > REPORTS_AT_ONCE
    gate = Gate()

    @event.listens_for(db, "before_cursor_execute")
    def slow_report(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "presence_changes" in statement and not statement.lstrip().upper().startswith("INSERT"):
            with gate.lock:
                gate.waiting += 1
            gate.opened.wait(timeout=30)

    sam = make_user(db, "sam", "supervisor")
    with on_the_line(app, check_twiml) as (client, phone):
        answers: list[int] = []
        asking = [
            threading.Thread(
                target=lambda: answers.append(
                    client.get("/api/stats", headers=bearer(sam)).status_code
                )
            )
            for _ in range(wave)
        ]
        try:
            for report in asking:
                report.start()
            for _ in range(300):
                if gate.waiting == REPORTS_AT_ONCE:
                    break
                threading.Event().wait(0.05)
            threading.Event().wait(0.5)  # none more comes in
            assert gate.waiting == REPORTS_AT_ONCE
            a_menu_is_answered_meanwhile(phone, "the figures")
        finally:
            gate.opened.set()
            for report in asking:
                report.join(timeout=30)
            event.remove(db, "before_cursor_execute", slow_report)
    assert answers == [200] * wave


def test_a_database_down_is_logged_once_per_timed_job_then_its_recovery(
    tmp_path: Path, hotline_tree: CompiledTree, caplog: pytest.LogCaptureFixture
) -> None:
    """What every instance follows every IVR_TREE_SYNC seconds (5) fails while the database is
    down: one traceback per job, not four every five seconds that bury the outage's real
    errors; and a line when it works again."""
    missing = tmp_path / "not-yet"
    url = f"sqlite:///{missing}/ivr.sqlite3"  # its directory does not exist: nothing connects
    db = create_db_engine(url)
    app = create_app(make_settings(IVR_DATABASE_URL=url), tree=hotline_tree, db=db)
    follow = Following()
    with caplog.at_level(logging.WARNING, logger="ivr.web"):
        for _ in range(5):
            asyncio.run(follow(app.state.hotline))
        assert [r.getMessage() for r in caplog.records if r.exc_info] == [
            "could not check the live call-tree version; will try again",
            "could not check the announcement; will try again",
            "could not count the agents at work; will try again",
            "could not compare the instances' settings; will try again",
        ]
        missing.mkdir()
        upgrade(url)
        asyncio.run(follow(app.state.hotline))
    again = [r.getMessage() for r in caplog.records if "again, after" in r.getMessage()]
    assert again == [
        "can check the live call-tree version again, after 5 failed tries",
        "can check the announcement again, after 5 failed tries",
        "can count the agents at work again, after 5 failed tries",
        "can compare the instances' settings again, after 5 failed tries",
    ]
    db.dispose()


class FakeTwilioApi(http.server.BaseHTTPRequestHandler):
    """Twilio's REST API as a test scripts it: each request takes the next answer, a status
    or "drop" (the connection closed with the request read: did Twilio take it?)."""

    answers: ClassVar[list[int | str]] = []
    seen: ClassVar[int] = 0
    delay: ClassVar[float] = 0.0  # seconds before each answer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen += 1
        answer = type(self).answers.pop(0)
        time.sleep(type(self).delay)
        if answer == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(int(answer))
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("answers", "asked", "status"),
    [
        ([429, 429, 201], 3, 201),  # throttled twice, then taken: asked again, at once
        ([429, 429, 429], 3, 429),  # still throttled: the twilio library raises it
        ([500, 201], 1, 500),  # may have been taken: never asked again
        ([503, 201], 1, 503),  # its job's next round asks again, not the transport
        (["drop", 201], 1, None),  # the request sent, no answer: never asked again
    ],
)
def test_twilios_rest_api_is_asked_again_only_for_what_it_did_not_take(
    answers: list[int | str], asked: int, status: int | None
) -> None:
    """The retry policy the REST client mounts (`rest_retries`), over real HTTP: a text or
    a call must never go twice because an answer was lost."""
    FakeTwilioApi.answers, FakeTwilioApi.seen = list(answers), 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeTwilioApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=rest_retries()))
    url = f"http://127.0.0.1:{server.server_address[1]}/2010-04-01/Accounts/AC/Messages.json"
    try:
        if status is None:
            with pytest.raises(requests.exceptions.ConnectionError):
                session.post(url, data={"Body": "ticket"}, timeout=5)
        else:
            assert session.post(url, data={"Body": "ticket"}, timeout=5).status_code == status
    finally:
        server.shutdown()
        server.server_close()
    assert FakeTwilioApi.seen == asked


def test_a_connection_twilio_never_accepted_is_tried_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing listens: no request was sent, so the transport tries twice more (urllib3
    says so as it does)."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    tries = rest_retries()
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=tries))
    with (
        caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"),
        pytest.raises(requests.exceptions.ConnectionError) as refused,
    ):
        session.post(f"http://127.0.0.1:{port}/Messages.json", data={}, timeout=5)
    assert sum(r.getMessage().startswith("Retrying") for r in caplog.records) == 2
    reason = refused.value.args[0]
    assert "Max retries exceeded" in str(reason) and "NewConnectionError" in repr(reason)
    assert never_sent(refused.value)


def test_the_rest_client_asks_twilio_through_that_policy() -> None:
    """The client the hotline talks to Twilio with, on its own transport: the policy above,
    and a timeout, on the way to api.twilio.com."""
    settings = make_settings(TWILIO_ACCOUNT_SID="AC" + "0" * 32)
    transport = rest_client(settings).http_client
    assert isinstance(transport, TwilioHttpClient) and transport.session is not None
    assert transport.timeout == TWILIO_REST_TIMEOUT
    adapter = transport.session.get_adapter("https://api.twilio.com/2010-04-01")
    assert isinstance(adapter, TwilioAdapter)
    retries = adapter.max_retries
    assert (retries.total, retries.read, retries.status_forcelist) == (2, False, (429,))


def test_a_connection_twilio_does_not_accept_is_given_up_in_seconds() -> None:
    """A listener whose backlog is full takes no connection (as an unreachable Twilio): each
    of the three tries waits the adapter's connect timeout, not the client's 5 s for an
    answer, and the failure is one Twilio never saw."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filling = []
    for _ in range(4):  # the backlog full: the next connection is never accepted
        sock = socket.socket()
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
        filling.append(sock)
    session = requests.Session()
    session.mount("http://", TwilioAdapter(connect_timeout=0.2))
    started = time.monotonic()
    try:
        with pytest.raises(requests.exceptions.ConnectTimeout) as refused:
            session.post(f"http://127.0.0.1:{port}/Messages.json", data={}, timeout=5)
    finally:
        for sock in [*filling, listener]:
            sock.close()
    assert time.monotonic() - started < 4  # 3 x 0.2 s and a second between, not 3 x 5 s
    assert never_sent(refused.value)


def test_a_slow_answer_is_waited_for_as_long_as_the_clients_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The adapter keeps the twilio library's one timeout for the answer (a connection gets
    TWILIO_CONNECT_TIMEOUT of its own): Twilio answering in 0.5 s is no timeout at 1 s, and
    is one at 0.2 s, not asked again."""
    FakeTwilioApi.answers, FakeTwilioApi.seen, FakeTwilioApi.delay = [201, 201], 0, 0.5
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeTwilioApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    session = requests.Session()
    session.mount("http://", TwilioAdapter())
    url = f"http://127.0.0.1:{server.server_address[1]}/2010-04-01/Accounts/AC/Calls.json"
    try:
        assert session.post(url, data={}, timeout=1.0).status_code == 201
        with pytest.raises(requests.exceptions.ReadTimeout):
            session.post(url, data={}, timeout=0.2)
    finally:
        FakeTwilioApi.delay = 0.0
        server.shutdown()
        server.server_close()
    assert FakeTwilioApi.seen == 2


def test_a_refused_signature_logs_the_url_it_was_checked_against(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Twilio signs the URL its console has; the hotline checks IVR_PUBLIC_URL + path + query.
    Here the proxy serves the hotline under /hotline/ and IVR_PUBLIC_URL lacks the prefix:
    every webhook is refused, and only the URL checked, beside the console's, shows why."""
    params = first_request()
    signed = f"{PUBLIC_URL}/hotline/twilio/voice?lang=en"  # as configured in Twilio's console
    signature = RequestValidator(TOKEN).compute_signature(signed, params)
    with caplog.at_level(logging.WARNING, logger="ivr.web"):
        response = client.post(
            "/twilio/voice?lang=en", data=params, headers={"X-Twilio-Signature": signature}
        )
    assert response.status_code == 403
    [refused] = [r.getMessage() for r in caplog.records if r.name == "ivr.web"]
    assert refused == (
        "refused unsigned or mis-signed request to /twilio/voice "
        f"(signature checked against {PUBLIC_URL}/twilio/voice?lang=en)"
    )
    assert TOKEN not in caplog.text


def test_each_timed_job_that_waits_on_twilio_has_a_thread_of_its_own() -> None:
    """A slow Twilio holds one job's round, never another's: a purge asking it to delete
    recordings must not keep a page or an offer waiting for a thread."""
    from ivr import web

    waiting = [job for job in web.TimedJobs.__subclasses__() if job.waits_on_twilio]
    assert {job.__name__ for job in waiting} >= {"Paging", "Purging"}
    assert len(waiting) <= web.TWILIO_JOB_THREADS


def test_a_webhook_signed_with_the_token_being_rotated_to_is_served(
    database_url: str,
    mini_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
) -> None:
    """Rotating the auth token: the console's secondary token is set on every instance as
    TWILIO_AUTH_TOKEN_NEXT, then promoted; from that moment Twilio signs with it. Both are
    taken meanwhile, so no caller is turned away on an instance not yet swapped; any other
    token still is, and without the setting the secondary one is."""
    rotated = "fedcba9876543210fedcba9876543210"
    settings = make_settings(IVR_DATABASE_URL=database_url, TWILIO_AUTH_TOKEN_NEXT=rotated)
    app = create_app(settings, tree=mini_tree, db=db, clock=clock)
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        for token in (TOKEN, rotated):
            phone = Phone(client, public_url=PUBLIC_URL, auth_token=token, check_twiml=check_twiml)
            assert phone.call(ScriptedParty([HangUp()])).heard, token
        params = first_request("CA" + "9" * 32)
        stranger = RequestValidator("0123456789abcdef0123456789abcdee")
        signed = {"X-Twilio-Signature": stranger.compute_signature(VOICE, params)}
        assert client.post("/twilio/voice", data=params, headers=signed).status_code == 403
    plain = create_app(
        make_settings(IVR_DATABASE_URL=database_url), tree=mini_tree, db=db, clock=clock
    )
    with TestClient(plain, base_url=HTTPS_CLIENT) as client:
        early = {"X-Twilio-Signature": RequestValidator(rotated).compute_signature(VOICE, params)}
        assert client.post("/twilio/voice", data=params, headers=early).status_code == 403
    with pytest.raises(ValidationError, match="32 hexadecimal digits"):
        make_settings(TWILIO_AUTH_TOKEN_NEXT="x" * 32)
    assert make_settings(TWILIO_AUTH_TOKEN_NEXT=" ").twilio_auth_token_next is None
