"""Keyset pagination: a page starts after the last key of the previous one.

Keys are unique (names are unique among live rows of a collection, ids everywhere), so a page
boundary never repeats or skips a row, even while rows are inserted concurrently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.store import Row

SORTS = ("name_ascending", "name_descending", "id_ascending")

Item = TypeVar("Item")


@dataclass(frozen=True)
class PageRequest:
    """One page asked for of the list ``scope`` (a token names its list, so that a token of
    one list is refused by another)."""

    limit: int
    marker: Any  # last key of the previous page (a name, an id or a seq), or None
    sort: str
    scope: str


# The page asked for of a list that belongs to the parent whose id it is given. A list of a
# project's (or an instance's, a group's) rows resolves its parent first, in the transaction
# that reads the page, so the page can be decoded only then.
PageOf = Callable[[str], PageRequest]


@dataclass(frozen=True)
class Page(Generic[Item]):
    items: list[Item]
    request: PageRequest


@dataclass(frozen=True)
class RowItem:
    """An item of a list that shows a row with more beside it (what a silo holds, a
    receiver's subscriptions): its list is paged by the row's own keys, its id and name."""

    row: Row

    @property
    def id(self) -> str:
        return str(self.row.id)

    @property
    def name(self) -> str:
        return str(self.row.name)


def rows_of(request: PageRequest, read: Callable[..., list[Row]], *args: Any) -> Page[Row]:
    """``read(*args, sort=, limit=, marker=)`` as the page ``request`` asks for."""
    found = read(*args, sort=request.sort, limit=request.limit, marker=request.marker)
    return Page(found, request)


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
