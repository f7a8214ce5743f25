"""Hostile and bad input (issue 5): forged webhooks, broken call trees, token guessing.

signatures     every kind of forged webhook is 403, changes nothing, and is counted
call trees     the corpus in tests/data/broken/ is refused by load_tree, by `ivr routes
               check` and by a live reload, each with file, line and node; never a traceback
rate limits    a caller cycling through UIDs from one number is locked out; wrong staff
               tokens (dashboard sign-in, session cookie, API bearer) from one address get
               429 with Retry-After after 10 in 5 minutes, across instances
"""

from __future__ import annotations

import base64
import hashlib
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from ivr import cli
from ivr.cases import create_user
from ivr.db import audit_log, calls, cases, verification_failures
from ivr.exceptions import Problem, SourceError
from ivr.identity import SIGN_IN_FAILED, SIGN_IN_FAILURES, SIGN_IN_WINDOW, SignInThrottle
from ivr.phone import Phone, Press, ScriptedParty
from ivr.settings import Settings
from ivr.tree import CompiledTree, load_tree
from ivr.web import create_app
from ivr.yamlfile import MAX_BYTES
from tests.conftest import (
    DATA,
    HTTPS_CLIENT,
    PUBLIC_URL,
    TOKEN,
    FakeClock,
    bearer,
    count,
    first_request,
    make_settings,
    make_user,
)

BROKEN = DATA / "broken"
PROMPTS = DATA / "prompts"
VOICE = PUBLIC_URL + "/twilio/voice"


def metric(client: TestClient, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


# -- signatures -------------------------------------------------------------------------------


@pytest.mark.parametrize("forgery", ["missing", "wrong", "other_url", "replayed_for_another_call"])
def test_forged_webhooks_are_refused_counted_and_change_nothing(
    client: TestClient, phone: Phone, db: Engine, forgery: str
) -> None:
    params = first_request()
    headers = {"X-Twilio-Signature": phone.validator.compute_signature(VOICE, params)}
    if forgery == "missing":
        headers = {}
    elif forgery == "wrong":
        headers["X-Twilio-Signature"] = "AAAA" + headers["X-Twilio-Signature"][4:]
    elif forgery == "other_url":  # a genuine signature, for the status callback
        headers["X-Twilio-Signature"] = phone.validator.compute_signature(
            PUBLIC_URL + "/twilio/status", params
        )
    else:  # a request Twilio really signed, sent again with another call's CallSid
        params["CallSid"] = "CA" + "2" * 32
    before = metric(client, "ivr_signature_failures_total")
    response = client.post(VOICE, data=params, headers=headers)
    assert response.status_code == 403
    assert "<Response" not in response.text
    assert metric(client, "ivr_signature_failures_total") == before + 1
    assert count(db, calls) == 0
    # The same request, correctly signed, is served and not counted.
    assert phone.signed_post(VOICE, params).status_code == 200
    assert metric(client, "ivr_signature_failures_total") == before + 1


# -- broken call trees ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    line: int | None
    path: str
    message: str


# What each file in tests/data/broken/ must be refused with: the line, the node path ("" for
# the file as a whole) and the telling part of the message.
CORPUS = {
    "alias_bomb.yaml": Expected(9, "lol6", "document expands to more than 200000 values"),
    "bad_key.yaml": Expected(9, "nodes.main.options[1].key", "'10' must be one keypad key"),
    "comments_only.yaml": Expected(1, "", "file is empty"),
    "control_chars.yaml": Expected(
        8, "nodes.main.options[0].target", r"'ag\x1bent' is not a valid name"
    ),
    "cycle_no_exit.yaml": Expected(
        12, "nodes.advice", "loop with no input or exit: advice -> more_advice -> advice"
    ),
    # RecursionError carries no position; the file is named.
    "deep_nesting.yaml": Expected(None, "", "nested too deeply"),
    "duplicate_keys.yaml": Expected(14, "nodes.agent", "duplicate key (first on line 11)"),
    "empty.yaml": Expected(1, "", "file is empty"),
    "list_for_mapping.yaml": Expected(3, "nodes", "not a list"),
    "mapping_for_list.yaml": Expected(7, "nodes.main.options", "must be a list"),
    "missing_start.yaml": Expected(2, "", "'start' is required"),
    "missing_target.yaml": Expected(9, "nodes.main.options[1].target", "unknown node 'nowhere'"),
    "not_utf8.yaml": Expected(None, "", "not UTF-8 text"),
    "nul_byte.yaml": Expected(6, "", "character U+0000 is not allowed in a YAML file"),
    "null_node.yaml": Expected(11, "nodes.agent", "a node is a mapping of settings"),
    "python_tag.yaml": Expected(2, "", "could not determine a constructor"),
    "recursive_alias.yaml": Expected(4, "nodes.main.loop", "recursive alias"),
    "syntax_error.yaml": Expected(9, "", "not valid YAML"),
    "top_level_list.yaml": Expected(2, "", "a call tree is a mapping with `start` and `nodes`"),
    "two_documents.yaml": Expected(6, "", "expected a single document"),
    "unknown_kind.yaml": Expected(12, "nodes.mailbox", "unknown kind 'voicemail'"),
    "wrong_types.yaml": Expected(9, "nodes.main.timeout", "valid integer"),
    # Generated, not kept in the repository: a megabyte of tree.
    "huge.yaml": Expected(None, "", f"file is larger than {MAX_BYTES} bytes"),
}


def corpus_bytes(name: str) -> bytes:
    if name == "huge.yaml":
        node = "  n{i}:\n    kind: hangup\n    prompt: closed\n"
        body = "".join(node.format(i=i) for i in range(MAX_BYTES // 30))
        return ("start: n0\nnodes:\n" + body).encode()
    return (BROKEN / name).read_bytes()


def test_the_corpus_is_complete() -> None:
    on_disk = {p.name for p in BROKEN.iterdir()}
    assert on_disk == set(CORPUS) - {"huge.yaml"}
    assert len(corpus_bytes("huge.yaml")) > MAX_BYTES


def the_problem(problems: list[Problem], file: str, expected: Expected) -> Problem:
    errors = [p for p in problems if p.severity == "error"]
    assert errors, problems
    assert all(p.file == file for p in problems), problems
    found = [p for p in errors if expected.message in p.message]
    assert len(found) == 1, "\n".join(map(str, problems))
    problem = found[0]
    assert (problem.line, problem.path) == (expected.line, expected.path), str(problem)
    where = f"{file}:{expected.line}" if expected.line else file
    assert str(problem).startswith(f"{where}: error:")
    return problem


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("broken")
    for name in CORPUS:
        (folder / name).write_bytes(corpus_bytes(name))
    return folder


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_broken_tree_is_refused_by_load_tree_and_routes_check(corpus_dir: Path, name: str) -> None:
    path = corpus_dir / name
    with pytest.raises(SourceError) as info:
        load_tree(path, PROMPTS)
    problem = the_problem(info.value.problems, str(path), CORPUS[name])

    result = CliRunner().invoke(cli.app, ["routes", "check", str(path), "--prompts", str(PROMPTS)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert str(problem) in result.stdout
    assert f"{path}: " in result.stderr and "the tree would be refused" in result.stderr
    assert "Traceback" not in result.output


def test_the_routes_check_process_prints_no_traceback(corpus_dir: Path) -> None:
    """The real console script, once, on the files whose errors come from deepest down."""
    import subprocess
    import sys

    ivr = str(Path(sys.executable).parent / "ivr")
    for name in ("nul_byte.yaml", "deep_nesting.yaml", "alias_bomb.yaml", "not_utf8.yaml"):
        path = corpus_dir / name
        done = subprocess.run(
            [ivr, "routes", "check", str(path), "--prompts", str(PROMPTS)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        assert str(path) in done.stdout


@pytest.fixture
def live_routes(tmp_path: Path) -> Path:
    path = tmp_path / "live.yaml"
    shutil.copy(DATA / "mini.yaml", path)
    return path


@pytest.fixture
def reload_app(
    database_url: str, live_routes: Path, mini_tree: CompiledTree, db: Engine, clock: FakeClock
) -> FastAPI:
    settings = make_settings(
        IVR_DATABASE_URL=database_url, IVR_ROUTES=str(live_routes), IVR_PROMPTS=str(PROMPTS)
    )
    return create_app(settings, tree=mini_tree, db=db, clock=clock)


def test_live_reload_of_a_broken_tree_keeps_the_running_one(
    reload_app: FastAPI,
    live_routes: Path,
    db: Engine,
    check_twiml: Callable[[str], None],
) -> None:
    operator = make_user(db, "olga", "operator")
    with TestClient(reload_app, base_url=HTTPS_CLIENT) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        live = client.get("/healthz").json()["tree"]
        versions = client.get("/api/routes/versions", headers=bearer(operator)).json()
        for name, expected in sorted(CORPUS.items()):
            live_routes.write_bytes(corpus_bytes(name))
            response = client.post("/api/routes/reload", headers=bearer(operator))
            assert response.status_code == 422, (name, response.text)
            detail = response.json()["detail"]
            assert detail["message"] == "the call tree has errors; the old tree stays live"
            where = f"{live_routes}:{expected.line}" if expected.line else str(live_routes)
            assert any(
                p.startswith(f"{where}: error:") and expected.message in p
                for p in detail["problems"]
            ), (name, detail["problems"])
            assert "Traceback" not in response.text
            assert client.get("/healthz").json()["tree"] == live, name
        # Nothing was stored as a version, and new calls still run on the old tree.
        assert client.get("/api/routes/versions", headers=bearer(operator)).json() == versions
        record = phone.call(ScriptedParty([Press("1"), Press("1")]))
        assert record.queue == "security"
        assert not any("sorry" in line.lower() for line in record.heard), record.heard


# -- verification per calling number --------------------------------------------------------------


class AlwaysWrong:
    """An identity provider that says no, and counts how often it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def check(self, *, uid: str, factor: str, digits: str, now: datetime) -> bool:
        self.asked.append(uid)
        return False

    def registered_phone(self, *, uid: str) -> str | None:
        return None


def test_a_caller_cycling_through_uids_from_one_number_is_locked_out(
    settings: Settings,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
) -> None:
    identity = AlwaysWrong()
    uids = iter(f"{20000000 + n}" for n in range(100))
    attacker, bystander = "+15005550666", "+15005550667"
    with TestClient(
        create_app(settings, tree=hotline_tree, db=db, clock=clock, identity=identity)
    ) as c:
        phone = Phone(c, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        for _ in range(4):  # two guesses a call (attempts: 2), each at another account
            answers: list[Any] = [Press("1"), Press("1")]
            for _ in range(2):
                answers += [Press(next(uids)), Press("123456")]
            phone.call(ScriptedParty(answers), from_number=attacker)
            clock.advance(minutes=1)
    # Each account saw one failure only; the number saw them all: 5 checks, then the lock.
    assert len(identity.asked) == settings.lockout_failures
    assert len(set(identity.asked)) == settings.lockout_failures
    with db.connect() as conn:
        flags = [
            r.flags["verified"] for r in conn.execute(select(cases.c.flags).order_by(cases.c.id))
        ]
    assert flags == ["no", "no", "locked", "locked"]
    # Another number may still try one of those accounts.
    with TestClient(
        create_app(settings, tree=hotline_tree, db=db, clock=clock, identity=identity)
    ) as c:
        phone = Phone(c, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        phone.call(
            ScriptedParty([Press("1"), Press("1"), Press("20000000"), Press("123456")]),
            from_number=bystander,
        )
    assert identity.asked[-1] == "20000000" and len(identity.asked) == settings.lockout_failures + 1


# -- staff sign-in ------------------------------------------------------------------------------


LOGIN = "/dashboard/login"
LIMIT = SIGN_IN_FAILURES


@pytest.fixture
def staff(db: Engine) -> str:
    return make_user(db, "sam", "supervisor")


def sign_in(client: TestClient, token: str) -> Any:
    return client.post(LOGIN, data={"token": token}, follow_redirects=False)


def guesses(n: int) -> Iterator[str]:
    return (f"guess-{i:04d}-{'x' * 24}" for i in range(n))


def retry_after(response: Any) -> int:
    assert response.status_code == 429, response.text
    wait = int(response.headers["Retry-After"])
    assert 0 < wait <= SIGN_IN_WINDOW.total_seconds()
    return wait


def test_dashboard_sign_in_is_throttled_per_address_after_the_limit(
    client: TestClient, app: FastAPI, staff: str, clock: FakeClock, db: Engine
) -> None:
    for token in guesses(LIMIT):
        assert sign_in(client, token).status_code == 401
    blocked = sign_in(client, "one-more-" + "y" * 30)
    wait = retry_after(blocked)
    assert "Too many wrong tokens" in blocked.text
    # While blocked, wrong tokens are refused unchecked-looking; the right one still signs in:
    # anyone able to send wrong tokens "from" an agent's address must not lock the agent out.
    assert sign_in(client, "and-another-" + "y" * 30).status_code == 429
    assert sign_in(client, staff).status_code == 303
    # Another address is not affected ...
    with TestClient(app, client=("192.0.2.7", 40000), base_url=HTTPS_CLIENT) as other:
        assert sign_in(other, "a-first-guess-" + "y" * 30).status_code == 401
    # ... and this one may guess again once the wait is over.
    clock.advance(seconds=wait)
    assert sign_in(client, "after-the-wait-" + "y" * 30).status_code == 401
    # Counted in the database, never the address itself.
    with db.connect() as conn:
        rows = conn.execute(select(verification_failures)).all()
    assert len(rows) == LIMIT + 2  # the limit, and one from each address after it
    assert all(r.uid is None and r.caller.startswith("auth:") for r in rows)
    assert not any("testclient" in str(tuple(r)) for r in rows)


def test_wrong_tokens_from_one_ipv6_subscriber_count_together(app: FastAPI, staff: str) -> None:
    """One IPv6 subscriber holds a whole /64: a new address for every guess must not get a
    new count. Another /64 is someone else."""
    for n, token in enumerate(guesses(LIMIT)):
        with TestClient(
            app, client=(f"2001:db8:0:1::{n + 1:x}", 40000), base_url=HTTPS_CLIENT
        ) as c:
            assert sign_in(c, token).status_code == 401
    with TestClient(
        app, client=("2001:db8:0:1:ffff::99", 40000), base_url=HTTPS_CLIENT
    ) as same_subscriber:
        retry_after(sign_in(same_subscriber, "one-more-" + "y" * 30))
    with TestClient(app, client=("2001:db8:0:2::1", 40000), base_url=HTTPS_CLIENT) as neighbour:
        assert sign_in(neighbour, "a-first-guess-" + "y" * 30).status_code == 401


def test_successful_sign_ins_are_never_counted(
    client: TestClient, staff: str, clock: FakeClock
) -> None:
    for token in guesses(LIMIT - 1):
        assert sign_in(client, token).status_code == 401
    for _ in range(3 * LIMIT):
        assert sign_in(client, staff).status_code == 303
    assert client.get("/api/queue", headers=bearer(staff)).status_code == 200
    # Failures age out of the window.
    clock.advance(seconds=SIGN_IN_WINDOW.total_seconds() + 1)
    for token in guesses(LIMIT - 1):
        assert sign_in(client, token).status_code == 401
    assert sign_in(client, staff).status_code == 303


def test_forged_session_cookies_count_as_wrong_tokens(client: TestClient, staff: str) -> None:
    assert sign_in(client, staff).status_code == 303
    real = client.cookies["ivr_session"]
    for token in guesses(LIMIT):
        client.cookies.set("ivr_session", token, path="/dashboard")
        page = client.get("/dashboard/queue", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == LOGIN
        assert 'ivr_session=""' in page.headers["set-cookie"]  # dropped: counted once
    client.cookies.set("ivr_session", "forged-" + "c" * 30, path="/dashboard")
    retry_after(client.get("/dashboard/queue", follow_redirects=False))
    retry_after(client.get("/dashboard", follow_redirects=False))
    client.cookies.set("ivr_session", staff, path="/dashboard")  # an API token is no session
    retry_after(client.get("/dashboard/queue", follow_redirects=False))
    client.cookies.set("ivr_session", real, path="/dashboard")  # a real session still works
    assert client.get("/dashboard/queue", follow_redirects=False).status_code == 200


def test_wrong_bearer_tokens_are_throttled_across_instances(
    settings: Settings,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    staff: str,
) -> None:
    first = TestClient(
        create_app(settings, tree=hotline_tree, db=db, clock=clock), base_url=HTTPS_CLIENT
    )
    second = TestClient(
        create_app(settings, tree=hotline_tree, db=db, clock=clock), base_url=HTTPS_CLIENT
    )
    with first, second:
        half = LIMIT // 2
        for i, token in enumerate(guesses(LIMIT - half)):
            client = first if i % 2 else second
            assert client.get("/api/queue", headers=bearer(token)).status_code == 401
        for token in guesses(half):  # the dashboard's sign-in counts with the API's
            assert sign_in(first, token).status_code == 401
        # Blocked on both instances for wrong tokens; the right token and no token at all
        # (nothing guessed) are answered as ever.
        waits = []
        for client in (first, second):
            response = client.get("/api/calls", headers=bearer("whatever-" + "z" * 30))
            waits.append(retry_after(response))
            assert response.json() == {
                "detail": "too many wrong tokens from this address; try again later"
            }
            assert client.get("/api/queue", headers=bearer(staff)).status_code == 200
            assert client.get("/api/queue").status_code == 401
        clock.advance(seconds=max(waits))
        assert second.get("/api/queue", headers=bearer("late-" + "z" * 30)).status_code == 401


def test_a_failed_sign_ins_source_is_a_keyed_digest_of_its_network(db: Engine) -> None:
    """The audit log keeps failed sign-ins' sources for good: an unkeyed digest of an IPv4
    address is undone by trying all of them, so the digest is keyed with the auth token.
    The same network gives the same source (its failures add up); another key, another."""
    throttle = SignInThrottle(db, pepper=TOKEN)
    source = throttle.source("192.0.2.7")
    bare = hashlib.sha256(b"192.0.2.7").hexdigest()[:27]
    assert source.startswith("client:") and bare not in source and "192.0.2.7" not in source
    assert throttle.source("::ffff:192.0.2.7") == source  # the same IPv4 address
    assert SignInThrottle(db, pepper="f" * 32).source("192.0.2.7") != source


def failed_sign_ins(db: Engine) -> list[tuple[str, str, str]]:
    with db.connect() as conn:
        rows = conn.execute(
            select(audit_log.c.actor, audit_log.c.reason, audit_log.c.result)
            .where(audit_log.c.action == SIGN_IN_FAILED)
            .order_by(audit_log.c.id)
        ).all()
    return [tuple(r) for r in rows]


def test_failed_sign_ins_are_audited_one_entry_per_source_and_minute(
    client: TestClient, app: FastAPI, db: Engine, clock: FakeClock
) -> None:
    """Wrong tokens at the dashboard and the API, and an expired one (whose user is named),
    from one address in one minute: one audit entry counting them, by a digest of the
    address's network, never the address. The next minute, another entry; another address,
    its own. A password-spraying burst writes no more than the throttle counts: the tries
    refused while the address is blocked are the metrics' alone."""
    with db.connect() as conn:
        expired = create_user(
            conn, name="ana", role="agent", phone=None, now=clock(), expires_at=clock()
        )
    clock.advance(seconds=1)
    for token in guesses(2):
        assert sign_in(client, token).status_code == 401
    assert client.get("/api/queue", headers=bearer("wrong-" + "z" * 30)).status_code == 401
    assert sign_in(client, expired).status_code == 401
    source = SignInThrottle(db, pepper=TOKEN).source("testclient")
    assert failed_sign_ins(db) == [
        (
            source,
            "4 wrong or expired token(s) this minute (api, dashboard); expired: agent:ana",
            "refused",
        )
    ]
    clock.advance(minutes=1)
    with TestClient(app, client=("192.0.2.7", 40000), base_url=HTTPS_CLIENT) as other:
        assert sign_in(other, "a-first-guess-" + "y" * 30).status_code == 401
    for token in guesses(3 * LIMIT):  # past the limit: blocked after LIMIT in the window
        assert sign_in(client, token).status_code in (401, 429)
    entries = failed_sign_ins(db)
    assert entries[1:] == [
        (
            SignInThrottle(db, pepper=TOKEN).source("192.0.2.7"),
            "1 wrong or expired token(s) this minute (dashboard)",
            "refused",
        ),
        (source, f"{LIMIT - 4} wrong or expired token(s) this minute (dashboard)", "refused"),
    ]
    assert not any("testclient" in str(e) or "192.0.2.7" in str(e) for e in entries)


def test_missing_tokens_are_not_counted(client: TestClient, staff: str) -> None:
    for _ in range(3 * LIMIT):
        assert client.get("/api/queue").status_code == 401
        assert client.get("/api/queue", headers={"Authorization": "Basic abc"}).status_code == 401
        assert sign_in(client, "").status_code == 401
    assert client.get("/api/queue", headers=bearer(staff)).status_code == 200


# -- values Twilio never sends, that once failed inside the webhooks ---------------------------


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("field", ["From", "To", "AccountSid"])
def test_nul_bytes_in_twilio_fields_reach_no_database_error(
    phone: Phone,
    client: TestClient,
    db: Engine,
    caplog: pytest.LogCaptureFixture,
    field: str,
) -> None:
    sid = "CA" + "3" * 32
    params = {**first_request(sid), field: "+1500\x00555"}
    caplog.clear()
    response = phone.signed_post(VOICE, params)
    assert response.status_code == 200 and "<Gather" in response.text
    assert errors_logged(caplog) == []
    status = PUBLIC_URL + "/twilio/status"
    ringing = {**params, "CallStatus": "in-\x00progress", "SequenceNumber": "1"}
    assert phone.signed_post(status, ringing).status_code == 204
    ended = {**params, "CallStatus": "completed", "SequenceNumber": "2"}
    assert phone.signed_post(status, ended).status_code == 204
    assert errors_logged(caplog) == []
    with db.connect() as conn:
        assert conn.execute(select(calls.c.ended_at).where(calls.c.call_sid == sid)).scalar()


@pytest.mark.parametrize("number", ["\u00b2", "\u2460", "9999999999999999"])
def test_numbers_twilio_would_never_send_are_ignored(
    phone: Phone,
    db: Engine,
    caplog: pytest.LogCaptureFixture,
    check_twiml: Callable[[str], None],
    number: str,
) -> None:
    """'²'.isdigit() is true but int('²') fails; 16 digits do not fit a database INTEGER."""
    sid = "CA" + "4" * 32
    phone.signed_post(VOICE, first_request(sid))
    caplog.clear()
    held = phone.signed_post(
        PUBLIC_URL + "/twilio/wait?queue=general", {**first_request(sid), "QueueTime": number}
    )
    assert held.status_code == 200
    check_twiml(held.text)
    ended = {
        **first_request(sid),
        "CallStatus": "completed",
        "SequenceNumber": number,
        "CallDuration": number,
    }
    assert phone.signed_post(PUBLIC_URL + "/twilio/status", ended).status_code == 204
    assert errors_logged(caplog) == []
    with db.connect() as conn:
        assert conn.execute(select(calls.c.ended_at).where(calls.c.call_sid == sid)).scalar()


@pytest.mark.parametrize("route", ["connect", "connect-done"])
def test_a_case_number_beyond_any_case_is_refused_not_failed_inside(
    phone: Phone, caplog: pytest.LogCaptureFixture, route: str
) -> None:
    caplog.clear()
    response = phone.signed_post(
        PUBLIC_URL + f"/twilio/{route}?case={2**31}", first_request("CA" + "5" * 32)
    )
    assert response.status_code == 422
    assert errors_logged(caplog) == []


# -- crafted query strings ----------------------------------------------------------------------

NAIVE_CURSOR = base64.urlsafe_b64encode(b"0001-01-01T00:00:00|CA1").decode()  # no zone
# A zone whose time is before year 1 in UTC.
EARLY_CURSOR = base64.urlsafe_b64encode(b"0001-01-01T00:00:00+14:00|CA1").decode()


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/calls", {"since": "2026-11-23T00:00:00"}),  # no zone
        ("/api/calls.csv", {"until": "2026-11-23T00:00:00"}),
        ("/api/calls", {"cursor": NAIVE_CURSOR}),
        ("/api/stats", {"until": "0001-01-01T00:00:00Z"}),  # a day before: no such year
        ("/api/stats", {"since": "9999-12-31T23:59:59Z"}),
        ("/api/calls", {"since": "2026-11-23T00:00:00+25:00"}),  # no such zone
        ("/api/calls", {"since": "0001-01-01T00:00:00+14:00"}),  # before year 1 in UTC
        ("/api/calls.csv", {"until": "9999-12-31T23:59:59-14:00"}),  # after 9999 in UTC
        ("/api/stats", {"since": "0001-01-01T00:00:00+14:00"}),
        ("/api/calls", {"cursor": EARLY_CURSOR}),
    ],
)
def test_crafted_times_in_the_api_are_refused_not_failed_inside(
    client: TestClient,
    staff: str,
    caplog: pytest.LogCaptureFixture,
    path: str,
    params: dict[str, str],
) -> None:
    caplog.clear()
    response = client.get(path, headers=bearer(staff), params=params)
    assert response.status_code == 422, response.text
    assert "Traceback" not in response.text
    assert errors_logged(caplog) == []


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/dashboard/figures", {"until": "0001-01-01T00:00"}, 422),
        # The first day there is: no week before it to link to.
        ("/dashboard/figures", {"since": "0001-01-01T00:00", "until": "0001-01-02T00:00"}, 200),
        # The last hour there is: figures of no calls, its bars ending at its end.
        ("/dashboard/figures", {"since": "9999-12-31T23:00", "until": "9999-12-31T23:59"}, 200),
        ("/dashboard/calls", {"cursor": NAIVE_CURSOR}, 422),
        ("/dashboard/calls", {"since": "0001-01-01T00:00"}, 200),  # any call: all of them
        ("/dashboard/calls", {"since": "garbage"}, 422),
        ("/dashboard/calls", {"until": "2026-13-01T00:00"}, 422),
        ("/dashboard/calls", {"since": "0001-01-01T00:00+14:00"}, 422),
        ("/dashboard/calls", {"cursor": EARLY_CURSOR}, 422),
        ("/dashboard/figures", {"since": "0001-01-01T00:00+14:00"}, 422),
    ],
)
def test_crafted_times_on_the_dashboard_are_answered_on_the_page(
    client: TestClient,
    staff: str,
    caplog: pytest.LogCaptureFixture,
    path: str,
    params: dict[str, str],
    status: int,
) -> None:
    sign_in(client, staff)
    caplog.clear()
    response = client.get(path, params=params)
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    assert errors_logged(caplog) == []
