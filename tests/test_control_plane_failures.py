"""When the control plane itself fails: a replica killed at the worst moment of a saga, a
store that cannot be reached, a replica told to stop. Every instance ends running or
explained, without a second restart.

Crash points (``SKYLIGHT_CRASH_AT``, see ``skylight.sagas.crash``) kill the server exactly in
the windows that random kills hit once in hundreds of runs.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from skylight.api.app import create_app
from skylight.rack_secret import create
from skylight.sagas.crash import ENV, EXIT_STATUS
from skylight.store.schema import saga
from skylight.testing import ServerProcess, SledAgentProcess
from tests.conftest import AdminClient, instance_body, make_settings, pg_allow_connections
from tests.test_chaos import _wait

pytestmark = pytest.mark.slow
P = {"project": "demo"}
ASYNC = {"Prefer": "respond-async"}


def _kinds(api: httpx.Client, name: str) -> list[str]:
    r = api.get(f"/v1/instances/{name}/events", params={**P, "limit": 100})
    assert r.status_code == 200, r.text
    return [e["kind"] for e in reversed(r.json()["items"])]


def _unfinished(db_url: str) -> list[Any]:
    engine = sa.create_engine(
        db_url if db_url.startswith("sqlite") else "postgresql+psycopg://" + db_url.split("://")[1]
    )
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(saga.c.id, saga.c.name).where(
                        saga.c.state.in_(("running", "unwinding"))
                    )
                )
            )
    finally:
        engine.dispose()


# -- crash points --------------------------------------------------------------------------


CRASH_POINTS = [
    # The create's step ran, its log entry and end never landed: whoever resumes it re-runs
    # it, and the end it then commits begins the start (this stranded the start before).
    "before_log:instance-create/create_instance_record",
    # The create's end (which began the start) committed; nothing after it ran.
    "after_end:instance-create",
    # The start saga exists, no step logged.
    "before_first_step:instance-start",
    # The sled was reserved, the log does not say so.
    "before_log:instance-start/reserve_sled",
]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_create_killed_at_a_crash_point_ends_running_after_one_restart(
    tmp_path: Path, db_url: str, point: str
) -> None:
    server = ServerProcess(tmp_path / "data", db=db_url, args=["--sim-start-delay", "0.2"])
    server.env = {ENV: point}
    server.start()
    try:
        api = server.client(timeout=15)
        assert api.post("/v1/projects", json={"name": "demo", "description": ""}).status_code == 201
        try:  # the server dies under the request, or (start points) right after it
            api.post("/v1/instances", params=P, json=instance_body("web"), headers=ASYNC)
        except httpx.HTTPError:
            pass
        assert server.proc is not None
        assert server.proc.wait(10) == EXIT_STATUS, server.log()
        server.proc = None
        server.env = {}
        server.start()
        api = server.client(timeout=15)
        view = _wait(
            "the instance to be running",
            lambda: (
                (v := api.get("/v1/instances/web", params=P).json()).get("run_state") == "running"
                and v
            ),
        )
        assert view["intended_state"] == "running" and view["status_reason"] is None, view
        kinds = _kinds(api, "web")
        assert kinds[:2] == ["instance.created", "instance.start_requested"], kinds
        assert kinds.count("instance.running") == 1, kinds
        assert "instance.start_failed" not in kinds, kinds
        _wait("every saga to end", lambda: _unfinished(db_url) == [])
    finally:
        server.stop()


# -- the store out of reach ------------------------------------------------------------------


def test_outage_answers_503_and_sagas_wait_it_out(tmp_path: Path, pg_url: str) -> None:
    settings = make_settings(tmp_path / "data", pg_url, start_delay=1.5)
    with AdminClient(create_app(settings)) as client:
        cp = client.app.state.cp  # type: ignore[attr-defined]
        assert (
            client.post("/v1/projects", json={"name": "demo", "description": ""}).status_code == 201
        )
        names = [f"i{i}" for i in range(3)]
        for name in names:
            r = client.post("/v1/instances", params=P, json=instance_body(name), headers=ASYNC)
            assert r.status_code == 201, r.text
        pg_allow_connections(pg_url, False)
        try:
            r = client.get("/v1/projects")
            assert r.status_code == 503, r.text
            body = r.json()
            assert body["error_code"] == "ServiceNotAvailable", body
            assert body["request_id"] and r.headers["retry-after"].isdigit(), (body, r.headers)
            time.sleep(3.0)  # the VMMs finish booting; their sagas cannot record it
        finally:
            pg_allow_connections(pg_url, True)
        _wait(
            "every start to end after the outage",
            lambda: all(
                client.get(f"/v1/instances/{n}", params=P).json()["run_state"] == "running"
                for n in names
            ),
        )
        assert cp.executor.store_waits > 0  # they did meet the outage
        for name in names:
            kinds = _kinds_tc(client, name)
            assert kinds.count("instance.running") == 1, kinds
            assert "instance.start_failed" not in kinds, kinds
        assert _unfinished(pg_url) == []
        assert client.get("/v1/projects").status_code == 200


def _kinds_tc(client: TestClient, name: str) -> list[str]:
    r = client.get(f"/v1/instances/{name}/events", params={**P, "limit": 100})
    return [e["kind"] for e in reversed(r.json()["items"])]


# -- a replica told to stop ------------------------------------------------------------------


def test_sigterm_hands_sagas_to_a_live_peer(tmp_path: Path, pg_url: str) -> None:
    """A is stopped (SIGTERM) with starts in flight; with an adoption timeout of 60 s, the
    starts can end in time only if A hands them over (or finishes them) as it stops."""
    args = [
        "--no-sim",
        "--adoption-timeout",
        "60",
        "--heartbeat-interval",
        "0.3",
        "--start-wait",
        "20",
    ]
    secret = tmp_path / "rack-secret"  # one rack: its replicas and agents share the secret
    create(secret)
    a = ServerProcess(tmp_path / "a", db=pg_url, args=args, rack_secret_file=secret)
    b = ServerProcess(tmp_path / "b", db=pg_url, args=args, rack_secret_file=secret)
    a.start()
    b.start()
    urls = f"{a.url},{b.url}"
    agents = [
        SledAgentProcess(
            tmp_path / f"s{i}",
            urls,
            rack_secret_file=secret,
            cpus=32,
            memory_gib=128,
            start_delay=1.5,
        )
        for i in range(2)
    ]
    try:
        for agent in agents:
            agent.start()
        api_a = a.client(timeout=15)
        api_b = b.client(timeout=15)
        _wait(
            "both sleds to register",
            lambda: len(api_b.get("/v1/system/hardware/sleds").json()["items"]) == 2,
        )
        assert (
            api_a.post("/v1/projects", json={"name": "demo", "description": ""}).status_code == 201
        )
        names = [f"i{i}" for i in range(6)]
        for name in names:
            r = api_a.post("/v1/instances", params=P, json=instance_body(name), headers=ASYNC)
            assert r.status_code == 201, r.text
        t0 = time.monotonic()
        assert a.proc is not None
        a.proc.terminate()
        # uvicorn re-raises the signal once its graceful shutdown is over: -15, not a kill.
        assert a.proc.wait(30) in (0, -15), a.log()
        a.proc = None
        _wait(
            "every start to end on B",
            lambda: all(
                api_b.get(f"/v1/instances/{n}", params=P).json()["run_state"] == "running"
                for n in names
            ),
            timeout=30,
        )
        elapsed = time.monotonic() - t0
        assert elapsed < 30, elapsed  # well inside the 60 s adoption timeout
        assert _unfinished(pg_url) == []
        for name in names:
            kinds = _kinds(api_b, name)
            assert kinds.count("instance.running") == 1, kinds
    finally:
        for agent in agents:
            agent.kill()
        a.kill()
        b.stop()


def test_last_event_id_beyond_the_newest_is_refused(client: TestClient, project: str) -> None:
    r = client.get("/v1/events/stream", params=P, headers={"Last-Event-ID": "999999"})
    assert r.status_code == 400, r.text
    assert "beyond the newest event" in r.json()["message"]


def test_crash_point_syntax() -> None:
    from skylight.sagas.crash import CrashPoint

    assert CrashPoint.parse("before_log:instance-start/reserve_sled") == CrashPoint(
        "before_log", "instance-start", "reserve_sled"
    )
    for bad in ("nowhere:instance-start", "after_end", "after_end:"):
        with pytest.raises(ValueError):
            CrashPoint.parse(bad)


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_create_killed_at_a_crash_point_is_finished_by_a_peer(
    tmp_path: Path, pg_url: str, point: str
) -> None:
    """A dies at a crash point of the create or the start it begins; B adopts what A left,
    finishes it, and the instance runs on B with one start (bug 1 of issue 10, adoption
    side)."""
    args = ["--no-sim", "--adoption-timeout", "2", "--heartbeat-interval", "0.3"]
    secret = tmp_path / "rack-secret"  # one rack: its replicas and agents share the secret
    create(secret)
    a = ServerProcess(tmp_path / "a", db=pg_url, args=args, rack_secret_file=secret)
    b = ServerProcess(tmp_path / "b", db=pg_url, args=args, rack_secret_file=secret)
    a.env = {ENV: point}
    a.start()
    b.start()
    agent = SledAgentProcess(
        tmp_path / "s",
        f"{a.url},{b.url}",
        rack_secret_file=secret,
        cpus=32,
        memory_gib=128,
        start_delay=0.2,
    )
    try:
        agent.start()
        api_a = a.client(timeout=15)
        api_b = b.client(timeout=15)
        _wait(
            "the sled to register", lambda: api_b.get("/v1/system/hardware/sleds").json()["items"]
        )
        assert api_a.post("/v1/projects", json={"name": "demo", "description": ""}).is_success
        try:
            api_a.post("/v1/instances", params=P, json=instance_body("web"), headers=ASYNC)
        except httpx.HTTPError:
            pass
        assert a.proc is not None
        assert a.proc.wait(10) == EXIT_STATUS, a.log()
        a.proc = None
        _wait(
            "B to adopt the create and start the instance",
            lambda: api_b.get("/v1/instances/web", params=P).json().get("run_state") == "running",
        )
        kinds = _kinds(api_b, "web")
        assert kinds.count("instance.start_requested") == 1, kinds  # one start, no restart
        assert kinds.count("instance.running") == 1, kinds
        assert "instance.start_failed" not in kinds, kinds
        assert "instance.operation_adopted" in kinds, kinds
        _wait("every saga to end", lambda: _unfinished(pg_url) == [])
    finally:
        agent.kill()
        a.kill()
        b.stop()


# -- starting before the store ---------------------------------------------------------------


def test_a_replica_started_before_its_store_waits_for_it(tmp_path: Path, pg_url: str) -> None:
    """The database refuses connections as the replica starts (a rack powering on): the
    replica says once that it waits, and serves as soon as the database answers."""
    server = ServerProcess(tmp_path / "data", db=pg_url, args=["--sim-sleds", "1"])
    pg_allow_connections(pg_url, False)

    def open_once_it_waits() -> None:  # (however long the server takes to get there)
        deadline = time.monotonic() + 60
        while "waiting for the store at" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # it goes on waiting a while
        pg_allow_connections(pg_url, True)

    opened = threading.Thread(target=open_once_it_waits, daemon=True)
    opened.start()
    try:
        server.start(timeout=30)
        api = server.client(timeout=15)
        assert api.post("/v1/projects", json={"name": "demo", "description": ""}).is_success
        log = server.log()
        assert log.count("waiting for the store at") == 1, log
        assert "the store answers; starting" in log, log
    finally:
        opened.join()
        pg_allow_connections(pg_url, True)
        server.stop()


def test_a_store_that_never_answers_ends_the_start_with_a_reason(
    tmp_path: Path, pg_url: str
) -> None:
    secret_url = pg_url.replace("postgres@", "postgres:hunter2@", 1)
    server = ServerProcess(tmp_path / "data", db=secret_url, args=["--store-wait", "1"])
    pg_allow_connections(pg_url, False)
    try:
        with pytest.raises(RuntimeError, match="exited with 3"):
            server.start(timeout=30)
        log = server.log()
        assert "not starting: the store at" in log, log
        assert "did not answer within 1 s (--store-wait)" in log, log
        assert "Traceback" not in log, log  # one line that says why, not the framework's
        assert "hunter2" not in log, log  # the password never reaches a log
    finally:
        pg_allow_connections(pg_url, True)
        server.kill()


def test_a_second_sqlite_replica_is_refused_in_one_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'one.db'}"
    first = ServerProcess(tmp_path / "a", db=db, args=["--sim-sleds", "1"])
    second = ServerProcess(tmp_path / "b", db=db, args=["--sim-sleds", "1"])
    first.start()
    try:
        with pytest.raises(RuntimeError, match="exited with 3"):
            second.start()
        log = second.log()
        assert "not starting: another Skylight replica" in log, log
        assert "Traceback" not in log, log
    finally:
        second.kill()
        first.stop()
