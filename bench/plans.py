"""The database's plan for a statement the product runs: the statements are captured as
the product's own code runs them (so a plan is of exactly what ran), then explained."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.store import Store

Params = tuple[object, ...] | dict[str, object] | None


class Capture:
    """Records the statements an engine runs (to EXPLAIN exactly what the product ran)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.seen: list[tuple[str, Params]] = []

    def __enter__(self) -> Capture:
        sa.event.listen(self.engine, "before_cursor_execute", self._on)
        return self

    def __exit__(self, *_exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._on)

    def _on(self, _conn: object, _cur: object, statement: str, params: Params, *_a: object) -> None:
        self.seen.append((statement, params))


def explain(
    store: Store, statement: str, params: Params, *, analyze: bool, settings: tuple[str, ...] = ()
) -> str:
    """The plan of ``statement``, under the transaction-local ``settings`` it ran with."""
    if store.is_sqlite:
        prefix = "EXPLAIN QUERY PLAN "
    else:
        prefix = "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " if analyze else "EXPLAIN "

    def run(conn: Connection) -> list[sa.Row[tuple[object, ...]]]:
        if not store.is_sqlite:
            conn.exec_driver_sql("SET LOCAL statement_timeout = '120s'")
        for setting in settings:
            conn.exec_driver_sql(setting)
        return list(conn.exec_driver_sql(prefix + statement, params or ()))

    rows = store.tx_sync(run)
    if store.is_sqlite:
        return "\n".join(str(r[-1]) for r in rows)
    return "\n".join(str(r[0]) for r in rows)


def plan_or_why(
    store: Store, statement: str, params: Params, *, analyze: bool, settings: tuple[str, ...] = ()
) -> str:
    """:func:`explain`, or why it failed: a plan is a bonus, the timing it goes with stands."""
    try:
        return explain(store, statement, params, analyze=analyze, settings=settings)
    except Exception as exc:
        return f"(EXPLAIN failed: {type(exc).__name__}: {exc})"
