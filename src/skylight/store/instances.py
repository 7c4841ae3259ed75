"""Instance and VMM rows.

Reads return the instance joined with its active VMM, with the event behind its
``status_reason`` and with the event its trouble began with, which is everything the API's
view needs in one query.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.clock import now
from skylight.store import Row, paging
from skylight.store.rows import CREATED, insert_new
from skylight.store.schema import event, instance, saga, vmm

_live = instance.c.time_deleted.is_(None)
_status = event.alias("status_event")
_origin = event.alias("status_origin_event")


def _view() -> sa.Select[Any]:
    return sa.select(
        instance,
        vmm.c.state.label("vmm_state"),
        vmm.c.sled_id.label("sled_id"),
        _status.c.reason.label("status_reason"),
        _status.c.time.label("status_time"),
        _status.c.kind.label("status_kind"),
        _origin.c.reason.label("origin_reason"),
        _origin.c.time.label("origin_time"),
        _origin.c.kind.label("origin_kind"),
    ).select_from(
        instance.outerjoin(vmm, vmm.c.id == instance.c.active_vmm_id)
        .outerjoin(_status, _status.c.id == instance.c.status_event_id)
        .outerjoin(_origin, _origin.c.id == instance.c.status_origin_event_id)
    )


def by_id(conn: Connection, instance_id: str, *, deleted: bool = False) -> Row | None:
    q = _view().where(instance.c.id == instance_id)
    if not deleted:
        q = q.where(_live)
    return conn.execute(q).first()


def lock(conn: Connection, instance_id: str) -> None:
    """Serialise operations on one instance across replicas (PostgreSQL; SQLite's writers
    are serial already): two starts cannot both see it stopped and both begin."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(instance.c.id).where(instance.c.id == instance_id).with_for_update())


def by_name(conn: Connection, project_id: str, name: str) -> Row | None:
    q = _view().where(instance.c.project_id == project_id, instance.c.name == name, _live)
    return conn.execute(q).first()


def page(
    conn: Connection, project_id: str, *, sort: str, limit: int, marker: str | None
) -> list[Row]:
    q = _view().where(instance.c.project_id == project_id, _live)
    return paging.page(conn, q, instance, sort=sort, limit=limit, marker=marker)


def on_sled(conn: Connection, sled_id: str, *, limit: int, marker: str | None) -> list[Row]:
    q = _view().where(vmm.c.sled_id == sled_id, _live)
    return paging.page(conn, q, instance, sort="id_ascending", limit=limit, marker=marker)


def insert(conn: Connection, **values: object) -> None:
    insert_new(conn, instance, (*CREATED, "time_run_state_updated"), generation=1, **values)


def update(
    conn: Connection, instance_id: str, *where: sa.ColumnElement[bool], **values: object
) -> int:
    """Update one instance; ``where`` adds conditions. Returns the number of rows changed."""
    values.setdefault("time_modified", now())
    if "status_event_id" in values and values["status_event_id"] is None:
        values["status_origin_event_id"] = None  # the trouble is over: so is its beginning
    if "state" in values or "active_vmm_id" in values:
        values.setdefault("time_run_state_updated", now())
        values["generation"] = instance.c.generation + 1
    q = instance.update().where(instance.c.id == instance_id, *where).values(**values)
    return conn.execute(q).rowcount


def vmm_row(conn: Connection, vmm_id: str) -> Row | None:
    return conn.execute(sa.select(vmm).where(vmm.c.id == vmm_id)).first()


def insert_vmm(conn: Connection, *, vmm_id: str, instance_id: str, sled_id: str) -> None:
    insert_new(
        conn,
        vmm,
        ("time_created", "time_state_updated"),
        id=vmm_id,
        instance_id=instance_id,
        sled_id=sled_id,
        state="creating",
    )


def set_vmm_state(conn: Connection, vmm_id: str, state: str, *only_from: str) -> int:
    q = vmm.update().where(vmm.c.id == vmm_id)
    if only_from:
        q = q.where(vmm.c.state.in_(only_from))
    return conn.execute(q.values(state=state, time_state_updated=now())).rowcount


def running_saga(conn: Connection, instance_id: str, name: str) -> str | None:
    """The instance's unfinished saga of this name (a request already under way)."""
    q = sa.select(saga.c.id).where(
        saga.c.instance_id == instance_id,
        saga.c.name == name,
        saga.c.state.in_(("running", "unwinding")),
    )
    return conn.execute(q.limit(1)).scalar()


def due_for_restart(conn: Connection, limit: int) -> list[str]:
    """Failed instances whose automatic restart is due and not already under way, the
    longest overdue first."""
    starting = sa.select(saga.c.instance_id).where(
        saga.c.name == "instance-start", saga.c.state.in_(("running", "unwinding"))
    )
    q = (
        sa.select(instance.c.id)
        .where(
            instance.c.state == "failed",
            instance.c.active_vmm_id.is_(None),
            instance.c.intended_state == "running",
            instance.c.time_deleted.is_(None),
            instance.c.time_next_auto_restart.is_not(None),
            instance.c.time_next_auto_restart <= now(),
            instance.c.id.not_in(starting),
        )
        .order_by(instance.c.time_next_auto_restart)
        .limit(limit)
    )
    return list(conn.execute(q).scalars())


def active_on_sled(conn: Connection, sled_id: str, *, running_only: bool = False) -> list[Row]:
    """(id, active_vmm_id) of every instance whose active VMM is on the sled (``running``
    only, or in any state)."""
    q = (
        sa.select(instance.c.id, instance.c.active_vmm_id)
        .select_from(instance.join(vmm, vmm.c.id == instance.c.active_vmm_id))
        .where(vmm.c.sled_id == sled_id)
    )
    if running_only:
        q = q.where(vmm.c.state == "running")
    return list(conn.execute(q))


def running_vmms_on(conn: Connection, sled_id: str) -> set[str]:
    q = sa.select(vmm.c.id).where(vmm.c.sled_id == sled_id, vmm.c.state == "running")
    return set(conn.execute(q).scalars())


def vmm_states(conn: Connection, vmm_ids: set[str]) -> dict[str, str]:
    if not vmm_ids:
        return {}
    rows = conn.execute(sa.select(vmm.c.id, vmm.c.state).where(vmm.c.id.in_(vmm_ids)))
    return {r.id: r.state for r in rows}


def sled_of_vmm(conn: Connection, vmm_id: str) -> str | None:
    return conn.execute(sa.select(vmm.c.sled_id).where(vmm.c.id == vmm_id)).scalar()
