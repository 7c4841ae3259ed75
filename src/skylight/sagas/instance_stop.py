"""instance-stop: mark the VMM stopping, stop it on its sled; the end frees its resources.

The release of the reservation, the VMM record and the ``instance.stopped`` event share the
saga's final transaction, so a stopped instance never holds sled resources.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from skylight.events.kinds import Kind
from skylight.instances.record import record
from skylight.sagas.definition import Action, SagaContext, SagaDef
from skylight.store import instances, sleds
from skylight.store.schema import instance

if TYPE_CHECKING:
    from skylight.controlplane import ControlPlane


def _cp(ctx: SagaContext) -> ControlPlane:
    return ctx.services


async def mark_stopping(ctx: SagaContext) -> None:
    vmm_id = ctx.params["vmm_id"]
    await ctx.tx(lambda c: instances.set_vmm_state(c, vmm_id, "stopping", "running", "rebooting"))


async def undo_mark_stopping(ctx: SagaContext) -> None:
    vmm_id = ctx.params["vmm_id"]
    await ctx.tx(lambda c: instances.set_vmm_state(c, vmm_id, "running", "stopping"))


async def stop_vmm(ctx: SagaContext) -> None:
    await _cp(ctx).sleds.agent(ctx.params["sled_id"]).stop(ctx.params["vmm_id"])


def _done(conn: Connection, ctx: SagaContext) -> None:
    p = ctx.params
    instances.set_vmm_state(conn, p["vmm_id"], "destroyed")
    sleds.release(conn, p["vmm_id"])
    instances.update(
        conn,
        p["instance_id"],
        instance.c.active_vmm_id == p["vmm_id"],
        state="no_vmm",
        active_vmm_id=None,
        status_event_id=None,
    )
    record(conn, p["instance_id"], Kind.STOPPED, p["actor"], operation_id=ctx.saga_id)


def _unwound(conn: Connection, ctx: SagaContext, reason: dict[str, Any]) -> None:
    p = ctx.params
    shown = dict(reason)
    shown["message"] = f"The instance could not be stopped: {reason['message']}"
    shown["action"] = "Try stopping it again."
    record(
        conn,
        p["instance_id"],
        Kind.RUNNING,
        p["actor"],
        operation_id=ctx.saga_id,
        reason=shown,
        severity="error",
        explains_status=True,
    )


SAGA = SagaDef(
    name="instance-stop",
    actions=[
        Action("mark_stopping", mark_stopping, undo_mark_stopping),
        Action("stop_vmm", stop_vmm),
    ],
    on_done=_done,
    on_unwound=_unwound,
    on_stuck=_unwound,
)
