"""Beginning a start: the checks and the records that go with the start saga's creation.

Shared by a user's start, the auto-restart task and the create saga (whose last transaction
begins the start of an instance created with ``start: true``, so that the start is durable
the moment the instance exists).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.clock import now
from skylight.errors import Conflict, NotFound
from skylight.events.kinds import Kind
from skylight.ids import new_id
from skylight.instances.record import record
from skylight.sagas import instance_start
from skylight.sagas.definition import SagaDef
from skylight.store import instances
from skylight.store.schema import saga

if TYPE_CHECKING:
    from skylight.controlplane import ControlPlane

# The saga carrying out a request, to wait on. The executor launches a saga when the
# transaction that created it commits, wherever that is, so nobody else launches it.
Launch = str


def running_saga(conn: Connection, instance_id: str, name: str) -> str | None:
    q = sa.select(saga.c.id).where(
        saga.c.instance_id == instance_id,
        saga.c.name == name,
        saga.c.state.in_(("running", "unwinding")),
    )
    return conn.execute(q.limit(1)).scalar()


def launch_in(
    cp: ControlPlane, conn: Connection, sdef: SagaDef, params: dict[str, Any], instance_id: str
) -> Launch:
    params.setdefault("saga_id", new_id())
    return cp.executor.create_in(conn, sdef, params, instance_id=instance_id)


def begin_start_in(
    cp: ControlPlane, conn: Connection, instance_id: str, actor: dict[str, Any], reason: str
) -> Launch | None:
    """Check that the instance can start and create its start saga, in ``conn``'s
    transaction. None when it is already running or starting without a saga to wait on."""
    instances.lock(conn, instance_id)
    row = instances.by_id(conn, instance_id)
    if row is None:
        raise NotFound.by_id("instance", instance_id)
    pending = running_saga(conn, instance_id, "instance-start")
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
    values: dict[str, Any] = {"intended_state": "running"}
    if reason == "auto_restart":
        values.update(
            time_last_auto_restarted=now(),
            time_next_auto_restart=None,
            auto_restart_attempts=row.auto_restart_attempts + 1,
        )
    instances.update(conn, instance_id, **values)
    params = {
        "instance_id": instance_id,
        "project_id": row.project_id,
        "vmm_id": new_id(),
        "ncpus": row.ncpus,
        "memory": row.memory,
        "cpu_platform": row.cpu_platform,
        "reason": reason,
        "actor": actor,
    }
    launch = launch_in(cp, conn, instance_start.SAGA, params, instance_id)
    record(conn, instance_id, Kind.START_REQUESTED, actor, operation_id=launch)
    return launch
