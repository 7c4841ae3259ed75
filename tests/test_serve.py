"""``skylight serve`` takes its settings from flags or SKYLIGHT_* variables, migrates its
store at start, and keeps its data across restarts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from skylight import login_flow
from skylight.testing import free_port


def _serve(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "skylight.cli.main", "serve", "--log-level", "warning", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else b""
        try:
            if httpx.get(f"{url}/v1/ping", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError("server did not come up")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(20)


def _admin(url: str, data_dir: Path) -> httpx.Client:
    """The recovery admin, logged in with the password the first start generated."""
    password = (data_dir / "recovery-password").read_text().strip()
    with httpx.Client(base_url=url, timeout=30) as anonymous:
        token = login_flow.with_password(anonymous, "recovery", "admin", password)
    return httpx.Client(base_url=url, timeout=30, headers={"authorization": f"Bearer {token}"})


def test_environment_variables_and_data_surviving_a_restart(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = tmp_path / "d"
    env = {"SKYLIGHT_BIND": f"127.0.0.1:{port}", "SKYLIGHT_DATA_DIR": str(data)}
    proc = _serve(env, "--sim-sleds", "3")
    try:
        _up(url, proc)
        assert (data / "skylight.db").exists()  # the default store, in the data dir
        # The first start made the recovery admin, its password generated into the data
        # directory (owner-only) and only the file's path said.
        assert (data / "recovery-password").stat().st_mode & 0o777 == 0o600
        assert httpx.get(f"{url}/v1/projects").status_code == 401
        with _admin(url, data) as api:
            assert len(api.get("/v1/system/hardware/sleds").json()["items"]) == 3
            r = api.post("/v1/projects", json={"name": "kept", "description": ""})
            assert r.status_code == 201
    finally:
        _stop(proc)
    out = proc.stdout.read().decode() if proc.stdout else ""
    assert "recovery-password" in out
    assert (data / "recovery-password").read_text().strip() not in out
    proc = _serve(env, "--sim-sleds", "3")
    try:
        _up(url, proc)
        with _admin(url, data) as api:
            names = [p["name"] for p in api.get("/v1/projects").json()["items"]]
        assert names == ["kept"]
    finally:
        _stop(proc)
    other = tmp_path / "elsewhere.db"
    proc = _serve({**env, "SKYLIGHT_DB": f"sqlite:///{other}"})
    try:
        _up(url, proc)
        assert other.exists()
        with _admin(url, data) as api:  # a new store: bootstrapped with the same password
            assert api.get("/v1/projects").json()["items"] == []
            assert len(api.get("/v1/system/hardware/sleds").json()["items"]) == 8
    finally:
        _stop(proc)


def test_bad_bind_is_refused(tmp_path: Path) -> None:
    proc = _serve({"SKYLIGHT_DATA_DIR": str(tmp_path)}, "--bind", "nonsense")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert b"HOST:PORT" in out
