"""The Twilio-like phone itself: it must behave like Twilio, or scenario tests lie."""

from __future__ import annotations

import pytest

from ivr.phone import HangUp, Press, Silent, Speak, keypad, parse_script


@pytest.mark.parametrize(
    ("pressed", "finish", "num", "expected"),
    [
        ("1", "#", 1, ("1", "")),
        ("#", "#", 1, ("", "#")),  # Twilio's default finish key swallows '#'
        ("#", "", 1, ("#", "")),  # with finishOnKey="" it is a digit like any other
        ("123#", "#", None, ("123", "#")),
        ("12345", "#", 3, ("123", "")),
        ("*", "#", 1, ("*", "")),
    ],
)
def test_keypad_matches_twilio_gather(
    pressed: str, finish: str, num: int | None, expected: tuple[str, str]
) -> None:
    assert keypad(pressed, finish, num) == expected


def test_parse_script() -> None:
    assert parse_script("1, -,say:my account was hacked,#,") == [
        Press("1"),
        Silent(),
        Speak("my account was hacked"),
        Press("#"),
        Silent(),
    ]
    with pytest.raises(ValueError, match="'x' is not keys"):
        parse_script("1,x")
    assert HangUp() == HangUp()
