"""Sleds through the API: list, view, the instances on a sled, provision policy."""

from __future__ import annotations

import uuid
from pathlib import Path

from fastapi.testclient import TestClient

from skylight.api.app import create_app
from tests.conftest import AdminClient, GiB, instance_body, make_settings
from tests.oxide_schema import all_pages, assert_conforms, assert_error, success_status

P = {"project": "demo"}
SLEDS = "/v1/system/hardware/sleds"


def test_sled_list_and_view_match_oxide(client: TestClient) -> None:
    r = client.get(SLEDS)
    assert r.status_code == success_status(SLEDS, "get") == 200
    page = r.json()
    assert_conforms(page, "SledResultsPage")
    items = page["items"]
    assert len(items) == 4
    assert [s["id"] for s in items] == sorted(s["id"] for s in items)  # id_ascending
    assert client.get(SLEDS, params={"sort_by": "id_ascending"}).json() == page
    assert len({s["baseboard"]["serial"] for s in items}) == 4
    assert len({s["rack_id"] for s in items}) == 1
    for s in items:
        assert_conforms(s, "Sled")
        assert s["policy"] == {"kind": "in_service", "provision_policy": "provisionable"}
        assert s["state"] == "active"
        assert s["usable_hardware_threads"] == 16
        assert s["usable_physical_ram"] == 64 * GiB
        # Skylight additions
        assert s["reserved_hardware_threads"] == 0
        assert s["reserved_memory"] == 0
        assert isinstance(s["cpu_family"], str) and s["cpu_family"]

        v = client.get(f"{SLEDS}/{s['id']}")
        assert v.status_code == success_status(f"{SLEDS}/{{sled_id}}", "get") == 200
        assert v.json() == s
        assert client.get(f"{SLEDS}/{s['id'].upper()}").json() == s

    assert_error(client.get(f"{SLEDS}/not-a-uuid"), 400, "InvalidRequest", "sled")
    assert_error(client.get(f"{SLEDS}/{uuid.uuid4()}"), 404, "ObjectNotFound", "sled")


def test_sled_size_comes_from_the_rack(tmp_path: Path, db_url: str) -> None:
    settings = make_settings(tmp_path / "data", db_url, sleds=2, sled_cpus=8, sled_memory_gib=32)
    with AdminClient(create_app(settings)) as client:
        items = all_pages(client, SLEDS)
        assert len(items) == 2
        assert {s["usable_hardware_threads"] for s in items} == {8}
        assert {s["usable_physical_ram"] for s in items} == {32 * GiB}
        client.post("/v1/projects", json={"name": "demo", "description": ""})
        client.post("/v1/instances", params=P, json=instance_body("a", 8, 4, start=False))
        r = client.post("/v1/instances/a/start", params=P)
        assert r.status_code == 202, r.text
        r = client.post("/v1/instances", params=P, json=instance_body("b", 9, 4, start=False))
        assert r.status_code == 201, r.text
        body = assert_error(client.post("/v1/instances/b/start", params=P), 507)
        assert body["reason"]["code"] == "exceeds_sled_size"
        assert "8" in body["reason"]["action"]


def test_instances_on_a_sled(client: TestClient, project: str) -> None:
    ids = []
    for n in range(3):
        r = client.post("/v1/instances", params=P, json=instance_body(f"vm{n}", 2, 3))
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    r = client.post("/v1/instances", params=P, json=instance_body("off", 1, 1, start=False))
    assert r.status_code == 201

    seen: dict[str, str] = {}
    for s in all_pages(client, SLEDS):
        r = client.get(f"{SLEDS}/{s['id']}/instances")
        assert r.status_code == success_status(f"{SLEDS}/{{sled_id}}/instances", "get") == 200
        assert_conforms(r.json(), "SledInstanceResultsPage")
        items = r.json()["items"]
        assert [i["id"] for i in items] == sorted(i["id"] for i in items)
        for item in items:
            assert_conforms(item, "SledInstance")
            assert item["active_sled_id"] == s["id"]
            assert item["project_name"] == "demo"
            assert item["state"] == "running"
            assert (item["ncpus"], item["memory"]) == (2, 3 * GiB)
            assert item["id"] not in seen
            seen[item["id"]] = s["id"]
        assert s["reserved_hardware_threads"] == 2 * len(items)
        assert s["reserved_memory"] == 3 * GiB * len(items)
    assert sorted(seen) == sorted(ids)  # every running instance on one sled; "off" on none

    # stopping one takes it off its sled and frees its reservation
    assert client.post("/v1/instances/vm0/stop", params=P).status_code == 202
    sled_id = seen[ids[0]]
    remaining = all_pages(client, f"{SLEDS}/{sled_id}/instances")
    assert ids[0] not in {i["id"] for i in remaining}
    sled = client.get(f"{SLEDS}/{sled_id}").json()
    assert sled["reserved_hardware_threads"] == 2 * len(remaining)

    assert_error(client.get(f"{SLEDS}/{uuid.uuid4()}/instances"), 404, "ObjectNotFound")
    assert_error(client.get(f"{SLEDS}/nope/instances"), 400, "InvalidRequest")


def test_sled_provision_policy(client: TestClient) -> None:
    sled = all_pages(client, SLEDS)[0]
    url = f"{SLEDS}/{sled['id']}/provision-policy"

    r = client.put(url, json={"state": "non_provisionable"})
    assert r.status_code == success_status(f"{SLEDS}/{{sled_id}}/provision-policy", "put") == 200
    assert_conforms(r.json(), "SledProvisionPolicyResponse")
    assert r.json() == {"old_state": "provisionable", "new_state": "non_provisionable"}
    viewed = client.get(f"{SLEDS}/{sled['id']}").json()
    assert viewed["policy"] == {"kind": "in_service", "provision_policy": "non_provisionable"}
    assert_conforms(viewed, "Sled")
    others = [s for s in all_pages(client, SLEDS) if s["id"] != sled["id"]]
    assert all(s["policy"]["provision_policy"] == "provisionable" for s in others)

    # setting the same state again is fine and says so
    r = client.put(url, json={"state": "non_provisionable"})
    assert r.json() == {"old_state": "non_provisionable", "new_state": "non_provisionable"}

    r = client.put(url, json={"state": "provisionable"})
    assert r.json() == {"old_state": "non_provisionable", "new_state": "provisionable"}
    assert client.get(f"{SLEDS}/{sled['id']}").json()["policy"]["provision_policy"] == (
        "provisionable"
    )

    for bad in ({"state": "expunged"}, {"state": None}, {}, {"state": 1}):
        assert_error(client.put(url, json=bad), 400, "InvalidRequest", "state")
    assert_error(
        client.put(f"{SLEDS}/{uuid.uuid4()}/provision-policy", json={"state": "provisionable"}),
        404,
        "ObjectNotFound",
    )
    assert client.get(f"{SLEDS}/{sled['id']}").json()["policy"]["provision_policy"] == (
        "provisionable"
    )
