"""Placement's checks: the filter steps, and the list of checks they make up.

Each step looks at every sled of the rack at once and returns the mask of sleds it rejects.
``PLACEMENT`` ties the steps to their checks, in order, with each check's explanations
(``explanations.py``). The first check that rejects a sled is the one its diagnosis counts it
under; every step still runs on every sled, so operators can see all the checks a sled failed.
Checks that no change of capacity can cure (service, policy, pins, platform, group rules, a sled
smaller than the instance) come before the capacity checks, so a sled is counted under the most
lasting reason it fails: a sled too small for the instance is never counted as short of *free*
vCPUs or memory.
"""

from __future__ import annotations

from skylight.placement import explanations as why
from skylight.placement.checks import (
    Check,
    CheckList,
    Describe,
    Explanation,
    Sigs,
    Stage,
    Step,
    lasting,
    passing,
)
from skylight.placement.model import Request
from skylight.placement.rack import Mask, Rack


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


def big_enough(req: Request, rack: Rack) -> Mask | None:
    """Smaller than the instance even when empty (vCPUs, memory, local storage): no free room
    will ever cure it, so it is told apart from a sled that is big enough but busy, and is
    never the closest sled whose shortfall is reported. Nothing to check when the rack's
    smallest sled is big enough (most requests, most racks)."""
    smallest = rack.smallest
    if (
        req.ncpus <= smallest.cpus
        and req.memory <= smallest.memory
        and req.local_storage <= smallest.local_storage
    ):
        return None
    rejected = (rack.cpus < req.ncpus) | (rack.memory < req.memory)
    if req.local_storage:
        rejected |= rack.local_storage < req.local_storage
    return rejected


def enough_cpus(req: Request, rack: Rack) -> Mask:
    return rack.free_cpus < req.ncpus


def enough_memory(req: Request, rack: Rack) -> Mask:
    return rack.free_memory < req.memory


def enough_local_storage(req: Request, rack: Rack) -> Mask | None:
    if req.local_storage == 0:
        return None
    return rack.free_local_storage < req.local_storage


def _check(
    name: str,
    words: str,
    *steps: Step,
    capacity: bool = False,
    explanations: tuple[Explanation, ...] = (),
    describe: Describe | None = None,
) -> Check:
    return Check(
        name, words, steps, capacity=capacity, explanations=explanations, describe=describe
    )


# The checks in order. Both local-storage steps count as "local_storage" in a diagnosis.
PLACEMENT = CheckList(
    [
        _check("not_in_service", "not in service", in_service),
        _check(
            "not_provisionable",
            "not taking instances (in maintenance, or its agent not answering)",
            provisionable,
            explanations=(passing(Stage.SLED, why.maintenance),),
        ),
        _check(
            "local_storage",
            "unable to hold the instance's local disks",
            local_disk_pin,
            enough_local_storage,
            capacity=True,
            explanations=(
                lasting(Stage.SLED, why.pin_left_service),
                passing(Stage.ROOM, why.local_storage_short),
            ),
        ),
        _check(
            "cpu_platform",
            "a different CPU platform",
            cpu_platform,
            explanations=(lasting(Stage.SLED, why.platform_absent),),
        ),
        _check(
            "affinity",
            "outside the instance's affinity group",
            affinity,
            explanations=(
                lasting(Stage.REQUEST, why.groups_contradict),
                passing(Stage.GROUP, why.affinity_sled_unavailable),
            ),
        ),
        _check(
            "anti_affinity",
            "hosting a member of its anti-affinity group",
            anti_affinity,
            explanations=(
                lasting(Stage.GROUP, why.more_members_than_sleds),
                passing(Stage.GROUP, why.members_on_every_free_sled),
            ),
        ),
        _check(
            "too_small",
            "too small for it",
            big_enough,
            describe=why.too_small,
            # The instance's size as a whole (vCPUs, memory, local storage): asked once.
            explanations=(lasting(Stage.SLED, why.larger_than_any_sled),),
        ),
        _check("too_few_cpus", "too few free vCPUs", enough_cpus, capacity=True),
        _check("too_little_memory", "too little free memory", enough_memory, capacity=True),
    ],
    otherwise=why.no_room,
)

# The diagnosis buckets, in check order, with words for users.
CHECKS: dict[str, str] = PLACEMENT.words


def run(req: Request, rack: Rack) -> Sigs:
    """The signature of every sled under ``PLACEMENT`` (0: it fits)."""
    return PLACEMENT.run(req, rack)
