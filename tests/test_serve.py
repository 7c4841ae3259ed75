"""``skylight serve`` takes its settings from flags or SKYLIGHT_* variables, migrates its
store at start, and keeps its data across restarts."""

from __future__ import annotations

import os
import sqlite3
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


def _replicas(data: Path) -> list[tuple[str, str, str, str | None]]:
    """The replica rows of the SQLite store in ``data`` (id, bind, started, stopped), read
    without writing."""
    with sqlite3.connect(f"file:{data / 'skylight.db'}?mode=ro", uri=True) as db:
        return list(db.execute("SELECT id, bind, time_started, time_stopped FROM replica"))


def _refused(env: dict[str, str], *args: str) -> str:
    """Run a serve that must refuse: it exits non-zero within seconds (nothing started),
    and its whole output is returned."""
    proc = _serve(env, *args)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode not in (0, None), out
    return out.decode()


def test_a_second_serve_is_refused_at_once_in_one_line(tmp_path: Path) -> None:
    """A second ``make run``: the same port and store, then the same store on another port,
    then another store on the same port. Each is refused before it touches any store, in one
    line naming the flag to use; the first replica's store is untouched and it answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = tmp_path / "d"
    env = {"SKYLIGHT_DATA_DIR": str(data)}
    first = _serve({**env, "SKYLIGHT_BIND": f"127.0.0.1:{port}"}, "--sim-sleds", "1")
    try:
        _up(url, first)
        before = _replicas(data)
        assert len(before) == 1 and before[0][3] is None  # the first, live

        out = _refused({**env, "SKYLIGHT_BIND": f"127.0.0.1:{port}"}, "--sim-sleds", "1")
        assert out.strip() == (
            f"skylight: 127.0.0.1:{port} is already in use (another skylight serve?); "
            "choose another with --bind HOST:PORT"
        ), out

        other = free_port()
        out = _refused({**env, "SKYLIGHT_BIND": f"127.0.0.1:{other}"}, "--sim-sleds", "1")
        lines = out.strip().splitlines()
        assert len(lines) == 1, out
        assert str(data) in lines[0] and "--data-dir DIR" in lines[0], out
        assert f"(pid {first.pid})" in lines[0], out
        assert "Traceback" not in out

        # Another store, the same port: the port is what is taken, and the new data dir
        # was never migrated into.
        elsewhere = tmp_path / "elsewhere"
        out = _refused({"SKYLIGHT_DATA_DIR": str(elsewhere), "SKYLIGHT_BIND": f"127.0.0.1:{port}"})
        assert "is already in use" in out and "--bind HOST:PORT" in out, out
        assert not (elsewhere / "skylight.db").exists()

        # Nothing of the refused ones reached the store: no second replica, the first one's
        # row as it was (not marked stopped by a namesake's shutdown), no second admin
        # password; and the first still serves.
        assert _replicas(data) == before
        assert sorted(p.name for p in data.iterdir() if p.name.startswith("replica-")) == [
            f"replica-127.0.0.1-{port}.id"
        ]
        with _admin(url, data) as api:
            assert api.get("/v1/system/hardware/sleds").status_code == 200
    finally:
        _stop(first)


def test_the_store_lock_dies_with_its_process(tmp_path: Path) -> None:
    """A replica killed outright (no shutdown) leaves no claim behind: the next start on
    the same store and port comes up."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"SKYLIGHT_DATA_DIR": str(tmp_path / "d"), "SKYLIGHT_BIND": f"127.0.0.1:{port}"}
    proc = _serve(env, "--sim-sleds", "1")
    _up(url, proc)
    proc.kill()
    proc.wait(20)
    proc = _serve(env, "--sim-sleds", "1")
    try:
        _up(url, proc)
    finally:
        _stop(proc)
