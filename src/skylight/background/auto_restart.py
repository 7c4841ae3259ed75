"""Auto-restart: failed instances whose policy allows it are started again.

When a VMM dies, ``schedule_in`` (called in the same transaction that marks the instance
failed) decides when the first attempt may run: at once, or when the cooldown after the last
automatic restart ends. This task starts what is due. An attempt that fails leaves the
instance *failed* (never stopped) with ``instance.auto_restart_failed``; a transient reason is
retried after a capped exponential backoff, a permanent one ends the retries with
``instance.auto_restart_gave_up``. Every decision is an event, so nothing fails in the dark.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.clock import as_utc, iso, now
from skylight.config import Settings
from skylight.errors import SkylightError
from skylight.events.kinds import Kind, control_plane
from skylight.instances.record import record
from skylight.store import instances
from skylight.store.schema import instance, saga

if TYPE_CHECKING:
    from skylight.controlplane import ControlPlane

log = logging.getLogger(__name__)
ACTOR = control_plane("auto_restart")


def enabled(row: Any) -> bool:
    return bool(row.auto_restart_policy != "never")


def first_attempt(settings: Settings, row: Any) -> datetime:
    """Right away, unless the instance is still in the cooldown of its last auto-restart."""
    t = now()
    if row.time_last_auto_restarted is not None:
        cooldown_ends = as_utc(row.time_last_auto_restarted) + timedelta(
            seconds=settings.auto_restart_cooldown
        )
        return max(t, cooldown_ends)
    return t


def schedule_in(conn: Connection, settings: Settings, instance_id: str) -> None:
    """The instance just failed: schedule its first restart attempt, with an event."""
    row = instances.by_id(conn, instance_id)
    if row is None or not enabled(row) or row.intended_state != "running":
        return
    at = first_attempt(settings, row)
    instances.update(conn, instance_id, time_next_auto_restart=at, auto_restart_attempts=0)
    record(conn, instance_id, Kind.AUTO_RESTART_SCHEDULED, ACTOR, detail={"next_attempt": iso(at)})


def backoff(settings: Settings, attempts: int) -> float:
    return float(
        min(
            settings.auto_restart_backoff * 2 ** max(0, attempts - 1),
            settings.auto_restart_backoff_max,
        )
    )


def after_failed_attempt(
    conn: Connection,
    settings: Settings,
    instance_id: str,
    operation_id: str,
    reason: dict[str, Any],
) -> None:
    """An automatic restart unwound: the instance stays failed, and says when (or whether)
    the next attempt comes."""
    row = instances.by_id(conn, instance_id)
    assert row is not None
    if reason.get("transient", False) and enabled(row) and row.intended_state == "running":
        at = now() + timedelta(seconds=backoff(settings, row.auto_restart_attempts))
        instances.update(conn, instance_id, time_next_auto_restart=at)
        record(
            conn,
            instance_id,
            Kind.AUTO_RESTART_FAILED,
            ACTOR,
            operation_id=operation_id,
            reason=reason,
            detail={"next_attempt": iso(at), "attempt": row.auto_restart_attempts},
            explains_status=True,
        )
        return
    instances.update(conn, instance_id, time_next_auto_restart=None)
    record(
        conn,
        instance_id,
        Kind.AUTO_RESTART_FAILED,
        ACTOR,
        operation_id=operation_id,
        reason=reason,
        detail={"next_attempt": None, "attempt": row.auto_restart_attempts},
    )
    record(
        conn,
        instance_id,
        Kind.AUTO_RESTART_GAVE_UP,
        ACTOR,
        operation_id=operation_id,
        reason=reason,
        explains_status=True,
    )


def _due(conn: Connection, limit: int) -> list[str]:
    starting = sa.select(saga.c.instance_id).where(
        saga.c.name == "instance-start", saga.c.state.in_(("running", "unwinding"))
    )
    q = (
        sa.select(instance.c.id)
        .where(
            instance.c.state == "failed",
            instance.c.active_vmm_id.is_(None),
            instance.c.intended_state == "running",
            instance.c.time_deleted.is_(None),
            instance.c.time_next_auto_restart.is_not(None),
            instance.c.time_next_auto_restart <= now(),
            instance.c.id.not_in(starting),
        )
        .order_by(instance.c.time_next_auto_restart)
        .limit(limit)
    )
    return list(conn.execute(q).scalars())


async def run_once(cp: ControlPlane) -> int:
    """Start every instance whose restart is due (up to a batch); returns how many began."""
    from skylight.background.replicas import holds
    from skylight.instances import operations

    if not await holds(cp, "auto-restart"):
        return 0  # another replica runs auto-restart for the fleet
    due = await cp.store.tx(lambda c: _due(c, cp.settings.auto_restart_batch))
    for instance_id in due:
        try:
            await operations.start_instance(cp, instance_id, ACTOR, "auto_restart", wait=0)
            cp.metrics.auto_restarts.inc()
        except SkylightError as exc:  # it changed state meanwhile: nothing to restart
            log.info("auto-restart of %s skipped: %s", instance_id, exc.message)
    return len(due)


async def loop(cp: ControlPlane) -> None:
    while True:
        try:
            await run_once(cp)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("auto-restart pass failed; trying again next interval")
        await asyncio.sleep(cp.settings.auto_restart_interval)
