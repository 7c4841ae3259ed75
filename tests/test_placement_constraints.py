"""Placement constraints end to end: groups, local disks, CPU platform, expunged sleds,
and concurrent starts that must never overcommit a sled or break a `fail` rule."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from skylight.api.app import create_app
from tests.conftest import AdminClient, GiB, event_kinds, instance_body, make_settings

P = {"project": "demo"}
ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
def rack(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    """4 sleds of 16 threads, 64 GiB and 100 GiB of local storage."""
    settings = make_settings(tmp_path / "d", db_url, sleds=4)
    settings.sim.sled_local_storage_gib = 100
    with AdminClient(create_app(settings)) as c:
        c.post("/v1/projects", json={"name": "demo", "description": ""})
        yield c


def _group(client: TestClient, kind: str, name: str, policy: str, members: list[str]) -> None:
    r = client.post(
        f"/v1/{kind}",
        params=P,
        json={"name": name, "description": "", "policy": policy, "failure_domain": "sled"},
    )
    assert r.status_code == 201, r.text
    for m in members:
        r = client.post(f"/v1/{kind}/{name}/members/instance/{m}", params=P)
        assert r.status_code == 201, r.text


def _create(client: TestClient, name: str, **extra: Any) -> dict[str, Any]:
    r = client.post("/v1/instances", params=P, json=instance_body(name, start=False, **extra))
    assert r.status_code == 201, r.text
    return dict(r.json())


def _sled_of(client: TestClient) -> dict[str, str]:
    """instance name -> sled id, for every placed instance."""
    out = {}
    for sled in client.get("/v1/system/hardware/sleds").json()["items"]:
        for inst in client.get(f"/v1/system/hardware/sleds/{sled['id']}/instances").json()["items"]:
            out[inst["name"]] = sled["id"]
    return out


def _settle(client: TestClient, names: list[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        views = {n: client.get(f"/v1/instances/{n}", params=P).json() for n in names}
        if all(v["run_state"] == "running" or v["status_reason"] for v in views.values()):
            return views
        assert time.monotonic() < deadline, views
        time.sleep(0.05)


def _check_no_overcommit(client: TestClient) -> None:
    for sled in client.get("/v1/system/hardware/sleds").json()["items"]:
        assert sled["reserved_hardware_threads"] <= sled["usable_hardware_threads"]
        assert sled["reserved_memory"] <= sled["usable_physical_ram"]


def test_anti_affinity_fail_spreads_and_refuses_the_fifth(rack: TestClient) -> None:
    names = [f"db{i}" for i in range(5)]
    for n in names:
        _create(rack, n)
    _group(rack, "anti-affinity-groups", "spread", "fail", names)
    for n in names:  # all at once: the rule must hold under concurrency
        assert rack.post(f"/v1/instances/{n}/start", params=P, headers=ASYNC).status_code == 202
    views = _settle(rack, names)
    running = [n for n, v in views.items() if v["run_state"] == "running"]
    refused = [v for v in views.values() if v["run_state"] != "running"]
    assert len(running) == 4
    assert len(set(_sled_of(rack)[n] for n in running)) == 4
    (loser,) = refused
    assert loser["status_reason"]["code"] == "anti_affinity_unsatisfiable"
    assert loser["status_reason"]["transient"] is False
    assert "spread" in loser["status_reason"]["message"]


def test_affinity_fail_keeps_members_together(rack: TestClient) -> None:
    names = ["web0", "web1", "web2"]
    for n in names:
        _create(rack, n, ncpus=4)
    _group(rack, "affinity-groups", "together", "fail", names)
    for n in names:
        rack.post(f"/v1/instances/{n}/start", params=P, headers=ASYNC)
    views = _settle(rack, names)
    assert all(v["run_state"] == "running" for v in views.values())
    assert len({_sled_of(rack)[n] for n in names}) == 1
    # A fourth member that does not fit on that sled is refused with the right reason.
    _create(rack, "web3", ncpus=8)
    rack.post("/v1/affinity-groups/together/members/instance/web3", params=P)
    r = rack.post("/v1/instances/web3/start", params=P)
    assert r.status_code == 507
    assert r.json()["reason"]["code"] == "affinity_sled_unavailable"
    assert r.json()["reason"]["transient"] is True


def test_allow_preference_broken_only_when_it_must_be_and_recorded(rack: TestClient) -> None:
    _create(rack, "a", ncpus=16)
    _create(rack, "b", ncpus=2)
    _group(rack, "affinity-groups", "near", "allow", ["a", "b"])
    rack.post("/v1/instances/a/start", params=P)
    rack.post("/v1/instances/b/start", params=P)  # a's sled is full: b must go elsewhere
    assert _sled_of(rack)["a"] != _sled_of(rack)["b"]
    placed = rack.get("/v1/instances/b/events", params={**P, "kind": "instance.placed"}).json()[
        "items"
    ][0]
    assert placed["detail"] == {"broken_preferences": [{"kind": "affinity", "group": "near"}]}
    # When it can be kept, it is kept, and nothing is recorded as broken.
    _create(rack, "c", ncpus=2)
    _create(rack, "d", ncpus=2)
    _group(rack, "affinity-groups", "pair", "allow", ["c", "d"])
    rack.post("/v1/instances/c/start", params=P)
    rack.post("/v1/instances/d/start", params=P)
    assert _sled_of(rack)["c"] == _sled_of(rack)["d"]
    placed = rack.get("/v1/instances/d/events", params={**P, "kind": "instance.placed"}).json()[
        "items"
    ][0]
    assert placed["detail"] is None


def test_contradicting_groups_are_permanent(rack: TestClient) -> None:
    _create(rack, "x")
    _create(rack, "y")
    _group(rack, "affinity-groups", "with", "fail", ["x", "y"])
    _group(rack, "anti-affinity-groups", "without", "fail", ["x", "y"])
    assert rack.post("/v1/instances/x/start", params=P).status_code == 202
    r = rack.post("/v1/instances/y/start", params=P)
    assert r.status_code == 507
    assert r.json()["reason"]["code"] == "affinity_conflict"
    assert r.json()["reason"]["transient"] is False
    assert "x" in r.json()["message"]


def _local_disk(name: str, gib: int) -> dict[str, Any]:
    return {
        "type": "create",
        "name": name,
        "description": "",
        "size": gib * GiB,
        "disk_backend": {"type": "local"},
    }


def test_local_disk_pins_the_instance_to_its_first_sled(rack: TestClient) -> None:
    _create(rack, "store", disks=[_local_disk("scratch", 60)])
    assert rack.post("/v1/instances/store/start", params=P).status_code == 202
    home = _sled_of(rack)["store"]
    sled = rack.get(f"/v1/system/hardware/sleds/{home}").json()
    assert sled["reserved_local_storage"] == 60 * GiB
    for _ in range(3):  # stop/start: always back on the same sled
        rack.post("/v1/instances/store/stop", params=P)
        assert rack.post("/v1/instances/store/start", params=P).status_code == 202
        assert _sled_of(rack)["store"] == home
    # Its sled full of other work: the pin is why it cannot start (transient).
    rack.post("/v1/instances/store/stop", params=P)
    for i in range(4):
        r = rack.post("/v1/instances", params=P, json=instance_body(f"f{i}", ncpus=16))
        assert r.json()["run_state"] == "running"
    r = rack.post("/v1/instances/store/start", params=P)
    assert r.status_code == 507
    assert r.json()["reason"]["code"] == "local_storage_unavailable"
    assert r.json()["reason"]["transient"] is True
    # Its sled expunged: now it can never start there (permanent).
    assert rack.post(f"/v1/system/hardware/sleds/{home}/expunge").status_code == 200
    r = rack.post("/v1/instances/store/start", params=P)
    assert r.json()["reason"]["code"] == "local_storage_unavailable"
    assert r.json()["reason"]["transient"] is False


def test_local_storage_is_counted(rack: TestClient) -> None:
    _create(rack, "big", disks=[_local_disk("huge", 150)])
    r = rack.post("/v1/instances/big/start", params=P)
    assert r.status_code == 507
    assert r.json()["reason"]["code"] == "exceeds_sled_size"  # 150 GiB > 100 GiB per sled
    for i in range(4):
        _create(rack, f"l{i}", disks=[_local_disk(f"d{i}", 70)])
        assert rack.post(f"/v1/instances/l{i}/start", params=P).status_code == 202
    _create(rack, "l4", disks=[_local_disk("d4", 70)])
    r = rack.post("/v1/instances/l4/start", params=P)
    assert r.json()["reason"]["code"] == "local_storage_unavailable"
    assert r.json()["reason"]["diagnosis"]["shortfall"]["local_storage"] == 40 * GiB
    # A failed first start pins nothing: freed storage elsewhere lets it start anywhere.
    rack.post("/v1/instances/l0/stop", params=P)
    rack.delete("/v1/instances/l0", params=P)
    rack.delete("/v1/disks/d0", params=P)
    assert rack.post("/v1/instances/l4/start", params=P).status_code == 202


def test_cpu_platform(rack: TestClient) -> None:
    _create(rack, "milan", cpu_platform="amd_milan")
    assert rack.post("/v1/instances/milan/start", params=P).status_code == 202
    _create(rack, "turin", cpu_platform="amd_turin")
    r = rack.post("/v1/instances/turin/start", params=P)
    assert r.status_code == 507
    assert r.json()["reason"]["code"] == "cpu_platform_unavailable"
    assert r.json()["reason"]["transient"] is False
    assert r.json()["reason"]["diagnosis"]["counts"]["cpu_platform"] == 4


def test_expunged_sled_fails_its_instances(rack: TestClient) -> None:
    _create(rack, "a", auto_restart_policy="never")
    rack.post("/v1/instances/a/start", params=P)
    home = _sled_of(rack)["a"]
    assert rack.post(f"/v1/system/hardware/sleds/{home}/expunge").json()["policy"] == {
        "kind": "expunged"
    }
    inst = rack.get("/v1/instances/a", params=P).json()
    assert inst["run_state"] == "failed"
    assert inst["status_reason"]["code"] == "sled_failure"
    assert event_kinds(rack, "a")[-1] == "instance.failed"
    assert rack.post("/v1/instances/a/start", params=P).status_code == 202
    assert _sled_of(rack)["a"] != home


def test_concurrent_starts_with_groups_on_a_nearly_full_rack(rack: TestClient) -> None:
    """32 starts at once of 2-vCPU instances (the rack holds 32), half of them in a `fail`
    anti-affinity group of 4 members each: no sled overcommits, no rule breaks."""
    names = [f"i{i}" for i in range(32)]
    for n in names:
        _create(rack, n)
    for g in range(4):
        _group(rack, "anti-affinity-groups", f"g{g}", "fail", names[g * 4 : g * 4 + 4])
    for n in names:
        rack.post(f"/v1/instances/{n}/start", params=P, headers=ASYNC)
    views = _settle(rack, names, timeout=60)
    _check_no_overcommit(rack)
    where = _sled_of(rack)
    for g in range(4):
        members = [n for n in names[g * 4 : g * 4 + 4] if n in where]
        assert len({where[n] for n in members}) == len(members)
    running = [n for n, v in views.items() if v["run_state"] == "running"]
    assert len(running) == len(where)
    for v in views.values():
        if v["run_state"] != "running":
            assert v["status_reason"]["code"] in (
                "insufficient_capacity",
                "anti_affinity_unsatisfiable",
            )
