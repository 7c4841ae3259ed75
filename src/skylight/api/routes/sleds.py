"""/v1/system/hardware/sleds"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from skylight.api import deps, models, paging, views
from skylight.identity.access import Action
from skylight.lookup import require_uuid
from skylight.operations import sleds

router = APIRouter(tags=["system/hardware"], dependencies=[Depends(deps.fleet(Action.modify))])


@router.get("/v1/system/hardware/sleds", response_model=models.SledResultsPage)
async def sled_list(request: Request, query: paging.ById) -> models.SledResultsPage:
    req = query.ask("sleds")()
    page = await deps.tx(request, lambda c: sleds.page(c, req))
    return paging.results(models.SledResultsPage, page, views.sled)


@router.get("/v1/system/hardware/sleds/{sled_id}", response_model=models.Sled)
async def sled_view(request: Request, sled_id: str) -> models.Sled:
    sid = require_uuid(sled_id, "sled_id")
    return views.sled(await deps.tx(request, lambda c: sleds.view(c, sid)))


@router.get(
    "/v1/system/hardware/sleds/{sled_id}/instances", response_model=models.SledInstanceResultsPage
)
async def sled_instance_list(
    request: Request, query: paging.ById, sled_id: str
) -> models.SledInstanceResultsPage:
    sid = require_uuid(sled_id, "sled_id")
    req = query.ask("sled-instances")(sid)
    page = await deps.tx(request, lambda c: sleds.instances_on(c, sid, req))
    return paging.results(models.SledInstanceResultsPage, page, views.sled_instance)


@router.put(
    "/v1/system/hardware/sleds/{sled_id}/provision-policy",
    response_model=models.SledProvisionPolicyResponse,
)
async def sled_set_provision_policy(
    request: Request, sled_id: str, body: models.SledProvisionPolicyParams
) -> models.SledProvisionPolicyResponse:
    sid = require_uuid(sled_id, "sled_id")
    change = await deps.tx(request, lambda c: sleds.set_provision_policy(c, sid, body.state))
    return models.SledProvisionPolicyResponse(old_state=change.old, new_state=change.new)


@router.post("/v1/system/hardware/sleds/{sled_id}/expunge", response_model=models.Sled)
async def sled_expunge(request: Request, sled_id: str) -> models.Sled:
    """Skylight: the sled leaves service for good; the instances on it fail (and are
    restarted elsewhere if their policy allows)."""
    sid = require_uuid(sled_id, "sled_id")
    return views.sled(await sleds.expunge(deps.cp(request), sid))
