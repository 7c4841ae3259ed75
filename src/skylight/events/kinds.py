"""Event kinds and their severities."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    CREATED = "instance.created"
    START_REQUESTED = "instance.start_requested"
    PLACED = "instance.placed"
    RUNNING = "instance.running"
    START_FAILED = "instance.start_failed"
    STOP_REQUESTED = "instance.stop_requested"
    STOPPED = "instance.stopped"
    REBOOTED = "instance.rebooted"
    FAILED = "instance.failed"
    AUTO_RESTART_SCHEDULED = "instance.auto_restart_scheduled"
    AUTO_RESTART_FAILED = "instance.auto_restart_failed"
    AUTO_RESTART_GAVE_UP = "instance.auto_restart_gave_up"
    UPDATED = "instance.updated"
    DELETED = "instance.deleted"
    OPERATION_ADOPTED = "instance.operation_adopted"
    OPERATION_STUCK = "instance.operation_stuck"


SEVERITY: dict[Kind, str] = {
    Kind.START_FAILED: "error",
    Kind.FAILED: "error",
    Kind.AUTO_RESTART_FAILED: "error",
    Kind.AUTO_RESTART_GAVE_UP: "error",
    Kind.AUTO_RESTART_SCHEDULED: "warning",
    Kind.OPERATION_ADOPTED: "warning",
    Kind.OPERATION_STUCK: "error",
}


def severity_of(kind: Kind) -> str:
    return SEVERITY.get(kind, "info")


# Who made an event happen: {"type": "user", "id": ..., "display_name": ...} or
# {"type": "control_plane", "cause": ...}, stored as JSON with the event and shown as is.
Actor = dict[str, str]


def user_actor(user_id: str, display_name: str) -> Actor:
    return {"type": "user", "id": user_id, "display_name": display_name}


def control_plane(cause: str) -> Actor:
    return {"type": "control_plane", "cause": cause}
