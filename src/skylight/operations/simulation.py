"""What operators do to the simulated rack: arm and disarm faults, power its sleds off and
on, crash an instance's VMM. Every sled and instance named must exist, so that a fault never
waits for something that cannot come."""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from skylight import lookup
from skylight.errors import InvalidRequest, NotFound, ServiceUnavailable
from skylight.identity.access import SYSTEM, Caller
from skylight.ids import parse_uuid
from skylight.lookup import require_uuid
from skylight.operations import sleds
from skylight.services import Services
from skylight.sled.sim import Fault, SimRack


class SimServices(Services, Protocol):
    """A replica's services and its simulated rack, if it runs one."""

    @property
    def rack(self) -> SimRack | None: ...


def running(services: SimServices) -> SimRack:
    if services.rack is None:
        raise ServiceUnavailable("this control plane runs no simulated rack (--no-sim)")
    return services.rack


async def _known_sled(services: Services, sled_id: str) -> str:
    sid = require_uuid(sled_id, "sled")
    await services.store.tx(lambda c: sleds.get(c, sid))
    return sid


async def arm(services: SimServices, fault: Fault) -> Fault:
    """Arm ``fault``; its sled and instance (ids only) must exist."""
    sim = running(services)
    sled = await _known_sled(services, fault.sled) if fault.sled else None
    instance = None
    if fault.instance is not None:
        sel = require_uuid(fault.instance, "instance")
        instance = (await services.store.tx(lambda c: lookup.instance(c, SYSTEM, sel, None))).id
    return sim.arm(replace(fault, sled=sled, instance=instance))


def disarm(services: SimServices, fault_id: str) -> None:
    if not running(services).disarm(fault_id):
        raise NotFound.by_id("fault", fault_id)


async def power(services: SimServices, sled_id: str, *, on: bool) -> None:
    sim = running(services)
    sid = await _known_sled(services, sled_id)
    await (sim.power_on(sid) if on else sim.power_off(sid))


async def crash(
    services: SimServices, caller: Caller, selector: str, project_selector: str | None
) -> None:
    """Crash the instance's VMM, as if it died on its own: any instance by id (fault
    injection is the fleet admin's), by name one of the caller's silo."""
    who = SYSTEM if parse_uuid(selector) else caller
    row = await services.store.tx(lambda c: lookup.instance(c, who, selector, project_selector))
    if not await running(services).crash_instance(row.id):
        raise InvalidRequest("the instance has no running VMM to crash")
