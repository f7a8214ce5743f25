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


def keyed(digits: str, prefixes: tuple[str, ...] = (), home: str | None = None) -> str | None:
    """The number a caller keyed to be called back on, with its country code (`00` before
    it, as many countries dial abroad, is dropped), as E.164; None if it cannot be one, or
    does not start with one of `prefixes` (country codes; none: any).

    A number too long or too short for its country (libphonenumber's lengths: ten digits
    after +1, say) is a slip of the finger: the caller is asked again, rather than waiting
    for a call back that cannot reach them. Whether the range is assigned yet is not asked:
    the library may lag a country's new ranges, and a real number refused is worse. But a
    caller keys the number they know, often without its country code: `home` (the country
    code of the caller's language, "+86") is put before digits that make no valid number
    as they are and a valid mobile after it (13800138000 is a Chinese mobile, not +1 380...)."""
    digits = digits.strip().removesuffix("#")
    if digits.startswith("00"):
        digits = digits[2:]
    national = _at_home(digits, home) if home else None
    if national is not None and not _valid("+" + digits):
        return national if within(national, prefixes) else None
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


def _valid(number: str) -> bool:
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(number)))
    except phonenumbers.NumberParseException:
        return False


def _at_home(digits: str, home: str) -> str | None:
    """`digits` as a valid mobile number of the country whose calling code is `home`, as
    E.164. Mobiles only: a number from abroad keyed without its own country code (a US
    4155550123 on a Mandarin call) can be a valid landline at home too, and a stranger
    would be called; a mobile's own pattern (China's 1[3-9] and 11 digits) is telling."""
    region = _region(home)
    if not digits.isdigit() or region is None:
        return None
    try:
        parsed = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return None
    mobile = (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    )
    if not phonenumbers.is_valid_number(parsed) or phonenumbers.number_type(parsed) not in mobile:
        return None
    number = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return number if dialable(number) else None


def within(number: str, prefixes: tuple[str, ...]) -> bool:
    """Whether `number` starts with one of `prefixes` (country codes; none: any number)."""
    return not prefixes or number.startswith(prefixes)


# Numbers Twilio is never made to dial on a caller ID's say-so (caller IDs are spoofed at
# will): a premium-rate or shared-cost line, a "universal access" number, a pager or a
# voicemail access number, or one of no known kind, would cost the exchange; so would one
# of no country (+870, +881, +882, +883: satellite and international networks, where toll
# fraud dials), or a personal number outside North America (the UK's 070 numbers cost as
# much as premium rate; NANP's 5XX ones, among them Twilio's test numbers, are billed as
# ordinary ones).
_COSTLY = frozenset(
    {
        phonenumbers.PhoneNumberType.PREMIUM_RATE,
        phonenumbers.PhoneNumberType.SHARED_COST,
        phonenumbers.PhoneNumberType.UAN,
        phonenumbers.PhoneNumberType.PAGER,
        phonenumbers.PhoneNumberType.VOICEMAIL,
        phonenumbers.PhoneNumberType.UNKNOWN,
    }
)


def callable_by_twilio(number: str, prefixes: tuple[str, ...]) -> bool:
    """Whether Twilio may call `number` back by itself: within IVR_CALLBACK_PREFIXES, a valid
    number, and none of those above that cost its caller. Any other is dialled by an agent,
    who sees it first."""
    if not within(number, prefixes):
        return False
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        return False
    kind = phonenumbers.number_type(parsed)
    personal = kind == phonenumbers.PhoneNumberType.PERSONAL_NUMBER and parsed.country_code != 1
    return (
        phonenumbers.is_valid_number(parsed)
        and kind not in _COSTLY
        and not personal
        and phonenumbers.region_code_for_number(parsed)
        not in (phonenumbers.UNKNOWN_REGION, phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY)
    )


SHORT_CODE = re.compile(r"^[0-9]{3,8}$")


def country_code(number: str | None) -> str | None:
    """A calling number's country calling code ("+86"), if it is a number at all."""
    if withheld(number) or number is None or not E164.match(number):
        return None
    try:
        code = phonenumbers.parse(number).country_code
    except phonenumbers.NumberParseException:
        return None
    return f"+{code}" if code else None


def mainland_sms_sender(digits: str) -> str | None:
    """A mainland China SMS sender's number (106 and more digits, keyed with or without 86):
    how the exchange's texts, and fake ones, reach Chinese phones. No phone number, but the
    short code a text came from, for a caller asking "was that text yours?". From 11 digits:
    +86 10 69.. is a Beijing landline, 10 digits keyed without the 86 (nor its 0)."""
    number = digits.removeprefix("0086").removeprefix("86") if len(digits) >= 13 else digits
    if number.startswith("106") and 11 <= len(number) <= 20 and number.isdigit():
        return number
    return None


def readings(digits: str, caller: str | None = None) -> list[str]:
    """The numbers a caller may have meant by keying `digits` at "which number contacted
    you?": E.164 numbers, the likelier first, and the digits as they are, which a short code
    (a text from a 5- or 6-digit sender) is. Empty: nothing a number could be.

    The prompt asks for the country code, but a frightened caller keys the number as it was
    shown to them, often without it: a number of the caller's own country is read both ways
    ("13800138000" keyed on a +86 phone is a Chinese mobile, and also a possible +1 number),
    and a valid number before one that is only of a possible length."""
    digits = digits.strip().removesuffix("#")
    sender = mainland_sms_sender(digits)
    if sender is not None:
        return [sender]
    # Fewer than 8 digits is no phone number anyone is called from, and may be a secret keyed
    # at the wrong prompt (a PIN, a code): never read as one, nor kept. A short code is
    # matched by the caller of this against the listed ones, as it is.
    if not digits.isdigit() or len(digits) > 17:
        return []
    if len(digits) < 8:
        return [digits] if SHORT_CODE.match(digits) else []
    found: list[tuple[bool, str]] = []
    international = digits[2:] if digits.startswith("00") else digits
    tries: list[tuple[str, str | None]] = [("+" + international, None)]
    region = _region(country_code(caller))
    if region is not None:
        tries.insert(0, (digits, region))
    for text, region_of in tries:
        try:
            parsed = phonenumbers.parse(text, region_of)
        except phonenumbers.NumberParseException:
            continue
        if not phonenumbers.is_possible_number(parsed):
            continue
        number = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        if E164.match(number) and all(number != n for _, n in found):
            found.append((not phonenumbers.is_valid_number(parsed), number))
    ordered = [number for _, number in sorted(found, key=lambda pair: pair[0])]
    if SHORT_CODE.match(digits):  # 8 digits: a short code too, in some countries
        ordered.append(digits)
    return ordered


def _region(code: str | None) -> str | None:
    """The country (ISO code) a country calling code ("+86") is the main one of, if any. By
    the code, not the number's own range: one the library does not know (new, or a test
    range) still tells the country."""
    if not code:
        return None
    region = phonenumbers.region_code_for_country_code(int(code.lstrip("+")))
    return region if region and region != "ZZ" else None
