"""The `ivr` console script as a person runs it: a real server process and a real dial."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import select

from ivr.cases import (
    available_since,
    create_user,
    list_users,
    presence,
    set_available,
    user_by_token,
)
from ivr.cli import DEMO_ACCOUNTS, cli_actor
from ivr.db import accounts, audit_log, calls, create_db_engine, users
from ivr.identity import LocalAccountActions, LocalDirectory
from ivr.settings import PROJECT_ROOT, DatabaseSettings, load_settings
from tests.conftest import DATA, SECRET_KEY, TOKEN, make_user

IVR = str(Path(sys.executable).parent / "ivr")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(
    args: list[str], env: dict[str, str], cwd: Path, stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [IVR, *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# Who runs these tests, as the system knows them: what the audit log names a command's
# actor (`cli_actor`), whatever $USER says.
OS_ACTOR = f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IVR_", "TWILIO_")) and k != "SUDO_USER"
    }
    env.update(
        {"TWILIO_AUTH_TOKEN": TOKEN, "IVR_DATABASE_URL": f"sqlite:///{tmp_path}/ivr.sqlite3"}
    )
    env.update(extra)
    return env


def log_records(text: str) -> list[dict[str, str]]:
    """`ivr serve`'s output as its log records: every line one JSON object (IVR_LOG_FORMAT's
    default), its own startup lines as much as uvicorn's and the app's."""
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON log line: {line!r}")
    return records


def logged(text: str, fragment: str) -> dict[str, str]:
    """The one record whose message says `fragment`."""
    [record] = [r for r in log_records(text) if fragment in r["message"]]
    return record


@dataclass
class Server:
    url: str
    env: dict[str, str]
    database_url: str


@contextlib.contextmanager
def running(env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`ivr serve` as a real process on IVR_PUBLIC_URL's port, until the block ends."""
    url = env["IVR_PUBLIC_URL"]
    port = url.rsplit(":", 1)[1]
    log = (cwd / "server.log").open("w")
    proc = subprocess.Popen(
        [IVR, "serve", "--port", port], env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("ivr serve did not come up:\n" + (cwd / "server.log").read_text())
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()  # never leave a server behind for the next test's port
            proc.wait(timeout=10)
        log.close()


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[Server]:
    url = f"http://127.0.0.1:{free_port()}"
    env = base_env(tmp_path, IVR_PUBLIC_URL=url, IVR_DATABASE_URL=database_url)
    with running(env, tmp_path):
        yield Server(url, env, database_url)


def test_dial_keys_reaches_the_emergency_queue_on_a_running_server(
    server: Server, tmp_path: Path
) -> None:
    result = run(["dial", "--keys", "1,1,*", "--hold", "2"], server.env, tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "caller: presses 1" in out
    assert "queued in 'security'" in out
    assert "Traceback" not in out + result.stderr
    engine = create_db_engine(server.database_url)
    with engine.connect() as conn:
        row = conn.execute(select(calls.c.status, calls.c.state)).one()
    engine.dispose()
    assert row.status == "completed" and row.state["facts"]["priority"] == "emergency"


HOLDING = ("--hold", "40", "--hold-seconds", "0.25")


def test_the_readme_demo_an_agent_takes_the_caller_while_they_hold(
    server: Server, tmp_path: Path
) -> None:
    """`ivr demo`, then `ivr dial ... --hold N --hold-seconds S`: the call holds long enough
    for the demo agent to take it, and is put through to the agent at its next round."""
    demo = run(["demo"], server.env, tmp_path)
    token = demo.stdout.split("API token:", 1)[1].split()[0]
    dial = subprocess.Popen(
        [IVR, "dial", "--from", "+15005550006", "--keys", "1,1,10000001,123456", *HOLDING],
        env=server.env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        auth = {"Authorization": f"Bearer {token}"}
        taken = None
        for _ in range(100):  # until the call is in line (it verifies first)
            taken = httpx.post(server.url + "/api/agents/next", headers=auth, timeout=10).json()
            if taken["case"]:
                break
            time.sleep(0.1)
        assert taken and taken["case"]["account_uid"] == "10000001"
        assert taken["connect"]["mode"] == "next_hold_poll"
        out, err = dial.communicate(timeout=60)
    finally:
        dial.kill()
    assert dial.returncode == 0, err
    # Put through to the agent (no phone: their browser, by name), not hung up on hold.
    assert "queued in 'security'; transferred to demo-agent" in out


def test_dial_by_voice_in_mandarin(server: Server, tmp_path: Path) -> None:
    result = run(["dial", "--keys", "2,say:我的账户被盗了,*"], server.env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "queued in 'security'" in result.stdout


def test_interactive_dial_reads_keys_from_the_terminal(server: Server, tmp_path: Path) -> None:
    result = run(["dial"], server.env, tmp_path, stdin="1\n0\nq\n")
    assert result.returncode == 0, result.stderr
    assert "queued in 'general'" in result.stdout
    assert "ended by the caller" in result.stdout


def test_serve_refuses_a_bad_tree_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((DATA / "mini.yaml").read_text().replace("target: more", "target: nowhere"))
    env = base_env(
        tmp_path,
        IVR_PUBLIC_URL="http://127.0.0.1:9",
        IVR_ROUTES=str(bad),
        IVR_PROMPTS=str(DATA / "prompts"),
    )
    result = run(["serve", "--port", str(free_port())], env, tmp_path, timeout=30)
    assert result.returncode == 1
    assert (
        f"{bad}:" in result.stderr
        and "nodes.main.options[1].target: unknown node 'nowhere'" in result.stderr
    )
    assert "Traceback" not in result.stderr + result.stdout


def test_serve_on_a_file_saved_broken_serves_the_live_version_from_the_database(
    tmp_path: Path,
) -> None:
    """A reload refused the file and the old tree stayed live; the next restart must not
    take the hotline down: it serves the version the database says is live, and says why."""
    routes = tmp_path / "hotline.yaml"
    shipped = (PROJECT_ROOT / "routes" / "hotline.yaml").read_text(encoding="utf-8")
    routes.write_text(shipped, encoding="utf-8")
    url = f"http://127.0.0.1:{free_port()}"
    env = base_env(tmp_path, IVR_PUBLIC_URL=url, IVR_ROUTES=str(routes))
    with running(env, tmp_path):
        pass  # its version is stored, and live
    routes.write_text(shipped.replace("target: emergency\n", "target: emergengy\n", 1))
    with running(env, tmp_path):
        result = run(["dial", "--keys", "1,1,*"], env, tmp_path)
    assert "queued in 'security'" in result.stdout, result.stdout + result.stderr
    log = (tmp_path / "server.log").read_text()
    # An error in the log's format, which production.md has operators alert on.
    refused = logged(log, "the call tree file is refused")
    assert refused["level"] == "error" and refused["logger"] == "ivr.cli"
    assert "unknown node 'emergengy'" in refused["message"]
    assert "serving the live version" in refused["message"]
    assert "Traceback" not in log


def test_serve_sizes_twilios_queues_and_serves_when_twilio_cannot_be_reached(
    tmp_path: Path,
) -> None:
    """With the account, serve makes the tree's queues hold 5,000 callers (`ivr.queues`,
    tested against a recorded Twilio in test_queues); Twilio out of reach (here, through a
    proxy nothing listens on) is said, and the hotline serves all the same."""
    url = f"http://127.0.0.1:{free_port()}"
    env = base_env(tmp_path, IVR_PUBLIC_URL=url, TWILIO_ACCOUNT_SID="AC" + "0" * 32)
    env["HTTPS_PROXY"] = f"http://127.0.0.1:{free_port()}"
    with running(env, tmp_path):
        assert "queued in 'security'" in run(["dial", "--keys", "1,1,*"], env, tmp_path).stdout
    log = (tmp_path / "server.log").read_text()
    assert logged(log, "Twilio's queues not sized (ProxyError")["level"] == "warning"
    assert "Traceback" not in log


def test_serve_logs_the_trees_warnings(tmp_path: Path) -> None:
    routes = tmp_path / "hotline.yaml"
    routes.write_text((DATA / "mini.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    url = f"http://127.0.0.1:{free_port()}"
    env = base_env(tmp_path, IVR_PUBLIC_URL=url, IVR_ROUTES=str(routes))
    env["IVR_PROMPTS"] = str(DATA / "prompts")
    with running(env, tmp_path):
        pass
    log = (tmp_path / "server.log").read_text()
    assert f"{routes}:" in log and ": warning: " in log
    said = [r["message"] for r in log_records(log) if r["level"] == "info"]
    # In full, as Twilio's console takes them (with IVR_PUBLIC_URL's path prefix, if any).
    assert f"Twilio status callback URL: {url}/twilio/status" in said
    assert (
        f"Twilio fallback URL (primary handler fails): {url}/twilio/fallback with several"
        " instances behind a balancer; on one host, a TwiML Bin (docs/production.md)" in said
    )
    # Which database it serves from, said as it starts: run from the wrong directory, a
    # server on the embedded file would look like production's.
    assert f"database: sqlite:///{tmp_path}/ivr.sqlite3" in said
    assert "embedded SQLite" not in log  # plain http on this machine: a trial


def test_serve_warns_of_a_public_hotline_on_the_embedded_database(tmp_path: Path) -> None:
    env = base_env(tmp_path, IVR_PUBLIC_URL="https://hotline.example.test")
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [IVR, "serve", "--port", str(free_port())],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while "Twilio voice URL" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    warned = logged(log.read_text(), "a public (https) hotline on the embedded SQLite database")
    assert warned["level"] == "warning" and "PostgreSQL" in warned["message"]


def test_every_database_command_names_its_database_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command run from a directory without the deployment's .env acts on the embedded
    file: it says so, and where .env was looked for, on stderr (stdout stays a script's)."""
    env = base_env(tmp_path)
    del env["TWILIO_AUTH_TOKEN"]
    added = run(["users", "add", "sam", "--role", "supervisor"], env, tmp_path)
    assert added.returncode == 0, added.stderr
    assert f"database: sqlite:///{tmp_path}/ivr.sqlite3" in added.stderr
    assert "database:" not in added.stdout
    upgraded = run(["db", "upgrade"], env, tmp_path)
    assert f"database is at the newest schema: sqlite:///{tmp_path}" in upgraded.stdout
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IVR_DATABASE_URL", "postgresql://hotline:s3cret@db.internal/hotline")
    assert load_settings(DatabaseSettings).database_named == (
        "postgresql://hotline:***@db.internal/hotline"
    )
    monkeypatch.delenv("IVR_DATABASE_URL")
    embedded = load_settings(DatabaseSettings).database_named
    assert "IVR_DATABASE_URL is not set: the embedded SQLite file" in embedded
    assert f".env is read from the current directory, {tmp_path}" in embedded


def test_serve_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    env = base_env(tmp_path, IVR_PUBLIC_URL="http://127.0.0.1:9")
    del env["TWILIO_AUTH_TOKEN"]
    result = run(["serve"], env, tmp_path, timeout=30)
    assert result.returncode == 1
    assert "TWILIO_AUTH_TOKEN is not set" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_serve_says_why_it_refuses_to_start_as_an_error_in_the_log_format(
    tmp_path: Path, log_format: str
) -> None:
    """A hotline that will not start is what an alert on `"level": "error"` must see: the
    refusal is a log record, in IVR_LOG_FORMAT even when the other settings are refused."""
    env = base_env(tmp_path, IVR_PUBLIC_URL="http://127.0.0.1:9", IVR_LOG_FORMAT=log_format)
    del env["TWILIO_AUTH_TOKEN"]
    result = run(["serve"], env, tmp_path, timeout=30)
    assert result.returncode == 1 and result.stdout == ""
    if log_format == "json":
        [record] = log_records(result.stderr)
        assert record["level"] == "error" and record["logger"] == "ivr.cli"
        assert record["message"].startswith("refusing to start: TWILIO_AUTH_TOKEN is not set")
    else:
        [line] = result.stderr.splitlines()
        assert " ERROR ivr.cli: refusing to start: TWILIO_AUTH_TOKEN is not set" in line
    # The database named by a URL it cannot open: refused at the upgrade, the same way.
    env["TWILIO_AUTH_TOKEN"] = TOKEN
    env["IVR_DATABASE_URL"] = f"sqlite:///{tmp_path}/no/such/folder/ivr.sqlite3"
    result = run(["serve"], env, tmp_path, timeout=30)
    assert result.returncode == 1
    if log_format == "json":
        [record] = log_records(result.stderr)
        assert record["level"] == "error"
        assert record["message"].startswith("refusing to start: cannot upgrade the database")
    else:
        assert " ERROR ivr.cli: refusing to start: cannot upgrade" in result.stderr


def test_serve_refuses_a_placeholder_token(tmp_path: Path) -> None:
    env = base_env(tmp_path, IVR_PUBLIC_URL="http://127.0.0.1:9", TWILIO_AUTH_TOKEN="changeme")
    result = run(["serve"], env, tmp_path, timeout=30)
    assert result.returncode == 1 and "TWILIO_AUTH_TOKEN" in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IVR_PUBLIC_URL", "http://hotline.example.com"),
        ("IVR_IDENTITY_URL", "http://10.0.0.5:8080"),
        ("IVR_LOCKOUT_FAILURES", "1000"),
        # uvicorn would take it for a name, and ignore every proxy's headers, silently.
        ("IVR_TRUSTED_PROXIES", "proxy.internal"),
        ("IVR_TRUSTED_PROXIES", "10.0.0.1, *"),
    ],
)
def test_serve_refuses_settings_that_would_expose_callers(
    tmp_path: Path, name: str, value: str
) -> None:
    """Plain http off this machine carries callers' PINs (Twilio's posts, the identity
    endpoint's checks, and its unsigned verdict) across the network in clear text; a lockout
    of a thousand guesses is none. Refused by name, before anything is served."""
    env = base_env(tmp_path, IVR_PUBLIC_URL="http://127.0.0.1:9", IVR_IDENTITY_KEY="k" * 32)
    env[name] = value
    result = run(["serve"], env, tmp_path, timeout=30)
    assert result.returncode == 1, result.stderr
    assert name in result.stderr and "Traceback" not in result.stderr


def test_dial_without_a_server_says_so(tmp_path: Path) -> None:
    env = base_env(tmp_path, IVR_PUBLIC_URL=f"http://127.0.0.1:{free_port()}")
    result = run(["dial", "--keys", "1"], env, tmp_path, timeout=30)
    assert result.returncode == 1
    assert "cannot reach the hotline" in result.stderr and "Traceback" not in result.stderr
    # Behind a tunnel: signed for the public URL, sent where --url says, and said so.
    elsewhere = f"http://127.0.0.1:{free_port()}"
    tunnel = run(["dial", "--keys", "1", "--url", elsewhere], env, tmp_path, timeout=30)
    assert f"/twilio/voice (at {elsewhere}) from" in tunnel.stdout
    assert f"cannot reach the hotline at {elsewhere}" in tunnel.stderr


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    env = base_env(tmp_path, IVR_PUBLIC_URL="http://127.0.0.1:9")
    result = run(["db", "upgrade"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ivr.sqlite3").exists()


def test_database_commands_need_only_the_database(tmp_path: Path) -> None:
    """A migration job (or a supervisor reading the call log) is not given Twilio's token."""
    env = base_env(tmp_path)
    del env["TWILIO_AUTH_TOKEN"]
    upgraded = run(["db", "upgrade"], env, tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    engine = create_db_engine(env["IVR_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            assert conn.execute(select(users.c.id)).all() == []  # the schema is there
    finally:
        engine.dispose()
    added = run(["users", "add", "sam", "--role", "supervisor"], env, tmp_path)
    assert added.returncode == 0, added.stderr
    listed = run(["calls", "list"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    # What answers calls still refuses to start without them, naming what is missing.
    served = run(["serve", "--port", str(free_port())], env, tmp_path, timeout=30)
    assert served.returncode == 1
    assert "TWILIO_AUTH_TOKEN is not set" in served.stderr
    assert "IVR_PUBLIC_URL is not set" in served.stderr
    # Run from a directory with no .env: it says where settings are looked for.
    assert f"from .env in the current directory: {tmp_path} has none" in served.stderr


def test_default_tree_checks_clean() -> None:
    """No error, and no warning but those of its example official_numbers, which the
    exchange's real numbers replace (production.md): still exit 0, so a deploy checks it."""
    result = run(
        ["routes", "check", str(PROJECT_ROOT / "routes" / "hotline.yaml")],
        dict(os.environ),
        PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    *warnings, summary = result.stdout.splitlines()
    assert " OK, " in summary and f" {len(warnings)} warning(s)" in summary
    for warning in warnings:
        assert ": warning: official_numbers[" in warning and "is a fictional number" in warning


def test_users_add_prints_a_token_once_and_it_works(tmp_path: Path) -> None:
    env = base_env(tmp_path, IVR_PUBLIC_URL="http://127.0.0.1:9")
    result = run(
        ["users", "add", "alice", "--role", "agent", "--phone", "+15005559999"], env, tmp_path
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip().splitlines()[-1]
    engine = create_db_engine(env["IVR_DATABASE_URL"])
    with engine.connect() as conn:
        user = user_by_token(conn, token=token)
        stored = conn.execute(select(users.c.token_hash)).scalar()
    engine.dispose()
    assert user is not None and (user.name, user.role) == ("alice", "agent")
    assert stored != token and token not in (stored or "")
    again = run(["users", "add", "alice", "--role", "agent"], env, tmp_path)
    assert again.returncode == 1 and "exists already" in again.stderr
    bad = run(["users", "add", "bob", "--role", "admin"], env, tmp_path)
    assert bad.returncode == 1 and "role must be one of" in bad.stderr
    nameless = run(["users", "add", "", "--role", "agent"], env, tmp_path)
    assert nameless.returncode == 1 and "a user name is" in nameless.stderr
    for phone in ("call me maybe", "5551230003", "anonymous"):
        wrong = run(["users", "add", "carl", "--role", "agent", "--phone", phone], env, tmp_path)
        assert wrong.returncode == 1 and "E.164" in wrong.stderr, phone


def test_accounts_add_import_and_demo(tmp_path: Path) -> None:
    env = base_env(tmp_path, IVR_PUBLIC_URL="http://127.0.0.1:9", IVR_SECRET_KEY=SECRET_KEY)
    added = run(
        ["accounts", "add", "--uid", "20000001", "--phone", "+15005550100", "--secrets-stdin"],
        env,
        tmp_path,
        stdin="pin=135790\nid_last4=2468\ntotp_secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n",
    )
    assert added.returncode == 0, added.stderr
    csv = tmp_path / "accounts.csv"
    csv.write_text(
        "uid,pin,id_last4,phone,totp_secret\n20000002,111222,3344,+15005550101,\n"
        "20000003,12,3344,,\n"
    )
    refused = run(["accounts", "import", str(csv)], env, tmp_path)
    assert refused.returncode == 1 and f"{csv}:3: pin must be 6 digits" in refused.stderr
    csv.write_text("uid,pin,id_last4,phone,totp_secret\n20000002,111222,3344,+15005550101,\n")
    imported = run(["accounts", "import", str(csv)], env, tmp_path)
    assert imported.returncode == 0 and "1 account(s) saved" in imported.stdout
    # A freeze outlives a re-import of the account; `accounts unfreeze` lifts it, with a reason.
    engine = create_db_engine(env["IVR_DATABASE_URL"])
    assert LocalAccountActions(engine).freeze(uid="20000002", now=datetime.now(UTC))
    assert run(["accounts", "import", str(csv)], env, tmp_path).returncode == 0
    no_reason = run(["accounts", "unfreeze", "20000002", "--reason", " "], env, tmp_path)
    assert no_reason.returncode == 1 and "say why" in no_reason.stderr
    with engine.connect() as conn:
        frozen = conn.execute(select(accounts.c.frozen).where(accounts.c.uid == "20000002"))
        assert frozen.scalar() == 1
    lifted = run(["accounts", "unfreeze", "20000002", "--reason", "owner seen"], env, tmp_path)
    assert lifted.returncode == 0 and "unfrozen; audited as cli:" in lifted.stdout
    again = run(["accounts", "unfreeze", "20000002", "--reason", "owner seen"], env, tmp_path)
    assert again.returncode == 1 and "is not frozen" in again.stderr
    with engine.connect() as conn:
        action = conn.execute(
            select(audit_log.c.action, audit_log.c.account_uid).where(
                audit_log.c.action != "account_set"
            )
        ).one()
    engine.dispose()
    assert tuple(action) == ("unfreeze", "20000002")
    demo = run(["demo"], env, tmp_path)
    assert demo.returncode == 0 and "uid 10000001  pin 123456" in demo.stdout
    assert "demo agent 'demo-agent', API token:" in demo.stdout
    engine = create_db_engine(env["IVR_DATABASE_URL"])
    with engine.connect() as conn:
        stored = {r.uid: r for r in conn.execute(select(accounts))}
    engine.dispose()
    assert set(stored) == {"10000001", "10000002", "20000001", "20000002"}
    row = stored["20000001"]
    assert row.pin_hash.startswith("$argon2") and "135790" not in repr(tuple(row))
    assert row.totp_secret and "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP" not in row.totp_secret
    directory = LocalDirectory(create_db_engine(env["IVR_DATABASE_URL"]), SECRET_KEY)
    now = datetime(2026, 11, 23, tzinfo=UTC)
    assert directory.check(uid="20000002", factor="pin", digits="111222", now=now)
    assert directory.check(
        uid="20000001",
        factor="totp",
        digits=pyotp.TOTP("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").at(now),
        now=now,
    )
    directory.db.dispose()


def test_totp_secret_needs_the_secret_key(tmp_path: Path) -> None:
    env = base_env(tmp_path, IVR_PUBLIC_URL="http://127.0.0.1:9")
    result = run(
        ["accounts", "add", "--uid", "1", "--secrets-stdin"],
        env,
        tmp_path,
        stdin="totp_secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
    )
    assert result.returncode == 1 and "IVR_SECRET_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr


class Terminal:
    """`ivr` run at a terminal of its own (a pseudo-terminal), as an operator types at it:
    what it shows is what they would see, typed keys echoed unless it turned echo off."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        import pty

        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: nothing but exec, whatever happens
            try:
                os.chdir(cwd)
                os.execve(IVR, [IVR, *args], env)
            finally:
                os._exit(127)
        self.shown = ""

    def read_until(self, text: str, seconds: float = 30) -> None:
        import select

        deadline = time.monotonic() + seconds
        while text not in self.shown:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"waited for {text!r}; shown: {self.shown!r}"
            try:
                self.shown += os.read(self.fd, 4096).decode(errors="replace")
            except OSError:  # the child ended: the terminal is closed
                raise AssertionError(f"{text!r} never shown: {self.shown!r}") from None

    def answer(self, prompt: str, typed: str) -> None:
        self.read_until(prompt)
        os.write(self.fd, typed.encode() + b"\r")

    def exit_code(self) -> int:
        with contextlib.suppress(AssertionError):
            self.read_until("\0", seconds=30)  # everything it shows, until it ends
        os.close(self.fd)
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)


def test_accounts_add_asks_for_the_secrets_at_the_terminal_without_echo(tmp_path: Path) -> None:
    """No secret on the command line (shell history, ps): at a terminal each is asked for
    twice, never echoed, and an empty answer is none. Typed differently the second time,
    nothing is saved."""
    env = base_env(tmp_path, IVR_SECRET_KEY=SECRET_KEY)
    terminal = Terminal(["accounts", "add", "--uid", "20000001"], env, tmp_path)
    terminal.answer("Phone PIN (6 digits), empty for none: ", "135790")
    terminal.answer("Phone PIN (6 digits), again: ", "135790")
    terminal.answer("ID document's last 4 digits, empty for none: ", "2468")
    terminal.answer("ID document's last 4 digits, again: ", "2468")
    terminal.answer("Authenticator seed (base32), empty for none: ", "")
    assert terminal.exit_code() == 0, terminal.shown
    assert "account 20000001 saved" in terminal.shown
    assert "135790" not in terminal.shown and "2468" not in terminal.shown
    directory = LocalDirectory(create_db_engine(env["IVR_DATABASE_URL"]), SECRET_KEY)
    now = datetime.now(UTC)
    try:
        assert directory.check(uid="20000001", factor="pin", digits="135790", now=now)
        assert directory.check(uid="20000001", factor="id_last4", digits="2468", now=now)
        with directory.db.connect() as conn:
            [seed] = conn.execute(select(accounts.c.totp_secret)).scalars()
        assert seed is None
    finally:
        directory.db.dispose()
    terminal = Terminal(["accounts", "add", "--uid", "20000002"], env, tmp_path)
    terminal.answer("Phone PIN (6 digits), empty for none: ", "111111")
    terminal.answer("Phone PIN (6 digits), again: ", "111112")
    assert terminal.exit_code() == 1
    assert "Phone PIN (6 digits): the two entries differ; nothing saved" in terminal.shown
    # --secrets-stdin is for a pipe or a file: typed at the terminal, they would be echoed.
    terminal = Terminal(["accounts", "add", "--uid", "20000002", "--secrets-stdin"], env, tmp_path)
    assert terminal.exit_code() == 1
    assert "--secrets-stdin reads a pipe or a file" in terminal.shown


def test_accounts_add_takes_no_secret_on_its_command_line(tmp_path: Path) -> None:
    """`--pin 123456` (the old way) is refused, nothing saved, the value not repeated; so
    are --id-last4 and --totp-secret. Not at a terminal, the secrets come only with
    --secrets-stdin; a wrong line of it is named by its number, never shown."""
    env = base_env(tmp_path, IVR_SECRET_KEY=SECRET_KEY)
    for option, value in (
        ("--pin", "135790"),
        ("--id-last4", "2468"),
        ("--totp-secret", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"),
    ):
        refused = run(["accounts", "add", "--uid", "20000001", option, value], env, tmp_path)
        assert refused.returncode == 1, option
        assert f"{option} is not taken on the command line" in refused.stderr
        assert value not in refused.stdout + refused.stderr
    piped = run(["accounts", "add", "--uid", "20000001"], env, tmp_path, stdin="pin=135790")
    assert piped.returncode == 1 and "pass --secrets-stdin" in piped.stderr
    for text, said in (
        ("id_last4=2468\n135790\n", "stdin line 2: not pin=, id_last4= or totp_secret="),
        ("pin=135790\npin=135790\n", "stdin line 2: pin given twice"),
    ):
        wrong = run(
            ["accounts", "add", "--uid", "20000001", "--secrets-stdin"], env, tmp_path, text
        )
        assert wrong.returncode == 1 and said in wrong.stderr
        assert "135790" not in wrong.stderr
    engine = create_db_engine(env["IVR_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            assert conn.execute(select(accounts.c.uid)).all() == []
    finally:
        engine.dispose()


def test_users_revoke_and_token_from_the_command_line(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    del env["TWILIO_AUTH_TOKEN"]  # user commands need the database alone
    first = run(["users", "add", "ana", "--role", "agent"], env, tmp_path).stdout.split()[-1]
    revoked = run(["users", "revoke", "ana"], env, tmp_path)
    assert revoked.returncode == 0 and "ana revoked" in revoked.stdout, revoked.stderr
    listed = run(["users", "list"], env, tmp_path)
    assert listed.returncode == 0 and "revoked" in listed.stdout and first not in listed.stdout
    unknown = run(["users", "revoke", "nobody"], env, tmp_path)
    assert unknown.returncode == 1 and "no user named 'nobody'" in unknown.stderr
    reissued = run(["users", "token", "ana"], env, tmp_path)
    assert reissued.returncode == 0, reissued.stderr
    second = reissued.stdout.split()[-1]
    engine = create_db_engine(env["IVR_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            assert user_by_token(conn, token=first) is None
            user = user_by_token(conn, token=second)
    finally:
        engine.dispose()
    assert user is not None and user.name == "ana"
    assert "active" in run(["users", "list"], env, tmp_path).stdout


def test_a_supervisor_sets_an_agent_away_from_the_command_line(tmp_path: Path) -> None:
    """ana said she is available and went home: `users list` shows it, `users away` ends it."""
    env = base_env(tmp_path)
    del env["TWILIO_AUTH_TOKEN"]
    token = run(["users", "add", "ana", "--role", "agent"], env, tmp_path).stdout.split()[-1]
    engine = create_db_engine(env["IVR_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            [ana] = [u for u in list_users(conn, now=datetime.now(UTC)) if u["name"] == "ana"]
            assert ana["available_since"] is None
            user = user_by_token(conn, token=token)
            assert user is not None
            ana_id = user.id
            set_available(conn, agent_id=ana_id, available=True, now=datetime.now(UTC))
        listed = run(["users", "list"], env, tmp_path).stdout
        assert "available since" in listed
        away = run(["users", "away", "ana"], env, tmp_path)
        assert away.returncode == 0 and "ana is away" in away.stdout, away.stderr
        assert "available since" not in run(["users", "list"], env, tmp_path).stdout
        with engine.connect() as conn:
            assert available_since(conn, agent_id=ana_id, now=datetime.now(UTC)) is None
            assert presence(conn, agent_id=ana_id, now=datetime.now(UTC)) == (None, "set_away")
            [(actor, action, reason)] = conn.execute(
                select(audit_log.c.actor, audit_log.c.action, audit_log.c.reason).where(
                    audit_log.c.action != "user_add"
                )
            ).all()
            assert (actor.split(":")[0], action, reason) == ("cli", "set_away", "agent:ana")
    finally:
        engine.dispose()
    unknown = run(["users", "away", "nobody"], env, tmp_path)
    assert unknown.returncode == 1 and "no agent named 'nobody'" in unknown.stderr


def test_an_operator_says_which_languages_an_agent_speaks(tmp_path: Path) -> None:
    """Codes of the prompt catalogs, comma-separated; "all" for every language (the default)."""
    env = base_env(tmp_path)
    del env["TWILIO_AUTH_TOKEN"]
    run(["users", "add", "ana", "--role", "agent"], env, tmp_path)
    done = run(["users", "languages", "ana", "zh-CN,en"], env, tmp_path)
    assert done.returncode == 0 and "ana speaks en, zh-CN" in done.stdout, done.stderr
    assert "speaks en,zh-CN" in run(["users", "list"], env, tmp_path).stdout
    unknown = run(["users", "languages", "ana", "en,fr"], env, tmp_path)
    assert unknown.returncode == 1
    assert "no prompt catalog speaks fr: callers choose from en, zh-CN" in unknown.stderr
    assert "speaks en,zh-CN" in run(["users", "list"], env, tmp_path).stdout  # unchanged
    every = run(["users", "languages", "ana", "all"], env, tmp_path)
    assert every.returncode == 0 and "ana speaks every language" in every.stdout
    assert "speaks" not in run(["users", "list"], env, tmp_path).stdout
    nobody = run(["users", "languages", "nobody", "en"], env, tmp_path)
    assert nobody.returncode == 1 and "no agent named 'nobody'" in nobody.stderr


def audit_rows(env: dict[str, str]) -> list[dict[str, Any]]:
    engine = create_db_engine(env["IVR_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return [
                dict(r) for r in conn.execute(select(audit_log).order_by(audit_log.c.id)).mappings()
            ]
    finally:
        engine.dispose()


def test_staff_administration_is_audited_a_lifted_revocation_too(tmp_path: Path) -> None:
    """Who made a user, issued a token, revoked one and said which languages an agent
    speaks: each an entry naming the user, never the token. A token issued again to a
    revoked user lifts the revocation, which must not go without a trace. Who is the
    system's user running the command: not the $USER anyone may export."""
    env = base_env(tmp_path)
    del env["TWILIO_AUTH_TOKEN"]
    env["USER"] = env["LOGNAME"] = "opal"
    first = run(["users", "add", "mallory", "--role", "agent"], env, tmp_path).stdout.split()[-1]
    assert run(["users", "languages", "mallory", "en"], env, tmp_path).returncode == 0
    second = run(["users", "token", "mallory"], env, tmp_path).stdout.split()[-1]
    assert run(["users", "revoke", "mallory"], env, tmp_path).returncode == 0
    third = run(["users", "token", "mallory"], env, tmp_path).stdout.split()[-1]
    assert run(["users", "token", "nobody"], env, tmp_path).returncode == 1
    assert run(["users", "languages", "nobody", "en"], env, tmp_path).returncode == 1
    rows = audit_rows(env)
    said = [(r["actor"], r["action"], r["reason"].split(",")[0]) for r in rows]
    assert OS_ACTOR != "cli:opal"
    assert said == [
        (OS_ACTOR, "user_add", "agent:mallory"),
        (OS_ACTOR, "languages_set", "agent:mallory"),
        (OS_ACTOR, "token_issued", "agent:mallory"),
        (OS_ACTOR, "user_revoked", "agent:mallory"),
        (OS_ACTOR, "token_issued", "agent:mallory"),
    ]
    assert rows[1]["reason"] == "agent:mallory, speaks en"
    assert "reinstated" not in rows[2]["reason"]
    assert rows[4]["reason"].startswith("agent:mallory, reinstated (revoked ")
    assert all(r["result"] == "ok" and r["account_uid"] is None for r in rows)
    for token in (first, second, third):
        assert not any(token in str(v) for r in rows for v in r.values())


def test_identity_records_changed_are_audited_by_field_name_never_value(tmp_path: Path) -> None:
    """A customer's PIN, ID digits, authenticator seed or registered phone replaced by
    `accounts add`, `import` or `demo --force`: an entry for the account naming the factors
    that changed, none of their values. Saved again unchanged: nothing to audit."""
    env = base_env(tmp_path, IVR_PUBLIC_URL="http://127.0.0.1:9", IVR_SECRET_KEY=SECRET_KEY)
    env["USER"] = env["LOGNAME"] = "opal"
    seed = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    secrets = f"pin=135790\nid_last4=2468\ntotp_secret={seed}\n"
    add = ["accounts", "add", "--uid", "10000001", "--phone", "+15005550100", "--secrets-stdin"]
    added = run(add, env, tmp_path, stdin=secrets)
    assert added.returncode == 0 and "changed: pin, id_last4, totp, phone" in added.stdout
    same = run(add, env, tmp_path, stdin=secrets)
    assert same.returncode == 0 and "nothing changed" in same.stdout
    changed = run(add, env, tmp_path, stdin=f"pin=975310\nid_last4=2468\ntotp_secret={seed}\n")
    assert changed.returncode == 0 and "changed: pin;" in changed.stdout
    csv = tmp_path / "accounts.csv"
    csv.write_text(
        f"uid,pin,id_last4,phone,totp_secret\n10000001,975310,2468,+15005550666,{seed}\n"
        "20000002,111222,3344,,\n"
    )
    assert run(["accounts", "import", str(csv)], env, tmp_path).returncode == 0
    assert run(["accounts", "import", str(csv)], env, tmp_path).returncode == 0  # unchanged
    assert run(["demo", "--force"], env, tmp_path).returncode == 0
    rows = audit_rows(env)
    accounts_set = [
        (r["actor"], r["account_uid"], r["reason"]) for r in rows if r["action"] == "account_set"
    ]
    assert accounts_set == [
        (OS_ACTOR, "10000001", "new account: pin, id_last4, totp, phone set (accounts add)"),
        (OS_ACTOR, "10000001", "pin changed (accounts add)"),
        (OS_ACTOR, "10000001", "phone changed (accounts import accounts.csv:2)"),
        (OS_ACTOR, "20000002", "new account: pin, id_last4 set (accounts import accounts.csv:3)"),
        (OS_ACTOR, "10000001", "pin, id_last4, totp, phone changed (ivr demo --force)"),
        (OS_ACTOR, "10000002", "new account: pin, id_last4, phone set (ivr demo --force)"),
    ]
    assert [r["reason"].split(",")[0] for r in rows if r["action"] == "user_add"] == [
        "agent:demo-agent"
    ]
    values = ("135790", "975310", "2468", "111222", "3344", seed, "5005550100", "5005550666")
    assert not any(value in str(v) for r in rows for v in r.values() for value in values)


def test_keygen_prints_a_usable_key(tmp_path: Path) -> None:
    result = run(["keygen"], dict(os.environ), tmp_path)
    key = result.stdout.strip()
    env = base_env(tmp_path, IVR_PUBLIC_URL="http://127.0.0.1:9", IVR_SECRET_KEY=key)
    assert run(["db", "upgrade"], env, tmp_path).returncode == 0
    bad = base_env(tmp_path, IVR_PUBLIC_URL="http://127.0.0.1:9", IVR_SECRET_KEY="nope")
    refused = run(["accounts", "add", "--uid", "1", "--secrets-stdin"], bad, tmp_path, "pin=123456")
    assert refused.returncode == 1 and "IVR_SECRET_KEY" in refused.stderr


def test_account_commands_need_the_database_and_its_key_alone(tmp_path: Path) -> None:
    """Run where accounts are kept (a rotation, an import): not the Twilio auth token, nor
    the public URL, which that host need not hold."""
    env = base_env(tmp_path, IVR_SECRET_KEY=SECRET_KEY)
    del env["TWILIO_AUTH_TOKEN"]
    added = run(
        ["accounts", "add", "--uid", "20000002", "--secrets-stdin"], env, tmp_path, "pin=135790"
    )
    assert added.returncode == 0, added.stderr
    assert "account 20000002 saved" in added.stdout
    lifted = run(["accounts", "unfreeze", "20000002", "--reason", "owner checked"], env, tmp_path)
    assert lifted.returncode == 1 and "is not frozen" in lifted.stderr
    bad = {**env, "IVR_SECRET_KEY": "nope"}
    refused = run(["accounts", "add", "--uid", "1", "--secrets-stdin"], bad, tmp_path, "pin=123456")
    assert refused.returncode == 1
    assert refused.stderr.startswith("refusing to run: IVR_SECRET_KEY must be a Fernet key")


def wait_for_version(url: str, old: str, seconds: float = 15) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        version = httpx.get(url + "/healthz", timeout=2).json()["tree"]
        if version != old:
            return str(version)
        time.sleep(0.2)
    return old


@pytest.mark.parametrize("trigger", ["SIGHUP", "watch"])
def test_a_running_server_reloads_on_sighup_or_file_change(tmp_path: Path, trigger: str) -> None:
    routes, prompts = tmp_path / "hotline.yaml", tmp_path / "prompts"
    shutil.copy(PROJECT_ROOT / "routes" / "hotline.yaml", routes)
    shutil.copytree(PROJECT_ROOT / "prompts", prompts)
    url = f"http://127.0.0.1:{free_port()}"
    env = base_env(
        tmp_path,
        IVR_PUBLIC_URL=url,
        IVR_ROUTES=str(routes),
        IVR_PROMPTS=str(prompts),
        IVR_WATCH_ROUTES="true" if trigger == "watch" else "false",
    )
    with running(env, tmp_path) as proc:
        before = httpx.get(url + "/healthz").json()["tree"]
        # A broken edit first: refused, the old tree stays live.
        routes.write_text(routes.read_text().replace("target: emergency\n", "target: nowhere\n", 1))
        if trigger == "SIGHUP":
            proc.send_signal(signal.SIGHUP)
        time.sleep(3)
        assert httpx.get(url + "/healthz").json()["tree"] == before
        # Then a good one.
        routes.write_text((PROJECT_ROOT / "routes" / "hotline.yaml").read_text() + "\n# edited\n")
        if trigger == "SIGHUP":
            proc.send_signal(signal.SIGHUP)
        after = wait_for_version(url, before)
    assert after != before
    logged = (tmp_path / "server.log").read_text()
    assert "unknown node 'nowhere'" in logged and "the old one stays live" in logged


def test_routes_graph_draws_each_format(tmp_path: Path) -> None:
    tree = str(PROJECT_ROOT / "routes" / "hotline.yaml")
    env = dict(os.environ)
    mermaid = run(["routes", "graph", tree], env, tmp_path)
    assert mermaid.returncode == 0 and mermaid.stdout.startswith("flowchart TD")
    dot = run(["routes", "graph", tree, "--format", "dot"], env, tmp_path)
    assert dot.stdout.startswith("digraph")
    svg = run(["routes", "graph", tree, "--format", "svg"], env, tmp_path)
    assert svg.returncode == 0, svg.stderr + " (is Graphviz installed? scripts/test installs it)"
    assert "<svg" in svg.stdout and "emergency_queue" in svg.stdout
    bad = run(["routes", "graph", tree, "--format", "png"], env, tmp_path)
    assert bad.returncode == 1 and "mermaid, dot or svg" in bad.stderr


def test_routes_graph_draws_a_tree_with_errors_and_marks_them(tmp_path: Path) -> None:
    """The picture helps most when the tree is wrong: a typo'd target is drawn as an unknown
    node, marked, with the errors on standard error and exit 1; a YAML error draws nothing."""
    draft = tmp_path / "draft.yaml"
    source = (PROJECT_ROOT / "routes" / "hotline.yaml").read_text(encoding="utf-8")
    draft.write_text(
        source.replace("    on_success: emergency_queue\n", "    on_success: emergency_queu\n", 1),
        encoding="utf-8",
    )
    env = dict(os.environ)
    drawn = run(["routes", "graph", str(draft)], env, tmp_path)
    assert drawn.returncode == 1
    assert drawn.stdout.startswith("flowchart TD")
    assert '["emergency_queu<br/>error: unknown node"]' in drawn.stdout
    assert "the tree has errors (drawn, its faults marked):" in drawn.stderr
    assert "unknown node 'emergency_queu' (did you mean 'emergency_queue'?)" in drawn.stderr
    draft.write_text(source.replace("  emergency:\n", "  emergency\n", 1), encoding="utf-8")
    refused = run(["routes", "graph", str(draft)], env, tmp_path)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "not valid YAML" in refused.stderr


def test_dial_routes_tries_a_draft_without_a_server_or_settings(tmp_path: Path) -> None:
    draft = tmp_path / "draft.yaml"
    # A draft in which main-menu 1 goes straight to the security queue.
    option_1 = '      - key: "1"            # stolen / hacked account: emergency freeze, 24/7\n'
    draft.write_text(
        (PROJECT_ROOT / "routes" / "hotline.yaml")
        .read_text()
        .replace(
            option_1 + "        target: emergency\n", option_1 + "        target: emergency_queue\n"
        )
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}  # no IVR_ or TWILIO_ settings
    result = run(["dial", "--routes", str(draft), "--keys", "1,1"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "in-process" in result.stdout and "queued in 'security'" in result.stdout
    assert "U I D" not in result.stdout  # the draft skips verification, as edited
    assert "Warning" not in result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(draft.read_text().replace("target: emergency\n", "target: nope\n", 1))
    refused = run(["dial", "--routes", str(broken), "--keys", "1"], env, tmp_path)
    assert refused.returncode == 1 and "unknown node 'nope'" in refused.stderr
    # A draft's warnings, once each: not again as the app makes the draft live.
    shadowed = tmp_path / "shadowed.yaml"
    shadowed.write_text(draft.read_text().replace("zh-CN: [现货,", "zh-CN: [合约单, 现货,", 1))
    warned = run(["dial", "--routes", str(shadowed), "--keys", "1"], env, tmp_path)
    out = warned.stdout + warned.stderr
    assert warned.returncode == 0 and out.count("keyword '合约单' is never heard") == 1, out


def test_a_draft_walk_names_the_nodes_it_went_through(tmp_path: Path) -> None:
    """What an operator checks a draft's wiring by: which nodes "2,2,1" went through, not
    only what was heard."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    args = ["dial", "--routes", str(DATA / "mini.yaml"), "--prompts", str(DATA / "prompts")]
    result = run([*args, "--keys", "1,2,1", "--hold", "0"], env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nodes: language > main > more > advice > hours > " in result.stdout
    assert result.stdout.splitlines()[-2].startswith("nodes: ")


def test_a_draft_walk_at_a_given_time_hears_the_trees_hours(tmp_path: Path) -> None:
    """An operator checks the products team's hours without waiting for Saturday."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    products = ["dial", "--routes", str(PROJECT_ROOT / "routes" / "hotline.yaml")]
    products += ["--keys", "1,8,1,1"]
    saturday = run([*products, "--at", "2026-11-28T12:00+08:00"], env, tmp_path)
    assert saturday.returncode == 0, saturday.stderr
    assert "It opens again Monday at 9 AM, Singapore time." in saturday.stdout
    monday = run([*products, "--at", "2026-11-30T10:00+08:00"], env, tmp_path)
    assert "It opens again" not in monday.stdout and "queued in 'products'" in monday.stdout
    without = run([*products, "--at", "2026-11-28T12:00"], env, tmp_path)
    assert without.returncode == 2 and "--at" in without.stderr  # a time needs its zone
    server = run(["dial", "--keys", "1", "--at", "2026-11-28T12:00+08:00"], env, tmp_path)
    assert server.returncode == 1 and "--at is for a draft (--routes)" in server.stderr
    ages_ago = run([*products, "--at", "0001-01-01T00:00+01:00"], env, tmp_path)
    assert ages_ago.returncode == 1 and "--at: a time between 1970 and 2200" in ages_ago.stderr
    assert "Traceback" not in ages_ago.stderr


def test_a_draft_walk_with_an_announcement_up_walks_the_worried_callers_key(
    tmp_path: Path,
) -> None:
    """An operator prepares the incident exit before the incident: main menu #, offered only
    while an announcement is up, walked without a phone or a server."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    shipped = ["dial", "--routes", str(PROJECT_ROOT / "routes" / "hotline.yaml")]
    words = "Withdrawals are paused while we check a hot wallet."
    announced = run([*shipped, "--keys", "1,#", "--announce", words], env, tmp_path)
    assert announced.returncode == 0, announced.stderr
    assert words in announced.stdout
    assert "nodes: language > main_menu > incident_advice" in announced.stdout
    quiet = run([*shipped, "--keys", "1,#"], env, tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert "incident_advice" not in quiet.stdout and words not in quiet.stdout
    pressing = run(
        [*shipped, "--keys", "1", "--announce", "If you are fine, press 1."], env, tmp_path
    )
    assert pressing.returncode == 1 and "no key to press" in pressing.stderr
    # What the queue page would refuse, a walk refuses too, rather than walk a call no
    # hotline would play.
    blank = run([*shipped, "--keys", "1", "--announce", " \n "], env, tmp_path)
    assert blank.returncode == 1 and "a text is needed in every language" in blank.stderr
    long = run([*shipped, "--keys", "1", "--announce", "We are checking. " * 40], env, tmp_path)
    assert long.returncode == 1 and "600 characters at most: en, zh-CN" in long.stderr
    assert "Traceback" not in blank.stderr + long.stderr
    server = run(["dial", "--keys", "1", "--announce", words], env, tmp_path)
    assert server.returncode == 1 and "--announce is for a draft" in server.stderr


def test_a_draft_walk_verifies_with_the_demo_accounts(tmp_path: Path) -> None:
    """Sealed from the shell it runs in: set up for production, the walk's UID and PIN still
    go to its demo accounts, not to the exchange's identity service (here, none listens)."""
    production = {
        "IVR_IDENTITY_URL": f"http://127.0.0.1:{free_port()}",
        "IVR_IDENTITY_KEY": "k" * 32,
        "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
        "IVR_TEXT_TICKETS": "true",
    }
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **production}
    account = DEMO_ACCOUNTS[0]
    keys = f"1,1,{account['uid']},{account['pin']}"
    result = run(
        ["dial", "--routes", str(PROJECT_ROOT / "routes" / "hotline.yaml"), "--keys", keys],
        env,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert f"uid {account['uid']} pin {account['pin']}" in result.stdout
    assert "queued in 'security'" in result.stdout
    assert "Because you confirmed your identity, we are placing a protective freeze" in (
        result.stdout
    )


def test_calls_list_and_show_in_a_terminal(server: Server, tmp_path: Path) -> None:
    placed = run(["dial", "--keys", "1,1,*", "--from", "+15005550987"], server.env, tmp_path)
    sid = placed.stdout.strip().splitlines()[-1].split()[1]
    listed = run(["calls", "list", "--emergency"], server.env, tmp_path)
    assert listed.returncode == 0 and sid in listed.stdout and "***0987" in listed.stdout
    assert "+15005550987" not in listed.stdout
    shown = run(["calls", "show", sid], server.env, tmp_path)
    assert "emergency_verify" in shown.stdout and "case " in shown.stdout
    missing = run(["calls", "show", "CA" + "0" * 32], server.env, tmp_path)
    assert missing.returncode == 1
    # Reading a caller's call from a terminal is audited, as a search through the API is:
    # who, and which call (the one there was; a CallSid of no call read nothing).
    shows = [r for r in audit_rows(server.env) if r["action"] == "show_call"]
    assert [(r["actor"], r["reason"], r["account_uid"]) for r in shows] == [(OS_ACTOR, sid, None)]


def test_calls_list_takes_the_api_filters_and_pages(server: Server, tmp_path: Path) -> None:
    """Two calls: the filters of GET /api/calls pick one or the other, and a page of one says
    how to get the next."""
    sids = []
    for keys, number in (("1,1,*", "+15005550987"), ("1,0", "+15005550654")):
        placed = run(["dial", "--keys", keys, "--from", number], server.env, tmp_path)
        sids.append(placed.stdout.strip().splitlines()[-1].split()[1])
    hijack, other = sids

    def listed(*options: str) -> list[str]:
        result = run(["calls", "list", *options], server.env, tmp_path)
        assert result.returncode == 0, result.stderr
        return [line.split()[2] for line in result.stdout.splitlines()]

    assert listed("--caller", "0987") == [hijack]
    assert listed("--verified", "skipped") == [hijack]  # * at the UID: no details to give
    assert listed("--verified", "not_attempted") == [other]
    assert listed("--until", "2000-01-01T00:00:00") == []
    first = run(["calls", "list", "--limit", "1"], server.env, tmp_path)
    assert first.stdout.split()[2] == other  # newest first
    cursor = first.stderr.split("--cursor ")[1].split()[0]
    assert listed("--limit", "1", "--cursor", cursor) == [hijack]
    wrong = run(["calls", "list", "--verified", "maybe"], server.env, tmp_path)
    assert wrong.returncode == 1 and "--verified: one of yes, no" in wrong.stderr
    forged = run(["calls", "list", "--cursor", "bm90IGEgY3Vyc29y"], server.env, tmp_path)
    assert forged.returncode == 1 and "--cursor: not a cursor" in forged.stderr
    # A look for one caller's calls is audited (the number as the log shows it); the rest not.
    [search] = [r for r in audit_rows(server.env) if r["action"] == "search_calls"]
    assert search["actor"].startswith("cli:") and search["reason"] == "caller=***0987; 1 row(s)"


def test_calls_tail_follows_a_call_as_it_happens(server: Server, tmp_path: Path) -> None:
    tail = subprocess.Popen(
        [IVR, "calls", "tail", "--seconds", "8"],
        env=server.env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2)  # let it start following before the call
    placed = run(["dial", "--keys", "1,0"], server.env, tmp_path)
    sid = placed.stdout.strip().splitlines()[-1].split()[1]
    out, _ = tail.communicate(timeout=30)
    lines = [line for line in out.splitlines() if line.startswith(sid)]
    assert any("entered main_menu" in line for line in lines)
    assert any("queued agent_general" in line and "outcome=general" in line for line in lines)
    # Every caller's calls as they come, to a terminal: audited as it started.
    tails = [r for r in audit_rows(server.env) if r["action"] == "tail_calls"]
    assert [(r["actor"], r["reason"]) for r in tails] == [(OS_ACTOR, "for 8 s")]


def test_the_cli_actor_is_the_systems_user_and_whoever_ran_sudo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """$USER and $LOGNAME say nothing (anyone exports them); the effective uid's password
    entry does, or the uid itself in a container that has none. Run with sudo: the login
    that ran it, then the user it runs as; odd characters in SUDO_USER are not written."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    monkeypatch.delenv("SUDO_USER", raising=False)
    monkeypatch.setenv("USER", "mallory")
    monkeypatch.setenv("LOGNAME", "mallory")
    assert cli_actor() == f"cli:{me}"
    monkeypatch.setenv("SUDO_USER", "alice")
    assert cli_actor() == f"cli:alice via sudo as {me}"
    monkeypatch.setenv("SUDO_USER", me)  # sudo to oneself: said once
    assert cli_actor() == f"cli:{me}"
    monkeypatch.setenv("SUDO_USER", "al ice\nroot" + "x" * 80)
    said = cli_actor()
    assert said.startswith("cli:al?ice?root") and "\n" not in said and len(said) <= 80

    def no_entry(uid: int) -> Any:
        raise KeyError(uid)

    monkeypatch.delenv("SUDO_USER")
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    assert cli_actor() == f"cli:uid:{os.geteuid()}"


def test_routes_check_finds_prompts_through_ivr_prompts(tmp_path: Path) -> None:
    """An installed package (the Docker image) has no source checkout: IVR_PROMPTS names them."""
    tree = DATA / "mini.yaml"
    without = run(["routes", "check", str(tree)], dict(os.environ), tmp_path)
    assert without.returncode == 1  # the project's catalogs lack the mini tree's prompts
    env = dict(os.environ, IVR_PROMPTS=str(DATA / "prompts"))
    result = run(["routes", "check", str(tree)], env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_routes_check_graph_and_draft_walk_use_the_servers_catalogs_from_dotenv(
    tmp_path: Path,
) -> None:
    """An operator beside the server's .env checks what the server would load: IVR_PROMPTS
    there names the catalogs, as it does for `ivr serve`, not the project's prompts/ (which
    lack the mini tree's prompts, so the check would call them missing)."""
    tree = str(DATA / "mini.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IVR_", "TWILIO_"))}
    (tmp_path / ".env").write_text(f"IVR_PROMPTS={DATA / 'prompts'}\n")
    checked = run(["routes", "check", tree], env, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.rstrip().endswith(f"(catalogs: {DATA / 'prompts'})")
    drawn = run(["routes", "graph", tree], env, tmp_path)
    assert drawn.returncode == 0, drawn.stdout + drawn.stderr
    assert drawn.stdout.startswith("flowchart TD")
    walked = run(["dial", "--routes", tree, "--keys", "1", "--hold", "0"], env, tmp_path)
    assert walked.returncode == 0, walked.stdout + walked.stderr
    # --prompts still wins over .env: the project's catalogs lack the mini tree's prompts.
    named = run(
        ["routes", "check", tree, "--prompts", str(PROJECT_ROOT / "prompts")], env, tmp_path
    )
    assert named.returncode == 1
    assert "is missing from the en catalog" in named.stdout


@pytest.mark.parametrize(("trusted", "secure"), [("10.9.9.9", False), ("127.0.0.1", True)])
def test_serve_believes_forwarded_headers_only_from_trusted_proxies(
    tmp_path: Path, trusted: str, secure: bool
) -> None:
    """A forged X-Forwarded-Proto from an untrusted peer does not make the session https."""
    url = f"http://127.0.0.1:{free_port()}"
    env = base_env(tmp_path, IVR_PUBLIC_URL=url, IVR_TRUSTED_PROXIES=trusted)
    with running(env, tmp_path):
        engine = create_db_engine(env["IVR_DATABASE_URL"])
        token = make_user(engine, "sue", "supervisor")
        engine.dispose()
        response = httpx.post(
            url + "/dashboard/login",
            data={"token": token},
            headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"},
        )
    assert response.status_code == 303, response.text
    cookie = response.headers["set-cookie"].lower()
    assert ("; secure" in cookie) is secure


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.mark.parametrize("where", ["environment", ".env"])
def test_routes_check_refuses_a_catalog_the_servers_settings_refuse(
    tmp_path: Path, where: str
) -> None:
    """IVR_RECORD_AGENT_CALLS records calls only once callers are told: a catalog without
    `recording_notice` is refused by reload, so by the check run with the same settings (from
    the environment or .env, as the server reads them), at the catalog's line."""
    prompts = tmp_path / "p"
    shutil.copytree(DATA / "prompts", prompts)
    edit(prompts / "en.yaml", '  recording_notice: "This call will be recorded."\n', "")
    tree = [str(DATA / "mini.yaml"), "--prompts", str(prompts)]
    plain = run(["routes", "check", *tree], base_env(tmp_path), tmp_path)
    assert plain.returncode == 0, plain.stdout + plain.stderr  # not needed without recording
    if where == ".env":
        (tmp_path / ".env").write_text("IVR_RECORD_AGENT_CALLS=true\n")
        env = base_env(tmp_path)
    else:
        env = base_env(tmp_path, IVR_RECORD_AGENT_CALLS="true")
    result = run(["routes", "check", *tree], env, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    en = (prompts / "en.yaml").read_text(encoding="utf-8").splitlines()
    refused = [line for line in result.stdout.splitlines() if ": error: " in line]
    assert len(refused) == 1, result.stdout
    assert refused[0].startswith(f"{prompts / 'en.yaml'}:{en.index('prompts:') + 1}: error: ")
    assert "prompt 'recording_notice' is missing from the en catalog" in refused[0]
    assert refused[0].endswith(
        "(IVR_RECORD_AGENT_CALLS is on in this environment: reload would refuse these catalogs)"
    )
    assert "1 error(s); the tree would be refused" in result.stderr


def test_routes_check_points_at_a_ticket_text_that_cannot_be_texted(tmp_path: Path) -> None:
    """IVR_TEXT_TICKETS texts `ticket_text`: one that does not say {ticket} is refused."""
    prompts = tmp_path / "p"
    shutil.copytree(DATA / "prompts", prompts)
    for name, said in (("en", "Your ticket is {ticket}."), ("zh-CN", "工单号。")):
        tip = "  hold_tip_2: Tip two.\n" if name == "en" else "  hold_tip_2: 提示二。\n"
        edit(prompts / f"{name}.yaml", tip, f"{tip}  ticket_text: {said}\n")
    env = base_env(tmp_path, IVR_TEXT_TICKETS="1")
    tree = [str(DATA / "mini.yaml"), "--prompts", str(prompts)]
    result = run(["routes", "check", *tree], env, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    zh = (prompts / "zh-CN.yaml").read_text(encoding="utf-8").splitlines()
    assert result.stdout.splitlines()[-1] == (
        f"{prompts / 'zh-CN.yaml'}:{zh.index('  ticket_text: 工单号。') + 1}: error: "
        "prompts.ticket_text: prompt 'ticket_text' must be words saying {ticket}: it is texted "
        "(IVR_TEXT_TICKETS is on in this environment: reload would refuse these catalogs)"
    )


def test_tokens_expire_after_ivr_token_days_and_users_list_says_when(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    del env["TWILIO_AUTH_TOKEN"]
    before = datetime.now(UTC)
    added = run(["users", "add", "ana", "--role", "agent"], env, tmp_path)
    assert added.returncode == 0 and "the token expires " in added.stdout, added.stderr
    week = run(["users", "add", "ben", "--role", "agent", "--days", "7"], env, tmp_path)
    assert week.returncode == 0, week.stderr
    month = run(["users", "token", "ana"], {**env, "IVR_TOKEN_DAYS": "30"}, tmp_path)
    assert month.returncode == 0 and "expires " in month.stdout, month.stderr
    engine = create_db_engine(env["IVR_DATABASE_URL"])
    try:
        make_user(engine, "old", "supervisor")  # made before tokens expired: no expiry
        with engine.connect() as conn:
            create_user(conn, name="gone", role="agent", phone=None, now=before, expires_at=before)
            expiry = dict(conn.execute(select(users.c.name, users.c.token_expires_at)).all())
    finally:
        engine.dispose()
    after = datetime.now(UTC)
    for name, days in (("ana", 30), ("ben", 7)):
        assert before + timedelta(days=days) <= expiry[name] <= after + timedelta(days=days)
    listed = {
        line.split()[0]: line for line in run(["users", "list"], env, tmp_path).stdout.splitlines()
    }
    assert f"token expires {expiry['ana']:%Y-%m-%d %H:%M} UTC" in listed["ana"]
    assert "token never expires" in listed["old"] and "rotate it" in listed["old"]
    assert f"token expired {before:%Y-%m-%d %H:%M} UTC" in listed["gone"]
    zero = run(["users", "add", "cy", "--role", "agent"], {**env, "IVR_TOKEN_DAYS": "0"}, tmp_path)
    assert zero.returncode == 1 and "IVR_TOKEN_DAYS" in zero.stderr
    too_long = run(["users", "token", "ana", "--days", "400"], env, tmp_path)
    assert too_long.returncode == 2 and "--days" in too_long.stderr


def test_demo_refuses_a_public_server_and_someone_elses_accounts_unless_forced(
    tmp_path: Path,
) -> None:
    """Published PINs on accounts 10000001 and 10000002 would let anyone verify as their
    owners by phone: not on an https server, nor over accounts of those UIDs with other
    secrets (a customer's), unless --force. Refused, nothing is changed."""
    local = base_env(tmp_path, IVR_PUBLIC_URL="http://127.0.0.1:9", IVR_SECRET_KEY=SECRET_KEY)
    public = {**local, "IVR_PUBLIC_URL": "https://hotline.example.com"}
    added = run(
        ["accounts", "add", "--uid", "10000001", "--phone", "+15005550100", "--secrets-stdin"],
        local,
        tmp_path,
        stdin="pin=135790\n",
    )
    assert added.returncode == 0, added.stderr
    engine = create_db_engine(local["IVR_DATABASE_URL"])

    def stored() -> tuple[dict[str, str | None], list[str]]:
        with engine.connect() as conn:
            hashes = dict(conn.execute(select(accounts.c.uid, accounts.c.pin_hash)).all())
            names = list(conn.execute(select(users.c.name)).scalars())
        return hashes, names

    try:
        before = stored()
        on_https = run(["demo"], public, tmp_path)
        assert on_https.returncode == 1 and "IVR_PUBLIC_URL is https" in on_https.stderr
        assert "pin 123456" not in on_https.stdout and stored() == before
        over_a_customer = run(["demo"], local, tmp_path)
        assert over_a_customer.returncode == 1, over_a_customer.stdout
        assert "10000001 exist already with other secrets" in over_a_customer.stderr
        assert "pin 123456" not in over_a_customer.stdout and stored() == before
        forced = run(["demo", "--force"], local, tmp_path)
        assert forced.returncode == 0 and "uid 10000001  pin 123456" in forced.stdout
        again = run(["demo"], local, tmp_path)  # its own accounts: seeded again, as before
        assert again.returncode == 0 and "demo agent exists already" in again.stdout
        assert run(["demo", "--force"], public, tmp_path).returncode == 0
    finally:
        engine.dispose()
    directory = LocalDirectory(create_db_engine(local["IVR_DATABASE_URL"]), SECRET_KEY)
    now = datetime.now(UTC)
    assert directory.check(uid="10000001", factor="pin", digits="123456", now=now)
    directory.db.dispose()
