"""instance-delete: mark a stopped instance destroyed; its end writes ``instance.deleted``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sqlalchemy.engine import Connection

from skylight.clock import now
from skylight.events.kinds import Actor, Kind
from skylight.instances.record import record
from skylight.sagas.definition import Action, SagaContext, SagaDef
from skylight.store import disks, groups, instances
from skylight.store.schema import instance


@dataclass(frozen=True)
class Params:
    saga: ClassVar[str] = "instance-delete"
    instance_id: str
    actor: Actor
    # It was failed with an automatic restart planned: deleting it cancels that, and its
    # event says so (a decision, not a side effect).
    cancels_auto_restart: bool = False


def declare() -> SagaDef[Params]:
    return SagaDef(
        Params,
        actions=[Action("mark_destroyed", mark_destroyed)],
        on_done=_deleted,  # instance.deleted
    )


Ctx = SagaContext[Params]


async def mark_destroyed(ctx: Ctx) -> None:
    instance_id = ctx.params.instance_id

    def write(conn: Connection) -> None:
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


def _deleted(conn: Connection, ctx: Ctx) -> None:
    p = ctx.params
    detail = {"auto_restart": "cancelled"} if p.cancels_auto_restart else None
    record(conn, p.instance_id, Kind.DELETED, p.actor, operation_id=ctx.saga_id, detail=detail)


SAGA = declare()
