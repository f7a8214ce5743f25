"""The hotline's work per call, counted in CPU instructions: a figure that holds still.

Requests per second on a shared 2-core machine move by a third between two runs of the same
code (other tenants, CPU frequency), too much to tell a 5 % change from noise. Instructions
executed do not move: `valgrind --tool=callgrind` counts them whatever else the machine does.
This runs the app in-process (no HTTP server, no network), places `--calls` calls through the
Twilio-like phone (signed requests, TwiML followed, the load test's journey: menus,
verification of a seeded account, hold-loop rounds, hang-up, status callback), and prints
what it did. Run it twice under callgrind with different counts and the difference, per
call, is the work of one call, imports and start-up taken out:

    python -m bench instructions            # does exactly that; results/instructions.json

The phone's own work (signing, parsing TwiML) is in the figure too; it is the same for any
version of the hotline, so a difference between two versions is the hotline's alone.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import load, server

COLLECTED = re.compile(r"Collected : (\d+)")


def place_calls(calls: int, workdir: Path) -> int:
    """`calls` journeys against the app in this process; the requests they made."""
    from fastapi.testclient import TestClient

    from ivr.phone import Phone, ScriptedParty, parse_script
    from ivr.settings import Settings
    from ivr.web import create_app

    url = f"sqlite:///{workdir / 'instructions.sqlite3'}"
    from ivr.db import upgrade

    upgrade(url)
    accounts = server.seed_accounts(url, max(1, calls))
    env = {
        **server.hotline_env(url),
        "IVR_LOG_FORMAT": "text",
        # The app's timed jobs (the sweep, the tree-version and announcement check, offering
        # cases to available agents) run by the clock, not per call: under valgrind, on a busy
        # machine, the longer run would count more of them (seen: +20 % per call, from nothing
        # but load). Not during the count.
        "IVR_TREE_SYNC": "3600",
        "IVR_SWEEP_INTERVAL": "3600",
        "IVR_DISPATCH_INTERVAL": "3600",
    }
    os.environ.update(env)
    settings = Settings(_env_file=None)
    requests = 0
    with TestClient(create_app(settings)) as client:
        phone = Phone(client, public_url=server.PUBLIC_URL, auth_token=server.AUTH_TOKEN)
        for n in range(calls):
            uid, pin = accounts[n % len(accounts)]
            journey = load.demo_journey(uid, pin)
            party = ScriptedParty(parse_script(journey.script), hold_polls=journey.hold_polls)
            record = phone.call(party, from_number=f"+1555{n:07d}")
            requests += len(record.requests)
    return requests


def counted(calls: int) -> tuple[int, int]:
    """Instructions callgrind counted for a whole run of `calls` calls, and its requests."""
    with tempfile.TemporaryDirectory(prefix="ivr-instr-") as workdir:
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={workdir}/callgrind.out",
                sys.executable,
                "-m",
                "bench.instructions",
                "--place",
                str(calls),
                "--workdir",
                workdir,
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(server.ROOT)},
        )
    found = COLLECTED.search(done.stderr)
    requests = re.search(r"requests (\d+)", done.stdout)
    if found is None or requests is None:
        raise RuntimeError(f"callgrind said nothing countable:\n{done.stderr[-2000:]}")
    return int(found.group(1)), int(requests.group(1))


def measure(few: int = 2, many: int = 12) -> dict[str, float]:
    """Instructions per call and per request: (run of `many` - run of `few`) / difference."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    small, small_requests = counted(few)
    large, large_requests = counted(many)
    per_call = (large - small) / (many - few)
    return {
        "calls": many - few,
        "requests_per_call": (large_requests - small_requests) / (many - few),
        "instructions_per_call": round(per_call),
        "instructions_per_request": round((large - small) / (large_requests - small_requests)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--place", type=int, help="place this many calls here (under valgrind)")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    if args.place is not None:
        with tempfile.TemporaryDirectory() as fallback:
            print(f"requests {place_calls(args.place, args.workdir or Path(fallback))}")
        return
    print(measure())


if __name__ == "__main__":
    main()
