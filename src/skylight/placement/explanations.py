"""What each check says when its rejections are why no sled fits: code, headline and action.

Each function belongs to one check (``filters.CHECKS`` ties them together) and answers a
``Verdict`` only when it applies. A permanent one (``lasting``) holds even if every sled were
empty and back from maintenance: the user must change something. A transient one
(``passing``) may pass by itself.

The headline says what is true of the sleds, and tells their *size* (what a sled could ever
hold) from their *free* room (what it holds now): a sled too small for the instance is never
said to lack free vCPUs. The action is the one fix, with numbers where there are some, and is
not repeated in the headline.
"""

from __future__ import annotations

import numpy as np

from skylight.placement.checks import Verdict
from skylight.placement.findings import Findings, Shortfall
from skylight.placement.model import Request
from skylight.placement.rack import Mask, Rack
from skylight.placement.words import cut_to, gib, sizes, too_small_detail


def _in_service(f: Findings) -> int:
    return len(f.rack) - f.failing("not_in_service")


def _smaller(req: Request, shortfall: Shortfall) -> str | None:
    """The request cut by the closest sled's shortfall ("at most 12 vCPUs and 4 GiB of
    memory"), so that it would fit there now (None: that sled has nothing free to offer)."""
    parts = []
    for short, asked, words in (
        (shortfall.vcpus, req.ncpus, lambda n: f"{n} vCPUs"),
        (shortfall.memory, req.memory, lambda n: f"{gib(n)} of memory"),
        (shortfall.local_storage, req.local_storage, lambda n: f"{gib(n)} of local disks"),
    ):
        if short:
            if asked - short <= 0:
                return None
            parts.append(words(asked - short))
    return "at most " + " and ".join(parts) if parts else None


def _make_room(req: Request, shortfall: Shortfall | None, where: str, otherwise: str) -> str:
    """The fix for a sled that is big enough but too full: a request that fits its free room,
    or the room to free on it (``otherwise`` when no sled is known to be close)."""
    if shortfall is None:
        return otherwise
    free = f"other instances to free {shortfall.lacks()} {where}"
    smaller = _smaller(req, shortfall)
    if smaller is None:
        return f"Stop {free}, or wait."
    return f"Request {smaller}, or stop {free}."


def _closest_size(req: Request, rack: Rack, can: Mask) -> int:
    """Of the sleds in ``can``, the one whose size holds the largest share of the request
    (each resource capped at the whole): the one the request needs cutting least to fit."""
    at = np.flatnonzero(can)
    share = np.minimum(rack.cpus[at] / max(1, req.ncpus), 1.0)
    share += np.minimum(rack.memory[at] / max(1, req.memory), 1.0)
    if req.local_storage:
        share += np.minimum(rack.local_storage[at] / req.local_storage, 1.0)
    return int(at[share.argmax()])


def too_small(req: Request, rack: Rack, counted: Mask) -> str:
    """The words for the sleds counted as too small for the instance, with their size ("too
    small (64 vCPUs / 256 GiB)"; their largest, "at most", when they differ), so that the
    count says what the sleds are, not what they have free."""
    cpus, memory = rack.cpus[counted], rack.memory[counted]
    top_cpus, top_memory = int(cpus.max()), int(memory.max())
    same = top_cpus == int(cpus.min()) and top_memory == int(memory.min())
    return f"too small ({'' if same else 'at most '}{top_cpus} vCPUs / {gib(top_memory)})"


# -- not_provisionable -------------------------------------------------------------------------


def maintenance(f: Findings) -> Verdict | None:
    """A sled in service would take it but for maintenance (or its silent agent)."""
    if not f.fails_only("not_provisionable"):
        return None
    wait = "Wait for a sled to return from maintenance or its agent to answer"
    smaller = _smaller(f.req, f.shortfall) if f.shortfall else None
    return Verdict(
        "capacity_in_maintenance",
        "The instance would fit only on sleds that are in maintenance or whose agents do "
        "not answer",
        f"{wait}, or request {smaller}." if smaller else f"{wait}, or request a smaller instance.",
        closest=True,
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
    shortfall, req = f.shortfall, f.req
    if req.pinned_sled is not None:
        return Verdict(
            "local_storage_unavailable",
            "Its local disks pin it to a sled that has too little free room for it now",
            _make_room(
                req, shortfall, "on that sled", "Stop other instances on that sled, or wait."
            ),
            closest=True,
        )
    if shortfall and not shortfall.vcpus and not shortfall.memory:
        room = req.local_storage - shortfall.local_storage
        return Verdict(
            "local_storage_unavailable",
            "No sled has enough free local storage for its local disks",
            f"Use local disks of at most {gib(room)} in all, or delete unused local disks."
            if room > 0
            else "Delete unused local disks, or wait.",
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
    sleds = {s for g in hard for s in g.sleds}
    if len(sleds) > 1:
        return Verdict(
            "affinity_sled_unavailable",
            f"The members of its affinity groups ({names}) run on different sleds, so no "
            "single sled satisfies them all",
            "Stop the members that run apart so they can be placed together, or leave one of "
            "the groups.",
        )
    req, rack = f.req, f.rack
    at = rack.index.get(next(iter(sleds)))
    size = sizes(req, rack, at) if at is not None else []
    if any(s.asks > s.has for s in size) and at is not None:
        # Its size, not its load, says no: stopping instances there would not help.
        return Verdict(
            "affinity_sled_unavailable",
            f"The sled that runs the other members of affinity group {names} is too small for it",
            f"Request {cut_to(req, rack, at)}, or leave {names}.",
            detail=too_small_detail("That sled has", "sled", size),
        )
    return Verdict(
        "affinity_sled_unavailable",
        f"The sled that runs the other members of affinity group {names} has too little free "
        "room for it",
        _make_room(
            req,
            f.shortfall,
            f"on that sled (other members of {names} stay)",
            f"Stop instances on that sled (other members of {names} stay), or wait.",
        ),
        closest=True,
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


# -- too_small: the size of the instance (vCPUs, memory, local storage) ------------------------


def larger_than_any_sled(f: Findings) -> Verdict | None:
    """Could any sled in service (of its platform, the pinned one if pinned) hold it empty?
    Most racks are built of one sled size: when the smallest sled has room, only the platform
    and the pin can say no. When none could, the verdict tells the size of the sleds (the
    largest, per resource), not their free room."""
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
    return _too_large(f)


def _too_large(f: Findings) -> Verdict:
    """``exceeds_sled_size`` in numbers: the size of the largest sled it could go on, and the
    request cut to a sled's size (the one it needs cutting least for)."""
    req, rack, pinned = f.req, f.rack, f.pinned
    platform_ok = f.platform_ok
    if pinned is not None and platform_ok is not None and not platform_ok[pinned]:
        return Verdict(
            "cpu_platform_unavailable",
            f"Its local disks are on a sled whose CPU platform is not {req.cpu_platform}",
            f"Choose the CPU platform {rack.cpu_family[pinned]}, or none.",
        )
    eligible = rack.in_service if platform_ok is None else rack.in_service & platform_ok
    if not eligible.any():
        return Verdict(
            "exceeds_sled_size",
            "No sled is in service to hold it",
            "Ask an operator to bring a sled back into service.",
        )
    which = "sled" if platform_ok is None else f"sled of CPU platform {req.cpu_platform}"
    if f.failing("not_in_service"):
        which += " in service"  # the size of a sled out of service is no help
    if pinned is not None:
        headline = "The instance is larger than the sled its local disks are on"
        at = pinned
        detail = too_small_detail("That sled has", which, sizes(req, rack, pinned))
    else:
        headline = f"The instance is larger than any {which} can hold"
        at = _closest_size(req, rack, eligible)
        detail = too_small_detail(f"Each {which} has at most", which, sizes(req, rack, eligible))
    fits = None
    if req.local_storage <= rack.local_storage[at]:  # a resize alone would make it fit
        fits = (min(req.ncpus, int(rack.cpus[at])), min(req.memory, int(rack.memory[at])))
    return Verdict(
        "exceeds_sled_size",
        headline,
        f"Request {cut_to(req, rack, at)}.",
        detail=detail,
        fits_within=fits,
    )


def no_room(f: Findings) -> Verdict:
    """What is left when no check explains it otherwise: sleds big enough for it are too
    full now (a sled too small for it is not among the candidates that give the shortfall)."""
    return Verdict(
        "insufficient_capacity",
        "Not enough free capacity to place the instance",
        _make_room(
            f.req,
            f.shortfall,
            "on one sled",
            "Wait for capacity to free up, or request a smaller instance.",
        ),
        closest=True,
    )
