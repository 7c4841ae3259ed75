"""The fields most views begin with, from a stored row: its two times, and Oxide's
IdentityMetadata (``id``, ``name``, ``description`` and those times). Written once so that
every view shows them alike (times in UTC, whatever the store handed back)."""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

from skylight.clock import as_utc
from skylight.store import Row


class Times(TypedDict):
    time_created: datetime
    time_modified: datetime


class Identity(Times):
    id: str
    name: str
    description: str


def times(row: Row) -> Times:
    """When ``row`` was created and last modified (SQLite hands back naive times)."""
    return Times(time_created=as_utc(row.time_created), time_modified=as_utc(row.time_modified))


def identity(row: Row) -> Identity:
    """A named resource's identity, to spread into its view: ``View(**identity(row), ...)``."""
    return Identity(id=row.id, name=row.name, description=row.description, **times(row))
