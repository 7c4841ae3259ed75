"""The synthetic event history of ``bench/events.py``: deterministic ids, each instance's
lifecycle as a table of steps, and loading millions of events into a store in SQL (SQLite,
PostgreSQL)."""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from harness import GiB, bulk_write, scratch_database, stored_time
from skylight.events import reasons
from skylight.events.kinds import Kind, control_plane, severity_of
from skylight.operations.bootstrap import Recovery, ensure_recovery
from skylight.store import Store, migrate
from skylight.store.schema import silo
from skylight.testing.server import ADMIN_PASSWORD

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


# -- loading ---------------------------------------------------------------------------------


def _events_sql(shape: Shape, pg: bool) -> str:
    """The INSERT ... SELECT of events ``lo``..``hi`` (parameters, with ``t0`` and ``dt``):
    a row per ``n`` (SQLite: a recursive CTE; PostgreSQL: ``generate_series``), its step
    joined from ``bench_step``."""
    n_i, n_p = shape.instances, shape.projects

    def param(name: str) -> str:
        return f"%({name})s" if pg else f":{name}"

    def hex_(expr: str, width: int = 12) -> str:
        return f"lpad(to_hex({expr}), {width}, '0')" if pg else f"printf('%0{width}x', {expr})"

    if pg:
        series = f"generate_series({param('lo')}::bigint, {param('hi')}::bigint) AS n"
        when = f"to_timestamp({param('t0')} + r.n * {param('dt')})"
    else:
        series = (
            f"(WITH RECURSIVE g(n) AS (SELECT {param('lo')} UNION ALL SELECT n + 1 FROM g "
            f"WHERE n < {param('hi')}) SELECT n FROM g) AS g"
        )
        when = (
            f"strftime('%Y-%m-%d %H:%M:%f', {param('t0')} + r.n * {param('dt')}, 'unixepoch')"
            " || '000'"
        )
    user = f"'01900004-0000-7000-8000-' || {hex_(f'g.i % {n_p}')}"
    sql = (
        "INSERT INTO instance_event (id, instance_id, project_id, time, time_last, count, "
        "kind, severity, actor, operation_id, run_state, reason_code, reason, detail) "
        f"SELECT '01900002-0000-7000-8000-' || {hex_('g.n')}, "
        f"'01900001-0000-7000-8000-' || {hex_('g.i')}, "
        f"'01900000-0000-7000-8000-' || {hex_(f'g.i % {n_p}')}, g.t, g.t, 1, s.kind, "
        f's.severity, CASE WHEN s.cause IS NULL THEN (\'{{"type": "user", "id": "\' || '
        f"{user} || '\"}}'){'::json' if pg else ''} ELSE s.actor END, "
        f"CASE WHEN s.op IS NULL THEN NULL ELSE {hex_('g.cyc * 10 + s.op', 8)} || "
        f"'-0003-7000-8000-' || {hex_('g.i')} END, "
        "s.run_state, s.reason_code, s.reason, s.detail "
        f"FROM (SELECT r.n, r.i, {_step_sql('r.k', 'r.i', n_p)} AS st, "
        f"CASE WHEN r.k < 4 THEN 0 ELSE (r.k - 4) / {CYCLE} + 1 END AS cyc, {when} AS t "
        f"FROM (SELECT n, (n - 1) % {n_i} AS i, (n - 1) / {n_i} AS k FROM {series}) r) g "
        "JOIN bench_step s ON s.st = g.st ORDER BY g.n"
    )
    return sql.replace(" % ", " %% ") if pg else sql


PARENT_COLUMNS = {
    "project": "id, silo_id, name, description, time_created, time_modified",
    "instance": "id, project_id, name, description, hostname, ncpus, memory, "
    "enable_jumbo_frames, user_data, state, intended_state, generation, time_created, "
    "time_modified, time_run_state_updated, auto_restart_attempts",
}


def _parents(conn: Any, shape: Shape, t0: float, pg: bool, silo_id: str) -> None:
    """The ``project`` (of silo ``silo_id``) and ``instance`` rows the events belong to
    (``t0``: every time); COPY on PostgreSQL."""
    t = stored_time(datetime.fromtimestamp(t0, UTC), not pg)
    rest = (2, 4 * GiB, False, "", "no_vmm", "stopped", 1, t, t, t, 0)
    rows: dict[str, list[tuple[object, ...]]] = {
        "project": [
            (project_id(p), silo_id, f"proj-{p:05d}", "", t, t) for p in range(shape.projects)
        ],
        "instance": [
            (instance_id(i), project_id(i % shape.projects), name, "", name, *rest)
            for i in range(shape.instances)
            for name in [f"inst-{i:06d}"]
        ],
    }
    for name, values in rows.items():
        bulk_write(conn, not pg, name, PARENT_COLUMNS[name], values)


def _recovery_silo(store: Store) -> str:
    """What a server's first start makes on an empty store: the recovery silo and its admin
    (``skylight.testing``'s password), whom the benchmarks sign in as; the silo's id. The
    loaded projects are in it, so that its admin reads their events over HTTP."""
    # data_dir is only where a generated password would go: this one is given.
    recovery = Recovery("recovery", "admin", ADMIN_PASSWORD, data_dir=Path("."))
    store.tx_sync(lambda c: ensure_recovery(c, recovery))
    q = sa.select(silo.c.id).where(silo.c.name == recovery.silo_name)
    return str(store.tx_sync(lambda c: c.execute(q).scalar_one()))


def load(url: str, shape: Shape) -> tuple[float, float]:
    """Migrate and fill a new store in SQL, ``CHUNK`` events per transaction, the secondary
    indexes dropped during the load and rebuilt from their own definitions; returns
    (load s, index s)."""
    store = Store(url)
    migrate.upgrade(store.engine)
    silo_id = _recovery_silo(store)
    store.dispose()
    pg = not url.startswith("sqlite")
    kind = "postgres" if pg else "sqlite"
    if pg:
        import psycopg

        conn: Any = psycopg.connect(url)
        setup = ["SET synchronous_commit = off", "SET maintenance_work_mem = '1GB'"]
        list_indexes = (
            "SELECT i.indexname, i.indexdef FROM pg_indexes i "
            "WHERE i.tablename = 'instance_event' AND NOT EXISTS ("
            "SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        )
    else:
        conn = sqlite3.connect(url.split("///", 1)[1])
        # During the load only: no journal, no syncs (the store's own connections use WAL).
        setup = ["PRAGMA journal_mode=OFF", "PRAGMA synchronous=OFF"]
        setup += ["PRAGMA cache_size=-1000000", "PRAGMA temp_store=MEMORY"]
        list_indexes = (
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
            "AND tbl_name = 'instance_event' AND sql IS NOT NULL"
        )
    try:
        for sql in setup:
            conn.execute(sql)
        indexes = conn.execute(list_indexes).fetchall()
        for name, _ddl in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        js = "json" if pg else "text"
        conn.execute(
            "CREATE TEMP TABLE bench_step (st integer PRIMARY KEY, kind text, severity text, "
            f"run_state text, cause text, actor {js}, reason_code text, reason {js}, "
            f"detail {js}, op integer)"
        )
        marks = ",".join(["%s" if pg else "?"] * 10)
        conn.cursor().executemany(f"INSERT INTO bench_step VALUES ({marks})", _step_rows())
        conn.commit()
        t_load = time.time()
        span = shape.span_days * 86400.0
        t0 = t_load - span
        dt = span / shape.events
        _parents(conn, shape, t0, pg, silo_id)
        conn.commit()
        sql = _events_sql(shape, pg)
        for lo in range(1, shape.events + 1, CHUNK):
            hi = min(shape.events, lo + CHUNK - 1)
            conn.execute(sql, {"lo": lo, "hi": hi, "t0": t0, "dt": dt})
            conn.commit()
            print(f"  {kind}: {hi:,} events ({time.time() - t_load:.0f} s)", flush=True)
        load_s = time.time() - t_load
        t_idx = time.time()
        for _name, ddl in indexes:
            conn.execute(ddl)
        conn.commit()
        index_s = time.time() - t_idx
        if not pg:
            conn.execute("DROP TABLE bench_step")
            conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    if pg:
        # Autovacuum would do this soon after such a load; done here so it does not run
        # under the measurements (and so the planner has statistics).
        with psycopg.connect(url, autocommit=True) as vac:
            t_vac = time.time()
            for table in ("instance_event", "instance", "project"):
                vac.execute(f"VACUUM (ANALYZE) {table}")
            print(f"  postgres: vacuum analyze {time.time() - t_vac:.0f} s", flush=True)
    return load_s, index_s


def prepare(kind: str, args: argparse.Namespace, shape: Shape) -> Loaded:
    """A fresh store of ``kind`` loaded with ``shape``'s history; ``cleanup`` drops it."""
    drop = contextlib.ExitStack()
    if kind == "sqlite":
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        d = Path(tempfile.mkdtemp(prefix="sqlite-", dir=args.workdir))
        drop.callback(shutil.rmtree, d, ignore_errors=True)
        url, where = f"sqlite:///{d / 'skylight.db'}", str(d / "skylight.db")
    else:
        url = drop.enter_context(scratch_database(args.pg_admin, "skylight_bench_ev"))
        where = url.rsplit("/", 1)[1]
    print(f"{kind}: loading {shape.events:,} events into {where} ...", flush=True)
    try:
        load_s, index_s = load(url, shape)
        store = Store(url)
        sql = "SELECT version_num FROM alembic_version"
        revision = str(store.tx_sync(lambda c: c.exec_driver_sql(sql).scalar()))
        store.dispose()
    except BaseException:
        drop.close()
        raise
    return Loaded(kind, url, shape, load_s, index_s, store_size(url), drop.close, revision)
