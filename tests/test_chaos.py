"""Replicas with HTTP sled agents under chaos: a paused replica is fenced; on PostgreSQL,
replicas are SIGKILLed, SIGTERMed and cut off from the database while creates run, with faults
on sleds; on SQLite the one server is SIGKILLed mid-burst. Nothing acknowledged is lost and
nobody is left in the dark, checked in the database at the end.

The runs are modest by default (CI); ``SKYLIGHT_CHAOS_INSTANCES`` makes them larger and
``SKYLIGHT_CHAOS_SEED`` picks another sequence.
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

from skylight.rack_secret import create
from skylight.store import totals
from skylight.store.engine import make_engine
from skylight.store.schema import event, instance, saga, sled_reservation, vmm
from skylight.testing import ServerProcess, SledAgentProcess
from tests.conftest import instance_body, pg_allow_connections

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
        self.db = db
        secret = root / "rack-secret"  # one rack: its replicas and agents share the secret
        create(secret)
        self.replicas = [
            ServerProcess(root / f"r{i}", db=db, args=_replica_args(), rack_secret_file=secret)
            for i in range(replicas)
        ]
        for r in self.replicas:
            r.start()
        for r in self.replicas:
            assert r.token  # logged in while every replica is up
        urls = ",".join(r.url for r in self.replicas)
        self.agents = [
            SledAgentProcess(
                root / f"s{i}",
                urls,
                rack_secret_file=secret,
                cpus=16,
                memory_gib=64,
                start_delay=delay,
            )
            for i in range(sleds)
        ]
        for a in self.agents:
            a.start()
        self.engine = make_engine(db)

    def api(self, i: int | None = None) -> httpx.Client:
        r = self.replicas[random.randrange(len(self.replicas)) if i is None else i]
        return r.client(timeout=30)

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

    def make(replicas: int = 2, sleds: int = 2, delay: float = 0.1, db: str | None = None) -> Fleet:
        fleet = Fleet(tmp_path, db or pg_url, replicas, sleds, delay)
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
            replica = random.choice(self.fleet.replicas)
            url = replica.url
            headers = {**replica.headers, **({"Last-Event-ID": last} if last else {})}
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


class Burst:
    """Async creates, one at a time, through a random replica; remembers which were
    acknowledged (201) and every answer's status, so the end can check that nothing
    acknowledged was lost and that nothing answered 500."""

    def __init__(self, fleet: Fleet, rng: random.Random) -> None:
        self.fleet = fleet
        self.rng = rng
        self.sent = 0
        self.acknowledged: list[str] = []
        self.statuses: Counter[int] = Counter()

    def create(self) -> None:
        name = f"i{self.sent}"
        self.sent += 1
        try:
            with self.fleet.api() as api:
                r = api.post(
                    "/v1/instances",
                    params=P,
                    json=instance_body(name, ncpus=self.rng.choice([1, 2, 4]), memory_gib=2),
                    headers={"Prefer": "respond-async"},
                    timeout=10,
                )
        except httpx.HTTPError:
            return  # the replica died under us: the create may or may not have been made
        self.statuses[r.status_code] += 1
        if r.status_code == 201:
            self.acknowledged.append(name)


def _kill_round(fleet: Fleet, rng: random.Random) -> None:
    """A replica dies (SIGKILL) and comes back."""
    victim = fleet.replicas[rng.randrange(len(fleet.replicas))]
    victim.kill()
    time.sleep(rng.uniform(0.0, 0.5))
    victim.start()


def _sigterm_round(fleet: Fleet, rng: random.Random) -> None:
    """A replica is told to stop (SIGTERM: it hands its sagas over) and comes back."""
    victim = fleet.replicas[rng.randrange(len(fleet.replicas))]
    victim.stop()
    victim.start()


def _outage_round(fleet: Fleet, burst: Burst, seconds: float = 8.0) -> None:
    """The database refuses every connection for ``seconds`` while creates keep coming: the
    replicas stay up and answer 503."""
    before = burst.statuses[503]
    pg_allow_connections(fleet.db, False)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            burst.create()
            time.sleep(0.3)
    finally:
        pg_allow_connections(fleet.db, True)
    assert burst.statuses[503] > before, burst.statuses  # they said so
    for r in fleet.replicas:
        assert r.proc is not None and r.proc.poll() is None, r.log()  # and stayed up


def _settled(fleet: Fleet) -> bool:
    with fleet.engine.connect() as conn:
        busy = conn.execute(
            sa.select(sa.func.count()).where(saga.c.state.in_(("running", "unwinding")))
        ).scalar_one()
    return busy == 0


def _check_invariants(fleet: Fleet, burst: Burst) -> dict[str, int]:
    """What must hold once every saga has ended, read from the database (and the API for
    the user's view): the end state of every chaos run."""
    assert not [c for c in burst.statuses if c >= 500 and c != 503], burst.statuses
    instances = [r for r in fleet.rows(instance) if r.time_deleted is None]
    names = {i.name for i in instances}
    assert set(burst.acknowledged) <= names, set(burst.acknowledged) - names  # none lost
    sagas = fleet.rows(saga)
    events = fleet.rows(event)
    assert not [s for s in sagas if s.state in ("running", "unwinding", "stuck")]
    # The auditor found nobody in the dark (its events outlive the replicas that wrote them).
    dark = [e for e in events if e.kind == "instance.operation_stuck"]
    assert not dark, [(e.instance_id, e.reason) for e in dark]
    starts = [s for s in sagas if s.name == "instance-start"]
    outcome_kinds = {"instance.running", "instance.start_failed", "instance.auto_restart_failed"}
    by_op = Counter(e.operation_id for e in events if e.kind in outcome_kinds)
    for s in starts:  # every start request has exactly one outcome event
        expected = 1 if s.state in ("done", "unwound") else 0
        if s.state == "done":
            # a VMM lost right after booting reports instance.failed instead
            expected = by_op[s.id] if by_op[s.id] <= 1 else 1
        assert by_op[s.id] == expected, (s.id, s.state, by_op[s.id])
    states: Counter[str] = Counter()
    with fleet.api() as api:
        for inst in instances:  # running, or the user is told why not
            view = api.get(f"/v1/instances/{inst.id}").json()
            states[view["run_state"]] += 1
            assert view["run_state"] == "running" or view["status_reason"], view
            assert not (view["run_state"] == "stopped" and view["intended_state"] == "running")
    # Reservations are exactly the active VMMs', each the size of its instance on the sled
    # its VMM runs on; no instance has two live VMMs.
    reservations = {r.id: r for r in fleet.rows(sled_reservation)}
    active = {i.active_vmm_id: i for i in instances if i.active_vmm_id}
    assert set(reservations) == set(active)
    vmms = {v.id: v for v in fleet.rows(vmm)}
    for vmm_id, r in reservations.items():
        assert r.instance_id == active[vmm_id].id
        assert r.hardware_threads == active[vmm_id].ncpus
        assert r.sled_id == vmms[vmm_id].sled_id
    live = Counter(
        v.instance_id for v in vmms.values() if v.state in ("creating", "starting", "running")
    )
    assert all(n == 1 for n in live.values()), live
    with fleet.engine.connect() as conn:  # each sled's kept totals equal its reservations
        assert totals.check(conn) == {}
    return dict(states)


def test_chaos(fleet_factory: Callable[..., Fleet]) -> None:
    """PostgreSQL, three replicas, six sleds (two with faults): creates keep coming while a
    replica is SIGKILLed, another SIGTERMed, and the database refuses connections for 8 s."""
    n = int(os.environ.get("SKYLIGHT_CHAOS_INSTANCES", "60"))
    rng = random.Random(int(os.environ.get("SKYLIGHT_CHAOS_SEED", "7")))
    fleet = fleet_factory(replicas=3, sleds=6, delay=0.3)
    fleet.api(0).post("/v1/projects", json={"name": "demo", "description": ""})
    for agent in fleet.agents[:2]:  # faults on two sleds: some starts fail, and say why
        r = httpx.post(
            f"{agent.url}/faults",
            json={"at": "register", "kind": "error", "count": 3, "message": "chaos"},
            headers=agent.auth,
        )
        assert r.status_code == 201, r.text
    tap = StreamTap(fleet)
    burst = Burst(fleet, rng)
    rounds: Counter[str] = Counter()
    schedule = ["kill", "sigterm", "outage", "kill"]
    for i in range(n):  # (an outage round's creates come on top of these)
        burst.create()
        if i % 15 == 7:
            what = schedule[(i // 15) % len(schedule)]
            rounds[what] += 1
            if what == "kill":
                _kill_round(fleet, rng)
            elif what == "sigterm":
                _sigterm_round(fleet, rng)
            else:
                _outage_round(fleet, burst)

    _wait("every saga to end", lambda: _settled(fleet), timeout=120)
    time.sleep(2.0)  # let the stream catch up
    tap.stop.set()
    states = _check_invariants(fleet, burst)
    # the streams lost nothing and repeated nothing (a coalesced event comes again with a
    # higher count, which is an update, not a duplicate)
    events = fleet.rows(event)
    project_id = fleet.rows(instance)[0].project_id
    stream_ids = {(eid, count) for _, eid, count in tap.seen}
    stored = {(e.id, e.count) for e in events if e.project_id == project_id}
    assert stored <= stream_ids, len(stored - stream_ids)
    cursors = [c for c, _, _ in tap.seen]
    assert len(cursors) == len(set(cursors))
    print(
        f"\nchaos: {burst.sent} creates ({dict(burst.statuses)}), rounds {dict(rounds)}, "
        f"states {states}, {len(events)} events, {len(tap.seen)} streamed"
    )


def test_chaos_sqlite_kill(fleet_factory: Callable[..., Fleet], tmp_path: Path) -> None:
    """The embedded store's one server, SIGKILLed at random moments of a burst of creates and
    started again: every acknowledged create exists and ends running or explained."""
    n = int(os.environ.get("SKYLIGHT_CHAOS_INSTANCES", "60")) // 2
    rng = random.Random(int(os.environ.get("SKYLIGHT_CHAOS_SEED", "7")))
    fleet = fleet_factory(replicas=1, sleds=3, delay=0.2, db=f"sqlite:///{tmp_path / 'sky.db'}")
    fleet.api(0).post("/v1/projects", json={"name": "demo", "description": ""})
    burst = Burst(fleet, rng)
    kills = 0
    kill_at = sorted(rng.sample(range(3, n), 3))
    for i in range(n):
        burst.create()
        if kill_at and i == kill_at[0]:
            kill_at.pop(0)
            time.sleep(rng.uniform(0.0, 0.3))  # somewhere in the sagas just begun
            _kill_round(fleet, rng)
            kills += 1
    _wait("every saga to end", lambda: _settled(fleet), timeout=120)
    states = _check_invariants(fleet, burst)
    assert kills == 3
    print(f"\nsqlite chaos: {burst.sent} creates ({dict(burst.statuses)}), states {states}")
