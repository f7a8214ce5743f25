"""The instances serving one hotline, and whether their settings agree.

Behind a load balancer every request of a call may reach another instance, so nearly every
setting must be the same on all of them (docs/scaling.md): an instance with another
IVR_OFFER_TIMEOUT or TWILIO_AUTH_TOKEN breaks some of every caller's requests, and nothing
else would say why. Each instance writes a row every IVR_TREE_SYNC seconds (a timed job,
never a webhook): who it is, and a digest of each setting that must match (`digests`:
sha-256 of the value, cut short, PBKDF2 for a secret; a tree, prompts or migrations folder
by its files, not its path). Comparing the rows of the instances alive names the settings
that differ, never a value: the log says so as an error and the queue page shows
supervisors. Instances compare each other's rows by their own clocks: keep them in time
(NTP); one ahead by more than three tree syncs would see the others as stopped.

A row not written again for three of its instance's own IVR_TREE_SYNC is of an instance that
stopped; rows are deleted a day after that.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from ivr.db import instances
from ivr.settings import Settings
from ivr.store import writing

# docs/scaling.md's "What may differ" (tests/test_shipping.py holds them equal).
MAY_DIFFER = frozenset(
    {
        "IVR_TRUSTED_PROXIES",
        "IVR_LOG_FORMAT",
        "IVR_DB_POOL_SIZE",
        "IVR_DB_MAX_OVERFLOW",
        "IVR_HASHING_AT_ONCE",
        "IVR_WATCH_ROUTES",
        "IVR_SWEEP_INTERVAL",
        "IVR_DISPATCH_INTERVAL",
        "IVR_TREE_SYNC",
        "IVR_WEBHOOK_DEADLINE",
        "IVR_DATABASE_POOLER",
        "TWILIO_AUTH_TOKEN_NEXT",
    }
)
# Must match, but compared by being here at all: instances that read each other's rows share
# one database, whatever host name or pooler their URLs reach it by.
NOT_COMPARED = frozenset({"IVR_DATABASE_URL"})
# Compared by their files: the paths may differ, the files may not.
BY_FILES = frozenset({"IVR_ROUTES", "IVR_PROMPTS", "IVR_MIGRATIONS"})
# 64 bits: a secret of the forms Settings asks for cannot be worked back from it.
DIGEST_CHARS = 16
KEPT_AFTER_STOP = timedelta(days=1)
SECRET_ROUNDS = 200_000  # PBKDF2 rounds for a secret's digest: once per process, in a job


def _files(path: Path) -> bytes:
    """A file's bytes, or a folder's files' names and bytes (caches and hidden files aside);
    what is missing or unreadable, said as such (an instance without the file differs)."""
    if path.is_file():
        return path.read_bytes()
    if not path.is_dir():
        return b"missing"
    found = hashlib.sha256()
    for item in sorted(path.rglob("*")):
        parts = item.relative_to(path).parts
        if not item.is_file() or any(p.startswith(".") or p == "__pycache__" for p in parts):
            continue
        found.update("/".join(parts).encode() + b"\0" + item.read_bytes() + b"\0")
    return found.digest()


def digests(settings: Settings) -> dict[str, str]:
    """Each setting that must match on every instance, by its variable's name: a digest of
    its value (as `Settings` read it: "30" and "30.0" are the same number)."""
    found: dict[str, str] = {}
    for name, info in type(settings).model_fields.items():
        variable = info.validation_alias
        if not isinstance(variable, str) or variable in MAY_DIFFER | NOT_COMPARED:
            continue
        value = getattr(settings, name)
        if variable in BY_FILES:
            data = _files(Path(value))
        else:
            data = json.dumps(value, default=str, sort_keys=True).encode()
        if info.repr:
            digest = hashlib.sha256(_salt(variable) + b"\0" + data).hexdigest()
        else:
            digest = _secret_digest(variable, data)
        found[variable] = digest[:DIGEST_CHARS]
    return found


def _salt(variable: str) -> bytes:
    return b"ivr.instances:" + variable.encode()


@functools.lru_cache(maxsize=64)
def _secret_digest(variable: str, data: bytes) -> str:
    """A secret's digest (kept out of repr): a person may have chosen it, and whoever reads
    the table must not be able to try a list of words against a plain digest of it. Slow on
    purpose, so made once per value and process."""
    return hashlib.pbkdf2_hmac("sha256", data, _salt(variable), SECRET_ROUNDS).hex()


@dataclass(frozen=True)
class Me:
    """This process, as the other instances see it."""

    digests: Mapping[str, str]
    every: float  # its IVR_TREE_SYNC: how often it writes its row
    started_at: datetime
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    host: str = field(default_factory=lambda: socket.gethostname()[:255])
    pid: int = field(default_factory=os.getpid)

    @property
    def name(self) -> str:
        return f"{self.host} (pid {self.pid})"


@dataclass(frozen=True)
class Disagreement:
    """A setting another instance alive has another value of, and which ones do."""

    setting: str
    instances: tuple[str, ...]  # "host (pid N)", the others whose value is not this one's


def _alive(row: Any, now: datetime) -> bool:
    return bool(row.seen_at + timedelta(seconds=3 * row.every_seconds) >= now)


def compare(conn: Connection, *, me: Me, now: datetime) -> list[Disagreement]:
    """Write this instance's row (and forget instances stopped a day ago), then the settings
    the other instances alive set otherwise, by name, in order. One transaction."""
    with writing(conn):
        seen = conn.execute(
            update(instances)
            .where(instances.c.id == me.id)
            .values(seen_at=now, digests=dict(me.digests), every_seconds=me.every)
        ).rowcount
        if not seen:
            conn.execute(
                instances.insert().values(
                    id=me.id,
                    host=me.host,
                    pid=me.pid,
                    started_at=me.started_at,
                    seen_at=now,
                    every_seconds=me.every,
                    digests=dict(me.digests),
                )
            )
        conn.execute(delete(instances).where(instances.c.seen_at < now - KEPT_AFTER_STOP))
        others = conn.execute(
            select(
                instances.c.host,
                instances.c.pid,
                instances.c.seen_at,
                instances.c.every_seconds,
                instances.c.digests,
            ).where(instances.c.id != me.id)
        ).all()
    return differing(me.digests, [o for o in others if _alive(o, now)])


def differing(mine: Mapping[str, str], others: Sequence[Any]) -> list[Disagreement]:
    """The settings whose digest in another row (host, pid, digests) is not `mine`'s: one
    only one side has (a release that added a setting) counts, as its value may matter."""
    by_setting: dict[str, list[str]] = {}
    for other in others:
        theirs: Mapping[str, str] = other.digests or {}
        for setting in sorted(mine.keys() | theirs.keys()):
            if mine.get(setting) != theirs.get(setting):
                by_setting.setdefault(setting, []).append(f"{other.host} (pid {other.pid})")
    return [Disagreement(s, tuple(sorted(names))) for s, names in sorted(by_setting.items())]


def said(found: Sequence[Disagreement]) -> str:
    """The log's words for what differs (names only: never a value, secrets among them)."""
    return "; ".join(f"{d.setting} differs on {', '.join(d.instances)}" for d in found)
