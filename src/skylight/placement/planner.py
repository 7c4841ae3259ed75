"""Run the filters over every sled, then pick one of those that pass."""

from __future__ import annotations

import random

from skylight.placement import filters
from skylight.placement.diagnosis import diagnose
from skylight.placement.model import Placement, PlacementFailure, Rejection, Request, SledView


def _preference_score(req: Request, sled: SledView) -> int:
    """Allow-affinity groups honoured minus allow-anti-affinity groups broken."""
    kept = sum(1 for g in req.affinity if not g.hard and g.sleds and sled.id in g.sleds)
    broken = sum(1 for g in req.anti_affinity if not g.hard and sled.id in g.sleds)
    return kept - broken


def _broken(req: Request, sled: SledView) -> tuple[dict[str, str], ...]:
    out = [
        {"kind": "affinity", "group": g.name}
        for g in req.affinity
        if not g.hard and g.sleds and sled.id not in g.sleds
    ]
    out += [
        {"kind": "anti_affinity", "group": g.name}
        for g in req.anti_affinity
        if not g.hard and sled.id in g.sleds
    ]
    return tuple(out)


def place(
    req: Request, sleds: list[SledView], rng: random.Random | None = None
) -> Placement | PlacementFailure:
    """Choose a sled for ``req`` among ``sleds``, or explain why none fits.

    Among the sleds that pass every filter, those that honour the most `allow` preferences
    win; among equals the choice is random (seedable), weighted toward free capacity, so
    instances spread over the rack instead of piling onto the first sled.
    """
    rejections: dict[str, list[Rejection]] = {}
    fits: list[SledView] = []
    for sled in sleds:
        rejected = filters.run(req, sled)
        if rejected:
            rejections[sled.id] = rejected
        else:
            fits.append(sled)
    if not fits:
        return PlacementFailure(diagnose(req, sleds, rejections))
    best = max(_preference_score(req, s) for s in fits)
    tier = [s for s in fits if _preference_score(req, s) == best]
    rng = rng or random.Random()
    weights = [
        (s.free_cpus - req.ncpus + 1) / s.cpus + (s.free_memory - req.memory + 1) / s.memory
        for s in tier
    ]
    chosen = rng.choices(tier, weights=weights, k=1)[0]
    return Placement(chosen.id, _broken(req, chosen))
