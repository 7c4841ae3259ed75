"""Every operation on one instance begins the same way: lock it, read it, or say it is gone."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from skylight.errors import NotFound
from skylight.store import Row, instances


def locked(conn: Connection, instance_id: str) -> Row:
    """The instance, locked against other operations on it until ``conn``'s transaction
    ends (so two replicas cannot both see it stopped and both start it)."""
    instances.lock(conn, instance_id)
    row = instances.by_id(conn, instance_id)
    if row is None:
        raise NotFound.by_id("instance", instance_id)
    return row
