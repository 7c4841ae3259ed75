"""/v1/projects"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from skylight import lookup, projects
from skylight.api import deps, models, paging, views

router = APIRouter(tags=["projects"])


@router.get("/v1/projects", response_model=models.ProjectResultsPage)
async def project_list(request: Request, query: paging.ByName) -> models.ProjectResultsPage:
    req = query.ask("projects")()
    who = deps.caller(request)
    page = await deps.tx(request, lambda c: projects.page(c, who, req))
    return paging.results(models.ProjectResultsPage, page, views.project)


@router.post("/v1/projects", status_code=201, response_model=models.Project)
async def project_create(request: Request, body: models.ProjectCreate) -> models.Project:
    who = deps.caller(request)
    row = await deps.tx(request, lambda c: projects.create(c, who, body.name, body.description))
    return views.project(row)


@router.get("/v1/projects/{project}", response_model=models.Project)
async def project_view(request: Request, project: str) -> models.Project:
    sel = deps.required(project, "project")
    who = deps.caller(request)
    return views.project(await deps.tx(request, lambda c: lookup.project(c, who, sel)))


@router.put("/v1/projects/{project}", response_model=models.Project)
async def project_update(
    request: Request, project: str, body: models.ProjectUpdate
) -> models.Project:
    sel = deps.required(project, "project")
    who = deps.caller(request)
    row = await deps.tx(
        request,
        lambda c: projects.update(c, who, sel, name=body.name, description=body.description),
    )
    return views.project(row)


@router.delete("/v1/projects/{project}", status_code=204, response_class=Response)
async def project_delete(request: Request, project: str) -> Response:
    sel = deps.required(project, "project")
    who = deps.caller(request)
    await deps.tx(request, lambda c: projects.delete(c, who, sel))
    return Response(status_code=204)
