"""The one harness every benchmark shares: statistics, PostgreSQL scratch databases, server
processes, the HTTP clients that create and start instances, and the report: named blocks
of docs/benchmarks.md (tables, and the machine and settings they were measured on) between
markers; the prose around them is the doc's. A benchmark keeps only its scenario and what it
measures."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import sqlalchemy as sa

from skylight.rack_secret import create
from skylight.store.engine import make_engine
from skylight.testing import ServerProcess, SledAgentProcess
from skylight.testing.process import ChildProcess

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
PG_ADMIN = os.environ.get("SKYLIGHT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
GiB = 1024**3
STORES = ("sqlite", "postgres")
Row = tuple[str, str]
Body = dict[str, object]
Headers = Mapping[str, str]  # a signed-in caller's (ServerProcess.headers)
T = TypeVar("T")

# -- statistics --------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (NaN for no values): every figure in the doc uses this one."""
    if not values:
        return math.nan
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def top(values: Sequence[float]) -> float:
    return max(values) if values else math.nan


def num(value: float, digits: int = 0, scale: float = 1.0) -> str:
    """``value * scale`` with ``digits`` decimals, "n/a" for NaN (a missing figure)."""
    return "n/a" if math.isnan(value) else f"{value * scale:.{digits}f}"


def ms(seconds: float, digits: int = 0) -> str:
    return num(seconds, digits, 1e3)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process (Linux /proc); NaN if it cannot be read."""
    if pid is None:
        return math.nan
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return math.nan


def loadavg() -> str:
    return f"{os.getloadavg()[0]:.2f}"


# -- PostgreSQL --------------------------------------------------------------------------------


def pg_url(admin: str, name: str) -> str:
    return f"{admin.rsplit('/', 1)[0]}/{name}"


def pg_exec(admin: str, sql: str) -> None:
    """One statement outside a transaction (CREATE / DROP DATABASE)."""
    import psycopg

    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)  # type: ignore[arg-type,unused-ignore]


def pg_show(admin: str, *settings: str) -> str:
    """``SHOW`` of each setting, or why the server could not be asked (a report still gets
    written)."""
    import psycopg

    try:
        with psycopg.connect(admin, connect_timeout=5) as conn:
            shown = [conn.execute(f"SHOW {s}").fetchone() for s in settings]  # type: ignore[arg-type,unused-ignore]
    except Exception as exc:  # the machine's business
        return f"unavailable ({type(exc).__name__})"
    values = [str(r[0]) if r else "?" for r in shown]
    return (
        values[0]
        if len(values) == 1
        else ", ".join(map(" ".join, zip(settings, values, strict=True)))
    )


def pg_version(admin: str) -> str:
    return pg_show(admin, "server_version")


@contextmanager
def scratch_database(admin: str, prefix: str = "skylight_bench") -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one run (its URL), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    pg_exec(admin, f'CREATE DATABASE "{name}"')
    try:
        yield pg_url(admin, name)
    finally:
        pg_exec(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def stored_time(when: datetime, sqlite: bool) -> object:
    """``when`` as a bulk write must give it: on SQLite, SQLAlchemy's text form of DateTime."""
    return when.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else when


def bulk_write(
    dbapi: Any, sqlite: bool, table: str, columns: str, rows: Iterable[Sequence[object]]
) -> None:
    """``rows`` (values of ``columns``, comma-separated) into ``table`` by the driver's bulk
    path: one executemany on SQLite, COPY on PostgreSQL. The caller's transaction."""
    if sqlite:
        marks = ", ".join("?" for _ in columns.split(","))
        dbapi.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
        return
    with dbapi.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


@contextmanager
def server(
    store: str, admin: str, args: list[str], timeout: float = 60.0
) -> Iterator[ServerProcess]:
    """A running ``skylight serve`` on a fresh store (a SQLite file in a temporary directory,
    or a scratch PostgreSQL database), stopped and removed afterwards."""
    scratch = scratch_database(admin) if store == "postgres" else nullcontext(None)
    with tempfile.TemporaryDirectory(prefix=f"skylight-bench-{store}-") as tmp, scratch as db:
        proc = ServerProcess(Path(tmp) / "data", db=db, args=args)
        try:
            proc.start(timeout=timeout)
            yield proc
        finally:
            proc.stop()


class Startable(Protocol):
    def start(self, timeout: float = 30.0) -> None: ...


def start_all(procs: Sequence[Startable], timeout: float) -> None:
    """Start processes in parallel threads (each ``start`` waits until it answers)."""
    errors: list[BaseException] = []

    def one(p: Startable) -> None:
        try:
            p.start(timeout=timeout)
        except BaseException as exc:  # raised below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(p,), daemon=True) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 30)
    if errors:
        raise errors[0]


def wait_for(what: str, pred: Callable[[], object], timeout: float, interval: float = 0.1) -> None:
    """Poll ``pred`` until it is truthy; a bounded wait that says what it waited for."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True)
class Agents:
    """The HTTP sled agents of a fleet: how many, their size, their VMMs' boot time."""

    count: int
    cpus: int
    memory_gib: int
    boot: float


class Fleet:
    """A fresh PostgreSQL database, replicas (``skylight serve`` with ``flags``) on it and
    HTTP sled agents registered with every replica; all killed and the database dropped on
    exit. ``headers`` sign the recovery admin in (on every replica: they share the store).
    ``rows`` reads the database, as the benchmarks that look behind the API do. With
    ``store="sqlite"``, one replica on a SQLite file in ``root`` (SQLite allows one)."""

    def __init__(
        self,
        root: Path,
        admin: str,
        replicas: int,
        flags: list[str],
        agents: Agents,
        store: str = "postgres",
    ) -> None:
        if store == "sqlite" and replicas != 1:
            raise ValueError("a SQLite store has one replica")
        self.admin, self.root, self.agent_spec, self.store = admin, root, agents, store
        self.dbname = f"skylight_bench_fleet_{uuid.uuid4().hex[:10]}"
        sqlite = (root / "r0" / "skylight.db").resolve()
        self.db = f"sqlite:///{sqlite}" if store == "sqlite" else pg_url(admin, self.dbname)
        # One rack: its replicas and agents share one secret, as a deployment would.
        self.rack_secret = root / "rack-secret"
        self.replicas = [
            ServerProcess(
                root / f"r{i}",
                db=None if store == "sqlite" else self.db,
                args=flags,
                rack_secret_file=self.rack_secret,
            )
            for i in range(replicas)
        ]
        self.agents: list[SledAgentProcess] = []
        self.engine: sa.Engine | None = None
        self.headers: dict[str, str] = {}

    def __enter__(self) -> Fleet:
        if self.store == "postgres":
            pg_exec(self.admin, f'CREATE DATABASE "{self.dbname}"')
        create(self.rack_secret)
        try:
            # The first replica migrates the empty database; the others start together after.
            self.replicas[0].start(timeout=90)
            start_all(self.replicas[1:], timeout=90)
            self.headers = self.replicas[0].headers  # logged in once, while it is up
            spec, urls = self.agent_spec, ",".join(self.urls)
            self.agents = [
                SledAgentProcess(
                    self.root / f"s{i}",
                    urls,
                    rack_secret_file=self.rack_secret,
                    cpus=spec.cpus,
                    memory_gib=spec.memory_gib,
                    start_delay=spec.boot,
                )
                for i in range(spec.count)
            ]
            start_all(self.agents, timeout=60)  # each waits until it has registered
            self.engine = make_engine(self.db)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        for p in [*self.agents, *self.replicas]:
            with contextlib.suppress(Exception):
                p.kill()
        if self.engine is not None:
            self.engine.dispose()
        if self.store == "postgres":
            with contextlib.suppress(Exception):
                pg_exec(self.admin, f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    def rows(self, query: sa.Select[tuple[object, ...]]) -> list[sa.Row[tuple[object, ...]]]:
        assert self.engine is not None
        with self.engine.connect() as c:
            return list(c.execute(query))

    def cpu(self, which: Sequence[ChildProcess]) -> float:
        """CPU seconds the processes ``which`` have used so far."""
        return sum(cpu_seconds(p.proc.pid if p.proc else None) for p in which)


# -- HTTP clients ------------------------------------------------------------------------------


def instance_body(i: int, prefix: str, description: str = "") -> Body:
    """The i-th instance of a start benchmark: 1 or 2 vCPUs, 1 or 2 GiB (alternating)."""
    name = f"{prefix}{i:05d}"
    return {
        "name": name,
        "description": description,
        "hostname": name,
        "ncpus": 1 + i % 2,
        "memory": (1 + (i // 2) % 2) * GiB,
        "start": True,
    }


def create_project(url: str, name: str, description: str = "", *, headers: Headers) -> None:
    r = httpx.post(
        f"{url}/v1/projects",
        json={"name": name, "description": description},
        headers=headers,
        timeout=30,
    )
    r.raise_for_status()


async def wait_running(
    client: httpx.AsyncClient, url: str, name: str, project: str, deadline: float, interval: float
) -> tuple[bool, str]:
    """Poll ``{url}/v1/instances/{name}`` until it is running; (ok, why not). Bounded by
    ``deadline`` (``time.monotonic``); a status reason or a resting state ends it early."""
    last = "?"
    while time.monotonic() < deadline:
        r = await client.get(f"{url}/v1/instances/{name}", params={"project": project})
        if r.status_code == 200:
            body = r.json()
            last = body["run_state"]
            if last == "running":
                return True, ""
            if body.get("status_reason") or last in ("failed", "stopped", "destroyed"):
                return False, f"{last}: {body.get('status_reason')}"
        else:
            last = f"HTTP {r.status_code}"
        await asyncio.sleep(interval)
    return False, f"not running before the deadline (last seen: {last})"


async def _operator_reason(
    client: httpx.AsyncClient, url: str, name: str, project: str, reason: dict[str, str]
) -> str:
    """A failed start's status reason with its operator-only ``internal`` part (the bench
    signs in as the recovery admin, a fleet admin: it is shown operator detail)."""
    short = f"{reason.get('code')}: {reason.get('message')}"
    try:
        r = await client.get(
            f"{url}/v1/instances/{name}/events", params={"project": project, "limit": 20}
        )
        for e in r.json().get("items", []):
            if e.get("id") == reason.get("event_id"):
                return f"{short} (internal: {(e.get('reason') or {}).get('internal')})"
    except (httpx.HTTPError, ValueError):
        pass
    return short


@dataclass
class Starts:
    """Creates with ``start: true``: latency to running of each success, why each failure."""

    n: int
    concurrency: int
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    polled: int = 0  # answers not yet running, polled until they were

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.ok / self.wall if self.wall > 0 else 0.0

    def per_start_ms(self, seconds: float) -> float:
        return seconds / self.ok * 1000 if self.ok else math.nan

    def progress(self, label: str, extra: str = "") -> None:
        """One line on the console, and the first failures."""
        print(
            f"{label}: {self.ok}/{self.n} running, {len(self.failures)} failed, {self.polled} "
            f"polled, {self.wall:.2f}s, {self.rate:.1f} starts/s, p50 "
            f"{ms(pct(self.latencies, 0.5))} ms, p99 {ms(pct(self.latencies, 0.99))} ms{extra}",
            flush=True,
        )
        print_failures(self.failures)


def print_failures(failures: Sequence[str]) -> None:
    for f in failures[:5]:
        print(f"  failure: {f}", file=sys.stderr)


@dataclass(frozen=True)
class Clients:
    """How the bench's clients create: how many at once, how long a start may take, and
    who they are (``headers``: a signed-in caller's, e.g. ``ServerProcess.headers``)."""

    project: str
    concurrency: int
    start_wait: float = 30.0
    poll_interval: float = 0.01
    poll_timeout: float = 60.0
    headers: Headers = field(kw_only=True)


async def _create(
    client: httpx.AsyncClient, url: str, body: Body, how: Clients, into: Starts | None
) -> None:
    name, project = str(body["name"]), how.project
    t0 = time.monotonic()
    try:
        r = await client.post(f"{url}/v1/instances", params={"project": project}, json=body)
    except httpx.HTTPError as exc:
        ok, why = False, f"{type(exc).__name__}: {exc}"
    else:
        ok, why = False, f"HTTP {r.status_code}: {r.text[:300]}"
        if r.status_code == 201:
            inst = r.json()
            ok = inst["run_state"] == "running"
            if inst.get("status_reason"):
                reason = await _operator_reason(client, url, name, project, inst["status_reason"])
                why = f"{inst['run_state']}: {reason}"
            elif not ok:
                if into is not None:
                    into.polled += 1
                deadline = time.monotonic() + how.poll_timeout
                ok, why = await wait_running(
                    client, url, name, project, deadline, how.poll_interval
                )
    if into is None:
        if not ok:
            raise RuntimeError(f"warm-up start failed: {name}: {why}")
    elif ok:
        into.latencies.append(time.monotonic() - t0)
    else:
        into.failures.append(f"{name}: {why}")


def create_all(
    urls: Sequence[str], bodies: Sequence[Body], how: Clients, into: Starts | None = None
) -> float:
    """Create ``bodies`` round-robin over ``urls`` from ``how.concurrency`` clients (one
    ``httpx.AsyncClient`` and a semaphore); the wall time. Without ``into`` (a warm-up) any
    failure raises."""

    async def run() -> None:
        timeout = httpx.Timeout(how.start_wait + 60.0, connect=10.0)
        limits = httpx.Limits(
            max_connections=how.concurrency, max_keepalive_connections=how.concurrency
        )
        async with httpx.AsyncClient(timeout=timeout, limits=limits, headers=how.headers) as client:
            sem = asyncio.Semaphore(how.concurrency)

            async def bounded(i: int, body: Body) -> None:
                async with sem:
                    await _create(client, urls[i % len(urls)], body, how, into)

            await asyncio.gather(*(bounded(i, b) for i, b in enumerate(bodies)))

    t0 = time.monotonic()
    asyncio.run(run())
    wall = time.monotonic() - t0
    if into is not None:
        into.wall = wall
    return wall


# -- the report --------------------------------------------------------------------------------


def table(header: str | Sequence[str], align: str, rows: Iterable[Sequence[object]]) -> list[str]:
    """A markdown table; ``header`` is its cells or them joined by " | "; ``align`` has
    one letter a column: l (---) or r (---:)."""
    header = header.split(" | ") if isinstance(header, str) else header
    rule = " | ".join("---:" if a == "r" else "---" for a in align)
    return [
        f"| {' | '.join(header)} |",
        f"| {rule} |",
        *(f"| {' | '.join(map(str, r))} |" for r in rows),
    ]


def columns(items: Iterable[T], *cols: tuple[str, str, Callable[[T], object]]) -> list[str]:
    """A markdown table, a row per item; each column is (header, alignment l or r, its cell
    for an item), so a header stands next to what fills it."""
    return table(
        [c[0] for c in cols], "".join(c[1] for c in cols), ([f(i) for *_, f in cols] for i in items)
    )


def details(summary: str, body: str) -> list[str]:
    """A collapsed block (a query plan) under the tables."""
    return [
        f"<details><summary>{summary}</summary>",
        "",
        "```",
        body.strip(),
        "```",
        "",
        "</details>",
    ]


def measured(script: str) -> str:
    """When, and the exact command, so that a figure can be reproduced."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cmd = " ".join(["python", f"bench/{script}", *sys.argv[1:]])
    return f"Measured {when} with `{cmd}`."


def marker(name: str, end: str) -> str:
    return f"<!-- bench:{name}:{end} -->"


def write_blocks(blocks: dict[str, list[str]], doc_path: Path = DOC) -> None:
    """Replace what is between each block's markers in the doc (``<!-- bench:NAME:begin -->``
    ... ``<!-- bench:NAME:end -->``); the rest of the doc (its prose) is written by people."""
    doc = doc_path.read_text()
    for name, lines in blocks.items():
        begin, end = marker(name, "begin"), marker(name, "end")
        pattern = re.compile(rf"^{re.escape(begin)}\n.*?^{re.escape(end)}$", re.M | re.S)
        if not pattern.search(doc):
            raise SystemExit(f"{doc_path}: no {begin} ... {end}")
        text = f"{begin}\n\n" + "\n".join(lines).strip("\n") + f"\n\n{end}"
        doc = pattern.sub(text.replace("\\", "\\\\"), doc, count=1)
    doc_path.write_text(doc)


def finish(blocks: dict[str, list[str]], write: bool) -> None:
    """Print the blocks, and with ``--write`` replace them in docs/benchmarks.md."""
    for name, lines in blocks.items():
        print(f"\n{marker(name, 'begin')}\n" + "\n".join(lines))
    if write:
        write_blocks(blocks)
        print(f"wrote {DOC}")


def kv_table(rows: Iterable[Row]) -> list[str]:
    return ["| | |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)]


def setup_tables(machine: Iterable[Row], settings: Iterable[Row]) -> list[str]:
    """The "Machine:" and "Settings:" tables that end every section, so that a figure can be
    read against where and how it was measured."""
    return ["Machine:", "", *kv_table(machine), "", "Settings:", "", *kv_table(settings), ""]


def git(*argv: str) -> str:
    """What ``git argv`` prints in the checkout, stripped; "" if git cannot say."""
    try:
        out = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def git_rev() -> str:
    """The commit measured, marked if tracked files differ from it."""
    rev = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{rev}{' (with uncommitted changes)' if dirty else ''}" if rev else "?"


def _cpu_and_memory() -> tuple[str, str]:
    cpu, mem = platform.processor() or "?", "?"
    try:
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = m.group(1).strip() if m else cpu
        m = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        mem = f"{int(m.group(1)) / 1024**2:.1f} GiB" if m else mem
    except OSError:
        pass
    return cpu, mem


def machine_rows(
    libraries: Sequence[Row] = (),
    *,
    sqlite: bool = True,
    postgres: str | None = None,
    skylight: str | None = None,
    loads: Sequence[str] = (),
    shared: str = "its CPUs",
) -> list[Row]:
    """The "Machine:" rows in the order every section has them: host and Python,
    ``libraries``, SQLite, PostgreSQL (what the server on this machine is, if used),
    Skylight, and the 1-minute load average at the start and end of the run (other work on
    the machine, sharing ``shared`` with the bench, moves the figures)."""
    cpu, mem = _cpu_and_memory()
    rows = [
        ("CPUs (`nproc`)", str(os.cpu_count())),
        ("CPU", cpu),
        ("memory", mem),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        *libraries,
    ]
    rows += [("SQLite", sqlite3.sqlite_version)] if sqlite else []
    rows += [("PostgreSQL", f"{postgres} (same machine, 127.0.0.1)")] if postgres else []
    rows.append(("Skylight", git_rev() if skylight is None else skylight))
    if loads:
        what = " / ".join(loads) + f" (other work on the machine shares {shared} with the bench)"
        rows.append(("load average (1 min), start / end", what))
    return rows


# -- the command line --------------------------------------------------------------------------


def parser(doc: str | None, stores: str | None = "sqlite,postgres") -> argparse.ArgumentParser:
    """The options every benchmark has: ``--write``, ``--pg-admin`` and (unless ``stores``
    is None) ``--stores``, parsed into a list by :func:`store_list`."""
    p = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    p.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    p.add_argument("--pg-admin", default=PG_ADMIN, help="PostgreSQL admin URL")
    if stores is not None:
        p.add_argument("--stores", type=store_list, default=store_list(stores), help=stores)
    return p


def store_list(text: str) -> list[str]:
    stores = [s.strip() for s in text.split(",") if s.strip() and s.strip() != "none"]
    bad = [s for s in stores if s not in STORES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown store {bad[0]!r} (sqlite, postgres, none)")
    return stores
