"""Alert receivers (webhooks), their subscriptions and secrets, and their deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.store import Row, paging
from skylight.store.schema import (
    alert_delivery,
    alert_dispatch,
    alert_receiver,
    alert_subscription,
    webhook_secret,
)
from skylight.wire import JsonObject

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
_CURSOR = "events"

# -- receivers ---------------------------------------------------------------------------------


def by_id(conn: Connection, receiver_id: str) -> Row | None:
    return conn.execute(sa.select(alert_receiver).where(alert_receiver.c.id == receiver_id)).first()


def by_name(conn: Connection, name: str) -> Row | None:
    return conn.execute(sa.select(alert_receiver).where(alert_receiver.c.name == name)).first()


def page(conn: Connection, *, sort: str, limit: int, marker: str | None) -> list[Row]:
    return paging.page(
        conn, sa.select(alert_receiver), alert_receiver, sort=sort, limit=limit, marker=marker
    )


def insert(conn: Connection, **values: object) -> None:
    conn.execute(alert_receiver.insert().values(**values))


def update(conn: Connection, receiver_id: str, **values: object) -> None:
    conn.execute(alert_receiver.update().where(alert_receiver.c.id == receiver_id).values(**values))


def delete(conn: Connection, receiver_id: str) -> None:
    """The receiver and everything that was only for it."""
    for table in (alert_delivery, alert_subscription, webhook_secret):
        conn.execute(table.delete().where(table.c.receiver_id == receiver_id))
    conn.execute(alert_receiver.delete().where(alert_receiver.c.id == receiver_id))


# -- subscriptions -----------------------------------------------------------------------------


def subscriptions(conn: Connection, receiver_ids: Sequence[str]) -> dict[str, list[str]]:
    """Each receiver's patterns, in the order they were made."""
    out: dict[str, list[str]] = {r: [] for r in receiver_ids}
    q = (
        sa.select(alert_subscription.c.receiver_id, alert_subscription.c.pattern)
        .where(alert_subscription.c.receiver_id.in_(list(receiver_ids)))
        .order_by(alert_subscription.c.time_created, alert_subscription.c.pattern)
    )
    for receiver_id, pattern in conn.execute(q):
        out[receiver_id].append(pattern)
    return out


def all_subscriptions(conn: Connection) -> list[Row]:
    """Every (receiver_id, pattern, after_seq): what the dispatcher matches events against."""
    return list(conn.execute(sa.select(alert_subscription)))


def add_subscription(
    conn: Connection, receiver_id: str, pattern: str, after_seq: int, at: datetime
) -> bool:
    """False when the receiver already has it."""
    exists = conn.execute(
        sa.select(alert_subscription.c.pattern).where(
            alert_subscription.c.receiver_id == receiver_id,
            alert_subscription.c.pattern == pattern,
        )
    ).first()
    if exists is not None:
        return False
    conn.execute(
        alert_subscription.insert().values(
            receiver_id=receiver_id, pattern=pattern, after_seq=after_seq, time_created=at
        )
    )
    return True


def remove_subscription(conn: Connection, receiver_id: str, pattern: str) -> bool:
    result = conn.execute(
        alert_subscription.delete().where(
            alert_subscription.c.receiver_id == receiver_id,
            alert_subscription.c.pattern == pattern,
        )
    )
    return bool(result.rowcount)


# -- secrets -----------------------------------------------------------------------------------


def secrets(conn: Connection, receiver_ids: Sequence[str]) -> dict[str, list[Row]]:
    """Each receiver's secrets (values included: for signing, never for views), oldest first."""
    out: dict[str, list[Row]] = {r: [] for r in receiver_ids}
    q = (
        sa.select(webhook_secret)
        .where(webhook_secret.c.receiver_id.in_(list(receiver_ids)))
        .order_by(webhook_secret.c.time_created, webhook_secret.c.id)
    )
    for row in conn.execute(q):
        out[row.receiver_id].append(row)
    return out


def secret(conn: Connection, secret_id: str) -> Row | None:
    return conn.execute(sa.select(webhook_secret).where(webhook_secret.c.id == secret_id)).first()


def add_secret(conn: Connection, **values: object) -> None:
    conn.execute(webhook_secret.insert().values(**values))


def all_secrets(conn: Connection) -> list[Row]:
    return list(conn.execute(sa.select(webhook_secret.c.id, webhook_secret.c.secret)))


def set_secret(conn: Connection, secret_id: str, secret: str) -> None:
    conn.execute(
        webhook_secret.update().where(webhook_secret.c.id == secret_id).values(secret=secret)
    )


def remove_secret(conn: Connection, secret_id: str) -> None:
    conn.execute(webhook_secret.delete().where(webhook_secret.c.id == secret_id))


# -- the dispatcher's place in the event log ---------------------------------------------------


def cursor(conn: Connection, *, lock: bool = False) -> int | None:
    """Where dispatching stopped (None before its first pass). ``lock`` holds the row
    (PostgreSQL) so that two dispatchers can never both hand out the same events."""
    q = sa.select(alert_dispatch.c.after_seq).where(alert_dispatch.c.name == _CURSOR)
    if lock:
        q = q.with_for_update()
    value = conn.execute(q).scalar()
    return None if value is None else int(value)


def set_cursor(conn: Connection, after_seq: int) -> None:
    done = conn.execute(
        alert_dispatch.update().where(alert_dispatch.c.name == _CURSOR).values(after_seq=after_seq)
    ).rowcount
    if not done:
        conn.execute(alert_dispatch.insert().values(name=_CURSOR, after_seq=after_seq))


# -- deliveries --------------------------------------------------------------------------------


def insert_deliveries(conn: Connection, rows: list[JsonObject]) -> None:
    if rows:
        conn.execute(alert_delivery.insert(), rows)


def delivery(conn: Connection, delivery_id: str) -> Row | None:
    return conn.execute(sa.select(alert_delivery).where(alert_delivery.c.id == delivery_id)).first()


def due(conn: Connection, at: datetime, limit: int) -> list[Row]:
    """Pending deliveries whose time has come, oldest first."""
    q = (
        sa.select(alert_delivery)
        .where(alert_delivery.c.state == PENDING, alert_delivery.c.time_next_attempt <= at)
        .order_by(alert_delivery.c.time_next_attempt, alert_delivery.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    return list(conn.execute(q))


def claim(conn: Connection, delivery_ids: list[str], until: datetime) -> None:
    """Push the claimed deliveries' next attempt past the time their sending may take: were
    this replica to die mid-send, they come due again then (at least once, never lost)."""
    if delivery_ids:
        conn.execute(
            alert_delivery.update()
            .where(alert_delivery.c.id.in_(delivery_ids), alert_delivery.c.state == PENDING)
            .values(time_next_attempt=until)
        )


def record_attempt(
    conn: Connection,
    delivery: Row,
    attempt: JsonObject,
    *,
    state: str,
    next_attempt: datetime | None,
) -> bool:
    """Append ``attempt`` to ``delivery`` (its row as claimed: only its claimer sends it, so
    its attempts have not changed since); False if it is gone (its receiver was deleted)."""
    done = conn.execute(
        alert_delivery.update()
        .where(alert_delivery.c.id == delivery.id)
        .values(attempts=[*delivery.attempts, attempt], state=state, time_next_attempt=next_attempt)
    ).rowcount
    return bool(done)


def deliveries_page(
    conn: Connection,
    receiver_id: str,
    states: Sequence[str],
    *,
    limit: int,
    marker: str | None,
) -> list[Row]:
    """Oldest first (ids are time-ordered), in the given states."""
    q = sa.select(alert_delivery).where(
        alert_delivery.c.receiver_id == receiver_id, alert_delivery.c.state.in_(list(states))
    )
    if marker is not None:
        q = q.where(alert_delivery.c.id > marker)
    return list(conn.execute(q.order_by(alert_delivery.c.id).limit(limit)))


def latest_of_alert(conn: Connection, receiver_id: str, alert_id: str) -> Row | None:
    q = (
        sa.select(alert_delivery)
        .where(alert_delivery.c.receiver_id == receiver_id, alert_delivery.c.alert_id == alert_id)
        .order_by(alert_delivery.c.id.desc())
        .limit(1)
    )
    return conn.execute(q).first()


def undelivered_alerts(conn: Connection, receiver_id: str) -> list[Row]:
    """The newest delivery of each alert (probes aside) none of whose deliveries to this
    receiver succeeded or is still pending: what a probe that succeeds may resend."""
    mine = sa.and_(alert_delivery.c.receiver_id == receiver_id, alert_delivery.c.trigger != "probe")
    newest = (
        sa.select(sa.func.max(alert_delivery.c.id)).where(mine).group_by(alert_delivery.c.alert_id)
    )
    settled = sa.select(alert_delivery.c.alert_id).where(
        mine, alert_delivery.c.state.in_([PENDING, DELIVERED])
    )
    q = (
        sa.select(alert_delivery)
        .where(alert_delivery.c.id.in_(newest), alert_delivery.c.alert_id.not_in(settled))
        .order_by(alert_delivery.c.id)
    )
    return list(conn.execute(q))


def prune_deliveries(conn: Connection, older_than: datetime, limit: int) -> int:
    """Delete up to ``limit`` settled deliveries (delivered or failed) begun before
    ``older_than``; pending ones stay, whatever their age. How many went."""
    doomed = (
        sa.select(alert_delivery.c.id)
        .where(
            alert_delivery.c.state.in_([DELIVERED, FAILED]),
            alert_delivery.c.time_started < older_than,
        )
        .limit(limit)
    )
    ids = list(conn.execute(doomed).scalars())
    if ids:
        conn.execute(alert_delivery.delete().where(alert_delivery.c.id.in_(ids)))
    return len(ids)
