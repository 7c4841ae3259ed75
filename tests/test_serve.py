"""``skylight serve`` takes its settings from flags or SKYLIGHT_* variables, migrates its
store at start, and keeps its data across restarts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

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
            if httpx.get(f"{url}/v1/me", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError("server did not come up")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(20)


def test_environment_variables_and_data_surviving_a_restart(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"SKYLIGHT_BIND": f"127.0.0.1:{port}", "SKYLIGHT_DATA_DIR": str(tmp_path / "d")}
    proc = _serve(env, "--sim-sleds", "3")
    try:
        _up(url, proc)
        assert (tmp_path / "d" / "skylight.db").exists()  # the default store, in the data dir
        assert len(httpx.get(f"{url}/v1/system/hardware/sleds").json()["items"]) == 3
        r = httpx.post(f"{url}/v1/projects", json={"name": "kept", "description": ""})
        assert r.status_code == 201
    finally:
        _stop(proc)
    proc = _serve(env, "--sim-sleds", "3")
    try:
        _up(url, proc)
        names = [p["name"] for p in httpx.get(f"{url}/v1/projects").json()["items"]]
        assert names == ["kept"]
    finally:
        _stop(proc)
    other = tmp_path / "elsewhere.db"
    proc = _serve({**env, "SKYLIGHT_DB": f"sqlite:///{other}"})
    try:
        _up(url, proc)
        assert other.exists()
        assert httpx.get(f"{url}/v1/projects").json()["items"] == []
        assert len(httpx.get(f"{url}/v1/system/hardware/sleds").json()["items"]) == 8
    finally:
        _stop(proc)


def test_bad_bind_is_refused(tmp_path: Path) -> None:
    proc = _serve({"SKYLIGHT_DATA_DIR": str(tmp_path)}, "--bind", "nonsense")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert b"HOST:PORT" in out
