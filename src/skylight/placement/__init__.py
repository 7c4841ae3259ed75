"""Placement: choose a sled for an instance, or explain for every sled why none fits.

Placement is a list of filter steps (``filters.FILTERS``). Each step looks at one sled and
either passes it or rejects it with a reason; the explanation of a failure is simply the
record of which step rejected each sled, so it cannot disagree with the decision.
"""

from skylight.placement.model import GroupRule, Placement, PlacementFailure, Request, SledView
from skylight.placement.planner import place

__all__ = ["GroupRule", "Placement", "PlacementFailure", "Request", "SledView", "place"]
