"""The filter steps, in the order they are applied. Each looks at every sled of the rack at
once and returns the mask of sleds it rejects.

The first step that rejects a sled is the one its diagnosis counts it under; every step still
runs on every sled, so operators can see all the checks a sled failed. Steps that no change
of capacity can cure (service, policy, pins, platform, group rules) come before the capacity
steps, so a sled is counted under the most lasting reason it fails.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from skylight.placement.model import Request
from skylight.placement.rack import Mask, Rack, Sigs

# A step answers the mask of sleds it rejects, or None when it has nothing to check for this
# request (no pin, no platform, no group): then it costs nothing.
Filter = Callable[[Request, Rack], Mask | None]


def in_service(_req: Request, rack: Rack) -> Mask:
    return ~rack.in_service


def provisionable(_req: Request, rack: Rack) -> Mask:
    """In maintenance (provision policy) or, for now, out of reach (its agent is silent)."""
    return ~rack.provisionable


def local_disk_pin(req: Request, rack: Rack) -> Mask | None:
    """Local disks already on a sled pin the instance to it."""
    if req.pinned_sled is None:
        return None
    return ~rack.members(frozenset({req.pinned_sled}))


def cpu_platform(req: Request, rack: Rack) -> Mask | None:
    if req.cpu_platform is None:
        return None
    return rack.family_code != rack.families.get(req.cpu_platform, -1)


def affinity(req: Request, rack: Rack) -> Mask | None:
    """A `fail` affinity group whose members run somewhere allows only their sleds."""
    rejected = None
    for group in req.affinity:
        if group.hard and group.sleds:
            outside = ~rack.members(group.sleds)
            rejected = outside if rejected is None else rejected | outside
    return rejected


def anti_affinity(req: Request, rack: Rack) -> Mask | None:
    """A `fail` anti-affinity group bans the sleds its other members run on."""
    rejected = None
    for group in req.anti_affinity:
        if group.hard and group.sleds:
            inside = rack.members(group.sleds)
            rejected = inside if rejected is None else rejected | inside
    return rejected


def enough_cpus(req: Request, rack: Rack) -> Mask:
    return rack.free_cpus < req.ncpus


def enough_memory(req: Request, rack: Rack) -> Mask:
    return rack.free_memory < req.memory


def enough_local_storage(req: Request, rack: Rack) -> Mask | None:
    if req.local_storage == 0:
        return None
    return rack.free_local_storage < req.local_storage


# (check, filter): several filters may share a check (both local-storage steps count as
# "local_storage" in a diagnosis).
FILTERS: list[tuple[str, Filter]] = [
    ("not_in_service", in_service),
    ("not_provisionable", provisionable),
    ("local_storage", local_disk_pin),
    ("cpu_platform", cpu_platform),
    ("affinity", affinity),
    ("anti_affinity", anti_affinity),
    ("too_few_cpus", enough_cpus),
    ("too_little_memory", enough_memory),
    ("local_storage", enough_local_storage),
]

# The diagnosis buckets, in filter order, with words for users.
CHECKS: dict[str, str] = {
    "not_in_service": "not in service",
    "not_provisionable": "not taking instances (in maintenance, or its agent not answering)",
    "local_storage": "unable to hold the instance's local disks",
    "cpu_platform": "a different CPU platform",
    "affinity": "outside the instance's affinity group",
    "anti_affinity": "hosting a member of its anti-affinity group",
    "too_few_cpus": "too few free vCPUs",
    "too_little_memory": "too little free memory",
}
CHECK_NAMES = list(CHECKS)
CAPACITY_CHECKS = frozenset({"too_few_cpus", "too_little_memory", "local_storage"})


_BIT = {check: np.uint8(1 << i) for i, check in enumerate(CHECK_NAMES)}


def run(req: Request, rack: Rack) -> Sigs:
    """One byte per sled: bit ``i`` set when the sled fails ``CHECK_NAMES[i]`` (0: it fits)."""
    assert len(CHECK_NAMES) <= 8
    sig = np.zeros(len(rack), dtype=np.uint8)
    for check, step in FILTERS:
        rejected = step(req, rack)
        if rejected is not None:
            # bool -> 0/1, times the check's bit: one vectorised OR per step
            sig |= rejected.view(np.uint8) * _BIT[check]
    return sig
