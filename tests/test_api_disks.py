"""Disks through the API: Oxide shapes and status codes, the size and backend rules, attach and
detach (stopped instances only), disks and boot disks at instance create and update, instance
delete, and bad input."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Connection

from skylight.operations import instances as operations
from skylight.store import disks as disk_rows
from tests.conftest import GiB, instance_body
from tests.oxide_schema import all_pages, assert_conforms, assert_error, snapshot, success_status

P = {"project": "demo"}
UPDATE = {
    "ncpus": 2,
    "memory": 4 * GiB,
    "auto_restart_policy": None,
    "cpu_platform": None,
    "enable_jumbo_frames": False,
}


def blank(block_size: int = 512) -> dict[str, Any]:
    return {"type": "distributed", "disk_source": {"type": "blank", "block_size": block_size}}


LOCAL = {"type": "local"}


def disk_body(name: str, size: int = GiB, backend: Any = None, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"disk {name}",
        "size": size,
        "disk_backend": blank() if backend is None else backend,
        **extra,
    }


def make_disk(client: TestClient, name: str, size: int = GiB, backend: Any = None) -> Any:
    r = client.post("/v1/disks", params=P, json=disk_body(name, size, backend))
    assert r.status_code == success_status("/v1/disks", "post") == 201, r.text
    assert_conforms(r.json(), "Disk")
    return r.json()


def make_instance(client: TestClient, name: str, **extra: Any) -> Any:
    extra.setdefault("start", False)
    r = client.post("/v1/instances", params=P, json=instance_body(name, **extra))
    assert r.status_code == 201, r.text
    return r.json()


def attach(client: TestClient, instance: str, disk: str) -> Any:
    return client.post(f"/v1/instances/{instance}/disks/attach", params=P, json={"disk": disk})


def detach(client: TestClient, instance: str, disk: str) -> Any:
    return client.post(f"/v1/instances/{instance}/disks/detach", params=P, json={"disk": disk})


def disk_names(client: TestClient, instance: str) -> list[str]:
    return [d["name"] for d in all_pages(client, f"/v1/instances/{instance}/disks", project="demo")]


def state(client: TestClient) -> dict[str, Any]:
    """What a client can see, disks included."""
    out = snapshot(client)
    for p in out["projects"]:
        out[f"disks:{p['id']}"] = all_pages(client, "/v1/disks", project=p["id"])
    return out


def test_disk_create_view_list_delete(client: TestClient, project: str) -> None:
    d = make_disk(client, "data", 10 * GiB)
    assert d["state"] == {"state": "detached"}
    assert (d["size"], d["block_size"], d["disk_type"]) == (10 * GiB, 512, "distributed")
    assert d["device_path"] == "/mnt/data"
    assert d["read_only"] is False and d["image_id"] is None and d["snapshot_id"] is None
    local = make_disk(client, "scratch", 2 * GiB, LOCAL)
    assert (local["block_size"], local["disk_type"]) == (4096, "local")
    big = make_disk(client, "big", 1023 * GiB, blank(4096))
    assert big["block_size"] == 4096

    for params, sel in ((P, "data"), ({"project": d["project_id"]}, "data"), ({}, d["id"])):
        r = client.get(f"/v1/disks/{sel}", params=params)
        assert r.status_code == 200, r.text
        assert r.json() == d
    assert_error(client.get("/v1/disks/data"), 400, "InvalidRequest", "project")
    assert_error(client.get(f"/v1/disks/{d['id']}", params=P), 400, "InvalidRequest")
    assert_error(client.get("/v1/disks/nope", params=P), 404, "ObjectNotFound", "nope")

    r = client.get("/v1/disks", params=P)
    assert r.status_code == 200, r.text
    assert_conforms(r.json(), "DiskResultsPage")
    assert [x["name"] for x in r.json()["items"]] == ["big", "data", "scratch"]
    expected = {
        "name_ascending": ["big", "data", "scratch"],
        "name_descending": ["scratch", "data", "big"],
        "id_ascending": ["data", "scratch", "big"],  # ids are time-ordered
    }
    for sort, names in expected.items():
        page = client.get("/v1/disks", params={**P, "sort_by": sort, "limit": 2}).json()
        seen = [x["name"] for x in page["items"]]
        while page["next_page"]:
            nxt = {**P, "limit": 2, "page_token": page["next_page"]}
            page = client.get("/v1/disks", params=nxt).json()
            seen += [x["name"] for x in page["items"]]
        assert seen == names, sort
    assert_error(client.get("/v1/disks"), 400, "InvalidRequest", "project")

    assert_error(
        client.post("/v1/disks", params=P, json=disk_body("data")), 400, "ObjectAlreadyExists"
    )

    r = client.delete("/v1/disks/data", params=P)
    assert r.status_code == 204 and r.content == b"", r.text
    assert_error(client.get(f"/v1/disks/{d['id']}"), 404, "ObjectNotFound")
    assert_error(client.delete(f"/v1/disks/{d['id']}"), 404, "ObjectNotFound")
    assert [x["name"] for x in all_pages(client, "/v1/disks", project="demo")] == ["big", "scratch"]
    r = client.delete(f"/v1/disks/{local['id']}")
    assert r.status_code == 204, r.text
    again = make_disk(client, "data")
    assert again["id"] != d["id"]


def test_disk_size_and_backend_rules(client: TestClient, project: str) -> None:
    before = state(client)
    refused: list[tuple[int, Any, str, str]] = [
        (0, blank(), "InvalidValue", "at least 1 GiB"),
        (512, blank(), "InvalidValue", "at least 1 GiB"),
        (GiB - 512, blank(), "InvalidValue", "at least 1 GiB"),
        (GiB + 512, blank(), "InvalidValue", "multiple of 1 GiB"),
        (GiB + 512, LOCAL, "InvalidValue", "block size 4096"),
        (GiB + 2048, blank(4096), "InvalidValue", "block size 4096"),
        (1024 * GiB, blank(), "InvalidValue", "1023 GiB"),
        (2**62, LOCAL, "InvalidValue", "1023 GiB"),
    ]
    for size, backend, code, words in refused:
        r = client.post("/v1/disks", params=P, json=disk_body("d", size, backend))
        assert_error(r, 400, code, words)
    unsupported = [
        {"type": "snapshot", "snapshot_id": str(uuid.uuid4())},
        {"type": "image", "image_id": str(uuid.uuid4()), "read_only": True},
        {"type": "importing_blocks", "block_size": 512},
    ]
    for source in unsupported:
        backend = {"type": "distributed", "disk_source": source}
        r = client.post("/v1/disks", params=P, json=disk_body("d", GiB, backend))
        assert_error(r, 400, "InvalidRequest", "not supported")
    malformed: list[Any] = [
        disk_body("d", -GiB),
        disk_body("d", 2**64),
        disk_body("d", "1 GiB"),
        disk_body("d", GiB + 0.5),
        disk_body("d", GiB, blank(1024)),
        disk_body("d", GiB, {"type": "distributed"}),
        disk_body("d", GiB, {"type": "distributed", "disk_source": {"type": "blank"}}),
        disk_body("d", GiB, {"type": "crucible"}),
        disk_body("d", GiB, "local"),
        {k: v for k, v in disk_body("d").items() if k != "disk_backend"},
        {k: v for k, v in disk_body("d").items() if k != "size"},
        disk_body("Not-Valid"),
        disk_body("d", description="x" * 513),
    ]
    for body in malformed:
        assert_error(client.post("/v1/disks", params=P, json=body), 400, "InvalidRequest")
    assert state(client) == before
    # the bounds themselves are fine
    for size in (GiB, 1023 * GiB):
        assert make_disk(client, f"ok{size // GiB}", size, LOCAL)["size"] == size


def test_attach_and_detach(client: TestClient, project: str) -> None:
    a = make_instance(client, "a")
    make_instance(client, "b")
    d = make_disk(client, "d")
    make_disk(client, "e", backend=LOCAL)

    r = attach(client, "a", "d")
    assert r.status_code == success_status("/v1/instances/{instance}/disks/attach", "post") == 202
    assert_conforms(r.json(), "Disk")
    assert r.json()["state"] == {"state": "attached", "instance": a["id"]}
    assert client.get("/v1/disks/d", params=P).json()["state"]["instance"] == a["id"]
    again = attach(client, "a", d["id"])  # already attached here: answered as is
    assert again.status_code == 202 and again.json()["state"]["state"] == "attached"
    r = client.post(f"/v1/instances/{a['id']}/disks/attach", json={"disk": "e"})
    assert r.status_code == 202, r.text  # a disk name is looked up in the instance's project

    r = client.get("/v1/instances/a/disks", params=P)
    assert r.status_code == 200, r.text
    assert_conforms(r.json(), "DiskResultsPage")
    assert [x["name"] for x in r.json()["items"]] == ["d", "e"]
    r = client.get(
        f"/v1/instances/{a['id']}/disks", params={"limit": 1, "sort_by": "name_descending"}
    )
    assert [x["name"] for x in r.json()["items"]] == ["e"] and r.json()["next_page"]
    assert disk_names(client, "b") == []

    before = state(client)
    assert_error(attach(client, "b", "d"), 400, "InvalidRequest", "another instance")
    assert_error(detach(client, "b", "d"), 400, "InvalidRequest", "another instance")
    assert_error(client.delete("/v1/disks/d", params=P), 400, "InvalidRequest", "attached")
    assert state(client) == before

    r = detach(client, "a", "d")
    assert r.status_code == success_status("/v1/instances/{instance}/disks/detach", "post") == 202
    assert_conforms(r.json(), "Disk")
    assert r.json()["state"] == {"state": "detached"}
    assert detach(client, "a", "d").json()["state"] == {"state": "detached"}  # nothing to do
    assert attach(client, "b", "d").status_code == 202  # free again
    assert disk_names(client, "a") == ["e"]
    assert disk_names(client, "b") == ["d"]

    # only while the instance is stopped
    assert client.post("/v1/instances/a/start", params=P).status_code == 202
    make_disk(client, "f")
    before = state(client)
    assert_error(attach(client, "a", "f"), 400, "InvalidRequest", "running")
    assert_error(detach(client, "a", "e"), 400, "InvalidRequest", "running")
    assert state(client) == before
    assert client.post("/v1/instances/a/stop", params=P).status_code == 202
    assert detach(client, "a", "e").status_code == 202

    # at most 8 disks per instance
    for i in range(8):
        make_disk(client, f"x{i}")
        assert attach(client, "a", f"x{i}").status_code == 202
    assert_error(attach(client, "a", "f"), 400, "InvalidRequest", "8 disks")
    assert len(disk_names(client, "a")) == 8


def test_attach_selection_and_bad_input(client: TestClient, project: str) -> None:
    make_instance(client, "a")
    make_disk(client, "d")
    assert client.post("/v1/projects", json={"name": "other", "description": ""}).status_code == 201
    r = client.post("/v1/disks", params={"project": "other"}, json=disk_body("far"))
    far = r.json()
    ghost = str(uuid.uuid4())
    before = state(client)
    # a disk of another project, by id; by name it is simply not in the instance's project
    assert_error(attach(client, "a", far["id"]), 400, "InvalidRequest", "same project")
    assert_error(attach(client, "a", "far"), 404, "ObjectNotFound", "far")
    for path in ("attach", "detach"):
        url = f"/v1/instances/a/disks/{path}"
        for r in (
            client.post(url, params=P, json={"disk": ghost}),
            client.post(url, params=P, json={"disk": "nope"}),
            client.post(f"/v1/instances/{ghost}/disks/{path}", json={"disk": "d"}),
            client.post(f"/v1/instances/nope/disks/{path}", params=P, json={"disk": "d"}),
        ):
            assert_error(r, 404, "ObjectNotFound")
        bodies: list[Any] = ["{", "[]", {}, {"disk": 5}, {"disk": "Bad Name"}, {"disk": None}]
        for body in bodies:
            if isinstance(body, str):
                r = client.post(
                    url, params=P, content=body, headers={"content-type": "application/json"}
                )
            else:
                r = client.post(url, params=P, json=body)
            assert_error(r, 400, "InvalidRequest")
        assert_error(client.post(url, json={"disk": "d"}), 400, "InvalidRequest", "project")
    for r in (
        client.get(f"/v1/disks/{ghost}"),
        client.delete(f"/v1/disks/{ghost}"),
        client.delete("/v1/disks/nope", params=P),
        client.get(f"/v1/instances/{ghost}/disks"),
        client.get("/v1/disks", params={"project": ghost}),
        client.post("/v1/disks", params={"project": "nope"}, json=disk_body("n")),
    ):
        assert_error(r, 404, "ObjectNotFound")
    for r in (
        client.get("/v1/disks/Bad_Name", params=P),
        client.get("/v1/disks", params={**P, "limit": 0}),
        client.get("/v1/disks", params={**P, "page_token": "garbage"}),
        client.get("/v1/instances/a/disks", params={**P, "sort_by": "biggest"}),
        client.post("/v1/disks", json=disk_body("n")),
        client.post(
            "/v1/disks", params=P, content="{bad", headers={"content-type": "application/json"}
        ),
    ):
        assert_error(r, 400, "InvalidRequest")
    assert state(client) == before


def test_instance_create_with_disks(client: TestClient, project: str) -> None:
    existing = make_disk(client, "existing", 3 * GiB)
    inst = make_instance(
        client,
        "a",
        boot_disk={
            "type": "create",
            "name": "boot",
            "description": "root",
            "size": 8 * GiB,
            "disk_backend": blank(4096),
        },
        disks=[
            {"type": "attach", "name": "existing"},
            {
                "type": "create",
                "name": "fast",
                "description": "",
                "size": 20 * GiB,
                "disk_backend": LOCAL,
            },
        ],
    )
    disks = {d["name"]: d for d in all_pages(client, f"/v1/instances/{inst['id']}/disks")}
    assert sorted(disks) == ["boot", "existing", "fast"]
    assert inst["boot_disk_id"] == disks["boot"]["id"]
    assert disks["existing"]["id"] == existing["id"]
    assert (disks["fast"]["disk_type"], disks["fast"]["block_size"]) == ("local", 4096)
    assert (disks["boot"]["size"], disks["boot"]["block_size"]) == (8 * GiB, 4096)
    for d in disks.values():
        assert_conforms(d, "Disk")
        assert d["state"] == {"state": "attached", "instance": inst["id"]}

    # a boot disk that is attached by name, started as it is created (local disk and all)
    make_disk(client, "root2")
    b = make_instance(
        client,
        "b",
        start=True,
        boot_disk={"type": "attach", "name": "root2"},
        disks=[
            {"type": "create", "name": "l2", "description": "", "size": GiB, "disk_backend": LOCAL}
        ],
    )
    assert b["run_state"] == "running"
    assert b["boot_disk_id"] == client.get("/v1/disks/root2", params=P).json()["id"]


def _create_item(name: str, size: int = GiB, backend: Any = None) -> dict[str, Any]:
    return {
        "type": "create",
        "name": name,
        "description": "",
        "size": size,
        "disk_backend": blank() if backend is None else backend,
    }


def test_instance_create_with_bad_disks_creates_nothing(client: TestClient, project: str) -> None:
    make_disk(client, "free")
    make_disk(client, "taken")
    make_instance(client, "holder", disks=[{"type": "attach", "name": "taken"}])
    before = state(client)
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        ({"disks": [{"type": "attach", "name": "nope"}]}, 404, "ObjectNotFound", "nope"),
        ({"boot_disk": {"type": "attach", "name": "nope"}}, 404, "ObjectNotFound", "nope"),
        ({"disks": [{"type": "attach", "name": "taken"}]}, 400, "InvalidRequest", "taken"),
        ({"disks": [_create_item("free")]}, 400, "ObjectAlreadyExists", "free"),
        ({"disks": [_create_item("n1"), _create_item("n1")]}, 400, "InvalidRequest", "n1"),
        (
            {
                "boot_disk": {"type": "attach", "name": "free"},
                "disks": [{"type": "attach", "name": "free"}],
            },
            400,
            "InvalidRequest",
            "free",
        ),
        ({"disks": [_create_item(f"m{i}") for i in range(9)]}, 400, "InvalidRequest", "8 disks"),
        (
            {"boot_disk": _create_item("b"), "disks": [_create_item(f"m{i}") for i in range(8)]},
            400,
            "InvalidRequest",
            "8 disks",
        ),
        ({"disks": [_create_item("n1", GiB // 2)]}, 400, "InvalidValue", "1 GiB"),
        (
            {
                "disks": [
                    _create_item(
                        "n1",
                        GiB,
                        {
                            "type": "distributed",
                            "disk_source": {"type": "image", "image_id": str(uuid.uuid4())},
                        },
                    )
                ]
            },
            400,
            "InvalidRequest",
            "not supported",
        ),
        # a good disk before a bad one is not created either
        (
            {"disks": [_create_item("n1"), {"type": "attach", "name": "nope"}]},
            404,
            "ObjectNotFound",
            "nope",
        ),
        ({"disks": [{"type": "attach"}]}, 400, "InvalidRequest", ""),
        ({"disks": [{"type": "copy", "name": "free"}]}, 400, "InvalidRequest", ""),
        ({"disks": [{"type": "attach", "name": "Bad Name"}]}, 400, "InvalidRequest", ""),
        ({"disks": {"type": "attach", "name": "free"}}, 400, "InvalidRequest", ""),
        ({"boot_disk": "free"}, 400, "InvalidRequest", ""),
    ]
    for extra, status, code, words in cases:
        r = client.post("/v1/instances", params=P, json=instance_body("new", start=False, **extra))
        assert_error(r, status, code, *([words] if words else []))
    assert state(client) == before
    assert_error(client.get("/v1/instances/new", params=P), 404)


def test_instance_create_race_with_a_disk_taken_meanwhile(
    client: TestClient, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disks are checked when the request arrives and written by the create saga: a disk
    attached elsewhere in between fails the create as a conflict, and nothing is left."""
    make_disk(client, "contested")
    other = make_instance(client, "other")
    real_plan = operations.disks.plan_for_new_instance

    def plan_then_lose_the_disk(conn: Connection, *args: Any) -> dict[str, Any]:
        plan = real_plan(conn, *args)
        for disk_id in plan["attach"]:
            assert disk_rows.attach(conn, disk_id, other["id"]) == 1
        return plan

    monkeypatch.setattr(operations.disks, "plan_for_new_instance", plan_then_lose_the_disk)
    body = instance_body(
        "new",
        start=False,
        disks=[_create_item("fresh"), {"type": "attach", "name": "contested"}],
    )
    r = client.post("/v1/instances", params=P, json=body)
    assert_error(r, 409, "Conflict", "disk")
    monkeypatch.undo()
    assert_error(client.get("/v1/instances/new", params=P), 404)
    assert_error(client.get("/v1/disks/fresh", params=P), 404)
    assert disk_names(client, "other") == ["contested"]
    # and the name is free for a create that works
    assert make_instance(client, "new", disks=[_create_item("fresh")])["run_state"] == "stopped"


def test_boot_disk_update(client: TestClient, project: str) -> None:
    inst = make_instance(client, "a")
    d = make_disk(client, "d")
    make_disk(client, "loose")
    assert attach(client, "a", "d").status_code == 202

    r = client.put("/v1/instances/a", params=P, json={**UPDATE, "boot_disk": "d"})
    assert r.status_code == 200, r.text
    assert_conforms(r.json(), "Instance")
    assert r.json()["boot_disk_id"] == d["id"]
    assert client.get("/v1/instances/a", params=P).json()["boot_disk_id"] == d["id"]
    r = client.put(f"/v1/instances/{inst['id']}", json={**UPDATE, "boot_disk": d["id"]})
    assert r.status_code == 200 and r.json()["boot_disk_id"] == d["id"], r.text

    before = state(client)
    put = client.put
    assert_error(
        put("/v1/instances/a", params=P, json={**UPDATE, "boot_disk": "loose"}),
        409,
        "Conflict",
        "attached",
    )
    assert_error(
        put("/v1/instances/a", params=P, json={**UPDATE, "boot_disk": "nope"}),
        404,
        "ObjectNotFound",
    )
    ghost = str(uuid.uuid4())
    assert_error(
        put("/v1/instances/a", params=P, json={**UPDATE, "boot_disk": ghost}), 404, "ObjectNotFound"
    )
    assert_error(
        put("/v1/instances/a", params=P, json={**UPDATE, "boot_disk": "Bad"}), 400, "InvalidRequest"
    )
    assert_error(detach(client, "a", "d"), 409, "Conflict", "boot disk")
    assert state(client) == before

    # changed only while stopped
    assert client.post("/v1/instances/a/start", params=P).status_code == 202
    r = put("/v1/instances/a", params=P, json={**UPDATE, "boot_disk": None})
    assert_error(r, 400, "InvalidRequest", "stopped")
    r = put("/v1/instances/a", params=P, json={**UPDATE, "boot_disk": "d"})
    assert r.status_code == 200, r.text  # unchanged: fine while running
    assert client.post("/v1/instances/a/stop", params=P).status_code == 202

    # null clears it, and then the disk can be detached
    r = put("/v1/instances/a", params=P, json={**UPDATE, "boot_disk": None})
    assert r.status_code == 200 and r.json()["boot_disk_id"] is None, r.text
    assert detach(client, "a", "d").status_code == 202


def test_instance_delete_detaches_its_disks(client: TestClient, project: str) -> None:
    inst = make_instance(
        client,
        "a",
        boot_disk=_create_item("boot"),
        disks=[_create_item("local", 4 * GiB, LOCAL)],
    )
    assert client.delete("/v1/instances/a", params=P).status_code == 204
    for d in all_pages(client, "/v1/disks", project="demo"):
        assert d["state"] == {"state": "detached"}, d
    assert_error(client.get(f"/v1/instances/{inst['id']}/disks"), 404, "ObjectNotFound")
    # they outlive it: attachable to another instance, and deletable
    make_instance(client, "b", disks=[{"type": "attach", "name": "boot"}])
    assert disk_names(client, "b") == ["boot"]
    assert client.delete("/v1/disks/local", params=P).status_code == 204
    assert [d["name"] for d in all_pages(client, "/v1/disks", project="demo")] == ["boot"]


def _updates(client: TestClient, instance: str) -> list[Any]:
    r = client.get(f"/v1/instances/{instance}/events", params={**P, "limit": 100})
    assert r.status_code == 200, r.text
    return [e["detail"] for e in reversed(r.json()["items"]) if e["kind"] == "instance.updated"]


def test_attach_and_detach_are_instance_events(client: TestClient, project: str) -> None:
    """What an instance boots with changes its history: each attach and detach is an
    `instance.updated` event naming the disk; a request that changes nothing writes none."""
    make_instance(client, "a")
    d = make_disk(client, "d")
    assert attach(client, "a", "d").status_code == 202
    assert attach(client, "a", "d").status_code == 202  # already attached: no change
    assert detach(client, "a", "d").status_code == 202
    assert detach(client, "a", "d").status_code == 202  # already detached: no change
    assert_error(detach(client, "a", "nope"), 404)
    disk = {"id": d["id"], "name": "d"}
    assert _updates(client, "a") == [
        {"change": "disk_attached", "disk": disk},
        {"change": "disk_detached", "disk": disk},
    ]
    update = {"ncpus": 3, "memory": 4 * GiB, "boot_disk": None, "auto_restart_policy": None,
              "cpu_platform": None, "enable_jumbo_frames": False}  # fmt: skip
    r = client.put("/v1/instances/a", params=P, json=update)
    assert r.status_code == 200, r.text
    assert _updates(client, "a")[-1] == {"change": "settings", "fields": ["ncpus"]}
