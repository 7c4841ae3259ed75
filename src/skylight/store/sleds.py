"""Sleds and their reservations."""

from __future__ import annotations

import math
import threading
import time

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.clock import now
from skylight.ids import new_id
from skylight.placement import Rack, SledView
from skylight.placement.model import sled_in_service, sled_takes_instances
from skylight.store import Row
from skylight.store.rows import NEVER_MODIFIED, insert_new
from skylight.store.schema import sled, sled_reservation


def get(conn: Connection, sled_id: str) -> Row | None:
    return conn.execute(sa.select(sled).where(sled.c.id == sled_id)).first()


def page(conn: Connection, *, limit: int, after_id: str | None) -> list[Row]:
    q = sa.select(sled).order_by(sled.c.id).limit(limit)
    if after_id is not None:
        q = q.where(sled.c.id > after_id)
    return list(conn.execute(q))


def all_sleds(conn: Connection) -> list[Row]:
    return list(conn.execute(sa.select(sled).order_by(sled.c.id)))


# What placement reads of a sled, in this order (``rack`` takes them as columns), each named
# as SledView names it (``views`` makes one of each row). The reserved totals are kept on the
# sled row by triggers (``store/totals.py``): one row per sled, no aggregation over every
# reservation.
_PLACEMENT_COLUMNS = (
    sled.c.id,
    sled.c.policy,
    sled.c.state,
    sled.c.provision_policy,
    sled.c.time_unreachable.is_(None).label("reachable"),
    sled.c.cpu_family,
    sled.c.usable_hardware_threads.label("cpus"),
    sled.c.usable_physical_ram.label("memory"),
    sled.c.local_storage,
    sled.c.reserved_hardware_threads.label("reserved_cpus"),
    sled.c.reserved_memory,
    sled.c.reserved_local_storage,
)


def _placement_rows(conn: Connection, only: str | None = None) -> list[Row]:
    q = sa.select(*_PLACEMENT_COLUMNS).order_by(sled.c.id)
    if only is not None:
        q = q.where(sled.c.id == only)
    return list(conn.execute(q))


def views(conn: Connection, only: str | None = None) -> list[SledView]:
    """Every sled (or just ``only``) with what is reserved on it, as placement wants it."""
    return [SledView(**r._mapping) for r in _placement_rows(conn, only)]


def rack(conn: Connection) -> Rack:
    """The whole rack as placement's columns, read straight from the sled rows (what
    ``views`` gives, without a SledView per sled: at 10,000 sleds building those cost four
    times the query)."""
    rows = _placement_rows(conn)
    (ids, policy, state, provision, reachable, family, cpus, memory, local, r_cpus, r_mem,
     r_local) = zip(*rows, strict=True) if rows else ((),) * len(_PLACEMENT_COLUMNS)  # fmt: skip
    return Rack.from_columns(
        ids=ids,
        in_service=[sled_in_service(p, s) for p, s in zip(policy, state, strict=True)],
        takes_instances=[
            sled_takes_instances(p, r) for p, r in zip(provision, reachable, strict=True)
        ],
        cpu_family=family,
        cpus=cpus,
        memory=memory,
        local_storage=local,
        reserved_cpus=r_cpus,
        reserved_memory=r_mem,
        reserved_local_storage=r_local,
    )


class RackCache:
    """The rack as a replica last read it, kept between placement decisions for up to
    ``max_age`` seconds (0: read it for every decision).

    Reading every sled row was most of a decision through the store (at 10,000 sleds, 90%
    of 25-45 ms, all of it under SQLite's write lock). A decision made on a stale rack is
    still safe: the chosen sled is locked and re-checked with its fresh totals before
    anything is reserved, and a miss there sends the decision back to a fresh read. Only a
    refusal must not rest on stale figures, so callers decide every failure again on a
    fresh read (``get(conn, fresh=True)``)."""

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self._lock = threading.Lock()
        self._rack: Rack | None = None
        self._read_at = -math.inf  # time.monotonic() when it was read

    def get(self, conn: Connection, *, fresh: bool = False) -> tuple[Rack, bool]:
        """The rack, and whether it was read just now (in ``conn``'s transaction)."""
        with self._lock:
            cached, read_at = self._rack, self._read_at
        if not fresh and cached is not None and time.monotonic() - read_at < self.max_age:
            return cached, False
        started = time.monotonic()
        current = rack(conn)
        with self._lock:
            if started >= self._read_at:  # keep the newest of concurrent reads
                self._rack, self._read_at = current, started
        return current, True


def lock_and_measure(conn: Connection, sled_id: str) -> SledView | None:
    """Lock one sled's row (PostgreSQL) and read its reservations afresh."""
    if conn.dialect.name == "postgresql":
        # NO KEY UPDATE: a new VMM row's foreign key to this sled (KEY SHARE) does not wait.
        conn.execute(
            sa.select(sled.c.id).where(sled.c.id == sled_id).with_for_update(key_share=True)
        )
    found = views(conn, only=sled_id)
    return found[0] if found else None


def reservation(conn: Connection, reservation_id: str) -> Row | None:
    return conn.execute(
        sa.select(sled_reservation).where(sled_reservation.c.id == reservation_id)
    ).first()


def reserve(
    conn: Connection,
    *,
    reservation_id: str,
    sled_id: str,
    instance_id: str,
    cpus: int,
    memory: int,
    local_storage: int = 0,
) -> None:
    insert_new(
        conn,
        sled_reservation,
        NEVER_MODIFIED,
        id=reservation_id,
        sled_id=sled_id,
        instance_id=instance_id,
        hardware_threads=cpus,
        memory=memory,
        local_storage=local_storage,
    )


def settle_local_storage(conn: Connection, reservation_id: str) -> None:
    """The held local storage became pinned disks: stop holding it twice."""
    conn.execute(
        sled_reservation.update()
        .where(sled_reservation.c.id == reservation_id)
        .values(local_storage=0)
    )


def release(conn: Connection, reservation_id: str) -> None:
    conn.execute(sled_reservation.delete().where(sled_reservation.c.id == reservation_id))


def set_provision_policy(conn: Connection, sled_id: str, policy: str) -> None:
    conn.execute(
        sled.update()
        .where(sled.c.id == sled_id)
        .values(provision_policy=policy, time_modified=now())
    )


def expunge(conn: Connection, sled_id: str) -> None:
    conn.execute(
        sled.update()
        .where(sled.c.id == sled_id)
        .values(policy="expunged", provision_policy="non_provisionable", time_modified=now())
    )


def _insert(conn: Connection, **values: object) -> str:
    """A new sled, in service, provisionable and active (the rest is ``values``); its id."""
    sled_id = new_id()
    conn.execute(
        sled.insert().values(
            id=sled_id,
            part="sim-gimlet",
            revision=0,
            policy="in_service",
            provision_policy="provisionable",
            state="active",
            **values,
        )
    )
    return sled_id


def ensure_simulated(
    conn: Connection,
    *,
    count: int,
    cpus: int,
    memory: int,
    local_storage: int,
    cpu_family: str,
    rack_id: str,
) -> None:
    """Create the simulated sleds that do not exist yet (identified by serial)."""
    have = set(conn.execute(sa.select(sled.c.serial)).scalars())
    t = now()
    for slot in range(count):
        serial = f"sim-{slot:04d}"
        if serial in have:
            continue
        _insert(
            conn,
            rack_id=rack_id,
            serial=serial,
            slot=slot,
            usable_hardware_threads=cpus,
            usable_physical_ram=memory,
            local_storage=local_storage,
            cpu_family=cpu_family,
            agent_url=None,
            time_created=t,
            time_modified=t,
        )


def upsert_agent(
    conn: Connection,
    *,
    serial: str,
    url: str,
    cpus: int,
    memory: int,
    local_storage: int,
    cpu_family: str,
    rack_id: str,
) -> Row:
    """An HTTP sled agent registered: a new serial becomes a sled in service; a known one
    keeps its id (and its policy) and takes the agent's current URL and capacity."""
    t = now()
    existing = conn.execute(sa.select(sled).where(sled.c.serial == serial)).first()
    values: dict[str, object] = {
        "agent_url": url,
        "usable_hardware_threads": cpus,
        "usable_physical_ram": memory,
        "local_storage": local_storage,
        "cpu_family": cpu_family,
        "time_modified": t,
    }
    if existing is not None:
        conn.execute(sled.update().where(sled.c.id == existing.id).values(**values))
        sled_id = existing.id
    else:
        sled_id = _insert(conn, rack_id=rack_id, serial=serial, slot=None, time_created=t, **values)
    row = get(conn, sled_id)
    assert row is not None
    return row


def agent_urls(conn: Connection) -> list[Row]:
    """Every sled's id, agent URL (None: in-process) and policy, for the sled directory."""
    return list(conn.execute(sa.select(sled.c.id, sled.c.agent_url, sled.c.policy)))


def set_reachable(conn: Connection, sled_id: str, ok: bool) -> None:
    """Record whether the sled's agent answered its last health check (placement keeps new
    instances off a sled whose agent did not)."""
    q = sled.update().where(sled.c.id == sled_id)
    if ok:
        conn.execute(q.where(sled.c.time_unreachable.is_not(None)).values(time_unreachable=None))
    else:
        conn.execute(q.where(sled.c.time_unreachable.is_(None)).values(time_unreachable=now()))
