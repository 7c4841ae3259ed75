"""What a diagnosis found about a failed placement, as the checks' explanations read it.

The explanations ask questions about the set of checks each sled failed ("does some sled fail
only maintenance?"). They are answered from the few signatures present in the rack and their
counts (a ``Tally``), not by a pass over every sled, so the cost of a diagnosis hardly grows
with the number of sleds.
"""

from __future__ import annotations

from typing import NamedTuple

from skylight.placement.model import Request
from skylight.placement.rack import Mask, Rack
from skylight.placement.words import gib

Tally = dict[int, int]  # signature -> number of sleds


class Shortfall(NamedTuple):
    """What the closest sled lacks to take the instance now, per resource (0: enough)."""

    vcpus: int
    memory: int
    local_storage: int

    def lacks(self) -> str:
        parts = []
        if self.vcpus:
            parts.append(f"{self.vcpus} vCPUs")
        if self.memory:
            parts.append(f"{gib(self.memory)} of memory")
        if self.local_storage:
            parts.append(f"{gib(self.local_storage)} of local storage")
        return " and ".join(parts)

    def as_dict(self) -> dict[str, int]:
        return {"vcpus": self.vcpus, "memory": self.memory, "local_storage": self.local_storage}


class Findings:
    """The request, the rack, the tally of signatures and the closest sled's shortfall.
    Facts several explanations use (the sleds of the asked-for platform) are computed once,
    when first asked for, so a diagnosis pays only for the questions it asks."""

    __slots__ = ("_bits", "_platform_ok", "rack", "req", "shortfall", "tally")

    def __init__(
        self,
        req: Request,
        rack: Rack,
        tally: Tally,
        shortfall: Shortfall | None,
        bits: dict[str, int],
    ) -> None:
        self.req = req
        self.rack = rack
        self.tally = tally
        self.shortfall = shortfall
        self._bits = bits
        self._platform_ok: Mask | None = None

    def fails_only(self, check: str) -> bool:
        """Does some sled fail this check and no other (would it fit but for this)?"""
        return self._bits[check] in self.tally

    def some_pass(self, check: str) -> bool:
        """Does some sled pass this check? (Stops at the first signature that does.)"""
        bit = self._bits[check]
        return any(not sig & bit for sig in self.tally)

    def failing(self, check: str) -> int:
        """How many sleds fail this check (among others or alone)."""
        bit, count = self._bits[check], 0
        for sig, n in self.tally.items():
            if sig & bit:
                count += n
        return count

    @property
    def pinned(self) -> int | None:
        """The position of the sled the local disks pin the instance to (None: no pin, or a
        sled no longer in the rack)."""
        if self.req.pinned_sled is None:
            return None
        return self.rack.index.get(self.req.pinned_sled)

    @property
    def platform_ok(self) -> Mask | None:
        """The sleds of the asked-for CPU platform (None: none asked for)."""
        if not self.req.cpu_platform:
            return None
        if self._platform_ok is None:
            rack = self.rack
            self._platform_ok = rack.family_code == rack.families.get(self.req.cpu_platform, -1)
        return self._platform_ok
