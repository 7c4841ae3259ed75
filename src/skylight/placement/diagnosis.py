"""Turn per-sled rejections into a reason: a code, a complete message and a diagnosis.

The diagnosis accounts for every sled exactly once (under its first failing check), gives the
smallest shortfall per resource, and says what would make the instance fit. ``transient`` is
false only when the instance could not be placed even if every sled were empty and back from
maintenance: the user must change something.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from skylight.events import reasons
from skylight.placement.filters import CAPACITY_CHECKS, CHECK_NAMES, CHECKS
from skylight.placement.model import Request
from skylight.placement.rack import Ints, Mask, Rack, Sigs

GiB = 1024**3
SLED_DETAIL_LIMIT = 128  # sleds listed one by one for operators; beyond, grouped
SLED_SAMPLE = 16  # sled ids shown per group of sleds that failed the same checks


def _gib(n: int) -> str:
    value = n / GiB
    return f"{value:.0f} GiB" if value == int(value) else f"{value:.1f} GiB"


def _size(req: Request) -> str:
    text = f"{req.ncpus} vCPUs, {_gib(req.memory)}"
    if req.local_storage:
        text += f", {_gib(req.local_storage)} of local disks"
    return text


def _permanent(req: Request, rack: Rack) -> tuple[str, str, str] | None:
    """(code, headline, fix) when no rack state short of a user's change could place it."""
    alive = rack.in_service
    if req.contradictions:
        names = ", ".join(sorted(req.contradictions))
        return (
            "affinity_conflict",
            f"Its affinity and anti-affinity groups contradict each other (both contain {names})",
            "Remove the instance from one of the groups that contain the same members.",
        )
    if (
        req.pinned_sled is not None
        and not (alive & rack.members(frozenset({req.pinned_sled}))).any()
    ):
        return (
            "local_storage_unavailable",
            "Its local disks are on a sled that has left service for good",
            "Detach and delete the local disks, or create the instance anew.",
        )
    platform_ok: Mask | None = None
    if req.cpu_platform:
        platform_ok = rack.family_code == rack.families.get(req.cpu_platform, -1)
        if not (alive & platform_ok).any():
            return (
                "cpu_platform_unavailable",
                f"No sled in service has the CPU platform {req.cpu_platform}",
                "Choose another CPU platform, or none.",
            )
    ever = alive.copy()
    if platform_ok is not None:
        ever &= platform_ok
    if req.pinned_sled is not None:
        ever &= rack.members(frozenset({req.pinned_sled}))
    # Most racks are built of one sled size: skip the per-sled comparisons when the smallest
    # sled of the rack already has room for the instance.
    if not (
        req.ncpus <= rack.smallest.cpus
        and req.memory <= rack.smallest.memory
        and req.local_storage <= rack.smallest.local_storage
    ):
        ever &= rack.cpus >= req.ncpus
        ever &= rack.memory >= req.memory
        ever &= rack.local_storage >= req.local_storage
    if not ever.any():
        cpus = int(rack.cpus[alive].max()) if alive.any() else 0
        mem = int(rack.memory[alive].max()) if alive.any() else 0
        return (
            "exceeds_sled_size",
            "The instance is larger than any sled can hold",
            f"Request at most {cpus} vCPUs and {_gib(mem)} of memory.",
        )
    in_service = int(alive.sum())
    for group in req.anti_affinity:
        if group.hard and group.members > in_service:
            return (
                "anti_affinity_unsatisfiable",
                f"Anti-affinity group {group.name} has {group.members} members but the rack "
                f"has only {in_service} sleds in service",
                f"Remove members from {group.name}, or change its policy to 'allow'.",
            )
    return None


def _lacks(short: dict[str, int]) -> str:
    parts = []
    if short["vcpus"]:
        parts.append(f"{short['vcpus']} vCPUs")
    if short["memory"]:
        parts.append(f"{_gib(short['memory'])} of memory")
    if short["local_storage"]:
        parts.append(f"{_gib(short['local_storage'])} of local storage")
    return " and ".join(parts)


def _bits(checks: set[str] | frozenset[str]) -> int:
    return sum(1 << CHECK_NAMES.index(c) for c in checks)


def _only(sig: Sigs, allowed: set[str] | frozenset[str]) -> Mask:
    """Sleds that fail no check outside ``allowed``."""
    return np.asarray((sig & np.uint8(~_bits(allowed) & 0xFF)) == 0, dtype=bool)


def _shortfall(req: Request, rack: Rack, sig: Sigs) -> dict[str, int] | None:
    """The closest sled that only capacity keeps from taking the instance, and what it lacks."""
    candidates = rack.in_service & _only(sig, CAPACITY_CHECKS)
    if req.pinned_sled is not None:
        candidates &= rack.members(frozenset({req.pinned_sled}))
    if not candidates.any():
        return None
    # In place, on floats: this runs over every sled of a rack of thousands.
    distance = np.subtract(float(req.ncpus), rack.free_cpus_f)
    np.maximum(distance, 0.0, out=distance)
    distance *= 1.0 / max(1, req.ncpus)
    short_mem = np.subtract(float(req.memory), rack.free_memory_f)
    np.maximum(short_mem, 0.0, out=short_mem)
    short_mem *= 1.0 / max(1, req.memory)
    distance += short_mem
    if req.local_storage:
        short_disk = np.subtract(float(req.local_storage), rack.free_local_storage)
        np.maximum(short_disk, 0.0, out=short_disk)
        distance += short_disk * (1.0 / req.local_storage)
    distance[~candidates] = np.inf
    best = int(np.argmin(distance))
    return {
        "vcpus": max(0, req.ncpus - int(rack.free_cpus[best])),
        "memory": max(0, req.memory - int(rack.free_memory[best])),
        "local_storage": max(0, req.local_storage - int(rack.free_local_storage[best])),
    }


# For each 8-bit signature (the set of checks a sled failed), the first check it failed.
_FIRST = np.array([(v & -v).bit_length() - 1 if v else 0 for v in range(256)], dtype=np.int64)


def _per_sled(rack: Rack, sig: Sigs, sig_counts: Ints) -> dict[str, Any]:
    """Operators' view: every check each sled failed; past SLED_DETAIL_LIMIT sleds, grouped by
    the combination of checks failed (with a sample of sled ids), so events stay small."""

    def checks(v: int) -> list[str]:
        return [c for b, c in enumerate(CHECK_NAMES) if v >> b & 1]

    if len(rack) <= SLED_DETAIL_LIMIT:
        return {"sleds": {rack.ids[i]: checks(int(sig[i])) for i in np.argsort(rack.ids)}}
    # Samples come from the head of the rack when it has enough of a kind (most kinds are
    # common), from a full scan only for the rare ones.
    head = sig[: SLED_SAMPLE * 64]
    groups = []
    for v in np.flatnonzero(sig_counts):
        members = np.flatnonzero(head == v)[:SLED_SAMPLE]
        if len(members) < min(SLED_SAMPLE, int(sig_counts[v])):
            members = np.flatnonzero(sig == v)[:SLED_SAMPLE]
        groups.append(
            {
                "checks": checks(int(v)),
                "count": int(sig_counts[v]),
                "sample": [rack.ids[i] for i in members],
            }
        )
    return {"sled_groups": sorted(groups, key=lambda g: -g["count"])}


def diagnose(req: Request, rack: Rack, sig: Sigs) -> dict[str, Any]:
    """A reason for a failed placement. ``sig`` is filters.run's byte of failed checks per
    sled."""
    sig_counts = np.bincount(sig, minlength=256)
    tally = np.bincount(_FIRST, weights=sig_counts, minlength=len(CHECK_NAMES))
    counts = {c: int(tally[i]) for i, c in enumerate(CHECK_NAMES)}
    shortfall = _shortfall(req, rack, sig)

    permanent = _permanent(req, rack)
    if permanent is not None:
        code, headline, fix = permanent
        transient = False
    else:
        transient = True
        code, headline, fix = _transient(req, rack, sig, shortfall)

    summary = ", ".join(f"{n} {CHECKS[c]}" for c, n in counts.items() if n)
    closest_text = ""
    if shortfall and code in ("insufficient_capacity", "local_storage_unavailable"):
        closest_text = f" The closest sled lacks {_lacks(shortfall)}."
    message = (
        f"{headline} ({_size(req)}): of {len(rack)} sleds, {summary or 'none exist'}."
        f"{closest_text} {fix}"
    )
    diagnosis: dict[str, Any] = {
        "sleds_total": len(rack),
        "counts": counts,
        "shortfall": shortfall,
        "fix": fix,
    }
    # Operators only (removed by reasons.redact).
    diagnosis.update(_per_sled(rack, sig, sig_counts))
    return reasons.make(code, message, transient=transient, diagnosis=diagnosis, action=fix)


def _transient(
    req: Request, rack: Rack, sig: Sigs, shortfall: dict[str, int] | None
) -> tuple[str, str, str]:
    alive = rack.in_service
    if (alive & _only(sig, {"not_provisionable"})).any():
        return (
            "capacity_in_maintenance",
            "The instance would fit only on sleds that are in maintenance",
            "Wait for a sled to return from maintenance, or request a smaller instance.",
        )
    hard_affinity = [g for g in req.affinity if g.hard and g.sleds]
    names = ", ".join(g.name for g in hard_affinity)
    if len({s for g in hard_affinity for s in g.sleds}) > 1:
        return (
            "affinity_sled_unavailable",
            f"The members of its affinity groups ({names}) run on different sleds, so no "
            "single sled satisfies them all",
            "Stop the members that run apart so they can be placed together, or leave one of "
            "the groups.",
        )
    if hard_affinity:
        return (
            "affinity_sled_unavailable",
            f"The sled that runs the other members of affinity group {names} has no room",
            f"Stop instances on that sled (other members of {names} stay), or wait.",
        )
    if (alive & _only(sig, {"anti_affinity"})).any():
        # A sled would take it but for the anti-affinity rule.
        banned = ", ".join(sorted({g.name for g in req.anti_affinity if g.hard}))
        return (
            "anti_affinity_unsatisfiable",
            f"Every sled with room hosts a member of anti-affinity group {banned}",
            f"Stop a member of {banned}, wait for capacity on other sleds, or change the "
            "group's policy to 'allow'.",
        )
    if req.pinned_sled is not None:
        return (
            "local_storage_unavailable",
            "Its local disks pin it to a sled that has no room for it now",
            f"Free {_lacks(shortfall) if shortfall else 'capacity'} on that sled, or wait.",
        )
    if shortfall and not shortfall["vcpus"] and not shortfall["memory"]:
        return (
            "local_storage_unavailable",
            "No sled has enough free local storage for its local disks",
            "Delete unused local disks, use smaller ones, or wait.",
        )
    fix = (
        f"Freeing {_lacks(shortfall)} on one sled, or a smaller size, would make it fit."
        if shortfall
        else "Wait for capacity to free up, or request a smaller instance."
    )
    return ("insufficient_capacity", "Not enough free capacity to place the instance", fix)
