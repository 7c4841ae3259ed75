"""Event rows: written inside the transaction of the change they describe, read newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.clock import now
from skylight.events.kinds import Kind, severity_of
from skylight.ids import new_id
from skylight.store.schema import event


@dataclass(frozen=True)
class NewEvent:
    instance_id: str
    project_id: str
    kind: Kind
    actor: dict[str, Any]
    run_state: str
    operation_id: str | None = None
    reason: dict[str, Any] | None = None
    severity: str | None = None
    detail: dict[str, Any] | None = None


def insert(conn: Connection, ev: NewEvent) -> str:
    """Write ``ev`` and return its id. Call inside the transaction of the change itself."""
    event_id = new_id()
    t = now()
    conn.execute(
        event.insert().values(
            id=event_id,
            instance_id=ev.instance_id,
            project_id=ev.project_id,
            time=t,
            time_last=t,
            count=1,
            kind=str(ev.kind),
            severity=ev.severity or severity_of(ev.kind),
            actor=ev.actor,
            operation_id=ev.operation_id,
            run_state=ev.run_state,
            reason_code=ev.reason["code"] if ev.reason else None,
            reason=ev.reason,
            detail=ev.detail,
        )
    )
    return event_id


@dataclass(frozen=True)
class EventFilter:
    instance_id: str | None = None
    project_id: str | None = None
    severity: str | None = None
    kind: str | None = None
    operation_id: str | None = None
    since: datetime | None = None


def page(
    conn: Connection, flt: EventFilter, *, limit: int, before_seq: int | None
) -> list[sa.Row[Any]]:
    """Newest first; ``before_seq`` is the cursor from the previous page."""
    q = sa.select(event)
    if flt.instance_id is not None:
        q = q.where(event.c.instance_id == flt.instance_id)
    if flt.project_id is not None:
        q = q.where(event.c.project_id == flt.project_id)
    if flt.severity is not None:
        q = q.where(event.c.severity == flt.severity)
    if flt.kind is not None:
        q = q.where(event.c.kind == flt.kind)
    if flt.operation_id is not None:
        q = q.where(event.c.operation_id == flt.operation_id)
    if flt.since is not None:
        q = q.where(event.c.time_last >= flt.since)
    if before_seq is not None:
        q = q.where(event.c.seq < before_seq)
    return list(conn.execute(q.order_by(event.c.seq.desc()).limit(limit)))


def get(conn: Connection, event_id: str) -> sa.Row[Any] | None:
    return conn.execute(sa.select(event).where(event.c.id == event_id)).first()
