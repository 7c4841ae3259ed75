"""The placement dry run, through the API and through ``skylight placement explain``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from skylight.cli.main import app
from skylight.testing import ServerProcess
from tests.conftest import GiB, as_user, instance_body

P = {"project": "demo"}


def test_explain_a_fitting_instance(client: TestClient, project: str) -> None:
    client.post("/v1/instances", params=P, json=instance_body("a", start=False))
    r = client.get("/v1/instances/a/placement", params=P, headers=as_user(client))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fits"] is True
    assert body["sled_id"] is None  # users do not see sled ids
    assert body["reason"] is None
    assert body["request"]["ncpus"] == 2
    r = client.get("/v1/instances/a/placement", params=P)  # the admin, a fleet viewer
    assert r.json()["sled_id"] is not None


def test_explain_does_not_reserve(client: TestClient, project: str) -> None:
    client.post("/v1/instances", params=P, json=instance_body("a", ncpus=16, start=False))
    for _ in range(10):
        assert client.get("/v1/instances/a/placement", params=P).json()["fits"]
    sleds = client.get("/v1/system/hardware/sleds").json()["items"]
    assert sum(s["reserved_hardware_threads"] for s in sleds) == 0


def test_explain_a_refusal_with_a_diagnosis(client: TestClient, project: str) -> None:
    # The test rack: 4 sleds of 16 threads. Fill three, take one out of provisioning.
    for i in range(3):
        client.post("/v1/instances", params=P, json=instance_body(f"f{i}", ncpus=16))
    sleds = client.get("/v1/system/hardware/sleds").json()["items"]
    free = next(s for s in sleds if s["reserved_hardware_threads"] == 0)
    r = client.put(
        f"/v1/system/hardware/sleds/{free['id']}/provision-policy",
        json={"state": "non_provisionable"},
    )
    assert r.status_code == 200
    client.post("/v1/instances", params=P, json=instance_body("x", ncpus=4, start=False))
    body = client.get("/v1/instances/x/placement", params=P, headers=as_user(client)).json()
    assert body["fits"] is False
    reason = body["reason"]
    assert reason["code"] == "capacity_in_maintenance"
    assert reason["transient"] is True
    assert reason["diagnosis"]["counts"]["not_provisionable"] == 1
    assert reason["diagnosis"]["counts"]["too_few_cpus"] == 3
    assert sum(reason["diagnosis"]["counts"].values()) == 4
    assert "sleds" not in reason["diagnosis"] and "internal" not in reason
    op = client.get("/v1/instances/x/placement", params=P)  # the admin, a fleet viewer
    per_sled = op.json()["reason"]["diagnosis"]["sleds"]
    assert per_sled[free["id"]] == ["not_provisionable"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    data = tmp_path_factory.mktemp("cli")
    proc = ServerProcess(Path(data), args=["--sim-sleds", "2", "--sim-sled-cpus", "8"])
    proc.start()
    with proc.client() as http:
        http.post("/v1/projects", json={"name": "demo", "description": ""})
        http.post("/v1/instances", params=P, json=instance_body("small", start=False))
        http.post("/v1/instances", params=P, json=instance_body("huge", ncpus=9, start=False))
    os.environ["SKYLIGHT_TOKEN"] = proc.token  # the CLI's credential, as a script's would be
    yield proc  # type: ignore[misc]
    os.environ.pop("SKYLIGHT_TOKEN", None)
    proc.stop()


def test_cli_explain_fits(server: ServerProcess) -> None:
    result = CliRunner().invoke(
        app, ["placement", "explain", "small", "-p", "demo", "--url", server.url]
    )
    assert result.exit_code == 0, result.output
    assert "fits now" in result.output


def test_cli_explain_permanent_refusal(server: ServerProcess) -> None:
    result = CliRunner().invoke(
        app, ["placement", "explain", "huge", "-p", "demo", "--url", server.url]
    )
    assert result.exit_code == 4, result.output  # permanent: the user must change something
    assert "exceeds_sled_size" in result.output
    assert "needs a change by you" in result.output
    assert "Request at most 8 vCPUs" in result.output


def test_cli_explain_json_and_operator(server: ServerProcess) -> None:
    result = CliRunner().invoke(
        app,
        ["placement", "explain", "huge", "-p", "demo", "--url", server.url, "--json"],
    )
    body = json.loads(result.output)
    # 9 vCPUs on sleds of 8: too small, not short of free vCPUs.
    assert body["reason"]["diagnosis"]["counts"]["too_small"] == 2
    assert len(body["reason"]["diagnosis"]["sleds"]) == 2
    assert body["request"]["memory"] == 4 * GiB


def test_cli_unknown_instance(server: ServerProcess) -> None:
    result = CliRunner().invoke(
        app, ["placement", "explain", "nope", "-p", "demo", "--url", server.url]
    )
    assert result.exit_code == 1
