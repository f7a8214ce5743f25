"""Calls with agents that Twilio recorded (IVR_RECORD_AGENT_CALLS).

The audio stays at Twilio, behind the account's credentials; the hotline keeps where it is
and how long it lasts, for the case it belongs to, as Twilio's recording status callback
reports it (`/twilio/recording`). Twilio may report one recording twice: its sid is unique,
and the second report changes nothing.

The row is the hotline's only record of whose call a recording is: it goes only once Twilio
said the audio is gone (`delete_at_twilio`), by the purge (`ivr.retention`,
IVR_RECORDING_RETENTION_DAYS) or a caller's erasure.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Any, Literal

import httpx
from sqlalchemy import ColumnElement, Connection, Engine, insert, or_, select
from sqlalchemy.exc import IntegrityError
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send
from twilio.base.exceptions import TwilioRestException

from ivr.db import audit_log, cases, recordings
from ivr.engine import CALL_SID
from ivr.store import reading, writing

RECORDING_SID = re.compile(r"^RE[0-9a-fA-F]{32}$")
# Twilio's media URL: on api.twilio.com, or a regional host (api.dublin.ie1.twilio.com),
# naming this recording (with an extension, or none). Anything else is not kept as its URL.
MEDIA_URL = r"^https://api(\.[a-z0-9-]+)*\.twilio\.com/2010-04-01/Accounts/AC[0-9a-fA-F]{{32}}/Recordings/{sid}(\.(mp3|wav))?$"
# What Twilio reports when asked for `completed absent`: kept, or none to keep (no audio).
STATUSES = ("completed", "absent")

Kept = Literal["kept", "repeated", "refused"]
# What became of a recording asked to be deleted at Twilio: `deleted` (Twilio said 204),
# `gone` (404: deleted before, by hand or an earlier try whose answer was lost), `failed`
# (to try again later: Twilio unreachable, refusing, or our credentials refused), `elsewhere`
# (kept in a region of Twilio's, whose credentials the hotline does not have: not asked).
Unrecorded = Literal["deleted", "gone", "failed", "elsewhere"]
CONFIRMED: tuple[Unrecorded, ...] = ("deleted", "gone")  # the audio is not at Twilio

log = logging.getLogger(__name__)


def add(
    conn: Connection,
    *,
    case_id: int,
    recording_sid: str,
    call_sid: str,
    status: str,
    url: str | None,
    seconds: int | None,
    now: datetime,
) -> Kept:
    """Keep a recording of the case's call with its agent (the sid always; the URL if it is
    Twilio's URL of that recording). `repeated`: reported before; `refused`: not one of ours
    (no such case, sids that are not Twilio's, a status not asked for)."""
    if not (RECORDING_SID.match(recording_sid) and CALL_SID.match(call_sid)):
        return "refused"
    if status not in STATUSES:
        return "refused"
    if url is not None and not is_media_url(url, recording_sid):
        url = None  # found by its sid in the Twilio Console all the same
    try:
        with writing(conn):
            known = conn.execute(select(cases.c.id).where(cases.c.id == case_id)).first()
            if known is None:
                return "refused"
            conn.execute(
                insert(recordings).values(
                    case_id=case_id,
                    recording_sid=recording_sid,
                    call_sid=call_sid,
                    status=status,
                    url=url,
                    seconds=seconds,
                    at=now,
                )
            )
            return "kept"
    except IntegrityError:
        return "repeated"


def of_cases(conn: Connection, *, case_ids: list[int]) -> list[dict[str, Any]]:
    """The recordings of these cases, in the order they were reported."""
    if not case_ids:
        return []
    with reading(conn):
        rows = conn.execute(
            select(recordings).where(recordings.c.case_id.in_(case_ids)).order_by(recordings.c.id)
        ).mappings()
        return [dict(row) for row in rows]


def get(conn: Connection, *, recording_sid: str) -> dict[str, Any] | None:
    with reading(conn):
        row = conn.execute(
            select(recordings).where(recordings.c.recording_sid == recording_sid)
        ).first()
    return None if row is None else dict(row._mapping)


def is_media_url(url: str, recording_sid: str) -> bool:
    """Twilio's URL of this recording, on its own host or a region's."""
    return re.fullmatch(MEDIA_URL.format(sid=re.escape(recording_sid)), url) is not None


def playable(url: str | None, recording_sid: str) -> bool:
    """Twilio's URL of this recording on api.twilio.com: the only place the account's
    credentials are sent. A region's host (api.dublin.ie1.twilio.com) takes that region's
    credentials, which the hotline does not have: played from the Twilio Console."""
    return (
        url is not None
        and is_media_url(url, recording_sid)
        and url.startswith("https://api.twilio.com/")
    )


# A browser's player asks for several ranges in one listen (seeking, reading ahead): one audit
# entry covers those it asks for within this long of it. A listen longer than that, seeking
# late, is audited again: more entries than listens, never a range unaccounted for.
LISTEN_WINDOW = timedelta(minutes=10)
SAFARI_PROBE = "bytes=0-1"


def starts_a_play(byte_range: str | None) -> bool:
    """A request for the audio from its start (none, or `bytes=0-`, `bytes=0-99999`): a play.
    A browser seeking asks for a later range, and Safari first probes the first two bytes
    (`bytes=0-1`): not plays."""
    if not byte_range:
        return True
    asked = re.fullmatch(r"bytes=0-(\d*)", byte_range.strip())
    return asked is not None and (asked[1] == "" or int(asked[1]) > 1)


def audited_as_a_listen(
    db: Engine, byte_range: str | None, *, actor: str, recording_sid: str, now: datetime
) -> bool:
    """Whether this request of a recording by `actor` (`role:name`, as listens are audited) is
    audited as a listen: a play always; any other range too (`bytes=1-` is the whole recording
    but a byte), unless `actor`'s listen of this recording was audited within LISTEN_WINDOW,
    of which it is a part. Only Safari's probe of the first two bytes, which hold no audio, is
    never audited: it comes before the play it would otherwise make two entries of."""
    if starts_a_play(byte_range):
        return True
    if (byte_range or "").strip() == SAFARI_PROBE:
        return False
    with db.connect() as conn, reading(conn):
        heard = conn.execute(
            select(audit_log.c.id)
            .where(
                audit_log.c.action == "listen",
                audit_log.c.at >= now - LISTEN_WINDOW,
                audit_log.c.actor == actor,
                audit_log.c.reason == recording_sid,
            )
            .limit(1)
        ).first()
    return heard is None


class Relay(StreamingResponse):
    """Twilio's answer with a recording's audio, passed on as it comes: its status (200, or
    206 for a range), length and range, and Twilio's body closed however the listener
    leaves (a body left open holds a connection of the client's pool for good)."""

    PASSED_ON = ("content-length", "content-range", "accept-ranges")

    def __init__(self, upstream: httpx.Response) -> None:
        headers = {k: upstream.headers[k] for k in self.PASSED_ON if k in upstream.headers}
        headers |= {"Cache-Control": "no-store", "Content-Disposition": "inline"}
        super().__init__(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            headers=headers,
            media_type="audio/mpeg",
        )
        self.upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.upstream.aclose()


def mp3_url(url: str) -> str:
    """The recording's audio as MP3 (Twilio gives WAV without an extension)."""
    return re.sub(r"\.(mp3|wav)$", "", url) + ".mp3"


def ours(url: str | None, account_sid: str) -> bool:
    """Whether the account's credentials delete the recording at `url` at api.twilio.com
    (None: not known, taken for the account's own; `delete_at_twilio`)."""
    return url is None or (
        url.startswith("https://api.twilio.com/") and f"/Accounts/{account_sid}/Recordings/" in url
    )


def ours_sql(account_sid: str) -> ColumnElement[bool]:
    """`ours` in SQL, for counting without asking Twilio (`ivr db purge --dry-run`)."""
    path = f"Accounts/{account_sid}/Recordings/%"
    return or_(
        recordings.c.url.is_(None),
        recordings.c.url.like(f"https://api.twilio.com/{path}"),
        recordings.c.url.like(f"https://api.twilio.com/%/{path}"),
    )


def delete_at_twilio(twilio: Any, recording_sid: str, url: str | None) -> Unrecorded:
    """Delete the recording's audio at Twilio with `twilio` (twilio.rest.Client: DELETE of
    the account's Recordings/{sid}, which answers 204, or 404 for one not there). A
    recording whose URL is a region's host is not asked for: api.twilio.com would answer
    404 for it, which would be taken for gone while its audio stays. One without a URL is
    taken for the account's own (Twilio's callback names a region's host when it is one).
    Nor is one of another account (a subaccount's, or before the credentials changed): its
    404 would say nothing of it either."""
    if not ours(url, getattr(twilio, "account_sid", "")):
        return "elsewhere"
    try:
        twilio.recordings(recording_sid).delete()
    except TwilioRestException as exc:
        if int(exc.status) == 404:
            return "gone"
        log.warning("Twilio refused to delete recording %s (%s)", recording_sid, exc.status)
        return "failed"
    except Exception as exc:  # unreachable, no answer in time: tried again later
        log.warning("recording %s not deleted at Twilio (%s)", recording_sid, type(exc).__name__)
        return "failed"
    return "deleted"
