"""/v1/instances and an instance's events."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from fastapi import APIRouter, Request, Response

from skylight import lookup
from skylight.api import deps, models, paging, views
from skylight.events.kinds import Actor
from skylight.events.reasons import redact
from skylight.identity.access import Action
from skylight.instances import explain
from skylight.operations import event_history
from skylight.operations import instances as operations
from skylight.services import Services

router = APIRouter(tags=["instances"])


class _Action(Protocol):
    """An operation on one instance that answers with the instance (start, stop, reboot)."""

    def __call__(
        self, services: Services, instance_id: str, actor: Actor, *, wait: float
    ) -> Awaitable[views.Row]: ...


def _view(request: Request, row: views.Row) -> models.Instance:
    cp = deps.cp(request)
    return views.instance(
        row, operator=deps.is_operator(request), cooldown=cp.settings.auto_restart_cooldown
    )


async def _resolve(
    request: Request, instance: str, project: str | None, need: Action = Action.read
) -> views.Row:
    sel = deps.required(instance, "instance")
    proj = deps.selector(project, "project")
    who = deps.caller(request)
    return await deps.tx(request, lambda c: lookup.instance(c, who, sel, proj, need))


def _wait(request: Request) -> float:
    return 0.0 if deps.wants_async(request) else deps.cp(request).settings.start_wait


@router.get("/v1/instances", response_model=models.InstanceResultsPage)
async def instance_list(
    request: Request, query: paging.ByName, project: str | None = None
) -> models.InstanceResultsPage:
    sel = deps.required(project, "project")
    ask = query.ask("instances")
    who = deps.caller(request)
    page = await deps.tx(request, lambda c: operations.page(c, who, sel, ask))
    return paging.results(models.InstanceResultsPage, page, lambda r: _view(request, r))


@router.post("/v1/instances", status_code=201, response_model=models.Instance)
async def instance_create(
    request: Request, body: models.InstanceCreate, project: str | None = None
) -> models.Instance:
    sel = deps.required(project, "project")
    row = await operations.create(
        deps.cp(request), deps.caller(request), sel, body.model_dump(), wait=_wait(request)
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
    row = await _resolve(request, instance, project, Action.modify)
    changes = body.model_dump(exclude={"multicast_groups"})  # boot_disk: resolved in the update
    new = await operations.update_instance(deps.cp(request), row.id, changes, deps.actor(request))
    return _view(request, new)


@router.delete("/v1/instances/{instance}", status_code=204, response_class=Response)
async def instance_delete(request: Request, instance: str, project: str | None = None) -> Response:
    row = await _resolve(request, instance, project, Action.modify)
    await operations.delete_instance(deps.cp(request), row.id, deps.actor(request))
    return Response(status_code=204)


async def _act(
    request: Request, instance: str, project: str | None, do: _Action
) -> models.Instance:
    """Start, stop or reboot: resolve the instance, ask, answer with it as it stands."""
    row = await _resolve(request, instance, project, Action.modify)
    actor = deps.actor(request)
    return _view(request, await do(deps.cp(request), row.id, actor, wait=_wait(request)))


@router.post("/v1/instances/{instance}/start", status_code=202, response_model=models.Instance)
async def instance_start(
    request: Request, instance: str, project: str | None = None
) -> models.Instance:
    return await _act(request, instance, project, operations.user_start)


@router.post("/v1/instances/{instance}/stop", status_code=202, response_model=models.Instance)
async def instance_stop(
    request: Request, instance: str, project: str | None = None
) -> models.Instance:
    return await _act(request, instance, project, operations.stop_instance)


@router.post("/v1/instances/{instance}/reboot", status_code=202, response_model=models.Instance)
async def instance_reboot(
    request: Request, instance: str, project: str | None = None
) -> models.Instance:
    return await _act(request, instance, project, operations.reboot_instance)


@router.get("/v1/instances/{instance}/events", response_model=models.InstanceEventResultsPage)
async def instance_event_list(
    request: Request, query: paging.Events, instance: str, project: str | None = None
) -> models.InstanceEventResultsPage:
    sel = deps.required(instance, "instance")
    proj = deps.selector(project, "project")
    flt, ask = query.filter(), query.ask("events")
    who = deps.caller(request)
    page = await deps.tx(
        request, lambda c: event_history.instance_page(c, who, sel, proj, flt, ask)
    )
    operator = deps.is_operator(request)
    return paging.results(
        models.InstanceEventResultsPage, page, lambda r: views.event(r, operator=operator)
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
