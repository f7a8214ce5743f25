"""The web dashboard: the agent's desk, live queue, call log and timelines, figures, and the
call-tree picture.

Server-rendered HTML (Jinja2, autoescaped) over the same functions as the JSON API: the queue,
the call list and the timeline are the API's own route functions called directly, so masking
and filtering are exactly the API's; the figures are `ivr.stats.figures`. Sign-in is with a
user's API token, kept in an HttpOnly, SameSite=Strict cookie. Every page is sent with a
strict Content-Security-Policy: no inline script, no inline style, nothing from elsewhere.
Wrong tokens, typed at sign-in or sent as a session cookie, count against the client address
with the JSON API's (`ivr.deps.staff_user`): past the limit they are answered 429 for a while;
a right token still signs in.

Wire it into the app with the router and the static files:

    app.include_router(router)
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="dashboard-static")
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

import jinja2
from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match
from starlette.types import Scope

from ivr import api, calllog, engine, graph, oncall, recordings, stats
from ivr.cases import (
    AWAY_SIGNED_OUT,
    HELD,
    MISSED_OFFER,
    NOT_ACCEPTED,
    NOTE_AT_MOST,
    User,
    get_case,
    languages_typed,
    session_by_secret,
    sign_out,
    user_by_session,
)
from ivr.db import in_utc
from ivr.deps import (
    MAX_TOKEN,
    Blocked,
    HotlineDep,
    TokenExpired,
    dashboard_sign_in,
    off_the_webhooks,
    reporting,
    staff_user,
    wrong_token,
)
from ivr.hotline import Hotline
from ivr.numbers import last4
from ivr.tree import CompiledTree

HERE = Path(__file__).resolve().parent
TEMPLATE_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
PREFIX = "/dashboard"
STATIC_PATH = f"{PREFIX}/static"
LOGIN_PATH = f"{PREFIX}/login"
COOKIE = "ivr_session"
SESSION_SECONDS = 8 * 3600
REFRESH_SECONDS = 5
OFFER_REFRESH_SECONDS = 2  # an available agent's desk, with 30 s to accept what comes (28 at worst)
PAGE_SIZE = 50
MAX_CURSOR = 200
MAX_PERIOD = api.MAX_PERIOD
WEEK_AFTER_TIME = datetime.min.replace(tzinfo=UTC) + timedelta(days=7)  # "last 7 days" from here
MAX_BARS = 48
BUCKET_HOURS = (1, 2, 3, 4, 6, 12, 24)
# An incident is read over the last hour, in bars short enough to show it turn.
RECENT = timedelta(hours=1)
RECENT_BAR = timedelta(minutes=5)

STAFF = ("agent", "supervisor")
SUPERVISORS = ("supervisor",)
TREE_ROLES = ("operator", "supervisor")
PAGES = (
    ("Desk", f"{PREFIX}/desk", ("agent",)),
    ("Queue", f"{PREFIX}/queue", STAFF),
    ("Calls", f"{PREFIX}/calls", STAFF),
    ("Figures", f"{PREFIX}/figures", STAFF),
    ("Freezes", f"{PREFIX}/freezes", SUPERVISORS),
    ("Audit", f"{PREFIX}/audit", SUPERVISORS),
    ("Call tree", f"{PREFIX}/tree", TREE_ROLES),
)
CALL_FILTERS = tuple(f.name for f in dataclasses.fields(api.CallQuery))
AUDIT_FILTERS = tuple(f.name for f in dataclasses.fields(api.AuditQuery))

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make Origin "null"
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",  # pages hold callers' cases
    # Browsers keep to https for the host from then: nobody on the café's Wi-Fi serves the
    # sign-in page over plain http to read a token typed in. Ignored over plain http (a
    # developer's 127.0.0.1), as RFC 6797 says; no subdomains (the exchange's other hosts).
    "Strict-Transport-Security": "max-age=31536000",
}

router = APIRouter(prefix=PREFIX, include_in_schema=False)


# -- formatting ------------------------------------------------------------------------------


def clock_text(seconds: float | None) -> str:
    """A wait as mm:ss (minutes are not wrapped into hours: 75:03 is 75 minutes)."""
    if seconds is None:
        return "n/a"
    whole = max(0, int(seconds))
    return f"{whole // 60:02d}:{whole % 60:02d}"


def when_text(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S", zone: tzinfo = UTC) -> str:
    if moment is None:
        return ""
    return (moment.astimezone(zone) if moment.tzinfo else moment).strftime(fmt)


@jinja2.pass_context
def when_shown(
    context: jinja2.runtime.Context, moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S"
) -> str:
    """A time on the clock of the hotline's zone (`IVR_REPORT_TZ`), as every page says."""
    return when_text(moment, fmt, context.get("clock_zone", UTC))


def percent_text(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.1f} %"


def seconds_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} s"


def label_text(value: str | None) -> str:
    """A stored identifier as a person reads it: `not_attempted` -> `not attempted`."""
    return (value or "").replace("_", " ")


# Chinese (CJK ideographs, their punctuation, full-width forms), runs joined by the spaces
# and ASCII punctuation typed between them: "客户确认账户被盗, 已冻结" is one run.
CJK_RUN = re.compile(
    r"[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]+"
    r"(?:[ ,.;:!?]+[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]+)*"
)


def cjk_marked(text: object) -> Markup:
    """Free text staff typed (notes, reasons), escaped, with each run of Chinese marked
    lang="zh": a screen reader speaks it with a Chinese voice, not the page's English one."""
    escaped = str(escape("" if text is None else text))
    return Markup(CJK_RUN.sub(lambda m: f'<span lang="zh">{m.group(0)}</span>', escaped))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        mmss=clock_text,
        minutes_said=engine.minutes_said,
        when=when_shown,
        pct=percent_text,
        secs=seconds_text,
        label=label_text,
        cjk=cjk_marked,
    )
    return env


templates = Jinja2Templates(env=_environment())


# -- sessions and pages ---------------------------------------------------------------------


def _nav(user: User | None, path: str) -> list[dict[str, Any]]:
    if user is None:
        return []
    return [
        {"label": label, "href": href, "current": path.startswith(href)}
        for label, href, roles in PAGES
        if user.role in roles
    ]


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    user: User | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    left = session_left(request) if user is not None else None
    zone = request.app.state.hotline.zone
    page = {
        "user": user,
        "nav": _nav(user, request.url.path),
        "static": STATIC_PATH,
        "prefix": PREFIX,
        "session_left": left,
        "clock_zone": zone,
        "clock_zone_name": zone.key,
        **context,
    }
    sent = {**SECURITY_HEADERS, **(headers or {})}
    if left is not None:
        # Read by the live parts' script at every refresh: the warning before the sign-in
        # ends follows the server's clock, and a sign-in made anew in another tab.
        sent[SESSION_LEFT_HEADER] = str(left)
    return templates.TemplateResponse(request, name, page, status_code=status, headers=sent)


SESSION_LEFT_HEADER = "X-Session-Left"


def session_left(request: Request) -> int | None:
    """Whole seconds until the browser's sign-in ends (sessions are not extended by use):
    the pages warn before, so nobody is surprised mid-call. As `session_user` read it for
    this request (no second read of the session); None without a live session."""
    ends: datetime | None = getattr(request.state, "session_ends", None)
    if ends is None:
        return None
    hotline: Hotline = request.app.state.hotline
    return max(0, int((ends - hotline.clock()).total_seconds()))


def _message(heading: str, message: str) -> dict[str, str]:
    return {"heading": heading, "message": message}


def redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303, headers=SECURITY_HEADERS)


def check_token(request: Request, hotline: Hotline, token: str) -> User | None:
    """The user a typed token or the session cookie belongs to (see `ivr.deps.staff_user`)."""
    return staff_user(request, hotline, token, "dashboard")


def blocked_page(request: Request, blocked: Blocked) -> Response:
    minutes = max(1, math.ceil(blocked.wait / 60))
    return render(
        request,
        "login.html",
        {
            "error": "Too many wrong tokens were tried from your address. "
            f"Try again in {minutes} minute{'s' if minutes > 1 else ''}."
        },
        status=429,
        headers={"Retry-After": str(blocked.wait)},
    )


def session_user(request: Request, hotline: Hotline) -> User | None:
    """The user of the session cookie, None without one (or with one signed out, expired, or
    of a revoked user: counted as a wrong token, so raises Blocked as check_token does)."""
    secret = request.cookies.get(COOKIE, "")
    if not secret:
        return None
    found = None
    if len(secret) <= MAX_TOKEN:
        with hotline.db.connect() as conn:
            found = session_by_secret(conn, secret=secret, now=hotline.clock())
    if found is None:
        wrong_token(request, hotline, "dashboard")
        return None
    request.state.session_ends = found.ends  # for the page's warning (`session_left`)
    return found.user


def signed_out(request: Request) -> RedirectResponse:
    """To the sign-in page, dropping a cookie that holds no valid token (so a browser with a
    stale one is counted once, not at every refresh)."""
    response = redirect(LOGIN_PATH)
    if COOKIE in request.cookies:
        _drop_session(request, response)
    return response


def _secure(request: Request) -> bool:
    """Whether the session cookie goes over https only: always once the hotline's public URL
    is https, even if a proxy failed to say the request came so (X-Forwarded-Proto)."""
    hotline: Hotline = request.app.state.hotline
    return request.url.scheme == "https" or hotline.settings.public_https


def _drop_session(request: Request, response: Response) -> None:
    """Tell the browser to forget the session cookie (the same attributes it was set with)."""
    response.delete_cookie(
        COOKIE,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def gate(request: Request, hotline: Hotline, roles: Sequence[str]) -> User | Response:
    """The signed-in user if their role may see the page; otherwise the answer to send."""
    try:
        user = session_user(request, hotline)
    except Blocked as blocked:
        return blocked_page(request, blocked)
    if user is None:
        return signed_out(request)
    if user.role not in roles:
        return render(
            request,
            "error.html",
            _message(
                "Not for your role",
                f"This page is for the role {' or '.join(roles)}; "
                f"you are signed in as {user.name} ({user.role}).",
            ),
            user=user,
            status=403,
        )
    return user


def home(user: User) -> str:
    return {"operator": f"{PREFIX}/tree", "agent": f"{PREFIX}/desk"}.get(
        user.role, f"{PREFIX}/queue"
    )


def same_origin(request: Request, hotline: Hotline) -> bool:
    """A browser's POST comes from our own pages (the cookie is SameSite=Strict as well)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser, or one that sends no Origin: SameSite still holds
    # Scheme and host: our host over plain http, on an https hotline, is a page anyone on
    # the network can answer with, and a browser that calls both schemes of one host the
    # same site sends it the cookie. (Behind a proxy, uvicorn's proxy headers give the
    # request the scheme the browser used.)
    public = urlsplit(hotline.settings.base_url)
    allowed = {
        (request.url.scheme, request.headers.get("host", "")),
        (public.scheme, public.netloc),
    }
    seen = urlsplit(origin)
    return (seen.scheme, seen.netloc) in {(scheme, host) for scheme, host in allowed if host}


@router.get("")
def index(request: Request, hotline: HotlineDep) -> Response:
    try:
        user = session_user(request, hotline)
    except Blocked as blocked:
        return blocked_page(request, blocked)
    return redirect(home(user)) if user else signed_out(request)


@router.get("/login")
def login_form(request: Request) -> Response:
    return render(request, "login.html", {"error": None})


@router.post("/login")
def login(request: Request, hotline: HotlineDep, token: Annotated[str, Form()] = "") -> Response:
    if not same_origin(request, hotline):
        return render(request, "login.html", {"error": "Sign in from this site."}, status=403)
    token = token.strip()
    try:
        user = check_token(request, hotline, token) if token else None
    except Blocked as blocked:
        return blocked_page(request, blocked)
    except TokenExpired:
        return render(
            request,
            "login.html",
            {"error": "That token has expired. Ask an operator for a new one."},
            status=401,
        )
    if user is None:
        return render(
            request,
            "login.html",
            {"error": "That token is not valid. Check it and try again."},
            status=401,
        )
    replacing = request.cookies.get(COOKIE, "")
    secret = dashboard_sign_in(
        request,
        hotline,
        user,
        lasts=timedelta(seconds=SESSION_SECONDS),
        replacing=replacing if 0 < len(replacing) <= MAX_TOKEN else None,
    )
    response = redirect(home(user))
    # No Max-Age: the browser forgets the cookie when it closes (a shared computer); the
    # session itself ends on the server SESSION_SECONDS after the sign-in whatever the browser.
    response.set_cookie(
        COOKIE,
        secret,  # never the API token: a stolen cookie is one session, ended by signing out
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


@router.post("/logout")
def logout(request: Request, hotline: HotlineDep, anyway: Annotated[str, Form()] = "") -> Response:
    if not same_origin(request, hotline):
        return render(
            request, "error.html", _message("Refused", "Sign out from this site."), status=403
        )
    secret = request.cookies.get(COOKIE, "")
    if secret and len(secret) <= MAX_TOKEN:
        with hotline.db.connect() as conn:
            user = user_by_session(conn, secret=secret, now=hotline.clock())
        if user is not None and user.role in AGENTS and anyway != "yes":
            # An agent with a case (a caller on the phone, a victim's emergency) is asked
            # first, told what becomes of it: not signed out by a stray click mid-call.
            holding = [c for c in api.my_cases(user, hotline) if c.accept_by is None]
            if holding:
                return render(request, "signout.html", {"holding": holding}, user=user, status=409)
        with hotline.db.connect() as conn:
            # On the server: a copy of the cookie is void. Audited (`sign_out`).
            user = sign_out(conn, secret=secret, now=hotline.clock())
        if user is not None and user.role in AGENTS:
            # Gone from the desk: no case may ring their phone until they are back.
            hotline.set_available(user, False, why=AWAY_SIGNED_OUT)
    response = redirect(LOGIN_PATH)
    _drop_session(request, response)
    # The desk's unsent notes (sessionStorage): not for whoever signs in next in this tab.
    response.headers["Clear-Site-Data"] = '"storage"'
    return response


# -- the live queue -------------------------------------------------------------------------


PAGED_SHOWN = timedelta(hours=1)
# The pages the queue page lists for the next shift: a night's, whether anyone came.
PAGES_LISTED_OVER = timedelta(hours=12)


TARGETS = api.QUEUE_TARGETS  # the figures' service-level targets, by default


def late(entry: api.QueueEntry) -> bool:
    """A caller on the line who has waited past their service-level target: answered now,
    they count as late in the figures already. Or an emergency call back owed that long:
    a victim who hung up or asked to be called is no less robbed meanwhile; a call back of
    another priority has no target of its own to be late against."""
    target = TARGETS.for_priority(entry.priority).total_seconds()
    past = entry.waiting_seconds > target
    return past and (entry.status == "waiting" or entry.priority == "emergency")


VERIFICATION_ORDER = ("yes", "no", "locked", "skipped", "unavailable", "not_attempted")


def _opted_out(hotline: Hotline) -> list[dict[str, Any]]:
    """The on-call numbers opted out of texts at Twilio, by their last four digits."""
    with hotline.db.connect() as conn:
        found = oncall.opted_out_now(conn, numbers=hotline.settings.on_call_numbers)
    return [{**row, "number": last4(row["number"])} for row in found]


def _queue_context(hotline: Hotline, user: User) -> dict[str, Any]:
    line = api.waiting_line(user, hotline)
    now = hotline.clock()
    pages = api.on_call_pages(user, hotline, limit=1) if user.role == "supervisor" else []
    return {
        "entries": line.entries,
        "repeated": line.repeated,
        # Calls begun in the last 15 minutes, and in the 15 before: more coming than before?
        "arrivals": line.arrivals,
        "arrivals_minutes": int(api.ARRIVALS_OVER.total_seconds() // 60),
        # The lane's callers by verification: proved victims first in the words.
        "emergency_verification": sorted(
            line.emergency_verification.items(),
            key=lambda kv: VERIFICATION_ORDER.index(kv[0]) if kv[0] in VERIFICATION_ORDER else 99,
        ),
        # Counted in the database: the list stops at api.QUEUE_LISTED.
        "counts": line.counts,
        # The on-call paged in the last hour: whether help is on its way.
        "paged": next((p for p in pages if now - p.at < PAGED_SHOWN), None),
        # Only the latest page, while it holds the next back, can still be acknowledged.
        "page_in_force": bool(pages) and oncall.in_force(pages[0], latest=True, now=now),
        # On-call numbers Twilio will not text (they opted out): their pages only ring them.
        "opted_out": _opted_out(hotline) if user.role == "supervisor" else [],
        # Settings that must match, set otherwise on another instance alive (`ivr.instances`).
        "disagreements": hotline.disagreements if user.role == "supervisor" else [],
        "instance_name": hotline.me.name if hotline.me else "",
        "staffing": api.staffing(user, hotline),
        "agents": api.agents(user, hotline),
        "emergencies": line.counts.emergencies,
        # Listed first in serving order: every one of them, unless 500 and more wait.
        "emergency_tickets": [e.ticket for e in line.entries if e.priority == "emergency"],
        "late": line.counts.late_on_the_line,
        "late_call_backs": line.counts.late_call_backs,
        "is_late": late,
        "targets": TARGETS,
        "updated": hotline.clock(),
        "refresh": REFRESH_SECONDS,
    }


def _queue_page(
    request: Request,
    hotline: Hotline,
    user: User,
    *,
    said: str = "",
    error: str = "",
    status: int = 200,
    drafted: dict[str, str] | None = None,
) -> Response:
    context = {
        **_queue_context(hotline, user),
        # Supervisors also see the cases agents have, to take back or close: outside the part
        # that refreshes itself, so a form is never swapped away while it is filled in.
        "held": api.held(user, hotline) if user.role == "supervisor" else None,
        "pages": _pages_listed(hotline, user),
        "said": SAID.get(said, ""),
        "said_failed": said in SAID_FAILED,
        "error": error,
        "announcement": api.announcement(user, hotline) if user.role == "supervisor" else None,
        "announced_at": hotline.trees.current.announced_at,
        "languages": hotline.trees.current.catalogs.languages,
        "drafted": drafted or {},
    }
    return render(request, "queue.html", context, user=user, status=status)


def _pages_listed(hotline: Hotline, user: User) -> list[api.Page] | None:
    """The on-call pages of the last PAGES_LISTED_OVER, newest first, for a supervisor who
    takes over: one nobody acknowledged overnight is not only in the API."""
    if user.role != "supervisor":
        return None
    since = hotline.clock() - PAGES_LISTED_OVER
    return [p for p in api.on_call_pages(user, hotline, limit=100) if p.at >= since]


def _queue_done(said: str) -> RedirectResponse:
    return redirect(f"{PREFIX}/queue?{urlencode({'said': said})}")


@router.get("/queue")
def queue_page(request: Request, hotline: HotlineDep, said: str = "") -> Response:
    user = gate(request, hotline, STAFF)
    if isinstance(user, Response):
        return user
    return _queue_page(request, hotline, user, said=said)


@router.post("/announcement")
async def announcement_set(request: Request, hotline: HotlineDep) -> Response:
    """A supervisor sets what every caller hears first (the form has a text per language)."""
    user = await run_in_threadpool(_acting, request, hotline, SUPERVISORS)
    if isinstance(user, Response):
        return user
    form = await request.form()
    texts = {
        lang: str(form.get(f"text-{lang}", "")) for lang in hotline.trees.current.catalogs.languages
    }
    try:
        body = api.AnnouncementRequest(texts=texts, minutes=int(str(form.get("minutes", "240"))))
        await run_in_threadpool(api.announce, body, user, hotline)
    except (ValueError, ValidationError, HTTPException) as exc:
        status, error = _refusal(exc, "Minutes are a whole number from 1 to 10080 (a week).")
        return await run_in_threadpool(
            _queue_page, request, hotline, user, error=error, status=status, drafted=texts
        )
    return _queue_done("announced")


@router.post("/announcement/clear")
def announcement_clear(
    request: Request, hotline: HotlineDep, confirm: Annotated[str, Form()] = ""
) -> Response:
    user = _acting(request, hotline, SUPERVISORS)
    if isinstance(user, Response):
        return user
    if confirm != "yes":
        return _queue_page(request, hotline, user, error=UNCONFIRMED_CLEAR, status=422)
    api.clear_announcement(user, hotline)
    return _queue_done("announcement_cleared")


def _supervisor_acts(
    request: Request,
    hotline: Hotline,
    act: Callable[[User], object],
    *,
    said: str,
    invalid: str = "",
) -> Response:
    """A supervisor's form post on the queue page: `act` through the API, then the page says
    `said`; or the page again with what the API refused (`invalid`: for a form value its
    request model would not take)."""
    user = _acting(request, hotline, SUPERVISORS)
    if isinstance(user, Response):
        return user
    try:
        act(user)
    except (ValidationError, HTTPException) as exc:
        status, error = _refusal(exc, invalid)
        return _queue_page(request, hotline, user, error=error, status=status)
    return _queue_done(said)


@router.post("/queue/{case_id}/requeue")
def queue_requeue(request: Request, hotline: HotlineDep, case_id: api.CaseIdPath) -> Response:
    """A supervisor takes a case back from its agent: back in its place in line."""
    body = api.RequeueRequest(reason="taken back on the dashboard")
    return _supervisor_acts(
        request, hotline, lambda user: api.requeue(case_id, user, hotline, body), said="requeued"
    )


@router.post("/queue/{case_id}/priority")
def queue_priority(
    request: Request,
    hotline: HotlineDep,
    case_id: api.CaseIdPath,
    priority: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    """A supervisor moves a waiting case to another priority: a hijack victim found in the
    wrong line to the emergency lane, first."""

    def moves(user: User) -> None:
        body = api.PriorityRequest.model_validate({"priority": priority, "reason": reason})
        api.set_priority(case_id, body, user, hotline)

    why = "Choose a priority, and say why in a few words (3 to 400 characters)."
    return _supervisor_acts(request, hotline, moves, said="priority_set", invalid=why)


@router.post("/queue/{case_id}/resolve")
def queue_resolve(
    request: Request,
    hotline: HotlineDep,
    case_id: api.CaseIdPath,
    notes: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
) -> Response:
    """A supervisor closes a case its agent left (gone home, revoked)."""
    if confirm != "yes":
        user = _acting(request, hotline, SUPERVISORS)
        if isinstance(user, Response):
            return user
        return _queue_page(request, hotline, user, error=UNCONFIRMED_CLOSE, status=422)
    return _supervisor_acts(
        request,
        hotline,
        lambda user: api.resolve(case_id, api.ResolveRequest(notes=notes.strip()), user, hotline),
        said="resolved",
        invalid=TOO_LONG_NOTES,
    )


@router.post("/agents/{name}/away")
def agent_away(request: Request, hotline: HotlineDep, name: api.AgentName) -> Response:
    """A supervisor sets an agent away who left their desk available: nothing comes to them
    unasked."""
    return _supervisor_acts(
        request, hotline, lambda user: api.set_agent_away(name, user, hotline), said="set_away"
    )


@router.post("/agents/{name}/languages")
def agent_languages(
    request: Request,
    hotline: HotlineDep,
    name: api.AgentName,
    languages: Annotated[str, Form()] = "",
) -> Response:
    """A supervisor says which languages an agent speaks: codes, comma-separated, or "all"."""

    def speaks(user: User) -> None:
        body = api.Languages(languages=languages_typed(languages))
        api.set_agent_languages(name, body, user, hotline)

    why = "Languages are codes of the prompt catalogs (en,zh-CN), or all."
    return _supervisor_acts(request, hotline, speaks, said="languages_set", invalid=why)


@router.post("/oncall/pages/{page_id}/ack")
def page_ack(request: Request, hotline: HotlineDep, page_id: api.PageIdPath) -> Response:
    """A supervisor says they are coming for a page: the queue page says so, and the other
    on-call numbers are texted."""
    return _supervisor_acts(
        request,
        hotline,
        lambda user: api.acknowledge_page(page_id, user, hotline),
        said="page_acked",
    )


@router.get("/queue/rows")
def queue_rows(request: Request, hotline: HotlineDep) -> Response:
    """The queue table alone, fetched by the page every few seconds."""
    user = gate(request, hotline, STAFF)
    if isinstance(user, Response):
        return user
    return render(request, "_queue_table.html", _queue_context(hotline, user), user=user)


# -- the agent's desk ------------------------------------------------------------------------

DESK_PATH = f"{PREFIX}/desk"
AGENTS = ("agent",)
# What the desk says after an action (the key comes back in the query string; the words never
# do, so nobody can make the page say anything else).
SAID = {
    "redirected": "The caller is being put through to your phone now.",
    "next_hold_poll": "The caller is put through to your phone at their next hold round.",
    "calling_back": "Twilio is calling the caller back; your phone rings when they answer.",
    "call_back": "Call the caller back yourself: their number is on the case below.",
    "no_number": "The caller withheld their number, so nobody can call them back. "
    "Act on the account if they gave one, then resolve the case.",
    "nobody": "Nobody is waiting.",
    # Said with the account, from the agent's freeze on the case (`_freeze_said`); these
    # only when there is no record to name it from.
    "frozen": "The account is frozen.",
    "freeze_failed": "The account service did not confirm the freeze; it is audited as failed. "
    "Try again, or escalate.",
    "resolved": "Case resolved.",
    "available": "You are available: the next case comes to your phone by itself.",
    "away": "You are away: cases come only when you take them.",
    "requeued": "The case is back in its place in line.",
    "call_back_owed": "The case is back in its place in line, a call back owed: another "
    "agent calls the caller back, or you, if nobody else is free for a while.",
    "priority_set": "The case is in its new place in line; its caller hears it at their next "
    "hold round.",
    "not_reached": "Nobody answered: the call back is tried again later, and counted.",
    "transfer_redirected": "The caller is on their way where you sent them: your phone's "
    "call with them ends now.",
    "transfer_on_hang_up": "The caller goes where you sent them when you hang up.",
    "transfer_call_back": "The case is in line where you sent it, for that team to call the "
    "caller back.",
    "accepted": "The case is yours: nothing takes it back now.",
    "set_away": "The agent is away: no case comes to them until they say they are available.",
    "languages_set": "Callers in the agent's languages are offered to them first now.",
    "announced": "Every caller hears the announcement first now.",
    "announcement_cleared": "Callers hear no announcement any more.",
    "page_acked": "The page says you are coming; the other on-call numbers are texted so.",
    "noted": "Your note is saved with the case.",
}
# Those that say an action failed: shown as an alert (read out at once), not a notice.
SAID_FAILED = frozenset({"freeze_failed"})


# Why an agent is away, when it was not their own doing, as the desk tells them.
AWAY_REASONS = {
    "missed": "A case rang your phone and it did not take the call (no answer, busy, a "
    "voicemail, or no key pressed), so you were set away.",
    "gave_back": "You gave a case back, so you were set away: it would have come straight back.",
    "taken_back": "A supervisor took a case of yours back, so you were set away.",
    "timed_out": "A case offered to you never reached its caller, so you were set away.",
    "signed_out": "You signed out, so you were set away.",
    "set_away": "A supervisor set you away.",
    "not_accepted": "A case was offered to you here and not accepted in time, so it went to "
    "the next agent and you were set away.",
    "lapsed": "Nothing came to you for 8 hours, so you are away now.",
}


# How an offer reaches the caller, as the desk says it.
OFFERS = {
    "redirected": "Twilio is putting them through to your phone",
    "next_hold_poll": "put through to your phone at their next hold round",
    "calling_back": "Twilio is calling them back; then your phone rings",
    "call_back": "you call them back yourself",
    "no_number": "nobody: their number was withheld",
}


def _desk_context(hotline: Hotline, user: User, said: str = "") -> dict[str, Any]:
    held = api.my_cases(user, hotline)
    available, away_reason = hotline.presence(user)
    return {
        **_desk_live(hotline, user, held),
        "held": held,
        "available": available,
        "away_reason": away_reason,
        "away_reasons": AWAY_REASONS,
        "said": SAID.get(said, ""),
        "said_failed": said in SAID_FAILED,
        "error": None,
        "typed": {},  # a refused form's words (`_desk_error`)
        "kept": [],  # the words of a form whose case left the desk (`_desk_error`)
        "offers": OFFERS,
        "refresh": REFRESH_SECONDS,
        "offer_refresh": min(REFRESH_SECONDS, OFFER_REFRESH_SECONDS),
        "now": hotline.clock(),
        "accept_seconds": hotline.settings.accept_timeout_seconds,
        "note_at_most": NOTE_AT_MOST,
        # Where a caller may be sent on (the live tree's queues) and in which language.
        "queues": hotline.trees.current.queues,
        "languages": hotline.trees.current.catalogs.languages,
    }


def _desk_live(
    hotline: Hotline, user: User, held: list[api.CaseDetail] | None = None
) -> dict[str, Any]:
    """What the desk's live line shows: the cases agents may take now (a call back held back
    until its retry time is not one), and a version of the agent's own cases that changes
    whenever one of them does."""
    now, zone = hotline.clock(), hotline.zone
    counts, emergency_tickets = api.desk_line(user, hotline)
    mine = api.my_cases(user, hotline) if held is None else held
    state = "|".join(
        f"{c.id}:{c.status}:{c.offer or ''}:{c.accept_by or ''}:{c.on_call}:"
        f"{c.caller_left_at or ''}"
        for c in mine
    )
    offered = next((c for c in mine if c.accept_by), None)
    return {
        # A case offered at the desk, to accept: what the browser's notification says (the
        # agent may be in another tab, or another window).
        "offer": {
            "id": offered.id,
            "until": offered.accept_by.isoformat(),
            "text": f"{offered.priority.capitalize()} case, ticket {offered.ticket}: "
            f"accept it by {when_text(offered.accept_by, '%H:%M:%S', zone)} {zone.key}",
        }
        if offered and offered.accept_by
        else None,
        "waiting": counts.ready,
        "emergencies": counts.ready_emergencies,
        # Compared by the page from one refresh to the next: a new one is said by its ticket.
        "emergency_tickets": emergency_tickets,
        "longest": clock_text(counts.ready_longest_seconds) if counts.ready else "",
        "version": hashlib.sha256(state.encode()).hexdigest()[:16],
        "updated": now,
    }


def _desk_error(
    request: Request,
    hotline: Hotline,
    user: User,
    status: int,
    text: str,
    *,
    typed: dict[str, Any] | None = None,
    kept: Sequence[tuple[str, str]] = (),
) -> Response:
    """The desk again, saying why an action was refused; `typed`: what the agent typed in
    the refused form (`case`, `action` and its fields), shown in it again: mid-call, a
    refused freeze or transfer must not cost them their words. `kept`: the words (what, the
    text) of a form whose case left the desk, shown with the error, to use again."""
    context = {
        **_desk_context(hotline, user),
        "error": text,
        "typed": typed or {},
        "kept": [(what, text) for what, text in kept if text.strip()],
    }
    return render(request, "desk.html", context, user=user, status=status)


def _desk_refused(
    request: Request,
    hotline: Hotline,
    user: User,
    case_id: int,
    exc: Exception,
    invalid: str,
    *,
    undone: str,
    typed: dict[str, Any] | None = None,
    kept: Sequence[tuple[str, str]] = (),
) -> Response:
    """The desk saying why the API refused an action on a case: if the case is not the
    agent's any more, what became of it, in their words (`undone`: what was not done), with
    `kept`, their words in the form that left with it; else the API's own reason."""
    status, error = _refusal(exc, invalid)
    gone = _gone(hotline, user, case_id) if status == 409 else None
    if gone is None:
        return _desk_error(request, hotline, user, status, error, typed=typed)
    said = f"{gone} {undone}" if undone else gone
    return _desk_error(request, hotline, user, status, said, kept=kept)


def _gone(hotline: Hotline, user: User, case_id: int) -> str | None:
    """What became of a case the agent acted on that is not theirs any more: their action
    came after it left the desk (a stale page, or a form filled while it went). None while
    it is theirs: the refusal was about something else, which the API's words say. Its
    ticket is named only if it is in line (the queue shows it to every agent) or was theirs:
    any agent may post to any case id, and a ticket is what main menu 9 puts a caller
    through with."""
    with hotline.db.connect() as conn:
        case = get_case(conn, case_id=case_id)
        if case is None or (case["agent_id"] == user.id and case["status"] in HELD):
            return None
        back = calllog.last_taken_back(conn, case_id=case_id)
    theirs = case["agent_id"] == user.id or (
        back is not None and back["actor"] == f"agent:{user.name}"
    )
    # In line from here on but for the first three: those name it only if it was theirs.
    name = f"Ticket {case['ticket']}" if case["queued"] or theirs else "That case"
    if case["status"] == "resolved":
        return f"{name} is closed already."
    if case["status"] in HELD:
        return f"{name} is with another agent now."
    if not case["queued"]:
        return f"{name} is not yours any more."
    ended = case["ended_at"]
    if back is not None and (ended is None or back["at"] >= ended):
        if back["action"] == MISSED_OFFER:
            if back["reason"] == NOT_ACCEPTED:
                return f"{name} was not accepted in time: it went back in line."
            return f"{name} rang your phone, which did not take the call: it went back in line."
        who = back["actor"].split(":", 1)[-1]
        if back["actor"].startswith("supervisor:"):
            return f"A supervisor ({who}) took ticket {case['ticket']} back: it is in line again."
        if who == user.name:
            return f"You gave ticket {case['ticket']} back: it is in line again."
    if case["status"] == "abandoned" and (case["claimed_from"] or "waiting") == "waiting":
        # Taken while its caller waited on the line, abandoned since: they hung up before
        # anyone talked to them (`cases.abandon_for_call`).
        return (
            f"{name}'s caller hung up before being put through: the case is back in line as "
            "a call back. Take the next case to call them back (emergencies come first)."
        )
    return f"{name} is back in line: it is not yours any more."


TOO_LONG_NOTES = "Notes are 5000 characters at most."
NOTE_WORDS = f"Write the note first: 1 to {NOTE_AT_MOST} characters."
# Refused posts of the forms whose effect cannot be taken back by who sent them: each has a
# required box, so only a post made without the page gets these.
UNCONFIRMED_FREEZE = (
    "Not frozen: tick the box that names the account to freeze it (only an operator can "
    "undo a freeze)."
)
UNCONFIRMED_CLOSE = "Not closed: tick that you checked the agent is done with the case."
UNCONFIRMED_CLEAR = "Not cleared: tick that every caller stops hearing the announcement."


def _refusal(exc: Exception, invalid: str) -> tuple[int, str]:
    """The status and words a page shows for what the API refused: its own reason, or
    `invalid` for a form value its request model would not take."""
    if isinstance(exc, HTTPException):
        return exc.status_code, str(exc.detail)
    return 422, invalid


def _invalid(exc: Exception, fields: dict[str, str]) -> list[str]:
    """The form fields (by the names the desk's template knows them) a request model refused,
    marked invalid on the page again; none for a refusal of the action itself."""
    if not isinstance(exc, ValidationError):
        return []
    return [
        fields[str(e["loc"][0])] for e in exc.errors() if e["loc"] and str(e["loc"][0]) in fields
    ]


def _done(said: str, case_id: int | None = None) -> RedirectResponse:
    """The desk, to say `said` (about the case `case_id`, for a freeze: `_freeze_said`)."""
    query = {"said": said, **({"case": str(case_id)} if case_id is not None else {})}
    return redirect(f"{DESK_PATH}?{urlencode(query)}")


UID_TYPED = re.compile(r"[0-9]{1,32}")
# A reason that is a number alone: most likely a UID typed into the wrong box.
LIKE_A_UID = re.compile(r"[0-9][0-9 -]*")


def _freeze_said(hotline: Hotline, user: User, said: str, case_id: int) -> dict[str, Any]:
    """What the desk says of the agent's freeze on the case: the account frozen, or not
    confirmed (its UID and reason in the form again, to try again), from their latest
    freeze's audit record. Nothing (the plain words) without one that matches `said`."""
    with hotline.db.connect() as conn:
        made = calllog.last_freeze(conn, case_id=case_id, actor=f"agent:{user.name}")
    want = "ok" if said == "frozen" else "failed"
    if made is None or made["result"] != want or not made["account_uid"]:
        return {}
    uid = made["account_uid"]
    if said == "frozen":
        return {"said": f"Account {uid} is frozen."}
    return {
        "said": f"The account service did not confirm the freeze of account {uid}; it is "
        "audited as failed. Try again, or escalate.",
        "typed": {
            "case": case_id,
            "action": "freeze",
            "uid": uid,
            "uid_named": uid,
            "reason": made["reason"] or "",
        },
    }


def _acting(request: Request, hotline: Hotline, roles: Sequence[str]) -> User | Response:
    """The user behind a form post that changes something, if it comes from our own pages
    (the cookie is SameSite=Strict as well) and their role may do it."""
    if not same_origin(request, hotline):
        return render(request, "error.html", _message("Refused", "Act from this site."), status=403)
    return gate(request, hotline, roles)


@router.get("/desk")
def desk_page(request: Request, hotline: HotlineDep, said: str = "", case: str = "") -> Response:
    user = gate(request, hotline, AGENTS)
    if isinstance(user, Response):
        return user
    context = _desk_context(hotline, user, said)
    if said in ("frozen", "freeze_failed") and case.isdigit() and len(case) <= 10:
        context.update(_freeze_said(hotline, user, said, int(case)))
    return render(request, "desk.html", context, user=user)


@router.get("/desk/live")
def desk_live(request: Request, hotline: HotlineDep) -> Response:
    """The desk's live line alone, fetched by the page every few seconds."""
    user = gate(request, hotline, AGENTS)
    if isinstance(user, Response):
        return user
    return render(request, "_desk_live.html", _desk_live(hotline, user), user=user)


@off_the_webhooks(router.post("/desk/next"))
def desk_next(request: Request, hotline: HotlineDep) -> Response:
    user = _acting(request, hotline, AGENTS)
    if isinstance(user, Response):
        return user
    try:
        claimed = api.next_case(user, hotline)
    except HTTPException as exc:  # not theirs to connect after all: the API says why
        return _desk_error(request, hotline, user, *_refusal(exc, ""))
    return _done(claimed.connect.mode if claimed.connect else "nobody")


@router.post("/desk/presence")
def desk_presence(
    request: Request, hotline: HotlineDep, available: Annotated[str, Form()] = ""
) -> Response:
    user = _acting(request, hotline, AGENTS)
    if isinstance(user, Response):
        return user
    since = hotline.set_available(user, available == "true")
    return _done("available" if since is not None else "away")


@router.post("/desk/{case_id}/accept")
def desk_accept(request: Request, hotline: HotlineDep, case_id: api.CaseIdPath) -> Response:
    user = _acting(request, hotline, AGENTS)
    if isinstance(user, Response):
        return user
    try:
        api.accept(case_id, user, hotline)
    except HTTPException as exc:
        return _desk_refused(request, hotline, user, case_id, exc, "", undone="")
    return _done("accepted")


@router.post("/desk/{case_id}/freeze")
def desk_freeze(
    request: Request,
    hotline: HotlineDep,
    case_id: api.CaseIdPath,
    reason: Annotated[str, Form()] = "",
    account_uid: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
) -> Response:
    user = _acting(request, hotline, AGENTS)
    if isinstance(user, Response):
        return user
    uid = account_uid.strip()
    typed: dict[str, Any] = {
        "case": case_id,
        "action": "freeze",
        "reason": reason,
        "uid": account_uid,
        "uid_named": uid if UID_TYPED.fullmatch(uid) else "",
    }
    if not uid and LIKE_A_UID.fullmatch(reason.strip()):
        typed["invalid"] = ["reason"]
        text = _reason_like_a_uid(hotline, user, case_id, reason.strip())
        return _desk_error(request, hotline, user, 422, text, typed=typed)
    if confirm != "yes":  # the page's box is required; a post without it is no less refused
        typed["invalid"] = ["confirm"]
        return _desk_error(request, hotline, user, 422, UNCONFIRMED_FREEZE, typed=typed)
    why = "Say why you freeze the account (3 to 500 characters); an account UID is digits."
    try:
        body = api.FreezeRequest(reason=reason.strip(), account_uid=uid or None)
        result = api.freeze(case_id, body, user, hotline)
    except ValidationError as exc:
        typed["invalid"] = _invalid(exc, {"reason": "reason", "account_uid": "uid"})
        return _desk_error(request, hotline, user, *_refusal(exc, why), typed=typed)
    except HTTPException as exc:
        if exc.status_code == 422:  # no such account: the UID box is where to put it right
            typed["invalid"] = ["uid"]
            text = f"Not frozen: {exc.detail}."
            return _desk_error(request, hotline, user, 422, text, typed=typed)
        kept = [("Why you were freezing it", reason), ("The account UID you typed", account_uid)]
        return _desk_refused(
            request,
            hotline,
            user,
            case_id,
            exc,
            why,
            undone="Nothing was frozen.",
            typed=typed,
            kept=kept,
        )
    return _done("frozen" if result.frozen else "freeze_failed", case_id)


def _reason_like_a_uid(hotline: Hotline, user: User, case_id: int, reason: str) -> str:
    """Why a freeze whose reason is a number and whose UID box is empty is refused: the
    agent typed the account they found into the reason, and the case's would be frozen. The
    case's account is named only to the agent who has the case: any agent may post this
    form for any case id, and an account UID is not theirs to read from another's."""
    with hotline.db.connect() as conn:
        case = get_case(conn, case_id=case_id)
    theirs = case is not None and case["agent_id"] == user.id and case["status"] in HELD
    keyed = case["account_uid"] if case and theirs else None
    verified = case is not None and (case["flags"] or {}).get("verified") == "yes"
    if keyed and verified:
        where = f"this form freezes the verified caller's account {keyed} only"
    else:
        where = "an account to freeze goes in the UID box"
    return (
        f'Not frozen: the reason "{reason}" is only digits, like an account UID. Say why in '
        f"words; {where}."
    )


@router.post("/desk/{case_id}/resolve")
def desk_resolve(
    request: Request,
    hotline: HotlineDep,
    case_id: api.CaseIdPath,
    notes: Annotated[str, Form()] = "",
    reached: Annotated[bool, Form()] = False,
    nothing_needed: Annotated[bool, Form()] = False,
) -> Response:
    user = _acting(request, hotline, AGENTS)
    if isinstance(user, Response):
        return user
    try:
        body = api.ResolveRequest(
            notes=notes.strip(), reached=reached, nothing_needed=nothing_needed
        )
        api.resolve(case_id, body, user, hotline)
    except (ValidationError, HTTPException) as exc:
        kept = [("Your notes", notes)]
        return _desk_refused(
            request, hotline, user, case_id, exc, TOO_LONG_NOTES, undone="", kept=kept
        )
    return _done("resolved")


@router.post("/desk/{case_id}/note")
def desk_note(
    request: Request,
    hotline: HotlineDep,
    case_id: api.CaseIdPath,
    note: Annotated[str, Form()] = "",
) -> Response:
    """A working note, saved with the case (`api.add_note`): the next agent after a
    transfer, and supervisors, read it; a sign-out does not lose it."""
    user = _acting(request, hotline, AGENTS)
    if isinstance(user, Response):
        return user
    try:
        api.add_note(case_id, api.NoteRequest(text=note.strip()), user, hotline)
    except (ValidationError, HTTPException) as exc:
        status, error = _refusal(exc, NOTE_WORDS)
        typed: dict[str, Any] = {"case": case_id, "action": "note", "note": note}
        if status == 422:  # the note itself: said at its field, kept in it to put right
            typed["invalid"] = ["note"]
            return _desk_error(
                request, hotline, user, 422, error[:1].upper() + error[1:], typed=typed
            )
        return _desk_refused(
            request,
            hotline,
            user,
            case_id,
            exc,
            NOTE_WORDS,
            undone="Your note was not saved.",
            typed=typed,
            kept=[("Your note", note)],
        )
    return _done("noted")


@router.post("/desk/{case_id}/requeue")
def desk_requeue(
    request: Request,
    hotline: HotlineDep,
    case_id: api.CaseIdPath,
    reason: Annotated[str, Form()] = "",
) -> Response:
    user = _acting(request, hotline, AGENTS)
    if isinstance(user, Response):
        return user
    try:
        api.requeue(case_id, user, hotline, api.RequeueRequest(reason=reason.strip()))
    except (ValidationError, HTTPException) as exc:
        why = "A reason is 500 characters at most."
        return _desk_refused(request, hotline, user, case_id, exc, why, undone="")
    return _done("requeued")


@router.post("/desk/{case_id}/call-back")
def desk_call_back(
    request: Request,
    hotline: HotlineDep,
    case_id: api.CaseIdPath,
    reason: Annotated[str, Form()] = "",
) -> Response:
    """A caller who dropped before the agent could act, back in line to be called back: the
    supervisor's "Call back" (`api.requeue`), on the agent's own case."""
    user = _acting(request, hotline, AGENTS)
    if isinstance(user, Response):
        return user
    try:
        api.requeue(case_id, user, hotline, api.RequeueRequest(reason=reason.strip()))
    except (ValidationError, HTTPException) as exc:
        why = "A reason is 500 characters at most."
        return _desk_error(request, hotline, user, *_refusal(exc, why))
    return _done("call_back_owed")


@router.post("/desk/{case_id}/not-reached")
def desk_not_reached(request: Request, hotline: HotlineDep, case_id: api.CaseIdPath) -> Response:
    user = _acting(request, hotline, AGENTS)
    if isinstance(user, Response):
        return user
    try:
        api.not_reached(case_id, user, hotline)
    except HTTPException as exc:
        return _desk_refused(request, hotline, user, case_id, exc, "", undone="")
    return _done("not_reached")


@off_the_webhooks(router.post("/desk/{case_id}/transfer"))
def desk_transfer(
    request: Request,
    hotline: HotlineDep,
    case_id: api.CaseIdPath,
    queue: Annotated[str, Form()] = "",
    priority: Annotated[str, Form()] = "",
    language: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> Response:
    user = _acting(request, hotline, AGENTS)
    if isinstance(user, Response):
        return user
    try:
        body = api.TransferRequest(
            queue=queue,
            priority=priority or None,
            language=language or None,
            note=note.strip(),
        )
        sent = api.transfer(case_id, body, user, hotline)
    except (ValidationError, HTTPException) as exc:
        why = "Choose a queue, and say why for the next agent (3 to 500 characters)."
        typed = {"case": case_id, "action": "transfer", "note": note}
        typed["invalid"] = _invalid(exc, {"note": "note"})
        return _desk_refused(
            request,
            hotline,
            user,
            case_id,
            exc,
            why,
            undone="Nobody was sent on.",
            typed=typed,
            kept=[("Your note for the next agent", note)],
        )
    return _done(f"transfer_{sent.mode}")


# -- calls and timelines --------------------------------------------------------------------

_CALL_QUERY = TypeAdapter(api.CallQuery)


def call_query(raw: dict[str, str], zone: tzinfo = UTC) -> api.CallQuery:
    """The API's filters from the form; empty fields mean "any"; times without a zone (the
    form's datetime-local) on `zone`'s clock, as the pages show them. Raises
    ValidationError."""
    given: dict[str, Any] = {
        k: v.strip() for k, v in raw.items() if k in CALL_FILTERS and v.strip()
    }
    for key in ("since", "until"):
        if key in given:
            given[key] = parse_when(given[key], key, zone)
    if "since" in given and "until" in given and given["until"] <= given["since"]:
        # Said, not answered with "no calls match": a night shift's times typed the wrong
        # way round would read as a quiet night.
        raise ValueError("until must be after since")
    return _CALL_QUERY.validate_python(given)


def problems(error: ValidationError) -> list[str]:
    return [f"{'.'.join(map(str, e['loc'])) or 'filter'}: {e['msg']}" for e in error.errors()]


def wrong_fields(errors: Sequence[str], fields: Sequence[str]) -> list[str]:
    """The form's fields an error names (each says `field: what is wrong`, or "until must
    be after since"): marked invalid, and tied to the errors, for a screen reader."""
    named = {(e.split(":", 1)[0].split() or [""])[0] for e in errors}
    return [f for f in fields if f in named]


def filtered_link(
    path: str, names: Iterable[str], raw: dict[str, str], cursor: str | None = None
) -> str:
    """A filtered page (`path`) with the filters `names` of `raw` that are set, at `cursor`."""
    params = [(k, raw[k]) for k in names if raw.get(k)]
    if cursor:
        params.append(("cursor", cursor))
    return f"{PREFIX}{path}" + (f"?{urlencode(params)}" if params else "")


def _filtered_page(
    request: Request,
    hotline: Hotline,
    *,
    path: str,
    names: tuple[str, ...],
    query_of: Callable[[dict[str, str], tzinfo], Any],
    listed: Callable[[Any, str | None], tuple[list[Any], str | None]],
    items: str,
) -> dict[str, Any]:
    """A page of a filtered, paged list (the calls, the audit log): the form's filters
    (`names`) read into the API's query (`query_of`), a page of `listed`'s rows at the
    request's cursor under `items`, links to the first and next pages and to the CSV
    (`path` + ".csv"), and the errors, each marked at its field."""
    raw = {k: request.query_params.get(k, "") for k in names}
    cursor = request.query_params.get("cursor") or None
    context: dict[str, Any] = {"form": raw, items: [], "next_link": None, "errors": []}
    context["first_link"] = filtered_link(path, names, raw) if cursor is not None else None
    try:
        query = query_of(raw, hotline.zone)
    except ValidationError as exc:
        context["errors"] = problems(exc)
    except ValueError as exc:  # a time that is none (parse_when), or until before since
        context["errors"] = [str(exc)]
    else:
        try:
            if cursor is not None and len(cursor) > MAX_CURSOR:
                raise HTTPException(422, "not a cursor from this page")
            rows, after = listed(query, cursor)
        except HTTPException as exc:
            context["errors"] = [str(exc.detail)]
        else:
            context[items] = rows
            context["next_link"] = filtered_link(path, names, raw, after) if after else None
    context["wrong"] = wrong_fields(context["errors"], names)
    context["filtered"] = bool(any(raw.values()))
    context["csv_link"] = filtered_link(f"{path}.csv", names, raw)
    return context


@router.get("/calls")
def calls_page(request: Request, hotline: HotlineDep) -> Response:
    user = gate(request, hotline, STAFF)
    if isinstance(user, Response):
        return user

    def listed(query: api.CallQuery, cursor: str | None) -> tuple[list[Any], str | None]:
        found = api.calls_list(user, hotline, query, PAGE_SIZE, cursor)
        return list(found.calls), found.next_cursor

    context = _filtered_page(
        request,
        hotline,
        path="/calls",
        names=CALL_FILTERS,
        query_of=call_query,
        listed=listed,
        items="calls",
    )
    status = 422 if context["errors"] else 200
    return render(request, "calls.html", context, user=user, status=status)


@reporting(router.get("/calls.csv"))
def calls_csv(request: Request, hotline: HotlineDep) -> Response:
    """The calls the page's filters find, all of them (up to 10,000; more: the newest, in a
    file named so), as the API's CSV: for the signed-in user, with no API token to find
    first."""
    user = gate(request, hotline, STAFF)
    if isinstance(user, Response):
        return user
    raw = {k: request.query_params.get(k, "") for k in CALL_FILTERS}
    try:
        return api.calls_csv(user, hotline, call_query(raw, hotline.zone))
    except (ValidationError, ValueError) as exc:
        why = problems(exc) if isinstance(exc, ValidationError) else [str(exc)]
        return Response("\n".join(why), status_code=422, media_type="text/plain")
    except HTTPException as exc:
        return Response(str(exc.detail), status_code=exc.status_code, media_type="text/plain")


@router.get("/recordings/{recording_sid}")
async def recording_audio(request: Request, hotline: HotlineDep, recording_sid: str) -> Response:
    """A recording, played on a call's page: the API's, for the signed-in supervisor."""
    user = await run_in_threadpool(gate, request, hotline, SUPERVISORS)
    if isinstance(user, Response):
        return user
    if not recordings.RECORDING_SID.match(recording_sid):
        return Response("no such recording", status_code=404, media_type="text/plain")
    try:
        return await api.recording_audio(recording_sid, user, hotline, request.headers.get("range"))
    except HTTPException as exc:
        return Response(str(exc.detail), status_code=exc.status_code, media_type="text/plain")


@router.get("/calls/{call_sid}")
def timeline_page(request: Request, hotline: HotlineDep, call_sid: str) -> Response:
    user = gate(request, hotline, STAFF)
    if isinstance(user, Response):
        return user
    found = None
    if engine.CALL_SID.match(call_sid):
        try:
            found = api.call_timeline(call_sid, user, hotline)
        except HTTPException:
            found = None
    if found is None:
        context = _message("No such call", "There is no call with that id in the log.")
        return render(request, "error.html", context, user=user, status=404)
    return render(request, "timeline.html", {"t": found}, user=user)


# -- figures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str
    missing: bool


@dataclass(frozen=True)
class Tick:
    at: float
    text: str


@dataclass(frozen=True)
class Chart:
    """What the chart template draws: geometry in the SVG's own units, text already final."""

    id: str
    title: str
    description: str
    width: int
    height: int
    left: float
    top: float
    right: float
    bottom: float
    bars: list[Bar]
    x_ticks: list[Tick]
    y_ticks: list[Tick]


@dataclass(frozen=True)
class Bucket:
    start: datetime
    end: datetime
    report: stats.Report


def parse_when(raw: str, what: str, zone: tzinfo = UTC) -> datetime | None:
    """`2026-11-23T03:00` (on `zone`'s clock, as the form sends it) or any ISO 8601 time;
    '' is None."""
    if not raw.strip():
        return None
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ValueError(f"{what}: not a date and time (use 2026-11-23T03:00)") from None
    if moment.tzinfo is None:
        naive, moment = moment, moment.replace(tzinfo=zone)
        try:
            twice = moment.utcoffset() != moment.replace(fold=1).utcoffset()
            skipped = twice and in_utc(moment).astimezone(zone).replace(tzinfo=None) != naive
        except (OverflowError, ValueError):
            twice = skipped = False  # the edge of the calendar: said below
        # A clock change: silently taking one of the two readings (or a time that never
        # was) would move a night shift's report by an hour.
        if skipped:
            raise ValueError(
                f"{what}: {raw.strip()} never shows on the {zone} clock (it was put forward"
                " then): give a time after the change, or its UTC offset"
            )
        if twice:
            first, second = (in_utc(moment.replace(fold=f)) for f in (0, 1))
            raise ValueError(
                f"{what}: {raw.strip()} shows twice on the {zone} clock (it was put back"
                f" then): ask in UTC instead, {first:%H:%M} for the first time it showed,"
                f" {second:%H:%M} for the second"
            )
    try:
        return in_utc(moment)
    except ValueError:
        raise ValueError(f"{what}: out of range") from None


def period(since: str, until: str, now: datetime, zone: tzinfo = UTC) -> tuple[datetime, datetime]:
    """[start, end), times without a zone on `zone`'s clock: by default the 24 hours up to
    the end of the current hour there (in India, at 08:30 the end is 09:00 there)."""
    try:
        end = parse_when(until, "until", zone) or in_utc(
            now.astimezone(zone).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        )
        start = parse_when(since, "since", zone) or end - timedelta(hours=24)
    except OverflowError:
        raise ValueError("until: no day before it to start from") from None
    if end <= start:
        raise ValueError("until must be after since")
    if end - start > MAX_PERIOD:
        raise ValueError(f"the period can be at most {MAX_PERIOD.days} days")
    return start, end


def recent_period(now: datetime) -> tuple[datetime, datetime]:
    """The hour up to the end of the current 5 minutes (at 03:32, 02:35 to 03:35): its bars
    fall on the clock's 5 minutes, as the default period's fall on its hours."""
    try:
        bar_start = now.replace(second=0, microsecond=0) - timedelta(minutes=now.minute % 5)
        end = bar_start + RECENT_BAR
        return end - RECENT, end
    except OverflowError:
        raise ValueError("no hour to show at the very edge of the calendar") from None


def bucket_size(span: timedelta) -> timedelta:
    if span <= RECENT:
        return RECENT_BAR
    for hours in BUCKET_HOURS:
        size = timedelta(hours=hours)
        if math.ceil(span / size) <= MAX_BARS:
            return size
    return timedelta(hours=math.ceil(span / timedelta(hours=MAX_BARS)))


def nice_ceiling(value: float) -> tuple[float, float]:
    """An axis maximum >= value and its step, from steps of 1, 2 or 5 times a power of 10."""
    if value <= 0:
        return 1.0, 1.0
    magnitude = 10 ** math.floor(math.log10(value / 4))
    for factor in (1, 2, 5, 10):
        step = factor * magnitude
        if value / step <= 5:
            return math.ceil(value / step) * step, step
    raise AssertionError("unreachable: factor 10 always fits")


CHART_W, CHART_H = 560, 220
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 52, 10, 12, 34
MAX_LABELS = 6


def value_text(value: float | None, *, rate: bool) -> str:
    if value is None:
        return "n/a"
    return percent_text(value) if rate else f"{value:g}"


def bar_chart(
    chart_id: str,
    title: str,
    points: Sequence[tuple[str, str, float | None]],
    *,
    rate: bool,
) -> Chart:
    """Bars for (axis label, bar title, value) points. A None value (nothing to divide by)
    gets no bar, only its title; a 0 gets a hairline, so the two never look alike."""
    values = [v for _, _, v in points if v is not None]
    top, step = (1.0, 0.25) if rate else nice_ceiling(max(values, default=0))
    left, right = MARGIN_LEFT, CHART_W - MARGIN_RIGHT
    upper, bottom = MARGIN_TOP, CHART_H - MARGIN_BOTTOM
    slot = (right - left) / max(1, len(points))
    gap = min(6.0, slot * 0.25)
    bars = []
    for i, (_, name, value) in enumerate(points):
        height = (bottom - upper) * (value or 0) / top
        if value is not None:
            height = max(height, 1.5)
        x = left + i * slot + gap / 2
        bars.append(
            Bar(
                x,
                bottom - height,
                slot - gap,
                height,
                f"{name}: {value_text(value, rate=rate)}",
                missing=value is None,
            )
        )
    stride = max(1, math.ceil(len(points) / MAX_LABELS))
    last = len(points) - 1
    x_ticks = [  # counted back from the newest bar, which is always labelled
        Tick(left + (i + 0.5) * slot, label)
        for i, (label, _, _) in enumerate(points)
        if (last - i) % stride == 0
    ]
    count = round(top / step)
    y_ticks = [
        Tick(
            bottom - (bottom - upper) * k / count,
            f"{k * step * 100:.0f} %" if rate else f"{k * step:g}",
        )
        for k in range(count + 1)
    ]
    return Chart(
        id=chart_id,
        title=title,
        description="; ".join(b.title for b in bars),
        width=CHART_W,
        height=CHART_H,
        left=left,
        top=upper,
        right=right,
        bottom=bottom,
        bars=bars,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
    )


def _per(size: timedelta) -> str:
    if size < timedelta(hours=1):
        return f"{int(size / timedelta(minutes=1))} minutes"
    hours = int(size / timedelta(hours=1))
    return "hour" if hours == 1 else f"{hours} hours"


def charts(series: list[Bucket], size: timedelta, zone: tzinfo = UTC) -> list[Chart]:
    """The three bar charts, their times on `zone`'s clock."""

    def text(moment: datetime, fmt: str) -> str:
        return moment.astimezone(zone).strftime(fmt)

    multi_day = (
        series[0].start.astimezone(zone).date() != series[-1].end.astimezone(zone).date()
        if series
        else False
    )
    fmt = "%d/%m %H:%M" if multi_day and size >= timedelta(hours=6) else "%H:%M"
    named = [
        (text(b.start, fmt), f"{text(b.start, '%d %b %H:%M')} to {text(b.end, '%H:%M')}")
        for b in series
    ]
    per = _per(size)
    calls = [(x, n, float(b.report.calls)) for (x, n), b in zip(named, series, strict=True)]
    abandon = [
        (x, n, b.report.overall.abandonment_rate) for (x, n), b in zip(named, series, strict=True)
    ]
    service = [
        (x, n, b.report.overall.service_level) for (x, n), b in zip(named, series, strict=True)
    ]
    return [
        bar_chart("calls-chart", f"Calls per {per}", calls, rate=False),
        bar_chart("abandonment-chart", f"Abandonment rate per {per}", abandon, rate=True),
        bar_chart("service-chart", f"Service level per {per}", service, rate=True),
    ]


def local_input(moment: datetime, zone: tzinfo = UTC) -> str:
    """A time as the form's datetime-local shows it: on `zone`'s clock."""
    return moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M")


def figures_link(start: datetime, end: datetime, zone: tzinfo = UTC) -> str:
    query = urlencode(
        {"since": local_input(start, zone), "until": local_input(end, zone), "tz": str(zone)}
    )
    return f"{PREFIX}/figures?{query}"


@reporting(router.get("/figures"))
def figures_page(request: Request, hotline: HotlineDep) -> Response:
    user = gate(request, hotline, STAFF)
    if isinstance(user, Response):
        return user
    since = request.query_params.get("since", "")[:40]
    until = request.query_params.get("until", "")[:40]
    asked_tz = request.query_params.get("tz", "").strip()[:64]
    zone: tzinfo | None = None
    try:
        zone = stats.time_zone(asked_tz or hotline.settings.report_tz)
        if request.query_params.get("last") == "hour":  # a link that stays "now" when clicked
            start, end = recent_period(hotline.clock())
        else:
            start, end = period(since, until, hotline.clock(), zone)
    except ValueError as exc:
        form = {"since": since, "until": until, "tz": asked_tz}
        shown = str(zone) if zone is not None else ""  # a zone that is none: said in errors
        errors = [str(exc)]
        refused = {
            "errors": errors,
            "wrong": wrong_fields(errors, ("since", "until", "tz")),
            "form": form,
            "report": None,
            "tz": shown,
            "tz_query": "",
        }
        return render(request, "figures.html", refused, user=user, status=422)
    context = figures_context(hotline, start, end, zone)
    # The page's own links keep a zone asked for; the default one needs no saying.
    context["tz_query"] = urlencode({"tz": asked_tz}) if asked_tz else ""
    return render(request, "figures.html", context, user=user)


@reporting(router.get("/figures/intervals.csv"))
def figures_intervals_csv(request: Request, hotline: HotlineDep) -> Response:
    """The figures page's period per half hour (or `minutes`: 15, 30, 60), as the API's
    CSV, for a workforce tool: the same since, until and zone as the page."""
    user = gate(request, hotline, SUPERVISORS)
    if isinstance(user, Response):
        return user
    q = request.query_params
    try:
        zone = stats.time_zone(q.get("tz", "").strip()[:64] or hotline.settings.report_tz)
        start, end = period(q.get("since", "")[:40], q.get("until", "")[:40], hotline.clock(), zone)
        minutes = int(q.get("minutes", "30")) if q.get("minutes", "30").isdigit() else 0
        asked = api.IntervalQuery(since=start, until=end, minutes=minutes, tz=str(zone))
        return api.stats_intervals_csv(user, hotline, asked)
    except ValueError as exc:
        return Response(str(exc), status_code=422, media_type="text/plain")
    except HTTPException as exc:
        return Response(str(exc.detail), status_code=exc.status_code, media_type="text/plain")


def figures_context(
    hotline: Hotline, start: datetime, end: datetime, zone: tzinfo = UTC
) -> dict[str, Any]:
    """The figures page's report over [start, end), shown on `zone`'s clock."""
    size = bucket_size(end - start)
    with hotline.db.connect() as conn:
        # The period's report and its bars', from one read of it.
        report, found = stats.figures_and_intervals(
            conn, start=start, end=end, size=size, zone=zone, now=hotline.clock()
        )
    shown = "%Y-%m-%d %H:%M"
    series = [Bucket(r.period_start, r.period_end, r) for r in found]
    return {
        "errors": [],
        "wrong": [],
        "form": {
            "since": local_input(start, zone),
            "until": local_input(end, zone),
            "tz": str(zone),
        },
        "tz": str(zone),
        "period_text": f"{start.astimezone(zone).strftime(shown)} to "
        f"{end.astimezone(zone).strftime(shown)} ({zone})",
        "report": report,
        "charts": charts(series, size, zone),
        # The charts' figures as rows, whole (offered, answered, ASA...): what a shift
        # report copies, and what a screen reader reads instead of bars.
        "intervals": [
            (
                f"{b.start.astimezone(zone).strftime('%d %b %H:%M')} to "
                f"{b.end.astimezone(zone).strftime('%H:%M')}",
                b.report.overall,
                b.report.agents_available_average,
            )
            for b in series
        ],
        "definitions": (stats.__doc__ or "").strip(),
        # The shortest intervals one answer holds for the period (a month: hours).
        "intervals_csv": f"{PREFIX}/figures/intervals.csv?"
        + urlencode(
            {
                "since": local_input(start, zone),
                "until": local_input(end, zone),
                "tz": str(zone),
                "minutes": 30 if end - start <= api.MAX_INTERVALS * timedelta(minutes=30) else 60,
            }
        ),
        # None for a period in the first week there is (year 1): no week before it.
        "last_week": (
            figures_link(end - timedelta(days=7), end, zone) if end > WEEK_AFTER_TIME else None
        ),
    }


# -- freezes ---------------------------------------------------------------------------------

FREEZE_PERIODS = (1, 7, 30)  # days a supervisor looks back over


@router.get("/freezes")
def freezes_page(request: Request, hotline: HotlineDep) -> Response:
    """Every freeze and unfreeze of the last days, newest first; at the top, the freezes the
    account service did not confirm and nobody has made since: accounts maybe still open to
    whoever took them."""
    user = gate(request, hotline, SUPERVISORS)
    if isinstance(user, Response):
        return user
    asked = request.query_params.get("days", "")
    days = int(asked) if asked in {str(d) for d in FREEZE_PERIODS} else FREEZE_PERIODS[0]
    since = hotline.clock() - timedelta(days=days)
    listed = api.freezes_list(user, hotline, since=since, limit=500)
    unconfirmed = api.freezes_list(
        user, hotline, since=hotline.clock() - timedelta(days=FREEZE_PERIODS[-1]), open_only=True
    )
    context = {
        "freezes": listed,
        "unconfirmed": unconfirmed,
        "days": days,
        "periods": FREEZE_PERIODS,
        "limit": 500,
    }
    return render(request, "freezes.html", context, user=user)


# -- the audit log --------------------------------------------------------------------------

_AUDIT_QUERY = TypeAdapter(api.AuditQuery)


def audit_query(raw: dict[str, str], zone: tzinfo = UTC) -> api.AuditQuery:
    """The API's audit filters from the form, as `call_query` reads the calls'. Raises
    ValidationError, or ValueError for a time that is none or until not after since."""
    given: dict[str, Any] = {
        k: v.strip() for k, v in raw.items() if k in AUDIT_FILTERS and v.strip()
    }
    for key in ("since", "until"):
        if key in given:
            given[key] = parse_when(given[key], key, zone)
    if "since" in given and "until" in given and given["until"] <= given["since"]:
        raise ValueError("until must be after since")
    return _AUDIT_QUERY.validate_python(given)


@router.get("/audit")
def audit_page(request: Request, hotline: HotlineDep) -> Response:
    """The audit log, newest first, with the API's filters: who did what, when. The API's
    own route, so the same entries, the same paging, and a look by account audited."""
    user = gate(request, hotline, SUPERVISORS)
    if isinstance(user, Response):
        return user

    def listed(query: api.AuditQuery, cursor: str | None) -> tuple[list[Any], str | None]:
        found = api.audit_list(user, hotline, query, PAGE_SIZE, cursor)
        return list(found.entries), found.next_cursor

    context = _filtered_page(
        request,
        hotline,
        path="/audit",
        names=AUDIT_FILTERS,
        query_of=audit_query,
        listed=listed,
        items="entries",
    )
    context["csv_name"] = api.AUDIT_CSV_CUT_NAME
    status = 422 if context["errors"] else 200
    return render(request, "audit.html", context, user=user, status=status)


@reporting(router.get("/audit.csv"))
def audit_csv(request: Request, hotline: HotlineDep) -> Response:
    """The entries the page's filters find, as the API's CSV (audited as `export_audit`)."""
    user = gate(request, hotline, SUPERVISORS)
    if isinstance(user, Response):
        return user
    raw = {k: request.query_params.get(k, "") for k in AUDIT_FILTERS}
    try:
        return api.audit_csv(user, hotline, audit_query(raw, hotline.zone))
    except (ValidationError, ValueError) as exc:
        why = problems(exc) if isinstance(exc, ValidationError) else [str(exc)]
        return Response("\n".join(why), status_code=422, media_type="text/plain")
    except HTTPException as exc:
        return Response(str(exc.detail), status_code=exc.status_code, media_type="text/plain")


# -- the call tree --------------------------------------------------------------------------

_SVG_CACHE: dict[str, str] = {}


def tree_svg(tree: CompiledTree) -> str:
    """Graphviz's picture of the tree, without its XML prologue, once per tree version."""
    cached = _SVG_CACHE.get(tree.version)
    if cached is None:
        text = graph.svg(tree)
        # Hidden from screen readers: its name would be every label run together (6,000
        # characters); the page gives the same tree as text beside it.
        cached = '<svg aria-hidden="true"' + text[text.index("<svg") + len("<svg") :]
        if len(_SVG_CACHE) >= 8:
            _SVG_CACHE.clear()
        _SVG_CACHE[tree.version] = cached
    return cached


@router.get("/tree")
def tree_page(request: Request, hotline: HotlineDep) -> Response:
    user = gate(request, hotline, TREE_ROLES)
    if isinstance(user, Response):
        return user
    tree = hotline.trees.current
    context: dict[str, Any] = {
        "version": tree.version,
        "nodes": len(tree.tree.nodes),
        "mermaid": graph.mermaid(tree),  # the picture's text alternative, or its stand-in
    }
    try:
        # Graphviz escapes every label it writes; the text comes from the operators' tree file.
        context.update(picture=Markup(tree_svg(tree)), problem=None)
    except (graph.GraphvizMissing, graph.GraphvizFailed) as exc:
        context.update(picture=None, problem=str(exc))
    return render(request, "tree.html", context, user=user)


# -- any other address ----------------------------------------------------------------------


class Otherwise(APIRoute):
    """A route that matches a GET only when no other route of the app does (wherever it is
    in the app's list: a route added after it, the static files' mount): so that a page,
    not the JSON API's answer, says there is nothing there."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get(_LOOKING_ELSEWHERE):
            return Match.NONE, {}
        match, child = super().matches(scope)
        if match is Match.FULL and _matched_elsewhere(scope):
            return Match.NONE, {}
        return match, child


_LOOKING_ELSEWHERE = "ivr.dashboard.otherwise"


def _matched_elsewhere(scope: Scope) -> bool:
    """Whether a route of the app other than `Otherwise` takes this request (the app's
    routes may hold the dashboard's router, `Otherwise` included, as one)."""
    looking = {**scope, _LOOKING_ELSEWHERE: True}
    return any(r.matches(looking)[0] is Match.FULL for r in scope["app"].router.routes)


def no_such_page(request: Request, hotline: HotlineDep, rest: str) -> Response:
    """An address of the dashboard with no page: an HTML page that says so (a form's
    address opened by itself, or reloaded, included), with the way back."""
    try:
        user = session_user(request, hotline)
    except Blocked:
        user = None
    posted = {**request.scope, "method": "POST"}
    if _matched_elsewhere(posted):
        context = _message(
            "Only a form goes here",
            "This address takes a form sent from its page, and shows nothing by itself.",
        )
        return render(
            request, "error.html", context, user=user, status=405, headers={"Allow": "POST"}
        )
    context = _message("No such page", "There is no page at this address.")
    return render(request, "error.html", context, user=user, status=404)


router.add_api_route("/{rest:path}", no_such_page, methods=["GET"], route_class_override=Otherwise)
