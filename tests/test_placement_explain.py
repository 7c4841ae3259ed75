"""The placement dry run, through the API and through ``skylight placement explain``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from skylight.cli.main import app
from skylight.placement.filters import CHECKS
from skylight.testing import ServerProcess
from tests.conftest import GiB, as_user, instance_body
from tests.oxide_schema import wait_for
from tests.test_cli_views import user_token_of

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


def _explain(server: ServerProcess, instance: str, token: str | None = None) -> Result:
    env = {"SKYLIGHT_TOKEN": token} if token else {}
    return CliRunner().invoke(
        app, ["placement", "explain", instance, "-p", "demo", "--url", server.url], env=env
    )


def _sleds(server: ServerProcess) -> list[dict[str, Any]]:
    with server.client() as http:
        return list(http.get("/v1/system/hardware/sleds").json()["items"])


def _placement(server: ServerProcess, instance: str) -> dict[str, Any]:
    with server.client() as http:
        return dict(http.get(f"/v1/instances/{instance}/placement", params=P).json())


def test_cli_explain_fits_names_the_sled_for_operators_only(server: ServerProcess) -> None:
    # One sled nearly full: the other is the only one "small" can go to.
    with server.client(timeout=60) as http:
        r = http.post("/v1/instances", params=P, json=instance_body("filler", ncpus=7))
        assert r.status_code == 201, r.text
    try:
        (free,) = [s for s in _sleds(server) if s["reserved_hardware_threads"] == 0]
        shown = _explain(server, "small")
        body = _placement(server, "small")
    finally:
        with server.client(timeout=60) as http:
            assert http.post("/v1/instances/filler/stop", params=P).status_code == 202
        wait_for(
            lambda: not any(s["reserved_hardware_threads"] for s in _sleds(server)),
            "the filler's sled freed",
        )
    serial = free["baseboard"]["serial"]
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith("small (2 vCPUs, 4 GiB)")  # by its name, not its id
    assert f"fits now on sled {serial}" in shown.output
    assert body["instance_id"] not in shown.output and body["sled_id"] not in shown.output

    as_user = _explain(server, "small", user_token_of(server, "dave"))
    assert as_user.exit_code == 0, as_user.output
    assert "fits now" in as_user.output and "on sled" not in as_user.output
    assert not any(s["baseboard"]["serial"] in as_user.output for s in _sleds(server))


def test_cli_explain_refusal_every_reason_and_for_operators_every_sled(
    server: ServerProcess,
) -> None:
    sleds = _sleds(server)
    body = _placement(server, "huge")
    counts = body["reason"]["diagnosis"]["counts"]
    shown = _explain(server, "huge")
    assert shown.exit_code == 4, shown.output
    out = shown.output
    assert out.startswith("huge (9 vCPUs, 4 GiB)") and body["instance_id"] not in out
    lines = out.splitlines()
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("sleds elim")) :]
    for check, words in CHECKS.items():  # every elimination reason, with its count
        row = next(line for line in lines if line.startswith(words))
        assert row.split()[-1] == str(counts[check])
    assert next(line for line in lines if line.startswith("all sleds")).split()[-1] == "2"
    # Every sled is too small: the size is what to change, so no shortfall of free room.
    assert body["reason"]["diagnosis"]["shortfall"] is None and "shortfall" not in out
    assert "Each sled has at most 8 vCPUs; it asks for 9." in " ".join(out.split())
    # Every sled by its serial, its free room against the request, the checks it failed.
    for s in sleds:
        row = next(line for line in lines if line.startswith(s["baseboard"]["serial"] + " "))
        free = s["usable_hardware_threads"] - s["reserved_hardware_threads"]
        free_gib = (s["usable_physical_ram"] - s["reserved_memory"]) // GiB
        assert row.split()[1:3] == [f"{free}/9", f"{free_gib}/4"]
        assert row.endswith("too small for it, too few free vCPUs")
        assert s["id"] not in out

    as_user = _explain(server, "huge", user_token_of(server, "erin"))
    assert as_user.exit_code == 4, as_user.output
    for words in CHECKS.values():
        assert words in as_user.output
    assert "Each sled has at most 8 vCPUs; it asks for 9." in " ".join(as_user.output.split())
    assert "every sled" not in as_user.output
    assert not any(s["baseboard"]["serial"] in as_user.output for s in sleds)


def test_explain_of_a_large_rack_names_its_groups_samples_by_serial(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the per-sled limit a diagnosis groups sleds by the checks they failed, with a
    sample of each group: the operator reads the samples by serial too."""
    from io import StringIO

    from rich.console import Console

    from skylight.cli import placement

    console = Console(file=StringIO(), width=80)
    monkeypatch.setattr(placement, "out", console)
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(3)]
    sleds = {
        i: placement.SledRoom(i, f"sim-{n:04d}", free_cpus=4, free_memory=8 * GiB)
        for n, i in enumerate(ids)
    }
    diagnosis = {
        "sleds_total": 300,
        "counts": {"not_provisionable": 100, "too_few_cpus": 200},
        "shortfall": {"vcpus": 4, "memory": 0, "local_storage": 0},
        "sled_groups": [
            {"checks": ["too_few_cpus"], "count": 200, "sample": ids[:2]},
            {"checks": ["not_provisionable"], "count": 100, "sample": ids[2:]},
        ],
    }
    body = {
        "instance_id": "x",
        "fits": False,
        "request": {"ncpus": 8, "memory": 4 * GiB, "local_storage": 0},
        "broken_preferences": [],
        "reason": {"code": "insufficient_capacity", "message": "No sled.", "transient": True,
                   "diagnosis": diagnosis},
    }  # fmt: skip
    placement._show(placement.Explained(body, "big", sleds))
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    lines = shown.splitlines()
    groups = "\n".join(lines[next(i for i, x in enumerate(lines) if x.startswith("sleds by")) :])
    assert groups.split()[groups.split().index("200") + 1 :][:2] == ["sim-0000,", "sim-0001"]
    assert groups.split()[groups.split().index("100") + 1] == "sim-0002"
    assert "shortfall: the closest sled lacks 4 vCPUs" in shown
    assert not any(i in shown for i in ids)
