"""/v1/system/sim: fault injection and power for the simulated rack (operators only)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request, Response

from skylight import lookup
from skylight.api import deps, models
from skylight.errors import InvalidRequest, NotFound, ServiceUnavailable
from skylight.ids import parse_uuid
from skylight.sled.sim import Fault, SimRack
from skylight.store import sleds

router = APIRouter(tags=["system/sim"])


def _rack(request: Request) -> SimRack:
    rack = deps.cp(request).rack
    if rack is None:
        raise ServiceUnavailable("this control plane runs no simulated rack (--no-sim)")
    return rack


async def _known_sled(request: Request, sled_id: str) -> str:
    if parse_uuid(sled_id) is None:
        raise InvalidRequest(f"sled: not a UUID: {sled_id!r}")
    sid = sled_id.lower()
    row = await deps.cp(request).store.tx(lambda c: sleds.get(c, sid))
    if row is None:
        raise NotFound.by_id("sled", sid)
    return sid


@router.post("/v1/system/sim/faults", status_code=201, response_model=models.Fault)
async def sim_fault_create(request: Request, body: models.FaultCreate) -> models.Fault:
    rack = _rack(request)
    sled = await _known_sled(request, body.sled) if body.sled else None
    instance = None
    if body.instance is not None:
        if parse_uuid(body.instance) is None:
            raise InvalidRequest(f"instance: not a UUID: {body.instance!r}")
        sel = body.instance.lower()
        instance = (await deps.cp(request).store.tx(lambda c: lookup.instance(c, sel, None))).id
    fault = rack.arm(
        Fault(
            at=body.at,
            kind=body.kind,
            sled=sled,
            instance=instance,
            count=body.count,
            message=body.message,
        )
    )
    return models.Fault(**asdict(fault))


@router.get("/v1/system/sim/faults", response_model=models.FaultResultsPage)
async def sim_fault_list(request: Request) -> models.FaultResultsPage:
    return models.FaultResultsPage(
        items=[models.Fault(**asdict(f)) for f in _rack(request).faults()]
    )


@router.delete("/v1/system/sim/faults/{fault_id}", status_code=204, response_class=Response)
async def sim_fault_delete(request: Request, fault_id: str) -> Response:
    if not _rack(request).disarm(fault_id):
        raise NotFound.by_id("fault", fault_id)
    return Response(status_code=204)


@router.post("/v1/system/sim/sleds/{sled_id}/power-off", status_code=204, response_class=Response)
async def sim_sled_power_off(request: Request, sled_id: str) -> Response:
    await _rack(request).power_off(await _known_sled(request, sled_id))
    return Response(status_code=204)


@router.post("/v1/system/sim/sleds/{sled_id}/power-on", status_code=204, response_class=Response)
async def sim_sled_power_on(request: Request, sled_id: str) -> Response:
    await _rack(request).power_on(await _known_sled(request, sled_id))
    return Response(status_code=204)


@router.post("/v1/system/sim/instances/{instance}/crash", status_code=204, response_class=Response)
async def sim_instance_crash(
    request: Request, instance: str, project: str | None = None
) -> Response:
    sel = deps.required(instance, "instance")
    proj = deps.selector(project, "project")
    row: Any = await deps.cp(request).store.tx(lambda c: lookup.instance(c, sel, proj))
    if not await _rack(request).crash_instance(row.id):
        raise InvalidRequest("the instance has no running VMM to crash")
    return Response(status_code=204)
