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


def run_state(instance_state: str, vmm_state: str | None) -> str:
    if instance_state == "vmm":
        return _FROM_VMM.get(vmm_state or "", "starting")
    return {
        "creating": "creating",
        "no_vmm": "stopped",
        "failed": "failed",
        "destroyed": "destroyed",
    }[instance_state]
