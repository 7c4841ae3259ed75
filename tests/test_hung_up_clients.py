"""Create with ``start: true`` whose client hangs up: the saga runs to its end anyway, and its
outcome is an event and a status_reason (today's Oxide logs it and nobody sees it)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from skylight.testing import ServerProcess
from tests.conftest import instance_body

P = {"project": "demo"}


@pytest.fixture
def server(tmp_path: Path, db_url: str) -> Iterator[ServerProcess]:
    db = None if db_url.startswith("sqlite") else db_url
    proc = ServerProcess(
        tmp_path / "srv",
        db=db,
        args=["--sim-start-delay", "1.5", "--sled-call-timeout", "1.5"],
    )
    proc.start()
    httpx.post(
        f"{proc.url}/v1/projects", json={"name": "demo", "description": ""}, headers=proc.headers
    )
    yield proc
    proc.stop()


def _settled(api: httpx.Client, name: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        inst = api.get(f"/v1/instances/{name}", params=P).json()
        if inst["run_state"] == "running" or inst["status_reason"]:
            return dict(inst)
        assert time.monotonic() < deadline, inst
        time.sleep(0.05)


def _kinds(api: httpx.Client, name: str) -> list[str]:
    items = api.get(f"/v1/instances/{name}/events", params=P).json()["items"]
    return [e["kind"] for e in reversed(items)]


def test_hung_up_start_that_fails_is_reported(server: ServerProcess) -> None:
    api = server.client(timeout=30)
    r = api.post(
        "/v1/system/sim/faults",
        json={"at": "ensure_running", "kind": "hang", "count": 1, "message": "wedged"},
    )
    assert r.status_code == 201
    with pytest.raises(httpx.ReadTimeout):  # the client gives up and hangs up
        httpx.post(
            f"{server.url}/v1/instances",
            params=P,
            json=instance_body("lost"),
            timeout=0.4,
            headers=server.headers,
        )
    inst = _settled(api, "lost")
    assert inst["run_state"] == "stopped"
    assert inst["intended_state"] == "stopped"
    assert inst["status_reason"]["code"] == "sled_failure"
    assert inst["status_reason"]["transient"] is True
    assert _kinds(api, "lost") == [
        "instance.created",
        "instance.start_requested",
        "instance.placed",
        "instance.start_failed",
    ]
    sleds = api.get("/v1/system/hardware/sleds").json()["items"]
    assert sum(s["reserved_hardware_threads"] for s in sleds) == 0


def test_hung_up_start_that_succeeds_runs(server: ServerProcess) -> None:
    api = server.client(timeout=30)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{server.url}/v1/instances",
            params=P,
            json=instance_body("fine"),
            timeout=0.4,
            headers=server.headers,
        )
    inst = _settled(api, "fine")
    assert inst["run_state"] == "running"
    assert inst["status_reason"] is None
    assert _kinds(api, "fine")[-1] == "instance.running"
