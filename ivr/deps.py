"""FastAPI dependencies shared by the webhook routes and the JSON API."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any, ParamSpec, TypeVar

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar
from fastapi import Depends, HTTPException, Request

from ivr.cases import User, expired_token_owner, sign_in, user_by_token
from ivr.hotline import Hotline
from ivr.identity import SignInThrottle

log = logging.getLogger("ivr.deps")

MAX_TOKEN = 200  # ours are 43 characters; nothing longer is looked up

# Threads for the agents' work that may wait on Twilio's REST API (up to TWILIO_REST_TIMEOUT
# each: an agent's next case, a transfer), apart from the threads the webhooks and the rest
# of the API share, and from the timed jobs' (`ivr.web.TimedJobs`). A slow Twilio then holds
# these up alone: it never leaves a caller's webhook waiting for a thread until Twilio gives
# up on it (15 s) and plays the fallback. They hold no database connection while they wait
# on Twilio, and at most one at a time otherwise, so they cannot tie up the pool the
# webhooks' threads are sized to (`ivr.web.worker_threads`).
REST_THREADS = 4
_REST: RunVar[anyio.CapacityLimiter] = RunVar("ivr_rest")

# Reports (the figures and their intervals, the calls' CSV) read a period's rows into Python:
# a month at a year's volume holds a thread and a connection for half a minute. They take
# the threads the webhooks share (the pool is sized for those: `ivr.web.worker_threads`), but
# no more than these at once per instance: a burst of reports, or of one user's requests for
# them, never leaves a caller's webhook waiting for a thread until Twilio plays the fallback.
REPORTS_AT_ONCE = 2
_REPORTS: RunVar[anyio.CapacityLimiter] = RunVar("ivr_reports")

P = ParamSpec("P")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., object])


def loop_limiter(var: RunVar[anyio.CapacityLimiter], tokens: int) -> anyio.CapacityLimiter:
    """This event loop's limiter kept in `var`, made with `tokens` the first time (as anyio
    keeps its default thread limiter: one per loop)."""
    try:
        return var.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(tokens)
        var.set(limiter)
        return limiter


def rest_limiter() -> anyio.CapacityLimiter:
    """This event loop's limiter for work that may wait on Twilio."""
    return loop_limiter(_REST, REST_THREADS)


def calls_twilio(route: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """A sync route that may wait on Twilio's REST API, run in a thread of `rest_limiter`'s
    instead of one the webhooks need. FastAPI reads its parameters from `route` (unwrapped)."""

    @functools.wraps(route)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        work = functools.partial(route, *args, **kwargs)
        return await anyio.to_thread.run_sync(work, limiter=rest_limiter())

    return run


def a_report(route: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """A sync route that reads much (a report): run in the webhooks' threads as any sync
    route is, once one of this event loop's REPORTS_AT_ONCE turns is free (a request waits
    for one without holding a thread). FastAPI reads its parameters from `route`."""

    @functools.wraps(route)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        async with loop_limiter(_REPORTS, REPORTS_AT_ONCE):
            return await anyio.to_thread.run_sync(functools.partial(route, *args, **kwargs))

    return run


async def get_hotline(request: Request) -> Hotline:
    # async: a sync dependency would take a worker thread just to read an attribute, and the
    # fallback URL must answer even when every thread waits on the database.
    hotline: Hotline = request.app.state.hotline
    return hotline


HotlineDep = Annotated[Hotline, Depends(get_hotline)]


def client_address(request: Request) -> str:
    """The client as the server sees it (behind a proxy: what uvicorn's --proxy-headers and
    --forwarded-allow-ips make of X-Forwarded-For; never the header taken on trust)."""
    return request.client.host if request.client else "unknown"


class Blocked(Exception):
    """Too many wrong tokens from this client address: `wait` seconds before the next try."""

    def __init__(self, wait: int) -> None:
        super().__init__(wait)
        self.wait = wait


class TokenExpired(Exception):
    """The token of `user` has expired: they need a new one (`ivr users token`), and trying
    again will not help."""

    def __init__(self, user: User) -> None:
        super().__init__(user.name)
        self.user = user


def staff_user(request: Request, hotline: Hotline, token: str, where: str) -> User | None:
    """The user a staff token (a bearer token, a dashboard sign-in or session) belongs to.

    A wrong one is counted against the client address (`SignInThrottle`), and raises Blocked
    while the address has sent too many lately. A right token always passes: refusing it would
    let anyone able to send wrong tokens "from" an agent's address lock that agent out of the
    queue (and a 256-bit token is not guessed anyway). An expired token is no right token: it
    is counted as a wrong one, then raises TokenExpired."""
    user = expired = None
    now = hotline.clock()
    if len(token) <= MAX_TOKEN:
        with hotline.db.connect() as conn:
            user = user_by_token(conn, token=token, now=now)
            if user is None:
                expired = expired_token_owner(conn, token=token, now=now)
    if user is not None:
        return user
    wrong_token(request, hotline, where, expired=expired)
    if expired is not None:
        raise TokenExpired(expired)
    return None


def wrong_token(
    request: Request, hotline: Hotline, where: str, *, expired: User | None = None
) -> None:
    """Count a wrong token or session cookie (or the token of `expired`, past its expiry)
    against the client address, and in the metrics; Blocked while the address has sent too
    many lately. Logged as a warning, never the token itself."""
    throttle = SignInThrottle(hotline.db, pepper=hotline.settings.twilio_auth_token)
    client, now = client_address(request), hotline.clock()
    failures = hotline.metrics.staff_auth_failures
    failures.labels(where, "wrong" if expired is None else "expired").inc()
    wait = throttle.retry_after(client, now)
    if wait is not None:
        hotline.metrics.staff_auth_blocked.labels(where).inc()
        raise Blocked(wait)
    said = None if expired is None else f"{expired.role}:{expired.name}"
    throttle.failed(client, where, now, expired=said)  # audited (`sign_in_failed`)
    # Only while not blocked: a flood of them writes a few lines an address, the metrics the
    # rest. `source` names the client as the audit log does (never its address).
    source = throttle.source(client)
    if expired is None:
        log.warning(
            "wrong staff token or session where=%s client=%s source=%s", where, client, source
        )
    else:
        log.warning(
            "expired staff token user=%s role=%s where=%s client=%s source=%s: "
            "`ivr users token %s` issues a new one",
            expired.name,
            expired.role,
            where,
            client,
            source,
            expired.name,
        )


def dashboard_sign_in(
    request: Request, hotline: Hotline, user: User, *, lasts: timedelta, replacing: str | None
) -> str:
    """Sign `user` in to the dashboard: the secret of their new session, for the cookie. The
    session of the cookie it replaces (`replacing`) is closed. Audited, and logged with the
    client address (incident response asks when and from where a token was used)."""
    with hotline.db.connect() as conn:
        secret = sign_in(conn, user=user, now=hotline.clock(), lasts=lasts, replacing=replacing)
    log.info(
        "dashboard sign-in user=%s role=%s client=%s",
        user.name,
        user.role,
        client_address(request),
    )
    return secret


def current_user(request: Request, hotline: HotlineDep) -> User:
    """The user behind `Authorization: Bearer <token>`; 401 without one (nothing guessed, nothing
    counted) or with a wrong or expired one, 429 while the client address has sent too many
    wrong ones."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    user = None
    if scheme.lower() == "bearer" and token:
        try:
            user = staff_user(request, hotline, token, "api")
        except Blocked as blocked:
            raise HTTPException(
                429,
                "too many wrong tokens from this address; try again later",
                headers={"Retry-After": str(blocked.wait)},
            ) from None
        except TokenExpired:
            raise HTTPException(
                401,
                "this token has expired: ask an operator for a new one (ivr users token)",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            ) from None
    if user is None:
        raise HTTPException(
            401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    return user


def require(*roles: str) -> Callable[[User], User]:
    def check(user: Annotated[User, Depends(current_user)]) -> User:
        if user.role not in roles:
            raise HTTPException(403, f"this needs the role {' or '.join(roles)}")
        return user

    return check


AgentUser = Annotated[User, Depends(require("agent"))]
StaffUser = Annotated[User, Depends(require("agent", "supervisor"))]
SupervisorUser = Annotated[User, Depends(require("supervisor"))]
AnnouncerUser = Annotated[User, Depends(require("supervisor", "operator"))]
AnyUser = Annotated[User, Depends(require("agent", "supervisor", "operator"))]
OperatorUser = Annotated[User, Depends(require("operator"))]
TreeReader = Annotated[User, Depends(require("operator", "supervisor"))]


def off_the_webhooks(register: Callable[[Callable[..., Any]], object]) -> Callable[[F], F]:
    """Register a sync route (`register`: `router.post(...)`) to run as `calls_twilio` says;
    the function itself stays as written, for the dashboard to call in its own routes."""

    def decorate(route: F) -> F:
        register(calls_twilio(route))
        return route

    return decorate


def reporting(register: Callable[[Callable[..., Any]], object]) -> Callable[[F], F]:
    """Register a sync route (`register`: `router.get(...)`) to run as `a_report` says; the
    function itself stays as written, for the dashboard to call in its own routes."""

    def decorate(route: F) -> F:
        register(a_report(route))
        return route

    return decorate
