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
    """A caller who holds while `on_hold(poll)` says so, and whose call with an agent's phone
    ends as `on_dial(number)` says (what the agent does while they talk, first)."""

    def __init__(
        self, answers: list[Any], on_hold: Callable[[int], bool], on_dial: Callable[[str], str]
    ) -> None:
        super().__init__(answers, on_hold)
        self.on_dial = on_dial

    def dial_outcome(self, number: str) -> str:
        return self.on_dial(number)
