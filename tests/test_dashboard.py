"""The web dashboard: pages over HTTP (both databases), then one run in a real browser.

The HTTP tests read the HTML with lxml. The browser test starts the app as a real server
(uvicorn on a free local port), places calls through the Twilio-like phone over HTTP while the
callers hold, and drives Debian's Chromium with Playwright: sign in, the emergency on top of
the live queue, an agent taking the emergency at their desk, the calls list, a timeline, the
figures and the tree. It writes a screenshot of each page to
test-artifacts/dashboard-<page>.png. Without /usr/bin/chromium (or Graphviz) the tests fail:
run scripts/browser-deps.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.testclient import TestClient
from lxml import html
from sqlalchemy import Engine, insert, select, update

from ivr import cases as cases_module
from ivr import dashboard
from ivr.db import (
    accounts,
    audit_log,
    call_events,
    calls,
    cases,
    create_db_engine,
    sessions,
    users,
)
from ivr.graph import GraphvizMissing
from ivr.identity import LocalDirectory, SignInThrottle
from ivr.phone import HangsUp, Phone, Press, ScriptedParty
from ivr.settings import PROJECT_ROOT, Settings
from ivr.tree import CompiledTree
from ivr.web import create_app
from tests.conftest import (
    HTTPS_CLIENT,
    PUBLIC_URL,
    TOKEN,
    FakeClock,
    RecordingTwilio,
    bearer,
    make_settings,
    make_user,
)
from tests.support.parties import Caller, Talks
from tests.support.servers import serving_app
from tests.support.twilio import app_with_twilio, on_the_line, placed_calls

UID, PIN, ID4 = "10000001", "739182", "5064"
VICTIM = "+15005550006"
NORMAL_CALLER = "+15005550123"
AGENT_PHONE = "+15005559999"
HIJACK = [Press("1"), Press("1"), Press(UID), Press(PIN)]  # English, stolen account, UID, PIN
DEPOSITS = [Press("1"), Press("3"), Press("1"), Press("1")]  # deposits -> not credited -> agent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
PAGES = (
    "/dashboard/queue",
    "/dashboard/calls",
    "/dashboard/figures",
    "/dashboard/freezes",
    "/dashboard/audit",
    "/dashboard/tree",
)


def with_dashboard(app: FastAPI) -> FastAPI:
    """The dashboard's router and static files, unless the app has them already."""
    paths = {getattr(route, "path", None) for route in app.routes}
    if "/dashboard/login" not in paths:
        app.include_router(dashboard.router)
    if dashboard.STATIC_PATH not in paths:
        static = StaticFiles(directory=dashboard.STATIC_DIR)
        app.mount(dashboard.STATIC_PATH, static, name="dashboard-static")
    return app


@pytest.fixture
def app(settings: Settings, hotline_tree: CompiledTree, db: Engine, clock: FakeClock) -> FastAPI:
    return with_dashboard(create_app(settings, tree=hotline_tree, db=db, clock=clock))


def add_account(db: Engine, settings: Settings) -> None:
    LocalDirectory(db, settings.secret_key).add(
        uid=UID,
        pin=PIN,
        id_last4=ID4,
        phone=VICTIM,
        totp_secret=None,
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )


@pytest.fixture
def placed(phone: Phone, clock: FakeClock, db: Engine, settings: Settings) -> dict[str, str]:
    """A normal caller, then 30 s later a verified hijack victim; both hang up on hold, so
    both cases stay in line (abandoned, for a call back). Returns name -> CallSid."""
    add_account(db, settings)
    normal = phone.call(ScriptedParty(list(DEPOSITS)), from_number=NORMAL_CALLER)
    clock.advance(seconds=30)
    hijack = phone.call(ScriptedParty(list(HIJACK)), from_number=VICTIM)
    clock.advance(seconds=95)
    return {"normal": normal.call_sid, "hijack": hijack.call_sid}


@pytest.fixture
def supervisor(db: Engine) -> str:
    return make_user(db, "sam", "supervisor")


def login(client: TestClient, token: str) -> httpx.Response:
    return client.post("/dashboard/login", data={"token": token}, follow_redirects=False)


def signed_in(client: TestClient, token: str) -> TestClient:
    assert login(client, token).status_code == 303
    return client


def page(client: TestClient, path: str, status: int = 200, **params: str) -> Any:
    response = client.get(path, params=params or None, follow_redirects=False)
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("text/html")
    return html.fromstring(response.text)


def texts(doc: Any, xpath: str) -> list[str]:
    return [" ".join(e.text_content().split()) for e in doc.xpath(xpath)]


# What a page says after an action (?said=), read out as a status (one that failed,
# SAID_FAILED, is an alert): not the live parts' announcer, empty until a new emergency.
SAYS = "//p[@role='status'][contains(@class, 'notice')]"


def cookie_header(response: httpx.Response) -> str:
    [value] = response.headers.get_list("set-cookie")
    return value


# -- signing in -------------------------------------------------------------------------------


def test_a_bad_token_shows_an_error_and_sets_no_cookie(client: TestClient, db: Engine) -> None:
    for token in ("not-a-token", "", "x" * 5000):
        response = login(client, token)
        assert response.status_code == 401
        assert "That token is not valid" in response.text
        assert "set-cookie" not in response.headers
        # Said in the title, and tied to the field it is about.
        doc = html.fromstring(response.text)
        assert doc.findtext(".//title").startswith("Not signed in · ")
        [field] = doc.xpath("//input[@id='token']")
        assert (field.get("aria-invalid"), field.get("aria-describedby")) == ("true", "login-error")
        assert texts(doc, "//*[@id='login-error']") == [
            "That token is not valid. Check it and try again."
        ]
    assert client.get("/dashboard/login").status_code == 200


def test_a_good_token_sets_a_strict_http_only_cookie(
    client: TestClient, app: FastAPI, db: Engine, supervisor: str
) -> None:
    response = login(client, supervisor)
    assert (response.status_code, response.headers["location"]) == (303, "/dashboard/queue")
    cookie = cookie_header(response)
    # A session of its own, not the API token: a stolen cookie is one session, which signing
    # out ends, and no key to the API.
    assert cookie.startswith(f"{dashboard.COOKIE}=") and supervisor not in cookie
    secret = client.cookies[dashboard.COOKIE]
    assert client.get("/api/queue", headers=bearer(secret)).status_code == 401
    assert client.get("/api/queue", headers=bearer(supervisor)).status_code == 200
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/dashboard"} <= flags
    assert "secure" in flags  # over https only, as the public URL is
    with TestClient(app) as plain:  # a proxy that did not say X-Forwarded-Proto: https
        assert plain.base_url.scheme == "http"
        assert "secure" in cookie_header(login(plain, supervisor)).lower().split("; ")
    settings = make_settings(
        IVR_DATABASE_URL=app.state.hotline.settings.database_url,
        IVR_PUBLIC_URL="http://localhost:8000",
    )
    local = create_app(settings, tree=app.state.hotline.trees.current, db=db)
    with TestClient(local) as dev:  # `scripts/dev`: plain http on this machine
        assert "secure" not in cookie_header(login(dev, supervisor)).lower().split("; ")
    # An operator lands on the tree, the one page for them.
    operator = login(client, make_user(db, "olga", "operator"))
    assert operator.headers["location"] == "/dashboard/tree"


def test_signing_out_ends_the_session(client: TestClient, supervisor: str) -> None:
    """On the server, not only in this browser: a copy of the cookie (another tab, a
    thief's) lets nobody in once its session signed out. Other sessions go on."""
    signed_in(client, supervisor)
    page(client, "/dashboard/queue")
    copy = client.cookies[dashboard.COOKIE]
    with TestClient(client.app, base_url=HTTPS_CLIENT) as other_browser:
        signed_in(other_browser, supervisor)
        out = client.post("/dashboard/logout", follow_redirects=False)
        assert (out.status_code, out.headers["location"]) == (303, "/dashboard/login")
        assert "Max-Age=0" in cookie_header(out) or "expires=" in cookie_header(out).lower()
        assert client.get("/dashboard/queue", follow_redirects=False).status_code == 303
        client.cookies.set(dashboard.COOKIE, copy, path="/dashboard")
        replayed = client.get("/dashboard/queue", follow_redirects=False)
        assert (replayed.status_code, replayed.headers["location"]) == (303, "/dashboard/login")
        page(other_browser, "/dashboard/queue")


def test_a_session_lasts_eight_hours_and_a_new_token_ends_it(
    client: TestClient, db: Engine, clock: FakeClock, supervisor: str
) -> None:
    from ivr.cases import reissue_token

    signed_in(client, supervisor)
    clock.advance(seconds=dashboard.SESSION_SECONDS - 1)
    page(client, "/dashboard/queue")
    clock.advance(seconds=1)
    assert client.get("/dashboard/queue", follow_redirects=False).status_code == 303
    signed_in(client, supervisor)
    page(client, "/dashboard/queue")
    with db.connect() as conn:
        reissue_token(conn, name="sam")  # the old token leaked: its sessions end with it
    assert client.get("/dashboard/queue", follow_redirects=False).status_code == 303


def test_revoking_a_user_ends_their_session_at_once(
    client: TestClient, db: Engine, supervisor: str
) -> None:
    from ivr.cases import revoke_user

    signed_in(client, supervisor)
    page(client, "/dashboard/queue")
    with db.connect() as conn:
        revoke_user(conn, name="sam", now=datetime(2026, 11, 23, tzinfo=UTC))
    response = client.get("/dashboard/queue", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/dashboard/login")


def test_a_post_from_another_site_is_refused(client: TestClient, supervisor: str) -> None:
    response = client.post(
        "/dashboard/login",
        data={"token": supervisor},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert "set-cookie" not in response.headers
    # Our own host over plain http, on an https hotline: a page anyone on the network could
    # serve, with the cookie of a browser that calls both schemes the same site.
    plain = client.post(
        "/dashboard/login",
        data={"token": supervisor},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert plain.status_code == 403 and "set-cookie" not in plain.headers
    same = client.post(
        "/dashboard/login",
        data={"token": supervisor},
        headers={"Origin": "https://testserver"},
        follow_redirects=False,
    )
    assert same.status_code == 303
    # Browsers keep to https for the host from then on.
    assert same.headers["strict-transport-security"] == "max-age=31536000"


def test_every_dashboard_form_refuses_a_post_from_another_site(
    client: TestClient, supervisor: str, placed: dict[str, str]
) -> None:
    """Every route that acts, whatever a new one is: a foreign Origin is refused before
    anything is done (nothing for a forged form to freeze, resolve or announce)."""
    signed_in(client, supervisor)
    posts = [
        route.path
        for route in dashboard.router.routes
        if isinstance(route, APIRoute) and "POST" in route.methods
    ]
    assert len(posts) > 10
    for path in posts:
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        response = client.post(
            concrete, headers={"Origin": "https://evil.example"}, follow_redirects=False
        )
        assert response.status_code == 403, path
    assert client.get("/dashboard/queue").status_code == 200  # still signed in


def test_every_page_needs_a_login(client: TestClient, placed: dict[str, str]) -> None:
    paths = [*PAGES, "/dashboard/queue/rows", f"/dashboard/calls/{placed['hijack']}"]
    paths.append("/dashboard/desk")
    for path in paths:
        response = client.get(path, follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (303, "/dashboard/login")
    client.cookies.set(dashboard.COOKIE, "forged", path="/dashboard")
    for path in paths:
        assert client.get(path, follow_redirects=False).status_code == 303


def test_each_page_needs_the_right_role(
    client: TestClient, db: Engine, placed: dict[str, str]
) -> None:
    staff_pages = ["/dashboard/queue", "/dashboard/calls", "/dashboard/figures"]
    staff_pages += [f"/dashboard/calls/{placed['hijack']}", "/dashboard/queue/rows"]
    signed_in(client, make_user(db, "olga", "operator"))
    for path in staff_pages:
        doc = page(client, path, status=403)
        assert "Not for your role" in doc.text_content()
    page(client, "/dashboard/tree")
    assert "Not for your role" in page(client, "/dashboard/audit", status=403).text_content()
    signed_in(client, make_user(db, "alice", "agent", AGENT_PHONE))
    assert "Not for your role" in page(client, "/dashboard/tree", status=403).text_content()
    for path in staff_pages:
        page(client, path)
    # The navigation offers only what the role may open.
    nav = texts(page(client, "/dashboard/queue"), "//nav//a")
    assert nav == ["Desk", "Queue", "Calls", "Figures"]
    for path in ("/dashboard/freezes", "/dashboard/audit", "/dashboard/audit.csv"):
        assert "Not for your role" in page(client, path, status=403).text_content()
    signed_in(client, make_user(db, "sam", "supervisor"))
    assert "Not for your role" in page(client, "/dashboard/desk", status=403).text_content()
    nav = texts(page(client, "/dashboard/freezes"), "//nav[@aria-label='Dashboard']//a")
    assert nav == ["Queue", "Calls", "Figures", "Freezes", "Audit", "Call tree"]


# -- the pages ------------------------------------------------------------------------------


def test_queue_shows_the_emergency_first_marked_and_masked(
    client: TestClient, supervisor: str, placed: dict[str, str]
) -> None:
    signed_in(client, supervisor)
    doc = page(client, "/dashboard/queue")
    rows = doc.xpath("//table[contains(@class,'queue')]/tbody/tr")
    assert len(rows) == 2
    first, second = rows
    assert "emergency" in first.get("class").split()
    assert texts(first, ".//span[contains(@class,'badge-emergency')]") == ["Emergency"]
    cells = [" ".join(td.text_content().split()) for td in first.xpath("./td")]
    # position, ticket, priority, waiting (in sight at 200 % zoom), queue, reason, verified,
    # status, caller, language, and for a supervisor the form to move it in line
    assert cells[0] == "1" and re.fullmatch(r"\d{7}", cells[1])
    assert cells[2:-1] == [
        "Emergency",
        "01:35 late (call back)",  # an emergency owed a call back past its 20 s
        "security",
        "account hijack",
        "yes",
        "abandoned",
        "***0006",
        "en",
    ]
    assert cells[-1].startswith("Priority for ticket") and cells[-1].endswith("Move")
    assert "emergency" not in second.get("class").split()
    cells = [" ".join(td.text_content().split()) for td in second.xpath("./td")]
    assert cells[3] == "02:05" and cells[-3:-1] == ["***0123", "en"]
    source = html.tostring(doc, encoding="unicode")
    assert "5005550006" not in source and "5005550123" not in source
    # The fragment the page refreshes itself with: the same table, no page around it.
    fragment = client.get("/dashboard/queue/rows")
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert fragment.text.index(">1<") < fragment.text.index("badge-emergency")


def test_the_queue_page_puts_its_emergencies_first_and_its_live_part_says_nothing_itself(
    client: TestClient, supervisor: str, placed: dict[str, str]
) -> None:
    """An emergency waiting is the first thing of the tab's title (a tab in the background
    shows it) and of the counts. The part refreshed every few seconds holds no status or
    alert (made anew each time, it would be said each time, or never): the page's one status,
    outside it, says what is new, and the tickets of the emergencies it lists tell it what
    is. The waiting table has a heading; every table scrolls in a region of its own, named.
    Without JavaScript, no timed reload: a link."""
    signed_in(client, supervisor)
    doc = page(client, "/dashboard/queue")
    assert doc.findtext(".//title") == "(1 emergency) Live queue · Support hotline"
    [live] = doc.xpath("//div[@id='queue-live']")
    [counts] = live.xpath("./p[contains(@class, 'counts')]")
    assert " ".join(counts.text_content().split()).startswith("1 emergency · 2 waiting: ")
    [emergency] = live.xpath(".//table[contains(@class,'queue')]/tbody/tr[@class='emergency']")
    assert counts.get("data-emergencies") == emergency.get("data-ticket")
    assert live.xpath(".//*[@role='status' or @role='alert' or @aria-live]") == []
    order = list(doc.iter())
    [waiting] = doc.xpath("//h2[normalize-space()='Waiting']")
    [table] = live.xpath(".//table[contains(@class,'queue')]")
    assert order.index(waiting) < order.index(live) < order.index(table)
    for table in doc.xpath("//table[contains(@class,'data')]"):
        region = table.getparent()
        assert (region.get("role"), region.get("tabindex")) == ("region", "0")
        [name] = doc.xpath(f"//*[@id='{region.get('aria-labelledby')}']")
        assert name.text_content().strip()
    assert doc.xpath("//meta[@http-equiv]") == []
    assert doc.xpath("//noscript//a[normalize-space()='Refresh now']/@href") == ["/dashboard/queue"]
    assert doc.xpath("//*[@id='live-note'][@hidden]")  # "Refreshes every 5 s": the script's


def test_the_queue_counts_what_waits_in_each_line_and_language(
    client: TestClient, agent: str, placed: dict[str, str]
) -> None:
    """Where the staff are needed: each queue's count, how many of them are on the line,
    and the longest wait there; and each language's count."""
    signed_in(client, agent)
    doc = page(client, "/dashboard/queue")
    lines = {e.get("data-queue"): e for e in doc.xpath("//span[@class='line-count']")}
    assert sorted(lines) == ["payments", "security"]
    assert " ".join(lines["security"].text_content().split()) == (
        "security 1 (0 on the line, longest 01:35)"
    )
    assert " ".join(lines["payments"].text_content().split()) == (
        "payments 1 (0 on the line, longest 02:05)"
    )
    languages = texts(doc, "//span[@class='language-count']")
    assert languages == ["en 2"]
    assert not doc.xpath("//p[contains(@class, 'listed-cut')]")  # all of them are listed


def test_the_queue_marks_callers_and_emergency_call_backs_past_their_target(
    client: TestClient,
    phone: Phone,
    clock: FakeClock,
    supervisor: str,
    placed: dict[str, str],
) -> None:
    """A caller holding past the figures' target (60 s; 20 s for an emergency) is late
    already: their wait is marked, and the status line counts them. Of the callers who hung
    up (call backs), the hijack victim is owed one past the emergency target: late too, said
    to be a call back; the normal one has no target to be late against."""
    signed_in(client, supervisor)
    seen: list[tuple[list[str], str]] = []

    def look() -> None:
        doc = page(client, "/dashboard/queue/rows")
        late = [
            " ".join(td.text_content().split())
            for td in doc.xpath("//td[contains(@class, 'late')]")
        ]
        seen.append((late, " ".join(texts(doc, "//p[contains(@class, 'status-line')]")[0].split())))

    class Holding(ScriptedParty):
        def keep_holding(self, queue: str, polls: int) -> bool:
            clock.advance(seconds=31)
            look()
            return polls < 2

    phone.call(Holding([Press("1"), Press("0")]), from_number="+15005550144")
    (on_time, line), (past, late_line) = seen[0], seen[1]
    assert on_time == ["02:06 late (call back)"]  # the victim; the caller holds 31 s
    # The two callers of `placed` hung up: call backs owed; this one holds on the line.
    assert line.startswith("1 emergency · 3 waiting: 1 on the line, 2 call backs owed"), line
    assert "1 emergency call back owed past the service-level target (20 s for" in line
    assert "on the line past" not in line
    assert past == ["02:37 late (call back)", "01:02 late"]  # in words, not by colour alone
    assert (
        "1 on the line, 1 emergency call back owed past the service-level target "
        "(20 s for emergencies, 60 s for the rest)"
    ) in late_line


def in_line(
    n: int,
    now: datetime,
    queue: str,
    priority: str,
    status: str,
    waited: float,
    *,
    language: str = "en",
    not_before: datetime | None = None,
) -> dict[str, Any]:
    """The row of case `n`, in line for `waited` seconds at `now`."""
    joined = now - timedelta(seconds=waited)
    return {
        "ticket": f"T{n:07d}",
        "call_sid": f"CA{n:032d}",
        "caller": f"+1500555{n:04d}",
        "reason": "account_hijack" if priority == "emergency" else "deposit_missing",
        "queue": queue,
        "priority": priority,
        "lane": 0 if priority == "emergency" else 1,
        "sort_at": joined,
        "queued": 1,
        "status": status,
        "flags": {},
        "path": [],
        "created_at": joined,
        "language": language,
        "not_before": not_before,
    }


def crowd(db: Engine, now: datetime) -> None:
    """541 cases in line, in one statement (a hack day's worth, made at once):

    security  emergency  3 on the line 10 s (on time), 7 call backs owed 5 min (late), and
                         1 more held back until a retry in 10 min (late, not ready)
    payments  normal     520 on the line 10 min (late, en), 10 on the line 30 s (zh-CN)
    """
    later = now + timedelta(minutes=10)
    kinds = (
        [("security", "emergency", "waiting", 10, {})] * 3
        + [("security", "emergency", "abandoned", 300, {})] * 7
        + [("security", "emergency", "abandoned", 300, {"not_before": later})]
        + [("payments", "normal", "waiting", 600, {})] * 520
        + [("payments", "normal", "waiting", 30, {"language": "zh-CN"})] * 10
    )
    rows = [in_line(n, now, q, p, st, w, **extra) for n, (q, p, st, w, extra) in enumerate(kinds)]
    with db.begin() as conn:
        conn.execute(insert(cases), rows)


def test_the_queue_counts_every_case_in_line_and_lists_the_first_500(
    client: TestClient, db: Engine, clock: FakeClock, supervisor: str, agent: str
) -> None:
    """The counts are of the whole line, not of the 500 rows listed; the page says the
    list stops there. The desk's line and the API count all of them too."""
    crowd(db, clock())
    signed_in(client, supervisor)
    doc = page(client, "/dashboard/queue/rows")
    assert len(doc.xpath("//table[contains(@class,'queue')]/tbody/tr")) == 500
    [line, by_line] = texts(doc, "//p[contains(@class, 'status-line')]")[:2]
    [cut] = texts(doc, "//p[contains(@class, 'listed-cut')]")
    assert line.startswith(
        "11 emergencies · 541 waiting: 533 on the line, 8 call backs owed · 520 on the line, "
        "8 emergency call backs owed past the service-level target"
    ), line
    assert by_line == (
        "By line: payments 530 (530 on the line, longest 10:00) · "
        "security 11 (3 on the line, longest 05:00) · by language: en 531 · zh-CN 10"
    )
    assert cut == (
        "Showing the first 500 of 541, in serving order; the counts above are of all of them."
    )
    listed = client.get("/api/queue", headers=bearer(supervisor))
    assert (len(listed.json()), listed.headers["x-total-count"]) == (500, "541")
    signed_in(client, agent)
    [desk] = texts(page(client, "/dashboard/desk/live"), "//p[@data-version]")
    # The call back held back until its retry time is no case to take now.
    assert desk.startswith("540 waiting for an agent · 10 emergencies · the longest for 10:00")


def test_a_wait_is_counted_late_when_it_shows_late(
    client: TestClient, db: Engine, clock: FakeClock, supervisor: str
) -> None:
    """Waits show in whole seconds: 20.5 s shows 00:20, on time for an emergency, and is
    not counted late either; 21 s is both."""
    now = clock()
    rows = [
        in_line(n, now, "security", "emergency", "waiting", w) for n, w in enumerate((20.5, 21))
    ]
    with db.begin() as conn:
        conn.execute(insert(cases), rows)
    signed_in(client, supervisor)
    doc = page(client, "/dashboard/queue/rows")
    assert texts(doc, "//td[contains(@class, 'late')]") == ["00:21 late"]
    assert texts(doc, "//strong[@class='late-count']") == ["1 on the line"]


def test_an_emergency_caller_is_late_after_twenty_seconds(
    client: TestClient,
    phone: Phone,
    clock: FakeClock,
    db: Engine,
    settings: Settings,
    supervisor: str,
) -> None:
    add_account(db, settings)
    signed_in(client, supervisor)
    seen: list[list[str]] = []

    class Holding(ScriptedParty):
        def keep_holding(self, queue: str, polls: int) -> bool:
            clock.advance(seconds=11)
            doc = page(client, "/dashboard/queue/rows")
            seen.append(texts(doc, "//td[contains(@class, 'late')]"))
            return polls < 2

    phone.call(Holding(list(HIJACK)), from_number=VICTIM)
    assert seen == [[], ["00:22 late"]]  # 11 s on time; 22 s past 20 s


def test_a_supervisor_sees_who_is_at_work_and_the_wait_a_new_caller_hears(
    client: TestClient, db: Engine, supervisor: str, placed: dict[str, str], clock: FakeClock
) -> None:
    """Two call backs in line, and one agent takes the emergency: one agent at work, no
    handle time measured yet (IVR_AVG_HANDLE_SECONDS, 240 s), a normal case in line. A caller
    joining now is second in line, 2 x 240 s; a hijack victim first, 240 s. Before, with
    nobody at work, no minutes: as the hold loop says it."""
    before = client.get("/api/staffing", headers=bearer(supervisor)).json()
    assert before["agents_at_work"] == 0
    assert (before["new_caller_wait_seconds"], before["new_emergency_wait_seconds"]) == (None, None)
    signed_in(client, supervisor)
    [line] = texts(page(client, "/dashboard/queue"), "//p[contains(@class,'staffing')]")
    assert line.endswith(
        "nobody is at work: a caller joining now hears their place in line and no minutes"
    )
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    assert client.post("/api/agents/next", headers=bearer(alice)).json()["case"]["priority"] == (
        "emergency"
    )
    assert client.get("/api/staffing").status_code == 401
    figures = client.get("/api/staffing", headers=bearer(supervisor)).json()
    assert figures == {
        "agents_at_work": 1,
        "agents_available": 0,
        "handle_seconds": 240.0,
        "handle_measured_over": 0,
        "handle_source": "setting",
        "ready_emergencies": 0,
        "ready_others": 1,
        "new_caller_wait_seconds": 480,
        "new_emergency_wait_seconds": 240,
    }
    signed_in(client, supervisor)
    [line] = texts(page(client, "/dashboard/queue"), "//p[contains(@class,'staffing')]")
    assert line.startswith(
        "1 agent at work (0 available: offered cases as they come) · a case takes 04:00 "
        "(IVR_AVG_HANDLE_SECONDS"
    )
    assert line.endswith("a caller joining now hears about 8 min, a hijack victim about 4 min")
    scraped = client.get("/metrics").text
    assert "ivr_agents_at_work 1.0" in scraped and "ivr_handle_seconds 240.0" in scraped


def test_a_supervisor_takes_back_and_closes_what_agents_have(
    client: TestClient, db: Engine, supervisor: str, placed: dict[str, str], clock: FakeClock
) -> None:
    """An agent took the emergency and went home; another took the deposits case, was put
    through and was revoked. The supervisor sees both, with whom, and takes the first back
    to the line and closes the second. Agents see no such section."""
    alice, bob = make_user(db, "alice", "agent", AGENT_PHONE), make_user(db, "bob", "agent")
    emergency = client.post("/api/agents/next", headers=bearer(alice)).json()["case"]
    clock.advance(seconds=30)
    deposits = client.post("/api/agents/next", headers=bearer(bob)).json()["case"]
    with db.connect() as conn:
        alice_id = conn.execute(select(users.c.id).where(users.c.name == "alice")).scalar_one()
    with db.connect() as conn:
        assert cases_module.set_status(
            conn, case_id=deposits["id"], status="connected", now=clock()
        )
        # bob hung up 20 s ago and left his notes unwritten; alice's desk is empty (a
        # supervisor set her away): nobody but a supervisor will finish either case.
        assert cases_module.agent_answered(
            conn, case_id=deposits["id"], agent_id=None, now=clock() - timedelta(seconds=20)
        )
        cases_module.set_available(conn, agent_id=alice_id, available=True, now=clock())
        assert cases_module.set_away_by_name(conn, name="alice", actor="cli:sam", now=clock())
        cases_module.revoke_user(conn, name="bob", now=clock())
    signed_in(client, supervisor)
    doc = page(client, "/dashboard/queue")
    rows = doc.xpath("//table[contains(@class,'held')]/tbody/tr")
    assert [r.get("data-ticket") for r in rows] == [emergency["ticket"], deposits["ticket"]]
    first = [" ".join(td.text_content().split()) for td in rows[0].xpath("./td")]
    assert first[4:8] == ["yes", "offered", "alice set away", "00:30"]
    second = [" ".join(td.text_content().split()) for td in rows[1].xpath("./td")]
    assert second[5] == "connected · after the call for 00:20"
    assert "revoked" in rows[1].text_content()
    # Each row's buttons say whose they are, not only "Take back", "Close" again and again.
    # A connected case whose call is over goes back for a call back (the test_emergency
    # scenario), or is closed.
    assert [b.get("aria-label") for r in rows for b in r.xpath(".//button")] == [
        f"Take back ticket {emergency['ticket']}",
        f"Close ticket {emergency['ticket']}",
        f"Call back ticket {deposits['ticket']}: back in its place in line",
        f"Close ticket {deposits['ticket']}",
    ]
    api_view = client.get("/api/cases/held", headers=bearer(supervisor)).json()
    assert [h["ticket"] for h in api_view] == [emergency["ticket"], deposits["ticket"]]
    assert api_view[1]["agent_revoked"] is True
    assert [(h["agent_gone"], h["after_call_seconds"]) for h in api_view] == [
        ("set_away", None),
        (None, 20),
    ]
    taken_back = act(client, f"/dashboard/queue/{emergency['id']}/requeue")
    assert taken_back.headers["location"] == "/dashboard/queue?said=requeued"
    queue = client.get("/api/queue", headers=bearer(supervisor)).json()
    assert queue[0]["ticket"] == emergency["ticket"]  # first in line again
    # Closing another's case needs a box ticked that says the agent is done: not one click.
    close = f"/dashboard/queue/{deposits['id']}/resolve"
    unticked = act(client, close, notes="bob left it done")
    assert unticked.status_code == 422 and "tick that you checked" in unticked.text
    still = client.get("/api/cases/held", headers=bearer(supervisor)).json()
    assert [h["ticket"] for h in still] == [deposits["ticket"]]
    closed = act(client, close, notes="bob left it done", confirm="yes")
    assert closed.headers["location"] == "/dashboard/queue?said=resolved"
    doc = page(client, "/dashboard/queue", said="resolved")
    assert texts(doc, SAYS) == [dashboard.SAID["resolved"]]
    assert "No agent has a case now." in doc.text_content()
    again = act(client, close, notes="", confirm="yes")
    assert again.status_code == 409 and "the case is resolved already" in again.text
    # An agent sees the queue without the section, and may not use its forms.
    signed_in(client, alice)
    assert "With agents" not in client.get("/dashboard/queue").text
    assert act(client, f"/dashboard/queue/{emergency['id']}/requeue").status_code == 403
    assert client.get("/api/cases/held", headers=bearer(alice)).status_code == 403


def test_a_supervisor_announces_to_every_caller_from_the_queue_page(
    client: TestClient, db: Engine, supervisor: str, phone: Phone
) -> None:
    signed_in(client, supervisor)
    assert "None now." in page(client, "/dashboard/queue").text_content()
    english = "Withdrawals are paused while we investigate. Your funds are safe."
    # A language missing: refused, what was typed is kept for another try.
    refused = act(client, "/dashboard/announcement", **{"text-en": english, "minutes": "90"})
    assert refused.status_code == 422 and "zh-CN" in refused.text
    assert english in refused.text
    done = act(
        client,
        "/dashboard/announcement",
        **{"text-en": english, "text-zh-CN": "提现暂停处理中。", "minutes": "90"},
    )
    assert done.headers["location"] == "/dashboard/queue?said=announced"
    doc = page(client, "/dashboard/queue", said="announced")
    assert english in doc.text_content() and "supervisor:sam" in doc.text_content()
    # Each text is marked with its language (a screen reader speaks the Mandarin as Mandarin),
    # shown and to edit, in a font that has its characters.
    assert {dd.get("lang"): dd.text for dd in doc.xpath("//section//dl//dd")} == {
        "en": english,
        "zh-CN": "提现暂停处理中。",
    }
    assert [(t.get("id"), t.get("lang")) for t in doc.xpath("//textarea")] == [
        ("text-en", "en"),
        ("text-zh-CN", "zh-CN"),
    ]
    [(_, root)] = [(s, body) for s, body in css_rules() if s == [":root"]]
    assert '"Noto Sans CJK SC", sans-serif' in root
    assert english in phone.call(ScriptedParty([Press("1")])).heard
    unticked = act(client, "/dashboard/announcement/clear")
    assert unticked.status_code == 422 and "Not cleared" in unticked.text
    assert english in phone.call(ScriptedParty([Press("1")])).heard
    cleared = act(client, "/dashboard/announcement/clear", confirm="yes")
    assert cleared.headers["location"] == "/dashboard/queue?said=announcement_cleared"
    assert english not in phone.call(ScriptedParty([Press("1")])).heard
    # Not from elsewhere, and not by an agent.
    forged = client.post(
        "/dashboard/announcement",
        data={"text-en": "x", "text-zh-CN": "x"},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    signed_in(client, make_user(db, "alice", "agent", AGENT_PHONE))
    assert act(client, "/dashboard/announcement/clear", confirm="yes").status_code == 403
    assert client.get("/api/announcement", headers=bearer(supervisor)).json() is None


def call_sids(doc: Any) -> list[str]:
    return [tr.get("data-call") for tr in doc.xpath("//table[contains(@class,'calls')]/tbody/tr")]


def test_calls_page_filters_like_the_api(
    client: TestClient,
    supervisor: str,
    placed: dict[str, str],
    db: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    signed_in(client, supervisor)
    both = [placed["hijack"], placed["normal"]]  # newest first
    assert call_sids(page(client, "/dashboard/calls")) == both
    # Empty fields, as a GET form sends them, mean "any".
    blank = {k: "" for k in dashboard.CALL_FILTERS}
    assert call_sids(page(client, "/dashboard/calls", **blank)) == both
    assert call_sids(page(client, "/dashboard/calls", emergency="true")) == [placed["hijack"]]
    assert call_sids(page(client, "/dashboard/calls", emergency="false")) == [placed["normal"]]
    assert call_sids(page(client, "/dashboard/calls", topic="deposits_withdrawals")) == [
        placed["normal"]
    ]
    assert call_sids(page(client, "/dashboard/calls", verified="yes")) == [placed["hijack"]]
    assert call_sids(page(client, "/dashboard/calls", caller="0123")) == [placed["normal"]]
    assert call_sids(page(client, "/dashboard/calls", account=UID)) == [placed["hijack"]]
    with db.connect() as conn:
        ticket = conn.execute(
            select(cases.c.ticket).where(cases.c.call_sid == placed["normal"])
        ).scalar_one()
    assert call_sids(page(client, "/dashboard/calls", ticket=ticket)) == [placed["normal"]]
    assert call_sids(page(client, "/dashboard/calls", since="2026-11-23T03:00:10")) == [
        placed["hijack"]
    ]
    assert call_sids(page(client, "/dashboard/calls", until="2026-11-23T03:00")) == []
    filtered = page(client, "/dashboard/calls", queue="security")
    assert filtered.xpath("//select[@name='emergency']/option[@selected]") == []
    assert filtered.xpath("//input[@name='queue']/@value") == ["security"]
    # Wrong input is said on the page, not a 500 or a JSON error.
    bad = page(client, "/dashboard/calls", status=422, caller="12ab", outcome="nope")
    problems = " ".join(texts(bad, "//*[@role='alert']//li"))
    assert "caller" in problems and "outcome" in problems
    # Each field named is marked so, and tied to the errors, for a screen reader.
    marked = bad.xpath("//form//*[@aria-invalid='true']")
    assert sorted(m.get("name") for m in marked) == ["caller", "outcome"]
    assert {m.get("aria-describedby") for m in marked} == {"form-errors"}
    assert bad.xpath("//*[@id='form-errors']/@role") == ["alert"]
    late = page(client, "/dashboard/calls", status=422, since="soon")
    assert [m.get("name") for m in late.xpath("//form//*[@aria-invalid='true']")] == ["since"]
    # A night shift's times typed the wrong way round: said, not read as a quiet night.
    backwards = {"since": "2026-11-23T04:00", "until": "2026-11-23T03:00"}
    swapped = page(client, "/dashboard/calls", status=422, **backwards)
    assert "until must be after since" in swapped.text_content()
    assert swapped.xpath("//form//*[@aria-invalid='true']/@name") == ["until"]
    assert swapped.findtext(".//title").startswith("Not done · Calls")
    assert "cursor" in page(client, "/dashboard/calls", status=422, cursor="nope").text_content()
    # One call a page: the next link carries the filters and reaches the older call.
    monkeypatch.setattr(dashboard, "PAGE_SIZE", 1)
    first = page(client, "/dashboard/calls", queue="")
    assert call_sids(first) == [placed["hijack"]]
    [next_link] = first.xpath("//a[@rel='next']/@href")
    second = page(client, next_link)
    assert call_sids(second) == [placed["normal"]] and not second.xpath("//a[@rel='next']")


class TestInTheHotlinesZone:
    """Supervisors in Shanghai read Shanghai's clock: every page shows times in
    `IVR_REPORT_TZ`, says so, and the call log reads its since/until on that clock (the
    API's times carry their offset, and stay so)."""

    @pytest.fixture
    def settings(self, database_url: str) -> Settings:
        return make_settings(IVR_DATABASE_URL=database_url, IVR_REPORT_TZ="Asia/Shanghai")

    def test_the_call_log_and_timeline_are_on_its_clock(
        self, client: TestClient, supervisor: str, placed: dict[str, str]
    ) -> None:
        signed_in(client, supervisor)
        # The first call began at 03:00 UTC: 11:00 in Shanghai.
        assert call_sids(page(client, "/dashboard/calls", since="2026-11-23T11:00:10")) == [
            placed["hijack"]
        ]
        assert call_sids(page(client, "/dashboard/calls", until="2026-11-23T11:00")) == []
        listed = page(client, "/dashboard/calls")
        assert "Times are Asia/Shanghai." in listed.text_content()
        assert texts(listed, "//table[contains(@class,'calls')]//th")[0] == (
            "Started (Asia/Shanghai)"
        )
        [started] = listed.xpath(f"//tr[@data-call='{placed['normal']}']/td[1]/a/text()")
        assert started.startswith("2026-11-23 11:00:")
        csv_link = page(client, "/dashboard/calls", since="2026-11-23T11:00:10").xpath(
            "//a[@download]/@href"
        )[0]
        exported = list(csv.DictReader(io.StringIO(client.get(csv_link).text)))
        assert [r["call_sid"] for r in exported] == [placed["hijack"]]
        timeline = page(client, f"/dashboard/calls/{placed['normal']}")
        assert "Started (Asia/Shanghai)" in timeline.text_content()
        assert "(UTC)" not in timeline.text_content()

    def test_the_queue_page_says_its_zone(self, client: TestClient, supervisor: str) -> None:
        signed_in(client, supervisor)
        shown = page(client, "/dashboard/queue").text_content()
        assert "Asia/Shanghai" in shown and " UTC" not in shown


def test_the_queue_page_shows_a_number_holding_several_places(
    client: TestClient, supervisor: str, db: Engine, clock: FakeClock
) -> None:
    from tests.test_cases import add_case

    for n in (1, 2):
        add_case(db, n, "emergency", clock.now - timedelta(minutes=n), caller="+15005550666")
    add_case(db, 3, "normal", clock.now, caller="+15005550777")
    signed_in(client, supervisor)
    doc = page(client, "/dashboard/queue")
    [line] = doc.xpath("//p[contains(@class,'repeated')]")
    assert "***0666 \u00d72 (2 in the emergency lane)" in " ".join(line.text_content().split())
    # Made anew every refresh, it is no status (said each time, or never): the page's own
    # status says a number newly repeated (the browser test below).
    assert line.get("role") is None and line.getparent().get("id") == "queue-live"
    assert line.xpath(".//*[@data-caller]/@data-caller") == ["***0666"]
    marks = {
        tr.get("data-ticket"): texts(tr, ".//*[contains(@class,'same-number')]")
        for tr in doc.xpath("//table[contains(@class,'queue')]/tbody/tr")
    }
    assert marks == {"1000001": ["\u00d72"], "1000002": ["\u00d72"], "1000003": []}
    # The emergency lane on the line by verification (add_case's with a UID: verified yes).
    counts = {
        c.get("data-verified"): texts(c, "./strong")
        for c in doc.xpath("//*[contains(@class,'verification-count')]")
    }
    assert counts == {"not_attempted": ["2"]}
    add_case(db, 4, "emergency", clock.now, uid="10000009")
    doc = page(client, "/dashboard/queue")
    counts = {
        c.get("data-verified"): texts(c, "./strong")
        for c in doc.xpath("//*[contains(@class,'verification-count')]")
    }
    assert list(counts.items()) == [("yes", ["1"]), ("not_attempted", ["2"])]


def test_the_queue_page_says_how_many_calls_began_lately_and_a_surge(
    client: TestClient, supervisor: str, db: Engine, clock: FakeClock
) -> None:
    """How fast they are coming: the calls begun in the last 15 minutes beside the 15
    before, and "a surge" once twice as many and 10 more."""

    def began(n: int, ago: timedelta) -> None:
        with db.begin() as conn:
            for i in range(n):
                conn.execute(
                    insert(calls).values(
                        call_sid=f"CA{ago.seconds:08d}{i:024d}",
                        tree_version="v1",
                        step=1,
                        state={"node": "main_menu", "facts": {"lang": "en"}},
                        last_twiml="<Response/>",
                        status="in-progress",
                        started_at=clock.now - ago,
                        updated_at=clock.now - ago,
                    )
                )

    began(3, timedelta(minutes=20))
    began(5, timedelta(minutes=5))
    began(1, timedelta(hours=2))  # neither
    signed_in(client, supervisor)
    [line] = page(client, "/dashboard/queue").xpath("//*[contains(@class,'arrivals')]")
    assert (line.get("data-last"), line.get("data-before")) == ("5", "3")
    assert "5 calls began in the last 15 min" in line.text_content()
    assert not page(client, "/dashboard/queue").xpath("//*[contains(@class,'surging')]")
    began(11, timedelta(minutes=1))  # 16: twice 3, and 10 more
    [surge] = page(client, "/dashboard/queue").xpath("//*[contains(@class,'surging')]")
    assert surge.text_content() == "a surge: twice as many and more"


def test_the_calls_page_exports_what_it_found_as_csv_with_the_session(
    client: TestClient, supervisor: str, placed: dict[str, str]
) -> None:
    """No API token to find first: the page's link, filters and all, in the browser session
    (the API's CSV answered it 401)."""
    signed_in(client, supervisor)
    [link] = page(client, "/dashboard/calls", emergency="true").xpath("//a[@download]/@href")
    assert link == "/dashboard/calls.csv?emergency=true"
    exported = client.get(link)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["call_sid"] for r in rows] == [placed["hijack"]]
    assert client.get("/dashboard/calls.csv?caller=12ab").status_code == 422
    with TestClient(client.app, base_url=HTTPS_CLIENT) as stranger:
        refused = stranger.get(link, follow_redirects=False)
    assert refused.status_code == 303 and "calls.csv" not in refused.text


def test_the_page_escapes_what_it_echoes(client: TestClient, supervisor: str) -> None:
    signed_in(client, supervisor)
    response = client.get("/dashboard/calls", params={"topic": "<script>alert(1)</script>"})
    assert response.status_code == 200
    assert "<script>alert(1)" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text


def test_timeline_shows_the_nodes_and_no_digits(
    client: TestClient, supervisor: str, db: Engine, placed: dict[str, str]
) -> None:
    signed_in(client, supervisor)
    response = client.get(f"/dashboard/calls/{placed['hijack']}")
    assert response.status_code == 200
    doc = html.fromstring(response.text)
    nodes = texts(doc, "//table[contains(@class,'timeline')]//td[@class='node']")
    for node in ("language", "main_menu", "emergency_verify", "emergency_queue"):
        assert node in nodes
    assert nodes.index("emergency_verify") < nodes.index("emergency_queue")
    assert "***0006" in response.text
    # Random tickets and CallSids may hold a secret's digits by chance: no leak.
    with db.connect() as conn:
        made_up = [*conn.execute(select(cases.c.ticket)).scalars(), *placed.values()]
    shown = response.text
    for value in made_up:
        shown = shown.replace(value, "<random>")
    for secret in (PIN, UID, ID4, "5005550006"):
        assert secret not in shown, secret
    # Calls page -> timeline: the link in the list is this page.
    links = page(client, "/dashboard/calls").xpath("//tbody//a/@href")
    assert f"/dashboard/calls/{placed['hijack']}" in links
    page(client, f"/dashboard/calls/CA{'0' * 32}", status=404)
    page(client, "/dashboard/calls/not-a-call", status=404)


def test_an_agent_sees_the_whole_number_only_on_their_own_case(
    client: TestClient, db: Engine, placed: dict[str, str]
) -> None:
    agent = make_user(db, "alice", "agent", AGENT_PHONE)
    claimed = client.post("/api/agents/next", headers=bearer(agent))
    assert claimed.json()["case"]["priority"] == "emergency"  # the hijack is theirs now
    signed_in(client, agent)
    assert VICTIM in client.get(f"/dashboard/calls/{placed['hijack']}").text
    # Whose case it is, and when (dated: a call back made the next day reads so).
    timeline = page(client, f"/dashboard/calls/{placed['hijack']}")
    [row] = timeline.xpath("//h2[starts-with(., 'Cases')]/following-sibling::table[1]/tbody/tr")
    cells = [" ".join(td.text_content().split()) for td in row.xpath("./td")]
    assert cells[7] == "alice" and re.fullmatch(r"\d\d [A-Z][a-z]{2} \d\d:\d\d:\d\d", cells[8])
    [case] = client.get(f"/api/calls/{placed['hijack']}", headers=bearer(agent)).json()["cases"]
    assert case["agent"] == "alice"
    other = client.get(f"/dashboard/calls/{placed['normal']}").text
    assert NORMAL_CALLER not in other and "***0123" in other
    queue = client.get("/dashboard/queue").text  # waiting cases are nobody's: masked
    assert "***0123" in queue and NORMAL_CALLER not in queue


# -- the agent's desk -------------------------------------------------------------------------


@pytest.fixture
def agent(db: Engine) -> str:
    return make_user(db, "alice", "agent", AGENT_PHONE)


def act(client: TestClient, path: str, **form: str) -> httpx.Response:
    return client.post(path, data=form or None, follow_redirects=False)


def said(response: httpx.Response) -> str:
    """Where a desk action sent the browser, and what the desk then says."""
    assert response.status_code == 303, response.text[:500]
    location = response.headers["location"]
    assert location.startswith("/dashboard/desk?said=")
    return location.split("said=", 1)[1].split("&", 1)[0]  # not the case it is about


def test_an_agent_lands_on_their_desk_and_takes_the_emergency_first(
    client: TestClient, db: Engine, agent: str, placed: dict[str, str]
) -> None:
    response = login(client, agent)
    assert response.headers["location"] == "/dashboard/desk"
    first = page(client, "/dashboard/desk")
    assert "You have no case now." in first.text_content()
    # Without the script no offer ever shows: said, where a browser without it reads it.
    [unscripted] = first.xpath("//noscript")
    assert "a case offered to you shows only when you reload it" in unscripted.text_content()
    # Both callers hung up waiting: each case is a call back; the emergency comes first.
    assert said(act(client, "/dashboard/desk/next")) == "call_back"
    doc = page(client, "/dashboard/desk", said="call_back")
    assert texts(doc, SAYS) == [dashboard.SAID["call_back"]]
    [case] = doc.xpath("//section[contains(@class, 'case')]")
    assert "emergency" in case.get("class")
    facts = dict(zip(texts(case, ".//dt"), texts(case, ".//dd"), strict=True))
    assert facts["Verified"].startswith("yes") and facts["Account UID"] == UID
    assert facts["Caller"] == VICTIM  # their own case: unmasked
    assert facts["Caller ID matches account"] == "yes"
    # What the caller did, and their other calls, a click away.
    timeline, history = case.xpath(".//dd[@class='call-links']/a/@href")
    assert placed["hijack"] in timeline and "Call timeline" in page(client, timeline).text_content()
    assert f"every call from {VICTIM}" in texts(case, ".//dd[@class='call-links']")[0]
    assert call_sids(page(client, history)) == [placed["hijack"]]
    assert "emergency_verify" in texts(case, ".//p[@class='path']")[0]
    # The API's view of the same desk.
    [held] = client.get("/api/agents/cases", headers=bearer(agent)).json()
    assert held["ticket"] in case.text_content() and held["account_uid"] == UID
    # One case at a time, as one phone takes one call: the next waits until this one is done.
    assert not doc.xpath("//form[@action='/dashboard/desk/next']")
    assert texts(doc, "//p[contains(@class, 'take-after')]") == [
        "One case at a time: resolve this one, or give it back, and then take the next."
    ]
    refused = act(client, "/dashboard/desk/next")
    assert refused.status_code == 409
    assert f"you have case {held['ticket']} still" in refused.text
    done = act(
        client, f"/dashboard/desk/{held['id']}/resolve", notes="frozen; called back", reached="true"
    )
    assert said(done) == "resolved"
    assert said(act(client, "/dashboard/desk/next")) == "call_back"
    [after] = client.get("/api/agents/cases", headers=bearer(agent)).json()
    assert after["ticket"] != held["ticket"] and after["priority"] == "normal"
    assert said(act(client, f"/dashboard/desk/{after['id']}/resolve", notes="ok")) == "resolved"
    assert said(act(client, "/dashboard/desk/next")) == "nobody"


def test_an_agent_makes_themselves_available_at_the_desk_and_cases_come_by_themselves(
    client: TestClient,
    app: FastAPI,
    phone: Phone,
    db: Engine,
    settings: Settings,
    agent: str,
    supervisor: str,
) -> None:
    """Away, nothing comes unasked. Available, the hijack victim holding on the line is
    offered to alice without her taking it; the queue page shows her on it. Signing out
    sets her away: nobody's phone rings at an empty desk."""
    add_account(db, settings)
    signed_in(client, agent)
    doc = page(client, "/dashboard/desk")
    assert "You are away" in texts(doc, "//form[@class='presence']/p")[0]
    hotline = app.state.hotline
    seen: list[Any] = []

    class Victim(ScriptedParty):
        def keep_holding(self, queue: str, polls: int) -> bool:
            if polls == 1:
                seen.append(hotline.dispatch())  # away: nothing
                seen.append(said(act(client, "/dashboard/desk/presence", available="true")))
                doc = page(client, "/dashboard/desk", said="available")
                seen.append(texts(doc, SAYS))
                seen.append(texts(doc, "//form[@class='presence']/p")[0])
                seen.append(hotline.dispatch())
                desk = page(client, "/dashboard/desk")
                seen.append(desk.xpath("//section[contains(@class, 'case')]")[0].get("class"))
                with TestClient(client.app, base_url=HTTPS_CLIENT) as other_browser:
                    signed_in(other_browser, supervisor)
                    queue = page(other_browser, "/dashboard/queue")
                    seen.append(queue.xpath("//span[@class='agents-available']")[0].text)
                    [row] = queue.xpath("//table[contains(@class, 'agents')]/tbody/tr")
                    seen.append((row.get("data-agent"), row.get("class")))
                    seen.append("available after it" in row.text_content())
            return polls < 2

    phone.call(Victim(list(HIJACK)), from_number=VICTIM)
    assert seen[:3] == [0, "available", [dashboard.SAID["available"]]]
    assert "You are available" in seen[3]
    assert seen[4] == 1 and "emergency" in seen[5]
    assert seen[6:] == ["1", ("alice", "agent-on_case"), True]
    assert said(act(client, "/dashboard/desk/presence", available="false")) == "away"
    gone = client.get("/api/agents/presence", headers=bearer(agent)).json()
    assert (gone["available"], gone["away_reason"]) == (False, None)  # her own say
    assert not page(client, "/dashboard/desk").xpath("//span[@class='away-reason']")
    act(client, "/dashboard/desk/presence", available="true")
    # She still has the victim's case: asked first, then signed out anyway.
    assert client.post("/dashboard/logout", follow_redirects=False).status_code == 409
    act(client, "/dashboard/logout", anyway="yes")
    gone = client.get("/api/agents/presence", headers=bearer(agent)).json()
    assert (gone["available"], gone["away_reason"]) == (False, "signed_out")
    signed_in(client, agent)
    [why] = texts(page(client, "/dashboard/desk"), "//span[@class='away-reason']")
    assert why == dashboard.AWAY_REASONS["signed_out"]


def test_signing_out_gives_back_the_caller_offered_and_not_yet_put_through(
    client: TestClient,
    app: FastAPI,
    phone: Phone,
    db: Engine,
    settings: Settings,
    agent: str,
) -> None:
    """Alice, available, is offered the victim holding on the line (put through at their
    next hold round), and signs out: the victim is not put through to a phone nobody is at;
    their case is back in line, first, for the next agent."""
    add_account(db, settings)
    signed_in(client, agent)
    hotline = app.state.hotline
    seen: list[Any] = []

    class Victim(ScriptedParty):
        def keep_holding(self, queue: str, polls: int) -> bool:
            if polls == 1:
                act(client, "/dashboard/desk/presence", available="true")
                seen.append(hotline.dispatch())
                [held] = client.get("/api/agents/cases", headers=bearer(agent)).json()
                seen.append(held["status"])
                # Asked first, told the caller goes back in line; then signed out anyway.
                asked = client.post("/dashboard/logout", follow_redirects=False)
                seen.append((asked.status_code, "they go back in line" in asked.text))
                act(client, "/dashboard/logout", anyway="yes")
                seen.append(client.get("/api/agents/cases", headers=bearer(agent)).json())
                queue = client.get("/api/queue", headers=bearer(agent)).json()
                seen.append([(e["priority"], e["status"]) for e in queue])
            return polls < 3

    record = phone.call(Victim(list(HIJACK)), from_number=VICTIM)
    assert seen == [1, "offered", (409, True), [], [("emergency", "waiting")]]
    assert record.dialed is None and record.hold_polls == 3


def test_signing_out_gives_back_an_emergency_call_back_not_resolved(
    client: TestClient, phone: Phone, db: Engine, clock: FakeClock, agent: str
) -> None:
    """At the end of her shift alice takes an emergency call back to dial herself, and signs
    out without resolving it. No timeout takes such a call back from an agent (she may be on
    the phone with the customer): signing out does, audited. The victim's case is back in
    its place for the next agent, and alice is no longer counted at work."""
    phone.call(ScriptedParty([Press("1"), Press("1")]), from_number="+15005550101")
    taken = client.post("/api/agents/next", headers=bearer(agent)).json()
    assert (taken["connect"]["mode"], taken["case"]["priority"]) == ("call_back", "emergency")
    signed_in(client, agent)
    asked = client.post("/dashboard/logout", follow_redirects=False)
    assert asked.status_code == 409 and "the call back owed" in asked.text
    act(client, "/dashboard/logout", anyway="yes")
    clock.advance(minutes=1)
    sam = make_user(db, "sam", "supervisor")
    [back] = client.get("/api/queue", headers=bearer(sam)).json()
    assert (back["ticket"], back["status"]) == (taken["case"]["ticket"], "abandoned")
    with db.connect() as conn:
        [(actor, action, reason)] = conn.execute(
            select(audit_log.c.actor, audit_log.c.action, audit_log.c.reason).where(
                audit_log.c.case_id == taken["case"]["id"],
                audit_log.c.action != cases_module.TAKE,
            )
        ).all()
    assert (actor, action) == ("agent:alice", "requeue")
    assert reason.startswith("signed out without resolving")
    hotline = client.app.state.hotline  # type: ignore[attr-defined]
    assert hotline.refresh_staffing().agents == 0
    ben = make_user(db, "ben", "agent", "+15005557777")
    again = client.post("/api/agents/next", headers=bearer(ben)).json()
    assert again["case"]["ticket"] == taken["case"]["ticket"]


@pytest.mark.parametrize("hidden", ["anonymous", "+266696687"])
def test_the_queue_page_says_a_callers_number_was_withheld(
    client: TestClient, phone: Phone, supervisor: str, hidden: str
) -> None:
    """Not an empty cell, which reads as "not loaded"."""
    signed_in(client, supervisor)
    cells: list[Any] = []

    class Holding(ScriptedParty):
        def keep_holding(self, queue: str, polls: int) -> bool:
            rows = page(client, "/dashboard/queue").xpath("//tr[@data-ticket]")
            cells.extend(row.xpath("./td")[8].text for row in rows)
            return False

    phone.call(Holding([Press("1"), Press("0")]), from_number=hidden)
    assert cells == ["withheld"]


def test_a_call_back_dialled_at_the_desk_that_nobody_answered_is_said_so(
    client: TestClient, phone: Phone, db: Engine, agent: str
) -> None:
    """The desk offers "Nobody answered" beside Resolve for a call back the agent dials;
    it counts the try, and the case leaves the desk until it is tried again."""
    phone.call(ScriptedParty([Press("1"), Press("0")], hold_polls=1))  # hung up in line
    signed_in(client, agent)
    assert said(act(client, "/dashboard/desk/next")) == "call_back"
    [case_id] = [c["id"] for c in client.get("/api/agents/cases", headers=bearer(agent)).json()]
    desk = page(client, "/dashboard/desk")
    assert texts(desk, "//span[contains(@class, 'case-state')]") == ["· yours to call back"]
    [button] = desk.xpath("//form[@class='not-reached']/button")
    assert button.text == "Nobody answered"
    assert said(act(client, f"/dashboard/desk/{case_id}/not-reached")) == "not_reached"
    assert client.get("/api/agents/cases", headers=bearer(agent)).json() == []
    with db.connect() as conn:
        flags = conn.execute(select(cases.c.flags).where(cases.c.id == case_id)).scalar_one()
    assert flags["callback_attempts"] == "1"


def test_a_case_nothing_rings_for_is_offered_at_the_desk_to_accept(
    client: TestClient,
    app: FastAPI,
    db: Engine,
    settings: Settings,
    agent: str,
    supervisor: str,
    placed: dict[str, str],
) -> None:
    """No Twilio to place call backs: the hijack victim who hung up comes to alice, available,
    at her desk. It says by when to accept it and offers only that, or giving it back; the
    queue page shows it waiting for her acceptance. Accepted, it is hers to act on."""
    signed_in(client, agent)
    act(client, "/dashboard/desk/presence", available="true")
    hotline = app.state.hotline
    assert hotline.dispatch() == 1
    accept_by = hotline.clock() + timedelta(seconds=settings.accept_timeout_seconds)
    doc = page(client, "/dashboard/desk")
    assert doc.findtext(".//title").startswith("Accept your case · Your desk")  # another tab
    [section] = doc.xpath("//section[contains(@class, 'case')]")
    assert "emergency" in section.get("class")
    assert texts(section, ".//dd[@class='case-language']") == ["en"]  # what to speak to them
    # Not the number yet: dialled before accepting, it could go to the next agent, who calls too.
    assert "shown once you accept" in section.text_content()
    # Not even its last 4 digits (the random ticket and the accept-by time may hold them).
    [ticket] = texts(section, ".//h2//span[contains(@class, 'mono')]")
    shown = section.text_content().replace(ticket, "").replace(f"{accept_by:%H:%M:%S}", "")
    assert VICTIM[-4:] not in shown
    [alert] = texts(section, ".//p[contains(@class, 'to-accept')]")
    assert f"accept within 30 s (by {accept_by:%H:%M:%S} UTC)" in alert
    actions = section.xpath(".//div[@class='case-actions']/form/@action")
    assert [a.rsplit("/", 1)[1] for a in actions] == ["accept", "requeue"]
    # 30 s to accept it: the desk opens (and reloads) with the focus on Accept.
    assert texts(doc, "//*[@autofocus]") == ["Accept"]
    with TestClient(client.app, base_url=HTTPS_CLIENT) as other_browser:
        signed_in(other_browser, supervisor)
        [row] = texts(
            page(other_browser, "/dashboard/queue"), "//table[contains(@class, 'held')]/tbody/tr"
        )
    assert f"to accept at the desk by {accept_by:%H:%M:%S}" in row
    case_id = actions[0].split("/")[-2]
    assert said(act(client, f"/dashboard/desk/{case_id}/accept")) == "accepted"
    doc = page(client, "/dashboard/desk", said="accepted")
    assert doc.findtext(".//title").startswith("Done · Your desk")
    assert texts(doc, SAYS) == [dashboard.SAID["accepted"]]
    assert not doc.xpath("//*[@autofocus]")
    [section] = doc.xpath("//section[contains(@class, 'case')]")
    assert not section.xpath(".//p[contains(@class, 'to-accept')]")
    # The freeze among them, folded away: the victim froze the account on the phone.
    actions = section.xpath(".//div[@class='case-actions']//form/@action")
    assert section.xpath(".//details[@class='freeze-again']/form[contains(@action, '/freeze')]")
    assert [a.rsplit("/", 1)[1] for a in actions] == [
        "freeze",
        "resolve",
        "not-reached",
        "transfer",
        "requeue",
    ]
    assert VICTIM in section.text_content()  # now the number to call
    # Accepted twice (a double click): still hers, and said so.
    assert said(act(client, f"/dashboard/desk/{case_id}/accept")) == "accepted"


def test_a_supervisor_moves_a_waiting_case_to_the_emergency_lane_on_the_queue_page(
    client: TestClient, agent: str, supervisor: str, placed: dict[str, str]
) -> None:
    """The normal caller's row has a priority form for supervisors (agents see none); moved
    to emergency with a reason, it is first in line; without a reason, nothing moves and
    the page says what is missing."""
    signed_in(client, agent)
    assert not page(client, "/dashboard/queue").xpath("//form[contains(@action, '/priority')]")
    signed_in(client, supervisor)
    rows = page(client, "/dashboard/queue").xpath("//table[contains(@class, 'queue')]/tbody/tr")
    assert [r.get("class") for r in rows] == ["emergency", "priority-normal"]
    [action] = rows[1].xpath(".//form[contains(@action, '/priority')]/@action")
    assert [r.xpath("string(.//button/@aria-label)") for r in rows] == [
        f"Move ticket {r.get('data-ticket')}" for r in rows
    ]
    [chosen] = rows[1].xpath(".//select[@name='priority']/option[@selected]/@value")
    assert chosen == "normal"
    refused = act(client, action, priority="emergency", reason="")
    assert refused.status_code == 422 and "say why in a few words" in refused.text
    done = act(client, action, priority="emergency", reason="second hijack report")
    assert done.headers["location"] == "/dashboard/queue?said=priority_set"
    doc = page(client, "/dashboard/queue", said="priority_set")
    assert texts(doc, SAYS) == [dashboard.SAID["priority_set"]]
    rows = doc.xpath("//table[contains(@class, 'queue')]/tbody/tr")
    assert [r.get("class") for r in rows] == ["emergency", "emergency"]
    # Both emergencies now: the normal caller, who arrived first, is first.
    assert rows[0].xpath(".//form/@action") == [action]
    signed_in(client, agent)
    assert said(act(client, "/dashboard/desk/next")) == "call_back"
    [moved] = texts(page(client, "/dashboard/desk"), "//dd[@class='moved-note']")
    assert moved == "from normal to emergency by supervisor:sam: second hijack report"


def test_a_sign_out_is_audited_once(client: TestClient, db: Engine, supervisor: str) -> None:
    """Signing out is audited as signing in is (`sign_out`, by who): the end of a session
    in the log, not only its start. A sign-out with a cookie of no session (signed out
    already) has nobody to audit."""
    signed_in(client, supervisor)
    stale = client.cookies[dashboard.COOKIE]
    assert client.post("/dashboard/logout", follow_redirects=False).status_code == 303
    client.cookies.set(dashboard.COOKIE, stale, path="/dashboard")
    assert client.post("/dashboard/logout", follow_redirects=False).status_code == 303
    with db.connect() as conn:
        rows = conn.execute(
            select(audit_log.c.actor, audit_log.c.action).order_by(audit_log.c.id)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("supervisor:sam", "sign_in"),
        ("supervisor:sam", cases_module.SIGN_OUT),
    ]


def test_the_audit_page_lists_who_did_what_with_the_apis_filters(
    client: TestClient, db: Engine, clock: FakeClock, agent: str, supervisor: str
) -> None:
    """The supervisors' Audit page: the log newest first, by who, what and when; the API's
    filters, their errors said and tied to the field; a page at a time; a CSV of the same
    entries. Not for agents."""
    with db.connect() as conn:
        for n in range(dashboard.PAGE_SIZE + 1):
            cases_module.audit(
                conn,
                actor="cli:opal" if n == dashboard.PAGE_SIZE else "agent:alice",
                action="user_add" if n == dashboard.PAGE_SIZE else "resolve",
                uid=None,
                case_id=None,
                reason=f"entry {n}",
                result="ok",
                now=clock() + timedelta(minutes=n),
            )
    page(signed_in(client, agent), "/dashboard/audit", status=403)
    client.cookies.clear()
    signed_in(client, supervisor)
    doc = page(client, "/dashboard/audit")
    assert doc.xpath("//nav//a[@href='/dashboard/audit']")
    rows = doc.xpath("//table[contains(@class, 'audit')]/tbody/tr")
    assert len(rows) == dashboard.PAGE_SIZE
    first = [" ".join(td.text_content().split()) for td in rows[0].xpath("td")]
    assert first[1:4] == ["cli:opal", "user add", "ok"] and first[-1] == "entry 50"
    [more] = doc.xpath("//a[@rel='next']/@href")
    rest = page(client, more)
    # The first entry, and the two sign-ins at its time (theirs later: newer ids first).
    said = zip(texts(rest, "//tbody/tr/td[2]"), texts(rest, "//tbody/tr/td[last()]"), strict=True)
    assert list(said) == [("supervisor:sam", ""), ("agent:alice", ""), ("agent:alice", "entry 0")]
    mine = page(client, "/dashboard/audit", actor="cli:opal")
    assert texts(mine, "//table/tbody/tr/td[2]") == ["cli:opal"]
    [csv_link] = mine.xpath("//a[contains(@class, 'export')]/@href")
    assert csv_link == "/dashboard/audit.csv?actor=cli%3Aopal"
    exported = client.get(csv_link)
    assert [r["reason"] for r in csv.DictReader(io.StringIO(exported.text))] == ["entry 50"]
    wrong = page(client, "/dashboard/audit", status=422, since="yesterday", action="resolve")
    assert texts(wrong, "//*[@id='form-errors']//li") == [
        "since: not a date and time (use 2026-11-23T03:00)"
    ]
    assert wrong.xpath("//input[@id='f-since']/@aria-invalid") == ["true"]
    assert wrong.xpath("//input[@id='f-action']/@value") == ["resolve"]
    backwards = page(
        client, "/dashboard/audit", status=422, since="2026-11-24T00:00", until="2026-11-23T00:00"
    )
    assert texts(backwards, "//*[@id='form-errors']//li") == ["until must be after since"]


def test_the_freezes_page_puts_the_unconfirmed_ones_nobody_made_since_first(
    client: TestClient, db: Engine, clock: FakeClock, agent: str, supervisor: str
) -> None:
    """1111's freeze failed and nobody froze it since (listed at the top, as an alert), as
    did 4444's, frozen only before; 2222's failed, then an agent froze it; 3333's was made.
    Agents do not see the page."""

    def froze(uid: str, actor: str, result: str, days_ago: float = 0) -> None:
        with db.connect() as conn:
            cases_module.audit(
                conn,
                actor=actor,
                action="self_freeze" if actor.startswith("caller:") else "freeze",
                uid=uid,
                case_id=None,
                reason="test",
                result=result,
                now=clock() - timedelta(days=days_ago),
            )

    froze("10001111", "caller:CA1", "failed", days_ago=3)
    froze("10004444", "agent:alice", "ok", days_ago=5)  # frozen before: maybe unfrozen since
    froze("10004444", "caller:CA4", "failed", days_ago=2)
    froze("10002222", "caller:CA2", "failed", days_ago=0.5)
    froze("10002222", "agent:alice", "ok", days_ago=0.4)
    froze("10003333", "agent:alice", "ok", days_ago=0.1)
    signed_in(client, agent)
    assert client.get("/dashboard/freezes").status_code == 403
    assert "Freezes" not in texts(page(client, "/dashboard/queue"), "//nav//a")
    signed_in(client, supervisor)
    doc = page(client, "/dashboard/freezes")
    [alert] = texts(doc, "//p[@role='alert']")
    assert alert.startswith("The account service did not confirm 2 freezes of the last 30 days")
    top = doc.xpath("//section//table//tbody/tr")
    assert [r.xpath("string(td[2])") for r in top] == ["10004444", "10001111"]
    assert {r.get("class") for r in top} == {"freeze-failed unconfirmed"}
    # The last day: 2222's failure (frozen since) and both freezes made; 1111's is older.
    rows = doc.xpath("//h2[@id='period']/following::table//tbody/tr")
    assert [r.xpath("string(td[2])") for r in rows] == ["10003333", "10002222", "10002222"]
    assert "not confirmed; frozen at" in rows[2].text_content()
    week = page(client, "/dashboard/freezes", days="7")
    rows = week.xpath("//h2[@id='period']/following::table//tbody/tr")
    assert [r.xpath("string(td[2])") for r in rows][-3:] == ["10004444", "10001111", "10004444"]
    odd = page(client, "/dashboard/freezes", days="365")  # not offered: the last day
    assert len(odd.xpath("//h2[@id='period']/following::table//tbody/tr")) == 3


def test_a_supervisor_sets_an_agent_away_from_the_queue_page(
    client: TestClient, db: Engine, agent: str, supervisor: str
) -> None:
    """alice left her desk available: the queue page's agents table gives supervisors a
    "Set away" button for her (agents see none); pressed, she is away, and the page says so."""
    bob = make_user(db, "bob", "agent")
    client.put("/api/agents/presence", json={"available": True}, headers=bearer(agent))
    signed_in(client, bob)
    [row] = page(client, "/dashboard/queue").xpath("//tr[@data-agent='alice']")
    assert not row.xpath(".//form")
    signed_in(client, supervisor)
    away = ".//form[contains(@action, '/away')]/@action"
    [row] = page(client, "/dashboard/queue").xpath("//tr[@data-agent='alice']")
    assert row.xpath(away) == ["/dashboard/agents/alice/away"]
    [bobs] = page(client, "/dashboard/queue").xpath("//tr[@data-agent='bob']")
    assert not bobs.xpath(away)  # away already
    done = act(client, "/dashboard/agents/alice/away")
    assert done.headers["location"] == "/dashboard/queue?said=set_away"
    doc = page(client, "/dashboard/queue", said="set_away")
    assert texts(doc, SAYS) == [dashboard.SAID["set_away"]]
    [row] = doc.xpath("//tr[@data-agent='alice']")
    assert row.get("class") == "agent-away" and not row.xpath(away)
    gone = client.get("/api/agents/presence", headers=bearer(agent)).json()
    assert gone["away_reason"] == "set_away"


def test_a_supervisor_says_which_languages_an_agent_speaks_on_the_queue_page(
    client: TestClient, agent: str, supervisor: str
) -> None:
    """Codes, comma-separated, or "all"; a language no catalog speaks is refused, saying
    which ones callers choose from, and changes nothing."""

    def spoken() -> Any:
        board = client.get("/api/agents", headers=bearer(supervisor)).json()
        return {a["name"]: a["languages"] for a in board}["alice"]

    signed_in(client, agent)
    assert not page(client, "/dashboard/queue").xpath("//form[contains(@action, '/languages')]")
    signed_in(client, supervisor)
    [field] = page(client, "/dashboard/queue").xpath("//input[@id='speaks-alice']")
    assert field.get("value") == "all"
    [button] = field.xpath("following-sibling::button")
    assert button.get("aria-label") == "Set languages for alice"
    done = act(client, "/dashboard/agents/alice/languages", languages="zh-CN, en")
    assert done.headers["location"] == "/dashboard/queue?said=languages_set"
    assert spoken() == ["en", "zh-CN"]
    [field] = page(client, "/dashboard/queue").xpath("//input[@id='speaks-alice']")
    assert field.get("value") == "en,zh-CN"
    refused = act(client, "/dashboard/agents/alice/languages", languages="en,fr")
    assert refused.status_code == 422 and "callers choose from en, zh-CN" in refused.text
    assert spoken() == ["en", "zh-CN"]
    act(client, "/dashboard/agents/alice/languages", languages="all")
    assert spoken() is None


def test_the_desk_line_says_what_waits_and_changes_with_the_agents_cases(
    client: TestClient, db: Engine, agent: str, supervisor: str, placed: dict[str, str]
) -> None:
    """What the desk fetches every few seconds: the cases agents may take now, and a version
    of the agent's own cases, which the page compares with its own to reload itself."""

    def line() -> tuple[str, str]:
        doc = page(client, "/dashboard/desk/live")
        [version] = doc.xpath("//p[@data-version]/@data-version")
        return texts(doc, "//p[@data-version]")[0], version

    signed_in(client, agent)
    text, empty = line()
    assert text.startswith("2 waiting for an agent · 1 emergency · the longest for ")
    # Its tickets, for the page to say a new one (one taken and another come: still 1).
    victim = client.get("/api/queue", headers=bearer(agent)).json()[0]
    assert victim["priority"] == "emergency"
    emergencies = page(client, "/dashboard/desk/live").xpath("//p/@data-emergencies")
    assert emergencies == [victim["ticket"]]
    assert page(client, "/dashboard/desk").xpath("//div[@id='desk-live']/@data-version") == [empty]
    assert line()[1] == empty  # nothing changed, nothing to reload
    assert said(act(client, "/dashboard/desk/next")) == "call_back"
    text, taken = line()
    assert text.startswith("1 waiting for an agent ·") and "emergenc" not in text
    assert taken != empty
    [held] = client.get("/api/agents/cases", headers=bearer(agent)).json()
    assert said(act(client, f"/dashboard/desk/{held['id']}/requeue")) == "requeued"
    assert line()[1] == empty  # given back: the agent has no case again
    said(act(client, "/dashboard/desk/next"))
    [again] = client.get("/api/agents/cases", headers=bearer(agent)).json()
    # A call back the agent dials: the desk asks whether they reached the customer.
    desk = page(client, "/dashboard/desk")
    assert desk.xpath("//input[@type='checkbox'][@name='reached']")
    done = act(
        client, f"/dashboard/desk/{again['id']}/resolve", notes="called back", reached="true"
    )
    assert said(done) == "resolved"
    with db.connect() as conn:
        reached = conn.execute(
            select(cases.c.connected_at, cases.c.offered_at).where(cases.c.id == again["id"])
        ).one()
    assert reached.connected_at is not None and reached.connected_at == reached.offered_at
    assert said(act(client, "/dashboard/desk/next")) == "call_back"
    text, other = line()
    assert text.startswith("Nobody is waiting for an agent.") and other not in (empty, taken)
    # Only agents have a desk; signed out, the sign-in form.
    signed_in(client, supervisor)
    page(client, "/dashboard/desk/live", status=403)
    client.cookies.clear()
    signed_out = client.get("/dashboard/desk/live", follow_redirects=False)
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/dashboard/login"


def test_the_live_parts_are_not_read_out_whole_only_a_new_emergency_is(
    client: TestClient, agent: str, supervisor: str, placed: dict[str, str]
) -> None:
    """The desk's line and the queue's table are swapped whole every few seconds: as live
    regions, a screen reader would read them all again each time. Each page has instead one
    empty status of its own, outside them, which the script fills only when a new emergency
    waits (the browser test below)."""
    for who, path, live in (
        (agent, "/dashboard/desk", "desk-live"),
        (supervisor, "/dashboard/queue", "queue-live"),
    ):
        signed_in(client, who)
        doc = page(client, path)
        [region] = doc.xpath(f"//div[@id='{live}']")
        assert region.xpath("descendant-or-self::*[@aria-live]") == []
        [told] = doc.xpath(f"//p[@id='{region.get('data-announce')}']")
        assert told.get("role") == "status" and told.text_content() == ""
        assert "visually-hidden" in told.get("class").split()
        assert told not in region.iterdescendants()


def test_the_desk_freezes_resolves_and_gives_back(
    client: TestClient, db: Engine, agent: str, placed: dict[str, str]
) -> None:
    signed_in(client, agent)
    said(act(client, "/dashboard/desk/next"))
    [held] = client.get("/api/agents/cases", headers=bearer(agent)).json()
    base = f"/dashboard/desk/{held['id']}"
    # A call back to dial by hand may be sent on to another team, before it is dialled.
    assert "Send the call back on to" in page(client, "/dashboard/desk").text_content()
    # A freeze needs a reason; a refusal is shown on the desk, and nothing is done.
    short = act(client, f"{base}/freeze", reason=" x ", confirm="yes")
    assert short.status_code == 422 and "Say why" in short.text
    assert html.fromstring(short.text).xpath("//input[@name='reason']/@value")[0] == " x "
    # Nor without the box ticked that names the account: Enter in the reason does nothing.
    unticked = act(client, f"{base}/freeze", reason="caller reports SIM swap")
    assert unticked.status_code == 422 and "tick the box that names the account" in unticked.text
    assert html.fromstring(unticked.text).xpath("//input[@name='reason']/@value") == [
        "caller reports SIM swap"
    ]
    with db.connect() as conn:
        agents_freeze = select(audit_log.c.id).where(audit_log.c.action == "freeze")
        assert conn.execute(agents_freeze).all() == []
    [box] = page(client, "/dashboard/desk").xpath(
        "//form[contains(@action, '/freeze')]//label[input[@name='confirm']]"
    )
    assert box.xpath("input/@required") == [""]
    assert " ".join(box.text_content().split()) == (
        f"Freeze account {UID} now: only an operator can undo it"
    )
    frozen = act(client, f"{base}/freeze", reason="caller reports SIM swap", confirm="yes")
    assert said(frozen) == "frozen"
    # The account frozen is named, from the record of the freeze: not from the address.
    assert frozen.headers["location"].endswith(f"&case={held['id']}")
    assert texts(page(client, frozen.headers["location"]), SAYS) == [f"Account {UID} is frozen."]
    assert texts(page(client, "/dashboard/desk", said="frozen"), SAYS) == [dashboard.SAID["frozen"]]
    # A freeze the account service did not confirm is an alert, not a notice like success.
    failed = page(client, "/dashboard/desk", said="freeze_failed")
    assert texts(failed, "//p[@role='alert'][@class='alert']") == [dashboard.SAID["freeze_failed"]]
    assert texts(failed, SAYS) == []
    with db.connect() as conn:
        assert conn.execute(select(accounts.c.frozen).where(accounts.c.uid == UID)).scalar() == 1
        entry = conn.execute(select(audit_log).order_by(audit_log.c.id.desc())).mappings().first()
    assert entry is not None  # after the verified victim's own freeze, the agent's
    assert (entry["actor"], entry["action"], entry["reason"]) == (
        "agent:alice",
        "freeze",
        "caller reports SIM swap",
    )
    # Given back: in its place in line again, as the call back it was.
    assert said(act(client, f"{base}/requeue", reason="needs Mandarin")) == "requeued"
    queue = client.get("/api/queue", headers=bearer(agent)).json()
    assert queue[0]["ticket"] == held["ticket"] and queue[0]["status"] == "abandoned"
    # Not theirs any more: refused, said in the agent's words, nothing changed.
    refused = act(client, f"{base}/resolve", notes="done")
    assert refused.status_code == 409
    assert texts(html.fromstring(refused.text), "//*[@id='desk-error']") == [
        f"You gave ticket {held['ticket']} back: it is in line again."
    ]
    said(act(client, "/dashboard/desk/next"))
    assert said(act(client, f"{base}/resolve", notes="frozen; told to reset 2FA")) == "resolved"
    assert "You have no case now." in page(client, "/dashboard/desk").text_content()
    resolved = client.get(f"/dashboard/calls/{placed['hijack']}")
    assert resolved.status_code == 200
    with db.connect() as conn:
        row = conn.execute(select(cases).where(cases.c.id == held["id"])).mappings().one()
    assert (row["status"], row["notes"]) == ("resolved", "frozen; told to reset 2FA")


def test_the_desk_freezes_the_uid_the_agent_found_when_the_caller_keyed_a_wrong_one(
    client: TestClient, phone: Phone, db: Engine, settings: Settings, agent: str
) -> None:
    """A panicking victim keys a wrong (well-formed) UID, so their PIN fails, and hangs up.
    On the call back the agent finds their right UID: the desk's freeze form takes it (not
    required: empty freezes the one keyed), and the right account is frozen, not the
    stranger's the caller keyed. A verified caller's form has no such field."""
    add_account(db, settings)
    wrong = "10000009"
    phone.call(
        ScriptedParty([Press("1"), Press("1"), Press(wrong), Press(PIN)]), from_number=VICTIM
    )
    signed_in(client, agent)
    said(act(client, "/dashboard/desk/next"))
    [held] = client.get("/api/agents/cases", headers=bearer(agent)).json()
    assert held["account_uid"] == wrong
    desk = page(client, "/dashboard/desk")
    [field] = desk.xpath("//form[contains(@action, '/freeze')]//input[@name='account_uid']")
    assert field.get("required") is None
    label = texts(desk, f"//label[@for='{field.get('id')}']")
    assert label and f"this case's account is {wrong}" in label[0]
    box = texts(desk, "//form[contains(@action, '/freeze')]//label[input[@name='confirm']]")
    assert box == [
        f"Freeze account {wrong} (a UID typed above replaces it) now: only an operator can undo it"
    ]
    done = act(
        client,
        f"/dashboard/desk/{held['id']}/freeze",
        reason="hijack",
        account_uid=UID,
        confirm="yes",
    )
    assert said(done) == "frozen"
    with db.connect() as conn:
        assert conn.execute(select(accounts.c.frozen).where(accounts.c.uid == UID)).scalar() == 1
        [(frozen_uid,)] = conn.execute(
            select(audit_log.c.account_uid).where(
                audit_log.c.action == "freeze", audit_log.c.case_id == held["id"]
            )
        ).all()
    assert frozen_uid == UID


def test_an_emergency_call_back_is_not_resolved_with_nothing_done(
    client: TestClient, phone: Phone, db: Engine, settings: Settings, agent: str
) -> None:
    """alice dials a hijack victim's call back herself; nobody answers, and she presses
    Resolve instead of "Nobody answered": refused, the case stays hers. Once she froze the
    account (or ticked that she spoke to them) it resolves."""
    add_account(db, settings)
    phone.call(ScriptedParty([Press("1"), Press("1"), Press(UID)]), from_number=VICTIM)
    signed_in(client, agent)
    said(act(client, "/dashboard/desk/next"))
    [held] = client.get("/api/agents/cases", headers=bearer(agent)).json()
    assert (held["priority"], held["offer"]) == ("emergency", "call_back")
    base = f"/dashboard/desk/{held['id']}"
    refused = act(client, f"{base}/resolve", notes="called, no answer")
    assert refused.status_code == 409 and "nobody was reached" in refused.text
    assert [c["id"] for c in client.get("/api/agents/cases", headers=bearer(agent)).json()] == [
        held["id"]
    ]
    froze = act(client, f"{base}/freeze", reason="hijack reported, unreachable", confirm="yes")
    assert said(froze) == "frozen"
    assert said(act(client, f"{base}/resolve", notes="frozen; no answer")) == "resolved"


def test_a_verified_callers_freeze_form_has_no_uid_field(
    client: TestClient, phone: Phone, db: Engine, settings: Settings, agent: str
) -> None:
    add_account(db, settings)
    phone.call(ScriptedParty(list(HIJACK)), from_number=VICTIM)
    signed_in(client, agent)
    said(act(client, "/dashboard/desk/next"))
    desk = page(client, "/dashboard/desk")
    assert desk.xpath("//form[contains(@action, '/freeze')]")
    assert not desk.xpath("//form[contains(@action, '/freeze')]//input[@name='account_uid']")


FREEZE_BOX = "//form[contains(@action, '/freeze')]//label[input[@name='confirm']]"


def test_the_freeze_form_names_the_account_it_freezes_and_refuses_a_uid_as_a_reason(
    client: TestClient, phone: Phone, db: Engine, settings: Settings, agent: str
) -> None:
    """An unverified caller keyed a stranger's UID. The box to tick names that account, and
    says a UID typed replaces it; once one is typed (here, shown again after a refusal), it
    names that one. The agent types the UID they found into the reason instead: refused,
    saying so, nothing frozen. Frozen, the desk names the account frozen."""
    add_account(db, settings)
    stranger = "10000009"
    LocalDirectory(db, settings.secret_key).add(
        uid=stranger, pin=None, id_last4=None, phone=None, totp_secret=None, now=datetime.now(UTC)
    )
    phone.call(
        ScriptedParty([Press("1"), Press("1"), Press(stranger), Press(PIN)]), from_number=VICTIM
    )
    signed_in(client, agent)
    said(act(client, "/dashboard/desk/next"))
    [held] = client.get("/api/agents/cases", headers=bearer(agent)).json()
    base = f"/dashboard/desk/{held['id']}/freeze"
    assert texts(page(client, "/dashboard/desk"), FREEZE_BOX) == [
        f"Freeze account {stranger} (a UID typed above replaces it) now: only an operator can "
        "undo it"
    ]
    [target] = page(client, "/dashboard/desk").xpath(f"{FREEZE_BOX}//span[@data-uid-field]")
    assert target.get("data-uid-field") == f"uid-{held['id']}"  # the script names what is typed
    for typed in (UID, f" {UID[:4]} {UID[4:]} ", f"{UID[:4]}-{UID[4:]}"):
        refused = act(client, base, reason=typed, confirm="yes")
        assert refused.status_code == 422
        doc = html.fromstring(refused.text)
        assert texts(doc, "//*[@id='desk-error']") == [
            f'Not frozen: the reason "{typed.strip()}" is only digits, like an account UID. '
            "Say why in words; an account to freeze goes in the UID box."
        ]
        [reason] = doc.xpath("//form[contains(@action, '/freeze')]//input[@name='reason']")
        assert (reason.get("value"), reason.get("aria-invalid")) == (typed, "true")
    # With the UID in its box, the digits are the agent's to give as a reason.
    unticked = act(client, base, reason="hijack", account_uid=UID)
    assert unticked.status_code == 422
    assert texts(html.fromstring(unticked.text), FREEZE_BOX) == [
        f"Freeze account {UID} now: only an operator can undo it"
    ]
    with db.connect() as conn:
        assert (
            conn.execute(select(audit_log.c.id).where(audit_log.c.action == "freeze")).all() == []
        )
    done = client.post(
        base, data={"reason": "hijack", "account_uid": UID, "confirm": "yes"}, follow_redirects=True
    )
    assert texts(html.fromstring(done.text), SAYS) == [f"Account {UID} is frozen."]


def test_a_freeze_of_a_uid_nobody_has_says_so_and_keeps_it_in_the_form(
    client: TestClient, phone: Phone, db: Engine, agent: str, supervisor: str
) -> None:
    """The agent types a UID no account has: not "the service did not confirm" (an outage),
    but no such account, the UID still in its box, marked; no open freeze to chase."""
    phone.call(ScriptedParty(list(DEPOSITS)), from_number=NORMAL_CALLER)
    signed_in(client, agent)
    said(act(client, "/dashboard/desk/next"))
    [held] = client.get("/api/agents/cases", headers=bearer(agent)).json()
    assert held["account_uid"] is None
    refused = act(
        client,
        f"/dashboard/desk/{held['id']}/freeze",
        reason="caller reports a hijack",
        account_uid="99999999",
        confirm="yes",
    )
    assert refused.status_code == 422
    doc = html.fromstring(refused.text)
    [error] = texts(doc, "//*[@id='desk-error']")
    assert error.startswith("Not frozen: no such account 99999999: ")
    assert "did not confirm" not in error
    [uid] = doc.xpath("//input[@name='account_uid']")
    assert (uid.get("value"), uid.get("aria-invalid")) == ("99999999", "true")
    assert doc.xpath("//input[@name='reason']/@value") == ["caller reports a hijack"]
    assert client.get("/api/freezes?open=true", headers=bearer(supervisor)).json() == []
    signed_in(client, supervisor)
    listed = page(client, "/dashboard/freezes")
    assert listed.xpath("//p[@role='alert']") == []  # nothing "not confirmed" to chase
    assert texts(listed, "//table[contains(@class, 'freezes')]//tbody/tr/td[5]") == [
        "no such account: nothing to freeze"
    ]


class Unconfirmed:
    """An account service that never confirms a freeze (down, say)."""

    def freeze(self, *, uid: str, now: datetime) -> bool:
        return False


def test_a_freeze_not_confirmed_names_the_account_and_keeps_the_uid_to_try_again(
    settings: Settings, hotline_tree: CompiledTree, db: Engine, clock: FakeClock
) -> None:
    app = with_dashboard(
        create_app(settings, tree=hotline_tree, db=db, clock=clock, actions=Unconfirmed())
    )
    agent = make_user(db, "alice", "agent", AGENT_PHONE)
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, clock=clock).call(
            ScriptedParty(list(DEPOSITS)), from_number=NORMAL_CALLER
        )
        signed_in(client, agent)
        said(act(client, "/dashboard/desk/next"))
        [held] = client.get("/api/agents/cases", headers=bearer(agent)).json()
        form = {"reason": "hijack", "account_uid": UID, "confirm": "yes"}
        sent = act(client, f"/dashboard/desk/{held['id']}/freeze", **form)
        assert said(sent) == "freeze_failed"
        doc = page(client, sent.headers["location"])
    assert texts(doc, "//p[@role='alert'][@class='alert']") == [
        f"The account service did not confirm the freeze of account {UID}; it is audited as "
        "failed. Try again, or escalate."
    ]
    assert doc.xpath("//input[@name='account_uid']/@value") == [UID]
    assert doc.xpath("//input[@name='reason']/@value") == ["hijack"]


def test_the_desk_says_the_account_is_frozen_whoever_froze_it(
    client: TestClient, phone: Phone, db: Engine, settings: Settings, agent: str, clock: FakeClock
) -> None:
    """A verified victim froze their account on the phone; a second call of that account is
    bob's. His desk says the account is frozen, by whom and when (not on which ticket: his
    caller is not verified), though nothing was frozen on his case, and does not offer
    "Freeze" as if it were not."""
    add_account(db, settings)
    phone.call(ScriptedParty(list(HIJACK)), from_number=VICTIM)
    clock.advance(seconds=30)
    phone.call(
        ScriptedParty([Press("1"), Press("1"), Press(UID), Press("000000")]),
        from_number=NORMAL_CALLER,
    )
    signed_in(client, agent)
    said(act(client, "/dashboard/desk/next"))
    [first] = client.get("/api/agents/cases", headers=bearer(agent)).json()
    bob = make_user(db, "bob", "agent", "+15005559998")
    signed_in(client, bob)
    said(act(client, "/dashboard/desk/next"))
    [second] = client.get("/api/agents/cases", headers=bearer(bob)).json()
    assert second["account_uid"] == UID and second["freeze"] == {}
    desk = page(client, "/dashboard/desk")
    [case] = desk.xpath("//section[contains(@class, 'case')]")
    facts = dict(zip(texts(case, ".//dt"), texts(case, ".//dd"), strict=True))
    assert facts["Account frozen"].startswith("yes, since ")
    assert facts["Account frozen"].endswith("by the caller themselves (verified)")
    # bob's caller keyed a wrong PIN: the victim's ticket (main menu 9's key to their case)
    # is not shown to him, as the account's earlier cases' are not.
    assert first["ticket"] not in html.tostring(desk, encoding="unicode")
    # Nor the victim's CallSid, whose timeline names the ticket: the kind of actor only.
    assert second["account_frozen"]["by"] == "caller" and second["account_frozen"]["ticket"] is None
    assert facts["Freezes on this case"] == "none"
    [notice] = texts(desk, "//p[contains(@class, 'already-frozen')]")
    assert notice.startswith(f"Account {UID} is frozen already: since ")
    # The form is there for another account (or again), folded away: not "Freeze" as if not.
    [folded] = desk.xpath("//details[@class='freeze-again']")
    assert folded.get("open") is None and folded.xpath(".//form[contains(@action, '/freeze')]")
    assert texts(folded, "summary") == [
        f"Freeze another account (theirs, if {UID} is not), or this one again"
    ]


def test_a_desk_action_after_the_caller_hung_up_says_so_and_keeps_the_words(
    client: TestClient, phone: Phone, db: Engine, agent: str
) -> None:
    """alice takes a caller on hold; they hang up before being put through, while she types
    a freeze. The desk says what happened in her words (not the API's), that nothing was
    frozen, and shows what she typed; her notes too, on a Resolve."""
    signed_in(client, agent)

    def takes_then_hangs_up(poll: int) -> bool:
        assert said(act(client, "/dashboard/desk/next")) == "next_hold_poll"
        return False

    phone.call(Caller(list(DEPOSITS), takes_then_hangs_up), from_number=NORMAL_CALLER)
    [case] = client.get("/api/queue", headers=bearer(agent)).json()
    assert case["status"] == "abandoned"
    words = "caller says withdrawals he did not make"
    freeze = act(
        client,
        f"/dashboard/desk/{case['case_id']}/freeze",
        reason=words,
        account_uid=UID,
        confirm="yes",
    )
    assert freeze.status_code == 409
    doc = html.fromstring(freeze.text)
    assert texts(doc, "//*[@id='desk-error']") == [
        f"Ticket {case['ticket']}'s caller hung up before being put through: the case is back "
        "in line as a call back. Take the next case to call them back (emergencies come "
        "first). Nothing was frozen."
    ]
    assert texts(doc, "//dd[@class='kept']") == [words, UID]
    assert "/api/" not in doc.text_content()
    resolve = act(client, f"/dashboard/desk/{case['case_id']}/resolve", notes="no answer yet")
    assert resolve.status_code == 409
    doc = html.fromstring(resolve.text)
    assert texts(doc, "//*[@id='desk-error']")[0].startswith(
        f"Ticket {case['ticket']}'s caller hung up before being put through"
    )
    assert texts(doc, "//dd[@class='kept']") == ["no answer yet"]
    with db.connect() as conn:
        assert (
            conn.execute(select(audit_log.c.id).where(audit_log.c.action == "freeze")).all() == []
        )


# English, stolen account, verification skipped: an unverified hijack caller, no account.
UNVERIFIED_HIJACK = [Press("1"), Press("1"), Press("*")]


def put_through_and_dropped(
    client: TestClient, phone: Phone, clock: FakeClock, agent: str, talked: int
) -> dict[str, Any]:
    """An unverified hijack caller, taken at alice's desk and put through to her phone, who
    hangs up `talked` seconds into the call: her case, as the API shows it."""
    signed_in(client, agent)
    taken: list[str] = []

    def holds(poll: int) -> bool:
        if not taken:
            taken.append(said(act(client, "/dashboard/desk/next")))
        return poll < 3

    def talks(number: str) -> None:
        clock.advance(seconds=talked)
        raise HangsUp

    record = phone.call(Talks(list(UNVERIFIED_HIJACK), holds, talks))
    assert (taken, record.dialed, record.ended_by) == (["next_hold_poll"], AGENT_PHONE, "caller")
    [held] = client.get("/api/agents/cases", headers=bearer(agent)).json()
    assert (held["priority"], held["status"], held["on_call"]) == ("emergency", "connected", False)
    return dict(held)


def test_an_emergency_whose_caller_dropped_is_not_resolved_with_nothing_done(
    client: TestClient, phone: Phone, db: Engine, clock: FakeClock, agent: str
) -> None:
    """The unverified victim hangs up 5 s after alice answered: nothing frozen, nothing
    done. "Resolve" with "dropped" would close a hijack case nobody acted on: refused, as an
    emergency call back nobody answered is. Her desk offers "Call them back": back in its
    place in line, a call back owed, the supervisor's "Call back" on her own case."""
    held = put_through_and_dropped(client, phone, clock, agent, talked=5)
    assert held["dropped_after_seconds"] == 5
    refused = client.post(
        f"/api/cases/{held['id']}/resolve", headers=bearer(agent), json={"notes": "dropped"}
    )
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        "the caller dropped 5 s into the call and the account was not frozen: freeze the "
        'account, press "Call them back" (back in line, a call back owed), or tick "Nothing '
        'needed doing" if so (say why in the notes)'
    )
    base = f"/dashboard/desk/{held['id']}"
    desk = page(client, "/dashboard/desk")
    assert texts(desk, "//p[contains(@class, 'dropped')]") == [
        "The caller dropped 5 s into the call. Nothing is frozen: freeze the account, call "
        "them back, or tick that nothing was needed."
    ]
    assert texts(desk, f"//form[@action='{base}/call-back']//button") == ["Call them back"]
    assert desk.xpath(f"//form[@action='{base}/resolve']//input[@name='nothing_needed']")
    assert said(act(client, f"{base}/call-back", reason="dropped at once")) == "call_back_owed"
    assert client.get("/api/agents/cases", headers=bearer(agent)).json() == []
    with db.connect() as conn:
        row = conn.execute(select(cases).where(cases.c.id == held["id"])).mappings().one()
        [(actor, why)] = conn.execute(
            select(audit_log.c.actor, audit_log.c.reason).where(
                audit_log.c.action == "requeue", audit_log.c.case_id == held["id"]
            )
        ).all()
    assert (row["status"], row["queued"], row["agent_id"]) == ("abandoned", 1, None)
    assert (actor, why) == ("agent:alice", "after the call, for a call back: dropped at once")


@pytest.mark.parametrize("how", ["nothing_needed", "freeze", "talked"])
def test_an_emergency_whose_caller_dropped_resolves_once_the_agent_acted_or_said_so(
    client: TestClient,
    phone: Phone,
    db: Engine,
    settings: Settings,
    clock: FakeClock,
    agent: str,
    how: str,
) -> None:
    """Ticked "Nothing needed doing" (audited so), or the account frozen, the dropped case
    resolves. A caller who talked for 90 s did not drop: resolved with notes as any
    emergency, and no "Call them back" (alice talked to them: hers to resolve, or to send on
    with a note)."""
    add_account(db, settings)
    held = put_through_and_dropped(client, phone, clock, agent, talked=90 if how == "talked" else 5)
    base = f"/dashboard/desk/{held['id']}"
    desk = page(client, "/dashboard/desk")
    offered = bool(desk.xpath(f"//form[@action='{base}/call-back']"))
    assert offered == (how != "talked")
    form: dict[str, str] = {"notes": "a wrong key: they called about a deposit"}
    if how == "nothing_needed":
        form["nothing_needed"] = "true"
    if how == "freeze":
        froze = act(client, f"{base}/freeze", account_uid=UID, reason="hijack", confirm="yes")
        assert said(froze) == "frozen"
        form["notes"] = "frozen; they dropped"
    assert said(act(client, f"{base}/resolve", **form)) == "resolved"
    with db.connect() as conn:
        [why] = conn.execute(
            select(audit_log.c.reason).where(
                audit_log.c.action == "resolve", audit_log.c.case_id == held["id"]
            )
        ).scalars()
    assert why == (
        "caller dropped after 5 s: nothing needed doing" if how == "nothing_needed" else None
    )


def test_the_desk_sends_the_caller_on_while_the_agent_talks_to_them(
    client: TestClient, db: Engine, agent: str, phone: Phone
) -> None:
    """A transfer form only on a case whose caller is put through; refused input shown on
    the desk; sent, the desk says they go when the agent hangs up, and the next agent's desk
    says who sent them and why."""
    signed_in(client, agent)
    seen: dict[str, Any] = {}

    def holds(poll: int) -> bool:
        if "took" not in seen:
            seen["took"] = said(act(client, "/dashboard/desk/next"))
            seen["before"] = page(client, "/dashboard/desk")
        return "sent" not in seen

    def talks(number: str) -> str:
        [held] = client.get("/api/agents/cases", headers=bearer(agent)).json()
        base = f"/dashboard/desk/{held['id']}/transfer"
        desk = page(client, "/dashboard/desk")
        resolve = base.replace("/transfer", "/resolve")
        [seen["resolve"]] = desk.xpath(f"//form[@action='{resolve}']//button")
        seen["why"] = texts(desk, f"//*[@id='{seen['resolve'].get('aria-describedby')}']")
        seen["early"] = act(client, resolve, notes="done")
        seen["queues"] = desk.xpath(
            f"//form[@action='{base}']//select[@name='queue']/option/@value"
        )
        seen["short"] = act(client, base, queue="security", note="x")
        seen["sent"] = said(
            act(
                client,
                base,
                queue="security",
                priority="emergency",
                language="zh-CN",
                note="funds leaving the account now",
            )
        )
        seen["after"] = page(client, "/dashboard/desk").text_content()
        return "completed"

    phone.call(Talks(list(DEPOSITS), holds, talks))
    assert seen["took"] == "next_hold_poll"
    # On the call, Resolve is found by Tab and says why it cannot be pressed yet; it submits
    # nothing, and the server would refuse it anyway.
    resolve = seen["resolve"]
    assert (resolve.get("aria-disabled"), resolve.get("disabled"), resolve.get("type")) == (
        "true",
        None,
        "button",
    )
    assert seen["why"][0].startswith("You are on the call: resolve it once you have hung up.")
    assert seen["early"].status_code == 409 and "you are on the call" in seen["early"].text
    assert not seen["before"].xpath("//form[contains(@action, '/transfer')]")  # not put through
    assert {"security", "payments", "general"} <= set(seen["queues"])
    assert seen["short"].status_code == 422 and "say why" in seen["short"].text
    # What the agent typed is in the refused form again, to finish, not to type again.
    notes = html.fromstring(seen["short"].text).xpath("//input[@name='note']/@value")
    assert notes == ["x"]
    assert seen["sent"] == "transfer_on_hang_up"
    assert "they go when you hang up" in seen["after"]
    assert "Resolve" not in seen["after"]  # being sent on: resolved where it goes
    bob = make_user(db, "bob", "agent", "+15005558888")
    signed_in(client, bob)
    said(act(client, "/dashboard/desk/next"))
    desk = " ".join(page(client, "/dashboard/desk").text_content().split())
    assert "from payments by alice: funds leaving the account now" in desk


def test_the_desk_keeps_notes_with_the_case_for_the_next_agent_and_supervisors(
    client: TestClient, phone: Phone, db: Engine, supervisor: str, agent: str
) -> None:
    """alice writes notes on an emergency call back as she works it: saved with the case
    (not the tab), by her and when. One that may hold the caller's PIN is refused at its
    field, kept there to put right, and never stored. She sends the case on; bob, who takes
    it next, reads her notes; so does the supervisor on the call's timeline, and no other
    agent."""
    record = phone.call(ScriptedParty([Press("1"), Press("1")]), from_number="+15005550101")
    signed_in(client, agent)
    assert said(act(client, "/dashboard/desk/next")) == "call_back"
    [held] = client.get("/api/agents/cases", headers=bearer(agent)).json()
    base = f"/dashboard/desk/{held['id']}"
    desk = page(client, "/dashboard/desk")
    assert texts(desk, "//div[@class='working-notes']/p") == ["None yet."]
    [label] = texts(desk, f"//label[@for='note-{held['id']}']")
    assert label.startswith("Add a note, saved with the case")
    words = "says her phone was swapped on Friday; 客户确认账户被盗"
    assert said(act(client, f"{base}/note", note=words)) == "noted"
    refused = act(client, f"{base}/note", note="she read me 739 182 by mistake")
    assert refused.status_code == 422
    doc = html.fromstring(refused.text)
    [error] = texts(doc, "//*[@id='desk-error']")
    assert error.startswith("Not saved: a run of 6 digits (or of 4, in a note about an ID")
    [field] = doc.xpath(f"//textarea[@id='note-{held['id']}']")
    assert (field.get("aria-invalid"), field.get("aria-describedby")) == ("true", "desk-error")
    assert field.text == "she read me 739 182 by mistake"  # to put right, not type again
    desk = page(client, "/dashboard/desk")
    assert texts(desk, "//div[@class='working-notes']//li") == [f"you, 23 Nov 03:00: {words}"]
    [stamp] = desk.xpath("//div[@class='working-notes']//li//time/@datetime")
    assert stamp.startswith("2026-11-23T03:00:")
    with db.connect() as conn:
        row = conn.execute(select(cases).where(cases.c.id == held["id"])).mappings().one()
    assert [n["text"] for n in row["working_notes"]] == [words]
    assert "739 182" not in str(row)
    sent = act(client, f"{base}/transfer", queue="payments", note="owed a call back on funds")
    assert said(sent) == "transfer_call_back"
    bob = make_user(db, "bob", "agent", "+15005558888")
    with TestClient(client.app, base_url=HTTPS_CLIENT) as bobs:
        signed_in(bobs, bob)
        said(act(bobs, "/dashboard/desk/next"))
        notes = texts(page(bobs, "/dashboard/desk"), "//div[@class='working-notes']//li")
        assert notes == [f"alice, 23 Nov 03:00: {words}"]
        carol = make_user(db, "carol", "agent", "+15005557777")
        signed_in(bobs, carol)  # another agent's view of the call: not hers to read
        assert words not in page(bobs, f"/dashboard/calls/{record.call_sid}").text_content()
        signed_in(bobs, supervisor)
        timeline = page(bobs, f"/dashboard/calls/{record.call_sid}")
        [listed] = texts(timeline, "//ol[@class='working-notes-list']/li")
        assert listed == f"agent:alice, 23 Nov 03:00: {words}"
        assert timeline.xpath("//ol[@class='working-notes-list']//span[@lang='zh']")


def test_signing_out_with_a_case_asks_first_and_says_what_becomes_of_it(
    client: TestClient, phone: Phone, db: Engine, clock: FakeClock, agent: str
) -> None:
    """alice, with a connected emergency whose caller left, presses Sign out: nothing is
    signed out, and a page says the case stays hers for a supervisor to take back or close,
    with "Sign out anyway" (no script needed). Pressed, she is signed out, and the case
    waits for a supervisor as the case of an agent gone."""
    held = put_through_and_dropped(client, phone, clock, agent, talked=5)
    asked = client.post("/dashboard/logout", follow_redirects=False)
    assert asked.status_code == 409
    assert "set-cookie" not in asked.headers and "clear-site-data" not in asked.headers
    doc = html.fromstring(asked.text)
    assert doc.findtext(".//title").startswith("Sign out? You have a case · ")
    [case] = texts(doc, "//ul[@class='held-at-signout']/li")
    assert case.startswith(f"Ticket {held['ticket']} Emergency: the caller has left the call.")
    assert "It stays yours, listed to supervisors as the case of an agent gone" in case
    [anyway] = doc.xpath("//form[@action='/dashboard/logout'][.//input[@name='anyway']]")
    assert anyway.xpath(".//input[@name='anyway']/@value") == ["yes"]
    assert texts(anyway, ".//button") == ["Sign out anyway"]
    assert doc.xpath("//a[@href='/dashboard/desk']")
    # Still signed in, and as she was: the desk, her presence, her case.
    page(client, "/dashboard/desk")
    presence = client.get("/api/agents/presence", headers=bearer(agent)).json()
    assert presence["away_reason"] != "signed_out"
    out = act(client, "/dashboard/logout", anyway="yes")
    assert (out.status_code, out.headers["location"]) == (303, "/dashboard/login")
    assert client.get("/dashboard/desk", follow_redirects=False).status_code == 303
    sam = make_user(db, "sam", "supervisor")
    [left] = client.get("/api/cases/held", headers=bearer(sam)).json()
    assert (left["case_id"], left["agent_gone"]) == (held["id"], "signed_out")


def test_the_desk_times_the_talk_and_the_wrap_up_and_says_the_caller_left(
    client: TestClient, phone: Phone, db: Engine, clock: FakeClock, agent: str
) -> None:
    """While alice talks, her desk says since when (a <time>; the script counts on from
    the server's seconds); once the caller hangs up, the case still reads connected for her
    to finish, and says the caller has left, and the wrap-up's start."""
    signed_in(client, agent)
    seen: dict[str, Any] = {}

    def holds(poll: int) -> bool:
        if "took" not in seen:
            seen["took"] = said(act(client, "/dashboard/desk/next"))
        return poll < 3

    def talks(number: str) -> None:
        clock.advance(seconds=90)
        seen["talking"] = page(client, "/dashboard/desk")
        with db.connect() as conn:
            seen["row"] = conn.execute(select(cases)).mappings().one()
        raise HangsUp

    phone.call(Talks(list(UNVERIFIED_HIJACK), holds, talks))
    talking = seen["talking"]
    with db.connect() as conn:
        row = conn.execute(select(cases)).mappings().one()
        ended = conn.execute(select(calls.c.ended_at)).scalar_one()
    [timer] = talking.xpath("//p[contains(@class, 'talk-timer')]")
    started = seen["row"]["answered_at"] or seen["row"]["connected_at"]
    assert timer.xpath(".//time/@datetime") == [started.isoformat()]
    # Without the script: since when, on the page's clock; the script shows how long.
    assert " ".join(timer.text_content().split()) == f"Talking since {started:%H:%M} UTC"
    [elapsed] = timer.xpath(".//span[@class='elapsed']")
    assert elapsed.get("data-elapsed") == "90" and elapsed.get("hidden") is not None
    assert not talking.xpath("//p[contains(@class, 'caller-left')]")
    clock.advance(seconds=30)
    desk = page(client, "/dashboard/desk")
    [state] = texts(desk, "//span[contains(@class, 'case-state')]")
    assert state == "· connected: the caller has left"
    [left] = texts(desk, "//p[contains(@class, 'caller-left')]")
    assert left.startswith(f"The caller left the call at {ended:%H:%M:%S} UTC.")
    [wrap] = desk.xpath("//p[contains(@class, 'after-call-timer')]")
    end = min(e for e in (row["talk_ended_at"], ended) if e is not None)
    assert wrap.xpath(".//time/@datetime") == [end.isoformat()]
    assert wrap.xpath(".//span[@class='elapsed']/@data-elapsed") == ["30"]
    assert "After the call (wrap-up) since" in " ".join(wrap.text_content().split())
    assert not desk.xpath("//p[contains(@class, 'talk-timer')]")


def test_the_desk_asks_for_the_account_when_the_caller_keyed_none(
    client: TestClient, db: Engine, agent: str, placed: dict[str, str]
) -> None:
    # Another agent has the verified emergency, with its account; this one gets the deposits
    # caller, who keyed no account.
    other = make_user(db, "bob", "agent")
    assert client.post("/api/agents/next", headers=bearer(other)).json()["case"]["account_uid"]
    signed_in(client, agent)
    said(act(client, "/dashboard/desk/next"))
    [bare] = client.get("/api/agents/cases", headers=bearer(agent)).json()
    assert bare["account_uid"] is None
    [form] = page(client, "/dashboard/desk").xpath(
        f"//form[@action='/dashboard/desk/{bare['id']}/freeze']"
    )
    assert len(form.xpath(".//input[@name='account_uid'][@required]")) == 1
    base = f"/dashboard/desk/{bare['id']}/freeze"
    wrong = act(client, base, reason="caller says hacked", account_uid="12ab", confirm="yes")
    assert wrong.status_code == 422 and "an account UID is digits" in wrong.text
    # The field refused is marked so, and described by why; the reason, taken, is not.
    refused = html.fromstring(wrong.text)
    [uid] = refused.xpath("//input[@name='account_uid']")
    assert (uid.get("aria-invalid"), uid.get("aria-describedby")) == ("true", "desk-error")
    assert refused.xpath("//input[@name='reason']/@aria-invalid") == []
    assert texts(refused, "//*[@id='desk-error']")[0].startswith("Say why you freeze")
    done = act(client, base, reason="caller says hacked", account_uid=UID, confirm="yes")
    assert said(done) == "frozen"
    [held] = [
        c
        for c in client.get("/api/agents/cases", headers=bearer(agent)).json()
        if c["id"] == bare["id"]
    ]
    assert held["account_uid"] == UID
    # Now it has one: the form asks why, and another UID only if that one proves wrong (the
    # caller is not verified): empty, it freezes the one found.
    [form] = page(client, "/dashboard/desk").xpath(f"//form[@action='{base}']")
    assert form.xpath(".//input[@name='account_uid'][@required]") == []


def test_desk_actions_from_another_site_or_role_do_nothing(
    client: TestClient, db: Engine, agent: str, supervisor: str, placed: dict[str, str]
) -> None:
    signed_in(client, agent)
    forged = client.post(
        "/dashboard/desk/next", headers={"Origin": "https://evil.example"}, follow_redirects=False
    )
    assert forged.status_code == 403
    assert client.get("/api/agents/cases", headers=bearer(agent)).json() == []
    forged = client.post(
        "/dashboard/desk/presence",
        data={"available": "true"},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    assert client.get("/api/agents/presence", headers=bearer(agent)).json()["available"] is False
    signed_in(client, supervisor)
    assert act(client, "/dashboard/desk/next").status_code == 403
    assert act(client, "/dashboard/desk/presence", available="true").status_code == 403
    client.cookies.clear()
    assert act(client, "/dashboard/desk/next").headers["location"] == "/dashboard/login"
    assert len(client.get("/api/queue", headers=bearer(supervisor)).json()) == 2


def test_figures_page_draws_charts_and_the_per_queue_table(
    client: TestClient, db: Engine, supervisor: str, placed: dict[str, str]
) -> None:
    signed_in(client, supervisor)
    assert (
        "No agent was available or talked to a caller"
        in page(client, "/dashboard/figures").text_content()
    )
    # One of the two cases: an agent talked to its caller, who rated them 4.
    make_user(db, "olga", "agent")
    with db.begin() as conn:
        agent_id = conn.execute(select(users.c.id).where(users.c.name == "olga")).scalar_one()
        case_id, call_sid, created = conn.execute(
            select(cases.c.id, cases.c.call_sid, cases.c.created_at).order_by(cases.c.id)
        ).first()  # type: ignore[misc]
        conn.execute(
            update(cases)
            .where(cases.c.id == case_id)
            .values(agent_id=agent_id, connected_at=created, status="connected", queued=0)
        )
        conn.execute(
            insert(call_events).values(
                call_sid=call_sid,
                step=99,
                at=created,
                node="survey",
                kind="survey",
                input_kind="dtmf",
                outcome="4",
                detail={"case": case_id},
            )
        )
    doc = page(client, "/dashboard/figures")
    [olga] = [
        texts(tr, "./*") for tr in doc.xpath("//table[contains(@class,'by-agent')]//tbody/tr")
    ]
    assert olga == ["olga", "1", "n/a", "n/a", "1 / 1", "4.0", "100.0 %", "0", "0", "n/a", "n/a"]
    # Beside each bar's calls, the staff: no agent's presence is known here (n/a, not 0).
    [staffed] = doc.xpath("//table[contains(@class,'by-interval')]/thead/tr/th[last()]")
    assert staffed.text_content() == "Agents available (mean)"
    assert {
        r.xpath("./td[last()]")[0].text_content()
        for r in doc.xpath("//table[contains(@class,'by-interval')]/tbody/tr")
    } == {"n/a"}
    charts = doc.xpath("//figure[contains(@class,'chart')]/svg")
    assert len(charts) == 3
    titles = [c.xpath("./title")[0].text for c in charts]
    assert titles == ["Calls per hour", "Abandonment rate per hour", "Service level per hour"]
    # Default period: the 24 hours up to the end of the clock's hour (03:00 -> 04:00), so the
    # last bar is 03:00-04:00 and holds both calls.
    bars = charts[0].xpath(".//g[@class='bars']/rect/title")
    assert len(bars) == 24
    assert [b.text for b in bars][-1] == "23 Nov 03:00 to 04:00: 2"
    # The same periods as rows, every queue figure whole: the bars' text, and a shift report's.
    periods = doc.xpath("//table[contains(@class,'by-interval')]/tbody/tr")
    assert len(periods) == 24
    last = texts(periods[-1], "./*")
    assert last[:3] == ["23 Nov 03:00 to 04:00", "2", "1"]
    assert last[6] == "100.0 % (1 of 1)"  # the service level, as the totals below say it
    assert all(texts(tr, "./*")[1] == "0" for tr in periods[:-1])
    rows = {
        r[0]: r[1:]
        for r in (
            texts(tr, "./*") for tr in doc.xpath("//table[not(contains(@class,'by-interval'))]//tr")
        )
    }
    abandoned = [r for r in ("security", "payments") if rows[r][3].startswith("1")]
    assert len(abandoned) == 1  # the other is olga's, answered
    # offered ... abandonment: at once, by this clock, so a short abandon, said so
    assert rows[abandoned[0]][:5] == ["1", "0", "0", "1 (1 short)", "100.0 % (n/a without short)"]
    assert rows["All queues"][0] == "2"
    # Service level: olga's answer, the only caller answered or kept past the target.
    assert rows["All queues"][5] == "100.0 % (1 of 1)"
    [how] = texts(doc, "//p[contains(@class, 'how-counted')]")
    assert "Abandoned: of the callers answered or who hung up waiting, those who hung up" in how
    assert "(20 s for an emergency, 60 s for the rest) and then hung up, asked for a call" in how
    assert doc.xpath("//a[@href='#definitions']") and doc.xpath("//*[@id='definitions']//pre")
    # A period before the calls: nothing offered, rates are n/a (not 0).
    empty = page(client, "/dashboard/figures", since="2026-11-20T00:00", until="2026-11-21T00:00")
    assert "No case reached a queue" in empty.text_content()
    assert texts(empty, "//tfoot//td")[4] == "n/a"
    bad = page(client, "/dashboard/figures", status=422, since="2026-11-23", until="2026-11-22")
    assert "until must be after since" in bad.text_content()
    assert bad.xpath("//input[@aria-invalid='true']/@name") == ["until"]
    too_long = page(client, "/dashboard/figures", status=422, since="2026-01-01")
    assert "at most 31 days" in too_long.text_content()
    assert (
        "not a date" in page(client, "/dashboard/figures", status=422, since="soon").text_content()
    )


def test_a_time_the_clock_change_makes_twice_or_never_is_asked_again(
    client: TestClient, supervisor: str
) -> None:
    """On a zone with summer time, 01:30 on the night the clocks go back is two moments, and
    02:30 on the night they go forward is none: either would move the report by an hour
    without a word. Said, with what to ask instead; a time beside the change is taken."""
    signed_in(client, supervisor)
    york = {"tz": "America/New_York"}
    twice = page(client, "/dashboard/figures", status=422, since="2026-11-01T01:30", **york)
    said = twice.text_content()
    assert "since: 2026-11-01T01:30 shows twice on the America/New_York clock" in said
    assert "ask in UTC instead, 05:30 for the first time it showed, 06:30 for the second" in said
    assert twice.xpath("//input[@aria-invalid='true']/@name") == ["since"]
    never = page(client, "/dashboard/figures", status=422, until="2026-03-08T02:30", **york)
    assert "until: 2026-03-08T02:30 never shows on the America/New_York clock" in (
        never.text_content()
    )
    page(client, "/dashboard/figures", since="2026-11-01T02:30", until="2026-11-01T05:00", **york)
    page(client, "/dashboard/calls", since="2026-11-01T01:30")  # the hotline's clock: UTC


def test_the_figures_period_downloads_per_half_hour_for_a_workforce_tool(
    client: TestClient, db: Engine, supervisor: str, placed: dict[str, str]
) -> None:
    """The period on the page, on its clock, as the API's intervals CSV: to a supervisor,
    from the page's own link; an agent is offered none and refused it."""
    signed_in(client, supervisor)
    shown = {"since": "2026-11-23T10:00", "until": "2026-11-23T12:00", "tz": "Asia/Shanghai"}
    doc = page(client, "/dashboard/figures", **shown)
    [link] = doc.xpath("//a[contains(@href, '/figures/intervals.csv')]/@href")
    sheet = client.get(link)
    assert sheet.status_code == 200 and sheet.headers["content-type"].startswith("text/csv")
    rows = [r for r in csv.DictReader(io.StringIO(sheet.text)) if r["queue"] == ""]
    assert [r["interval_start"][11:16] for r in rows] == ["10:00", "10:30", "11:00", "11:30"]
    assert rows[0]["interval_start"] == "2026-11-23T10:00:00+08:00"
    figures_offered = texts(doc, "//tfoot//td")[0]
    assert sum(int(r["offered"]) for r in rows) == int(figures_offered) > 0
    assert client.get(link + "&minutes=20").status_code == 422
    # A month's period: per hour, which one answer holds (half hours would not).
    month = {"since": "2026-11-01T00:00", "until": "2026-11-30T00:00", "tz": "Asia/Shanghai"}
    [longer] = page(client, "/dashboard/figures", **month).xpath(
        "//a[contains(@href, '/figures/intervals.csv')]/@href"
    )
    assert "minutes=60" in longer and client.get(longer).status_code == 200
    signed_in(client, make_user(db, "olga", "agent"))
    assert not page(client, "/dashboard/figures", **shown).xpath(
        "//a[contains(@href, '/figures/intervals.csv')]"
    )
    assert client.get(link, follow_redirects=False).status_code in (303, 403)


def test_the_figures_judge_a_caller_still_holding_by_the_clock(
    client: TestClient, phone: Phone, clock: FakeClock, supervisor: str
) -> None:
    """The default period runs to the end of the hour: a caller holding for 10 s has not
    missed the 60 s target yet (no service level, in the table or the chart's bar of the
    hour); 70 s in, they have."""
    signed_in(client, supervisor)
    seen: list[tuple[str, str]] = []

    class Holding(ScriptedParty):
        def keep_holding(self, queue: str, polls: int) -> bool:
            if len(seen) == 2:
                return False
            clock.advance(seconds=10 if not seen else 60)
            doc = page(client, "/dashboard/figures")
            rows = {r[0]: r[1:] for r in (texts(tr, "./*") for tr in doc.xpath("//table//tr"))}
            [chart] = doc.xpath("//svg[title[@id='service-chart-title']]")
            bar = chart.xpath(".//g[@class='bars']/rect/title")[-1]
            seen.append((rows["All queues"][5], bar.text))
            return True

    phone.call(Holding(list(DEPOSITS)), from_number=NORMAL_CALLER)
    assert seen == [
        ("n/a", "23 Nov 03:00 to 04:00: n/a"),
        ("0.0 % (0 of 1)", "23 Nov 03:00 to 04:00: 0.0 %"),
    ]


def test_the_figures_of_the_last_hour_in_five_minute_bars(
    client: TestClient, db: Engine, clock: FakeClock, supervisor: str, placed: dict[str, str]
) -> None:
    """An incident is not averaged with a quiet morning: "Last hour" is the hour up to the
    end of the clock's 5 minutes, in 12 bars, whenever the link is followed. A case from
    two hours before is in the default 24 hours, not in it."""
    with db.begin() as conn:
        conn.execute(insert(cases), [in_line(99, clock(), "kyc", "normal", "waiting", 7200)])
    clock.advance(minutes=30)  # 03:32:05
    signed_in(client, supervisor)
    day = page(client, "/dashboard/figures")
    [link] = day.xpath("//form[contains(@class, 'filters')]//a[text()='Last hour']/@href")
    assert link == "/dashboard/figures?last=hour"
    hour = page(client, link)
    assert hour.xpath("//input[@name='since']/@value") == ["2026-11-23T02:35"]
    assert hour.xpath("//input[@name='until']/@value") == ["2026-11-23T03:35"]
    reached = "//div[@class='tile'][span[@class='name']='reached a queue']/span[@class='value']"
    assert (texts(day, reached), texts(hour, reached)) == (["3"], ["2"])
    [calls] = hour.xpath("//svg[title[@id='calls-chart-title']]")
    assert calls.xpath("./title")[0].text == "Calls per 5 minutes"
    bars = [b.text for b in calls.xpath(".//g[@class='bars']/rect/title")]
    assert len(bars) == 12
    assert bars[0] == "23 Nov 02:35 to 02:40: 0"
    assert bars[5] == "23 Nov 03:00 to 03:05: 2"  # both placed calls
    assert bars[-1] == "23 Nov 03:30 to 03:35: 0"


def test_tree_page_draws_the_live_tree(
    client: TestClient, supervisor: str, hotline_tree: CompiledTree
) -> None:
    assert shutil.which("dot"), "Graphviz `dot` is required: run scripts/browser-deps"
    signed_in(client, supervisor)
    doc = page(client, "/dashboard/tree")
    [svg] = doc.xpath("//figure[contains(@class,'tree-picture')]/svg")
    labels = set(texts(svg, ".//text"))
    assert {"main_menu", "emergency_queue"} <= labels
    assert hotline_tree.version in doc.text_content()
    # Far wider than the screen: scrolled by keyboard too, once tabbed to (and ringed).
    [figure] = doc.xpath("//figure[@id='tree-picture']")
    # A figure named by its label (a role of region on it is not allowed: axe's
    # aria-allowed-role), focusable as a scrolled region must be.
    assert (figure.get("tabindex"), figure.get("role")) == ("0", None)
    assert figure.get("aria-label").startswith("Call tree picture")
    assert any(".tree-picture:focus-visible" in selectors for selectors, _ in css_rules())
    # Its text alternative: not the picture's every label as one name, but the tree as text,
    # its Chinese labels marked so.
    assert svg.get("aria-hidden") == "true"
    [text] = doc.xpath("//details[@class='tree-text']/pre")
    assert "main_menu" in text.text_content() and "-->" in text.text_content()
    assert text.xpath("span[@lang='zh']")


def test_tree_page_falls_back_to_mermaid_without_graphviz(
    client: TestClient, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_graphviz(tree: CompiledTree) -> str:
        raise GraphvizMissing()

    monkeypatch.setattr(dashboard, "_SVG_CACHE", {})
    monkeypatch.setattr(dashboard.graph, "svg", no_graphviz)
    signed_in(client, make_user(db, "olga", "operator"))
    doc = page(client, "/dashboard/tree")
    assert not doc.xpath("//svg")
    [pre] = doc.xpath("//pre[contains(@class,'mermaid-text')]")
    assert pre.text_content().startswith("flowchart TD")
    assert "Graphviz" in " ".join(texts(doc, "//*[@role='status']"))


def test_an_address_with_no_page_answers_a_page_not_json(
    client: TestClient, supervisor: str
) -> None:
    """A mistyped address, or a form's address opened (or reloaded) by itself: a page with
    a title, a language and the way back, as every other; the static files and the JSON
    API are as they were."""
    for path, status, heading in (
        ("/dashboard/no-such-page", 404, "No such page"),
        ("/dashboard/desk/1/freeze", 405, "Only a form goes here"),
    ):
        doc = page(client, path, status=status)
        assert texts(doc, "//h1") == [heading]
        assert doc.get("lang") == "en" and doc.findtext(".//title").startswith(heading)
        assert doc.xpath("//main//a/@href") == ["/dashboard/login"]
    signed_in(client, supervisor)
    doc = page(client, "/dashboard/desk/1/freeze", status=405)
    assert doc.xpath("//main//a/@href") == ["/dashboard"]
    assert client.get("/dashboard/static/dashboard.css").status_code == 200
    assert client.get("/dashboard/static/nothing.css").status_code == 404
    assert client.get("/api/nothing").json() == {"detail": "Not Found"}


def test_chinese_typed_by_staff_is_marked_as_chinese(
    client: TestClient, agent: str, supervisor: str, placed: dict[str, str]
) -> None:
    """WCAG 3.1.2: notes in Mandarin, in a page in English, are marked lang="zh", so a
    screen reader speaks them in Chinese; what is around them, and any markup, is as it was."""
    signed_in(client, agent)
    said(act(client, "/dashboard/desk/next"))
    [held] = client.get("/api/agents/cases", headers=bearer(agent)).json()
    notes = "客户确认账户被盗, 已冻结. Caller confirmed <b>it</b>."
    done = act(client, f"/dashboard/desk/{held['id']}/resolve", notes=notes, reached="true")
    assert said(done) == "resolved"
    signed_in(client, supervisor)
    doc = page(client, f"/dashboard/calls/{placed['hijack']}")
    [cell] = doc.xpath("//td[span[@lang='zh']]")
    assert [s.text for s in cell.xpath("span")] == ["客户确认账户被盗, 已冻结"]
    assert cell.text_content() == notes  # escaped: <b> is text, not markup
    assert not cell.xpath(".//b")


def test_every_page_starts_with_a_link_to_skip_to_its_content(
    client: TestClient, db: Engine, supervisor: str
) -> None:
    """A keyboard user's first Tab, on every page, offers to skip the top bar's links."""
    docs = [page(client, "/dashboard/login")]
    signed_in(client, supervisor)
    docs += [page(client, path) for path in PAGES]
    signed_in(client, make_user(db, "alice", "agent", AGENT_PHONE))
    docs.append(page(client, "/dashboard/desk"))
    for doc in docs:
        first = doc.xpath("//body//*[self::a or self::button or self::input][1]")[0]
        assert (first.get("href"), first.text) == ("#main", "Skip to main content")
        assert len(doc.xpath("//main[@id='main']")) == 1


def test_every_page_is_sent_with_a_strict_policy(
    client: TestClient, db: Engine, supervisor: str, placed: dict[str, str]
) -> None:
    anonymous = [client.get("/dashboard/login"), client.get("/dashboard/queue")]
    signed_in(client, supervisor)
    paths = [*PAGES, "/dashboard/queue/rows", f"/dashboard/calls/{placed['hijack']}"]
    responses = anonymous + [client.get(p) for p in paths]
    signed_in(client, make_user(db, "alice", "agent", AGENT_PHONE))
    assert client.post("/dashboard/desk/next", follow_redirects=False).status_code == 303
    responses.append(client.get("/dashboard/desk"))  # with a case on it: every form
    assert "/requeue" in responses[-1].text and "/freeze" in responses[-1].text
    for response in responses:
        policy = response.headers["content-security-policy"]
        assert policy == dashboard.CSP
        assert "default-src 'self'" in policy and "unsafe-inline" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        # What the policy would block must not be there: inline scripts, handlers, styles.
        assert not re.search(r"<script(?![^>]*\bsrc=)", response.text)
        assert not re.search(r"\son[a-z]+=|\sstyle=|<style", response.text)


def css_rules() -> list[tuple[list[str], str]]:
    """The stylesheet's rules: their selectors, and their declarations as written."""
    text = (dashboard.STATIC_DIR / "dashboard.css").read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return [
        ([s.strip() for s in selectors.split(",")], body)
        for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", text)
    ]


def contrast(one: str, other: str) -> float:
    """WCAG's contrast ratio of two #rrggbb colours."""

    def luminance(colour: str) -> float:
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    light, dark = sorted((luminance(one), luminance(other)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_every_charts_bars_stand_out_from_the_white_chart() -> None:
    """WCAG 1.4.11: a bar is read by its shape, 3:1 at least against the chart's white."""
    fills = {
        selector: re.findall(r"fill:\s*(#[0-9a-f]{6})", body)
        for selectors, body in css_rules()
        for selector in selectors
        if selector.endswith(".bars rect")
    }
    assert {".chart .bars rect", ".abandonment-chart .bars rect"} <= set(fills)
    for selector, colours in fills.items():
        assert colours and all(contrast(c, "#ffffff") >= 3 for c in colours), (selector, colours)


def test_no_page_writes_a_date_month_first_without_its_year() -> None:
    """12-05 is 5 December to some supervisors and 12 May to others: a date is written
    with its year first (2026-12-05) or its month's name (05 Dec)."""
    for template in sorted(dashboard.TEMPLATE_DIR.glob("*.html")):
        found = re.findall(r'when\("([^"]*)"\)', template.read_text())
        ambiguous = [f for f in found if re.search(r"(?<!%Y-)%m-%d|%d-%m", f)]
        assert not ambiguous, (template.name, ambiguous)


def test_a_buttons_words_never_spill_out_of_it() -> None:
    """WCAG 1.4.4 and 1.4.12: at 200% zoom, or with wider text spacing, a button's words
    wrap to a second line; a fixed height would leave them spilling over its edge."""
    buttons = [
        body
        for selectors, body in css_rules()
        if selectors in (["button.primary"], ["button.secondary"])
    ]
    assert len(buttons) == 2
    for body in buttons:
        assert not re.search(r"(?<![-\w])height\s*:", body), body
        assert "min-height" in body


def test_focus_rings_and_field_borders_stand_out_from_what_they_sit_on() -> None:
    """WCAG 1.4.11: 3:1 at least, for the focus ring of every field (the notes' and the
    announcement's textareas too) against the white and grey pages and the dark top bar,
    and for the borders that show where a field is."""
    rules = css_rules()
    [(ringed, ring)] = [
        (selectors, body) for selectors, body in rules if "input:focus" in selectors
    ]
    assert {"select:focus", "textarea:focus", "button:focus-visible", "a:focus-visible"} <= set(
        ringed
    )
    [colour] = re.findall(r"outline:\s*\S+ solid (#[0-9a-f]{6})", ring)
    for page_colour in ("#ffffff", "#f5f6f8", "#fdecea", "#e8f1fd"):  # white, grey, red, blue
        assert contrast(colour, page_colour) >= 3, (colour, page_colour)
    [on_dark] = [body for selectors, body in rules if ".topbar a:focus-visible" in selectors]
    [top_colour] = re.findall(r"outline-color:\s*(#[0-9a-f]{6})", on_dark)
    assert contrast(top_colour, "#17202e") >= 3
    for kind in ("input", "select", "textarea"):
        borders = [
            border
            for selectors, body in rules
            if kind in selectors
            for border in re.findall(r"border:\s*1px solid (#[0-9a-f]{6})", body)
        ]
        assert borders, kind
        assert all(contrast(b, "#ffffff") >= 3 for b in borders), (kind, borders)


# -- in a real browser ------------------------------------------------------------------------

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class HoldingCaller(ScriptedParty):
    """A scripted caller who stays on hold until `release` is set (or an agent takes them)."""

    def __init__(self, answers: list[Any], release: threading.Event) -> None:
        super().__init__(answers)
        self.release = release
        self.queued = threading.Event()
        # Held by a test: the caller's next hold round waits (music playing) until released.
        self.gate = threading.Lock()
        self.between_rounds = threading.Event()  # set each time the caller reaches the gate
        # Set by a test: put through, the caller talks to the agent until it is set again.
        self.talking: threading.Event | None = None
        self.put_through = threading.Event()

    def keep_holding(self, queue: str, polls: int) -> bool:
        self.queued.set()
        held = not self.release.wait(0.3)
        self.between_rounds.set()
        with self.gate:
            pass
        return held

    def talk(self, number: str) -> None:
        self.put_through.set()
        if self.talking is not None:
            self.talking.wait(15)


class Callers:
    """Callers on the line, each in a thread, holding in a queue until `hang_up`."""

    def __init__(self, phone: Phone) -> None:
        self.phone = phone
        self.release = threading.Event()
        self.threads: dict[str, threading.Thread] = {}
        self.parties: dict[str, HoldingCaller] = {}
        self.errors: list[BaseException] = []

    def call(self, answers: list[Any], number: str) -> str:
        """Place a call and return its CallSid once the caller holds in a queue."""
        party = HoldingCaller(answers, self.release)
        sid = "CA" + uuid.uuid4().hex
        self.parties[sid] = party

        def run() -> None:
            try:
                self.phone.call(party, from_number=number, call_sid=sid)
            except BaseException as exc:  # reported by hang_up
                self.errors.append(exc)

        self.threads[sid] = threading.Thread(target=run, daemon=True)
        self.threads[sid].start()
        assert party.queued.wait(15), f"the caller {number} never reached a queue: {self.errors}"
        return sid

    def hold_music(self, sid: str) -> None:
        """The caller's current hold round lasts until `next_round`: nothing they do (their
        next round puts them through to an agent) happens while a test looks at the pages.
        Returns once the caller is between rounds, no request of theirs on its way."""
        party = self.parties[sid]
        party.gate.acquire()
        party.between_rounds.clear()
        assert party.between_rounds.wait(15), f"call {sid} is not holding"

    def next_round(self, sid: str) -> None:
        gate = self.parties[sid].gate
        if gate.locked():
            gate.release()

    def stay_on_the_call(self, sid: str) -> None:
        """Put through, the caller and the agent talk until `agent_hangs_up`."""
        self.parties[sid].talking = threading.Event()

    def on_the_call(self, sid: str) -> None:
        self.next_round(sid)
        assert self.parties[sid].put_through.wait(15), f"call {sid} was not put through"

    def agent_hangs_up(self, sid: str) -> None:
        talking = self.parties[sid].talking
        assert talking is not None
        talking.set()
        self.finished(sid)

    def finished(self, sid: str) -> None:
        """Wait for a call to end by itself (after an agent took it)."""
        self.next_round(sid)
        self.threads[sid].join(15)
        assert not self.threads[sid].is_alive(), f"call {sid} did not end"

    def hang_up(self) -> None:
        self.release.set()
        for sid, party in self.parties.items():
            if party.talking is not None:
                party.talking.set()
            self.next_round(sid)
        for thread in self.threads.values():
            thread.join(15)
        assert not self.errors, self.errors


@dataclass
class Scene:
    """Everything the walk through the pages uses."""

    tab: Any  # playwright.sync_api.Page
    browser: Any  # playwright.sync_api.Browser: for a second user's own session
    expect: Callable[..., Any]
    base: str
    http: httpx.Client
    clock: FakeClock
    callers: Callers
    db: Engine
    calls: dict[str, str] = field(default_factory=dict)  # name -> CallSid

    problems: list[str] = field(default_factory=list)  # console errors, failed requests
    hotline: Any = None  # ivr.hotline.Hotline: what the server's timed jobs would do, now

    def shot(self, name: str, tab: Any = None) -> None:
        where = ARTIFACTS / f"dashboard-{name}.png"
        (tab or self.tab).screenshot(path=str(where), full_page=True)

    def watch(self, tab: Any) -> None:
        """Console errors, uncaught exceptions and failed requests (what the CSP blocked too)."""
        problems = self.problems
        tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda e: problems.append(str(e)))

        def failed(response: Any) -> None:
            if response.status >= 400:
                problems.append(f"{response.status} {response.url}")

        tab.on("response", failed)

    def nav(self, label: str, path: str) -> None:
        self.tab.get_by_role("link", name=label, exact=True).click()
        self.expect(self.tab).to_have_url(f"{self.base}{path}")


@pytest.fixture
def scene(tmp_path: Path, sqlite_template: Path, hotline_tree: CompiledTree) -> Iterator[Scene]:
    """A real server on SQLite, a phone calling it over HTTP, and Chromium on a blank tab."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/browser-deps (installs Debian's chromium)")
    from playwright.sync_api import expect, sync_playwright

    path = tmp_path / "ivr.sqlite3"
    shutil.copy(sqlite_template, path)
    settings = make_settings(IVR_DATABASE_URL=f"sqlite:///{path}")
    db = create_db_engine(settings.database_url)
    add_account(db, settings)
    clock = FakeClock()
    app = with_dashboard(create_app(settings, tree=hotline_tree, db=db, clock=clock))
    ARTIFACTS.mkdir(exist_ok=True)
    with serving_app(app) as base, httpx.Client(timeout=10) as http, sync_playwright() as p:
        phone = Phone(http, public_url=PUBLIC_URL, auth_token=TOKEN, server_url=base)
        callers = Callers(phone)
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 820})
            yield Scene(
                tab, browser, expect, base, http, clock, callers, db, hotline=app.state.hotline
            )
        finally:
            browser.close()
            callers.hang_up()
    db.dispose()


def test_in_a_real_browser(scene: Scene) -> None:
    scene.watch(scene.tab)
    scene.calls["normal"] = scene.callers.call(list(DEPOSITS), NORMAL_CALLER)
    scene.clock.advance(seconds=40)
    scene.calls["hijack"] = scene.callers.call(list(HIJACK), VICTIM)
    scene.clock.advance(seconds=8)
    sign_in(scene, make_user(scene.db, "sam", "supervisor"))
    live_queue(scene)
    agent_takes_the_emergency(scene)
    calls_and_timeline(scene)
    figures_and_tree(scene)
    assert scene.problems == [], scene.problems


def test_the_queue_keeps_refreshing_while_the_supervisor_types_in_an_agents_field(
    scene: Scene,
) -> None:
    """The supervisor is setting alice's languages when a hijack victim calls: the line
    shows them by itself, and the field keeps its words and the focus (only the agents'
    table waits, marked so)."""
    scene.watch(scene.tab)
    expect = scene.expect
    make_user(scene.db, "alice", "agent", AGENT_PHONE)
    scene.calls["normal"] = scene.callers.call(list(DEPOSITS), NORMAL_CALLER)
    sign_in(scene, make_user(scene.db, "sam", "supervisor"))
    rows = scene.tab.locator("table.queue tbody tr")
    expect(rows).to_have_count(1)
    field = scene.tab.locator("#speaks-alice")
    field.fill("zh-CN")
    scene.calls["hijack"] = scene.callers.call(list(HIJACK), VICTIM)
    expect(rows).to_have_count(2, timeout=12000)
    expect(rows.nth(0)).to_have_class(re.compile(r"\bemergency\b"))
    expect(field).to_be_focused()
    expect(field).to_have_value("zh-CN")
    expect(scene.tab.locator(".agents-list")).to_have_attribute("data-paused", "true")
    assert scene.problems == [], scene.problems


# What a page's status says of one new emergency: its ticket, and how many wait.
NEW_EMERGENCY = re.compile(r"^New emergency waiting: ticket \d{7}, 1 in line\.$")


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """The live parts refresh every second, not every 5 s: the browser tests wait less."""
    monkeypatch.setattr(dashboard, "REFRESH_SECONDS", 1)


def test_the_queue_tells_of_a_new_emergency_and_refreshes_around_a_row_that_left(
    scene: Scene, quick: None
) -> None:
    """The supervisor is typing why the only case in line should move when alice takes it:
    the table they type in stays (its fresh self is "Nobody is waiting"), the rest of the
    page refreshes all the same. A hijack victim calls: the line shows them, and a screen
    reader hears of them from the page's status (the table is no live region, read again
    whole every refresh), said by their ticket; the note on the table kept says it does not
    show them."""
    scene.watch(scene.tab)
    tab, expect, phone = scene.tab, scene.expect, scene.callers.phone
    alice = make_user(scene.db, "alice", "agent", AGENT_PHONE)
    phone.call(ScriptedParty(list(DEPOSITS), hold_polls=1), from_number=NORMAL_CALLER)
    sign_in(scene, make_user(scene.db, "sam", "supervisor"))
    told = tab.locator("#queue-announce")
    line = tab.locator("#queue-live > p.status-line").first
    table = tab.locator("#queue-live > .waiting-cases")
    expect(table.locator("tbody tr")).to_have_count(1)
    tab.wait_for_timeout(1500)  # refreshed, nothing new: nothing said
    expect(told).to_have_text("")
    why = table.locator("input[name=reason]")
    why.fill("found in the wrong line")
    taken = scene.http.post(f"{scene.base}/api/agents/next", headers=bearer(alice))
    assert taken.status_code == 200, taken.text
    expect(line).to_contain_text("0 waiting", timeout=5000)
    expect(tab.locator("#queue-live > p.empty")).to_have_text("Nobody is waiting.")
    expect(table).to_have_attribute("data-paused", "true")
    expect(why).to_be_focused()
    expect(why).to_have_value("found in the wrong line")
    phone.call(ScriptedParty(list(HIJACK), hold_polls=1), from_number=VICTIM)
    expect(line.locator(".emergency-count")).to_have_text("1 emergency", timeout=5000)
    expect(told).to_have_text(NEW_EMERGENCY)
    [ticket] = re.findall(r"\d{7}", told.inner_text())
    expect(tab.locator("#queue-live > .paused-note")).to_contain_text(
        f"New emergency waiting, not in this table: ticket {ticket}."
    )
    expect(why).to_be_focused()
    assert scene.problems == [], scene.problems


def test_the_desk_tells_of_a_new_emergency_keeps_choices_and_says_a_refresh_failed(
    scene: Scene, quick: None
) -> None:
    """alice's desk: its line is no live region, a screen reader hears of a new emergency
    alone. She takes it and chooses a priority to send it on with, then ticks "I spoke to
    the customer": a supervisor takes the case back meanwhile, and the desk, which would
    reload to show it, says so and leaves her choice alone. When the line cannot refresh
    (the network gone), it says so, as the queue page does, rather than showing an old
    count as if it were now."""
    scene.watch(scene.tab)
    expect, phone = scene.expect, scene.callers.phone
    alice = make_user(scene.db, "alice", "agent", AGENT_PHONE)
    desk = desk_of(scene, alice)
    line = desk.locator("#desk-live .status-line")
    expect(line).to_contain_text("Nobody is waiting for an agent.")
    phone.call(ScriptedParty(list(HIJACK), hold_polls=1), from_number=VICTIM)
    expect(line).to_contain_text("1 emergency", timeout=5000)
    expect(desk.locator("#desk-announce")).to_have_text(NEW_EMERGENCY)
    desk.get_by_role("button", name="Take the next case").click()
    expect(desk.locator("p.notice[role=status]")).to_have_text(dashboard.SAID["call_back"])
    [case] = scene.http.get(f"{scene.base}/api/agents/cases", headers=bearer(alice)).json()
    priority = desk.get_by_label("Priority")
    priority.select_option("high")
    priority.blur()
    sam = make_user(scene.db, "sam", "supervisor")
    back = scene.http.post(f"{scene.base}/api/cases/{case['id']}/requeue", headers=bearer(sam))
    assert back.status_code == 200, back.text
    stale = desk.locator(".stale-desk")
    expect(stale).to_be_visible(timeout=5000)
    expect(priority).to_have_value("high")
    # Said as well: a screen reader would not see the notice appear.
    told = desk.locator("#desk-announce")
    expect(told).to_have_text("Your cases changed. Reload the desk when you have finished typing.")
    # The priority as it came, but the box ticked: still unsaved, the desk stays.
    priority.select_option("")
    reached = desk.get_by_label("I spoke to the customer")
    reached.check()
    reached.blur()
    for _ in range(2):  # two refreshes
        with desk.expect_response(lambda r: r.url.endswith("/dashboard/desk/live")):
            pass
    expect(reached).to_be_checked()
    expect(stale).to_be_visible()
    reached.uncheck()  # nothing unsaved: the desk shows the case gone, by itself
    expect(desk.locator(".empty")).to_have_text("You have no case now.", timeout=5000)
    assert scene.problems == [], scene.problems
    desk.route("**/dashboard/desk/live", lambda route: route.abort())
    expect(desk.locator("#desk-live")).to_have_attribute("data-stale", "true", timeout=5000)
    expect(desk.locator("#desk-announce")).to_have_text("Live updates failed; retrying.")
    after = "getComputedStyle(document.querySelector('#desk-live .status-line'), '::after')"
    assert "could not refresh" in desk.evaluate(f"{after}.content")
    desk.context.close()


# Wraps the browser's Notification before any of the page's own script runs: the
# notifications the desk shows, recorded where the test can read them.
RECORD_NOTIFICATIONS = """
(function () {
  var Real = window.Notification;
  function Recorded(title, options) {
    // Kept in the tab's session storage: the desk may reload right after showing one.
    var shown = JSON.parse(window.sessionStorage.getItem("shown-notifications") || "[]");
    shown.push({ title: title, body: options.body, tag: options.tag });
    window.sessionStorage.setItem("shown-notifications", JSON.stringify(shown));
    return new Real(title, options);
  }
  Recorded.requestPermission = Real.requestPermission.bind(Real);
  Object.defineProperty(Recorded, "permission", { get: function () { return Real.permission; } });
  window.Notification = Recorded;
})();
"""
SHOWN = "JSON.parse(window.sessionStorage.getItem('shown-notifications') || '[]')"


def desk_of(scene: Scene, token: str, **context: Any) -> Any:
    """An agent's desk, in a browser session of their own, signed in."""
    tab = scene.browser.new_context(viewport={"width": 1280, "height": 820}, **context).new_page()
    scene.watch(tab)
    tab.goto(f"{scene.base}/dashboard/login")
    tab.fill("#token", token)
    tab.click("button[type=submit]")
    scene.expect(tab).to_have_url(f"{scene.base}/dashboard/desk")
    return tab


def test_the_browser_tells_an_available_agent_of_a_case_offered_at_their_desk(
    scene: Scene,
) -> None:
    """alice is available, her desk in a tab she is not looking at. A hijack victim who hid
    their number hung up; the case comes to her desk to accept. Having allowed notifications
    ("Notify me of offers" shows only while the browser has not been told), she gets one,
    saying what and by when, once however often the desk reloads; bob, who has not allowed
    them, sees the button."""
    expect = scene.expect
    scene.callers.phone.call(ScriptedParty(list(HIJACK), hold_polls=1), from_number="anonymous")
    alice = desk_of(
        scene, make_user(scene.db, "alice", "agent", AGENT_PHONE), permissions=["notifications"]
    )
    alice.context.add_init_script(RECORD_NOTIFICATIONS)
    alice.get_by_role("button", name="Make me available").click()
    expect(alice.locator("#notify-state")).to_have_text("Offers show as notifications.")
    expect(alice.get_by_role("button", name="Notify me of offers")).to_be_hidden()
    bob = desk_of(scene, make_user(scene.db, "bob", "agent", "+15005558888"))
    bob.get_by_role("button", name="Make me available").click()
    expect(bob.get_by_role("button", name="Notify me of offers")).to_be_visible()
    bob.get_by_role("button", name="Go away").click()  # the case is alice's to miss
    assert alice.evaluate(SHOWN) == []
    assert scene.hotline.dispatch() == 1  # what every instance does every second
    accept_by = scene.clock() + timedelta(seconds=30)
    expect(alice).to_have_title(re.compile("^Accept your case"), timeout=9000)  # reloaded
    with scene.db.connect() as conn:
        [case_id] = conn.execute(select(cases.c.id).where(cases.c.status == "offered")).scalars()
    shown: list[dict[str, str]] = []
    for _ in range(50):  # the page's CSP allows no eval, so no wait_for_function
        shown = alice.evaluate(SHOWN)
        if shown:
            break
        alice.wait_for_timeout(100)
    [note] = shown
    assert note["title"] == "Accept your case"
    assert note["tag"] == f"ivr-offer-{case_id}"
    assert note["body"].startswith("Emergency case, ticket ")
    assert note["body"].endswith(f"accept it by {accept_by:%H:%M:%S} UTC")
    # A screen reader hears it too, and Accept (focused) says the seconds left to press it.
    accept = alice.get_by_role("button", name="Accept")
    expect(accept).to_be_focused()
    expect(accept).to_have_accessible_description(
        re.compile(r"^Offered to you: accept within (30|29|28) s \(by "), timeout=500
    )
    told = alice.locator("#desk-announce")
    expect(told).to_have_text(re.compile(r"^A case is offered to you: accept it within \d+ s"))
    alice.reload()  # the agent reloads, or the desk does, by itself: not told twice
    expect(alice.get_by_role("button", name="Accept")).to_be_visible()
    alice.wait_for_timeout(500)
    assert alice.evaluate(SHOWN) == [note]
    # Not accepted in time: back in line, alice set away. Available again, she is offered
    # the same case again: a new offer, told anew.
    scene.clock.advance(seconds=31)
    assert scene.hotline.dispatch() == 0
    expect(alice).to_have_title(re.compile("^Offer missed · Your desk"), timeout=9000)
    expect(told).to_have_text(re.compile(r"^Offer missed\. A case was offered to you here"))
    alice.get_by_role("button", name="Make me available").click()
    assert scene.hotline.dispatch() == 1
    expect(alice).to_have_title(re.compile("^Accept your case"), timeout=9000)
    again = scene.clock() + timedelta(seconds=30)
    for _ in range(50):
        shown = alice.evaluate(SHOWN)
        if len(shown) > 1:
            break
        alice.wait_for_timeout(100)
    assert [n["tag"] for n in shown] == [note["tag"]] * 2
    assert shown[1]["body"].endswith(f"accept it by {again:%H:%M:%S} UTC")
    alice.get_by_role("button", name="Accept").click()
    expect(alice).to_have_title(re.compile("^Done · Your desk"))
    assert scene.problems == [], scene.problems
    alice.context.close()
    bob.context.close()


def sign_in(scene: Scene, token: str) -> None:
    tab, expect = scene.tab, scene.expect
    tab.goto(f"{scene.base}/dashboard/queue")
    expect(tab).to_have_url(f"{scene.base}/dashboard/login")  # not signed in yet
    tab.fill("#token", token)
    scene.shot("login")
    tab.click("button[type=submit]")
    expect(tab).to_have_url(f"{scene.base}/dashboard/queue")


def live_queue(scene: Scene) -> None:
    """The emergency on top although it came second; a new caller appears by itself."""
    rows = scene.tab.locator("table.queue tbody tr")
    expect = scene.expect
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_class(re.compile(r"\bemergency\b"))
    expect(rows.nth(0).locator(".badge-emergency")).to_have_text("Emergency")
    expect(rows.nth(0)).to_contain_text("***0006")
    expect(rows.nth(1)).to_contain_text("payments")
    scene.calls["general"] = scene.callers.call([Press("2"), Press("0")], "+15005550104")
    scene.clock.advance(seconds=4)
    expect(rows).to_have_count(3, timeout=9000)  # no reload: the page refreshed itself
    expect(rows.nth(0).locator(".badge-emergency")).to_have_text("Emergency")
    expect(rows.nth(2)).to_contain_text("general")
    scene.shot("queue")


def agent_takes_the_emergency(scene: Scene) -> None:
    """At the agent's desk, in a browser session of their own: the emergency is theirs, the
    caller is put through at their next hold round, and the agent resolves it; meanwhile the
    supervisor's queue loses it by itself."""
    expect = scene.expect
    agent = make_user(scene.db, "alice", "agent", AGENT_PHONE)
    desk = scene.browser.new_context(viewport={"width": 1280, "height": 820}).new_page()
    scene.watch(desk)
    desk.goto(f"{scene.base}/dashboard/login")
    desk.fill("#token", agent)
    desk.click("button[type=submit]")
    expect(desk).to_have_url(f"{scene.base}/dashboard/desk")
    expect(desk.locator(".empty")).to_have_text("You have no case now.")
    # The caller's music plays on until the desk has been looked at: their next hold round
    # would put them through (at once here, where a round lasts 0.3 s, not minutes).
    scene.callers.hold_music(scene.calls["hijack"])
    desk.get_by_role("button", name="Take the next case").click()
    says = desk.locator("p.notice[role=status]")  # what the desk says after an action
    expect(says).to_have_text(dashboard.SAID["next_hold_poll"])
    case = desk.locator("section.case")
    expect(case).to_have_count(1)
    expect(case).to_have_class(re.compile(r"\bemergency\b"))
    expect(case).to_contain_text(VICTIM)  # their own case: the whole number
    expect(case.locator(".verified-yes")).to_be_visible()
    # Not resolved while the caller waits to be put through; given back, though, it may be.
    expect(case.get_by_role("button", name="Resolve")).to_have_count(0)
    expect(case.get_by_role("button", name="Give back")).to_be_visible()
    scene.shot("desk", desk)
    # The agent starts typing why they would give it back; meanwhile the caller is put
    # through. The desk says so and leaves their words alone ...
    why = case.get_by_label("Give it back: why (optional)")
    why.fill("needs a Mandarin speaker")
    scene.callers.stay_on_the_call(scene.calls["hijack"])
    scene.callers.on_the_call(scene.calls["hijack"])
    rows = scene.tab.locator("table.queue tbody tr")
    expect(rows).to_have_count(2, timeout=9000)
    expect(rows.locator(".badge-emergency")).to_have_count(0)
    expect(desk.locator(".stale-desk")).to_be_visible(timeout=9000)
    expect(why).to_have_value("needs a Mandarin speaker")
    expect(case).not_to_contain_text("connected")
    # ... and once they have stopped typing, it shows the case as it is now, by itself.
    why.fill("")
    why.blur()
    expect(case).to_contain_text("connected", timeout=9000)
    expect(desk).to_have_url(f"{scene.base}/dashboard/desk")
    # On the call, the agent writes their notes; the case is resolved once they hang up.
    expect(case.locator(".on-call")).to_be_visible()
    # How long they have talked, counted on by the script (the page alone says since when).
    talked = case.locator(".talk-timer .elapsed")
    expect(talked).to_have_text(re.compile(r"^for \d\d:\d\d \(mm:ss\), $"))
    expect(talked).not_to_have_text(talked.text_content() or "", timeout=3000)
    resolve = case.get_by_role("button", name="Resolve")
    expect(resolve).to_be_disabled()  # aria-disabled: still found by Tab, saying why
    resolve.focus()
    expect(resolve).to_be_focused()
    expect(resolve).to_have_accessible_description(re.compile("^You are on the call: resolve"))
    notes = "Frozen at the caller's request; told to reset 2FA."
    case.get_by_label("Notes").fill(notes)
    case.get_by_label("Notes").blur()
    scene.callers.agent_hangs_up(scene.calls["hijack"])
    # Told the call ended, the desk reloads by itself (the notes written are no typing to
    # wait for), and keeps them.
    expect(case.locator(".on-call")).to_have_count(0, timeout=9000)
    expect(desk.locator(".stale-desk")).to_be_hidden()
    expect(case.get_by_label("Notes")).to_have_value(notes)
    expect(case.locator(".after-call-timer .elapsed")).to_have_text(re.compile(r"^for \d\d:"))
    case.get_by_role("button", name="Resolve").click()
    expect(says).to_have_text(dashboard.SAID["resolved"])
    expect(desk.locator(".empty")).to_have_text("You have no case now.")
    # Kept no longer than their case is on the desk.
    kept = "Object.keys(window.sessionStorage).filter(k => k.startsWith('ivr-notes-'))"
    assert desk.evaluate(kept) == []
    desk.context.close()


def calls_and_timeline(scene: Scene) -> None:
    tab, expect, hijack = scene.tab, scene.expect, scene.calls["hijack"]
    scene.nav("Calls", "/dashboard/calls")
    expect(tab.locator("table.calls tbody tr")).to_have_count(3)
    for sid in scene.calls.values():
        expect(tab.locator(f"a[href='/dashboard/calls/{sid}']")).to_be_visible()
    scene.shot("calls")
    tab.locator(f"a[href='/dashboard/calls/{hijack}']").click()
    expect(tab).to_have_url(f"{scene.base}/dashboard/calls/{hijack}")
    nodes = tab.locator("table.timeline td.node")
    for node in ("main_menu", "emergency_verify", "emergency_queue"):
        expect(nodes.filter(has_text=re.compile(f"^{node}$")).first).to_be_visible()
    expect(tab.locator(".facts")).to_contain_text("agent")  # the outcome: answered by an agent
    expect(tab.locator("body")).not_to_contain_text(PIN)
    scene.shot("timeline")


def figures_and_tree(scene: Scene) -> None:
    tab, expect = scene.tab, scene.expect
    scene.nav("Figures", "/dashboard/figures")
    expect(tab.locator("figure.chart svg")).to_have_count(3)
    totals = tab.locator("table.figures tfoot td")
    expect(totals.nth(0)).to_have_text("3")  # offered: three callers reached a queue
    expect(totals.nth(1)).to_have_text("1")  # answered: the emergency, by the agent
    scene.shot("figures")
    scene.nav("Call tree", "/dashboard/tree")
    expect(tab.locator("figure.tree-picture svg")).to_be_visible()
    scene.shot("tree")


def test_a_refused_filter_is_said_first(scene: Scene) -> None:
    """The figures' and the calls' filters refused: the errors have the focus and the title
    says so, where a screen reader starts, not a form that looks as it did."""
    sign_in(scene, make_user(scene.db, "sam", "supervisor"))
    tab, expect = scene.tab, scene.expect
    tab.goto(f"{scene.base}/dashboard/figures?tz=Mars/Olympus_Mons")
    expect(tab).to_have_title(re.compile("^Not done · Figures"))
    expect(tab.locator("#form-errors")).to_be_focused()
    tab.goto(f"{scene.base}/dashboard/calls?since=2026-11-23T04:00&until=2026-11-23T03:00")
    expect(tab).to_have_title(re.compile("^Not done · Calls"))
    expect(tab.locator("#form-errors")).to_be_focused()
    expect(tab.locator("#form-errors")).to_contain_text("until must be after since")


def test_the_desk_sends_a_call_back_twilio_placed_on_while_the_agent_talks(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
    agent: str,
) -> None:
    """Twilio calls the customer back for alice: no transfer form while it rings; talking,
    the form sends it on, the customer's call is moved out of hers at once, and her desk
    is clear of it."""
    twilio = RecordingTwilio()
    app = app_with_twilio(database_url, hotline_tree, db, clock, twilio)
    with on_the_line(app, check_twiml, twilio) as (client, phone):
        phone.call(ScriptedParty([Press("1"), Press("0"), Press("1")]), from_number=VICTIM)
        signed_in(client, agent)
        assert said(act(client, "/dashboard/desk/next")) == "calling_back"
        ringing = page(client, "/dashboard/desk")
        assert not ringing.xpath("//form[contains(@action, '/transfer')]")
        seen: dict[str, Any] = {}

        def talks(number: str) -> None:
            desk = page(client, "/dashboard/desk")
            [form] = desk.xpath("//form[contains(@action, '/transfer')]")
            seen["label"] = " ".join(form.xpath("string(.//label)").split())
            seen["sent"] = said(
                act(client, form.get("action"), queue="security", note="a SIM swap")
            )

        placed = placed_calls(twilio)[-1]
        customer = phone.answer(
            placed, Talks([], lambda poll: False, talks), call_sid=twilio.sids[-1]
        )
        assert seen["label"] == "Send the call back on to"
        assert seen["sent"] == "transfer_redirected"
        assert customer.ended_by == "hotline"
        after = page(client, "/dashboard/desk")
        assert not after.xpath("//form[contains(@action, '/transfer')]")
    with db.connect() as conn:
        row = conn.execute(select(cases)).mappings().one()
    assert (row["queue"], row["agent_id"], row["queued"]) == ("security", None, 1)


def test_the_figures_page_reports_how_emergencies_were_frozen(
    client: TestClient, db: Engine, clock: FakeClock, supervisor: str, placed: dict[str, str]
) -> None:
    """The verified victim froze their own account on the call; another emergency was
    resolved with no freeze: the page counts both, and links the one to look at again."""
    with db.begin() as conn:
        row = in_line(77, clock(), "security", "emergency", "resolved", 120)
        conn.execute(insert(cases).values({**row, "queued": 0}))
    signed_in(client, supervisor)
    doc = page(client, "/dashboard/figures")
    [cells] = [
        texts(tr, "./td") for tr in doc.xpath("//table[contains(@class,'emergency')]//tbody/tr")
    ]
    # cases, in line, on the way, answered, to answer, frozen (caller / agent), to freeze, closed
    assert cells == ["2", "2", "0", "0", "n/a / n/a", "1 (1 / 0)", "n/a / n/a", "1"]
    [link] = doc.xpath("//p[contains(@class,'closed-without-freeze')]/a")
    assert (link.text, link.get("href")) == ("T0000077", "/dashboard/calls?ticket=T0000077")
    # An agent sees the counts, not the tickets (what main menu 9 takes to act as a caller).
    agent = make_user(db, "alice", "agent")
    stats = client.get("/api/stats", headers=bearer(agent)).json()["emergency"]
    assert (stats["closed_without_freeze"], stats["closed_without_freeze_tickets"]) == (1, [])
    signed_in(client, agent)
    assert "T0000077" not in client.get("/dashboard/figures").text


def test_the_calls_pages_export_link_says_where_the_file_stops(
    client: TestClient, supervisor: str, placed: dict[str, str]
) -> None:
    """A spreadsheet user never sees a response header: the link says how many rows a file
    holds at most and what a file cut there is named; the session's export says it too."""
    signed_in(client, supervisor)
    [link] = page(client, "/dashboard/calls").xpath("//a[@download]")
    text = " ".join(link.text_content().split())
    assert "the newest 10,000 at most" in text
    assert "calls-newest-10000-more-left-out.csv" in text
    assert client.get(link.get("href")).headers["x-truncated"] == "false"


def bar_titles(doc: Any, chart: str = "calls-chart") -> list[str]:
    [svg] = doc.xpath(f"//svg[title[@id='{chart}-title']]")
    return [b.text for b in svg.xpath(".//g[@class='bars']/rect/title")]


def test_the_figures_in_the_supervisors_time_zone(
    client: TestClient, supervisor: str, placed: dict[str, str]
) -> None:
    """A Shanghai supervisor's shift, 08:00 to 20:00 there, typed as they read it: the two
    calls at 03:00 UTC are at 11:00 in its hour bars, and the page says the zone."""
    signed_in(client, supervisor)
    shift = {"since": "2026-11-23T08:00", "until": "2026-11-23T20:00", "tz": "Asia/Shanghai"}
    doc = page(client, "/dashboard/figures", **shift)
    assert doc.xpath("//input[@name='since']/@value") == ["2026-11-23T08:00"]
    assert doc.xpath("//input[@name='until']/@value") == ["2026-11-23T20:00"]
    assert doc.xpath("//input[@name='tz']/@value") == ["Asia/Shanghai"]
    caption = texts(doc, "//table[contains(@class,'figures')]/caption")[0]  # by queue
    assert caption.startswith("2026-11-23 08:00 to 2026-11-23 20:00 (Asia/Shanghai).")
    bars = bar_titles(doc)
    assert len(bars) == 12
    assert bars[3] == "23 Nov 11:00 to 12:00: 2"
    reached = "//div[@class='tile'][span[@class='name']='reached a queue']/span[@class='value']"
    assert texts(doc, reached) == ["2"]
    [last_hour] = doc.xpath("//a[text()='Last hour']/@href")
    assert last_hour == "/dashboard/figures?last=hour&tz=Asia%2FShanghai"


def test_the_default_period_and_its_bars_end_on_the_zones_hour(
    client: TestClient, supervisor: str, placed: dict[str, str]
) -> None:
    """At 03:02 UTC it is 08:32 in India (+05:30): the default 24 hours end at 09:00 there,
    and its bars fall on its hours, not on UTC's."""
    signed_in(client, supervisor)
    doc = page(client, "/dashboard/figures", tz="Asia/Kolkata")
    assert doc.xpath("//input[@name='until']/@value") == ["2026-11-23T09:00"]
    bars = bar_titles(doc)
    assert len(bars) == 24
    assert bars[-1] == "23 Nov 08:00 to 09:00: 2"


def test_the_day_bars_fall_on_the_zones_midnights(
    client: TestClient, supervisor: str, placed: dict[str, str]
) -> None:
    """25 days from 08:30 in Shanghai: a bar a day, each from midnight there, the first and
    the last cut at the period's edges."""
    signed_in(client, supervisor)
    month = {"since": "2026-11-01T08:30", "until": "2026-11-26T08:30", "tz": "Asia/Shanghai"}
    bars = bar_titles(page(client, "/dashboard/figures", **month))
    assert (bars[0], bars[1]) == ("01 Nov 08:30 to 00:00: 0", "02 Nov 00:00 to 00:00: 0")
    assert bars[22] == "23 Nov 00:00 to 00:00: 2"
    assert bars[-1] == "26 Nov 00:00 to 08:30: 0"
    assert len(bars) == 26


def test_a_time_zone_that_is_none_is_refused(client: TestClient, supervisor: str) -> None:
    signed_in(client, supervisor)
    doc = page(client, "/dashboard/figures", status=422, tz="Mars/Olympus_Mons")
    assert "not an IANA time zone name" in doc.text_content()
    assert doc.xpath("//input[@name='tz']/@value") == ["Mars/Olympus_Mons"]
    [tz] = doc.xpath("//input[@aria-invalid='true']")
    assert (tz.get("name"), tz.get("aria-describedby")) == ("tz", "f-tz-hint form-errors")


def test_an_agent_sees_their_own_figures_and_a_supervisor_everyones(
    client: TestClient, db: Engine, clock: FakeClock, supervisor: str, placed: dict[str, str]
) -> None:
    """Handle times and survey scores are an agent's and their supervisors': alice does not
    read bob's, on the figures page or from the API."""
    alice, bob = make_user(db, "alice", "agent"), make_user(db, "bob", "agent")
    for agent in (alice, bob):
        taken = client.post("/api/agents/next", headers=bearer(agent)).json()["case"]
        done = {"notes": "called back, account secured", "reached": True}
        resolved = client.post(
            f"/api/cases/{taken['id']}/resolve", headers=bearer(agent), json=done
        )
        assert resolved.status_code == 200, resolved.text
    clock.advance(seconds=1)  # the period ends now: what was taken this second is in the next
    everyone = client.get("/api/stats", headers=bearer(supervisor)).json()["by_agent"]
    assert sorted(everyone) == ["alice", "bob"]
    own = client.get("/api/stats", headers=bearer(alice)).json()["by_agent"]
    assert list(own) == ["alice"] and own["alice"] == everyone["alice"]
    rows = "//table[contains(@class,'by-agent')]/tbody/tr/th"
    signed_in(client, alice)
    assert texts(page(client, "/dashboard/figures"), rows) == ["alice"]
    signed_in(client, supervisor)
    assert texts(page(client, "/dashboard/figures"), rows) == ["alice", "bob"]


# -- token expiry, sign-in records, the session cookie ----------------------------------------


def test_an_expired_token_signs_in_nowhere_and_ends_its_sessions(
    client: TestClient, db: Engine, clock: FakeClock
) -> None:
    """A token works until its expiry, at the API and the dashboard; a session signed in with
    it ends then too, before its 8 hours. A token made before tokens expired (none) goes on."""
    with db.connect() as conn:
        token = cases_module.create_user(
            conn,
            name="sam",
            role="supervisor",
            phone=None,
            now=clock(),
            expires_at=clock() + timedelta(hours=1),
        )
    old = make_user(db, "olga", "supervisor")  # no expiry: made as before the migration
    signed_in(client, token)
    clock.advance(minutes=59)
    shown = client.get("/dashboard/queue")
    # The warning before the sign-in ends counts to the token's end, not the session's 8 h.
    assert shown.status_code == 200 and shown.headers["x-session-left"] == "60"
    assert client.get("/api/queue", headers=bearer(token)).status_code == 200
    clock.advance(minutes=1)
    ended = client.get("/dashboard/queue", follow_redirects=False)
    assert (ended.status_code, ended.headers["location"]) == (303, "/dashboard/login")
    refused = login(client, token)
    assert refused.status_code == 401 and "That token has expired" in refused.text
    assert "set-cookie" not in refused.headers
    api = client.get("/api/queue", headers=bearer(token))
    assert api.status_code == 401 and "expired" in api.json()["detail"]
    clock.advance(days=400)
    assert client.get("/api/queue", headers=bearer(old)).status_code == 200
    signed_in(client, old)
    page(client, "/dashboard/queue")


def test_a_sign_in_is_logged_and_audited_without_the_token(
    client: TestClient, db: Engine, supervisor: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ivr"):
        signed_in(client, supervisor)
        assert login(client, "not-" + supervisor).status_code == 401
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("ivr")]
    assert [line for line in lines if "sign-in" in line] == [
        "dashboard sign-in user=sam role=supervisor client=testclient"
    ]
    [wrong] = [r for r in caplog.records if "wrong staff token" in r.getMessage()]
    assert wrong.levelno == logging.WARNING and "where=dashboard" in wrong.getMessage()
    assert not any(supervisor in line for line in lines)
    with db.connect() as conn:
        rows = conn.execute(select(audit_log.c.actor, audit_log.c.action)).all()
    # The wrong token: by a digest of where it came from, never the address, nor a token.
    wrong_from = SignInThrottle(db, pepper=TOKEN).source("testclient")
    assert [tuple(r) for r in rows] == [
        ("supervisor:sam", "sign_in"),
        (wrong_from, "sign_in_failed"),
    ]
    assert f"source={wrong_from}" in wrong.getMessage()


def test_the_session_cookie_is_forgotten_with_the_browser(
    client: TestClient, clock: FakeClock, supervisor: str
) -> None:
    """No Max-Age or Expires: a browser closed on a shared computer holds no session; the
    server still ends it after 8 hours."""
    cookie = cookie_header(login(client, supervisor)).lower()
    assert "max-age" not in cookie and "expires" not in cookie
    clock.advance(seconds=dashboard.SESSION_SECONDS)
    assert client.get("/dashboard/queue", follow_redirects=False).status_code == 303


def test_signing_in_again_ends_the_session_of_the_cookie_it_replaces(
    client: TestClient, db: Engine, supervisor: str
) -> None:
    signed_in(client, supervisor)
    replaced = client.cookies[dashboard.COOKIE]
    signed_in(client, make_user(db, "olga", "operator"))  # another user, same browser
    page(client, "/dashboard/tree")
    with TestClient(client.app, base_url=HTTPS_CLIENT) as thief:
        thief.cookies.set(dashboard.COOKIE, replaced, path="/dashboard")
        gone = thief.get("/dashboard/queue", follow_redirects=False)
        assert (gone.status_code, gone.headers["location"]) == (303, "/dashboard/login")


def test_the_desk_warns_before_the_sign_in_ends_and_keeps_what_was_typed_after(
    scene: Scene, quick: None
) -> None:
    """alice is writing a transfer note on a call back when her 8 hours are nearly up: the
    desk warns her (read out), and when the sign-in ends it stays, with her words in it,
    and says she is signed out instead of dropping to the sign-in page. A form sent then
    is held back; signed in again in another tab, the same desk sends it."""
    expect = scene.expect
    scene.callers.phone.call(ScriptedParty(list(DEPOSITS), hold_polls=1), from_number=VICTIM)
    token = make_user(scene.db, "alice", "agent", AGENT_PHONE)
    desk = desk_of(scene, token)
    desk.get_by_role("button", name="Take the next case").click()
    expect(desk).to_have_url(re.compile(r"/dashboard/desk\?said=call_back$"))
    taken = desk.url
    field = desk.get_by_label("For the next agent")
    desk.get_by_label("Send the call back on to").select_option("security")
    field.fill("wants the security team")
    note = desk.locator("#session-note")
    expect(note).to_be_empty()
    with scene.db.begin() as conn:
        conn.execute(update(sessions).values(expires_at=scene.clock() + timedelta(seconds=200)))
    expect(note).to_contain_text("Your sign-in ends in 4 minutes", timeout=5000)
    expect(note).to_have_attribute("role", "alert")
    with scene.db.begin() as conn:
        conn.execute(update(sessions).values(expires_at=scene.clock() - timedelta(seconds=1)))
    expect(note).to_contain_text("You are signed out", timeout=5000)
    expect(desk).to_have_url(taken)
    expect(field).to_have_value("wants the security team")
    desk.get_by_role("button", name="Transfer").click()  # held back: it would be lost
    desk.wait_for_timeout(300)
    expect(desk).to_have_url(taken)
    expect(field).to_have_value("wants the security team")
    again = desk.context.new_page()
    again.goto(f"{scene.base}/dashboard/login")
    again.fill("#token", token)
    again.click("button[type=submit]")
    expect(again).to_have_url(f"{scene.base}/dashboard/desk")
    expect(note).to_contain_text("You are signed in again", timeout=5000)
    desk.get_by_role("button", name="Transfer").click()
    expect(desk.locator("p.notice[role=status]")).to_have_text(dashboard.SAID["transfer_call_back"])
    desk.context.close()


def test_a_refused_freeze_is_said_tied_to_its_field_and_not_sent_again_by_a_reload(
    scene: Scene,
) -> None:
    """alice's freeze reason is refused by the server (too short, past the browser's own
    check): the title says it was not done, the alert has the focus, the field is marked
    invalid and described by why, and the address is the desk's: a reload sends nothing."""
    expect = scene.expect
    scene.callers.phone.call(ScriptedParty(list(HIJACK), hold_polls=1), from_number=VICTIM)
    desk = desk_of(scene, make_user(scene.db, "alice", "agent", AGENT_PHONE))
    desk.get_by_role("button", name="Take the next case").click()
    expect(desk).to_have_title(re.compile("^Done · Your desk"))
    expect(desk.locator("p.notice[role=status]")).to_be_focused()
    # The victim froze their account on the phone: the form is folded away, to open.
    desk.get_by_text("Freeze it again (if the exchange lifted the freeze since)").click()
    reason = desk.get_by_label("Freeze the account: why")
    reason.evaluate("field => field.removeAttribute('minlength')")
    reason.fill("x")
    desk.get_by_label(f"Freeze account {UID} now: only an operator can undo it").check()
    desk.get_by_role("button", name="Freeze").click()
    expect(desk).to_have_title(re.compile("^Not done · "))
    expect(desk).to_have_url(f"{scene.base}/dashboard/desk")
    expect(desk.locator("#desk-error")).to_be_focused()
    expect(reason).to_have_attribute("aria-invalid", "true")
    expect(reason).to_have_accessible_description(re.compile("^Say why you freeze"))
    expect(reason).to_have_value("x")
    posted: list[str] = []
    desk.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
    desk.reload()
    expect(desk).to_have_title(re.compile("^Your desk"))
    assert posted == []
    desk.context.close()


def test_the_freeze_box_names_the_account_as_its_uid_is_typed(scene: Scene) -> None:
    """An unverified caller keyed a UID: the box to tick names it, and that a UID typed
    replaces it; as alice types the one she found, the box names that one instead."""
    expect = scene.expect
    keyed = [Press("1"), Press("1"), Press("10000009"), Press(PIN)]
    scene.callers.phone.call(ScriptedParty(keyed, hold_polls=1), from_number=VICTIM)
    desk = desk_of(scene, make_user(scene.db, "alice", "agent", AGENT_PHONE))
    desk.get_by_role("button", name="Take the next case").click()
    box = desk.locator("form[action$='/freeze'] label.check")
    keyed_box = "Freeze account 10000009 (a UID typed above replaces it) now: only an operator"
    expect(box).to_contain_text(keyed_box)
    uid = desk.locator("form[action$='/freeze'] input[name=account_uid]")
    uid.fill(UID)
    expect(box).to_contain_text(f"Freeze account {UID} now: only an operator")
    expect(
        desk.get_by_label(f"Freeze account {UID} now: only an operator can undo it")
    ).to_be_visible()
    uid.fill("12ab")
    expect(box).to_contain_text("Freeze no account yet (a UID is digits only) now")
    uid.fill("")
    expect(box).to_contain_text(keyed_box)
    desk.context.close()


WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def axe_violations(tab: Any) -> list[tuple[str, list[Any]]]:
    """What axe-core (bundled with axe-playwright-python: nothing is fetched) finds against
    WCAG 2.2 A and AA on the page as it is, and against 2.5.3 Label in Name (a rule axe
    ships as experimental, so run by name)."""
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    tags = {"runOnly": {"type": "tag", "values": WCAG_TAGS}}
    found = list(axe.run(tab, options=tags).response["violations"])
    rule = {"runOnly": {"type": "rule", "values": ["label-content-name-mismatch"]}}
    found += axe.run(tab, options=rule).response["violations"]
    return [(v["id"], [n["target"] for n in v["nodes"]]) for v in found]


def past_320_px(tab: Any) -> list[str]:
    """WCAG 1.4.10: at 320 CSS px (a phone, or 400 % zoom) what is drawn past the right edge,
    outside the data tables, pictures and code, which may scroll on their own."""
    tab.set_viewport_size({"width": 320, "height": 640})
    try:
        wide: list[str] = tab.evaluate(
            """() => [...document.querySelectorAll('body *')]
            .filter(e => !e.closest('table, svg, pre, .tree-picture'))
            .filter(e => e.getBoundingClientRect().right > 321)
            .map(e => e.outerHTML.slice(0, 80))"""
        )
        return wide
    finally:
        tab.set_viewport_size({"width": 1280, "height": 820})


def test_the_main_pages_pass_axe_and_reflow_at_320_px(scene: Scene) -> None:
    """axe-core finds nothing against WCAG 2.2 AA on the sign-in page, the supervisor's
    pages (alice available, so her "Set away" button shows), an unknown address, and the
    agent's desk with a case; at 320 px nothing but a table or a picture spills over."""
    alice = make_user(scene.db, "alice", "agent", AGENT_PHONE)
    scene.calls["normal"] = scene.callers.call(list(DEPOSITS), NORMAL_CALLER)
    scene.calls["hijack"] = scene.callers.call(list(HIJACK), VICTIM)
    tab = scene.tab
    tab.goto(f"{scene.base}/dashboard/login")
    found = {"login": axe_violations(tab)}
    sign_in(scene, make_user(scene.db, "sam", "supervisor"))
    presence = f"{scene.base}/api/agents/presence"
    assert scene.http.put(presence, json={"available": True}, headers=bearer(alice)).is_success
    for path in (
        *PAGES,
        "/dashboard/calls?since=x",
        "/dashboard/figures?since=x",
        f"/dashboard/calls/{scene.calls['hijack']}",
        "/dashboard/calls/CAnosuchcall",
        "/dashboard/no-such-page",
        "/dashboard/desk/1/freeze",
    ):
        tab.goto(scene.base + path)
        tab.wait_for_load_state("networkidle")
        found[path] = axe_violations(tab)
        found[f"{path} at 320 px"] = past_320_px(tab)
    desk = desk_of(scene, alice)
    scene.callers.hold_music(scene.calls["hijack"])
    desk.get_by_role("button", name="Take the next case").click()
    scene.expect(desk.locator("section.case")).to_have_count(1)
    found["desk"] = axe_violations(desk)
    found["desk at 320 px"] = past_320_px(desk)
    desk.get_by_label("Add a note").fill("says the email changed yesterday, not by her")
    desk.get_by_role("button", name="Save note").click()
    scene.expect(desk.locator(".working-notes li")).to_have_count(1)
    found["desk with a note"] = axe_violations(desk)
    # Signing out with the case: asked first, told what becomes of it.
    desk.get_by_role("button", name="Sign out").click()
    scene.expect(desk.get_by_role("button", name="Sign out anyway")).to_be_visible()
    found["sign out with a case"] = axe_violations(desk)
    found["sign out with a case at 320 px"] = past_320_px(desk)
    assert {page: v for page, v in found.items() if v} == {}
    desk.context.close()


def test_the_supervisor_pauses_the_live_queue_and_still_sees_a_new_emergency(
    scene: Scene, quick: None
) -> None:
    """WCAG 2.2.2: reading the table (a screen reader loses its place when it is swapped),
    sam pauses it. Pressed, the button looks pressed and says since when. A hijack victim
    calls: the table stays as it was, but the counts, the tab's title and a note on the table
    show that an emergency waits that it does not, and the page's status says so; pressed
    again, the table shows them. A reload is of the line as it is now: not paused."""
    scene.watch(scene.tab)
    tab, expect = scene.tab, scene.expect
    scene.calls["normal"] = scene.callers.call(list(DEPOSITS), NORMAL_CALLER)
    sign_in(scene, make_user(scene.db, "sam", "supervisor"))
    rows = tab.locator("table.queue tbody tr")
    expect(rows).to_have_count(1)
    pause = tab.get_by_role("button", name="Pause updates")
    state = tab.locator("#pause-state")
    looks = "b => [getComputedStyle(b).backgroundColor, getComputedStyle(b).color]"
    unpressed = pause.evaluate(looks)
    expect(pause).to_have_attribute("aria-pressed", "false")
    expect(state).to_be_hidden()
    pause.click()
    expect(pause).to_have_attribute("aria-pressed", "true")
    pressed = pause.evaluate(looks)
    assert pressed[0] != unpressed[0] and pressed[1] != unpressed[1], (pressed, unpressed)
    as_of = tab.locator("#queue-live > .counts").get_attribute("data-updated")
    assert as_of and re.fullmatch(r"\d\d:\d\d:\d\d UTC", as_of)
    says = f"The waiting table is paused, as of {as_of}; the counts still update."
    expect(state).to_have_text(f"{says} Press again to resume.")
    expect(pause).to_have_accessible_description(re.compile(f"^{re.escape(says)}"))
    expect(tab).to_have_title("Live queue · Support hotline")
    scene.calls["hijack"] = scene.callers.call(list(HIJACK), VICTIM)
    told = tab.locator("#queue-announce")
    expect(told).to_have_text(NEW_EMERGENCY, timeout=5000)
    [ticket] = re.findall(r"\d{7}", told.inner_text())
    expect(tab.locator("#queue-live .emergency-count")).to_have_text("1 emergency")
    expect(tab).to_have_title("(1 emergency) Live queue · Support hotline")
    note = tab.locator("#queue-live > .paused-note")
    expect(note).to_have_text(
        f"Paused: this table is as of {as_of}. Press Pause updates again to resume. "
        f"New emergency waiting, not in this table: ticket {ticket}. Resume updates to see it."
    )
    box = note.locator(".unseen-emergency").bounding_box()
    assert box is not None and box["width"] > 20 and box["height"] > 10, box
    for _ in range(2):  # two refreshes
        with tab.expect_response(lambda r: r.url.endswith("/dashboard/queue/rows")):
            pass
    expect(rows).to_have_count(1)
    pause.click()
    expect(pause).to_have_attribute("aria-pressed", "false")
    expect(state).to_be_hidden()
    expect(rows).to_have_count(2, timeout=5000)
    expect(rows.nth(0)).to_have_class(re.compile(r"\bemergency\b"))
    expect(note).to_have_count(0)
    pause.click()
    tab.reload()
    expect(pause).to_have_attribute("aria-pressed", "false")
    expect(state).to_be_hidden()
    assert scene.problems == [], scene.problems


def test_an_emergency_in_anothers_place_is_said_at_the_queue_and_the_desk(scene: Scene) -> None:
    """Between two refreshes alice takes the emergency waiting and another victim calls: one
    emergency before and after, but sam's queue page and bob's desk say the new one, by its
    ticket, and once (the pages' timers held, both changes fall between the same two)."""
    scene.watch(scene.tab)
    tab, expect = scene.tab, scene.expect
    alice = make_user(scene.db, "alice", "agent", AGENT_PHONE)
    scene.calls["first"] = scene.callers.call(list(HIJACK), VICTIM)
    tab.clock.install()
    tab.clock.pause_at(datetime.now(UTC) + timedelta(seconds=1))
    sign_in(scene, make_user(scene.db, "sam", "supervisor"))
    desk = desk_of(scene, make_user(scene.db, "bob", "agent", "+15005559998"))
    desk.clock.install()
    desk.clock.pause_at(datetime.now(UTC) + timedelta(seconds=1))
    desk.reload()
    rows = tab.locator("table.queue tbody tr")
    [first] = [r.get_attribute("data-ticket") for r in rows.all()]
    expect(desk.locator("#desk-live .emergency-count")).to_have_text("1 emergency")
    taken = scene.http.post(f"{scene.base}/api/agents/next", headers=bearer(alice))
    assert taken.status_code == 200 and taken.json()["case"]["ticket"] == first, taken.text
    scene.calls["second"] = scene.callers.call(list(HIJACK), "+15005550007")
    for where, told, path in (
        (tab, "#queue-announce", "/dashboard/queue/rows"),
        (desk, "#desk-announce", "/dashboard/desk/live"),
    ):
        with where.expect_response(lambda r, path=path: r.url.endswith(path)):
            where.clock.run_for(6000)
        where.clock.run_for(500)
        expect(where.locator(told)).to_have_text(NEW_EMERGENCY)
        [ticket] = re.findall(r"\d{7}", where.locator(told).inner_text())
        assert ticket != first
        where.locator(told).evaluate("e => { e.textContent = '' }")
        with where.expect_response(lambda r, path=path: r.url.endswith(path)):
            where.clock.run_for(6000)
        where.clock.run_for(500)
        expect(where.locator(told)).to_have_text("")  # said once
    expect(rows).to_have_count(1)
    expect(rows.nth(0)).to_have_attribute("data-ticket", ticket)
    assert scene.problems == [], scene.problems
    desk.context.close()


def test_a_choice_and_a_reason_typed_on_the_queue_page_wait_for_the_supervisor(
    scene: Scene, quick: None
) -> None:
    """sam chooses "high" for the caller in line and types why, then goes to write an
    announcement: the table keeps his choice and words however often the page refreshes, and
    says in sight that it waits for him, the counts refreshing above it, and which new
    emergency it does not show. Undone, the table refreshes."""
    scene.watch(scene.tab)
    tab, expect = scene.tab, scene.expect
    scene.calls["normal"] = scene.callers.call(list(DEPOSITS), NORMAL_CALLER)
    sign_in(scene, make_user(scene.db, "sam", "supervisor"))
    rows = tab.locator("table.queue tbody tr")
    expect(rows).to_have_count(1)
    priority = rows.nth(0).locator("select[name=priority]")
    why = rows.nth(0).locator("input[name=reason]")
    priority.select_option("high")
    why.fill("customer asked")
    tab.locator("#text-en").click()  # the focus leaves the table
    for _ in range(2):  # two refreshes
        with tab.expect_response(lambda r: r.url.endswith("/dashboard/queue/rows")):
            pass
    expect(priority).to_have_value("high")
    expect(why).to_have_value("customer asked")
    note = tab.locator("#queue-live > .paused-note")
    expect(note).to_contain_text("Not refreshed while you edit here: as of ")
    box = note.bounding_box()
    assert box is not None and box["width"] > 20 and box["height"] > 10, box
    scene.calls["hijack"] = scene.callers.call(list(HIJACK), VICTIM)
    expect(tab.locator("#queue-live .emergency-count")).to_have_text("1 emergency", timeout=5000)
    expect(note).to_contain_text(
        re.compile(r"New emergency waiting, not in this table: ticket \d{7}\. Send or undo")
    )
    expect(rows).to_have_count(1)
    expect(why).to_have_value("customer asked")
    priority.select_option("normal")
    why.fill("")
    tab.locator("#text-en").click()
    expect(rows).to_have_count(2, timeout=5000)
    expect(rows.nth(0)).to_have_class(re.compile(r"\bemergency\b"))
    expect(note).to_have_count(0)
    assert scene.problems == [], scene.problems


def test_the_queue_page_says_a_number_newly_holding_several_places(
    scene: Scene, quick: None
) -> None:
    """The same number calls again while its first call holds (a dialer, or a caller on two
    phones): the page's status says so, once; the line itself is no status."""
    scene.watch(scene.tab)
    tab, expect = scene.tab, scene.expect
    scene.calls["normal"] = scene.callers.call(list(DEPOSITS), NORMAL_CALLER)
    sign_in(scene, make_user(scene.db, "sam", "supervisor"))
    told = tab.locator("#queue-announce")
    scene.calls["again"] = scene.callers.call(list(DEPOSITS), NORMAL_CALLER)
    expect(told).to_have_text(
        "The same number holds several places on the line: ***0123.", timeout=5000
    )
    told.evaluate("e => { e.textContent = '' }")
    for _ in range(2):  # two refreshes
        with tab.expect_response(lambda r: r.url.endswith("/dashboard/queue/rows")):
            pass
    expect(told).to_have_text("")
    expect(tab.locator("#queue-live > .repeated")).not_to_have_attribute("role", "status")
    assert scene.problems == [], scene.problems


def test_the_queue_page_fits_the_screen_and_its_tables_scroll_on_their_own(scene: Scene) -> None:
    """WCAG 1.4.10: at 1280 px nothing on the queue page is past the right edge (the Move
    buttons included); at 640 px (1280 px at 200 % zoom) the page still fits, each table
    scrolls in a region of its own, named, that the keyboard reaches, and the waiting
    table's first columns, the wait among them, are in sight."""
    make_user(scene.db, "alice", "agent", AGENT_PHONE)
    scene.calls["normal"] = scene.callers.call(list(DEPOSITS), NORMAL_CALLER)
    scene.calls["hijack"] = scene.callers.call(list(HIJACK), VICTIM)
    scene.calls["general"] = scene.callers.call([Press("2"), Press("0")], "+15005550104")
    tab, expect = scene.tab, scene.expect
    sign_in(scene, make_user(scene.db, "sam", "supervisor"))
    expect(tab.locator("table.queue tbody tr")).to_have_count(3)
    wide = "() => document.documentElement.scrollWidth"
    assert tab.evaluate(wide) <= 1280
    moves = [b.bounding_box() for b in tab.get_by_role("button", name="Move").all()]
    assert len(moves) == 3 and all(m and m["x"] + m["width"] <= 1280 for m in moves), moves
    tab.set_viewport_size({"width": 640, "height": 820})
    try:
        assert tab.evaluate(wide) <= 640
        waiting = tab.locator("table.queue thead th", has_text="Waiting").bounding_box()
        assert waiting and waiting["x"] + waiting["width"] <= 640, waiting
        regions = tab.evaluate(
            """() => [...document.querySelectorAll('table.data')].map(t => {
                const region = t.closest('.table-scroll');
                const name = region && document.getElementById(
                    region.getAttribute('aria-labelledby'));
                return [t.className, region && region.getAttribute('role'),
                        region && region.tabIndex, name && name.textContent.trim() !== ''];
            })"""
        )
        assert {"data queue", "data agents"} <= {kind for kind, *_ in regions}, regions
        assert all(rest == ["region", 0, True] for _, *rest in regions), regions
        scrolls = tab.evaluate(
            "() => [...document.querySelectorAll('.table-scroll')]"
            ".map(r => r.scrollWidth > r.clientWidth)"
        )
        assert scrolls[0] is True  # the waiting table is wider than 640 px: it scrolls
    finally:
        tab.set_viewport_size({"width": 1280, "height": 820})


def test_without_javascript_the_queue_page_keeps_what_is_typed(scene: Scene, quick: None) -> None:
    """WCAG 2.2.1: without JavaScript the page never reloads itself (a <noscript> refresh
    once wiped the announcement being typed, every few seconds); a link refreshes it when
    the supervisor chooses, and nothing says it refreshes itself."""
    expect = scene.expect
    sam = make_user(scene.db, "sam", "supervisor")
    tab = scene.browser.new_context(java_script_enabled=False).new_page()
    tab.goto(f"{scene.base}/dashboard/login")
    tab.fill("#token", sam)
    tab.click("button[type=submit]")
    expect(tab).to_have_url(f"{scene.base}/dashboard/queue")
    typed = tab.locator("#text-en")
    typed.fill("Withdrawals are paused while we inves")
    tab.wait_for_timeout(3000)  # the refresh is every second (quick)
    expect(typed).to_have_value("Withdrawals are paused while we inves")
    expect(typed).to_be_focused()
    refresh = tab.get_by_role("link", name="Refresh now")
    expect(refresh).to_be_visible()
    expect(refresh).to_have_attribute("href", "/dashboard/queue")
    expect(tab.get_by_text("Refreshes every")).to_be_hidden()
    expect(tab.locator("#pause-live")).to_be_hidden()
    tab.context.close()


def test_the_desk_tells_the_agent_what_a_caller_id_and_verified_do_not_prove(
    client: TestClient, db: Engine, placed: dict[str, str]
) -> None:
    """The takeover pattern is a caller who sounds like the owner and asks for the account's
    keys: on every case, beside "Verified" and "Caller ID matches", the agent reads that both
    can be faked, what never changes on the call, and, calling back, that a PIN is not to be
    asked for on a call we placed."""
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    taken = client.post("/api/agents/next", headers=bearer(alice)).json()
    assert taken["case"]["verification"]["result"] == "yes"
    assert taken["connect"]["mode"] == "call_back"
    signed_in(client, alice)
    [guard] = texts(
        page(client, "/dashboard/desk"), "//section[contains(@class,'case')]//p[@class='guard']"
    )
    assert "Caller ID and STIR/SHAKEN can be faked" in guard
    assert "Verified means one keypad secret, no more." in guard
    assert "Never change the phone, email, 2FA or withdrawal addresses, nor lift a freeze" in guard
    assert guard.endswith("nor for the PIN or ID digits on a call we placed.")


def test_the_figures_page_gives_each_priority_and_the_longest_wait(
    client: TestClient, db: Engine, clock: FakeClock, supervisor: str
) -> None:
    """A victim holding 50 s, another moved out of the emergency line after 30 s: both are
    emergencies past their 20 s in the by-priority table, whose longest wait is 50 s."""
    with db.begin() as conn:
        conn.execute(
            insert(cases).values(in_line(81, clock(), "security", "emergency", "waiting", 50))
        )
        moved = in_line(82, clock(), "payments", "normal", "waiting", 30)
        moved["flags"] = {"priority_set_by": "sam", "priority_was": "emergency"}
        conn.execute(insert(cases).values(moved))
    signed_in(client, supervisor)
    doc = page(client, "/dashboard/figures")
    rows = {
        r[0]: r[1:]
        for r in (
            texts(tr, "./*")
            for tr in doc.xpath("//table[contains(@class,'by-priority')]//tbody/tr")
        )
    }
    assert list(rows) == ["emergency", "high", "normal"]
    # offered ... service level, ASA, longest wait
    assert rows["emergency"][:8] == ["2", "0", "0", "0", "n/a", "0.0 % (0 of 2)", "n/a", "50 s"]
    assert rows["normal"][0] == "0" and rows["normal"][7] == "n/a"
    [total] = [texts(tr, "./*") for tr in doc.xpath("//table[contains(@class,'figures')]/tfoot/tr")]
    assert total[8] == "50 s"  # All queues: the longest wait


def test_the_call_logs_outcome_filter_offers_the_callers_who_hung_up_on_the_way(
    client: TestClient, phone: Phone, supervisor: str, placed: dict[str, str]
) -> None:
    """The figures count a victim who hung up at the UID prompt apart from the abandons: the
    log's filter finds them by the same name, and its rows say it."""
    gone = phone.call(ScriptedParty([Press("1"), Press("1")]), from_number="+15005550161")
    signed_in(client, supervisor)
    doc = page(client, "/dashboard/calls", outcome="hung_up_on_the_way")
    options = "//select[@name='outcome']/option[@value='hung_up_on_the_way']"
    assert texts(doc, options) == ["hung up on the way"]
    assert call_sids(doc) == [gone.call_sid]
    assert texts(doc, "//tr[@data-call]/td[3]") == ["hung up on the way"]
