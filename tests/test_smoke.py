"""The spine, end to end: create a project and an instance that starts and runs."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import event_kinds, instance_body


def test_create_start_stop_delete(client: TestClient, project: str) -> None:
    r = client.post("/v1/instances", params={"project": project}, json=instance_body("web"))
    assert r.status_code == 201, r.text
    inst = r.json()
    assert inst["run_state"] == "running"
    assert inst["intended_state"] == "running"
    assert inst["status_reason"] is None

    r = client.post("/v1/instances/web/stop", params={"project": project})
    assert r.status_code == 202, r.text
    assert r.json()["run_state"] == "stopped"
    assert r.json()["intended_state"] == "stopped"

    r = client.delete("/v1/instances/web", params={"project": project})
    assert r.status_code == 204, r.text
    r = client.get("/v1/instances/web", params={"project": project})
    assert r.status_code == 404
    assert r.json()["error_code"] == "ObjectNotFound"

    kinds = event_kinds(client, inst["id"], project=None)
    assert kinds == [
        "instance.created",
        "instance.start_requested",
        "instance.placed",
        "instance.running",
        "instance.stop_requested",
        "instance.stopped",
        "instance.deleted",
    ]
