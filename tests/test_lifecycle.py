"""Lifecycle rules: every failed start ends in an event and a status_reason, resources freed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from skylight.api.app import create_app
from tests.conftest import AdminClient, GiB, as_user, event_kinds, instance_body, make_settings

P = {"project": "demo"}


def _sleds(client: TestClient) -> list[dict[str, Any]]:
    r = client.get("/v1/system/hardware/sleds")
    assert r.status_code == 200
    return list(r.json()["items"])


def _reserved(client: TestClient) -> tuple[int, int]:
    sleds = _sleds(client)
    return (
        sum(s["reserved_hardware_threads"] for s in sleds),
        sum(s["reserved_memory"] for s in sleds),
    )


def _fault(client: TestClient, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/system/sim/faults", json={"message": "injected", **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _wait_for(client: TestClient, name: str, pred: Any, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        inst = client.get(f"/v1/instances/{name}", params=P).json()
        if pred(inst) or time.monotonic() > deadline:
            return dict(inst)
        time.sleep(0.02)


@pytest.mark.parametrize("at", ["register", "ensure_running"])
def test_sled_agent_error_fails_the_start_and_frees_the_sled(
    client: TestClient, project: str, at: str
) -> None:
    r = client.post("/v1/instances", params=P, json=instance_body("a", start=False))
    assert r.status_code == 201
    _fault(client, at=at, kind="error", count=1, message="propolis said no")

    r = client.post("/v1/instances/a/start", params=P, headers=as_user(client))
    assert r.status_code == 503, r.text
    err = r.json()
    assert err["error_code"] == "ServiceUnavailable"
    assert err["reason"]["code"] == "vmm_failure"
    assert "internal" not in err["reason"]  # sled-agent text stays with operators
    assert "propolis said no" not in err["message"]

    inst = client.get("/v1/instances/a", params=P).json()
    assert inst["run_state"] == "stopped"
    assert inst["intended_state"] == "stopped"
    assert inst["status_reason"]["code"] == "vmm_failure"
    assert _reserved(client) == (0, 0)
    assert event_kinds(client, "a") == [
        "instance.created",
        "instance.start_requested",
        "instance.placed",
        "instance.start_failed",
    ]
    # The fault was used up: the next start succeeds and clears the status reason.
    r = client.post("/v1/instances/a/start", params=P)
    assert r.status_code == 202, r.text
    assert r.json()["run_state"] == "running"
    assert r.json()["status_reason"] is None
    assert _reserved(client) == (2, 4 * GiB)


def test_vmm_gone_while_booting(client: TestClient, project: str) -> None:
    client.post("/v1/instances", params=P, json=instance_body("a", start=False))
    _fault(client, at="ensure_running", kind="vmm_gone", count=1)
    r = client.post("/v1/instances/a/start", params=P)
    assert r.status_code == 503
    assert r.json()["reason"]["code"] == "vmm_failure"
    assert _reserved(client) == (0, 0)


def test_create_with_start_that_fails_answers_201_and_keeps_the_error(
    client: TestClient, project: str
) -> None:
    """Today's Oxide answers 201 and drops the start error; here it is on the instance."""
    r = client.post("/v1/instances", params=P, json=instance_body("big", ncpus=17))
    assert r.status_code == 201, r.text
    inst = r.json()
    assert inst["run_state"] == "stopped"
    assert inst["intended_state"] == "stopped"
    reason = inst["status_reason"]
    assert reason["code"] == "exceeds_sled_size"
    assert reason["transient"] is False
    assert "17 vCPUs" in reason["message"]
    events = client.get("/v1/instances/big/events", params=P).json()["items"]
    assert events[0]["kind"] == "instance.start_failed"
    assert events[0]["id"] == reason["event_id"]
    assert events[0]["actor"] == {"type": "control_plane", "cause": "auto_start"}
    assert events[0]["severity"] == "error"


def test_async_start_reports_its_outcome_as_events(client: TestClient, project: str) -> None:
    client.post("/v1/instances", params=P, json=instance_body("a", start=False))
    _fault(client, at="register", kind="error", count=1)
    r = client.post("/v1/instances/a/start", params=P, headers={"Prefer": "respond-async"})
    assert r.status_code == 202
    inst = _wait_for(client, "a", lambda i: i["status_reason"] is not None)
    assert inst["run_state"] == "stopped"
    assert inst["status_reason"]["code"] == "vmm_failure"
    assert event_kinds(client, "a")[-1] == "instance.start_failed"


def test_undo_that_keeps_failing_leaves_an_operator_reason(
    client: TestClient, project: str
) -> None:
    client.post("/v1/instances", params=P, json=instance_body("a", start=False))
    _fault(client, at="ensure_running", kind="error", count=1)
    _fault(client, at="unregister", kind="error", count=None)
    r = client.post("/v1/instances/a/start", params=P)
    assert r.status_code == 500
    assert r.json()["reason"]["code"] == "operation_stuck"
    inst = client.get("/v1/instances/a", params=P).json()
    assert inst["run_state"] == "failed"
    assert inst["status_reason"]["code"] == "operation_stuck"
    assert inst["status_reason"]["transient"] is False
    # Operators see what could not be undone; users see that operators must act.
    events = client.get("/v1/instances/a/events", params=P, headers=as_user(client)).json()
    assert events["items"][0]["reason"]["code"] == "operation_stuck"
    assert "internal" not in events["items"][0]["reason"]
    op = client.get("/v1/instances/a/events", params=P).json()["items"]  # the admin
    assert op[0]["reason"]["internal"]["undo_failed"] == "register_vmm"
    assert op[0]["reason"]["internal"]["original_reason"]["code"] == "vmm_failure"
    # The stuck instance cannot be started or deleted until operators act.
    assert client.post("/v1/instances/a/start", params=P).status_code == 409
    assert client.delete("/v1/instances/a", params=P).status_code == 400


def test_hung_sled_agent_times_out(tmp_path: Path, db_url: str) -> None:
    settings = make_settings(tmp_path / "d", db_url, sled_call_timeout=0.3)
    with AdminClient(create_app(settings)) as client:
        client.post("/v1/projects", json={"name": "demo", "description": ""})
        client.post("/v1/instances", params=P, json=instance_body("a", start=False))
        _fault(client, at="register", kind="hang", count=1)
        r = client.post("/v1/instances/a/start", params=P)
        assert r.status_code == 503
        assert r.json()["reason"]["code"] == "sled_failure"
        assert _reserved(client) == (0, 0)


def test_vmm_crash_marks_the_instance_failed(client: TestClient, project: str) -> None:
    client.post("/v1/instances", params=P, json=instance_body("a"))
    assert client.post("/v1/system/sim/instances/a/crash", params=P).status_code == 204
    inst = client.get("/v1/instances/a", params=P).json()
    assert inst["run_state"] == "failed"
    assert inst["intended_state"] == "running"
    assert inst["status_reason"]["code"] == "vmm_failure"
    assert _reserved(client) == (0, 0)
    events = client.get("/v1/instances/a/events", params=P).json()["items"]
    assert [e["kind"] for e in events[:2]] == ["instance.auto_restart_scheduled", "instance.failed"]
    assert events[1]["actor"] == {"type": "control_plane", "cause": "vmm_failure"}
    assert events[0]["actor"] == {"type": "control_plane", "cause": "auto_restart"}
    assert events[0]["detail"]["next_attempt"] is not None


def test_sled_power_off_fails_its_instances(client: TestClient, project: str) -> None:
    client.post("/v1/instances", params=P, json=instance_body("a"))
    sled_id = client.get("/v1/instances/a", params=P).json()["id"]
    sled = next(s for s in _sleds(client) if s["reserved_hardware_threads"])
    r = client.post(f"/v1/system/sim/sleds/{sled['id']}/power-off")
    assert r.status_code == 204
    inst = client.get(f"/v1/instances/{sled_id}").json()
    assert inst["run_state"] == "failed"
    assert inst["status_reason"]["code"] == "sled_failure"
    # Operators see which sled; users do not.
    events = client.get("/v1/instances/a/events", params=P, headers=as_user(client)).json()
    failed = next(e for e in events["items"] if e["kind"] == "instance.failed")
    assert failed["reason"]["code"] == "sled_failure"
    assert "internal" not in failed["reason"]
    op = client.get("/v1/instances/a/events", params=P).json()["items"]
    assert next(e for e in op if e["kind"] == "instance.failed")["reason"]["internal"]


def test_stop_a_failed_instance_rests_it_stopped(client: TestClient, project: str) -> None:
    client.post("/v1/instances", params=P, json=instance_body("a"))
    client.post("/v1/system/sim/instances/a/crash", params=P)
    r = client.post("/v1/instances/a/stop", params=P)
    assert r.status_code == 202
    assert r.json()["run_state"] == "stopped"
    assert r.json()["status_reason"] is None
    assert r.json()["intended_state"] == "stopped"


def test_reboot(client: TestClient, project: str) -> None:
    client.post("/v1/instances", params=P, json=instance_body("a"))
    r = client.post("/v1/instances/a/reboot", params=P)
    assert r.status_code == 202, r.text
    assert r.json()["run_state"] == "running"
    assert event_kinds(client, "a")[-1] == "instance.rebooted"
    client.post("/v1/instances/a/stop", params=P)
    assert client.post("/v1/instances/a/reboot", params=P).status_code == 400


def test_concurrent_starts_of_one_instance_share_one_saga(client: TestClient, project: str) -> None:
    client.post("/v1/instances", params=P, json=instance_body("a", start=False))
    h = {"Prefer": "respond-async"}
    first = client.post("/v1/instances/a/start", params=P, headers=h)
    second = client.post("/v1/instances/a/start", params=P, headers=h)
    assert first.status_code == second.status_code == 202
    _wait_for(client, "a", lambda i: i["run_state"] == "running")
    assert event_kinds(client, "a").count("instance.start_requested") == 1
    assert _reserved(client) == (2, 4 * GiB)


@pytest.fixture
def small_rack(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    settings = make_settings(tmp_path / "d", db_url, sleds=3, sled_cpus=8, sled_memory_gib=16)
    with AdminClient(create_app(settings)) as c:
        c.post("/v1/projects", json={"name": "demo", "description": ""})
        yield c


def test_concurrent_starts_never_overcommit(small_rack: TestClient) -> None:
    """24 async starts of 2 vCPUs on 3 sleds of 8: exactly 12 can run, none overcommits."""
    client = small_rack
    for i in range(24):
        r = client.post("/v1/instances", params=P, json=instance_body(f"i{i}", start=False))
        assert r.status_code == 201
    h = {"Prefer": "respond-async"}
    for i in range(24):
        assert client.post(f"/v1/instances/i{i}/start", params=P, headers=h).status_code == 202
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        items = client.get("/v1/instances", params={**P, "limit": 100}).json()["items"]
        if all(i["run_state"] == "running" or i["status_reason"] for i in items):
            break
        time.sleep(0.05)
    running = [i for i in items if i["run_state"] == "running"]
    failed = [i for i in items if i["run_state"] == "stopped"]
    assert len(running) == 12
    assert len(failed) == 12
    assert all(i["status_reason"]["code"] == "insufficient_capacity" for i in failed)
    assert all(i["status_reason"]["transient"] for i in failed)
    for sled in _sleds(client):
        assert sled["reserved_hardware_threads"] <= sled["usable_hardware_threads"]
        assert sled["reserved_hardware_threads"] == 8
    assert _reserved(client) == (24, 48 * GiB)
