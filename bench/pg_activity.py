"""What PostgreSQL does while a benchmark runs: the CPU of the backends serving one
database and what they wait for (sampled), committed transactions, and the machine's busy
time, for ``bench/replicas.py``."""

from __future__ import annotations

import math
import os
import threading
from collections import Counter
from pathlib import Path

import psycopg

from harness import cpu_seconds


def _oneline(query: object, width: int) -> str:
    return " ".join(str(query).split())[:width]


class PgBackendCpu:
    """CPU time of the PostgreSQL backends serving one database, sampled from /proc, and
    what they are doing (``pg_stat_activity``), sampled at the same time. Backends come and
    go, so a thread lists them every ``interval`` s and keeps each one's last reading: the
    sum is a lower bound. Server processes (WAL writer, checkpointer) are not counted."""

    def __init__(self, admin: str, dbname: str, interval: float = 0.2) -> None:
        self.admin, self.dbname, self.interval = admin, dbname, interval
        self._base: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self.states: Counter[str] = Counter()  # backend samples in a transaction, by activity
        self.lock_queries: Counter[str] = Counter()  # statements waiting for a lock
        # The event lock (the only advisory lock): who holds it, doing what; "free" if nobody.
        self.event_lock: Counter[str] = Counter()
        self.holder_last: Counter[str] = Counter()  # an idle holder's last statement
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _event_lock(self, conn: psycopg.Connection) -> None:
        rows = conn.execute(
            "SELECT a.state, a.wait_event_type, a.wait_event, a.query FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND a.datname = %s",
            (self.dbname,),
        ).fetchall()
        if not rows:
            self.event_lock["free"] += 1
        for state, wait_type, wait, query in rows:
            if state == "active":
                what = f"{wait_type}: {wait}" if wait_type else "running"
                self.event_lock[f"held; holder executing ({what})"] += 1
            else:
                self.event_lock[f"held; holder {state} (the replica's turn)"] += 1
                self.holder_last[_oneline(query, 60)] += 1

    def _sample(self, conn: psycopg.Connection, first: bool) -> None:
        rows = conn.execute(
            "SELECT pid, state, wait_event_type, wait_event, query FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (self.dbname,),
        ).fetchall()
        if not first:
            self.samples += 1
            self._event_lock(conn)
        for pid, state, wait_type, wait, query in rows:
            cpu = cpu_seconds(int(pid))
            if not math.isnan(cpu):
                self._base.setdefault(pid, cpu if first else 0.0)  # a new backend: all counts
                self._last[pid] = cpu
            if first:
                continue
            if state == "active":
                self.states[f"{wait_type}: {wait}" if wait_type else "running (no wait event)"] += 1
                if wait_type == "Lock":
                    self.lock_queries[f"{wait}: {_oneline(query, 70)}"] += 1
            elif state and state.startswith("idle in transaction"):
                self.states["idle in transaction (the replica's turn)"] += 1

    def __enter__(self) -> PgBackendCpu:
        conn = psycopg.connect(self.admin, autocommit=True, connect_timeout=5)
        self._sample(conn, first=True)

        def run() -> None:
            with conn:
                while not self._stop.wait(self.interval):
                    self._sample(conn, first=False)
                self._sample(conn, first=False)

        self._thread = threading.Thread(target=run, name="pg-cpu", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    @property
    def seconds(self) -> float:
        return sum(max(0.0, self._last[p] - self._base[p]) for p in self._last)


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return math.nan
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def xact_commit(admin: str, dbname: str) -> float:
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (dbname,)
            ).fetchone()
            return float(row[0]) if row else math.nan
    except psycopg.Error:
        return math.nan
