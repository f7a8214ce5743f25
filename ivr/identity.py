"""Who a caller is, and what may be done to their account.

    IdentityProvider   check one factor a caller keyed in (True/False, never why)
     ├── LocalDirectory    accounts table: argon2 hashes, TOTP seed encrypted with IVR_SECRET_KEY
     └── HttpIdentity      the exchange's own endpoint, HMAC-signed JSON; no verdict (down,
                           an error) raises IdentityUnavailable: never verified, never counted
    AccountActions     protective actions (freeze); unfreezing is never offered by phone
     ├── LocalAccountActions   a flag in the accounts table (no row: NoSuchAccount)
     └── HttpAccountActions    the exchange's endpoint, HMAC-signed (404: NoSuchAccount)
    SignInThrottle     staff sign-in: failed tokens per client address, then 429 for a while

The digits a caller typed reach these functions and go no further: they are not returned,
stored, logged or put in an exception.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
import pyotp
from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Column, Connection, Engine, bindparam, insert, select, update

from ivr.cases import audit
from ivr.db import accounts, audit_log, verification_failures
from ivr.exceptions import ConfigError, IdentityUnavailable, NoSuchAccount
from ivr.store import writing

log = logging.getLogger("ivr.identity")

Factor = Literal["uid", "phone", "pin", "totp", "id_last4", "pin_or_id_last4"]
SECRET_FACTORS: frozenset[str] = frozenset({"pin", "totp", "id_last4", "pin_or_id_last4"})

# argon2id at OWASP's minimum profile (19 MiB, 2 passes, 1 lane): about 23 ms a check on
# the benchmark machine. argon2-cffi's default (64 MiB, 3 passes, 4 lanes) took 136 ms of
# both cores, so one 2-core instance verified at most ~10 callers a second and a wave of
# hijack victims keying their PINs stalled every other call (bench/ANALYSIS.md). A 6-digit
# secret is kept by the lockout and by the database staying private, not by the hash's cost.
# Hashes made with costlier parameters still verify, and are made again on the next match.
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verifying against this when the account does not exist keeps the time the same as for an
# account hashed with today's parameters (not for one still hashed at a costlier, older cost:
# until its next match, a wrong answer for it takes longer than for an unknown UID).
_DUMMY_HASH = HASHER.hash("not-a-real-secret")


def cores(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: those it may run on, capped by a container's CPU quota
    (as Docker's --cpus and Kubernetes' limits set it; cgroup v2 or v1)."""
    affinity = getattr(os, "sched_getaffinity", None)
    count = len(affinity(0)) if affinity else os.cpu_count() or 1
    quota = _cpu_quota(cgroup)
    return min(count, max(1, math.ceil(quota))) if quota else count


def _cpu_quota(cgroup: Path) -> float | None:
    """The CPU quota in CPUs, if one is set."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]  # v2: "max 100000"
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        v1 = cgroup / "cpu"
        quota_us = int((v1 / "cpu.cfs_quota_us").read_text())  # -1: no quota
        period_us = int((v1 / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


# Hashes a directory computes at once: all cores but one, which stays with the event loop
# that answers every other call. More at once would only share the same cores, slower.
# IVR_HASHING_AT_ONCE overrides it (several processes on one machine share its cores).
HASHING_AT_ONCE = max(1, cores() - 1)


class IdentityProvider(Protocol):
    def check(self, *, uid: str, factor: str, digits: str, now: datetime) -> bool:
        """Whether `digits` are the account's `factor`; IdentityUnavailable when it cannot
        tell. May take long (a slow hash, a service): the hotline calls it from a worker
        thread only."""
        ...

    def registered_phone(self, *, uid: str) -> str | None:
        """The account's phone number, for the agent's caller-ID signal; None if unknown.
        From data at hand only (the hotline's own database, or nothing): it may run on the
        event loop."""
        ...


class AccountActions(Protocol):
    def freeze(self, *, uid: str, now: datetime) -> bool:
        """Whether the account is frozen now (False: the service did not confirm it, an
        outage to chase); NoSuchAccount when the service says it has no such account."""
        ...


def keyed_factor(factor: str, digits: str) -> str:
    """The factor keyed digits are an answer to: a `pin_or_id_last4` step's is the PIN (6
    digits) or the ID document's last 4 (4), told by its length; any other is itself. A name
    only, for the case's record of what matched; never the digits."""
    if factor == "pin_or_id_last4":
        return {6: "pin", 4: "id_last4"}.get(len(digits), "pin")
    return factor


def _digits(value: str) -> str:
    return "".join(c for c in value if c.isdigit())


# An account's factors as an audit entry names them when they change (`LocalDirectory.add`):
# by name, never a value, with the column each is kept in.
ACCOUNT_FIELDS = {
    "pin": "pin_hash",
    "id_last4": "id_last4_hash",
    "totp": "totp_secret",
    "phone": "phone",
}
ACCOUNT_SET = "account_set"  # the audit action of an account added or replaced

# Built once: a PIN check runs these on every attempt.
_ACCOUNT = select(accounts).where(accounts.c.uid == bindparam("uid"))
_PHONE_OF = select(accounts.c.phone).where(accounts.c.uid == bindparam("uid"))
_FREEZE = (
    update(accounts)
    .where(accounts.c.uid == bindparam("account"))
    .values(frozen=1, frozen_at=bindparam("now", type_=accounts.c.frozen_at.type))
)


class LocalDirectory:
    """The built-in directory in the hotline's own database."""

    def __init__(
        self,
        db: Engine,
        secret_key: str | None,
        *,
        hasher: PasswordHasher = HASHER,
        hashing_at_once: int | None = None,
    ) -> None:
        self.db = db
        self.fernet = Fernet(secret_key.encode()) if secret_key else None
        self.hasher = hasher
        self.hashing_at_once = hashing_at_once or HASHING_AT_ONCE
        self._hashing = threading.BoundedSemaphore(self.hashing_at_once)

    def add(
        self,
        *,
        uid: str,
        pin: str | None,
        id_last4: str | None,
        phone: str | None,
        totp_secret: str | None,
        now: datetime,
        actor: str | None = None,
        via: str | None = None,
    ) -> list[str]:
        """Create or replace an account; secrets are hashed or encrypted before they are stored.
        The factors that changed, by name (`ACCOUNT_FIELDS`; every one given, for a new
        account): audited as `actor`'s (`ACCOUNT_SET`; `via`, what did it, in the reason) in
        the same transaction, by name only, never a value; nothing changed, nothing audited.
        `actor` None: not audited (tests' and drafts' made-up accounts only)."""
        if pin is not None and not (pin.isdigit() and len(pin) == 6):
            raise ValueError("the phone PIN is 6 digits")
        if id_last4 is not None and not (id_last4.isdigit() and len(id_last4) == 4):
            raise ValueError("the ID document's last 4 are 4 digits")
        if totp_secret:
            if self.fernet is None:
                raise ConfigError("IVR_SECRET_KEY is not set: it encrypts TOTP secrets at rest")
            pyotp.TOTP(totp_secret).now()  # refuses a seed that is not base32
        # Hashed and sealed before the write (slow: not with the database's writer held). A
        # secret that is the stored one keeps its stored hash or seal (each made anew would
        # differ): what the write finds different then is what changed.
        with self.db.connect() as conn:
            before = conn.execute(_ACCOUNT, {"uid": uid}).first()
        row = {
            "phone": phone,
            "pin_hash": self._hashed(before.pin_hash if before else None, pin),
            "id_last4_hash": self._hashed(before.id_last4_hash if before else None, id_last4),
            "totp_secret": self._sealed(before.totp_secret if before else None, totp_secret),
            "totp_last_step": None,
        }
        with self.db.connect() as conn, writing(conn):
            stored = conn.execute(_ACCOUNT, {"uid": uid}).first()
            if stored is not None:
                # A freeze outlives new secrets (a victim's new PIN, a nightly import): only
                # `unfreeze`, audited, lifts it.
                conn.execute(update(accounts).where(accounts.c.uid == uid).values(**row))
                changed = [
                    name
                    for name, column in ACCOUNT_FIELDS.items()
                    if stored._mapping[column] != row[column]
                ]
            else:
                conn.execute(
                    insert(accounts).values(
                        uid=uid, created_at=now, frozen=0, frozen_at=None, **row
                    )
                )
                changed = [name for name, column in ACCOUNT_FIELDS.items() if row[column]]
            if actor is not None and (changed or stored is None):
                said = f"{', '.join(changed) or 'nothing'} {'changed' if stored else 'set'}"
                audit(
                    conn,
                    actor=actor,
                    action=ACCOUNT_SET,
                    uid=uid,
                    case_id=None,
                    reason=f"{'' if stored else 'new account: '}{said}"
                    + (f" ({via})" if via else ""),
                    result="ok",
                    now=now,
                )
        return changed

    def _hashed(self, stored: str | None, secret: str | None) -> str | None:
        if not secret:
            return None
        if stored and self._verify(stored, secret):
            return stored
        return self.hasher.hash(secret)

    def _sealed(self, stored: str | None, seed: str | None) -> str | None:
        if not seed:
            return None
        assert self.fernet is not None  # `add` checked
        if stored:
            try:
                if hmac.compare_digest(self.fernet.decrypt(stored.encode()), seed.encode()):
                    return stored
            except InvalidToken:  # sealed with another key: sealed anew with this one
                pass
        return self.fernet.encrypt(seed.encode()).decode()

    def unfreeze(self, *, uid: str, actor: str, reason: str, now: datetime) -> bool:
        """Lift a freeze (the owner proved who they are, by the exchange's own process), with
        its audit record in the same transaction. False if the account is not frozen."""
        with self.db.connect() as conn, writing(conn):
            lifted = conn.execute(
                update(accounts)
                .where(accounts.c.uid == uid, accounts.c.frozen == 1)
                .values(frozen=0, frozen_at=None)
            ).rowcount
            if lifted != 1:
                return False
            audit(
                conn,
                actor=actor,
                action="unfreeze",
                uid=uid,
                case_id=None,
                reason=reason,
                result="ok",
                now=now,
            )
        return True

    def registered_phone(self, *, uid: str) -> str | None:
        with self.db.connect() as conn:
            phone = conn.execute(_PHONE_OF, {"uid": uid}).scalar()
        return phone

    def check(self, *, uid: str, factor: str, digits: str, now: datetime) -> bool:
        with self.db.connect() as conn:
            row = conn.execute(_ACCOUNT, {"uid": uid}).first()
        factor = keyed_factor(factor, digits)
        if factor in ("pin", "id_last4"):
            column = accounts.c.pin_hash if factor == "pin" else accounts.c.id_last4_hash
            stored: str | None = row._mapping[column] if row else None
            matched = self._verify(stored, digits)
            if matched and stored and self._costlier(stored):
                self._rehash(uid, column, stored, digits)
            return matched
        if factor == "phone":
            registered = _digits(row.phone or "") if row else ""
            return bool(registered) and hmac.compare_digest(registered, _digits(digits))
        if factor == "totp":
            return row is not None and self._check_totp(
                uid, row.totp_secret, row.totp_last_step, digits, now
            )
        return False

    def _verify(self, stored: str | None, digits: str) -> bool:
        try:
            with self._hashing:
                return self.hasher.verify(stored or _DUMMY_HASH, digits) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    def _costlier(self, stored: str) -> bool:
        """Whether checking `stored` costs more than a hash of today's parameters (one made
        with argon2-cffi's default, say). Cheaper ones are left as they are: only tests and
        the benchmark's cheap accounts make them, and they must stay cheap."""
        try:
            made = extract_parameters(stored)
        except InvalidHashError:
            return False
        today = self.hasher.time_cost * self.hasher.memory_cost
        return made.time_cost * made.memory_cost > today

    def _rehash(self, uid: str, column: Column[Any], stored: str, digits: str) -> None:
        """A matched secret hashed at a higher cost, hashed again with today's parameters:
        checking it costs what `hasher` costs from now on. Best effort: the caller is
        verified whatever happens here."""
        try:
            with self._hashing:
                fresh = self.hasher.hash(digits)
            with self.db.connect() as conn, writing(conn):
                # Only if unchanged meanwhile: a secret set again since is not overwritten.
                conn.execute(
                    update(accounts)
                    .where(accounts.c.uid == uid, column == stored)
                    .values({column: fresh})
                )
        except Exception:
            log.exception("could not store a fresher hash of an account's secret")

    def _check_totp(
        self, uid: str, sealed: str | None, last_step: int | None, digits: str, now: datetime
    ) -> bool:
        if not sealed or self.fernet is None or len(digits) != 6:
            return False
        try:
            totp = pyotp.TOTP(self.fernet.decrypt(sealed.encode()).decode())
        except InvalidToken:
            log.error("TOTP secret for an account cannot be decrypted with IVR_SECRET_KEY")
            return False
        current = totp.timecode(now)
        for step in (current - 1, current, current + 1):  # one 30 s step either way
            if hmac.compare_digest(totp.generate_otp(step), digits):
                if last_step is not None and step <= last_step:
                    return False  # this code (or an earlier one) was used already
                with self.db.connect() as conn, writing(conn):
                    # Only if nobody used this step meanwhile: the no-reuse rule across instances.
                    used = conn.execute(
                        update(accounts)
                        .where(
                            accounts.c.uid == uid,
                            (accounts.c.totp_last_step.is_(None))
                            | (accounts.c.totp_last_step < step),
                        )
                        .values(totp_last_step=step)
                    ).rowcount
                return used == 1
        return False


class LocalAccountActions:
    def __init__(self, db: Engine) -> None:
        self.db = db

    def freeze(self, *, uid: str, now: datetime) -> bool:
        with self.db.connect() as conn:
            return self.freeze_in(conn, uid=uid, now=now)

    @staticmethod
    def freeze_in(conn: Connection, *, uid: str, now: datetime) -> bool:
        """The freeze on `conn`, joining a transaction open there (a verified call's step)."""
        with writing(conn):
            changed = conn.execute(_FREEZE, {"account": uid, "now": now}).rowcount
        if changed == 0:  # the update finds the row frozen or not: none is no account
            raise NoSuchAccount(uid)
        return changed == 1


def signed_json(key: str, payload: dict[str, object]) -> tuple[bytes, dict[str, str]]:
    """A JSON body and the headers that let the receiver check it came from us, recently."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    stamp = str(int(time.time()))
    mac = hmac.new(key.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return body, {
        "content-type": "application/json",
        "x-ivr-timestamp": stamp,
        "x-ivr-signature": f"sha256={mac}",
    }


# 4xx answers that say nothing about the caller's answer: our key refused, a timeout, a limit.
NO_VERDICT = frozenset({401, 403, 408, 429})


class HttpIdentity:
    """The exchange's identity endpoint: POST {url}/verify {uid, factor, value} -> {"ok": bool}.

    Any error, timeout or unexpected answer counts as not verified (fail closed); the
    emergency path still opens the case, flagged unverified.
    """

    def __init__(self, url: str, key: str, client: httpx.Client) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.client = client

    def check(self, *, uid: str, factor: str, digits: str, now: datetime) -> bool:
        body, headers = signed_json(self.key, {"uid": uid, "factor": factor, "value": digits})
        try:
            response = self.client.post(f"{self.url}/verify", content=body, headers=headers)
            if response.status_code == 200:
                ok = response.json().get("ok")
                if isinstance(ok, bool):
                    return ok
        except (httpx.HTTPError, ValueError, AttributeError):
            pass
        else:
            # Refused, as about the caller's answer (an unknown account, malformed digits): a
            # wrong answer. Not so our own credentials refused, a timeout or a rate limit.
            if 400 <= response.status_code < 500 and response.status_code not in NO_VERDICT:
                return False
        # No verdict (down, slow, an error, an answer without `ok`): the caller is neither
        # verified nor counted as wrong, or an outage would lock out every victim who called.
        log.warning("identity endpoint gave no verdict for a %s check", factor)
        raise IdentityUnavailable(factor)

    def registered_phone(self, *, uid: str) -> str | None:
        return None  # the exchange's endpoint does the caller-ID comparison itself, if at all


class HttpAccountActions:
    """POST {url}/freeze {uid} -> 2xx when the exchange froze the account, 404 when it has no
    account of that UID (NoSuchAccount). Any other answer is a freeze not confirmed: a 422 or
    a 400 too, which say our request was refused, not that the account does not exist (were
    they "no such account", a changed contract would hide every failed freeze from the
    supervisors' list of open ones)."""

    def __init__(self, url: str, key: str, client: httpx.Client) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.client = client

    def freeze(self, *, uid: str, now: datetime) -> bool:
        body, headers = signed_json(self.key, {"uid": uid, "action": "freeze"})
        try:
            response = self.client.post(f"{self.url}/freeze", content=body, headers=headers)
        except httpx.HTTPError:
            log.warning("freeze endpoint failed")
            return False
        if response.status_code == 404:
            raise NoSuchAccount(uid)
        return response.is_success


# -- staff sign-in ------------------------------------------------------------------------------

SIGN_IN_FAILURES = 10
SIGN_IN_WINDOW = timedelta(minutes=5)
# The audit action of wrong staff tokens (`SignInThrottle.failed`), and how its reason names
# the users whose expired tokens were among them.
SIGN_IN_FAILED = "sign_in_failed"
EXPIRED_SAID = "; expired: "


def _network_of(client: str) -> str:
    """Whose guesses count together: an IPv4 address, or an IPv6 address's /64. One IPv6
    subscriber holds a whole /64 (2^64 addresses): counted per address, they could guess
    without end."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client  # not an address (a test client's name): counted as it is
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass(frozen=True)
class SignInThrottle:
    """Failed staff sign-ins (a dashboard token, a JSON API bearer token) per client address.

    `failures` wrong tokens within `window` block the address for `window` after the last of
    them: every wrong token from it then gets 429 with Retry-After; a right token still passes
    (`ivr.deps.staff_user` says why). Successful sign-ins are not counted and reset nothing.
    The failures are rows of the verification_failures table (no UID, the `caller` column
    holding `auth:` and a digest of the address, never the address), so the limit holds
    across instances and restarts; the verification lockout never matches
    them, since no caller number starts with `auth:`.
    """

    db: Engine
    failures: int = SIGN_IN_FAILURES
    window: timedelta = SIGN_IN_WINDOW
    # The key of the addresses' digests (the hotline's auth token: a secret every instance
    # has): an unkeyed digest of an IPv4 address is undone by trying all 2^32 of them, and
    # the failed sign-ins' audit entries name the digest for good.
    pepper: str = field(default="", repr=False)

    def key(self, client: str) -> str:
        network = _network_of(client).encode("utf-8", "replace")
        digest = hmac.new(self.pepper.encode(), network, hashlib.sha256).hexdigest()
        return "auth:" + digest[:27]  # fits the caller column (32)

    def retry_after(self, client: str, now: datetime) -> int | None:
        """Seconds until `client` may try again, or None if it may now."""
        f = verification_failures.c
        with self.db.connect() as conn, conn.begin():
            times = (
                conn.execute(
                    select(f.at)
                    .where(
                        f.caller == self.key(client),
                        f.uid.is_(None),
                        f.at > now - 2 * self.window,
                    )
                    .order_by(f.at.desc())
                    .limit(500)
                )
                .scalars()
                .all()
            )
        # Every run of `failures` within the window blocks until `window` after its newest.
        until = max(
            (
                newest + self.window
                for newest, oldest in zip(times, times[self.failures - 1 :], strict=False)
                if newest - oldest <= self.window
            ),
            default=None,
        )
        if until is None or until <= now:
            return None
        wait: float = (until - now).total_seconds()
        return max(1, math.ceil(wait))

    def source(self, client: str) -> str:
        """`client` as a failed sign-in's audit entry names it (`client:` and the keyed digest
        of its network the failures are counted under): never the address itself, which the
        warning logged with it says."""
        return "client:" + self.key(client).removeprefix("auth:")

    def failed(self, client: str, where: str, now: datetime, *, expired: str | None = None) -> None:
        """Count one wrong token from `client` at `where` (dashboard, api); `expired`: the
        token was the expired one of this `role:name`. Audited as `SIGN_IN_FAILED` by the
        client's `source`, one entry per source and minute: its reason counts the minute's
        failures (from the rows counted here) and names the users whose expired tokens were
        tried. A failure is counted only while the address is not blocked, so a burst from
        one address writes at most `failures` of them a `window`, in a few entries; the
        attempts refused while blocked are the metrics' alone."""
        key, source = self.key(client), self.source(client)
        minute = now.replace(second=0, microsecond=0)
        in_minute = (minute, minute + timedelta(minutes=1))
        f, a = verification_failures.c, audit_log.c
        with self.db.connect() as conn, writing(conn):
            conn.execute(
                insert(verification_failures).values(
                    uid=None, caller=key, call_sid=f"sign-in:{where}"[:64], at=now
                )
            )
            tried = (
                conn.execute(
                    select(f.call_sid).where(
                        f.caller == key, f.uid.is_(None), f.at >= in_minute[0], f.at < in_minute[1]
                    )
                )
                .scalars()
                .all()
            )
            entry = conn.execute(
                select(a.id, a.reason)
                .where(
                    a.action == SIGN_IN_FAILED,
                    a.at >= in_minute[0],
                    a.at < in_minute[1],
                    a.actor == source,
                )
                .order_by(a.id)
                .limit(1)
            ).first()
            before = (entry.reason if entry is not None else None) or ""
            named = set(before.partition(EXPIRED_SAID)[2].split(", ")) - {""}
            if expired:
                named.add(expired)
            wheres = sorted({t.removeprefix("sign-in:") for t in tried} | {where})
            reason = f"{len(tried)} wrong or expired token(s) this minute ({', '.join(wheres)})" + (
                f"{EXPIRED_SAID}{', '.join(sorted(named))}" if named else ""
            )
            if entry is None:
                audit(
                    conn,
                    actor=source,
                    action=SIGN_IN_FAILED,
                    uid=None,
                    case_id=None,
                    reason=reason,
                    result="refused",
                    now=now,
                )
            else:
                conn.execute(update(audit_log).where(a.id == entry.id).values(reason=reason))
