"""/metrics and the JSON log lines, after real calls through the phone."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, create_engine

from ivr.cases import create_user
from ivr.db import create_db_engine
from ivr.observe import JsonFormatter, _FromDatabase
from ivr.phone import Phone, Press, ScriptedParty
from ivr.tree import CompiledTree
from ivr.web import create_app
from tests.conftest import (
    HTTPS_CLIENT,
    PUBLIC_URL,
    SECRET_KEY,
    TOKEN,
    FakeClock,
    bearer,
    make_settings,
    make_user,
)
from tests.support.servers import ServerProcess, server_env


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_what_happened(phone: Phone, client: TestClient) -> None:
    # A hijack call with a wrong PIN twice, then an unsigned request.
    phone.call(
        ScriptedParty(
            [
                Press("1"),
                Press("1"),
                Press("10000001"),
                Press("000000"),
                Press("10000001"),
                Press("111111"),
            ]
        ),
        from_number="+15005550888",
    )
    assert client.post(f"{PUBLIC_URL}/twilio/voice", data={"CallSid": "x"}).status_code == 403
    m = scrape(client)
    assert m[("ivr_verification_failures_total", ())] == 2
    assert m[("ivr_signature_failures_total", ())] == 1
    assert m[("ivr_lockouts_total", ())] == 0
    assert m[("ivr_webhook_seconds_count", (("endpoint", "/twilio/voice"),))] == 2
    assert m[("ivr_webhook_seconds_count", (("endpoint", "/twilio/gather"),))] == 6
    # The caller hung up in the queue: the case is abandoned but still waiting for a call back.
    assert m[("ivr_queue_depth", (("priority", "emergency"),))] == 1
    assert m[("ivr_queue_depth", (("priority", "normal"),))] == 0
    assert m[("ivr_calls_in_progress", ())] == 0
    assert m[("ivr_longest_wait_seconds", (("priority", "emergency"),))] >= 0


def test_metrics_need_the_scrape_token_once_one_is_set(
    database_url: str, hotline_tree: CompiledTree
) -> None:
    token = "m3tr1cs-" + "x" * 24
    settings = make_settings(IVR_DATABASE_URL=database_url, IVR_METRICS_TOKEN=token)
    with TestClient(create_app(settings, tree=hotline_tree), base_url=HTTPS_CLIENT) as client:
        for headers in ({}, {"Authorization": "Bearer " + "y" * 32}, {"Authorization": token}):
            refused = client.get("/metrics", headers=headers)
            assert refused.status_code == 401 and "ivr_" not in refused.text
            assert refused.headers["www-authenticate"].startswith("Bearer")
        scraped = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert scraped.status_code == 200 and "ivr_webhook_seconds" in scraped.text
        assert client.get("/healthz").status_code == 200  # probes need no token


@pytest.mark.parametrize(
    ("open_", "public_url", "scraped"),
    [
        (None, PUBLIC_URL, 404),  # unset, on a public (https) server: nothing there
        (None, "http://127.0.0.1:8000", 200),  # unset, a developer's: open
        ("true", PUBLIC_URL, 200),  # the proxy keeps it out; Prometheus scrapes privately
        ("false", "http://127.0.0.1:8000", 404),
    ],
)
def test_metrics_without_a_token_are_off_on_a_public_server(
    database_url: str,
    hotline_tree: CompiledTree,
    open_: str | None,
    public_url: str,
    scraped: int,
) -> None:
    """A proxy or load balancer that passes /metrics on must not show anyone the queue and
    the lockout counters: without IVR_METRICS_TOKEN, an https server answers 404 unless
    IVR_METRICS_OPEN says otherwise. With the token, it is asked for whatever the setting."""
    settings = make_settings(
        IVR_DATABASE_URL=database_url, IVR_METRICS_OPEN=open_, IVR_PUBLIC_URL=public_url
    )
    with TestClient(create_app(settings, tree=hotline_tree), base_url=HTTPS_CLIENT) as client:
        response = client.get("/metrics")
        assert response.status_code == scraped
        assert ("ivr_webhook_seconds" in response.text) == (scraped == 200)
    token = "m3tr1cs-" + "x" * 24
    with_token = make_settings(
        IVR_DATABASE_URL=database_url,
        IVR_METRICS_OPEN=open_,
        IVR_PUBLIC_URL=public_url,
        IVR_METRICS_TOKEN=token,
    )
    with TestClient(create_app(with_token, tree=hotline_tree), base_url=HTTPS_CLIENT) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize(
    ("docs", "public_url", "served"),
    [
        ("true", PUBLIC_URL, True),
        ("false", "http://127.0.0.1:8000", False),
        (None, PUBLIC_URL, False),  # unset, on a public (https) server: off
        (None, "http://127.0.0.1:8000", True),  # unset, a developer's: on
    ],
)
def test_the_api_reference_is_served_only_while_it_is_on(
    database_url: str,
    hotline_tree: CompiledTree,
    docs: str | None,
    public_url: str,
    served: bool,
) -> None:
    """No /docs, /redoc or /openapi.json for whoever reaches a public server unless
    IVR_API_DOCS says so; the API itself answers as before."""
    settings = make_settings(
        IVR_DATABASE_URL=database_url, IVR_API_DOCS=docs, IVR_PUBLIC_URL=public_url
    )
    with TestClient(create_app(settings, tree=hotline_tree), base_url=HTTPS_CLIENT) as client:
        codes = [client.get(path).status_code for path in ("/docs", "/redoc", "/openapi.json")]
        assert codes == ([200] * 3 if served else [404] * 3)
        assert client.get("/api/queue").status_code == 401


def test_a_short_metrics_token_is_refused_and_an_empty_one_is_unset() -> None:
    from ivr.exceptions import ConfigError
    from ivr.settings import load_settings

    def with_token(value: str) -> str | None:
        return load_settings(
            _env_file=None,
            TWILIO_AUTH_TOKEN=TOKEN,
            IVR_PUBLIC_URL=PUBLIC_URL,
            IVR_METRICS_TOKEN=value,
        ).metrics_token

    with pytest.raises(ConfigError, match="IVR_METRICS_TOKEN"):
        with_token("short")
    assert with_token("") is None  # as left empty in a copied .env: unset, not refused
    assert with_token(" " + "t" * 16 + " ") == "t" * 16


def test_probing_unknown_paths_does_not_add_labels(client: TestClient) -> None:
    for i in range(5):
        client.post(f"{PUBLIC_URL}/twilio/x{i}", data={})
    labels = {k[1] for k in scrape(client) if k[0] == "ivr_webhook_seconds_count"}
    assert labels == {(("endpoint", "other"),)}


def test_log_lines_are_json_with_the_call_sid_and_no_numbers(
    hotline_tree: CompiledTree, clock: FakeClock, check_twiml: Callable[[str], None]
) -> None:
    # A database that does not answer makes the webhooks log (and hand callers to an agent).
    dead = create_db_engine(
        "postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 1}
    )
    app = create_app(make_settings(), tree=hotline_tree, db=dead, clock=clock)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("ivr")
    logger.addHandler(handler)
    try:
        with TestClient(app, base_url=HTTPS_CLIENT) as client:
            phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
            record = phone.call(ScriptedParty([]), from_number="+15005550321")
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    # Lines written while serving the call carry its CallSid (start-up lines have none).
    webhook_lines = [line for line in lines if "webhook failed" in line["message"]]
    assert webhook_lines and all(line.get("call_sid") == record.call_sid for line in webhook_lines)
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    assert "5005550321" not in stream.getvalue() and "0321" not in stream.getvalue()


def test_access_lines_name_a_searchs_filters_without_their_values(
    tmp_path: Path, db: Engine, database_url: str
) -> None:
    """`ivr serve`'s access log: a supervisor's search for a caller or an account leaves its
    filters' names in the log, never the number or the UID; the webhooks' own queries stay
    whole, to follow a call by."""
    if db.dialect.name != "sqlite":
        pytest.skip("the log is the server's, whatever its database")
    env = server_env(
        TWILIO_AUTH_TOKEN=TOKEN,
        IVR_PUBLIC_URL=PUBLIC_URL,
        IVR_DATABASE_URL=database_url,
        IVR_SECRET_KEY=SECRET_KEY,
        IVR_LOG_FORMAT="json",
    )
    server = ServerProcess("logged", env, tmp_path)
    supervisor = make_user(db, "sam", "supervisor")
    server.start()
    try:
        searched = httpx.get(
            server.url + "/api/calls",
            params={"caller": "+15005550321", "account": "10000001"},
            headers=bearer(supervisor),
        )
        assert searched.status_code == 200
        held = httpx.post(server.url + "/twilio/wait?lang=en&queue=security", data={"a": "b"})
        assert held.status_code == 403  # unsigned: logged all the same
        # A stranger's flood of long unsigned requests: each refused and counted, the log
        # not made a copy of it.
        for _ in range(5):
            flood = httpx.post(server.url + "/twilio/voice?x=" + "A" * 6000, data={"a": "b"})
            assert flood.status_code == 403
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    access = [line["message"] for line in lines if line["logger"] == "uvicorn.access"]
    assert any("GET /api/calls?caller&account HTTP/1.1" in line for line in access), access
    searched_line = next(line for line in lines if line.get("path") == "/api/calls?caller&account")
    assert (searched_line["method"], searched_line["status"]) == ("GET", 200)
    assert any("/twilio/wait?lang=en&queue=security" in line for line in access), access
    assert "0321" not in server.log() and "10000001" not in server.log()
    refused = [line for line in lines if line["message"].startswith("refused unsigned")]
    assert len(refused) == 1, refused  # once a minute at most
    assert max(len(line) for line in server.log().splitlines()) < 1000


def test_the_gauges_say_when_the_database_could_not_be_read() -> None:
    """The database is down: the lane's gauges are left out (no made-up zero wait), and
    `ivr_database_up` is 0, so an alert fires instead of seeing no data."""
    unreachable = create_engine("postgresql+psycopg://postgres@127.0.0.1:9/none?connect_timeout=1")
    registry = CollectorRegistry()
    registry.register(_FromDatabase(unreachable, lambda: datetime.now(UTC)))
    text = generate_latest(registry).decode()
    assert "ivr_database_up 0.0" in text
    assert "ivr_longest_wait_seconds{" not in text and "ivr_queue_depth{" not in text


def test_refused_staff_tokens_are_counted_by_where_and_why(
    client: TestClient, db: Engine, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Wrong tokens (someone guessing) apart from expired ones (someone to give a new one),
    the 429s among them counted too; the log names an expired token's user, never a token."""
    with db.connect() as conn:
        expired = create_user(
            conn, name="ana", role="agent", phone=None, now=clock(), expires_at=clock()
        )
    wrong = "w" * 43
    with caplog.at_level(logging.WARNING, logger="ivr"):
        assert client.get("/api/queue", headers=bearer(wrong)).status_code == 401
        assert client.get("/api/queue", headers=bearer(expired)).status_code == 401
        login = client.post("/dashboard/login", data={"token": wrong}, follow_redirects=False)
        assert login.status_code == 401
        for _ in range(7):  # ten refused in all (the expired one too): the next is a 429
            assert client.get("/api/queue", headers=bearer(wrong)).status_code == 401
        assert client.get("/api/queue", headers=bearer(wrong)).status_code == 429
    m = scrape(client)
    failures = "ivr_staff_auth_failures_total"
    assert m[(failures, (("reason", "wrong"), ("where", "api")))] == 9
    assert m[(failures, (("reason", "expired"), ("where", "api")))] == 1
    assert m[(failures, (("reason", "wrong"), ("where", "dashboard")))] == 1
    assert m[("ivr_staff_auth_blocked_total", (("where", "api"),))] == 1
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([line for line in lines if "wrong staff token" in line]) == 9  # not the 429
    assert any(line.startswith("expired staff token user=ana role=agent") for line in lines)
    assert not any(wrong in line or expired in line for line in lines)
