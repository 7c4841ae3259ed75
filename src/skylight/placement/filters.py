"""The filter steps, in the order they are applied. Each returns None or a Rejection.

The first step that rejects a sled is the one its diagnosis counts it under; every step still
runs on every sled, so operators can see all the checks a sled failed.
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


def cpu_platform(req: Request, sled: SledView) -> Rejection | None:
    if req.cpu_platform is None or req.cpu_platform == sled.cpu_family:
        return None
    return Rejection("cpu_platform", {"sled_cpu_family": sled.cpu_family})


def enough_cpus(req: Request, sled: SledView) -> Rejection | None:
    if req.ncpus <= sled.free_cpus:
        return None
    return Rejection("too_few_cpus", {"shortfall": req.ncpus - sled.free_cpus})


def enough_memory(req: Request, sled: SledView) -> Rejection | None:
    if req.memory <= sled.free_memory:
        return None
    return Rejection("too_little_memory", {"shortfall": req.memory - sled.free_memory})


FILTERS: list[tuple[str, Filter]] = [
    ("not_in_service", in_service),
    ("not_provisionable", provisionable),
    ("cpu_platform", cpu_platform),
    ("too_few_cpus", enough_cpus),
    ("too_little_memory", enough_memory),
]

# Words for users, per check, used in the diagnosis message.
DESCRIPTIONS: dict[str, str] = {
    "not_in_service": "not in service",
    "not_provisionable": "not provisionable (in maintenance)",
    "cpu_platform": "a different CPU platform",
    "too_few_cpus": "too few free vCPUs",
    "too_little_memory": "too little free memory",
}


def run(req: Request, sled: SledView) -> list[Rejection]:
    """Every rejection of ``sled``, in filter order (empty: the sled fits)."""
    out = []
    for _name, check in FILTERS:
        rejection = check(req, sled)
        if rejection is not None:
            out.append(rejection)
    return out
