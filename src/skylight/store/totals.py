"""The triggers that keep each sled's reserved totals (``sled.reserved_*``) equal to the sums
of its reservations and pinned local disks.

Placement reads every sled's free capacity on every decision. Aggregating ``sled_reservation``
for it cost 80-90% of a decision through the store (bench/placement.py); a total kept on the
sled row is one row per sled. Triggers, not application code, keep it: every insert, update
and delete of a reservation or a disk moves it in the same transaction, whatever code path
writes the row, so it cannot drift. Installed by migration 0007; ``check`` compares them with
the sums (tests/test_sled_totals.py).

A later migration that rebuilds ``sled_reservation`` or ``disk`` on SQLite (Alembic's batch
mode copies the table) drops their triggers: it must create them again (``SQLITE``).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

# (table, what a row adds to its sled's totals as SQL over the row alias, when it counts)
_RESERVATION = (
    "reserved_hardware_threads = reserved_hardware_threads {op} {r}.hardware_threads, "
    "reserved_memory = reserved_memory {op} {r}.memory, "
    "reserved_local_storage = reserved_local_storage {op} {r}.local_storage"
)
_DISK = "reserved_local_storage = reserved_local_storage {op} {r}.size"


def _update(sets: str, op: str, row: str, extra: str = "") -> str:
    cond = f" AND {row}.time_deleted IS NULL" if extra else ""
    return f"UPDATE sled SET {sets.format(op=op, r=row)} WHERE id = {row}.sled_id{cond};"


SQLITE = [
    "CREATE TRIGGER sled_reservation_added AFTER INSERT ON sled_reservation BEGIN "
    + _update(_RESERVATION, "+", "NEW")
    + " END",
    "CREATE TRIGGER sled_reservation_removed AFTER DELETE ON sled_reservation BEGIN "
    + _update(_RESERVATION, "-", "OLD")
    + " END",
    "CREATE TRIGGER sled_reservation_changed AFTER UPDATE ON sled_reservation BEGIN "
    + _update(_RESERVATION, "-", "OLD")
    + " "
    + _update(_RESERVATION, "+", "NEW")
    + " END",
    "CREATE TRIGGER disk_added AFTER INSERT ON disk BEGIN "
    + _update(_DISK, "+", "NEW", "live")
    + " END",
    "CREATE TRIGGER disk_removed AFTER DELETE ON disk BEGIN "
    + _update(_DISK, "-", "OLD", "live")
    + " END",
    "CREATE TRIGGER disk_changed AFTER UPDATE OF sled_id, size, time_deleted ON disk BEGIN "
    + _update(_DISK, "-", "OLD", "live")
    + " "
    + _update(_DISK, "+", "NEW", "live")
    + " END",
]
SQLITE_DROP = [
    f"DROP TRIGGER IF EXISTS {name}"
    for name in (
        "sled_reservation_added",
        "sled_reservation_removed",
        "sled_reservation_changed",
        "disk_added",
        "disk_removed",
        "disk_changed",
    )
]


def _pg_function(name: str, sets: str, live: str = "") -> str:
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('DELETE', 'UPDATE') THEN
    {_update(sets, "-", "OLD", live)}
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    {_update(sets, "+", "NEW", live)}
  END IF;
  RETURN NULL;
END $$"""


POSTGRESQL = [
    _pg_function("sled_totals_from_reservation", _RESERVATION),
    "CREATE TRIGGER sled_totals AFTER INSERT OR UPDATE OR DELETE ON sled_reservation "
    "FOR EACH ROW EXECUTE FUNCTION sled_totals_from_reservation()",
    _pg_function("sled_totals_from_disk", _DISK, "live"),
    "CREATE TRIGGER sled_totals AFTER INSERT OR DELETE OR UPDATE OF sled_id, size, "
    "time_deleted ON disk FOR EACH ROW EXECUTE FUNCTION sled_totals_from_disk()",
]
POSTGRESQL_DROP = [
    "DROP TRIGGER IF EXISTS sled_totals ON sled_reservation",
    "DROP TRIGGER IF EXISTS sled_totals ON disk",
    "DROP FUNCTION IF EXISTS sled_totals_from_reservation()",
    "DROP FUNCTION IF EXISTS sled_totals_from_disk()",
]

# Each total recomputed from the rows, as SQL over the sled row ``sled`` (the migration's
# backfill; ``check``'s truth).
_SUMS = {
    "reserved_hardware_threads": "COALESCE((SELECT SUM(r.hardware_threads) "
    "FROM sled_reservation r WHERE r.sled_id = sled.id), 0)",
    "reserved_memory": "COALESCE((SELECT SUM(r.memory) "
    "FROM sled_reservation r WHERE r.sled_id = sled.id), 0)",
    "reserved_local_storage": "COALESCE((SELECT SUM(r.local_storage) "
    "FROM sled_reservation r WHERE r.sled_id = sled.id), 0) + COALESCE((SELECT SUM(d.size) "
    "FROM disk d WHERE d.sled_id = sled.id AND d.time_deleted IS NULL), 0)",
}
BACKFILL = "UPDATE sled SET " + ", ".join(f"{col} = {expr}" for col, expr in _SUMS.items())


def check(conn: Connection) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Sleds whose kept totals differ from the sums of their rows: {sled id: (kept, sums)}."""
    q = sa.text(f"SELECT id, {', '.join(_SUMS)}, {', '.join(_SUMS.values())} FROM sled")
    rows = {r[0]: tuple(int(v) for v in r[1:]) for r in conn.execute(q)}
    n = len(_SUMS)
    kept = {s: v[:n] for s, v in rows.items()}
    sums = {s: v[n:] for s, v in rows.items()}
    return {s: (kept[s], sums[s]) for s in sums if kept.get(s) != sums[s]}
