"""The load generator: many simulated calls at once, each signed and following the TwiML.

Every request is signed exactly as Twilio signs it (HMAC-SHA1 over IVR_PUBLIC_URL + path +
query and the sorted form) and posted to the server's real address. A caller answers each
<Gather> from its script, follows <Redirect>, holds in <Enqueue> by polling the waitUrl a
few times, hangs up (the Enqueue action with QueueResult=hangup) and sends the final status
callback, as Twilio would. Closed loop (the default): each connection sends its next request
as soon as the last one is answered, so throughput is what the server gives at that
concurrency, and latency is mostly time spent queued behind the other connections. Paced
(`rate`): the connections together send `rate` requests per second on a fixed schedule, and
latency counts from when a request was due, not when it went out, so a slow answer that
delays the next request is not hidden (no coordinated omission, as in wrk2).

An error is a non-2xx answer, a transport failure, the fallback TwiML (the hotline failed
inside and handed the caller to an agent), or a hold-loop document without the caller's
place in line (the hold loop answered without its database).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import resource
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from twilio.request_validator import RequestValidator

from ivr.engine import FALLBACK_PATH, QUEUE_EXIT_PATH, STATUS_PATH, VOICE_PATH, WAIT_PATH
from ivr.phone import Answer, Press, Silent, Speak, keypad, parse_script

ACCOUNT_SID = "AC" + "0" * 32
QUEUE_SID = "QU" + "0" * 32


@dataclass(frozen=True)
class Journey:
    """One kind of call: the answers to its prompts, then so many hold-loop rounds."""

    name: str
    script: str  # `ivr dial --keys` syntax
    hold_polls: int
    uid: str | None = None  # the demo account the script verifies as, if any

    def answers(self) -> list[Answer]:
        return parse_script(self.script)


def demo_journey(uid: str, pin: str, hold_polls: int = 5) -> Journey:
    """English; deposits menu and back (#); the emergency option; UID and PIN; the security
    queue with `hold_polls` hold-loop rounds; hang up in the queue."""
    return Journey("emergency-verified", f"1,3,#,1,{uid}#,{pin}#", hold_polls, uid)


@dataclass
class Stats:
    """What the generator saw, inside the measurement window only."""

    latencies: list[float] = field(default_factory=list)
    by_endpoint: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    journeys: int = 0
    window: tuple[float, float] = (0.0, 0.0)
    # CPU seconds used inside the window by the server process and by this generator: the
    # two share the machine's cores, so requests/s alone does not say which one was the limit.
    server_cpu: float | None = None
    generator_cpu: float | None = None

    def record(self, endpoint: str, started: float, seconds: float) -> None:
        if self.window[0] <= started and started + seconds <= self.window[1]:
            self.latencies.append(seconds)
            self.by_endpoint.setdefault(endpoint, []).append(seconds)

    def in_window(self, started: float) -> bool:
        return self.window[0] <= started <= self.window[1]


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process `pid` so far (Linux /proc), None if unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure_cpu(stats: Stats, server_pid: int | None) -> None:
    """CPU used by the server and by this generator between the window's start and end."""
    await asyncio.sleep(max(0.0, stats.window[0] - time.perf_counter()))
    server0 = process_cpu_seconds(server_pid) if server_pid else None
    own0 = own_cpu_seconds()
    await asyncio.sleep(max(0.0, stats.window[1] - time.perf_counter()))
    server1 = process_cpu_seconds(server_pid) if server_pid else None
    stats.generator_cpu = own_cpu_seconds() - own0
    if server0 is not None and server1 is not None:
        stats.server_cpu = server1 - server0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: a reported p99 is a latency that happened)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def summarise(stats: Stats) -> dict[str, Any]:
    seconds = stats.window[1] - stats.window[0]
    ms = [v * 1000 for v in stats.latencies]
    return {
        "seconds": round(seconds, 2),
        "requests": len(ms),
        "requests_per_second": round(len(ms) / seconds, 1) if seconds else 0.0,
        "journeys_completed": stats.journeys,
        "latency_ms": {
            "p50": round(percentile(ms, 50), 2),
            "p95": round(percentile(ms, 95), 2),
            "p99": round(percentile(ms, 99), 2),
            "max": round(max(ms), 2) if ms else None,
        },
        "latency_ms_by_endpoint": {
            name: {
                "requests": len(v),
                "p50": round(percentile([x * 1000 for x in v], 50), 2),
                "p99": round(percentile([x * 1000 for x in v], 99), 2),
            }
            for name, v in sorted(stats.by_endpoint.items())
        },
        "errors": sum(stats.errors.values()),
        "errors_by_kind": dict(stats.errors),
        **_cpu_summary(stats, seconds, len(ms)),
    }


def _cpu_summary(stats: Stats, seconds: float, requests: int) -> dict[str, Any]:
    """Each process's share of one core over the window, and the server's CPU per request:
    the cost of a request whatever the generator left the server of the machine."""
    found: dict[str, Any] = {}
    if stats.generator_cpu is not None and seconds:
        found["generator_cpu_share"] = round(stats.generator_cpu / seconds, 2)
    if stats.server_cpu is not None and seconds:
        found["server_cpu_share"] = round(stats.server_cpu / seconds, 2)
        if requests:
            found["server_cpu_us_per_request"] = round(stats.server_cpu / requests * 1e6, 1)
    return found


class Pacer:
    """One connection's schedule: a request due every `interval` seconds from `start`."""

    def __init__(self, interval: float, start: float) -> None:
        self.interval = interval
        self.due = start

    async def slot(self) -> float:
        """Wait for the next due time (not at all when behind) and return it."""
        due = self.due
        self.due += self.interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        return due


class JourneyFailed(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class _Hangup(Exception):
    pass


class Caller:
    """One connection placing calls one after another, as Twilio would post them."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        server_url: str,
        public_url: str,
        validator: RequestValidator,
        stats: Stats,
        from_number: str,
        pacer: Pacer | None = None,
    ) -> None:
        self.pacer = pacer
        self.session = session
        self.server_url = server_url.rstrip("/")
        self.public_url = public_url.rstrip("/")
        self.validator = validator
        self.stats = stats
        self.from_number = from_number

    async def post(self, url: str, params: dict[str, str]) -> tuple[int, bytes]:
        """Sign `url` (public) and the form as Twilio does, post it to the server itself."""
        signature = self.validator.compute_signature(url, params)
        path = url[len(self.public_url) :] if url.startswith(self.public_url) else url
        endpoint = path.split("?", 1)[0]
        started = await self.pacer.slot() if self.pacer else time.perf_counter()
        try:
            async with self.session.post(
                self.server_url + path,
                data=params,
                headers={"X-Twilio-Signature": signature},
            ) as response:
                body = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise JourneyFailed(f"transport:{type(exc).__name__}") from None
        self.stats.record(endpoint, started, time.perf_counter() - started)
        if not 200 <= status < 300:
            raise JourneyFailed(f"http_{status}:{endpoint}")
        return status, body

    async def twiml(self, url: str, params: dict[str, str]) -> ET.Element:
        _, body = await self.post(url, params)
        try:
            doc = ET.fromstring(body)
        except ET.ParseError:
            raise JourneyFailed("not_xml") from None
        enqueue = doc.find("Enqueue")
        # The fallback answer queues with step 0 (the engine's own queues carry a real step).
        if enqueue is not None and (enqueue.get("action") or "").endswith(f"{QUEUE_EXIT_PATH}?s=0"):
            raise JourneyFailed("fallback_twiml")
        if url.startswith(self.public_url + FALLBACK_PATH):
            raise JourneyFailed("fallback_url")
        return doc

    async def call(self, journey: Journey) -> None:
        answers = journey.answers()
        base = {
            "AccountSid": ACCOUNT_SID,
            "CallSid": "CA" + uuid.uuid4().hex,
            "From": self.from_number,
            "To": "+15005550001",
            "Caller": self.from_number,
            "Called": "+15005550001",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
            "CallStatus": "in-progress",
        }
        started = time.monotonic()
        try:
            doc = await self.twiml(self.public_url + VOICE_PATH, {**base, "CallStatus": "ringing"})
            while True:
                doc = await self.play(doc, base, answers, journey.hold_polls)
        except _Hangup:
            pass
        await self.post(
            self.public_url + STATUS_PATH,
            {
                **base,
                "CallStatus": "completed",
                "CallDuration": str(max(1, round(time.monotonic() - started))),
                "SequenceNumber": "0",
                "CallbackSource": "call-progress-events",
            },
        )

    async def play(
        self, doc: ET.Element, base: dict[str, str], answers: list[Answer], hold_polls: int
    ) -> ET.Element:
        """Play one document; the next one Twilio would fetch."""
        for verb in doc:
            if verb.tag in ("Say", "Play", "Pause"):
                continue
            if verb.tag == "Gather":
                if not answers:
                    raise _Hangup()
                answer = answers.pop(0)
                action = verb.get("action") or ""
                if isinstance(answer, Press):
                    digits, finished = keypad(
                        answer.digits, verb.get("finishOnKey", "#"), _int(verb.get("numDigits"))
                    )
                    if digits:
                        return await self.twiml(
                            action, {**base, "Digits": digits, "FinishedOnKey": finished}
                        )
                if isinstance(answer, Speak) and "speech" in verb.get("input", "dtmf"):
                    return await self.twiml(
                        action,
                        {**base, "SpeechResult": answer.words, "Confidence": "0.92"},
                    )
                if isinstance(answer, Silent | Press) and verb.get("actionOnEmptyResult"):
                    return await self.twiml(action, base)
            elif verb.tag == "Redirect":
                return await self.twiml((verb.text or "").strip(), base)
            elif verb.tag == "Enqueue":
                await self.hold(verb, base, hold_polls)
                raise _Hangup()
            elif verb.tag in ("Hangup", "Reject"):
                raise _Hangup()
            else:
                raise JourneyFailed(f"unexpected_verb:{verb.tag}")
        raise _Hangup()

    async def hold(self, enqueue: ET.Element, base: dict[str, str], polls: int) -> None:
        """Hold `polls` rounds of the hold loop, then hang up while still in the queue."""
        wait_url, action = enqueue.get("waitUrl"), enqueue.get("action")
        if not wait_url or not wait_url.startswith(self.public_url + WAIT_PATH):
            raise JourneyFailed("enqueue_without_wait_url")
        for round_ in range(polls):
            doc = await self.twiml(
                wait_url,
                {
                    **base,
                    "QueueSid": QUEUE_SID,
                    "QueuePosition": "1",
                    "QueueTime": str(round_ * 30),
                    "AvgQueueTime": "0",
                    "CurrentQueueSize": "1",
                    "MaxQueueSize": "100",
                },
            )
            # Our place in line comes with the call-back offer; without it the hold loop
            # answered from memory (no database).
            if doc.find("Gather") is None:
                raise JourneyFailed("hold_without_position")
        if action:
            await self.twiml(
                action,
                {**base, "QueueResult": "hangup", "QueueSid": QUEUE_SID, "QueueTime": "150"},
            )


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


async def drive(
    *,
    server_url: str,
    public_url: str,
    auth_token: str,
    journeys: Iterator[Journey],
    concurrency: int,
    seconds: float,
    warmup: float,
    rate: float | None = None,
    server_pid: int | None = None,
) -> Stats:
    """Keep `concurrency` calls going for warmup + seconds; measure the last `seconds`.
    With `rate`, the calls together send that many requests per second, evenly spread.
    With `server_pid` (a process on this machine), its CPU time over the window too."""
    stats = Stats()
    validator = RequestValidator(auth_token)
    now = time.perf_counter()
    stats.window = (now + warmup, now + warmup + seconds)
    deadline = stats.window[1]
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)

    async def line(n: int) -> None:
        caller = Caller(
            session,
            server_url=server_url,
            public_url=public_url,
            validator=validator,
            stats=stats,
            from_number=f"+1555{n:07d}",
            # The lines start spread over the warm-up, so that they are at different points
            # of their calls: begun together, every line would key its PIN at the same moment,
            # a burst of slow hashes no real crowd of callers makes.
            pacer=Pacer(concurrency / rate, now + n * warmup / concurrency) if rate else None,
        )
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            journey = next(journeys, None)
            if journey is None:
                return
            try:
                await caller.call(journey)
            except JourneyFailed as failed:
                if stats.in_window(time.perf_counter()):
                    stats.errors[failed.kind] += 1
                continue
            if stats.in_window(started) and time.perf_counter() <= deadline:
                stats.journeys += 1

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        cpu = asyncio.create_task(_measure_cpu(stats, server_pid))
        await asyncio.gather(*(line(n) for n in range(concurrency)))
        if not cpu.done():  # the calls ran out before the window closed: no figure
            cpu.cancel()
    return stats


def run(
    *,
    server_url: str,
    public_url: str,
    auth_token: str,
    journeys: Sequence[Journey],
    concurrency: int,
    seconds: float,
    warmup: float,
    calls: int | None = None,
    rate: float | None = None,
    server_pid: int | None = None,
) -> Stats:
    """`drive` on its own event loop (uvloop when present: the generator shares the CPUs);
    `calls` stops after that many calls (all counted: give a zero warm-up)."""
    cycle = itertools.islice(itertools.cycle(journeys), calls)
    run_loop: Any = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        run_loop = uvloop.run
    stats: Stats = run_loop(
        drive(
            server_url=server_url,
            public_url=public_url,
            auth_token=auth_token,
            journeys=cycle,
            concurrency=concurrency,
            seconds=seconds,
            warmup=warmup,
            rate=rate,
            server_pid=server_pid,
        )
    )
    return stats
