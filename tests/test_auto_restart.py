"""A failed instance is restarted by the control plane, and every attempt says how it went.

The failed-automatic-restart path of the issue: never rests stopped, reasons on every
attempt, transient reasons retried with backoff, permanent ones given up on, and a later
attempt succeeding once the cause goes away.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from skylight.api.app import create_app
from tests.conftest import AdminClient, event_kinds, instance_body, make_settings

P = {"project": "demo"}


def _client(tmp_path: Path, db_url: str, **overrides: Any) -> TestClient:
    backoff = overrides.pop("backoff", None)  # first delay and cap alike
    settings = make_settings(
        tmp_path / "d",
        db_url,
        auto_restart_interval=0.05,
        auto_restart_cooldown=overrides.pop("cooldown", 0.0),
        auto_restart_backoff=backoff or 0.1,
        auto_restart_backoff_max=backoff or 0.4,
        **overrides,
    )
    return AdminClient(create_app(settings))


@pytest.fixture
def client(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    with _client(tmp_path, db_url) as c:
        c.post("/v1/projects", json={"name": "demo", "description": ""})
        yield c


def _wait(client: TestClient, name: str, pred: Any, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        inst = client.get(f"/v1/instances/{name}", params=P).json()
        assert not (inst["run_state"] == "stopped" and inst["intended_state"] == "running"), inst
        if pred(inst):
            return dict(inst)
        assert time.monotonic() < deadline, f"timed out; last: {inst}"
        time.sleep(0.02)


def _set_all_sleds(client: TestClient, state: str) -> None:
    for sled in client.get("/v1/system/hardware/sleds").json()["items"]:
        r = client.put(
            f"/v1/system/hardware/sleds/{sled['id']}/provision-policy", json={"state": state}
        )
        assert r.status_code == 200


def test_crashed_instance_is_restarted(client: TestClient) -> None:
    client.post("/v1/instances", params=P, json=instance_body("a"))
    assert client.post("/v1/system/sim/instances/a/crash", params=P).status_code == 204
    inst = _wait(client, "a", lambda i: i["run_state"] == "running")
    assert inst["status_reason"] is None
    assert inst["time_last_auto_restarted"] is not None
    assert inst["auto_restart_cooldown_expiration"] is not None
    kinds = event_kinds(client, "a")
    assert kinds[-5:] == [
        "instance.failed",
        "instance.auto_restart_scheduled",
        "instance.start_requested",
        "instance.placed",
        "instance.running",
    ]
    events = client.get("/v1/instances/a/events", params=P).json()["items"]
    restart = next(e for e in events if e["kind"] == "instance.start_requested")
    assert restart["actor"] == {"type": "control_plane", "cause": "auto_restart"}


def test_failed_restart_stays_failed_then_succeeds_when_capacity_returns(
    client: TestClient,
) -> None:
    client.post("/v1/instances", params=P, json=instance_body("a"))
    _set_all_sleds(client, "non_provisionable")  # maintenance everywhere: transient
    client.post("/v1/system/sim/instances/a/crash", params=P)
    inst = _wait(
        client,
        "a",
        lambda i: i["status_reason"] and i["status_reason"]["code"] == "capacity_in_maintenance",
    )
    assert inst["run_state"] == "failed"  # never stopped
    assert inst["intended_state"] == "running"
    assert inst["status_reason"]["transient"] is True
    events = client.get("/v1/instances/a/events", params=P).json()["items"]
    failed = next(e for e in events if e["kind"] == "instance.auto_restart_failed")
    assert failed["detail"]["next_attempt"] is not None
    assert failed["severity"] == "error"
    assert failed["reason"]["code"] == "capacity_in_maintenance"
    assert inst["status_reason"]["event_id"] == failed["id"]

    # Retried with backoff while the cause lasts, the repeats folded into one event ...
    def failures() -> list[dict[str, Any]]:
        r = client.get(
            "/v1/instances/a/events", params={**P, "kind": "instance.auto_restart_failed"}
        )
        return list(r.json()["items"])

    _wait(client, "a", lambda i: failures()[0]["count"] >= 3)
    folded = failures()
    assert len(folded) == 1
    assert folded[0]["id"] == failed["id"]  # the same event, counted
    assert folded[0]["detail"]["attempt"] >= 3
    assert folded[0]["time_last"] > folded[0]["time"]
    assert (
        client.get("/v1/instances/a", params=P).json()["status_reason"]["event_id"]
        == (failed["id"])
    )
    # ... and succeeds once the sleds come back.
    _set_all_sleds(client, "provisionable")
    inst = _wait(client, "a", lambda i: i["run_state"] == "running")
    assert inst["status_reason"] is None
    assert "instance.auto_restart_gave_up" not in event_kinds(client, "a")


def test_permanent_reason_gives_up(client: TestClient) -> None:
    client.post("/v1/instances", params=P, json=instance_body("a"))
    _set_all_sleds(client, "non_provisionable")
    client.post("/v1/system/sim/instances/a/crash", params=P)
    _wait(client, "a", lambda i: i["status_reason"]["code"] != "vmm_failure")
    # While failed it can be resized: too large for any sled now, a permanent reason.
    r = client.put(
        "/v1/instances/a",
        params=P,
        json={
            "ncpus": 17,
            "memory": 4 * 1024**3,
            "auto_restart_policy": None,
            "boot_disk": None,
            "cpu_platform": None,
            "enable_jumbo_frames": False,
        },
    )
    assert r.status_code == 200, r.text
    _set_all_sleds(client, "provisionable")
    inst = _wait(client, "a", lambda i: i["status_reason"]["code"] == "exceeds_sled_size")
    assert inst["run_state"] == "failed"
    assert inst["status_reason"]["transient"] is False
    kinds = event_kinds(client, "a")
    assert kinds[-1] == "instance.auto_restart_gave_up"
    attempts = kinds.count("instance.start_requested")
    time.sleep(0.5)  # several intervals: no further attempt comes
    assert event_kinds(client, "a").count("instance.start_requested") == attempts
    # A user's start still works once the user has fixed the size.
    r = client.put(
        "/v1/instances/a",
        params=P,
        json={
            "ncpus": 2,
            "memory": 4 * 1024**3,
            "auto_restart_policy": None,
            "boot_disk": None,
            "cpu_platform": None,
            "enable_jumbo_frames": False,
        },
    )
    assert client.post("/v1/instances/a/start", params=P).json()["run_state"] == "running"


def test_policy_never_is_honoured(client: TestClient) -> None:
    client.post("/v1/instances", params=P, json=instance_body("a", auto_restart_policy="never"))
    client.post("/v1/system/sim/instances/a/crash", params=P)
    time.sleep(0.3)
    inst = client.get("/v1/instances/a", params=P).json()
    assert inst["run_state"] == "failed"
    assert inst["auto_restart_enabled"] is False
    assert inst["status_reason"]["code"] == "vmm_failure"
    assert "instance.auto_restart_scheduled" not in event_kinds(client, "a")


def test_cooldown_delays_the_next_restart(tmp_path: Path, db_url: str) -> None:
    with _client(tmp_path, db_url, cooldown=3600.0) as client:
        client.post("/v1/projects", json={"name": "demo", "description": ""})
        client.post("/v1/instances", params=P, json=instance_body("a"))
        client.post("/v1/system/sim/instances/a/crash", params=P)
        first = _wait(client, "a", lambda i: i["run_state"] == "running")
        client.post("/v1/system/sim/instances/a/crash", params=P)
        time.sleep(0.3)
        inst = client.get("/v1/instances/a", params=P).json()
        assert inst["run_state"] == "failed"  # still cooling down
        events = client.get("/v1/instances/a/events", params=P).json()["items"]
        scheduled = datetime.fromisoformat(events[0]["detail"]["next_attempt"])
        assert events[0]["kind"] == "instance.auto_restart_scheduled"
        assert scheduled == datetime.fromisoformat(first["auto_restart_cooldown_expiration"])


def test_sled_power_off_then_restart_elsewhere(client: TestClient) -> None:
    client.post("/v1/instances", params=P, json=instance_body("a"))
    sleds = client.get("/v1/system/hardware/sleds").json()["items"]
    busy = next(s for s in sleds if s["reserved_hardware_threads"])
    client.post(f"/v1/system/sim/sleds/{busy['id']}/power-off")
    inst = _wait(client, "a", lambda i: i["run_state"] == "running")
    kinds = event_kinds(client, "a")
    assert "instance.failed" in kinds
    assert kinds[-1] == "instance.running"
    now_on = [
        s["id"]
        for s in client.get("/v1/system/hardware/sleds").json()["items"]
        if s["reserved_hardware_threads"]
    ]
    # The powered-off sled is still "in service" for placement (the rack has not noticed it
    # is down), so the restart may land on it only if it was chosen; the VMM must be alive.
    assert len(now_on) == 1
    assert inst["status_reason"] is None


def _in_backoff(client: TestClient) -> dict[str, Any]:
    """Instance "a" crashed, its automatic restart failed (no sled would take it) and the
    next attempt waits: the moment a user may well press Start themselves."""
    client.post("/v1/instances", params=P, json=instance_body("a"))
    _set_all_sleds(client, "non_provisionable")
    assert client.post("/v1/system/sim/instances/a/crash", params=P).status_code == 204
    inst = _wait(client, "a", lambda i: "instance.auto_restart_failed" in event_kinds(client, "a"))
    assert (inst["run_state"], inst["intended_state"]) == ("failed", "running")
    return inst


def test_a_manual_start_during_auto_restart_that_may_pass_leaves_auto_restart_on(
    tmp_path: Path, db_url: str
) -> None:
    """Doing what the reason says (start it again) must not cancel auto-restart silently:
    the failed start says auto-restart carries on and when, and it does."""
    with _client(tmp_path, db_url, backoff=3.0) as c:
        c.post("/v1/projects", json={"name": "demo", "description": ""})
        _in_backoff(c)
        r = c.post("/v1/instances/a/start", params=P)
        assert r.status_code == 507 and r.json()["reason"]["transient"] is True
        inst = c.get("/v1/instances/a", params=P).json()
        assert (inst["run_state"], inst["intended_state"]) == ("failed", "running")
        events = c.get("/v1/instances/a/events", params=P).json()["items"]
        failed = next(e for e in events if e["kind"] == "instance.start_failed")
        assert failed["actor"]["type"] == "user"
        assert failed["detail"]["auto_restart"] == "continues"
        assert failed["detail"]["next_attempt"]
        assert inst["status_reason"]["event_id"] == failed["id"]
        _set_all_sleds(c, "provisionable")  # the cause goes: auto-restart, not the user, wins
        _wait(c, "a", lambda i: i["run_state"] == "running")
        last = c.get("/v1/instances/a/events", params=P).json()["items"]
        requested = next(e for e in last if e["kind"] == "instance.start_requested")
        assert requested["actor"] == {"type": "control_plane", "cause": "auto_restart"}


def test_a_manual_start_during_auto_restart_that_cannot_pass_stops_it_and_says_so(
    tmp_path: Path, db_url: str
) -> None:
    with _client(tmp_path, db_url, backoff=3.0) as c:
        c.post("/v1/projects", json={"name": "demo", "description": ""})
        _in_backoff(c)
        r = c.put("/v1/system/silos/recovery/quotas", json={"cpus": 1})  # now it cannot fit
        assert r.status_code == 200
        r = c.post("/v1/instances/a/start", params=P)
        assert r.status_code == 507 and r.json()["reason"]["code"] == "quota_exceeded"
        inst = c.get("/v1/instances/a", params=P).json()
        assert (inst["run_state"], inst["intended_state"]) == ("stopped", "stopped")
        events = c.get("/v1/instances/a/events", params=P).json()["items"]
        failed = next(e for e in events if e["kind"] == "instance.start_failed")
        assert failed["detail"] == {"auto_restart": "stopped", "next_attempt": None}
        assert inst["status_reason"]["code"] == "quota_exceeded"
        time.sleep(3.5)  # past when the next attempt was due: nothing tries it
        assert c.get("/v1/instances/a", params=P).json()["run_state"] == "stopped"
