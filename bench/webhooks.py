"""Webhooks: how soon an event reaches a receiver, how many deliveries per second go out in a
burst, and what sending them costs the control plane. The method is described in
docs/benchmarks.md ("## Webhooks"); ``--write`` replaces its marked blocks ``webhooks:*``.
No duration is asserted anywhere.

    .venv/bin/python bench/webhooks.py [--write] [--stores sqlite,postgres] [-n 300]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from harness import (
    Body,
    Clients,
    GiB,
    columns,
    create_all,
    finish,
    loadavg,
    machine_rows,
    measured,
    ms,
    parser,
    pct,
    pg_version,
    print_failures,
    server,
    setup_tables,
    top,
)
from skylight.cli.common import pages
from skylight.testing import ServerProcess
from skylight.testing.receiver import Received, WebhookReceiver

PROJECT = "bench"


@dataclass
class Result:
    store: str
    latency: list[float] = field(default_factory=list)  # seconds, start_failed deliveries
    latency_missing: int = 0
    bare_rate: float = math.nan  # starts/s without a receiver
    hooked_rate: float = math.nan  # starts/s with a receiver of every event
    burst_events: int = 0
    burst_delivered: int = 0
    burst_duplicates: int = 0
    burst_seconds: float = math.nan  # first request to last arrival
    burst_lag: float = math.nan  # last start answered to last arrival
    failures: list[str] = field(default_factory=list)


def _body(name: str, ncpus: int) -> Body:
    return {
        "name": name,
        "description": "",
        "hostname": name,
        "ncpus": ncpus,
        "memory": 2 * GiB,
        "start": True,
    }


def _burst(proc: ServerProcess, prefix: str, n: int, concurrency: int) -> float:
    """Create and start ``n`` instances with ``concurrency`` clients; starts per second."""
    bodies = [_body(f"{prefix}{i}", 1) for i in range(n)]
    how = Clients(PROJECT, concurrency, start_wait=60.0, headers=proc.headers)
    return n / create_all([proc.url], bodies, how)


def _start_failures(rx: WebhookReceiver) -> list[Received]:
    return [r for r in rx.all() if r.json()["alert_class"] == "instance.start_failed"]


def _wait(until: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not until():
        time.sleep(0.05)


def _burst_event_ids(http: httpx.Client, prefix: str) -> set[str]:
    """The ids of every event of the project's instances named ``prefix*``."""
    items = list(pages(http, "/v1/events", {"project": PROJECT, "limit": 1000}))
    listed = http.get("/v1/instances", params={"project": PROJECT, "limit": 10000}).json()
    ids = {i["id"] for i in listed["items"] if i["name"].startswith(prefix)}
    return {e["id"] for e in items if e["instance_id"] in ids}


def _drive(proc: ServerProcess, store: str, args: argparse.Namespace) -> Result:
    res = Result(store)
    rx = WebhookReceiver()
    try:
        with proc.client(timeout=120.0) as http:
            http.post("/v1/projects", json={"name": PROJECT, "description": ""}).raise_for_status()
            _burst(proc, "warm", args.warmup, args.concurrency)  # the control plane alone first
            res.bare_rate = _burst(proc, "bare", args.n, args.concurrency)
            hook: dict[str, object] = {"name": "bench", "description": "", "endpoint": rx.url}
            hook |= {"secrets": ["bench-secret"], "subscriptions": ["**"]}
            http.post("/v1/webhook-receivers", json=hook).raise_for_status()
            # While nobody listens the server looks for a first subscription once a second
            # (webhook_interval); from then on a commit wakes it. Time the steady state.
            time.sleep(2.0)
            for i in range(args.latency_n):  # one start failure at a time, at a steady pace
                r = http.post(
                    "/v1/instances",
                    params={"project": PROJECT},
                    json=_body(f"huge{i}", args.sled_cpus + 1),
                )
                if r.status_code != 201:
                    res.failures.append(f"huge{i}: {r.status_code} {r.text[:200]}")
                time.sleep(args.pace)
            _wait(lambda: len(_start_failures(rx)) >= args.latency_n, 30)
            failed = _start_failures(rx)
            stamp = [
                datetime.fromisoformat(r.json()["data"]["time_last"].replace("Z", "+00:00"))
                for r in failed
            ]
            res.latency = [r.at - t.timestamp() for r, t in zip(failed, stamp, strict=True)]
            res.latency_missing = args.latency_n - len(failed)

            before = len(rx.all())
            t0 = time.time()
            res.hooked_rate = _burst(proc, "hooked", args.n, args.concurrency)
            answered = time.time()
            wanted = _burst_event_ids(http, "hooked")
            res.burst_events = len(wanted)

            def burst() -> list[Received]:
                return [r for r in rx.all()[before:] if r.json()["alert_id"] in wanted]

            _wait(lambda: len({r.json()["alert_id"] for r in burst()}) >= len(wanted), 120)
            got = burst()
            res.burst_delivered = len({r.json()["alert_id"] for r in got})
            res.burst_duplicates = len(got) - len(
                {r.headers["x-oxide-delivery-id"][0] for r in got}
            )
            if got:
                last = max(r.at for r in got)
                res.burst_seconds, res.burst_lag = last - t0, last - answered
    finally:
        rx.close()
    return res


def section(
    results: list[Result], args: argparse.Namespace, loads: list[str]
) -> dict[str, list[str]]:
    def per_s(r: Result) -> str:
        return f"{r.burst_events / r.burst_seconds if r.burst_seconds > 0 else math.nan:.0f}"

    rows = columns(
        results,
        ("store", "l", lambda r: r.store),
        ("latency p50 (ms)", "l", lambda r: ms(pct(r.latency, 0.5))),
        ("p99 (ms)", "l", lambda r: ms(pct(r.latency, 0.99))),
        ("max (ms)", "l", lambda r: ms(top(r.latency))),
        ("starts/s, no receiver", "l", lambda r: f"{r.bare_rate:.1f}"),
        ("starts/s, receiver of every event", "l", lambda r: f"{r.hooked_rate:.1f}"),
        ("burst events", "l", lambda r: r.burst_events),
        ("delivered", "l", lambda r: r.burst_delivered),
        ("duplicates", "l", lambda r: r.burst_duplicates),
        ("deliveries/s", "l", per_s),
        ("lag (ms)", "l", lambda r: ms(r.burst_lag)),
    )
    postgres = pg_version(args.pg_admin) if "postgres" in args.stores else None
    machine = machine_rows([("httpx", httpx.__version__)], postgres=postgres, loads=loads)
    settings = [
        ("simulated rack", f"{args.sleds} sleds of {args.sled_cpus} threads"),
        ("--sim-start-delay", f"{args.start_delay} s"),
        ("webhook settings", "defaults (interval 1 s, timeout 10 s, 6 attempts)"),
        ("warm-up", f"{args.warmup} starts before the first burst"),
    ]
    return {
        "webhooks:measured": [measured("webhooks.py")],
        "webhooks:results": rows,
        "webhooks:setup": setup_tables(machine, settings),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("-n", "--n", type=int, default=300, help="instances per burst (300)")
    p.add_argument("-c", "--concurrency", type=int, default=16)
    p.add_argument("--latency-n", type=int, default=200, help="start failures timed (200)")
    p.add_argument("--pace", type=float, default=0.05, help="seconds between them (0.05)")
    p.add_argument("--warmup", type=int, default=16)
    p.add_argument("--sleds", type=int, default=32)
    p.add_argument("--sled-cpus", type=int, default=64)
    p.add_argument("--start-delay", type=float, default=0.05)
    args = p.parse_args(argv)
    if (2 * args.n + args.warmup) > args.sleds * args.sled_cpus:
        p.error("the bursts do not fit the simulated rack")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    loads = [loadavg()]
    serve = ["--sim-sleds", str(args.sleds), "--sim-sled-cpus", str(args.sled_cpus)]
    serve += ["--sim-start-delay", str(args.start_delay)]
    serve += ["--webhook-allow-cidr", "127.0.0.0/8"]  # where its receiver listens
    results = []
    for store in args.stores:
        print(f"{store} ...", flush=True)
        with server(store, args.pg_admin, serve) as proc:
            r = _drive(proc, store, args)
        results.append(r)
        print(
            f"{store}: latency p50 {ms(pct(r.latency, 0.5))} ms p99 {ms(pct(r.latency, 0.99))} ms, "
            f"starts/s {r.bare_rate:.1f} -> {r.hooked_rate:.1f}, burst {r.burst_delivered}/"
            f"{r.burst_events} delivered, {r.burst_duplicates} duplicates, "
            f"{r.burst_seconds:.2f} s, lag {ms(r.burst_lag)} ms",
            flush=True,
        )
        print_failures(r.failures)
    loads.append(loadavg())
    finish(section(results, args, loads), args.write)
    return 1 if any(r.failures or r.latency_missing for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
