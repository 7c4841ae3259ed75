"""What every handler needs from a request: the control plane, the caller, selectors."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TypeVar

from fastapi import Request
from sqlalchemy.engine import Connection

from skylight.api.models import check_name
from skylight.controlplane import ControlPlane
from skylight.errors import Forbidden, InvalidRequest
from skylight.events.kinds import Actor, user_actor
from skylight.ids import parse_uuid

# Until identity lands there is one user, the rack's operator-and-user.
USER_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "skylight:user:privileged"))
SILO_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "skylight:silo:default"))


def cp(request: Request) -> ControlPlane:
    return request.app.state.cp


Result = TypeVar("Result")


async def tx(request: Request, operation: Callable[[Connection], Result]) -> Result:
    """Run one domain operation in one store transaction (retried on conflicts)."""
    return await cp(request).store.tx(operation)


def actor() -> Actor:
    return user_actor(USER_ID)


def selector(value: str | None, what: str) -> str | None:
    """A ``NameOrId`` from the path or query: a UUID, or a valid name."""
    if value is None:
        return None
    if parse_uuid(value) is not None:
        return value.lower()
    try:
        return check_name(value)
    except ValueError as exc:
        raise InvalidRequest(f"{what}: {exc}") from None


def required(value: str | None, what: str) -> str:
    sel = selector(value, what)
    if sel is None:
        raise InvalidRequest(f"{what} must be specified")
    return sel


def wants_async(request: Request) -> bool:
    prefer = request.headers.get("prefer", "")
    return any(p.strip().lower() == "respond-async" for p in prefer.split(","))


def is_operator(request: Request) -> bool:
    """Until identity lands: routes under /v1/system, or the ``X-Skylight-Operator`` header."""
    if request.url.path.startswith("/v1/system"):
        return True
    return request.headers.get("x-skylight-operator", "").lower() in ("1", "true", "yes")


def require_operator(request: Request, what: str) -> None:
    if not is_operator(request):
        raise Forbidden(f"{what} are for operators (send X-Skylight-Operator: true)")
