"""Placement in-process: properties over random racks, and each reason on a known rack.

The brute-force checks below are written independently of ``skylight.placement.filters``:
they restate the rules from the SPEC, so a filter that drifts from them fails here.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from skylight.events.reasons import redact
from skylight.placement import GroupRule, Placement, PlacementFailure, Request, SledView, place
from skylight.placement.filters import CHECKS

GiB = 1024**3
FAMILIES = ["amd_milan", "amd_turin"]


def _drawn_sled(
    draw: st.DrawFn, sled_id: str, expunged: int, maintenance: int, **size: int
) -> SledView:
    """A sled of the given size and reservations, expunged 1 time in ``expunged`` and in
    maintenance 1 time in ``maintenance``, of a random CPU family."""
    policy = draw(st.sampled_from(["in_service"] * (expunged - 1) + ["expunged"]))
    provision = draw(st.sampled_from(["provisionable"] * (maintenance - 1) + ["non_provisionable"]))
    return SledView(
        id=sled_id,
        policy=policy,
        provision_policy=provision,
        state="active" if policy == "in_service" else "decommissioned",
        cpu_family=draw(st.sampled_from(FAMILIES)),
        **size,
    )


@st.composite
def racks(draw: st.DrawFn) -> list[SledView]:
    sleds = []
    for i in range(draw(st.integers(1, 6))):
        cpus = draw(st.sampled_from([8, 16, 32]))
        memory = draw(st.sampled_from([16, 32, 64])) * GiB
        storage = draw(st.sampled_from([0, 100, 500])) * GiB
        size = dict(
            cpus=cpus,
            memory=memory,
            local_storage=storage,
            reserved_cpus=draw(st.integers(0, cpus)),
            reserved_memory=draw(st.integers(0, memory // GiB)) * GiB,
            reserved_local_storage=draw(st.integers(0, storage // GiB)) * GiB,
        )
        sleds.append(_drawn_sled(draw, f"sled-{i}", 5, 4, **size))
    return sleds


@st.composite
def requests(draw: st.DrawFn, sled_ids: list[str]) -> Request:
    some_sleds = st.frozensets(st.sampled_from(sled_ids), max_size=2)

    def rule(i: int, kind: str) -> GroupRule:
        return GroupRule(
            f"{kind}-{i}",
            draw(st.sampled_from(["allow", "fail"])),
            draw(some_sleds),
            draw(st.integers(1, 7)),
        )

    affinity = tuple(rule(i, "aff") for i in range(draw(st.integers(0, 2))))
    anti = tuple(rule(i, "anti") for i in range(draw(st.integers(0, 2))))
    pinned = draw(st.one_of(st.none(), st.sampled_from(sled_ids)))
    return Request(
        ncpus=draw(st.integers(1, 40)),
        memory=draw(st.integers(1, 70)) * GiB,
        cpu_platform=draw(st.one_of(st.none(), st.sampled_from([*FAMILIES, "amd_turin_v2"]))),
        local_storage=draw(st.sampled_from([0, 0, 50, 200, 600])) * GiB,
        pinned_sled=pinned,
        affinity=affinity,
        anti_affinity=anti,
        contradictions=tuple(draw(st.lists(st.sampled_from(["x"]), max_size=1))),
    )


def fits_now(req: Request, s: SledView) -> bool:
    """The SPEC's hard rules and capacity, restated."""
    if s.policy != "in_service" or s.state != "active" or s.provision_policy != "provisionable":
        return False
    if req.cpu_platform is not None and req.cpu_platform != s.cpu_family:
        return False
    if req.pinned_sled is not None and req.pinned_sled != s.id:
        return False
    for g in req.affinity:
        if g.policy == "fail" and g.sleds and s.id not in g.sleds:
            return False
    for g in req.anti_affinity:
        if g.policy == "fail" and s.id in g.sleds:
            return False
    return (
        req.ncpus <= s.cpus - s.reserved_cpus
        and req.memory <= s.memory - s.reserved_memory
        and req.local_storage <= s.local_storage - s.reserved_local_storage
    )


def big_enough(req: Request, s: SledView) -> bool:
    """The sled's size (not its free room) can hold the instance."""
    return req.ncpus <= s.cpus and req.memory <= s.memory and req.local_storage <= s.local_storage


def could_hold(req: Request, s: SledView) -> bool:
    """A sled in service, of its platform (and its pin), big enough for it once empty."""
    return (
        s.policy == "in_service"
        and s.state == "active"
        and (req.cpu_platform is None or req.cpu_platform == s.cpu_family)
        and (req.pinned_sled is None or req.pinned_sled == s.id)
        and big_enough(req, s)
    )


def could_ever_fit(req: Request, sleds: list[SledView]) -> bool:
    """On an empty rack, every sled back from maintenance, members free to move: can the
    instance and its `fail` groups be satisfied? (Expunged sleds never return.)"""
    alive = [s for s in sleds if s.policy == "in_service" and s.state == "active"]
    if req.contradictions:
        return False
    if any(g.policy == "fail" and g.members > len(alive) for g in req.anti_affinity):
        return False
    return any(
        (req.cpu_platform is None or req.cpu_platform == s.cpu_family)
        and (req.pinned_sled is None or req.pinned_sled == s.id)
        and req.ncpus <= s.cpus
        and req.memory <= s.memory
        and req.local_storage <= s.local_storage
        for s in alive
    )


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_placement_properties(data: st.DataObject) -> None:
    sleds = data.draw(racks())
    req = data.draw(requests([s.id for s in sleds]))
    result = place(req, sleds, random.Random(data.draw(st.integers(0, 2**32))))
    if isinstance(result, Placement):
        chosen = next(s for s in sleds if s.id == result.sled_id)
        assert fits_now(req, chosen), "placed on a sled that breaks a rule or capacity"
        return
    assert isinstance(result, PlacementFailure)
    assert not any(fits_now(req, s) for s in sleds), "refused although a sled fits"
    reason = result.reason
    diagnosis = reason["diagnosis"]
    assert sum(diagnosis["counts"].values()) == len(sleds)
    assert set(diagnosis["counts"]) == set(CHECKS)
    assert set(diagnosis["sleds"]) == {s.id for s in sleds}
    if reason["transient"] is False:
        assert not could_ever_fit(req, sleds), f"{reason['code']} called permanent wrongly"
    assert reason["message"] and reason["action"]
    assert len(reason["message"]) > 20
    # The fix is said once: in the action, not in the message nor the diagnosis.
    assert reason["action"] not in reason["message"]
    assert "fix" not in diagnosis
    # Size versus free room, restated: a sled is "too small" exactly when it could not hold
    # the instance even empty; a sled counted short of free vCPUs or memory could.
    for s in sleds:
        failed = diagnosis["sleds"][s.id]
        assert ("too_small" in failed) == (not big_enough(req, s)), (s, failed)
        if failed[0] in ("too_few_cpus", "too_little_memory"):
            assert big_enough(req, s)
    if reason["code"] == "insufficient_capacity":
        assert any(could_hold(req, s) for s in sleds), "no sled is big enough, yet 'busy'"
    shown = redact(reason, operator=False)
    assert shown is not None and "sleds" not in shown["diagnosis"]


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


def _fail(req: Request, sleds: list[SledView]) -> dict[str, object]:
    result = place(req, sleds, random.Random(1))
    assert isinstance(result, PlacementFailure), result
    return result.reason


def test_closest_sled_shortfall_in_the_message() -> None:
    sleds = [_sled(0, reserved_cpus=14, reserved_memory=60 * GiB), _sled(1, reserved_cpus=16)]
    reason = _fail(Request(ncpus=4, memory=8 * GiB), sleds)
    assert reason["code"] == "insufficient_capacity"
    assert reason["transient"] is True
    assert reason["diagnosis"]["shortfall"] == {"vcpus": 2, "memory": 4 * GiB, "local_storage": 0}
    assert "The closest sled lacks 2 vCPUs and 4 GiB of memory." in reason["message"]
    assert reason["diagnosis"]["counts"]["too_few_cpus"] == 2


def test_maintenance_is_transient() -> None:
    sleds = [_sled(0, provision_policy="non_provisionable"), _sled(1, reserved_cpus=16)]
    reason = _fail(Request(ncpus=4, memory=GiB), sleds)
    assert reason["code"] == "capacity_in_maintenance"
    assert reason["transient"] is True


def test_larger_than_any_sled_is_permanent() -> None:
    reason = _fail(Request(ncpus=17, memory=GiB), [_sled(0), _sled(1)])
    assert reason["code"] == "exceeds_sled_size"
    assert reason["transient"] is False
    assert "Request at most 16 vCPUs" in reason["action"]


def test_unknown_cpu_platform_is_permanent() -> None:
    reason = _fail(Request(ncpus=1, memory=GiB, cpu_platform="amd_turin"), [_sled(0)])
    assert reason["code"] == "cpu_platform_unavailable"
    assert reason["transient"] is False


def test_anti_affinity_with_more_members_than_sleds_is_permanent() -> None:
    group = GroupRule("spread", "fail", frozenset({"s0", "s1"}), members=3)
    reason = _fail(Request(ncpus=1, memory=GiB, anti_affinity=(group,)), [_sled(0), _sled(1)])
    assert reason["code"] == "anti_affinity_unsatisfiable"
    assert reason["transient"] is False
    assert reason["diagnosis"]["counts"]["anti_affinity"] == 2


def test_anti_affinity_blocked_by_capacity_elsewhere_is_transient() -> None:
    group = GroupRule("spread", "fail", frozenset({"s0"}), members=2)
    sleds = [_sled(0), _sled(1, reserved_cpus=16), _sled(2, reserved_cpus=16)]
    reason = _fail(Request(ncpus=1, memory=GiB, anti_affinity=(group,)), sleds)
    assert reason["code"] == "anti_affinity_unsatisfiable"
    assert reason["transient"] is True


def test_contradicting_groups_are_permanent() -> None:
    """db-1 runs on s0 and shares a `fail` affinity and a `fail` anti-affinity group."""
    together = GroupRule("together", "fail", frozenset({"s0"}), members=2)
    apart = GroupRule("apart", "fail", frozenset({"s0"}), members=2)
    req = Request(
        ncpus=1,
        memory=GiB,
        affinity=(together,),
        anti_affinity=(apart,),
        contradictions=("db-1",),
    )
    reason = _fail(req, [_sled(0), _sled(1)])
    assert reason["code"] == "affinity_conflict"
    assert reason["transient"] is False
    assert "db-1" in reason["message"]


def test_affinity_sled_full_is_transient() -> None:
    group = GroupRule("together", "fail", frozenset({"s0"}), members=2)
    sleds = [_sled(0, reserved_cpus=16), _sled(1)]
    reason = _fail(Request(ncpus=1, memory=GiB, affinity=(group,)), sleds)
    assert reason["code"] == "affinity_sled_unavailable"
    assert reason["transient"] is True
    assert reason["diagnosis"]["counts"] == {
        **dict.fromkeys(CHECKS, 0),
        "affinity": 1,
        "too_few_cpus": 1,
    }


def test_local_disk_pinned_to_expunged_sled_is_permanent() -> None:
    sleds = [_sled(0, policy="expunged", state="decommissioned"), _sled(1)]
    reason = _fail(Request(ncpus=1, memory=GiB, pinned_sled="s0"), sleds)
    assert reason["code"] == "local_storage_unavailable"
    assert reason["transient"] is False


def test_local_storage_short_is_transient() -> None:
    sleds = [_sled(0, reserved_local_storage=900 * GiB)]
    reason = _fail(Request(ncpus=1, memory=GiB, local_storage=200 * GiB), sleds)
    assert reason["code"] == "local_storage_unavailable"
    assert reason["transient"] is True
    assert reason["diagnosis"]["shortfall"]["local_storage"] == 100 * GiB


def test_allow_preferences_are_kept_when_possible_and_reported_when_broken() -> None:
    sleds = [_sled(i) for i in range(4)]
    near = GroupRule("near", "allow", frozenset({"s2"}), members=2)
    for seed in range(20):
        result = place(Request(ncpus=1, memory=GiB, affinity=(near,)), sleds, random.Random(seed))
        assert isinstance(result, Placement)
        assert result.sled_id == "s2"
        assert result.broken_preferences == ()
    full = [_sled(i, reserved_cpus=16 if i == 2 else 0) for i in range(4)]
    result = place(Request(ncpus=1, memory=GiB, affinity=(near,)), full, random.Random(0))
    assert isinstance(result, Placement)
    assert result.sled_id != "s2"
    assert result.broken_preferences == ({"kind": "affinity", "group": "near"},)
    apart = GroupRule("apart", "allow", frozenset({"s0", "s1", "s2", "s3"}), members=5)
    result = place(Request(ncpus=1, memory=GiB, anti_affinity=(apart,)), sleds, random.Random(0))
    assert isinstance(result, Placement)
    assert result.broken_preferences == ({"kind": "anti_affinity", "group": "apart"},)


def test_choice_is_seedable_and_spreads() -> None:
    sleds = [_sled(i) for i in range(8)]
    req = Request(ncpus=1, memory=GiB)
    first = [place(req, sleds, random.Random(7)) for _ in range(3)]
    assert len({r.sled_id for r in first if isinstance(r, Placement)}) == 1
    rng = random.Random(3)
    chosen = {
        p.sled_id for p in (place(req, sleds, rng) for _ in range(200)) if isinstance(p, Placement)
    }
    assert len(chosen) == 8


def test_emptier_sleds_are_preferred() -> None:
    sleds = [_sled(0, reserved_cpus=15, reserved_memory=63 * GiB), _sled(1)]
    rng = random.Random(11)
    picks = [place(Request(ncpus=1, memory=GiB), sleds, rng) for _ in range(300)]
    on_empty = sum(1 for p in picks if isinstance(p, Placement) and p.sled_id == "s1")
    assert on_empty > 250


def test_large_rack_groups_operator_detail_by_checks() -> None:
    """Past 128 sleds, operators get sleds grouped by the checks they failed (with samples),
    so an event stays small; the counts still cover every sled."""
    sleds = [
        _sled(
            i,
            provision_policy="non_provisionable" if i % 10 == 0 else "provisionable",
            reserved_cpus=14 if i % 3 else 10,
            cpu_family="amd_milan",
        )
        for i in range(300)
    ]
    reason = _fail(Request(ncpus=8, memory=GiB), sleds)
    diagnosis = reason["diagnosis"]
    assert "sleds" not in diagnosis
    groups = diagnosis["sled_groups"]
    assert sum(g["count"] for g in groups) == 300
    by_id = {s.id: s for s in sleds}
    for g in groups:
        assert 0 < len(g["sample"]) <= 16
        for sid in g["sample"]:
            s = by_id[sid]
            expected = []
            if s.provision_policy != "provisionable":
                expected.append("not_provisionable")
            expected.append("too_few_cpus")
            assert g["checks"] == expected
    assert diagnosis["counts"]["not_provisionable"] == 30
    assert diagnosis["counts"]["too_few_cpus"] == 270
    shown = redact(reason, operator=False)
    assert shown is not None and "sled_groups" not in shown["diagnosis"]


@st.composite
def wide_racks(draw: st.DrawFn) -> list[SledView]:
    """Racks of 8-48 sleds of one size with few distinct free amounts, so that ties between
    sleds (the first in rack order must win) are common."""
    sleds = []
    for i in range(draw(st.integers(8, 48))):
        size = dict(
            cpus=32,
            memory=64 * GiB,
            local_storage=400 * GiB,
            reserved_cpus=draw(st.sampled_from([8, 16, 24, 28, 30, 32])),
            reserved_memory=draw(st.sampled_from([16, 32, 48, 56, 64])) * GiB,
            reserved_local_storage=draw(st.sampled_from([0, 200, 300, 400])) * GiB,
        )
        sleds.append(_drawn_sled(draw, f"sled-{i:02}", 7, 6, **size))
    return sleds


def _share_of_request(req: Request, s: SledView) -> float:
    """How much of the request the sled has free, each resource capped at its whole."""
    share = min(s.free_cpus / req.ncpus, 1) + min(s.free_memory / req.memory, 1)
    if req.local_storage:
        share += min(s.free_local_storage / req.local_storage, 1)
    return share


def _held_back_only_by_room(req: Request, s: SledView) -> bool:
    """Would the sled take the instance if it were empty? (A sled too small for it is not
    held back by room: freeing it would not help.)"""
    empty = {"reserved_cpus": 0, "reserved_memory": 0, "reserved_local_storage": 0}
    return fits_now(req, SledView(**{**s.__dict__, **empty})) and not fits_now(req, s)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), search=st.sampled_from(["candidates only", "every sled"]))
def test_shortfall_is_that_of_a_closest_sled(data: st.DataObject, search: str) -> None:
    """The closest sled (largest capped share of the request free, the first in rack order on
    a tie) is found whichever way the diagnosis searches: among the candidates only, or over
    every sled."""
    from unittest import mock

    from skylight.placement import diagnosis

    sleds = data.draw(wide_racks())
    ids = [s.id for s in sleds]
    req = data.draw(requests(ids))
    req = Request(**{**req.__dict__, "contradictions": (), "pinned_sled": None})
    few = {"candidates only": 10**9, "every sled": 0}[search]
    with mock.patch.object(diagnosis, "CANDIDATES_ONLY_SHARE", few):
        result = place(req, sleds, random.Random(1))
    if isinstance(result, Placement):
        return
    candidates = [s for s in sleds if _held_back_only_by_room(req, s)]
    shortfall = result.reason["diagnosis"]["shortfall"]
    if not candidates:
        assert shortfall is None
        return
    best = max(_share_of_request(req, s) for s in candidates)
    closest = [
        {
            "vcpus": max(0, req.ncpus - s.free_cpus),
            "memory": max(0, req.memory - s.free_memory),
            "local_storage": max(0, req.local_storage - s.free_local_storage),
        }
        for s in candidates
        if _share_of_request(req, s) >= best - 1e-9
    ]
    assert shortfall == closest[0]  # the first of the closest sleds in rack order


def test_samples_are_the_first_sleds_in_rack_order_on_large_racks() -> None:
    """Past 1,024 sleds samples are found in the bytes of the signatures: each group's sample
    is still its first sleds in rack order, rare groups at the far end of the rack included."""
    n = 3000
    sleds = [
        _sled(
            i,
            provision_policy="non_provisionable" if i % 500 == 7 or i > n - 4 else "provisionable",
            reserved_cpus=14 if i % 3 else 10,
        )
        for i in range(n)
    ]
    groups = _fail(Request(ncpus=8, memory=GiB), sleds)["diagnosis"]["sled_groups"]
    expected: dict[tuple[str, ...], list[str]] = {}
    for s in sleds:
        checks = ("not_provisionable",) if s.provision_policy != "provisionable" else ()
        expected.setdefault((*checks, "too_few_cpus"), []).append(s.id)
    assert {tuple(g["checks"]): g["sample"] for g in groups} == {
        k: v[:16] for k, v in expected.items()
    }
    assert {tuple(g["checks"]): g["count"] for g in groups} == {
        k: len(v) for k, v in expected.items()
    }
    assert [g["count"] for g in groups] == sorted((g["count"] for g in groups), reverse=True)


def test_a_sled_whose_agent_does_not_answer_takes_no_new_instance() -> None:
    """Like maintenance, and as transient: the diagnosis counts the sled as not taking
    instances and says to wait for its agent."""
    silent = _sled(0, reachable=False)
    full = _sled(1, reserved_cpus=16)
    result = place(Request(ncpus=4, memory=GiB), [silent, _sled(2)], random.Random(3))
    assert isinstance(result, Placement) and result.sled_id == "s2"
    reason = _fail(Request(ncpus=4, memory=GiB), [silent, full])
    assert reason["code"] == "capacity_in_maintenance" and reason["transient"] is True
    assert reason["diagnosis"]["counts"]["not_provisionable"] == 1
    assert "agent" in reason["message"]


# -- size versus free room: what is true of each sled ------------------------------------------


def _big(i: int, **kw: object) -> SledView:
    """A sled of 64 vCPUs and 256 GiB (the user's rack in issue 13)."""
    return _sled(i, **{"cpus": 64, "memory": 256 * GiB, **kw})


def _counted(reason: dict[str, object]) -> dict[str, int]:
    diagnosis = reason["diagnosis"]
    assert isinstance(diagnosis, dict)
    assert "fix" not in diagnosis  # the fix is the action's, said once
    counts = {k: n for k, n in diagnosis["counts"].items() if n}
    assert sum(counts.values()) == diagnosis["sleds_total"]
    return counts


def test_every_sled_too_small_is_said_with_the_largest_size() -> None:
    """65 vCPUs on 8 empty sleds of 64: each sled is too small, none short of free vCPUs."""
    reason = _fail(Request(ncpus=65, memory=16 * GiB), [_big(i) for i in range(8)])
    assert (reason["code"], reason["transient"]) == ("exceeds_sled_size", False)
    assert _counted(reason) == {"too_small": 8}
    message = reason["message"]
    assert "of 8 sleds, 8 too small (64 vCPUs / 256 GiB)." in message
    assert "Each sled has at most 64 vCPUs; it asks for 65." in message
    assert "free" not in message
    assert reason["action"] == "Request at most 64 vCPUs."
    assert reason["diagnosis"]["shortfall"] is None  # no sled that room would cure
    # The fix as numbers, for a client's one-click resize: its memory stays as asked.
    assert reason["diagnosis"]["fits_within"] == {"ncpus": 64, "memory": 16 * GiB}


def test_a_mixed_rack_counts_too_small_and_busy_sleds_apart() -> None:
    """4 sleds of 32 vCPUs (too small for 48) and 4 of 64 with 40 free (busy)."""
    sleds = [_big(i, cpus=32) for i in range(4)] + [_big(i, reserved_cpus=24) for i in range(4, 8)]
    reason = _fail(Request(ncpus=48, memory=16 * GiB), sleds)
    assert (reason["code"], reason["transient"]) == ("insufficient_capacity", True)
    assert _counted(reason) == {"too_small": 4, "too_few_cpus": 4}
    message = reason["message"]
    assert "of 8 sleds, 4 too small (32 vCPUs / 256 GiB), 4 too few free vCPUs." in message
    assert "The closest sled lacks 8 vCPUs." in message  # a busy sled, not a small one
    action = reason["action"]
    assert (
        action == "Request at most 40 vCPUs, or stop other instances to free 8 vCPUs on one sled."
    )


def test_memory_too_small_and_too_little_free_are_told_apart() -> None:
    every = _fail(Request(ncpus=8, memory=300 * GiB), [_big(i) for i in range(3)])
    assert every["code"] == "exceeds_sled_size"
    assert _counted(every) == {"too_small": 3}
    assert "Each sled has at most 256 GiB of memory; it asks for 300 GiB." in every["message"]
    assert every["action"] == "Request at most 256 GiB of memory."
    assert every["diagnosis"]["fits_within"] == {"ncpus": 8, "memory": 256 * GiB}

    # Sleds of 128 GiB are too small for 200 GiB; sleds of 256 GiB with 156 GiB free are busy.
    sleds = [
        _big(i, memory=128 * GiB) if i % 2 else _big(i, reserved_memory=100 * GiB) for i in range(6)
    ]
    mixed = _fail(Request(ncpus=8, memory=200 * GiB), sleds)
    assert mixed["code"] == "insufficient_capacity"
    assert _counted(mixed) == {"too_small": 3, "too_little_memory": 3}
    assert "3 too small (64 vCPUs / 128 GiB), 3 too little free memory." in mixed["message"]
    assert mixed["action"].startswith("Request at most 156 GiB of memory, or ")
    assert "fits_within" not in mixed["diagnosis"]  # room, not size: no resize to offer

    # Both too many vCPUs and too much memory: both sizes, and the request cut to them.
    both = _fail(Request(ncpus=65, memory=300 * GiB), [_big(0)])
    assert (
        "Each sled has at most 64 vCPUs and 256 GiB of memory; it asks for 65 vCPUs and "
        "300 GiB of memory." in both["message"]
    )
    assert both["action"] == "Request at most 64 vCPUs and 256 GiB of memory."


def test_sleds_of_different_sizes_are_worded_at_most() -> None:
    """Sleds too small in different ways: the count says "at most"; when each resource alone
    fits some sled but none holds them all, the message says so, and the action cuts the
    request to the sled it needs cutting least for."""
    sleds = [_big(0, cpus=64, memory=128 * GiB), _big(1, cpus=32, memory=512 * GiB)]
    reason = _fail(Request(ncpus=60, memory=200 * GiB), sleds)
    assert reason["code"] == "exceeds_sled_size"
    assert "2 too small (at most 64 vCPUs / 512 GiB)" in reason["message"]
    assert "No sled has 60 vCPUs and 200 GiB of memory at once." in reason["message"]
    assert reason["action"] == "Request at most 128 GiB of memory."


def test_size_versus_free_with_sleds_not_in_service() -> None:
    # The only sled big enough has left service: the instance is larger than any in service.
    gone = _big(0, cpus=128, policy="expunged", state="decommissioned")
    reason = _fail(Request(ncpus=65, memory=GiB), [gone, _big(1)])
    assert (reason["code"], reason["transient"]) == ("exceeds_sled_size", False)
    assert _counted(reason) == {"not_in_service": 1, "too_small": 1}
    assert "Each sled in service has at most 64 vCPUs; it asks for 65." in reason["message"]
    assert reason["action"] == "Request at most 64 vCPUs."

    # The big sled is only in maintenance: it will take it once back (transient).
    resting = _big(0, cpus=128, provision_policy="non_provisionable")
    reason = _fail(Request(ncpus=65, memory=GiB), [resting, _big(1)])
    assert (reason["code"], reason["transient"]) == ("capacity_in_maintenance", True)
    assert _counted(reason) == {"not_provisionable": 1, "too_small": 1}

    # A busy sled in service is big enough: not "larger than any sled".
    reason = _fail(Request(ncpus=40, memory=GiB), [gone, _big(1, reserved_cpus=30)])
    assert (reason["code"], reason["transient"]) == ("insufficient_capacity", True)
    assert _counted(reason) == {"not_in_service": 1, "too_few_cpus": 1}

    # No sled in service at all: said as it is, not as "at most 0 vCPUs".
    reason = _fail(Request(ncpus=4, memory=GiB), [gone])
    assert reason["code"] == "exceeds_sled_size"
    assert reason["message"].startswith("No sled is in service to hold it")
    assert "0 vCPUs" not in reason["action"]


def test_the_affinity_sled_too_small_is_not_said_to_be_busy() -> None:
    together = GroupRule("together", "fail", frozenset({"s0"}), members=2)
    small = _fail(Request(ncpus=40, memory=GiB, affinity=(together,)), [_big(0, cpus=32), _big(1)])
    assert small["code"] == "affinity_sled_unavailable"
    assert "is too small for it" in small["message"] and "room" not in small["message"]
    assert "That sled has 32 vCPUs; it asks for 40." in small["message"]
    assert small["action"] == "Request at most 32 vCPUs, or leave together."
    busy = _fail(
        Request(ncpus=40, memory=GiB, affinity=(together,)), [_big(0, reserved_cpus=30), _big(1)]
    )
    assert "too little free room" in busy["message"]
    assert busy["action"].startswith("Request at most 34 vCPUs, or stop other instances")


def _every_placement_reason() -> list[dict[str, object]]:
    """One failed placement per verdict the explanations give."""
    together = GroupRule("together", "fail", frozenset({"s0"}), members=2)
    apart = GroupRule("apart", "fail", frozenset({"s0", "s1"}), members=3)
    spread = GroupRule("spread", "fail", frozenset({"s0"}), members=2)
    gone = _big(0, policy="expunged", state="decommissioned")
    cases: list[tuple[Request, list[SledView]]] = [
        (Request(ncpus=65, memory=GiB), [_big(0), _big(1)]),
        (Request(ncpus=4, memory=GiB), [gone]),
        (Request(ncpus=48, memory=GiB), [_big(0, cpus=32), _big(1, reserved_cpus=24)]),
        (Request(ncpus=4, memory=GiB), [_big(0, provision_policy="non_provisionable")]),
        (Request(ncpus=4, memory=GiB, pinned_sled="s0"), [gone, _big(1)]),
        (Request(ncpus=4, memory=GiB, pinned_sled="s0"), [_big(0, reserved_cpus=62), _big(1)]),
        (
            Request(ncpus=1, memory=GiB, local_storage=200 * GiB),
            [_sled(0, reserved_local_storage=900 * GiB)],
        ),
        (Request(ncpus=1, memory=GiB, cpu_platform="amd_turin"), [_big(0)]),
        (Request(ncpus=65, memory=GiB, pinned_sled="s0"), [_big(0), _big(1, cpus=128)]),
        (
            Request(ncpus=1, memory=GiB, pinned_sled="s0", cpu_platform="amd_turin"),
            [_big(0), _big(1, cpu_family="amd_turin")],
        ),
        (
            Request(
                ncpus=1,
                memory=GiB,
                affinity=(together,),
                anti_affinity=(spread,),
                contradictions=("db",),
            ),
            [_big(0), _big(1)],
        ),
        (Request(ncpus=40, memory=GiB, affinity=(together,)), [_big(0, cpus=32), _big(1)]),
        (Request(ncpus=40, memory=GiB, affinity=(together,)), [_big(0, reserved_cpus=30), _big(1)]),
        (Request(ncpus=1, memory=GiB, anti_affinity=(apart,)), [_big(0), _big(1)]),
        (
            Request(ncpus=1, memory=GiB, anti_affinity=(spread,)),
            [_big(0), _big(1, reserved_cpus=64)],
        ),
    ]
    return [_fail(req, sleds) for req, sleds in cases]


def test_no_reason_repeats_its_action_in_its_message() -> None:
    reasons = _every_placement_reason()
    assert {r["code"] for r in reasons} >= {
        "exceeds_sled_size",
        "insufficient_capacity",
        "capacity_in_maintenance",
        "local_storage_unavailable",
        "cpu_platform_unavailable",
        "affinity_conflict",
        "affinity_sled_unavailable",
        "anti_affinity_unsatisfiable",
    }
    pinned_too_small = reasons[8]
    assert pinned_too_small["code"] == "exceeds_sled_size"
    assert "That sled has 64 vCPUs; it asks for 65." in pinned_too_small["message"]
    assert pinned_too_small["action"] == "Request at most 64 vCPUs."  # not the 128 elsewhere
    pinned_elsewhere = reasons[9]
    assert pinned_elsewhere["code"] == "cpu_platform_unavailable"  # not "larger than any sled"
    assert pinned_elsewhere["action"] == "Choose the CPU platform amd_milan, or none."
    for reason in reasons:
        message, action = str(reason["message"]), str(reason["action"])
        assert action and action not in message, reason
        # Not even its first clause ("Request at most 64 vCPUs", "Stop a member of ...").
        assert action.split(",")[0].rstrip(".") not in message, reason
        _counted(reason)


def test_a_full_sled_is_not_offered_as_a_smaller_request() -> None:
    """The closest sled has no vCPU free: "request at most 0 vCPUs" would be no fix."""
    reason = _fail(Request(ncpus=4, memory=GiB), [_sled(0, reserved_cpus=16)])
    assert reason["code"] == "insufficient_capacity"
    assert reason["action"] == "Stop other instances to free 4 vCPUs on one sled, or wait."
