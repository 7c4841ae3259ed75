"""Keyset pagination: a page starts after the last key of the previous one.

Keys are unique (names are unique among live rows of a collection, ids everywhere), so a page
boundary never repeats or skips a row, even while rows are inserted concurrently.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.store import Row

SORTS = ("name_ascending", "name_descending", "id_ascending")


def page(
    conn: Connection,
    query: sa.Select[Any],
    table: sa.Table,
    *,
    sort: str,
    limit: int,
    marker: str | None,
) -> list[Row]:
    if sort == "name_descending":
        key = table.c.name
        if marker is not None:
            query = query.where(key < marker)
        query = query.order_by(key.desc())
    else:
        key = table.c.name if sort == "name_ascending" else table.c.id
        if marker is not None:
            query = query.where(key > marker)
        query = query.order_by(key)
    return list(conn.execute(query.limit(limit)))
