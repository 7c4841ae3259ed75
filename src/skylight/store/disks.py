"""Disk rows.

A disk is ``detached``, ``attached`` (``instance_id`` set) or, once deleted, ``destroyed`` with
``time_deleted``. A local disk's ``sled_id`` is set by placement when its instance first
starts; deleting the disk is what frees that sled's storage.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.clock import now
from skylight.store import Row, paging
from skylight.store.rows import CREATED, count, insert_new
from skylight.store.schema import disk

_live = disk.c.time_deleted.is_(None)


def by_id(conn: Connection, disk_id: str) -> Row | None:
    return conn.execute(sa.select(disk).where(disk.c.id == disk_id, _live)).first()


def by_name(conn: Connection, project_id: str, name: str) -> Row | None:
    q = sa.select(disk).where(disk.c.project_id == project_id, disk.c.name == name, _live)
    return conn.execute(q).first()


def page(
    conn: Connection, project_id: str, *, sort: str, limit: int, marker: str | None
) -> list[Row]:
    q = sa.select(disk).where(disk.c.project_id == project_id, _live)
    return paging.page(conn, q, disk, sort=sort, limit=limit, marker=marker)


def page_of_instance(
    conn: Connection, instance_id: str, *, sort: str, limit: int, marker: str | None
) -> list[Row]:
    q = sa.select(disk).where(disk.c.instance_id == instance_id, _live)
    return paging.page(conn, q, disk, sort=sort, limit=limit, marker=marker)


def count_attached(conn: Connection, instance_id: str) -> int:
    return count(conn, disk, disk.c.instance_id == instance_id, _live)


def insert(
    conn: Connection,
    *,
    disk_id: str,
    project_id: str,
    name: str,
    description: str,
    size: int,
    block_size: int,
    disk_type: str,
    instance_id: str | None = None,
) -> None:
    """A new disk, attached to ``instance_id`` if given, detached otherwise."""
    insert_new(
        conn,
        disk,
        CREATED,
        id=disk_id,
        project_id=project_id,
        name=name,
        description=description,
        size=size,
        block_size=block_size,
        disk_type=disk_type,
        state="attached" if instance_id is not None else "detached",
        instance_id=instance_id,
    )


def attach(conn: Connection, disk_id: str, instance_id: str) -> int:
    """Attach a live detached disk; returns 1, or 0 if it is not (any longer) detached."""
    q = (
        disk.update()
        .where(disk.c.id == disk_id, disk.c.state == "detached", _live)
        .values(state="attached", instance_id=instance_id, time_modified=now())
    )
    return conn.execute(q).rowcount


def detach(conn: Connection, disk_id: str, instance_id: str) -> int:
    """Detach a disk from ``instance_id``; returns 0 if it was not attached to it."""
    q = (
        disk.update()
        .where(disk.c.id == disk_id, disk.c.instance_id == instance_id, _live)
        .values(state="detached", instance_id=None, time_modified=now())
    )
    return conn.execute(q).rowcount


def detach_all(conn: Connection, instance_id: str) -> int:
    q = (
        disk.update()
        .where(disk.c.instance_id == instance_id, _live)
        .values(state="detached", instance_id=None, time_modified=now())
    )
    return conn.execute(q).rowcount


def delete(conn: Connection, disk_id: str) -> int:
    """Delete a live detached disk; returns 0 if it is attached or already gone."""
    t = now()
    q = (
        disk.update()
        .where(disk.c.id == disk_id, disk.c.state == "detached", _live)
        .values(state="destroyed", instance_id=None, time_modified=t, time_deleted=t)
    )
    return conn.execute(q).rowcount


def destroy(conn: Connection, disk_ids: list[str]) -> None:
    """Delete disks whatever their state (undoing their creation)."""
    if not disk_ids:
        return
    t = now()
    conn.execute(
        disk.update()
        .where(disk.c.id.in_(disk_ids), _live)
        .values(state="destroyed", instance_id=None, time_modified=t, time_deleted=t)
    )
