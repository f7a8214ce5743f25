"""python -m bench: the webhook load test against the ceiling, and the queue at scale.

    python -m bench                       # everything, both databases, results to bench/results
    python -m bench load --db sqlite      # one part, one database
    python -m bench profile --db sqlite   # pyinstrument of the server under load (HTML)
    python -m bench instructions          # CPU instructions per call, SQLite (needs valgrind)
    python -m bench calllog --calls 200000  # a page of the call log with that many calls

Load: `--concurrency` simulated calls at once (32) for `--seconds` after `--warmup`, against
`ivr serve` (one worker) on a fresh SQLite file and a fresh PostgreSQL database, then against
the ceiling app (bench/ceiling.py) with the same journeys. Those runs are closed loop: they
find the most each server gives. Then each database again, paced at `--rate` requests per
second (default: half of what that server gave flat out), for the latency a caller sees when
the server is busy but not overrun.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import calllog, instructions, load, queue, server

RESULTS = Path(__file__).resolve().parent / "results"
DATABASES = ("sqlite", "postgresql")


def journeys(accounts: list[tuple[str, str]], hold_polls: int) -> list[load.Journey]:
    return [load.demo_journey(uid, pin, hold_polls) for uid, pin in accounts]


def load_once(
    target: str,
    args: argparse.Namespace,
    workdir: Path,
    db: str | None = None,
    rate: float | None = None,
) -> dict[str, Any]:
    """One load run against the hotline on `db`, or against the ceiling."""
    seeded = [(str(20_000_001 + i), "000000") for i in range(args.accounts)]
    if target == "ceiling":
        steps = len(load.demo_journey("1", "1").answers())
        with server.ceiling(steps, workdir) as srv:
            stats = _drive(srv, journeys(seeded, args.hold_polls), args, rate)
            memory = srv.rss_mb()
    else:
        assert db is not None
        with server.fresh_database(db, workdir) as url:
            seeded = server.seed_accounts(url, args.accounts, hasher=server.HASHERS[args.hashes])
            with server.hotline(url, workdir) as srv:
                stats = _drive(srv, journeys(seeded, args.hold_polls), args, rate)
                memory = srv.rss_mb()
    result = {
        "target": target,
        "database": db,
        "paced_rate": rate,
        **load.summarise(stats),
        **memory,
        # Other work on the machine shares its CPUs with the server and the generator.
        "loadavg_1min_after": round(os.getloadavg()[0], 2),
    }
    _print_run(result)
    return result


def _drive(
    srv: server.Server,
    calls: list[load.Journey],
    args: argparse.Namespace,
    rate: float | None = None,
) -> load.Stats:
    return load.run(
        server_url=srv.url,
        server_pid=srv.process.pid,
        public_url=server.PUBLIC_URL,
        auth_token=server.AUTH_TOKEN,
        journeys=calls,
        concurrency=args.concurrency,
        seconds=args.seconds,
        warmup=args.warmup,
        rate=rate,
    )


def _print_run(r: dict[str, Any]) -> None:
    name = r["target"] + (f" ({r['database']})" if r["database"] else "")
    if r.get("paced_rate"):
        name += f" at {r['paced_rate']:g}/s"
    lat = r["latency_ms"]
    print(
        f"{name:24} {r['requests_per_second']:8.1f} req/s  p50 {lat['p50']:6.2f}  "
        f"p95 {lat['p95']:6.2f}  p99 {lat['p99']:6.2f} ms  errors {r['errors']}  "
        f"rss {r['rss_mb']} MiB (peak {r['peak_rss_mb']})  "
        f"cpu: server {r.get('server_cpu_share', '?')} ({r.get('server_cpu_us_per_request', '?')}"
        f" us/req), generator {r.get('generator_cpu_share', '?')}",
        flush=True,
    )


def cmd_load(args: argparse.Namespace) -> dict[str, Any]:
    with server.workspace() as workdir:
        runs = [load_once("hotline", args, workdir, db) for db in args.db]
        ceiling = load_once("ceiling", args, workdir)
    for run in runs:
        run["ratio_to_ceiling"] = round(
            run["requests_per_second"] / ceiling["requests_per_second"], 3
        )
        print(f"hotline ({run['database']}): {run['ratio_to_ceiling']:.2f} of the ceiling")
    with server.workspace() as workdir:
        paced = [
            load_once(
                "hotline",
                args,
                workdir,
                run["database"],
                args.rate or round(run["requests_per_second"] / 2),
            )
            for run in runs
        ]
    return {
        "hashes": args.hashes,
        "concurrency": args.concurrency,
        "journey": load.demo_journey("UID", "PIN", args.hold_polls).script,
        "hold_polls": args.hold_polls,
        "hotline": runs,
        "ceiling": ceiling,
        "paced": paced,
    }


def cmd_profile(args: argparse.Namespace) -> None:
    """The hotline under the same load, profiled; reports go next to the results."""
    with server.workspace() as workdir:
        for db in args.db:
            html = RESULTS / f"profile-{db}{args.label}.html"
            with server.fresh_database(db, workdir) as url:
                seeded = server.seed_accounts(
                    url, args.accounts, hasher=server.HASHERS[args.hashes]
                )
                command = [sys.executable, "-m", "bench.profile", "--html", str(html)]
                with server.hotline(url, workdir, command) as srv:
                    stats = _drive(srv, journeys(seeded, args.hold_polls), args)
                print(f"profiled on {db}: {load.summarise(stats)['requests']} requests")
                text = (workdir / "hotline.log").read_text()
                report = RESULTS / f"profile-{db}{args.label}.txt"
                report.write_text(text[text.find("===== event loop") :])
                print(f"wrote {report} and {html.stem}-*.html")


def machine() -> dict[str, Any]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    try:
        pg = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "show server_version", "test"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except OSError:
        pg = ""
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "postgresql": pg,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path}")
    return path


def _load_tables(loaded: dict[str, Any], heading: str, about: str) -> list[str]:
    """The markdown tables of one load run (closed loop, then paced)."""
    lines: list[str] = []
    lines += [
        f"## {heading}: {loaded['concurrency']} concurrent calls, one uvicorn worker",
        "",
        f"Each call: `{loaded['journey']}` (`ivr dial --keys` syntax: English, deposits menu "
        f"and back, the emergency option, UID and PIN of a seeded account), "
        f"{loaded['hold_polls']} hold-loop rounds, hang-up in the queue, status callback.",
        "",
        "| server | requests/s | of the ceiling | p50 ms | p95 ms | p99 ms | errors "
        "| RSS MiB (peak) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    runs = [*loaded["hotline"], loaded["ceiling"]]
    lines[-2:-2] = [
        "1-minute load average after each run (the server and the generator share 2 cores): "
        + ", ".join(
            f"{r['database'] or 'ceiling'} {r.get('loadavg_1min_after', '?')}" for r in runs
        )
        + ". Ratios compare runs made minutes apart.",
        "",
    ]
    for r in runs:
        name = f"hotline, {r['database']}" if r["database"] else "ceiling (bench/ceiling.py)"
        lat = r["latency_ms"]
        lines.append(
            f"| {name} | {r['requests_per_second']} | {r.get('ratio_to_ceiling', 1.0):.2f} | "
            f"{lat['p50']} | {lat['p95']} | {lat['p99']} | {r['errors']} | "
            f"{r['rss_mb']} ({r['peak_rss_mb']}) |"
        )
    lines.append("")
    if loaded.get("paced"):
        lines += [
            "Paced: the same calls, the connections together sending a fixed number of "
            "requests per second; latency counts from when each request was due.",
            "",
            "| server | paced at req/s | served req/s | p50 ms | p95 ms | p99 ms | errors |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in loaded["paced"]:
            lat = r["latency_ms"]
            lines.append(
                f"| hotline, {r['database']} | {r['paced_rate']} "
                f"| {r['requests_per_second']} | {lat['p50']} | {lat['p95']} "
                f"| {lat['p99']} | {r['errors']} |"
            )
        lines.append("")
    if about:
        lines[2:2] = [about, ""]
    return lines


def write_markdown() -> Path:
    """bench/RESULTS.md from the newest load.json and queue.json."""
    lines = ["# Benchmark results", ""]
    loaded = (
        json.loads((RESULTS / "load.json").read_text())
        if (RESULTS / "load.json").exists()
        else None
    )
    hashed = (
        json.loads((RESULTS / "load-production.json").read_text())
        if (RESULTS / "load-production.json").exists()
        else None
    )
    queued = (
        json.loads((RESULTS / "queue.json").read_text())
        if (RESULTS / "queue.json").exists()
        else None
    )
    info = (loaded or queued or {}).get("machine", {})
    lines += [
        f"Measured {info.get('date', '?')} on {info.get('cpu', '?')}, "
        f"{info.get('cores', '?')} cores, "
        f"Python {info.get('python', '?')}, PostgreSQL {info.get('postgresql', '?')}; the load "
        "generator runs on the same machine. Written by `scripts/bench` from "
        "`bench/results/load.json`, `load-production.json` and `queue.json`.",
        "",
    ]
    if loaded:
        lines += _load_tables(loaded, "Webhooks", "")
    if hashed:
        lines += _load_tables(
            hashed,
            "Webhooks, PINs hashed as the hotline stores them",
            "The same journeys against accounts whose PINs are hashed as `ivr accounts add` "
            "hashes them (argon2id, OWASP's minimum profile): what a verification really costs. "
            "Above, the seeded hashes are cheap, so the figures show everything but the hash.",
        )
    if queued:
        lines += [
            "## The queue: callers waiting at once",
            "",
            "An agent claims cases one after another while the hold loop serves other waiting "
            "callers: first at the pace the waiting callers make (each a round every "
            "`--round-seconds`, 30 s: no round is shorter), then flat out (32 connections, "
            "each round sent the moment the last is answered).",
            "",
            "| database | waiting | hold rounds | rounds/s | claim_next p50 / p95 / p99 ms "
            "| hold round p50 / p99 ms | places wrong (checked) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in queued["runs"]:
            wrong = r["places_before_claims"]["wrong"] + r["places_after_claims"]["wrong"]
            checked = r["places_before_claims"]["checked"] + r["places_after_claims"]["checked"]
            phases = [("paced", r["claim_next"], r["hold_loop_under_claims"])]
            if "claim_next_flat_out" in r:
                phases.append(("flat out", r["claim_next_flat_out"], r["hold_loop_flat_out"]))
            for name, c, h in phases:
                lines.append(
                    f"| {r['database']} | {r['waiting']} | {name} | {h['rounds_per_second']} "
                    f"| {c['p50_ms']} / {c['p95_ms']} / {c['p99_ms']} "
                    f"| {h['p50_ms']} / {h['p99_ms']} | {wrong} ({checked}) |"
                )
        lines.append("")
    lines += [
        "Targets (issue 5): at least 0.5 of the ceiling on SQLite and 0.4 on PostgreSQL, p99 "
        "under 25 ms at 32 connections, claim_next p99 under 10 ms with 10,000 waiting. What "
        "the numbers above say about them, where the time goes and what would close the gap: "
        "[ANALYSIS.md](ANALYSIS.md).",
        "",
    ]
    path = Path(__file__).resolve().parent / "RESULTS.md"
    path.write_text("\n".join(lines))
    print(f"wrote {path}")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "part",
        nargs="?",
        default="all",
        choices=("all", "load", "queue", "profile", "instructions", "calllog"),
    )
    parser.add_argument("--db", nargs="+", default=list(DATABASES), choices=DATABASES)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument(
        "--rate", type=float, default=None, help="paced runs: requests/s (default: half the max)"
    )
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--hold-polls", type=int, default=5)
    parser.add_argument("--accounts", type=int, default=64)
    parser.add_argument(
        "--hashes",
        default="cheap",
        choices=("cheap", "production"),
        help="argon2 cost of the seeded PINs: cheap (framework overhead) or what the hotline "
        "stores (what a verification really costs)",
    )
    parser.add_argument("--queue-size", type=int, default=10_000)
    parser.add_argument("--claims", type=int, default=1000)
    parser.add_argument(
        "--round-seconds",
        type=float,
        default=queue.ROUND_SECONDS,
        help="queue: how often each waiting caller's hold round comes, for the paced phase",
    )
    parser.add_argument("--sample", type=int, default=500, help="callers whose place is checked")
    parser.add_argument("--calls", type=int, default=200_000, help="calllog: calls in the log")
    parser.add_argument("--label", default="", help="suffix for the results file names")
    args = parser.parse_args(argv)
    started = time.monotonic()
    info = machine()
    if args.part in ("all", "load"):
        name = "load" + args.label + ("-production" if args.hashes == "production" else "")
        save(name, {"machine": info, **cmd_load(args)})
    if args.part == "all" and args.hashes == "cheap":
        hashed = argparse.Namespace(**{**vars(args), "hashes": "production"})
        save("load-production" + args.label, {"machine": info, **cmd_load(hashed)})
    if args.part in ("all", "queue"):
        with server.workspace() as workdir:
            runs = [
                queue.run(
                    db,
                    workdir,
                    size=args.queue_size,
                    claims=args.claims,
                    sample=args.sample,
                    concurrency=args.concurrency,
                    round_seconds=args.round_seconds,
                )
                for db in args.db
            ]
        save("queue" + args.label, {"machine": info, "runs": runs})
    if args.part == "calllog":
        with server.workspace() as workdir:
            runs = [calllog.run(db, workdir, count=args.calls) for db in args.db]
        print(json.dumps(runs, indent=2))
        save("calllog" + args.label, {"machine": info, "runs": runs})
    elif args.part == "profile":
        cmd_profile(args)
    elif args.part == "instructions":
        counted = instructions.measure()
        print(json.dumps(counted, indent=2))
        save("instructions" + args.label, {"machine": info, **counted})
    else:
        write_markdown()
    print(f"done in {time.monotonic() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
