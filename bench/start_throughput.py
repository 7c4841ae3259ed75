"""Start throughput: N instances created with ``start: true`` through HTTP.

Runs a real ``skylight serve`` process (SQLite, then PostgreSQL), creates one project, then
creates N instances with ``start: true`` from a bounded number of concurrent clients. Each
create waits for its start saga and is answered 201 with ``run_state: running`` (or with
``status_reason`` set if the start failed). Latency to running is measured from sending the
create to the instance being ``running``; if the answer is not yet running, the instance is
polled (``GET /v1/instances/{name}``) until it is, within a bound.

Reports N, concurrency, failures, wall time, starts per second and p50/p90/p99/max latency per
store. With ``--write`` the figures, the machine and the settings replace the
"## Start throughput" section of docs/benchmarks.md; otherwise they are only printed.

Everything goes to 127.0.0.1. No duration is asserted anywhere: this is a measurement.

    .venv/bin/python bench/start_throughput.py                 # both stores, N=500, print
    .venv/bin/python bench/start_throughput.py --write         # ... and update the doc
    .venv/bin/python bench/start_throughput.py --stores sqlite -n 200 -c 32
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

# bench/ is on sys.path when a script runs
from _report import (
    machine_rows,
    pg_version,
    scratch_database,
    setup_tables,
    wait_running,
    write_section,
)
from skylight.testing import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
GiB = 1024**3
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Start throughput"
PG_ADMIN_DEFAULT = os.environ.get(
    "SKYLIGHT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)
PROJECT = "bench"


# -- measurement -----------------------------------------------------------------------------


@dataclass
class Result:
    store: str
    n: int
    concurrency: int
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    polled: int = 0  # answers that were not yet running and had to be polled
    server_cpu: float = math.nan  # CPU seconds the server process used during the N creates

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.ok / self.wall if self.wall > 0 else 0.0

    @property
    def cpu_per_start_ms(self) -> float:
        return self.server_cpu / self.ok * 1000 if self.ok else math.nan

    def pct(self, q: float) -> float:
        """Nearest-rank percentile, in seconds."""
        if not self.latencies:
            return math.nan
        s = sorted(self.latencies)
        return s[max(0, math.ceil(q * len(s)) - 1)]


def instance_body(i: int, prefix: str) -> dict[str, Any]:
    name = f"{prefix}{i:05d}"
    return {
        "name": name,
        "description": "start throughput benchmark",
        "hostname": name,
        "ncpus": 1 + i % 2,  # 1 or 2 vCPUs
        "memory": (1 + (i // 2) % 2) * GiB,  # 1 or 2 GiB
        "start": True,
    }


async def _one(
    client: httpx.AsyncClient,
    body: dict[str, Any],
    result: Result | None,
    poll_interval: float,
    poll_timeout: float,
) -> None:
    t0 = time.monotonic()
    try:
        r = await client.post("/v1/instances", params={"project": PROJECT}, json=body)
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
            why = f"{inst['run_state']}: {inst['status_reason']}"
        else:
            if result is not None:
                result.polled += 1
            ok, why = await wait_running(
                client, "", body["name"], PROJECT, time.monotonic() + poll_timeout, poll_interval
            )
    t1 = time.monotonic()
    if result is None:
        if not ok:
            raise RuntimeError(f"warm-up start failed: {body['name']}: {why}")
        return
    if ok:
        result.latencies.append(t1 - t0)
    else:
        result.failures.append(f"{body['name']}: {why}")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return math.nan


async def _drive(url: str, store: str, args: argparse.Namespace, pid: int | None = None) -> Result:
    timeout = httpx.Timeout(args.start_wait + 60.0, connect=10.0)
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        r = await client.post(
            "/v1/projects", json={"name": PROJECT, "description": "start throughput"}
        )
        r.raise_for_status()

        sem = asyncio.Semaphore(args.concurrency)

        async def bounded(body: dict[str, Any], result: Result | None) -> None:
            async with sem:
                await _one(client, body, result, args.poll_interval, args.poll_timeout)

        # Warm-up: not counted (first requests pay for imports, pools, caches).
        await asyncio.gather(
            *(bounded(instance_body(i, "warm-"), None) for i in range(args.warmup))
        )

        result = Result(store=store, n=args.n, concurrency=args.concurrency)
        cpu0 = _cpu_seconds(pid) if pid is not None else math.nan
        t0 = time.monotonic()
        await asyncio.gather(*(bounded(instance_body(i, "inst-"), result) for i in range(args.n)))
        result.wall = time.monotonic() - t0
        if pid is not None:
            result.server_cpu = _cpu_seconds(pid) - cpu0
        return result


def _serve_args(args: argparse.Namespace) -> list[str]:
    return [
        "--sim-sleds",
        str(args.sleds),
        "--sim-sled-cpus",
        str(args.sled_cpus),
        "--sim-sled-memory",
        str(args.sled_memory),
        "--sim-start-delay",
        str(args.start_delay),
        "--start-wait",
        str(args.start_wait),
    ]


def run_store(store: str, args: argparse.Namespace) -> Result:
    scratch = scratch_database(args.pg_admin) if store == "postgres" else nullcontext(None)
    with tempfile.TemporaryDirectory(prefix=f"skylight-bench-{store}-") as tmp, scratch as db:
        server = ServerProcess(Path(tmp) / "data", db=db, args=_serve_args(args))
        try:
            server.start(timeout=60.0)
            assert server.proc is not None
            result = asyncio.run(_drive(server.url, store, args, server.proc.pid))
            if result.failures:
                log = server.log()
                if log.strip():
                    print(f"--- server log tail ({store}) ---\n{log}", file=sys.stderr)
            return result
        finally:
            server.stop()


# -- report ----------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.0f}"


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0f}"


def machine(args: argparse.Namespace, stores: list[str]) -> list[tuple[str, str]]:
    pg = pg_version(args.pg_admin) if "postgres" in stores else None
    return machine_rows(postgres=pg)


def settings(args: argparse.Namespace) -> list[tuple[str, str]]:
    return [
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


def table(results: list[Result]) -> str:
    lines = [
        "| store | N | concurrency | failures | wall (s) | starts/s "
        "| p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | server CPU (ms/start) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.store} | {r.n} | {r.concurrency} | {len(r.failures)} | {r.wall:.2f} "
            f"| {r.rate:.1f} | {_ms(r.pct(0.50))} | {_ms(r.pct(0.90))} | {_ms(r.pct(0.99))} "
            f"| {_ms(max(r.latencies) if r.latencies else math.nan)} "
            f"| {_fmt(r.cpu_per_start_ms)} |"
        )
    return "\n".join(lines)


def section(results: list[Result], args: argparse.Namespace, stores: list[str]) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python bench/start_throughput.py " + " ".join(sys.argv[1:])
    out = [
        SECTION,
        "",
        "N instances created with `start: true` through HTTP against a running "
        "`skylight serve` (a real server process, `skylight.testing.ServerProcess`), from a "
        "bounded number of concurrent clients (`httpx.AsyncClient` in one asyncio loop on the "
        "same machine). A create with `start: true` waits for its start saga and answers 201 "
        "with `run_state: running`. Latency to running is from sending the create to the "
        "instance being `running` (polling `GET /v1/instances/{name}` if the answer was not "
        "yet running). starts/s = successful starts / wall time of the N creates. "
        "Percentiles are nearest-rank. No duration is asserted in any test: these are "
        "measurements of one machine, not limits.",
        "",
        f"Measured {when} with `{cmd.strip()}`.",
        "",
        table(results),
        "",
        "Every start here pays the simulated sled's start delay "
        f"(`--sim-start-delay {args.start_delay}`), so a latency cannot be below "
        f"{args.start_delay * 1000:.0f} ms; the rest is the control plane (HTTP, the create "
        "and start sagas, placement, the store). The clients share the machine's CPUs with "
        "the server (and with PostgreSQL). Server CPU is the CPU time (user + system) of the "
        "`skylight serve` process during the N creates divided by the successful starts; "
        "PostgreSQL's own CPU is not in it.",
        "",
        *setup_tables(machine(args, stores), settings(args)),
    ]
    return "\n".join(out)


def write_doc(text: str) -> None:
    write_section(SECTION, text, DOC)


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--n", type=int, default=500, help="instances per store (500)")
    p.add_argument("-c", "--concurrency", type=int, default=16, help="concurrent clients (16)")
    p.add_argument("--stores", default="sqlite,postgres", help="sqlite,postgres")
    p.add_argument("--write", action="store_true", help=f"update {DOC.relative_to(ROOT)}")
    p.add_argument("--warmup", type=int, default=8, help="uncounted starts first (8)")
    p.add_argument("--sleds", type=int, default=32)
    p.add_argument("--sled-cpus", type=int, default=64)
    p.add_argument("--sled-memory", type=int, default=512, help="GiB")
    p.add_argument("--start-delay", type=float, default=0.05, help="--sim-start-delay (s)")
    p.add_argument("--start-wait", type=float, default=30.0, help="--start-wait (s)")
    p.add_argument("--poll-interval", type=float, default=0.01)
    p.add_argument("--poll-timeout", type=float, default=60.0)
    p.add_argument("--pg-admin", default=PG_ADMIN_DEFAULT, help="PostgreSQL admin URL")
    args = p.parse_args(argv)
    if args.n < 1 or args.concurrency < 1 or args.warmup < 0:
        p.error("-n and -c must be at least 1, --warmup at least 0")
    # Everything fits: the largest instance is 2 vCPUs / 2 GiB.
    total = args.n + args.warmup
    if total * 2 > args.sleds * args.sled_cpus or total * 2 > args.sleds * args.sled_memory:
        p.error(f"{total} instances of up to 2 vCPUs / 2 GiB do not fit the simulated rack")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    for s in stores:
        if s not in ("sqlite", "postgres"):
            raise SystemExit(f"unknown store {s!r} (sqlite, postgres)")
    results = []
    for store in stores:
        print(f"{store}: {args.n} starts, {args.concurrency} concurrent ...", flush=True)
        r = run_store(store, args)
        results.append(r)
        print(
            f"{store}: {r.ok}/{r.n} running, {len(r.failures)} failed, {r.polled} polled, "
            f"{r.wall:.2f}s, {r.rate:.1f} starts/s, p50 {_ms(r.pct(0.5))} ms, "
            f"p99 {_ms(r.pct(0.99))} ms, server CPU {_fmt(r.cpu_per_start_ms)} ms/start",
            flush=True,
        )
        for f in r.failures[:5]:
            print(f"  failure: {f}", file=sys.stderr)
    text = section(results, args, stores)
    print()
    print(text)
    if args.write:
        write_doc(text)
        print(f"wrote {DOC}")
    return 1 if any(r.failures for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
