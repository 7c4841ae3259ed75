"""instance-stop: mark the VMM stopping, stop it on its sled; the end frees its resources.

The release of the reservation, the VMM record and the ``instance.stopped`` event share the
saga's final transaction, so a stopped instance never holds sled resources. A stop that
cannot be carried out leaves the instance running, and says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sqlalchemy.engine import Connection

from skylight.events.kinds import Kind
from skylight.events.reasons import Reason
from skylight.instances.record import record
from skylight.sagas.definition import Action, SagaContext, SagaDef, VmmParams
from skylight.sagas.sled_errors import explainer
from skylight.store import instances, sleds
from skylight.store.schema import instance


@dataclass(frozen=True)
class Params(VmmParams):
    saga: ClassVar[str] = "instance-stop"


def declare() -> SagaDef[Params]:
    return SagaDef(
        Params,
        actions=[
            Action("mark_stopping", mark_stopping, undo_mark_stopping),
            Action("stop_vmm", stop_vmm),
        ],
        on_done=_stopped,  # instance.stopped; resources freed
        on_unwound=_still_running,  # instance.running, with why it could not stop
        on_stuck=_still_running,
        explain=explainer(
            "The sled of the instance did not answer the request to stop it.",
            "The instance's virtual machine failed to stop.",
            "Try stopping it again.",
        ),
    )


Ctx = SagaContext[Params]


async def mark_stopping(ctx: Ctx) -> None:
    vmm_id = ctx.params.vmm_id
    await ctx.tx(lambda c: instances.set_vmm_state(c, vmm_id, "stopping", "running", "rebooting"))


async def undo_mark_stopping(ctx: Ctx) -> None:
    vmm_id = ctx.params.vmm_id
    await ctx.tx(lambda c: instances.set_vmm_state(c, vmm_id, "running", "stopping"))


async def stop_vmm(ctx: Ctx) -> None:
    await ctx.services.sleds.agent(ctx.params.sled_id).stop(ctx.params.vmm_id)


def _stopped(conn: Connection, ctx: Ctx) -> None:
    p = ctx.params
    instances.set_vmm_state(conn, p.vmm_id, "destroyed")
    sleds.release(conn, p.vmm_id)
    instances.update(
        conn,
        p.instance_id,
        instance.c.active_vmm_id == p.vmm_id,
        state="no_vmm",
        active_vmm_id=None,
        status_event_id=None,
    )
    record(conn, p.instance_id, Kind.STOPPED, p.actor, operation_id=ctx.saga_id)


def _still_running(conn: Connection, ctx: Ctx, reason: Reason) -> None:
    p = ctx.params
    shown = dict(reason)
    shown["message"] = f"The instance could not be stopped: {reason['message']}"
    shown["action"] = "Try stopping it again."
    record(
        conn,
        p.instance_id,
        Kind.RUNNING,
        p.actor,
        operation_id=ctx.saga_id,
        reason=shown,
        severity="error",
        explains_status=True,
    )


SAGA = declare()
