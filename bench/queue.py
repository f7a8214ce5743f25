"""The queue at scale: 10,000 callers waiting at once.

Cases are seeded through the persistence functions (`cases.open_case`, the insert the hotline
runs), a mix of emergency, high and normal priority arriving over two hours. Against the real
server, the hold loop is polled for a sample of callers and every announced place in line is
compared with the caller's index in the serving order (`cases.waiting_cases`). Then an agent
claims cases with `cases.claim_next` (the claim POST /api/agents/next makes, after looking up
the case the agent may have already), each claim timed, while the hold loop serves other
waiting callers: first at the pace the waiting callers make it (each a round every
`round_seconds`), then flat out (each connection sends its next round the moment the last is
answered), which finds how many rounds the server gives and what a claim waits behind them.
The places are checked again after the claims.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import re
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import text
from twilio.request_validator import RequestValidator

from bench import load, server
from ivr import cases
from ivr.db import create_db_engine
from ivr.engine import OpenCase

PLACE = re.compile(r"number (\d+) in line")
# How often a waiting caller's hold round comes, at the most: the place in line, a tip and
# the call-back offer take about 20 s to speak, then the hold music plays (minutes), or a
# 20 s pause without it. No round is shorter than 30 s.
ROUND_SECONDS = 30.0


def seed(url: str, size: int, rng: random.Random) -> list[str]:
    """`size` waiting cases, as the hotline opens them; their CallSids."""
    engine = create_db_engine(url)
    now = datetime.now(UTC)
    sids = []
    try:
        with engine.connect() as conn, conn.begin():
            for n in range(size):
                draw = rng.random()
                priority = "emergency" if draw < 0.05 else "high" if draw < 0.3 else "normal"
                sid = f"CA{n:032x}"
                spec = OpenCase(
                    ticket=str(1_000_000 + n),
                    queue="security" if priority == "emergency" else "general",
                    priority=priority,
                    reason="account_hijack" if priority == "emergency" else "deposits",
                    flags={"verified": "yes"} if priority == "emergency" else {},
                    path=["main_menu"],
                )
                arrived = now - timedelta(seconds=rng.uniform(0, 7200))
                conn.execute(
                    cases.open_case(
                        spec, call_sid=sid, caller=f"+1555{n:07d}", risk={}, now=arrived
                    )
                )
                sids.append(sid)
        if engine.dialect.name == "postgresql":
            # What autovacuum does after this many inserts anyway.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE cases"))
    finally:
        engine.dispose()
    return sids


def serving_order(url: str) -> dict[str, int]:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            rows = cases.waiting_cases(conn, limit=1_000_000)
    finally:
        engine.dispose()
    return {row["call_sid"]: i + 1 for i, row in enumerate(rows)}


async def _poll(
    session: aiohttp.ClientSession, base: str, validator: RequestValidator, sid: str
) -> tuple[int | None, float]:
    url = f"{server.PUBLIC_URL}/twilio/wait?lang=en&queue=general"
    form = {
        "AccountSid": load.ACCOUNT_SID,
        "CallSid": sid,
        "QueueTime": "60",
        "From": "+15550000000",
    }
    signature = validator.compute_signature(url, form)
    started = time.perf_counter()
    async with session.post(
        base + "/twilio/wait?lang=en&queue=general",
        data=form,
        headers={"X-Twilio-Signature": signature},
    ) as response:
        body = await response.text()
        if response.status != 200:
            raise RuntimeError(f"hold loop answered {response.status}")
    found = PLACE.search(body)
    return (int(found.group(1)) if found else None), time.perf_counter() - started


async def check_places(
    base: str, order: dict[str, int], sample: list[str], concurrency: int
) -> dict[str, Any]:
    """Poll the hold loop for each sampled caller; compare what they hear with the order."""
    validator = RequestValidator(server.AUTH_TOKEN)
    wrong: list[tuple[str, int, int | None]] = []
    latencies: list[float] = []
    queue: asyncio.Queue[str] = asyncio.Queue()
    for sid in sample:
        queue.put_nowait(sid)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            while not queue.empty():
                sid = queue.get_nowait()
                place, seconds = await _poll(session, base, validator, sid)
                latencies.append(seconds)
                if place != order[sid]:
                    wrong.append((sid, order[sid], place))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    ms = [v * 1000 for v in latencies]
    return {
        "checked": len(sample),
        "wrong": len(wrong),
        "examples_wrong": wrong[:5],
        "hold_poll_ms": {
            q: round(load.percentile(ms, p), 2) for q, p in (("p50", 50), ("p99", 99))
        },
    }


async def hold_load(
    base: str, sids: list[str], seconds: float, concurrency: int, rate: float | None = None
) -> dict[str, Any]:
    """Hold-loop rounds for random waiting callers, `concurrency` at a time, for `seconds`:
    back to back (closed loop), or with `rate` on a fixed schedule, `rate` rounds a second
    in all, each round's time counted from when it was due."""
    validator = RequestValidator(server.AUTH_TOKEN)
    latencies: list[float] = []
    start = time.perf_counter()
    deadline = start + seconds
    rng = random.Random(7)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker(n: int) -> None:
            pacer = load.Pacer(concurrency / rate, start + n / rate) if rate else None
            while time.perf_counter() < deadline:
                due = await pacer.slot() if pacer else time.perf_counter()
                _, took = await _poll(session, base, validator, rng.choice(sids))
                latencies.append(took if pacer is None else time.perf_counter() - due)

        await asyncio.gather(*(worker(n) for n in range(concurrency)))
    ms = [v * 1000 for v in latencies]
    return {
        "rounds": len(ms),
        "rounds_per_second": round(len(ms) / seconds, 1),
        "p50_ms": round(load.percentile(ms, 50), 2),
        "p99_ms": round(load.percentile(ms, 99), 2),
    }


def claim_many(url: str, count: int) -> dict[str, Any]:
    """`count` claims, one after another, as agents pressing "next" would, each timed."""
    engine = create_db_engine(url)
    timings: list[float] = []
    try:
        with engine.connect() as conn:
            agent = conn.execute(text("SELECT id FROM users WHERE name = 'bench-agent'")).scalar()
            conn.rollback()
            if agent is None:
                cases.create_user(
                    conn, name="bench-agent", role="agent", phone=None, now=datetime.now(UTC)
                )
                agent = conn.execute(
                    text("SELECT id FROM users WHERE name = 'bench-agent'")
                ).scalar_one()
            conn.rollback()
            for _ in range(count):
                started = time.perf_counter()
                claimed = cases.claim_next(conn, agent_id=agent, now=datetime.now(UTC))
                timings.append(time.perf_counter() - started)
                if claimed is None:
                    raise RuntimeError("the queue ran dry")
    finally:
        engine.dispose()
    ms = [v * 1000 for v in timings]
    return {
        "claims": count,
        "p50_ms": round(load.percentile(ms, 50), 3),
        "p95_ms": round(load.percentile(ms, 95), 3),
        "p99_ms": round(load.percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3),
    }


def _ready() -> None:
    """Nothing: run in the agent's process, it has imported this module once it returns."""


def _claims_under_hold_load(
    url: str,
    base: str,
    sids: list[str],
    claims: int,
    concurrency: int,
    seconds: float,
    *,
    rate: float | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`claims` claims while the hold loop serves other callers, closed loop or at `rate`."""
    # The agent claims from a process of its own, as the API's worker does: in a thread
    # here, each claim would also wait for this process's GIL, which the load generator holds.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as agent:
        # Started and its imports done before the clock starts: a new process importing
        # SQLAlchemy takes a core for a second, which no agent's request pays.
        agent.submit(_ready).result()
        claiming = agent.submit(claim_many, url, claims)
        polling = asyncio.run(hold_load(base, sids, seconds, concurrency, rate))
        claimed = claiming.result()
    return claimed, polling


def run(
    db: str,
    workdir: Path,
    *,
    size: int,
    claims: int,
    sample: int,
    concurrency: int,
    round_seconds: float = ROUND_SECONDS,
    hold_seconds: float = 10,
) -> dict[str, Any]:
    rng = random.Random(2026)
    pace = round(size / round_seconds, 1)
    with server.fresh_database(db, workdir) as url:
        started = time.perf_counter()
        sids = seed(url, size, rng)
        seeded_in = time.perf_counter() - started
        with server.hotline(url, workdir) as srv:
            order = serving_order(url)
            assert len(order) == size
            picks = rng.sample(sids, sample)
            before = asyncio.run(check_places(srv.url, order, picks, concurrency))
            # First at the pace `size` callers make (a round each every `round_seconds`),
            # then flat out: as many rounds as the server answers, back to back.
            claimed, polling = _claims_under_hold_load(
                url, srv.url, sids[: size // 2], claims, concurrency, hold_seconds, rate=pace
            )
            claimed_flat_out, polling_flat_out = _claims_under_hold_load(
                url, srv.url, sids[: size // 2], claims, concurrency, hold_seconds, rate=None
            )
            order = serving_order(url)
            waiting = [sid for sid in sids if sid in order]
            after = asyncio.run(
                check_places(srv.url, order, rng.sample(waiting, sample), concurrency)
            )
            memory = srv.rss_mb()
    result = {
        "database": db,
        "waiting": size,
        "seeded_seconds": round(seeded_in, 1),
        "round_seconds": round_seconds,
        "paced_rounds_per_second": pace,
        "places_before_claims": before,
        "hold_loop_under_claims": polling,
        "claim_next": claimed,
        "hold_loop_flat_out": polling_flat_out,
        "claim_next_flat_out": claimed_flat_out,
        "places_after_claims": after,
        **memory,
    }
    print(
        f"queue ({db}): {size} waiting; at {pace} hold rounds/s: claim p50 {claimed['p50_ms']} "
        f"p99 {claimed['p99_ms']} ms, hold round p99 {polling['p99_ms']} ms; flat out "
        f"({polling_flat_out['rounds_per_second']} rounds/s): claim p99 "
        f"{claimed_flat_out['p99_ms']} ms, hold round p99 {polling_flat_out['p99_ms']} ms; "
        f"places wrong {before['wrong']}/{before['checked']} before, "
        f"{after['wrong']}/{after['checked']} after",
        flush=True,
    )
    return result
