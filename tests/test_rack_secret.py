"""The rack secret: sled agents and the control plane know each other, and nobody else.

The file (generated 0600 for the embedded default and reused; a given one loaded, never
made), the credentials derived from it, the control plane refusing sled-agent calls without
the sled's credential (401) or for another sled (403), a lost-VMM report for a VMM the sled
does not hold changing nothing, the agent refusing calls without the control plane's
credential, and the secret appearing in no log and nowhere in the store.
"""

from __future__ import annotations

import asyncio
import logging
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from skylight.api.app import create_app
from skylight.cli import sled_agent as sled_agent_cli
from skylight.cli.main import app as cli
from skylight.config import Settings
from skylight.controlplane import ControlPlane, StartupRefused
from skylight.rack_secret import (
    RackSecret,
    RackSecretError,
    bearer,
    create,
    default_path,
    load,
)
from skylight.sled.agent import SledAgentError
from skylight.sled.http_client import HttpSledAgent
from skylight.sled_agent import AgentConfig, SledAgentService, create_agent_app
from skylight.store.engine import make_engine
from skylight.store.schema import instance, metadata, sled, vmm
from skylight.wire import JsonObject
from tests.conftest import AdminClient, instance_body, make_settings

P = {"project": "demo"}
OTHER = RackSecret(b"a-secret-of-another-rack-0123456789")


# -- the file and the credentials ------------------------------------------------------------


def test_create_writes_a_private_file_once_and_reuses_it(tmp_path: Path) -> None:
    path = tmp_path / "new" / "rack-secret"
    first = create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().strip()) == 64  # 32 random bytes, hex
    assert create(path) == first == load(path)  # the next start: the same secret
    assert [p.name for p in path.parent.iterdir()] == ["rack-secret"]  # no temporary left
    assert create(tmp_path / "another") != first


def test_load_refuses_a_missing_or_short_secret_without_showing_it(tmp_path: Path) -> None:
    with pytest.raises(RackSecretError, match="does not exist"):
        load(tmp_path / "nothing")
    short = tmp_path / "short"
    short.write_text("hunter2\n")
    with pytest.raises(RackSecretError, match="too short") as caught:
        load(short)
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(RackSecret(b"hunter2"))


def test_credentials_prove_their_role_and_their_sled() -> None:
    secret = RackSecret(b"0123456789abcdef0123456789abcdef")
    sled_a = secret.sled_credential("serial:with/odd chars é")
    assert secret.sled_serial(f"Bearer {sled_a}") == "serial:with/odd chars é"
    assert secret.sled_serial(f"bearer  {sled_a} ") == "serial:with/odd chars é"
    # made with another secret, tampered with, malformed, missing, or the wrong role: nobody
    tampered = sled_a[:-1] + ("0" if sled_a[-1] != "0" else "1")
    forged_name = secret.sled_credential("b").split(".")[0] + "." + sled_a.split(".", 2)[2]
    for header in (
        f"Bearer {OTHER.sled_credential('a')}",
        f"Bearer {tampered}",
        f"Bearer {forged_name}",
        f"Basic {sled_a}",
        "Bearer sled.%%%.00",
        "Bearer",
        "",
        None,
        f"Bearer {secret.control_plane_credential()}",
    ):
        assert secret.sled_serial(header) is None, header
    cp = secret.control_plane_credential()
    assert secret.is_control_plane(f"Bearer {cp}")
    for header in (None, "", f"Bearer {sled_a}", f"Bearer {OTHER.control_plane_credential()}"):
        assert not secret.is_control_plane(header)
    assert secret.key.decode() not in sled_a + cp  # the secret itself never travels


# -- the control plane: the embedded default, a given file -----------------------------------


def test_the_embedded_default_generates_the_secret_and_reuses_it(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", sleds=1)
    path = default_path(settings.data_dir)
    with AdminClient(create_app(settings)) as c:
        made = c.app.state.cp.rack_secret  # type: ignore[attr-defined]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load(path) == made
    with AdminClient(create_app(settings)) as c:
        assert c.app.state.cp.rack_secret == made  # type: ignore[attr-defined]


def test_a_given_secret_file_is_used_and_never_made(tmp_path: Path) -> None:
    given = tmp_path / "given-secret"
    settings = make_settings(tmp_path / "data", sleds=1)
    settings.rack_secret_file = given
    with pytest.raises(StartupRefused, match="given-secret does not exist") as caught:
        ControlPlane(settings)
    assert len(str(caught.value).splitlines()) == 1
    assert not given.exists() and not default_path(settings.data_dir).exists()
    secret = create(given)
    assert ControlPlane(settings).rack_secret == secret


# -- agent -> control plane ------------------------------------------------------------------


@pytest.fixture
def rig(settings: Settings, caplog: pytest.LogCaptureFixture) -> Iterator[TestClient]:
    """The control plane (with its simulated sleds), a project, every log record kept."""
    caplog.set_level(logging.DEBUG)
    with AdminClient(create_app(settings)) as c:
        assert c.post("/v1/projects", json={"name": "demo", "description": ""}).status_code == 201
        yield c


def _secret(client: TestClient) -> RackSecret:
    return client.app.state.cp.rack_secret  # type: ignore[attr-defined,no-any-return]


def _as_sled(client: TestClient, serial: str) -> dict[str, str]:
    return bearer(_secret(client).sled_credential(serial))


def _registration(serial: str) -> dict[str, Any]:
    return {
        "serial": serial,
        "url": "http://127.0.0.1:9",
        "cpus": 8,
        "memory": 8 * 1024**3,
        "local_storage": 0,
        "cpu_family": "amd_milan",
    }


def _rows(settings: Settings, query: Any) -> list[Any]:
    engine = make_engine(settings.resolved_db_url())
    try:
        with engine.connect() as conn:
            return list(conn.execute(query).all())
    finally:
        engine.dispose()


def _assert_error(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error_code"] == code and body["request_id"] and body["message"], body


def test_registration_needs_the_sleds_own_credential(rig: TestClient, settings: Settings) -> None:
    sleds_before = _rows(settings, sa.select(sled))
    body = _registration("intruder")
    for headers in (
        {},
        bearer(OTHER.sled_credential("intruder")),  # another rack's secret
        bearer(_secret(rig).control_plane_credential()),  # the control plane's role, not a sled's
        {"Authorization": "Bearer not-a-credential"},
    ):
        r = rig.post("/v1/system/sled-agents", json=body, headers=headers)
        _assert_error(r, 401, "Unauthorized")
    # A sled agent registers only itself: no taking over a sled that exists (sim-0000).
    taken = _registration("sim-0000")
    r = rig.post("/v1/system/sled-agents", json=taken, headers=_as_sled(rig, "intruder"))
    _assert_error(r, 403, "Forbidden")
    assert _rows(settings, sa.select(sled)) == sleds_before  # nothing stored or changed

    r = rig.post("/v1/system/sled-agents", json=body, headers=_as_sled(rig, "intruder"))
    assert r.status_code == 200, r.text
    assert r.json()["baseboard"]["serial"] == "intruder"


def _running(client: TestClient, name: str) -> tuple[str, str, str]:
    """Start an instance that is never restarted: (instance id, its VMM, its sled's serial)."""
    r = client.post(
        "/v1/instances", params=P, json=instance_body(name, auto_restart_policy="never")
    )
    assert r.status_code == 201 and r.json()["run_state"] == "running", r.text
    return r.json()["id"], *_vmm_of(client, r.json()["id"])


def _vmm_of(client: TestClient, instance_id: str) -> tuple[str, str]:
    settings: Settings = client.app.state.cp.settings  # type: ignore[attr-defined]
    (row,) = _rows(
        settings,
        sa.select(vmm.c.id, sled.c.serial)
        .join(sled, sled.c.id == vmm.c.sled_id)
        .where(vmm.c.instance_id == instance_id),
    )
    return str(row.id), str(row.serial)


def _sled_id(settings: Settings, serial: str) -> str:
    (row,) = _rows(settings, sa.select(sled.c.id).where(sled.c.serial == serial))
    return str(row.id)


def test_an_agent_reports_lost_vmms_only_for_its_own_sled(
    rig: TestClient, settings: Settings
) -> None:
    iid, vmm_id, serial = _running(rig, "web")
    other = next(s for s in ("sim-0000", "sim-0001") if s != serial)
    sled_id, other_id = _sled_id(settings, serial), _sled_id(settings, other)
    lost = {"vmm_id": vmm_id, "cause": "vmm_failure", "detail": "forged"}

    def unchanged() -> None:
        assert rig.get(f"/v1/instances/{iid}").json()["run_state"] == "running"
        assert _rows(settings, sa.select(vmm.c.id, vmm.c.state)) == [(vmm_id, "running")]
        assert _rows(settings, sa.select(instance.c.state)) == [("vmm",)]

    url = f"/v1/system/sled-agents/{sled_id}/vmm-lost"
    for headers in ({}, bearer(OTHER.sled_credential(serial))):
        _assert_error(rig.post(url, json=lost, headers=headers), 401, "Unauthorized")
    # Another sled's agent may not speak for this one ...
    _assert_error(rig.post(url, json=lost, headers=_as_sled(rig, other)), 403, "Forbidden")
    # ... nor report this sled's VMM as one of its own.
    r = rig.post(
        f"/v1/system/sled-agents/{other_id}/vmm-lost", json=lost, headers=_as_sled(rig, other)
    )
    _assert_error(r, 400, "InvalidRequest")
    unchanged()

    # The sled's own agent is believed.
    r = rig.post(url, json={**lost, "detail": "crashed"}, headers=_as_sled(rig, serial))
    assert r.status_code == 204, r.text
    assert rig.get(f"/v1/instances/{iid}").json()["run_state"] == "failed"


def test_the_secret_is_in_no_log_and_nowhere_in_the_store(
    rig: TestClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    secret = _secret(rig)
    iid, vmm_id, serial = _running(rig, "web")
    rig.post("/v1/system/sled-agents", json=_registration("x"), headers=_as_sled(rig, "x"))
    rig.post("/v1/system/sled-agents", json=_registration("y"), headers=_as_sled(rig, "x"))
    rig.post("/v1/system/sled-agents", json=_registration("y"), headers=bearer("sled.eQ.00"))
    rig.post(
        f"/v1/system/sled-agents/{_sled_id(settings, serial)}/vmm-lost",
        json={"vmm_id": vmm_id, "cause": "vmm_failure", "detail": ""},
        headers=_as_sled(rig, serial),
    )
    assert rig.get(f"/v1/instances/{iid}").json()["run_state"] == "failed"
    needles = [
        secret.key.decode(),
        secret.control_plane_credential(),
        secret.sled_credential("x").rsplit(".", 1)[1],
        secret.sled_credential(serial).rsplit(".", 1)[1],
    ]
    assert caplog.records  # the requests above were logged ...
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert not [n for n in needles if n in logged]  # ... without the secret or a credential
    stored = " ".join(
        repr(row) for table in metadata.sorted_tables for row in _rows(settings, table.select())
    )
    assert "sled.eQ" not in stored and not [n for n in needles if n in stored]


# -- control plane -> agent ------------------------------------------------------------------


def test_the_agent_answers_only_the_control_planes_credential(tmp_path: Path) -> None:
    secret = create(tmp_path / "rack-secret")
    config = AgentConfig(
        url="http://127.0.0.1:9",
        control_planes=["http://127.0.0.1:9"],  # nobody: it keeps trying to register
        serial="lonely",
        data_dir=tmp_path / "agent",
        rack_secret=secret,
    )
    with TestClient(create_agent_app(config)) as agent:
        refused = [
            {},
            bearer(OTHER.control_plane_credential()),
            bearer(secret.sled_credential("lonely")),  # an agent's credential, not the CP's
        ]
        for headers in refused:
            for method, path in (
                ("GET", "/health"),
                ("GET", "/vmms"),
                ("POST", "/power-off"),
                ("PUT", "/vmms/7b0e0c3c-8f4e-4d3f-9a56-0f1c1b6c2b1e"),
                ("POST", "/faults"),
            ):
                r = agent.request(method, path, headers=headers, json={})
                assert r.status_code == 401, (method, path, r.text)
                assert r.json()["error_code"] == "Unauthorized"
        cp = bearer(secret.control_plane_credential())
        assert agent.get("/health", headers=cp).json()["serial"] == "lonely"
        r = agent.post("/faults", headers=cp, json={"at": "register", "kind": "error"})
        assert r.status_code == 201, r.text


def test_the_control_plane_sends_its_credential_and_says_when_it_is_refused(
    tmp_path: Path,
) -> None:
    secret = create(tmp_path / "rack-secret")
    config = AgentConfig(
        url="http://agent",
        control_planes=["http://127.0.0.1:9"],
        serial="s1",
        data_dir=tmp_path / "agent",
        rack_secret=secret,
    )
    transport = httpx.ASGITransport(app=create_agent_app(config))

    async def health(credential: str) -> JsonObject:
        client = HttpSledAgent("http://agent", 5.0, credential, transport=transport)
        try:
            return await client.health()
        finally:
            await client.aclose()

    assert asyncio.run(health(secret.control_plane_credential()))["serial"] == "s1"
    with pytest.raises(SledAgentError, match="share one --rack-secret-file") as caught:
        asyncio.run(health(OTHER.control_plane_credential()))
    assert OTHER.control_plane_credential() not in caught.value.message


def test_an_agent_refused_by_the_control_plane_says_which_secret_to_check(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = create(tmp_path / "rack-secret")
    config = AgentConfig(
        url="http://agent",
        control_planes=["http://cp"],
        serial="s1",
        data_dir=tmp_path / "agent",
        rack_secret=secret,
    )
    service = SledAgentService(config)
    sent: list[str | None] = []

    def control_plane(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("authorization"))
        return httpx.Response(401, json={"error_code": "Unauthorized", "message": "no"})

    async def register() -> bool:
        await service.start()  # its client, with its credential
        assert service._client is not None
        service._client._transport = httpx.MockTransport(control_plane)
        try:
            return await service.register_once()
        finally:
            await service.stop()

    assert asyncio.run(register()) is False
    assert sent and set(sent) == {f"Bearer {secret.sled_credential('s1')}"}
    assert "is this agent's --rack-secret-file the control plane's?" in caplog.text


# -- the sled-agent command ------------------------------------------------------------------

AGENT = ["sled-agent", "--sim", "--bind", "127.0.0.1:12399", "--data-dir"]


def test_a_sled_agent_without_a_secret_refuses_to_start_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SKYLIGHT_DATA_DIR", raising=False)
    monkeypatch.delenv("SKYLIGHT_RACK_SECRET_FILE", raising=False)
    started: list[Any] = []
    monkeypatch.setattr(sled_agent_cli.uvicorn, "run", lambda app, **_: started.append(app))
    runner = CliRunner()
    args = [*AGENT, str(tmp_path / "agent")]

    r = runner.invoke(cli, args)
    assert r.exit_code == 2 and "no rack secret" in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    r = runner.invoke(cli, [*args, "--control-plane-data-dir", str(tmp_path / "cp")])
    assert r.exit_code == 2 and "rack-secret does not exist" in r.output, r.output
    assert not default_path(tmp_path / "cp").exists()  # an agent never makes one
    assert started == []

    # Given the control plane's data dir, it uses the secret the control plane generated.
    made = create(default_path(tmp_path / "cp"))
    r = runner.invoke(cli, [*args, "--control-plane-data-dir", str(tmp_path / "cp")])
    assert r.exit_code == 0, r.output
    assert started[0].state.service.config.rack_secret == made
    assert made.key.decode() not in r.output
