"""The hotline with its Twilio REST client on a recording transport, and a phone to it: what
the on-call and ticket-text tests start from; and what the hotline asked Twilio for."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from twilio.rest import Client as TwilioClient

from ivr.phone import Phone
from ivr.tree import CompiledTree
from ivr.web import create_app
from tests.conftest import (
    HTTPS_CLIENT,
    PUBLIC_URL,
    TOKEN,
    FakeClock,
    RecordingTwilio,
    make_settings,
    redirected,
)

ACCOUNT = "AC" + "0" * 32


def app_with_twilio(
    database_url: str,
    tree: CompiledTree,
    db: Engine,
    clock: FakeClock,
    twilio: RecordingTwilio,
    **settings: object,
) -> FastAPI:
    """The app with TWILIO_ACCOUNT_SID and `settings`, its REST client on `twilio`."""
    values: dict[str, object] = {
        "IVR_DATABASE_URL": database_url,
        "TWILIO_ACCOUNT_SID": ACCOUNT,
        **settings,
    }
    client = TwilioClient(ACCOUNT, TOKEN, http_client=twilio)
    return create_app(make_settings(**values), tree=tree, db=db, clock=clock, twilio=client)


@contextmanager
def on_the_line(
    app: FastAPI, check_twiml: Callable[[str], None], twilio: RecordingTwilio | None = None
) -> Iterator[tuple[TestClient, Phone]]:
    """The app running (its timed jobs too), and a phone that calls it as Twilio would (and
    follows the redirects the app asked `twilio` for, if given)."""
    with TestClient(app, base_url=HTTPS_CLIENT) as client:
        yield (
            client,
            Phone(
                client,
                public_url=PUBLIC_URL,
                auth_token=TOKEN,
                check_twiml=check_twiml,
                redirected=redirected(twilio) if twilio is not None else None,
                clock=app.state.hotline.clock,
            ),
        )


def texts(twilio: RecordingTwilio) -> list[dict[str, str]]:
    """The SMS the hotline asked Twilio to send, in order."""
    return [data for _, url, data in twilio.requests if url.endswith("/Messages.json")]


def placed_calls(twilio: RecordingTwilio) -> list[dict[str, str]]:
    """The calls the hotline asked Twilio to place, in order: each as Twilio was given it."""
    return [
        data
        for method, url, data in twilio.requests
        if method == "POST" and url.endswith("/Calls.json")
    ]
