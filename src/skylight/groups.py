"""Affinity and anti-affinity groups and their instance members.

``kind`` is ``"affinity"`` or ``"anti_affinity"``; the rules are Oxide's and the same for both:
a group holds at most 32 instances of its own project, an instance belongs to at most 16
groups of each kind, and only an instance that holds no sled resources (it is stopped) can
join a group, so that joining never contradicts where a running instance already is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from skylight import lookup
from skylight.errors import AlreadyExists, Conflict, InvalidRequest, NotFound
from skylight.events.kinds import Actor, Kind
from skylight.identity.access import Action, Caller
from skylight.ids import new_id, parse_uuid
from skylight.instances.record import record
from skylight.store import Row
from skylight.store import groups as rows
from skylight.store.paging import Page, PageOf, rows_of

MAX_MEMBERS = 32
MAX_GROUPS_PER_INSTANCE = 16


def _words(kind: str) -> str:
    return lookup.GROUP_WORDS[kind]


def page(
    conn: Connection, caller: Caller, kind: str, project_selector: str, page_of: PageOf
) -> Page[Row]:
    """A page of the project's groups of ``kind``."""
    proj = lookup.project(conn, caller, project_selector)
    return rows_of(page_of(proj.id), rows.page, conn, kind, proj.id)


def page_of_instance(
    conn: Connection,
    caller: Caller,
    kind: str,
    instance_selector: str,
    project_selector: str | None,
    page_of: PageOf,
) -> Page[Row]:
    """A page of the groups of ``kind`` the instance belongs to."""
    inst = lookup.instance(conn, caller, instance_selector, project_selector)
    return rows_of(page_of(inst.id), rows.page_of_instance, conn, kind, inst.id)


def members_page(
    conn: Connection,
    caller: Caller,
    kind: str,
    selector: str,
    project_selector: str | None,
    page_of: PageOf,
) -> Page[Row]:
    """A page of the group's members."""
    grp = lookup.group(conn, caller, kind, selector, project_selector)
    return rows_of(page_of(grp.id), rows.members_page, conn, kind, grp.id)


def create(
    conn: Connection,
    caller: Caller,
    kind: str,
    project_selector: str,
    *,
    name: str,
    description: str,
    policy: str,
    failure_domain: str,
) -> Row:
    proj = lookup.project(conn, caller, project_selector, Action.modify)
    if rows.by_name(conn, kind, proj.id, name) is not None:
        raise AlreadyExists(lookup.GROUP_TYPE[kind], name)
    group_id = new_id()
    with lookup.claimed(conn, lookup.GROUP_TYPE[kind], name):
        rows.insert(
            conn,
            kind,
            group_id=group_id,
            project_id=proj.id,
            name=name,
            description=description,
            policy=policy,
            failure_domain=failure_domain,
        )
    row = rows.by_id(conn, kind, group_id)
    assert row is not None
    return row


def update(
    conn: Connection,
    caller: Caller,
    kind: str,
    selector: str,
    project_selector: str | None,
    *,
    name: str | None,
    description: str | None,
) -> Row:
    row = lookup.group(conn, caller, kind, selector, project_selector, Action.modify)
    values = lookup.renamed(
        row,
        name,
        description,
        rtype=lookup.GROUP_TYPE[kind],
        taken=lambda n: rows.by_name(conn, kind, row.project_id, n),
    )
    if values:
        with lookup.claimed(conn, lookup.GROUP_TYPE[kind], str(name)):
            rows.update(conn, kind, row.id, **values)
    new = rows.by_id(conn, kind, row.id)
    assert new is not None
    return new


def delete(
    conn: Connection, caller: Caller, kind: str, selector: str, project_selector: str | None
) -> None:
    """Delete the group; its members stay, they just leave it."""
    row = lookup.group(conn, caller, kind, selector, project_selector, Action.modify)
    rows.delete(conn, kind, row.id)


# -- members ---------------------------------------------------------------------------------


def _only_for_names(selector: str, project_selector: str | None) -> str | None:
    """A member route has one ``?project=`` for two selectors: it applies to names only."""
    return None if parse_uuid(selector) is not None else project_selector


@dataclass(frozen=True)
class Member:
    """An instance as a member of a group, as a member route names them: the group and the
    instance by name or id, and one ``?project=`` for whichever is named by name."""

    kind: str
    group: str
    instance: str
    project: str | None
    caller: Caller


def _group_and_instance(conn: Connection, m: Member, need: Action = Action.read) -> tuple[Row, Row]:
    grp = lookup.group(conn, m.caller, m.kind, m.group, _only_for_names(m.group, m.project), need)
    inst_project = _only_for_names(m.instance, m.project)
    if inst_project is None and parse_uuid(m.instance) is None:
        inst_project = grp.project_id  # an instance named without ?project=: the group's
    inst = lookup.instance(conn, m.caller, m.instance, inst_project, need)
    return grp, inst


def member_view(conn: Connection, m: Member) -> Row:
    kind = m.kind
    grp, inst = _group_and_instance(conn, m)
    member = rows.member(conn, kind, grp.id, inst.id)
    if member is None:
        raise NotFound.by_id(f"{lookup.GROUP_TYPE[kind]}-member", inst.id)
    return member


def _membership(
    conn: Connection, kind: str, grp: Any, inst: Any, actor: Actor, change: str
) -> None:
    """An ``instance.updated`` event: the rules its next placement obeys have changed."""
    detail = {"change": f"{kind}_group_{change}", "group": {"id": grp.id, "name": grp.name}}
    record(conn, inst.id, Kind.UPDATED, actor, detail=detail)


def member_add(conn: Connection, m: Member, actor: Actor) -> Row:
    kind = m.kind
    grp, inst = _group_and_instance(conn, m, Action.modify)
    if inst.project_id != grp.project_id:
        raise InvalidRequest(f"the instance and the {_words(kind)} must be in the same project")
    # Lock order (group, then instance) is the one placement uses too.
    if rows.by_id(conn, kind, grp.id, lock=True) is None:
        raise NotFound.by_id(lookup.GROUP_TYPE[kind], grp.id)  # deleted meanwhile
    rows.lock_instance(conn, inst.id)
    if rows.member(conn, kind, grp.id, inst.id) is not None:
        raise AlreadyExists(f"{lookup.GROUP_TYPE[kind]}-member", inst.id)
    if rows.has_reservation(conn, inst.id):
        raise InvalidRequest(
            f"instance cannot be added to an {_words(kind)} while it holds sled resources: "
            "stop it first"
        )
    _check_room(conn, kind, grp.id)
    if rows.count_groups_of(conn, kind, inst.id) >= MAX_GROUPS_PER_INSTANCE:
        raise InvalidRequest(
            f"instance already belongs to the maximum allowed number of {_words(kind)}s "
            f"({MAX_GROUPS_PER_INSTANCE})"
        )
    with lookup.claimed(conn, f"{lookup.GROUP_TYPE[kind]}-member", inst.id):
        rows.add_member(conn, kind, grp.id, inst.id)
    _membership(conn, kind, grp, inst, actor, "joined")
    member = rows.member(conn, kind, grp.id, inst.id)
    assert member is not None
    return member


def member_remove(conn: Connection, m: Member, actor: Actor) -> None:
    kind = m.kind
    grp, inst = _group_and_instance(conn, m, Action.modify)
    if not rows.remove_member(conn, kind, grp.id, inst.id):
        raise NotFound.by_id(f"{lookup.GROUP_TYPE[kind]}-member", inst.id)
    _membership(conn, kind, grp, inst, actor, "left")


def _check_room(conn: Connection, kind: str, group_id: str) -> None:
    if rows.count_members(conn, kind, group_id) >= MAX_MEMBERS:
        raise InvalidRequest(
            f"{_words(kind)} already has the maximum allowed number of members ({MAX_MEMBERS})"
        )


# -- instance create -------------------------------------------------------------------------


def resolve_for_new_instance(
    conn: Connection, kind: str, project_id: str, selectors: list[str]
) -> list[str]:
    """The ids of the groups a new instance of ``project_id`` is to join, checked: they exist,
    are of its project and have room. Repeats are joined once."""
    ids: list[str] = []
    for sel in selectors:
        parsed = parse_uuid(sel)
        if parsed is not None:
            grp = rows.by_id(conn, kind, str(parsed))
            if grp is None:
                raise NotFound.by_id(lookup.GROUP_TYPE[kind], sel)
            if grp.project_id != project_id:
                raise InvalidRequest(
                    f"{_words(kind)} {sel} is not in the project of the instance being created"
                )
        else:
            grp = rows.by_name(conn, kind, project_id, sel)
            if grp is None:
                raise NotFound.by_name(lookup.GROUP_TYPE[kind], sel)
        if grp.id not in ids:
            ids.append(grp.id)
    if len(ids) > MAX_GROUPS_PER_INSTANCE:
        raise InvalidRequest(
            f"an instance can belong to at most {MAX_GROUPS_PER_INSTANCE} {_words(kind)}s"
        )
    for group_id in ids:
        _check_room(conn, kind, group_id)
    return ids


def join_new_instance(conn: Connection, kind: str, group_ids: list[str], instance_id: str) -> None:
    """Inside the instance-create saga: add the new instance to groups checked before; a group
    that was deleted or filled meanwhile fails the create (Conflict)."""
    for group_id in group_ids:
        grp = rows.by_id(conn, kind, group_id, lock=True)
        if grp is None:
            raise Conflict(f"{_words(kind)} {group_id} was deleted while the instance was created")
        if rows.member(conn, kind, group_id, instance_id) is not None:
            continue
        if rows.count_members(conn, kind, group_id) >= MAX_MEMBERS:
            raise Conflict(f'{_words(kind)} "{grp.name}" filled up while the instance was created')
        rows.add_member(conn, kind, group_id, instance_id)
