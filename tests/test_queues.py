"""The tree's Twilio queues are made to hold 5,000 callers, not Twilio's 1,000 (or 100)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from twilio.rest import Client as TwilioClient

from ivr.queues import TWILIO_MAX_QUEUE_SIZE, size_queues
from ivr.settings import PROJECT_ROOT
from ivr.tree import CompiledTree, load_tree
from ivr.web import create_app
from tests.conftest import (
    HTTPS_CLIENT,
    TOKEN,
    FakeClock,
    RecordingTwilio,
    eventually,
    make_settings,
)
from tests.support.twilio import ACCOUNT, app_with_twilio


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


def made(twilio: RecordingTwilio) -> list[str]:
    return [
        form["FriendlyName"]
        for method, url, form in twilio.requests
        if method == "POST" and url.endswith("/Queues.json")
    ]


def test_a_queue_a_reload_adds_is_sized_and_the_others_not_again(
    tmp_path: Path, database_url: str, hotline_tree: CompiledTree, db: Engine, clock: FakeClock
) -> None:
    """`ivr serve` sized the tree's queues; an operator adds a payments line for Europe
    and reloads: the job makes that one queue hold 5,000, once, and asks nothing else."""
    twilio = RecordingTwilio()
    app = app_with_twilio(database_url, hotline_tree, db, clock, twilio)
    hotline = app.state.hotline
    assert hotline.size_queues() == [] and twilio.requests == []
    routes = tmp_path / "hotline.yaml"
    source = (PROJECT_ROOT / "routes" / "hotline.yaml").read_text()
    routes.write_text(source.replace("queue: payments\n", "queue: payments_eu\n", 1))
    hotline.activate(load_tree(routes, PROJECT_ROOT / "prompts"), by="test")
    assert hotline.size_queues() == [f"payments_eu: made, to hold {TWILIO_MAX_QUEUE_SIZE} callers"]
    assert made(twilio) == ["payments_eu"]
    assert hotline.size_queues() == [] and made(twilio) == ["payments_eu"]


def test_queues_twilio_failed_to_size_at_start_are_sized_by_the_running_app(
    database_url: str, hotline_tree: CompiledTree, db: Engine, clock: FakeClock
) -> None:
    """Twilio failed `ivr serve`'s sizing (`queues_sized=False`): the app's job tries every
    IVR_TREE_SYNC seconds, through Twilio's refusals, until every queue is made."""
    twilio = RecordingTwilio()
    twilio.refuse = True
    settings = make_settings(
        IVR_DATABASE_URL=database_url, TWILIO_ACCOUNT_SID=ACCOUNT, IVR_TREE_SYNC=0.05
    )
    client = TwilioClient(ACCOUNT, TOKEN, http_client=twilio)
    app = create_app(
        settings, tree=hotline_tree, db=db, clock=clock, twilio=client, queues_sized=False
    )
    with TestClient(app, base_url=HTTPS_CLIENT):
        eventually(lambda: len(twilio.requests) >= 2)  # refused, and asked again
        twilio.refuse = False
        eventually(lambda: app.state.hotline.sized_queues >= {*hotline_tree.queues, "general"})
    assert sorted(made(twilio)) == sorted({*hotline_tree.queues, settings.fallback_queue})
