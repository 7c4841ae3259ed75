"""Project rows."""

from __future__ import annotations

from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.clock import now
from skylight.store import Row, paging
from skylight.store.rows import CREATED, insert_new
from skylight.store.schema import affinity_group, anti_affinity_group, disk, instance, project

_live = project.c.time_deleted.is_(None)


def by_id(conn: Connection, project_id: str, *, deleted: bool = False) -> Row | None:
    """``deleted``: a deleted project too (the history of what was in it stays readable)."""
    q = sa.select(project).where(project.c.id == project_id)
    return conn.execute(q if deleted else q.where(_live)).first()


def by_name(conn: Connection, silo_id: str, name: str) -> Row | None:
    q = sa.select(project).where(project.c.silo_id == silo_id, project.c.name == name, _live)
    return conn.execute(q).first()


def page(
    conn: Connection,
    silo_id: str,
    only: Collection[str] | None,
    *,
    sort: str,
    limit: int,
    marker: str | None,
) -> list[Row]:
    """A silo's projects (``only`` those ids, when the caller may see no more)."""
    q = sa.select(project).where(_live, project.c.silo_id == silo_id)
    if only is not None:
        q = q.where(project.c.id.in_(list(only)))
    return paging.page(conn, q, project, sort=sort, limit=limit, marker=marker)


def insert(conn: Connection, *, project_id: str, silo_id: str, name: str, description: str) -> None:
    insert_new(
        conn, project, CREATED, id=project_id, silo_id=silo_id, name=name, description=description
    )


def update(conn: Connection, project_id: str, **values: object) -> None:
    conn.execute(
        project.update().where(project.c.id == project_id).values(time_modified=now(), **values)
    )


# What a project holds, in the order a refusal to delete it names them.
_CHILDREN = (
    ("an instance", instance),
    ("a disk", disk),
    ("an affinity group", affinity_group),
    ("an anti-affinity group", anti_affinity_group),
)


def first_child(conn: Connection, project_id: str) -> tuple[str, str] | None:
    """(what, name) of something the project still holds, or None when it is empty."""
    for what, table in _CHILDREN:
        q = sa.select(table.c.name).where(
            table.c.project_id == project_id, table.c.time_deleted.is_(None)
        )
        name = conn.execute(q.order_by(table.c.name).limit(1)).scalar()
        if name is not None:
            return what, name
    return None


def delete(conn: Connection, project_id: str) -> None:
    conn.execute(project.update().where(project.c.id == project_id).values(time_deleted=now()))
