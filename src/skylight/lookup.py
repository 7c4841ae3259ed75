"""Resolve ``NameOrId`` selectors (with ``?project=``) to rows, the way the Oxide API does,
and decide whether the caller may see them.

Here is where a caller's visibility is decided: a project (and so everything in it) that
the caller may not read is not found, exactly as if it did not exist, by name or by id.
What the caller may do to what it can see is asked of ``authorize`` with ``need``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.errors import AlreadyExists, InvalidRequest, NotFound
from skylight.identity.access import Action, Caller, Project, authorize, may_see
from skylight.ids import parse_uuid
from skylight.store import Row, disks, groups, instances, projects, webhooks


def require_uuid(text: str, what: str) -> str:
    """``text`` where only an id will do (a sled, a VMM, an alert, a secret: things without
    names), as the canonical lower-case string; InvalidRequest naming ``what`` otherwise."""
    if parse_uuid(text) is None:
        raise InvalidRequest(f"{what}: not a UUID: {text!r}")
    return text.lower()


def renamed(
    row: Row,
    name: str | None,
    description: str | None,
    *,
    rtype: str,
    taken: Callable[[str], Row | None],
) -> dict[str, object]:
    """The columns an update of ``row``'s name and description changes: the name only when it
    differs, and only to one that ``taken`` finds no sibling holding (AlreadyExists
    otherwise); the description whenever it is given."""
    values: dict[str, object] = {}
    if name is not None and name != row.name:
        if taken(name) is not None:
            raise AlreadyExists(rtype, name)
        values["name"] = name
    if description is not None:
        values["description"] = description
    return values


@contextmanager
def claimed(conn: Connection, rtype: str, name: str) -> Iterator[None]:
    """Write, in the block, the ``rtype`` called ``name``, which was checked to be free. A
    writer that took the name between the check and this write (its row is refused by a
    unique index) makes it AlreadyExists; the block's writes are undone to a savepoint, so
    the caller's transaction stays usable."""
    try:
        with conn.begin_nested():
            yield
    except sa.exc.IntegrityError:
        raise AlreadyExists(rtype, name) from None


def _top_level(
    rtype: str,
    selector: str,
    by_id: Callable[[str], Row | None],
    by_name: Callable[[str], Row | None],
) -> Row:
    """A resource with no parent (a project, an alert receiver) by id or by name."""
    if parse_uuid(selector) is not None:
        row = by_id(selector.lower())
        if row is None:
            raise NotFound.by_id(rtype, selector)
        return row
    row = by_name(selector)
    if row is None:
        raise NotFound.by_name(rtype, selector)
    return row


def project(conn: Connection, caller: Caller, selector: str, need: Action = Action.read) -> Row:
    """A project of the caller's silo by name, or any project by id, that it may see;
    then ``need`` is authorized on it."""
    row = _top_level(
        "project",
        selector,
        lambda i: projects.by_id(conn, i),
        lambda n: projects.by_name(conn, caller.silo_id, n),
    )
    _check(caller, row, need, lambda: _not_found("project", selector))
    return row


def _not_found(rtype: str, selector: str) -> NotFound:
    if parse_uuid(selector) is not None:
        return NotFound.by_id(rtype, selector)
    return NotFound.by_name(rtype, selector)


def _check(caller: Caller, proj: Row, need: Action, missing: Callable[[], NotFound]) -> None:
    resource = Project(proj.id, proj.silo_id)
    if not may_see(caller, resource):
        raise missing()
    authorize(caller, need, resource)


def _project_of(
    conn: Connection, caller: Caller, project_id: str, need: Action, missing: Callable[[], NotFound]
) -> None:
    """Check the caller on the project of a child found by id."""
    proj = projects.by_id(conn, project_id, deleted=True)
    if proj is None:
        raise missing()
    _check(caller, proj, need, missing)


def instance(
    conn: Connection,
    caller: Caller,
    selector: str,
    project_selector: str | None,
    need: Action = Action.read,
    *,
    deleted: bool = False,
) -> Row:
    """``deleted`` lets an id (never a name) find a deleted instance, for its history."""
    if parse_uuid(selector) is not None:
        if project_selector is not None:
            raise InvalidRequest("when providing instance as an ID project should not be specified")
        row = instances.by_id(conn, selector.lower(), deleted=deleted)
        if row is None:
            raise NotFound.by_id("instance", selector)
        _project_of(
            conn, caller, row.project_id, need, lambda: NotFound.by_id("instance", selector)
        )
        return row
    if project_selector is None:
        raise InvalidRequest("project must be specified when selecting an instance by name")
    proj = project(conn, caller, project_selector, need)
    row = instances.by_name(conn, proj.id, selector)
    if row is None:
        raise NotFound.by_name("instance", selector)
    return row


# Oxide's resource type names (they appear in "not found" messages).
GROUP_TYPE = {"affinity": "affinity-group", "anti_affinity": "anti-affinity-group"}
GROUP_WORDS = {"affinity": "affinity group", "anti_affinity": "anti-affinity group"}


@dataclass(frozen=True)
class _Child:
    """A kind of resource that lives in a project, as a selector finds it."""

    rtype: str  # Oxide's type name (in "not found" messages)
    words: str  # what a message calls one ("a disk")
    by_id: Callable[[Connection, str], Row | None]
    by_name: Callable[[Connection, str, str], Row | None]  # (conn, project id, name)


def _in_project(
    conn: Connection,
    caller: Caller,
    kind: _Child,
    selector: str,
    project_selector: str | None,
    need: Action,
) -> Row:
    """A project's child by id (then ``project_selector`` must be absent) or by name."""
    rtype, words = kind.rtype, kind.words
    parsed = parse_uuid(selector)
    if parsed is not None:
        if project_selector is not None:
            raise InvalidRequest(f"when providing {words} as an ID project should not be specified")
        row = kind.by_id(conn, str(parsed))
        if row is None:
            raise NotFound.by_id(rtype, selector)
        _project_of(conn, caller, row.project_id, need, lambda: NotFound.by_id(rtype, selector))
        return row
    if project_selector is None:
        raise InvalidRequest(f"project must be specified when selecting {words} by name")
    proj = project(conn, caller, project_selector, need)
    row = kind.by_name(conn, proj.id, selector)
    if row is None:
        raise NotFound.by_name(rtype, selector)
    return row


def group(
    conn: Connection,
    caller: Caller,
    kind: str,
    selector: str,
    project_selector: str | None,
    need: Action = Action.read,
) -> Row:
    """An affinity (``kind="affinity"``) or anti-affinity (``"anti_affinity"``) group."""
    child = _Child(
        GROUP_TYPE[kind],
        f"an {GROUP_WORDS[kind]}",
        lambda c, ident: groups.by_id(c, kind, ident),
        lambda c, project_id, name: groups.by_name(c, kind, project_id, name),
    )
    return _in_project(conn, caller, child, selector, project_selector, need)


_DISK = _Child("disk", "a disk", disks.by_id, disks.by_name)


def disk(
    conn: Connection,
    caller: Caller,
    selector: str,
    project_selector: str | None,
    need: Action = Action.read,
) -> Row:
    return _in_project(conn, caller, _DISK, selector, project_selector, need)


def alert_receiver(conn: Connection, selector: str) -> Row:
    return _top_level(
        "alert-receiver",
        selector,
        lambda i: webhooks.by_id(conn, i),
        lambda n: webhooks.by_name(conn, n),
    )
