"""/v1/instances and an instance's events."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request, Response

from skylight import lookup
from skylight.api import deps, models, paging, views
from skylight.errors import InvalidRequest
from skylight.events.reasons import redact
from skylight.instances import explain
from skylight.operations import instances as operations
from skylight.store import events, instances

router = APIRouter(tags=["instances"])


def _view(request: Request, row: Any) -> models.Instance:
    cp = deps.cp(request)
    return views.instance(
        row, operator=deps.is_operator(request), cooldown=cp.settings.auto_restart_cooldown
    )


async def _resolve(
    request: Request, instance: str, project: str | None, *, deleted: bool = False
) -> Any:
    sel = deps.required(instance, "instance")
    proj = deps.selector(project, "project")
    return await deps.cp(request).store.tx(lambda c: lookup.instance(c, sel, proj, deleted=deleted))


def _wait(request: Request) -> float:
    return 0.0 if deps.wants_async(request) else deps.cp(request).settings.start_wait


@router.get("/v1/instances", response_model=models.InstanceResultsPage)
async def instance_list(
    request: Request,
    project: str | None = None,
    limit: paging.Limit = None,
    page_token: str | None = None,
    sort_by: models.NameOrIdSortMode | None = None,
) -> models.InstanceResultsPage:
    sel = deps.required(project, "project")

    def read(conn: Any) -> tuple[str, paging.PageRequest, list[Any]]:
        proj = lookup.project(conn, sel)
        scope = f"instances:{proj.id}"
        page = paging.decode(limit, page_token, sort_by, scope, "name_ascending")
        rows = instances.page(conn, proj.id, sort=page.sort, limit=page.limit, marker=page.marker)
        return scope, page, rows

    scope, page, rows = await deps.cp(request).store.tx(read)
    key = "id" if page.sort == "id_ascending" else "name"
    return models.InstanceResultsPage(
        items=[_view(request, r) for r in rows],
        next_page=paging.next_token(page, rows, key, scope),
    )


@router.post("/v1/instances", status_code=201, response_model=models.Instance)
async def instance_create(
    request: Request, body: models.InstanceCreate, project: str | None = None
) -> models.Instance:
    sel = deps.required(project, "project")
    _check_size(body.ncpus, body.memory)
    row = await operations.create(
        deps.cp(request), sel, body.model_dump(), deps.actor(), wait=_wait(request)
    )
    return _view(request, row)


@router.get("/v1/instances/{instance}", response_model=models.Instance)
async def instance_view(
    request: Request, instance: str, project: str | None = None
) -> models.Instance:
    return _view(request, await _resolve(request, instance, project))


@router.put("/v1/instances/{instance}", response_model=models.Instance)
async def instance_update(
    request: Request, instance: str, body: models.InstanceUpdate, project: str | None = None
) -> models.Instance:
    row = await _resolve(request, instance, project)
    _check_size(body.ncpus, body.memory)
    changes = body.model_dump(exclude={"multicast_groups"})  # boot_disk: resolved in the update
    new = await operations.update_instance(deps.cp(request), row.id, changes, deps.actor())
    return _view(request, new)


@router.delete("/v1/instances/{instance}", status_code=204, response_class=Response)
async def instance_delete(request: Request, instance: str, project: str | None = None) -> Response:
    row = await _resolve(request, instance, project)
    await operations.delete_instance(deps.cp(request), row.id, deps.actor())
    return Response(status_code=204)


@router.post("/v1/instances/{instance}/start", status_code=202, response_model=models.Instance)
async def instance_start(
    request: Request, instance: str, project: str | None = None
) -> models.Instance:
    row = await _resolve(request, instance, project)
    new = await operations.start_instance(
        deps.cp(request), row.id, deps.actor(), "user", wait=_wait(request)
    )
    return _view(request, new)


@router.post("/v1/instances/{instance}/stop", status_code=202, response_model=models.Instance)
async def instance_stop(
    request: Request, instance: str, project: str | None = None
) -> models.Instance:
    row = await _resolve(request, instance, project)
    new = await operations.stop_instance(
        deps.cp(request), row.id, deps.actor(), wait=_wait(request)
    )
    return _view(request, new)


@router.post("/v1/instances/{instance}/reboot", status_code=202, response_model=models.Instance)
async def instance_reboot(
    request: Request, instance: str, project: str | None = None
) -> models.Instance:
    row = await _resolve(request, instance, project)
    new = await operations.reboot_instance(
        deps.cp(request), row.id, deps.actor(), wait=_wait(request)
    )
    return _view(request, new)


@router.get("/v1/instances/{instance}/events", response_model=models.InstanceEventResultsPage)
async def instance_event_list(
    request: Request,
    instance: str,
    project: str | None = None,
    limit: paging.Limit = None,
    page_token: str | None = None,
    severity: Literal["info", "warning", "error"] | None = None,
    kind: models.QueryText | None = None,
    operation: models.QueryText | None = None,
    since: models.Timestamp | None = None,
) -> models.InstanceEventResultsPage:
    row = await _resolve(request, instance, project, deleted=True)
    scope = f"events:{row.id}"
    page = paging.decode(limit, page_token, None, scope, "seq_descending")
    flt = events.EventFilter(
        instance_id=row.id, severity=severity, kind=kind, operation_id=operation, since=since
    )
    rows = await deps.cp(request).store.tx(
        lambda c: events.page(c, flt, limit=page.limit, before_seq=page.marker)
    )
    return models.InstanceEventResultsPage(
        items=[views.event(r, operator=deps.is_operator(request)) for r in rows],
        next_page=paging.next_token(page, rows, "seq", scope),
    )


@router.get("/v1/instances/{instance}/placement", response_model=models.PlacementExplanation)
async def instance_placement_explain(
    request: Request, instance: str, project: str | None = None
) -> models.PlacementExplanation:
    """Skylight: where the instance would be placed if it started now, or why it cannot be."""
    row = await _resolve(request, instance, project)
    out = await explain.explain(deps.cp(request), row)
    operator = deps.is_operator(request)
    if not operator:
        out["sled_id"] = out["current_sled_id"] = None
    out["reason"] = redact(out["reason"], operator=operator)
    return models.PlacementExplanation(**out)


def _check_size(ncpus: int, memory: int) -> None:
    if not 1 <= ncpus <= models.MAX_VCPUS:
        raise InvalidRequest(f"ncpus must be between 1 and {models.MAX_VCPUS}")
    if memory < models.MIN_MEMORY:
        raise InvalidRequest("memory must be at least 1 GiB")
    if memory > models.MAX_MEMORY:
        raise InvalidRequest("memory must be at most 1536 GiB")
    if memory % (1024 * 1024):
        raise InvalidRequest("memory must be a multiple of 1 MiB")
