"""The audit log's rows: one per mutating request or login attempt, never changed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.store import Row
from skylight.store.schema import audit_log


@dataclass(frozen=True)
class Entry:
    id: str
    time_started: datetime
    time_completed: datetime
    request_id: str
    request_uri: str
    operation_id: str
    source_ip: str
    user_agent: str | None
    actor_silo_id: str | None
    actor_user_id: str | None
    auth_method: str | None
    credential_id: str | None
    http_status_code: int
    error_code: str | None
    error_message: str | None


def insert(conn: Connection, entry: Entry) -> None:
    conn.execute(audit_log.insert().values(**vars(entry)))


def page(
    conn: Connection,
    *,
    start: datetime,
    end: datetime | None,
    descending: bool,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Row]:
    """Entries completed in [start, end), by (time_completed, id), after the key ``after``."""
    key = sa.tuple_(audit_log.c.time_completed, audit_log.c.id)
    q = sa.select(audit_log).where(audit_log.c.time_completed >= start)
    if end is not None:
        q = q.where(audit_log.c.time_completed < end)
    if after is not None:
        q = q.where(key < sa.tuple_(*after) if descending else key > sa.tuple_(*after))
    order = (audit_log.c.time_completed, audit_log.c.id)
    q = q.order_by(*(c.desc() for c in order) if descending else order)
    return list(conn.execute(q.limit(limit)))
