"""Instances through the API: Oxide shapes and status codes, NameOrId selection, the lifecycle,
and Skylight's ``intended_state`` / ``status_reason`` with explained start failures."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

from fastapi.testclient import TestClient

from skylight.events.reasons import CATALOG
from tests.conftest import GiB, as_user, event_kinds, instance_body
from tests.oxide_schema import (
    all_pages,
    assert_conforms,
    assert_error,
    settled,
    success_status,
    wait_for,
)

P = {"project": "demo"}
ASYNC = {"Prefer": "respond-async"}
UPDATE_FIELDS = {
    "ncpus": 2,
    "memory": 4 * GiB,
    "auto_restart_policy": None,
    "boot_disk": None,
    "cpu_platform": None,
    "enable_jumbo_frames": False,
}


def create(client: TestClient, name: str, ncpus: int = 2, memory_gib: int = 4, **extra: Any) -> Any:
    r = client.post("/v1/instances", params=P, json=instance_body(name, ncpus, memory_gib, **extra))
    assert r.status_code == 201, r.text
    assert_conforms(r.json(), "Instance")
    return r.json()


def view(client: TestClient, name: str) -> Any:
    r = client.get(f"/v1/instances/{name}", params=P)
    assert r.status_code == 200, r.text
    assert_conforms(r.json(), "Instance")
    return r.json()


def events(client: TestClient, instance_id: str, **params: Any) -> list[dict[str, Any]]:
    """Newest first."""
    r = client.get(f"/v1/instances/{instance_id}/events", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def sleds(client: TestClient) -> list[dict[str, Any]]:
    return all_pages(client, "/v1/system/hardware/sleds")


def sled_of(client: TestClient, instance_id: str) -> str | None:
    """The one sled that lists the instance, or None."""
    found = []
    for s in sleds(client):
        for item in all_pages(client, f"/v1/system/hardware/sleds/{s['id']}/instances"):
            if item["id"] == instance_id:
                found.append(s["id"])
    assert len(found) <= 1, found
    return found[0] if found else None


def assert_reservations_match(client: TestClient) -> None:
    """At rest, what each sled has reserved is the sum of the instances placed on it, and
    never more than it has."""
    for s in sleds(client):
        on_it = all_pages(client, f"/v1/system/hardware/sleds/{s['id']}/instances")
        assert s["reserved_hardware_threads"] == sum(i["ncpus"] for i in on_it), (s, on_it)
        assert s["reserved_memory"] == sum(i["memory"] for i in on_it), (s, on_it)
        assert s["reserved_hardware_threads"] <= s["usable_hardware_threads"]
        assert s["reserved_memory"] <= s["usable_physical_ram"]


def arm(client: TestClient, **fault: Any) -> Any:
    r = client.post("/v1/system/sim/faults", json=fault)
    assert r.status_code == 201, r.text
    return r.json()


def assert_status_reason(
    inst: dict[str, Any], code: str, transient: bool, client: TestClient
) -> dict[str, Any]:
    """``status_reason`` is set, explains itself, and is the newest start failure's reason."""
    reason = inst["status_reason"]
    assert reason is not None, inst
    assert reason["code"] == code, reason
    assert reason["transient"] is transient, reason
    assert isinstance(reason["message"], str) and reason["message"].strip()
    # Operator-only detail stays out of what a user (not a fleet viewer) is shown.
    shown = client.get(f"/v1/instances/{inst['id']}", headers=as_user(client)).json()
    assert shown["status_reason"]["code"] == code
    assert shown["status_reason"].get("internal") is None
    assert "sleds" not in (shown["status_reason"].get("diagnosis") or {})
    for s in sleds(client):
        assert s["id"] not in reason["message"]
    failed = [e for e in events(client, inst["id"]) if e["kind"] == "instance.start_failed"]
    assert failed, "a failed start leaves an instance.start_failed event"
    assert reason["event_id"] == failed[0]["id"]
    assert failed[0]["severity"] == "error"
    assert failed[0]["reason"]["code"] == code
    assert failed[0]["reason"]["message"] == reason["message"]
    assert reason["time"]
    return dict(reason)


def assert_diagnosis_complete(reason: dict[str, Any], nsleds: int) -> None:
    diagnosis = reason["diagnosis"]
    assert diagnosis["sleds_total"] == nsleds
    assert sum(diagnosis["counts"].values()) == nsleds, diagnosis


# -- create, view, list ---------------------------------------------------------------------


def test_create_starts_the_instance_and_matches_oxide(client: TestClient, project: str) -> None:
    body = instance_body("web", 2, 4)
    r = client.post("/v1/instances", params=P, json=body)
    assert r.status_code == success_status("/v1/instances", "post") == 201
    inst = r.json()
    assert_conforms(inst, "Instance")
    for field in ("name", "description", "hostname", "ncpus", "memory"):
        assert inst[field] == body[field], field
    assert inst["project_id"] == client.get("/v1/projects/demo").json()["id"]
    assert inst["run_state"] == "running"
    assert inst["intended_state"] == "running"
    assert inst["status_reason"] is None
    assert inst["auto_restart_enabled"] is True

    by_name = view(client, "web")
    by_id = client.get(f"/v1/instances/{inst['id']}")
    assert by_id.status_code == 200
    assert by_name == by_id.json()
    assert by_name["id"] == inst["id"]

    page = client.get("/v1/instances", params=P)
    assert page.status_code == 200
    assert_conforms(page.json(), "InstanceResultsPage")
    assert [i["id"] for i in page.json()["items"]] == [inst["id"]]

    assert event_kinds(client, "web") == [
        "instance.created",
        "instance.start_requested",
        "instance.placed",
        "instance.running",
    ]
    newest_first = events(client, inst["id"])
    start_requested = next(e for e in newest_first if e["kind"] == "instance.start_requested")
    assert start_requested["actor"] == {"type": "control_plane", "cause": "auto_start"}
    for e in newest_first:
        assert e["instance_id"] == inst["id"]
        assert e["project_id"] == inst["project_id"]
        assert e["count"] >= 1
        assert e["severity"] in ("info", "warning", "error")
    assert newest_first[0]["run_state"] == "running"

    # it is placed on exactly one sled, which reserves its size
    sled_id = sled_of(client, inst["id"])
    assert sled_id is not None
    on_sled = all_pages(client, f"/v1/system/hardware/sleds/{sled_id}/instances")
    assert_conforms(on_sled[0], "SledInstance")
    assert on_sled[0]["active_sled_id"] == sled_id
    assert on_sled[0]["project_name"] == "demo"
    assert on_sled[0]["state"] == "running"
    assert_reservations_match(client)


def test_create_without_start(client: TestClient, project: str) -> None:
    inst = create(client, "idle", 4, 8, start=False)
    assert inst["run_state"] == "stopped"
    assert inst["intended_state"] == "stopped"
    assert inst["status_reason"] is None
    assert event_kinds(client, "idle") == ["instance.created"]
    assert all(s["reserved_hardware_threads"] == 0 for s in sleds(client))
    assert all(s["reserved_memory"] == 0 for s in sleds(client))
    assert sled_of(client, inst["id"]) is None

    r = client.post("/v1/instances/idle/start", params=P)
    assert r.status_code == success_status("/v1/instances/{instance}/start", "post") == 202
    assert_conforms(r.json(), "Instance")
    assert r.json()["run_state"] == "running"
    assert r.json()["intended_state"] == "running"
    started = events(client, inst["id"], kind="instance.start_requested")
    assert [e["actor"]["type"] for e in started] == ["user"]
    assert sled_of(client, inst["id"]) is not None
    assert_reservations_match(client)


def test_instance_lifecycle_status_codes(client: TestClient, project: str) -> None:
    inst = create(client, "vm", 2, 2)

    r = client.post("/v1/instances/vm/reboot", params=P)
    assert r.status_code == success_status("/v1/instances/{instance}/reboot", "post") == 202
    assert_conforms(r.json(), "Instance")
    assert view(client, "vm")["run_state"] == "running"
    assert "instance.rebooted" in event_kinds(client, "vm")

    # start of a running instance: nothing to do
    r = client.post("/v1/instances/vm/start", params=P)
    assert r.status_code == 202
    assert r.json()["run_state"] == "running"

    # a running instance cannot be deleted
    assert_error(client.delete("/v1/instances/vm", params=P), 400, "InvalidRequest")
    assert view(client, "vm")["run_state"] == "running"

    r = client.post("/v1/instances/vm/stop", params=P)
    assert r.status_code == success_status("/v1/instances/{instance}/stop", "post") == 202
    assert_conforms(r.json(), "Instance")
    assert r.json()["run_state"] == "stopped"
    assert r.json()["intended_state"] == "stopped"
    assert r.json()["status_reason"] is None
    assert sled_of(client, inst["id"]) is None
    assert all(s["reserved_hardware_threads"] == 0 for s in sleds(client))

    # stopping a stopped instance is fine; rebooting it is not
    assert client.post("/v1/instances/vm/stop", params=P).status_code == 202
    assert_error(client.post("/v1/instances/vm/reboot", params=P), 400, "InvalidRequest")

    r = client.delete("/v1/instances/vm", params=P)
    assert r.status_code == success_status("/v1/instances/{instance}", "delete") == 204
    assert r.content == b""
    assert_error(client.get("/v1/instances/vm", params=P), 404, "ObjectNotFound", "vm")
    assert_error(client.get(f"/v1/instances/{inst['id']}"), 404, "ObjectNotFound")
    assert_error(client.delete("/v1/instances/vm", params=P), 404, "ObjectNotFound")
    assert_error(client.post("/v1/instances/vm/start", params=P), 404, "ObjectNotFound")
    assert all_pages(client, "/v1/instances", project="demo") == []

    # its history outlives it, by id
    history = events(client, inst["id"])
    assert history[0]["kind"] == "instance.deleted"
    assert history[-1]["kind"] == "instance.created"

    # and its name can be used again
    again = create(client, "vm", 1, 1, start=False)
    assert again["id"] != inst["id"]


def test_update_instance(client: TestClient, project: str) -> None:
    inst = create(client, "vm", 2, 2, start=False)
    change = {
        **UPDATE_FIELDS,
        "ncpus": 4,
        "memory": 6 * GiB,
        "auto_restart_policy": "never",
        "enable_jumbo_frames": True,
    }
    r = client.put("/v1/instances/vm", params=P, json=change)
    assert r.status_code == success_status("/v1/instances/{instance}", "put") == 200
    new = r.json()
    assert_conforms(new, "Instance")
    assert (new["ncpus"], new["memory"]) == (4, 6 * GiB)
    assert new["auto_restart_policy"] == "never"
    assert new["auto_restart_enabled"] is False
    assert new["enable_jumbo_frames"] is True
    assert new["name"] == inst["name"] and new["id"] == inst["id"]
    assert view(client, "vm") == new
    assert event_kinds(client, "vm")[-1] == "instance.updated"

    # InstanceUpdate's fields are all required
    partial = {k: v for k, v in change.items() if k != "boot_disk"}
    assert_error(client.put("/v1/instances/vm", params=P, json=partial), 400, None, "boot_disk")

    # the new size is what a start reserves
    assert client.post("/v1/instances/vm/start", params=P).status_code == 202
    sled_id = sled_of(client, inst["id"])
    reserved = next(s for s in sleds(client) if s["id"] == sled_id)
    assert reserved["reserved_hardware_threads"] == 4
    assert reserved["reserved_memory"] == 6 * GiB

    # a running instance keeps its size ...
    bigger = {**change, "ncpus": 8}
    assert_error(client.put("/v1/instances/vm", params=P, json=bigger), 400, "InvalidRequest")
    assert view(client, "vm")["ncpus"] == 4
    # ... but other settings can change while it runs
    r = client.put("/v1/instances/vm", params=P, json={**change, "enable_jumbo_frames": False})
    assert r.status_code == 200, r.text
    assert r.json()["enable_jumbo_frames"] is False
    assert r.json()["run_state"] == "running"
    assert_reservations_match(client)


# -- NameOrId selection ----------------------------------------------------------------------


def test_instance_selection_by_name_or_id(client: TestClient, project: str) -> None:
    inst = create(client, "vm", 1, 1, start=False)
    iid = inst["id"]
    pid = inst["project_id"]
    other = client.post("/v1/projects", json={"name": "other", "description": ""})
    assert other.status_code == 201

    # by id, alone; by name, with the project as a name or an id
    assert client.get(f"/v1/instances/{iid}").json()["id"] == iid
    assert client.get(f"/v1/instances/{iid.upper()}").json()["id"] == iid
    assert client.get("/v1/instances/vm", params={"project": pid}).json()["id"] == iid
    assert view(client, "vm")["id"] == iid

    # an id with a project, or a name without one, is a 400 that says so
    for method, suffix in [
        ("GET", ""),
        ("PUT", ""),
        ("DELETE", ""),
        ("POST", "/start"),
        ("POST", "/stop"),
        ("POST", "/reboot"),
        ("GET", "/events"),
    ]:
        body = UPDATE_FIELDS if method == "PUT" else None
        r = client.request(method, f"/v1/instances/{iid}{suffix}", params=P, json=body)
        assert_error(r, 400, "InvalidRequest", "project")
        r = client.request(method, f"/v1/instances/vm{suffix}", json=body)
        assert_error(r, 400, "InvalidRequest", "project")
        unknown = str(uuid.uuid4())
        r = client.request(method, f"/v1/instances/{unknown}{suffix}", json=body)
        assert_error(r, 404, "ObjectNotFound")
        r = client.request(method, f"/v1/instances/nope{suffix}", params=P, json=body)
        assert_error(r, 404, "ObjectNotFound", "nope")
        r = client.request(
            method, f"/v1/instances/vm{suffix}", params={"project": "other"}, json=body
        )
        assert_error(r, 404, "ObjectNotFound")
        r = client.request(
            method, f"/v1/instances/vm{suffix}", params={"project": "missing"}, json=body
        )
        assert_error(r, 404, "ObjectNotFound", "missing")

    # selectors that are neither a name nor an id
    for bad in ("Vm", "vm-", "a" * 64, "v_m"):
        r = client.get(f"/v1/instances/{quote(bad)}", params=P)
        assert_error(r, 400, "InvalidRequest", "instance")
        r = client.get("/v1/instances/vm", params={"project": bad})
        assert_error(r, 400, "InvalidRequest", "project")
    # the list needs its project
    assert_error(client.get("/v1/instances"), 400, "InvalidRequest", "project")
    assert_error(client.get("/v1/instances", params={"project": "missing"}), 404)
    assert view(client, "vm") == inst
    assert event_kinds(client, "vm") == ["instance.created"]


def test_instance_names_and_hostnames_are_validated(client: TestClient, project: str) -> None:
    bad_names = ["Web", "1web", "web-", "a" * 64, "", "we b", "web\n", str(uuid.uuid4())]
    for name in bad_names:
        r = client.post(
            "/v1/instances", params=P, json=instance_body("x", start=False) | {"name": name}
        )
        assert_error(r, 400, "InvalidRequest", "name")
    for hostname in ["-web", "web-", "we_b", "a..b", "x" * 254, "", "web\n"]:
        body = instance_body("x", start=False) | {"hostname": hostname}
        assert_error(client.post("/v1/instances", params=P, json=body), 400, None, "hostname")
    assert all_pages(client, "/v1/instances", project="demo") == []

    create(client, "a" * 63, 1, 1, start=False, hostname="a.b-c.example")
    create(client, "x-" + str(uuid.uuid4()), 1, 1, start=False)
    r = client.post("/v1/instances", params=P, json=instance_body("a" * 63, 1, 1, start=False))
    assert_error(r, 400, "ObjectAlreadyExists", "a" * 63)
    assert len(all_pages(client, "/v1/instances", project="demo")) == 2


# -- failures explain themselves ------------------------------------------------------------


def test_failed_start_leaves_instance_stopped_with_reason(client: TestClient, project: str) -> None:
    inst = create(client, "vm", 2, 4, start=False)
    arm(client, at="ensure_running", kind="error", count=1, message="propolis refused")

    r = client.post("/v1/instances/vm/start", params=P, headers=as_user(client))
    body = assert_error(r, r.status_code)
    assert r.status_code >= 400
    assert body["reason"]["code"] in CATALOG
    assert "propolis refused" not in body["message"]  # sled-agent text is operator-only
    assert "internal" not in body["reason"]

    after = view(client, "vm")
    assert after["run_state"] == "stopped"
    assert after["intended_state"] == "stopped"
    reason = assert_status_reason(
        after, body["reason"]["code"], body["reason"]["transient"], client
    )
    assert "propolis refused" not in reason["message"]
    assert sled_of(client, inst["id"]) is None
    assert_reservations_match(client)
    assert all(s["reserved_hardware_threads"] == 0 for s in sleds(client))

    # not retried on its own: still stopped, one failure
    kinds = event_kinds(client, "vm")
    assert kinds.count("instance.start_failed") == 1
    assert kinds.count("instance.start_requested") == 1

    # the next start works and clears the reason
    r = client.post("/v1/instances/vm/start", params=P)
    assert r.status_code == 202, r.text
    assert r.json()["run_state"] == "running"
    assert r.json()["status_reason"] is None
    assert view(client, "vm")["status_reason"] is None


def test_create_with_start_never_drops_the_start_error(client: TestClient, project: str) -> None:
    arm(client, at="register", kind="error", count=1, message="sled agent said no")
    r = client.post("/v1/instances", params=P, json=instance_body("vm", 2, 4))
    if r.status_code == 201:
        inst = r.json()
        assert_conforms(inst, "Instance")
    else:  # an explained error is acceptable too; the instance exists either way
        body = assert_error(r, r.status_code)
        assert body["reason"]["code"] in CATALOG
        inst = view(client, "vm")
    assert inst["run_state"] == "stopped"
    assert inst["intended_state"] == "stopped"
    assert inst["status_reason"] is not None
    assert_status_reason(
        view(client, "vm"),
        inst["status_reason"]["code"],
        inst["status_reason"]["transient"],
        client,
    )
    assert "instance.start_failed" in event_kinds(client, "vm")
    assert_reservations_match(client)


def test_start_larger_than_any_sled(client: TestClient, project: str) -> None:
    for name, ncpus, memory_gib in [("wide", 17, 4), ("deep", 2, 65)]:
        create(client, name, ncpus, memory_gib, start=False)
        r = client.post(f"/v1/instances/{name}/start", params=P)
        body = assert_error(r, 507, "InsufficientCapacity")
        reason = body["reason"]
        assert reason["code"] == "exceeds_sled_size"
        assert reason["transient"] is False
        assert reason["message"] == body["message"]
        assert reason.get("action")
        assert_diagnosis_complete(reason, 4)
        assert reason.get("internal") is None

        after = view(client, name)
        assert (after["run_state"], after["intended_state"]) == ("stopped", "stopped")
        assert_status_reason(after, "exceeds_sled_size", False, client)

    # created with start: true, it answers with the instance and says why it is not running
    r = client.post("/v1/instances", params=P, json=instance_body("huge", 128, 8))
    assert r.status_code in (201, 507), r.text
    huge = view(client, "huge")
    assert huge["run_state"] == "stopped"
    assert_status_reason(huge, "exceeds_sled_size", False, client)
    assert_reservations_match(client)
    assert all(s["reserved_hardware_threads"] == 0 for s in sleds(client))


def test_full_rack_is_transient_insufficient_capacity(client: TestClient, project: str) -> None:
    for n in range(4):  # each takes all of a sled's 16 threads
        assert create(client, f"big{n}", 16, 8)["run_state"] == "running"
    assert all(s["reserved_hardware_threads"] == 16 for s in sleds(client))
    assert_reservations_match(client)

    create(client, "small", 1, 1, start=False)
    r = client.post("/v1/instances/small/start", params=P)
    body = assert_error(r, 507, "InsufficientCapacity")
    assert body["reason"]["code"] == "insufficient_capacity"
    assert body["reason"]["transient"] is True
    assert_diagnosis_complete(body["reason"], 4)
    small = view(client, "small")
    assert (small["run_state"], small["intended_state"]) == ("stopped", "stopped")
    assert_status_reason(small, "insufficient_capacity", True, client)
    assert_reservations_match(client)

    # capacity frees up: the same request now succeeds
    assert client.post("/v1/instances/big0/stop", params=P).status_code == 202
    r = client.post("/v1/instances/small/start", params=P)
    assert r.status_code == 202, r.text
    assert r.json()["run_state"] == "running"
    assert r.json()["status_reason"] is None
    assert_reservations_match(client)


def test_non_provisionable_sled_gives_capacity_in_maintenance(
    client: TestClient, project: str
) -> None:
    # three sleds full; the fourth, the only one with room, goes into maintenance
    for n in range(3):
        create(client, f"big{n}", 16, 8)
    free = [s for s in sleds(client) if s["reserved_hardware_threads"] == 0]
    assert len(free) == 1
    spare = free[0]["id"]
    r = client.put(
        f"/v1/system/hardware/sleds/{spare}/provision-policy", json={"state": "non_provisionable"}
    )
    assert r.status_code == 200, r.text

    create(client, "late", 8, 8, start=False)
    r = client.post("/v1/instances/late/start", params=P)
    body = assert_error(r, 507, "InsufficientCapacity")
    assert body["reason"]["code"] == "capacity_in_maintenance"
    assert body["reason"]["transient"] is True
    assert_diagnosis_complete(body["reason"], 4)
    late = view(client, "late")
    assert_status_reason(late, "capacity_in_maintenance", True, client)
    assert sled_of(client, late["id"]) is None

    # back in service, the sled takes it
    r = client.put(
        f"/v1/system/hardware/sleds/{spare}/provision-policy", json={"state": "provisionable"}
    )
    assert r.status_code == 200
    r = client.post("/v1/instances/late/start", params=P)
    assert r.status_code == 202, r.text
    assert sled_of(client, late["id"]) == spare
    assert_reservations_match(client)


def test_placement_skips_non_provisionable_sleds(client: TestClient, project: str) -> None:
    all_sleds = sleds(client)
    keep = all_sleds[0]["id"]
    for s in all_sleds[1:]:
        r = client.put(
            f"/v1/system/hardware/sleds/{s['id']}/provision-policy",
            json={"state": "non_provisionable"},
        )
        assert r.status_code == 200
    ids = [create(client, f"vm{n}", 4, 8)["id"] for n in range(3)]
    assert {sled_of(client, i) for i in ids} == {keep}
    assert_reservations_match(client)
    # a fourth of the same size still fits on the one sled; a fifth does not
    create(client, "vm3", 4, 8)
    r = client.post("/v1/instances", params=P, json=instance_body("vm4", 4, 8, start=False))
    assert r.status_code == 201
    body = assert_error(
        client.post("/v1/instances/vm4/start", params=P, headers=as_user(client)), 507
    )
    assert body["reason"]["code"] == "capacity_in_maintenance"
    assert "sleds" not in body["reason"]["diagnosis"]  # users see counts, not sled ids
    # An operator (a fleet viewer: the admin here) sees which sled failed which check in
    # the error too, as in the events and the status reason.
    r = client.post("/v1/instances/vm4/start", params=P)
    body = assert_error(r, 507)
    assert set(body["reason"]["diagnosis"]["sleds"]) == {s["id"] for s in all_sleds}
    assert_reservations_match(client)


def test_async_start_answers_starting_and_reports_later(client: TestClient, project: str) -> None:
    inst = create(client, "quick", 2, 2, start=False)
    r = client.post("/v1/instances/quick/start", params=P, headers=ASYNC)
    assert r.status_code == 202, r.text
    assert_conforms(r.json(), "Instance")
    assert r.json()["run_state"] == "starting"
    assert r.json()["intended_state"] == "running"
    wait_for(lambda: view(client, "quick")["run_state"] == "running", "the async start")
    assert event_kinds(client, "quick")[-1] == "instance.running"
    assert sled_of(client, inst["id"]) is not None

    # an async start that fails: 202 at once, the outcome arrives as events
    create(client, "wide", 32, 4, start=False)
    r = client.post("/v1/instances/wide/start", params=P, headers=ASYNC)
    assert r.status_code == 202, r.text
    # (placement fails at once: the saga may already have ended when the answer is read)
    answered = (r.json()["run_state"], r.json()["intended_state"])
    assert answered in (("starting", "running"), ("stopped", "stopped")), answered
    wide = wait_for(
        lambda: (v := view(client, "wide"))["intended_state"] == "stopped" and v,
        "the async start to fail",
    )
    assert wide["run_state"] == "stopped"
    assert_status_reason(wide, "exceeds_sled_size", False, client)
    assert event_kinds(client, "wide")[-1] == "instance.start_failed"

    # create with start, async: answered at once, running later
    r = client.post("/v1/instances", params=P, json=instance_body("later", 1, 1), headers=ASYNC)
    assert r.status_code == 201, r.text
    assert r.json()["intended_state"] == "running"
    assert r.json()["run_state"] in ("starting", "running")
    wait_for(lambda: view(client, "later")["run_state"] == "running", "the async create")
    assert_reservations_match(client)


def test_filling_the_rack_never_overcommits(client: TestClient, project: str) -> None:
    # 6 vCPUs and 20 GiB: at most two per 16-thread, 64 GiB sled, so 8 fit and the 9th
    # cannot, whatever sleds placement chooses. Starts run concurrently (async).
    for n in range(9):
        r = client.post(
            "/v1/instances", params=P, json=instance_body(f"vm{n}", 6, 20), headers=ASYNC
        )
        assert r.status_code == 201, r.text
    items = settled(client, "demo")
    running = [i for i in items if i["run_state"] == "running"]
    stopped = [i for i in items if i["run_state"] == "stopped"]
    assert len(running) == 8, [(i["name"], i["run_state"]) for i in items]
    assert len(stopped) == 1
    assert stopped[0]["status_reason"]["code"] == "insufficient_capacity"
    assert stopped[0]["status_reason"]["transient"] is True
    per_sled = sleds(client)
    assert [s["reserved_hardware_threads"] for s in per_sled] == [12, 12, 12, 12]
    assert [s["reserved_memory"] for s in per_sled] == [40 * GiB] * 4
    assert_reservations_match(client)

    # stop two, start the stopped one: still within every sled's capacity
    for i in running[:2]:
        assert client.post(f"/v1/instances/{i['id']}/stop").status_code == 202
    r = client.post(f"/v1/instances/{stopped[0]['id']}/start")
    assert r.status_code == 202, r.text
    assert_reservations_match(client)
    assert sum(s["reserved_hardware_threads"] for s in sleds(client)) == 7 * 6


def test_instance_events_endpoint(client: TestClient, project: str) -> None:
    inst = create(client, "vm", 1, 1)
    client.post("/v1/instances/vm/stop", params=P)
    client.post("/v1/instances/vm/start", params=P)
    all_events = events(client, inst["id"])
    r = client.get("/v1/instances/vm/events", params=P)
    assert r.status_code == 200
    assert r.json()["items"] == all_events
    assert r.json()["next_page"] is None
    times = [e["time"] for e in all_events]
    assert times == sorted(times, reverse=True)
    assert len({e["id"] for e in all_events}) == len(all_events)

    running = events(client, inst["id"], kind="instance.running")
    assert len(running) == 2 and all(e["kind"] == "instance.running" for e in running)
    assert events(client, inst["id"], severity="error") == []
    op = running[0]["operation_id"]
    assert op is not None
    by_op = events(client, inst["id"], operation=op)
    assert by_op and all(e["operation_id"] == op for e in by_op)
    assert {"instance.placed", "instance.running"} <= {e["kind"] for e in by_op}
    assert events(client, inst["id"], since="2999-01-01T00:00:00Z") == []
    assert events(client, inst["id"], since="2000-01-01T00:00:00Z") == all_events


def test_start_requested_event_says_starting(client: TestClient, project: str) -> None:
    inst = create(client, "vm", 1, 1, start=False)
    r = client.post("/v1/instances/vm/start", params=P, headers=ASYNC)
    assert r.status_code == 202, r.text
    assert r.json()["run_state"] == "starting"
    requested = events(client, inst["id"], kind="instance.start_requested")
    assert [e["run_state"] for e in requested] == ["starting"]
