"""Turn per-sled rejections into a reason: a code, a message of what is so, the one action
that would make it fit, and a diagnosis of counts and shortfalls.

The diagnosis accounts for every sled exactly once (under its first failing check), gives the
smallest shortfall per resource, and asks the checks' explanations, in the order their
``CheckList`` gives, which verdict applies: the first permanent one, else the first transient
one, else the list's ``otherwise``. It knows no check by name: what a check means is said by
the check itself.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np

from skylight.events import reasons
from skylight.placement.checks import CheckList, Sigs, Verdict
from skylight.placement.findings import Findings, Shortfall, Tally
from skylight.placement.model import Request
from skylight.placement.rack import Floats, Ints, Rack
from skylight.placement.words import size

SLED_DETAIL_LIMIT = 128  # sleds listed one by one for operators; beyond, grouped
SLED_SAMPLE = 16  # sled ids shown per group of sleds that failed the same checks
SAMPLE_HEAD = 1024  # racks up to this size take samples with numpy, larger ones from bytes
CANDIDATES_ONLY_SHARE = 0.25  # below this share of the rack, gather the candidates first


class SledGroup(TypedDict):
    """Sleds that failed the same checks (operators' view of a large rack)."""

    checks: list[str]
    count: int
    sample: list[str]


def _tally(sig: Sigs) -> Tally:
    counts = np.bincount(sig)
    present = counts.nonzero()[0]
    return dict(zip(present.tolist(), counts[present].tolist(), strict=True))


def _share(req: Request, cpus: Floats, memory: Floats, local: Ints | Floats) -> Floats:
    """How much of the request each sled has free: per resource a share capped at 1, summed.
    The larger, the closer the sled (the same order as the sum of relative shortfalls)."""
    score = cpus * (1.0 / max(1, req.ncpus))
    np.minimum(score, 1.0, out=score)
    share = memory * (1.0 / max(1, req.memory))
    np.minimum(share, 1.0, out=share)
    score += share
    if req.local_storage:
        disk = local * (1.0 / req.local_storage)
        score += np.minimum(disk, 1.0, out=disk)
    return score


def _closest(req: Request, rack: Rack, sig: Sigs, candidates: int, checks: CheckList) -> int:
    """The position of the candidate sled (one of the ``candidates`` that only capacity keeps
    out) with the largest share of the request free; the first in rack order on a tie.

    With few candidates (group rules, a CPU platform) only they are scored; otherwise every
    sled is, those that need more than room ruled out by their signature. (A threshold search
    over per-rack most-free lists was tried: cheaper in-process on a rack kept between
    decisions, but the control plane reads a fresh rack for each decision and sorting it cost
    0.8 ms at 10,000 sleds, against 24 µs for this scan.)"""
    if candidates < CANDIDATES_ONLY_SHARE * len(rack):
        at = checks.is_candidate.take(sig).nonzero()[0]
        score = _share(
            req, rack.free_cpus_f[at], rack.free_memory_f[at], rack.free_local_storage[at]
        )
        return int(at[score.argmax()])
    score = _share(req, rack.free_cpus_f, rack.free_memory_f, rack.free_local_storage)
    score += checks.out_of_the_running.take(sig)  # rules out sleds that need more than room
    return int(score.argmax())


def _shortfall(
    req: Request, rack: Rack, sig: Sigs, candidates: int, checks: CheckList
) -> Shortfall | None:
    """The closest of the ``candidates`` (sleds that only capacity keeps from taking the
    instance), and what it lacks."""
    if not candidates:
        return None
    if req.pinned_sled is not None:
        best = rack.index.get(req.pinned_sled, -1)
        if best < 0 or int(sig[best]) & checks.not_room:
            return None
    else:
        best = _closest(req, rack, sig, candidates, checks)
    return Shortfall(
        vcpus=max(0, req.ncpus - int(rack.free_cpus[best])),
        memory=max(0, req.memory - int(rack.free_memory[best])),
        local_storage=max(0, req.local_storage - int(rack.free_local_storage[best])),
    )


def _samples(sig: Sigs, tally: Tally) -> dict[int, list[int]]:
    """Up to SLED_SAMPLE sled positions per signature, the first ones in rack order."""
    samples: dict[int, list[int]] = {}
    if len(sig) <= SAMPLE_HEAD:  # a few vectorised comparisons
        for v in tally:
            samples[v] = (sig == v).nonzero()[0][:SLED_SAMPLE].tolist()
        return samples
    # On a large rack a comparison per signature would cost a pass over every sled; finding
    # each sample in the bytes (memchr) stops after the last sample, wherever it is. A
    # signature is several bytes: a match that does not start on one (odd offset) straddles
    # two signatures and is skipped.
    haystack = sig.tobytes()
    if sig.itemsize > 1:
        return _wide_samples(sig, tally, haystack)
    for v, n in tally.items():
        needle, at, i = bytes((v,)), [], -1
        for _ in range(min(SLED_SAMPLE, n)):
            i = haystack.find(needle, i + 1)
            at.append(i)
        samples[v] = at
    return samples


def _wide_samples(sig: Sigs, tally: Tally, haystack: bytes) -> dict[int, list[int]]:
    """``_samples`` for signatures of several bytes: a match that does not start on a
    signature (an offset not a multiple of its width) straddles two and is skipped."""
    samples: dict[int, list[int]] = {}
    width = sig.itemsize
    for v, n in tally.items():
        needle, at, i = sig.dtype.type(v).tobytes(), [], -1
        for _ in range(min(SLED_SAMPLE, n)):
            i = haystack.find(needle, i + 1)
            while i % width:
                i = haystack.find(needle, i + 1)
            at.append(i // width)
        samples[v] = at
    return samples


def _largest_first(signature_count: tuple[int, int]) -> tuple[int, int]:
    return -signature_count[1], signature_count[0]


def _per_sled(
    rack: Rack, sig: Sigs, tally: Tally, checks: CheckList
) -> dict[str, dict[str, list[str]]] | dict[str, list[SledGroup]]:
    """Operators' view: every check each sled failed; past SLED_DETAIL_LIMIT sleds, grouped by
    the combination of checks failed (with a sample of sled ids), so events stay small."""
    ids, failed = rack.ids, checks.failed
    if len(rack) <= SLED_DETAIL_LIMIT:
        by_id = sorted(zip(ids, sig.tolist(), strict=True))
        return {"sleds": {sid: list(failed[v]) for sid, v in by_id}}
    samples = _samples(sig, tally)
    groups: list[SledGroup] = [
        {"checks": list(failed[v]), "count": n, "sample": [ids[i] for i in samples[v]]}
        for v, n in sorted(tally.items(), key=_largest_first)
    ]
    return {"sled_groups": groups}


def _words(req: Request, rack: Rack, sig: Sigs, checks: CheckList, check: str) -> str:
    """What the sleds counted under ``check`` are, in a user's words: the check's own
    description of them when it has one (a too-small sled's size), else its fixed words.
    Asked only for a check some sled is counted under."""
    describe = checks.describe.get(check)
    if describe is None:
        return checks.words[check]
    bit = checks.bits[check]
    counted = (sig & ((bit << 1) - 1)) == bit  # fails this check and none before it
    return describe(req, rack, counted)


def _verdict(checks: CheckList, found: Findings) -> tuple[Verdict, bool]:
    """The first permanent verdict, else the first transient one, else the list's
    ``otherwise``; and whether it is transient."""
    for ask in checks.permanent:
        verdict = ask(found)
        if verdict is not None:
            return verdict, False
    for ask in checks.transient:
        verdict = ask(found)
        if verdict is not None:
            return verdict, True
    return checks.otherwise(found), True


def diagnose(req: Request, rack: Rack, sig: Sigs, checks: CheckList) -> reasons.Reason:
    """A reason for a failed placement. ``sig`` is ``checks.run``'s signature per sled."""
    tally = _tally(sig)
    counts = dict.fromkeys(checks.names, 0)
    first, not_room, candidates = checks.first, checks.not_room, 0
    for v, n in tally.items():
        if v:  # (a failure has no sled that passes, but a diagnosis may be asked anyway)
            counts[first[v]] += n
            if not v & not_room:
                candidates += n
    shortfall = _shortfall(req, rack, sig, candidates, checks)

    verdict, transient = _verdict(checks, Findings(req, rack, tally, shortfall, checks.bits))

    summary = ", ".join(f"{n} {_words(req, rack, sig, checks, c)}" for c, n in counts.items() if n)
    facts = [f"{verdict.headline} ({size(req)}): of {len(rack)} sleds, {summary or 'none exist'}."]
    if shortfall and verdict.closest:
        facts.append(f"The closest sled lacks {shortfall.lacks()}.")
    if verdict.detail:
        facts.append(verdict.detail)
    # What happened in the message, the fix in the action only: said once.
    diagnosis: dict[str, object] = {
        "sleds_total": len(rack),
        "counts": counts,
        "shortfall": shortfall.as_dict() if shortfall else None,
    }
    if verdict.fits_within is not None:
        ncpus, memory = verdict.fits_within
        diagnosis["fits_within"] = {"ncpus": ncpus, "memory": memory}
    # Operators only (removed by reasons.redact).
    diagnosis.update(_per_sled(rack, sig, tally, checks))
    return reasons.make(
        verdict.code,
        " ".join(facts),
        transient=transient,
        diagnosis=diagnosis,
        action=verdict.action,
    )
