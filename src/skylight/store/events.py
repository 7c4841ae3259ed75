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
from skylight.store import Row
from skylight.store.schema import event, instance
from skylight.wire import JsonObject


@dataclass(frozen=True)
class NewEvent:
    instance_id: str
    project_id: str
    kind: Kind
    actor: dict[str, str]
    run_state: str
    operation_id: str | None = None
    reason: JsonObject | None = None
    severity: str | None = None
    detail: JsonObject | None = None


# Identical repeats by the control plane (same instance, kind, reason code and actor) within
# this many seconds become one event with a count, so a restart loop cannot flood the log.
COALESCE_WINDOW = 3600.0
_PG_EVENT_LOCK = 0x5B1_16_E7
# Connection.info key: the kinds of events a transaction wrote (read by the Store after
# commit, to wake streams and count metrics).
WRITTEN = "skylight.events_written"


def _repeat_of(conn: Connection, ev: NewEvent, reason_code: str | None) -> Row | None:
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
        event_id, first, count = prev.id, prev.time, prev._mapping["count"] + 1  # (not tuple.count)
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


def page(conn: Connection, flt: EventFilter, *, limit: int, before_seq: int | None) -> list[Row]:
    """Newest first; ``before_seq`` is the cursor from the previous page."""
    if conn.dialect.name == "postgresql" and flt.instance_id is not None and _index_covers(flt):
        return _page_prefetched(conn, flt, limit=limit, before_seq=before_seq)
    q = _where(sa.select(event), flt, before_seq)
    return list(conn.execute(q.order_by(event.c.seq.desc()).limit(limit)))


def _where(q: sa.Select[Any], flt: EventFilter, before_seq: int | None) -> sa.Select[Any]:
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
    return q


def _index_covers(flt: EventFilter) -> bool:
    """Does an index hold every column the filter looks at (instance, kind, seq)?"""
    return flt.severity is None and flt.operation_id is None and flt.since is None


def _page_prefetched(
    conn: Connection, flt: EventFilter, *, limit: int, before_seq: int | None
) -> list[Row]:
    """A page of an instance's events whose rows are read from disk together, not one by one.

    An instance's newest events span its whole life, interleaved with everybody's: each sits
    on a different table page, most of them long out of memory, and an index scan reads
    those pages one after another (a cold first page was 100 reads in a row). (A project's
    or the fleet's newest events are the table's newest pages, which are in memory.) Here
    the index alone (an index-only scan) first gives the ``seq`` of the page's oldest row;
    then the rows from there up come by a bitmap heap scan over the same index range, which
    asks the OS for all its table pages ahead (``effective_io_concurrency``), so the reads
    overlap. Measured in bench/events.py.
    """
    if limit < 1:
        return []
    # One round trip: the planner settings for the second statement (transaction-local: a
    # bitmap heap scan, reading ahead, instead of an index scan, which reads one page at a
    # time) and the first statement itself.
    first = (
        _where(sa.select(event.c.seq), flt, before_seq)
        .order_by(event.c.seq.desc())
        .offset(limit - 1)
        .limit(1)
        .scalar_subquery()
    )
    was, oldest = conn.execute(
        sa.select(
            sa.func.current_setting("enable_indexscan"),
            first,
            sa.func.set_config("enable_indexscan", "off", True),
            sa.func.set_config("effective_io_concurrency", str(PREFETCH_PAGES), True),
        )
    ).one()[:2]
    q = _where(sa.select(event), flt, before_seq)
    if oldest is not None:
        # A constant, not a subquery: the planner then knows the range holds about a page
        # of rows (with an unknown bound it planned a project's page as a scan of its every
        # event: 0.5 s).
        q = q.where(event.c.seq >= oldest)
    rows = conn.execute(q).all()
    # Put it back for the rest of the transaction. (Had the statement failed, the transaction
    # is over, and so are its local settings: a statement here would only hide the error.)
    conn.execute(sa.select(sa.func.set_config("enable_indexscan", was, True)))
    return sorted(rows, key=lambda r: r.seq, reverse=True)[:limit]


PREFETCH_PAGES = 64  # table pages a prefetched page asks the OS for ahead


def get(conn: Connection, event_id: str) -> Row | None:
    return conn.execute(sa.select(event).where(event.c.id == event_id)).first()


def after(conn: Connection, flt: EventFilter, *, after_seq: int, limit: int) -> list[Row]:
    """Oldest first from a cursor: what a stream sends next."""
    q = sa.select(event).where(event.c.seq > after_seq)
    if flt.instance_id is not None:
        q = q.where(event.c.instance_id == flt.instance_id)
    if flt.project_id is not None:
        q = q.where(event.c.project_id == flt.project_id)
    return list(conn.execute(q.order_by(event.c.seq).limit(limit)))


def last_seq(conn: Connection) -> int:
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(event.c.seq), 0))).scalar_one())


RETENTION_BATCH = 200  # instances per retention transaction (SQLite: ~100 ms deleting 2,000)


def retention_batch(
    conn: Connection,
    *,
    older_than: datetime,
    keep: int,
    after: str | None = None,
    instances: int = RETENTION_BATCH,
) -> tuple[int, str | None]:
    """Delete the events of up to ``instances`` instances (ids after ``after``, deleted
    instances included) last seen before ``older_than``, except each instance's newest
    ``keep`` and the event that is its instance's current status reason.

    Returns how many went and the id to continue after, or None when every instance has been
    seen. A pass is many short transactions, not one long one: on SQLite a transaction holds
    the store's lock, and every request waits for it.
    """
    q = sa.select(instance.c.id).order_by(instance.c.id).limit(instances)
    if after is not None:
        q = q.where(instance.c.id > after)
    batch = list(conn.execute(q).scalars())
    if not batch:
        return 0, None
    # Per instance of the batch: its status event and the event its trouble began with (both
    # kept whatever their age: the status tells their story) and, with ``keep``,
    # the seq of its keep-th newest event (one probe, an index walk of ``keep`` entries);
    # then only its events older than that are looked at, through (instance_id, seq).
    # Instances with fewer events have nothing to lose.
    columns = [
        instance.c.id.label("instance_id"),
        instance.c.status_event_id.label("status"),
        instance.c.status_origin_event_id.label("origin"),
    ]
    if keep > 0:
        newer = event.alias("newer")
        kth_newest = (
            sa.select(newer.c.seq)
            .where(newer.c.instance_id == instance.c.id)
            .order_by(newer.c.seq.desc())
            .limit(1)
            .offset(keep - 1)
            .scalar_subquery()
        )
        columns.append(kth_newest.label("kth"))
    bounds = sa.select(*columns).where(instance.c.id.in_(batch)).subquery()
    on = event.c.instance_id == bounds.c.instance_id
    if keep > 0:
        on = sa.and_(on, event.c.seq < bounds.c.kth)
    doomed = (
        sa.select(event.c.seq)
        .join(bounds, on)
        .where(
            event.c.time_last < older_than,
            sa.or_(bounds.c.status.is_(None), event.c.id != bounds.c.status),
            sa.or_(bounds.c.origin.is_(None), event.c.id != bounds.c.origin),
        )
    )
    result = conn.execute(event.delete().where(event.c.seq.in_(doomed)))
    return int(result.rowcount or 0), batch[-1] if len(batch) == instances else None


def enforce_retention(
    conn: Connection, *, older_than: datetime, keep: int, instances: int = RETENTION_BATCH
) -> int:
    """A whole retention pass on one connection (see ``retention_batch``); returns how many
    events went. The background task runs the batches in transactions of their own."""
    removed, after = retention_batch(conn, older_than=older_than, keep=keep, instances=instances)
    while after is not None:
        more, after = retention_batch(
            conn, older_than=older_than, keep=keep, after=after, instances=instances
        )
        removed += more
    return removed
