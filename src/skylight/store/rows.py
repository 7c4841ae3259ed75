"""What the query modules share: a new row whose time columns read one instant; a count."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.clock import now

# A named resource (project, disk, group) is created and first modified at the same instant.
CREATED = ("time_created", "time_modified")
# A row written once and never modified (a reservation, a token, a device request).
NEVER_MODIFIED = ("time_created",)


def insert_new(conn: Connection, table: sa.Table, stamped: Sequence[str], **values: object) -> None:
    """Insert one row whose ``stamped`` columns all read now, one instant: a row's creation
    and its first modification (or first state) are the same moment, never a tick apart."""
    t = now()
    conn.execute(table.insert().values(**values, **dict.fromkeys(stamped, t)))


def count(conn: Connection, source: sa.FromClause, *where: sa.ColumnElement[bool]) -> int:
    """How many rows of ``source`` (a table or a join) match every condition of ``where``."""
    q = sa.select(sa.func.count()).select_from(source).where(*where)
    return int(conn.execute(q).scalar_one())
