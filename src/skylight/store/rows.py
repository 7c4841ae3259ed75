"""Writing a new row, for the query modules: the time columns of a new row read one instant."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.clock import now

# A named resource (project, disk, group) is created and first modified at the same instant.
CREATED = ("time_created", "time_modified")


def insert_new(conn: Connection, table: sa.Table, stamped: Sequence[str], **values: object) -> None:
    """Insert one row whose ``stamped`` columns all read now, one instant: a row's creation
    and its first modification (or first state) are the same moment, never a tick apart."""
    t = now()
    conn.execute(table.insert().values(**values, **dict.fromkeys(stamped, t)))
