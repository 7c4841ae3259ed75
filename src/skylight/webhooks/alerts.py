"""Alert classes (what a receiver subscribes to) and the data an alert carries.

An alert is an instance event: its class is the event's kind (``instance.start_failed``), its
id the event's id, and its data the event as an operator sees it in the API. A subscription
is a class or a glob of classes over their dot-separated segments: ``*`` stands for one
segment, ``**`` for any number of them (``instance.*``, ``**``), as in the Oxide API.
"""

from __future__ import annotations

import re
from typing import Any

from skylight.clock import iso
from skylight.errors import InvalidValue
from skylight.events.kinds import Kind
from skylight.wire import JsonObject

PROBE = "probe"  # the class of a receiver's liveness probe (never subscribed to)

CLASSES: dict[str, str] = {
    Kind.CREATED: "An instance was created.",
    Kind.START_REQUESTED: "Somebody or the control plane asked an instance to start.",
    Kind.PLACED: "A sled was reserved for a starting instance (and any affinity preference "
    "it had to break).",
    Kind.RUNNING: "An instance is running.",
    Kind.START_FAILED: "A start failed: the reason says why, whether it may pass by itself, "
    "and what to do.",
    Kind.STOP_REQUESTED: "Somebody asked an instance to stop.",
    Kind.STOPPED: "An instance stopped.",
    Kind.REBOOTED: "An instance was rebooted.",
    Kind.FAILED: "An instance's VM failed (its sled was lost or its VMM died).",
    Kind.AUTO_RESTART_SCHEDULED: "The control plane will restart a failed instance.",
    Kind.AUTO_RESTART_FAILED: "An automatic restart failed; the instance stays failed.",
    Kind.AUTO_RESTART_GAVE_UP: "The control plane stopped restarting an instance: a person "
    "must act.",
    Kind.UPDATED: "An instance's settings, disks or group memberships changed.",
    Kind.DELETED: "An instance was deleted.",
    Kind.OPERATION_ADOPTED: "A replica took over an operation of a replica that went silent "
    "or stopped.",
    Kind.OPERATION_STUCK: "The auditor found an instance that is not where its user wants it, "
    "with nothing under way to change that and nothing said why.",
}
NAMES = sorted(str(k) for k in CLASSES)

_SEGMENT = re.compile(r"[a-z0-9_]+")
MAX_PATTERN = 255
MAX_SEGMENTS = 16


def class_names(pattern: str | None, after: str | None, limit: int) -> list[str]:
    """Up to ``limit`` class names after ``after``, in order, that ``pattern`` (checked)
    matches (all without one)."""
    found = (
        n
        for n in NAMES
        if (pattern is None or matches(pattern, n)) and (after is None or n > after)
    )
    return list(found)[:limit]


def matches(pattern: str, alert_class: str) -> bool:
    """Does the glob match the class? One pass over (pattern segment, class segment) pairs,
    so a pattern of many ``**`` costs no more than its length times the class's."""
    pat, name = pattern.split("."), alert_class.split(".")
    # can[j]: the pattern's segments so far match the class's first j segments.
    can = [True] + [False] * len(name)
    for seg in pat:
        if seg == "**":
            for j in range(1, len(name) + 1):
                can[j] = can[j] or can[j - 1]
        else:
            can = [False] + [
                can[j - 1] and seg in ("*", name[j - 1]) for j in range(1, len(name) + 1)
            ]
    return can[-1]


def check_pattern(pattern: str) -> str:
    """A subscription as it can be written (it may match no alert class), or InvalidValue
    naming what is wrong with it."""
    if not 1 <= len(pattern) <= MAX_PATTERN:
        raise InvalidValue(f"subscription must be 1 to {MAX_PATTERN} characters long")
    if len(pattern.split(".")) > MAX_SEGMENTS:
        raise InvalidValue(f"subscription {pattern!r} has more than {MAX_SEGMENTS} segments")
    for segment in pattern.split("."):
        if segment not in ("*", "**") and not _SEGMENT.fullmatch(segment):
            raise InvalidValue(
                f"subscription {pattern!r}: each dot-separated segment must be lower case "
                "letters, digits and '_', or a glob ('*' for one segment, '**' for any number)"
            )
    return pattern


def check_subscription(pattern: str) -> str:
    """A valid subscription that matches at least one alert class, or InvalidValue naming
    what is wrong with it."""
    check_pattern(pattern)
    if not any(matches(pattern, name) for name in NAMES):
        raise InvalidValue(
            f"subscription {pattern!r} matches no alert class (GET /v1/alert-classes lists them)"
        )
    return pattern


def data(row: Any) -> JsonObject:
    """The event as an operator sees it in the API (reason and detail unredacted)."""
    return {
        "id": row.id,
        "instance_id": row.instance_id,
        "project_id": row.project_id,
        "time": iso(row.time),
        "time_last": iso(row.time_last),
        "count": row.count,
        "kind": row.kind,
        "severity": row.severity,
        "actor": row.actor,
        "operation_id": row.operation_id,
        "run_state": row.run_state,
        "reason": row.reason,
        "detail": row.detail,
    }
