"""The tree's Twilio queues are made to hold 5,000 callers, not Twilio's 1,000 (or 100)."""

from __future__ import annotations

from twilio.rest import Client as TwilioClient

from ivr.queues import TWILIO_MAX_QUEUE_SIZE, size_queues
from tests.conftest import TOKEN, RecordingTwilio


def queue(name: str, size: int, n: int) -> dict[str, object]:
    return {"sid": f"QU{n:032x}", "friendly_name": name, "max_size": size, "current_size": 0}


def test_small_queues_are_resized_missing_ones_made_and_others_left_alone() -> None:
    twilio = RecordingTwilio()
    twilio.queue_page = 2  # the tree's queues on the second page are found too
    twilio.queues = [
        queue("someone else's", 100, 1),
        queue("security", 100, 2),
        queue("general", 5000, 3),
        queue("payments", 1000, 4),
    ]
    client = TwilioClient("AC" + "0" * 32, TOKEN, http_client=twilio)
    done = size_queues(client, ["security", "general", "payments", "kyc", "security"])
    assert done == [
        "security: held 100 callers, now 5000",
        "general: holds 5000 callers",
        "payments: held 1000 callers, now 5000",
        "kyc: made, to hold 5000 callers",
    ]
    writes = [
        (url.rsplit("/", 1)[-1], form) for method, url, form in twilio.requests if method == "POST"
    ]
    assert writes == [
        (f"QU{2:032x}.json", {"MaxSize": TWILIO_MAX_QUEUE_SIZE}),
        (f"QU{4:032x}.json", {"MaxSize": TWILIO_MAX_QUEUE_SIZE}),
        ("Queues.json", {"FriendlyName": "kyc", "MaxSize": TWILIO_MAX_QUEUE_SIZE}),
    ]
