"""Start throughput: N instances created with ``start: true`` through HTTP against a real
``skylight serve`` per store. The method is described in docs/benchmarks.md ("## Start
throughput"); ``--write`` replaces its marked blocks ``start:*``. No duration is asserted.

    .venv/bin/python bench/start_throughput.py [--write] [--stores sqlite] [-n 200 -c 32]
"""

from __future__ import annotations

import argparse
import sys

from harness import (
    Clients,
    Starts,
    cpu_seconds,
    create_all,
    create_project,
    finish,
    instance_body,
    machine_rows,
    measured,
    ms,
    num,
    parser,
    pct,
    pg_version,
    server,
    setup_tables,
    table,
    top,
)

PROJECT = "bench"


def run_store(store: str, args: argparse.Namespace) -> tuple[Starts, float]:
    """The store's starts and the server's CPU seconds during them."""
    serve = [
        *("--sim-sleds", str(args.sleds), "--sim-sled-cpus", str(args.sled_cpus)),
        *("--sim-sled-memory", str(args.sled_memory), "--sim-start-delay", str(args.start_delay)),
        *("--start-wait", str(args.start_wait)),
    ]
    with server(store, args.pg_admin, serve) as proc:
        assert proc.proc is not None
        how = Clients(
            PROJECT,
            args.concurrency,
            args.start_wait,
            args.poll_interval,
            args.poll_timeout,
            headers=proc.headers,
        )
        create_project(proc.url, PROJECT, "start throughput", headers=proc.headers)
        # Warm-up: not counted (first requests pay for imports, pools, caches).
        create_all([proc.url], [instance_body(i, "warm-") for i in range(args.warmup)], how)
        result = Starts(args.n, args.concurrency)
        cpu0 = cpu_seconds(proc.proc.pid)
        create_all([proc.url], [instance_body(i, "inst-") for i in range(args.n)], how, result)
        cpu = cpu_seconds(proc.proc.pid) - cpu0
        if result.failures:
            print(f"--- server log tail ({store}) ---\n{proc.log()}", file=sys.stderr)
        return result, cpu


def section(
    results: list[tuple[str, Starts, float]], args: argparse.Namespace
) -> dict[str, list[str]]:
    header = ["store", "N", "concurrency", "failures", "wall (s)", "starts/s", "p50 (ms)"]
    header += ["p90 (ms)", "p99 (ms)", "max (ms)", "server CPU (ms/start)"]
    rows = [
        [store, r.n, r.concurrency, len(r.failures), f"{r.wall:.2f}", f"{r.rate:.1f}"]
        + [ms(pct(r.latencies, q)) for q in (0.5, 0.9, 0.99)]
        + [ms(top(r.latencies)), num(r.per_start_ms(cpu))]
        for store, r, cpu in results
    ]
    settings = [
        ("instances (N)", f"{args.n} (after {args.warmup} uncounted warm-up starts)"),
        ("concurrent clients", str(args.concurrency)),
        (
            "rack",
            f"{args.sleds} simulated sleds x {args.sled_cpus} threads / {args.sled_memory} GiB",
        ),
        ("instance sizes", "1 or 2 vCPUs, 1 or 2 GiB (alternating)"),
        ("`--sim-start-delay`", f"{args.start_delay} s (simulated creating -> running)"),
        ("`--start-wait`", f"{args.start_wait} s"),
        ("poll (if a 201 is not yet running)", f"every {args.poll_interval} s"),
    ]
    postgres = pg_version(args.pg_admin) if "postgres" in args.stores else None
    return {
        "start:results": [
            measured("start_throughput.py"),
            "",
            *table(header, "l" + "r" * 10, rows),
        ],
        "start:setup": setup_tables(machine_rows(postgres=postgres), settings),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("-n", "--n", type=int, default=500, help="instances per store (500)")
    p.add_argument("-c", "--concurrency", type=int, default=16, help="concurrent clients (16)")
    p.add_argument("--warmup", type=int, default=8, help="uncounted starts first (8)")
    p.add_argument("--sleds", type=int, default=32)
    p.add_argument("--sled-cpus", type=int, default=64)
    p.add_argument("--sled-memory", type=int, default=512, help="GiB")
    p.add_argument("--start-delay", type=float, default=0.05, help="--sim-start-delay (s)")
    p.add_argument("--start-wait", type=float, default=30.0, help="--start-wait (s)")
    p.add_argument("--poll-interval", type=float, default=0.01)
    p.add_argument("--poll-timeout", type=float, default=60.0)
    args = p.parse_args(argv)
    if args.n < 1 or args.concurrency < 1 or args.warmup < 0:
        p.error("-n and -c must be at least 1, --warmup at least 0")
    # Everything fits: the largest instance is 2 vCPUs / 2 GiB.
    if 2 * (args.n + args.warmup) > args.sleds * min(args.sled_cpus, args.sled_memory):
        p.error("the instances (up to 2 vCPUs / 2 GiB) do not fit the simulated rack")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = []
    for store in args.stores:
        print(f"{store}: {args.n} starts, {args.concurrency} concurrent ...", flush=True)
        r, cpu = run_store(store, args)
        results.append((store, r, cpu))
        r.progress(store, f", server CPU {num(r.per_start_ms(cpu))} ms/start")
    finish(section(results, args), args.write)
    return 1 if any(r.failures for _, r, _ in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
