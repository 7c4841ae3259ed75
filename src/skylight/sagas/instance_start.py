"""instance-start: reserve a sled, create the VMM, mark the instance, register, run.

Its end writes the outcome: ``instance.running``; or, unwound, ``instance.start_failed``
(``instance.auto_restart_failed`` for an automatic restart) with the reason, which becomes the
instance's ``status_reason``. A user's failed start leaves the instance stopped and its
intended state stopped; a failed automatic restart leaves it failed, never stopped.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from skylight.background import auto_restart
from skylight.events import reasons
from skylight.events.kinds import Kind
from skylight.instances.record import record
from skylight.placement import PlacementFailure, fits, place
from skylight.sagas.definition import Action, ActionError, SagaContext, SagaDef
from skylight.sled.agent import SledAgent, VmmSpec
from skylight.store import instances, placement_inputs, sleds
from skylight.store.schema import instance

if TYPE_CHECKING:
    from skylight.controlplane import ControlPlane

_PLACEMENT_ATTEMPTS = 8


def _cp(ctx: SagaContext) -> ControlPlane:
    return ctx.services


def _agent(ctx: SagaContext) -> SledAgent:
    return _cp(ctx).sleds.agent(ctx.outputs["reserve_sled"]["sled_id"])


def _rest_state(ctx: SagaContext) -> str:
    """Where a failed start leaves the instance: failed for a restart, else stopped."""
    return "failed" if ctx.params["reason"] == "auto_restart" else "no_vmm"


# -- reserve_sled ----------------------------------------------------------------------------


async def reserve_sled(ctx: SagaContext) -> dict[str, Any]:
    """Place the instance and reserve its resources, in one transaction.

    Placement reads the rack (the replica's cached one, at most ``placement_rack_max_age``
    old), picks a sled, then locks that sled and re-checks it (and the instance's groups)
    before reserving: a concurrent start that took the room, or a rack that was stale, sends
    this one back to placement on a fresh read instead of overcommitting the sled. A refusal
    is always decided on a fresh read.
    """
    p = ctx.params
    rng = _cp(ctx).rng
    cache = _cp(ctx).rack_cache

    def reserve(conn: Connection) -> dict[str, Any]:
        existing = sleds.reservation(conn, p["vmm_id"])
        if existing is not None:
            return {"sled_id": existing.sled_id}
        for attempt in range(_PLACEMENT_ATTEMPTS):
            req = placement_inputs.request_for(
                conn,
                p["instance_id"],
                ncpus=p["ncpus"],
                memory=p["memory"],
                cpu_platform=p.get("cpu_platform"),
            )
            rack, just_read = cache.get(conn, fresh=attempt > 0)
            result = place(req, rack, rng)
            if isinstance(result, PlacementFailure) and not just_read:
                result = place(req, cache.get(conn, fresh=True)[0], rng)
            if isinstance(result, PlacementFailure):
                raise ActionError(result.reason, "InsufficientCapacity")
            fresh = sleds.lock_and_measure(conn, result.sled_id)
            if fresh is None or not fits(req, fresh):
                continue
            sleds.reserve(
                conn,
                reservation_id=p["vmm_id"],
                sled_id=result.sled_id,
                instance_id=p["instance_id"],
                cpus=req.ncpus,
                memory=req.memory,
                local_storage=req.local_storage,
            )
            detail = None
            if result.broken_preferences:
                detail = {"broken_preferences": list(result.broken_preferences)}
            record(
                conn,
                p["instance_id"],
                Kind.PLACED,
                p["actor"],
                operation_id=ctx.saga_id,
                detail=detail,
            )
            return {"sled_id": result.sled_id}
        raise ActionError(
            reasons.make(
                "insufficient_capacity",
                "Capacity changed too quickly to reserve a sled; the rack is very busy.",
            ),
            "InsufficientCapacity",
        )

    return await ctx.tx(reserve)


async def undo_reserve_sled(ctx: SagaContext) -> None:
    await ctx.tx(lambda conn: sleds.release(conn, ctx.params["vmm_id"]))


# -- create_vmm_record -----------------------------------------------------------------------


async def create_vmm_record(ctx: SagaContext) -> None:
    p = ctx.params

    def write(conn: Connection) -> None:
        if instances.vmm_row(conn, p["vmm_id"]) is None:
            instances.insert_vmm(
                conn,
                vmm_id=p["vmm_id"],
                instance_id=p["instance_id"],
                sled_id=ctx.outputs["reserve_sled"]["sled_id"],
            )

    await ctx.tx(write)


async def undo_create_vmm_record(ctx: SagaContext) -> None:
    await ctx.tx(lambda conn: instances.set_vmm_state(conn, ctx.params["vmm_id"], "saga_unwound"))


# -- mark_instance_starting ------------------------------------------------------------------


async def mark_instance_starting(ctx: SagaContext) -> None:
    p = ctx.params

    def write(conn: Connection) -> None:
        changed = instances.update(
            conn,
            p["instance_id"],
            instance.c.active_vmm_id.is_(None),
            instance.c.state.in_(("no_vmm", "failed")),
            instance.c.time_deleted.is_(None),
            state="vmm",
            active_vmm_id=p["vmm_id"],
        )
        if changed:
            return
        row = instances.by_id(conn, p["instance_id"])
        if row is not None and row.active_vmm_id == p["vmm_id"]:
            return  # replayed
        raise ActionError(
            reasons.make(
                "instance_changed_state",
                "The instance changed state while it was being started (another operation "
                "got there first).",
            ),
            "Conflict",
        )

    await ctx.tx(write)


async def undo_mark_instance_starting(ctx: SagaContext) -> None:
    p = ctx.params

    def write(conn: Connection) -> None:
        instances.update(
            conn,
            p["instance_id"],
            instance.c.active_vmm_id == p["vmm_id"],
            state=_rest_state(ctx),
            active_vmm_id=None,
        )

    await ctx.tx(write)


# -- register_vmm ----------------------------------------------------------------------------


async def register_vmm(ctx: SagaContext) -> None:
    p = ctx.params
    spec = VmmSpec(p["vmm_id"], p["instance_id"], p["ncpus"], p["memory"])
    await _agent(ctx).register(spec)


async def undo_register_vmm(ctx: SagaContext) -> None:
    await _agent(ctx).unregister(ctx.params["vmm_id"])


# -- ensure_running --------------------------------------------------------------------------


async def ensure_running(ctx: SagaContext) -> None:
    """Ask the sled to boot the VMM, then wait until it says ``running``."""
    vmm_id = ctx.params["vmm_id"]
    agent = _agent(ctx)
    await agent.ensure_running(vmm_id)
    await ctx.tx(lambda conn: instances.set_vmm_state(conn, vmm_id, "starting", "creating"))
    delay = 0.02
    while True:
        state = await agent.vmm_state(vmm_id)
        if state == "running":
            return
        if state is None:
            raise ActionError(
                reasons.make(
                    "vmm_failure",
                    "The instance's virtual machine disappeared while it was booting.",
                    action="Start the instance again.",
                    internal={"vmm_id": vmm_id, "sled_id": ctx.outputs["reserve_sled"]["sled_id"]},
                ),
                "ServiceUnavailable",
            )
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.5)


# -- the end ---------------------------------------------------------------------------------


def _done(conn: Connection, ctx: SagaContext) -> None:
    p = ctx.params
    cp = _cp(ctx)
    if instances.set_vmm_state(conn, p["vmm_id"], "running", "creating", "starting"):
        # First successful start: its local disks now live on this sled for good.
        sled_id = ctx.outputs["reserve_sled"]["sled_id"]
        placement_inputs.allocate_local_disks(conn, p["instance_id"], sled_id)
        sleds.settle_local_storage(conn, p["vmm_id"])
        instances.update(
            conn,
            p["instance_id"],
            status_event_id=None,
            time_next_auto_restart=None,
            auto_restart_attempts=0,
        )
        record(conn, p["instance_id"], Kind.RUNNING, p["actor"], operation_id=ctx.saga_id)
        return
    vmm = instances.vmm_row(conn, p["vmm_id"])
    if vmm is not None and vmm.state == "failed":
        # The VMM died between booting and this transaction: report it as any VMM failure.
        cp.fail_instance_in(conn, p["instance_id"], p["vmm_id"], "vmm_failure", "lost at boot")


def _unwound(conn: Connection, ctx: SagaContext, reason: dict[str, Any]) -> None:
    p = ctx.params
    row = instances.by_id(conn, p["instance_id"])
    if row is None:
        return
    at_rest = row.active_vmm_id is None or row.active_vmm_id == p["vmm_id"]
    restart = p["reason"] == "auto_restart"
    if at_rest:
        values: dict[str, Any] = {"state": _rest_state(ctx), "active_vmm_id": None}
        if not restart:
            values["intended_state"] = "stopped"
        instances.update(conn, p["instance_id"], **values)
    if restart and at_rest:
        auto_restart.after_failed_attempt(
            conn, _cp(ctx).settings, p["instance_id"], ctx.saga_id, reason
        )
        return
    kind = Kind.AUTO_RESTART_FAILED if restart else Kind.START_FAILED
    record(
        conn,
        p["instance_id"],
        kind,
        p["actor"],
        operation_id=ctx.saga_id,
        reason=reason,
        explains_status=at_rest,
    )


def _stuck(conn: Connection, ctx: SagaContext, reason: dict[str, Any]) -> None:
    p = ctx.params
    instances.update(conn, p["instance_id"], state="failed")
    kind = Kind.AUTO_RESTART_FAILED if p["reason"] == "auto_restart" else Kind.START_FAILED
    record(
        conn,
        p["instance_id"],
        kind,
        p["actor"],
        operation_id=ctx.saga_id,
        reason=reason,
        explains_status=True,
    )


SAGA = SagaDef(
    name="instance-start",
    actions=[
        Action("reserve_sled", reserve_sled, undo_reserve_sled),
        Action("create_vmm_record", create_vmm_record, undo_create_vmm_record),
        Action("mark_instance_starting", mark_instance_starting, undo_mark_instance_starting),
        Action("register_vmm", register_vmm, undo_register_vmm),
        Action("ensure_running", ensure_running),
    ],
    on_done=_done,
    on_unwound=_unwound,
    on_stuck=_stuck,
)
