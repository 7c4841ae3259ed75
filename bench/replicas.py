"""Replicas: start throughput with 1 and 3 replicas on PostgreSQL, and how long the sagas of
a replica that dies take to reach their outcomes.

Every process is real: replicas are ``skylight serve --no-sim`` (``ServerProcess``) on one
fresh PostgreSQL database, sleds are HTTP sled agents (``SledAgentProcess``, ``skylight
sled-agent --sim``) registered with every replica.

1. Throughput. For 1 and for 3 replicas (a fresh database and fleet each time) with
   ``--agents`` HTTP sled agents (64 threads / 512 GiB, ``--start-delay 0.05``): N instance
   creates with ``start: true`` sent round-robin to the replicas' URLs from ``-c`` concurrent
   clients (``httpx.AsyncClient`` + a semaphore). A create answers once its start saga has
   ended (``run_state: running``); a 201 that is not yet running is polled. Reported: starts/s,
   p50/p90/p99/max latency, and the CPU time per start of the replicas, the agents, the
   PostgreSQL backends of the database (sampled) and the client, and the database's committed
   transactions per start. Then, unless ``--no-profile``, more starts against the 1-replica
   fleet with ``py-spy`` sampling the replica (not in the figures) rank where its CPU goes.

2. Replica death to outcome. ``--adopt-replicas`` replicas with ``--adoption-timeout T`` (each
   of ``--adoption-timeouts``), agents with ``--adopt-start-delay`` seconds of VMM boot. Each
   trial creates K instances through one replica (the victim; trials rotate over the
   replicas) with ``Prefer: respond-async``, waits until every start saga is waiting for its
   VMM to boot (``vmm.state = starting``), SIGKILLs the victim and records ``time.time()``
   just before, then polls the ``saga`` table until the sagas have ended. From
   ``instance_event``: kill -> ``instance.operation_adopted`` (the ``time`` of the event, written
   in the adopting transaction) and kill -> the outcome (``instance.running`` or
   ``instance.start_failed`` with ``operation_id`` = the saga). The victim is started again
   (same data directory, so the same replica id) before the next trial. The goal is
   kill -> outcome <= adoption timeout + 2 s.

With ``--write`` the figures replace the "## Replicas" section of docs/benchmarks.md (other
sections are kept as they are). Everything goes to 127.0.0.1; every loop is bounded; the
processes and databases are removed at the end. No duration is asserted: this is a
measurement.

    .venv/bin/python bench/replicas.py                # both parts, print (about 6-8 minutes)
    .venv/bin/python bench/replicas.py --write        # ... and update the doc
    .venv/bin/python bench/replicas.py --parts adoption --adoption-timeouts 5 --trials 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

# bench/ is on sys.path when a script runs
from _report import (
    git,
    load_row,
    machine_rows,
    pg_exec,
    pg_version,
    setup_tables,
    wait_running,
    write_section,
)
from skylight.clock import as_utc
from skylight.store.engine import make_engine
from skylight.store.schema import event, instance, replica, saga, saga_node_event, sled, vmm
from skylight.testing import ServerProcess, SledAgentProcess

ROOT = Path(__file__).resolve().parent.parent
GiB = 1024**3
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Replicas"
PG_ADMIN_DEFAULT = os.environ.get(
    "SKYLIGHT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)
PROJECT = "bench"
OUTCOME_KINDS = ("instance.running", "instance.start_failed")
ADOPTED_KIND = "instance.operation_adopted"


# -- processes, CPU time, the database ---------------------------------------------------------


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process (Linux /proc); NaN if it cannot be read."""
    if pid is None:
        return math.nan
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return math.nan


def _pid(p: ServerProcess | SledAgentProcess) -> int | None:
    return p.proc.pid if p.proc is not None else None


def _db_url(admin: str, name: str) -> str:
    return f"{admin.rsplit('/', 1)[0]}/{name}"


class PgBackendCpu:
    """CPU time of the PostgreSQL backends serving one database, sampled from /proc, and
    what those backends are doing (``pg_stat_activity``), sampled at the same time.

    Backends come and go (SQLAlchemy's overflow connections are closed when returned), so a
    thread lists them every ``interval`` seconds and keeps each one's last reading: a
    backend's CPU after its last sample is missed, so the sum is a lower bound. WAL writer,
    checkpointer and the other server processes are not counted.
    """

    def __init__(self, admin: str, dbname: str, interval: float = 0.2) -> None:
        self.admin = admin
        self.dbname = dbname
        self.interval = interval
        self._base: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self.states: Counter[str] = Counter()  # backend samples in a transaction, by activity
        self.lock_queries: Counter[str] = Counter()  # statements waiting for a lock
        # The event lock (the only advisory lock): who holds it, doing what; "free" if nobody.
        self.event_lock: Counter[str] = Counter()
        self.holder_last: Counter[str] = Counter()  # an idle holder's last statement
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _rows(self, conn: Any) -> list[Any]:
        return list(
            conn.execute(
                "SELECT pid, state, wait_event_type, wait_event, query FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.dbname,),
            ).fetchall()
        )

    def _event_lock(self, conn: Any) -> None:
        rows = conn.execute(
            "SELECT a.state, a.wait_event_type, a.wait_event, a.query FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND a.datname = %s",
            (self.dbname,),
        ).fetchall()
        if not rows:
            self.event_lock["free"] += 1
        for state, wait_type, wait, query in rows:
            if state == "active":
                what = f"{wait_type}: {wait}" if wait_type else "running"
                self.event_lock[f"held; holder executing ({what})"] += 1
            else:
                self.event_lock[f"held; holder {state} (the replica's turn)"] += 1
                self.holder_last[" ".join(str(query).split())[:60]] += 1

    def _sample(self, conn: Any, first: bool) -> None:
        rows = self._rows(conn)
        if not first:
            self.samples += 1
            self._event_lock(conn)
        for pid, state, wait_type, wait, query in rows:
            cpu = _cpu_seconds(int(pid))
            if not math.isnan(cpu):
                if pid not in self._base:
                    self._base[pid] = cpu if first else 0.0  # a new backend: all its CPU counts
                self._last[pid] = cpu
            if first:
                continue
            if state == "active":
                key = f"{wait_type}: {wait}" if wait_type else "running (no wait event)"
                self.states[key] += 1
                if wait_type == "Lock":
                    self.lock_queries[f"{wait}: {' '.join(str(query).split())[:70]}"] += 1
            elif state and state.startswith("idle in transaction"):
                self.states["idle in transaction (the replica's turn)"] += 1

    def __enter__(self) -> PgBackendCpu:
        import psycopg

        conn = psycopg.connect(self.admin, autocommit=True, connect_timeout=5)
        self._sample(conn, first=True)

        def run() -> None:
            try:
                while not self._stop.wait(self.interval):
                    self._sample(conn, first=False)
                self._sample(conn, first=False)
            finally:
                conn.close()

        self._thread = threading.Thread(target=run, name="pg-cpu", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    @property
    def seconds(self) -> float:
        return sum(max(0.0, self._last[p] - self._base[p]) for p in self._last)


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return math.nan, math.nan
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return (total - idle) / tick, total / tick


def _xact_commit(admin: str, dbname: str) -> float:
    import psycopg

    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (dbname,)
            ).fetchone()
            return float(row[0]) if row else math.nan
    except Exception:
        return math.nan


def _start_all(procs: list[Any], timeout: float) -> None:
    """Start processes in parallel threads (each ``start`` waits until it answers)."""
    errors: list[BaseException] = []

    def one(p: Any) -> None:
        try:
            p.start(timeout=timeout)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(p,), daemon=True) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 30)
    if errors:
        raise errors[0]


class Fleet:
    """A fresh PostgreSQL database, R replicas and A HTTP sled agents registered with all."""

    def __init__(
        self,
        root: Path,
        admin: str,
        *,
        replicas: int,
        agents: int,
        replica_args: list[str],
        agent_cpus: int,
        agent_memory: int,
        agent_delay: float,
        tag: str,
    ) -> None:
        self.admin = admin
        self.dbname = f"skylight_bench_rep_{tag}_{uuid.uuid4().hex[:8]}"
        self.db = _db_url(admin, self.dbname)
        self.root = root
        self.replicas = [
            ServerProcess(root / f"r{i}", db=self.db, args=replica_args) for i in range(replicas)
        ]
        self.n_agents = agents
        self.agent_args = (agent_cpus, agent_memory, agent_delay)
        self.agents: list[SledAgentProcess] = []
        self.engine: sa.Engine | None = None
        self._created = False

    def __enter__(self) -> Fleet:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def start(self) -> None:
        pg_exec(self.admin, f'CREATE DATABASE "{self.dbname}"')
        self._created = True
        # The first replica migrates the empty database; the others start together after.
        self.replicas[0].start(timeout=90)
        _start_all(self.replicas[1:], timeout=90)
        urls = ",".join(r.url for r in self.replicas)
        cpus, memory, delay = self.agent_args
        self.agents = [
            SledAgentProcess(
                self.root / f"s{i}", urls, cpus=cpus, memory_gib=memory, start_delay=delay
            )
            for i in range(self.n_agents)
        ]
        _start_all(self.agents, timeout=60)
        self.engine = make_engine(self.db)
        _wait("every agent's sled in the store", lambda: self.count(sled) >= self.n_agents, 30)

    def close(self) -> None:
        for p in [*self.replicas, *self.agents]:
            with contextlib.suppress(Exception):
                p.kill()
        if self.engine is not None:
            self.engine.dispose()
        if self._created:
            with contextlib.suppress(Exception):
                pg_exec(self.admin, f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    def conn(self) -> Any:
        assert self.engine is not None
        return self.engine.connect()

    def count(self, table: sa.Table) -> int:
        with self.conn() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    def replica_ids(self) -> dict[str, str]:
        """bind -> replica id."""
        with self.conn() as c:
            return {r.bind: r.id for r in c.execute(sa.select(replica.c.id, replica.c.bind))}

    def cpu(self, which: list[Any]) -> float:
        return sum(_cpu_seconds(_pid(p)) for p in which)


def _wait(what: str, pred: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _replica_args(args: argparse.Namespace, adoption_timeout: float | None = None) -> list[str]:
    out = [
        "--no-sim",
        "--start-wait",
        str(args.start_wait),
        "--sled-call-timeout",
        str(args.sled_call_timeout),
        "--heartbeat-interval",
        str(args.heartbeat_interval),
    ]
    if adoption_timeout is not None:
        out += ["--adoption-timeout", str(adoption_timeout)]
    return out


def instance_body(i: int, prefix: str) -> dict[str, Any]:
    name = f"{prefix}{i:05d}"
    return {
        "name": name,
        "description": "replicas benchmark",
        "hostname": name,
        "ncpus": 1 + i % 2,  # 1 or 2 vCPUs
        "memory": (1 + (i // 2) % 2) * GiB,  # 1 or 2 GiB
        "start": True,
    }


def _mx(values: list[float]) -> float:
    return max(values) if values else math.nan


def _pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return math.nan
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


# -- part 1: throughput ------------------------------------------------------------------------


@dataclass
class Throughput:
    replicas: int
    n: int
    concurrency: int
    round: int = 0  # 0: all rounds merged
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    polled: int = 0
    replica_cpu: list[float] = field(default_factory=list)  # seconds, per replica
    agent_cpu: float = math.nan
    pg_cpu: float = math.nan
    client_cpu: float = math.nan
    xacts: float = math.nan
    idle_xacts_per_s: float = math.nan  # the fleet's background transactions, idle
    machine_busy: float = math.nan  # CPU seconds the whole machine was busy (all processes)
    pg_states: Counter[str] = field(default_factory=Counter)
    pg_lock_queries: Counter[str] = field(default_factory=Counter)
    pg_samples: int = 0
    event_lock: Counter[str] = field(default_factory=Counter)
    holder_last: Counter[str] = field(default_factory=Counter)
    events: int = 0  # instance events written for the N instances

    @property
    def lock_held(self) -> float:
        n = sum(self.event_lock.values())
        return 1 - self.event_lock["free"] / n if n else math.nan

    @property
    def hold_ms(self) -> float:
        """Mean time the event lock was held per event-writing transaction (estimate)."""
        return self.lock_held * self.wall / self.events * 1000 if self.events else math.nan

    @property
    def fleet_cpu(self) -> float:
        """Replicas + agents + PostgreSQL backends + client, seconds."""
        return sum(self.replica_cpu) + self.agent_cpu + self.pg_cpu + self.client_cpu

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.ok / self.wall if self.wall > 0 else 0.0

    def per_start_ms(self, seconds: float) -> float:
        return seconds / self.ok * 1000 if self.ok else math.nan

    @property
    def xacts_per_start(self) -> float:
        if not self.ok or math.isnan(self.xacts):
            return math.nan
        background = 0.0 if math.isnan(self.idle_xacts_per_s) else self.idle_xacts_per_s
        return (self.xacts - background * self.wall) / self.ok


def merge(rs: list[Throughput]) -> Throughput:
    """All rounds of one replica count as one measurement (times and counts summed)."""
    m = Throughput(replicas=rs[0].replicas, n=sum(r.n for r in rs), concurrency=rs[0].concurrency)
    m.wall = sum(r.wall for r in rs)
    for r in rs:
        m.latencies += r.latencies
        m.failures += r.failures
        m.polled += r.polled
        m.pg_states.update(r.pg_states)
        m.pg_lock_queries.update(r.pg_lock_queries)
        m.event_lock.update(r.event_lock)
        m.holder_last.update(r.holder_last)
        m.pg_samples += r.pg_samples
        m.events += r.events
    m.replica_cpu = [sum(c) for c in zip(*(r.replica_cpu for r in rs), strict=True)]
    m.agent_cpu = sum(r.agent_cpu for r in rs)
    m.pg_cpu = sum(r.pg_cpu for r in rs)
    m.client_cpu = sum(r.client_cpu for r in rs)
    m.machine_busy = sum(r.machine_busy for r in rs)
    m.xacts = sum(r.xacts - (r.idle_xacts_per_s or 0.0) * r.wall for r in rs)
    m.idle_xacts_per_s = 0.0
    return m


def merged(results: list[Throughput]) -> list[Throughput]:
    counts = sorted({r.replicas for r in results})
    return [merge([r for r in results if r.replicas == c]) for c in counts]


async def _operator_reason(
    client: httpx.AsyncClient, url: str, name: str, reason: dict[str, Any]
) -> str:
    """The status reason with its operator-only ``internal`` part (from the event)."""
    short = f"{reason.get('code')}: {reason.get('message')}"
    try:
        r = await client.get(
            f"{url}/v1/instances/{name}/events",
            params={"project": PROJECT, "limit": 20},
            headers={"X-Skylight-Operator": "true"},
        )
        for e in r.json().get("items", []):
            if e.get("id") == reason.get("event_id"):
                internal = (e.get("reason") or {}).get("internal")
                return f"{short} (internal: {internal})"
    except (httpx.HTTPError, ValueError):
        pass
    return short


async def _create_one(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    result: Throughput | None,
    args: argparse.Namespace,
) -> None:
    t0 = time.monotonic()
    try:
        r = await client.post(f"{url}/v1/instances", params={"project": PROJECT}, json=body)
    except httpx.HTTPError as exc:
        if result is not None:
            result.failures.append(f"{body['name']}: {type(exc).__name__}: {exc}")
        return
    ok, why = False, ""
    if r.status_code != 201:
        why = f"HTTP {r.status_code}: {r.text[:300]}"
    else:
        inst = r.json()
        if inst["run_state"] == "running":
            ok = True
        elif inst.get("status_reason"):
            reason = await _operator_reason(client, url, body["name"], inst["status_reason"])
            why = f"{inst['run_state']}: {reason}"
        else:
            if result is not None:
                result.polled += 1
            deadline = time.monotonic() + args.poll_timeout
            ok, why = await wait_running(client, url, body["name"], PROJECT, deadline, 0.01)
    t1 = time.monotonic()
    if result is None:
        if not ok:
            raise RuntimeError(f"warm-up start failed: {body['name']}: {why}")
        return
    if ok:
        result.latencies.append(t1 - t0)
    else:
        result.failures.append(f"{body['name']}: {why}")


async def _creates(
    urls: list[str], bodies: list[dict[str, Any]], result: Throughput | None, args: Any
) -> None:
    timeout = httpx.Timeout(args.start_wait + 60.0, connect=10.0)
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        sem = asyncio.Semaphore(args.concurrency)

        async def bounded(i: int, body: dict[str, Any]) -> None:
            async with sem:
                await _create_one(client, urls[i % len(urls)], body, result, args)

        await asyncio.gather(*(bounded(i, b) for i, b in enumerate(bodies)))


def _project(url: str, description: str) -> None:
    r = httpx.post(
        f"{url}/v1/projects", json={"name": PROJECT, "description": description}, timeout=30
    )
    r.raise_for_status()


def run_throughput(
    replicas: int, args: argparse.Namespace, round_: int, profile: bool
) -> tuple[Throughput, Profile | None]:
    with (
        tempfile.TemporaryDirectory(prefix=f"skylight-bench-rep{replicas}-") as tmp,
        Fleet(
            Path(tmp),
            args.pg_admin,
            replicas=replicas,
            agents=args.agents,
            replica_args=_replica_args(args),
            agent_cpus=args.agent_cpus,
            agent_memory=args.agent_memory,
            agent_delay=args.start_delay,
            tag=f"tp{replicas}",
        ) as fleet,
    ):
        _project(fleet.urls[0], "replicas throughput")
        warm = [instance_body(i, "warm-") for i in range(args.warmup * replicas)]
        asyncio.run(_creates(fleet.urls, warm, None, args))

        result = Throughput(replicas=replicas, n=args.n, concurrency=args.concurrency, round=round_)
        # The fleet's own transactions (heartbeats, adoption checks, leases, sled health)
        x0 = _xact_commit(args.pg_admin, fleet.dbname)
        time.sleep(3.0)
        x1 = _xact_commit(args.pg_admin, fleet.dbname)
        result.idle_xacts_per_s = (x1 - x0) / 3.0

        bodies = [instance_body(i, "inst-") for i in range(args.n)]
        r_cpu0 = [_cpu_seconds(_pid(r)) for r in fleet.replicas]
        a_cpu0 = fleet.cpu(fleet.agents)
        c_cpu0 = time.process_time()
        x0 = _xact_commit(args.pg_admin, fleet.dbname)
        with PgBackendCpu(args.pg_admin, fleet.dbname) as pg:
            m0 = _machine_busy()[0]
            t0 = time.monotonic()
            asyncio.run(_creates(fleet.urls, bodies, result, args))
            result.wall = time.monotonic() - t0
            result.machine_busy = _machine_busy()[0] - m0
            result.replica_cpu = [
                _cpu_seconds(_pid(r)) - c for r, c in zip(fleet.replicas, r_cpu0, strict=True)
            ]
            result.agent_cpu = fleet.cpu(fleet.agents) - a_cpu0
            result.client_cpu = time.process_time() - c_cpu0
        result.pg_cpu = pg.seconds
        result.pg_states = pg.states
        result.pg_lock_queries = pg.lock_queries
        result.pg_samples = pg.samples
        result.event_lock = pg.event_lock
        result.holder_last = pg.holder_last
        with fleet.conn() as c:
            result.events = int(
                c.execute(
                    sa.select(sa.func.count())
                    .select_from(event.join(instance, instance.c.id == event.c.instance_id))
                    .where(instance.c.name.like("inst-%"))
                ).scalar_one()
            )
        # pg_stat_database lags (backends report when idle, at most once a second).
        time.sleep(1.5)
        result.xacts = _xact_commit(args.pg_admin, fleet.dbname) - x0
        if result.failures:
            for r in fleet.replicas:
                print(f"--- replica log tail ({r.url}) ---\n{r.log()}", file=sys.stderr)

        return result, (profile_replica(fleet, args) if profile else None)


# -- where a replica's CPU goes (py-spy) ---------------------------------------------------------


@dataclass
class Profile:
    starts: int
    samples: int
    inclusive: list[tuple[str, float]]  # skylight functions, share of samples with it on stack
    own: list[tuple[str, float]]  # leaf frames (any code), share of samples
    error: str = ""
    wall: float = math.nan  # seconds sampled
    rate: int = 100  # samples per second asked of py-spy
    cpu: float = math.nan  # the replica's CPU seconds meanwhile

    @property
    def gil_share(self) -> float:
        """Share of the sampling instants at which some thread held the GIL."""
        return self.samples / (self.wall * self.rate) if self.wall > 0 else math.nan


def _frame_key(frame: str) -> str:
    """``func (path:line)`` -> ``module.func`` with the path shortened."""
    m = re.match(r"^(.*) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    func, path = m.group(1), m.group(2)
    for marker in ("/site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    path = path.removesuffix(".py").replace("/", ".")
    if path.startswith("skylight."):
        path = path.removeprefix("skylight.")
    return f"{path}.{func}"


def profile_replica(fleet: Fleet, args: argparse.Namespace) -> Profile:
    spy = Path(sys.executable).with_name("py-spy")
    replica0 = fleet.replicas[0]
    pid = _pid(replica0)
    if not spy.exists() or pid is None:
        return Profile(0, 0, [], [], error="py-spy not found next to the interpreter")
    out = fleet.root / "profile.txt"
    # --gil: sample only the thread holding the GIL (none when all wait on I/O or locks).
    cmd = [str(spy), "record", "--pid", str(pid), "--rate", "100", "--format", "raw", "--gil"]
    cmd += ["--nonblocking", "--output", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)  # py-spy attaches
        bodies = [instance_body(i, "prof-") for i in range(args.profile_n)]
        cpu0, t0 = _cpu_seconds(pid), time.monotonic()
        asyncio.run(_creates(fleet.urls, bodies, None, args))
        cpu, wall = _cpu_seconds(pid) - cpu0, time.monotonic() - t0 + 1.0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate(timeout=10)
    if not out.exists():
        return Profile(args.profile_n, 0, [], [], error=err.decode(errors="replace")[-300:])
    samples = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in out.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_key(f) for f in stack.split(";") if f]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for key in set(frames):
            inclusive[key] += count
    # Only Skylight's own functions for the inclusive ranking (entry points excluded).
    ours = [
        (k, v / samples)
        for k, v in inclusive.most_common()
        if re.match(r"^(sagas|store|instances|placement|sled|api|events|background)\.", k)
    ]
    return Profile(
        starts=args.profile_n,
        samples=samples,
        inclusive=ours[:12],
        own=[(k, v / samples) for k, v in own.most_common(12)] if samples else [],
        wall=wall,
        cpu=cpu,
    )


# -- part 2: replica death to outcome ----------------------------------------------------------


@dataclass
class Trial:
    timeout: float
    index: int
    victim: int
    k: int
    in_flight: int = 0  # start sagas unfinished and the victim's at the kill
    ended_before_kill: int = 0
    kill_to_adopted: list[float] = field(default_factory=list)
    kill_to_outcome: list[float] = field(default_factory=list)
    adopted_to_outcome: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    adopters: Counter[int] = field(default_factory=Counter)
    adopted_events: int = 0
    boots_done_by: float = math.nan  # latest VMM boot end (estimated) after the kill, s
    stood_at: Counter[str] = field(default_factory=Counter)  # last saga log entry at the kill
    boot_wait: list[float] = field(default_factory=list)  # boot left after adoption, per saga
    kill_to_outcome_less_boot: list[float] = field(default_factory=list)
    last_heartbeat_before_kill: float = math.nan  # s
    missing: int = 0  # sagas in flight without an outcome event before the deadline
    problems: list[str] = field(default_factory=list)


def _start_sagas(fleet: Fleet, ids: list[str]) -> list[Any]:
    with fleet.conn() as c:
        return list(
            c.execute(
                sa.select(saga.c.id, saga.c.instance_id, saga.c.state, saga.c.current_sec).where(
                    saga.c.name == "instance-start", saga.c.instance_id.in_(ids)
                )
            )
        )


def _vmms(fleet: Fleet, ids: list[str]) -> list[Any]:
    with fleet.conn() as c:
        return list(
            c.execute(
                sa.select(vmm.c.instance_id, vmm.c.state, vmm.c.time_state_updated).where(
                    vmm.c.instance_id.in_(ids)
                )
            )
        )


async def _create_async(url: str, bodies: list[dict[str, Any]]) -> list[str]:
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:

        async def one(body: dict[str, Any]) -> str:
            r = await client.post(
                "/v1/instances",
                params={"project": PROJECT},
                json=body,
                headers={"Prefer": "respond-async"},
            )
            if r.status_code != 201:
                raise RuntimeError(f"create {body['name']}: HTTP {r.status_code}: {r.text[:300]}")
            return str(r.json()["id"])

        return list(await asyncio.gather(*(one(b) for b in bodies)))


def _node_events(fleet: Fleet, saga_ids: list[str]) -> list[Any]:
    with fleet.conn() as c:
        return list(
            c.execute(
                sa.select(
                    saga_node_event.c.saga_id,
                    saga_node_event.c.seq,
                    saga_node_event.c.node_name,
                    saga_node_event.c.event_type,
                    saga_node_event.c.time,
                )
                .where(saga_node_event.c.saga_id.in_(saga_ids))
                .order_by(saga_node_event.c.saga_id, saga_node_event.c.seq)
            )
        )


def run_trial(fleet: Fleet, timeout: float, index: int, args: argparse.Namespace) -> Trial:
    victim_i = index % len(fleet.replicas)
    victim = fleet.replicas[victim_i]
    ids_by_bind = fleet.replica_ids()
    bind_of = {v: k for k, v in ids_by_bind.items()}
    index_of_bind = {r.url.removeprefix("http://"): i for i, r in enumerate(fleet.replicas)}
    victim_id = ids_by_bind[victim.url.removeprefix("http://")]
    trial = Trial(timeout=timeout, index=index, victim=victim_i, k=args.k)

    bodies = [instance_body(index * args.k + j, f"a{int(timeout)}-") for j in range(args.k)]
    ids = asyncio.run(_create_async(victim.url, bodies))

    # Every start saga waiting for its VMM to boot; bounded: kill anyway once the first boot
    # is about to end (the sagas already ended are counted apart).
    t_wait = time.monotonic()
    while time.monotonic() - t_wait < 30:
        states = [v.state for v in _vmms(fleet, ids)]
        if len(states) == len(ids) and all(s == "starting" for s in states):
            break
        starting = [v for v in _vmms(fleet, ids) if v.state == "starting"]
        if starting:
            oldest = min(as_utc(v.time_state_updated).timestamp() for v in starting)
            if time.time() - oldest > args.adopt_start_delay * 0.6:
                break
        time.sleep(0.02)

    with fleet.conn() as c:
        hb = c.execute(
            sa.select(replica.c.time_heartbeat).where(replica.c.id == victim_id)
        ).scalar_one()
    t_kill = time.time()
    victim.kill()
    trial.last_heartbeat_before_kill = t_kill - as_utc(hb).timestamp()

    sagas = _start_sagas(fleet, ids)
    flying = {
        s.id: s.instance_id
        for s in sagas
        if s.state in ("running", "unwinding") and s.current_sec == victim_id
    }
    trial.in_flight = len(flying)
    trial.ended_before_kill = len(ids) - len(flying)
    boots = [
        as_utc(v.time_state_updated).timestamp() + args.adopt_start_delay - t_kill
        for v in _vmms(fleet, list(flying.values()))
        if v.state == "starting"
    ]
    trial.boots_done_by = max(boots) if boots else math.nan
    last: dict[str, str] = {}
    for ev in _node_events(fleet, list(flying)):
        last[ev.saga_id] = f"{ev.node_name} {ev.event_type}"
    for saga_id in flying:
        trial.stood_at[last.get(saga_id, "no step logged")] += 1

    def ended() -> bool:
        rows = _start_sagas(fleet, list(flying.values()))
        return all(r.state not in ("running", "unwinding") for r in rows if r.id in flying)

    try:
        _wait("the adopted sagas to end", ended, timeout + args.outcome_grace, interval=0.05)
    except RuntimeError as exc:
        trial.problems.append(str(exc))

    with fleet.conn() as c:
        events = list(
            c.execute(
                sa.select(event.c.kind, event.c.operation_id, event.c.time, event.c.detail).where(
                    event.c.operation_id.in_(list(flying)),
                    event.c.kind.in_((*OUTCOME_KINDS, ADOPTED_KIND)),
                )
            )
        )
    adopted: dict[str, float] = {}
    outcome: dict[str, float] = {}
    for e in events:
        t = as_utc(e.time).timestamp() - t_kill
        if e.kind == ADOPTED_KIND:
            trial.adopted_events += 1
            adopted[e.operation_id] = min(t, adopted.get(e.operation_id, math.inf))
            to = ((e.detail or {}).get("internal") or {}).get("to_replica")
            trial.adopters[index_of_bind.get(bind_of.get(to, "?"), -1)] += 1
        else:
            trial.outcomes[e.kind] += 1
            outcome[e.operation_id] = min(t, outcome.get(e.operation_id, math.inf))
    # The boot began when the saga started its ensure_running step (before the kill, or
    # after the adoption for a saga that had not reached it); it ends start_delay later.
    boot_start: dict[str, float] = {}
    for ev in _node_events(fleet, list(flying)):
        if ev.node_name == "ensure_running" and ev.event_type == "started":
            boot_start[ev.saga_id] = as_utc(ev.time).timestamp() - t_kill
    for saga_id in flying:
        if saga_id in outcome:
            trial.kill_to_outcome.append(outcome[saga_id])
        else:
            trial.missing += 1
        if saga_id in adopted:
            trial.kill_to_adopted.append(adopted[saga_id])
            if saga_id in outcome:
                trial.adopted_to_outcome.append(outcome[saga_id] - adopted[saga_id])
                wait = 0.0
                if saga_id in boot_start:
                    boot_end = boot_start[saga_id] + args.adopt_start_delay
                    wait = max(0.0, boot_end - adopted[saga_id])
                trial.boot_wait.append(wait)
                trial.kill_to_outcome_less_boot.append(outcome[saga_id] - wait)

    victim.start(timeout=90)  # the same data directory: the same replica id
    return trial


def run_adoption(timeout: float, args: argparse.Namespace) -> list[Trial]:
    with (
        tempfile.TemporaryDirectory(prefix=f"skylight-bench-adopt{timeout:g}-") as tmp,
        Fleet(
            Path(tmp),
            args.pg_admin,
            replicas=args.adopt_replicas,
            agents=args.adopt_agents,
            replica_args=_replica_args(args, timeout),
            agent_cpus=args.agent_cpus,
            agent_memory=args.agent_memory,
            agent_delay=args.adopt_start_delay,
            tag=f"ad{int(timeout)}",
        ) as fleet,
    ):
        _project(fleet.urls[0], "replica death")
        trials = []
        for i in range(args.trials):
            t = run_trial(fleet, timeout, i, args)
            trials.append(t)
            print(
                f"  timeout {timeout:g}s trial {i + 1}: victim r{t.victim}, "
                f"{t.in_flight}/{t.k} in flight, kill->adopted max "
                f"{_s(_mx(t.kill_to_adopted))} s, kill->outcome p50 "
                f"{_s(_pct(t.kill_to_outcome, 0.5))} max "
                f"{_s(_mx(t.kill_to_outcome))} s, "
                f"{t.adopted_events} adopted events {dict(t.outcomes)}"
                + (f" PROBLEMS {t.problems}" if t.problems else ""),
                flush=True,
            )
        return trials


# -- report ------------------------------------------------------------------------------------


def _reps(n: int) -> str:
    return f"{n} replica" if n == 1 else f"{n} replicas"


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.0f}"


def _s(seconds: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds:.{digits}f}"


def _f(value: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _git_rev() -> tuple[str, str]:
    """(the commit, with a note if src/ has uncommitted changes; the code's identity: the
    src/ tree of HEAD plus the uncommitted diff of src/)."""
    rev = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src")
    code = git("rev-parse", "HEAD:src") + "\n" + (git("diff", "HEAD", "--", "src") if dirty else "")
    return f"{rev}{' (src/ with uncommitted changes)' if dirty else ''}", code


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def machine(
    args: argparse.Namespace, load: tuple[str, str], revs: tuple[tuple[str, str], ...]
) -> list[tuple[str, str]]:
    (rev, code), (rev_now, code_now) = revs[0], revs[1]
    if code != code_now:
        rev = (
            f"{rev} at the start; `src/` changed during the run (now {rev_now}): processes "
            "started after the change ran the new code"
        )
    return machine_rows(
        [("SQLAlchemy", sa.__version__)],
        sqlite=False,
        postgres=pg_version(args.pg_admin),
        skylight=rev,
        extra=[load_row(load)],
    )


def throughput_table(results: list[Throughput]) -> str:
    lines = [
        "| replicas | round | N | clients | failures | wall (s) | starts/s | p50 (ms) | p90 (ms) "
        "| p99 (ms) | max (ms) | replicas CPU (ms/start) | agents | PostgreSQL backends "
        "| client | sum (ms/start) | sum / wall (CPUs) | machine busy (CPUs) | commits/start |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = sorted(results, key=lambda r: (r.replicas, r.round))
    if len(rows) > len({r.replicas for r in rows}):
        rows += merged(results)
    for r in rows:
        rep = sum(r.replica_cpu)
        per = " + ".join(_f(r.per_start_ms(c)) for c in r.replica_cpu)
        wall = r.wall if r.wall > 0 else math.nan
        lines.append(
            f"| {r.replicas} | {r.round or '**all**'} | {r.n} | {r.concurrency} "
            f"| {len(r.failures)} | {r.wall:.1f} "
            f"| {r.rate:.1f} | {_ms(_pct(r.latencies, 0.5))} | {_ms(_pct(r.latencies, 0.9))} "
            f"| {_ms(_pct(r.latencies, 0.99))} | {_ms(_mx(r.latencies))} "
            f"| {_f(r.per_start_ms(rep))}{f' ({per})' if len(r.replica_cpu) > 1 else ''} "
            f"| {_f(r.per_start_ms(r.agent_cpu))} | >= {_f(r.per_start_ms(r.pg_cpu))} "
            f"| {_f(r.per_start_ms(r.client_cpu))} | {_f(r.per_start_ms(r.fleet_cpu))} "
            f"| {_f(r.fleet_cpu / wall, 2)} | {_f(r.machine_busy / wall, 2)} "
            f"| {_f(r.xacts_per_start)} |"
        )
    return "\n".join(lines)


def pg_activity_table(results: list[Throughput]) -> str:
    keys: Counter[str] = Counter()
    for r in results:
        total = sum(r.pg_states.values())
        for k, v in r.pg_states.items():
            keys[k] += v / total if total else 0
    top = [k for k, _ in keys.most_common(8)]
    lines = [
        "| activity of a backend in a transaction | "
        + " | ".join(f"{_reps(r.replicas)}" for r in results)
        + " |",
        "| --- |" + " ---: |" * len(results),
    ]
    for k in top:
        cells = []
        for r in results:
            total = sum(r.pg_states.values())
            cells.append(f"{r.pg_states[k] / total:.0%}" if total else "n/a")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    cells = []
    for r in results:
        n = sum(r.pg_states.values())
        cells.append(f"{n} ({n / r.pg_samples:.1f})" if r.pg_samples else str(n))
    lines.append("| samples (backends in a transaction per sample) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _within(values: list[float], goal: float, missing: int) -> str:
    worst = _mx(values)
    text = "n/a" if math.isnan(worst) else ("yes" if worst <= goal else "**no**")
    return text + (f" ({missing} without outcome)" if missing else "")


def _trial_ok(values: list[float], goal: float, missing: int) -> bool:
    return bool(values) and not missing and max(values) <= goal


def adoption_table(trials: list[Trial]) -> str:
    lines = [
        "| adoption timeout (s) | trial | victim | in flight at kill | where they stood at "
        "the kill (last saga log entry) | victim's last heartbeat before kill (s) "
        "| kill -> adopted p50 / max (s) | adopted -> outcome p50 / max (s) | boot left "
        "after adoption, max (s) | kill -> outcome p50 / max (s) | the same less the boot "
        "left (s) | goal (s) | within goal: as measured / less boot | `operation_adopted` "
        "events (by adopter) | outcomes |",
        "| ---: | ---: | --- | ---: | --- | ---: | --- | --- | ---: | --- | --- | ---: | --- "
        "| --- | --- |",
    ]
    for t in trials:
        goal = t.timeout + 2.0
        adopters = ", ".join(f"r{i}: {n}" for i, n in sorted(t.adopters.items()))
        outcomes = ", ".join(f"`{k}` {n}" for k, n in sorted(t.outcomes.items())) or "none"
        stood = ", ".join(f"`{k}` {n}" for k, n in t.stood_at.most_common())
        lines.append(
            f"| {t.timeout:g} | {t.index + 1} | r{t.victim} | {t.in_flight} of {t.k} "
            f"| {stood} | {_s(t.last_heartbeat_before_kill)} "
            f"| {_s(_pct(t.kill_to_adopted, 0.5))} / {_s(_mx(t.kill_to_adopted))} "
            f"| {_s(_pct(t.adopted_to_outcome, 0.5))} / {_s(_mx(t.adopted_to_outcome))} "
            f"| {_s(_mx(t.boot_wait))} "
            f"| {_s(_pct(t.kill_to_outcome, 0.5))} / {_s(_mx(t.kill_to_outcome))} "
            f"| {_s(_pct(t.kill_to_outcome_less_boot, 0.5))} / "
            f"{_s(_mx(t.kill_to_outcome_less_boot))} | {goal:g} "
            f"| {_within(t.kill_to_outcome, goal, t.missing)} / "
            f"{_within(t.kill_to_outcome_less_boot, goal, t.missing)} "
            f"| {t.adopted_events} ({adopters or 'none'}) | {outcomes} |"
        )
    return "\n".join(lines)


def adoption_summary(trials: list[Trial]) -> str:
    lines = [
        "| adoption timeout (s) | trials | sagas in flight | kill -> adopted p50 / max (s) "
        "| adopted -> outcome p50 / max (s) | sagas with boot left after adoption "
        "| kill -> outcome p50 / max (s) | the same less the boot left p50 / max (s) "
        "| goal (s) | trials within goal: as measured / less boot |",
        "| ---: | ---: | ---: | --- | --- | ---: | --- | --- | ---: | --- |",
    ]
    for timeout in sorted({t.timeout for t in trials}):
        ts = [t for t in trials if t.timeout == timeout]
        ka = [x for t in ts for x in t.kill_to_adopted]
        ao = [x for t in ts for x in t.adopted_to_outcome]
        ko = [x for t in ts for x in t.kill_to_outcome]
        kb = [x for t in ts for x in t.kill_to_outcome_less_boot]
        booting = sum(1 for t in ts for x in t.boot_wait if x > 0)
        goal = timeout + 2.0
        ok = sum(_trial_ok(t.kill_to_outcome, goal, t.missing) for t in ts)
        ok_b = sum(_trial_ok(t.kill_to_outcome_less_boot, goal, t.missing) for t in ts)
        lines.append(
            f"| {timeout:g} | {len(ts)} | {sum(t.in_flight for t in ts)} "
            f"| {_s(_pct(ka, 0.5))} / {_s(_mx(ka))} "
            f"| {_s(_pct(ao, 0.5))} / {_s(_mx(ao))} | {booting} "
            f"| {_s(_pct(ko, 0.5))} / {_s(_mx(ko))} "
            f"| {_s(_pct(kb, 0.5))} / {_s(_mx(kb))} | {goal:g} "
            f"| {ok} / {ok_b} of {len(ts)} |"
        )
    return "\n".join(lines)


LOCK_SITES = (
    (
        "pg_advisory_xact_lock",
        "`store/events.py` `insert`: the fleet-wide event lock, held until commit",
    ),
    (
        "FROM sled WHERE",
        "`store/sleds.py` `lock_and_measure`: the chosen sled's row lock, in "
        "`sagas/instance_start.py` `reserve_sled`",
    ),
    (
        "INSERT INTO vmm",
        "`store/instances.py` `insert_vmm`: its foreign key to `sled` takes a KEY SHARE "
        "lock, which a `FOR UPDATE` of that sled blocks",
    ),
    ("FROM saga", "`sagas/executor.py` `_check_fence` / `_log`: the saga row"),
    ("FROM instance", "the instance row (`store/instances.py`)"),
)


def _lock_site(query: str) -> str:
    for needle, site in LOCK_SITES:
        if needle in query:
            return site
    return f"`{query}`"


def _sled_lock_note(results: list[Throughput]) -> str:
    waits: Counter[str] = Counter()
    for r in results:
        waits.update(r.pg_lock_queries)
    total = sum(waits.values())
    sled_waits = [q for q in waits if "FROM sled WHERE" in q]
    share = sum(waits[q] for q in sled_waits) / total if total else 0.0
    if not sled_waits:
        return ""
    mode = "FOR NO KEY UPDATE" if any("NO KEY UPDATE" in q for q in sled_waits) else "FOR UPDATE"
    note = (
        f" The sled row lock is second ({share:.0%} of the lock waits): "
        f"`store/sleds.py` `lock_and_measure` (`{mode}`) in `sagas/instance_start.py` "
        "`reserve_sled` queues the starts placed on the same sled, and that transaction then "
        "waits for the event lock (`record(... Kind.PLACED ...)`) while it holds the sled's row."
    )
    fk = sum(v for q, v in waits.items() if "INSERT INTO vmm" in q)
    if fk:
        note += (
            f" Inserting the VMM row waited too ({fk / total:.0%}): its foreign key to `sled` "
            "takes KEY SHARE, which `FOR UPDATE` on the sled blocks and `FOR NO KEY UPDATE` "
            "would not."
        )
    return note


def _transport_detail(failure: str) -> str:
    m = re.search(r"cannot reach the sled agent at \S+ \w+\([^)]*\)", failure)
    return m.group(0) if m else failure[-120:]


def findings(
    results: list[Throughput], trials: list[Trial], profile: Profile | None, args: Any
) -> list[str]:
    out: list[str] = []
    ncpu = os.cpu_count() or 1
    by = {r.replicas: r for r in results}
    one, three = by.get(1), by.get(3)
    for r in results:
        if not r.ok or r.wall <= 0:
            continue
        fleet, busy = r.fleet_cpu / r.wall, r.machine_busy / r.wall
        total = sum(r.pg_states.values())
        shares = (
            ", ".join(f"{k} {v / total:.0%}" for k, v in r.pg_states.most_common(3))
            if total
            else "n/a"
        )
        saturated = (
            "the machine's CPUs were saturated"
            if busy >= 0.85 * ncpu
            else f"the machine was not saturated ({busy:.2f} of {ncpu} CPUs busy)"
        )
        out.append(
            f"- **{_reps(r.replicas)}:** {r.rate:.1f} starts/s, p50 "
            f"{_ms(_pct(r.latencies, 0.5))} ms. The fleet's processes (replicas, agents, "
            f"PostgreSQL backends, client) used {fleet:.2f} CPUs while the starts ran and the "
            f"whole machine (other work included) {busy:.2f} of {ncpu}: {saturated}. Per "
            "start: "
            f"{_f(r.per_start_ms(sum(r.replica_cpu)))} ms of replica CPU, at least "
            f"{_f(r.per_start_ms(r.pg_cpu))} ms of PostgreSQL backend CPU, about "
            f"{_f(r.xacts_per_start)} committed transactions. PostgreSQL backends in a "
            f"transaction were: {shares}."
        )
        n_lock = sum(r.event_lock.values())
        if n_lock:
            held = 1 - r.event_lock["free"] / n_lock
            idle = sum(v for k, v in r.event_lock.items() if "the replica's turn" in k) / n_lock
            lockers = sum(r.pg_lock_queries.values())
            sites: Counter[str] = Counter()
            for q, v in r.pg_lock_queries.items():
                sites[_lock_site(q)] += v
            waits = "; ".join(f"{site} ({v / lockers:.0%})" for site, v in sites.most_common(3))
            per_start = r.events / r.ok if r.ok else math.nan
            out.append(
                f"  The event lock was held at {held:.0%} of the samples, and at {idle:.0%} "
                "its holder was *idle in transaction*, i.e. PostgreSQL was waiting for the "
                "replica's next statement while every other event writer of the fleet "
                f"waited. {_f(per_start, 1)} events were written per start, so the lock was "
                f"held about {_f(r.hold_ms, 1)} ms per event on average: one lock held that "
                f"long allows at most about {_f(1000 / (r.hold_ms * per_start), 1)} starts/s "
                f"however many replicas run. Lock waits by site: {waits or 'none seen'}."
            )
    if one and three and one.ok and three.ok and one.rate > 0:
        out.append(
            f"- **1 -> 3 replicas:** {three.rate / one.rate:.2f}x the starts/s "
            f"({one.rate:.1f} -> {three.rate:.1f}) on the same {ncpu} CPUs; replica CPU per "
            f"start {_f(one.per_start_ms(sum(one.replica_cpu)))} -> "
            f"{_f(three.per_start_ms(sum(three.replica_cpu)))} ms. More replicas add request "
            "handling, not CPUs, here; and every replica's event writes queue on the one "
            "event lock in the database, which replicas cannot spread."
        )
    failures = [f for r in results for f in r.failures]
    transport = [f for f in failures if re.search(r"ReadError|RemoteProtocolError|WriteError", f)]
    if failures:
        out.append(
            f"- **Failed starts:** {len(failures)} of "
            f"{sum(r.n for r in results)} in the throughput runs"
            + (
                f"; {len(transport)} of them `sled_failure` from a transport error on the "
                "replica's HTTP call to an agent process that stayed up (no agent is stopped "
                f"in these runs): `{_transport_detail(transport[0])}`. An empty "
                "`ReadError` is the signature of a pooled keep-alive connection that the agent "
                "closed as the request went out (uvicorn's default keep-alive is 5 s and "
                "`src/skylight/cli/sled_agent.py` does not set `timeout_keep_alive`; httpx's "
                "default keep-alive expiry is also 5 s); not verified further. "
                "`src/skylight/sled/http_client.py` `HttpSledAgent._call` turns the first "
                "transport error into a failed start although every agent call is idempotent "
                "(`docs/architecture.md`, Sleds): one retry on a fresh connection, or a "
                "client keep-alive expiry shorter than the agent's, would avoid it"
                if transport
                else ""
            )
            + "."
        )
    lock_bound = [
        r
        for r in results
        if r.pg_lock_queries
        and "pg_advisory_xact_lock" in r.pg_lock_queries.most_common(1)[0][0]
        and r.lock_held >= 0.5
    ]
    if lock_bound:
        out.append(
            "- **The bottleneck is the event lock**, not the number of replicas "
            f"({', '.join(f'{_reps(r.replicas)}: held {r.lock_held:.0%}' for r in lock_bound)}"
            "). `src/skylight/store/events.py` `insert` takes `pg_advisory_xact_lock` first and "
            "keeps it to commit, so every statement after it in the transaction (the "
            "coalescing lookup `_repeat_of`, the INSERT, `record`'s instance update, the rest "
            "of the caller's transaction: `instances/record.py` `record` in "
            "`sagas/instance_start.py` `reserve_sled` / `_done`, `sagas/instance_create.py` "
            "`_done`) and the commit's WAL flush run one transaction at a time across the "
            "fleet, and a holder waiting for its replica's GIL or a CPU stalls them all. Not "
            "applied (this benchmark does not change `src/`): take the lock as the last "
            "statement before commit (do the lookup and the other writes first), or drop it "
            "for a reader-side bound (streams read only below the oldest in-flight writer's "
            "`seq`, e.g. from `pg_snapshot_xmin`), so event writers no longer queue."
            + _sled_lock_note(lock_bound)
        )
    if profile is not None and profile.samples:
        top = ", ".join(f"`{k}` {v:.0%}" for k, v in profile.inclusive[:6])
        leaf = ", ".join(f"`{k}` {v:.0%}" for k, v in profile.own[:4])
        out.append(
            f"- **Inside the single replica** (py-spy `--gil`, {profile.starts} extra starts): "
            f"some thread held the GIL at {profile.gil_share:.0%} of the sampling instants "
            f"and the process used {_f(profile.cpu / profile.wall, 2)} CPUs over the "
            "profile. Of the GIL-holding samples, these Skylight functions were on the "
            f"stack: {top}; leaf frames: {leaf}. `store.engine.Store.tx_sync` "
            "(`src/skylight/store/engine.py`) is where every transaction runs, on a worker "
            "thread: SQLAlchemy and psycopg turn each statement and row into Python objects "
            "under the GIL, about "
            f"{_f(one.xacts_per_start) if one else '?'} transactions per start (the create "
            "and start sagas write their log step by step, "
            "`sagas/executor.py` `SagaExecutor._log`, and every action is its own "
            "`Store.tx`)."
        )
    for timeout in sorted({t.timeout for t in trials}):
        ts = [t for t in trials if t.timeout == timeout]
        ko = [x for t in ts for x in t.kill_to_outcome]
        ka = [x for t in ts for x in t.kill_to_adopted]
        ao = [x for t in ts for x in t.adopted_to_outcome]
        hb = [t.last_heartbeat_before_kill for t in ts]
        kb = [x for t in ts for x in t.kill_to_outcome_less_boot]
        replay = [a - w for t in ts for a, w in zip(t.adopted_to_outcome, t.boot_wait, strict=True)]
        owed = [(t.index + 1, sum(1 for w in t.boot_wait if w > 0), _mx(t.boot_wait)) for t in ts]
        owed = [o for o in owed if o[1]]
        missing = sum(t.missing for t in ts)
        goal = timeout + 2.0
        worst, worst_b = _mx(ko), _mx(kb)

        def verdict(worst: float, goal: float = goal, missing: int = missing) -> str:
            ok = not math.isnan(worst) and worst <= goal and not missing
            return "meets" if ok else "**misses**"

        boot_note = (
            "every VMM had finished booting before its saga was adopted, so no boot time is "
            "in these figures"
            if not owed
            else "in "
            + ", ".join(f"trial {i} ({n} sagas, up to {_s(w)} s)" for i, n, w in owed)
            + " the victim died before some sagas had asked their sled to boot the VMM "
            "(see *where they stood*), so the adopter started those boots and waited for them "
            f"({args.adopt_start_delay:g} s each): that wait is the *boot left*, which the "
            "goal does not count"
        )
        out.append(
            f"- **Adoption timeout {timeout:g} s:** kill -> outcome at most {_s(worst)} s "
            f"(p50 {_s(_pct(ko, 0.5))} s) over {len(ts)} trials, which {verdict(worst)} the "
            f"goal of {goal:g} s as measured; less the boot left after adoption, at most "
            f"{_s(worst_b)} s (p50 {_s(_pct(kb, 0.5))} s), which {verdict(worst_b)} it. "
            f"Kill -> adopted is {_s(_pct(ka, 0.5))} s p50 / {_s(_mx(ka))} s max: the timeout "
            "counts from the victim's last heartbeat, not from its death (it had heartbeat "
            f"{_s(min(hb))}-{_s(max(hb))} s before the kill), and a live replica looks once "
            f"per `--heartbeat-interval` ({args.heartbeat_interval:g} s; "
            "`background/replicas.py` `adoption_loop`), so adoption lands between about "
            "timeout - interval and timeout + interval after the kill. Replaying the adopted "
            "sagas to their outcome (`adopt_once` launches them all at once), boot left "
            f"excluded, takes {_s(_pct(replay, 0.5))} s p50 / {_s(_mx(replay))} s max "
            f"(as measured {_s(_pct(ao, 0.5))} / {_s(_mx(ao))} s); {boot_note}."
            + (f" {missing} sagas had no outcome before the deadline." if missing else "")
        )
    return out


def section(
    results: list[Throughput],
    trials: list[Trial],
    profile: Profile | None,
    args: argparse.Namespace,
    load: tuple[str, str],
    revs: tuple[tuple[str, str], ...],
) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cmd = ("python bench/replicas.py " + " ".join(sys.argv[1:])).strip()
    out = [
        SECTION,
        "",
        "Several `skylight serve --no-sim` replicas on one PostgreSQL database, with HTTP sled "
        "agents (`skylight sled-agent --sim`, one process per sled) registered with every "
        "replica; all real processes on one machine (`skylight.testing.ServerProcess`, "
        "`SledAgentProcess`). No duration is asserted in any test: these are measurements of "
        "one machine, not limits.",
        "",
        f"Measured {when} with `{cmd}`.",
        "",
        f"**This machine has {os.cpu_count()} CPUs, shared by everything here:** every "
        "replica, every sled agent, PostgreSQL, and the benchmark's clients (and whatever else "
        "runs on the machine; see the load average below). Several replicas therefore cannot "
        "add CPU; the 3-replica figures show what replicas cost, not how they scale on "
        "separate machines.",
        "",
    ]
    agg = merged(results)  # one per replica count, all rounds together
    if results:
        out += [
            "### Start throughput, 1 and 3 replicas",
            "",
            f"{args.rounds} round(s), the replica counts in alternating order (1, 3, 3, 1, "
            "...); a fresh database and fleet per round and replica count: "
            f"{args.agents} HTTP sled agents of "
            f"{args.agent_cpus} threads / {args.agent_memory} GiB (`--start-delay "
            f"{args.start_delay:g}`), then N creates with `start: true` (1 or 2 vCPUs, 1 or 2 "
            "GiB, alternating) sent round-robin to the replicas' URLs from "
            f"{args.concurrency} concurrent clients (one `httpx.AsyncClient`, a semaphore), "
            f"after {args.warmup} uncounted warm-up starts per replica. A create answers once "
            "its start saga has ended (`--start-wait` "
            f"{args.start_wait:g}); latency is from sending it to the instance being "
            "`running` (a 201 not yet running is polled). starts/s = successful starts / wall "
            "time. CPU per start is CPU time (user + system, `/proc/<pid>/stat`) during the N "
            "creates / successful starts: of the replica processes (each replica's in "
            "parentheses), of the agent processes, of PostgreSQL's backends for this database "
            "(sampled every 0.2 s, so a lower bound; the WAL writer, checkpointer etc. are "
            "not in it), and of the benchmark's client process. Commits/start = "
            "`pg_stat_database.xact_commit` of the database over the N creates, less the "
            "fleet's idle rate (heartbeats, adoption checks, leases, sled health) measured "
            "for 3 s before, per start. The **all** rows take every round together (sums of "
            "times and counts; percentiles over all latencies). *sum / wall* is the "
            "measured processes' CPU time over the wall time (in CPUs); *machine busy* is "
            "the whole machine's non-idle time from `/proc/stat` over the same window "
            "(everything, other work included).",
            "",
            throughput_table(results),
            "",
            "What PostgreSQL's backends for the database were doing while the starts ran "
            "(`pg_stat_activity` sampled every 0.2 s, all rounds; share of the samples of "
            "backends in a "
            "transaction: executing, waiting on an event such as a lock, or *idle in "
            "transaction*, i.e. waiting for the replica to send its next statement or "
            "commit):",
            "",
            pg_activity_table(agg),
            "",
        ]
        for r in agg:
            if r.pg_lock_queries:
                total = sum(r.pg_lock_queries.values())
                waits = "; ".join(
                    f"`{q}` {n / total:.0%}" for q, n in r.pg_lock_queries.most_common(4)
                )
                out += [f"- {_reps(r.replicas)}, statements waiting on a lock: {waits}"]
        if any(r.pg_lock_queries for r in agg):
            out.append("")
        if any(r.event_lock for r in agg):
            keys = Counter[str]()
            for r in agg:
                for k, v in r.event_lock.items():
                    keys[k] += v
            out += [
                "The event lock (`pg_advisory_xact_lock` taken by `store/events.py` `insert` "
                "in every transaction that writes an instance event, fleet-wide, held until "
                "commit), at the same samples:",
                "",
                "| event lock | " + " | ".join(f"{_reps(r.replicas)}" for r in agg) + " |",
                "| --- |" + " ---: |" * len(agg),
            ]
            for k, _ in keys.most_common(6):
                cells = []
                for r in agg:
                    n = sum(r.event_lock.values())
                    cells.append(f"{r.event_lock[k] / n:.0%}" if n else "n/a")
                out.append(f"| {k} | " + " | ".join(cells) + " |")
            out.append("")
            for r in agg:
                n = sum(r.holder_last.values())
                if n:
                    last = "; ".join(f"`{q}` {v / n:.0%}" for q, v in r.holder_last.most_common(5))
                    out.append(f"- {_reps(r.replicas)}, the idle holder's last statement: {last}")
            out.append("")
        for r in agg:
            for f in r.failures[:5]:
                out.append(f"- {_reps(r.replicas)} failure: {f}")
        if any(r.failures for r in agg):
            out.append("")
        if profile is not None and (profile.samples or profile.error):
            out += [
                "Where the single replica's time goes: `py-spy record --gil --nonblocking "
                f"--rate {profile.rate}` on the replica during {profile.starts} further starts "
                "(same settings, not in the table). With `--gil` py-spy samples only the "
                "thread holding the GIL, so a sample is Python (or C under the GIL) at work; "
                "threads waiting for PostgreSQL, an agent or the GIL itself are not sampled. "
                f"{profile.samples} samples in {_s(profile.wall, 1)} s: the GIL was held at "
                f"{_f(profile.gil_share * 100)}% of the sampling instants; the process used "
                f"{_f(profile.cpu / profile.wall, 2)} CPUs meanwhile. Shares are of the "
                "GIL-holding samples; *on the stack* counts a function once per sample "
                "(inclusive), *leaf* is the innermost frame (own time).",
                "",
            ]
            if profile.error:
                out += [f"py-spy failed: {profile.error}", ""]
            else:
                rows = max(len(profile.inclusive), len(profile.own))
                out += [
                    "| | Skylight function on the stack | share | leaf frame | share |",
                    "| ---: | --- | ---: | --- | ---: |",
                ]
                for i in range(min(rows, 10)):
                    a = profile.inclusive[i] if i < len(profile.inclusive) else ("", math.nan)
                    b = profile.own[i] if i < len(profile.own) else ("", math.nan)
                    out.append(
                        f"| {i + 1} | `{a[0]}` | {_f(a[1] * 100)}% | `{b[0]}` | {_f(b[1] * 100)}% |"
                    )
                out.append("")
    if trials:
        timeouts = ", ".join(f"{t:g}" for t in sorted({t.timeout for t in trials}))
        out += [
            "### Replica death to outcome",
            "",
            f"{args.adopt_replicas} replicas (`--adoption-timeout` {timeouts} s, "
            f"`--heartbeat-interval {args.heartbeat_interval:g}`), {args.adopt_agents} HTTP "
            f"sled agents whose VMMs take `--start-delay {args.adopt_start_delay:g}` s to "
            f"boot. Per trial: {args.k} instances created through one replica (the victim; "
            "r0, r1, r2 in turn) with `Prefer: respond-async`; once every start saga waits "
            "for its VMM to boot (`vmm.state = starting`; the bench kills earlier if a boot "
            "is about to end), `time.time()` is taken and the victim gets SIGKILL. The "
            "sagas still running and owned by the victim at that moment are *in flight*. "
            "Times are from the kill to the `time` of each saga's `instance.operation_adopted` "
            "event (written in the adopting transaction) and of its outcome event "
            "(`instance.running` / `instance.start_failed`, `operation_id` = the saga), all "
            "read from `instance_event` once the sagas have ended. *Where they stood* is each "
            "in-flight saga's last log entry (`saga_node_event`) at the kill: "
            "`ensure_running started` means the sled was already booting the VMM. A VMM's "
            "boot is taken to end `--start-delay` after its saga's `ensure_running` step "
            "started (before the kill, or after the adoption for a saga that had not got "
            "there); *boot left* is how much of it remained when the saga was adopted, "
            "which the adopter could not shorten; *less the boot left* subtracts it from "
            "kill -> outcome, so that only the control plane's own delay is compared with "
            "the goal. *Last heartbeat* is how long before the kill the victim last "
            "heartbeat. The victim is "
            "started again (same data directory: same replica id) before the next trial. The "
            "goal is kill -> outcome <= adoption timeout + 2 s.",
            "",
            adoption_summary(trials),
            "",
            "Per trial:",
            "",
            adoption_table(trials),
            "",
        ]
        for t in trials:
            for p in t.problems:
                out.append(f"- timeout {t.timeout:g} s, trial {t.index + 1}: {p}")
    found = findings(agg, trials, profile, args)
    if found:
        out += ["### Findings", "", *found, ""]
    settings = [
        ("replica flags", "`--no-sim`, " + " ".join(_replica_args(args)[1:])),
        ("throughput", f"N = {args.n}, {args.concurrency} clients, {args.agents} agents"),
        (
            "death to outcome",
            f"{args.trials} trials per timeout, K = {args.k}, {args.adopt_replicas} replicas, "
            f"{args.adopt_agents} agents, VMM boot {args.adopt_start_delay:g} s",
        ),
        ("agent size", f"{args.agent_cpus} threads / {args.agent_memory} GiB"),
        ("PostgreSQL pool per replica", "SQLAlchemy pool 10 + overflow 20; 16 concurrent tx"),
    ]
    out += setup_tables(machine(args, load, revs), settings)
    return "\n".join(out)


def write_doc(text: str) -> None:
    write_section(SECTION, text, DOC)


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="throughput,adoption", help="throughput,adoption")
    p.add_argument("--write", action="store_true", help=f"update {DOC.relative_to(ROOT)}")
    p.add_argument("--pg-admin", default=PG_ADMIN_DEFAULT, help="PostgreSQL admin URL")
    p.add_argument("--replica-counts", default="1,3", help="throughput fleets (1,3)")
    p.add_argument("-n", "--n", type=int, default=160, help="counted starts per fleet (160)")
    p.add_argument("--rounds", type=int, default=2, help="throughput rounds (2)")
    p.add_argument("-c", "--concurrency", type=int, default=16, help="concurrent clients (16)")
    p.add_argument("--warmup", type=int, default=4, help="uncounted starts per replica (4)")
    p.add_argument("--agents", type=int, default=6, help="sled agents, throughput (6)")
    p.add_argument("--agent-cpus", type=int, default=64)
    p.add_argument("--agent-memory", type=int, default=512, help="GiB")
    p.add_argument("--start-delay", type=float, default=0.05, help="agents' VMM boot (s)")
    p.add_argument("--start-wait", type=float, default=30.0, help="--start-wait (s)")
    p.add_argument("--sled-call-timeout", type=float, default=10.0)
    p.add_argument("--heartbeat-interval", type=float, default=1.0)
    p.add_argument("--poll-timeout", type=float, default=60.0)
    p.add_argument("--no-profile", dest="profile", action="store_false", help="skip py-spy")
    p.add_argument("--profile-n", type=int, default=60, help="starts under py-spy (60)")
    p.add_argument("--adoption-timeouts", default="5,10", help="seconds (5,10)")
    p.add_argument("--trials", type=int, default=5, help="trials per timeout (5)")
    p.add_argument("-k", "--k", type=int, default=10, help="instances per trial (10)")
    p.add_argument("--adopt-replicas", type=int, default=3)
    p.add_argument("--adopt-agents", type=int, default=3)
    p.add_argument("--adopt-start-delay", type=float, default=3.0, help="VMM boot (s)")
    p.add_argument("--outcome-grace", type=float, default=45.0, help="wait beyond timeout (s)")
    args = p.parse_args(argv)
    args.parts = {x.strip() for x in args.parts.split(",") if x.strip()}
    if not args.parts <= {"throughput", "adoption"}:
        p.error("--parts: throughput, adoption")
    args.replica_counts = [int(x) for x in args.replica_counts.split(",") if x.strip()]
    args.timeouts = [float(x) for x in args.adoption_timeouts.split(",") if x.strip()]
    if min(args.n, args.concurrency, args.k, args.trials, args.rounds) < 1:
        p.error("-n, -c, -k, --trials and --rounds must be at least 1")
    if args.adopt_replicas < 2:
        p.error("--adopt-replicas: at least 2 (one dies, another adopts)")
    # Capacity: instances of up to 2 vCPUs / 2 GiB; keep the rack at most 90% full.
    for count in args.replica_counts:
        extra = args.profile_n if args.profile and count == 1 else 0
        need = 1.5 * (args.n + args.warmup * count + extra)
        if need > 0.9 * args.agents * args.agent_cpus:
            p.error(f"{need:.0f} vCPUs of starts do not fit {args.agents} agents comfortably")
    if 1.5 * args.trials * args.k > 0.9 * args.adopt_agents * args.agent_cpus:
        p.error("the death-to-outcome trials do not fit the agents")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load0, rev0 = _loadavg(), _git_rev()
    results: list[Throughput] = []
    trials: list[Trial] = []
    profile: Profile | None = None
    t_begin = time.monotonic()
    if "throughput" in args.parts:
        # Rounds alternate the order (1, 3, 3, 1, ...) so that drift in the machine's other
        # load does not favour one replica count.
        order = [
            (i + 1, c)
            for i in range(args.rounds)
            for c in (args.replica_counts if i % 2 == 0 else args.replica_counts[::-1])
        ]
        for round_, replicas in order:
            print(
                f"throughput round {round_}: {replicas} replica(s), {args.n} starts ...",
                flush=True,
            )
            want = args.profile and replicas == 1 and profile is None
            r, prof = run_throughput(replicas, args, round_, want)
            results.append(r)
            profile = profile or prof
            print(
                f"  {r.ok}/{r.n} running, {len(r.failures)} failed, {r.polled} polled, "
                f"{r.wall:.1f}s, {r.rate:.1f} starts/s, p50 {_ms(_pct(r.latencies, 0.5))} ms, "
                f"p99 {_ms(_pct(r.latencies, 0.99))} ms, replicas CPU "
                f"{_f(r.per_start_ms(sum(r.replica_cpu)))} ms/start, PG >= "
                f"{_f(r.per_start_ms(r.pg_cpu))} ms/start, {_f(r.xacts_per_start)} commits/start",
                flush=True,
            )
            for f in r.failures[:5]:
                print(f"  failure: {f}", file=sys.stderr)
    if "adoption" in args.parts:
        for timeout in args.timeouts:
            print(f"death to outcome: adoption timeout {timeout:g} s ...", flush=True)
            trials += run_adoption(timeout, args)
    print(f"(took {time.monotonic() - t_begin:.0f} s)")
    text = section(results, trials, profile, args, (load0, _loadavg()), (rev0, _git_rev()))
    print()
    print(text)
    if args.write:
        write_doc(text)
        print(f"wrote {DOC}")
    bad = any(r.failures for r in results) or any(t.missing or t.problems for t in trials)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
