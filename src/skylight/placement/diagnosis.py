"""Turn per-sled rejections into a reason: a code, a complete message and a diagnosis.

The diagnosis accounts for every sled exactly once (under its first failing check), gives the
smallest shortfall per resource, and says what would make the instance fit. ``transient`` is
false only when the instance could not be placed even if every sled were empty and back from
maintenance: the user must change something.
"""

from __future__ import annotations

from typing import Any

from skylight.events import reasons
from skylight.placement.filters import CAPACITY_CHECKS, CHECKS
from skylight.placement.model import Rejection, Request, SledView

GiB = 1024**3


def _gib(n: int) -> str:
    value = n / GiB
    return f"{value:.0f} GiB" if value == int(value) else f"{value:.1f} GiB"


def _size(req: Request) -> str:
    text = f"{req.ncpus} vCPUs, {_gib(req.memory)}"
    if req.local_storage:
        text += f", {_gib(req.local_storage)} of local disks"
    return text


def _ever_fits(req: Request, sled: SledView) -> bool:
    """Could this in-service sled hold the instance if it were empty (ignoring groups)?"""
    return (
        sled.in_service
        and (req.cpu_platform is None or req.cpu_platform == sled.cpu_family)
        and (req.pinned_sled is None or req.pinned_sled == sled.id)
        and req.ncpus <= sled.cpus
        and req.memory <= sled.memory
        and req.local_storage <= sled.local_storage
    )


def _permanent(req: Request, sleds: list[SledView]) -> tuple[str, str, str] | None:
    """(code, headline, fix) when no rack state short of a user's change could place it."""
    in_service = [s for s in sleds if s.in_service]
    if req.contradictions:
        names = ", ".join(sorted(req.contradictions))
        return (
            "affinity_conflict",
            f"Its affinity and anti-affinity groups contradict each other (both contain {names})",
            "Remove the instance from one of the groups that contain the same members.",
        )
    if req.pinned_sled is not None and not any(s.id == req.pinned_sled for s in in_service):
        return (
            "local_storage_unavailable",
            "Its local disks are on a sled that has left service for good",
            "Detach and delete the local disks, or create the instance anew.",
        )
    if req.cpu_platform and not any(s.cpu_family == req.cpu_platform for s in in_service):
        return (
            "cpu_platform_unavailable",
            f"No sled in service has the CPU platform {req.cpu_platform}",
            "Choose another CPU platform, or none.",
        )
    if not any(_ever_fits(req, s) for s in in_service):
        cpus = max((s.cpus for s in in_service), default=0)
        mem = max((s.memory for s in in_service), default=0)
        return (
            "exceeds_sled_size",
            "The instance is larger than any sled can hold",
            f"Request at most {cpus} vCPUs and {_gib(mem)} of memory.",
        )
    for group in req.anti_affinity:
        if group.hard and group.members > len(in_service):
            return (
                "anti_affinity_unsatisfiable",
                f"Anti-affinity group {group.name} has {group.members} members but the rack "
                f"has only {len(in_service)} sleds in service",
                f"Remove members from {group.name}, or change its policy to 'allow'.",
            )
    return None


def _shortfall(req: Request, sled: SledView) -> dict[str, int]:
    return {
        "vcpus": max(0, req.ncpus - sled.free_cpus),
        "memory": max(0, req.memory - sled.free_memory),
        "local_storage": max(0, req.local_storage - sled.free_local_storage),
    }


def _lacks(short: dict[str, int]) -> str:
    parts = []
    if short["vcpus"]:
        parts.append(f"{short['vcpus']} vCPUs")
    if short["memory"]:
        parts.append(f"{_gib(short['memory'])} of memory")
    if short["local_storage"]:
        parts.append(f"{_gib(short['local_storage'])} of local storage")
    return " and ".join(parts)


def diagnose(
    req: Request, sleds: list[SledView], rejections: dict[str, list[Rejection]]
) -> dict[str, Any]:
    """A reason for a failed placement. ``rejections`` holds every sled's rejections."""
    counts = dict.fromkeys(CHECKS, 0)
    checks_by_sled: dict[str, list[str]] = {}
    for sled in sleds:
        names = list(dict.fromkeys(r.check for r in rejections[sled.id]))
        checks_by_sled[sled.id] = names
        counts[names[0]] += 1

    # Sleds that only capacity keeps from taking the instance: the closest one sets the
    # shortfall, and says what would make room.
    only_capacity = [
        s
        for s in sleds
        if s.in_service
        and s.provision_policy == "provisionable"
        and set(checks_by_sled[s.id]) <= CAPACITY_CHECKS
        and not (req.pinned_sled and req.pinned_sled != s.id)
    ]
    shortfall: dict[str, int] | None = None
    if only_capacity:
        closest = min(
            only_capacity,
            key=lambda s: sum(
                v / max(1, w)
                for v, w in zip(
                    _shortfall(req, s).values(),
                    (req.ncpus, req.memory, req.local_storage),
                    strict=True,
                )
            ),
        )
        shortfall = _shortfall(req, closest)

    permanent = _permanent(req, sleds)
    if permanent is not None:
        code, headline, fix = permanent
        transient = False
    else:
        transient = True
        code, headline, fix = _transient(req, sleds, checks_by_sled, shortfall)

    summary = ", ".join(f"{n} {CHECKS[c]}" for c, n in counts.items() if n)
    closest_text = ""
    if shortfall and code in ("insufficient_capacity", "local_storage_unavailable"):
        closest_text = f" The closest sled lacks {_lacks(shortfall)}."
    message = (
        f"{headline} ({_size(req)}): of {len(sleds)} sleds, {summary or 'none exist'}."
        f"{closest_text} {fix}"
    )
    diagnosis = {
        "sleds_total": len(sleds),
        "counts": counts,
        "shortfall": shortfall,
        "fix": fix,
        # Operators only (removed by reasons.redact): every check each sled failed.
        "sleds": dict(sorted(checks_by_sled.items())),
    }
    return reasons.make(code, message, transient=transient, diagnosis=diagnosis, action=fix)


def _transient(
    req: Request,
    sleds: list[SledView],
    checks_by_sled: dict[str, list[str]],
    shortfall: dict[str, int] | None,
) -> tuple[str, str, str]:
    def only(allowed: set[str], sled: SledView) -> bool:
        return sled.in_service and set(checks_by_sled[sled.id]) <= allowed

    if any(only({"not_provisionable"}, s) for s in sleds):
        return (
            "capacity_in_maintenance",
            "The instance would fit only on sleds that are in maintenance",
            "Wait for a sled to return from maintenance, or request a smaller instance.",
        )
    hard_affinity = [g for g in req.affinity if g.hard and g.sleds]
    if len({s for g in hard_affinity for s in g.sleds}) > 1:
        names = ", ".join(g.name for g in hard_affinity)
        return (
            "affinity_sled_unavailable",
            f"The members of its affinity groups ({names}) run on different sleds, so no "
            "single sled satisfies them all",
            "Stop the members that run apart so they can be placed together, or leave one of "
            "the groups.",
        )
    if hard_affinity:
        names = ", ".join(g.name for g in hard_affinity)
        return (
            "affinity_sled_unavailable",
            f"The sled that runs the other members of affinity group {names} has no room",
            f"Stop instances on that sled (other members of {names} stay), or wait.",
        )
    if any(checks_by_sled[s.id] == ["anti_affinity"] for s in sleds if s.in_service):
        # A sled would take it but for the anti-affinity rule.
        names = ", ".join(sorted({g.name for g in req.anti_affinity if g.hard}))
        return (
            "anti_affinity_unsatisfiable",
            f"Every sled with room hosts a member of anti-affinity group {names}",
            f"Stop a member of {names}, wait for capacity on other sleds, or change the "
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
