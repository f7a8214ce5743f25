"""Calls with agents that Twilio recorded (IVR_RECORD_AGENT_CALLS).

The audio stays at Twilio, behind the account's credentials; the hotline keeps where it is
and how long it lasts, for the case it belongs to, as Twilio's recording status callback
reports it (`/twilio/recording`). Twilio may report one recording twice: its sid is unique,
and the second report changes nothing.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from ivr.db import cases, recordings
from ivr.store import reading, writing

RECORDING_SID = re.compile(r"^RE[0-9a-f]{32}$")
CALL_SID = re.compile(r"^CA[0-9a-f]{32}$")
# Where Twilio keeps recordings: a report naming anywhere else is not stored.
MEDIA_URL = re.compile(
    r"^https://api\.twilio\.com/2010-04-01/Accounts/AC[0-9a-f]{32}/Recordings/RE[0-9a-f]{32}$"
)
STATUSES = ("completed", "absent", "failed")


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
) -> bool:
    """Keep a recording of the case's call with its agent. False if it was not news (reported
    before), or not one of ours (no such case, a sid or URL that is not Twilio's)."""
    if not (RECORDING_SID.match(recording_sid) and CALL_SID.match(call_sid)):
        return False
    if status not in STATUSES or (url is not None and not MEDIA_URL.match(url)):
        return False
    try:
        with writing(conn):
            known = conn.execute(select(cases.c.id).where(cases.c.id == case_id)).first()
            if known is None:
                return False
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
            return True
    except IntegrityError:
        return False  # reported before


def of_cases(conn: Connection, *, case_ids: list[int]) -> list[dict[str, Any]]:
    """The recordings of these cases, in the order they were reported."""
    if not case_ids:
        return []
    with reading(conn):
        rows = conn.execute(
            select(recordings).where(recordings.c.case_id.in_(case_ids)).order_by(recordings.c.id)
        ).mappings()
        return [dict(row) for row in rows]
