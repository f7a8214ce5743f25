"""Calling numbers: which one can call back, and which the caller withheld.

Twilio posts a withheld caller ID as `anonymous` in From (since May 2023). Before that, and
still on some older setups, as a word spelled on a phone keypad: +266696687 is ANONYMOUS,
+7378742833 RESTRICTED, and so on. None of them is anyone's number: dialling one fails, and
one count of failed guesses for all of them would be one bucket every withheld caller shares.
"""

from __future__ import annotations

import re

import phonenumbers

_KEYPAD = {
    letter: digit
    for digit, letters in {
        "2": "ABC",
        "3": "DEF",
        "4": "GHI",
        "5": "JKL",
        "6": "MNO",
        "7": "PQRS",
        "8": "TUV",
        "9": "WXYZ",
    }.items()
    for letter in letters
}
_WORDS = ("ANONYMOUS", "RESTRICTED", "BLOCKED", "UNKNOWN", "UNAVAILABLE", "PRIVATE", "WITHHELD")
WITHHELD = frozenset(
    {word.lower() for word in _WORDS} | {"+" + "".join(_KEYPAD[c] for c in word) for word in _WORDS}
)
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def withheld(number: str | None) -> bool:
    """No caller ID: none at all, or one of the words (or keypad spellings) that say so."""
    return not number or number.strip().lower() in WITHHELD


def dialable(number: str | None) -> bool:
    """A number a call back can be placed to: E.164, and not a withheld caller ID."""
    return number is not None and not withheld(number) and E164.match(number) is not None


def last4(number: str | None) -> str:
    digits = "".join(c for c in number or "" if c.isdigit())
    return digits[-4:]


def keyed(digits: str, prefixes: tuple[str, ...] = ()) -> str | None:
    """The number a caller keyed to be called back on, with its country code (`00` before
    it, as many countries dial abroad, is dropped), as E.164; None if it cannot be one, or
    does not start with one of `prefixes` (country codes; none: any).

    A number too long or too short for its country (libphonenumber's lengths: ten digits
    after +1, say) is a slip of the finger: the caller is asked again, rather than waiting
    for a call back that cannot reach them. Whether the range is assigned yet is not asked:
    the library may lag a country's new ranges, and a real number refused is worse."""
    digits = digits.strip().removesuffix("#")
    if digits.startswith("00"):
        digits = digits[2:]
    number = "+" + digits
    # 8 digits at least: no short or emergency numbers (110, 911) from a keypad.
    if not (digits.isdigit() and len(digits) >= 8 and dialable(number)):
        return None
    try:
        possible = phonenumbers.is_possible_number(phonenumbers.parse(number))
    except phonenumbers.NumberParseException:
        possible = False
    if not possible:
        return None
    return number if within(number, prefixes) else None


def within(number: str, prefixes: tuple[str, ...]) -> bool:
    """Whether `number` starts with one of `prefixes` (country codes; none: any number)."""
    return not prefixes or number.startswith(prefixes)
