"""Affinity and anti-affinity groups through the API: Oxide shapes and status codes, NameOrId
selection, members and their rules, instance create and delete, bad input."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import instance_body
from tests.oxide_schema import all_pages, assert_conforms, assert_error, snapshot, success_status

P = {"project": "demo"}
# (path segment, Oxide schema name prefix)
KINDS = [("affinity-groups", "AffinityGroup"), ("anti-affinity-groups", "AntiAffinityGroup")]


def group_body(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"group {name}",
        "policy": "fail",
        "failure_domain": "sled",
        **extra,
    }


def make_group(client: TestClient, seg: str, schema: str, name: str, **extra: Any) -> Any:
    r = client.post(f"/v1/{seg}", params=P, json=group_body(name, **extra))
    assert r.status_code == success_status(f"/v1/{seg}", "post") == 201, r.text
    assert_conforms(r.json(), schema)
    return r.json()


def make_instance(client: TestClient, name: str, project: str = "demo", **extra: Any) -> Any:
    extra.setdefault("start", False)
    r = client.post("/v1/instances", params={"project": project}, json=instance_body(name, **extra))
    assert r.status_code == 201, r.text
    return r.json()


def members(client: TestClient, seg: str, group: str, **params: Any) -> list[dict[str, Any]]:
    return all_pages(client, f"/v1/{seg}/{group}/members", **params)


def state(client: TestClient) -> dict[str, Any]:
    """What a client can see, groups and their members included."""
    out = snapshot(client)
    for seg, _ in KINDS:
        for p in out["projects"]:
            for g in all_pages(client, f"/v1/{seg}", project=p["id"]):
                out[f"{seg}:{g['id']}"] = (g, members(client, seg, g["id"]))
    return out


def test_group_create_view_list_update_delete(client: TestClient, project: str) -> None:
    for seg, schema in KINDS:
        a = make_group(client, seg, schema, "alpha", policy="allow")
        assert (a["name"], a["policy"], a["failure_domain"]) == ("alpha", "allow", "sled")
        assert a["time_created"] == a["time_modified"]
        b = make_group(client, seg, schema, "bravo")
        c = make_group(client, seg, schema, "charlie")

        # view: by name with ?project= (name or id), by id without
        for params, sel in ((P, "alpha"), ({"project": a["project_id"]}, "alpha"), ({}, a["id"])):
            r = client.get(f"/v1/{seg}/{sel}", params=params)
            assert r.status_code == 200, r.text
            assert r.json() == a
        r = client.get(f"/v1/{seg}/{a['id'].upper()}")
        assert r.status_code == 200 and r.json()["id"] == a["id"]
        assert_error(client.get(f"/v1/{seg}/alpha"), 400, "InvalidRequest", "project")
        assert_error(client.get(f"/v1/{seg}/{a['id']}", params=P), 400, "InvalidRequest")
        assert_error(client.get(f"/v1/{seg}/zulu", params=P), 404, "ObjectNotFound", "zulu")

        # list: the three sort modes, pages of one, tokens that carry the sort
        r = client.get(f"/v1/{seg}", params=P)
        assert r.status_code == 200, r.text
        assert_conforms(r.json(), f"{schema}ResultsPage")
        assert [g["name"] for g in r.json()["items"]] == ["alpha", "bravo", "charlie"]
        expected = {
            "name_ascending": ["alpha", "bravo", "charlie"],
            "name_descending": ["charlie", "bravo", "alpha"],
            "id_ascending": [g["name"] for g in sorted((a, b, c), key=lambda g: g["id"])],
        }
        for sort, names in expected.items():
            page = client.get(f"/v1/{seg}", params={**P, "sort_by": sort, "limit": 1}).json()
            seen = [g["name"] for g in page["items"]]
            while page["next_page"]:
                nxt = {**P, "limit": 1, "page_token": page["next_page"]}
                page = client.get(f"/v1/{seg}", params=nxt).json()
                seen += [g["name"] for g in page["items"]]
            assert seen == names, sort
        assert_error(client.get(f"/v1/{seg}"), 400, "InvalidRequest", "project")
        missing = client.get(f"/v1/{seg}", params={"project": "nope"})
        assert_error(missing, 404, "ObjectNotFound")

        # update: name and description, each optional; names stay unique
        r = client.put(f"/v1/{seg}/alpha", params=P, json={"description": "new words"})
        assert r.status_code == 200, r.text
        assert_conforms(r.json(), schema)
        assert r.json()["name"] == "alpha" and r.json()["description"] == "new words"
        assert r.json()["time_modified"] > a["time_modified"]
        r = client.put(f"/v1/{seg}/{a['id']}", json={"name": "delta"})
        assert r.status_code == 200 and r.json()["name"] == "delta", r.text
        assert r.json()["policy"] == "allow"  # update leaves policy as it was
        dup = client.put(f"/v1/{seg}/delta", params=P, json={"name": "bravo"})
        assert_error(dup, 400, "ObjectAlreadyExists", "bravo")
        same = client.put(f"/v1/{seg}/delta", params=P, json={"name": "delta"})
        assert same.status_code == 200, same.text

        # create: names unique per project among live groups
        dup = client.post(f"/v1/{seg}", params=P, json=group_body("bravo"))
        assert_error(dup, 400, "ObjectAlreadyExists", "bravo")

        # delete, then the name is free again
        r = client.delete(f"/v1/{seg}/bravo", params=P)
        assert r.status_code == 204 and r.content == b"", r.text
        assert_error(client.get(f"/v1/{seg}/{b['id']}"), 404, "ObjectNotFound")
        assert_error(client.delete(f"/v1/{seg}/bravo", params=P), 404, "ObjectNotFound")
        again = make_group(client, seg, schema, "bravo")
        assert again["id"] != b["id"]
        names = [g["name"] for g in all_pages(client, f"/v1/{seg}", project="demo")]
        assert names == ["bravo", "charlie", "delta"]

    # the two families are separate name spaces
    aff = all_pages(client, "/v1/affinity-groups", project="demo")
    anti = all_pages(client, "/v1/anti-affinity-groups", project="demo")
    assert {g["id"] for g in aff}.isdisjoint({g["id"] for g in anti})
    assert_error(client.get(f"/v1/anti-affinity-groups/{aff[0]['id']}"), 404, "ObjectNotFound")


def test_members_add_view_list_remove(client: TestClient, project: str) -> None:
    a = make_instance(client, "a")
    b = make_instance(client, "b")
    for seg, schema in KINDS:
        g = make_group(client, seg, schema, "g")
        url = f"/v1/{seg}/g/members/instance"
        r = client.post(f"{url}/a", params=P)
        assert r.status_code == 201, r.text
        assert_conforms(r.json(), f"{schema}Member")
        assert r.json() == {
            "type": "instance",
            "value": {"id": a["id"], "name": "a", "run_state": "stopped"},
        }
        # by ids, no project; and an instance named without ?project= under a group by id
        r = client.post(f"/v1/{seg}/{g['id']}/members/instance/b")
        assert r.status_code == 201, r.text
        assert r.json()["value"]["id"] == b["id"]

        assert_error(client.post(f"{url}/a", params=P), 400, "ObjectAlreadyExists")
        r = client.get(f"/v1/{seg}/{g['id']}/members/instance/{a['id']}")
        assert r.status_code == 200, r.text
        assert_conforms(r.json(), f"{schema}Member")
        assert r.json()["value"]["name"] == "a"

        r = client.get(f"/v1/{seg}/g/members", params=P)
        assert r.status_code == 200, r.text
        assert_conforms(r.json(), f"{schema}MemberResultsPage")
        assert [m["value"]["name"] for m in r.json()["items"]] == ["a", "b"]
        r = client.get(f"/v1/{seg}/g/members", params={**P, "sort_by": "name_descending"})
        assert [m["value"]["name"] for m in r.json()["items"]] == ["b", "a"]
        page = client.get(f"/v1/{seg}/g/members", params={**P, "limit": 1}).json()
        assert len(page["items"]) == 1 and page["next_page"]
        nxt = client.get(f"/v1/{seg}/g/members", params={**P, "page_token": page["next_page"]})
        assert [m["value"]["name"] for m in nxt.json()["items"]] == ["b"]

        # the instance's own view of its groups
        r = client.get(f"/v1/instances/a/{seg}", params=P)
        assert r.status_code == 200, r.text
        assert_conforms(r.json(), f"{schema}ResultsPage")
        assert [x["id"] for x in r.json()["items"]] == [g["id"]]
        r = client.get(f"/v1/instances/{a['id']}/{seg}")
        assert r.status_code == 200 and len(r.json()["items"]) == 1

        # remove
        r = client.delete(f"{url}/a", params=P)
        assert r.status_code == 204 and r.content == b"", r.text
        assert_error(client.delete(f"{url}/a", params=P), 404, "ObjectNotFound")
        assert_error(client.get(f"{url}/a", params=P), 404, "ObjectNotFound")
        assert client.get(f"/v1/instances/a/{seg}", params=P).json()["items"] == []
        assert [m["value"]["name"] for m in members(client, seg, g["id"])] == ["b"]

        # deleting the group removes its memberships (and the instance stays)
        assert client.delete(f"/v1/{seg}/g", params=P).status_code == 204
        assert client.get(f"/v1/instances/b/{seg}", params=P).json()["items"] == []
        assert client.get("/v1/instances/b", params=P).status_code == 200
        make_group(client, seg, schema, "g")
        assert members(client, seg, "g", project="demo") == []


def test_member_rules(client: TestClient, project: str) -> None:
    assert client.post("/v1/projects", json={"name": "other", "description": ""}).status_code == 201
    elsewhere = make_instance(client, "x", project="other")
    running = make_instance(client, "run", start=True)
    assert running["run_state"] == "running"
    make_instance(client, "a")
    for seg, schema in KINDS:
        g = make_group(client, seg, schema, "g")
        before = state(client)
        # an instance of another project
        r = client.post(f"/v1/{seg}/{g['id']}/members/instance/{elsewhere['id']}")
        assert_error(r, 400, "InvalidRequest", "same project")
        # a running instance: it holds sled resources
        r = client.post(f"/v1/{seg}/g/members/instance/run", params=P)
        assert_error(r, 400, "InvalidRequest", "stop")
        assert state(client) == before

        # at most 16 groups of each family per instance
        for i in range(16):
            make_group(client, seg, schema, f"g{i}")
            r = client.post(f"/v1/{seg}/g{i}/members/instance/a", params=P)
            assert r.status_code == 201, r.text
        r = client.post(f"/v1/{seg}/g/members/instance/a", params=P)
        assert_error(r, 400, "InvalidRequest", "16")
        # ... each family counted on its own: a stays addable to the other family
        assert len(all_pages(client, f"/v1/instances/a/{seg}", project="demo")) == 16

    # once stopped, the instance can join
    assert client.post("/v1/instances/run/stop", params=P).status_code == 202
    r = client.post("/v1/affinity-groups/g/members/instance/run", params=P)
    assert r.status_code == 201, r.text
    # and a member's run state follows the instance
    assert client.post("/v1/instances/run/start", params=P).status_code == 202
    r = client.get("/v1/affinity-groups/g/members/instance/run", params=P)
    assert r.json()["value"]["run_state"] == "running"


def test_group_with_32_members_is_full(client: TestClient, project: str) -> None:
    make_group(client, "anti-affinity-groups", "AntiAffinityGroup", "big")
    for i in range(33):
        make_instance(client, f"i{i}")
    for i in range(32):
        r = client.post(f"/v1/anti-affinity-groups/big/members/instance/i{i}", params=P)
        assert r.status_code == 201, r.text
    r = client.post("/v1/anti-affinity-groups/big/members/instance/i32", params=P)
    assert_error(r, 400, "InvalidRequest", "32")
    # instance create cannot join a full group either, and then creates nothing
    body = instance_body("late", start=False, anti_affinity_groups=["big"])
    assert_error(client.post("/v1/instances", params=P, json=body), 400, "InvalidRequest", "32")
    assert_error(client.get("/v1/instances/late", params=P), 404)


def test_instance_create_joins_anti_affinity_groups(client: TestClient, project: str) -> None:
    one = make_group(client, "anti-affinity-groups", "AntiAffinityGroup", "one")
    make_group(client, "anti-affinity-groups", "AntiAffinityGroup", "two")
    inst = make_instance(client, "a", anti_affinity_groups=["two", one["id"], "two"])
    groups = all_pages(client, f"/v1/instances/{inst['id']}/anti-affinity-groups")
    assert [g["name"] for g in groups] == ["one", "two"]
    assert members(client, "anti-affinity-groups", one["id"])[0]["value"]["id"] == inst["id"]

    # started as it is created: two members of a `fail` group land on different sleds
    b = make_instance(client, "b", start=True, anti_affinity_groups=["one"])
    c = make_instance(client, "c", start=True, anti_affinity_groups=["one"])
    assert b["run_state"] == c["run_state"] == "running"
    placed = {
        i["id"]: s["id"]
        for s in all_pages(client, "/v1/system/hardware/sleds")
        for i in all_pages(client, f"/v1/system/hardware/sleds/{s['id']}/instances")
    }
    assert placed[b["id"]] != placed[c["id"]]

    # bad groups: nothing is created
    assert client.post("/v1/projects", json={"name": "other", "description": ""}).status_code == 201
    r = client.post("/v1/anti-affinity-groups", params={"project": "other"}, json=group_body("far"))
    far = r.json()
    before = state(client)
    cases: list[tuple[Any, int, str]] = [
        (["nope"], 404, "ObjectNotFound"),
        ([str(uuid.uuid4())], 404, "ObjectNotFound"),
        ([far["id"]], 400, "InvalidRequest"),
        (["one", "Not A Name"], 400, "InvalidRequest"),
        ([17], 400, "InvalidRequest"),
        ("one", 400, "InvalidRequest"),
    ]
    for groups_field, status, code in cases:
        body = instance_body("bad", start=False, anti_affinity_groups=groups_field)
        assert_error(client.post("/v1/instances", params=P, json=body), status, code)
    assert state(client) == before
    many = [f"m{i}" for i in range(17)]
    for name in many:
        make_group(client, "anti-affinity-groups", "AntiAffinityGroup", name)
    before = state(client)
    body = instance_body("bad", start=False, anti_affinity_groups=many)
    assert_error(client.post("/v1/instances", params=P, json=body), 400, "InvalidRequest", "16")
    assert state(client) == before


def test_instance_delete_leaves_its_groups(client: TestClient, project: str) -> None:
    for seg, schema in KINDS:
        make_group(client, seg, schema, "g")
    a = make_instance(client, "a", anti_affinity_groups=["g"])
    make_instance(client, "b", anti_affinity_groups=["g"])
    assert client.post("/v1/affinity-groups/g/members/instance/a", params=P).status_code == 201
    assert client.delete("/v1/instances/a", params=P).status_code == 204
    anti = members(client, "anti-affinity-groups", "g", project="demo")
    assert [m["value"]["name"] for m in anti] == ["b"]
    assert members(client, "affinity-groups", "g", project="demo") == []
    for seg, _ in KINDS:
        assert_error(client.get(f"/v1/instances/{a['id']}/{seg}"), 404, "ObjectNotFound")
    # the same name can be reused, and the new instance is not a member of anything
    make_instance(client, "a")
    assert client.get("/v1/instances/a/anti-affinity-groups", params=P).json()["items"] == []


def test_bad_input_is_refused_and_changes_nothing(client: TestClient, project: str) -> None:
    make_instance(client, "a")
    ghost = str(uuid.uuid4())
    for seg, schema in KINDS:
        g = make_group(client, seg, schema, "g")
        before = state(client)
        bad_bodies: list[Any] = [
            "{not json",
            "[]",
            "null",
            {},
            group_body("Upper"),
            group_body("-dash"),
            group_body("x" * 64),
            group_body(str(uuid.uuid4())),
            group_body("ok", policy="sometimes"),
            group_body("ok", failure_domain="rack"),
            group_body("ok", description="d" * 513),
            group_body("ok", description=7),
            {**group_body("ok"), "name": 7},
            group_body("ok", description="nul\x00"),
            {k: v for k, v in group_body("ok").items() if k != "policy"},
        ]
        for body in bad_bodies:
            if isinstance(body, str):
                r = client.post(
                    f"/v1/{seg}",
                    params=P,
                    content=body,
                    headers={"content-type": "application/json"},
                )
            else:
                r = client.post(f"/v1/{seg}", params=P, json=body)
            assert_error(r, 400, "InvalidRequest")
        for body in ({"name": "Bad Name"}, {"description": ["x"]}, {"name": 3}):
            assert_error(client.put(f"/v1/{seg}/g", params=P, json=body), 400, "InvalidRequest")
        r = client.put(
            f"/v1/{seg}/g", params=P, content="{", headers={"content-type": "application/json"}
        )
        assert_error(r, 400, "InvalidRequest")

        # unknown things are 404s, malformed selectors 400s
        not_found = [
            client.get(f"/v1/{seg}/{ghost}"),
            client.put(f"/v1/{seg}/{ghost}", json={"description": "x"}),
            client.delete(f"/v1/{seg}/{ghost}"),
            client.get(f"/v1/{seg}/{ghost}/members"),
            client.get(f"/v1/{seg}/ghost/members", params=P),
            client.post(f"/v1/{seg}/{ghost}/members/instance/a", params=P),
            client.post(f"/v1/{seg}/g/members/instance/{ghost}", params=P),
            client.post(f"/v1/{seg}/g/members/instance/nope", params=P),
            client.get(f"/v1/{seg}/g/members/instance/nope", params=P),
            client.delete(f"/v1/{seg}/g/members/instance/{ghost}", params=P),
            client.get(f"/v1/instances/{ghost}/{seg}"),
            client.get(f"/v1/{seg}", params={"project": ghost}),
            client.post(f"/v1/{seg}", params={"project": "nope"}, json=group_body("n")),
        ]
        for r in not_found:
            assert_error(r, 404, "ObjectNotFound")
        malformed = [
            client.get(f"/v1/{seg}/Bad_Name", params=P),
            client.get(f"/v1/{seg}", params={"project": "Bad Project"}),
            client.get(f"/v1/{seg}", params={**P, "limit": 0}),
            client.get(f"/v1/{seg}", params={**P, "limit": "many"}),
            client.get(f"/v1/{seg}", params={**P, "sort_by": "size"}),
            client.get(f"/v1/{seg}", params={**P, "page_token": "garbage"}),
            client.get(f"/v1/{seg}/g/members", params={**P, "page_token": "garbage"}),
            client.post(f"/v1/{seg}/g/members/instance/Bad_Name", params=P),
            client.post(f"/v1/{seg}/g/members/instance/a"),  # both names, no project
            client.post(f"/v1/{seg}"),  # no project
        ]
        for r in malformed:
            assert_error(r, 400, "InvalidRequest")
        # a page token of one list is refused by another
        make_group(client, seg, schema, "h")
        token = client.get(f"/v1/{seg}", params={**P, "limit": 1}).json()["next_page"]
        assert token
        r = client.get(f"/v1/{seg}/g/members", params={**P, "page_token": token})
        assert_error(r, 400, "InvalidRequest", "page_token")
        assert client.delete(f"/v1/{seg}/h", params=P).status_code == 204
        assert state(client) == before
        assert client.get(f"/v1/{seg}/{g['id']}").json() == g


@pytest.mark.parametrize(("seg", "schema"), KINDS)
def test_membership_changes_are_instance_events(
    client: TestClient, project: str, seg: str, schema: str
) -> None:
    """Joining or leaving a group changes the rules the instance's next placement obeys:
    each is an `instance.updated` event naming the group."""
    g = make_group(client, seg, schema, "g")
    make_instance(client, "vm")
    assert client.post(f"/v1/{seg}/g/members/instance/vm", params=P).status_code == 201
    assert client.delete(f"/v1/{seg}/g/members/instance/vm", params=P).status_code == 204
    assert client.delete(f"/v1/{seg}/g/members/instance/vm", params=P).status_code == 404
    r = client.get("/v1/instances/vm/events", params={**P, "limit": 100})
    assert r.status_code == 200, r.text
    updates = [e["detail"] for e in reversed(r.json()["items"]) if e["kind"] == "instance.updated"]
    kind = seg.removesuffix("-groups").replace("-", "_")
    group = {"id": g["id"], "name": "g"}
    assert updates == [
        {"change": f"{kind}_group_joined", "group": group},
        {"change": f"{kind}_group_left", "group": group},
    ]
