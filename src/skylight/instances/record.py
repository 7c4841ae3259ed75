"""Write an instance event that reflects the instance's state right after the change."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from skylight.events.kinds import Actor, Kind
from skylight.instances.state import run_state
from skylight.store import events, instances
from skylight.wire import JsonObject


def record(
    conn: Connection,
    instance_id: str,
    kind: Kind,
    actor: Actor,
    *,
    operation_id: str | None = None,
    reason: JsonObject | None = None,
    severity: str | None = None,
    detail: JsonObject | None = None,
    explains_status: bool = False,
) -> str:
    """Insert the event in ``conn``'s transaction; with ``explains_status`` it becomes the
    instance's ``status_reason`` (the instance is not where its user wants it because of it),
    and, if the instance had none, the beginning of its trouble (``status_origin_event_id``)."""
    row = instances.by_id(conn, instance_id, deleted=True)
    assert row is not None, f"event for unknown instance {instance_id}"
    event_id = events.insert(
        conn,
        events.NewEvent(
            instance_id=instance_id,
            project_id=row.project_id,
            kind=kind,
            actor=actor,
            run_state=run_state(row.state, row.vmm_state, row.intended_state),
            operation_id=operation_id,
            reason=reason,
            severity=severity,
            detail=detail,
        ),
    )
    if explains_status:
        # (Migration 0012 gave every status its origin; only record sets a status.)
        origin = row.status_origin_event_id or event_id
        instances.update(conn, instance_id, status_event_id=event_id, status_origin_event_id=origin)
    return event_id


def clear_status(conn: Connection, instance_id: str) -> None:
    instances.update(conn, instance_id, status_event_id=None)
