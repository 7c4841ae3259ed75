"""Replicas: start throughput with 1 and 3 replicas on PostgreSQL (real processes: replicas,
HTTP sled agents), and how long the sagas of a replica killed with SIGKILL take to reach their
outcomes. The method is described in docs/benchmarks.md ("## Replicas"); ``--write`` replaces
its marked blocks ``replicas:*``. Every loop is bounded; no duration is asserted.

    .venv/bin/python bench/replicas.py [--write] [--parts adoption --adoption-timeouts 5]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import sqlalchemy as sa

from harness import (
    Agents,
    Body,
    Clients,
    Fleet,
    Starts,
    create_all,
    create_project,
    finish,
    git,
    loadavg,
    machine_rows,
    measured,
    ms,
    num,
    parser,
    pct,
    pg_version,
    setup_tables,
    table,
    top,
    wait_for,
)
from harness import instance_body as _instance_body
from pg_activity import PgBackendCpu, machine_busy, xact_commit
from skylight.clock import as_utc
from skylight.store.schema import event, replica, saga, saga_node_event, vmm

PROJECT = "bench"
OUTCOME_KINDS = ("instance.running", "instance.start_failed")
ADOPTED_KIND = "instance.operation_adopted"


def instance_body(i: int, prefix: str) -> Body:
    return _instance_body(i, prefix, "replicas benchmark")


# -- the fleet ---------------------------------------------------------------------------------


def replica_args(args: argparse.Namespace, adoption_timeout: float | None = None) -> list[str]:
    out = ["--no-sim", "--start-wait", str(args.start_wait)]
    out += ["--sled-call-timeout", str(args.sled_call_timeout)]
    out += ["--heartbeat-interval", str(args.heartbeat_interval)]
    return out + (
        ["--adoption-timeout", str(adoption_timeout)] if adoption_timeout is not None else []
    )


def _fleet(
    root: Path,
    args: argparse.Namespace,
    replicas: int,
    agents: int,
    boot: float,
    adoption: float | None = None,
) -> Fleet:
    flags = replica_args(args, adoption)
    return Fleet(
        root,
        args.pg_admin,
        replicas,
        flags,
        Agents(agents, args.agent_cpus, args.agent_memory, boot),
    )


def _clients(args: argparse.Namespace, fleet: Fleet) -> Clients:
    return Clients(
        PROJECT, args.concurrency, args.start_wait, 0.01, args.poll_timeout, headers=fleet.headers
    )


# -- part 1: throughput ------------------------------------------------------------------------


@dataclass
class Throughput(Starts):
    replicas: int = 1
    round: int = 0  # 0: all rounds merged
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

    @property
    def fleet_cpu(self) -> float:
        """Replicas + agents + PostgreSQL backends + client, seconds."""
        return sum(self.replica_cpu) + self.agent_cpu + self.pg_cpu + self.client_cpu

    @property
    def xacts_per_start(self) -> float:
        if not self.ok or math.isnan(self.xacts):
            return math.nan
        background = 0.0 if math.isnan(self.idle_xacts_per_s) else self.idle_xacts_per_s
        return (self.xacts - background * self.wall) / self.ok


def merge(rs: list[Throughput]) -> Throughput:
    """All rounds of one replica count as one measurement (times and counts summed)."""
    m = Throughput(sum(r.n for r in rs), rs[0].concurrency, replicas=rs[0].replicas)
    for name in (
        "wall",
        "polled",
        "pg_samples",
        "agent_cpu",
        "pg_cpu",
        "client_cpu",
        "machine_busy",
    ):
        setattr(m, name, sum(getattr(r, name) for r in rs))
    for r in rs:
        m.latencies += r.latencies
        m.failures += r.failures
        for name in ("pg_states", "pg_lock_queries", "event_lock", "holder_last"):
            getattr(m, name).update(getattr(r, name))
    m.replica_cpu = [sum(c) for c in zip(*(r.replica_cpu for r in rs), strict=True)]
    m.xacts = sum(r.xacts - (r.idle_xacts_per_s or 0.0) * r.wall for r in rs)
    m.idle_xacts_per_s = 0.0
    return m


def merged(results: list[Throughput]) -> list[Throughput]:
    counts = sorted({r.replicas for r in results})
    return [merge([r for r in results if r.replicas == c]) for c in counts]


def run_throughput(replicas: int, args: argparse.Namespace, round_: int) -> Throughput:
    with (
        tempfile.TemporaryDirectory(prefix=f"skylight-bench-rep{replicas}-") as tmp,
        _fleet(Path(tmp), args, replicas, args.agents, args.start_delay) as fleet,
    ):
        create_project(fleet.urls[0], PROJECT, "replicas throughput", headers=fleet.headers)
        create_all(
            fleet.urls,
            [instance_body(i, "warm-") for i in range(args.warmup * replicas)],
            _clients(args, fleet),
        )
        r = Throughput(args.n, args.concurrency, replicas=replicas, round=round_)
        # The fleet's own transactions (heartbeats, adoption checks, leases, sled health)
        x0 = xact_commit(args.pg_admin, fleet.dbname)
        time.sleep(3.0)
        r.idle_xacts_per_s = (xact_commit(args.pg_admin, fleet.dbname) - x0) / 3.0
        r_cpu0 = [fleet.cpu([p]) for p in fleet.replicas]
        a_cpu0, c_cpu0 = fleet.cpu(fleet.agents), time.process_time()
        x0 = xact_commit(args.pg_admin, fleet.dbname)
        with PgBackendCpu(args.pg_admin, fleet.dbname) as pg:
            m0 = machine_busy()
            create_all(
                fleet.urls,
                [instance_body(i, "inst-") for i in range(args.n)],
                _clients(args, fleet),
                r,
            )
            r.machine_busy = machine_busy() - m0
            r.replica_cpu = [
                fleet.cpu([p]) - c for p, c in zip(fleet.replicas, r_cpu0, strict=True)
            ]
            r.agent_cpu = fleet.cpu(fleet.agents) - a_cpu0
            r.client_cpu = time.process_time() - c_cpu0
        r.pg_cpu, r.pg_states, r.pg_lock_queries = pg.seconds, pg.states, pg.lock_queries
        r.pg_samples, r.event_lock, r.holder_last = pg.samples, pg.event_lock, pg.holder_last
        time.sleep(1.5)  # pg_stat_database lags (backends report when idle, at most once a second)
        r.xacts = xact_commit(args.pg_admin, fleet.dbname) - x0
        for p in fleet.replicas if r.failures else []:
            print(f"--- replica log tail ({p.url}) ---\n{p.log()}", file=sys.stderr)
        return r


# -- part 2: replica death to outcome ----------------------------------------------------------


@dataclass
class Trial:
    timeout: float
    index: int
    victim: int
    k: int
    in_flight: int = 0  # start sagas unfinished and the victim's at the kill
    kill_to_adopted: list[float] = field(default_factory=list)
    kill_to_outcome: list[float] = field(default_factory=list)
    adopted_to_outcome: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    adopters: Counter[int] = field(default_factory=Counter)
    adopted_events: int = 0
    stood_at: Counter[str] = field(default_factory=Counter)  # last saga log entry at the kill
    boot_wait: list[float] = field(default_factory=list)  # boot left after adoption, per saga
    kill_to_outcome_less_boot: list[float] = field(default_factory=list)
    last_heartbeat_before_kill: float = math.nan  # s
    missing: int = 0  # sagas in flight without an outcome event before the deadline
    problems: list[str] = field(default_factory=list)


async def _create_async(url: str, headers: dict[str, str], bodies: list[Body]) -> list[str]:
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60.0) as client:

        async def one(body: Body) -> str:
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


def _at(value: object, t0: float) -> float:
    """A stored time as seconds after ``t0`` (a ``time.time()``)."""
    assert isinstance(value, datetime), value
    return as_utc(value).timestamp() - t0


def _wait_booting(fleet: Fleet, ids: list[str], boot: float) -> None:
    """Until every start saga waits for its VMM to boot; bounded: kill anyway once the first
    boot is about to end (the sagas already ended are counted apart)."""
    t_wait = time.monotonic()
    while time.monotonic() - t_wait < 30:
        vmms = fleet.rows(
            sa.select(vmm.c.state, vmm.c.time_state_updated).where(vmm.c.instance_id.in_(ids))
        )
        starting = [v for v in vmms if v.state == "starting"]
        if len(starting) == len(ids):
            return
        if starting and -min(_at(v.time_state_updated, time.time()) for v in starting) > boot * 0.6:
            return
        time.sleep(0.02)


def run_trial(fleet: Fleet, timeout: float, index: int, args: argparse.Namespace) -> Trial:
    victim_i = index % len(fleet.replicas)
    victim = fleet.replicas[victim_i]
    id_of_bind = {
        str(r.bind): str(r.id) for r in fleet.rows(sa.select(replica.c.id, replica.c.bind))
    }
    index_of_id = {
        id_of_bind.get(r.url.removeprefix("http://")): i for i, r in enumerate(fleet.replicas)
    }
    victim_id = id_of_bind[victim.url.removeprefix("http://")]
    trial = Trial(timeout=timeout, index=index, victim=victim_i, k=args.k)
    boot = args.adopt_start_delay
    ids = asyncio.run(
        _create_async(
            victim.url,
            fleet.headers,
            [instance_body(index * args.k + j, f"a{int(timeout)}-") for j in range(args.k)],
        )
    )
    _wait_booting(fleet, ids, boot)
    hb = fleet.rows(sa.select(replica.c.time_heartbeat).where(replica.c.id == victim_id))[0][0]
    t_kill = time.time()
    victim.kill()
    trial.last_heartbeat_before_kill = -_at(hb, t_kill)

    def start_sagas() -> list[sa.Row[tuple[object, ...]]]:
        q = sa.select(saga.c.id, saga.c.state, saga.c.current_sec)
        return fleet.rows(q.where(saga.c.name == "instance-start", saga.c.instance_id.in_(ids)))

    flying = {
        s.id
        for s in start_sagas()
        if s.state in ("running", "unwinding") and s.current_sec == victim_id
    }
    trial.in_flight = len(flying)
    n = saga_node_event.c
    steps = fleet.rows(
        sa.select(n.saga_id, n.node_name, n.event_type, n.time)
        .where(n.saga_id.in_(flying))
        .order_by(n.saga_id, n.seq)
    )
    last = {s.saga_id: f"{s.node_name} {s.event_type}" for s in steps}
    trial.stood_at.update(last.get(s, "no step logged") for s in flying)
    try:

        def ended() -> bool:
            return all(
                s.state not in ("running", "unwinding") for s in start_sagas() if s.id in flying
            )

        wait_for("the adopted sagas to end", ended, timeout + args.outcome_grace, interval=0.05)
    except RuntimeError as exc:
        trial.problems.append(str(exc))
    kinds = (*OUTCOME_KINDS, ADOPTED_KIND)
    q = sa.select(event.c.kind, event.c.operation_id, event.c.time, event.c.detail)
    adopted: dict[str, float] = {}
    outcome: dict[str, float] = {}
    for e in fleet.rows(q.where(event.c.operation_id.in_(flying), event.c.kind.in_(kinds))):
        t = _at(e.time, t_kill)
        if e.kind == ADOPTED_KIND:
            trial.adopted_events += 1
            adopted[e.operation_id] = min(t, adopted.get(e.operation_id, math.inf))
            trial.adopters[
                index_of_id.get(((e.detail or {}).get("internal") or {}).get("to_replica"), -1)
            ] += 1
        else:
            trial.outcomes[e.kind] += 1
            outcome[e.operation_id] = min(t, outcome.get(e.operation_id, math.inf))
    # The boot began when the saga started its ensure_running step (before the kill, or
    # after the adoption for a saga that had not reached it); it ends start_delay later.
    booting = (n.saga_id.in_(flying), n.node_name == "ensure_running", n.event_type == "started")
    boot_start = {
        s.saga_id: _at(s.time, t_kill)
        for s in fleet.rows(sa.select(n.saga_id, n.time).where(*booting))
    }
    for s in flying:
        trial.missing += s not in outcome
        if s in outcome:
            trial.kill_to_outcome.append(outcome[s])
        if s in adopted:
            trial.kill_to_adopted.append(adopted[s])
        if s in adopted and s in outcome:
            trial.adopted_to_outcome.append(outcome[s] - adopted[s])
            wait = max(0.0, boot_start[s] + boot - adopted[s]) if s in boot_start else 0.0
            trial.boot_wait.append(wait)
            trial.kill_to_outcome_less_boot.append(outcome[s] - wait)
    victim.start(timeout=90)  # the same data directory: the same replica id
    return trial


def run_adoption(timeout: float, args: argparse.Namespace) -> list[Trial]:
    with (
        tempfile.TemporaryDirectory(prefix=f"skylight-bench-adopt{timeout:g}-") as tmp,
        _fleet(
            Path(tmp), args, args.adopt_replicas, args.adopt_agents, args.adopt_start_delay, timeout
        ) as fleet,
    ):
        create_project(fleet.urls[0], PROJECT, "replica death", headers=fleet.headers)
        trials = []
        for i in range(args.trials):
            t = run_trial(fleet, timeout, i, args)
            trials.append(t)
            print(
                f"  timeout {timeout:g}s trial {i + 1}: victim r{t.victim}, {t.in_flight}/{t.k} "
                f"in flight, kill->adopted max {num(top(t.kill_to_adopted), 2)} s, kill->outcome "
                f"p50 / max {_p50_max(t.kill_to_outcome)} s, "
                f"{t.adopted_events} adopted events {dict(t.outcomes)}"
                + (f" PROBLEMS {t.problems}" if t.problems else ""),
                flush=True,
            )
        return trials


# -- report ------------------------------------------------------------------------------------


def _reps(n: int) -> str:
    return f"{n} replica" if n == 1 else f"{n} replicas"


def _s(seconds: float) -> str:
    return num(seconds, 2)


def _p50_max(values: list[float]) -> str:
    return f"{_s(pct(values, 0.5))} / {_s(top(values))}"


def _code_rev() -> tuple[str, str]:
    """(the commit, noted if src/ has uncommitted changes; the code's identity: the src/
    tree of HEAD plus the uncommitted diff of src/)."""
    rev = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src")
    code = git("rev-parse", "HEAD:src") + "\n" + (git("diff", "HEAD", "--", "src") if dirty else "")
    return f"{rev}{' (src/ with uncommitted changes)' if dirty else ''}", code


def _shares(counts: Counter[str], keys: Sequence[str]) -> list[str]:
    n = sum(counts.values())
    return [f"{counts[k] / n:.0%}" if n else "n/a" for k in keys]


def throughput_table(results: list[Throughput]) -> list[str]:
    header = ["replicas", "round", "N", "clients", "failures", "wall (s)", "starts/s", "p50 (ms)"]
    header += ["p90 (ms)", "p99 (ms)", "max (ms)", "replicas CPU (ms/start)", "agents"]
    header += ["PostgreSQL backends", "client", "sum (ms/start)", "sum / wall (CPUs)"]
    header += ["machine busy (CPUs)", "commits/start"]
    rows = sorted(results, key=lambda r: (r.replicas, r.round))
    rows += merged(results) if len(rows) > len({r.replicas for r in rows}) else []
    lines = []
    for r in rows:
        per = " + ".join(num(r.per_start_ms(c)) for c in r.replica_cpu)
        wall = r.wall if r.wall > 0 else math.nan
        lines.append(
            [
                r.replicas,
                r.round or "**all**",
                r.n,
                r.concurrency,
                len(r.failures),
                f"{r.wall:.1f}",
                f"{r.rate:.1f}",
                *(ms(pct(r.latencies, q)) for q in (0.5, 0.9, 0.99)),
                ms(top(r.latencies)),
                num(r.per_start_ms(sum(r.replica_cpu)))
                + (f" ({per})" if len(r.replica_cpu) > 1 else ""),
                num(r.per_start_ms(r.agent_cpu)),
                f">= {num(r.per_start_ms(r.pg_cpu))}",
                num(r.per_start_ms(r.client_cpu)),
                num(r.per_start_ms(r.fleet_cpu)),
                num(r.fleet_cpu / wall, 2),
                num(r.machine_busy / wall, 2),
                num(r.xacts_per_start),
            ]
        )
    return table(header, "rlrrrrrrrrrrrrrrrrr", lines)


def pg_tables(agg: list[Throughput]) -> dict[str, list[str]]:
    """What the backends were doing, the lock waits, and the event lock's holders."""
    keys: Counter[str] = Counter()
    for r in agg:
        keys.update({k: v / max(1, sum(r.pg_states.values())) for k, v in r.pg_states.items()})
    states = [k for k, _ in keys.most_common(8)]
    samples = [
        f"{n} ({n / r.pg_samples:.1f})" if r.pg_samples else str(n)
        for r in agg
        for n in [sum(r.pg_states.values())]
    ]
    rows = [[k, *(_shares(r.pg_states, [k])[0] for r in agg)] for k in states]
    rows.append(["samples (backends in a transaction per sample)", *samples])
    header = ["activity of a backend in a transaction", *(_reps(r.replicas) for r in agg)]
    backends = [*table(header, "l" + "r" * len(agg), rows), ""]
    for r in agg:
        if r.pg_lock_queries:
            total = sum(r.pg_lock_queries.values())
            waits = "; ".join(f"`{q}` {n / total:.0%}" for q, n in r.pg_lock_queries.most_common(4))
            backends.append(f"- {_reps(r.replicas)}, statements waiting on a lock: {waits}")
    blocks = {"replicas:backends": backends}
    if any(r.event_lock for r in agg):
        held = sum((r.event_lock for r in agg), Counter[str]())
        rows = [[k, *(_shares(r.event_lock, [k])[0] for r in agg)] for k, _ in held.most_common(6)]
        header = ["event lock", *(_reps(r.replicas) for r in agg)]
        lock = [*table(header, "l" + "r" * len(agg), rows), ""]
        for r in agg:
            n = sum(r.holder_last.values())
            last = "; ".join(f"`{q}` {v / n:.0%}" for q, v in r.holder_last.most_common(5))
            lock += (
                [f"- {_reps(r.replicas)}, the idle holder's last statement: {last}"] if n else []
            )
        blocks["replicas:event-lock"] = lock
    return blocks


def _trial_ok(values: list[float], goal: float, missing: int) -> bool:
    return bool(values) and not missing and max(values) <= goal


def _within(values: list[float], goal: float, missing: int) -> str:
    worst = top(values)
    text = "n/a" if math.isnan(worst) else ("yes" if worst <= goal else "**no**")
    return text + (f" ({missing} without outcome)" if missing else "")


def adoption_tables(trials: list[Trial]) -> list[str]:
    header = ["adoption timeout (s)", "trials", "sagas in flight", "kill -> adopted p50 / max (s)"]
    header += ["adopted -> outcome p50 / max (s)", "sagas with boot left after adoption"]
    header += ["kill -> outcome p50 / max (s)", "the same less the boot left p50 / max (s)"]
    header += ["goal (s)", "trials within goal: as measured / less boot"]
    summary = []
    for timeout in sorted({t.timeout for t in trials}):
        ts, goal = [t for t in trials if t.timeout == timeout], timeout + 2.0

        def every(name: str, ts: list[Trial] = ts) -> list[float]:
            return [x for t in ts for x in getattr(t, name)]

        ok = sum(_trial_ok(t.kill_to_outcome, goal, t.missing) for t in ts)
        ok_b = sum(_trial_ok(t.kill_to_outcome_less_boot, goal, t.missing) for t in ts)
        summary.append(
            [
                f"{timeout:g}",
                len(ts),
                sum(t.in_flight for t in ts),
                _p50_max(every("kill_to_adopted")),
                _p50_max(every("adopted_to_outcome")),
                sum(x > 0 for x in every("boot_wait")),
                _p50_max(every("kill_to_outcome")),
                _p50_max(every("kill_to_outcome_less_boot")),
                f"{goal:g}",
                f"{ok} / {ok_b} of {len(ts)}",
            ]
        )
    per = ["adoption timeout (s)", "trial", "victim", "in flight at kill"]
    per += [
        "where they stood at the kill (last saga log entry)",
        "victim's last heartbeat before kill (s)",
    ]
    per += ["kill -> adopted p50 / max (s)", "adopted -> outcome p50 / max (s)"]
    per += ["boot left after adoption, max (s)", "kill -> outcome p50 / max (s)"]
    per += ["the same less the boot left (s)", "goal (s)", "within goal: as measured / less boot"]
    per += ["`operation_adopted` events (by adopter)", "outcomes"]
    rows = []
    for t in trials:
        goal = t.timeout + 2.0
        adopters = ", ".join(f"r{i}: {n}" for i, n in sorted(t.adopters.items())) or "none"
        outcomes = ", ".join(f"`{k}` {n}" for k, n in sorted(t.outcomes.items())) or "none"
        rows.append(
            [
                f"{t.timeout:g}",
                t.index + 1,
                f"r{t.victim}",
                f"{t.in_flight} of {t.k}",
                ", ".join(f"`{k}` {n}" for k, n in t.stood_at.most_common()),
                _s(t.last_heartbeat_before_kill),
                _p50_max(t.kill_to_adopted),
                _p50_max(t.adopted_to_outcome),
                _s(top(t.boot_wait)),
                _p50_max(t.kill_to_outcome),
                _p50_max(t.kill_to_outcome_less_boot),
                f"{goal:g}",
                f"{_within(t.kill_to_outcome, goal, t.missing)} / "
                f"{_within(t.kill_to_outcome_less_boot, goal, t.missing)}",
                f"{t.adopted_events} ({adopters})",
                outcomes,
            ]
        )
    return [
        *table(header, "rrrllrllrl", summary),
        "",
        "Per trial:",
        "",
        *table(per, "rrlrlrllrllrlll", rows),
    ]


def section(
    results: list[Throughput],
    trials: list[Trial],
    args: argparse.Namespace,
    loads: list[str],
    revs: list[tuple[str, str]],
) -> dict[str, list[str]]:
    """The marked blocks of the "## Replicas" section; a part not run leaves its blocks as
    they are."""
    blocks = {"replicas:measured": [measured("replicas.py")]}
    agg = merged(results)  # one per replica count, all rounds together
    if results:
        failed = [f"- {_reps(r.replicas)} failure: {f}" for r in agg for f in r.failures[:5]]
        blocks["replicas:throughput"] = [*throughput_table(results), "", *failed]
        blocks |= pg_tables(agg)
    if trials:
        problems = [
            f"- timeout {t.timeout:g} s, trial {t.index + 1}: {p}"
            for t in trials
            for p in t.problems
        ]
        blocks["replicas:adoption"] = [*adoption_tables(trials), "", *problems]
    (rev, code), (rev_now, code_now) = revs
    if code != code_now:
        rev = (
            f"{rev} at the start; `src/` changed during the run (now {rev_now}): processes "
            "started after the change ran the new code"
        )
    machine = machine_rows(
        [("SQLAlchemy", sa.__version__)],
        sqlite=False,
        postgres=pg_version(args.pg_admin),
        skylight=rev,
        loads=loads,
    )
    settings = [
        ("replica flags", "`--no-sim`, " + " ".join(replica_args(args)[1:])),
        ("throughput", f"N = {args.n}, {args.concurrency} clients, {args.agents} agents"),
        (
            "death to outcome",
            f"{args.trials} trials per timeout, K = {args.k}, {args.adopt_replicas} replicas, "
            f"{args.adopt_agents} agents, VMM boot {args.adopt_start_delay:g} s",
        ),
        ("agent size", f"{args.agent_cpus} threads / {args.agent_memory} GiB"),
        ("PostgreSQL pool per replica", "SQLAlchemy pool 10 + overflow 20; 16 concurrent tx"),
    ]
    blocks["replicas:setup"] = setup_tables(machine, settings)
    return blocks


# -- main --------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__, stores=None)
    p.add_argument("--parts", default="throughput,adoption", help="throughput,adoption")
    p.add_argument("--replica-counts", type=_ints, default=[1, 3], help="throughput fleets (1,3)")
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
    p.add_argument(
        "--adoption-timeouts",
        dest="timeouts",
        type=_floats,
        default=[5.0, 10.0],
        help="seconds (5,10)",
    )
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
    if min(args.n, args.concurrency, args.k, args.trials, args.rounds) < 1:
        p.error("-n, -c, -k, --trials and --rounds must be at least 1")
    if args.adopt_replicas < 2:
        p.error("--adopt-replicas: at least 2 (one dies, another adopts)")
    # Capacity: instances of up to 2 vCPUs / 2 GiB; keep the rack at most 90% full.
    for count in args.replica_counts:
        if 1.5 * (args.n + args.warmup * count) > 0.9 * args.agents * args.agent_cpus:
            p.error(f"the starts do not fit {args.agents} agents comfortably")
    if 1.5 * args.trials * args.k > 0.9 * args.adopt_agents * args.agent_cpus:
        p.error("the death-to-outcome trials do not fit the agents")
    return args


def _rounds(args: argparse.Namespace) -> Iterator[tuple[int, int]]:
    """Rounds alternate the order (1, 3, 3, 1, ...) so that drift in the machine's other
    load does not favour one replica count."""
    for i in range(args.rounds):
        for count in args.replica_counts if i % 2 == 0 else args.replica_counts[::-1]:
            yield i + 1, count


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    loads, revs = [loadavg()], [_code_rev()]
    results: list[Throughput] = []
    trials: list[Trial] = []
    t_begin = time.monotonic()
    for round_, replicas in _rounds(args) if "throughput" in args.parts else []:
        print(f"throughput round {round_}: {replicas} replica(s), {args.n} starts ...", flush=True)
        r = run_throughput(replicas, args, round_)
        results.append(r)
        r.progress(f"  {replicas} replica(s)", f", {num(r.xacts_per_start)} commits/start")
    for timeout in args.timeouts if "adoption" in args.parts else []:
        print(f"death to outcome: adoption timeout {timeout:g} s ...", flush=True)
        trials += run_adoption(timeout, args)
    print(f"(took {time.monotonic() - t_begin:.0f} s)")
    loads.append(loadavg())
    revs.append(_code_rev())
    finish(section(results, trials, args, loads, revs), args.write)
    bad = any(r.failures for r in results) or any(t.missing or t.problems for t in trials)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
