"""Recovery storm: N instances run on 16 simulated sleds (HTTP sled agents), 4 sleds lose
power at once, and the clock runs until every instance that was on them is running on
another sled or explained (auto-restart gave up, with a status reason). 1 replica on SQLite,
1 and 2 replicas on PostgreSQL. The method is described in docs/benchmarks.md ("## Recovery
storm"); ``--write`` replaces its marked blocks ``storm:*``. No duration is asserted.

    python bench/recovery_storm.py [--write] [--instances N] [--configs sqlite:1,postgres:2]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa

from harness import (
    Agents,
    Body,
    Clients,
    Fleet,
    GiB,
    Starts,
    create_all,
    create_project,
    finish,
    loadavg,
    machine_rows,
    measured,
    num,
    parser,
    pct,
    pg_version,
    setup_tables,
    table,
)
from pg_activity import PgBackendCpu
from skylight.store.schema import event, instance, saga, sled, vmm
from skylight.testing import SledAgentProcess

PROJECT = "storm"


@dataclass
class Storm:
    """One configuration's run: the population, then the storm."""

    store: str
    replicas: int
    backoff: float
    population: Starts
    affected: int = 0
    poweroff_s: float = math.nan  # until the agents had told the control plane of every VMM
    settled_s: float = math.nan  # power-off -> every affected instance running or explained
    running_s: float = math.nan  # power-off -> every affected instance running elsewhere
    wall: float = math.nan  # power-off -> the end of the watch (all running, or quiet)
    settled_at: list[float] = field(default_factory=list)  # seconds after the power-off
    running: int = 0
    explained: int = 0
    unsettled: int = 0
    attempts: int = 0  # instance-start sagas begun for the affected instances
    unwound: int = 0  # of which unwound (the start failed)
    events: dict[str, int] = field(default_factory=dict)  # "kind reason": count, after t0
    reasons: dict[str, int] = field(default_factory=dict)  # explained: status reason codes
    server_cpu: float = math.nan
    db_cpu: float = math.nan  # PostgreSQL backends; SQLite's is inside the server
    agent_cpu: float = math.nan

    @property
    def moved_per_s(self) -> float:
        end = self.wall if math.isnan(self.running_s) else self.running_s
        return self.running / end if end > 0 else math.nan

    def per_restart_ms(self, seconds: float) -> float:
        return seconds / self.running * 1000 if self.running else math.nan


def instance_body(i: int) -> Body:
    name = f"s{i:05d}"
    return {
        "name": name,
        "description": "",
        "hostname": name,
        "ncpus": 1,
        "memory": GiB,
        "start": True,
    }


def _flags(args: argparse.Namespace, backoff: float | str = "B") -> list[str]:
    return [
        "--no-sim",
        *("--auto-restart-cooldown", "0"),
        *("--auto-restart-interval", f"{args.interval:g}"),
        *("--auto-restart-backoff", f"{backoff:g}" if isinstance(backoff, float) else backoff),
        *("--start-wait", "30"),
    ]


_ATTEMPT_FAILED = ("instance.auto_restart_failed", "instance.auto_restart_gave_up")


def _snapshot(fleet: Fleet, ids: list[str], dead: set[str]) -> tuple[set[str], set[str]]:
    """(running on a live sled, explained) among ``ids``, in one query. Explained: failed,
    no start under way, and its status reason says why an automatic restart did not run
    it (whether or not another attempt is planned)."""
    starting = sa.select(saga.c.instance_id).where(
        saga.c.name == "instance-start", saga.c.state.in_(("running", "unwinding"))
    )
    q = (
        sa.select(
            instance.c.id,
            instance.c.state,
            event.c.kind.label("status_kind"),
            vmm.c.state.label("vmm_state"),
            vmm.c.sled_id,
            instance.c.id.in_(starting).label("starting"),
        )
        .select_from(
            instance.outerjoin(vmm, vmm.c.id == instance.c.active_vmm_id).outerjoin(
                event, event.c.id == instance.c.status_event_id
            )
        )
        .where(instance.c.id.in_(ids))
    )
    running, explained = set(), set()
    for r in fleet.rows(q):
        if r.state == "vmm" and r.vmm_state == "running" and r.sled_id not in dead:
            running.add(r.id)
        elif r.state != "vmm" and r.status_kind in _ATTEMPT_FAILED and not r.starting:
            explained.add(r.id)
    return running, explained


def _sagas(fleet: Fleet, ids: list[str]) -> dict[str, int]:
    """The instances' instance-start sagas, by state."""
    q = (
        sa.select(saga.c.state, sa.func.count().label("n"))
        .where(saga.c.name == "instance-start", saga.c.instance_id.in_(ids))
        .group_by(saga.c.state)
    )
    return {str(r.state): int(r.n) for r in fleet.rows(q)}


def _last_seq(fleet: Fleet) -> int:
    q = sa.select(sa.func.coalesce(sa.func.max(event.c.seq), 0).label("seq"))
    return int(fleet.rows(q)[0].seq)


def _events(fleet: Fleet, ids: list[str], seq0: int) -> dict[str, int]:
    """The instances' events since ``seq0`` (repeats folded into one row counted), by kind
    and reason code."""
    q = (
        sa.select(event.c.kind, event.c.reason_code, sa.func.sum(event.c.count).label("n"))
        .where(event.c.instance_id.in_(ids), event.c.seq > seq0)
        .group_by(event.c.kind, event.c.reason_code)
    )
    out: dict[str, int] = {}
    for r in fleet.rows(q):
        code = f" ({r.reason_code})" if r.reason_code else ""
        out[f"{str(r.kind).removeprefix('instance.')}{code}"] = int(r.n)
    return out


async def _power_off(agents: Sequence[SledAgentProcess]) -> None:
    async with httpx.AsyncClient(timeout=120) as client:
        rs = await asyncio.gather(
            *(client.post(f"{a.url}/power-off", headers=a.auth) for a in agents)
        )
    for r in rs:
        r.raise_for_status()


def _explain(fleet: Fleet, ids: set[str], into: Storm) -> None:
    """The status reason codes of the explained instances, as the API shows them."""
    with httpx.Client(timeout=30, headers=fleet.headers) as api:
        for iid in sorted(ids):
            r = api.get(f"{fleet.urls[0]}/v1/instances/{iid}")
            reason = (r.json().get("status_reason") or {}).get("code", "?")
            into.reasons[reason] = into.reasons.get(reason, 0) + 1


def run(store: str, replicas: int, backoff: float, args: argparse.Namespace) -> Storm:
    agents = Agents(args.sleds, args.sled_cpus, args.sled_memory, args.boot)
    with (
        tempfile.TemporaryDirectory(prefix="skylight-storm-") as tmp,
        Fleet(
            Path(tmp), args.pg_admin, replicas, _flags(args, backoff), agents, store=store
        ) as fleet,
    ):
        create_project(fleet.urls[0], PROJECT, "recovery storm", headers=fleet.headers)
        how = Clients(PROJECT, args.concurrency, headers=fleet.headers)
        pop = Starts(args.instances, args.concurrency)
        label = f"{store}, {replicas} replica(s), backoff {backoff:g} s"
        print(f"{label}: populating {args.instances} instances ...", flush=True)
        create_all(fleet.urls, [instance_body(i) for i in range(args.instances)], how, pop)
        pop.progress(f"{label}, population")
        storm = Storm(store, replicas, backoff, pop)

        victims = fleet.agents[: args.lose]
        dead = {str(a.sled_id) for a in victims}
        q = (
            sa.select(instance.c.id)
            .select_from(instance.join(vmm, vmm.c.id == instance.c.active_vmm_id))
            .where(vmm.c.sled_id.in_(dead), instance.c.state == "vmm")
        )
        ids = [str(r.id) for r in fleet.rows(q)]
        storm.affected = len(ids)
        per_sled = fleet.rows(
            sa.select(sled.c.serial, sled.c.reserved_hardware_threads).order_by(sled.c.serial)
        )
        print(
            f"  threads reserved per sled: {[r.reserved_hardware_threads for r in per_sled]}",
            flush=True,
        )
        time.sleep(args.settle)  # let the population's tail (events, webhooks, loops) pass
        sagas0, seq0 = _sagas(fleet, ids), _last_seq(fleet)

        cpu0 = [fleet.cpu(fleet.replicas), fleet.cpu(fleet.agents)]
        pg = PgBackendCpu(args.pg_admin, fleet.dbname) if store == "postgres" else None
        settled: dict[str, float] = {}
        running: set[str] = set()
        explained: set[str] = set()
        with pg if pg is not None else nullcontext():
            t0 = time.monotonic()
            asyncio.run(_power_off(victims))
            storm.poweroff_s = time.monotonic() - t0
            deadline, seen, changed = t0 + args.timeout, (-1, -1), 0.0
            while time.monotonic() < deadline:
                running, explained = _snapshot(fleet, ids, dead)
                t = time.monotonic() - t0
                for iid in running | explained:
                    settled.setdefault(iid, t)
                if len(running) + len(explained) == len(ids) and math.isnan(storm.settled_s):
                    storm.settled_s = t
                if len(running) == len(ids):
                    storm.running_s = t
                    break
                if (len(running), len(explained)) != seen:
                    seen, changed = (len(running), len(explained)), t
                elif not math.isnan(storm.settled_s) and t - changed >= args.quiet:
                    break  # every one explained, and nothing has moved for a while
                time.sleep(args.poll)
            storm.wall = time.monotonic() - t0
            storm.server_cpu = fleet.cpu(fleet.replicas) - cpu0[0]
            storm.agent_cpu = fleet.cpu(fleet.agents) - cpu0[1]
        if pg is not None:
            storm.db_cpu = pg.seconds
        storm.settled_at = sorted(settled.values())
        storm.running, storm.explained = len(running), len(explained)
        storm.unsettled = len(ids) - storm.running - storm.explained
        sagas = _sagas(fleet, ids)
        storm.attempts = sum(sagas.values()) - sum(sagas0.values())
        storm.unwound = sagas.get("unwound", 0) - sagas0.get("unwound", 0)
        storm.events = _events(fleet, ids, seq0)
        _explain(fleet, explained, storm)
        print(
            f"{label}: {storm.affected} on the lost sleds; {storm.running} running elsewhere, "
            f"{storm.explained} explained, {storm.unsettled} neither; settled after "
            f"{num(storm.settled_s, 2)}s, all running after {num(storm.running_s, 2)}s, watched "
            f"{storm.wall:.2f}s "
            f"({storm.moved_per_s:.1f}/s; power-off told in {storm.poweroff_s:.2f}s); "
            f"{storm.attempts} restart sagas ({storm.unwound} unwound); server CPU "
            f"{num(storm.per_restart_ms(storm.server_cpu))} ms/restart, database "
            f"{num(storm.per_restart_ms(storm.db_cpu))}, agents "
            f"{num(storm.per_restart_ms(storm.agent_cpu))}; reasons {storm.reasons}; "
            f"events {storm.events}",
            flush=True,
        )
        if storm.unsettled:
            for p in fleet.replicas:
                print(f"--- replica log tail ({p.url}) ---\n{p.log()}", file=sys.stderr)
        return storm


def _at(s: Storm, q: float) -> str:
    return num(pct(s.settled_at, q), 2)


def section(
    storms: list[Storm], args: argparse.Namespace, loads: list[str]
) -> dict[str, list[str]]:
    def db_cell(s: Storm) -> str:
        if s.store == "sqlite":
            return "(in the server)"
        return f">= {num(s.per_restart_ms(s.db_cpu))}"

    results = table(
        [
            "store",
            "replicas",
            "backoff (s)",
            "affected",
            "running elsewhere",
            "explained",
            "neither",
            "settled (s)",
            "all running (s)",
            "moved/s",
            "50% / 90% settled (s)",
            "restart sagas (unwound)",
            "server CPU (ms/restart)",
            "database CPU (ms/restart)",
            "agents CPU (ms/restart)",
            "power-off told (s)",
        ],
        "lrrrrrrrrrlrrrrr",
        [
            [
                s.store,
                s.replicas,
                f"{s.backoff:g}",
                s.affected,
                s.running,
                s.explained,
                s.unsettled,
                num(s.settled_s, 2),
                num(s.running_s, 2),
                f"{s.moved_per_s:.1f}",
                f"{_at(s, 0.5)} / {_at(s, 0.9)}",
                f"{s.attempts} ({s.unwound})",
                num(s.per_restart_ms(s.server_cpu)),
                db_cell(s),
                num(s.per_restart_ms(s.agent_cpu)),
                f"{s.poweroff_s:.2f}",
            ]
            for s in storms
        ],
    )
    population = table(
        [
            *("store", "replicas", "backoff (s)", "instances", "failures", "wall (s)"),
            *("starts/s", "p50 (ms)"),
        ],
        "lrrrrrrr",
        [
            [
                s.store,
                s.replicas,
                f"{s.backoff:g}",
                s.population.n,
                len(s.population.failures),
                f"{s.population.wall:.1f}",
                f"{s.population.rate:.1f}",
                num(pct(s.population.latencies, 0.5), 0, 1e3),
            ]
            for s in storms
        ],
    )
    reasons = [
        f"- {s.store}, {s.replicas} replica(s), backoff {s.backoff:g} s: events of the "
        "affected instances during the storm: "
        + ", ".join(f"`{k}` {v}" for k, v in sorted(s.events.items()))
        + (
            "; explained by " + ", ".join(f"`{k}` {v}" for k, v in sorted(s.reasons.items()))
            if s.reasons
            else ""
        )
        for s in storms
    ]
    settings = [
        ("instances (N)", f"{args.instances}, 1 vCPU / 1 GiB each, created with `start: true`"),
        ("population clients", f"{args.concurrency} concurrent, round-robin over the replicas"),
        (
            "sleds",
            f"{args.sleds} HTTP sled agents (`skylight sled-agent --sim`) x "
            f"{args.sled_cpus} threads / {args.sled_memory} GiB, VMM boot {args.boot:g} s",
        ),
        ("lost", f"{args.lose} sleds, powered off at once (each agent's `POST /power-off`)"),
        (
            "replica flags",
            "`" + " ".join(_flags(args)) + "` (B: the backoff column; auto_restart_batch 16, "
            "the default)",
        ),
        ("poll", f"the database every {args.poll:g} s (one query), settle {args.settle:g} s"),
    ]
    postgres = any(s.store == "postgres" for s in storms)
    return {
        "storm:results": [
            measured("recovery_storm.py"),
            "",
            *results,
            "",
            "Population (the start throughput under load, before the storm):",
            "",
            *population,
            *(["", *reasons] if reasons else []),
        ],
        "storm:setup": setup_tables(
            machine_rows(postgres=pg_version(args.pg_admin) if postgres else None, loads=loads),
            settings,
        ),
    }


def configs(text: str) -> list[tuple[str, int]]:
    out = []
    for part in text.split(","):
        store, _, n = part.strip().partition(":")
        if store not in ("sqlite", "postgres") or not n.isdigit() or int(n) < 1:
            raise argparse.ArgumentTypeError(f"{part!r}: STORE:REPLICAS")
        if store == "sqlite" and int(n) != 1:
            raise argparse.ArgumentTypeError("SQLite runs one replica")
        out.append((store, int(n)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, stores=None)
    p.add_argument("--instances", type=int, default=2000)
    p.add_argument(
        "--configs",
        type=configs,
        default=configs("sqlite:1,postgres:1,postgres:2"),
        help="STORE:REPLICAS,... (sqlite:1,postgres:1,postgres:2)",
    )
    p.add_argument("--sleds", type=int, default=16)
    p.add_argument("--lose", type=int, default=4, help="sleds powered off (4)")
    p.add_argument("--sled-cpus", type=int, default=256)
    p.add_argument("--sled-memory", type=int, default=1024, help="GiB (1024)")
    p.add_argument("--boot", type=float, default=0.05, help="agents' VMM boot (s)")
    p.add_argument("--interval", type=float, default=0.1, help="--auto-restart-interval")
    p.add_argument(
        "--backoffs",
        type=lambda t: [float(x) for x in t.split(",")],
        default=[10.0],
        help="--auto-restart-backoff of each run, comma-separated (10, the default)",
    )
    p.add_argument("-c", "--concurrency", type=int, default=32, help="population clients")
    p.add_argument("--poll", type=float, default=0.1)
    p.add_argument("--settle", type=float, default=3.0)
    p.add_argument("--timeout", type=float, default=300.0, help="give up on the storm (s)")
    p.add_argument(
        "--quiet",
        type=float,
        default=20.0,
        help="stop watching when all are explained and nothing has moved for this long (s)",
    )
    args = p.parse_args(argv)
    survivors = (args.sleds - args.lose) * min(args.sled_cpus, args.sled_memory)
    if args.instances > survivors:
        print("note: the instances do not all fit the sleds that keep power", file=sys.stderr)
    loads = [loadavg()]
    storms = [run(store, n, b, args) for b in args.backoffs for store, n in args.configs]
    loads.append(loadavg())
    finish(section(storms, args, loads), args.write)
    return 1 if any(s.unsettled for s in storms) else 0


if __name__ == "__main__":
    raise SystemExit(main())
