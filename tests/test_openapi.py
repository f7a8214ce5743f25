"""The JSON API against its own OpenAPI schema (schemathesis, in-process over ASGI).

Every /api/* operation is called with generated requests, schema-valid and not, under a valid
token of a role the operation is for, on a database with real calls, cases and tree versions
in it. Each response must be documented (status code, content type, headers) and match its
schema; a schema-violating request must be refused with a 4xx; no request may end in a 5xx.
Deterministic: hypothesis is derandomized and keeps no example database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy import Engine, delete

from ivr.db import verification_failures
from ivr.phone import Phone, Press, ScriptedParty
from ivr.tree import CompiledTree
from ivr.web import create_app
from tests.conftest import FakeClock, bearer, make_settings, make_user

EXAMPLES = 10
# A reload takes the whole tree file through every check (~0.4 s) and has no parameters.
FEWER = {"/api/routes/reload": 3}

# Which role each operation is tried with (the first role it is for).
ROLE = {
    "/api/queue": "supervisor",
    "/api/staffing": "supervisor",
    "/api/agents/next": "agent",
    "/api/agents/presence": "agent",
    "/api/agents/{name}/away": "supervisor",
    "/api/agents/{name}/languages": "supervisor",
    "/api/agents": "supervisor",
    "/api/agents/cases": "agent",
    "/api/cases/held": "supervisor",
    "/api/announcement": "supervisor",
    "/api/cases/{case_id}/accept": "agent",
    "/api/cases/{case_id}/freeze": "agent",
    "/api/cases/{case_id}/resolve": "agent",
    "/api/cases/{case_id}/notes": "agent",
    "/api/cases/{case_id}/requeue": "agent",
    "/api/cases/{case_id}/not-reached": "agent",
    "/api/cases/{case_id}/transfer": "agent",
    "/api/cases/{case_id}/priority": "supervisor",
    "/api/freezes": "supervisor",
    "/api/audit": "supervisor",
    "/api/audit.csv": "supervisor",
    "/api/calls": "supervisor",
    "/api/calls.csv": "agent",
    "/api/calls/{call_sid}": "supervisor",
    "/api/routes/reload": "operator",
    "/api/routes/versions": "supervisor",
    "/api/routes/rollback": "operator",
    "/api/stats": "agent",
    "/api/stats/intervals": "supervisor",
    "/api/stats/intervals.csv": "supervisor",
    "/api/oncall/pages": "supervisor",
    "/api/oncall/pages/{page_id}/ack": "supervisor",
    "/api/recordings/{recording_sid}": "supervisor",
}
# Values that are schema-valid but cannot go together, refused with 422 on purpose: a cursor
# this API did not make, `since` after `until`, an announcement missing a language the live
# call tree offers, an agent's language no prompt catalog speaks, a transfer to a queue the
# live tree does not have, a period of more intervals than one answer holds, a note holding a
# run of digits that may be a caller's PIN or code, or only spaces. The schema cannot
# say so; every other check still runs for these.
SEMANTIC_422 = {
    "/api/calls",
    "/api/stats",
    "/api/stats/intervals",
    "/api/stats/intervals.csv",
    "/api/announcement",
    "/api/agents/{name}/languages",
    "/api/cases/{case_id}/transfer",
    "/api/cases/{case_id}/priority",
    "/api/cases/{case_id}/notes",
    "/api/freezes",
    "/api/audit",
    "/api/audit.csv",
}


@pytest.fixture
def app(database_url: str, hotline_tree: CompiledTree, db: Engine, clock: FakeClock) -> FastAPI:
    """The app with its schema served (off by default on an https public URL), to read."""
    served = make_settings(IVR_DATABASE_URL=database_url, IVR_API_DOCS=True)
    return create_app(served, tree=hotline_tree, db=db, clock=clock)


@pytest.fixture
def seeded(phone: Phone, app: FastAPI, clock: FakeClock) -> None:
    """Calls of every shape in the log: an emergency (a case), a queued caller, a hang-up, a
    victim who hung up on the way; and a page of the on-call about the emergency."""
    phone.call(ScriptedParty([Press("1"), Press("1"), Press("*")]), from_number="+15005550101")
    phone.call(
        ScriptedParty([Press("1"), Press("3"), Press("1"), Press("1")], hold_polls=1),
        from_number="+15005550102",
    )
    phone.call(ScriptedParty([Press("2")]), from_number="+15005550103")
    # A victim who hung up at the UID prompt, on the way to the emergency queue.
    phone.call(ScriptedParty([Press("1"), Press("1")]), from_number="+15005550104")
    # The emergency left waiting: the on-call paged (logged: no numbers here).
    clock.advance(minutes=2)
    assert app.state.hotline.page_on_call() is not None


def conformance_test(
    db: Engine, operation: Any, headers: dict[str, str], excluded: list[Any]
) -> Callable[[], None]:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=FEWER.get(operation.path, EXAMPLES),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def conforms(case: Any) -> None:
        # The auth check sends wrong tokens on purpose; start each example unthrottled.
        with db.begin() as conn:
            conn.execute(delete(verification_failures).where(verification_failures.c.uid.is_(None)))
        case.call_and_validate(headers=headers, excluded_checks=excluded)

    return conforms


def test_every_api_operation_conforms_to_its_schema(app: FastAPI, db: Engine, seeded: None) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    tokens = {role: make_user(db, f"st-{role}", role) for role in set(ROLE.values())}
    tried: set[str] = set()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith("/api/"):
            continue
        assert operation.path in ROLE, f"a new operation needs a role here: {operation.path}"
        tried.add(operation.path)
        headers = bearer(tokens[ROLE[operation.path]])
        excluded = [positive_data_acceptance] if operation.path in SEMANTIC_422 else []

        try:
            conformance_test(db, operation, headers, excluded)()
        except Exception as exc:  # collect every operation's findings, then fail once
            failures.append(f"{operation.method.upper()} {operation.path}:\n{exc}")
    assert tried == set(ROLE), "operations missing from the schema"
    assert not failures, "\n\n".join(failures)
