"""Property-based fuzzing (hypothesis) of what reaches the hotline from outside.

    webhooks    correctly signed Twilio requests (so they get past the signature check and into
                the logic) with odd values in every field, fields missing, odd query strings,
                on every /twilio/* route, in sequences on a few calls: never a 5xx, never a
                traceback, every 200 is valid TwiML, nothing fails inside (no error logged,
                so the fallback never covers a bug), and each call's log stays readable
                through GET /api/calls/{sid}, only ever growing
    call trees  mangled YAML: a tree or a SourceError naming the file, never anything else

Deterministic (derandomized, no example database) and bounded, for CI.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete

from ivr.db import audit_log, call_events, calls, cases, verification_failures
from ivr.exceptions import SourceError
from ivr.identity import LocalDirectory
from ivr.phone import Phone
from ivr.prompts import load_catalogs
from ivr.store import get_call
from ivr.tree import compile_source
from ivr.web import TWILIO_PATHS
from tests.conftest import DATA, PUBLIC_URL, SECRET_KEY, FakeClock, bearer, make_user

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)

SIDS = ["CA" + f"{n:032x}" for n in (0xF0, 0xF1, 0xF2)]
ROUTES = sorted(path.removeprefix("/twilio/") for path in TWILIO_PATHS)  # every webhook
STEPPED = {"gather", "dial", "queue-exit"}
CASED = {"connect", "connect-done", "callback-status"}

ODD = st.sampled_from(
    [
        "",
        " ",
        "0",
        "-1",
        "+1",
        "1.5",
        "1e309",
        "NaN",
        "-inf",
        "0x1F",
        "99999999999999999999999999",
        "\uff11\uff12\uff13",  # fullwidth digits
        "١٢٣",  # Arabic-Indic digits
        "\x00",
        "1\x002",
        "\x1b[2J",
        "\r\n",
        "<Say>hi</Say>",
        "]]>",
        "&amp;",
        "' OR 1=1 --",
        "%00",
        "\u202e1",  # right-to-left override
        "\U0001d7d9\U0001d7da",  # mathematical digits
        "账户被盗",
        "null",
    ]
)
TEXT = st.text(st.characters(codec="utf-8"), max_size=200)  # NUL and control characters too
VALUE = st.one_of(ODD, TEXT)
NUMBER = st.one_of(st.integers(-10, 10**30).map(str), VALUE)


def one_of_or_odd(*choices: str) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(choices), VALUE)


FIELDS: dict[str, st.SearchStrategy[str]] = {
    "Digits": st.one_of(
        st.text("0123456789*#", min_size=1, max_size=12),
        st.just("1" * 30_000),  # huge, still under the 64 KB body limit
        VALUE,
    ),
    "SpeechResult": st.one_of(
        st.sampled_from(["my account was hacked", "账户被盗", "agent"]), VALUE
    ),
    "Confidence": st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(str), VALUE),
    "CallStatus": one_of_or_odd(
        "queued", "ringing", "in-progress", "completed", "busy", "failed", "no-answer", "canceled"
    ),
    "SequenceNumber": NUMBER,
    "CallDuration": NUMBER,
    "QueueTime": NUMBER,
    "QueueResult": one_of_or_odd(
        "bridged", "leave", "hangup", "redirected", "error", "system-error", "queue-full"
    ),
    "DialCallStatus": one_of_or_odd("completed", "busy", "no-answer", "failed", "canceled"),
    "From": one_of_or_odd("+15005550006", "anonymous", "client:alice"),
    "To": one_of_or_odd("+15005550001"),
    "AccountSid": one_of_or_odd("AC" + "0" * 32),
    "StirVerstat": one_of_or_odd("TN-Validation-Passed-A", "TN-Validation-Failed"),
}


Request = tuple[str, list[tuple[str, str]], dict[str, str]]

UID, PIN = "10000001", "739182"
# What a caller of the default tree presses and says: menu keys, an account and its PIN, a
# ticket number, words the menus know.
KEYS = st.sampled_from(["1", "1", "1", "2", "3", "4", "9", "0", "*", "#", UID, PIN, "1234567"])
WORDS = st.sampled_from(
    ["my account was hacked", "English", "Chinese", "agent", "账户被盗", "充值"]
)


@st.composite
def webhook(draw: st.DrawFn) -> Request:
    """(route, query, form): the query's `s` may be "current" (the step the call expects).

    Three in four are tame (the first call, the step it expects, a key or words it may know,
    a few odd fields besides) so that calls get deep into the tree; the rest are wild."""
    tame = draw(st.integers(0, 3)) > 0
    if tame:
        route = draw(st.sampled_from(["gather"] * 8 + ROUTES))
        form = {"CallSid": SIDS[0], "From": "+15005550006", "To": "+15005550001"}
        said = draw(
            st.one_of(
                KEYS.map(lambda keys: {"Digits": keys}),
                WORDS.map(lambda words: {"SpeechResult": words, "Confidence": "0.9"}),
                st.just({}),
            )
        )
        form.update(said)
        odd = draw(st.fixed_dictionaries({}, optional=FIELDS))
        form.update(dict(list(odd.items())[: draw(st.integers(0, 2))]))
    else:
        route = draw(st.sampled_from(ROUTES))
        form = draw(st.fixed_dictionaries({}, optional=FIELDS))
        sid = draw(st.one_of(st.sampled_from(SIDS), VALUE, st.none()))
        if sid is not None:
            form["CallSid"] = sid
    query: list[tuple[str, str]] = []
    if route in STEPPED:
        wild = st.one_of(st.integers(0, 40).map(str), NUMBER, st.none())
        step = "current" if tame else draw(st.one_of(st.just("current"), wild))
        if step is not None:
            query.append(("s", step))
    if route in {"wait", "callback-request"}:
        lang = draw(st.one_of(st.sampled_from(["en", "zh-CN"]), VALUE, st.none()))
        if lang is not None:
            query.append(("lang", lang))
    if route == "wait":
        queue = draw(st.one_of(st.sampled_from(["security", "general"]), VALUE, st.none()))
        if queue is not None:
            query.append(("queue", queue))
    if route in CASED:
        case = draw(st.one_of(st.integers(1, 3).map(str), NUMBER, st.none()))
        if case is not None:
            query.append(("case", case))
        if route == "connect" and draw(st.booleans()):
            query.append(("out", draw(st.one_of(st.sampled_from(["0", "1"]), VALUE))))
    if route == "page-ack":  # a key on a call that paged the on-call
        page = draw(st.one_of(st.integers(1, 3).map(str), NUMBER, st.none()))
        if page is not None:
            query.append(("page", page))
    return route, query, form


FIRST = ("voice", [], {"CallSid": SIDS[0], "From": "+15005550006", "To": "+15005550001"})
CALLS = st.tuples(st.integers(0, 4), st.lists(webhook(), min_size=1, max_size=10)).map(
    lambda drawn: ([FIRST] if drawn[0] else []) + drawn[1]  # most examples start a call
)


def fresh(db: Engine) -> None:
    """Each example on its own calls, so that a failure replays and shrinks the same."""
    with db.begin() as conn:
        for table in (call_events, audit_log, cases, verification_failures, calls):
            conn.execute(delete(table))


def current_step(db: Engine, sid: str) -> str:
    with db.connect() as conn:
        row = get_call(conn, call_sid=sid)
    return str(row["step"]) if row else "1"


def test_signed_webhooks_with_odd_values_never_break_a_call(
    client: TestClient,
    phone: Phone,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    supervisor = bearer(make_user(db, "sue", "supervisor"))
    LocalDirectory(db, SECRET_KEY).add(
        uid=UID, pin=PIN, id_last4="5064", phone="+15005550006", totp_secret=None, now=clock.now
    )
    started: list[str] = []

    @FUZZ
    @given(CALLS)
    def run(requests: list[Request]) -> None:
        fresh(db)
        logs: dict[str, list[dict[str, Any]]] = {}  # each call's events as last read
        for route, query, form in requests:
            caplog.clear()
            sid = form.get("CallSid", "")
            query = [(k, current_step(db, sid) if v == "current" else v) for k, v in query]
            url = f"{PUBLIC_URL}/twilio/{route}" + (f"?{urlencode(query)}" if query else "")
            response = phone.signed_post(url, form)
            where = f"{route} {query} {form!r:.300}"
            if not form:  # no body at all: not a form (Twilio always sends one)
                assert response.status_code == 415, where
                continue
            assert response.status_code in (200, 204, 400, 422), (where, response.text)
            assert "Traceback" not in response.text and 'File "' not in response.text, where
            if response.status_code == 200:
                check_twiml(response.text)
            elif response.status_code == 204:
                assert response.content == b""
            failed_inside = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert not failed_inside, (where, [r.getMessage() for r in failed_inside])
            for call_sid in SIDS:
                answer = client.get(f"/api/calls/{call_sid}", headers=supervisor)
                if answer.status_code == 404:
                    assert call_sid not in logs, "a call vanished from the log"
                    continue
                assert answer.status_code == 200, (where, answer.text)
                events = answer.json()["events"]
                earlier = logs.get(call_sid, [])
                assert events[: len(earlier)] == earlier, "the log of a call was rewritten"
                logs[call_sid] = events
        started.extend(logs)

    run()
    assert started, "no fuzzed call ever started"


# -- call trees -------------------------------------------------------------------------------

MINI = (DATA / "mini.yaml").read_text()
CATALOGS = load_catalogs(DATA / "prompts")
YAML_BITS = st.sampled_from(
    [
        "[",
        "]",
        "{",
        "}",
        ":",
        "- ",
        "\n",
        "\t",
        "&a ",
        "*a ",
        "<<: ",
        "? ",
        "'",
        '"',
        "~",
        "!!int ",
        "!!float ",
        "!!timestamp ",
        "!!binary ",
        "!!set ",
        "!!omap ",
        "!!python/name:os.system ",
        "%YAML 1.1\n",
        "---\n",
        "...\n",
        "\x00",
        "\ufeff",
        "1e999",
        "2026-02-30",
        "kind: menu\n",
        "target: ",
        "    ",
    ]
)


@st.composite
def mangled_tree(draw: st.DrawFn) -> str:
    text = MINI
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text = text[:at] + draw(st.one_of(YAML_BITS, TEXT)) + text[at:]
        else:
            text = text[:at] + text[at + draw(st.integers(1, 40)) :]
    return text


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(mangled_tree())
def test_mangled_trees_compile_or_are_refused_with_file_and_reason(text: str) -> None:
    try:
        compile_source(text, "mangled.yaml", CATALOGS)
    except SourceError as refused:
        assert refused.problems
        for problem in refused.problems:
            assert problem.file == "mangled.yaml"
            assert problem.line is None or 1 <= problem.line <= text.count("\n") + 1
            assert problem.message and "Traceback" not in str(problem)
