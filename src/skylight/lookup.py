"""Resolve ``NameOrId`` selectors (with ``?project=``) to rows, the way the Oxide API does."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.errors import InvalidRequest, NotFound
from skylight.ids import parse_uuid
from skylight.store import instances, projects


def project(conn: Connection, selector: str) -> sa.Row[Any]:
    if parse_uuid(selector) is not None:
        row = projects.by_id(conn, selector.lower())
        if row is None:
            raise NotFound.by_id("project", selector)
        return row
    row = projects.by_name(conn, selector)
    if row is None:
        raise NotFound.by_name("project", selector)
    return row


def instance(
    conn: Connection, selector: str, project_selector: str | None, *, deleted: bool = False
) -> sa.Row[Any]:
    """``deleted`` lets an id (never a name) find a deleted instance, for its history."""
    if parse_uuid(selector) is not None:
        if project_selector is not None:
            raise InvalidRequest("when providing instance as an ID project should not be specified")
        row = instances.by_id(conn, selector.lower(), deleted=deleted)
        if row is None:
            raise NotFound.by_id("instance", selector)
        return row
    if project_selector is None:
        raise InvalidRequest("project must be specified when selecting an instance by name")
    proj = project(conn, project_selector)
    row = instances.by_name(conn, proj.id, selector)
    if row is None:
        raise NotFound.by_name("instance", selector)
    return row
