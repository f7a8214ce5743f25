"""Errors the hotline raises on purpose.

    IVRError
     ├── ConfigError       settings refused at start-up (missing secret, insecure value)
     ├── SourceError       an operator's file (call tree or prompt catalog) is refused;
     │                     carries every Problem found, each with file, line and node path
     ├── IdentityUnavailable  the exchange's identity service gave no verdict (down, slow,
     │                     an error): the caller is neither verified nor counted as wrong
     ├── NoSuchAccount     the account service has no account of that UID: nothing to freeze
     └── PhoneError        the Twilio-like phone got something Twilio would not accept
                           (a non-2xx answer, a document that is not TwiML)

Anything else escaping is a bug. Web routes turn none of these into a 500: a bad
webhook is answered with 403/422 or with safe TwiML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


class IVRError(Exception):
    """Base class for every error this package raises on purpose."""


class ConfigError(IVRError):
    """A setting is missing or refused."""


@dataclass(frozen=True)
class Problem:
    """One finding about an operator's file: an error refuses the file, a warning does not."""

    file: str
    line: int | None
    path: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        node = f" {self.path}:" if self.path else ""
        return f"{where}: {self.severity}:{node} {self.message}"


class SourceError(IVRError):
    """An operator's file is refused; `problems` lists every error (and warning) found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        super().__init__("\n".join(str(p) for p in errors) or "refused")


class IdentityUnavailable(IVRError):
    """The identity service could not say whether a factor matches: not a wrong answer."""


class NoSuchAccount(IVRError):
    """The account service knows no account of the UID (the directory has no row of it; the
    exchange's endpoint answered 404): a UID keyed or typed wrong, not an outage."""

    def __init__(self, uid: str) -> None:
        self.uid = uid
        super().__init__(f"no such account {uid}")


class PhoneError(IVRError):
    """The server answered the phone with something Twilio would reject."""
