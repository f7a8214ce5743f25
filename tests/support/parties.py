"""Callers for the Twilio-like driver (`ivr.phone.Phone`) that tests script."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ivr.phone import ScriptedParty


class Caller(ScriptedParty):
    """A scripted caller: keys `answers` (a copy: a party uses its answers up), then holds in
    the queue while `on_hold(poll)` says so."""

    def __init__(self, answers: list[Any], on_hold: Callable[[int], bool]) -> None:
        super().__init__(list(answers))
        self.on_hold = on_hold

    def keep_holding(self, queue: str, polls: int) -> bool:
        return self.on_hold(polls)


class Talks(Caller):
    """A caller who holds while `on_hold(poll)` says so, and who, put through to an agent's
    phone, talks as `on_talk(number)` says (what the agent does meanwhile; HangsUp: the
    caller hangs up first). Then the agent hangs up."""

    def __init__(
        self, answers: list[Any], on_hold: Callable[[int], bool], on_talk: Callable[[str], Any]
    ) -> None:
        super().__init__(answers, on_hold)
        self.on_talk = on_talk

    def talk(self, number: str) -> None:
        self.on_talk(number)
