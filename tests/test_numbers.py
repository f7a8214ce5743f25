"""Withheld caller IDs and numbers one can call back."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ivr.numbers import dialable, keyed, last4, readings, withheld
from tests.conftest import make_settings

# What Twilio has posted in From for a caller who withheld their number: the word (today),
# or the word spelled on a keypad (before May 2023).
WITHHELD = [
    "anonymous",
    "Anonymous",
    "+266696687",  # ANONYMOUS
    "+7378742833",  # RESTRICTED
    "+2562533",  # BLOCKED
    "+8656696",  # UNKNOWN
    "+86282452253",  # UNAVAILABLE
    "",
    None,
]


@pytest.mark.parametrize("number", WITHHELD)
def test_a_withheld_caller_id_is_nobodys_number(number: str | None) -> None:
    assert withheld(number)
    assert not dialable(number)


@pytest.mark.parametrize("number", ["+15005550006", "+8613800138000", "+447700900123"])
def test_an_e164_number_can_be_called_back(number: str) -> None:
    assert not withheld(number)
    assert dialable(number)


@pytest.mark.parametrize("number", ["client:alice", "sip:bob@example.com", "5005550006", "+0123"])
def test_what_is_not_an_e164_number_is_not_dialled_nor_withheld(number: str) -> None:
    assert not dialable(number)
    assert not withheld(number)  # a caller of its own: counted on its own


def test_last4() -> None:
    assert last4("+1 (500) 555-0006") == "0006"
    assert last4(None) == ""


@pytest.mark.parametrize(
    ("digits", "number"),
    [
        ("8613800138000", "+8613800138000"),  # China, with its country code
        ("008613800138000#", "+8613800138000"),  # 00 first, as dialled abroad from China
        ("447700900123", "+447700900123"),
        ("911", None),  # too short: no emergency or service numbers from a keypad
        ("1234567", None),
        ("0613800138000", None),  # a national number, without its country code
        ("12345678901234567", None),  # longer than E.164 allows
        ("1415555012", None),  # a digit short: ten after +1
        ("141555501234", None),  # a digit over
        ("33612345678", "+33612345678"),  # France: nine digits after +33
        ("336123456789", None),  # ten
        ("3361234567", None),  # eight
        ("999123456789", None),  # no country has code 999
        ("86*138", None),
        ("", None),
    ],
)
def test_a_keyed_number_is_one_we_can_call_or_none(digits: str, number: str | None) -> None:
    assert keyed(digits) == number


@pytest.mark.parametrize(
    ("digits", "number"),
    [
        # Keyed without 86 by a Mandarin caller: no valid +1 number, a valid Chinese mobile.
        ("13800138000", "+8613800138000"),
        ("8613800138000", "+8613800138000"),  # with it, as asked
        ("14155550100", "+14155550100"),  # a valid number as keyed stays as keyed
        ("1380013800", None),  # a digit short either way: asked again
        # A US number keyed without its 1 on a Mandarin call: a valid Chinese landline too,
        # but no mobile: not called in China; asked again, as before.
        ("4155550123", None),
    ],
)
def test_a_number_keyed_without_its_country_code_is_read_in_the_callers_language_country(
    digits: str, number: str | None
) -> None:
    assert keyed(digits, home="+86") == number
    assert keyed(digits, ("+1",), home="+86") == (
        number if number and number.startswith("+1") else None
    )


def test_keyed_numbers_may_be_held_to_some_country_codes() -> None:
    """IVR_CALLBACK_PREFIXES: a number abroad, where a premium-rate line would cost the
    exchange, is not called back on a caller's say-so."""
    only = ("+86", "+1")
    assert keyed("8613800138000", only) == "+8613800138000"
    assert keyed("14155550123", only) == "+14155550123"
    assert keyed("447700900123", only) is None
    assert keyed("447700900123") == "+447700900123"  # none set: any


def test_call_back_country_codes_are_checked_at_start() -> None:
    assert make_settings(IVR_CALLBACK_PREFIXES=" +86, +1 ").callback_prefixes == ("+86", "+1")
    with pytest.raises(ValidationError, match="not country codes"):
        make_settings(IVR_CALLBACK_PREFIXES="86,+1")


@pytest.mark.parametrize(
    ("digits", "caller", "read"),
    [
        # With the country code, as asked; "00" before it as dialled abroad.
        ("8613800138000", "+14155550123", ["+8613800138000"]),
        ("008613800138000#", "+14155550123", ["+8613800138000"]),
        # Without it, as the number was shown: the caller's own country first (a valid
        # Chinese mobile), the other reading after (+1 380..., only of a possible length).
        ("13800138000", "+8613912345678", ["+8613800138000", "+13800138000"]),
        ("4155550100", "+14155550123", ["+14155550100"]),
        ("0612345678", "+33612345678", ["+33612345678"]),
        # A caller in a range the library does not know still has a country (UK drama).
        ("01632960001", "+441632960123", ["+441632960001"]),
        # A withheld caller ID has no country: the international reading only.
        ("8613800138000", "anonymous", ["+8613800138000"]),
        # Short codes, as they are; a short code is never a phone number.
        ("55501", "+14155550123", ["55501"]),
        ("106", None, ["106"]),
        # A mainland SMS sender (106...), with or without 86 and 0086: as keyed, no phone
        # number; but a Beijing landline (+86 10 69..) is one.
        ("1069012345678", "+8613912345678", ["1069012345678"]),
        ("861069012345678#", "+14155550123", ["1069012345678"]),
        ("00861069012345678", "+14155550123", ["1069012345678"]),
        ("10690000202012345678", "+8613912345678", ["10690000202012345678"]),
        ("861069123456", "+14155550123", ["+861069123456"]),
        ("1069123456", "+8613912345678", ["+861069123456"]),
        # Nothing a number could be.
        ("", "+14155550123", []),
        ("12", "+14155550123", []),
        ("12*4", "+14155550123", []),
        ("9" * 18, "+14155550123", []),
    ],
)
def test_a_number_keyed_to_be_checked_is_read_every_way_the_caller_may_have_meant(
    digits: str, caller: str | None, read: list[str]
) -> None:
    assert readings(digits, caller) == read
