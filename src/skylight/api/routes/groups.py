"""/v1/affinity-groups, /v1/anti-affinity-groups, and an instance's groups.

The two families behave alike: each handler names its family (``kind``) and hands the work to
the shared helpers below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.engine import Connection

from skylight import groups, lookup
from skylight.api import deps, models, paging, views
from skylight.store import groups as group_rows

router = APIRouter(tags=["affinity"])

AFF = "affinity"
ANTI = "anti_affinity"
_GROUP_VIEW: dict[str, Callable[[Any], Any]] = {
    AFF: views.affinity_group,
    ANTI: views.anti_affinity_group,
}
_MEMBER_VIEW: dict[str, Callable[[Any], Any]] = {
    AFF: views.affinity_group_member,
    ANTI: views.anti_affinity_group_member,
}
_PARAM = {AFF: "affinity_group", ANTI: "anti_affinity_group"}

Page = tuple[list[Any], str | None]


def _key(page: paging.PageRequest) -> str:
    return "id" if page.sort == "id_ascending" else "name"


async def _paged(
    request: Request,
    scope_of: Callable[[Connection], tuple[str, str]],
    fetch: Callable[[Connection, str, paging.PageRequest], list[Any]],
    view: Callable[[Any], Any],
    limit: int | None,
    page_token: str | None,
    sort_by: str | None,
) -> Page:
    """One page of a list whose tokens are scoped to its parent: ``scope_of`` resolves the
    parent (returning the token scope and the parent id), ``fetch`` reads the rows."""

    def read(conn: Connection) -> Page:
        scope, parent_id = scope_of(conn)
        page = paging.decode(limit, page_token, sort_by, scope, "name_ascending")
        rows = fetch(conn, parent_id, page)
        return [view(r) for r in rows], paging.next_token(page, rows, _key(page), scope)

    return await deps.cp(request).store.tx(read)


async def _list(
    request: Request,
    kind: str,
    project: str | None,
    limit: int | None,
    page_token: str | None,
    sort_by: str | None,
) -> Page:
    sel = deps.required(project, "project")

    def scope_of(conn: Connection) -> tuple[str, str]:
        proj = lookup.project(conn, sel)
        return f"{kind}-groups:{proj.id}", proj.id

    def fetch(conn: Connection, project_id: str, page: paging.PageRequest) -> list[Any]:
        return group_rows.page(
            conn, kind, project_id, sort=page.sort, limit=page.limit, marker=page.marker
        )

    return await _paged(request, scope_of, fetch, _GROUP_VIEW[kind], limit, page_token, sort_by)


async def _instance_groups(
    request: Request,
    kind: str,
    instance: str,
    project: str | None,
    limit: int | None,
    page_token: str | None,
    sort_by: str | None,
) -> Page:
    inst_sel = deps.required(instance, "instance")
    proj = deps.selector(project, "project")

    def scope_of(conn: Connection) -> tuple[str, str]:
        inst = lookup.instance(conn, inst_sel, proj)
        return f"instance-{kind}-groups:{inst.id}", inst.id

    def fetch(conn: Connection, instance_id: str, page: paging.PageRequest) -> list[Any]:
        return group_rows.page_of_instance(
            conn, kind, instance_id, sort=page.sort, limit=page.limit, marker=page.marker
        )

    return await _paged(request, scope_of, fetch, _GROUP_VIEW[kind], limit, page_token, sort_by)


async def _members(
    request: Request,
    kind: str,
    group: str,
    project: str | None,
    limit: int | None,
    page_token: str | None,
    sort_by: str | None,
) -> Page:
    sel = deps.required(group, _PARAM[kind])
    proj = deps.selector(project, "project")

    def scope_of(conn: Connection) -> tuple[str, str]:
        grp = lookup.group(conn, kind, sel, proj)
        return f"{kind}-members:{grp.id}", grp.id

    def fetch(conn: Connection, group_id: str, page: paging.PageRequest) -> list[Any]:
        return group_rows.members_page(
            conn, kind, group_id, sort=page.sort, limit=page.limit, marker=page.marker
        )

    return await _paged(request, scope_of, fetch, _MEMBER_VIEW[kind], limit, page_token, sort_by)


async def _create(
    request: Request, kind: str, project: str | None, body: models.AffinityGroupCreate
) -> Any:
    sel = deps.required(project, "project")
    row = await deps.cp(request).store.tx(
        lambda c: groups.create(
            c,
            kind,
            sel,
            name=body.name,
            description=body.description,
            policy=body.policy,
            failure_domain=body.failure_domain,
        )
    )
    return _GROUP_VIEW[kind](row)


async def _view(request: Request, kind: str, group: str, project: str | None) -> Any:
    sel = deps.required(group, _PARAM[kind])
    proj = deps.selector(project, "project")
    row = await deps.cp(request).store.tx(lambda c: lookup.group(c, kind, sel, proj))
    return _GROUP_VIEW[kind](row)


async def _update(
    request: Request,
    kind: str,
    group: str,
    project: str | None,
    body: models.AffinityGroupUpdate,
) -> Any:
    sel = deps.required(group, _PARAM[kind])
    proj = deps.selector(project, "project")
    row = await deps.cp(request).store.tx(
        lambda c: groups.update(c, kind, sel, proj, name=body.name, description=body.description)
    )
    return _GROUP_VIEW[kind](row)


async def _delete(request: Request, kind: str, group: str, project: str | None) -> Response:
    sel = deps.required(group, _PARAM[kind])
    proj = deps.selector(project, "project")
    await deps.cp(request).store.tx(lambda c: groups.delete(c, kind, sel, proj))
    return Response(status_code=204)


def _member_selectors(
    kind: str, group: str, instance: str, project: str | None
) -> tuple[str, str, str | None]:
    return (
        deps.required(group, _PARAM[kind]),
        deps.required(instance, "instance"),
        deps.selector(project, "project"),
    )


async def _member_view(
    request: Request, kind: str, group: str, instance: str, project: str | None
) -> Any:
    g, i, p = _member_selectors(kind, group, instance, project)
    row = await deps.cp(request).store.tx(lambda c: groups.member_view(c, kind, g, i, p))
    return _MEMBER_VIEW[kind](row)


async def _member_add(
    request: Request, kind: str, group: str, instance: str, project: str | None
) -> Any:
    g, i, p = _member_selectors(kind, group, instance, project)
    row = await deps.cp(request).store.tx(
        lambda c: groups.member_add(c, kind, g, i, p, deps.actor())
    )
    return _MEMBER_VIEW[kind](row)


async def _member_delete(
    request: Request, kind: str, group: str, instance: str, project: str | None
) -> Response:
    g, i, p = _member_selectors(kind, group, instance, project)
    await deps.cp(request).store.tx(lambda c: groups.member_remove(c, kind, g, i, p, deps.actor()))
    return Response(status_code=204)


# -- an instance's groups --------------------------------------------------------------------


@router.get(
    "/v1/instances/{instance}/affinity-groups", response_model=models.AffinityGroupResultsPage
)
async def instance_affinity_group_list(
    request: Request,
    instance: str,
    project: str | None = None,
    limit: paging.Limit = None,
    page_token: str | None = None,
    sort_by: models.NameOrIdSortMode | None = None,
) -> models.AffinityGroupResultsPage:
    items, nxt = await _instance_groups(request, AFF, instance, project, limit, page_token, sort_by)
    return models.AffinityGroupResultsPage(items=items, next_page=nxt)


@router.get(
    "/v1/instances/{instance}/anti-affinity-groups",
    response_model=models.AntiAffinityGroupResultsPage,
)
async def instance_anti_affinity_group_list(
    request: Request,
    instance: str,
    project: str | None = None,
    limit: paging.Limit = None,
    page_token: str | None = None,
    sort_by: models.NameOrIdSortMode | None = None,
) -> models.AntiAffinityGroupResultsPage:
    items, nxt = await _instance_groups(
        request, ANTI, instance, project, limit, page_token, sort_by
    )
    return models.AntiAffinityGroupResultsPage(items=items, next_page=nxt)


# -- affinity groups -------------------------------------------------------------------------


@router.get("/v1/affinity-groups", response_model=models.AffinityGroupResultsPage)
async def affinity_group_list(
    request: Request,
    project: str | None = None,
    limit: paging.Limit = None,
    page_token: str | None = None,
    sort_by: models.NameOrIdSortMode | None = None,
) -> models.AffinityGroupResultsPage:
    items, nxt = await _list(request, AFF, project, limit, page_token, sort_by)
    return models.AffinityGroupResultsPage(items=items, next_page=nxt)


@router.post("/v1/affinity-groups", status_code=201, response_model=models.AffinityGroup)
async def affinity_group_create(
    request: Request, body: models.AffinityGroupCreate, project: str | None = None
) -> models.AffinityGroup:
    return await _create(request, AFF, project, body)


@router.get("/v1/affinity-groups/{affinity_group}", response_model=models.AffinityGroup)
async def affinity_group_view(
    request: Request, affinity_group: str, project: str | None = None
) -> models.AffinityGroup:
    return await _view(request, AFF, affinity_group, project)


@router.put("/v1/affinity-groups/{affinity_group}", response_model=models.AffinityGroup)
async def affinity_group_update(
    request: Request,
    affinity_group: str,
    body: models.AffinityGroupUpdate,
    project: str | None = None,
) -> models.AffinityGroup:
    return await _update(request, AFF, affinity_group, project, body)


@router.delete("/v1/affinity-groups/{affinity_group}", status_code=204, response_class=Response)
async def affinity_group_delete(
    request: Request, affinity_group: str, project: str | None = None
) -> Response:
    return await _delete(request, AFF, affinity_group, project)


@router.get(
    "/v1/affinity-groups/{affinity_group}/members",
    response_model=models.AffinityGroupMemberResultsPage,
)
async def affinity_group_member_list(
    request: Request,
    affinity_group: str,
    project: str | None = None,
    limit: paging.Limit = None,
    page_token: str | None = None,
    sort_by: models.NameOrIdSortMode | None = None,
) -> models.AffinityGroupMemberResultsPage:
    items, nxt = await _members(request, AFF, affinity_group, project, limit, page_token, sort_by)
    return models.AffinityGroupMemberResultsPage(items=items, next_page=nxt)


@router.get(
    "/v1/affinity-groups/{affinity_group}/members/instance/{instance}",
    response_model=models.AffinityGroupMember,
)
async def affinity_group_member_instance_view(
    request: Request, affinity_group: str, instance: str, project: str | None = None
) -> models.AffinityGroupMember:
    return await _member_view(request, AFF, affinity_group, instance, project)


@router.post(
    "/v1/affinity-groups/{affinity_group}/members/instance/{instance}",
    status_code=201,
    response_model=models.AffinityGroupMember,
)
async def affinity_group_member_instance_add(
    request: Request, affinity_group: str, instance: str, project: str | None = None
) -> models.AffinityGroupMember:
    return await _member_add(request, AFF, affinity_group, instance, project)


@router.delete(
    "/v1/affinity-groups/{affinity_group}/members/instance/{instance}",
    status_code=204,
    response_class=Response,
)
async def affinity_group_member_instance_delete(
    request: Request, affinity_group: str, instance: str, project: str | None = None
) -> Response:
    return await _member_delete(request, AFF, affinity_group, instance, project)


# -- anti-affinity groups --------------------------------------------------------------------


@router.get("/v1/anti-affinity-groups", response_model=models.AntiAffinityGroupResultsPage)
async def anti_affinity_group_list(
    request: Request,
    project: str | None = None,
    limit: paging.Limit = None,
    page_token: str | None = None,
    sort_by: models.NameOrIdSortMode | None = None,
) -> models.AntiAffinityGroupResultsPage:
    items, nxt = await _list(request, ANTI, project, limit, page_token, sort_by)
    return models.AntiAffinityGroupResultsPage(items=items, next_page=nxt)


@router.post("/v1/anti-affinity-groups", status_code=201, response_model=models.AntiAffinityGroup)
async def anti_affinity_group_create(
    request: Request, body: models.AntiAffinityGroupCreate, project: str | None = None
) -> models.AntiAffinityGroup:
    return await _create(request, ANTI, project, body)


@router.get(
    "/v1/anti-affinity-groups/{anti_affinity_group}", response_model=models.AntiAffinityGroup
)
async def anti_affinity_group_view(
    request: Request, anti_affinity_group: str, project: str | None = None
) -> models.AntiAffinityGroup:
    return await _view(request, ANTI, anti_affinity_group, project)


@router.put(
    "/v1/anti-affinity-groups/{anti_affinity_group}", response_model=models.AntiAffinityGroup
)
async def anti_affinity_group_update(
    request: Request,
    anti_affinity_group: str,
    body: models.AntiAffinityGroupUpdate,
    project: str | None = None,
) -> models.AntiAffinityGroup:
    return await _update(request, ANTI, anti_affinity_group, project, body)


@router.delete(
    "/v1/anti-affinity-groups/{anti_affinity_group}", status_code=204, response_class=Response
)
async def anti_affinity_group_delete(
    request: Request, anti_affinity_group: str, project: str | None = None
) -> Response:
    return await _delete(request, ANTI, anti_affinity_group, project)


@router.get(
    "/v1/anti-affinity-groups/{anti_affinity_group}/members",
    response_model=models.AntiAffinityGroupMemberResultsPage,
)
async def anti_affinity_group_member_list(
    request: Request,
    anti_affinity_group: str,
    project: str | None = None,
    limit: paging.Limit = None,
    page_token: str | None = None,
    sort_by: models.NameOrIdSortMode | None = None,
) -> models.AntiAffinityGroupMemberResultsPage:
    items, nxt = await _members(
        request, ANTI, anti_affinity_group, project, limit, page_token, sort_by
    )
    return models.AntiAffinityGroupMemberResultsPage(items=items, next_page=nxt)


@router.get(
    "/v1/anti-affinity-groups/{anti_affinity_group}/members/instance/{instance}",
    response_model=models.AntiAffinityGroupMember,
)
async def anti_affinity_group_member_instance_view(
    request: Request, anti_affinity_group: str, instance: str, project: str | None = None
) -> models.AntiAffinityGroupMember:
    return await _member_view(request, ANTI, anti_affinity_group, instance, project)


@router.post(
    "/v1/anti-affinity-groups/{anti_affinity_group}/members/instance/{instance}",
    status_code=201,
    response_model=models.AntiAffinityGroupMember,
)
async def anti_affinity_group_member_instance_add(
    request: Request, anti_affinity_group: str, instance: str, project: str | None = None
) -> models.AntiAffinityGroupMember:
    return await _member_add(request, ANTI, anti_affinity_group, instance, project)


@router.delete(
    "/v1/anti-affinity-groups/{anti_affinity_group}/members/instance/{instance}",
    status_code=204,
    response_class=Response,
)
async def anti_affinity_group_member_instance_delete(
    request: Request, anti_affinity_group: str, instance: str, project: str | None = None
) -> Response:
    return await _member_delete(request, ANTI, anti_affinity_group, instance, project)
