"""instance-delete: mark a stopped instance destroyed; its end writes ``instance.deleted``."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from skylight.clock import now
from skylight.events.kinds import Kind
from skylight.instances.record import record
from skylight.sagas.definition import Action, SagaContext, SagaDef
from skylight.store import disks, groups, instances
from skylight.store.schema import instance


async def mark_destroyed(ctx: SagaContext) -> None:
    def write(conn: Connection) -> None:
        instance_id = ctx.params["instance_id"]
        if instances.update(
            conn,
            instance_id,
            instance.c.active_vmm_id.is_(None),
            state="destroyed",
            time_deleted=now(),
        ):
            # It leaves its groups, and its disks are detached (they outlive it).
            disks.detach_all(conn, instance_id)
            groups.remove_instance(conn, instance_id)

    await ctx.tx(write)


def _done(conn: Connection, ctx: SagaContext) -> None:
    p = ctx.params
    record(conn, p["instance_id"], Kind.DELETED, p["actor"], operation_id=ctx.saga_id)


SAGA = SagaDef(
    name="instance-delete",
    actions=[Action("mark_destroyed", mark_destroyed)],
    on_done=_done,
)
