"""instance-reboot: reboot the VMM on its sled and wait for it to run again. A reboot that
fails leaves the VMM gone: the instance fails as any VMM failure does (and auto-restart may
start it again)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import ClassVar

from sqlalchemy.engine import Connection

from skylight.events import reasons
from skylight.events.kinds import Kind
from skylight.events.reasons import Reason
from skylight.instances.failures import fail_instance_in
from skylight.instances.record import record
from skylight.sagas.definition import Action, ActionError, SagaContext, SagaDef, VmmParams
from skylight.sagas.sled_errors import explainer
from skylight.store import instances


@dataclass(frozen=True)
class Params(VmmParams):
    saga: ClassVar[str] = "instance-reboot"


def declare() -> SagaDef[Params]:
    return SagaDef(
        Params,
        actions=[Action("reboot_vmm", reboot_vmm)],
        on_done=_rebooted,  # instance.rebooted
        on_unwound=_failed,  # instance.failed
        on_stuck=_failed,
        explain=explainer(
            "The sled of the instance stopped responding while it rebooted.",
            "The instance's virtual machine failed while it rebooted.",
            "Start the instance again.",
        ),
    )


Ctx = SagaContext[Params]


async def reboot_vmm(ctx: Ctx) -> None:
    p = ctx.params
    agent = ctx.services.sleds.agent(p.sled_id)
    await ctx.tx(lambda c: instances.set_vmm_state(c, p.vmm_id, "rebooting", "running"))
    await agent.reboot(p.vmm_id)
    delay = 0.02
    while (state := await agent.vmm_state(p.vmm_id)) != "running":
        if state is None:
            raise ActionError(
                reasons.make(
                    "vmm_failure",
                    "The instance's virtual machine disappeared while it rebooted.",
                    action="Start the instance again.",
                    internal={"vmm_id": p.vmm_id, "sled_id": p.sled_id},
                )
            )
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def _rebooted(conn: Connection, ctx: Ctx) -> None:
    p = ctx.params
    instances.set_vmm_state(conn, p.vmm_id, "running", "rebooting")
    record(conn, p.instance_id, Kind.REBOOTED, p.actor, operation_id=ctx.saga_id)


def _failed(conn: Connection, ctx: Ctx, reason: Reason) -> None:
    p = ctx.params
    settings = ctx.services.settings
    fail_instance_in(conn, settings, p.instance_id, p.vmm_id, reason["code"], reason["message"])


SAGA = declare()
