"""The call log at scale: how long a supervisor waits for a page of `/api/calls`.

A fresh database gets `calls` calls, one a second back from now, and 1.2 cases per call
(some calls reached two queues), tickets and account UIDs spread over them; then each
filter below lists its first page (50 calls) `repeats` times, in-process (`list_calls`, the
query every call-log route runs). The rows are written with one INSERT ... SELECT on
PostgreSQL (then ANALYZE, as its autovacuum would) and executemany on SQLite (not analysed:
the hotline never runs ANALYZE there): what is timed is the reads.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

from bench import server
from ivr.calllog import CallFilter, list_calls
from ivr.db import calls, cases, create_db_engine

FILTERS = {
    "newest first": CallFilter(),
    "outcome agent": CallFilter(outcome="agent"),
    "ticket": CallFilter(ticket="1000777"),
    "account": CallFilter(account="10000777"),
    "caller (last 4)": CallFilter(caller="0777"),
}
CASES_PER_CALL = 1.2


def _sid(n: int) -> str:
    return "CA" + str(n).rjust(32, "0")


def _fill(url: str, count: int) -> None:
    engine = create_db_engine(url)
    many = int(count * CASES_PER_CALL)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(
                text(
                    "INSERT INTO calls (call_sid, from_number, tree_version, step, state, "
                    "last_twiml, status, started_at, updated_at) "
                    "SELECT 'CA' || lpad(g::text, 32, '0'), "
                    "'+1500555' || lpad((g % 10000)::text, 4, '0'), 'v1', 1, "
                    "'{\"facts\": {}}', '<Response/>', 'completed', "
                    "now() - (g || ' seconds')::interval, now() FROM generate_series(1, :n) g"
                ),
                {"n": count},
            )
            conn.execute(
                text(
                    "INSERT INTO cases (ticket, call_sid, reason, queue, priority, lane, "
                    "sort_at, queued, status, flags, path, created_at, account_uid) "
                    "SELECT (1000000 + g)::text, 'CA' || lpad((1 + g % :n)::text, 32, '0'), "
                    "'r', 'general', 'normal', 1, now(), 0, 'resolved', '{}', '[]', now(), "
                    "(10000000 + g % 50000)::text FROM generate_series(1, :m) g"
                ),
                {"n": count, "m": many},
            )
            conn.execute(text("ANALYZE"))
        else:
            now = datetime.now(UTC)
            conn.execute(
                insert(calls),
                [
                    {
                        "call_sid": _sid(g),
                        "from_number": f"+1500555{g % 10000:04d}",
                        "tree_version": "v1",
                        "step": 1,
                        "state": {"facts": {}},
                        "last_twiml": "<Response/>",
                        "status": "completed",
                        "started_at": now - timedelta(seconds=g),
                        "updated_at": now,
                    }
                    for g in range(1, count + 1)
                ],
            )
            conn.execute(
                insert(cases),
                [
                    {
                        "ticket": str(1_000_000 + g),
                        "call_sid": _sid(1 + g % count),
                        "reason": "r",
                        "queue": "general",
                        "priority": "normal",
                        "lane": 1,
                        "sort_at": now,
                        "queued": 0,
                        "status": "resolved",
                        "flags": {},
                        "path": [],
                        "created_at": now,
                        "account_uid": str(10_000_000 + g % 50_000),
                    }
                    for g in range(1, many + 1)
                ],
            )
    engine.dispose()


LATE_PAGE = 40  # newest first, the cursor followed there: a supervisor scrolling back


def run(db: str, workdir: Path, *, count: int, repeats: int = 7) -> dict[str, Any]:
    """Each filter's first page, and the LATE_PAGE-th unfiltered: median and slowest of
    `repeats`, in ms."""
    with server.fresh_database(db, workdir) as url:
        _fill(url, count)
        engine = create_db_engine(url)
        timed: dict[str, Any] = {}
        with engine.connect() as conn:
            for name, filters in FILTERS.items():
                ms = []
                for _ in range(repeats):
                    started = time.perf_counter()
                    rows, _ = list_calls(conn, filters=filters, limit=50)
                    ms.append((time.perf_counter() - started) * 1000)
                timed[name] = _summary(ms, len(rows))
            cursor = None
            for _ in range(LATE_PAGE - 1):
                _, cursor = list_calls(conn, filters=CallFilter(), limit=50, cursor=cursor)
            ms = []
            for _ in range(repeats):
                started = time.perf_counter()
                rows, _ = list_calls(conn, filters=CallFilter(), limit=50, cursor=cursor)
                ms.append((time.perf_counter() - started) * 1000)
            timed[f"newest first, page {LATE_PAGE}"] = _summary(ms, len(rows))
        engine.dispose()
    return {"db": db, "calls": count, "cases": int(count * CASES_PER_CALL), "pages": timed}


def _summary(ms: list[float], rows: int) -> dict[str, Any]:
    return {"median_ms": round(statistics.median(ms), 2), "max_ms": round(max(ms), 2), "rows": rows}
