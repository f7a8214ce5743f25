"""Calls with agents that Twilio recorded (IVR_RECORD_AGENT_CALLS).

The audio stays at Twilio, behind the account's credentials; the hotline keeps where it is
and how long it lasts, for the case it belongs to, as Twilio's recording status callback
reports it (`/twilio/recording`). Twilio may report one recording twice: its sid is unique,
and the second report changes nothing.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from ivr.db import cases, recordings
from ivr.engine import CALL_SID
from ivr.store import reading, writing

RECORDING_SID = re.compile(r"^RE[0-9a-fA-F]{32}$")
# Twilio's media URL: on api.twilio.com, or a regional host (api.dublin.ie1.twilio.com),
# naming this recording (with an extension, or none). Anything else is not kept as its URL.
MEDIA_URL = r"^https://api(\.[a-z0-9-]+)*\.twilio\.com/2010-04-01/Accounts/AC[0-9a-fA-F]{{32}}/Recordings/{sid}(\.(mp3|wav))?$"
# What Twilio reports when asked for `completed absent`: kept, or none to keep (no audio).
STATUSES = ("completed", "absent")

Kept = Literal["kept", "repeated", "refused"]


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
    """Twilio's URL of this recording: the only place the account's credentials are sent."""
    return re.match(MEDIA_URL.format(sid=re.escape(recording_sid)), url) is not None


def mp3_url(url: str) -> str:
    """The recording's audio as MP3 (Twilio gives WAV without an extension)."""
    return re.sub(r"\.(mp3|wav)$", "", url) + ".mp3"
