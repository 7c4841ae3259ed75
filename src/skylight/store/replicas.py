"""Replica heartbeats, leases, and the adoption of a dead replica's sagas."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.clock import now
from skylight.store import Row
from skylight.store.schema import lease, replica, saga

UNFINISHED = ("running", "unwinding")


def heartbeat(conn: Connection, replica_id: str) -> None:
    conn.execute(replica.update().where(replica.c.id == replica_id).values(time_heartbeat=now()))


def mark_stopped(conn: Connection, replica_id: str) -> None:
    """The replica stopped on purpose: peers need not wait for its heartbeat to go stale."""
    conn.execute(replica.update().where(replica.c.id == replica_id).values(time_stopped=now()))


def live_others(conn: Connection, replica_id: str, since: datetime) -> list[Row]:
    """Other replicas that have heartbeat since ``since`` and have not stopped."""
    q = sa.select(replica).where(
        replica.c.id != replica_id,
        replica.c.time_heartbeat >= since,
        replica.c.time_stopped.is_(None),
    )
    return list(conn.execute(q))


def dead_with_sagas(conn: Connection, replica_id: str, before: datetime | None) -> list[str]:
    """Replicas that still own unfinished sagas and stopped, or (``before`` given) have been
    silent since ``before``."""
    owners = sa.select(saga.c.current_sec).where(saga.c.state.in_(UNFINISHED)).distinct()
    gone: sa.ColumnElement[bool] = replica.c.time_stopped.is_not(None)
    if before is not None:
        gone = sa.or_(gone, replica.c.time_heartbeat < before)
    q = sa.select(replica.c.id).where(replica.c.id != replica_id, gone, replica.c.id.in_(owners))
    return list(conn.execute(q).scalars())


def hand_over(conn: Connection, saga_ids: list[str], owner: str, to: str) -> list[Row]:
    """Move these unfinished sagas of ``owner`` to ``to``, bumping their generation (the
    same fence as adoption: ``owner`` can no longer write to them)."""
    if not saga_ids:
        return []
    return list(
        conn.execute(
            saga.update()
            .where(
                saga.c.id.in_(saga_ids),
                saga.c.current_sec == owner,
                saga.c.state.in_(UNFINISHED),
            )
            .values(current_sec=to, adopt_generation=saga.c.adopt_generation + 1)
            .returning(saga.c.id, saga.c.name, saga.c.instance_id, saga.c.adopt_generation)
        )
    )


def unfinished_of(conn: Connection, owner: str) -> list[str]:
    q = sa.select(saga.c.id).where(saga.c.current_sec == owner, saga.c.state.in_(UNFINISHED))
    return list(conn.execute(q).scalars())


def adopt(conn: Connection, dead: str, adopter: str) -> list[Row]:
    """Move the dead replica's unfinished sagas to ``adopter``, bumping their generation.

    One UPDATE, conditioned on the old owner: when two replicas adopt at once, the row locks
    make the second see the sagas already moved, and it gets none.
    """
    return list(
        conn.execute(
            saga.update()
            .where(saga.c.current_sec == dead, saga.c.state.in_(UNFINISHED))
            .values(current_sec=adopter, adopt_generation=saga.c.adopt_generation + 1)
            .returning(saga.c.id, saga.c.name, saga.c.instance_id, saga.c.adopt_generation)
        )
    )


def hold_lease(conn: Connection, name: str, holder: str, ttl: float) -> bool:
    """Take or renew lease ``name`` for ``ttl`` seconds; False if another holds it."""
    t = now()
    expires = t + timedelta(seconds=ttl)
    renewed = conn.execute(
        lease.update()
        .where(lease.c.name == name, sa.or_(lease.c.holder == holder, lease.c.expires < t))
        .values(holder=holder, expires=expires)
    ).rowcount
    if renewed:
        return True
    if conn.execute(sa.select(lease.c.name).where(lease.c.name == name)).first() is not None:
        return False
    try:
        with conn.begin_nested():
            conn.execute(lease.insert().values(name=name, holder=holder, expires=expires))
    except sa.exc.IntegrityError:
        return False  # another replica created it first
    return True


def register(conn: Connection, replica_id: str, bind: str, t: datetime) -> None:
    """The replica starts (again): live from now, not stopped."""
    values = {"bind": bind, "time_started": t, "time_heartbeat": t, "time_stopped": None}
    if conn.execute(sa.select(replica.c.id).where(replica.c.id == replica_id)).first():
        conn.execute(replica.update().where(replica.c.id == replica_id).values(**values))
    else:
        conn.execute(replica.insert().values(id=replica_id, **values))


def claim_all_unfinished(conn: Connection, replica_id: str) -> None:
    """Every unfinished saga of any other identity becomes this replica's (fenced by a new
    generation): for the one replica of an SQLite store, whatever it was called before."""
    conn.execute(
        saga.update()
        .where(saga.c.state.in_(UNFINISHED), saga.c.current_sec != replica_id)
        .values(current_sec=replica_id, adopt_generation=saga.c.adopt_generation + 1)
    )
