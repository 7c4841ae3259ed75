"""Instance and VMM rows.

Reads return the instance joined with its active VMM and with the event behind its
``status_reason``, which is everything the API's view needs in one query.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.clock import now
from skylight.store import paging
from skylight.store.schema import event, instance, vmm

_live = instance.c.time_deleted.is_(None)
_status = event.alias("status_event")


def _view() -> sa.Select[Any]:
    return sa.select(
        instance,
        vmm.c.state.label("vmm_state"),
        vmm.c.sled_id.label("sled_id"),
        _status.c.reason.label("status_reason"),
        _status.c.time.label("status_time"),
    ).select_from(
        instance.outerjoin(vmm, vmm.c.id == instance.c.active_vmm_id).outerjoin(
            _status, _status.c.id == instance.c.status_event_id
        )
    )


def by_id(conn: Connection, instance_id: str, *, deleted: bool = False) -> sa.Row[Any] | None:
    q = _view().where(instance.c.id == instance_id)
    if not deleted:
        q = q.where(_live)
    return conn.execute(q).first()


def lock(conn: Connection, instance_id: str) -> None:
    """Serialise operations on one instance across replicas (PostgreSQL; SQLite's writers
    are serial already): two starts cannot both see it stopped and both begin."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(instance.c.id).where(instance.c.id == instance_id).with_for_update())


def by_name(conn: Connection, project_id: str, name: str) -> sa.Row[Any] | None:
    q = _view().where(instance.c.project_id == project_id, instance.c.name == name, _live)
    return conn.execute(q).first()


def page(
    conn: Connection, project_id: str, *, sort: str, limit: int, marker: str | None
) -> list[sa.Row[Any]]:
    q = _view().where(instance.c.project_id == project_id, _live)
    return paging.page(conn, q, instance, sort=sort, limit=limit, marker=marker)


def on_sled(conn: Connection, sled_id: str, *, limit: int, marker: str | None) -> list[Any]:
    q = _view().where(vmm.c.sled_id == sled_id, _live)
    return paging.page(conn, q, instance, sort="id_ascending", limit=limit, marker=marker)


def insert(conn: Connection, **values: Any) -> None:
    t = now()
    conn.execute(
        instance.insert().values(
            time_created=t,
            time_modified=t,
            time_run_state_updated=t,
            generation=1,
            **values,
        )
    )


def update(conn: Connection, instance_id: str, *where: Any, **values: Any) -> int:
    """Update one instance; ``where`` adds conditions. Returns the number of rows changed."""
    values.setdefault("time_modified", now())
    if "state" in values or "active_vmm_id" in values:
        values.setdefault("time_run_state_updated", now())
        values["generation"] = instance.c.generation + 1
    q = instance.update().where(instance.c.id == instance_id, *where).values(**values)
    return conn.execute(q).rowcount


def vmm_row(conn: Connection, vmm_id: str) -> sa.Row[Any] | None:
    return conn.execute(sa.select(vmm).where(vmm.c.id == vmm_id)).first()


def insert_vmm(conn: Connection, *, vmm_id: str, instance_id: str, sled_id: str) -> None:
    t = now()
    conn.execute(
        vmm.insert().values(
            id=vmm_id,
            instance_id=instance_id,
            sled_id=sled_id,
            state="creating",
            time_created=t,
            time_state_updated=t,
        )
    )


def set_vmm_state(conn: Connection, vmm_id: str, state: str, *only_from: str) -> int:
    q = vmm.update().where(vmm.c.id == vmm_id)
    if only_from:
        q = q.where(vmm.c.state.in_(only_from))
    return conn.execute(q.values(state=state, time_state_updated=now())).rowcount
