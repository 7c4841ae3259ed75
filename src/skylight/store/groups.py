"""Affinity and anti-affinity group rows and their instance members.

The two families have the same tables, so every function takes ``kind``: ``"affinity"`` or
``"anti_affinity"``. A member row links a live group to a live instance: deleting either one
deletes its member rows.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.clock import now
from skylight.store import Row, paging
from skylight.store.rows import CREATED, count, insert_new
from skylight.store.schema import (
    affinity_group,
    affinity_group_member,
    anti_affinity_group,
    anti_affinity_group_member,
    instance,
    sled_reservation,
    vmm,
)

KINDS = ("affinity", "anti_affinity")

_TABLES: dict[str, tuple[sa.Table, sa.Table]] = {
    "affinity": (affinity_group, affinity_group_member),
    "anti_affinity": (anti_affinity_group, anti_affinity_group_member),
}


def tables(kind: str) -> tuple[sa.Table, sa.Table]:
    """The (group, member) tables of ``kind``."""
    return _TABLES[kind]


def by_id(conn: Connection, kind: str, group_id: str, *, lock: bool = False) -> Row | None:
    """A live group; ``lock`` holds its row (PostgreSQL) until the transaction ends."""
    group, _ = tables(kind)
    q = sa.select(group).where(group.c.id == group_id, group.c.time_deleted.is_(None))
    if lock:
        q = q.with_for_update()
    return conn.execute(q).first()


def by_name(conn: Connection, kind: str, project_id: str, name: str) -> Row | None:
    group, _ = tables(kind)
    q = sa.select(group).where(
        group.c.project_id == project_id, group.c.name == name, group.c.time_deleted.is_(None)
    )
    return conn.execute(q).first()


def page(
    conn: Connection, kind: str, project_id: str, *, sort: str, limit: int, marker: str | None
) -> list[Row]:
    group, _ = tables(kind)
    q = sa.select(group).where(group.c.project_id == project_id, group.c.time_deleted.is_(None))
    return paging.page(conn, q, group, sort=sort, limit=limit, marker=marker)


def page_of_instance(
    conn: Connection, kind: str, instance_id: str, *, sort: str, limit: int, marker: str | None
) -> list[Row]:
    """The live groups of ``kind`` that ``instance_id`` belongs to."""
    group, member = tables(kind)
    q = (
        sa.select(group)
        .select_from(group.join(member, member.c.group_id == group.c.id))
        .where(member.c.instance_id == instance_id, group.c.time_deleted.is_(None))
    )
    return paging.page(conn, q, group, sort=sort, limit=limit, marker=marker)


def insert(
    conn: Connection,
    kind: str,
    *,
    group_id: str,
    project_id: str,
    name: str,
    description: str,
    policy: str,
    failure_domain: str,
) -> None:
    group, _ = tables(kind)
    insert_new(
        conn,
        group,
        CREATED,
        id=group_id,
        project_id=project_id,
        name=name,
        description=description,
        policy=policy,
        failure_domain=failure_domain,
    )


def update(conn: Connection, kind: str, group_id: str, **values: object) -> None:
    group, _ = tables(kind)
    conn.execute(group.update().where(group.c.id == group_id).values(time_modified=now(), **values))


def delete(conn: Connection, kind: str, group_id: str) -> None:
    """Soft-delete the group and drop its memberships."""
    group, member = tables(kind)
    conn.execute(member.delete().where(member.c.group_id == group_id))
    conn.execute(
        group.update()
        .where(group.c.id == group_id, group.c.time_deleted.is_(None))
        .values(time_deleted=now())
    )


# -- members ---------------------------------------------------------------------------------


def _members(kind: str) -> sa.Select[Any]:
    """Members with what their view needs: the instance's name and run state inputs."""
    _, member = tables(kind)
    return (
        sa.select(
            member.c.group_id,
            instance.c.id,
            instance.c.name,
            instance.c.project_id,
            instance.c.state,
            instance.c.intended_state,
            vmm.c.state.label("vmm_state"),
        )
        .select_from(
            member.join(instance, instance.c.id == member.c.instance_id).outerjoin(
                vmm, vmm.c.id == instance.c.active_vmm_id
            )
        )
        .where(instance.c.time_deleted.is_(None))
    )


def member(conn: Connection, kind: str, group_id: str, instance_id: str) -> Row | None:
    _, m = tables(kind)
    q = _members(kind).where(m.c.group_id == group_id, m.c.instance_id == instance_id)
    return conn.execute(q).first()


def members_page(
    conn: Connection, kind: str, group_id: str, *, sort: str, limit: int, marker: str | None
) -> list[Row]:
    """A group's members, paged by the instance's name or id."""
    _, m = tables(kind)
    q = _members(kind).where(m.c.group_id == group_id)
    return paging.page(conn, q, instance, sort=sort, limit=limit, marker=marker)


def member_ids(conn: Connection, kind: str, group_id: str) -> list[str]:
    _, m = tables(kind)
    q = _members(kind).where(m.c.group_id == group_id).order_by(instance.c.id)
    return [row.id for row in conn.execute(q)]


def count_members(conn: Connection, kind: str, group_id: str) -> int:
    _, m = tables(kind)
    members = m.join(instance, instance.c.id == m.c.instance_id)
    return count(conn, members, m.c.group_id == group_id, instance.c.time_deleted.is_(None))


def count_groups_of(conn: Connection, kind: str, instance_id: str) -> int:
    """How many live groups of ``kind`` the instance belongs to."""
    group, m = tables(kind)
    joined = m.join(group, group.c.id == m.c.group_id)
    return count(conn, joined, m.c.instance_id == instance_id, group.c.time_deleted.is_(None))


def add_member(conn: Connection, kind: str, group_id: str, instance_id: str) -> None:
    _, m = tables(kind)
    conn.execute(m.insert().values(group_id=group_id, instance_id=instance_id))


def remove_member(conn: Connection, kind: str, group_id: str, instance_id: str) -> int:
    _, m = tables(kind)
    q = m.delete().where(m.c.group_id == group_id, m.c.instance_id == instance_id)
    return conn.execute(q).rowcount


def remove_instance(conn: Connection, instance_id: str) -> None:
    """Drop every membership of the instance, in both families (it is being deleted)."""
    for kind in KINDS:
        _, m = tables(kind)
        conn.execute(m.delete().where(m.c.instance_id == instance_id))


def lock_instance(conn: Connection, instance_id: str) -> None:
    """Hold the instance row (PostgreSQL; SQLite transactions are serial already) so that
    membership limits are checked and written without a concurrent add in between."""
    conn.execute(sa.select(instance.c.id).where(instance.c.id == instance_id).with_for_update())


def has_reservation(conn: Connection, instance_id: str) -> bool:
    """Whether the instance holds sled resources (it is starting, running or stopping)."""
    q = sa.select(sled_reservation.c.id).where(sled_reservation.c.instance_id == instance_id)
    return conn.execute(q.limit(1)).first() is not None
