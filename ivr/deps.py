"""FastAPI dependencies shared by the webhook routes and the JSON API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from ivr.cases import User, user_by_token
from ivr.hotline import Hotline


async def get_hotline(request: Request) -> Hotline:
    # async: a sync dependency would take a worker thread just to read an attribute, and the
    # fallback URL must answer even when every thread waits on the database.
    hotline: Hotline = request.app.state.hotline
    return hotline


HotlineDep = Annotated[Hotline, Depends(get_hotline)]


def current_user(request: Request, hotline: HotlineDep) -> User:
    """The user behind `Authorization: Bearer <token>`, or 401."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    user = None
    if scheme.lower() == "bearer" and token.strip():
        with hotline.db.connect() as conn:
            user = user_by_token(conn, token=token.strip())
    if user is None:
        raise HTTPException(
            401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    return user


def require(*roles: str) -> Callable[[User], User]:
    def check(user: Annotated[User, Depends(current_user)]) -> User:
        if user.role not in roles:
            raise HTTPException(403, f"this needs the role {' or '.join(roles)}")
        return user

    return check


AgentUser = Annotated[User, Depends(require("agent"))]
StaffUser = Annotated[User, Depends(require("agent", "supervisor"))]
OperatorUser = Annotated[User, Depends(require("operator"))]
TreeReader = Annotated[User, Depends(require("operator", "supervisor"))]
