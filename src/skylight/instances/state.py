"""The API's ``run_state``, computed from the instance row and its active VMM (as Oxide does)."""

from __future__ import annotations

_FROM_VMM = {
    "creating": "starting",
    "starting": "starting",
    "running": "running",
    "stopping": "stopping",
    "stopped": "stopping",
    "rebooting": "rebooting",
    "failed": "stopping",
    "destroyed": "stopping",
    "saga_unwound": "failed",
}


def run_state(instance_state: str, vmm_state: str | None, intended_state: str | None = None) -> str:
    if instance_state == "vmm":
        return _FROM_VMM.get(vmm_state or "", "starting")
    if instance_state == "no_vmm" and intended_state == "running":
        # A start was asked for and its saga has not reached the sled yet: it is starting.
        # (A start that fails sets the intended state back to stopped.)
        return "starting"
    return {
        "creating": "creating",
        "no_vmm": "stopped",
        "failed": "failed",
        "destroyed": "destroyed",
    }[instance_state]
