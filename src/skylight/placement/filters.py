"""The filter steps, in the order they are applied. Each returns None or a Rejection.

The first step that rejects a sled is the one its diagnosis counts it under; every step still
runs on every sled, so operators can see all the checks a sled failed. Steps that no change
of capacity can cure (service, policy, pins, platform, group rules) come before the capacity
steps, so a sled is counted under the most lasting reason it fails.
"""

from __future__ import annotations

from collections.abc import Callable

from skylight.placement.model import Rejection, Request, SledView

Filter = Callable[[Request, SledView], Rejection | None]


def in_service(_req: Request, sled: SledView) -> Rejection | None:
    if sled.in_service:
        return None
    return Rejection("not_in_service", {"policy": sled.policy, "state": sled.state})


def provisionable(_req: Request, sled: SledView) -> Rejection | None:
    if sled.provision_policy == "provisionable":
        return None
    return Rejection("not_provisionable")


def local_disk_pin(req: Request, sled: SledView) -> Rejection | None:
    if req.pinned_sled is None or req.pinned_sled == sled.id:
        return None
    return Rejection("local_storage", {"pinned_elsewhere": True})


def cpu_platform(req: Request, sled: SledView) -> Rejection | None:
    if req.cpu_platform is None or req.cpu_platform == sled.cpu_family:
        return None
    return Rejection("cpu_platform", {"sled_cpu_family": sled.cpu_family})


def affinity(req: Request, sled: SledView) -> Rejection | None:
    groups = [g.name for g in req.affinity if g.hard and g.sleds and sled.id not in g.sleds]
    return Rejection("affinity", {"groups": groups}) if groups else None


def anti_affinity(req: Request, sled: SledView) -> Rejection | None:
    groups = [g.name for g in req.anti_affinity if g.hard and sled.id in g.sleds]
    return Rejection("anti_affinity", {"groups": groups}) if groups else None


def enough_cpus(req: Request, sled: SledView) -> Rejection | None:
    if req.ncpus <= sled.free_cpus:
        return None
    return Rejection("too_few_cpus", {"shortfall": req.ncpus - sled.free_cpus})


def enough_memory(req: Request, sled: SledView) -> Rejection | None:
    if req.memory <= sled.free_memory:
        return None
    return Rejection("too_little_memory", {"shortfall": req.memory - sled.free_memory})


def enough_local_storage(req: Request, sled: SledView) -> Rejection | None:
    if req.local_storage <= sled.free_local_storage:
        return None
    return Rejection("local_storage", {"shortfall": req.local_storage - sled.free_local_storage})


FILTERS: list[Filter] = [
    in_service,
    provisionable,
    local_disk_pin,
    cpu_platform,
    affinity,
    anti_affinity,
    enough_cpus,
    enough_memory,
    enough_local_storage,
]

# The diagnosis buckets, in filter order, with words for users.
CHECKS: dict[str, str] = {
    "not_in_service": "not in service",
    "not_provisionable": "not provisionable (in maintenance)",
    "local_storage": "unable to hold the instance's local disks",
    "cpu_platform": "a different CPU platform",
    "affinity": "outside the instance's affinity group",
    "anti_affinity": "hosting a member of its anti-affinity group",
    "too_few_cpus": "too few free vCPUs",
    "too_little_memory": "too little free memory",
}
CAPACITY_CHECKS = frozenset({"too_few_cpus", "too_little_memory", "local_storage"})


def run(req: Request, sled: SledView) -> list[Rejection]:
    """Every rejection of ``sled``, in filter order (empty: the sled fits)."""
    out: list[Rejection] = []
    for check in FILTERS:
        rejection = check(req, sled)
        if rejection is not None:
            out.append(rejection)
    return out
