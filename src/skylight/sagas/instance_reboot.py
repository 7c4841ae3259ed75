"""instance-reboot: reboot the VMM on its sled and wait for it to run again."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from skylight.events import reasons
from skylight.events.kinds import Kind
from skylight.instances.record import record
from skylight.sagas.definition import Action, ActionError, SagaContext, SagaDef
from skylight.store import instances

if TYPE_CHECKING:
    from skylight.controlplane import ControlPlane


async def reboot_vmm(ctx: SagaContext) -> None:
    cp: ControlPlane = ctx.services
    p = ctx.params
    agent = cp.sleds.agent(p["sled_id"])
    await ctx.tx(lambda c: instances.set_vmm_state(c, p["vmm_id"], "rebooting", "running"))
    await agent.reboot(p["vmm_id"])
    delay = 0.02
    while (state := await agent.vmm_state(p["vmm_id"])) != "running":
        if state is None:
            raise ActionError(
                reasons.make(
                    "vmm_failure",
                    "The instance's virtual machine disappeared while it rebooted.",
                    action="Start the instance again.",
                    internal={"vmm_id": p["vmm_id"], "sled_id": p["sled_id"]},
                ),
                "ServiceUnavailable",
            )
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def _done(conn: Connection, ctx: SagaContext) -> None:
    p = ctx.params
    instances.set_vmm_state(conn, p["vmm_id"], "running", "rebooting")
    record(conn, p["instance_id"], Kind.REBOOTED, p["actor"], operation_id=ctx.saga_id)


def _unwound(conn: Connection, ctx: SagaContext, reason: dict[str, Any]) -> None:
    cp: ControlPlane = ctx.services
    p = ctx.params
    cp.fail_instance_in(conn, p["instance_id"], p["vmm_id"], reason["code"], reason["message"])


SAGA = SagaDef(
    name="instance-reboot",
    actions=[Action("reboot_vmm", reboot_vmm)],
    on_done=_done,
    on_unwound=_unwound,
    on_stuck=_unwound,
)
