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
    """Would the sled take the instance if it had any amount of room?"""
    boundless = {"cpus": 10**9, "memory": 10**18, "local_storage": 10**18}
    return fits_now(req, SledView(**{**s.__dict__, **boundless})) and not fits_now(req, s)


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
