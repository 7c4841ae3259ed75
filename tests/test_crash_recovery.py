"""Crash recovery: SIGKILL the server in the middle of start sagas, restart it, and check that
every saga finished or unwound, with its outcome event recorded and no reservation leaked.

The server runs as a child process with a slow simulated sled (``--sim-start-delay``), so the
start sagas sit in their last action (``ensure_running``) long enough to be killed there. Other
sagas are held at ``register_vmm`` (a ``hang`` fault) or in the middle of their unwind (a
``hang`` fault at ``unregister``). The simulated rack keeps its VMMs and faults in its own file
in the data directory, and the replica keeps its identity, so the restarted server resumes its
own sagas against the same sleds. Each test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from skylight.store.schema import event, instance, saga, saga_node_event, sled_reservation, vmm
from skylight.testing import ServerProcess

pytestmark = pytest.mark.slow

GiB = 1024**3
START_DELAY = 3.0  # seconds a simulated VMM takes from creating to running
DEADLINE = 30.0  # bound on every wait; outcomes normally arrive within a few seconds
PROJECT = "crash"
SERVE_ARGS = [
    "--sim-sleds",
    "3",
    "--sim-sled-cpus",
    "16",
    "--sim-sled-memory",
    "64",
    "--sim-start-delay",
    str(START_DELAY),
    "--start-wait",
    "10",
]
ASYNC = {"Prefer": "respond-async"}
OUTCOME_KINDS = ("instance.running", "instance.start_failed")


# -- plumbing --------------------------------------------------------------------------------


def reader_engine(db_url: str) -> Engine:
    """An engine for looking at the server's store from the test process (reads only)."""
    if db_url.startswith("sqlite"):
        return sa.create_engine(db_url, connect_args={"timeout": 30})
    return sa.create_engine("postgresql+psycopg://" + db_url.split("://", 1)[1])


def wait_until(what: str, predicate: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(0.1)


@dataclass
class Rig:
    server: ServerProcess
    engine: Engine
    api: httpx.Client

    def restart(self) -> None:
        self.api.close()
        self.server.start()
        self.api = self.server.client(timeout=15.0)

    def kill(self) -> None:
        self.server.kill()


@pytest.fixture
def rig(tmp_path: Path, db_url: str) -> Iterator[Rig]:
    server = ServerProcess(tmp_path / "data", db=db_url, args=SERVE_ARGS)
    server.start()
    engine = reader_engine(db_url)
    r = Rig(server, engine, server.client(timeout=15.0))
    try:
        ok(r.api.post("/v1/projects", json={"name": PROJECT, "description": "crash tests"}), 201)
        yield r
    finally:
        r.api.close()
        server.stop()
        engine.dispose()
        # Shown by pytest only when the test failed.
        print(f"--- server log (tail) ---\n{server.log()}")


def ok(resp: httpx.Response, status: int) -> Any:
    assert resp.status_code == status, f"{resp.request.method} {resp.request.url}: {resp.text}"
    return resp.json() if resp.content else None


def create(rig: Rig, name: str, ncpus: int, memory_gib: int, *, start: bool) -> dict[str, Any]:
    body = {
        "name": name,
        "description": f"crash test {name}",
        "hostname": name,
        "ncpus": ncpus,
        "memory": memory_gib * GiB,
        "start": start,
    }
    inst: dict[str, Any] = ok(
        rig.api.post("/v1/instances", params={"project": PROJECT}, json=body, headers=ASYNC), 201
    )
    if not start:
        assert inst["run_state"] == "stopped", inst
    # What an asynchronous start answers is checked by test_async_start_answers_starting.
    return inst


def start_async(rig: Rig, name: str) -> dict[str, Any]:
    inst: dict[str, Any] = ok(
        rig.api.post(f"/v1/instances/{name}/start", params={"project": PROJECT}, headers=ASYNC),
        202,
    )
    return inst


def arm(rig: Rig, at: str, kind: str, instance_id: str, count: int, message: str) -> None:
    body = {
        "at": at,
        "kind": kind,
        "count": count,
        "message": message,
        "instance": instance_id,
        "sled": None,
    }
    ok(rig.api.post("/v1/system/sim/faults", json=body), 201)


def armed_faults(rig: Rig) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = ok(rig.api.get("/v1/system/sim/faults"), 200)["items"]
    return items


def view(rig: Rig, name: str) -> dict[str, Any]:
    inst: dict[str, Any] = ok(
        rig.api.get(f"/v1/instances/{name}", params={"project": PROJECT}), 200
    )
    return inst


def events(rig: Rig, name: str) -> list[dict[str, Any]]:
    """The instance's events, oldest first."""
    page = ok(
        rig.api.get(f"/v1/instances/{name}/events", params={"project": PROJECT, "limit": 1000}),
        200,
    )
    assert page["next_page"] is None
    return list(reversed(page["items"]))


# -- the store, read directly ----------------------------------------------------------------


def start_sagas(engine: Engine) -> dict[str, Any]:
    """instance id -> its (only) instance-start saga row."""
    with engine.connect() as conn:
        rows = list(conn.execute(sa.select(saga).where(saga.c.name == "instance-start")))
    by_instance: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_instance[row.instance_id].append(row)
    for instance_id, sagas in by_instance.items():
        assert len(sagas) == 1, f"instance {instance_id} has {len(sagas)} start sagas"
    return {k: v[0] for k, v in by_instance.items()}


def last_node_event(engine: Engine, saga_id: str) -> tuple[str, str] | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(saga_node_event.c.node_name, saga_node_event.c.event_type)
            .where(saga_node_event.c.saga_id == saga_id)
            .order_by(saga_node_event.c.seq.desc())
            .limit(1)
        ).first()
    return None if row is None else (row.node_name, row.event_type)


def vmm_states(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {r.id: r.state for r in conn.execute(sa.select(vmm.c.id, vmm.c.state))}


def booting(engine: Engine, instance_ids: list[str]) -> bool:
    """Every one of these instances' start sagas is in ``ensure_running``, its VMM booting."""
    sagas = start_sagas(engine)
    states = vmm_states(engine)
    for iid in instance_ids:
        s = sagas.get(iid)
        if s is None:
            return False
        # A saga that ended (or began to unwind) before the kill cannot test recovery.
        assert s.state == "running", f"start saga of {iid} is {s.state} before the kill: {s.error}"
        if states.get(s.params["vmm_id"]) != "starting":
            return False
        if last_node_event(engine, s.id) != ("ensure_running", "started"):
            return False
    return True


def check_store_at_rest(engine: Engine, sim_rack: Path) -> None:
    """Scenario 3: the store after the run, read directly.

    No saga unfinished; every start saga has exactly one outcome event, matching its end; the
    reservations are exactly those of instances with an active VMM, on that VMM's sled; the
    simulated sleds run exactly those VMMs.
    """
    with engine.connect() as conn:
        unfinished = list(
            conn.execute(
                sa.select(saga.c.id, saga.c.name, saga.c.state).where(
                    saga.c.state.in_(("running", "unwinding"))
                )
            )
        )
        assert unfinished == [], f"sagas left unfinished: {unfinished}"
        stuck = list(conn.execute(sa.select(saga.c.id).where(saga.c.state == "stuck")))
        assert stuck == [], f"stuck sagas: {stuck}"

        sagas = list(conn.execute(sa.select(saga).where(saga.c.name == "instance-start")))
        assert sagas, "no start sagas at all"
        for s in sagas:
            evs = list(
                conn.execute(
                    sa.select(event.c.kind, event.c.instance_id, event.c.reason).where(
                        event.c.operation_id == s.id
                    )
                )
            )
            outcomes = [e for e in evs if e.kind in OUTCOME_KINDS]
            assert len(outcomes) == 1, f"saga {s.id} ({s.state}) has outcome events {outcomes}"
            expected = {"done": "instance.running", "unwound": "instance.start_failed"}[s.state]
            assert outcomes[0].kind == expected, (s.id, s.state, outcomes)
            assert outcomes[0].instance_id == s.instance_id
            if expected == "instance.start_failed":
                assert outcomes[0].reason and outcomes[0].reason.get("code"), outcomes[0]
            requested = [e for e in evs if e.kind == "instance.start_requested"]
            assert len(requested) == 1, f"saga {s.id}: start_requested events {requested}"

        active = list(
            conn.execute(
                sa.select(
                    instance.c.id,
                    instance.c.ncpus,
                    instance.c.memory,
                    instance.c.active_vmm_id,
                    vmm.c.sled_id,
                    vmm.c.state.label("vmm_state"),
                )
                .select_from(instance.join(vmm, vmm.c.id == instance.c.active_vmm_id))
                .where(instance.c.time_deleted.is_(None))
            )
        )
        reservations = list(conn.execute(sa.select(sled_reservation)))

    assert all(a.vmm_state == "running" for a in active), active
    expected_by_sled: dict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for a in active:
        cpus, mem = expected_by_sled[a.sled_id]
        expected_by_sled[a.sled_id] = (cpus + a.ncpus, mem + a.memory)
    reserved_by_sled: dict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for r in reservations:
        cpus, mem = reserved_by_sled[r.sled_id]
        reserved_by_sled[r.sled_id] = (cpus + r.hardware_threads, mem + r.memory)
    assert dict(reserved_by_sled) == dict(expected_by_sled)
    # One reservation per active VMM, keyed by the VMM's id, on the VMM's sled.
    assert {(r.id, r.instance_id, r.sled_id) for r in reservations} == {
        (a.active_vmm_id, a.id, a.sled_id) for a in active
    }

    # The simulated sleds (their own state file) run exactly the active VMMs: nothing that
    # was unwound is left behind on a sled.
    with sqlite3.connect(sim_rack) as db:
        sim_vmms = {
            (v, i, s) for v, i, s in db.execute("SELECT vmm_id, instance_id, sled_id FROM vmm")
        }
    assert sim_vmms == {(a.active_vmm_id, a.id, a.sled_id) for a in active}


def check_sled_reservations_via_api(rig: Rig, running: set[str]) -> None:
    """Each sled's reserved threads and memory equal those of the running instances on it."""
    sleds = ok(rig.api.get("/v1/system/hardware/sleds", params={"limit": 100}), 200)["items"]
    placed: set[str] = set()
    for s in sleds:
        on = ok(rig.api.get(f"/v1/system/hardware/sleds/{s['id']}/instances"), 200)["items"]
        assert all(i["state"] == "running" for i in on), on
        placed |= {i["id"] for i in on}
        assert s["reserved_hardware_threads"] == sum(i["ncpus"] for i in on), (s, on)
        assert s["reserved_memory"] == sum(i["memory"] for i in on), (s, on)
    assert placed == running


def all_have_outcomes(rig: Rig, names: list[str]) -> bool:
    return all(any(e["kind"] in OUTCOME_KINDS for e in events(rig, name)) for name in names)


def assert_ran(rig: Rig, name: str, saga_id: str) -> None:
    inst = view(rig, name)
    assert inst["run_state"] == "running", inst
    assert inst["intended_state"] == "running", inst
    assert inst["status_reason"] is None, inst
    evs = events(rig, name)
    assert [e["kind"] for e in evs] == [
        "instance.created",
        "instance.start_requested",
        "instance.placed",
        "instance.running",
    ], evs
    assert [e["operation_id"] for e in evs[1:]] == [saga_id] * 3, evs


def assert_unwound(rig: Rig, name: str, saga_id: str) -> None:
    inst = view(rig, name)
    assert inst["run_state"] == "stopped", inst
    assert inst["intended_state"] == "stopped", inst
    evs = events(rig, name)
    assert [e["kind"] for e in evs] == [
        "instance.created",
        "instance.start_requested",
        "instance.placed",
        "instance.start_failed",
    ], evs
    assert [e["operation_id"] for e in evs[1:]] == [saga_id] * 3, evs
    failed = evs[-1]
    assert failed["severity"] == "error", failed
    assert failed["reason"] is not None, failed
    assert failed["reason"]["code"] == "vmm_failure", failed
    assert failed["reason"]["message"], failed
    status = inst["status_reason"]
    assert status is not None, inst
    assert status["event_id"] == failed["id"], (status, failed)
    assert status["code"] == "vmm_failure", status


# -- scenario 1: killed starts finish after the restart --------------------------------------


def test_starts_killed_mid_saga_finish_after_restart(rig: Rig) -> None:
    ids: dict[str, str] = {}
    # Two instances whose sled hangs once at register: their sagas are held in register_vmm
    # (the sled call times out only after 10 s).
    held_names = [f"held-{i}" for i in range(2)]
    for i, name in enumerate(held_names):
        ids[name] = create(rig, name, ncpus=i + 5, memory_gib=2 * i + 3, start=False)["id"]
        arm(rig, "register", "hang", ids[name], 1, "sled agent does not answer")
        start_async(rig, name)
    # Four created with start: true, answered at once; their sagas reach ensure_running and
    # wait there for the slow sled. Created last, so that the kill comes soon after.
    booting_names = [f"boot-{i}" for i in range(4)]
    for i, name in enumerate(booting_names):
        ids[name] = create(rig, name, ncpus=i + 1, memory_gib=i + 1, start=True)["id"]
    names = booting_names + held_names

    wait_until(
        "the first four start sagas to boot their VMMs",
        lambda: booting(rig.engine, [ids[n] for n in booting_names]),
    )
    wait_until("the register hangs to fire", lambda: armed_faults(rig) == [])
    wait_until(
        "the held sagas to be in register_vmm",
        lambda: all(
            last_node_event(rig.engine, start_sagas(rig.engine)[ids[n]].id)
            == ("register_vmm", "started")
            for n in held_names
        ),
    )
    rig.kill()

    # With the server dead, the store shows every start saga in flight.
    sagas = start_sagas(rig.engine)
    assert set(sagas) == set(ids.values())
    at_kill = {
        n: (sagas[ids[n]].state, last_node_event(rig.engine, sagas[ids[n]].id)) for n in names
    }
    for n in booting_names:
        assert at_kill[n] == ("running", ("ensure_running", "started")), (
            f"{n} was not mid-saga at the kill (the machine too slow for a "
            f"{START_DELAY}s boot?): {at_kill}"
        )
    for n in held_names:
        assert at_kill[n] == ("running", ("register_vmm", "started")), at_kill

    rig.restart()
    wait_until("every start to have its outcome", lambda: all_have_outcomes(rig, names))

    for name in names:
        assert_ran(rig, name, sagas[ids[name]].id)
    check_sled_reservations_via_api(rig, set(ids.values()))
    final = start_sagas(rig.engine)
    assert {n: final[ids[n]].state for n in names} == dict.fromkeys(names, "done")
    check_store_at_rest(rig.engine, rig.server.data_dir / "sim-rack.db")


# -- scenario 2: some killed starts must unwind after the restart ----------------------------


def test_starts_killed_mid_saga_unwind_after_restart(rig: Rig) -> None:
    ids: dict[str, str] = {}
    # Two that fail at ensure_running before the kill and are killed in the middle of their
    # unwind (the sled hangs once when asked to unregister their VMM; the call times out only
    # after 10 s).
    unwinding = ["unwinding-0", "unwinding-1"]
    for i, name in enumerate(unwinding):
        ids[name] = create(rig, name, ncpus=i + 2, memory_gib=3, start=False)["id"]
        arm(rig, "ensure_running", "error", ids[name], 1, "propolis refused")
        arm(rig, "unregister", "hang", ids[name], 1, "sled agent does not answer")
        start_async(rig, name)
    # Two that will simply finish.
    fine = ["fine-0", "fine-1"]
    # Two whose sled will refuse ensure_running once the server is back: armed only after
    # their sagas have passed that call, so they are killed while booting and must unwind
    # after the restart.
    doomed = ["doomed-0", "doomed-1"]
    for i, name in enumerate(fine + doomed):
        ids[name] = create(rig, name, ncpus=i + 1, memory_gib=2 * (i + 1), start=True)["id"]
    names = fine + doomed + unwinding

    wait_until(
        "the fine and doomed start sagas to boot their VMMs",
        lambda: booting(rig.engine, [ids[n] for n in fine + doomed]),
    )
    for name in doomed:
        arm(rig, "ensure_running", "error", ids[name], 1000, "propolis refused after restart")

    def unwinding_held() -> bool:
        sagas = start_sagas(rig.engine)
        return all(
            sagas[ids[n]].state == "unwinding"
            and last_node_event(rig.engine, sagas[ids[n]].id) == ("register_vmm", "undo_started")
            for n in unwinding
        ) and not any(f["at"] == "unregister" for f in armed_faults(rig))

    wait_until("the unwinding sagas to hang in the undo of register_vmm", unwinding_held)
    rig.kill()

    sagas = start_sagas(rig.engine)
    assert set(sagas) == set(ids.values())
    at_kill = {
        n: (sagas[ids[n]].state, last_node_event(rig.engine, sagas[ids[n]].id)) for n in names
    }
    for n in fine + doomed:
        assert at_kill[n] == ("running", ("ensure_running", "started")), (
            f"{n} was not mid-saga at the kill (the machine too slow for a "
            f"{START_DELAY}s boot?): {at_kill}"
        )
    for n in unwinding:
        assert at_kill[n] == ("unwinding", ("register_vmm", "undo_started")), at_kill

    rig.restart()
    # The faults on the doomed instances survived the restart in the simulated rack.
    assert {f["instance"] for f in armed_faults(rig)} == {ids[n] for n in doomed}
    wait_until("every start to have its outcome", lambda: all_have_outcomes(rig, names))

    for name in fine:
        assert_ran(rig, name, sagas[ids[name]].id)
    for name in doomed + unwinding:
        assert_unwound(rig, name, sagas[ids[name]].id)

    final = start_sagas(rig.engine)
    assert {n: final[ids[n]].state for n in names} == {
        **dict.fromkeys(fine, "done"),
        **dict.fromkeys(doomed + unwinding, "unwound"),
    }
    states = vmm_states(rig.engine)
    for name in doomed + unwinding:
        assert states[final[ids[name]].params["vmm_id"]] == "saga_unwound", name
    check_sled_reservations_via_api(rig, {ids[n] for n in fine})
    check_store_at_rest(rig.engine, rig.server.data_dir / "sim-rack.db")


# -- what an asynchronous start answers ------------------------------------------------------


def test_async_start_answers_starting(rig: Rig) -> None:
    """SPEC: with ``Prefer: respond-async`` the answer is the instance in ``starting``."""
    answers = {}
    for i in range(3):
        answers[f"now-{i}"] = create(rig, f"now-{i}", ncpus=1, memory_gib=1, start=True)
        create(rig, f"later-{i}", ncpus=1, memory_gib=1, start=False)
        answers[f"later-{i}"] = start_async(rig, f"later-{i}")
    for inst in answers.values():
        assert inst["intended_state"] == "running", inst
    assert {n: a["run_state"] for n, a in answers.items()} == dict.fromkeys(answers, "starting")
    wait_until("every start to have its outcome", lambda: all_have_outcomes(rig, list(answers)))
    assert {n: view(rig, n)["run_state"] for n in answers} == dict.fromkeys(answers, "running")
