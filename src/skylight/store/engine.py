"""The store's engine and its one way in: a transaction run on a worker thread.

SQLite is opened in WAL mode and every write transaction begins ``IMMEDIATE``, so a
read-then-write transaction (a sled reservation, say) holds the write lock from its first
statement and two of them can never interleave. On PostgreSQL the same code takes row locks
(``FOR UPDATE``) where it needs them, and retries on serialization failures and deadlocks.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)
T = TypeVar("T")

_RETRYABLE_PG = {"40001", "40P01"}  # serialization_failure, deadlock_detected
_EVENTS_WRITTEN = "skylight.events_written"  # = skylight.store.events.WRITTEN


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return sa.create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _sqlite_engine(url: str) -> Engine:
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


class Store:
    """Owns the engine. Domain code passes it functions of a ``Connection``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.is_sqlite = is_sqlite(self.engine)
        # SQLite serialises writers anyway; doing it here keeps threads off the busy loop.
        self._sqlite_lock = threading.Lock() if self.is_sqlite else None
        self._limiter = anyio.CapacityLimiter(8 if self.is_sqlite else 16)
        self.on_events: list[Callable[[list[str]], None]] = []

    def tx_sync(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in one transaction, retrying when the database says to.

        After a commit that wrote instance events, every ``on_events`` callback is told the
        kinds written (streams wake up, metrics count).
        """
        for attempt in range(8):
            try:
                if self._sqlite_lock is not None:
                    with self._sqlite_lock:
                        result, written = self._once(fn)
                else:
                    result, written = self._once(fn)
                if written:
                    for callback in self.on_events:
                        callback(written)
                return result
            except sa.exc.OperationalError as exc:
                if attempt == 7 or not self._retryable(exc):
                    raise
                time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")

    def _once(self, fn: Callable[[Connection], T]) -> tuple[T, list[str]]:
        with self.engine.begin() as conn:
            try:
                result = fn(conn)
                written = list(conn.info.get(_EVENTS_WRITTEN, ()))
            finally:
                conn.info.pop(_EVENTS_WRITTEN, None)
        return result, written

    async def tx(self, fn: Callable[[Connection], T]) -> T:
        return await anyio.to_thread.run_sync(self.tx_sync, fn, limiter=self._limiter)

    def _retryable(self, exc: sa.exc.OperationalError) -> bool:
        orig = getattr(exc, "orig", None)
        if self.is_sqlite:
            return "locked" in str(orig) or "busy" in str(orig)
        return getattr(orig, "sqlstate", None) in _RETRYABLE_PG

    def dispose(self) -> None:
        self.engine.dispose()
