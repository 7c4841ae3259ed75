"""Placement: choose a sled for an instance, or explain for every sled why none fits.

Placement is a list of checks (``filters.PLACEMENT``, a ``checks.CheckList``). Each check
rejects sleds for one reason and carries its own explanations (code, headline, fix, permanent
or not); the explanation of a failure is the record of which check rejected each sled, told
by those checks, so it cannot disagree with the decision. Checks work on the whole rack at
once (numpy columns, ``rack.Rack``), so a decision at 10,000 sleds costs a few array passes.
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
