"""Run the filters over every sled, then pick one of those that pass."""

from __future__ import annotations

import random

from skylight.placement import filters
from skylight.placement.diagnosis import diagnose
from skylight.placement.model import Placement, PlacementFailure, Rejection, Request, SledView


def place(
    req: Request, sleds: list[SledView], rng: random.Random | None = None
) -> Placement | PlacementFailure:
    """Choose a sled for ``req`` among ``sleds``, or explain why none fits.

    Among the sleds that pass every filter the choice is random, weighted toward free
    capacity, so instances spread over the rack instead of piling onto the first sled.
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
    rng = rng or random.Random()
    weights = [
        (s.free_cpus - req.ncpus + 1) / s.cpus + (s.free_memory - req.memory + 1) / s.memory
        for s in fits
    ]
    return Placement(rng.choices(fits, weights=weights, k=1)[0].id)
