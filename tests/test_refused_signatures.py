"""A webhook refused for its signature, as the log tells an operator about it."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from tests.conftest import PUBLIC_URL, TOKEN, first_request


def test_a_refused_signature_logs_the_url_it_was_checked_against(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Twilio signs the URL its console has; the hotline checks IVR_PUBLIC_URL + path + query.
    Here the proxy serves the hotline under /hotline/ and IVR_PUBLIC_URL lacks the prefix:
    every webhook is refused, and only the URL checked, beside the console's, shows why."""
    params = first_request()
    signed = f"{PUBLIC_URL}/hotline/twilio/voice?lang=en"  # as configured in Twilio's console
    signature = RequestValidator(TOKEN).compute_signature(signed, params)
    with caplog.at_level(logging.WARNING, logger="ivr.web"):
        response = client.post(
            "/twilio/voice?lang=en", data=params, headers={"X-Twilio-Signature": signature}
        )
    assert response.status_code == 403
    [refused] = [r.getMessage() for r in caplog.records if r.name == "ivr.web"]
    assert refused == (
        "refused unsigned or mis-signed request to /twilio/voice "
        f"(signature checked against {PUBLIC_URL}/twilio/voice?lang=en)"
    )
    assert TOKEN not in caplog.text
