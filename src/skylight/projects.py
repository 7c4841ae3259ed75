"""Projects: create, rename, delete (only when empty)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight import lookup
from skylight.errors import AlreadyExists, InvalidRequest
from skylight.ids import new_id
from skylight.store import Row
from skylight.store import projects as rows
from skylight.store.paging import Page, PageRequest, rows_of


def page(conn: Connection, req: PageRequest) -> Page[Row]:
    return rows_of(req, rows.page, conn)


def create(conn: Connection, name: str, description: str) -> Row:
    if rows.by_name(conn, name) is not None:
        raise AlreadyExists("project", name)
    project_id = new_id()
    try:
        with conn.begin_nested():
            rows.insert(conn, project_id=project_id, name=name, description=description)
    except sa.exc.IntegrityError:
        raise AlreadyExists("project", name) from None
    row = rows.by_id(conn, project_id)
    assert row is not None
    return row


def update(conn: Connection, selector: str, *, name: str | None, description: str | None) -> Row:
    row = lookup.project(conn, selector)
    values = lookup.renamed(
        row, name, description, rtype="project", taken=lambda n: rows.by_name(conn, n)
    )
    if values:
        rows.update(conn, row.id, **values)
    new = rows.by_id(conn, row.id)
    assert new is not None
    return new


def delete(conn: Connection, selector: str) -> None:
    row = lookup.project(conn, selector)
    # As in Oxide: a project is deleted only when empty, so nothing in it is left behind
    # reachable by id but listed nowhere.
    child = rows.first_child(conn, row.id)
    if child is not None:
        what, name = child
        raise InvalidRequest(f"project to be deleted contains {what}: {name}")
    rows.delete(conn, row.id)
