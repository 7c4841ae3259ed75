"""The status tells the whole story: since when, what happened, what Skylight is doing about
it, and what the user can do, said once (issue 13, point 2)."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import event_kinds, instance_body
from tests.test_auto_restart import P, _client, _in_backoff, _set_all_sleds, _wait


def _t(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def _events(c: TestClient, kind: str) -> list[dict[str, Any]]:
    r = c.get("/v1/instances/a/events", params={**P, "kind": kind})
    return list(r.json()["items"])


def test_a_failed_restart_tells_the_crash_the_attempt_and_the_next_one(
    tmp_path: Path, db_url: str
) -> None:
    with _client(tmp_path, db_url, backoff=30.0) as c:
        c.post("/v1/projects", json={"name": "demo", "description": ""})
        _in_backoff(c)
        reason = c.get("/v1/instances/a", params=P).json()["status_reason"]
        crash = _events(c, "instance.failed")[0]
        failed = _events(c, "instance.auto_restart_failed")[0]
        # Since the crash, not since the newest attempt.
        assert _t(reason["since"]) == _t(crash["time"])
        assert reason["event_id"] == failed["id"]
        # What happened: the crash first, then the failed attempt and why.
        crashed_at = _t(crash["time"]).strftime("%H:%M:%S UTC")
        assert reason["happened"].startswith(f"{crashed_at}: {crash['reason']['message']}")
        assert "Automatic restart attempt 1 failed" in reason["happened"]
        assert failed["reason"]["message"] in reason["happened"]
        # What Skylight does: the real next attempt, the one the event announced.
        auto = reason["auto_restart"]
        assert auto["state"] == "scheduled" and auto["attempts"] == 1
        assert _t(auto["next_attempt"]) == _t(failed["detail"]["next_attempt"])
        assert "attempt 2" in reason["doing"]
        assert _t(auto["next_attempt"]).strftime("%H:%M:%S") in reason["doing"]
        # What the user can do: the reason's fix.
        assert reason["action"] == failed["reason"]["action"]


def test_a_crash_waiting_for_its_restart_asks_nothing_of_the_user(
    tmp_path: Path, db_url: str
) -> None:
    with _client(tmp_path, db_url, cooldown=60.0) as c:
        c.post("/v1/projects", json={"name": "demo", "description": ""})
        c.post("/v1/instances", params=P, json=instance_body("a"))
        # A first automatic restart puts the instance in its cooldown ...
        c.post("/v1/system/sim/instances/a/crash", params=P)
        _wait(c, "a", lambda i: i["run_state"] == "running")
        # ... so the second crash waits for the cooldown to end.
        c.post("/v1/system/sim/instances/a/crash", params=P)
        inst = _wait(c, "a", lambda i: i["run_state"] == "failed")
        reason = inst["status_reason"]
        assert reason["code"] == "vmm_failure"
        assert reason["auto_restart"]["state"] == "scheduled"
        scheduled = _events(c, "instance.auto_restart_scheduled")[0]
        assert _t(reason["auto_restart"]["next_attempt"]) == _t(scheduled["detail"]["next_attempt"])
        assert reason["action"].startswith("Nothing is needed")
        assert reason["happened"] == reason["message"]  # one event so far: no "then"


def test_given_up_says_so_and_why(tmp_path: Path, db_url: str) -> None:
    with _client(tmp_path, db_url) as c:
        c.post("/v1/projects", json={"name": "demo", "description": ""})
        c.post("/v1/instances", params=P, json=instance_body("a"))
        r = c.put("/v1/system/silos/recovery/quotas", json={"cpus": 1})  # a permanent reason
        assert r.status_code == 200
        c.post("/v1/system/sim/instances/a/crash", params=P)
        _wait(c, "a", lambda i: "instance.auto_restart_gave_up" in event_kinds(c, "a"))
        inst = c.get("/v1/instances/a", params=P).json()
        reason = inst["status_reason"]
        assert inst["run_state"] == "failed"
        assert reason["code"] == "quota_exceeded"
        assert reason["auto_restart"] == {"state": "gave_up", "attempts": 1, "next_attempt": None}
        assert "stopped after attempt 1" in reason["doing"]
        assert "quota" in reason["action"]


def test_policy_never_says_nothing_will_restart_it(tmp_path: Path, db_url: str) -> None:
    with _client(tmp_path, db_url) as c:
        c.post("/v1/projects", json={"name": "demo", "description": ""})
        c.post("/v1/instances", params=P, json=instance_body("a", auto_restart_policy="never"))
        c.post("/v1/system/sim/instances/a/crash", params=P)
        inst = _wait(c, "a", lambda i: i["run_state"] == "failed")
        reason = inst["status_reason"]
        assert reason["auto_restart"]["state"] == "off"
        assert "policy is never" in reason["doing"]
        assert reason["action"] == "Start the instance again; it will be placed afresh."


def test_a_new_start_does_not_carry_the_last_failure(tmp_path: Path, db_url: str) -> None:
    """A 202 'starting' answer must not show the reason the previous start failed for."""
    with _client(tmp_path, db_url) as c:
        c.post("/v1/projects", json={"name": "demo", "description": ""})
        _set_all_sleds(c, "non_provisionable")
        r = c.post("/v1/instances", params=P, json=instance_body("a"))
        assert r.status_code == 201
        assert r.json()["status_reason"]["code"] == "capacity_in_maintenance"
        assert r.json()["run_state"] == "stopped"
        _set_all_sleds(c, "provisionable")
        r = c.post("/v1/instances/a/start", params={**P, "wait": 0})
        assert r.json()["run_state"] in ("starting", "running")
        assert r.json()["status_reason"] is None
        _wait(c, "a", lambda i: i["run_state"] == "running")


def test_a_start_during_auto_restart_keeps_the_story_and_says_what_follows(
    tmp_path: Path, db_url: str
) -> None:
    with _client(tmp_path, db_url, backoff=30.0) as c:
        c.post("/v1/projects", json={"name": "demo", "description": ""})
        _in_backoff(c)
        r = c.post("/v1/instances/a/start", params=P)
        assert r.status_code == 507
        inst = c.get("/v1/instances/a", params=P).json()
        reason = inst["status_reason"]
        assert "A start since then failed" in reason["happened"]
        assert reason["auto_restart"]["state"] == "scheduled"  # still on, and it says when
        assert "Restarting it automatically at" in reason["doing"]


def test_a_stop_during_auto_restart_is_a_recorded_decision(tmp_path: Path, db_url: str) -> None:
    with _client(tmp_path, db_url, backoff=30.0) as c:
        c.post("/v1/projects", json={"name": "demo", "description": ""})
        _in_backoff(c)
        r = c.post("/v1/instances/a/stop", params=P)
        assert r.status_code == 202, r.text
        inst = c.get("/v1/instances/a", params=P).json()
        assert (inst["run_state"], inst["intended_state"]) == ("stopped", "stopped")
        assert inst["status_reason"] is None
        stopped = _events(c, "instance.stopped")[0]
        assert stopped["detail"] == {"auto_restart": "cancelled"}
        assert stopped["actor"]["type"] == "user"
        time.sleep(0.3)
        assert "instance.start_requested" not in event_kinds(c, "a")[-2:]


def test_a_delete_during_auto_restart_is_a_recorded_decision(tmp_path: Path, db_url: str) -> None:
    with _client(tmp_path, db_url, backoff=30.0) as c:
        c.post("/v1/projects", json={"name": "demo", "description": ""})
        _in_backoff(c)
        assert c.delete("/v1/instances/a", params=P).status_code == 204
        r = c.get("/v1/events", params={**P, "kind": "instance.deleted"})
        deleted = r.json()["items"][0]
        assert deleted["detail"] == {"auto_restart": "cancelled"}
        assert deleted["actor"]["type"] == "user"
