"""Replicas: each heartbeats; a live one adopts the sagas of a replica that went silent.

Adoption moves the sagas to this replica with a new generation (so the old owner, should it
wake up, is fenced off: none of its writes land), records an ``instance.operation_adopted``
event in the same transaction, and replays each saga from its log.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection

from skylight.clock import now
from skylight.events.kinds import Kind, control_plane
from skylight.instances.record import record
from skylight.store import replicas

if TYPE_CHECKING:
    from skylight.controlplane import ControlPlane

log = logging.getLogger(__name__)


async def heartbeat_loop(cp: ControlPlane) -> None:
    while True:
        try:
            await cp.store.tx(lambda c: replicas.heartbeat(c, cp.sec_id))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("heartbeat failed")
        await asyncio.sleep(cp.settings.heartbeat_interval)


def _adopt_all(conn: Connection, cp: ControlPlane) -> list[str]:
    before = now() - timedelta(seconds=cp.settings.adoption_timeout)
    adopted: list[str] = []
    for dead in replicas.dead_with_sagas(conn, cp.sec_id, before):
        for row in replicas.adopt(conn, dead, cp.sec_id):
            adopted.append(row.id)
            if row.instance_id is None:
                continue
            record(
                conn,
                row.instance_id,
                Kind.OPERATION_ADOPTED,
                control_plane("replica_failure"),
                operation_id=row.id,
                detail={
                    "operation": row.name,
                    "internal": {
                        "from_replica": dead,
                        "to_replica": cp.sec_id,
                        "generation": row.adopt_generation,
                    },
                },
            )
        log.warning("adopted the unfinished sagas of silent replica %s", dead)
    return adopted


async def adopt_once(cp: ControlPlane) -> list[str]:
    adopted = await cp.store.tx(lambda c: _adopt_all(c, cp))
    for saga_id in adopted:
        cp.executor.launch(saga_id)
    return adopted


async def adoption_loop(cp: ControlPlane) -> None:
    while True:
        try:
            await adopt_once(cp)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("adoption pass failed")
        await asyncio.sleep(cp.settings.heartbeat_interval)


async def holds(cp: ControlPlane, name: str) -> bool:
    """Whether this replica holds the fleet-wide lease ``name`` (taking or renewing it)."""
    ttl = cp.settings.adoption_timeout
    return await cp.store.tx(lambda c: replicas.hold_lease(c, name, cp.sec_id, ttl))
