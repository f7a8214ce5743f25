"""Announcements: what every caller hears first on a bad day (an incident, a known delay).

A supervisor sets one, in every language of the call tree, for a while; menus marked
`announcement: true` play it before their prompt, once per call, and a key or a word
interrupts it. Kept in the database, so every instance plays the same one (each picks a new
one up within IVR_TREE_SYNC seconds, the one it was set on at once); the hot path reads it
from memory.

Callers already holding when it goes up went through the menus before it: their hold rounds
say it first (`for_holding`), those that begin within IVR_ANNOUNCE_ON_HOLD seconds of it going
up. A hold round remembers nothing (one read, no write), so that window is how "once" is
kept: a round longer than the window (a hold-music track of a few minutes) says it once, and
shorter rounds say it again until the window has passed.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select, update

from ivr.db import announcements
from ivr.engine import NOT_XML, Announcement
from ivr.store import reading, writing
from ivr.tree import keys_said


@dataclass(frozen=True)
class Current:
    id: int
    texts: dict[str, str]
    set_by: str
    set_at: datetime
    expires_at: datetime

    def live(self, now: datetime) -> Announcement | None:
        """What the engine plays now, or None once it has expired."""
        return Announcement(str(self.id), self.texts) if now < self.expires_at else None


MAX_TEXT = 600  # characters: about 40 seconds of speech
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def one_line(text: str) -> str:
    """`text` on one line with single spaces: a line break or a control character pasted
    from a chat window would otherwise reach speech, a log line or a CSV cell."""
    return " ".join(_CONTROL.sub(" ", text).split())


def tidied(texts: dict[str, str]) -> dict[str, str]:
    return {lang: one_line(text) for lang, text in texts.items()}


def problems(texts: dict[str, str], *, languages: set[str]) -> list[str]:
    """Why callers cannot be given `texts` (tidied), in a supervisor's words; none if they
    can. Shared by the queue page, the API and a draft walk's `--announce`, so a walk never
    tries what the hotline would refuse."""
    missing = sorted(languages - {lang for lang, text in texts.items() if text})
    unknown = sorted(set(texts) - languages)
    too_long = sorted(lang for lang, text in texts.items() if len(text) > MAX_TEXT)
    unsayable = sorted(lang for lang, text in texts.items() if NOT_XML.search(text))
    keys = keys_named(texts)
    found = []
    if missing:
        found.append(f"a text is needed in every language callers choose: {', '.join(missing)}")
    if unknown:
        found.append(f"no caller chooses {', '.join(unknown)}")
    if too_long:
        found.append(f"{MAX_TEXT} characters at most: {', '.join(too_long)}")
    if unsayable:
        found.append(f"characters no call can carry: {', '.join(unsayable)}")
    if keys:
        found.append(
            f"no key to press ({', '.join(keys)}): it plays inside the menus, where a "
            "key is the menu's option (on the shipped main menu 1 is the emergency "
            "line), and while callers hold, where 1 asks for a call back"
        )
    return found


def keys_named(texts: dict[str, str]) -> list[str]:
    """Where an announcement tells callers to press a key ("press 1", 请按1), as "words" in
    language: it is said inside a menu's <Gather>, where a key is that menu's option (1 on
    the shipped main menu: the emergency lane, for every worried caller who was told "press
    1 for a call back"), and while holding, where 1 asks for a call back. Such a text is
    refused: what a key does is the menus' to say (a menu's `incident_options`, prepared in
    the tree, offer the worried a key of their own while an announcement is up).

    Read as a supervisor writes in a hurry: any verb of keying (dial, enter, select...; 拨,
    输入, 选择...) before a digit, a digit word, * or #, a full-width digit (what a Chinese
    input method types) as its plain one. A count after the verb ("enter 6 digits", 输入6
    位) or a phone number ("dial 1-800-...") is no key."""
    found = []
    for language, text in sorted(texts.items()):
        plain = unicodedata.normalize("NFKC", text)
        said = [*keys_said(plain).values(), *(m[0] for m in _KEYED.finditer(plain))]
        found += [f'"{words}" in {language}' for words in dict.fromkeys(said)]
    return found


_EN_KEY = (
    r"(?:[0-9*#](?![0-9-])"
    r"|(?:one|two|three|four|five|six|seven|eight|nine|zero|star|pound|hash)\b(?!\s+of\b))"
)
_ZH_KEY = r"(?:[0-9*#](?![0-9-])|[一二三四五六七八九零〇幺](?![下个些次点种])|星号|井号)"
_KEYED = re.compile(
    r"\b(?:press|dial|enter|select|choose|pick|hit|push|tap|type|key(?:\s+in)?)(?:es|s|ed|ing)?"
    r"\s+(?:the\s+)?(?:(?:key|number|digit|option|button)\s+)?"
    rf"{_EN_KEY}(?!\s*(?:digits?|times?|minutes?|hours?|seconds?|days?|%))"
    r"|\boption\s+[0-9](?![0-9])"
    r"|(?:按|拨|输入|键入|选择|选|点击)\s*(?:数字|号码)?"
    rf"{_ZH_KEY}(?!\s*[位个次分秒小天元])",
    re.IGNORECASE,
)


def for_holding(
    current: Current | None,
    *,
    language: str,
    now: datetime,
    joined: datetime,
    within: timedelta,
) -> str | None:
    """What a caller holding since `joined` hears first this round, in `language`: the
    live announcement if it went up after they joined the line (they never heard it on the
    way in) and no longer than `within` ago; None otherwise."""
    if current is None or current.live(now) is None:
        return None
    if not joined < current.set_at <= now < current.set_at + within:
        return None
    return current.texts.get(language) or None


def _current(row: Any) -> Current:
    return Current(row.id, dict(row.texts), row.set_by, row.set_at, row.expires_at)


def current(conn: Connection, *, now: datetime) -> Current | None:
    """The newest announcement neither cleared nor expired."""
    with reading(conn):
        row = conn.execute(
            select(announcements)
            .where(announcements.c.cleared_at.is_(None), announcements.c.expires_at > now)
            .order_by(announcements.c.id.desc())
            .limit(1)
        ).first()
    return None if row is None else _current(row)


def announce(
    conn: Connection, *, texts: dict[str, str], by: str, now: datetime, expires_at: datetime
) -> Current:
    """Make `texts` the announcement, replacing any other."""
    with writing(conn):
        _clear(conn, by=by, now=now)
        new_id = conn.execute(
            insert(announcements)
            .values(texts=texts, set_by=by, set_at=now, expires_at=expires_at)
            .returning(announcements.c.id)
        ).scalar_one()
    return Current(int(new_id), dict(texts), by, now, expires_at)


def clear(conn: Connection, *, by: str, now: datetime) -> bool:
    """No announcement any more; False if there was none."""
    with writing(conn):
        return _clear(conn, by=by, now=now) > 0


def _clear(conn: Connection, *, by: str, now: datetime) -> int:
    return conn.execute(
        update(announcements)
        .where(announcements.c.cleared_at.is_(None), announcements.c.expires_at > now)
        .values(cleared_at=now, cleared_by=by)
    ).rowcount
