"""Everything placement needs to know about one instance: its groups and its local disks.

``request_for`` runs inside the reservation's transaction. On PostgreSQL it first locks the
instance's groups, so that two members of one group are placed one after the other and each
sees where the other went (a `fail` affinity group would otherwise split across two sleds).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.placement import GroupRule, Request
from skylight.store.schema import (
    affinity_group,
    affinity_group_member,
    anti_affinity_group,
    anti_affinity_group_member,
    disk,
    instance,
    sled_reservation,
)


def _rules(
    conn: Connection, instance_id: str, group: sa.Table, member: sa.Table
) -> tuple[list[GroupRule], dict[str, set[str]]]:
    """The instance's groups as rules, and each hard group's other running members."""
    groups = list(
        conn.execute(
            sa.select(group.c.id, group.c.name, group.c.policy)
            .select_from(group.join(member, member.c.group_id == group.c.id))
            .where(member.c.instance_id == instance_id, group.c.time_deleted.is_(None))
            .order_by(group.c.id)
        )
    )
    if not groups:
        return [], {}
    ids = [g.id for g in groups]
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(group.c.id).where(group.c.id.in_(ids)).with_for_update())
    members = conn.execute(
        sa.select(member.c.group_id, member.c.instance_id, instance.c.name)
        .select_from(member.join(instance, instance.c.id == member.c.instance_id))
        .where(member.c.group_id.in_(ids), instance.c.time_deleted.is_(None))
    )
    others: dict[str, set[str]] = {g: set() for g in ids}
    names: dict[str, str] = {}
    counts: dict[str, int] = dict.fromkeys(ids, 0)
    for m in members:
        counts[m.group_id] += 1
        if m.instance_id != instance_id:
            others[m.group_id].add(m.instance_id)
            names[m.instance_id] = m.name
    placed: dict[str, set[str]] = {}
    all_others = set().union(*others.values())
    if all_others:
        for r in conn.execute(
            sa.select(sled_reservation.c.instance_id, sled_reservation.c.sled_id).where(
                sled_reservation.c.instance_id.in_(all_others)
            )
        ):
            placed.setdefault(r.instance_id, set()).add(r.sled_id)
    rules = []
    for g in groups:
        sleds = frozenset(s for m in others[g.id] for s in placed.get(m, ()))
        rules.append(GroupRule(g.name, g.policy, sleds, counts[g.id]))
    # Hard-group members that run now, by name: the ones that can contradict.
    named = {
        g.id: {names[m] for m in others[g.id] if m in placed} for g in groups if g.policy == "fail"
    }
    return rules, named


def request_for(
    conn: Connection, instance_id: str, *, ncpus: int, memory: int, cpu_platform: str | None
) -> Request:
    """The placement request of an instance of the given size."""
    affinity, hard_affinity = _rules(conn, instance_id, affinity_group, affinity_group_member)
    anti, hard_anti = _rules(conn, instance_id, anti_affinity_group, anti_affinity_group_member)
    together = set().union(*hard_affinity.values()) if hard_affinity else set()
    apart = set().union(*hard_anti.values()) if hard_anti else set()
    local = list(
        conn.execute(
            sa.select(disk.c.size, disk.c.sled_id).where(
                disk.c.instance_id == instance_id,
                disk.c.disk_type == "local",
                disk.c.time_deleted.is_(None),
            )
        )
    )
    pinned = next((d.sled_id for d in local if d.sled_id is not None), None)
    return Request(
        ncpus=ncpus,
        memory=memory,
        cpu_platform=cpu_platform,
        local_storage=sum(d.size for d in local if d.sled_id is None),
        pinned_sled=pinned,
        affinity=tuple(affinity),
        anti_affinity=tuple(anti),
        contradictions=tuple(sorted(together & apart)),
    )


def allocate_local_disks(conn: Connection, instance_id: str, sled_id: str) -> list[str]:
    """Pin the instance's unallocated local disks to ``sled_id`` (its first successful
    start); returns their ids."""
    ids = list(
        conn.execute(
            sa.select(disk.c.id).where(
                disk.c.instance_id == instance_id,
                disk.c.disk_type == "local",
                disk.c.sled_id.is_(None),
                disk.c.time_deleted.is_(None),
            )
        ).scalars()
    )
    if ids:
        conn.execute(disk.update().where(disk.c.id.in_(ids)).values(sled_id=sled_id))
    return ids
