"""Servers under test as subprocesses, and the databases they run on.

`ivr serve` runs exactly as in production (one uvicorn worker, schema upgrade at start, JSON
logs to stderr, here to a file); its working directory is empty, so no .env is read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from argon2 import PasswordHasher
from sqlalchemy import create_engine, insert, text

from ivr.db import accounts, create_db_engine, upgrade
from ivr.identity import HASHER

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
AUTH_TOKEN = "b3ac4b3ac4b3ac4b3ac4b3ac4b3ac400"
PUBLIC_URL = "https://hotline.bench.test"
PG_ADMIN_URL = os.environ.get(
    "IVR_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def rss_mb(self) -> dict[str, float]:
        """Resident memory now and at its peak (VmRSS, VmHWM), in MiB."""
        found: dict[str, float] = {}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    found[name] = round(int(value.split()[0]) / 1024, 1)
        return {"rss_mb": found.get("VmRSS", 0.0), "peak_rss_mb": found.get("VmHWM", 0.0)}


@contextlib.contextmanager
def running(command: list[str], env: dict[str, str], workdir: Path, name: str) -> Iterator[Server]:
    port = free_port()
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env={**os.environ, **env},
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited at start:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start in 60 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield server
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def hotline_env(database_url: str) -> dict[str, str]:
    return {
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "IVR_PUBLIC_URL": PUBLIC_URL,
        "IVR_DATABASE_URL": database_url,
        "IVR_LOG_FORMAT": "json",
    }


def hotline(database_url: str, workdir: Path, command: list[str] | None = None) -> Any:
    """`ivr serve` on `database_url` (or `command`, e.g. the profiled server)."""
    return running(
        command or [str(BIN / "ivr"), "serve", "--host", "127.0.0.1"],
        {**hotline_env(database_url), "PYTHONPATH": str(ROOT)},
        workdir,
        "hotline",
    )


def ceiling(steps: int, workdir: Path) -> Any:
    return running(
        [sys.executable, "-m", "bench.ceiling", "--steps", str(steps), "--public-url", PUBLIC_URL],
        {"PYTHONPATH": str(ROOT)},
        workdir,
        "ceiling",
    )


@contextlib.contextmanager
def fresh_database(kind: str, workdir: Path) -> Iterator[str]:
    """A new, migrated database of `kind` (sqlite or postgresql), dropped afterwards."""
    if kind == "sqlite":
        url = f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:8]}.sqlite3'}"
        upgrade(url)
        yield url
        return
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"ivr_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# argon2 with a small cost: the same verify code path as production, without spending the
# run on the deliberately slow hash. `--hashes production` seeds what `ivr accounts add` stores.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
HASHERS = {"cheap": CHEAP_HASHER, "production": HASHER}


def seed_accounts(
    database_url: str, count: int, *, hasher: PasswordHasher = CHEAP_HASHER
) -> list[tuple[str, str]]:
    """Demo accounts (uid, pin) for the journeys; PIN and ID digits stored as argon2 hashes."""
    now = datetime.now(UTC)
    made = [(str(20_000_001 + i), f"{(i * 7919) % 1_000_000:06d}") for i in range(count)]
    engine = create_db_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(accounts),
                [
                    {
                        "uid": uid,
                        "phone": f"+1555{i:07d}",
                        "pin_hash": hasher.hash(pin),
                        "id_last4_hash": hasher.hash(pin[-4:]),
                        "frozen": 0,
                        "created_at": now,
                    }
                    for i, (uid, pin) in enumerate(made)
                ],
            )
    finally:
        engine.dispose()
    return made


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ivr-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
