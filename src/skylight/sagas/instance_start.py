"""instance-start: reserve a sled, create the VMM, mark the instance, register, run.

Its end writes the outcome: ``instance.running``; or, unwound, ``instance.start_failed``
(``instance.auto_restart_failed`` for an automatic restart) with the reason, which becomes the
instance's ``status_reason``. A user's failed start leaves the instance stopped and its
intended state stopped; a failed automatic restart leaves it failed, never stopped. A user's
start during auto-restart that fails for a reason that may pass leaves auto-restart to carry
on, and its event says when it tries next (or, for a reason that will not pass, that
auto-restart stops).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import ClassVar

from sqlalchemy.engine import Connection

from skylight.clock import now
from skylight.errors import Conflict
from skylight.events import reasons
from skylight.events.kinds import Actor, Kind
from skylight.events.reasons import Reason
from skylight.ids import new_id
from skylight.instances import auto_restart, quota
from skylight.instances.failures import fail_instance_in
from skylight.instances.lock import locked
from skylight.instances.record import record
from skylight.placement import PlacementFailure, fits, place
from skylight.sagas.definition import Action, ActionError, SagaContext, SagaDef
from skylight.sagas.sled_errors import explainer
from skylight.services import Services
from skylight.sled.agent import SledAgent, VmmSpec
from skylight.store import instances, placement_inputs, sleds
from skylight.store.schema import instance
from skylight.wire import JsonObject


@dataclass(frozen=True)
class Params:
    saga: ClassVar[str] = "instance-start"
    instance_id: str
    project_id: str
    vmm_id: str
    ncpus: int
    memory: int
    cpu_platform: str | None
    reason: str  # why it starts: user, auto_start (create), auto_restart
    actor: Actor
    # A user's start of an instance that auto-restart was going to start again: should it
    # fail for a reason that may pass, auto-restart carries on as planned (and says so).
    during_auto_restart: bool = False


def declare() -> SagaDef[Params]:
    return SagaDef(
        Params,
        actions=[
            Action("reserve_sled", reserve_sled, undo_reserve_sled, output=Reserved),
            Action("create_vmm_record", create_vmm_record, undo_create_vmm_record),
            Action("mark_instance_starting", mark_instance_starting, undo_mark_instance_starting),
            Action("register_vmm", register_vmm, undo_register_vmm),
            Action("ensure_running", ensure_running),
        ],
        on_done=_running,  # instance.running (or failed, if the VMM died at boot)
        on_unwound=_start_failed,  # instance.start_failed / auto_restart_failed
        on_stuck=_stuck,  # failed, for operators
        explain=explainer(
            "The sled chosen for the instance stopped responding while it started.",
            "The instance's virtual machine failed while it was being started.",
            "Start the instance again; it will be placed afresh.",
        ),
    )


@dataclass(frozen=True)
class Reserved:
    """What reserve_sled did: the sled now holding the instance's resources."""

    sled_id: str


_PLACEMENT_ATTEMPTS = 8
Ctx = SagaContext[Params]


def begin_in(
    services: Services, conn: Connection, instance_id: str, actor: Actor, reason: str
) -> str | None:
    """Check that the instance can start and create its start saga, in ``conn``'s
    transaction (a user's start, the auto-restart loop, and the create saga's end, so that
    the start is durable the moment the instance exists). Returns the saga to wait on; None
    when the instance is already running or starting without one."""
    row = locked(conn, instance_id)
    pending = instances.running_saga(conn, instance_id, Params.saga)
    if pending is not None:
        return pending  # a start is already under way: answer with its outcome
    if row.state == "vmm":
        if row.vmm_state in ("stopping", "stopped"):
            raise Conflict("cannot start the instance while it is stopping")
        return None  # already running or starting
    if row.state == "creating":
        raise Conflict("cannot start the instance while it is being created")
    if row.state == "failed" and row.active_vmm_id is not None:
        raise Conflict("the instance has an operation that operators must resolve first")
    values: dict[str, object] = {"intended_state": "running"}
    during_auto_restart = (
        reason == "user" and row.state == "failed" and row.time_next_auto_restart is not None
    )
    if reason == "user" and not during_auto_restart:
        # A new start, a new story: the answer and the view must not carry the reason the
        # last one failed for as if this one had.
        values.update(status_event_id=None)
    if reason == "auto_restart":
        values.update(
            time_last_auto_restarted=now(),
            time_next_auto_restart=None,
            auto_restart_attempts=row.auto_restart_attempts + 1,
        )
    instances.update(conn, instance_id, **values)
    params = Params(
        instance_id=instance_id,
        project_id=row.project_id,
        vmm_id=new_id(),
        ncpus=row.ncpus,
        memory=row.memory,
        cpu_platform=row.cpu_platform,
        reason=reason,
        actor=actor,
        during_auto_restart=during_auto_restart,
    )
    saga_id = services.executor.create_in(conn, params, instance_id=instance_id)
    record(conn, instance_id, Kind.START_REQUESTED, actor, operation_id=saga_id)
    return saga_id


def _sled_id(ctx: Ctx) -> str:
    return ctx.output("reserve_sled", Reserved).sled_id


def _agent(ctx: Ctx) -> SledAgent:
    return ctx.services.sleds.agent(_sled_id(ctx))


def _rest_state(ctx: Ctx) -> str:
    """Where a failed start leaves the instance: failed for a restart (or a user's start
    during one), else stopped."""
    p = ctx.params
    return "failed" if p.reason == "auto_restart" or p.during_auto_restart else "no_vmm"


# -- reserve_sled ----------------------------------------------------------------------------


async def reserve_sled(ctx: Ctx) -> Reserved:
    """Place the instance and reserve its resources, in one transaction.

    Placement reads the rack (the replica's cached one, at most ``placement_rack_max_age``
    old), picks a sled, then locks that sled and re-checks it (and the instance's groups)
    before reserving: a concurrent start that took the room, or a rack that was stale, sends
    this one back to placement on a fresh read instead of overcommitting the sled. A refusal
    is always decided on a fresh read.
    """
    p = ctx.params
    rng = ctx.services.rng
    cache = ctx.services.rack_cache

    def reserve(conn: Connection) -> Reserved:
        existing = sleds.reservation(conn, p.vmm_id)
        if existing is not None:
            return Reserved(existing.sled_id)
        over_quota = quota.refusal(conn, p.instance_id, ncpus=p.ncpus, memory=p.memory)
        if over_quota is not None:
            raise ActionError(over_quota)
        for attempt in range(_PLACEMENT_ATTEMPTS):
            req = placement_inputs.request_for(
                conn, p.instance_id, ncpus=p.ncpus, memory=p.memory, cpu_platform=p.cpu_platform
            )
            rack, just_read = cache.get(conn, fresh=attempt > 0)
            result = place(req, rack, rng)
            if isinstance(result, PlacementFailure) and not just_read:
                result = place(req, cache.get(conn, fresh=True)[0], rng)
            if isinstance(result, PlacementFailure):
                raise ActionError(result.reason)
            fresh = sleds.lock_and_measure(conn, result.sled_id)
            if fresh is None or not fits(req, fresh):
                continue
            sleds.reserve(
                conn,
                reservation_id=p.vmm_id,
                sled_id=result.sled_id,
                instance_id=p.instance_id,
                cpus=req.ncpus,
                memory=req.memory,
                local_storage=req.local_storage,
            )
            detail = None
            if result.broken_preferences:
                detail = {"broken_preferences": list(result.broken_preferences)}
            record(
                conn, p.instance_id, Kind.PLACED, p.actor, operation_id=ctx.saga_id, detail=detail
            )
            return Reserved(result.sled_id)
        raise ActionError(
            reasons.make(
                "insufficient_capacity",
                "Capacity changed too quickly to reserve a sled; the rack is very busy.",
            )
        )

    return await ctx.tx(reserve)


async def undo_reserve_sled(ctx: Ctx) -> None:
    await ctx.tx(lambda conn: sleds.release(conn, ctx.params.vmm_id))


# -- create_vmm_record -----------------------------------------------------------------------


async def create_vmm_record(ctx: Ctx) -> None:
    p = ctx.params

    def write(conn: Connection) -> None:
        if instances.vmm_row(conn, p.vmm_id) is None:
            instances.insert_vmm(
                conn, vmm_id=p.vmm_id, instance_id=p.instance_id, sled_id=_sled_id(ctx)
            )

    await ctx.tx(write)


async def undo_create_vmm_record(ctx: Ctx) -> None:
    await ctx.tx(lambda conn: instances.set_vmm_state(conn, ctx.params.vmm_id, "saga_unwound"))


# -- mark_instance_starting ------------------------------------------------------------------


async def mark_instance_starting(ctx: Ctx) -> None:
    p = ctx.params

    def write(conn: Connection) -> None:
        changed = instances.update(
            conn,
            p.instance_id,
            instance.c.active_vmm_id.is_(None),
            instance.c.state.in_(("no_vmm", "failed")),
            instance.c.time_deleted.is_(None),
            state="vmm",
            active_vmm_id=p.vmm_id,
        )
        if changed:
            return
        row = instances.by_id(conn, p.instance_id)
        if row is not None and row.active_vmm_id == p.vmm_id:
            return  # replayed
        raise ActionError(
            reasons.make(
                "instance_changed_state",
                "The instance changed state while it was being started (another operation "
                "got there first).",
            )
        )

    await ctx.tx(write)


async def undo_mark_instance_starting(ctx: Ctx) -> None:
    p = ctx.params

    def write(conn: Connection) -> None:
        instances.update(
            conn,
            p.instance_id,
            instance.c.active_vmm_id == p.vmm_id,
            state=_rest_state(ctx),
            active_vmm_id=None,
        )

    await ctx.tx(write)


# -- register_vmm ----------------------------------------------------------------------------


async def register_vmm(ctx: Ctx) -> None:
    p = ctx.params
    await _agent(ctx).register(VmmSpec(p.vmm_id, p.instance_id, p.ncpus, p.memory))


async def undo_register_vmm(ctx: Ctx) -> None:
    await _agent(ctx).unregister(ctx.params.vmm_id)


# -- ensure_running --------------------------------------------------------------------------


async def ensure_running(ctx: Ctx) -> None:
    """Ask the sled to boot the VMM, then wait until it says ``running``."""
    vmm_id = ctx.params.vmm_id
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
                    internal={"vmm_id": vmm_id, "sled_id": _sled_id(ctx)},
                )
            )
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.5)


# -- the end ---------------------------------------------------------------------------------


def _running(conn: Connection, ctx: Ctx) -> None:
    p = ctx.params
    if instances.set_vmm_state(conn, p.vmm_id, "running", "creating", "starting"):
        # First successful start: its local disks now live on this sled for good.
        placement_inputs.allocate_local_disks(conn, p.instance_id, _sled_id(ctx))
        sleds.settle_local_storage(conn, p.vmm_id)
        instances.update(
            conn,
            p.instance_id,
            status_event_id=None,
            time_next_auto_restart=None,
            auto_restart_attempts=0,
        )
        record(conn, p.instance_id, Kind.RUNNING, p.actor, operation_id=ctx.saga_id)
        return
    vmm = instances.vmm_row(conn, p.vmm_id)
    if vmm is not None and vmm.state == "failed":
        # The VMM died between booting and this transaction: report it as any VMM failure.
        settings = ctx.services.settings
        fail_instance_in(conn, settings, p.instance_id, p.vmm_id, "vmm_failure", "lost at boot")


def _start_failed(conn: Connection, ctx: Ctx, reason: Reason) -> None:
    p = ctx.params
    row = instances.by_id(conn, p.instance_id)
    if row is None:
        return
    at_rest = row.active_vmm_id is None or row.active_vmm_id == p.vmm_id
    restart = p.reason == "auto_restart"
    # A user's start during auto-restart that failed for a reason that may pass leaves the
    # instance to auto-restart, as it was; any other failed user start leaves it stopped.
    keeps_restarting = p.during_auto_restart and bool(reason.get("transient"))
    if at_rest:
        values: dict[str, object] = {"state": _rest_state(ctx), "active_vmm_id": None}
        if not restart and not keeps_restarting:
            values.update(state="no_vmm", intended_state="stopped", time_next_auto_restart=None)
        instances.update(conn, p.instance_id, **values)
    if restart and at_rest:
        auto_restart.after_failed_attempt(
            conn, ctx.services.settings, p.instance_id, ctx.saga_id, reason
        )
        return
    detail = None
    if p.during_auto_restart and at_rest:
        detail = auto_restart.after_failed_user_start(
            conn, ctx.services.settings, p.instance_id, keeps_restarting=keeps_restarting
        )
    _record_failure(conn, ctx, reason, explains_status=at_rest, detail=detail)


def _stuck(conn: Connection, ctx: Ctx, reason: Reason) -> None:
    instances.update(conn, ctx.params.instance_id, state="failed")
    _record_failure(conn, ctx, reason, explains_status=True)


def _record_failure(
    conn: Connection,
    ctx: Ctx,
    reason: Reason,
    *,
    explains_status: bool,
    detail: JsonObject | None = None,
) -> None:
    p = ctx.params
    kind = Kind.AUTO_RESTART_FAILED if p.reason == "auto_restart" else Kind.START_FAILED
    record(
        conn,
        p.instance_id,
        kind,
        p.actor,
        operation_id=ctx.saga_id,
        reason=reason,
        detail=detail,
        explains_status=explains_status,
    )


SAGA = declare()
