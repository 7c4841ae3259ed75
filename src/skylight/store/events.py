"""Event rows: written inside the transaction of the change they describe, read newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.clock import now
from skylight.events.kinds import Kind, severity_of
from skylight.ids import new_id
from skylight.store.schema import event, instance


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


# Identical repeats by the control plane (same instance, kind, reason code and actor) within
# this many seconds become one event with a count, so a restart loop cannot flood the log.
COALESCE_WINDOW = 3600.0
_PG_EVENT_LOCK = 0x5B1_16_E7
# Connection.info key: the kinds of events a transaction wrote (read by the Store after
# commit, to wake streams and count metrics).
WRITTEN = "skylight.events_written"


def _repeat_of(conn: Connection, ev: NewEvent, reason_code: str | None) -> Any:
    if ev.actor.get("type") != "control_plane":
        return None  # what people do is never folded together
    q = (
        sa.select(event)
        .where(
            event.c.instance_id == ev.instance_id,
            event.c.kind == str(ev.kind),
            event.c.time_last >= now() - timedelta(seconds=COALESCE_WINDOW),
        )
        .order_by(event.c.seq.desc())
        .limit(1)
    )
    q = q.where(
        event.c.reason_code == reason_code if reason_code else event.c.reason_code.is_(None)
    )
    row = conn.execute(q).first()
    return row if row is not None and row.actor == ev.actor else None


def insert(conn: Connection, ev: NewEvent) -> str:
    """Write ``ev`` and return its id. Call inside the transaction of the change itself.

    A repeat of a recent identical event replaces it: same id, first time kept, ``count``
    and ``time_last`` advanced, and a new position (``seq``) so that streams deliver the
    update. On PostgreSQL, event writers take a transaction lock first, so events commit in
    ``seq`` order and a stream reading ``seq > cursor`` never skips one.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_EVENT_LOCK})
    t = now()
    reason_code = ev.reason["code"] if ev.reason else None
    event_id, first, count = new_id(), t, 1
    prev = _repeat_of(conn, ev, reason_code)
    if prev is not None:
        event_id, first, count = prev.id, prev.time, prev.count + 1
        conn.execute(event.delete().where(event.c.seq == prev.seq))
    conn.execute(
        event.insert().values(
            id=event_id,
            instance_id=ev.instance_id,
            project_id=ev.project_id,
            time=first,
            time_last=t,
            count=count,
            kind=str(ev.kind),
            severity=ev.severity or severity_of(ev.kind),
            actor=ev.actor,
            operation_id=ev.operation_id,
            run_state=ev.run_state,
            reason_code=reason_code,
            reason=ev.reason,
            detail=ev.detail,
        )
    )
    conn.info.setdefault(WRITTEN, []).append(str(ev.kind))
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


def after(conn: Connection, flt: EventFilter, *, after_seq: int, limit: int) -> list[sa.Row[Any]]:
    """Oldest first from a cursor: what a stream sends next."""
    q = sa.select(event).where(event.c.seq > after_seq)
    if flt.instance_id is not None:
        q = q.where(event.c.instance_id == flt.instance_id)
    if flt.project_id is not None:
        q = q.where(event.c.project_id == flt.project_id)
    return list(conn.execute(q.order_by(event.c.seq).limit(limit)))


def last_seq(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(event.c.seq), 0))).scalar_one())


def enforce_retention(conn: Connection, *, older_than: datetime, keep: int) -> int:
    """Delete events last seen before ``older_than``, except each instance's newest ``keep``
    and any event that is an instance's current status reason. Returns how many went."""
    # Per row, one probe of (instance_id, seq): the seq of its instance's keep-th newest
    # event. (A NOT IN over a ranked list of every event never finished at 10M events.)
    newer = event.alias("newer")
    kth_newest = (
        sa.select(newer.c.seq)
        .where(newer.c.instance_id == event.c.instance_id)
        .order_by(newer.c.seq.desc())
        .limit(1)
        .offset(max(keep - 1, 0))
        .scalar_subquery()
    )
    explaining = sa.exists().where(instance.c.status_event_id == event.c.id)
    conditions = [event.c.time_last < older_than, ~explaining]
    if keep > 0:
        conditions.append(event.c.seq < sa.func.coalesce(kth_newest, -1))
    result = conn.execute(event.delete().where(*conditions))
    return int(result.rowcount or 0)
