"""Run the checks over every sled, then pick one of those that pass."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from skylight.placement.checks import CheckList
from skylight.placement.diagnosis import diagnose
from skylight.placement.filters import PLACEMENT
from skylight.placement.model import Placement, PlacementFailure, Request, SledView
from skylight.placement.rack import Ints, Mask, Rack


def _preference_score(req: Request, rack: Rack) -> Ints:
    """Per sled: allow-affinity groups honoured minus allow-anti-affinity groups broken."""
    score = np.zeros(len(rack), dtype=np.int64)
    for g in req.affinity:
        if not g.hard and g.sleds:
            score += rack.members(g.sleds)
    for g in req.anti_affinity:
        if not g.hard and g.sleds:
            score -= rack.members(g.sleds)
    return score


def _broken(req: Request, sled_id: str) -> tuple[dict[str, str], ...]:
    out = [
        {"kind": "affinity", "group": g.name}
        for g in req.affinity
        if not g.hard and g.sleds and sled_id not in g.sleds
    ]
    out += [
        {"kind": "anti_affinity", "group": g.name}
        for g in req.anti_affinity
        if not g.hard and sled_id in g.sleds
    ]
    return tuple(out)


def place(
    req: Request,
    sleds: Rack | Sequence[SledView],
    rng: random.Random | None = None,
    *,
    checks: CheckList = PLACEMENT,
) -> Placement | PlacementFailure:
    """Choose a sled for ``req``, or explain why none fits.

    Among the sleds that pass every check, those that honour the most `allow` preferences
    win; among equals the choice is random (seedable), weighted toward free capacity, so
    instances spread over the rack instead of piling onto the first sled.
    """
    rack = sleds if isinstance(sleds, Rack) else Rack.of(sleds)
    sig = checks.run(req, rack)
    if sig.all():  # every sled failed some check
        return PlacementFailure(diagnose(req, rack, sig, checks))
    passing: Mask = sig == 0
    if any(not g.hard and g.sleds for g in (*req.affinity, *req.anti_affinity)):
        score = _preference_score(req, rack)
        tier = passing & (score == score[passing].max())
    else:
        tier = passing
    candidates = np.flatnonzero(tier)
    # Weighted toward free capacity; the epsilon keeps a full-but-fitting sled possible.
    weights = rack.free_share[candidates] + 1e-6
    cumulative = np.cumsum(weights)
    pick = (rng or random.Random()).random() * float(cumulative[-1])
    at = min(int(np.searchsorted(cumulative, pick, side="right")), len(candidates) - 1)
    chosen = rack.ids[int(candidates[at])]
    return Placement(chosen, _broken(req, chosen))


def fits(req: Request, sled: SledView, *, checks: CheckList = PLACEMENT) -> bool:
    """Does ``sled`` pass every check? (The re-check under the sled's lock.)"""
    return not checks.run(req, Rack.of([sled]))[0]
