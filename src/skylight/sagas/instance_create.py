"""instance-create: write the instance record; its end writes ``instance.created`` and, for
an instance created with ``start: true``, begins its start in the same transaction.

An unwound create leaves nothing behind: the instance never existed for anyone, and the
caller who waits for it gets the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight import disks, groups
from skylight.clock import now
from skylight.errors import SkylightError
from skylight.events import reasons
from skylight.events.kinds import Actor, Kind, control_plane
from skylight.instances.record import record
from skylight.sagas import instance_start
from skylight.sagas.definition import Action, ActionError, SagaContext, SagaDef
from skylight.store import groups as group_rows
from skylight.store import instances
from skylight.wire import JsonObject


@dataclass(frozen=True)
class Params:
    saga: ClassVar[str] = "instance-create"
    instance_id: str
    project_id: str
    actor: Actor
    start: bool
    # the instance's settings, as asked for
    name: str
    description: str
    hostname: str
    ncpus: int
    memory: int
    auto_restart_policy: str
    cpu_platform: str | None
    enable_jumbo_frames: bool
    user_data: str
    # checked at the request; the saga writes them
    anti_affinity_group_ids: list[str] = field(default_factory=list)
    disk_plan: JsonObject = field(default_factory=dict)


def declare() -> SagaDef[Params]:
    return SagaDef(
        Params,
        actions=[
            Action("create_instance_record", create_instance_record, undo_create_instance_record),
        ],
        on_done=_created,  # instance.created; begins the start
    )


# The instance's settings as the create request gives them (the record takes them as is).
SETTINGS = (
    "name",
    "description",
    "hostname",
    "ncpus",
    "memory",
    "auto_restart_policy",
    "cpu_platform",
    "enable_jumbo_frames",
    "user_data",
)
Ctx = SagaContext[Params]


async def create_instance_record(ctx: Ctx) -> None:
    """The instance row, its disks (created or attached) and its anti-affinity groups, in one
    transaction: on replay, an existing row means all of it was written."""
    p = ctx.params

    def write(conn: Connection) -> None:
        if instances.by_id(conn, p.instance_id, deleted=True) is not None:
            return  # replayed after a crash: already written
        try:
            with conn.begin_nested():
                instances.insert(
                    conn,
                    id=p.instance_id,
                    project_id=p.project_id,
                    state="creating",
                    intended_state="stopped",
                    boot_disk_id=p.disk_plan.get("boot_disk_id"),
                    **{k: getattr(p, k) for k in SETTINGS},
                )
        except sa.exc.IntegrityError:
            raise ActionError(
                reasons.make(
                    "instance_changed_state",
                    f'already exists: instance "{p.name}"',
                    transient=False,
                    action="Choose another name.",
                )
            ) from None
        try:
            disks.apply_to_new_instance(conn, p.instance_id, p.project_id, p.disk_plan)
            groups.join_new_instance(
                conn, "anti_affinity", p.anti_affinity_group_ids, p.instance_id
            )
        except SkylightError as exc:  # checked at the request; changed since
            raise ActionError(
                reasons.make(
                    "instance_changed_state",
                    exc.message,
                    transient=False,
                    action="Check the disks and anti-affinity groups asked for and try again.",
                )
            ) from None

    await ctx.tx(write)


async def undo_create_instance_record(ctx: Ctx) -> None:
    p = ctx.params

    def write(conn: Connection) -> None:
        disks.release_new_instance(conn, p.instance_id, p.disk_plan)
        group_rows.remove_instance(conn, p.instance_id)
        instances.update(conn, p.instance_id, state="destroyed", time_deleted=now())

    await ctx.tx(write)


def _created(conn: Connection, ctx: Ctx) -> None:
    p = ctx.params
    instances.update(conn, p.instance_id, state="no_vmm")
    record(conn, p.instance_id, Kind.CREATED, p.actor, operation_id=ctx.saga_id)
    if p.start:
        # The start begins in this same transaction: once the instance exists, its start is
        # durable, whatever happens to this replica or to the client that asked.
        instance_start.begin_in(
            ctx.services, conn, p.instance_id, control_plane("auto_start"), "auto_start"
        )


SAGA = declare()
