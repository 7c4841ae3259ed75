"""Placement checks as small objects: each rejects sleds for one reason and explains itself.

A ``Check`` is a name, the words users read for it, the vectorised steps that give the mask of
sleds it rejects, whether more free room would cure it, and its explanations: when the
rejections it makes are the reason no sled fits, what code, headline and action to give, and
whether only a user's change can cure them (permanent). ``CheckList`` runs the checks in order
into one signature per sled (bit *i* set when the sled failed check *i*), and orders the
explanations a diagnosis walks. A diagnosis thus never re-derives a check's meaning: adding a
check is adding one object to the list (the Kubernetes scheduler framework's filter plugins,
whose statuses carry their own reasons, work the same way).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import numpy.typing as npt

from skylight.placement.model import Request
from skylight.placement.rack import Mask, Rack

if TYPE_CHECKING:
    from skylight.placement.findings import Findings

# One bit per check, in the narrowest width that holds the list's checks: one byte up to 8
# checks, two up to 16 (the 9 of today). Wider costs: every pass over the signatures reads
# more bytes, and a large rack's samples are found with memchr only in one-byte signatures.
# A tally costs one count per possible signature (``np.bincount``), hence no wider than 16.
Sigs = npt.NDArray[np.uint8 | np.uint16]
MAX_CHECKS = 16

# A step answers the mask of sleds it rejects, or None when it has nothing to check for this
# request (no pin, no platform, no group): then it costs nothing.
Step = Callable[[Request, Rack], Mask | None]


class Verdict(NamedTuple):
    """Why no sled fits, in a user's words. The headline (and ``detail``) say what is so; the
    ``action`` is the one thing to do about it, said there only, so the reason's message
    never repeats it. ``closest``: the message also tells what the closest sled lacks (when
    a shortfall is known), because the action is about room.
    (Immutable like a frozen dataclass, and built in a fraction of its time: a diagnosis
    builds one on every failed placement.)"""

    code: str  # a code of ``skylight.events.reasons.CATALOG``
    headline: str
    action: str
    closest: bool = False
    detail: str = ""  # a sentence of fact after the counts (e.g. the largest sled's size)
    # When the action is a resize: the (vCPUs, memory) it fits within, so that a client can
    # offer the fix as one click.
    fits_within: tuple[int, int] | None = None


class Stage(IntEnum):
    """What an explanation is about. A diagnosis asks the most fundamental first (all
    permanent explanations before any transient one), and within a stage in check order."""

    REQUEST = 0  # the request contradicts itself, whatever the rack
    SLED = 1  # the sleds themselves: none could ever hold it, or one would but for its state
    GROUP = 2  # its affinity and anti-affinity groups
    ROOM = 3  # free capacity


# An explanation reads what the diagnosis found and answers a verdict when it applies.
Explain = Callable[["Findings"], Verdict | None]

# The words for the sleds a diagnosis counts under a check, given their mask, when the
# check's fixed words are not enough (a size that differs per rack).
Describe = Callable[[Request, Rack, Mask], str]


@dataclass(frozen=True)
class Explanation:
    stage: Stage
    explain: Explain
    permanent: bool  # only a user's change can cure it (``transient: false``)


def lasting(stage: Stage, explain: Explain) -> Explanation:
    """An explanation that holds however the rack changes: the user must change something."""
    return Explanation(stage, explain, permanent=True)


def passing(stage: Stage, explain: Explain) -> Explanation:
    """An explanation that a change of the rack (room, maintenance, members) may cure."""
    return Explanation(stage, explain, permanent=False)


@dataclass(frozen=True)
class Check:
    name: str  # the diagnosis bucket (``counts`` key, per-sled check name)
    words: str  # for users: "N sleds <words>"
    steps: tuple[Step, ...]  # their masks are OR-ed
    # More free room on a sled would cure it: a sled failing only such checks is a candidate,
    # and the closest candidate's shortfall is reported.
    capacity: bool = False
    explanations: tuple[Explanation, ...] = ()
    describe: Describe | None = None  # words with numbers, in place of ``words``


class CheckList:
    """The checks in order (a sled is counted under the first it fails), with what running
    and diagnosing them needs precomputed: each step with its check's bit, the explanations in
    the order a diagnosis asks them, and per signature whether only room keeps a sled out."""

    def __init__(self, checks: Sequence[Check], *, otherwise: Callable[[Findings], Verdict]):
        names = [c.name for c in checks]
        if len(names) > MAX_CHECKS:
            raise ValueError(f"{len(names)} checks: a signature holds at most {MAX_CHECKS}")
        if len(set(names)) != len(names):
            raise ValueError(f"check names repeat: {names}")
        self.checks = tuple(checks)
        self.names = names
        self.words = {c.name: c.words for c in checks}
        self.describe = {c.name: c.describe for c in checks if c.describe is not None}
        self.bits = {c.name: 1 << i for i, c in enumerate(checks)}
        # What the diagnosis says when no explanation answers.
        self.otherwise = otherwise
        self.dtype: type[np.uint8 | np.uint16] = np.uint8 if len(names) <= 8 else np.uint16
        self._steps = [(step, self.dtype(1 << i)) for i, c in enumerate(checks) for step in c.steps]
        self.not_room = sum(
            b for c, b in zip(checks, self.bits.values(), strict=True) if not c.capacity
        )
        ordered = sorted(
            ((e.stage, i, e) for i, c in enumerate(checks) for e in c.explanations),
            key=lambda t: (t[0], t[1]),
        )
        self.permanent = tuple(e.explain for _, _, e in ordered if e.permanent)
        self.transient = tuple(e.explain for _, _, e in ordered if not e.permanent)
        # Per signature (indexed by it): fails only for room (a candidate), and the score
        # added to a sled's share in the closest-sled scan (-inf rules it out).
        values = np.arange(1 << len(names))
        needs_more_than_room = (values & self.not_room) != 0
        self.is_candidate: Mask = ~needs_more_than_room & (values != 0)
        self.out_of_the_running: npt.NDArray[np.float64] = np.where(
            needs_more_than_room, -np.inf, 0.0
        )
        # Per signature (indexed by it): the first check it failed (its sled is counted
        # there; "" for 0), and every check it failed, in check order. Signature 2^i + w
        # (w < 2^i) failed what w failed, then check i.
        first: list[str] = [""]
        failed: list[tuple[str, ...]] = [()]
        for name in names:
            first += [f or name for f in first]
            failed += [(*prior, name) for prior in failed]
        self.first = first
        self.failed = failed

    def __len__(self) -> int:
        return len(self.checks)

    def __iter__(self) -> Iterator[Check]:
        return iter(self.checks)

    def run(self, req: Request, rack: Rack) -> Sigs:
        """The signature of every sled: bit ``i`` set when it fails check ``i`` (0: it fits).
        Every step runs on every sled, so operators can see all the checks a sled failed."""
        sig: Sigs = np.zeros(len(rack), dtype=self.dtype)
        for step, bit in self._steps:
            rejected = step(req, rack)
            if rejected is not None:
                # bool -> 0/1, times the check's bit: one vectorised OR per step
                sig |= rejected.view(np.uint8) * bit
        return sig
