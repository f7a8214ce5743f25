"""The benchmark harness still works: a handful of calls against a real `ivr serve`.

No timing is asserted (this machine's speed is not the code's); only that every journey
(language, menus, verification of a seeded account, hold-loop rounds, hang-up, status
callback) completes against the server and the ceiling app without a single error.
"""

from __future__ import annotations

from pathlib import Path

from bench import load, server


def test_the_generator_completes_journeys_without_errors(tmp_path: Path) -> None:
    with server.fresh_database("sqlite", tmp_path) as url:
        accounts = server.seed_accounts(url, 3)
        with server.hotline(url, tmp_path) as srv:
            stats = load.run(
                server_url=srv.url,
                public_url=server.PUBLIC_URL,
                auth_token=server.AUTH_TOKEN,
                journeys=[load.demo_journey(uid, pin, hold_polls=2) for uid, pin in accounts],
                concurrency=3,
                seconds=60,
                warmup=0,
                calls=6,
            )
            assert srv.rss_mb()["rss_mb"] > 0
    assert stats.errors == {}
    assert stats.journeys == 6
    # voice, 6 answers, 2 hold rounds, the queue's hang-up, the status callback
    assert len(stats.latencies) == 6 * 11
    assert len(stats.by_endpoint["/twilio/wait"]) == 6 * 2


def test_the_ceiling_takes_the_same_journeys(tmp_path: Path) -> None:
    steps = len(load.demo_journey("1", "1").answers())
    with server.ceiling(steps, tmp_path) as srv:
        stats = load.run(
            server_url=srv.url,
            public_url=server.PUBLIC_URL,
            auth_token=server.AUTH_TOKEN,
            journeys=[load.demo_journey("20000001", "000000", hold_polls=2)],
            concurrency=2,
            seconds=60,
            warmup=0,
            calls=4,
        )
    assert stats.errors == {}
    assert stats.journeys == 4
    assert len(stats.latencies) == 4 * 11


def test_a_paced_connection_keeps_its_schedule_and_counts_from_when_it_was_due() -> None:
    """Latency is counted from the due time; a request is never sent before it."""
    import asyncio
    import itertools
    import time

    async def five_slots() -> list[tuple[float, float]]:
        pacer = load.Pacer(0.02, time.perf_counter() + 0.01)
        slots = []
        for _ in range(5):
            due = await pacer.slot()
            slots.append((due, time.perf_counter()))
        return slots

    slots = asyncio.run(five_slots())
    dues = [due for due, _ in slots]
    assert [round(b - a, 6) for a, b in itertools.pairwise(dues)] == [0.02] * 4
    assert all(sent >= due for due, sent in slots)


def test_cpu_time_is_read_for_a_process_and_per_request() -> None:
    """The server's CPU per request is read from /proc; it moves as the process works."""
    import os

    before = load.process_cpu_seconds(os.getpid())
    own = load.own_cpu_seconds()
    while load.own_cpu_seconds() - own < 0.2:
        sum(range(10_000))
    after = load.process_cpu_seconds(os.getpid())
    assert before is not None and after is not None
    assert 0.1 <= after - before <= 1.0
    assert load.process_cpu_seconds(2**22 + 1) is None  # no such process
    stats = load.Stats(latencies=[0.01] * 400, window=(0.0, 2.0), server_cpu=1.0, generator_cpu=0.5)
    summary = load.summarise(stats)
    assert summary["server_cpu_us_per_request"] == 2500.0
    assert summary["server_cpu_share"] == 0.5 and summary["generator_cpu_share"] == 0.25


def test_the_queue_benchmark_checks_every_place_and_times_claims_paced_and_flat_out(
    tmp_path: Path,
) -> None:
    from bench import queue

    waiting, rate_seconds = 120, 4.0  # a hold round every 4 s each: 30 rounds/s in all
    result = queue.run(
        "sqlite",
        tmp_path,
        size=waiting,
        claims=10,
        sample=15,
        concurrency=3,
        round_seconds=rate_seconds,
        hold_seconds=1,
    )
    assert result["places_before_claims"]["wrong"] == 0
    assert result["places_after_claims"]["wrong"] == 0
    assert result["places_after_claims"]["checked"] == 15
    assert result["claim_next"]["claims"] == result["claim_next_flat_out"]["claims"] == 10
    assert result["paced_rounds_per_second"] == waiting / rate_seconds
    # Paced: never a round before it is due, so at most one second's rounds and a slot per
    # connection that was due at the deadline.
    assert result["hold_loop_under_claims"]["rounds"] <= waiting / rate_seconds + 3
    assert result["hold_loop_flat_out"]["rounds"] > 0


def test_the_call_log_benchmark_lists_each_filters_first_page(tmp_path: Path) -> None:
    """No timing asserted: each filter's page comes back with the calls it should."""
    from bench import calllog

    run = calllog.run("sqlite", tmp_path, count=1000, repeats=1)
    pages = run["pages"]
    assert (run["calls"], run["cases"]) == (1000, 1200)
    assert pages["newest first"]["rows"] == 50
    assert pages["ticket"]["rows"] == 1  # ticket 1000777: one case, one call
    assert pages["account"]["rows"] == 1  # its cases' calls (one here: 1,000 calls)
    assert pages["caller (last 4)"]["rows"] == 1
