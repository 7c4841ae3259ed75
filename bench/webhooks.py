"""Webhooks: how soon an event reaches a receiver, how many deliveries per second go out in a
burst, and what sending them costs the control plane.

A real ``skylight serve`` (``skylight.testing.ServerProcess``) per store, and a receiver in
this process (an HTTP server on 127.0.0.1 that answers 204 and notes when each request
arrived). Three phases:

* latency: instances whose start no sled can ever take (larger than any sled), created one
  after another at a steady pace; each start failure's ``instance.start_failed`` delivery is
  timed from the event's ``time_last`` (set in the transaction that wrote it) to its arrival.
* burst, without a receiver: N instances created and started by C concurrent clients; the
  starts/s of the control plane alone.
* burst, with a receiver subscribed to every event (``**``): the same, then the wait until
  every event of the burst has arrived. Deliveries/s is events / (last arrival - first
  request); each event must arrive exactly once (counted by alert id and delivery id).

No duration is asserted anywhere. ``--write`` replaces the "## Webhooks" section of
docs/benchmarks.md.

    .venv/bin/python bench/webhooks.py [--write] [--stores sqlite,postgres] [-n 300]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

# bench/ is on sys.path when a script runs
from _report import (
    load_row,
    machine_rows,
    pg_version,
    scratch_database,
    setup_tables,
    write_section,
)
from skylight.testing import ServerProcess
from skylight.testing.receiver import Received, WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Webhooks"
GiB = 1024**3
PG_ADMIN_DEFAULT = os.environ.get(
    "SKYLIGHT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)
OP = {"x-skylight-operator": "true"}
LOAD: list[str] = []


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

    def pct(self, q: float) -> float:
        if not self.latency:
            return math.nan
        xs = sorted(self.latency)
        return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


def _start_failures(rx: WebhookReceiver) -> list[Received]:
    return [r for r in rx.all() if r.json()["alert_class"] == "instance.start_failed"]


def _time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _body(name: str, ncpus: int, start: bool) -> dict[str, Any]:
    return {
        "name": name,
        "description": "",
        "hostname": name,
        "ncpus": ncpus,
        "memory": 2 * GiB,
        "start": start,
    }


async def _burst(http: httpx.AsyncClient, prefix: str, n: int, concurrency: int) -> float:
    """Create and start ``n`` instances with ``concurrency`` clients; starts per second."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            r = await http.post(
                "/v1/instances", params={"project": "bench"}, json=_body(f"{prefix}{i}", 1, True)
            )
            if r.status_code != 201 or r.json()["run_state"] != "running":
                raise RuntimeError(f"{prefix}{i}: {r.status_code} {r.text[:200]}")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - t0)


async def _project_events(http: httpx.AsyncClient, prefix: str) -> list[dict[str, Any]]:
    """Every event of the project's instances named ``prefix*``."""
    out, token = [], None
    while True:
        params: dict[str, Any] = {"project": "bench", "limit": 1000}
        if token:
            params["page_token"] = token
        r = await http.get("/v1/events", params=params)
        r.raise_for_status()
        body = r.json()
        out += body["items"]
        token = body.get("next_page")
        if not token:
            break
    r = await http.get("/v1/instances", params={"project": "bench", "limit": 10000})
    ids = {i["id"] for i in r.json()["items"] if i["name"].startswith(prefix)}
    return [e for e in out if e["instance_id"] in ids]


async def _drive(url: str, store: str, args: argparse.Namespace) -> Result:
    res = Result(store)
    rx = WebhookReceiver()
    try:
        async with httpx.AsyncClient(base_url=url, timeout=120.0, headers=OP) as http:
            r = await http.post("/v1/projects", json={"name": "bench", "description": ""})
            r.raise_for_status()
            # The control plane alone first.
            await _burst(http, "warm", args.warmup, args.concurrency)
            res.bare_rate = await _burst(http, "bare", args.n, args.concurrency)

            r = await http.post(
                "/v1/webhook-receivers",
                json={
                    "name": "bench",
                    "description": "",
                    "endpoint": rx.url,
                    "secrets": ["bench-secret"],
                    "subscriptions": ["**"],
                },
            )
            r.raise_for_status()
            # The server looks for its first subscription once a second (webhook_interval)
            # while nobody listens; from then on a commit wakes it. Time the steady state.
            await asyncio.sleep(2.0)

            # Latency: one start failure at a time, at a steady pace.
            for i in range(args.latency_n):
                r = await http.post(
                    "/v1/instances",
                    params={"project": "bench"},
                    json=_body(f"huge{i}", args.sled_cpus + 1, True),
                )
                if r.status_code != 201:
                    res.failures.append(f"huge{i}: {r.status_code} {r.text[:200]}")
                await asyncio.sleep(args.pace)
            deadline = time.monotonic() + 30
            want = args.latency_n
            while time.monotonic() < deadline:
                if len(_start_failures(rx)) >= want:
                    break
                await asyncio.sleep(0.05)
            failed = _start_failures(rx)
            res.latency = [r.at - _time(r.json()["data"]["time_last"]) for r in failed]
            res.latency_missing = want - len(failed)

            # Burst with a receiver of every event.
            before = len(rx.all())
            t0 = time.time()
            res.hooked_rate = await _burst(http, "hooked", args.n, args.concurrency)
            answered = time.time()
            events = await _project_events(http, "hooked")
            res.burst_events = len(events)
            wanted = {e["id"] for e in events}
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                got = {r.json()["alert_id"] for r in rx.all()[before:]} & wanted
                if len(got) >= len(wanted):
                    break
                await asyncio.sleep(0.05)
            burst = [r for r in rx.all()[before:] if r.json()["alert_id"] in wanted]
            res.burst_delivered = len({r.json()["alert_id"] for r in burst})
            res.burst_duplicates = len(burst) - len(
                {r.headers["x-oxide-delivery-id"][0] for r in burst}
            )
            if burst:
                last = max(r.at for r in burst)
                res.burst_seconds = last - t0
                res.burst_lag = last - answered
    finally:
        rx.close()
    return res


def run_store(store: str, args: argparse.Namespace) -> Result:
    serve = [
        *("--sim-sleds", str(args.sleds), "--sim-sled-cpus", str(args.sled_cpus)),
        *("--sim-start-delay", str(args.start_delay)),
    ]
    scratch = scratch_database(args.pg_admin) if store == "postgres" else nullcontext(None)
    with tempfile.TemporaryDirectory(prefix=f"skylight-bench-hooks-{store}-") as tmp, scratch as db:
        server = ServerProcess(Path(tmp) / "data", db=db, args=serve)
        try:
            server.start(timeout=60.0)
            return asyncio.run(_drive(server.url, store, args))
        finally:
            server.stop()


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.0f}"


def section(results: list[Result], args: argparse.Namespace, stores: list[str]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = [
        SECTION,
        "",
        f"Measured {when} with `python bench/webhooks.py --write`.",
        "",
        "A real `skylight serve` per store (SQLite file; a fresh PostgreSQL database) and a "
        "receiver in the bench process (HTTP on 127.0.0.1, answers 204 at once). *Latency*: "
        f"{args.latency_n} instances larger than any sled, created with start one every "
        f"{args.pace * 1000:.0f} ms; each `instance.start_failed` delivery timed from the "
        "event's `time_last` (written in its transaction) to its arrival, from 2 s after "
        "the receiver was created (while nobody subscribes, the server looks for a first "
        "subscription once a `webhook_interval`, 1 s). *Burst*: "
        f"{args.n} instances created and started by {args.concurrency} concurrent clients, "
        "first with no receiver, then with one subscribed to every event (`**`); "
        "*deliveries/s* is the burst's events over the time from its first request to the "
        "last arrival, *lag* the time from the last start answered to the last arrival. "
        "Every event of the burst must arrive exactly once (alert ids and delivery ids "
        "counted). Client, server, receiver and PostgreSQL share the machine's CPUs.",
        "",
        "| store | latency p50 (ms) | p99 (ms) | max (ms) | starts/s, no receiver | "
        "starts/s, receiver of every event | burst events | delivered | duplicates | "
        "deliveries/s | lag (ms) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        rate = r.burst_events / r.burst_seconds if r.burst_seconds > 0 else math.nan
        out.append(
            f"| {r.store} | {_ms(r.pct(0.5))} | {_ms(r.pct(0.99))} | "
            f"{_ms(max(r.latency) if r.latency else math.nan)} | {r.bare_rate:.1f} | "
            f"{r.hooked_rate:.1f} | {r.burst_events} | {r.burst_delivered} | "
            f"{r.burst_duplicates} | {rate:.0f} | {_ms(r.burst_lag)} |"
        )
    out.append("")
    for r in results:
        cost = 1 - r.hooked_rate / r.bare_rate if r.bare_rate else math.nan
        missing = r.burst_events - r.burst_delivered
        timed = len(r.latency) + r.latency_missing
        reach = f"p50 {_ms(r.pct(0.5))} ms (p99 {_ms(r.pct(0.99))} ms"
        reach += f"; {r.latency_missing} of {timed} missing)"
        rates = f"{r.bare_rate:.1f} -> {r.hooked_rate:.1f}"
        arrived = f"{r.burst_delivered} of {r.burst_events} events arrived"
        if missing:
            arrived += f" ({missing} missing)"
        out.append(
            f"- **{r.store}:** a start failure reaches the receiver at {reach}. Sending every "
            f"event of a burst costs the control plane {cost:.0%} of its starts/s ({rates}); "
            f"{arrived}, {r.burst_duplicates} twice."
        )
    machine = machine_rows(
        [("httpx", httpx.__version__)],
        postgres=pg_version(args.pg_admin) if "postgres" in stores else None,
        extra=[load_row(LOAD)],
    )
    settings = [
        ("simulated rack", f"{args.sleds} sleds of {args.sled_cpus} threads"),
        ("--sim-start-delay", f"{args.start_delay} s"),
        ("webhook settings", "defaults (interval 1 s, timeout 10 s, 6 attempts)"),
        ("warm-up", f"{args.warmup} starts before the first burst"),
    ]
    out += ["", *setup_tables(machine, settings)]
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--n", type=int, default=300, help="instances per burst (300)")
    p.add_argument("-c", "--concurrency", type=int, default=16)
    p.add_argument("--latency-n", type=int, default=200, help="start failures timed (200)")
    p.add_argument("--pace", type=float, default=0.05, help="seconds between them (0.05)")
    p.add_argument("--warmup", type=int, default=16)
    p.add_argument("--sleds", type=int, default=32)
    p.add_argument("--sled-cpus", type=int, default=64)
    p.add_argument("--start-delay", type=float, default=0.05)
    p.add_argument("--stores", default="sqlite,postgres")
    p.add_argument("--write", action="store_true", help=f"update {DOC.relative_to(ROOT)}")
    p.add_argument("--pg-admin", default=PG_ADMIN_DEFAULT)
    args = p.parse_args(argv)
    if (2 * args.n + args.warmup) > args.sleds * args.sled_cpus:
        p.error("the bursts do not fit the simulated rack")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    LOAD.append(f"{os.getloadavg()[0]:.2f}")
    results = []
    for store in stores:
        print(f"{store} ...", flush=True)
        r = run_store(store, args)
        results.append(r)
        print(
            f"{store}: latency p50 {_ms(r.pct(0.5))} ms p99 {_ms(r.pct(0.99))} ms "
            f"(median {_ms(statistics.median(r.latency)) if r.latency else 'n/a'}), "
            f"starts/s {r.bare_rate:.1f} -> {r.hooked_rate:.1f}, burst {r.burst_delivered}/"
            f"{r.burst_events} delivered, {r.burst_duplicates} duplicates, "
            f"{r.burst_seconds:.2f} s, lag {_ms(r.burst_lag)} ms",
            flush=True,
        )
        for f in r.failures[:5]:
            print(f"  failure: {f}", file=sys.stderr)
    LOAD.append(f"{os.getloadavg()[0]:.2f}")
    text = section(results, args, stores)
    print()
    print(text)
    if args.write:
        write_section(SECTION, text, DOC)
        print(f"wrote {DOC}")
    return 1 if any(r.failures or r.latency_missing for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
