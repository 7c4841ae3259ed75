"""What users ask of instances. Each operation checks and records its request in one
transaction (with the saga that carries it out, which the executor launches when that
transaction commits), then, for starts, waits for its outcome up to a bound."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight import disks, groups, lookup
from skylight.errors import AlreadyExists, Conflict, InvalidRequest, NotFound, OperationFailed
from skylight.events.kinds import Kind
from skylight.ids import new_id
from skylight.instances import starting
from skylight.instances.record import record
from skylight.instances.starting import Launch, launch_in, running_saga
from skylight.sagas import (
    instance_create,
    instance_delete,
    instance_reboot,
    instance_stop,
)
from skylight.store import instances

if TYPE_CHECKING:
    from skylight.controlplane import ControlPlane

# Reason codes of a failed start, as the API's error code.
_ERROR_CODE = {
    "insufficient_capacity": "InsufficientCapacity",
    "capacity_in_maintenance": "InsufficientCapacity",
    "exceeds_sled_size": "InsufficientCapacity",
    "anti_affinity_unsatisfiable": "InsufficientCapacity",
    "affinity_conflict": "InsufficientCapacity",
    "affinity_sled_unavailable": "InsufficientCapacity",
    "local_storage_unavailable": "InsufficientCapacity",
    "cpu_platform_unavailable": "InsufficientCapacity",
    "quota_exceeded": "InsufficientCapacity",
    "instance_changed_state": "Conflict",
    "sled_failure": "ServiceUnavailable",
    "vmm_failure": "ServiceUnavailable",
}


async def _finish(
    cp: ControlPlane, launch: Launch | None, instance_id: str, wait: float | None
) -> sa.Row[Any]:
    """Wait for the saga; raise its error if it unwound; return the instance."""
    if launch is not None:
        outcome = await cp.executor.wait(launch, wait)
        if outcome is not None and not outcome.ok and outcome.error:
            reason = outcome.error["reason"]
            code = _ERROR_CODE.get(reason.get("code", ""), outcome.error.get("error_code"))
            raise OperationFailed(reason, code or "Internal")
    row = await cp.store.tx(lambda c: instances.by_id(c, instance_id, deleted=True))
    assert row is not None
    return row


async def create(
    cp: ControlPlane,
    project_selector: str,
    body: dict[str, Any],
    actor: dict[str, Any],
    *,
    wait: float,
) -> sa.Row[Any]:
    instance_id = new_id()
    start = bool(body.get("start", True))

    def prepare(conn: Connection) -> Launch:
        proj = lookup.project(conn, project_selector)
        if instances.by_name(conn, proj.id, body["name"]) is not None:
            raise AlreadyExists("instance", body["name"])
        params = {k: body[k] for k in instance_create.FIELDS}
        params.update(instance_id=instance_id, project_id=proj.id, actor=actor, start=start)
        # Checked here, so that bad input creates nothing; the saga writes them.
        params["anti_affinity_group_ids"] = groups.resolve_for_new_instance(
            conn, "anti_affinity", proj.id, body.get("anti_affinity_groups") or []
        )
        params["disk_plan"] = disks.plan_for_new_instance(
            conn, proj.id, body.get("disks") or [], body.get("boot_disk")
        )
        return launch_in(cp, conn, instance_create.SAGA, params, instance_id)

    launch = await cp.store.tx(prepare)
    await _finish(cp, launch, instance_id, None)
    if not start:
        return await _finish(cp, None, instance_id, 0)
    # The create saga's last transaction began the start (so that a replica dying here
    # loses nothing: the executor launched it on that commit, or adopts it); wait for it.
    pending = await cp.store.tx(lambda c: running_saga(c, instance_id, "instance-start"))
    try:
        return await _finish(cp, pending, instance_id, wait)
    except OperationFailed:
        # The instance was created: answer 201 with it. The start's error is not dropped:
        # it is the instance's status_reason and an instance.start_failed event.
        return await _finish(cp, None, instance_id, 0)


async def start_instance(
    cp: ControlPlane, instance_id: str, actor: dict[str, Any], reason: str, *, wait: float
) -> sa.Row[Any]:
    launch = await cp.store.tx(
        lambda conn: starting.begin_start_in(cp, conn, instance_id, actor, reason)
    )
    return await _finish(cp, launch, instance_id, wait)


async def stop_instance(
    cp: ControlPlane, instance_id: str, actor: dict[str, Any], *, wait: float
) -> sa.Row[Any]:
    def prepare(conn: Connection) -> Launch | None:
        instances.lock(conn, instance_id)
        row = instances.by_id(conn, instance_id)
        if row is None:
            raise NotFound.by_id("instance", instance_id)
        pending = running_saga(conn, instance_id, "instance-stop")
        if pending is not None:
            return pending
        if row.state in ("no_vmm", "creating"):
            instances.update(conn, instance_id, intended_state="stopped")
            return None
        if row.state == "failed":
            if row.active_vmm_id is not None:
                raise Conflict("the instance has an operation that operators must resolve first")
            instances.update(
                conn,
                instance_id,
                state="no_vmm",
                intended_state="stopped",
                status_event_id=None,
                time_next_auto_restart=None,
            )
            record(conn, instance_id, Kind.STOPPED, actor)
            return None
        if row.vmm_state not in ("running", "rebooting"):
            raise Conflict(f"cannot stop the instance while it is {row.vmm_state}; try again")
        instances.update(conn, instance_id, intended_state="stopped")
        params = {
            "instance_id": instance_id,
            "vmm_id": row.active_vmm_id,
            "sled_id": row.sled_id,
            "actor": actor,
        }
        launch = launch_in(cp, conn, instance_stop.SAGA, params, instance_id)
        record(conn, instance_id, Kind.STOP_REQUESTED, actor, operation_id=launch)
        return launch

    return await _finish(cp, await cp.store.tx(prepare), instance_id, wait)


async def reboot_instance(
    cp: ControlPlane, instance_id: str, actor: dict[str, Any], *, wait: float
) -> sa.Row[Any]:
    def prepare(conn: Connection) -> Launch:
        instances.lock(conn, instance_id)
        row = instances.by_id(conn, instance_id)
        if row is None or row.state != "vmm" or row.vmm_state != "running":
            raise InvalidRequest("only a running instance can be rebooted")
        params = {
            "instance_id": instance_id,
            "vmm_id": row.active_vmm_id,
            "sled_id": row.sled_id,
            "actor": actor,
        }
        return launch_in(cp, conn, instance_reboot.SAGA, params, instance_id)

    return await _finish(cp, await cp.store.tx(prepare), instance_id, wait)


async def delete_instance(cp: ControlPlane, instance_id: str, actor: dict[str, Any]) -> None:
    def prepare(conn: Connection) -> Launch:
        instances.lock(conn, instance_id)
        row = instances.by_id(conn, instance_id)
        if row is None:
            raise NotFound.by_id("instance", instance_id)
        if row.state not in ("no_vmm", "failed") or row.active_vmm_id is not None:
            raise InvalidRequest(
                "cannot delete instance: instance is running or has not yet fully stopped"
            )
        instances.update(conn, instance_id, intended_state="destroyed")
        params = {"instance_id": instance_id, "actor": actor}
        return launch_in(cp, conn, instance_delete.SAGA, params, instance_id)

    await _finish(cp, await cp.store.tx(prepare), instance_id, None)


_SIZE_FIELDS = ("ncpus", "memory", "cpu_platform")


async def update_instance(
    cp: ControlPlane, instance_id: str, body: dict[str, Any], actor: dict[str, Any]
) -> sa.Row[Any]:
    def write(conn: Connection) -> sa.Row[Any]:
        instances.lock(conn, instance_id)
        row = instances.by_id(conn, instance_id)
        assert row is not None
        wanted = dict(body)
        if "boot_disk" in wanted:
            wanted["boot_disk_id"] = disks.boot_disk_id(conn, row, wanted.pop("boot_disk"))
        changed = {k: v for k, v in wanted.items() if getattr(row, k) != v}
        if any(k in changed for k in _SIZE_FIELDS) and row.state not in ("no_vmm", "failed"):
            raise InvalidRequest(
                "instance must be stopped to change its vCPUs, memory or CPU platform"
            )
        if "boot_disk_id" in changed and row.state not in ("no_vmm", "failed"):
            raise InvalidRequest("instance must be stopped to change its boot disk")
        if changed:
            instances.update(conn, instance_id, **changed)
            detail = {"change": "settings", "fields": sorted(changed)}
            record(conn, instance_id, Kind.UPDATED, actor, detail=detail)
        new = instances.by_id(conn, instance_id)
        assert new is not None
        return new

    return await cp.store.tx(write)
