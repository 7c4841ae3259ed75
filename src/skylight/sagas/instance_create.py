"""instance-create: write the instance record; its end writes ``instance.created``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight import disks, groups
from skylight.clock import now
from skylight.errors import SkylightError
from skylight.events import reasons
from skylight.events.kinds import Kind, control_plane
from skylight.instances.record import record
from skylight.instances.starting import begin_start_in
from skylight.sagas.definition import Action, ActionError, SagaContext, SagaDef
from skylight.store import groups as group_rows
from skylight.store import instances

FIELDS = (
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


async def create_instance_record(ctx: SagaContext) -> None:
    """The instance row, its disks (created or attached) and its anti-affinity groups, in one
    transaction: on replay, an existing row means all of it was written."""
    p = ctx.params
    plan = p.get("disk_plan") or {}

    def write(conn: Connection) -> None:
        if instances.by_id(conn, p["instance_id"], deleted=True) is not None:
            return  # replayed after a crash: already written
        try:
            with conn.begin_nested():
                instances.insert(
                    conn,
                    id=p["instance_id"],
                    project_id=p["project_id"],
                    state="creating",
                    intended_state="stopped",
                    boot_disk_id=plan.get("boot_disk_id"),
                    **{k: p[k] for k in FIELDS},
                )
        except sa.exc.IntegrityError:
            raise ActionError(
                reasons.make(
                    "instance_changed_state",
                    f'already exists: instance "{p["name"]}"',
                    transient=False,
                    action="Choose another name.",
                ),
                "ObjectAlreadyExists",
            ) from None
        try:
            disks.apply_to_new_instance(conn, p["instance_id"], p["project_id"], plan)
            groups.join_new_instance(
                conn, "anti_affinity", p.get("anti_affinity_group_ids") or [], p["instance_id"]
            )
        except SkylightError as exc:  # checked at the request; changed since
            raise ActionError(
                reasons.make(
                    "instance_changed_state",
                    exc.message,
                    transient=False,
                    action="Check the disks and anti-affinity groups asked for and try again.",
                ),
                exc.error_code,
            ) from None

    await ctx.tx(write)


async def undo_create_instance_record(ctx: SagaContext) -> None:
    def write(conn: Connection) -> None:
        p = ctx.params
        disks.release_new_instance(conn, p["instance_id"], p.get("disk_plan") or {})
        group_rows.remove_instance(conn, p["instance_id"])
        instances.update(conn, p["instance_id"], state="destroyed", time_deleted=now())

    await ctx.tx(write)


def _done(conn: Connection, ctx: SagaContext) -> None:
    p = ctx.params
    instances.update(conn, p["instance_id"], state="no_vmm")
    record(conn, p["instance_id"], Kind.CREATED, p["actor"], operation_id=ctx.saga_id)
    if p.get("start"):
        # The start begins in this same transaction: once the instance exists, its start is
        # durable, whatever happens to this replica or to the client that asked.
        begin_start_in(
            ctx.services, conn, p["instance_id"], control_plane("auto_start"), "auto_start"
        )


def _unwound(conn: Connection, ctx: SagaContext, reason: dict[str, Any]) -> None:
    return None  # the instance never existed for anyone; the caller gets the error


SAGA = SagaDef(
    name="instance-create",
    actions=[
        Action("create_instance_record", create_instance_record, undo_create_instance_record),
    ],
    on_done=_done,
    on_unwound=_unwound,
)
