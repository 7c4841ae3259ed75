"""Placement checks as objects: a check added to the list is run, counted and explained by the
diagnosis as it is, and signatures hold more checks than one byte does.

The checks here are test-only; the list placement uses is ``filters.PLACEMENT``.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from skylight.placement import Placement, PlacementFailure, Rack, Request, SledView, place
from skylight.placement.checks import (
    MAX_CHECKS,
    Check,
    CheckList,
    Explain,
    Explanation,
    Stage,
    Step,
    Verdict,
    lasting,
    passing,
)
from skylight.placement.diagnosis import SLED_SAMPLE
from skylight.placement.filters import PLACEMENT
from skylight.placement.findings import Findings
from skylight.placement.rack import Mask

GiB = 1024**3


def _sled(i: int, **kw: object) -> SledView:
    base: dict[str, object] = dict(
        id=f"s{i}",
        policy="in_service",
        provision_policy="provisionable",
        state="active",
        cpus=16,
        memory=64 * GiB,
        local_storage=1000 * GiB,
    )
    base.update(kw)
    return SledView(**base)  # type: ignore[arg-type]


def _rejecting(sled_ids: set[str]) -> Step:
    """A step that rejects the given sleds."""

    def step(_req: Request, rack: Rack) -> Mask:
        return rack.members(frozenset(sled_ids))

    return step


def _reason(result: Placement | PlacementFailure) -> dict[str, object]:
    assert isinstance(result, PlacementFailure), result
    return result.reason


# -- a check added to the list ------------------------------------------------------------------

WITHOUT_GPU = {"s0", "s1"}


def _no_gpu_anywhere(f: Findings) -> Verdict | None:
    """Permanent when no sled in service has a GPU (the test's rack: s0, s1 have none)."""
    if not f.failing("no_gpu"):
        return None
    gpu = ~f.rack.members(frozenset(WITHOUT_GPU))
    if (gpu & f.rack.in_service).any():
        return None
    return Verdict("cpu_platform_unavailable", "No sled in service has a GPU", "Ask for no GPU.")


def _gpu_sled_busy(f: Findings) -> Verdict | None:
    if not f.failing("no_gpu"):
        return None
    return Verdict("capacity_in_maintenance", "The sleds with a GPU are busy", "Wait for one.")


def _with_gpu_check() -> CheckList:
    gpu = Check(
        "no_gpu",
        "without a GPU",
        (_rejecting(WITHOUT_GPU),),
        explanations=(
            lasting(Stage.SLED, _no_gpu_anywhere),
            passing(Stage.GROUP, _gpu_sled_busy),
        ),
    )
    return CheckList([*PLACEMENT.checks, gpu], otherwise=PLACEMENT.otherwise)


def test_an_added_check_is_run_counted_and_explained() -> None:
    """Nothing in the diagnosis names the check: its rejections are counted under it, listed
    per sled, and its own explanation gives the code, headline, fix and permanence."""
    checks = _with_gpu_check()
    assert len(checks) == len(PLACEMENT) + 1
    req = Request(ncpus=4, memory=GiB)
    # s2 has a GPU and room: the only sled that passes every check.
    sleds = [_sled(0), _sled(1), _sled(2)]
    for seed in range(10):
        result = place(req, sleds, random.Random(seed), checks=checks)
        assert isinstance(result, Placement) and result.sled_id == "s2"
    # Without the check, any of the three would do.
    chosen = {place(req, sleds, random.Random(seed)) for seed in range(30)}
    assert {p.sled_id for p in chosen if isinstance(p, Placement)} == {"s0", "s1", "s2"}

    # s2 gone for good: no sled in service has a GPU -> the check's permanent explanation.
    gone = [_sled(0), _sled(1), _sled(2, policy="expunged", state="decommissioned")]
    reason = _reason(place(req, gone, random.Random(1), checks=checks))
    assert reason["code"] == "cpu_platform_unavailable"
    assert reason["transient"] is False
    assert reason["action"] == "Ask for no GPU."
    message = str(reason["message"])
    assert message.startswith("No sled in service has a GPU (4 vCPUs, 1 GiB): of 3 sleds, ")
    assert "2 without a GPU" in message and "1 not in service" in message
    diagnosis = reason["diagnosis"]
    assert isinstance(diagnosis, dict)
    assert diagnosis["counts"] == {
        **dict.fromkeys(checks.names, 0),
        "no_gpu": 2,
        "not_in_service": 1,
    }
    assert diagnosis["sleds"] == {"s0": ["no_gpu"], "s1": ["no_gpu"], "s2": ["not_in_service"]}

    # s2 full: transient, its own words; a sled failing an earlier check too is counted there.
    full = [_sled(0, reserved_cpus=16), _sled(1), _sled(2, reserved_cpus=16)]
    reason = _reason(place(req, full, random.Random(1), checks=checks))
    assert (reason["code"], reason["transient"]) == ("capacity_in_maintenance", True)
    assert reason["action"] == "Wait for one."
    diagnosis = reason["diagnosis"]
    assert isinstance(diagnosis, dict)
    assert diagnosis["counts"]["too_few_cpus"] == 2 and diagnosis["counts"]["no_gpu"] == 1
    assert diagnosis["sleds"]["s0"] == ["too_few_cpus", "no_gpu"]


def test_the_re_check_under_the_lock_runs_every_check() -> None:
    from skylight.placement import fits

    checks = _with_gpu_check()
    req = Request(ncpus=1, memory=GiB)
    assert fits(req, _sled(0)) and not fits(req, _sled(0), checks=checks)
    assert fits(req, _sled(2), checks=checks)


# -- signatures wider than a byte ---------------------------------------------------------------


def _one_per_sled(n_checks: int) -> CheckList:
    """Check i rejects sled s<i> only; no explanations (the list's ``otherwise`` answers)."""
    return CheckList(
        [Check(f"c{i}", f"failing c{i}", (_rejecting({f"s{i}"}),)) for i in range(n_checks)],
        otherwise=lambda f: Verdict("insufficient_capacity", "None fits", "Change something."),
    )


def test_signatures_hold_sixteen_checks() -> None:
    checks = _one_per_sled(MAX_CHECKS)
    sleds = [_sled(i) for i in range(MAX_CHECKS)]
    sig = checks.run(Request(ncpus=1, memory=GiB), Rack.of(sleds))
    assert sig.dtype == np.uint16
    assert sig.tolist() == [1 << i for i in range(MAX_CHECKS)]
    reason = _reason(place(Request(ncpus=1, memory=GiB), sleds, checks=checks))
    assert reason["code"] == "insufficient_capacity" and reason["transient"] is True
    diagnosis = reason["diagnosis"]
    assert isinstance(diagnosis, dict)
    assert diagnosis["counts"] == {f"c{i}": 1 for i in range(MAX_CHECKS)}
    assert diagnosis["sleds"] == {f"s{i}": [f"c{i}"] for i in range(MAX_CHECKS)}
    with pytest.raises(ValueError, match="at most 16"):
        _one_per_sled(MAX_CHECKS + 1)


def test_eight_checks_keep_one_byte_signatures() -> None:
    req = Request(ncpus=1, memory=GiB)
    assert _one_per_sled(8).run(req, Rack.of([_sled(0)])).dtype == np.uint8
    assert _one_per_sled(9).run(req, Rack.of([_sled(0)])).dtype == np.uint16
    # Placement's nine (a sled too small for the instance is one) take two bytes.
    assert PLACEMENT.run(req, Rack.of([_sled(0)])).dtype == np.uint16


def test_wide_signature_samples_on_a_large_rack_are_the_right_sleds() -> None:
    """Past 1,024 sleds samples are found in the signatures' bytes. Two-byte signatures
    c0 (01 00) then c8 (00 01) read 01 00 00 01, and c0+c8 (01 01) then c0 read 01 01 01 00:
    the bytes of c0+c8 (01 01) also appear across a signature boundary. Samples must be the
    sleds that really failed each combination, the first in rack order."""
    n = 2000
    pattern = {0: {"c0"}, 1: {"c8"}, 2: {"c0", "c8"}}
    kinds = [pattern[i % 3] if i % 7 else {"c8"} for i in range(n)]
    checks = CheckList(
        [
            Check(
                f"c{b}",
                f"failing c{b}",
                (_rejecting({f"s{i}" for i, k in enumerate(kinds) if f"c{b}" in k}),),
            )
            for b in range(9)
        ],
        otherwise=lambda f: Verdict("insufficient_capacity", "None fits", "Change something."),
    )
    sleds = [_sled(i) for i in range(n)]
    reason = _reason(place(Request(ncpus=1, memory=GiB), sleds, checks=checks))
    diagnosis = reason["diagnosis"]
    assert isinstance(diagnosis, dict)
    expected: dict[tuple[str, ...], list[str]] = {}
    for i, k in enumerate(kinds):
        expected.setdefault(tuple(sorted(k)), []).append(f"s{i}")
    groups = diagnosis["sled_groups"]
    assert {tuple(g["checks"]): g["sample"] for g in groups} == {
        k: v[:SLED_SAMPLE] for k, v in expected.items()
    }
    assert {tuple(g["checks"]): g["count"] for g in groups} == {
        k: len(v) for k, v in expected.items()
    }


# -- the order a diagnosis asks explanations in -------------------------------------------------


def _says(code: str, headline: str) -> Explain:
    def explain(_f: Findings) -> Verdict:
        return Verdict(code, headline, f"fix for {headline}")

    return explain


def _all_rejected_by(*explanations_per_check: tuple[Explanation, ...]) -> str:
    """The headline a diagnosis picks when every check rejects every sled."""
    checks = CheckList(
        [
            Check(f"c{i}", f"failing c{i}", (_rejecting({"s0", "s1"}),), explanations=ex)
            for i, ex in enumerate(explanations_per_check)
        ],
        otherwise=lambda f: Verdict("insufficient_capacity", "otherwise", "wait"),
    )
    reason = _reason(place(Request(ncpus=1, memory=GiB), [_sled(0), _sled(1)], checks=checks))
    return str(reason["message"]).split(" (")[0]


def test_explanations_are_asked_permanent_first_then_by_stage_then_in_check_order() -> None:
    room = passing(Stage.ROOM, _says("insufficient_capacity", "room"))
    group = passing(Stage.GROUP, _says("anti_affinity_unsatisfiable", "group"))
    sled = lasting(Stage.SLED, _says("exceeds_sled_size", "sled"))
    request = lasting(Stage.REQUEST, _says("affinity_conflict", "request"))
    assert _all_rejected_by((room,), (group,)) == "group"  # stage before check order
    assert _all_rejected_by((group,), (sled,)) == "sled"  # permanent before transient
    assert _all_rejected_by((sled,), (request,)) == "request"
    first = passing(Stage.GROUP, _says("anti_affinity_unsatisfiable", "first"))
    assert _all_rejected_by((first,), (group,)) == "first"  # same stage: check order
    assert _all_rejected_by((), ()) == "otherwise"


def test_the_console_words_every_check_as_filters_does() -> None:
    """The console renders a diagnosis' counts with its own copy of the checks' words
    (``ui.js``): a check it lacks would show as its bare name."""
    import re
    from pathlib import Path

    import skylight.console

    ui = (Path(skylight.console.__file__).parent / "static" / "ui.js").read_text()
    block = ui.split("export const CHECKS = {", 1)[1].split("};", 1)[0]
    words = dict(re.findall(r'^\s*(\w+): "([^"]*)",', block, re.M))
    assert words == PLACEMENT.words
