"""The replica's cached rack: placement reads the sled rows once a ``placement_rack_max_age``,
not once a decision, and a stale rack never overcommits a sled, never places on a sled that
left service or maintenance, and never refuses a start that the rack as it is could take."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from fastapi.testclient import TestClient

from skylight.api.app import create_app
from skylight.store import sleds as sled_rows
from tests.conftest import AdminClient, instance_body, make_settings
from tests.oxide_schema import wait_for
from tests.test_api_instances import assert_reservations_match, sled_of, sleds

P = {"project": "demo"}


@pytest.fixture
def stale(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    """A control plane whose cached rack never ages out on its own (4 sleds of 16 threads,
    64 GiB)."""
    settings = make_settings(tmp_path / "data", db_url, placement_rack_max_age=3600.0)
    with AdminClient(create_app(settings)) as c:
        assert c.post("/v1/projects", json={"name": "demo", "description": ""}).status_code == 201
        yield c


def _start(c: TestClient, name: str, ncpus: int, memory_gib: int = 4) -> Any:
    r = c.post("/v1/instances", params=P, json=instance_body(name, ncpus, memory_gib))
    assert r.status_code == 201, r.text
    return r.json()


def test_the_rack_is_read_once_for_many_decisions(stale: TestClient) -> None:
    calls: list[int] = []
    real = sled_rows.rack

    def counted(conn: Any) -> Any:
        calls.append(1)
        return real(conn)

    _start(stale, "first", 1)
    with mock.patch.object(sled_rows, "rack", counted):
        for i in range(6):
            assert _start(stale, f"vm{i}", 1)["run_state"] == "running"
    assert calls == []  # six decisions, no read of the sled rows
    assert_reservations_match(stale)


def test_a_stale_rack_never_places_on_a_sled_that_left(stale: TestClient) -> None:
    _start(stale, "warm", 1)  # the cache now holds every sled as provisionable
    keep = sleds(stale)[0]["id"]
    for s in sleds(stale)[1:]:
        r = stale.put(
            f"/v1/system/hardware/sleds/{s['id']}/provision-policy",
            json={"state": "non_provisionable"},
        )
        assert r.status_code == 200
    placed = {sled_of(stale, _start(stale, f"vm{i}", 2)["id"]) for i in range(6)}
    assert placed == {keep}
    assert_reservations_match(stale)


def test_a_stale_rack_never_overcommits(stale: TestClient) -> None:
    _start(stale, "warm", 1)
    # Fill the rack: 4 sleds x 16 threads, 1 taken; the cache still sees them nearly empty.
    for i in range(15):
        assert _start(stale, f"fill{i}", 4)["run_state"] == "running"
    for s in sleds(stale):
        assert s["reserved_hardware_threads"] <= s["usable_hardware_threads"]
    assert_reservations_match(stale)


def test_a_refusal_is_decided_on_the_rack_as_it_is(stale: TestClient) -> None:
    # Fill every sled; the cache, read when they were full, says there is no room ...
    for i in range(4):
        _start(stale, f"big{i}", 16, 8)
    r = stale.post("/v1/instances", params=P, json=instance_body("late", 8, 8, start=False))
    assert r.status_code == 201
    r = stale.post("/v1/instances/late/start", params=P)
    assert r.status_code == 507, r.text
    diagnosis = r.json()["reason"]["diagnosis"]
    assert diagnosis["counts"]["too_few_cpus"] == 4
    # ... then room is made behind its back: the start succeeds, it is not refused on the
    # stale figures.
    for name in ("big0", "big1"):
        assert stale.post(f"/v1/instances/{name}/stop", params=P).status_code == 202
    for name in ("big0", "big1"):
        wait_for(
            lambda name=name: (
                stale.get(f"/v1/instances/{name}", params=P).json()["run_state"] == "stopped"
            ),
            f"{name} stopped",
        )
    r = stale.post("/v1/instances/late/start", params=P)
    assert r.status_code == 202, r.text
    assert_reservations_match(stale)
