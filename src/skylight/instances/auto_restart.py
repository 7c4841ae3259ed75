"""Auto-restart: failed instances whose policy allows it are started again.

When a VMM dies, ``schedule_in`` (called in the same transaction that marks the instance
failed) decides when the first attempt may run: at once, or when the cooldown after the last
automatic restart ends; the auto-restart loop starts what is due. An attempt that fails
leaves the instance *failed* (never stopped) with ``instance.auto_restart_failed``; a
transient reason is retried after a capped exponential backoff, a permanent one ends the
retries with ``instance.auto_restart_gave_up``. Every decision is an event, so nothing
fails in the dark.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from skylight.clock import as_utc, iso, now
from skylight.config import Settings
from skylight.events.kinds import Kind, control_plane
from skylight.events.reasons import Reason
from skylight.instances.record import record
from skylight.store import Row, instances
from skylight.wire import JsonObject

ACTOR = control_plane("auto_restart")


def enabled(row: Row) -> bool:
    return bool(row.auto_restart_policy != "never")


def first_attempt(settings: Settings, row: Row) -> datetime:
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
    reason: Reason,
) -> None:
    """An automatic restart unwound: the instance stays failed, and says when (or whether)
    the next attempt comes."""
    row = instances.by_id(conn, instance_id)
    assert row is not None
    retry = reason.get("transient", False) and enabled(row) and row.intended_state == "running"
    at = now() + timedelta(seconds=backoff(settings, row.auto_restart_attempts)) if retry else None
    instances.update(conn, instance_id, time_next_auto_restart=at)
    detail = {"next_attempt": iso(at) if at else None, "attempt": row.auto_restart_attempts}
    kinds = [Kind.AUTO_RESTART_FAILED] + ([] if retry else [Kind.AUTO_RESTART_GAVE_UP])
    for kind in kinds:  # the last one explains the status
        record(
            conn,
            instance_id,
            kind,
            ACTOR,
            operation_id=operation_id,
            reason=reason,
            detail=detail if kind == Kind.AUTO_RESTART_FAILED else None,
            explains_status=kind == kinds[-1],
        )


def after_failed_user_start(
    conn: Connection, settings: Settings, instance_id: str, *, keeps_restarting: bool
) -> JsonObject:
    """A user started an instance that auto-restart was going to restart, and the start
    failed. For a reason that may pass, auto-restart carries on (its next attempt as planned,
    or after the backoff if that moment has passed); for one that will not, it stops. Either
    way the failed start's event says so: the detail returned here."""
    row = instances.by_id(conn, instance_id)
    assert row is not None
    if not keeps_restarting or not enabled(row):
        return {"auto_restart": "stopped", "next_attempt": None}
    at = row.time_next_auto_restart and as_utc(row.time_next_auto_restart)
    if at is None or at < now():
        at = now() + timedelta(seconds=backoff(settings, row.auto_restart_attempts))
        instances.update(conn, instance_id, time_next_auto_restart=at)
    return {"auto_restart": "continues", "next_attempt": iso(at)}
