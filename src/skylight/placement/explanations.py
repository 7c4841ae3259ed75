"""What each check says when its rejections are why no sled fits: code, headline and fix.

Each function belongs to one check (``filters.CHECKS`` ties them together) and answers a
``Verdict`` only when it applies. A permanent one (``lasting``) holds even if every sled were
empty and back from maintenance: the user must change something. A transient one
(``passing``) may pass by itself.
"""

from __future__ import annotations

from skylight.placement.checks import Verdict
from skylight.placement.findings import Findings
from skylight.placement.words import gib


def _in_service(f: Findings) -> int:
    return len(f.rack) - f.failing("not_in_service")


# -- not_provisionable -------------------------------------------------------------------------


def maintenance(f: Findings) -> Verdict | None:
    """A sled in service would take it but for maintenance (or its silent agent)."""
    if not f.fails_only("not_provisionable"):
        return None
    return Verdict(
        "capacity_in_maintenance",
        "The instance would fit only on sleds that are in maintenance or whose agents do "
        "not answer",
        "Wait for a sled to return from maintenance or its agent to answer, or request a "
        "smaller instance.",
    )


# -- local_storage -----------------------------------------------------------------------------


def pin_left_service(f: Findings) -> Verdict | None:
    """The local disks are on a sled that is gone or out of service for good."""
    if f.req.pinned_sled is None:
        return None
    pinned = f.pinned
    if pinned is not None and f.rack.in_service[pinned]:
        return None
    return Verdict(
        "local_storage_unavailable",
        "Its local disks are on a sled that has left service for good",
        "Detach and delete the local disks, or create the instance anew.",
        closest=True,
    )


def local_storage_short(f: Findings) -> Verdict | None:
    """The pinned sled has no room now, or only local storage is short anywhere."""
    shortfall = f.shortfall
    if f.req.pinned_sled is not None:
        return Verdict(
            "local_storage_unavailable",
            "Its local disks pin it to a sled that has no room for it now",
            f"Free {shortfall.lacks() if shortfall else 'capacity'} on that sled, or wait.",
            closest=True,
        )
    if shortfall and not shortfall.vcpus and not shortfall.memory:
        return Verdict(
            "local_storage_unavailable",
            "No sled has enough free local storage for its local disks",
            "Delete unused local disks, use smaller ones, or wait.",
            closest=True,
        )
    return None


# -- cpu_platform ------------------------------------------------------------------------------


def platform_absent(f: Findings) -> Verdict | None:
    platform_ok = f.platform_ok
    if platform_ok is None or (f.rack.in_service & platform_ok).any():
        return None
    return Verdict(
        "cpu_platform_unavailable",
        f"No sled in service has the CPU platform {f.req.cpu_platform}",
        "Choose another CPU platform, or none.",
    )


# -- affinity ----------------------------------------------------------------------------------


def groups_contradict(f: Findings) -> Verdict | None:
    """A running instance shares both a `fail` affinity and a `fail` anti-affinity group."""
    if not f.req.contradictions:
        return None
    names = ", ".join(sorted(f.req.contradictions))
    return Verdict(
        "affinity_conflict",
        f"Its affinity and anti-affinity groups contradict each other (both contain {names})",
        "Remove the instance from one of the groups that contain the same members.",
    )


def affinity_sled_unavailable(f: Findings) -> Verdict | None:
    """A `fail` affinity group allows only its members' sleds, and none of them will do."""
    if not f.req.affinity:
        return None
    hard = [g for g in f.req.affinity if g.hard and g.sleds]
    if not hard:
        return None
    names = ", ".join(g.name for g in hard)
    if len({s for g in hard for s in g.sleds}) > 1:
        return Verdict(
            "affinity_sled_unavailable",
            f"The members of its affinity groups ({names}) run on different sleds, so no "
            "single sled satisfies them all",
            "Stop the members that run apart so they can be placed together, or leave one of "
            "the groups.",
        )
    return Verdict(
        "affinity_sled_unavailable",
        f"The sled that runs the other members of affinity group {names} has no room",
        f"Stop instances on that sled (other members of {names} stay), or wait.",
    )


# -- anti_affinity -----------------------------------------------------------------------------


def more_members_than_sleds(f: Findings) -> Verdict | None:
    if not f.req.anti_affinity:
        return None
    hard = [g for g in f.req.anti_affinity if g.hard]
    if not hard:
        return None
    in_service = _in_service(f)
    for group in hard:
        if group.members > in_service:
            return Verdict(
                "anti_affinity_unsatisfiable",
                f"Anti-affinity group {group.name} has {group.members} members but the rack "
                f"has only {in_service} sleds in service",
                f"Remove members from {group.name}, or change its policy to 'allow'.",
            )
    return None


def members_on_every_free_sled(f: Findings) -> Verdict | None:
    """A sled would take it but for the anti-affinity rule."""
    if not f.fails_only("anti_affinity"):
        return None
    banned = ", ".join(sorted({g.name for g in f.req.anti_affinity if g.hard}))
    return Verdict(
        "anti_affinity_unsatisfiable",
        f"Every sled with room hosts a member of anti-affinity group {banned}",
        f"Stop a member of {banned}, wait for capacity on other sleds, or change the "
        "group's policy to 'allow'.",
    )


# -- too_few_cpus, too_little_memory, local_storage: the size of the instance ------------------


def larger_than_any_sled(f: Findings) -> Verdict | None:
    """Could any sled in service (of its platform, the pinned one if pinned) hold it empty?
    Most racks are built of one sled size: when the smallest sled has room, only the platform
    and the pin can say no."""
    req, rack = f.req, f.rack
    alive = rack.in_service
    platform_ok = f.platform_ok
    pinned = f.pinned
    fits_smallest = (
        req.ncpus <= rack.smallest.cpus
        and req.memory <= rack.smallest.memory
        and req.local_storage <= rack.smallest.local_storage
    )
    if pinned is not None:  # in service (``pin_left_service`` is asked first)
        ever = bool(
            (platform_ok is None or platform_ok[pinned])
            and rack.cpus[pinned] >= req.ncpus
            and rack.memory[pinned] >= req.memory
            and rack.local_storage[pinned] >= req.local_storage
        )
    elif fits_smallest and platform_ok is None:
        ever = f.some_pass("not_in_service")
    else:
        can = alive if platform_ok is None else alive & platform_ok
        if not fits_smallest:
            can = can & (rack.cpus >= req.ncpus)
            can &= rack.memory >= req.memory
            can &= rack.local_storage >= req.local_storage
        ever = bool(can.any())
    if ever:
        return None
    in_service = _in_service(f)
    cpus = int(rack.cpus[alive].max()) if in_service else 0
    mem = int(rack.memory[alive].max()) if in_service else 0
    return Verdict(
        "exceeds_sled_size",
        "The instance is larger than any sled can hold",
        f"Request at most {cpus} vCPUs and {gib(mem)} of memory.",
    )


def no_room(f: Findings) -> Verdict:
    """What is left when no check explains it otherwise: the rack lacks free room."""
    shortfall = f.shortfall
    fix = (
        f"Freeing {shortfall.lacks()} on one sled, or a smaller size, would make it fit."
        if shortfall
        else "Wait for capacity to free up, or request a smaller instance."
    )
    return Verdict(
        "insufficient_capacity",
        "Not enough free capacity to place the instance",
        fix,
        closest=True,
    )
