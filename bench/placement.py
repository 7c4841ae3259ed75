"""Placement: decisions per second and p50/p99 latency, in-process (``place`` on a columnar
``Rack``) and through the store (one ``reserve_sled``-like transaction per decision, rolled
back). The method is described in docs/benchmarks.md ("## Placement"); ``--write`` replaces
its marked blocks ``placement:*``. No duration is asserted anywhere.

    .venv/bin/python bench/placement.py [--write] [--stores none] [--cells 1000x100000]
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import random
import re
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from harness import (
    GiB,
    finish,
    loadavg,
    machine_rows,
    measured,
    num,
    parser,
    pct,
    pg_version,
    scratch_database,
    setup_tables,
    table,
)
from plans import Capture, explain
from rack_population import (
    Ids,
    Pending,
    Population,
    build_population,
    described,
    populate,
    uuid_strings,
)
from skylight.placement import Placement, PlacementFailure, Rack, Request, fits, place
from skylight.store import migrate, placement_inputs, sleds
from skylight.store.engine import Store

LOAD: list[str] = []  # 1-minute load average at the start and at the end of the run
# -- measurement -------------------------------------------------------------------------------


@dataclass
class Series:
    samples: list[float] = field(default_factory=list)
    # In-process loops run in rounds: (decisions, sum of their times, CPU seconds of the
    # bench thread over the round).
    rounds: list[tuple[int, float, float]] = field(default_factory=list)

    def round_rates(self) -> list[float]:
        return sorted(n / t for n, t, _ in self.rounds if t > 0)

    def round_cpu_rates(self) -> list[float]:
        return sorted(n / c for n, _, c in self.rounds if c > 0)

    @property
    def median_rate(self) -> float:
        """Decisions per second: the median round's decisions / the sum of their times."""
        rates = self.round_rates()
        return rates[(len(rates) - 1) // 2] if rates else self.rate

    @property
    def median_cpu_rate(self) -> float:
        """The median round's decisions / the CPU time of the bench thread over it."""
        rates = self.round_cpu_rates()
        return rates[(len(rates) - 1) // 2] if rates else math.nan

    def __len__(self) -> int:
        return len(self.samples)

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)

    def pct(self, q: float) -> float:
        return pct(self.samples, q)

    @property
    def mean(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else math.nan

    @property
    def rate(self) -> float:
        """Decisions per second: 1 / mean decision time."""
        total = sum(self.samples)
        return len(self.samples) / total if total > 0 else math.nan


@dataclass
class CellResult:
    n_sleds: int
    n_instances: int
    sled_cpus: int
    sled_memory: int
    cpu_fill: float
    mem_fill: float
    rack_of: Series
    ok: Series
    requests: int  # distinct success requests
    declined: Counter[str]  # success requests the rack cannot place, by reason code
    fail: Series
    fail_codes: Counter[str]


def run_in_process(pop: Population, args: argparse.Namespace) -> CellResult:
    views = pop.views()
    rack_of = Series()
    for _ in range(args.rack_builds):
        t0 = time.perf_counter()
        rack = Rack.of(views)
        rack_of.add(time.perf_counter() - t0)
    ok_reqs = [pop.request(p) for p in pop.placeable]
    fail_reqs = [pop.request(p) for p in pop.failure]
    rng = random.Random(args.seed)
    perf = time.perf_counter

    for i in range(args.warmup):  # uncounted
        place(ok_reqs[i % len(ok_reqs)], rack, rng)
        place(fail_reqs[i % len(fail_reqs)], rack, rng)

    # Rounds of successes and failures alternate, so that other work on the machine weighs
    # on both alike; the rate reported is the median round's.
    ok, fail, codes = Series(), Series(), Counter[str]()

    def one_round(series: Series, reqs: list[Request], total: int, r: int, placed: bool) -> None:
        """Round ``r``'s share of ``total`` decisions, each checked to end as expected."""
        n = total * (r + 1) // args.rounds - total * r // args.rounds
        first = total * r // args.rounds
        gc.collect()
        start, cpu0 = len(series.samples), time.thread_time()
        for i in range(first, first + n):
            req = reqs[i % len(reqs)]
            t0 = perf()
            result = place(req, rack, rng)
            series.add(perf() - t0)
            if isinstance(result, Placement) != placed:
                raise RuntimeError(f"placed is not {placed}: {req}")
            if isinstance(result, PlacementFailure):
                codes[result.reason["code"]] += 1
        series.rounds.append((n, sum(series.samples[start:]), time.thread_time() - cpu0))

    for r in range(args.rounds):
        one_round(ok, ok_reqs, args.decisions, r, True)
        one_round(fail, fail_reqs, args.failures, r, False)
    cpu_fill, mem_fill = pop.fill()
    return CellResult(
        n_sleds=pop.n_sleds,
        n_instances=pop.n_instances,
        sled_cpus=pop.sled_cpus,
        sled_memory=pop.sled_memory,
        cpu_fill=cpu_fill,
        mem_fill=mem_fill,
        rack_of=rack_of,
        ok=ok,
        requests=len(pop.success),
        declined=pop.declined,
        fail=fail,
        fail_codes=codes,
    )


# -- the store ---------------------------------------------------------------------------------


PARTS = ("request_for", "views", "rack_of", "place", "recheck", "insert", "client_cpu")


@dataclass
class StoreResult:
    store: str
    n_sleds: int
    n_instances: int
    populate_s: float
    rows: dict[str, int]
    # success, failure, and both with the replica's cached rack (RackCache): (decision
    # times, their parts)
    workloads: dict[str, tuple[Series, dict[str, Series]]] = field(default_factory=dict)
    declined: int = 0
    budget_hit: list[str] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)  # views(): the whole rack
    plan_one: list[str] = field(default_factory=list)  # views(only=...): one sled's re-check


class _Rollback(Exception):
    pass


def _check_equivalence(store: Store, pop: Population, ids: Ids) -> None:
    """The store must show placement the same rack and requests as the in-process cell."""
    expected = pop.views()
    got = store.tx_sync(sleds.views)
    if got != expected:
        bad = next(i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b)
        raise RuntimeError(f"store sled view differs: {got[bad]} != {expected[bad]}")
    n = pop.n_instances
    sample = pop.success[:50] + pop.failure[:50]
    for p in sample:
        iid, platform = ids.instances[n + p.index], p.cpu_platform
        ask = partial(placement_inputs.request_for, instance_id=iid, cpu_platform=platform)
        req = store.tx_sync(partial(ask, ncpus=p.ncpus, memory=p.memory))
        if req != pop.request(p):
            raise RuntimeError(f"store request differs: {req} != {pop.request(p)}")


def _decide(
    store: Store,
    iid: str,
    p: Pending,
    rng: random.Random,
    parts: dict[str, float],
    cache: sleds.RackCache | None = None,
) -> bool:
    """One decision as reserve_sled makes it, rolled back. Fills ``parts``; True if placed.
    With ``cache``, the rack comes from it, and a failure on a cached rack is decided again
    on a fresh read, as reserve_sled does."""
    perf = time.perf_counter
    outcome: list[bool] = []

    def tx(conn: Connection) -> None:
        t0 = perf()
        req = placement_inputs.request_for(
            conn, iid, ncpus=p.ncpus, memory=p.memory, cpu_platform=p.cpu_platform
        )
        t1 = perf()
        if cache is None:
            rack = sleds.rack(conn)  # as instance-start reads it: columns, no SledView per sled
            just_read = True
        else:
            rack, just_read = cache.get(conn)
        t2 = t3 = perf()
        result = place(req, rack, rng)
        t4 = perf()
        read, placing = t2 - t1, t4 - t3
        if cache is not None and isinstance(result, PlacementFailure) and not just_read:
            rack = cache.get(conn, fresh=True)[0]
            t5 = perf()
            result = place(req, rack, rng)
            t6 = perf()
            read, placing, t4 = read + t5 - t4, placing + t6 - t5, t6
        parts.update(request_for=t1 - t0, views=read, rack_of=t3 - t2, place=placing)
        if isinstance(result, Placement):
            fresh = sleds.lock_and_measure(conn, result.sled_id)
            fitting = fresh is not None and fits(req, fresh)
            t5 = perf()
            sleds.reserve(
                conn,
                reservation_id=str(uuid.uuid4()),
                sled_id=result.sled_id,
                instance_id=iid,
                cpus=req.ncpus,
                memory=req.memory,
                local_storage=req.local_storage,
            )
            t6 = perf()
            parts.update(recheck=t5 - t4, insert=t6 - t5)
            outcome.append(fitting)
        else:
            outcome.append(False)
        raise _Rollback

    try:
        store.tx_sync(tx)
    except _Rollback:
        pass
    return outcome[0]


def _views_plan(store: Store, only: str | None = None) -> list[str]:
    """The database's plan for the query ``sleds.views(conn, only)`` runs (operators only)."""
    with Capture(store.engine) as cap:
        store.tx_sync(lambda c: sleds.views(c, only=only))
    stmt, params = [s for s in cap.seen if s[0].lstrip().upper().startswith("SELECT")][-1]
    plan = explain(store, stmt, params, analyze=False).splitlines()
    if store.is_sqlite:
        return plan
    nodes = [line for i, line in enumerate(plan) if i == 0 or "->" in line]
    return [re.sub(r"\s+\(cost=[^)]*\)", "", line).strip(" ->") for line in nodes]


def run_store(kind: str, pop: Population, args: argparse.Namespace) -> StoreResult:
    rng_np = np.random.default_rng(args.seed + 7)
    n_pending = len(pop.success) + len(pop.failure)
    n_disks = len(pop.disk_inst) + sum(1 for p in pop.success if p.local_storage)
    ids = Ids(
        project="00000000-0000-4000-8000-0000000be4c4",
        instances=uuid_strings(rng_np, pop.n_instances + n_pending),
        reservations=uuid_strings(rng_np, pop.n_instances),
        disks=uuid_strings(rng_np, n_disks),
    )
    scratch = scratch_database(args.pg_admin) if kind == "postgres" else nullcontext(None)
    with tempfile.TemporaryDirectory(prefix="skylight-bench-placement-") as tmp, scratch as db:
        store = Store(db or f"sqlite:///{Path(tmp) / 'skylight.db'}")
        try:
            migrate.upgrade(store.engine)
            t0 = time.perf_counter()
            rows = populate(store, pop, ids)
            if db is not None:
                # What autovacuum would do after a bulk load: statistics, visibility map.
                import psycopg

                with psycopg.connect(db, autocommit=True) as c:
                    c.execute("VACUUM ANALYZE")
            populate_s = time.perf_counter() - t0
            print(f"    populated in {populate_s:.1f}s: {rows}", flush=True)
            _check_equivalence(store, pop, ids)
            result = StoreResult(kind, pop.n_sleds, pop.n_instances, populate_s, rows)
            _measure_store(store, pop, ids, result, args)
            return result
        finally:
            store.dispose()


def _measure_store(
    store: Store, pop: Population, ids: Ids, res: StoreResult, args: argparse.Namespace
) -> None:
    n = pop.n_instances
    rng = random.Random(args.seed)
    # The replica's cached rack (instance-start's): every decision here is a cache hit (the
    # rack does not change between these rolled-back decisions); a failure is decided
    # again on a fresh read.
    cache = sleds.RackCache(max_age=math.inf)
    for label, pending, count, with_cache in (
        ("success", pop.placeable, args.store_decisions, None),
        ("failure", pop.failure, args.store_failures, None),
        ("success, cached rack", pop.placeable, args.store_decisions, cache),
        ("failure, cached rack", pop.failure, args.store_failures, cache),
    ):
        total, parts_s = Series(), {k: Series() for k in PARTS}
        for i in range(2):  # warm-up: uncounted (and, with a cache, its first read)
            p = pending[i % len(pending)]
            _decide(store, ids.instances[n + p.index], p, rng, {}, with_cache)
        gc.collect()
        deadline = time.perf_counter() + args.store_budget
        for i in range(count):
            if i >= 3 and time.perf_counter() > deadline:
                res.budget_hit.append(f"{label}: {i} of {count}")
                break
            p = pending[i % len(pending)]
            parts: dict[str, float] = {}
            c0, t0 = time.thread_time(), time.perf_counter()
            placed = _decide(store, ids.instances[n + p.index], p, rng, parts, with_cache)
            t1 = time.perf_counter()
            parts["client_cpu"] = time.thread_time() - c0
            if label == "success" and not placed:
                res.declined += 1
                continue
            total.add(t1 - t0)
            for k, v in parts.items():
                parts_s[k].add(v)
        res.workloads[label] = (total, parts_s)
    res.plan = _views_plan(store)
    res.plan_one = _views_plan(store, only=pop.sled_ids[0])


# -- report ------------------------------------------------------------------------------------


def _us(seconds: float) -> str:
    return num(seconds, 0, 1e6)


def _rate(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.0f}"


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def _sled_shape(r: CellResult | Population) -> str:
    return f"{r.sled_cpus} thr / {r.sled_memory // GiB} GiB"


def _cell(r: CellResult | StoreResult) -> str:
    return f"{r.n_sleds:,} x {r.n_instances:,}"


def settings(args: argparse.Namespace, pinned: str) -> list[tuple[str, str]]:
    return [
        *described(args),
        (
            "in-process decisions per cell",
            f"{args.decisions} success-workload + {args.failures} failure-workload (after "
            f"{args.warmup} uncounted of each); Rack.of built {args.rack_builds} times",
        ),
        (
            "store decisions per cell",
            f"up to {args.store_decisions} success + {args.store_failures} failure (after 2 "
            f"uncounted each), at most {args.store_budget:.0f} s of decisions per workload",
        ),
        ("bench process", f"single-threaded; {pinned}; gc enabled; seed {args.seed}"),
        ("in-process rounds", f"{args.rounds} (successes, then failures, alternating)"),
    ]


def _in_process_table(cells: list[CellResult]) -> list[str]:
    def spread(s: Series) -> str:
        rates = s.round_rates()
        return f"{rates[0]:,.0f}-{rates[-1]:,.0f}" if rates else "n/a"

    def workload(s: Series) -> list[str]:
        rate = f"{_rate(s.median_rate)} ({_rate(s.median_cpu_rate)})"
        return [f"{len(s):,}", rate, spread(s), _us(s.pct(0.5)), _us(s.pct(0.99))]

    header = ["sleds", "placed instances", "sled", "fill vCPU / mem", "Rack.of (ms)"]
    header += ["successes", "decisions/s (CPU)", "rounds", "p50 (µs)", "p99 (µs)", "failures"]
    header += ["failures/s (CPU)", "rounds", "p50 (µs)", "p99 (µs)", "failure/success p50 (mean)"]
    rows = [
        [
            f"{c.n_sleds:,}",
            f"{c.n_instances:,}",
            _sled_shape(c),
            f"{c.cpu_fill:.0%} / {c.mem_fill:.0%}",
            num(c.rack_of.pct(0.5), 1, 1e3),
            *workload(c.ok),
            *workload(c.fail),
            f"{_ratio(c.fail.pct(0.5), c.ok.pct(0.5)):.2f}x "
            f"({_ratio(c.fail.mean, c.ok.mean):.2f}x)",
        ]
        for c in cells
    ]
    return table(header, "rrllrrrlrrrrlrrr", rows)


def _store_table(results: list[StoreResult]) -> list[str]:
    header = ["store", "sleds", "placed instances", "outcome", "n", "decisions/s", "p50 (ms)"]
    header += ["p99 (ms)", "request_for", "sleds.rack", "(Rack.of)", "place", "re-check"]
    header += ["insert", "rack share", "bench CPU"]
    rows = []
    for r in results:
        for label, (s, parts) in r.workloads.items():
            cells = [num(parts[k].pct(0.5), 2, 1e3) if len(parts[k]) else "-" for k in PARTS]
            share = _ratio(parts["views"].mean, s.mean)
            rows.append(
                [
                    r.store,
                    f"{r.n_sleds:,}",
                    f"{r.n_instances:,}",
                    label,
                    len(s),
                    f"{s.rate:,.1f}",
                    num(s.pct(0.5), 1, 1e3),
                    num(s.pct(0.99), 1, 1e3),
                    *cells[:-1],
                    f"{share:.0%}",
                    cells[-1],
                ]
            )
    return table(header, "lrrlrrrrrrrrrrrr", rows)


def _cell_notes(cells: list[CellResult]) -> list[str]:
    """Per cell: the success requests the rack cannot place, and the failures' reasons."""
    out = []
    for c in cells:
        bits = (
            [
                f"{sum(c.declined.values())} of the {c.requests:,} distinct success requests "
                "cannot be placed on this rack "
                f"({', '.join(f'{k} {v}' for k, v in c.declined.most_common())})"
            ]
            if c.declined
            else []
        )
        bits.append(
            "failure reasons: " + ", ".join(f"{k} {v}" for k, v in c.fail_codes.most_common())
        )
        out.append(f"- {_cell(c)}: " + "; ".join(bits) + ".")
    return out


def _store_notes(stores: list[StoreResult]) -> list[str]:
    """Per store cell: the rows written, decisions not counted, the views query's plans."""
    out = []
    for r in stores:
        line = f"- {r.store}, {_cell(r)}: populated in {r.populate_s:.1f} s ("
        line += ", ".join(f"{k} {v:,}" for k, v in r.rows.items()) + ")"
        if r.declined:
            line += f"; {r.declined} placements failed their re-check (not counted)"
        if r.budget_hit:
            ran_out = ", ".join(r.budget_hit)
            line += f"; fewer decisions than asked, the time budget ran out ({ran_out})"
        out.append(line + ".")
        out += [f"  Plan of `views()`: `{' / '.join(r.plan)}`."] if r.plan else []
        out += [f"  Plan of `views(only=sled)`: `{' / '.join(r.plan_one)}`."] if r.plan_one else []
    return out


def section(
    cells: list[CellResult], stores: list[StoreResult], args: argparse.Namespace, pinned: str
) -> dict[str, list[str]]:
    """The marked blocks of the "## Placement" section (a block with nothing measured this
    run, a store's with ``--stores none``, is left as it is)."""
    import psycopg

    libraries = [("numpy", np.__version__), ("SQLAlchemy", sa.__version__)]
    libraries += [("psycopg", psycopg.__version__)]
    postgres = pg_version(args.pg_admin) if "postgres" in args.stores else None
    machine = machine_rows(libraries, postgres=postgres, loads=LOAD)
    blocks = {
        "placement:measured": [measured("placement.py")],
        "placement:in-process": _in_process_table(cells),
        "placement:cells": _cell_notes(cells),
    }
    if stores:
        blocks["placement:store"] = _store_table(stores)
        blocks["placement:store-notes"] = _store_notes(stores)
    blocks["placement:setup"] = setup_tables(machine, settings(args, pinned))
    return blocks


# -- main --------------------------------------------------------------------------------------


def _cells(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part or part == "none":
            continue
        m = re.fullmatch(r"(\d+)x(\d+)", part)
        if not m:
            raise argparse.ArgumentTypeError(f"{part!r}: expected SLEDSxINSTANCES")
        out.append((int(m.group(1)), int(m.group(2))))
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__)
    cells = "1000x100000,1000x500000,10000x100000,10000x500000"
    p.add_argument("--cells", type=_cells, default=_cells(cells), help=f"in-process ({cells})")
    store_cells = "1000x100000,10000x500000"
    p.add_argument("--store-cells", type=_cells, default=_cells(store_cells), help=store_cells)
    p.add_argument("--groups", type=int, default=1000)
    p.add_argument("--decisions", type=int, default=10_000, help="in-process, per cell")
    p.add_argument("--failures", type=int, default=3_000, help="in-process, per cell")
    p.add_argument("--warmup", type=int, default=200, help="uncounted in-process decisions")
    p.add_argument("--rounds", type=int, default=5, help="in-process rounds")
    p.add_argument("--requests", type=int, default=2_000, help="distinct success requests")
    p.add_argument("--failure-requests", type=int, default=500)
    p.add_argument("--rack-builds", type=int, default=20, help="Rack.of timings per cell")
    p.add_argument("--store-decisions", type=int, default=100, help="per store cell")
    p.add_argument("--store-failures", type=int, default=40, help="per store cell")
    p.add_argument("--store-budget", type=float, default=45.0, help="s of decisions per workload")
    p.add_argument("--sled-cpus", type=int, default=64)
    p.add_argument("--sled-memory", type=int, default=512, help="GiB")
    p.add_argument("--sled-local", type=int, default=2048, help="GiB of local storage")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin to one CPU")
    args = p.parse_args(argv)
    if min(args.decisions, args.failures, args.requests, args.failure_requests) < 1:
        p.error("decision and request counts must be at least 1")
    if not 1 <= args.rounds <= min(args.decisions, args.failures):
        p.error("--rounds must be at least 1 and at most the decision counts")
    if args.groups < 2:
        p.error("--groups must be at least 2")
    return args


def _pin(args: argparse.Namespace) -> str:
    if not args.pin or not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    cpu = sorted(os.sched_getaffinity(0))[-1]
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu} (`sched_setaffinity`; PostgreSQL not pinned)"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    pinned = _pin(args)
    LOAD.append(loadavg())
    print(f"bench process {pinned}; load average {LOAD[0]}", flush=True)
    populations: dict[tuple[int, int], Population] = {}

    def population(n_sleds: int, n_inst: int) -> Population:
        if (n_sleds, n_inst) not in populations:
            populations.clear()  # one at a time: the big ones are not small
            populations[n_sleds, n_inst] = build_population(n_sleds, n_inst, args, args.seed)
        return populations[n_sleds, n_inst]

    cells: list[CellResult] = []
    for n_sleds, n_inst in args.cells:
        print(f"in-process: {n_sleds} sleds x {n_inst} instances ...", flush=True)
        c = run_in_process(population(n_sleds, n_inst), args)
        cells.append(c)
        print(
            f"  sled {_sled_shape(c)}, fill {c.cpu_fill:.0%}/{c.mem_fill:.0%}; ok {len(c.ok)}: "
            f"{c.ok.median_rate:,.0f}/s p50 {_us(c.ok.pct(0.5))} us; fail {len(c.fail)}: "
            f"{c.fail.median_rate:,.0f}/s p50 {_us(c.fail.pct(0.5))} us",
            flush=True,
        )
    results: list[StoreResult] = []
    for n_sleds, n_inst in args.store_cells if args.stores else []:
        for kind in args.stores:
            print(f"{kind}: {n_sleds} sleds x {n_inst} instances ...", flush=True)
            r = run_store(kind, population(n_sleds, n_inst), args)
            results.append(r)
            ok = r.workloads["success"][0]
            print(f"  ok {len(ok)}: {ok.rate:,.1f}/s p50 {num(ok.pct(0.5), 1, 1e3)} ms", flush=True)
    LOAD.append(loadavg())
    finish(section(cells, results, args, pinned), args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
