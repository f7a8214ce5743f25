"""The web layer: thin FastAPI adapters from Twilio's webhooks to `Hotline`.

Every /twilio/* request must carry a valid X-Twilio-Signature for IVR_PUBLIC_URL + path +
query, or it gets 403 and nothing happens. A webhook that fails inside answers with the
fallback TwiML (apology, agent queue), never a 500: a caller must not hear Twilio's error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar
from urllib.parse import parse_qsl, urlsplit

import anyio
import anyio.to_thread
import httpx
import requests
from anyio.lowlevel import RunVar
from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    HTTPException,
    Query,
    Request,
    Response,
)
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from requests.adapters import HTTPAdapter
from sqlalchemy import Engine, QueuePool, text
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)
from urllib3.util.retry import Retry

from ivr import engine, oncall, retention, store
from ivr.api import router as api_router
from ivr.dashboard import STATIC_DIR, STATIC_PATH
from ivr.dashboard import router as dashboard_router
from ivr.db import Busy, engine_from_settings, impatient
from ivr.deps import HotlineDep, loop_limiter
from ivr.exceptions import SourceError
from ivr.hotline import (
    Caller,
    Clock,
    Counted,
    Hotline,
    TwilioRest,
    WouldBlock,
    prompts_refused,
    utcnow,
)
from ivr.identity import (
    AccountActions,
    HttpAccountActions,
    HttpIdentity,
    IdentityProvider,
    LocalAccountActions,
    LocalDirectory,
)
from ivr.observe import CALL_SID as CURRENT_CALL
from ivr.observe import Metrics
from ivr.prompts import catalog_files
from ivr.settings import Settings, TwilioAccount
from ivr.tree import CompiledTree, load_tree

if TYPE_CHECKING:
    from twilio.rest import Client

log = logging.getLogger("ivr.web")
T = TypeVar("T")

TWIML = "application/xml"
MAX_BODY = 64 * 1024  # Twilio's webhook forms are a few KB
UNSIGNED_RECHECK = 0.25  # seconds: a webhook past its deadline, not yet known signed
MAX_DIGITS = 64
MAX_SPEECH = 1000
MAX_TEXT = 1600  # an SMS Twilio delivers: at most 1,600 characters
MAX_INT = 2**31 - 1  # a database INTEGER
MAX_WORKER_THREADS = 40  # anyio's default
TWILIO_REST_TIMEOUT = 10.0  # seconds; Twilio's REST API answers in well under one


# What Prometheus sends when IVR_METRICS_TOKEN is set (its scrape `authorization`).
ScrapeCredentials = Annotated[
    HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))
]


def worker_threads(db: Engine) -> int:
    """Threads for sync routes: half the connections the pool may open. A webhook may hold
    two at once (opening a case, the identity directory takes its own), so a burst of
    calls can never leave every thread waiting for a connection another waiting thread holds
    (that deadlock lasted until the pool timeout, then answered everyone with the fallback)."""
    pool = db.pool
    if not isinstance(pool, QueuePool):
        return MAX_WORKER_THREADS
    overflow: int = getattr(pool, "_max_overflow", 0)  # not public; -1 is "no limit"
    if overflow < 0:
        return MAX_WORKER_THREADS
    return max(1, min(MAX_WORKER_THREADS, (pool.size() + overflow) // 2))


async def twilio_form(request: Request, hotline: HotlineDep) -> FormData:
    """The request's form, if and only if Twilio signed exactly this URL and these parameters.

    Twilio posts small url-encoded forms; anything else is refused before it is read whole
    (a chunked body has no Content-Length to check up front)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise HTTPException(status_code=415, detail="Twilio webhooks are url-encoded forms")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        raise HTTPException(status_code=413, detail="request too large for a Twilio webhook")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise HTTPException(status_code=413, detail="request too large for a Twilio webhook")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
        form = FormData([(k, v) for k, v in pairs])
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(status_code=400, detail="not a url-encoded form") from None
    url = hotline.settings.base_url + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    signature = request.headers.get(SIGNATURE_HEADER, "")
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
    validators: list[RequestValidator] = request.app.state.validators
    try:
        params = SignedParams.of(pairs)
        # The next token too while it is rotated to (TWILIO_AUTH_TOKEN_NEXT).
        valid = bool(signature) and any(
            v.validate(url, params, signature, algorithm) for v in validators
        )
    except Exception:  # whatever a forged request makes the validator choke on, it is not valid
        valid = False
    if not valid:
        hotline.metrics.signature_failures.inc()
        # The URL checked, not only the path: every request refused at once, each checked
        # against another host or scheme than Twilio's console has, is IVR_PUBLIC_URL wrong.
        # Once a minute at most, and cut short: anyone can send these, as many and as long
        # as they like, and the metric counts them all.
        if times := request.app.state.refused_said.due():
            log.warning(
                "refused unsigned or mis-signed request to %s (signature checked against %s)%s",
                _cut(request.url.path),
                _cut(url),
                f"; {times - 1} more refused since this was last said" if times > 1 else "",
            )
        raise HTTPException(status_code=403, detail="invalid Twilio signature")
    sid = form.get("CallSid")
    CURRENT_CALL.set(sid if isinstance(sid, str) else None)  # on every log line of this request
    request.state.twilio_signed = True  # WebhookDeadline answers only this for it
    return form


TwilioForm = Annotated[FormData, Depends(twilio_form)]


class SignedParams(dict[str, list[str]]):
    """A form's values by name, as RequestValidator reads a multi-valued form (`getall`).

    Starlette's FormData answers `getlist` by scanning every field, and the validator asks
    for each name twice (the URL with and without its port): for a Twilio form that was the
    costliest part of checking a signature."""

    @classmethod
    def of(cls, pairs: list[tuple[str, str]]) -> SignedParams:
        params = cls()
        for name, value in pairs:
            params.setdefault(name, []).append(value)
        return params

    def getall(self, name: str) -> list[str]:
        return self[name]


def _text(form: FormData, name: str, limit: int = 256) -> str:
    value = form.get(name)
    # NUL: PostgreSQL's text columns refuse it, and Twilio never sends one.
    return value.replace("\x00", "")[:limit] if isinstance(value, str) else ""


def _int(form: FormData, name: str) -> int | None:
    """ASCII digits that fit a database INTEGER ('²'.isdigit() is true, int('²') fails)."""
    value = _text(form, name, 16)
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_INT:
        return None
    return int(value)


def _call_sid(form: FormData) -> str:
    sid = _text(form, "CallSid", 64)
    if not engine.CALL_SID.match(sid):
        raise HTTPException(status_code=400, detail="CallSid missing or malformed")
    return sid


def _twiml(body: str) -> Response:
    return Response(content=body, media_type=TWIML)


def _failed(hotline: Hotline, call_sid: str) -> Response:
    """For a webhook that failed inside (database down, a bug): the caller reaches a person.
    The traceback goes to the server log only; it never holds the caller's input (no SQL
    parameters). Call it from an `except` block."""
    log.exception("webhook failed for call %s; answered with the fallback", call_sid)
    return _twiml(hotline.fallback())


def _safely(hotline: Hotline, call_sid: str, work: Callable[[], str]) -> Response:
    try:
        return _twiml(work())
    except Exception:
        return _failed(hotline, call_sid)


async def _run(hotline: Hotline, work: Callable[[bool], T]) -> T:
    """`work(may_block)` on the event loop where that is safe, else in a worker thread.

    On SQLite a webhook's read and write take tens of microseconds in this process, less
    than handing the work to a thread and back, so it runs right here (`may_block=False`).
    Work that may take long (a PIN hashed and checked, an outside service called, a lock
    held by another writer) raises WouldBlock or Busy before writing anything and runs again
    in a thread. A network database always goes to a thread: a slow round trip must never
    hold up every other call."""
    if hotline.answers_on_the_loop:
        try:
            with impatient():  # a lock not free at once: Busy, and on to a thread
                return work(False)
        except (WouldBlock, Busy):
            pass
    return await run_in_threadpool(work, True)


async def _answer(hotline: Hotline, call_sid: str, work: Callable[[bool], str]) -> Response:
    """A webhook's TwiML from `work`; the fallback (an agent) if anything fails inside."""
    try:
        return _twiml(await _run(hotline, work))
    except Exception:
        return _failed(hotline, call_sid)


async def _answer_holding(
    hotline: Hotline, call_sid: str, language: str, work: Callable[[bool], str]
) -> Response:
    """A webhook of a caller holding in a queue (the call-back offer's keys): if anything
    fails inside, a hold round from memory. The fallback's <Enqueue> is not TwiML a queue's
    wait URL may answer with, and the caller is in line already."""
    try:
        return _twiml(await _run(hotline, work))
    except Exception:
        log.exception("webhook failed for call %s; answered with a hold round", call_sid)
        return _twiml(hotline.hold_from_memory(language))


# Threads that may be checking a secret factor at once, apart from the webhooks' threads: a
# wave of callers keying PINs waits here (the directory hashes a few at a time) holding no
# webhook thread and no database connection, so every other call goes on being answered.
CHECK_THREADS = 8
_CHECKS: RunVar[anyio.CapacityLimiter] = RunVar("ivr_checks")


def _check_limiter() -> anyio.CapacityLimiter:
    """This event loop's limiter for checks."""
    return loop_limiter(_CHECKS, CHECK_THREADS)


async def _advance(
    hotline: Hotline, call_sid: str, step: int | None, event: engine.Input
) -> Response:
    """An input for a call in progress. A secret factor is counted (on the event loop on
    SQLite), checked in a thread of its own (the hash is slow on purpose, or a service
    answers), and the call moves on (on the loop again on SQLite: its writes do not queue in a
    thread behind the loop's)."""
    try:
        try:
            answer = await _run(
                hotline,
                lambda ok: hotline.advance(call_sid, step, event, may_block=ok, check_apart=True),
            )
        except Counted as counted:
            if counted.locked:
                verdict = engine.Checked(ok=False, locked=True)
            else:
                digits = event.digits if isinstance(event, engine.Keys) else ""
                metrics = hotline.metrics  # the wait for a turn counts, the wave shows
                with metrics.checks_in_progress.track_inprogress(), metrics.check_seconds.time():
                    verdict = await anyio.to_thread.run_sync(
                        hotline.check, counted.attempt, digits, limiter=_check_limiter()
                    )
            checked = (counted.attempt, verdict)
            answer = await _run(
                hotline,
                lambda ok: hotline.advance(call_sid, step, event, may_block=ok, checked=checked),
            )
        return _twiml(answer)
    except Exception:
        return _failed(hotline, call_sid)


def _input(form: FormData) -> engine.Input:
    digits = _text(form, "Digits", MAX_DIGITS)
    if digits:
        return engine.Keys(digits)
    speech = _text(form, "SpeechResult", MAX_SPEECH).strip()
    if speech:
        try:
            confidence: float | None = float(_text(form, "Confidence", 16))
        except ValueError:
            confidence = None
        if confidence is not None and not (math.isfinite(confidence) and 0 <= confidence <= 1):
            confidence = None  # NaN would not even store in PostgreSQL's JSON
        return engine.Speech(speech, confidence)
    return engine.Silence()


router = APIRouter(prefix="/twilio", tags=["twilio"])
TWILIO_PATHS = frozenset(
    f"/twilio/{p}"
    for p in (
        "voice",
        "gather",
        "dial",
        "queue-exit",
        "wait",
        "callback-request",
        "callback-number",
        "connect",
        "agent-accept",
        "page-ack",
        "page-status",
        "sms",
        "callback-status",
        "recording",
        "connect-done",
        "transfer",
        "status",
        "fallback",
    )
)
# Requests of a caller holding in a queue (its wait URL, the call-back offer's keys).
HOLDING_PATHS = frozenset({"/twilio/wait", "/twilio/callback-request", "/twilio/callback-number"})
CALLBACK_PATHS = frozenset(
    {"/twilio/status", "/twilio/callback-status", "/twilio/recording", "/twilio/page-status"}
)  # answered 204
Step = Annotated[int | None, Query(alias="s", ge=0, le=1_000_000)]


@router.post("/voice")
async def voice(form: TwilioForm, hotline: HotlineDep) -> Response:
    caller = Caller(
        _call_sid(form),
        _text(form, "AccountSid", 64) or None,
        _text(form, "From", 32) or None,
        _text(form, "To", 32) or None,
        stir_verstat=_text(form, "StirVerstat", 64) or None,
    )
    return await _answer(hotline, caller.call_sid, lambda _: hotline.start(caller))


@router.post("/gather")
async def gather(form: TwilioForm, hotline: HotlineDep, s: Step = None) -> Response:
    return await _advance(hotline, _call_sid(form), s, _input(form))


@router.post("/dial")
async def dial(form: TwilioForm, hotline: HotlineDep, s: Step = None) -> Response:
    sid = _call_sid(form)
    return await _advance(
        hotline, sid, s, engine.DialDone(_text(form, "DialCallStatus", 32) or "failed")
    )


@router.post("/queue-exit")
async def queue_exit(form: TwilioForm, hotline: HotlineDep, s: Step = None) -> Response:
    sid = _call_sid(form)
    result = _text(form, "QueueResult", 32) or "error"
    if result == engine.QUEUE_FULL:
        hotline.metrics.queue_full.inc()
        if times := _queue_full.due():
            # Callers are held and tried again, their cases in line; the queue wants sizing.
            log.error(
                "Twilio refused %d caller(s) into a full queue (error 14207) since this was "
                "last said; `ivr serve` makes the tree's queues hold 5,000 where it has "
                "TWILIO_ACCOUNT_SID",
                times,
            )
    return await _advance(hotline, sid, s, engine.QueueExit(result))


class Throttled:
    """A log line said once per `every` seconds at most, with how many times it was due
    meanwhile: what a crowd of callers or a stranger's flood of requests makes due many
    times a second must not drown the log (a metric counts each)."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self.last = -math.inf
        self.since = 0

    def due(self) -> int:
        """0 while it was said less than `every` ago; else how many times it was due since
        (this one included), to say now."""
        self.since += 1
        now = time.monotonic()
        if now - self.last < self.every:
            return 0
        times, self.last, self.since = self.since, now, 0
        return times


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


_queue_full = Throttled()


Lang = Annotated[str, Query(max_length=16)]
CaseId = Annotated[int, Query(alias="case", ge=1, le=MAX_INT)]


@router.post("/wait")
async def wait(
    form: TwilioForm,
    hotline: HotlineDep,
    lang: Lang = "en",
    queue: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] = None,
) -> Response:
    sid = _call_sid(form)
    queue_time = _int(form, "QueueTime") or 0
    caller = _text(form, "From", 32) or None
    return await _answer_holding(
        hotline, sid, lang, lambda _: hotline.hold(sid, lang, queue_time, queue, caller)
    )


@router.post("/callback-request")
async def callback_request(
    form: TwilioForm,
    hotline: HotlineDep,
    lang: Lang = "en",
    confirm: Annotated[int, Query(ge=0, le=1)] = 0,
) -> Response:
    """A key pressed while holding (1: a call back), or at the call back's confirmation."""
    sid = _call_sid(form)
    digits, number = _text(form, "Digits", MAX_DIGITS), _text(form, "From", 32) or None
    return await _answer_holding(
        hotline,
        sid,
        lang,
        lambda _: hotline.request_callback(sid, digits, lang, number, confirmed=bool(confirm)),
    )


@router.post("/callback-number")
async def callback_number(
    form: TwilioForm,
    hotline: HotlineDep,
    lang: Lang = "en",
    n: Annotated[int, Query(ge=1, le=100)] = 1,
) -> Response:
    """The number a caller who withheld theirs keyed to be called back on (their `n`th)."""
    sid = _call_sid(form)
    digits = _text(form, "Digits", MAX_DIGITS)
    return await _answer_holding(
        hotline, sid, lang, lambda _: hotline.callback_number(sid, digits, lang, n)
    )


# The call back's placement (`cases.new_placing`), in the links of the call placed for it.
Placing = Annotated[str | None, Query(max_length=32, pattern=r"^[0-9a-f]+$")]


@router.post("/connect")
def connect(
    form: TwilioForm, hotline: HotlineDep, case_id: CaseId, out: int = 0, placing: Placing = None
) -> Response:
    sid = _call_sid(form)
    return _safely(
        hotline,
        sid,
        lambda: hotline.connect(
            case_id,
            outbound=bool(out),
            call_sid=sid,
            placing=placing,
            answered_by=_text(form, "AnsweredBy", 32),
            caller=_text(form, "From", 32) or None,
            called=_text(form, "To", 32) or None,
        ),
    )


@router.post("/agent-accept")
def agent_accept(
    form: TwilioForm,
    hotline: HotlineDep,
    case_id: CaseId,
    agent: Annotated[int, Query(ge=1, le=MAX_INT)],
) -> Response:
    """The agent's leg of a screened call (IVR_AGENT_SCREENING): the case said, a key to take
    it. Anything that fails here ends the agent's leg: the caller goes back to their place."""
    try:
        return _twiml(hotline.agent_accept(case_id, agent, _text(form, "Digits", MAX_DIGITS)))
    except Exception:
        log.exception(
            "agent's answer for case %s not handled; the caller goes back in line", case_id
        )
        return _twiml(engine.not_taken_twiml())


@router.post("/connect-done")
def connect_done(
    form: TwilioForm,
    hotline: HotlineDep,
    case_id: CaseId,
    out: int = 0,
    agent: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
    placing: Placing = None,
) -> Response:
    sid = _call_sid(form)
    status = _text(form, "DialCallStatus", 32) or "failed"
    # The caller's own call, as Twilio reports it with the Dial's end: ended, they hung up.
    gone = _text(form, "CallStatus", 32) in store.FINAL_STATUSES
    # How long the agent's phone was answered: when they picked up, for the figures.
    talked = _int(form, "DialCallDuration")
    return _safely(
        hotline,
        sid,
        lambda: hotline.connect_done(
            case_id,
            status,
            outbound=bool(out),
            agent_id=agent,
            caller_gone=gone,
            call_sid=sid,
            placing=placing,
            talked=talked,
        ),
    )


@router.post("/transfer")
def transfer(form: TwilioForm, hotline: HotlineDep, case_id: CaseId) -> Response:
    """The caller's call, redirected out of their agent's <Dial> by the agent's transfer."""
    sid = _call_sid(form)
    gone = _text(form, "CallStatus", 32) in store.FINAL_STATUSES
    return _safely(
        hotline, sid, lambda: hotline.transferred(case_id, caller_gone=gone, call_sid=sid)
    )


@router.post("/callback-status", status_code=204)
def callback_status(
    form: TwilioForm, hotline: HotlineDep, case_id: CaseId, placing: Placing = None
) -> Response:
    """The status callback of an outbound call-back: unanswered puts the case back in line."""
    try:
        hotline.callback_status(
            case_id, _text(form, "CallStatus", 32), _text(form, "CallSid", 64), placing
        )
    except Exception:
        log.exception("call-back status for case %s not recorded", case_id)
    return Response(status_code=204)


@router.post("/recording", status_code=204)
def recording(form: TwilioForm, hotline: HotlineDep, case_id: CaseId) -> Response:
    """Twilio's recording status callback for a call with an agent (IVR_RECORD_AGENT_CALLS):
    where the recording is, kept with the case."""
    url = _text(form, "RecordingUrl", 255) or None
    try:
        kept = hotline.recorded(
            case_id,
            recording_sid=_text(form, "RecordingSid", 64),
            call_sid=_text(form, "CallSid", 64),
            status=_text(form, "RecordingStatus", 16),
            url=url,
            seconds=_int(form, "RecordingDuration"),
        )
        if kept == "refused":
            log.warning("a recording report for case %s is not one of ours: not kept", case_id)
    except Exception:
        log.exception("recording for case %s not recorded", case_id)
    return Response(status_code=204)


@router.post("/sms")
def sms(form: TwilioForm, hotline: HotlineDep) -> Response:
    """A text to the hotline's number (its Messaging webhook, "A message comes in"): an
    on-call number replying to a page with its code says they are coming, and is texted
    back; a text from anyone else gets no answer."""
    try:
        reply = hotline.page_texted(_text(form, "From", 32), _text(form, "Body", MAX_TEXT))
    except Exception:
        log.exception("a text to the hotline was not answered")
        reply = None
    return _twiml(engine.text_reply_twiml(reply))


@router.post("/page-status", status_code=204)
def page_status(
    form: TwilioForm,
    hotline: HotlineDep,
    page: Annotated[int, Query(ge=1, le=MAX_INT)],
    by: Annotated[oncall.By, Query()],
) -> Response:
    """The status callback of a page's text (MessageStatus) or call (CallStatus) to an
    on-call number, its `To`: a page that reached nobody is sent again a minute later."""
    status = _text(form, "MessageStatus" if by == "sms" else "CallStatus", 32)
    try:
        error = _text(form, "ErrorCode", 8) or None
        answered_by = _text(form, "AnsweredBy", 32) or None
        hotline.page_reported(
            page, by, _text(form, "To", 32), status, error, answered_by=answered_by
        )
    except Exception:
        log.exception("the report of page %s's %s was not recorded", page, by)
    return Response(status_code=204)


@router.post("/page-ack")
def page_ack(
    form: TwilioForm,
    hotline: HotlineDep,
    page: Annotated[int, Query(ge=1, le=MAX_INT)],
    again: Annotated[int, Query(ge=0, le=1)] = 0,
) -> Response:
    """A key pressed on a call that paged the on-call (IVR_PAGE_CALL): 1 says "I am coming".
    The on-call phone Twilio rang is the call's `To`."""
    try:
        digits = _text(form, "Digits", MAX_DIGITS)
        number = _text(form, "To", 32)
        return _twiml(hotline.page_answered(page, digits, number, again=bool(again)))
    except Exception:
        log.exception("the answer to page %s was not recorded", page)
        return _twiml(engine.page_answer_twiml(oncall.NOT_RECORDED_SPEECH))


@router.post("/status", status_code=204)
async def status(form: TwilioForm, hotline: HotlineDep) -> Response:
    sid = _call_sid(form)
    call_status = _text(form, "CallStatus", 32)
    duration, sequence = _int(form, "CallDuration"), _int(form, "SequenceNumber")
    try:
        await _run(
            hotline,
            lambda may_block: hotline.status(
                sid, call_status, duration=duration, sequence=sequence, may_block=may_block
            ),
        )
    except Exception:
        # Twilio retries nothing here and nobody is listening on the line; a call left open
        # is closed by age later.
        log.exception("status callback for %s not recorded", sid)
    return Response(status_code=204)


@router.post("/fallback")
async def fallback(form: TwilioForm, hotline: HotlineDep) -> Response:
    """Twilio could not fetch or run a webhook's TwiML (`ErrorUrl`, `ErrorCode`: a proxy's
    502, a reset, a timeout). async: no worker thread needed, so it answers even when every
    thread waits on the database. A caller holding in a queue keeps holding (an <Enqueue>
    there would end their wait with an error); anyone else reaches the agent queue."""
    try:
        failed = urlsplit(_text(form, "ErrorUrl", 2048))
    except ValueError:  # "http://[::1/...": the last resort must answer all the same
        failed = urlsplit("")
    sid, code = _text(form, "CallSid", 64), _text(form, "ErrorCode", 16)
    log.warning(
        "Twilio reached the fallback for call %s: error %s at %s",
        sid if engine.CALL_SID.match(sid) else "unknown",
        code if code.isascii() and code.isdigit() else "unknown",
        # The path alone: its query may name a case.
        failed.path if failed.path.isprintable() else "an unreadable URL",
    )
    if failed.path.endswith(tuple(HOLDING_PATHS)):
        lang = dict(parse_qsl(failed.query)).get("lang")
        return _twiml(hotline.hold_from_memory(lang))
    return _twiml(hotline.fallback(_text(form, "From", 64) or None))


def media_client(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The HTTP client that fetches recordings from Twilio, with the account's credentials:
    on the event loop, so a slow Twilio holds up no webhook's thread. Should Twilio answer
    with a redirect to its storage, httpx follows it without them: they go to the host they
    were given for only."""
    return httpx.AsyncClient(
        auth=(settings.twilio_account_sid, settings.twilio_auth_token),
        timeout=TWILIO_REST_TIMEOUT,
        follow_redirects=True,
        transport=transport,
    )


def rest_retries() -> Retry:
    """What is asked of Twilio's REST API again, at once: a 429 (Twilio did nothing, and says
    it is always safe to ask again) and a connection never made; twice, at once then a second
    later (Retry-After is not waited for: an agent or a page is waiting). Never a request
    that may have reached Twilio (a read timeout, a 5xx, a connection lost after sending):
    a text would go twice, a customer be rung twice."""
    return Retry(
        total=2,
        connect=2,
        read=False,  # re-raised as it is: a read timeout is requests' ReadTimeout
        redirect=0,
        status=2,
        other=0,
        allowed_methods=None,  # every method: what is retried was never taken
        status_forcelist=(429,),
        backoff_factor=0.5,
        respect_retry_after_header=False,
        raise_on_status=False,  # the last 429 is the twilio library's to raise
    )


TWILIO_CONNECT_TIMEOUT = 3.0  # seconds: a connection to api.twilio.com takes well under one


class TwilioAdapter(HTTPAdapter):
    """requests' adapter for Twilio's REST API: `rest_retries`, and a connect timeout of its
    own. The twilio library passes one number, which requests would apply to the connection
    and to the answer alike: three tries to connect to an unreachable Twilio at 10 s each would
    hold an agent's claim, or a page's turn (`oncall.SEND_AT_MOST`), half a minute."""

    def __init__(self, connect_timeout: float = TWILIO_CONNECT_TIMEOUT) -> None:
        super().__init__(max_retries=rest_retries())
        self.connect_timeout = connect_timeout

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        if isinstance(timeout, int | float):
            timeout = (min(self.connect_timeout, timeout), timeout)
        return super().send(request, stream, timeout, verify, cert, proxies)


def rest_client(settings: Settings | TwilioAccount) -> Client:
    """Twilio's REST client for the account. With a timeout: a REST call that hangs must not
    hold up an agent's claim (or every offer to the available agents) for ever."""
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    http = TwilioHttpClient(timeout=TWILIO_REST_TIMEOUT)
    assert http.session is not None  # pool_connections, the default
    http.session.mount("https://", TwilioAdapter())
    return Client(settings.twilio_account_sid, settings.twilio_auth_token, http_client=http)


def create_app(
    settings: Settings,
    *,
    tree: CompiledTree | None = None,
    db: Engine | None = None,
    clock: Clock = utcnow,
    identity: IdentityProvider | None = None,
    actions: AccountActions | None = None,
    twilio: TwilioRest | None = None,
    http: httpx.Client | None = None,
    media: httpx.AsyncClient | None = None,
    make_live: bool = True,
    queues_sized: bool = True,
) -> FastAPI:
    """The ASGI app. Raises SourceError for a bad tree: the server must not start on one.
    `make_live`: at start, `tree` becomes the live version everywhere (the tree file's);
    not for a tree the database said is live already, which another instance may have
    replaced since (this one then follows it, as every instance does).
    `queues_sized`: `tree`'s Twilio queues hold Twilio's most already (`ivr serve` sized
    them); False: the app's job sizes them (Twilio failed `ivr serve`). Either way, the job
    sizes each queue a later tree adds.

    Every outside party is a parameter (the database, the clock, the identity endpoint's HTTP
    client, the Twilio REST client, the HTTP client that fetches recordings from Twilio):
    tests pass their own instead of patching."""
    tree = tree or load_tree(settings.routes, settings.prompts_dir)
    refused = prompts_refused(settings, tree)
    if refused is not None:
        raise refused
    db = db or engine_from_settings(settings)
    if settings.identity_url and settings.identity_key:
        client = http or httpx.Client(timeout=settings.identity_timeout)
        url = str(settings.identity_url)
        identity = identity or HttpIdentity(url, settings.identity_key, client)
        actions = actions or HttpAccountActions(url, settings.identity_key, client)
    identity = identity or LocalDirectory(
        db, settings.secret_key, hashing_at_once=settings.hashing_at_once
    )
    actions = actions or LocalAccountActions(db)
    if twilio is None and settings.twilio_account_sid:
        twilio = rest_client(settings)
    if media is None and settings.twilio_account_sid:
        media = media_client(settings)
    hotline = Hotline(
        settings,
        tree,
        db,
        identity=identity,
        actions=actions,
        twilio=twilio,
        media=media,
        clock=clock,
    )
    if queues_sized:
        hotline.sized_queues = {*tree.queues, settings.fallback_queue}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = worker_threads(db)
        try:
            if make_live:
                await run_in_threadpool(hotline.record_tree, "startup")
        except Exception:
            log.exception("could not record tree version %s", tree.version)
        try:
            await run_in_threadpool(hotline.warm_trees)
        except Exception:  # each call's webhook builds its tree itself then, in a thread
            log.exception("could not build the tree versions of calls in progress")
        await _sweep_once(hotline)
        follow = Following()
        await follow(hotline)  # the announcement another instance set before this one started
        tasks = [
            asyncio.create_task(_every(settings.sweep_interval_seconds, _sweep_once, hotline)),
            asyncio.create_task(_every(settings.tree_sync_seconds, follow, hotline)),
            asyncio.create_task(_every(settings.dispatch_seconds, Dispatching(), hotline)),
            asyncio.create_task(_every(settings.tree_sync_seconds, Paging(), hotline)),
        ]
        if hotline.twilio is not None:
            tasks.append(asyncio.create_task(_every(settings.tree_sync_seconds, Sizing(), hotline)))
        if settings.text_tickets:
            tasks.append(
                asyncio.create_task(_every(settings.tree_sync_seconds, Texting(), hotline))
            )
        tasks.append(
            asyncio.create_task(_every(settings.sweep_interval_seconds, Purging(), hotline))
        )
        if settings.watch_routes:
            tasks.append(asyncio.create_task(_watch(hotline)))
        loop = asyncio.get_running_loop()
        hup = False
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            # SIGHUP reloads the tree file, as for most daemons (only in the main thread).
            loop.add_signal_handler(
                signal.SIGHUP, lambda: tasks.append(asyncio.create_task(_reload(hotline, "SIGHUP")))
            )
            hup = True
        yield
        if hup:
            loop.remove_signal_handler(signal.SIGHUP)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    docs = settings.serves_api_docs
    app = FastAPI(
        title="Exchange support hotline (IVR)",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.add_middleware(WebhookDeadline, hotline=hotline, seconds=settings.webhook_deadline_seconds)
    app.add_middleware(WebhookTimer, metrics=hotline.metrics)
    app.add_middleware(BodyLimit, limit=MAX_BODY)  # outermost: before anything reads a body
    app.state.hotline = hotline
    app.state.validators = [
        RequestValidator(token)
        for token in (settings.twilio_auth_token, settings.twilio_auth_token_next)
        if token
    ]
    app.state.refused_said = Throttled()
    app.include_router(router)
    app.include_router(api_router)
    app.include_router(dashboard_router)
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="dashboard-static")

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    def metrics(credentials: ScrapeCredentials) -> Response:
        expected = settings.metrics_token
        if not expected and not settings.serves_open_metrics:
            raise HTTPException(status_code=404)  # as for any path there is nothing at
        if expected and not (
            credentials
            and secrets.compare_digest(credentials.credentials.encode(), expected.encode())
        ):
            return Response(status_code=401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        return Response(generate_latest(hotline.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        # On the event loop, not a worker thread: it answers even while every thread waits
        # on the database, which is what a liveness probe must tell apart from a hung process.
        return {"status": "ok", "tree": hotline.trees.current.version}

    @app.get("/readyz", tags=["ops"])
    def readyz() -> Response:
        try:
            with hotline.db.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            return Response(
                '{"status": "database unavailable"}', status_code=503, media_type="application/json"
            )
        return Response('{"status": "ready"}', media_type="application/json")

    return app


class WebhookDeadline:
    """Answers a Twilio webhook from memory when the real answer is late.

    Twilio gives up on a webhook after 15 s and plays its own error. A database that hangs
    without dropping the connection, or every worker thread busy, can hold a webhook longer
    than any of our timeouts: after `seconds` the caller gets the fallback (an apology and an
    agent queue), the hold loop keeps holding, a callback gets 204. The late work goes on and
    its answer is dropped; the call's step guard makes anything it stored harmless.

    Only a request Twilio signed is answered so (`twilio_form` says when it has checked):
    a stranger's request that trickles its body past the deadline gets nothing from memory,
    nor an error logged or counted as a late webhook."""

    def __init__(self, app: ASGIApp, hotline: Hotline, seconds: float) -> None:
        self.app = app
        self.hotline = hotline
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path not in TWILIO_PATHS:
            await self.app(scope, receive, send)
            return
        # A timer, not a task per webhook: on SQLite most webhooks answer on the event loop
        # in well under a millisecond, and a task with wait_for cost more than some of them.
        late = False
        answering = False
        answer_from_memory: asyncio.Task[None] | None = None
        state = scope.setdefault("state", {})  # request.state, whatever copies the scope
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle

        async def send_unless_late(message: Message) -> None:
            nonlocal answering
            if late:
                return
            answering = True
            await send(message)

        def deadline() -> None:
            nonlocal late, answer_from_memory, timer
            if answering:  # already half sent: let it finish
                return
            if not state.get("twilio_signed"):
                # Not (yet) known to be Twilio's: nothing is said for it. Looked at again
                # shortly, as a signed body slow to arrive is still owed an answer in time.
                timer = loop.call_later(UNSIGNED_RECHECK, deadline)
                return
            late = True
            log.error("webhook %s took over %g s; answered from memory", path, self.seconds)
            self.hotline.metrics.late_webhooks.inc()
            answer_from_memory = asyncio.ensure_future(self._from_memory(path, scope, send))

        timer = loop.call_later(self.seconds, deadline)
        try:
            await self.app(scope, receive, send_unless_late)
        except Exception:
            if not late:
                raise
            # The caller has their answer already; the late work's failure is only logged.
            log.exception("a late webhook failed too")
        finally:
            timer.cancel()
            if answer_from_memory is not None:
                await answer_from_memory

    async def _from_memory(self, path: str, scope: Scope, send: Send) -> None:
        if path in CALLBACK_PATHS:
            response = Response(status_code=204)
        elif path == "/twilio/agent-accept":
            response = _twiml(engine.not_taken_twiml())  # the caller goes back to their place
        elif path == "/twilio/sms":
            # Nothing known of who texted: no answer (the late work may still record it).
            response = _twiml(engine.text_reply_twiml(None))
        elif path == "/twilio/page-ack":
            # The late work may still record the key: the on-call are told to make sure.
            response = _twiml(engine.page_answer_twiml(oncall.NOT_RECORDED_SPEECH))
        elif path in HOLDING_PATHS:  # a caller in a queue: a hold round, not <Enqueue>
            lang = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))).get("lang")
            response = _twiml(self.hotline.hold_from_memory(lang))
        else:
            response = _twiml(self.hotline.fallback())

        async def nothing_more() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, nothing_more, send)


class BodyLimit:
    """Refuses any request body over `limit` bytes (413), on every path, before a route, a
    form parser or a sign-in check reads it: FastAPI reads a JSON or form body whole (a form's
    files to a temporary file) before the route's dependencies run, so a stranger's 300 MB
    would cost memory or disk first and 401 after. By Content-Length up front, and counted as
    it arrives (a chunked body has none)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The header scanned as it is: no dict of them all built on every webhook.
        length = next((v for k, v in scope["headers"] if k == b"content-length"), b"")
        if length.isdigit() and int(length) > self.limit:
            await _too_large(scope, send)
            return
        seen = 0
        started = refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit and not refused:
                    refused = True
                    if not started:
                        await _too_large(scope, send)
                    # The route sees the client gone: it stops reading and answers nobody.
                    return {"type": "http.disconnect"}
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 went out instead
            started = True
            await send(message)

        try:
            await self.app(scope, counted, sending)
        except Exception:
            if not refused:
                raise
            # The route failed on the client "gone" (ClientDisconnect): answered already.


async def _too_large(scope: Scope, send: Send) -> None:
    response = JSONResponse({"detail": "request body too large"}, status_code=413)
    await response(scope, _disconnected, send)


async def _disconnected() -> Message:
    return {"type": "http.disconnect"}


class WebhookTimer:
    """Times each Twilio webhook (pure ASGI: no per-request task or body copy)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/twilio/"):
            await self.app(scope, receive, send)
            return
        endpoint = path if path in TWILIO_PATHS else "other"  # no label per probed path
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.metrics.webhook_seconds.labels(endpoint).observe(time.perf_counter() - started)


async def _sweep_once(hotline: Hotline) -> None:
    try:
        closed = await run_in_threadpool(hotline.close_stale_calls)
        if closed:
            log.info("closed %d calls with no final status callback", closed)
        transfers = await run_in_threadpool(hotline.finish_stale_transfers)
        if transfers:
            log.warning("%d transfers of calls that ended are in line for a call back", transfers)
        offers = await run_in_threadpool(hotline.requeue_stale_offers)
        if offers:
            log.warning("%d cases taken by agents but never connected are back in line", offers)
        await run_in_threadpool(hotline.prune_failures)
        await run_in_threadpool(hotline.prune_sessions)
    except Exception:
        log.exception("the sweep failed; will try again")


async def _every(
    seconds: float, job: Callable[[Hotline], Awaitable[None]], hotline: Hotline
) -> None:
    while True:
        await asyncio.sleep(seconds)
        await job(hotline)


class Outage:
    """A timed job's failures, told without burying the log while the database is down: the
    first with its traceback, then one line a minute, then that it works again."""

    def __init__(self, what: str, every: float = 60.0) -> None:
        self.what = what
        self.every = every
        self.since: float | None = None
        self.told = 0.0
        self.tries = 0

    def failed(self) -> None:
        """Call from the `except` block: the first failure's traceback is logged."""
        now = time.monotonic()
        self.tries += 1
        if self.since is None:
            self.since = self.told = now
            log.exception("could not %s; will try again", self.what)
        elif now - self.told >= self.every:
            self.told = now
            log.warning(
                "still cannot %s: %d tries in %.0f s", self.what, self.tries, now - self.since
            )

    def worked(self) -> None:
        if self.since is not None:
            log.warning("can %s again, after %d failed tries", self.what, self.tries)
        self.since, self.tries = None, 0


# One each for the jobs that wait on Twilio (offering, paging, texting, sizing queues, the
# purge deleting recordings): each job's rounds run one after another, so none waits for
# another's thread (a purge asking a slow Twilio never holds a page back).
TWILIO_JOB_THREADS = 5
_TWILIO_JOBS: RunVar[anyio.CapacityLimiter] = RunVar("ivr_twilio_jobs")


class TimedJobs:
    """Jobs an instance runs on a timer (`_every`), each in a thread: they read the database,
    or wait on Twilio's REST API. A job that fails is told as an outage, and tried again at
    the next round."""

    jobs: tuple[tuple[Outage, Callable[[Hotline], object]], ...] = ()
    # Jobs that may wait on Twilio's REST API run on threads of their own: not the webhooks'
    # (a slow Twilio must not hold up a caller's menu), nor the agents' (`rest_limiter`: a
    # round of texting, which lasts up to IVR_TREE_SYNC, must not hold up a claim).
    waits_on_twilio = False

    async def __call__(self, hotline: Hotline) -> None:
        limiter = loop_limiter(_TWILIO_JOBS, TWILIO_JOB_THREADS) if self.waits_on_twilio else None
        for outage, job in self.jobs:
            try:
                await anyio.to_thread.run_sync(job, hotline, limiter=limiter)
            except Exception:
                outage.failed()
            else:
                outage.worked()


class Following(TimedJobs):
    """What every instance follows from the database every IVR_TREE_SYNC seconds: the live
    tree version, the announcement, the agents at work, whether the other instances' settings
    agree with its own. A job that fails keeps what it had
    (the tree, the announcement until it expires, the last figures)."""

    def __init__(self) -> None:
        self.jobs = (
            (Outage("check the live call-tree version"), Hotline.follow_active_version),
            (Outage("check the announcement"), Hotline.refresh_announcement),
            (Outage("count the agents at work"), Hotline.refresh_staffing),
            (Outage("compare the instances' settings"), Hotline.compare_instances),
        )


class Paging(TimedJobs):
    """Page the on-call if an emergency was left waiting (`Hotline.page_on_call`), every
    IVR_TREE_SYNC seconds: a job of its own, as sending may wait on Twilio's REST API."""

    waits_on_twilio = True

    def __init__(self) -> None:
        self.jobs = ((Outage("page the on-call"), Hotline.page_on_call),)


class Texting(TimedJobs):
    """Text callers their tickets (`Hotline.text_tickets`, IVR_TEXT_TICKETS) every
    IVR_TREE_SYNC seconds: a job of its own, as sending waits on Twilio's REST API."""

    waits_on_twilio = True

    def __init__(self) -> None:
        self.jobs = ((Outage("text callers their tickets"), Hotline.text_tickets),)


class Dispatching(TimedJobs):
    """Offer the cases in line to the available agents (`Hotline.dispatch`) every
    IVR_DISPATCH_INTERVAL seconds."""

    waits_on_twilio = True

    def __init__(self) -> None:
        self.jobs = ((Outage("offer cases to the available agents"), Hotline.dispatch),)


class Sizing(TimedJobs):
    """Make the live tree's Twilio queues hold Twilio's most callers (`Hotline.size_queues`)
    every IVR_TREE_SYNC seconds: a queue a reload added, or one Twilio failed to size, once
    each per instance."""

    waits_on_twilio = True

    def __init__(self) -> None:
        self.jobs = ((Outage("size Twilio's queues"), Hotline.size_queues),)


class Purging(TimedJobs):
    """Delete caller data older than IVR_RETENTION_DAYS, and recordings at Twilio older than
    IVR_RECORDING_RETENTION_DAYS (`ivr.retention.Daily`): looked at every sweep, done once a
    day per instance; never while both are 0. Deleting recordings waits on Twilio's REST
    API: on the Twilio jobs' threads, not the webhooks'."""

    waits_on_twilio = True

    def __init__(self) -> None:
        self.jobs = ((Outage("purge old caller data"), retention.Daily()),)


async def _reload(hotline: Hotline, why: str) -> None:
    """Reload from the files; a bad tree is logged with file:line and the old one stays live."""
    try:
        await run_in_threadpool(hotline.reload, by=why)
    except SourceError as exc:
        log.error("%s: the new call tree is refused, the old one stays live:\n%s", why, exc)
    except Exception:
        log.exception("%s: reloading the call tree failed; the old one stays live", why)


def _sources(settings: Settings) -> dict[str, float]:
    # The catalogs as they are loaded: an editor's lock or backup file is none of them.
    paths = [settings.routes, *catalog_files(settings.prompts_dir)]
    return {str(p): p.stat().st_mtime for p in paths if p.exists()}


async def _watch(hotline: Hotline) -> None:
    seen = _sources(hotline.settings)
    while True:
        await asyncio.sleep(2)
        now = _sources(hotline.settings)
        if now != seen:
            seen = now
            await _reload(hotline, "file change")
