"""Projects: create, rename, delete (only when empty)."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from skylight import lookup
from skylight.errors import AlreadyExists, InvalidRequest
from skylight.identity.access import Action, Caller, ProjectsOf, authorize
from skylight.ids import new_id
from skylight.store import Row
from skylight.store import projects as rows
from skylight.store.paging import Page, PageRequest, rows_of


def page(conn: Connection, caller: Caller, req: PageRequest) -> Page[Row]:
    """The projects of the caller's silo that it may see: all of them for a silo viewer,
    otherwise those it holds a role on."""
    only = None if caller.silo_role is not None else set(caller.project_roles)
    return rows_of(req, rows.page, conn, caller.silo_id, only)


def create(conn: Connection, caller: Caller, name: str, description: str) -> Row:
    authorize(caller, Action.create_project, ProjectsOf(caller.silo_id))
    if rows.by_name(conn, caller.silo_id, name) is not None:
        raise AlreadyExists("project", name)
    project_id = new_id()
    with lookup.claimed(conn, "project", name):
        rows.insert(
            conn,
            project_id=project_id,
            silo_id=caller.silo_id,
            name=name,
            description=description,
        )
    row = rows.by_id(conn, project_id)
    assert row is not None
    return row


def update(
    conn: Connection, caller: Caller, selector: str, *, name: str | None, description: str | None
) -> Row:
    row = lookup.project(conn, caller, selector, Action.modify)
    values = lookup.renamed(
        row, name, description, rtype="project", taken=lambda n: rows.by_name(conn, row.silo_id, n)
    )
    if values:
        rows.update(conn, row.id, **values)
    new = rows.by_id(conn, row.id)
    assert new is not None
    return new


def delete(conn: Connection, caller: Caller, selector: str) -> None:
    row = lookup.project(conn, caller, selector, Action.modify)
    # As in Oxide: a project is deleted only when empty, so nothing in it is left behind
    # reachable by id but listed nowhere.
    child = rows.first_child(conn, row.id)
    if child is not None:
        what, name = child
        raise InvalidRequest(f"project to be deleted contains {what}: {name}")
    rows.delete(conn, row.id)
