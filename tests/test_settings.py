"""The one Settings class refuses what would make the hotline insecure."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ivr.exceptions import ConfigError
from ivr.settings import load_settings
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


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("IVR_PUBLIC_URL", "hotline.example.com", "such as https://hotline.example.com"),
        ("IVR_CALLER_ID", "5551234567", "a number in E.164, such as +15551234567"),
        ("IVR_PAGE_FROM", "call me", "or a Messaging Service SID (MG...)"),
        ("TWILIO_ACCOUNT_SID", "SK" + "0" * 32, "AC and 32 hexadecimal digits"),
    ],
)
def test_a_setting_of_the_wrong_form_is_refused_saying_what_to_type(
    name: str, value: str, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pydantic's words ("should match pattern '^\\+[1-9]...'", "relative URL without a
    base") say what failed to a developer; an operator reads what to type, with an example,
    and the line names only the variable, never "settings"."""
    for key, setting in {
        "TWILIO_AUTH_TOKEN": TOKEN,
        "IVR_PUBLIC_URL": "https://hotline.example.com",
        "IVR_SECRET_KEY": "",
        name: value,
    }.items():
        monkeypatch.setenv(key, setting)
    with pytest.raises(ConfigError) as refused:
        load_settings(_env_file=None)
    message = str(refused.value)
    assert message.startswith(f"refusing to start: {name} must be ") and said in message
    assert "pattern" not in message and "settings" not in message
