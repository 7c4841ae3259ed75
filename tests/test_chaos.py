"""Several replicas on PostgreSQL with HTTP sled agents: a paused replica is fenced, and a
chaos run (replicas SIGKILLed at random and restarted, faults on sleds) loses nothing.

The chaos run is modest by default (CI); ``SKYLIGHT_CHAOS_INSTANCES`` makes it larger.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from skylight.store.engine import make_engine
from skylight.store.schema import event, instance, saga, sled_reservation, vmm
from skylight.testing import ServerProcess, SledAgentProcess
from tests.conftest import instance_body

pytestmark = pytest.mark.slow
P = {"project": "demo"}


def _wait(what: str, pred: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _replica_args(adoption: float = 2.0) -> list[str]:
    return [
        "--no-sim",
        "--adoption-timeout",
        str(adoption),
        "--heartbeat-interval",
        "0.3",
        "--sled-failure-timeout",
        "30",
        "--sled-call-timeout",
        "5",
        "--start-wait",
        "20",
        "--auto-restart-interval",
        "1",
        # The auditor watches closely: anything left in the dark for 20 s is reported.
        "--audit-interval",
        "1",
        "--audit-after",
        "20",
    ]


class Fleet:
    def __init__(self, root: Path, db: str, replicas: int, sleds: int, delay: float) -> None:
        self.replicas = [
            ServerProcess(root / f"r{i}", db=db, args=_replica_args()) for i in range(replicas)
        ]
        for r in self.replicas:
            r.start()
        urls = ",".join(r.url for r in self.replicas)
        self.agents = [
            SledAgentProcess(root / f"s{i}", urls, cpus=16, memory_gib=64, start_delay=delay)
            for i in range(sleds)
        ]
        for a in self.agents:
            a.start()
        self.engine = make_engine(db)

    def api(self, i: int | None = None) -> httpx.Client:
        r = self.replicas[random.randrange(len(self.replicas)) if i is None else i]
        return httpx.Client(base_url=r.url, timeout=30)

    def close(self) -> None:
        for r in self.replicas:
            if r.proc is not None and r.proc.poll() is None:
                r.proc.send_signal(signal.SIGCONT)
            r.kill()
        for a in self.agents:
            a.kill()
        self.engine.dispose()

    def rows(self, table: sa.Table) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(table)))


@pytest.fixture
def fleet_factory(tmp_path: Path, pg_url: str) -> Iterator[Callable[..., Fleet]]:
    fleets: list[Fleet] = []

    def make(replicas: int = 2, sleds: int = 2, delay: float = 0.1) -> Fleet:
        fleet = Fleet(tmp_path, pg_url, replicas, sleds, delay)
        fleets.append(fleet)
        return fleet

    yield make
    for f in fleets:
        f.close()


def test_paused_replica_is_fenced(fleet_factory: Callable[..., Fleet]) -> None:
    """A (SIGSTOP) is paused mid-start; B adopts and finishes; A resumes: nothing A does
    lands."""
    fleet = fleet_factory(replicas=2, sleds=2, delay=4.0)
    a, b = fleet.api(0), fleet.api(1)
    assert a.post("/v1/projects", json={"name": "demo", "description": ""}).status_code == 201
    r = a.post(
        "/v1/instances", params=P, json=instance_body("web"), headers={"Prefer": "respond-async"}
    )
    assert r.status_code == 201
    _wait("A's saga to boot the VMM", lambda: any(v.state == "starting" for v in fleet.rows(vmm)))
    proc = fleet.replicas[0].proc
    assert proc is not None
    proc.send_signal(signal.SIGSTOP)
    try:
        _wait(
            "B to adopt and finish the start",
            lambda: b.get("/v1/instances/web", params=P).json()["run_state"] == "running",
        )
        events_before = len(fleet.rows(event))
    finally:
        proc.send_signal(signal.SIGCONT)
    time.sleep(3.0)  # A wakes: its saga sees the VMM running and tries to record the end
    (start,) = [s for s in fleet.rows(saga) if s.name == "instance-start"]
    assert start.state == "done"
    assert start.adopt_generation == 2
    kinds = [e.kind for e in sorted(fleet.rows(event), key=lambda e: e.seq)]
    assert kinds.count("instance.running") == 1
    assert kinds.count("instance.operation_adopted") == 1
    assert len(fleet.rows(event)) == events_before  # A's writes did not land
    # A is alive again and serves requests, and sees B's outcome.
    assert a.get("/v1/instances/web", params=P).json()["run_state"] == "running"


class StreamTap:
    """Follows the project's event stream through one replica, resuming across kills."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.seen: list[tuple[int, str, int]] = []  # (cursor, event id, count)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        last: str | None = "0"  # from the very first event of the store
        while not self.stop.is_set():
            url = random.choice(self.fleet.replicas).url
            headers = {"Last-Event-ID": last} if last else {}
            try:
                with httpx.stream(
                    "GET", f"{url}/v1/events/stream", params=P, headers=headers, timeout=10
                ) as r:
                    if r.status_code != 200:
                        time.sleep(0.2)
                        continue
                    ident: str | None = None
                    for line in r.iter_lines():
                        if self.stop.is_set():
                            return
                        if line.startswith("id: "):
                            ident = line[4:]
                        elif line.startswith("data: ") and ident is not None:
                            e = json.loads(line[6:])
                            self.seen.append((int(ident), e["id"], e["count"]))
                        elif line == "" and ident is not None:
                            last = ident
            except httpx.HTTPError:
                time.sleep(0.2)


def test_chaos(fleet_factory: Callable[..., Fleet]) -> None:
    n = int(os.environ.get("SKYLIGHT_CHAOS_INSTANCES", "60"))
    rng = random.Random(int(os.environ.get("SKYLIGHT_CHAOS_SEED", "7")))
    fleet = fleet_factory(replicas=3, sleds=6, delay=0.3)
    fleet.api(0).post("/v1/projects", json={"name": "demo", "description": ""})
    for agent in fleet.agents[:2]:  # faults on two sleds: some starts fail, and say why
        httpx.post(
            f"{agent.url}/faults",
            json={"at": "register", "kind": "error", "count": 3, "message": "chaos"},
        )
    tap = StreamTap(fleet)
    requests: list[str] = []
    killed = 0
    for i in range(n):
        name = f"i{i}"
        try:
            fleet.api().post(
                "/v1/instances",
                params=P,
                json=instance_body(name, ncpus=rng.choice([1, 2, 4]), memory_gib=2),
                headers={"Prefer": "respond-async"},
            )
        except httpx.HTTPError:
            pass  # the replica died under us: the create may or may not have been made
        requests.append(name)
        if i % 15 == 7:  # a replica dies, and comes back
            victim = fleet.replicas[rng.randrange(len(fleet.replicas))]
            victim.kill()
            killed += 1
            time.sleep(rng.uniform(0.0, 0.5))
            victim.start()

    def settled() -> bool:
        with fleet.engine.connect() as conn:
            busy = conn.execute(
                sa.select(sa.func.count()).where(saga.c.state.in_(("running", "unwinding")))
            ).scalar_one()
        return busy == 0

    _wait("every saga to end", settled, timeout=120)
    time.sleep(2.0)  # let the stream catch up
    tap.stop.set()

    instances = [r for r in fleet.rows(instance) if r.time_deleted is None]
    sagas = fleet.rows(saga)
    events = fleet.rows(event)
    starts = [s for s in sagas if s.name == "instance-start"]
    outcome_kinds = {"instance.running", "instance.start_failed", "instance.auto_restart_failed"}
    by_op = Counter(e.operation_id for e in events if e.kind in outcome_kinds)
    stuck = [s for s in sagas if s.state == "stuck"]
    assert not stuck
    # The auditor found nobody in the dark (its events outlive the replicas that wrote them).
    dark = [e for e in events if e.kind == "instance.operation_stuck"]
    assert not dark, [(e.instance_id, e.reason) for e in dark]
    for s in starts:  # every start request has exactly one outcome event
        expected = 1 if s.state in ("done", "unwound") else 0
        if s.state == "done":
            # a VMM lost right after booting reports instance.failed instead
            expected = by_op[s.id] if by_op[s.id] <= 1 else 1
        assert by_op[s.id] == expected, (s.id, s.state, by_op[s.id])
    states = Counter()
    for inst in instances:
        view = fleet.api().get(f"/v1/instances/{inst.id}").json()
        states[view["run_state"]] += 1
        assert view["run_state"] == "running" or view["status_reason"], view
        assert not (view["run_state"] == "stopped" and view["intended_state"] == "running")
    # reservations equal the instances placed on each sled; no instance has two VMMs
    reservations = fleet.rows(sled_reservation)
    active = {i.active_vmm_id: i for i in instances if i.active_vmm_id}
    assert {r.id for r in reservations} == set(active)
    assert len({r.instance_id for r in reservations}) == len(reservations)
    live_vmms = [v for v in fleet.rows(vmm) if v.state in ("creating", "starting", "running")]
    assert (
        Counter(v.instance_id for v in live_vmms).most_common(1)[0][1] <= 1 if live_vmms else True
    )
    # the streams lost nothing and repeated nothing (a coalesced event comes again with a
    # higher count, which is an update, not a duplicate)
    stream_ids = {(eid, count) for _, eid, count in tap.seen}
    stored = {(e.id, e.count) for e in events if e.project_id == instances[0].project_id}
    assert stored <= stream_ids, len(stored - stream_ids)
    cursors = [c for c, _, _ in tap.seen]
    assert len(cursors) == len(set(cursors))
    print(
        f"\nchaos: {len(requests)} creates, {len(instances)} instances, {killed} replica kills, "
        f"{len(starts)} start sagas ({Counter(s.state for s in starts)}), "
        f"states {dict(states)}, {len(events)} events, {len(tap.seen)} streamed"
    )
