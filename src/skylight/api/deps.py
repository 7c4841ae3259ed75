"""What every handler needs from a request: the control plane, the caller, selectors."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import Request
from sqlalchemy.engine import Connection

from skylight.api.models import check_name
from skylight.controlplane import ControlPlane
from skylight.errors import InvalidRequest, Unauthenticated
from skylight.events.kinds import Actor, user_actor
from skylight.identity.access import FLEET, Action, Caller, authorize
from skylight.identity.throttle import LoginThrottle
from skylight.ids import parse_uuid
from skylight.operations import sessions
from skylight.operations.sessions import Credential, Lifetimes


def cp(request: Request) -> ControlPlane:
    return request.app.state.cp


Result = TypeVar("Result")


async def tx(request: Request, operation: Callable[[Connection], Result]) -> Result:
    """Run one domain operation in one store transaction (retried on conflicts)."""
    return await cp(request).store.tx(operation)


# Routes that answer without a user: logging in and the device flow's two unauthenticated
# steps (Oxide's), a liveness check, and the sled agents' calls (they present the rack
# secret instead). Every other route authenticates its caller before its handler runs.
ANONYMOUS = frozenset(
    {
        "/",
        "/v1/ping",
        "/v1/login/{silo_name}/local",
        "/v1/logout",
        "/device/auth",
        "/device/token",
        "/v1/system/sled-agents",
        "/v1/system/sled-agents/{sled_id}/vmm-lost",
    }
)
SESSION_COOKIE = "session"


def credential(request: Request) -> Credential | None:
    """The request's bearer token, else its session cookie (a non-bearer Authorization
    header is not ours and is ignored)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return Credential("access_token", value.strip())
    cookie = request.cookies.get(SESSION_COOKIE)
    return Credential("session", cookie) if cookie else None


def lifetimes(request: Request) -> Lifetimes:
    s = cp(request).settings
    return Lifetimes(s.session_idle, s.session_absolute, s.token_max_ttl)


async def authenticate(request: Request) -> None:
    """Every route's first dependency: who is calling (401 if no one), kept on the request
    for ``caller``. The store is asked each time, so a revoked credential stops at once."""
    route = request.scope.get("route")
    if getattr(route, "path", None) in ANONYMOUS:
        return
    cred = credential(request)
    if cred is None:
        raise Unauthenticated("credentials missing or invalid")
    limits = lifetimes(request)
    request.state.caller = await tx(request, lambda c: sessions.authenticate(c, cred, limits))


async def login(
    request: Request, silo_name: str, username: str, password: str
) -> tuple[str, Caller]:
    """A new session for a correct password, throttled per user and per client address."""
    throttle: LoginThrottle = request.app.state.login_throttle
    user_key, address = f"{silo_name}/{username}", _address(request)
    throttle.check(user_key, address)
    try:
        result = await sessions.login(cp(request).store, silo_name, username, password)
    except Unauthenticated:
        throttle.failed(user_key, address)
        raise
    throttle.succeeded(user_key)
    request.state.caller = result[1]  # the audit log names who logged in
    return result


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def caller(request: Request) -> Caller:
    who: Caller = request.state.caller
    return who


def actor(request: Request) -> Actor:
    """The person an event caused by this request names."""
    who = caller(request)
    return user_actor(who.user_id, who.display_name)


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
    """Operator detail (internal reasons, sleds, per-sled diagnosis) is for fleet viewers
    and above, decided by role alone."""
    who = getattr(request.state, "caller", None)
    return who is not None and who.operator


def fleet(action: Action, reads: Action = Action.read) -> Callable[[Request], None]:
    """A router's dependency: its routes act on the fleet (``/v1/system``, webhooks) and
    need ``action`` there, or ``reads`` to read (fleet viewer unless said otherwise)."""

    def check(request: Request) -> None:
        need = reads if request.method in ("GET", "HEAD") else action
        authorize(caller(request), need, FLEET)

    return check
