"""The synthetic event history of ``bench/events.py``: deterministic ids, each instance's
lifecycle as a table of steps, and loading millions of events into a store in SQL (SQLite,
PostgreSQL)."""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import GiB, pg_exec, pg_url
from skylight.events import reasons
from skylight.events.kinds import Kind, control_plane, severity_of
from skylight.store import Store, migrate

CHUNK = 1_000_000  # rows per load transaction

# -- the synthetic history -------------------------------------------------------------------
# Ids are deterministic so the loaded store can be queried without a lookup:
# valid UUID strings (version 7, RFC variant), unique per kind of object.


def project_id(p: int) -> str:
    return f"01900000-0000-7000-8000-{p:012x}"


def instance_id(i: int) -> str:
    return f"01900001-0000-7000-8000-{i:012x}"


def user_id(p: int) -> str:
    return f"01900004-0000-7000-8000-{p:012x}"


def _dumps(value: object) -> str:
    return json.dumps(value)  # SQLAlchemy's JSON type stores json.dumps output


_CAPACITY = reasons.make(
    "insufficient_capacity",
    "No sled has room for the instance (4 vCPUs, 16 GiB): of 8 sleds, 5 lack vCPUs, 3 lack "
    "memory. The closest sled lacks 2 vCPUs. Wait for capacity to free up, stop other "
    "instances, or request fewer vCPUs or less memory.",
    diagnosis={
        "sleds_total": 8,
        "counts": {"in_service": 0, "provisionable": 0, "cpu_platform": 0, "vcpus": 5},
        "shortfall": {"vcpus": 2},
        "fix": "Wait for capacity to free up, stop other instances, or request fewer vCPUs.",
        "sled_groups": [{"checks": ["vcpus"], "count": 5, "sample": [project_id(9)]}],
    },
)
VMM_FAILURE = reasons.make(
    "vmm_failure",
    "The instance's virtual machine stopped unexpectedly.",
    action="The control plane restarts it if its auto-restart policy allows; otherwise start "
    "it again.",
    internal={
        "vmm_id": "01900005-0000-7000-8000-000000000001",
        "sled_id": "01900006-0000-7000-8000-000000000001",
        "detail": "the VMM process exited unexpectedly",
    },
)
_TOO_BIG = reasons.make(
    "exceeds_sled_size",
    "No sled can ever hold the instance (128 vCPUs): every sled has 64 hardware threads.",
)
_NEXT = {"next_attempt": "2026-01-01T00:00:00.000000Z"}

# (kind, run_state, control-plane cause or None for the user, reason, detail, operation slot)
# Steps 0-3: the create with start. Steps 4-23: one cycle, repeated for the rest of the
# instance's history. Steps 24 and 25 replace a cycle step for a few instances (rare kinds).
STEPS: list[tuple[Kind, str, str | None, dict[str, Any] | None, Any, int | None]] = [
    (Kind.CREATED, "stopped", None, None, None, 0),
    (Kind.START_REQUESTED, "stopped", "auto_start", None, None, 1),
    (Kind.PLACED, "stopped", "auto_start", None, None, 1),
    (Kind.RUNNING, "running", "auto_start", None, None, 1),
    # cycle
    (Kind.STOP_REQUESTED, "running", None, None, None, 2),
    (Kind.STOPPED, "stopped", None, None, None, 2),
    (Kind.START_REQUESTED, "stopped", None, None, None, 3),
    (Kind.PLACED, "stopped", None, None, None, 3),
    (Kind.RUNNING, "running", None, None, None, 3),
    (Kind.REBOOTED, "running", None, None, None, 4),
    (Kind.STOP_REQUESTED, "running", None, None, None, 5),
    (Kind.STOPPED, "stopped", None, None, None, 5),
    (Kind.UPDATED, "stopped", None, None, None, 6),
    (Kind.START_REQUESTED, "stopped", None, None, None, 7),
    (Kind.START_FAILED, "stopped", None, _CAPACITY, None, 7),
    (Kind.START_REQUESTED, "stopped", None, None, None, 8),
    (Kind.PLACED, "stopped", None, None, None, 8),
    (Kind.RUNNING, "running", None, None, None, 8),
    (Kind.FAILED, "failed", "vmm_failure", VMM_FAILURE, None, None),
    (Kind.AUTO_RESTART_SCHEDULED, "failed", "auto_restart", None, _NEXT, None),
    (Kind.START_REQUESTED, "failed", "auto_restart", None, None, 9),
    (Kind.PLACED, "failed", "auto_restart", None, None, 9),
    (Kind.RUNNING, "running", "auto_restart", None, None, 9),
    (Kind.REBOOTED, "running", None, None, None, 4),
    # rare
    (Kind.OPERATION_ADOPTED, "running", "saga_adopted", None, None, 4),
    (Kind.AUTO_RESTART_GAVE_UP, "failed", "auto_restart", _TOO_BIG, None, 9),
]
CYCLE = 20
ADOPTED_EVERY, ADOPTED_STEP = 101, 5  # runs of 3 instances, 1 run in 101: cycle step 5
GAVE_UP_EVERY, GAVE_UP_STEP = 1001, 19  # runs of 7 instances, 1 run in 1001: cycle step 19
RARE_KIND = str(Kind.AUTO_RESTART_GAVE_UP)
COMMON_KIND = str(Kind.FAILED)
ABSENT_KIND = str(Kind.DELETED)


def _step_sql(k: str, i: str, projects: int) -> str:
    """The STEPS index of an instance's ``k``-th event (SQL; same on both stores). Each
    instance runs its cycle at its own phase (also within a project, whose instances are
    ``i % projects``), so the kinds are mixed along ``seq``; the instances with a rare kind
    come in runs of consecutive ``i``, so they are spread over the projects."""
    c = f"(({k} - 4 + {i} + {i} / {projects}) % {CYCLE})"
    return (
        f"CASE WHEN {k} < 4 THEN {k} "
        f"WHEN ({i} / 3) % {ADOPTED_EVERY} = 1 AND {c} = {ADOPTED_STEP} THEN 24 "
        f"WHEN ({i} / 7) % {GAVE_UP_EVERY} = 3 AND {c} = {GAVE_UP_STEP} THEN 25 "
        f"ELSE 4 + {c} END"
    )


def _step_rows() -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for st, (kind, run_state, cause, reason, detail, op) in enumerate(STEPS):
        rows.append(
            (
                st,
                str(kind),
                severity_of(kind),
                run_state,
                cause,
                _dumps(control_plane(cause)) if cause else None,
                reason["code"] if reason else None,
                _dumps(reason),
                _dumps(detail),
                op,
            )
        )
    return rows


@dataclass
class Shape:
    events: int
    instances: int
    projects: int
    span_days: float


@dataclass
class Loaded:
    store: str
    url: str
    shape: Shape
    load_seconds: float
    index_seconds: float
    size_bytes: int
    t0: float  # unix time of event n=0
    cleanup: Callable[[], None]
    revision: str  # the schema's (alembic) revision


def store_size(url: str) -> int:
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        return sum(f.stat().st_size for f in path.parent.glob(path.name + "*"))
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else 0


def _sqlite_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


# -- loading: SQLite --------------------------------------------------------------------------


def load_sqlite(url: str, shape: Shape) -> tuple[float, float, float]:
    """Migrate and fill a new SQLite store; returns (load s, index s, t0)."""
    path = url.split("///", 1)[1]
    store = Store(url)
    migrate.upgrade(store.engine)
    store.dispose()
    con = sqlite3.connect(path, isolation_level=None)
    try:
        # During the load only: no journal, no syncs (the store's own connections use WAL).
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA cache_size=-1000000")
        con.execute("PRAGMA temp_store=MEMORY")
        indexes = con.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
            "AND tbl_name = 'instance_event' AND sql IS NOT NULL"
        ).fetchall()
        for name, _sql in indexes:
            con.execute(f'DROP INDEX "{name}"')
        con.execute(
            "CREATE TEMP TABLE bench_step (st INTEGER PRIMARY KEY, kind TEXT, severity TEXT, "
            "run_state TEXT, cause TEXT, actor TEXT, reason_code TEXT, reason TEXT, "
            "detail TEXT, op INTEGER)"
        )
        con.executemany("INSERT INTO bench_step VALUES (?,?,?,?,?,?,?,?,?,?)", _step_rows())
        t_load = time.time()
        span = shape.span_days * 86400.0
        t0 = t_load - span
        dt = span / shape.events
        con.execute("BEGIN")
        _sqlite_parents(con, shape, t0)
        con.execute("COMMIT")
        n_i, n_p = shape.instances, shape.projects
        step = _step_sql("r.k", "r.i", n_p)
        sql = (
            "WITH RECURSIVE g(n) AS (SELECT :lo UNION ALL SELECT n + 1 FROM g WHERE n < :hi), "
            f"r AS (SELECT n, (n - 1) % {n_i} AS i, (n - 1) / {n_i} AS k FROM g), "
            f"r2 AS (SELECT n, i, k, {step} AS st, "
            f"CASE WHEN k < 4 THEN 0 ELSE (k - 4) / {CYCLE} + 1 END AS cyc, "
            "strftime('%Y-%m-%d %H:%M:%f', :t0 + n * :dt, 'unixepoch') || '000' AS t FROM r) "
            "INSERT INTO instance_event (id, instance_id, project_id, time, time_last, count, "
            "kind, severity, actor, operation_id, run_state, reason_code, reason, detail) "
            "SELECT printf('01900002-0000-7000-8000-%012x', n), "
            "printf('01900001-0000-7000-8000-%012x', i), "
            f"printf('01900000-0000-7000-8000-%012x', i % {n_p}), t, t, 1, "
            "s.kind, s.severity, "
            "CASE WHEN s.cause IS NULL THEN "
            f'printf(\'{{"type": "user", "id": "01900004-0000-7000-8000-%012x"}}\', '
            f"i % {n_p}) ELSE s.actor END, "
            "CASE WHEN s.op IS NULL THEN NULL "
            "ELSE printf('%08x-0003-7000-8000-%012x', cyc * 10 + s.op, i) END, "
            "s.run_state, s.reason_code, s.reason, s.detail "
            "FROM r2 JOIN bench_step s ON s.st = r2.st ORDER BY n"
        )
        for lo in range(1, shape.events + 1, CHUNK):
            hi = min(shape.events, lo + CHUNK - 1)
            con.execute("BEGIN")
            con.execute(sql, {"lo": lo, "hi": hi, "t0": t0, "dt": dt})
            con.execute("COMMIT")
            print(f"  sqlite: {hi:,} events ({time.time() - t_load:.0f} s)", flush=True)
        load_s = time.time() - t_load
        t_idx = time.time()
        for _name, ddl in indexes:
            con.execute(ddl)
        index_s = time.time() - t_idx
        con.execute("DROP TABLE bench_step")
        con.execute("PRAGMA journal_mode=WAL")
        return load_s, index_s, t0
    finally:
        con.close()


PARENT_COLUMNS = {
    "project": "id, name, description, time_created, time_modified",
    "instance": "id, project_id, name, description, hostname, ncpus, memory, "
    "enable_jumbo_frames, user_data, state, intended_state, generation, time_created, "
    "time_modified, time_run_state_updated, auto_restart_attempts",
}


def _parent_rows(shape: Shape, t: object, false: object) -> dict[str, list[tuple[object, ...]]]:
    """The ``project`` and ``instance`` rows the events belong to (``t``: every time)."""
    projects: list[tuple[object, ...]] = [
        (project_id(p), f"proj-{p:05d}", "", t, t) for p in range(shape.projects)
    ]
    rest = (2, 4 * GiB, false, "", "no_vmm", "stopped", 1, t, t, t, 0)
    instances: list[tuple[object, ...]] = [
        (
            instance_id(i),
            project_id(i % shape.projects),
            f"inst-{i:06d}",
            "",
            f"inst-{i:06d}",
            *rest,
        )
        for i in range(shape.instances)
    ]
    return {"project": projects, "instance": instances}


def _sqlite_parents(con: sqlite3.Connection, shape: Shape, t0: float) -> None:
    for name, rows in _parent_rows(shape, _sqlite_time(t0), 0).items():
        marks = ", ".join("?" * len(rows[0]))
        con.executemany(f"INSERT INTO {name} ({PARENT_COLUMNS[name]}) VALUES ({marks})", rows)


# -- loading: PostgreSQL ----------------------------------------------------------------------


def load_pg(url: str, shape: Shape) -> tuple[float, float, float]:
    import psycopg

    store = Store(url)
    migrate.upgrade(store.engine)
    store.dispose()
    with psycopg.connect(url) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '1GB'")
        indexes = conn.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i "
            "WHERE i.tablename = 'instance_event' AND NOT EXISTS ("
            "SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        ).fetchall()
        for name, _ddl in indexes:
            conn.execute(f'DROP INDEX "{name}"')  # type: ignore[arg-type,unused-ignore]
        conn.execute(
            "CREATE TEMP TABLE bench_step (st int PRIMARY KEY, kind text, severity text, "
            "run_state text, cause text, actor json, reason_code text, reason json, "
            "detail json, op int)"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO bench_step VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", _step_rows()
            )
        conn.commit()
        t_load = time.time()
        span = shape.span_days * 86400.0
        t0 = t_load - span
        dt = span / shape.events
        _pg_parents(conn, shape, t0)
        conn.commit()
        n_i, n_p = shape.instances, shape.projects
        step = _step_sql("r.k", "r.i", n_p)

        def hex12(expr: str) -> str:
            return f"lpad(to_hex({expr}), 12, '0')"

        sql = (
            "INSERT INTO instance_event (id, instance_id, project_id, time, time_last, count, "
            "kind, severity, actor, operation_id, run_state, reason_code, reason, detail) "
            f"SELECT '01900002-0000-7000-8000-' || {hex12('g.n')}, "
            f"'01900001-0000-7000-8000-' || {hex12('g.i')}, "
            f"'01900000-0000-7000-8000-' || {hex12(f'g.i % {n_p}')}, "
            "g.t, g.t, 1, s.kind, s.severity, "
            'CASE WHEN s.cause IS NULL THEN (\'{"type": "user", "id": '
            f"\"01900004-0000-7000-8000-' || {hex12(f'g.i % {n_p}')} || '\"}}')::json "
            "ELSE s.actor END, "
            "CASE WHEN s.op IS NULL THEN NULL ELSE "
            "lpad(to_hex(g.cyc * 10 + s.op), 8, '0') || '-0003-7000-8000-' || "
            f"{hex12('g.i')} END, "
            "s.run_state, s.reason_code, s.reason, s.detail "
            f"FROM (SELECT r.n, r.i, {step} AS st, "
            f"CASE WHEN r.k < 4 THEN 0 ELSE (r.k - 4) / {CYCLE} + 1 END AS cyc, "
            "to_timestamp(%(t0)s + r.n * %(dt)s) AS t "
            f"FROM (SELECT n, (n - 1) % {n_i} AS i, (n - 1) / {n_i} AS k "
            "FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS n) r) g "
            "JOIN bench_step s ON s.st = g.st ORDER BY g.n"
        ).replace(" % ", " %% ")
        for lo in range(1, shape.events + 1, CHUNK):
            hi = min(shape.events, lo + CHUNK - 1)
            conn.execute(sql, {"lo": lo, "hi": hi, "t0": t0, "dt": dt})  # type: ignore[arg-type,unused-ignore]
            conn.commit()
            print(f"  postgres: {hi:,} events ({time.time() - t_load:.0f} s)", flush=True)
        load_s = time.time() - t_load
        t_idx = time.time()
        for _name, ddl in indexes:
            conn.execute(ddl)
        conn.commit()
        index_s = time.time() - t_idx
    # Autovacuum would do this soon after such a load; done here so it does not run under
    # the measurements (and so the planner has statistics).
    with psycopg.connect(url, autocommit=True) as conn:
        t_vac = time.time()
        conn.execute("VACUUM (ANALYZE) instance_event")
        conn.execute("VACUUM (ANALYZE) instance")
        conn.execute("VACUUM (ANALYZE) project")
        print(f"  postgres: vacuum analyze {time.time() - t_vac:.0f} s", flush=True)
    return load_s, index_s, t0


def _pg_parents(conn: Any, shape: Shape, t0: float) -> None:
    rows = _parent_rows(shape, datetime.fromtimestamp(t0, UTC), False)
    with conn.cursor() as cur:
        for name, values in rows.items():
            with cur.copy(f"COPY {name} ({PARENT_COLUMNS[name]}) FROM STDIN") as cp:  # type: ignore[arg-type,unused-ignore]
                for row in values:
                    cp.write_row(row)


def prepare(kind: str, args: argparse.Namespace, shape: Shape) -> Loaded:
    """A fresh store of ``kind`` loaded with ``shape``'s history; ``cleanup`` drops it."""
    if kind == "sqlite":
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        d = Path(tempfile.mkdtemp(prefix="sqlite-", dir=args.workdir))
        url, where = f"sqlite:///{d / 'skylight.db'}", str(d / "skylight.db")

        def drop() -> None:
            shutil.rmtree(d, ignore_errors=True)
    else:
        where = f"skylight_bench_ev_{uuid.uuid4().hex[:10]}"
        url = pg_url(args.pg_admin, where)

        def drop() -> None:
            pg_exec(args.pg_admin, f'DROP DATABASE IF EXISTS "{where}" WITH (FORCE)')

        pg_exec(args.pg_admin, f'CREATE DATABASE "{where}"')
    print(f"{kind}: loading {shape.events:,} events into {where} ...", flush=True)
    try:
        load = load_sqlite if kind == "sqlite" else load_pg
        load_s, index_s, t0 = load(url, shape)
        store = Store(url)
        sql = "SELECT version_num FROM alembic_version"
        revision = str(store.tx_sync(lambda c: c.exec_driver_sql(sql).scalar()))
        store.dispose()
    except BaseException:
        drop()
        raise
    return Loaded(kind, url, shape, load_s, index_s, store_size(url), t0, drop, revision)
