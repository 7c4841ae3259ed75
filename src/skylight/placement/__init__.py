"""Placement: choose a sled for an instance, or explain for every sled why none fits.

Placement is a list of filter steps (``filters.FILTERS``). Each step rejects sleds for one
reason; the explanation of a failure is simply the record of which step rejected each sled,
so it cannot disagree with the decision. Steps work on the whole rack at once (numpy
columns, ``rack.Rack``), so a decision at 10,000 sleds costs a few array passes.
"""

from skylight.placement.model import GroupRule, Placement, PlacementFailure, Request, SledView
from skylight.placement.planner import fits, place
from skylight.placement.rack import Rack

__all__ = [
    "GroupRule",
    "Placement",
    "PlacementFailure",
    "Rack",
    "Request",
    "SledView",
    "fits",
    "place",
]
