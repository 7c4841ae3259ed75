"""Replicas: each heartbeats, runs every saga it owns, adopts what silent or stopped peers
left, and hands its own sagas over when it stops.

Adoption moves the sagas to this replica with a new generation (so the old owner, should it
wake up, is fenced off: none of its writes land), records an ``instance.operation_adopted``
event in the same transaction, and replays each saga from its log. A replica adopts a
*silent* peer's sagas only once it has itself reached the store for a whole adoption
timeout: after an outage that cut every replica off, all heartbeats are stale at once, and
nobody has seen anybody die. A peer that *stopped* (and said so) is adopted at once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from datetime import timedelta

from sqlalchemy.engine import Connection

from skylight.clock import now
from skylight.events.kinds import Kind, control_plane
from skylight.instances.record import record
from skylight.services import Services
from skylight.store import Row, StoreUnavailable, replicas

log = logging.getLogger(__name__)


async def loop(cp: Services) -> None:
    """Each heartbeat interval: heartbeat; launch this replica's sagas that nothing runs;
    adopt the sagas of peers that stopped, or went silent while this one watched."""
    watching_since: float | None = None
    while True:
        try:
            await cp.store.tx(lambda c: replicas.heartbeat(c, cp.sec_id))
            if watching_since is None:
                watching_since = time.monotonic()
            await cp.executor.resume_all()
            watched = time.monotonic() - watching_since >= cp.settings.adoption_timeout
            await adopt_once(cp, silent=watched)
        except asyncio.CancelledError:
            raise
        except StoreUnavailable as exc:
            if watching_since is not None:
                log.warning("the store is unavailable (%s); heartbeats wait for it", exc)
            watching_since = None
        except Exception:
            log.exception("replica pass failed")
        await asyncio.sleep(cp.settings.heartbeat_interval)


def _record_moves(conn: Connection, rows: list[Row], source: str, target: str, cause: str) -> None:
    for row in rows:
        if row.instance_id is None:
            continue
        record(
            conn,
            row.instance_id,
            Kind.OPERATION_ADOPTED,
            control_plane(cause),
            operation_id=row.id,
            detail={
                "operation": row.name,
                "internal": {
                    "from_replica": source,
                    "to_replica": target,
                    "generation": row.adopt_generation,
                },
            },
        )


def _adopt_all(conn: Connection, cp: Services, silent: bool) -> list[str]:
    before = now() - timedelta(seconds=cp.settings.adoption_timeout) if silent else None
    adopted: list[str] = []
    for dead in replicas.dead_with_sagas(conn, cp.sec_id, before):
        rows = replicas.adopt(conn, dead, cp.sec_id)
        _record_moves(conn, rows, dead, cp.sec_id, "replica_failure")
        adopted.extend(row.id for row in rows)
        log.warning("adopted %d unfinished sagas of replica %s", len(rows), dead)
    return adopted


async def adopt_once(cp: Services, *, silent: bool = True) -> list[str]:
    """Adopt the sagas of stopped peers, and (``silent``) of peers silent for the adoption
    timeout; the executor launches them when the adoption commits."""
    adopted = await cp.store.tx(lambda c: _adopt_all(c, cp, silent))
    for saga_id in adopted:
        cp.executor.launch(saga_id)
    return adopted


async def hand_over(cp: Services, saga_ids: list[str] | None) -> int:
    """Give these sagas of this stopping replica (``None``: all it still owns) to live
    peers, spread among them, so they carry on at once. With no live peer (SQLite, or the
    last replica) they stay this replica's: it resumes them when it starts again."""
    fresh = min(cp.settings.adoption_timeout, 3 * cp.settings.heartbeat_interval)

    def move(conn: Connection) -> int:
        peers = replicas.live_others(conn, cp.sec_id, now() - timedelta(seconds=fresh))
        ids = replicas.unfinished_of(conn, cp.sec_id) if saga_ids is None else saga_ids
        if not peers or not ids:
            return 0
        moved = 0
        targets = itertools.cycle(sorted(p.id for p in peers))
        for saga_id, target in zip(ids, targets, strict=False):
            rows = replicas.hand_over(conn, [saga_id], cp.sec_id, target)
            _record_moves(conn, rows, cp.sec_id, target, "replica_shutdown")
            moved += len(rows)
        return moved

    moved = await cp.store.tx(move)
    if moved:
        log.info("handed %d sagas over to live peers", moved)
    return moved


async def stopped(cp: Services) -> None:
    """Say that this replica stopped: peers adopt anything it still owns at once."""
    await cp.store.tx(lambda c: replicas.mark_stopped(c, cp.sec_id))


async def holds(cp: Services, name: str) -> bool:
    """Whether this replica holds the fleet-wide lease ``name`` (taking or renewing it)."""
    ttl = cp.settings.adoption_timeout
    return await cp.store.tx(lambda c: replicas.hold_lease(c, name, cp.sec_id, ttl))
