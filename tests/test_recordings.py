"""Calls with agents recorded by Twilio (IVR_RECORD_AGENT_CALLS): the caller is told before
the agent's phone rings, Twilio records from the agent's answer, and its report of the
recording is kept with the case, once, and shown in the call's timeline."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from lxml import etree
from sqlalchemy import Engine, insert, select
from starlette.types import Message

from ivr.db import cases, recordings
from ivr.exceptions import SourceError
from ivr.phone import CallRecord, Phone, Press
from ivr.settings import PROJECT_ROOT
from ivr.tree import CompiledTree, load_tree
from ivr.web import create_app, media_client
from tests.conftest import (
    HTTPS_CLIENT,
    PUBLIC_URL,
    TOKEN,
    FakeClock,
    RecordingTwilio,
    bearer,
    count,
    make_settings,
    make_user,
)
from tests.support.catalogs import catalogs_without
from tests.support.parties import Caller

AGENT_PHONE = "+15005559999"
CALLER = "+15005550008"
DEPOSITS = [Press("1"), Press("3"), Press("1"), Press("1")]  # a question for an agent
ACCOUNT = "AC" + "0" * 32
RECORDING = "RE" + "a" * 32
MEDIA = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings/{RECORDING}"
NOTICE = "This call will be recorded, for your protection and for the quality of our service."


def put_through(client: TestClient, phone: Phone, agent: str) -> tuple[CallRecord, Any]:
    """A caller holds; the agent takes their case, and the next hold round puts them through
    to the agent's phone. The call, and the TwiML document that dialled the agent."""

    def holds(poll: int) -> bool:
        if poll == 1:
            taken = client.post("/api/agents/next", headers=bearer(agent))
            assert taken.status_code == 200, taken.text
        return poll < 5

    record = phone.call(Caller(DEPOSITS, holds), from_number=CALLER)
    assert record.dialed == AGENT_PHONE and record.agent_took is True
    [dialled] = [d for d in record.documents if "<Dial" in d and AGENT_PHONE in d]
    return record, etree.fromstring(dialled.encode())


def report(record: CallRecord, **fields: str) -> dict[str, str]:
    """Twilio's recording status callback, as it sends it."""
    return {
        "AccountSid": ACCOUNT,
        "CallSid": record.call_sid,
        "RecordingSid": RECORDING,
        "RecordingUrl": MEDIA,
        "RecordingStatus": "completed",
        "RecordingDuration": "151",
        "RecordingChannels": "2",
        "RecordingSource": "DialVerb",
        **fields,
    }


def test_a_call_with_an_agent_is_recorded_after_the_caller_is_told(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(IVR_DATABASE_URL=database_url, IVR_RECORD_AGENT_CALLS=True)
    app = create_app(settings, tree=hotline_tree, db=db, clock=clock)
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    sam = make_user(db, "sam", "supervisor")
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        record, doc = put_through(client, phone, alice)
        # Told before the agent's phone rings; recorded from the agent's phone answering,
        # each side on its own channel.
        said = [say.text for say in doc.iter("Say")]
        assert NOTICE in said and doc[-1].tag == "Dial"
        dial = doc.find("Dial")
        assert dial.get("record") == "record-from-answer-dual"
        assert dial.get("recordingStatusCallbackEvent") == "completed absent"
        where = dial.get("recordingStatusCallback")
        assert where.startswith(f"{PUBLIC_URL}/twilio/recording?case=")
        # Twilio reports the recording (twice, as it may): kept once, the repeat no warning.
        caplog.clear()  # the tree's own warnings, logged as it went live, are not these
        with caplog.at_level(logging.WARNING):
            for _ in range(2):
                answer = phone.signed_post(where, report(record))
                assert (answer.status_code, answer.text) == (204, "")
        assert count(db, recordings) == 1 and caplog.records == []
        # Unsigned: refused, nothing kept.
        forged = client.post(where, data=report(record, RecordingSid="RE" + "b" * 32))
        assert forged.status_code == 403
        # Signed for a case that does not exist: not kept, and said so in the log.
        unknown = where.split("?")[0] + "?case=999999"
        with caplog.at_level(logging.WARNING):
            refused = phone.signed_post(unknown, report(record, RecordingSid="RE" + "d" * 32))
        assert refused.status_code == 204 and count(db, recordings) == 1
        assert "not one of ours" in caplog.text
        # A URL that is not Twilio's URL of that recording: the sid is kept, not the URL.
        elsewhere = report(
            record, RecordingSid="RE" + "c" * 32, RecordingUrl="https://evil.example/x.mp3"
        )
        assert phone.signed_post(where, elsewhere).status_code == 204
        # A region's host, as Twilio's non-US regions send it.
        regional = "RE" + "e" * 32
        dublin = (
            f"https://api.dublin.ie1.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings/{regional}"
        )
        assert (
            phone.signed_post(
                where, report(record, RecordingSid=regional, RecordingUrl=dublin)
            ).status_code
            == 204
        )
        timeline = client.get(f"/api/calls/{record.call_sid}", headers=bearer(sam)).json()
        [case] = timeline["cases"]
        kept, evil, regional_kept = timeline["recordings"]
        assert (kept["ticket"], kept["recording_sid"], kept["status"]) == (
            case["ticket"],
            RECORDING,
            "completed",
        )
        assert (kept["seconds"], kept["url"]) == (151, MEDIA)
        assert (evil["recording_sid"], evil["url"]) == ("RE" + "c" * 32, None)
        assert (regional_kept["recording_sid"], regional_kept["url"]) == (regional, dublin)
        client.post("/dashboard/login", data={"token": sam}, follow_redirects=False)
        page = client.get(f"/dashboard/calls/{record.call_sid}").text
        assert "<h2>Recordings</h2>" in page and RECORDING in page and "02:31" in page


def test_calls_are_not_recorded_unless_the_operator_says_so(
    client: TestClient, phone: Phone, db: Engine
) -> None:
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    _, doc = put_through(client, phone, alice)
    dial = doc.find("Dial")
    assert dial.get("record") is None and dial.get("recordingStatusCallback") is None
    assert NOTICE not in [say.text for say in doc.iter("Say")]


def test_a_call_back_is_recorded_after_the_customer_is_told(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
    twilio_client: Any,
    twilio_http: RecordingTwilio,
) -> None:
    """A victim who hung up is called back by Twilio; answering, they hear the call-back
    greeting in Mandarin, the notice, and then the agent's phone rings, recorded."""
    settings = make_settings(IVR_DATABASE_URL=database_url, IVR_RECORD_AGENT_CALLS=True)
    app = create_app(settings, tree=hotline_tree, db=db, clock=clock, twilio=twilio_client)
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        mandarin = [Press("2"), Press("0")]  # 中文, then an agent
        phone.call(Caller(mandarin, lambda poll: False), from_number=CALLER)
        taken = client.post("/api/agents/next", headers=bearer(alice)).json()
        assert taken["connect"]["mode"] == "calling_back"
        [placed] = [data for _, url, data in twilio_http.requests if url.endswith("/Calls.json")]
        answered = phone.signed_post(
            placed["Url"], {"CallSid": twilio_http.sids[-1], "AccountSid": ACCOUNT}
        )
    check_twiml(answered.text)
    doc = etree.fromstring(answered.text.encode())
    assert "本次通话将被录音" in "".join(say.text for say in doc.iter("Say"))
    assert doc.find("Dial").get("record") == "record-from-answer-dual"


def test_recording_needs_catalogs_that_tell_callers_so(
    tmp_path: Path, hotline_tree: CompiledTree, db: Engine
) -> None:
    """Catalogs without `recording_notice` (an operator's own, from before it shipped) still
    load: the prompt is needed only to record. With IVR_RECORD_AGENT_CALLS they are refused,
    at start and on a reload, naming the catalog."""
    prompts = catalogs_without(tmp_path / "prompts", "recording_notice")
    routes = PROJECT_ROOT / "routes" / "hotline.yaml"
    silent = load_tree(routes, prompts)  # not an error without recording
    assert not silent.catalogs.has("recording_notice", "en")
    recording = make_settings(IVR_RECORD_AGENT_CALLS=True, IVR_PROMPTS=str(prompts))
    with pytest.raises(SourceError, match="prompt 'recording_notice' is missing from the en"):
        create_app(recording, tree=silent, db=db)
    app = create_app(recording, tree=hotline_tree, db=db)
    with pytest.raises(SourceError, match="recording_notice"):
        app.state.hotline.reload(by="test")
    assert app.state.hotline.trees.current is hotline_tree


BASIC = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()


class TwilioMedia:
    """Twilio's media host, as httpx's transport: a recording's MP3 is a redirect to its
    storage (with the account's credentials only), then the audio, a byte range of it when
    asked (as a browser seeking asks); each request kept, and each body opened and closed
    counted (a body left open holds a connection of the pool for good)."""

    AUDIO = b"ID3" + bytes(range(256)) * 64  # 16 KB standing in for an MP3

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.status = 200
        self.opened = 0
        self.closed = 0
        self.stall = False  # the body's first byte never comes

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "api.twilio.com":
            if request.headers.get("authorization") != BASIC:
                return httpx.Response(401)
            return httpx.Response(302, headers={"Location": "https://media.storage.test/x.mp3"})
        if self.status != 200:
            return httpx.Response(self.status)
        size = len(self.AUDIO)
        asked = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("range", ""))
        first, last = 0, size - 1
        headers = {"Accept-Ranges": "bytes", "Content-Type": "audio/mpeg"}
        if asked:
            first, last = int(asked[1]), min(int(asked[2] or size - 1), size - 1)
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        body = self.AUDIO[first : last + 1]
        headers["Content-Length"] = str(len(body))
        self.opened += 1
        return httpx.Response(206 if asked else 200, headers=headers, stream=Body(body, self))


class Body(httpx.AsyncByteStream):
    def __init__(self, data: bytes, media: TwilioMedia) -> None:
        self.data = data
        self.media = media

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.media.stall:
            await asyncio.sleep(60)
        for start in range(0, len(self.data), 4096):
            yield self.data[start : start + 4096]

    async def aclose(self) -> None:
        self.media.closed += 1


@pytest.fixture
def media() -> TwilioMedia:
    return TwilioMedia()


@pytest.fixture
def recorded(
    database_url: str,
    hotline_tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    check_twiml: Callable[[str], None],
    media: TwilioMedia,
) -> Iterator[tuple[TestClient, CallRecord]]:
    """A call put through to alice and recorded, with its recording reported; Twilio's media
    host on `media`, the media client made as create_app makes it with TWILIO_ACCOUNT_SID
    (set here for it only: the caller is put through by the hold loop, with no REST
    client)."""
    settings = make_settings(IVR_DATABASE_URL=database_url, IVR_RECORD_AGENT_CALLS=True)
    account = make_settings(TWILIO_ACCOUNT_SID=ACCOUNT)
    fetcher = media_client(account, transport=httpx.MockTransport(media))
    app = create_app(settings, tree=hotline_tree, db=db, clock=clock, media=fetcher)
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        record, doc = put_through(client, phone, alice)
        where = doc.find("Dial").get("recordingStatusCallback")
        assert phone.signed_post(where, report(record)).status_code == 204
        client.headers["X-Alice"] = alice  # for the tests that need her token
        yield client, record


def listens(client: TestClient, call_sid: str, token: str) -> list[dict[str, Any]]:
    audit = client.get(f"/api/calls/{call_sid}", headers=bearer(token)).json()["audit"]
    return [a for a in audit if a["action"] == "listen"]


def test_a_supervisor_listens_to_a_recording_fetched_from_twilio(
    recorded: tuple[TestClient, CallRecord], media: TwilioMedia, db: Engine
) -> None:
    """A supervisor plays a call's recording on its page: the hotline fetches the MP3 from
    Twilio with the account's credentials (not sent on to where Twilio redirects) and passes
    it on as it comes, each body closed once passed on. Seeking asks for a byte range, which
    Twilio is asked for too. Who listened to which case's call is audited once per play, not
    per range a browser asks for."""
    client, record = recorded
    sam = make_user(db, "sam", "supervisor")
    client.post("/dashboard/login", data={"token": sam}, follow_redirects=False)
    page = client.get(f"/dashboard/calls/{record.call_sid}").text
    [src] = re.findall(r'<audio controls preload="none" src="([^"]+)"', page)
    played = client.get(src)
    assert played.status_code == 200, played.text
    assert played.content == TwilioMedia.AUDIO
    size = str(len(TwilioMedia.AUDIO))
    assert played.headers["content-type"] == "audio/mpeg"
    assert played.headers["content-length"] == size
    assert played.headers["accept-ranges"] == "bytes"
    assert played.headers["cache-control"] == "no-store"
    to_twilio, to_storage = media.requests
    assert str(to_twilio.url) == MEDIA + ".mp3"
    assert to_twilio.headers["authorization"] == BASIC
    assert "authorization" not in to_storage.headers
    [audit] = listens(client, record.call_sid, sam)
    assert (audit["actor"], audit["reason"], audit["result"]) == (
        "supervisor:sam",
        RECORDING,
        "played",
    )
    # A browser seeking, and Safari's probe of the first two bytes: ranges, not plays.
    seek = client.get(src, headers={"Range": "bytes=8192-"})
    assert seek.status_code == 206 and seek.content == TwilioMedia.AUDIO[8192:]
    assert seek.headers["content-range"] == f"bytes 8192-{int(size) - 1}/{size}"
    assert media.requests[-1].headers["range"] == "bytes=8192-"
    probe = client.get(src, headers={"Range": "bytes=0-1"})
    assert probe.status_code == 206 and probe.content == TwilioMedia.AUDIO[:2]
    assert len(listens(client, record.call_sid, sam)) == 1
    # Through the API, with a token: the same audio, another play.
    api = client.get(f"/api/recordings/{RECORDING}", headers=bearer(sam))
    assert api.status_code == 200 and api.content == TwilioMedia.AUDIO
    assert len(listens(client, record.call_sid, sam)) == 2
    assert media.opened == media.closed == 4


def test_a_range_that_is_no_part_of_an_audited_listen_is_audited(
    recorded: tuple[TestClient, CallRecord], media: TwilioMedia, db: Engine, clock: FakeClock
) -> None:
    """`bytes=1-` is the whole recording but its first byte: asked for with no listen of
    the supervisor's audited before it, it is a listen, audited. The ranges a player asks
    for within 10 minutes of its audited play are that listen's: no more entries. After
    that, or asked for by another supervisor, a range is audited again."""
    client, record = recorded
    sam = make_user(db, "sam", "supervisor")
    kim = make_user(db, "kim", "supervisor")
    path = f"/api/recordings/{RECORDING}"
    most = client.get(path, headers={**bearer(sam), "Range": "bytes=1-"})
    assert most.status_code == 206 and most.content == TwilioMedia.AUDIO[1:]
    [audit] = listens(client, record.call_sid, sam)
    assert (audit["actor"], audit["reason"]) == ("supervisor:sam", RECORDING)
    # The player goes on reading ahead and seeking, minutes into the listen.
    clock.advance(minutes=9)
    for part in ("bytes=8192-", "bytes=100-199", "bytes=0-1"):
        answer = client.get(path, headers={**bearer(sam), "Range": part})
        assert answer.status_code == 206
    assert len(listens(client, record.call_sid, sam)) == 1
    # Another supervisor's range is their own listen.
    assert client.get(path, headers={**bearer(kim), "Range": "bytes=8192-"}).status_code == 206
    assert [a["actor"] for a in listens(client, record.call_sid, sam)] == [
        "supervisor:sam",
        "supervisor:kim",
    ]
    # Over 10 minutes after sam's listen was audited, a range of his is audited again.
    clock.advance(minutes=2)
    assert client.get(path, headers={**bearer(sam), "Range": "bytes=8192-"}).status_code == 206
    assert len(listens(client, record.call_sid, sam)) == 3
    # A listen of one recording is no listen of another.
    other = "RE" + "b" * 32
    with db.begin() as conn:
        conn.execute(
            insert(recordings).values(
                case_id=case_rows_of(db)[0],
                recording_sid=other,
                call_sid=record.call_sid,
                status="completed",
                url=MEDIA.replace(RECORDING, other),
                seconds=3,
                at=clock(),
            )
        )
    answer = client.get(f"/api/recordings/{other}", headers={**bearer(sam), "Range": "bytes=1-"})
    assert answer.status_code == 206
    assert [a["reason"] for a in listens(client, record.call_sid, sam)][-1] == other
    assert media.opened == media.closed == 7


def test_safaris_listen_is_one_entry(
    recorded: tuple[TestClient, CallRecord], media: TwilioMedia, db: Engine
) -> None:
    """Safari probes the first two bytes before it plays from the start, then seeks: one
    listen, one entry (the probe holds no audio, and comes before any play to join)."""
    client, record = recorded
    sam = make_user(db, "sam", "supervisor")
    path = f"/api/recordings/{RECORDING}"
    for part in ("bytes=0-1", "bytes=0-", "bytes=8192-"):
        assert client.get(path, headers={**bearer(sam), "Range": part}).status_code == 206
    assert len(listens(client, record.call_sid, sam)) == 1


def test_only_supervisors_play_recordings(
    recorded: tuple[TestClient, CallRecord], media: TwilioMedia, db: Engine
) -> None:
    """Agents see a call's recordings listed (its timeline), but not to play: on the page, and
    through the API or the dashboard's route, nothing is fetched for them."""
    client, record = recorded
    alice = client.headers.pop("X-Alice")
    assert client.get(f"/api/recordings/{RECORDING}", headers=bearer(alice)).status_code == 403
    client.post("/dashboard/login", data={"token": alice}, follow_redirects=False)
    page = client.get(f"/dashboard/calls/{record.call_sid}")
    assert page.status_code == 200 and "<audio" not in page.text
    assert "Recordings" in page.text and RECORDING not in page.text  # listed, sid withheld
    assert client.get(f"/dashboard/recordings/{RECORDING}").status_code == 403
    assert media.requests == []


def test_only_supervisors_see_a_recordings_media_url(
    recorded: tuple[TestClient, CallRecord], media: TwilioMedia, db: Engine
) -> None:
    """Twilio serves the audio at its media URL to anyone who has it (unless the account
    enforces HTTP auth on media), and the recording's sid and the account's make that URL:
    an agent, who may not play a recording, sees it listed without either, the same fields,
    null; a supervisor sees them, and plays it audited."""
    client, record = recorded
    alice = client.headers.pop("X-Alice")
    sam = make_user(db, "sam", "supervisor")
    [seen_by_alice] = client.get(f"/api/calls/{record.call_sid}", headers=bearer(alice)).json()[
        "recordings"
    ]
    [seen_by_sam] = client.get(f"/api/calls/{record.call_sid}", headers=bearer(sam)).json()[
        "recordings"
    ]
    assert seen_by_alice == {**seen_by_sam, "url": None, "recording_sid": None}
    assert seen_by_sam["url"] == MEDIA and seen_by_sam["recording_sid"] == RECORDING
    assert media.requests == []


def test_what_cannot_be_played_is_said_and_nothing_is_fetched_for_it(
    recorded: tuple[TestClient, CallRecord], media: TwilioMedia, db: Engine
) -> None:
    """No such recording, no audio of it (`absent`), a URL that is not Twilio's (kept before
    this check, or a region's host, whose recordings need that region's credentials): 404,
    and the account's credentials go nowhere. Deleted at Twilio (its retention): 404 too.
    Twilio failing: 502, counted."""
    client, record = recorded
    sam = make_user(db, "sam", "supervisor")
    case_id = case_rows_of(db)[0]
    for sid, status, url in (
        ("RE" + "1" * 32, "absent", None),
        ("RE" + "2" * 32, "completed", "https://evil.example/x.mp3"),
        ("RE" + "3" * 32, "completed", MEDIA.replace(RECORDING, "RE" + "3" * 32) + "\n"),
        (
            "RE" + "4" * 32,
            "completed",
            MEDIA.replace("api.", "api.dublin.ie1.").replace(RECORDING, "RE" + "4" * 32),
        ),
    ):
        with db.begin() as conn:
            conn.execute(
                insert(recordings).values(
                    case_id=case_id,
                    recording_sid=sid,
                    call_sid=record.call_sid,
                    status=status,
                    url=url,
                    seconds=3,
                    at=datetime(2026, 11, 23, tzinfo=UTC),
                )
            )
        answer = client.get(f"/api/recordings/{sid}", headers=bearer(sam))
        assert answer.status_code == 404, (sid, answer.text)
    assert client.get(f"/api/recordings/RE{'f' * 32}", headers=bearer(sam)).status_code == 404
    assert media.requests == []
    media.status = 404
    gone = client.get(f"/api/recordings/{RECORDING}", headers=bearer(sam))
    assert gone.status_code == 404 and "not at Twilio" in gone.json()["detail"]
    media.status = 500
    failed = client.get(f"/api/recordings/{RECORDING}", headers=bearer(sam))
    assert failed.status_code == 502
    assert failed.json()["detail"] == "Twilio answered 500 for the recording"
    assert 'ivr_twilio_refusals_total{what="recording"} 1.0' in client.get("/metrics").text
    assert listens(client, record.call_sid, sam) == []


def test_a_listener_who_leaves_at_once_lets_twilio_go(
    recorded: tuple[TestClient, CallRecord], media: TwilioMedia, db: Engine
) -> None:
    """The supervisor clicks play and leaves the page before a byte comes: Twilio's body is
    closed all the same, or each such play would keep a connection of the pool for good."""
    client, _ = recorded
    sam = make_user(db, "sam", "supervisor")
    media.stall = True
    sent: list[Message] = []

    async def gone() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"/api/recordings/{RECORDING}",
        "raw_path": f"/api/recordings/{RECORDING}".encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {sam}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    client.portal.call(client.app, scope, gone, send)  # type: ignore[union-attr]
    assert sent and sent[0]["status"] == 200
    assert media.opened == media.closed == 1


def test_without_a_twilio_account_nothing_can_fetch_a_recording(
    database_url: str, hotline_tree: CompiledTree, db: Engine, check_twiml: Callable[[str], None]
) -> None:
    settings = make_settings(IVR_DATABASE_URL=database_url, IVR_RECORD_AGENT_CALLS=True)
    app = create_app(settings, tree=hotline_tree, db=db)
    alice = make_user(db, "alice", "agent", AGENT_PHONE)
    sam = make_user(db, "sam", "supervisor")
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        phone = Phone(client, public_url=PUBLIC_URL, auth_token=TOKEN, check_twiml=check_twiml)
        record, doc = put_through(client, phone, alice)
        where = doc.find("Dial").get("recordingStatusCallback")
        assert phone.signed_post(where, report(record)).status_code == 204
        answer = client.get(f"/api/recordings/{RECORDING}", headers=bearer(sam))
        assert answer.status_code == 503
        assert "TWILIO_ACCOUNT_SID" in answer.json()["detail"]


def case_rows_of(db: Engine) -> list[int]:
    with db.connect() as conn:
        return list(conn.execute(select(cases.c.id).order_by(cases.c.id)).scalars())
