"""Instance events at scale: first-page latency (in-process and over HTTP) with many events
stored, the retention pass, event write cost, and the time from an injected VM failure to the
event and to running again. The method is described in docs/benchmarks.md ("## Events");
``--write`` replaces its marked blocks ``events:*``. No duration is asserted anywhere.

    .venv/bin/python bench/events.py [--write] [--stores sqlite] [--parts failure]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Protocol

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from event_history import (
    ABSENT_KIND,
    COMMON_KIND,
    RARE_KIND,
    VMM_FAILURE,
    Loaded,
    Shape,
    instance_id,
    prepare,
    project_id,
    user_id,
)
from harness import (
    Body,
    Clients,
    GiB,
    columns,
    create_all,
    create_project,
    details,
    finish,
    loadavg,
    machine_rows,
    measured,
    parser,
    pct,
    pg_show,
    print_failures,
    server,
    setup_tables,
    table,
    top,
)
from harness import ms as _ms
from plans import Capture, Params, plan_or_why
from skylight.clock import now
from skylight.events.kinds import Kind, control_plane, user_actor
from skylight.instances.record import record
from skylight.store import Store, events, instances
from skylight.store.schema import event as event_table
from skylight.testing import ServerProcess

LIMIT = 100  # the API's default page size
LOAD: list[str] = []  # 1-minute load average at start and end
COLD_NAME = "instance, cold (store evicted from the OS page cache first)"
AGAIN_NAME = "instance, the same instances again (just read)"


def first_page(conn: Connection, flt: events.EventFilter) -> list[sa.Row[tuple[object, ...]]]:
    """The API's first page: the 100 newest events that ``flt`` selects."""
    return events.page(conn, flt, limit=LIMIT, before_seq=None)


def ms(seconds: float, digits: int = 2) -> str:
    return _ms(seconds, digits)


# -- 1. first page ----------------------------------------------------------------------------


@dataclass
class Query:
    name: str
    api: str  # the request that runs it
    make: Callable[[random.Random], events.EventFilter]


# The first pages timed: scope, kind, severity, a note on the kind.
QUERIES: tuple[tuple[str, str | None, str | None, str], ...] = (
    *(("instance", k, None, "") for k in (None, COMMON_KIND)),
    *(("project", k, None, n) for k, n in ((None, ""), (COMMON_KIND, ""), (RARE_KIND, "rare"))),
    *(("fleet", k, None, n) for k, n in ((None, ""), (COMMON_KIND, ""), (RARE_KIND, "rare"))),
    ("fleet", None, "error", ""),
    ("fleet", ABSENT_KIND, None, "none stored"),
)
API = {"instance": "/v1/instances/{id}/events?", "project": "/v1/events?project=P&"}


def queries(shape: Shape) -> list[Query]:
    """Each of QUERIES as the API names it and asks it, the instance or project drawn at
    random for each query."""

    def maker(
        scope: str, kind: str | None, severity: str | None
    ) -> Callable[[random.Random], events.EventFilter]:
        def make(rng: random.Random) -> events.EventFilter:
            i = instance_id(rng.randrange(shape.instances)) if scope == "instance" else None
            p = project_id(rng.randrange(shape.projects)) if scope == "project" else None
            return events.EventFilter(instance_id=i, project_id=p, kind=kind, severity=severity)

        return make

    out = []
    for scope, kind, severity, note in QUERIES:
        name = (
            scope
            + (f", kind={kind}" if kind else "")
            + (f", severity={severity}" if severity else "")
        )
        query = "kind=..." if kind else f"severity={severity}" if severity else ""
        api = "GET " + (API.get(scope, "/v1/system/events?") + query).rstrip("?&")
        out.append(Query(name + (f" ({note})" if note else ""), api, maker(scope, kind, severity)))
    return out


@dataclass
class PageResult:
    query: Query
    store: str
    times: list[float]
    rows: list[int]
    plan: str = ""
    budget_hit: bool = False
    cached_gib: float = math.nan  # the OS page cache when the row began


def page_cache_gib() -> float:
    try:
        m = re.search(r"^Cached:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        return int(m.group(1)) / 1024**2 if m else math.nan
    except OSError:
        return math.nan


def _page_statement(store: Store, flt: events.EventFilter) -> tuple[str, Params, tuple[str, ...]]:
    """The statement that reads a page's rows, and the planner settings it runs under (a
    prefetched page, ``events._page_prefetched``, sets them in the statement before)."""
    with Capture(store.engine) as cap:
        store.tx_sync(lambda c: events.page(c, flt, limit=LIMIT, before_seq=None))
    stmts = [s for s in cap.seen if "instance_event" in s[0] and s[0].lstrip().startswith("SELECT")]
    settings: tuple[str, ...] = ()
    if any("set_config" in s[0] for s in stmts):
        settings = (
            "SET LOCAL enable_indexscan = off",
            f"SET LOCAL effective_io_concurrency = {events.PREFETCH_PAGES}",
        )
    return stmts[-1][0], stmts[-1][1], settings


def _evict_files(paths: list[Path]) -> int:
    """Drop these files' pages from the OS page cache (written back first); bytes covered."""
    total = 0
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            total += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return total


def evict_store(url: str) -> str:
    """Evict the store's event table (and its indexes) from the OS page cache: the files of
    this benchmark's own store only, nothing else. Returns what was done."""
    try:
        if url.startswith("sqlite"):
            path = Path(url.split("///", 1)[1])
            done = _evict_files(sorted(path.parent.glob(path.name + "*")))
            return f"{done / GiB:.1f} GiB of SQLite files evicted"
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")  # so the pages are clean and can be dropped
            row = conn.execute("SHOW data_directory").fetchone()
            base = Path(str(row[0])) if row else None
            rels = conn.execute(
                "SELECT pg_relation_filepath(c.oid) FROM pg_class c "
                "WHERE c.oid = 'instance_event'::regclass OR c.oid IN "
                "(SELECT indexrelid FROM pg_index WHERE indrelid = 'instance_event'::regclass)"
            ).fetchall()
        if base is None:
            return "not evicted (no data directory)"
        files = []
        for (rel,) in rels:
            first = base / str(rel)
            files += [first, *sorted(first.parent.glob(first.name + ".*"))]
        done = _evict_files([f for f in files if f.exists()])
        return (
            f"{done / GiB:.1f} GiB of the table's and its indexes' files evicted "
            "(PostgreSQL's shared_buffers keep what they hold)"
        )
    except (OSError, Exception) as exc:  # the machine's business: report, measure anyway
        return f"not evicted ({type(exc).__name__}: {exc})"


def measure_pages(store: Store, name: str, args: argparse.Namespace, url: str) -> list[PageResult]:
    out = []

    def timed(res: PageResult, flt: events.EventFilter) -> None:
        t0 = time.perf_counter()
        rows = store.tx_sync(partial(first_page, flt=flt))
        res.times.append(time.perf_counter() - t0)
        res.rows.append(len(rows))

    for q in queries(Shape(args.events, args.instances, args.projects, args.span_days)):
        rng = random.Random(f"{args.seed}/{q.name}")
        stmt, params, settings = _page_statement(store, q.make(rng))
        # Warm-up (not counted), then up to --queries timed queries within --query-budget s.
        for _ in range(min(20, args.queries)):
            t_w = time.perf_counter()
            store.tx_sync(partial(first_page, flt=q.make(rng)))
            if time.perf_counter() - t_w > args.query_budget / 10:
                break
        budget = args.query_budget
        first = q.name == "instance"
        if first and args.cold:
            print(f"  {name}: {evict_store(url)}", flush=True)
            q = Query(COLD_NAME, q.api, q.make)
            budget = 4 * args.query_budget
        res = PageResult(q, name, [], [], cached_gib=page_cache_gib())
        deadline = time.perf_counter() + budget
        used = []
        for _ in range(args.queries):
            used.append(q.make(rng))
            timed(res, used[-1])
            if time.perf_counter() > deadline:
                res.budget_hit = len(res.times) < args.queries
                break
        out.append(res)
        if first:
            # The same instances again, at once: now their pages were just read (cached).
            out.append(PageResult(Query(AGAIN_NAME, q.api, q.make), name, [], []))
            out[-1].cached_gib = page_cache_gib()
            for flt in used:
                timed(out[-1], flt)
        res.plan = plan_or_why(store, stmt, params, analyze=True, settings=settings)
        out[-1].plan = res.plan
        for pr in out[-2 if first else -1 :]:
            print(
                f"  {name}: {pr.query.name}: n={len(pr.times)} p50 {ms(pct(pr.times, 0.5))} "
                f"ms, p99 {ms(pct(pr.times, 0.99))} ms, max {ms(max(pr.times))} ms, rows "
                f"{min(pr.rows)}-{max(pr.rows)}",
                flush=True,
            )
    return out


@dataclass
class RetentionResult:
    store: str
    label: str
    keep: int
    seconds: float
    removed: int | None  # None: did not finish within the bound
    plan: str
    batches: int = 0
    longest_batch: float = math.nan  # seconds: how long one transaction held the store
    cached_gib: float = math.nan


RETENTION_CASES = (
    # (label, cutoff age, keep): the default finds nothing old; "now" makes every event old
    # but keeps each instance's newest; keep 90 makes 10 of every instance's 100 go.
    ("30 days ago (default)", timedelta(days=30), 100),
    ("now", timedelta(0), 100),
    ("now, keep 90", timedelta(0), 90),
)


def measure_retention(
    store: Store, name: str, label: str, cutoff: datetime, keep: int, timeout: float
) -> RetentionResult:
    """One retention pass as ``background/retention.py`` runs it, batch by batch
    (``store.events.retention_batch``), every batch rolled back, bounded by ``timeout``."""
    cached = page_cache_gib()
    removed: int | None = 0
    batches, longest, after = 0, 0.0, None
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    with Capture(store.engine) as cap, store.engine.connect() as conn:
        while True:
            trans = conn.begin()
            t_batch = time.perf_counter()
            try:
                done, after = events.retention_batch(
                    conn, older_than=cutoff, keep=keep, after=after
                )
            finally:
                longest = max(longest, time.perf_counter() - t_batch)
                trans.rollback()
            batches += 1
            removed = (removed or 0) + done
            if after is None:
                break
            if time.monotonic() > deadline:
                removed = None
                break
    seconds = time.perf_counter() - t0
    stmt = [s for s in cap.seen if s[0].lstrip().startswith("DELETE")]
    plan = plan_or_why(store, *stmt[-1], analyze=False) if stmt else ""
    done_text = "did not finish" if removed is None else f"removed {removed} (rolled back)"
    print(
        f"  {name}: retention ({label}): {seconds:.1f} s in {batches} batches, longest "
        f"{longest * 1000:.0f} ms, {done_text}",
        flush=True,
    )
    return RetentionResult(name, label, keep, seconds, removed, plan, batches, longest, cached)


# -- 1b. over HTTP ----------------------------------------------------------------------------


@dataclass
class HttpResult:
    store: str
    first: float = math.nan  # the first request after the server answered
    times: list[float] = field(default_factory=list)
    errors: int = 0
    start_seconds: float = math.nan
    note: str = ""


def _sqlite_writer_busy(path: str) -> bool:
    """True while another connection holds the SQLite write lock (e.g. a retention pass)."""
    con = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        con.close()


def _pg_retention_running(url: str) -> bool:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state = 'active' AND query LIKE 'DELETE FROM instance_event%'"
        ).fetchone()
        return bool(row and row[0])


def measure_http(loaded: Loaded, args: argparse.Namespace, work: Path) -> HttpResult:
    res = HttpResult(loaded.store)
    data_dir = work / f"http-{loaded.store}"
    shutil.rmtree(data_dir, ignore_errors=True)
    proc = ServerProcess(data_dir, db=loaded.url, args=["--sim-start-delay", "0.05"])
    rng = random.Random(f"{args.seed}/http")
    t0 = time.perf_counter()
    proc.start(timeout=300.0)
    res.start_seconds = time.perf_counter() - t0
    try:
        with proc.client(timeout=600.0) as client:
            iid = instance_id(rng.randrange(loaded.shape.instances))
            t0 = time.perf_counter()
            r = client.get(f"/v1/instances/{iid}/events", params={"limit": LIMIT})
            res.first = time.perf_counter() - t0
            if r.status_code != 200:
                raise RuntimeError(f"GET events: HTTP {r.status_code}: {r.text[:300]}")
            # The server's retention pass runs at start; wait it out (bounded).
            deadline = time.monotonic() + 900
            waited = 0.0
            while time.monotonic() < deadline:
                busy = (
                    _sqlite_writer_busy(loaded.url.split("///", 1)[1])
                    if loaded.store == "sqlite"
                    else _pg_retention_running(loaded.url)
                )
                if not busy:
                    break
                time.sleep(0.5)
                waited += 0.5
            if waited:
                res.note = f"waited {waited:.0f} s for the start-up retention pass"
            for _ in range(50):  # warm-up
                iid = instance_id(rng.randrange(loaded.shape.instances))
                client.get(f"/v1/instances/{iid}/events", params={"limit": LIMIT})
            for _ in range(args.http_requests):
                iid = instance_id(rng.randrange(loaded.shape.instances))
                t0 = time.perf_counter()
                r = client.get(f"/v1/instances/{iid}/events", params={"limit": LIMIT})
                dt = time.perf_counter() - t0
                if r.status_code == 200 and len(r.json()["items"]) > 0:
                    res.times.append(dt)
                else:
                    res.errors += 1
    finally:
        proc.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    print(
        f"  {loaded.store}: HTTP first page: n={len(res.times)} errors={res.errors} "
        f"p50 {ms(pct(res.times, 0.5))} ms p99 {ms(pct(res.times, 0.99))} ms "
        f"(first request after start {ms(res.first)} ms; server start {res.start_seconds:.1f} s)"
        f"{'; ' + res.note if res.note else ''}",
        flush=True,
    )
    return res


# -- 2. write cost ----------------------------------------------------------------------------

VARIANTS = ("none", "user", "cp_new", "cp_repeat", "record_user")
VARIANT_TEXT = {
    "none": "the transaction without an event (instance row update)",
    "user": "+ `events.insert`, user actor",
    "cp_new": "+ `events.insert`, control-plane actor, no recent repeat (coalescing lookup)",
    "cp_repeat": "+ `events.insert`, control-plane actor, repeat (coalesced: delete + insert)",
    "record_user": "+ `instances.record.record`, user actor (instance lookup + insert)",
}


@dataclass
class WriteResult:
    store: str
    times: dict[str, list[float]]
    lookup_plan: str = ""


def measure_writes(store: Store, name: str, shape: Shape, args: argparse.Namespace) -> WriteResult:
    rng = random.Random(f"{args.seed}/writes")
    n = args.write_iterations
    picks = rng.sample(range(shape.instances), min(n, shape.instances))
    res = WriteResult(name, {v: [] for v in VARIANTS})
    before = store.tx_sync(events.last_seq)
    user = user_actor(user_id(0), "bench-user-0")
    failure_actor = control_plane("vmm_failure")

    def run(variant: str, iid: str, pid: str) -> None:
        def tx(conn: Connection) -> str | None:
            instances.update(conn, iid, time_modified=now())
            if variant == "none":
                return None
            if variant == "record_user":
                return record(conn, iid, Kind.STOP_REQUESTED, user, operation_id=str(uuid.uuid4()))
            if variant == "user":
                ev = events.NewEvent(
                    iid, pid, Kind.STOP_REQUESTED, user, "running", operation_id=str(uuid.uuid4())
                )
            else:
                ev = events.NewEvent(
                    iid, pid, Kind.FAILED, failure_actor, "failed", reason=VMM_FAILURE
                )
            return events.insert(conn, ev)

        t0 = time.perf_counter()
        store.tx_sync(tx)
        res.times[variant].append(time.perf_counter() - t0)

    spare = shape.instances - 1  # warm-up on an instance not otherwise used
    for _ in range(20):
        run("none", instance_id(spare), project_id(spare % shape.projects))
    # The coalescing lookup's plan, as the product runs it.
    with Capture(store.engine) as cap:
        run("cp_new", instance_id(spare), project_id(spare % shape.projects))
    lookups = [s for s in cap.seen if s[0].lstrip().startswith("SELECT") and "time_last" in s[0]]
    if lookups:
        # Explained for another instance, with no recent identical event: the usual miss.
        spare_id, other = instance_id(spare), instance_id(shape.instances - 2)
        stmt, params = lookups[-1]
        if isinstance(params, dict):
            params = {k: other if v == spare_id else v for k, v in params.items()}
        else:
            params = tuple(other if v == spare_id else v for v in params or ())
        res.lookup_plan = plan_or_why(store, stmt, params, analyze=True)
    res.times = {v: [] for v in VARIANTS}
    deadline = time.perf_counter() + args.write_budget
    for j in range(n):
        if time.perf_counter() > deadline:
            print(f"  {name}: write budget ({args.write_budget:g} s) spent after {j}", flush=True)
            break
        i = picks[j % len(picks)]
        iid, pid = instance_id(i), project_id(i % shape.projects)
        units = ["none", "user", "cp", "record_user"]
        rng.shuffle(units)
        for u in units:
            if u != "cp":
                run(u, iid, pid)
                continue
            run("cp_new", iid, pid)
            run("cp_repeat", iid, pid)
        if j % 1000 == 999:
            print(f"  {name}: writes {j + 1}/{n}", flush=True)

    def cleanup(conn: Connection) -> int:
        return int(conn.execute(event_table.delete().where(event_table.c.seq > before)).rowcount)

    removed = store.tx_sync(cleanup)
    print(f"  {name}: coalescing lookup plan:\n    " + res.lookup_plan.replace("\n", "\n    "))
    base = pct(res.times["none"], 0.5)
    print(
        f"  {name}: write cost (median, vs none {base * 1e6:.0f} us): "
        + ", ".join(
            f"{v} +{(pct(res.times[v], 0.5) - base) * 1e6:.0f} us" for v in VARIANTS if v != "none"
        )
        + f"; removed {removed} bench events",
        flush=True,
    )
    return res


# -- 3. failure -> event -> running -----------------------------------------------------------


@dataclass
class FailureResult:
    store: str
    interval: float
    crash_request: list[float] = field(default_factory=list)
    to_failed_poll: list[float] = field(default_factory=list)
    to_running_poll: list[float] = field(default_factory=list)
    to_failed_sse: list[float] = field(default_factory=list)
    to_running_sse: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class StreamReader(threading.Thread):
    """Reads an instance's SSE stream; notes when each kind of event first arrives."""

    def __init__(self, proc: ServerProcess, path: str, project: str, deadline: float) -> None:
        super().__init__(daemon=True)
        self.proc, self.path, self.project, self.deadline = proc, path, project, deadline
        self.opened = threading.Event()
        self.arrived: dict[str, float] = {}
        self.error: str | None = None

    def run(self) -> None:
        try:
            timeout = httpx.Timeout(10.0, connect=5.0)
            with (
                self.proc.client(timeout=timeout) as client,
                client.stream("GET", self.path, params={"project": self.project}) as r,
            ):
                if r.status_code != 200:
                    self.error = f"stream: HTTP {r.status_code}"
                    return
                for line in r.iter_lines():
                    t = time.perf_counter()
                    if line.startswith("retry:"):
                        self.opened.set()
                    elif line.startswith("data:"):
                        kind = json.loads(line[5:])["kind"]
                        self.arrived.setdefault(kind, t)
                        if kind == str(Kind.RUNNING):
                            return
                    if time.monotonic() > self.deadline:
                        self.error = "stream: deadline"
                        return
        except Exception as exc:
            self.error = f"stream: {type(exc).__name__}: {exc}"
        finally:
            self.opened.set()


def _failed_marks(client: httpx.Client, name: str, project: str) -> set[tuple[str, int]]:
    r = client.get(f"/v1/instances/{name}/events", params={"project": project, "limit": 10})
    r.raise_for_status()
    return {(e["id"], e["count"]) for e in r.json()["items"] if e["kind"] == str(Kind.FAILED)}


def _seconds_until(pred: Callable[[], bool], t0: float, deadline: float) -> float:
    """Seconds from ``t0`` (``perf_counter``) until ``pred`` holds, polled every 5 ms; NaN if
    it did not before ``deadline`` (``monotonic``)."""
    while time.monotonic() < deadline:
        if pred():
            return time.perf_counter() - t0
        time.sleep(0.005)
    return math.nan


def measure_failures(kind: str, interval: float, args: argparse.Namespace) -> FailureResult:
    res = FailureResult(kind, interval)
    serve = ["--sim-start-delay", str(args.start_delay), "--auto-restart-cooldown", "0"]
    serve += ["--auto-restart-interval", str(interval), "--stream-heartbeat", "1"]
    project, bound = "fail", interval + 30.0
    phase = random.Random(f"{args.seed}/failures/{kind}/{interval}")
    with (
        server(kind, args.pg_admin, serve) as proc,
        proc.client(timeout=60.0) as client,
    ):
        create_project(proc.url, project, headers=proc.headers)
        names = [f"vm-{j:03d}" for j in range(args.failures)]
        bodies: list[Body] = [
            {"name": n, "description": "", "hostname": n, "ncpus": 1, "memory": GiB, "start": True}
            for n in names
        ]
        create_all([proc.url], bodies, Clients(project, 1, headers=proc.headers))
        for nm in names:
            # The live stream is open while the same crash is also followed by polling.
            path = f"/v1/instances/{nm}/events/stream"
            reader = StreamReader(proc, path, project, time.monotonic() + bound + 10)
            reader.start()
            if not reader.opened.wait(10) or reader.error:
                res.errors.append(f"{nm}: {reader.error or 'stream did not open'}")
            seen = _failed_marks(client, nm, project)
            # A random point of the auto-restart task's cycle, as a real failure would.
            time.sleep(0.05 + phase.uniform(0.0, min(interval, 10.0)))
            t0 = time.perf_counter()
            r = client.post(f"/v1/system/sim/instances/{nm}/crash", params={"project": project})
            res.crash_request.append(time.perf_counter() - t0)
            if r.status_code != 204:
                res.errors.append(f"crash {nm}: HTTP {r.status_code}")
                reader.join(bound + 15)
                continue
            deadline = time.monotonic() + bound

            def running(nm: str = nm) -> bool:
                r = client.get(f"/v1/instances/{nm}", params={"project": project})
                return r.status_code == 200 and r.json()["run_state"] == "running"

            def failed(nm: str = nm, seen: set[tuple[str, int]] = seen) -> bool:
                return bool(_failed_marks(client, nm, project) - seen)

            t_failed = _seconds_until(failed, t0, deadline)
            t_running = _seconds_until(running, t0, deadline)
            if math.isnan(t_failed) or math.isnan(t_running):
                res.errors.append(f"{nm}: not failed/running again within {bound:.0f} s")
            else:
                res.to_failed_poll.append(t_failed)
                res.to_running_poll.append(t_running)
            reader.join(bound + 15)
            a, b = reader.arrived.get(str(Kind.FAILED)), reader.arrived.get(str(Kind.RUNNING))
            if a is None or b is None:
                res.errors.append(f"{nm}: {reader.error or 'events missing on the stream'}")
                continue
            res.to_failed_sse.append(a - t0)
            res.to_running_sse.append(b - t0)
    print(
        f"  {kind} (interval {interval} s): to failed p50 {ms(pct(res.to_failed_poll, 0.5))} "
        f"ms (poll) / {ms(pct(res.to_failed_sse, 0.5))} ms (stream); to running p50 "
        f"{ms(pct(res.to_running_poll, 0.5), 0)} ms / {ms(pct(res.to_running_sse, 0.5), 0)} ms"
        f"; errors {len(res.errors)}",
        flush=True,
    )
    print_failures(res.errors)
    return res


# -- report -----------------------------------------------------------------------------------


def machine(args: argparse.Namespace) -> list[tuple[str, str]]:
    settings = ("server_version", "shared_buffers", "work_mem", "effective_cache_size")
    postgres = pg_show(args.pg_admin, *settings) if "postgres" in args.stores else None
    return machine_rows(
        [("SQLAlchemy", sa.__version__)],
        postgres=postgres,
        loads=LOAD,
        shared="its CPUs and PostgreSQL",
    )


def settings(args: argparse.Namespace, shape: Shape) -> list[tuple[str, str]]:
    return [
        (
            "events / instances / projects",
            f"{shape.events:,} / {shape.instances:,} / {shape.projects:,}",
        ),
        ("page size", str(LIMIT)),
        ("queries per row (in-process)", f"{args.queries:,}, budget {args.query_budget:g} s"),
        ("HTTP requests", f"{args.http_requests:,}"),
        (
            "write iterations per variant",
            f"up to {args.write_iterations:,}, budget {args.write_budget:g} s per store",
        ),
        ("failures per series", str(args.failures)),
        ("auto-restart intervals", ", ".join(f"{x:g} s" for x in args.restart_intervals)),
        ("`--sim-start-delay`", f"{args.start_delay:g} s"),
        ("random seed", str(args.seed)),
    ]


def _plan_line(plan: str) -> str:
    """The plan's first lines, for a table cell."""
    skip = ("Planning", "Execution", "Buffers", "JIT", "Functions", "Options", "Timing", "Trigger")
    lines = [
        ln.strip() for ln in plan.splitlines() if ln.strip() and not ln.strip().startswith(skip)
    ]
    text = re.sub(r"\(actual time=[^)]*\)", "", "; ".join(lines[:3]))
    text = re.sub(r"\s+", " ", text).replace("|", "/")
    return text[:160] + ("..." if len(text) > 160 else "")


def _removed(plan: str) -> str:
    m = re.search(r"Rows Removed by Filter: (\d+)", plan)
    return f"{int(m.group(1)):,}" if m else "0"


def _added_us(w: WriteResult, variant: str) -> float:
    return (pct(w.times[variant], 0.5) - pct(w.times["none"], 0.5)) * 1e6


class _Timed(Protocol):
    times: list[float]


# p50, p99 and max of a result's ``times``, in ms: columns of several tables.
TIMES_MS: tuple[tuple[str, str, Callable[[_Timed], object]], ...] = (
    ("p50 (ms)", "r", lambda r: ms(pct(r.times, 0.5))),
    ("p99 (ms)", "r", lambda r: ms(pct(r.times, 0.99))),
    ("max (ms)", "r", lambda r: ms(top(r.times))),
)


def _load_table(loads: list[Loaded]) -> list[str]:
    return columns(
        loads,
        ("store", "l", lambda ld: ld.store),
        ("load (s)", "r", lambda ld: f"{ld.load_seconds:.0f}"),
        ("index build (s)", "r", lambda ld: f"{ld.index_seconds:.0f}"),
        ("size on disk (GiB)", "r", lambda ld: f"{ld.size_bytes / GiB:.2f}"),
        ("schema revision", "l", lambda ld: ld.revision),
    )


def _pages_table(pages: list[PageResult]) -> list[str]:
    def plan(pr: PageResult) -> str:
        removed = f" (rows removed by filter: {_removed(pr.plan)})"
        return _plan_line(pr.plan) + (removed if pr.store == "postgres" else "")

    out = columns(
        pages,
        ("query (first page, 100 newest)", "l", lambda pr: pr.query.name),
        ("API", "l", lambda pr: f"`{pr.query.api}`"),
        ("store", "l", lambda pr: pr.store),
        ("n", "r", lambda pr: f"{len(pr.times):,}{'*' if pr.budget_hit else ''}"),
        *TIMES_MS,
        ("page cache (GiB)", "r", lambda pr: f"{pr.cached_gib:.1f}"),
        ("plan", "l", plan),
    )
    if any(p.budget_hit for p in pages):
        out += ["", "\\* stopped by the time budget before the full count."]
    return out


def _http_table(https: list[HttpResult]) -> list[str]:
    return columns(
        https,
        ("store", "l", lambda h: h.store),
        ("n", "r", lambda h: f"{len(h.times):,}"),
        ("errors", "r", lambda h: h.errors),
        *TIMES_MS,
        ("first request after start (ms)", "r", lambda h: ms(h.first, 0)),
        ("server start (s)", "r", lambda h: f"{h.start_seconds:.1f}"),
    )


def _retention_table(args: argparse.Namespace, retention: list[RetentionResult]) -> list[str]:
    def outcome(rr: RetentionResult) -> str:
        if rr.removed is None:
            return f"did not finish within {args.retention_timeout:g} s"
        return f"{rr.removed:,} rows would go"

    return columns(
        retention,
        ("store", "l", lambda rr: rr.store),
        ("cutoff", "l", lambda rr: rr.label),
        ("keep", "r", lambda rr: rr.keep),
        ("time (s)", "r", lambda rr: f"{rr.seconds:.1f}"),
        ("batches", "r", lambda rr: rr.batches),
        ("longest batch (ms)", "r", lambda rr: ms(rr.longest_batch, 0)),
        ("outcome", "l", outcome),
        ("page cache (GiB)", "r", lambda rr: f"{rr.cached_gib:.1f}"),
        ("plan", "l", lambda rr: _plan_line(rr.plan.replace(chr(10), "; "))[:160]),
    )


STEP_EVENTS = (  # lifecycle step, events it writes: by the user, by the control plane
    ("create with `start: true`", 1, 3),
    ("start", 3, 0),
    ("stop", 2, 0),
    ("reboot", 1, 0),
    ("VMM failure and automatic restart", 0, 5),
)


def _writes_table(writes: list[WriteResult]) -> list[str]:
    def added(w: WriteResult, v: str) -> str:
        return "" if v == "none" else f"{_added_us(w, v):.0f}"

    return columns(
        [(w, v, w.times[v]) for w in writes for v in VARIANTS],
        ("store", "l", lambda r: r[0].store),
        ("variant", "l", lambda r: VARIANT_TEXT[r[1]]),
        ("n", "r", lambda r: f"{len(r[2]):,}"),
        ("p50 (ms)", "r", lambda r: ms(pct(r[2], 0.5), 3)),
        ("p99 (ms)", "r", lambda r: ms(pct(r[2], 0.99), 3)),
        ("mean (ms)", "r", lambda r: ms(sum(r[2]) / len(r[2]), 3)),
        ("added, median (us)", "r", lambda r: added(r[0], r[1])),
    )


def _steps_table(writes: list[WriteResult]) -> list[str]:
    """Per lifecycle step, the sum of its events' measured added medians (an estimate)."""
    return table(
        ["step", "events (user + control plane)", *(f"added, {w.store} (ms)" for w in writes)],
        "ll" + "r" * len(writes),
        [
            [
                label,
                f"{nu} + {nc}",
                *(
                    f"{(nu * _added_us(w, 'user') + nc * _added_us(w, 'cp_new')) / 1e3:.1f}"
                    for w in writes
                ),
            ]
            for label, nu, nc in STEP_EVENTS
        ],
    )


def _failures_table(failures: list[FailureResult]) -> list[str]:
    def pair(times: list[float], digits: int) -> str:
        return f"{ms(pct(times, 0.5), digits)} / {ms(pct(times, 0.99), digits)}"

    return columns(
        failures,
        ("store", "l", lambda f: f.store),
        ("I (s)", "r", lambda f: f"{f.interval:g}"),
        ("n (poll / stream)", "r", lambda f: f"{len(f.to_failed_poll)} / {len(f.to_failed_sse)}"),
        ("crash request p50 (ms)", "r", lambda f: ms(pct(f.crash_request, 0.5), 1)),
        ("(a) poll p50 / p99 (ms)", "r", lambda f: pair(f.to_failed_poll, 1)),
        ("(a) stream p50 / p99 (ms)", "r", lambda f: pair(f.to_failed_sse, 1)),
        ("(b) poll p50 / p99 (ms)", "r", lambda f: pair(f.to_running_poll, 0)),
        ("(b) stream p50 / p99 (ms)", "r", lambda f: pair(f.to_running_sse, 0)),
        ("errors", "r", lambda f: len(f.errors)),
    )


def _plans(r: Results) -> list[str]:
    out: list[str] = []
    for pr in r.pages:
        out += details(f"{pr.store}: {pr.query.name}", pr.plan)
    for w in r.writes:
        what = "coalescing lookup of a control-plane event (`store.events._repeat_of`)"
        out += details(f"{w.store}: {what}", w.lookup_plan)
    for rr in r.retention:
        out += details(f"{rr.store}: retention ({rr.label})", rr.plan)
    return out


def section(args: argparse.Namespace, r: Results) -> dict[str, list[str]]:
    """The marked blocks of the "## Events" section; a part not run leaves its blocks as
    they are."""
    shape = Shape(args.events, args.instances, args.projects, args.span_days)
    parts = {
        "events:load": (r.loads, lambda: _load_table(r.loads)),
        "events:pages": (r.pages, lambda: _pages_table(r.pages)),
        "events:http": (r.https, lambda: _http_table(r.https)),
        "events:retention": (r.retention, lambda: _retention_table(args, r.retention)),
        "events:writes": (r.writes, lambda: _writes_table(r.writes)),
        "events:steps": (r.writes, lambda: _steps_table(r.writes)),
        "events:failures": (r.failures, lambda: _failures_table(r.failures)),
        "events:plans": (r.pages or r.writes or r.retention, lambda: _plans(r)),
    }
    blocks = {"events:measured": [measured("events.py")]}
    blocks |= {name: make() for name, (ran, make) in parts.items() if ran}
    blocks["events:setup"] = setup_tables(machine(args), settings(args, shape))
    return blocks


# -- main -------------------------------------------------------------------------------------


@dataclass
class Results:
    loads: list[Loaded] = field(default_factory=list)
    pages: list[PageResult] = field(default_factory=list)
    retention: list[RetentionResult] = field(default_factory=list)
    https: list[HttpResult] = field(default_factory=list)
    writes: list[WriteResult] = field(default_factory=list)
    failures: list[FailureResult] = field(default_factory=list)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--events", type=int, default=10_000_000, help="events stored (10,000,000)")
    p.add_argument("--instances", type=int, default=100_000, help="instances (100,000)")
    p.add_argument("--projects", type=int, default=100, help="projects (100)")
    p.add_argument("--span-days", type=float, default=20.0, help="history span (20 days)")
    p.add_argument("--parts", default="read,http,write,failure", help="read,http,write,failure")
    p.add_argument("--queries", type=int, default=2000, help="timed queries per row (2,000)")
    p.add_argument("--query-budget", type=float, default=10.0, help="seconds per row (10)")
    p.add_argument("--http-requests", type=int, default=1000)
    p.add_argument("--write-iterations", type=int, default=2000)
    p.add_argument("--write-budget", type=float, default=60.0, help="seconds per store (60)")
    p.add_argument("--failures", type=int, default=20, help="crashes per series (20)")
    p.add_argument("--restart-intervals", default="5,0.1", help="--auto-restart-interval values")
    p.add_argument("--start-delay", type=float, default=0.05, help="--sim-start-delay (s)")
    p.add_argument("--retention-timeout", type=float, default=45.0)
    workdir = str(Path(tempfile.gettempdir()) / "skylight-bench-events")
    p.add_argument("--workdir", default=workdir, help="where SQLite stores and server data go")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-cold", dest="cold", action="store_false", help="no page cache eviction")
    args = p.parse_args(argv)
    if args.events < 4 * args.instances or args.instances < 1 or args.projects < 1:
        p.error("--events must be at least 4 x --instances, and both at least 1")
    if args.events >= 2**48 or args.queries < 1 or args.failures < 1:
        p.error("--events below 2**48; --queries and --failures at least 1")
    args.restart_intervals = [float(x) for x in args.restart_intervals.split(",") if x.strip()]
    args.parts = {s.strip() for s in args.parts.split(",") if s.strip()}
    return args


def measure_loaded(kind: str, args: argparse.Namespace, shape: Shape, r: Results) -> None:
    """Parts 1 and 2 on one loaded store."""
    ld = prepare(kind, args, shape)
    r.loads.append(ld)
    try:
        store = Store(ld.url)
        try:
            if "read" in args.parts:
                r.pages += measure_pages(store, kind, args, ld.url)
                for label, age, keep in RETENTION_CASES:
                    cutoff = now() - age
                    r.retention.append(
                        measure_retention(store, kind, label, cutoff, keep, args.retention_timeout)
                    )
            if "write" in args.parts:
                r.writes.append(measure_writes(store, kind, shape, args))
        finally:
            store.dispose()
        if "http" in args.parts:
            r.https.append(measure_http(ld, args, Path(args.workdir)))
    finally:
        ld.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    LOAD.append(loadavg())
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    shape = Shape(args.events, args.instances, args.projects, args.span_days)
    r = Results()
    for kind in args.stores if args.parts & {"read", "http", "write"} else []:
        t_store = time.time()
        measure_loaded(kind, args, shape, r)
        print(f"{kind}: done in {time.time() - t_store:.0f} s", flush=True)
    for kind in args.stores if "failure" in args.parts else []:
        r.failures += [
            measure_failures(kind, interval, args) for interval in args.restart_intervals
        ]
    with contextlib.suppress(OSError):
        work.rmdir()  # only if this run left it empty
    LOAD.append(loadavg())
    finish(section(args, r), args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
