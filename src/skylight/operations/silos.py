"""Silos, their local users and quotas, and who holds which role where (policies).

Each operation asks ``identity.access.authorize`` about the resource it touches; a silo the
caller may not see is not found, as if it did not exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

from skylight import lookup
from skylight.errors import AlreadyExists, InvalidRequest, InvalidValue, NotFound
from skylight.identity import secrets
from skylight.identity.access import (
    FLEET,
    Action,
    Caller,
    Project,
    Resource,
    Silo,
    authorize,
    may_see,
)
from skylight.ids import new_id, parse_uuid
from skylight.store import Row
from skylight.store import identity as rows
from skylight.store.paging import Page, PageRequest, RowItem, rows_of


@dataclass(frozen=True)
class Quotas:
    cpus: int
    memory: int
    storage: int


@dataclass(frozen=True)
class NewSilo:
    name: str
    description: str
    discoverable: bool
    quotas: Quotas


@dataclass(frozen=True)
class Assignment:
    identity_id: str
    identity_type: str  # silo_user (groups are not supported yet)
    role_name: str


def silo(conn: Connection, caller: Caller, selector: str) -> Row:
    """A silo by name or id, if the caller may see it (its own, or any for fleet viewers)."""
    row = (
        rows.silo_by_id(conn, selector.lower())
        if parse_uuid(selector)
        else rows.silo_by_name(conn, selector)
    )
    if row is None or not may_see(caller, Silo(row.id)):
        if parse_uuid(selector):
            raise NotFound.by_id("silo", selector)
        raise NotFound.by_name("silo", selector)
    return row


def page(conn: Connection, caller: Caller, req: PageRequest) -> Page[Row]:
    authorize(caller, Action.read, FLEET)
    return rows_of(req, rows.silo_page, conn)


def create(conn: Connection, caller: Caller, new: NewSilo) -> Row:
    authorize(caller, Action.modify, FLEET)
    if rows.silo_by_name(conn, new.name) is not None:
        raise AlreadyExists("silo", new.name)
    silo_id = new_id()
    q = new.quotas
    with lookup.claimed(conn, "silo", new.name):
        rows.insert_silo(
            conn,
            silo_id=silo_id,
            name=new.name,
            description=new.description,
            discoverable=new.discoverable,
            quotas=(q.cpus, q.memory, q.storage),
        )
    row = rows.silo_by_id(conn, silo_id)
    assert row is not None
    return row


def delete(conn: Connection, caller: Caller, selector: str) -> None:
    row = silo(conn, caller, selector)
    authorize(caller, Action.modify, FLEET)
    if row.id == caller.silo_id:
        raise InvalidRequest("a silo cannot be deleted by one of its own users")
    if rows.silo_has_projects(conn, row.id):
        raise InvalidRequest("silo to be deleted contains projects: delete them first")
    rows.delete_silo(conn, row.id)


def quotas(conn: Connection, caller: Caller, selector: str) -> Row:
    row = silo(conn, caller, selector)
    authorize(caller, Action.read, FLEET)
    return row


def set_quotas(
    conn: Connection,
    caller: Caller,
    selector: str,
    *,
    cpus: int | None,
    memory: int | None,
    storage: int | None,
) -> Row:
    row = silo(conn, caller, selector)
    authorize(caller, Action.modify, FLEET)
    values = {
        f"quota_{k}": v
        for k, v in (("cpus", cpus), ("memory", memory), ("storage", storage))
        if v is not None
    }
    if values:
        rows.update_silo(conn, row.id, **values)
    new = rows.silo_by_id(conn, row.id)
    assert new is not None
    return new


def all_quotas(conn: Connection, caller: Caller, req: PageRequest) -> Page[Row]:
    authorize(caller, Action.read, FLEET)
    return rows_of(req, rows.silo_page, conn)


@dataclass(frozen=True)
class Utilization(RowItem):
    """A silo (``row``), with its quotas, and what its instances and disks hold now
    (Oxide's utilization)."""

    provisioned: Quotas


def _utilization(conn: Connection, silos: list[Row]) -> list[Utilization]:
    ids = [s.id for s in silos]
    held = rows.provisioned(conn)
    storage = rows.disk_storage(conn, ids)
    return [Utilization(s, Quotas(*held.get(s.id, (0, 0)), storage.get(s.id, 0))) for s in silos]


def own_utilization(conn: Connection, caller: Caller) -> Utilization:
    authorize(caller, Action.read, Silo(caller.silo_id))
    row = rows.silo_by_id(conn, caller.silo_id)
    assert row is not None
    return _utilization(conn, [row])[0]


def utilization(conn: Connection, caller: Caller, selector: str) -> Utilization:
    row = silo(conn, caller, selector)
    authorize(caller, Action.read, FLEET)
    return _utilization(conn, [row])[0]


def utilization_page(conn: Connection, caller: Caller, req: PageRequest) -> Page[Utilization]:
    authorize(caller, Action.read, FLEET)
    found = rows.silo_page(conn, sort=req.sort, limit=req.limit, marker=req.marker)
    return Page(_utilization(conn, found), req)


# -- users ---------------------------------------------------------------------------------


def create_user(
    conn: Connection, caller: Caller, silo_selector: str, username: str, password: str | None
) -> Row:
    target = silo(conn, caller, silo_selector)
    authorize(caller, Action.administer, Silo(target.id))
    if rows.user_by_name(conn, target.id, username) is not None:
        raise AlreadyExists("user", username)
    user_id = new_id()
    digest = secrets.hash_password(password) if password is not None else None
    with lookup.claimed(conn, "user", username):
        rows.insert_user(
            conn, user_id=user_id, silo_id=target.id, name=username, password_hash=digest
        )
    row = rows.user_by_id(conn, user_id)
    assert row is not None
    return row


def _user_in(conn: Connection, caller: Caller, silo_selector: str, user_id: str) -> Row:
    target = silo(conn, caller, silo_selector)
    user = rows.user_by_id(conn, user_id.lower())
    if user is None or user.silo_id != target.id:
        raise NotFound.by_id("user", user_id)
    return user


def set_password(
    conn: Connection, caller: Caller, silo_selector: str, user_id: str, password: str | None
) -> None:
    user = _user_in(conn, caller, silo_selector, user_id)
    authorize(caller, Action.administer, Silo(user.silo_id))
    rows.set_password_hash(conn, user.id, secrets.hash_password(password) if password else None)


def delete_user(conn: Connection, caller: Caller, silo_selector: str, user_id: str) -> None:
    user = _user_in(conn, caller, silo_selector, user_id)
    authorize(caller, Action.administer, Silo(user.silo_id))
    if user.id == caller.user_id:
        raise InvalidRequest("you cannot delete yourself")
    rows.delete_user(conn, user.id)


def users(
    conn: Connection, caller: Caller, silo_selector: str | None, req: PageRequest
) -> Page[Row]:
    """The users of a silo: the caller's own (silo viewers), or any (fleet viewers)."""
    if silo_selector is None:
        authorize(caller, Action.read, Silo(caller.silo_id))
        silo_id = caller.silo_id
    else:
        target = silo(conn, caller, silo_selector)
        authorize(caller, Action.read, FLEET)
        silo_id = target.id
    return rows_of(req, rows.user_page, conn, silo_id)


def user(conn: Connection, caller: Caller, user_id: str, *, fleet: bool) -> Row:
    row = rows.user_by_id(conn, user_id.lower())
    visible = row is not None and (
        may_see(caller, FLEET) if fleet else row.silo_id == caller.silo_id
    )
    if not visible:
        raise NotFound.by_id("user", user_id)
    assert row is not None
    authorize(caller, Action.read, FLEET if fleet else Silo(caller.silo_id))
    return row


# -- policies ------------------------------------------------------------------------------


def _key(resource: Resource) -> tuple[str, str]:
    match resource:
        case Silo(id=silo_id):
            return "silo", silo_id
        case Project(id=project_id):
            return "project", project_id
        case _:
            return "fleet", ""


def policy(conn: Connection, caller: Caller, resource: Resource) -> list[Assignment]:
    authorize(caller, Action.read, resource)
    return [
        Assignment(r.identity_id, "silo_user", r.role_name)
        for r in rows.assignments_on(conn, *_key(resource))
    ]


def set_policy(
    conn: Connection, caller: Caller, resource: Resource, assignments: list[Assignment]
) -> list[Assignment]:
    """Replace the resource's policy: every identity must be a user who may hold it (one of
    the silo's own, for a silo or a project; any, for the fleet)."""
    authorize(caller, Action.administer, resource)
    silo_id = {
        Silo: getattr(resource, "id", None),
        Project: getattr(resource, "silo_id", None),
    }.get(type(resource))
    for a in assignments:
        if a.identity_type != "silo_user":
            raise InvalidValue(f"identity_type {a.identity_type!r}: groups are not supported")
        user = rows.user_by_id(conn, a.identity_id.lower())
        if user is None or (silo_id is not None and user.silo_id != silo_id):
            raise InvalidValue(f"identity_id {a.identity_id}: no such user in this silo")
    rows.replace_assignments(
        conn, *_key(resource), [(a.identity_id.lower(), a.role_name) for a in assignments]
    )
    return policy(conn, caller, resource)
