"""Who is calling: login and logout, Oxide's device flow for the CLI, and turning a
request's credential (the ``session`` cookie or a bearer token) into a ``Caller``.

Every request is authenticated against the store, so a revoked token or an ended session
stops working at once on every replica; a session also ends after ``session_idle`` seconds
unused and ``session_absolute`` seconds after login, whichever comes first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import anyio
from sqlalchemy.engine import Connection

from skylight.clock import as_utc, now
from skylight.errors import InvalidRequest, NotFound, OAuthError, Unauthenticated
from skylight.identity import secrets
from skylight.identity.access import Caller, Role
from skylight.ids import new_id, parse_uuid
from skylight.store import Row, Store
from skylight.store import identity as rows
from skylight.store.paging import Page, PageRequest, rows_of

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEVICE_CODE_LIFETIME = 300  # seconds a user has to confirm a device
SESSION_TOUCH_EVERY = 60  # a session's last use is written at most this often


@dataclass(frozen=True)
class Lifetimes:
    """How long credentials live (from the settings)."""

    session_idle: float
    session_absolute: float
    token_max_ttl: float | None  # None: device tokens do not expire unless asked


@dataclass(frozen=True)
class Credential:
    kind: str  # session | access_token
    secret: str


def _roles(
    conn: Connection, user_id: str, silo_id: str
) -> tuple[Role | None, Role | None, dict[str, Role]]:
    """(fleet role, silo role, project roles) the user holds."""
    fleet: Role | None = None
    silo_role: Role | None = None
    projects: dict[str, Role] = {}
    for grant in rows.roles_of(conn, user_id):
        rtype, rid, role = grant.resource_type, grant.resource_id, Role[grant.role_name]
        if rtype == "fleet":
            fleet = max(fleet or role, role)
        elif rtype == "silo" and rid == silo_id:
            silo_role = max(silo_role or role, role)
        elif rtype == "project":
            projects[rid] = max(projects.get(rid, role), role)
    return fleet, silo_role, projects


@dataclass(frozen=True)
class _Who:
    """A user and its silo, as a credential (or a login) finds them."""

    user_id: str
    user_name: str
    silo_id: str
    silo_name: str


def _caller(conn: Connection, who: _Who, *, auth_method: str, credential_id: str) -> Caller:
    fleet, silo_role, projects = _roles(conn, who.user_id, who.silo_id)
    return Caller(
        user_id=who.user_id,
        silo_id=who.silo_id,
        silo_name=who.silo_name,
        display_name=who.user_name,
        fleet_role=fleet,
        silo_role=silo_role,
        project_roles=projects,
        auth_method=auth_method,
        credential_id=credential_id,
    )


def caller_for(conn: Connection, user: Row, *, auth_method: str, credential_id: str) -> Caller:
    silo = rows.silo_by_id(conn, user.silo_id)
    if silo is None:
        raise Unauthenticated("credentials missing or invalid")
    who = _Who(user.id, user.name, silo.id, silo.name)
    return _caller(conn, who, auth_method=auth_method, credential_id=credential_id)


def authenticate(conn: Connection, credential: Credential, limits: Lifetimes) -> Caller:
    """The caller a credential stands for; ``Unauthenticated`` if it stands for no one now.
    Two queries: the credential with its user and silo, then the user's roles."""
    owner = rows.credential_owner(conn, credential.kind, secrets.token_hash(credential.secret))
    if owner is None:
        raise Unauthenticated("credentials missing or invalid")
    t = now()
    if credential.kind == "session":
        idle = (t - as_utc(owner.time_last_used)).total_seconds()
        age = (t - as_utc(owner.time_created)).total_seconds()
        if idle > limits.session_idle or age > limits.session_absolute:
            rows.delete_session(conn, owner.credential_id)
            raise Unauthenticated("session expired: log in again")
        if idle > min(SESSION_TOUCH_EVERY, limits.session_idle / 4):
            rows.touch_session(conn, owner.credential_id, t)
    elif owner.time_expires is not None and as_utc(owner.time_expires) <= t:
        raise Unauthenticated("access token expired: log in again")
    who = _Who(owner.user_id, owner.user_name, owner.silo_id, owner.silo_name)
    return _caller(conn, who, auth_method=credential.kind, credential_id=owner.credential_id)


# -- login ---------------------------------------------------------------------------------


async def login(store: Store, silo_name: str, username: str, password: str) -> tuple[str, Caller]:
    """A new session's token for a correct username and password.

    A wrong password, an unknown user and an unknown silo answer the same and cost the same
    (one argon2 verification, in a worker thread and outside any transaction), so the
    answer tells nothing of which names exist."""

    def find(conn: Connection) -> Row | None:
        silo = rows.silo_by_name(conn, silo_name)
        return rows.user_by_name(conn, silo.id, username) if silo is not None else None

    user = await store.tx(find)
    stored = user.password_hash if user is not None else None
    if not await anyio.to_thread.run_sync(secrets.password_matches, stored, password):
        raise Unauthenticated("login failed: wrong username or password")
    assert user is not None
    token = secrets.new_token()
    session_id = new_id()

    def open_session(conn: Connection) -> Caller:
        live = rows.user_by_id(conn, user.id)  # deleted meanwhile: no session
        if live is None:
            raise Unauthenticated("login failed: wrong username or password")
        digest = secrets.token_hash(token)
        rows.insert_session(conn, session_id=session_id, token_hash=digest, user_id=user.id)
        return caller_for(conn, live, auth_method="session", credential_id=session_id)

    return token, await store.tx(open_session)


def logout(conn: Connection, credential: Credential | None) -> None:
    """End the session (a token is revoked through ``/v1/me/access-tokens`` instead)."""
    if credential is None or credential.kind != "session":
        return
    session = rows.session_by_hash(conn, secrets.token_hash(credential.secret))
    if session is not None:
        rows.delete_session(conn, session.id)


# -- device flow (RFC 8628, as Oxide does it) ------------------------------------------------


@dataclass(frozen=True)
class DeviceAuth:
    device_code: str
    user_code: str
    expires_in: int


def device_auth(conn: Connection, client_id: str, ttl_seconds: int | None) -> DeviceAuth:
    if parse_uuid(client_id) is None:
        raise InvalidRequest(f"client_id: not a UUID: {client_id!r}")
    rows.delete_expired_device_requests(conn, now())  # (abandoned ones do not pile up)
    device_code = secrets.new_token()
    for _ in range(5):  # a user code is short; pick another on the rare collision
        code = secrets.user_code()
        if rows.device_request_by_user_code(conn, code) is None:
            break
    rows.insert_device_request(
        conn,
        user_code=code,
        device_code_hash=secrets.token_hash(device_code),
        client_id=client_id.lower(),
        token_ttl=ttl_seconds,
        expires=now() + timedelta(seconds=DEVICE_CODE_LIFETIME),
    )
    return DeviceAuth(device_code, code, DEVICE_CODE_LIFETIME)


def device_confirm(conn: Connection, caller: Caller, user_code: str) -> None:
    request = rows.device_request_by_user_code(conn, user_code.strip().upper())
    if request is None or as_utc(request.time_expires) <= now():
        raise NotFound("not found: device authorization request with that user code")
    if request.user_id is not None:
        raise InvalidRequest("this device authorization request was already confirmed")
    rows.confirm_device_request(conn, request.user_code, caller.user_id)


@dataclass(frozen=True)
class Grant:
    token: str
    token_id: str
    expires_in: int | None


def device_token(
    conn: Connection, grant_type: str, client_id: str, device_code: str, limits: Lifetimes
) -> Grant:
    """The access token once the user confirmed; OAuth errors the CLI polls on until then."""
    if grant_type != DEVICE_GRANT:
        raise OAuthError("unsupported_grant_type", f"grant_type must be {DEVICE_GRANT}")
    request = rows.device_request_by_hash(conn, secrets.token_hash(device_code))
    if request is None or request.client_id != client_id.lower():
        raise OAuthError("invalid_grant", "unknown device_code for this client_id")
    if as_utc(request.time_expires) <= now():
        rows.delete_device_request(conn, request.user_code)
        raise OAuthError("expired_token", "the device code expired; start again")
    if request.user_id is None:
        raise OAuthError("authorization_pending", "waiting for the user to confirm the code")
    rows.delete_device_request(conn, request.user_code)
    ttl = request.token_ttl or limits.token_max_ttl
    if limits.token_max_ttl is not None and ttl is not None:
        ttl = min(ttl, limits.token_max_ttl)
    token = secrets.new_token(secrets.TOKEN_PREFIX)
    token_id = new_id()
    rows.insert_token(
        conn,
        token_id=token_id,
        token_hash=secrets.token_hash(token),
        user_id=request.user_id,
        client_id=request.client_id,
        expires=now() + timedelta(seconds=ttl) if ttl else None,
    )
    return Grant(token, token_id, int(ttl) if ttl else None)


# -- the caller's own ------------------------------------------------------------------------


def me(conn: Connection, caller: Caller) -> Row:
    """The caller's own user row: anyone signed in may read it, whatever their roles."""
    row = rows.user_by_id(conn, caller.user_id)
    if row is None:
        raise Unauthenticated("credentials missing or invalid")
    return row


def tokens(conn: Connection, caller: Caller, req: PageRequest) -> Page[Row]:
    return rows_of(req, rows.token_page, conn, caller.user_id)


def revoke_token(conn: Connection, caller: Caller, token_id: str) -> None:
    if not rows.delete_token(conn, caller.user_id, token_id.lower()):
        raise NotFound.by_id("device access token", token_id)
