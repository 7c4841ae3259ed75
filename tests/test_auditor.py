"""The auditor explains any instance left in the dark, whatever put it there; a healthy
control plane gives it nothing to find."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from skylight.api.app import create_app
from skylight.background import auditor
from skylight.clock import now
from skylight.ids import new_id
from skylight.store.schema import instance, replica, saga
from tests.conftest import AdminClient, as_user, event_kinds, instance_body, make_settings

P = {"project": "demo"}


def _client(tmp_path: Path, db_url: str) -> TestClient:
    # The timer is off (an hour); each test runs passes itself.
    settings = make_settings(tmp_path / "data", db_url, audit_interval=3600.0, audit_after=0.3)
    return AdminClient(create_app(settings))


def _audit(client: TestClient) -> int:
    cp: Any = client.app.state.cp  # type: ignore[attr-defined]
    return client.portal.call(auditor.run_once, cp)  # type: ignore[union-attr]


def _found(client: TestClient) -> float:
    cp: Any = client.app.state.cp  # type: ignore[attr-defined]
    return sum(
        s.value
        for m in cp.metrics.in_the_dark.collect()
        for s in m.samples
        if s.name.endswith("_total")
    )


def _sql(client: TestClient, stmt: Any) -> None:
    cp: Any = client.app.state.cp  # type: ignore[attr-defined]
    client.portal.call(cp.store.tx, lambda c: c.execute(stmt))  # type: ignore[union-attr]


def test_healthy_instances_are_not_reported(tmp_path: Path, db_url: str) -> None:
    with _client(tmp_path, db_url) as client:
        client.post("/v1/projects", json={"name": "demo", "description": ""})
        assert client.post("/v1/instances", params=P, json=instance_body("up")).status_code == 201
        body = instance_body("down", start=False)
        assert client.post("/v1/instances", params=P, json=body).status_code == 201
        big = instance_body("huge", ncpus=64)  # fails to start: explained, not in the dark
        assert client.post("/v1/instances", params=P, json=big).status_code == 201
        time.sleep(0.5)
        assert _audit(client) == 0
        assert _found(client) == 0


def test_an_instance_nobody_works_on_is_explained_once(tmp_path: Path, db_url: str) -> None:
    """A bug leaves an instance meant to run with no operation and no reason."""
    with _client(tmp_path, db_url) as client:
        client.post("/v1/projects", json={"name": "demo", "description": ""})
        body = instance_body("lost", start=False)
        iid = client.post("/v1/instances", params=P, json=body).json()["id"]
        _sql(client, instance.update().where(instance.c.id == iid).values(intended_state="running"))
        assert _audit(client) == 0  # not yet: it changed just now
        time.sleep(0.5)
        assert _audit(client) == 1
        assert _audit(client) == 0  # explained now: not reported again
        view = client.get("/v1/instances/lost", params=P, headers=as_user(client)).json()
        assert view["status_reason"]["code"] == "operation_stuck", view
        assert view["status_reason"].get("internal") is None  # users: no internals
        assert event_kinds(client, "lost")[-1] == "instance.operation_stuck"
        assert _found(client) == 1


def test_a_stalled_saga_is_explained_with_where_it_stood(tmp_path: Path, db_url: str) -> None:
    """A start saga owned by a live replica that never runs it (bug 1 of issue 10)."""
    with _client(tmp_path, db_url) as client:
        client.post("/v1/projects", json={"name": "demo", "description": ""})
        body = instance_body("stalled", start=False)
        iid = client.post("/v1/instances", params=P, json=body).json()["id"]
        ghost, saga_id, t = new_id(), new_id(), now()
        _sql(
            client,
            replica.insert().values(
                id=ghost, bind="ghost:1", time_started=t, time_heartbeat=t.replace(year=t.year + 1)
            ),
        )
        _sql(
            client,
            saga.insert().values(
                id=saga_id,
                name="instance-start",
                state="running",
                params={},
                instance_id=iid,
                current_sec=ghost,
                adopt_generation=1,
                log_length=0,
                time_created=t,
            ),
        )
        time.sleep(0.5)
        assert _audit(client) == 1
        assert _audit(client) == 0  # once per stalled saga
        view = client.get("/v1/instances/stalled", params=P).json()  # the admin: an operator
        reason = view["status_reason"]
        assert reason["code"] == "operation_stuck", view
        assert reason["internal"]["saga_id"] == saga_id
        assert reason["internal"]["saga_owner"] == ghost
        assert reason["internal"]["case"] == "stalled_operation"
        events = client.get("/v1/instances/stalled/events", params=P).json()["items"]
        assert events[0]["operation_id"] == saga_id
