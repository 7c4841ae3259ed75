"""Projects, /v1/me and /openapi.json, checked against the Oxide subset document."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from tests.conftest import instance_body
from tests.oxide_schema import all_pages, assert_conforms, assert_error, document, success_status

INVALID_NAMES = [
    pytest.param("Demo", id="uppercase-first"),
    pytest.param("1demo", id="digit-first"),
    pytest.param("-demo", id="dash-first"),
    pytest.param("demo-", id="trailing-dash"),
    pytest.param("a" * 64, id="64-chars"),
    pytest.param("", id="empty"),
    pytest.param("de_mo", id="underscore"),
    pytest.param("de mo", id="space"),
    pytest.param("démo", id="non-ascii"),
    pytest.param("demo\n", id="trailing-newline"),
    pytest.param(str(uuid.uuid4()), id="uuid"),
    pytest.param(str(uuid.uuid4()).upper(), id="uppercase-uuid"),
]


def _create(client: TestClient, name: str, description: str = "d") -> dict:
    r = client.post("/v1/projects", json={"name": name, "description": description})
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_project_lifecycle_matches_oxide(client: TestClient) -> None:
    assert client.get("/v1/projects").json() == {"items": [], "next_page": None}

    r = client.post("/v1/projects", json={"name": "demo", "description": "first"})
    assert r.status_code == success_status("/v1/projects", "post") == 201
    created = r.json()
    assert_conforms(created, "Project")
    assert created["name"] == "demo"
    assert created["description"] == "first"
    assert created["time_created"] == created["time_modified"]

    # view by name and by id give the same project
    by_name = client.get("/v1/projects/demo")
    by_id = client.get(f"/v1/projects/{created['id']}")
    assert by_name.status_code == by_id.status_code == 200
    assert by_name.json() == by_id.json() == created

    page = client.get("/v1/projects")
    assert page.status_code == 200
    assert_conforms(page.json(), "ProjectResultsPage")
    assert page.json()["items"] == [created]

    # update: description only, then a rename (by id)
    r = client.put("/v1/projects/demo", json={"description": "second"})
    assert r.status_code == success_status("/v1/projects/{project}", "put") == 200
    assert_conforms(r.json(), "Project")
    assert r.json()["name"] == "demo"
    assert r.json()["description"] == "second"
    assert r.json()["time_modified"] >= created["time_modified"]

    r = client.put(f"/v1/projects/{created['id']}", json={"name": "renamed"})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "renamed"
    assert r.json()["description"] == "second"
    assert r.json()["id"] == created["id"]
    assert_error(client.get("/v1/projects/demo"), 404, "ObjectNotFound", "demo")
    assert client.get("/v1/projects/renamed").json()["id"] == created["id"]

    # an empty update changes nothing
    before = client.get("/v1/projects/renamed").json()
    r = client.put("/v1/projects/renamed", json={})
    assert r.status_code == 200
    assert r.json()["name"] == "renamed"
    assert r.json()["description"] == before["description"]

    r = client.delete("/v1/projects/renamed")
    assert r.status_code == success_status("/v1/projects/{project}", "delete") == 204
    assert r.content == b""
    assert_error(client.get(f"/v1/projects/{created['id']}"), 404, "ObjectNotFound")
    assert_error(client.delete("/v1/projects/renamed"), 404, "ObjectNotFound")
    assert client.get("/v1/projects").json()["items"] == []


def test_project_names_are_unique_and_reusable(client: TestClient) -> None:
    first = _create(client, "alpha")
    _create(client, "beta")
    assert_error(
        client.post("/v1/projects", json={"name": "alpha", "description": "again"}),
        400,
        "ObjectAlreadyExists",
        "alpha",
    )
    # a rename onto a taken name is refused and changes nothing
    assert_error(
        client.put("/v1/projects/beta", json={"name": "alpha"}), 400, "ObjectAlreadyExists"
    )
    assert sorted(p["name"] for p in all_pages(client, "/v1/projects")) == ["alpha", "beta"]
    # renaming a project to its own name is fine
    r = client.put("/v1/projects/alpha", json={"name": "alpha"})
    assert r.status_code == 200, r.text

    # the name of a deleted project can be used again, by a new project
    assert client.delete("/v1/projects/alpha").status_code == 204
    again = _create(client, "alpha")
    assert again["id"] != first["id"]
    assert_error(client.get(f"/v1/projects/{first['id']}"), 404, "ObjectNotFound")


def test_project_name_validation(client: TestClient) -> None:
    for name in [p.values[0] for p in INVALID_NAMES]:
        body = {"name": name, "description": "x"}
        assert_error(client.post("/v1/projects", json=body), 400, "InvalidRequest", "name")
    _create(client, "ok")
    for name in [p.values[0] for p in INVALID_NAMES if p.values[0]]:
        assert_error(client.put("/v1/projects/ok", json={"name": name}), 400, "InvalidRequest")
    assert [p["name"] for p in all_pages(client, "/v1/projects")] == ["ok"]

    # the edges of what is valid
    valid = ["a", "a" * 63, "aB-9z", "x-" + str(uuid.uuid4()), "web-01"]
    for name in valid:
        assert _create(client, name)["name"] == name
    assert {p["name"] for p in all_pages(client, "/v1/projects")} == {"ok", *valid}


def test_project_selector_must_be_a_name_or_id(client: TestClient) -> None:
    _create(client, "demo")
    for selector in [p.values[0] for p in INVALID_NAMES if p.values[0]]:
        path = f"/v1/projects/{quote(selector, safe='')}"
        if selector.count("-") == 4 and len(selector) == 36:
            # a UUID selects by id: unknown here
            assert_error(client.get(path), 404, "ObjectNotFound")
            assert_error(client.put(path, json={"description": "x"}), 404, "ObjectNotFound")
            assert_error(client.delete(path), 404, "ObjectNotFound")
            continue
        assert_error(client.get(path), 400, "InvalidRequest", "project")
        assert_error(client.put(path, json={"description": "x"}), 400, "InvalidRequest")
        assert_error(client.delete(path), 400, "InvalidRequest")
    assert [p["name"] for p in all_pages(client, "/v1/projects")] == ["demo"]


def test_project_with_instances_cannot_be_deleted(client: TestClient) -> None:
    _create(client, "demo")
    r = client.post("/v1/instances", params={"project": "demo"}, json=instance_body("vm", 1, 1))
    assert r.status_code == 201, r.text
    assert_error(client.delete("/v1/projects/demo"), 400, "InvalidRequest", "instance")
    assert client.get("/v1/projects/demo").status_code == 200

    assert client.post("/v1/instances/vm/stop", params={"project": "demo"}).status_code == 202
    assert client.delete("/v1/instances/vm", params={"project": "demo"}).status_code == 204
    assert client.delete("/v1/projects/demo").status_code == 204
    assert all_pages(client, "/v1/projects") == []


def test_project_with_disks_or_groups_cannot_be_deleted(client: TestClient) -> None:
    """Like an instance, a disk or a group keeps its project: deleting the project would
    leave it reachable by id and listed nowhere. The refusal names what is left."""
    _create(client, "demo")
    p = {"project": "demo"}
    disk = {
        "name": "data",
        "description": "",
        "size": 1024**3,
        "disk_backend": {
            "type": "distributed",
            "disk_source": {"type": "blank", "block_size": 512},
        },
    }
    group = {"name": "g", "description": "", "policy": "fail", "failure_domain": "sled"}
    made = [
        ("/v1/disks", disk, "disk: data"),
        ("/v1/affinity-groups", group, "affinity group: g"),
        ("/v1/anti-affinity-groups", group, "anti-affinity group: g"),
    ]  # fmt: skip
    for path, body, _ in made:
        r = client.post(path, params=p, json=body)
        assert r.status_code == 201, r.text
    for path, _, named in made:
        r = client.delete("/v1/projects/demo")
        assert_error(r, 400, "InvalidRequest", named)
        assert client.get("/v1/projects/demo").status_code == 200
        assert client.delete(f"{path}/{named.rsplit(' ', 1)[1]}", params=p).status_code == 204
    assert client.delete("/v1/projects/demo").status_code == 204


def test_instances_are_scoped_to_their_project(client: TestClient) -> None:
    a = _create(client, "a")
    _create(client, "b")
    for project in ("a", "b"):
        body = instance_body("same-name", 1, 1, start=False)
        r = client.post("/v1/instances", params={"project": project}, json=body)
        assert r.status_code == 201, r.text
    in_a = all_pages(client, "/v1/instances", project="a")
    in_b = all_pages(client, "/v1/instances", project=a["id"])
    assert [i["project_id"] for i in in_a] == [a["id"]]
    assert in_a == in_b
    assert all_pages(client, "/v1/instances", project="b")[0]["id"] != in_a[0]["id"]


def test_me_matches_oxide(client: TestClient) -> None:
    r = client.get("/v1/me")
    assert r.status_code == success_status("/v1/me", "get") == 200
    me = r.json()
    assert_conforms(me, "CurrentUser")
    assert client.get("/v1/me").json() == me  # stable


# The Oxide operations Skylight implements here (affinity groups and disks are other
# families), identity's included: silos, users, login, device tokens, policies, quotas,
# utilization and the audit log.
IMPLEMENTED = [
    (path, method)
    for path, ops in document()["paths"].items()
    for method in ops
    if path.startswith(
        (
            "/v1/projects",
            "/v1/instances",
            "/v1/system/hardware/sleds",
            "/v1/me",
            "/v1/login",
            "/v1/logout",
            "/device/",
            "/v1/system/silos",
            "/v1/system/silo-quotas",
            "/v1/system/identity-providers",
            "/v1/system/users",
            "/v1/system/policy",
            "/v1/system/utilization",
            "/v1/system/audit-log",
            "/v1/utilization",
            "/v1/users",
            "/v1/groups",
            "/v1/policy",
            "/v1/ping",
        )
    )
    and "affinity-groups" not in path
    and "/disks" not in path
]


def test_openapi_document_serves_the_oxide_paths(client: TestClient) -> None:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    served = r.json()
    assert served["openapi"].startswith("3.")
    assert len(IMPLEMENTED) == 55
    for path, method in IMPLEMENTED:
        assert path in served["paths"], path
        assert method in served["paths"][path], (path, method)
        op = served["paths"][path][method]
        oxide = document()["paths"][path][method]["responses"]
        if any(c.isdigit() for c in oxide):  # (the device flow's two say only "default")
            expected = str(success_status(path, method))
            assert expected in op["responses"], (path, method, sorted(op["responses"]))
        oxide_params = {
            (p["name"], p["in"]) for p in document()["paths"][path][method].get("parameters", [])
        }
        served_params = {(p["name"], p["in"]) for p in op.get("parameters", [])}
        assert oxide_params <= served_params, (path, method, oxide_params - served_params)

    # the extension is there too
    assert "get" in served["paths"]["/v1/instances/{instance}/events"]
    # Name's validation is Oxide's
    names = [s for k, s in served["components"]["schemas"].items() if k == "ProjectCreate"]
    assert names, "ProjectCreate schema missing"
    name_schema = names[0]["properties"]["name"]
    assert name_schema.get("pattern") == document()["components"]["schemas"]["Name"]["pattern"]
    assert name_schema.get("maxLength") == 63


def test_openapi_document_says_what_errors_and_streams_are(client: TestClient) -> None:
    """Every operation's errors are documented as the Oxide document has them (``4XX`` and
    ``5XX``, an ``Error`` body), not as FastAPI's ``422`` with a ``detail`` list, which this
    API never sends; the event streams are text/event-stream, not JSON. (Found by
    tests/test_fuzz.py: every 400 was an undocumented status.)"""
    served = client.get("/openapi.json").json()
    error = served["components"]["responses"]["Error"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}
    assert {"request_id", "message"} <= set(served["components"]["schemas"]["Error"]["required"])
    assert "HTTPValidationError" not in served["components"]["schemas"]
    for path, ops in served["paths"].items():
        for method, op in ops.items():
            responses = op["responses"]
            assert "422" not in responses, (method, path)
            for status in ("4XX", "5XX"):
                assert responses[status] == {"$ref": "#/components/responses/Error"}, (path, status)
    for path in ("/v1/events/stream", "/v1/instances/{instance}/events/stream"):
        assert list(served["paths"][path]["get"]["responses"]["200"]["content"]) == [
            "text/event-stream"
        ]
    # the hostname of an instance is documented with its rules, as Oxide's Hostname is
    hostname = served["components"]["schemas"]["InstanceCreate"]["properties"]["hostname"]
    assert hostname["maxLength"] == 253 and hostname["pattern"]
    # and a 400 answers as documented
    r = client.get("/v1/projects", params={"limit": 0})
    assert_error(r, 400, "InvalidRequest", "limit")
