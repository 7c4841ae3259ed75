"""The store's engine and its one way in: a transaction run on a worker thread.

A store that cannot be reached (refused or dropped connections, a database that does not take
connections, contention that outlasts the retries) raises :class:`StoreUnavailable`, the one
error callers wait out: the API answers it with 503 and ``Retry-After``, sagas retry their step,
background loops try again next interval. The pool recovers by itself: a dropped connection
invalidates the pool, and every checkout pings the server first.

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
# SQLSTATE classes of a server that is going away or cannot take us: connection exception,
# operator intervention (terminated backends, shutdown), insufficient resources.
_UNAVAILABLE_PG_CLASSES = ("08", "57", "53")
_SQLITE_UNAVAILABLE = ("locked", "busy", "disk i/o error", "unable to open database")
_EVENTS_WRITTEN = "skylight.events_written"  # = skylight.store.events.WRITTEN
_AFTER_COMMIT = "skylight.after_commit"
CONNECT_TIMEOUT = 5  # seconds: a server that drops packets fails a checkout, not hangs it


class StoreUnavailable(Exception):
    """The store cannot be reached right now; the same call may succeed later.

    Whether a transaction that raised this committed is unknown (the connection may have
    dropped during COMMIT): callers that retry must be idempotent.
    """


def after_commit(conn: Connection, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the transaction of ``conn`` has committed (never if it rolls
    back), on the caller of :meth:`Store.tx` (the event loop). This is how work that must
    follow a commit, such as launching a saga the transaction created, happens wherever
    that transaction commits instead of in whichever handler happened to ask."""
    conn.info.setdefault(_AFTER_COMMIT, []).append(callback)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return sa.create_engine(
        url,
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
        connect_args={"connect_timeout": CONNECT_TIMEOUT},
    )


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
        kinds written (streams wake up, metrics count). Callbacks registered with
        :func:`after_commit` run here too, after the commit.
        """
        result, after = self._tx_collect(fn)
        for callback in after:
            callback()
        return result

    def _tx_collect(self, fn: Callable[[Connection], T]) -> tuple[T, list[Callable[[], None]]]:
        for attempt in range(8):
            try:
                if self._sqlite_lock is not None:
                    with self._sqlite_lock:
                        result, written, after = self._once(fn)
                else:
                    result, written, after = self._once(fn)
            except sa.exc.OperationalError as exc:
                if attempt < 7 and self._retryable(exc):
                    time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
                    continue
                if self.unavailable(exc):
                    raise StoreUnavailable(_describe(exc)) from exc
                raise
            except (sa.exc.InterfaceError, sa.exc.TimeoutError) as exc:
                raise StoreUnavailable(_describe(exc)) from exc
            except sa.exc.PendingRollbackError as exc:
                # The connection dropped inside the transaction and the code that saw it
                # went on (a savepoint's handler, say): the store, not the statement.
                raise StoreUnavailable(_describe(exc)) from exc
            except sa.exc.DBAPIError as exc:
                if self.unavailable(exc):
                    raise StoreUnavailable(_describe(exc)) from exc
                raise
            if written:
                for callback in self.on_events:
                    callback(written)
            return result, after
        raise AssertionError("unreachable")

    def _once(self, fn: Callable[[Connection], T]) -> tuple[T, list[str], list[Callable[[], None]]]:
        with self.engine.begin() as conn:
            try:
                result = fn(conn)
                written = list(conn.info.get(_EVENTS_WRITTEN, ()))
                after = list(conn.info.get(_AFTER_COMMIT, ()))
            finally:
                conn.info.pop(_EVENTS_WRITTEN, None)
                conn.info.pop(_AFTER_COMMIT, None)
        return result, written, after

    async def tx(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in one transaction on a worker thread; :func:`after_commit` callbacks
        run on the event loop once it has committed."""
        result, after = await anyio.to_thread.run_sync(self._tx_collect, fn, limiter=self._limiter)
        for callback in after:
            callback()
        return result

    def _retryable(self, exc: sa.exc.OperationalError) -> bool:
        orig = getattr(exc, "orig", None)
        if self.is_sqlite:
            return "locked" in str(orig) or "busy" in str(orig)
        return getattr(orig, "sqlstate", None) in _RETRYABLE_PG

    def unavailable(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the store cannot be reached (or is too busy) right now,
        as opposed to a statement that is wrong and will stay wrong."""
        if isinstance(
            exc,
            StoreUnavailable
            | sa.exc.InterfaceError
            | sa.exc.TimeoutError
            | sa.exc.PendingRollbackError,
        ):
            return True
        if not isinstance(exc, sa.exc.DBAPIError):
            return False
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        if self.is_sqlite:
            text = str(orig).lower()
            return any(word in text for word in _SQLITE_UNAVAILABLE)
        if not isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
            return False
        state = getattr(orig, "sqlstate", None)
        # No SQLSTATE: the client failed to connect or lost the connection.
        return state is None or state in _RETRYABLE_PG or state[:2] in _UNAVAILABLE_PG_CLASSES

    def dispose(self) -> None:
        self.engine.dispose()


def _describe(exc: BaseException) -> str:
    """One line on why the store is unavailable, without the statement or its parameters."""
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return f"{type(orig).__name__}: {first[:200]}"
