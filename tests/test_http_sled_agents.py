"""HTTP sled agents: ``skylight serve --no-sim`` with ``skylight sled-agent --sim`` processes.

The agents register with the control plane and are reached over HTTP: instances start, run
and stop on them; faults armed on an agent fail a start with the right reason; a crash on an
agent is reported to the control plane; a SIGKILLed agent's running instances fail with
``sled_failure`` after the (shortened) health timeout, and the restarted agent is the same
sled. The two agents have different CPU families, so an instance's ``cpu_platform`` says
which sled it lands on. On SQLite and PostgreSQL; a second test has two replicas share one
PostgreSQL store and reach a sled registered through the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from skylight.rack_secret import create
from skylight.testing import ServerProcess, SledAgentProcess
from tests.conftest import GiB, instance_body

pytestmark = pytest.mark.slow

FAILURE_TIMEOUT = 2.0
SERVE_ARGS = [
    "--no-sim",
    "--sled-failure-timeout",
    str(FAILURE_TIMEOUT),
    "--sled-call-timeout",
    "3",
    "--start-wait",
    "15",
]
P = {"project": "demo"}


def wait_until(what: str, predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(0.1)


def _server(data_dir: Path, db_url: str, rack_secret_file: Path | None = None) -> ServerProcess:
    db = db_url if db_url.startswith("postgresql") else None
    return ServerProcess(data_dir, db=db, args=SERVE_ARGS, rack_secret_file=rack_secret_file)


def _create(api: httpx.Client, name: str, platform: str, start: bool = True) -> httpx.Response:
    body = instance_body(
        name, ncpus=2, memory_gib=4, cpu_platform=platform, auto_restart_policy="never"
    )
    body["start"] = start
    return api.post("/v1/instances", params=P, json=body)


def _instance(api: httpx.Client, name: str) -> dict[str, Any]:
    r = api.get(f"/v1/instances/{name}", params=P)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _kinds(api: httpx.Client, name: str) -> list[str]:
    r = api.get(f"/v1/instances/{name}/events", params={**P, "limit": 100})
    assert r.status_code == 200, r.text
    return [e["kind"] for e in reversed(r.json()["items"])]


def _vmms(agent: SledAgentProcess) -> list[dict[str, Any]]:
    r = httpx.get(f"{agent.url}/vmms", timeout=5, headers=agent.auth)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def _sleds(api: httpx.Client) -> dict[str, dict[str, Any]]:
    r = api.get("/v1/system/hardware/sleds")
    assert r.status_code == 200, r.text
    return {s["baseboard"]["serial"]: s for s in r.json()["items"]}


@pytest.fixture
def rig(
    tmp_path: Path, db_url: str
) -> Iterator[tuple[httpx.Client, SledAgentProcess, SledAgentProcess]]:
    server = _server(tmp_path / "server", db_url)
    server.start()
    milan = SledAgentProcess(
        tmp_path / "milan",
        server.url,
        rack_secret_file=server.rack_secret_file,
        cpus=16,
        memory_gib=64,
        local_storage_gib=256,
    )
    turin = SledAgentProcess(
        tmp_path / "turin",
        server.url,
        rack_secret_file=server.rack_secret_file,
        cpus=8,
        memory_gib=32,
        local_storage_gib=128,
        cpu_family="amd_turin",
    )
    api = server.client(timeout=30)
    try:
        milan.start()
        turin.start()
        assert api.post("/v1/projects", json={"name": "demo", "description": ""}).is_success
        yield api, milan, turin
    finally:
        api.close()
        for proc in (milan, turin):
            proc.kill()
        server.stop()


def test_instances_run_fail_and_survive_on_http_sled_agents(
    rig: tuple[httpx.Client, SledAgentProcess, SledAgentProcess],
) -> None:
    api, milan, turin = rig

    # -- the agents registered, with their capacities -------------------------------------
    sleds = _sleds(api)
    assert set(sleds) == {milan.serial, turin.serial}
    m, t = sleds[milan.serial], sleds[turin.serial]
    assert (m["usable_hardware_threads"], m["usable_physical_ram"]) == (16, 64 * GiB)
    assert (m["local_storage"], m["cpu_family"]) == (256 * GiB, "amd_milan")
    assert (t["usable_hardware_threads"], t["usable_physical_ram"]) == (8, 32 * GiB)
    assert (t["local_storage"], t["cpu_family"]) == (128 * GiB, "amd_turin")
    assert m["policy"] == {"kind": "in_service", "provision_policy": "provisionable"}
    milan_id, turin_id = m["id"], t["id"]
    assert (milan.sled_id, turin.sled_id) == (milan_id, turin_id)

    # -- start, run, stop on a sled reached over HTTP --------------------------------------
    r = _create(api, "m1", "amd_milan")
    assert r.status_code == 201, r.text
    m1 = r.json()
    assert m1["run_state"] == "running", m1
    assert [v["instance_id"] for v in _vmms(milan)] == [m1["id"]]
    assert _vmms(turin) == []
    assert _sleds(api)[milan.serial]["reserved_hardware_threads"] == 2

    r = api.post("/v1/instances/m1/stop", params=P)
    assert r.status_code == 202, r.text
    wait_until("m1 stopped", lambda: _instance(api, "m1")["run_state"] == "stopped")
    assert _vmms(milan) == []
    assert _sleds(api)[milan.serial]["reserved_hardware_threads"] == 0
    r = api.post("/v1/instances/m1/start", params=P)
    assert r.status_code == 202, r.text
    assert r.json()["run_state"] == "running"
    kinds = _kinds(api, "m1")
    assert kinds.count("instance.running") == 2 and "instance.stopped" in kinds, kinds

    # -- faults armed on an agent -----------------------------------------------------------
    r = httpx.post(
        f"{turin.url}/faults",
        json={"sled": milan_id, "at": "register", "kind": "error"},
        headers=turin.auth,
    )
    assert r.status_code == 400, r.text  # this agent is not that sled
    r = httpx.post(
        f"{turin.url}/faults",
        json={
            "sled": turin_id,
            "at": "ensure_running",
            "kind": "error",
            "count": 1,
            "message": "propolis refused",
        },
        headers=turin.auth,
    )
    assert r.status_code == 201, r.text
    assert r.json()["sled"] == turin_id
    faults = httpx.get(f"{turin.url}/faults", headers=turin.auth).json()["items"]
    assert [f["id"] for f in faults] == [r.json()["id"]]
    assert _create(api, "t1", "amd_turin", start=False).status_code == 201
    r = api.post("/v1/instances/t1/start", params=P)
    assert r.status_code == 503, r.text
    assert r.json()["reason"]["code"] == "vmm_failure"
    t1 = _instance(api, "t1")
    assert t1["run_state"] == "stopped" and t1["status_reason"]["code"] == "vmm_failure"
    assert _kinds(api, "t1")[-1] == "instance.start_failed"
    events = api.get("/v1/system/events", params={"limit": 20}).json()["items"]
    failed = next(e for e in events if e["kind"] == "instance.start_failed")
    assert "propolis refused" in str(failed["reason"]["internal"])
    assert httpx.get(f"{turin.url}/faults", headers=turin.auth).json()["items"] == []  # used up
    assert _vmms(turin) == [] and _sleds(api)[turin.serial]["reserved_hardware_threads"] == 0

    r = httpx.post(
        f"{turin.url}/faults", json={"at": "register", "kind": "error"}, headers=turin.auth
    )
    assert r.status_code == 201, r.text
    fault_url = f"{turin.url}/faults/{r.json()['id']}"
    assert httpx.delete(fault_url, headers=turin.auth).status_code == 204
    assert httpx.delete(fault_url, headers=turin.auth).status_code == 404

    # -- a crash on the agent reaches the control plane -------------------------------------
    r = api.post("/v1/instances/t1/start", params=P)
    assert r.status_code == 202 and r.json()["run_state"] == "running", r.text
    assert httpx.post(f"{turin.url}/crash/{t1['id']}", headers=turin.auth).status_code == 204
    t1 = wait_until("t1 failed", lambda: (i := _instance(api, "t1"))["run_state"] == "failed" and i)
    assert t1["status_reason"]["code"] == "vmm_failure"

    # -- SIGKILL an agent: its running instances fail with sled_failure ----------------------
    killed_at = time.monotonic()
    milan.kill()
    m1 = wait_until("m1 failed", lambda: (i := _instance(api, "m1"))["run_state"] == "failed" and i)
    # Silence counts from the last answer seen, at most a health interval before the kill.
    assert time.monotonic() - killed_at >= FAILURE_TIMEOUT * 3 / 4 - 0.1
    assert m1["status_reason"]["code"] == "sled_failure"
    assert _kinds(api, "m1")[-1] == "instance.failed"
    assert _sleds(api)[milan.serial]["reserved_hardware_threads"] == 0

    # A start that only the silent sled could take is not sent there to fail: placement
    # keeps off a sled whose agent does not answer, and says so (transient).
    r = api.post("/v1/instances/m1/start", params=P)
    assert r.status_code == 507, r.text  # Oxide's InsufficientCapacity
    reason = r.json()["reason"]
    assert reason["code"] == "capacity_in_maintenance" and reason["transient"] is True, reason
    assert "agent" in reason["message"]
    assert _kinds(api, "m1")[-1] == "instance.start_failed"

    # -- the restarted agent is the same sled; its abandoned VMM is cleaned up ---------------
    milan.start()
    assert milan.sled_id == milan_id
    sleds = _sleds(api)
    assert len(sleds) == 2 and sleds[milan.serial]["id"] == milan_id
    wait_until("the abandoned VMM unregistered", lambda: _vmms(milan) == [])
    r = api.post("/v1/instances/m1/start", params=P)
    assert r.status_code == 202 and r.json()["run_state"] == "running", r.text
    assert [v["instance_id"] for v in _vmms(milan)] == [m1["id"]]


def test_a_powered_off_sled_takes_no_new_instances_until_it_is_on_again(
    rig: tuple[httpx.Client, SledAgentProcess, SledAgentProcess],
) -> None:
    """Its agent still answers (without power): placement must not send starts there, where
    they would only fail with sled_failure (the recovery storm's restarts did)."""
    api, milan, _turin = rig
    assert _create(api, "m", "amd_milan", start=False).status_code == 201  # only milan fits
    r = httpx.post(f"{milan.url}/power-off", headers=milan.auth, timeout=5)
    assert r.status_code == 204, r.text

    def placement() -> dict[str, Any]:
        r = api.get("/v1/instances/m/placement", params=P)
        assert r.status_code == 200, r.text
        return dict(r.json())

    off = wait_until("the power-off noticed", lambda: not placement()["fits"] and placement())
    assert off["reason"]["code"] == "capacity_in_maintenance"
    start = api.post("/v1/instances/m/start", params=P)
    assert start.status_code == 507, start.text
    assert start.json()["reason"]["code"] == "capacity_in_maintenance"

    r = httpx.post(f"{milan.url}/power-on", headers=milan.auth, timeout=5)
    assert r.status_code == 204, r.text
    wait_until("the power-on noticed", lambda: placement()["fits"])
    r = api.post("/v1/instances/m/start", params=P)
    assert r.status_code == 202 or r.json()["run_state"] == "running", r.text


def test_a_sled_registered_through_one_replica_is_reached_through_another(
    tmp_path: Path, pg_url: str
) -> None:
    secret = tmp_path / "rack-secret"  # one rack: its replicas and agents share the secret
    create(secret)
    a = _server(tmp_path / "a", pg_url, secret)
    b = _server(tmp_path / "b", pg_url, secret)
    a.start()
    b.start()
    agent = SledAgentProcess(
        tmp_path / "agent", a.url, rack_secret_file=secret, cpu_family="amd_turin"
    )
    api_b = b.client(timeout=30)
    try:
        agent.start()
        assert api_b.post("/v1/projects", json={"name": "demo", "description": ""}).is_success
        r = _create(api_b, "x", "amd_turin")
        assert r.status_code == 201, r.text
        assert r.json()["run_state"] == "running", r.json()
        assert [v["instance_id"] for v in _vmms(agent)] == [r.json()["id"]]
        assert api_b.post("/v1/instances/x/stop", params=P).status_code == 202
        wait_until("x stopped", lambda: _instance(api_b, "x")["run_state"] == "stopped")
        assert _vmms(agent) == []
    finally:
        api_b.close()
        agent.kill()
        b.stop()
        a.stop()
