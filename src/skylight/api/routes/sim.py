"""/v1/system/sim: fault injection and power for the simulated rack (operators only)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends, Request, Response

from skylight.api import deps, models
from skylight.identity.access import Action
from skylight.operations import simulation
from skylight.sled.sim import Fault

# Fault injection is the fleet admin's (fleet viewers may list what is armed).
router = APIRouter(tags=["system/sim"], dependencies=[Depends(deps.fleet(Action.administer))])


@router.post("/v1/system/sim/faults", status_code=201, response_model=models.Fault)
async def sim_fault_create(request: Request, body: models.FaultCreate) -> models.Fault:
    asked = Fault(
        at=body.at,
        kind=body.kind,
        sled=body.sled or None,
        instance=body.instance,
        count=body.count,
        message=body.message,
    )
    return models.Fault(**asdict(await simulation.arm(deps.cp(request), asked)))


@router.get("/v1/system/sim/faults", response_model=models.FaultResultsPage)
async def sim_fault_list(request: Request) -> models.FaultResultsPage:
    faults = simulation.running(deps.cp(request)).faults()
    return models.FaultResultsPage(items=[models.Fault(**asdict(f)) for f in faults])


@router.delete("/v1/system/sim/faults/{fault_id}", status_code=204, response_class=Response)
async def sim_fault_delete(request: Request, fault_id: str) -> Response:
    simulation.disarm(deps.cp(request), fault_id)
    return Response(status_code=204)


@router.post("/v1/system/sim/sleds/{sled_id}/power-off", status_code=204, response_class=Response)
async def sim_sled_power_off(request: Request, sled_id: str) -> Response:
    await simulation.power(deps.cp(request), sled_id, on=False)
    return Response(status_code=204)


@router.post("/v1/system/sim/sleds/{sled_id}/power-on", status_code=204, response_class=Response)
async def sim_sled_power_on(request: Request, sled_id: str) -> Response:
    await simulation.power(deps.cp(request), sled_id, on=True)
    return Response(status_code=204)


@router.post("/v1/system/sim/instances/{instance}/crash", status_code=204, response_class=Response)
async def sim_instance_crash(
    request: Request, instance: str, project: str | None = None
) -> Response:
    sel = deps.required(instance, "instance")
    proj = deps.selector(project, "project")
    await simulation.crash(deps.cp(request), deps.caller(request), sel, proj)
    return Response(status_code=204)
