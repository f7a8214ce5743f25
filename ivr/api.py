"""The agent-side JSON API. Bearer tokens (`ivr users add`); a wrong role gets 403, none 401.

GET  /api/queue                 waiting cases, in exactly the order agents get them
POST /api/agents/next           claim the next case and connect its caller
POST /api/cases/{id}/freeze     freeze the account (audited); never unfreeze by phone
POST /api/cases/{id}/resolve    close the case with notes
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from ivr.cases import waiting_cases
from ivr.deps import AgentUser, HotlineDep, StaffUser

router = APIRouter(prefix="/api", tags=["agents"])


def mask(number: str | None) -> str:
    """A caller's number as supervisors and queue lists see it: the last 4 digits only."""
    digits = "".join(c for c in number or "" if c.isdigit())
    return f"***{digits[-4:]}" if digits else ""


class QueueEntry(BaseModel):
    position: int
    case_id: int
    ticket: str
    priority: str
    reason: str
    queue: str
    status: str
    verified: str
    waiting_seconds: int
    caller: str


class Verification(BaseModel):
    result: str = Field(description="yes, no, skipped, locked or not_attempted")
    factors: list[str]


class CaseDetail(BaseModel):
    id: int
    ticket: str
    status: str
    priority: str
    reason: str
    queue: str
    account_uid: str | None
    caller: str | None
    verification: Verification
    risk: dict[str, str]
    freeze: dict[str, str]
    menu_path: list[str]
    parent_ticket: str | None
    callback_number: str | None
    notes: str | None
    created_at: datetime
    earlier_cases: list[dict[str, Any]]


class Connect(BaseModel):
    mode: str = Field(description="redirected, next_hold_poll, calling_back or call_back")
    number: str | None = None


class Claimed(BaseModel):
    case: CaseDetail | None
    connect: Connect | None


class FreezeRequest(BaseModel):
    reason: str = Field(min_length=3, max_length=500)


class FreezeResult(BaseModel):
    frozen: bool
    detail: str


class ResolveRequest(BaseModel):
    notes: str = Field(default="", max_length=5000)


def _detail(raw: dict[str, Any]) -> CaseDetail:
    flags = raw["flags"] or {}
    return CaseDetail(
        id=raw["id"],
        ticket=raw["ticket"],
        status=raw["status"],
        priority=raw["priority"],
        reason=raw["reason"],
        queue=raw["queue"],
        account_uid=raw["account_uid"],
        caller=raw["caller"],
        verification=Verification(
            result=flags.get("verified", "not_attempted"),
            factors=[f for f in flags.get("factors", "").split(",") if f],
        ),
        risk={k: flags[k] for k in ("caller_id_match", "stir_verstat") if flags.get(k)},
        freeze={k: flags[k] for k in ("self_freeze", "agent_freeze") if k in flags},
        menu_path=raw["menu_path"],
        parent_ticket=raw["parent_ticket"],
        callback_number=raw["callback_number"],
        notes=raw["notes"],
        created_at=raw["created_at"],
        earlier_cases=raw["earlier_cases"],
    )


@router.get("/queue")
def queue(user: StaffUser, hotline: HotlineDep) -> list[QueueEntry]:
    now = hotline.clock()
    with hotline.db.connect() as conn:
        rows = waiting_cases(conn)
    return [
        QueueEntry(
            position=i,
            case_id=r["id"],
            ticket=r["ticket"],
            priority=r["priority"],
            reason=r["reason"],
            queue=r["queue"],
            status=r["status"],
            verified=(r["flags"] or {}).get("verified", "not_attempted"),
            waiting_seconds=max(0, int((now - r["created_at"]).total_seconds())),
            caller=mask(r["caller"]),
        )
        for i, r in enumerate(rows, start=1)
    ]


@router.post("/agents/next")
def next_case(user: AgentUser, hotline: HotlineDep) -> Claimed:
    claimed = hotline.claim(user)
    if claimed is None:
        return Claimed(case=None, connect=None)
    case, connect = claimed
    detail = hotline.case_detail(case["id"])
    assert detail is not None
    return Claimed(case=_detail(detail), connect=Connect(**connect))


@router.post("/cases/{case_id}/freeze")
def freeze(case_id: int, body: FreezeRequest, user: AgentUser, hotline: HotlineDep) -> FreezeResult:
    done, why = hotline.freeze_case(case_id, user, body.reason)
    if why == "no such case":
        raise HTTPException(404, why)
    if not done and why.startswith("the caller gave no"):
        raise HTTPException(409, why)
    return FreezeResult(frozen=done, detail=why or "frozen")


@router.post("/cases/{case_id}/resolve")
def resolve(case_id: int, body: ResolveRequest, user: AgentUser, hotline: HotlineDep) -> CaseDetail:
    if not hotline.resolve_case(case_id, user, body.notes):
        raise HTTPException(404, "no such case")
    detail = hotline.case_detail(case_id)
    assert detail is not None
    return _detail(detail)
