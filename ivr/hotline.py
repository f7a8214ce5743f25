"""What each webhook does, minus HTTP: read the call, run the engine, write the step.

`Hotline` holds what every request shares (settings, the live tree and older versions, the
database, the clock). Each method is one webhook: at most one read and one write.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine

from ivr import engine, store
from ivr.settings import Settings
from ivr.tree import CompiledTree, tree_from_stored

log = logging.getLogger("ivr.hotline")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Caller:
    """What Twilio tells us about a new call."""

    call_sid: str
    account_sid: str | None = None
    from_number: str | None = None
    to_number: str | None = None


class TreeRegistry:
    """The live tree plus every version a call in progress may still be on."""

    def __init__(self, current: CompiledTree) -> None:
        self.current = current
        self._versions = {current.version: current}
        self._lock = threading.Lock()

    def get(self, version: str, db: Engine) -> CompiledTree:
        tree = self._versions.get(version)
        if tree is not None:
            return tree
        # A call that began before a restart or reload: rebuild its tree from the stored text.
        with db.connect() as conn:
            stored = store.load_tree_version(conn, version=version)
        if stored is None:
            log.warning(
                "tree version %s is not stored; continuing on %s", version, self.current.version
            )
            return self.current
        tree = tree_from_stored(stored.source, stored.file, stored.prompts)
        with self._lock:
            self._versions[version] = tree
        return tree


class Hotline:
    def __init__(
        self, settings: Settings, tree: CompiledTree, db: Engine, *, clock: Clock = utcnow
    ) -> None:
        self.settings = settings
        self.trees = TreeRegistry(tree)
        self.db = db
        self.clock = clock
        self.links = engine.Links(settings.base_url)

    def start(self, caller: Caller) -> str:
        """A call comes in (or Twilio repeats that request): TwiML for its first node."""
        with self.db.connect() as conn:
            row = store.load_call(conn, call_sid=caller.call_sid)
            if row is not None:
                return row.last_twiml
            tree = self.trees.current
            now = self.clock()
            step = engine.begin(tree, links=self.links, step=1, now=now)
            created = store.create_call(
                conn,
                call_sid=caller.call_sid,
                account_sid=caller.account_sid,
                from_number=caller.from_number,
                to_number=caller.to_number,
                tree_version=tree.version,
                step=1,
                state=step.state,
                twiml=step.twiml,
                log=step.log,
                now=now,
            )
            if created:
                return step.twiml
            return self._answer_again(conn, caller.call_sid)

    def advance(self, call_sid: str, step: int | None, event: engine.Input) -> str:
        """An input for a call in progress, answering step `step` of it."""
        with self.db.connect() as conn:
            row = store.load_call(conn, call_sid=call_sid)
            if row is None:
                log.warning("input for unknown call %s: handing it to an agent", call_sid)
                return self.fallback()
            if step != row.step:
                # Twilio repeated an earlier request (or it came late): same answer, no count.
                return row.last_twiml
            tree = self.trees.get(row.tree_version, self.db)
            now = self.clock()
            result = engine.advance(
                tree, row.state, event, links=self.links, step=row.step + 1, now=now
            )
            saved = store.save_step(
                conn,
                call_sid=call_sid,
                expected_step=row.step,
                state=result.state,
                twiml=result.twiml,
                log=result.log,
                now=now,
            )
            return result.twiml if saved else self._answer_again(conn, call_sid)

    def _answer_again(self, conn: Connection, call_sid: str) -> str:
        """A concurrent copy of this request won the write: send what it sent."""
        row = store.load_call(conn, call_sid=call_sid)
        return row.last_twiml if row is not None else self.fallback()

    def status(
        self, call_sid: str, status: str, *, duration: int | None, sequence: int | None
    ) -> bool:
        with self.db.connect() as conn:
            return store.record_status(
                conn,
                call_sid=call_sid,
                status=status,
                duration_seconds=duration,
                sequence=sequence,
                now=self.clock(),
            )

    def hold(self, language: str) -> str:
        """The queue hold loop; from memory, no database."""
        catalogs = self.trees.current.catalogs
        lang = language if language in catalogs.by_language else catalogs.languages[0]
        return engine.hold_twiml(catalogs, lang, self.settings.hold_music_url_str)

    def fallback(self) -> str:
        """For when anything failed: from memory alone, apologise and queue for an agent."""
        return engine.fallback_twiml(
            self.trees.current.catalogs, self.links, self.settings.fallback_queue
        )

    def close_stale_calls(self) -> int:
        with self.db.connect() as conn:
            return store.close_stale_calls(
                conn,
                now=self.clock(),
                max_age=timedelta(seconds=self.settings.call_max_age_seconds),
            )

    def record_tree(self, loaded_by: str) -> None:
        with self.db.connect() as conn:
            store.store_tree_version(
                conn, tree=self.trees.current, loaded_by=loaded_by, now=self.clock()
            )
