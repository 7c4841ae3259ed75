"""Turn per-sled rejections into a reason: a code, a complete message and a diagnosis.

The diagnosis accounts for every sled exactly once (under its first failing check), gives the
smallest shortfall per resource and says what would make the instance fit.
"""

from __future__ import annotations

from typing import Any

from skylight.events import reasons
from skylight.placement.filters import DESCRIPTIONS, FILTERS
from skylight.placement.model import Rejection, Request, SledView

GiB = 1024**3


def _gib(n: int) -> str:
    value = n / GiB
    return f"{value:.0f} GiB" if value == int(value) else f"{value:.1f} GiB"


def _size(req: Request) -> str:
    return f"{req.ncpus} vCPUs, {_gib(req.memory)}"


def _ever_fits(req: Request, sled: SledView) -> bool:
    """Could this sled hold the instance if it were empty?"""
    platform_ok = req.cpu_platform is None or req.cpu_platform == sled.cpu_family
    return platform_ok and req.ncpus <= sled.cpus and req.memory <= sled.memory


def diagnose(
    req: Request, sleds: list[SledView], rejections: dict[str, list[Rejection]]
) -> dict[str, Any]:
    """A reason for a failed placement. ``rejections`` holds every sled's rejections."""
    order = [name for name, _ in FILTERS]
    counts = {name: 0 for name in order}
    for sled in sleds:
        counts[rejections[sled.id][0].check] += 1
    in_service = [s for s in sleds if s.in_service]
    provisionable = [s for s in in_service if s.provision_policy == "provisionable"]

    shortfall: dict[str, int] = {}
    candidates = [s for s in provisionable if _ever_fits(req, s)]
    if candidates:
        closest = min(
            candidates,
            key=lambda s: (
                max(0, req.ncpus - s.free_cpus) / max(req.ncpus, 1)
                + max(0, req.memory - s.free_memory) / max(req.memory, 1)
            ),
        )
        shortfall = {
            "vcpus": max(0, req.ncpus - closest.free_cpus),
            "memory": max(0, req.memory - closest.free_memory),
        }

    if not any(_ever_fits(req, s) for s in in_service):
        code = "exceeds_sled_size"
        if req.cpu_platform and not any(s.cpu_family == req.cpu_platform for s in in_service):
            code = "cpu_platform_unavailable"
        largest_cpus = max((s.cpus for s in in_service), default=0)
        largest_mem = max((s.memory for s in in_service), default=0)
        fix = (
            f"Request at most {largest_cpus} vCPUs and {_gib(largest_mem)}."
            if code == "exceeds_sled_size"
            else None
        )
        if not in_service:
            code, fix = "insufficient_capacity", "Wait for sleds to return to service."
    elif not candidates:
        code = "capacity_in_maintenance"
        fix = "A sled returning from maintenance would make room."
    else:
        code = "insufficient_capacity"
        parts = []
        if shortfall["vcpus"]:
            parts.append(f"{shortfall['vcpus']} vCPUs")
        if shortfall["memory"]:
            parts.append(f"{_gib(shortfall['memory'])} of memory")
        fix = f"Freeing {' and '.join(parts)} on one sled, or a smaller size, would make it fit."

    summary = ", ".join(f"{n} {DESCRIPTIONS[c]}" for c, n in counts.items() if n)
    closest_text = ""
    if shortfall and code == "insufficient_capacity":
        lacks = []
        if shortfall["vcpus"]:
            lacks.append(f"{shortfall['vcpus']} vCPUs")
        if shortfall["memory"]:
            lacks.append(_gib(shortfall["memory"]))
        closest_text = f" The closest sled lacks {' and '.join(lacks)}."
    headline = {
        "insufficient_capacity": "Not enough free capacity to place the instance",
        "capacity_in_maintenance": "The instance would fit only on sleds in maintenance",
        "exceeds_sled_size": "The instance is larger than any sled can hold",
        "cpu_platform_unavailable": "No sled in service has the requested CPU platform",
    }[code]
    message = (
        f"{headline} ({_size(req)}): of {len(sleds)} sleds, {summary or 'none exist'}."
        f"{closest_text}"
    )
    diagnosis = {
        "sleds_total": len(sleds),
        "counts": counts,
        "shortfall": shortfall or None,
        "fix": fix,
        # Operators only (removed by reasons.redact): every check each sled failed.
        "sleds": {sid: [r.check for r in rs] for sid, rs in sorted(rejections.items())},
    }
    return reasons.make(code, message, diagnosis=diagnosis, action=fix)
