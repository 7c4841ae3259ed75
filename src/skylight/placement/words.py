"""Sizes in the words of placement's messages: the request's, and a sled's against it."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from skylight.placement.model import Request
from skylight.placement.rack import Mask, Rack

GiB = 1024**3


def gib(n: int) -> str:
    value = n / GiB
    return f"{value:.0f} GiB" if value == int(value) else f"{value:.1f} GiB"


def size(req: Request) -> str:
    text = f"{req.ncpus} vCPUs, {gib(req.memory)}"
    if req.local_storage:
        text += f", {gib(req.local_storage)} of local disks"
    return text


class Size(NamedTuple):
    """One resource of a sled's size against the request, in words."""

    has: int  # the sled's size (the largest, over several sleds)
    asks: int  # what the instance asks for
    words: str  # "{} vCPUs"
    amount: Callable[[int], str]

    def said(self, n: int) -> str:
        return self.words.format(self.amount(n))


def sizes(req: Request, rack: Rack, sleds: Mask | int) -> list[Size]:
    """Per resource the largest size among ``sleds`` (a mask, or one sled's position), and
    what the instance asks for."""
    return [
        Size(int(rack.cpus[sleds].max()), req.ncpus, "{} vCPUs", str),
        Size(int(rack.memory[sleds].max()), req.memory, "{} of memory", gib),
        Size(int(rack.local_storage[sleds].max()), req.local_storage, "{} of local storage", gib),
    ]


def cut_to(req: Request, rack: Rack, at: int) -> str:
    """The request cut to the size of the sled at ``at`` ("at most 64 vCPUs"), in the
    resources it asks more of than that sled has."""
    over = [s for s in sizes(req, rack, at) if s.asks > s.has]
    return "at most " + " and ".join(s.said(s.has) for s in over)


def too_small_detail(has: str, which: str, sizes: list[Size]) -> str:
    """What the sleds lack in size ("Each sled has at most 64 vCPUs; it asks for 65"): the
    resources it asks more of than the largest of the sleds has (or, when each alone would
    fit, that no sled has them all at once). ``sizes`` are of the sleds, ``has`` says which."""
    over = [s for s in sizes if s.asks > s.has]
    if len(over) == 1:
        return f"{has} {over[0].said(over[0].has)}; it asks for {over[0].amount(over[0].asks)}."
    if over:
        return (
            f"{has} {' and '.join(s.said(s.has) for s in over)}; it asks for "
            f"{' and '.join(s.said(s.asks) for s in over)}."
        )
    wanted = " and ".join(s.said(s.asks) for s in sizes if s.asks)
    return f"No {which} has {wanted} at once."
