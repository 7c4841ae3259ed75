"""What the auditor asks of the store: instances that may be in the dark."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.clock import as_utc
from skylight.store.schema import event, instance, saga, saga_node_event, vmm

UNFINISHED = ("running", "unwinding")


@dataclass(frozen=True)
class Suspect:
    """An instance in the dark. ``saga_*`` describe its stalled operation, if it has one."""

    instance_id: str
    case: str  # stalled_operation | no_operation
    saga_id: str | None = None
    saga_name: str | None = None
    saga_state: str | None = None
    saga_owner: str | None = None
    last_step: tuple[str, str] | None = None  # (node, event type) of its newest log entry
    quiet_since: datetime | None = None


def _stalled(conn: Connection, before: datetime, only: str | None) -> list[Suspect]:
    """Unfinished sagas on an instance whose log has not moved since ``before``."""
    q = (
        sa.select(saga.c.id, saga.c.name, saga.c.state, saga.c.current_sec, saga.c.instance_id)
        .add_columns(saga.c.time_created)
        .where(
            saga.c.state.in_(UNFINISHED),
            saga.c.instance_id.is_not(None),
            saga.c.time_created < before,
        )
    )
    if only is not None:
        q = q.where(saga.c.instance_id == only)
    rows = conn.execute(q).all()
    found = []
    for row in rows:
        last = conn.execute(
            sa.select(saga_node_event.c.node_name, saga_node_event.c.event_type)
            .add_columns(saga_node_event.c.time)
            .where(saga_node_event.c.saga_id == row.id)
            .order_by(saga_node_event.c.seq.desc())
            .limit(1)
        ).first()
        if last is not None and as_utc(last.time) >= before:
            continue
        found.append(
            Suspect(
                instance_id=row.instance_id,
                case="stalled_operation",
                saga_id=row.id,
                saga_name=row.name,
                saga_state=row.state,
                saga_owner=row.current_sec,
                last_step=(last.node_name, last.event_type) if last else None,
                quiet_since=as_utc(last.time if last else row.time_created),
            )
        )
    return found


def _not_where_wanted() -> sa.ColumnElement[bool]:
    running = sa.and_(instance.c.state == "vmm", vmm.c.state == "running")
    return sa.or_(
        instance.c.state == "creating",
        sa.and_(instance.c.intended_state == "running", sa.not_(running)),
        sa.and_(instance.c.intended_state == "stopped", instance.c.state == "vmm"),
        instance.c.intended_state == "destroyed",
    )


def _unexplained(conn: Connection, before: datetime, only: str | None) -> list[Suspect]:
    """Instances not where wanted, with no operation, no status reason and no restart
    scheduled, unchanged since ``before``."""
    busy = sa.select(saga.c.instance_id).where(
        saga.c.state.in_(UNFINISHED), saga.c.instance_id.is_not(None)
    )
    q = (
        sa.select(instance.c.id, instance.c.time_modified)
        .select_from(instance.outerjoin(vmm, vmm.c.id == instance.c.active_vmm_id))
        .where(
            instance.c.time_deleted.is_(None),
            instance.c.status_event_id.is_(None),
            instance.c.time_next_auto_restart.is_(None),
            instance.c.time_modified < before,
            _not_where_wanted(),
            instance.c.id.not_in(busy),
        )
    )
    if only is not None:
        q = q.where(instance.c.id == only)
    return [
        Suspect(instance_id=r.id, case="no_operation", quiet_since=as_utc(r.time_modified))
        for r in conn.execute(q)
    ]


def suspects(conn: Connection, before: datetime, only: str | None = None) -> list[Suspect]:
    """Instances in the dark as of ``before`` (``only``: just that instance, if it is)."""
    return _stalled(conn, before, only) + _unexplained(conn, before, only)


def still_dark(conn: Connection, suspect: Suspect, before: datetime) -> bool:
    """Re-check one suspect under its instance's lock (another replica may have explained
    it, or the operation moved, since the look)."""
    if suspect not in suspects(conn, before, only=suspect.instance_id):
        return False
    if suspect.saga_id is None:
        return True
    # A stalled operation is reported once: not again while its report is the status.
    status: Any = conn.execute(
        sa.select(event.c.kind, event.c.operation_id)
        .select_from(instance.join(event, event.c.id == instance.c.status_event_id))
        .where(instance.c.id == suspect.instance_id)
    ).first()
    return not (
        status is not None
        and status.kind == "instance.operation_stuck"
        and status.operation_id == suspect.saga_id
    )
