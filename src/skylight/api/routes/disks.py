"""/v1/disks, and an instance's disks: list, attach, detach."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request, Response

from skylight import disks, lookup
from skylight.api import deps, models, paging, views

router = APIRouter(tags=["disks"])


@router.get("/v1/disks", response_model=models.DiskResultsPage)
async def disk_list(
    request: Request, query: paging.ByName, project: str | None = None
) -> models.DiskResultsPage:
    sel = deps.required(project, "project")
    ask = query.ask("disks")
    who = deps.caller(request)
    page = await deps.tx(request, lambda c: disks.page(c, who, sel, ask))
    return paging.results(models.DiskResultsPage, page, views.disk)


@router.post("/v1/disks", status_code=201, response_model=models.Disk)
async def disk_create(
    request: Request, body: models.DiskCreate, project: str | None = None
) -> models.Disk:
    sel = deps.required(project, "project")
    spec = body.model_dump()
    who = deps.caller(request)
    row = await deps.tx(request, lambda c: disks.create(c, who, sel, spec))
    return views.disk(row)


@router.get("/v1/disks/{disk}", response_model=models.Disk)
async def disk_view(request: Request, disk: str, project: str | None = None) -> models.Disk:
    sel = deps.required(disk, "disk")
    proj = deps.selector(project, "project")
    who = deps.caller(request)
    return views.disk(await deps.tx(request, lambda c: lookup.disk(c, who, sel, proj)))


@router.delete("/v1/disks/{disk}", status_code=204, response_class=Response)
async def disk_delete(request: Request, disk: str, project: str | None = None) -> Response:
    sel = deps.required(disk, "disk")
    proj = deps.selector(project, "project")
    who = deps.caller(request)
    await deps.tx(request, lambda c: disks.delete(c, who, sel, proj))
    return Response(status_code=204)


@router.get("/v1/instances/{instance}/disks", response_model=models.DiskResultsPage)
async def instance_disk_list(
    request: Request, query: paging.ByName, instance: str, project: str | None = None
) -> models.DiskResultsPage:
    inst_sel = deps.required(instance, "instance")
    proj = deps.selector(project, "project")
    ask = query.ask("instance-disks")
    who = deps.caller(request)
    page = await deps.tx(request, lambda c: disks.page_of_instance(c, who, inst_sel, proj, ask))
    return paging.results(models.DiskResultsPage, page, views.disk)


# disks.attach or disks.detach: (connection, caller, InstanceDisk, actor) in, the disk out.
# Its parameters are left unspelled: a route does not name the store's connection.
_Change = Callable[..., views.Row]


async def _change(
    request: Request, instance: str, project: str | None, disk: str, change: _Change
) -> models.Disk:
    """Attach or detach: resolve the selectors, change, answer with the disk as it stands."""
    inst_sel = deps.required(instance, "instance")
    proj = deps.selector(project, "project")
    who = deps.caller(request)
    named = disks.InstanceDisk(inst_sel, proj, disk)
    row = await deps.tx(request, lambda c: change(c, who, named, who.actor))
    return views.disk(row)


@router.post("/v1/instances/{instance}/disks/attach", status_code=202, response_model=models.Disk)
async def instance_disk_attach(
    request: Request, instance: str, body: models.DiskPath, project: str | None = None
) -> models.Disk:
    return await _change(request, instance, project, body.disk, disks.attach)


@router.post("/v1/instances/{instance}/disks/detach", status_code=202, response_model=models.Disk)
async def instance_disk_detach(
    request: Request, instance: str, body: models.DiskPath, project: str | None = None
) -> models.Disk:
    return await _change(request, instance, project, body.disk, disks.detach)
