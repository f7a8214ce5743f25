"""The one Settings class refuses what would make the hotline insecure."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.conftest import TOKEN, make_settings


@pytest.mark.parametrize(
    "token",
    [
        "changeme",
        "your_auth_token",
        "your_auth_token_here",
        "x" * 32,
        "0" * 32,
        "changemechangemechangemechangeme",
        TOKEN[:31],  # one digit short: pasted in part
        TOKEN + "0",
    ],
)
def test_a_placeholder_auth_token_is_refused(token: str) -> None:
    """Twilio would sign every real request with the real token and get 403 for each: a
    hotline that starts on a placeholder answers no caller, and says so only in its log."""
    with pytest.raises(ValidationError, match="32 hexadecimal digits"):
        make_settings(TWILIO_AUTH_TOKEN=token)


def test_a_real_looking_auth_token_is_taken_trimmed() -> None:
    assert make_settings(TWILIO_AUTH_TOKEN=f" {TOKEN}\n").twilio_auth_token == TOKEN


@pytest.mark.parametrize("days", ["0", "-1", "366"])
def test_a_token_lifetime_of_none_or_over_a_year_is_refused(days: str) -> None:
    """A token copied once must stop working some day: no "never", and no decade."""
    with pytest.raises(ValidationError, match="IVR_TOKEN_DAYS"):
        make_settings(IVR_TOKEN_DAYS=days)
    assert make_settings().token_days == 90
