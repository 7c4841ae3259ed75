"""Reasons: what happened, whether waiting can help, and what the user can do about it.

A reason is a plain dict (it is stored as JSON in the event row and returned as is):
``{code, message, transient, action, diagnosis, internal}``. ``internal`` holds operator-only
detail (sled ids, sled-agent error text) and is removed by :func:`redact` for everyone else.
"""

from __future__ import annotations

from skylight.wire import JsonObject

Reason = JsonObject

# code -> (transient, default action). ``transient`` says whether the same request may
# succeed later without the user changing anything.
CATALOG: dict[str, tuple[bool, str | None]] = {
    "insufficient_capacity": (
        True,
        "Wait for capacity to free up, stop other instances, or request fewer vCPUs or less "
        "memory.",
    ),
    "capacity_in_maintenance": (
        True,
        "Wait for sleds to return from maintenance, or request a smaller instance.",
    ),
    "exceeds_sled_size": (False, "Request fewer vCPUs or less memory: no sled can hold it."),
    "anti_affinity_unsatisfiable": (
        False,
        "Remove members from the anti-affinity group or change its policy to 'allow'.",
    ),
    "affinity_conflict": (False, "Change the instance's affinity or anti-affinity groups."),
    "affinity_sled_unavailable": (
        True,
        "Wait for the sled that holds the instance's affinity group to have room, or stop "
        "instances in that group.",
    ),
    "local_storage_unavailable": (
        True,
        "Wait for local storage to free up, or delete unused local disks.",
    ),
    "cpu_platform_unavailable": (False, "Choose a CPU platform that the rack's sleds support."),
    "quota_exceeded": (
        False,
        "Stop other instances of the silo, or ask an administrator to raise its quota.",
    ),
    "instance_changed_state": (
        True,
        "The instance changed state while the operation ran; look at its state and try again.",
    ),
    "sled_failure": (True, None),
    "vmm_failure": (True, None),
    "operation_stuck": (
        False,
        "An operation on this instance could not be undone; operators must act before it "
        "can change state again.",
    ),
    "internal": (True, "Try again; if it keeps failing, contact an operator."),
}


def make(
    code: str,
    message: str,
    *,
    transient: bool | None = None,
    action: str | None = None,
    diagnosis: JsonObject | None = None,
    internal: JsonObject | None = None,
) -> Reason:
    default_transient, default_action = CATALOG[code]
    return {
        "code": code,
        "message": message,
        "transient": default_transient if transient is None else transient,
        "action": action if action is not None else default_action,
        "diagnosis": diagnosis,
        "internal": internal,
    }


def redact(reason: Reason | None, *, operator: bool) -> Reason | None:
    """The reason as a user (no ``internal``, no sled ids in the diagnosis) may see it."""
    if reason is None or operator:
        return reason
    shown = {k: v for k, v in reason.items() if k != "internal"}
    diagnosis = shown.get("diagnosis")
    if isinstance(diagnosis, dict):
        shown["diagnosis"] = {
            k: v for k, v in diagnosis.items() if k not in ("sleds", "sled_groups")
        }
    return shown
