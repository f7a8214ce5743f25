"""Who a caller is: the built-in directory, the exchange's HTTP endpoint, and the lockout."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pyotp
import pytest
from argon2 import PasswordHasher
from cryptography.fernet import Fernet
from sqlalchemy import Engine, select

from ivr import store
from ivr.db import accounts, audit_log
from ivr.exceptions import ConfigError, IdentityUnavailable, NoSuchAccount
from ivr.identity import (
    HASHING_AT_ONCE,
    HttpAccountActions,
    HttpIdentity,
    LocalAccountActions,
    LocalDirectory,
    cores,
)
from ivr.settings import Settings
from ivr.tree import CompiledTree
from ivr.web import create_app
from tests.conftest import SECRET_KEY

NOW = datetime(2026, 11, 23, 3, 0, 10, tzinfo=UTC)
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # base32, 160 bits
PIN = "482915"
ID_LAST4 = "7306"
PHONE = "+15005550006"
STEP = timedelta(seconds=30)


def code_at(when: datetime) -> str:
    return pyotp.TOTP(SEED).at(when)


# -- LocalDirectory: PIN, ID digits, phone --------------------------------------------------------


@pytest.fixture
def directory(db: Engine) -> LocalDirectory:
    d = LocalDirectory(db, SECRET_KEY)
    d.add(uid="10000001", pin=PIN, id_last4=ID_LAST4, phone=PHONE, totp_secret=SEED, now=NOW)
    return d


def check(d: LocalDirectory, factor: str, digits: str, uid: str = "10000001") -> bool:
    return d.check(uid=uid, factor=factor, digits=digits, now=NOW)


def test_pin_right_and_wrong(directory: LocalDirectory) -> None:
    assert check(directory, "pin", PIN) is True
    assert check(directory, "pin", "482916") is False
    assert check(directory, "pin", "") is False
    assert check(directory, "pin", ID_LAST4) is False


def test_id_last4_right_and_wrong(directory: LocalDirectory) -> None:
    assert check(directory, "id_last4", ID_LAST4) is True
    assert check(directory, "id_last4", "7307") is False
    assert check(directory, "id_last4", PIN) is False


def stored_hashes(db: Engine, uid: str = "10000001") -> tuple[str, str]:
    with db.connect() as conn:
        row = conn.execute(
            select(accounts.c.pin_hash, accounts.c.id_last4_hash).where(accounts.c.uid == uid)
        ).one()
    return row.pin_hash, row.id_last4_hash


@pytest.mark.parametrize("factor", ["pin", "id_last4", "pin_or_id_last4"])
def test_a_secret_hashed_at_a_higher_cost_is_hashed_again_on_a_match(
    db: Engine, factor: str
) -> None:
    """Accounts stored with argon2-cffi's defaults (the 136 ms hash) cost today's price from
    their next match on; a miss changes nothing."""
    LocalDirectory(db, SECRET_KEY, hasher=PasswordHasher()).add(
        uid="10000001", pin=PIN, id_last4=ID_LAST4, phone=None, totp_secret=None, now=NOW
    )
    directory = LocalDirectory(db, SECRET_KEY)
    old_pin, old_id = stored_hashes(db)
    assert directory.hasher.check_needs_rehash(old_pin)
    right = ID_LAST4 if factor == "id_last4" else PIN
    assert check(directory, factor, "000000" if len(right) == 6 else "0000") is False
    assert stored_hashes(db) == (old_pin, old_id)
    assert check(directory, factor, right) is True
    new_pin, new_id = stored_hashes(db)
    fresh, kept = (new_id, new_pin) if factor == "id_last4" else (new_pin, new_id)
    assert kept == (old_pin if factor == "id_last4" else old_id)  # the other secret untouched
    assert fresh != (old_id if factor == "id_last4" else old_pin)
    assert not directory.hasher.check_needs_rehash(fresh)
    assert check(directory, factor, right) is True  # and it still matches
    assert stored_hashes(db) == (new_pin, new_id)  # once made fresh, left alone


def test_a_cheaper_hash_is_left_as_it_is(db: Engine) -> None:
    """The benchmark's cheap accounts must stay cheap (they measure everything but the hash)."""
    LocalDirectory(db, SECRET_KEY, hasher=CHEAP).add(
        uid="10000001", pin=PIN, id_last4=ID_LAST4, phone=None, totp_secret=None, now=NOW
    )
    before = stored_hashes(db)
    assert check(LocalDirectory(db, SECRET_KEY), "pin", PIN) is True
    assert stored_hashes(db) == before


CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, None),  # no cgroup at all: the CPUs the process may run on
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 2),  # --cpus=1.5: two, partly
        ({"cpu.max": "50000 100000\n"}, 1),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
    ],
)
def test_cores_follow_a_containers_cpu_quota(
    tmp_path: Path, files: dict[str, str], expected: int | None
) -> None:
    """A 1-CPU container on a 64-core host hashes one PIN at a time, not 63."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    available = len(os.sched_getaffinity(0))
    assert cores(tmp_path) == (available if expected is None else min(expected, available))


def test_the_setting_decides_how_many_hash_at_once(
    settings: Settings, db: Engine, mini_tree: CompiledTree
) -> None:
    tuned = settings.model_copy(update={"hashing_at_once": 3})
    app = create_app(tuned, tree=mini_tree, db=db)
    directory = app.state.hotline.identity
    assert isinstance(directory, LocalDirectory)
    assert directory.hashing_at_once == 3
    default = create_app(settings, tree=mini_tree, db=db).state.hotline.identity
    assert default.hashing_at_once == HASHING_AT_ONCE == max(1, cores() - 1)


class Watching(PasswordHasher):
    """A real (cheap) argon2 hasher that notes how many verifications run at once."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=64, parallelism=1)
        self.running = self.most = 0
        self.lock = threading.Lock()

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.05)  # long enough for the other threads to arrive
            return super().verify(hash, password)
        finally:
            with self.lock:
                self.running -= 1


@pytest.mark.parametrize("at_once", [1, 2])
def test_no_more_hashes_at_once_than_allowed(db: Engine, at_once: int) -> None:
    """A wave of callers keying PINs hashes `at_once` at a time, the rest wait their turn:
    the event loop keeps a core, and every check still gets its answer."""
    hasher = Watching()
    directory = LocalDirectory(db, SECRET_KEY, hasher=hasher, hashing_at_once=at_once)
    directory.add(uid="10000001", pin=PIN, id_last4=None, phone=None, totp_secret=None, now=NOW)
    results: list[bool] = []
    start = threading.Barrier(6)

    def caller(digits: str) -> None:
        start.wait()
        results.append(check(directory, "pin", digits))

    threads = [threading.Thread(target=caller, args=(d,)) for d in [PIN] * 3 + ["000000"] * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == [False] * 3 + [True] * 3
    assert hasher.most == at_once


def test_phone_compares_digits_only(directory: LocalDirectory) -> None:
    assert check(directory, "phone", PHONE) is True
    assert check(directory, "phone", "15005550006") is True
    assert check(directory, "phone", "+15005550007") is False
    assert check(directory, "phone", "") is False


def test_account_without_phone_never_matches_an_empty_number(db: Engine) -> None:
    d = LocalDirectory(db, SECRET_KEY)
    d.add(uid="10000002", pin=PIN, id_last4=None, phone=None, totp_secret=None, now=NOW)
    assert check(d, "phone", "", uid="10000002") is False
    assert check(d, "phone", "anonymous", uid="10000002") is False
    assert check(d, "id_last4", ID_LAST4, uid="10000002") is False  # no ID digits on file


def test_pin_or_id_last4_chooses_the_factor_by_length(directory: LocalDirectory) -> None:
    assert check(directory, "pin_or_id_last4", PIN) is True
    assert check(directory, "pin_or_id_last4", ID_LAST4) is True
    assert check(directory, "pin_or_id_last4", "482916") is False
    assert check(directory, "pin_or_id_last4", "7307") is False
    assert check(directory, "pin_or_id_last4", "48291") is False
    # The ID digits padded to 6 are a (wrong) PIN, not the ID digits.
    assert check(directory, "pin_or_id_last4", "007306") is False


def test_unknown_uid_is_false_for_every_factor(directory: LocalDirectory) -> None:
    for factor, digits in [
        ("pin", PIN),
        ("id_last4", ID_LAST4),
        ("pin_or_id_last4", PIN),
        ("phone", PHONE),
        ("totp", code_at(NOW)),
    ]:
        assert check(directory, factor, digits, uid="99999999") is False, factor
    assert directory.registered_phone(uid="99999999") is None


def test_unknown_factor_is_false(directory: LocalDirectory) -> None:
    assert check(directory, "uid", "10000001") is False
    assert check(directory, "birthday", PIN) is False


def test_registered_phone(directory: LocalDirectory) -> None:
    assert directory.registered_phone(uid="10000001") == PHONE


def test_stored_row_holds_no_plaintext_secret(db: Engine, directory: LocalDirectory) -> None:
    with db.connect() as conn:
        row = conn.execute(select(accounts).where(accounts.c.uid == "10000001")).mappings().one()
    for column, value in row.items():
        text = str(value)
        assert PIN not in text, column
        assert ID_LAST4 not in text, column
        assert SEED not in text, column
    assert row["pin_hash"].startswith("$argon2")
    assert row["id_last4_hash"].startswith("$argon2")
    assert row["totp_secret"] != SEED
    # Sealed with IVR_SECRET_KEY, so it can be opened with it (and only with it).
    assert Fernet(SECRET_KEY.encode()).decrypt(row["totp_secret"].encode()).decode() == SEED
    assert row["totp_last_step"] is None
    assert row["frozen"] == 0


def test_add_again_replaces_the_secrets(db: Engine, directory: LocalDirectory) -> None:
    assert check(directory, "totp", code_at(NOW)) is True
    directory.add(
        uid="10000001", pin="135790", id_last4=None, phone=None, totp_secret=None, now=NOW
    )
    assert check(directory, "pin", PIN) is False
    assert check(directory, "pin", "135790") is True
    assert check(directory, "id_last4", ID_LAST4) is False
    assert check(directory, "totp", code_at(NOW + STEP)) is False
    with db.connect() as conn:
        rows = conn.execute(select(accounts)).mappings().all()
    assert len(rows) == 1
    assert rows[0]["totp_last_step"] is None and rows[0]["phone"] is None


def test_a_freeze_outlives_new_secrets_and_only_an_audited_unfreeze_lifts_it(
    db: Engine, directory: LocalDirectory
) -> None:
    """A victim's account frozen on the phone stays frozen when their secrets are replaced
    (a new PIN, the exchange's nightly import): lifting a freeze is a decision, on record."""
    assert LocalAccountActions(db).freeze(uid="10000001", now=NOW)
    directory.add(
        uid="10000001", pin="135790", id_last4=None, phone=PHONE, totp_secret=None, now=NOW
    )
    with db.connect() as conn:
        row = conn.execute(select(accounts).where(accounts.c.uid == "10000001")).mappings().one()
    assert (row["frozen"], row["frozen_at"]) == (1, NOW)
    later = NOW + timedelta(hours=2)
    assert directory.unfreeze(
        uid="10000001", actor="cli:ops", reason="owner seen at desk", now=later
    )
    assert not directory.unfreeze(uid="10000001", actor="cli:ops", reason="again", now=later)
    assert not directory.unfreeze(uid="99999999", actor="cli:ops", reason="nobody", now=later)
    with db.connect() as conn:
        row = conn.execute(select(accounts).where(accounts.c.uid == "10000001")).mappings().one()
        [entry] = conn.execute(select(audit_log)).mappings().all()
    assert (row["frozen"], row["frozen_at"]) == (0, None)
    assert (entry["actor"], entry["action"], entry["account_uid"], entry["reason"]) == (
        "cli:ops",
        "unfreeze",
        "10000001",
        "owner seen at desk",
    )
    assert entry["at"] == later


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("pin", "48291"),
        ("pin", "4829150"),
        ("pin", "48291a"),
        ("id_last4", "730"),
        ("id_last4", "73066"),
        ("id_last4", "73o6"),
    ],
)
def test_add_refuses_malformed_digits(db: Engine, field: str, value: str) -> None:
    d = LocalDirectory(db, SECRET_KEY)
    values: dict[str, str | None] = {"pin": PIN, "id_last4": ID_LAST4, field: value}
    with pytest.raises(ValueError):
        d.add(uid="10000003", phone=None, totp_secret=None, now=NOW, **values)
    with db.connect() as conn:
        assert conn.execute(select(accounts)).first() is None


@pytest.mark.parametrize("seed", ["01890189018901890189018901890189", "JBSWY3DP!HPK3PXP"])
def test_add_refuses_a_seed_that_is_not_base32(db: Engine, seed: str) -> None:
    d = LocalDirectory(db, SECRET_KEY)
    with pytest.raises(ValueError):
        d.add(uid="10000003", pin=PIN, id_last4=None, phone=None, totp_secret=seed, now=NOW)
    with db.connect() as conn:
        assert conn.execute(select(accounts)).first() is None


def test_totp_without_a_secret_key_is_a_config_error(db: Engine) -> None:
    d = LocalDirectory(db, None)
    with pytest.raises(ConfigError):
        d.add(uid="10000003", pin=PIN, id_last4=None, phone=None, totp_secret=SEED, now=NOW)
    # Without TOTP, no key is needed.
    d.add(uid="10000003", pin=PIN, id_last4=None, phone=None, totp_secret=None, now=NOW)
    assert check(d, "pin", PIN, uid="10000003") is True
    assert check(d, "totp", code_at(NOW), uid="10000003") is False


# -- LocalDirectory: TOTP -------------------------------------------------------------------------


def test_the_codes_used_below_differ() -> None:
    codes = [code_at(NOW + k * STEP) for k in (-2, -1, 0, 1, 2)]
    assert len(set(codes)) == 5, codes  # otherwise the window tests below prove nothing


def totp_account(db: Engine, uid: str) -> LocalDirectory:
    d = LocalDirectory(db, SECRET_KEY)
    d.add(uid=uid, pin=None, id_last4=None, phone=None, totp_secret=SEED, now=NOW)
    return d


@pytest.mark.parametrize("steps", [-1, 0, 1])
def test_totp_accepts_one_step_either_way(db: Engine, steps: int) -> None:
    d = totp_account(db, "20000001")
    assert check(d, "totp", code_at(NOW + steps * STEP), uid="20000001") is True


@pytest.mark.parametrize("steps", [-2, 2, -3, 3])
def test_totp_refuses_two_steps_away(db: Engine, steps: int) -> None:
    d = totp_account(db, "20000001")
    assert check(d, "totp", code_at(NOW + steps * STEP), uid="20000001") is False
    # A refused code does not use up the current one.
    assert check(d, "totp", code_at(NOW), uid="20000001") is True


def test_totp_refuses_wrong_and_malformed_codes(db: Engine) -> None:
    d = totp_account(db, "20000001")
    good = code_at(NOW)
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    for digits in (wrong, good[:5], good + "0", "", "abcdef"):
        assert check(d, "totp", digits, uid="20000001") is False, digits
    assert check(d, "totp", good, uid="20000001") is True


def test_totp_code_is_accepted_once(db: Engine) -> None:
    d = totp_account(db, "20000001")
    assert check(d, "totp", code_at(NOW), uid="20000001") is True
    assert check(d, "totp", code_at(NOW), uid="20000001") is False
    # Also later, while the code is still inside the window.
    assert d.check(uid="20000001", factor="totp", digits=code_at(NOW), now=NOW + STEP) is False


def test_totp_after_the_current_code_the_previous_one_is_refused(db: Engine) -> None:
    d = totp_account(db, "20000001")
    assert check(d, "totp", code_at(NOW), uid="20000001") is True
    assert check(d, "totp", code_at(NOW - STEP), uid="20000001") is False
    assert check(d, "totp", code_at(NOW + STEP), uid="20000001") is True
    assert check(d, "totp", code_at(NOW), uid="20000001") is False


def test_totp_used_step_is_recorded(db: Engine) -> None:
    d = totp_account(db, "20000001")
    assert check(d, "totp", code_at(NOW + STEP), uid="20000001") is True
    with db.connect() as conn:
        last = conn.execute(select(accounts.c.totp_last_step)).scalar_one()
    assert last == pyotp.TOTP(SEED).timecode(NOW) + 1


def test_totp_no_reuse_is_per_account(db: Engine) -> None:
    a = totp_account(db, "20000001")
    totp_account(db, "20000002")
    assert check(a, "totp", code_at(NOW), uid="20000001") is True
    assert check(a, "totp", code_at(NOW), uid="20000002") is True


def test_totp_with_another_key_fails_closed(db: Engine) -> None:
    totp_account(db, "20000001")
    other = LocalDirectory(db, Fernet.generate_key().decode())
    assert check(other, "totp", code_at(NOW), uid="20000001") is False
    keyless = LocalDirectory(db, None)
    assert check(keyless, "totp", code_at(NOW), uid="20000001") is False
    # Neither used the code up.
    assert check(LocalDirectory(db, SECRET_KEY), "totp", code_at(NOW), uid="20000001") is True


# -- the exchange's endpoint over HTTP ------------------------------------------------------------

HMAC_KEY = "exchange-shared-hmac-key"
GOOD_UID = "10000001"
GOOD_VALUE = "246813"
SLEEP = 0.3  # the slow handler; the client's timeout is well below


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    valid: bool

    def json(self) -> object:
        return json.loads(self.body)


class FakeExchange(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ExchangeHandler)
        self.seen: list[Seen] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class ExchangeHandler(BaseHTTPRequestHandler):
    """Checks the signature the way the exchange would; the path's first part picks a behaviour:
    /ok (normal), /down (500), /slow (answers late), /garbled, /list, /string-ok (bad JSON)."""

    server: FakeExchange

    def log_message(self, format: str, *args: object) -> None:
        pass

    def reply(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        stamp = self.headers.get("x-ivr-timestamp", "")
        mac = hmac.new(HMAC_KEY.encode(), stamp.encode() + b"." + body, hashlib.sha256)
        valid = (
            stamp.isdigit()
            and abs(time.time() - int(stamp)) < 300
            and hmac.compare_digest(
                self.headers.get("x-ivr-signature", ""), "sha256=" + mac.hexdigest()
            )
        )
        self.server.seen.append(
            Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body, valid)
        )
        if not valid:
            return self.reply(401, b'{"error":"bad signature"}')
        mode, _, action = self.path.strip("/").partition("/")
        payload = json.loads(body)
        ok = payload.get("uid") == GOOD_UID and (
            payload.get("value") == GOOD_VALUE if action == "verify" else True
        )
        answer = json.dumps({"ok": ok}).encode()
        if mode == "down":
            return self.reply(500, b'{"ok":true}')
        if mode == "slow":
            time.sleep(SLEEP)
            try:
                return self.reply(200, b'{"ok":true}')
            except OSError:
                return None  # the client gave up already
        if mode == "garbled":
            return self.reply(200, b'{"ok": tru')
        if mode == "list":
            return self.reply(200, b"[true]")
        if mode == "string-ok":
            return self.reply(200, b'{"ok":"true"}')
        if mode.startswith("status-"):
            return self.reply(int(mode.removeprefix("status-")), b'{"error":"no such account"}')
        if action == "freeze":
            return self.reply(204 if ok else 404)
        return self.reply(200, answer)


@pytest.fixture
def exchange() -> Iterator[FakeExchange]:
    server = FakeExchange()
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=2.0) as client:
        yield client


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def verify(url: str, client: httpx.Client, *, uid: str = GOOD_UID, value: str = GOOD_VALUE) -> bool:
    return HttpIdentity(url, HMAC_KEY, client).check(uid=uid, factor="pin", digits=value, now=NOW)


def test_http_identity_right_pin(exchange: FakeExchange, http: httpx.Client) -> None:
    assert verify(exchange.url + "/ok/", http) is True
    [seen] = exchange.seen
    assert seen.valid
    assert seen.path == "/ok/verify"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["x-ivr-signature"].startswith("sha256=")
    assert seen.json() == {"uid": GOOD_UID, "factor": "pin", "value": GOOD_VALUE}


def test_http_identity_wrong_pin_or_uid(exchange: FakeExchange, http: httpx.Client) -> None:
    assert verify(exchange.url + "/ok", http, value="246814") is False
    assert verify(exchange.url + "/ok", http, uid="10000002") is False
    assert [s.valid for s in exchange.seen] == [True, True]


def test_http_identity_signed_with_another_key_is_refused(
    exchange: FakeExchange, http: httpx.Client
) -> None:
    identity = HttpIdentity(exchange.url + "/ok", "not-the-key", http)
    # Our key, not the caller's answer, is wrong: no verdict, and no count towards a lockout.
    with pytest.raises(IdentityUnavailable):
        identity.check(uid=GOOD_UID, factor="pin", digits=GOOD_VALUE, now=NOW)
    [seen] = exchange.seen
    assert seen.valid is False


@pytest.mark.parametrize("mode", ["down", "garbled", "list", "string-ok"])
def test_http_identity_bad_answers_are_no_verdict(
    exchange: FakeExchange, http: httpx.Client, mode: str
) -> None:
    # Each of these answers carries something truthy: only a clean {"ok": true} verifies, and
    # none of them says the caller was wrong either.
    with pytest.raises(IdentityUnavailable):
        verify(f"{exchange.url}/{mode}", http)
    assert [s.valid for s in exchange.seen] == [True]


@pytest.mark.parametrize("status", [400, 404, 422])
def test_http_identity_refusing_the_account_is_a_wrong_answer(
    exchange: FakeExchange, http: httpx.Client, status: int
) -> None:
    assert verify(f"{exchange.url}/status-{status}", http) is False


@pytest.mark.parametrize("status", [403, 408, 429, 503])
def test_http_identity_refusing_for_its_own_reasons_is_no_verdict(
    exchange: FakeExchange, http: httpx.Client, status: int
) -> None:
    with pytest.raises(IdentityUnavailable):
        verify(f"{exchange.url}/status-{status}", http)


def test_http_identity_timeout_is_no_verdict(exchange: FakeExchange) -> None:
    with httpx.Client(timeout=SLEEP / 3) as quick, pytest.raises(IdentityUnavailable):
        # The slow endpoint would say {"ok": true} had the client waited for it.
        verify(exchange.url + "/slow", quick)
    assert [s.valid for s in exchange.seen] == [True]


def test_http_identity_unreachable_is_no_verdict(http: httpx.Client) -> None:
    with pytest.raises(IdentityUnavailable):
        verify(f"http://127.0.0.1:{closed_port()}", http)


def test_http_identity_does_not_know_the_phone(exchange: FakeExchange, http: httpx.Client) -> None:
    assert HttpIdentity(exchange.url, HMAC_KEY, http).registered_phone(uid=GOOD_UID) is None
    assert exchange.seen == []


def freeze(url: str, client: httpx.Client, *, uid: str = GOOD_UID, key: str = HMAC_KEY) -> bool:
    return HttpAccountActions(url, key, client).freeze(uid=uid, now=NOW)


def test_http_freeze_true_on_2xx(exchange: FakeExchange, http: httpx.Client) -> None:
    assert freeze(exchange.url + "/ok/", http) is True
    [seen] = exchange.seen
    assert seen.valid and seen.path == "/ok/freeze"
    assert seen.json() == {"uid": GOOD_UID, "action": "freeze"}


def test_http_freeze_false_when_not_done(exchange: FakeExchange, http: httpx.Client) -> None:
    assert freeze(exchange.url + "/down", http) is False  # 500
    assert freeze(exchange.url + "/ok", http, key="not-the-key") is False  # 401
    # Our request refused, not the account unknown: not confirmed, as an outage is.
    for refused in (400, 422):
        assert freeze(exchange.url + f"/status-{refused}", http) is False
    assert [s.valid for s in exchange.seen] == [True, False, True, True]


def test_an_account_the_exchange_does_not_have_is_no_such_account(
    exchange: FakeExchange, http: httpx.Client
) -> None:
    """A 404: the UID was keyed or typed wrong. Told apart from a freeze not confirmed (an
    outage, the account maybe still open to whoever took it)."""
    with pytest.raises(NoSuchAccount) as raised:
        freeze(exchange.url + "/ok", http, uid="10000002")
    assert raised.value.uid == "10000002"
    assert [s.valid for s in exchange.seen] == [True]


def test_the_local_directory_has_no_account_of_an_unknown_uid(
    db: Engine, directory: LocalDirectory
) -> None:
    with pytest.raises(NoSuchAccount):
        LocalAccountActions(db).freeze(uid="99999999", now=NOW)
    with db.connect() as conn:
        assert conn.execute(select(accounts.c.uid, accounts.c.frozen)).all() == [("10000001", 0)]


def test_http_freeze_unreachable_is_false(http: httpx.Client) -> None:
    assert freeze(f"http://127.0.0.1:{closed_port()}", http) is False


# -- lockout --------------------------------------------------------------------------------------

LIMIT = 3
WINDOW = timedelta(minutes=10)
DURATION = timedelta(minutes=15)
T0 = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


def fail(db: Engine, at: datetime, *, uid: str | None = "10000001", caller: str = PHONE) -> None:
    with db.connect() as conn:
        store.record_failure(conn, uid=uid, caller=caller, call_sid="CA" + "1" * 32, now=at)


def locked(
    db: Engine, now: datetime, *, uid: str | None = "10000001", caller: str | None = PHONE
) -> bool:
    return lockout(db, now, uid=uid, caller=caller).locked


def test_under_the_limit_is_not_locked(db: Engine) -> None:
    assert locked(db, T0) is False
    fail(db, T0)
    fail(db, T0 + timedelta(minutes=1))
    assert locked(db, T0 + timedelta(minutes=1)) is False


def test_limit_reached_within_the_window_locks(db: Engine) -> None:
    for minutes in (0, 4, 9):
        fail(db, T0 + timedelta(minutes=minutes))
    assert locked(db, T0 + timedelta(minutes=9)) is True
    assert locked(db, T0 + timedelta(minutes=9, seconds=1)) is True


def test_more_failures_than_the_limit_still_lock(db: Engine) -> None:
    for seconds in range(0, 60 * LIMIT * 2, 60):
        fail(db, T0 + timedelta(seconds=seconds))
    assert locked(db, T0 + timedelta(minutes=LIMIT * 2)) is True


def test_failures_spread_wider_than_the_window_do_not_lock(db: Engine) -> None:
    for minutes in (0, 6, 11):  # any three span 11 minutes > 10
        fail(db, T0 + timedelta(minutes=minutes))
    assert locked(db, T0 + timedelta(minutes=11)) is False
    assert locked(db, T0 + timedelta(minutes=12)) is False


def test_a_failure_recorded_during_a_lock_does_not_lift_it(db: Engine) -> None:
    for minutes in (0, 1, 9):  # locked: three within ten minutes
        fail(db, T0 + timedelta(minutes=minutes))
    fail(db, T0 + timedelta(minutes=12))  # a racing request counted one more
    # The latest three span 11 minutes, but the lock from 0-9 still runs.
    assert locked(db, T0 + timedelta(minutes=13)) is True


def test_lock_ends_duration_after_the_last_failure(db: Engine) -> None:
    last = T0 + timedelta(minutes=2)
    for at in (T0, T0 + timedelta(minutes=1), last):
        fail(db, at)
    assert locked(db, last + DURATION - timedelta(seconds=1)) is True
    assert locked(db, last + DURATION) is False
    assert locked(db, last + DURATION + timedelta(hours=1)) is False


def test_lock_per_calling_number_across_uids(db: Engine) -> None:
    for n in range(LIMIT):
        fail(db, T0 + timedelta(minutes=n), uid=f"3000000{n}", caller="+15005550099")
    now = T0 + timedelta(minutes=LIMIT)
    # A fresh uid from the same number is refused ...
    assert locked(db, now, uid="39999999", caller="+15005550099") is True
    assert locked(db, now, uid=None, caller="+15005550099") is True
    # ... none of the uids is locked from another number ...
    assert locked(db, now, uid="30000000", caller="+15005550098") is False
    assert locked(db, now, uid="30000000", caller=None) is False
    # ... and the number's lock ends like any other.
    assert locked(db, T0 + timedelta(minutes=LIMIT - 1) + DURATION, caller="+15005550099") is False


def test_lock_per_uid_across_calling_numbers(db: Engine) -> None:
    for n in range(LIMIT):
        fail(db, T0 + timedelta(minutes=n), uid="10000001", caller=f"+1500555001{n}")
    now = T0 + timedelta(minutes=LIMIT)
    assert locked(db, now, uid="10000001", caller="+15005550019") is True
    assert locked(db, now, uid="10000001", caller=None) is True
    assert locked(db, now, uid="10000002", caller="+15005550010") is False


def test_null_uid_is_counted_per_number_only(db: Engine) -> None:
    for n in range(LIMIT):
        fail(db, T0 + timedelta(minutes=n), uid=None, caller="+15005550077")
    now = T0 + timedelta(minutes=LIMIT)
    assert locked(db, now, uid=None, caller="+15005550077") is True
    assert locked(db, now, uid=None, caller="+15005550078") is False
    assert locked(db, now, uid=None, caller=None) is False
    assert locked(db, now, uid="", caller="") is False


def lockout(
    db: Engine,
    now: datetime,
    *,
    uid: str | None = "10000001",
    caller: str | None = PHONE,
    owner: bool = False,
    budget: store.Budget | None = None,
) -> store.Lockout:
    with db.connect() as conn:
        return store.lockout(
            conn,
            uid=uid,
            caller=caller,
            now=now,
            failures=LIMIT,
            window=WINDOW,
            duration=DURATION,
            owner=owner,
            budget=budget,
        )


def fail_as(db: Engine, at: datetime, *, uid: str, caller: str | None, attested: bool) -> None:
    with db.connect() as conn:
        store.record_failure(
            conn, uid=uid, caller=caller, call_sid="CA" + "2" * 32, now=at, attested=attested
        )


def test_the_owners_attested_number_counts_only_its_own_attested_failures(db: Engine) -> None:
    """Failures for the UID from other numbers, and from the owner's number spoofed without
    attestation, lock every call but the owner's attested one; the owner's own attested
    failures (on any UID) lock it."""
    for n in range(LIMIT):
        at = T0 + timedelta(minutes=n)
        fail_as(db, at, uid="10000001", caller=f"+1500555002{n}", attested=False)
        fail_as(db, at, uid=f"3000000{n}", caller=PHONE, attested=False)
    now = T0 + timedelta(minutes=LIMIT)
    assert lockout(db, now).locked is True
    assert lockout(db, now, owner=True).locked is False
    assert lockout(db, now, owner=True).guessed == (LIMIT, LIMIT)  # still told: being guessed
    for n in range(LIMIT):
        fail_as(db, now + timedelta(minutes=n), uid=f"3100000{n}", caller=PHONE, attested=True)
    assert lockout(db, now + timedelta(minutes=LIMIT), owner=True).locked is True


def test_an_account_under_its_lockout_rule_is_not_said_to_be_guessed(db: Engine) -> None:
    for n in range(LIMIT - 1):
        fail(db, T0 + timedelta(minutes=n), caller=f"+1500555003{n}")
    assert lockout(db, T0 + timedelta(minutes=LIMIT)).guessed is None
    fail(db, T0 + timedelta(minutes=LIMIT), caller="anonymous")
    assert lockout(db, T0 + timedelta(minutes=LIMIT)).guessed == (LIMIT, LIMIT)


def test_the_budget_counts_unattested_failures_across_accounts_only(db: Engine) -> None:
    """Withheld or unattested failures on any UID spend it; attested ones, sign-in failures
    and ticket misses do not; nor do those from before its window."""
    budget = store.Budget(failures=3, window=timedelta(minutes=10))
    fail_as(db, T0 - timedelta(minutes=11), uid="40000000", caller=None, attested=False)
    fail_as(db, T0, uid="40000001", caller=None, attested=False)
    fail_as(db, T0, uid="40000002", caller="+15005550041", attested=False)
    for n in range(5):
        fail_as(db, T0, uid=f"4100000{n}", caller=PHONE, attested=True)
        fail(db, T0, uid=None, caller=store.ticket_misses(f"+1500555004{n}"))
    assert lockout(db, T0, uid="42000000", caller=None, budget=budget).over_budget is False
    fail_as(db, T0, uid="40000003", caller=None, attested=False)
    assert lockout(db, T0, uid="42000000", caller=None, budget=budget).over_budget is True
    assert lockout(db, T0, uid="42000000", caller=None).over_budget is False  # an attested call
    later = T0 + timedelta(minutes=10)
    assert lockout(db, later, uid="42000000", caller=None, budget=budget).over_budget is False
