"""What users ask of instances: the operations the API's routes call.

Each checks and records its request in one transaction, with the saga that carries it out
(the executor launches it when that transaction commits), then waits for its outcome up to
a bound. A saga that unwound raises ``OperationFailed`` with its reason; the API's error
table decides what that reason answers.
"""

from __future__ import annotations

import logging

from sqlalchemy.engine import Connection

from skylight import disks, groups, lookup
from skylight.errors import (
    AlreadyExists,
    Conflict,
    InvalidRequest,
    OperationFailed,
    SkylightError,
)
from skylight.events.kinds import Actor, Kind
from skylight.identity.access import Action, Caller
from skylight.ids import new_id
from skylight.instances import auto_restart
from skylight.instances.limits import check_size
from skylight.instances.lock import locked
from skylight.instances.record import record
from skylight.sagas import (
    instance_create,
    instance_delete,
    instance_reboot,
    instance_start,
    instance_stop,
)
from skylight.services import Services
from skylight.store import Row, instances
from skylight.store.paging import Page, PageOf, rows_of
from skylight.wire import JsonObject

log = logging.getLogger(__name__)


async def _finish(
    services: Services, saga_id: str | None, instance_id: str, wait: float | None
) -> Row:
    """Wait for the saga; raise its reason if it unwound; return the instance."""
    if saga_id is not None:
        outcome = await services.executor.wait(saga_id, wait)
        if outcome is not None and not outcome.ok and outcome.error:
            raise OperationFailed(outcome.error["reason"])
    row = await services.store.tx(lambda c: instances.by_id(c, instance_id, deleted=True))
    assert row is not None
    return row


def page(conn: Connection, caller: Caller, project_selector: str, page_of: PageOf) -> Page[Row]:
    """A page of the project's instances."""
    proj = lookup.project(conn, caller, project_selector)
    return rows_of(page_of(proj.id), instances.page, conn, proj.id)


async def create(
    services: Services,
    caller: Caller,
    project_selector: str,
    body: JsonObject,
    *,
    wait: float,
) -> Row:
    check_size(body["ncpus"], body["memory"])
    instance_id = new_id()
    start = bool(body.get("start", True))
    name = body["name"]
    actor = caller.actor

    def prepare(conn: Connection) -> tuple[str, str]:
        proj = lookup.project(conn, caller, project_selector, Action.modify)
        if instances.by_name(conn, proj.id, name) is not None:
            raise AlreadyExists("instance", name)
        params = instance_create.Params(
            instance_id=instance_id,
            project_id=proj.id,
            actor=actor,
            start=start,
            **{k: body[k] for k in instance_create.SETTINGS},
            # Checked here, so that bad input creates nothing; the saga writes them.
            anti_affinity_group_ids=groups.resolve_for_new_instance(
                conn, "anti_affinity", proj.id, body.get("anti_affinity_groups") or []
            ),
            disk_plan=disks.plan_for_new_instance(
                conn, proj.id, body.get("disks") or [], body.get("boot_disk")
            ),
        )
        return services.executor.create_in(conn, params, instance_id=instance_id), proj.id

    saga_id, project_id = await services.store.tx(prepare)
    try:
        await _finish(services, saga_id, instance_id, None)
    except OperationFailed:
        # Another request took the name between the check and the record: say so as the
        # check would have.
        other = await services.store.tx(lambda c: instances.by_name(c, project_id, name))
        if other is not None and other.id != instance_id:
            raise AlreadyExists("instance", name) from None
        raise
    if not start:
        return await _finish(services, None, instance_id, 0)
    # The create saga's last transaction began the start (so that a replica dying here
    # loses nothing: the executor launched it on that commit, or adopts it); wait for it.
    pending = await services.store.tx(
        lambda c: instances.running_saga(c, instance_id, instance_start.Params.saga)
    )
    try:
        return await _finish(services, pending, instance_id, wait)
    except OperationFailed:
        # The instance was created: answer 201 with it. The start's error is not dropped:
        # it is the instance's status_reason and an instance.start_failed event.
        return await _finish(services, None, instance_id, 0)


async def start_instance(
    services: Services, instance_id: str, actor: Actor, reason: str, *, wait: float
) -> Row:
    saga_id = await services.store.tx(
        lambda conn: instance_start.begin_in(services, conn, instance_id, actor, reason)
    )
    return await _finish(services, saga_id, instance_id, wait)


async def user_start(services: Services, instance_id: str, actor: Actor, *, wait: float) -> Row:
    """A start asked for by a user (rather than by create or auto-restart)."""
    return await start_instance(services, instance_id, actor, "user", wait=wait)


async def restart_due(services: Services) -> int:
    """Start every failed instance whose automatic restart is due (up to a batch); returns
    how many began. The auto-restart loop calls it on the replica that holds its lease."""
    batch = services.settings.auto_restart_batch
    due = await services.store.tx(lambda c: instances.due_for_restart(c, batch))
    for instance_id in due:
        try:
            await start_instance(services, instance_id, auto_restart.ACTOR, "auto_restart", wait=0)
            services.metrics.auto_restarts.inc()
        except SkylightError as exc:  # it changed state meanwhile: nothing to restart
            log.info("auto-restart of %s skipped: %s", instance_id, exc.message)
    return len(due)


async def stop_instance(services: Services, instance_id: str, actor: Actor, *, wait: float) -> Row:
    def prepare(conn: Connection) -> str | None:
        row = locked(conn, instance_id)
        pending = instances.running_saga(conn, instance_id, instance_stop.Params.saga)
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
            # A stop during auto-restart ends it: a decision the event records, not a side
            # effect nobody hears of.
            planned = row.time_next_auto_restart
            detail = {"auto_restart": "cancelled"} if planned is not None else None
            record(conn, instance_id, Kind.STOPPED, actor, detail=detail)
            return None
        if row.vmm_state not in ("running", "rebooting"):
            raise Conflict(f"cannot stop the instance while it is {row.vmm_state}; try again")
        instances.update(conn, instance_id, intended_state="stopped")
        params = instance_stop.Params(instance_id, row.active_vmm_id, row.sled_id, actor)
        saga_id = services.executor.create_in(conn, params, instance_id=instance_id)
        record(conn, instance_id, Kind.STOP_REQUESTED, actor, operation_id=saga_id)
        return saga_id

    return await _finish(services, await services.store.tx(prepare), instance_id, wait)


async def reboot_instance(
    services: Services, instance_id: str, actor: Actor, *, wait: float
) -> Row:
    def prepare(conn: Connection) -> str:
        row = locked(conn, instance_id)
        if row.state != "vmm" or row.vmm_state != "running":
            raise InvalidRequest("only a running instance can be rebooted")
        params = instance_reboot.Params(instance_id, row.active_vmm_id, row.sled_id, actor)
        return services.executor.create_in(conn, params, instance_id=instance_id)

    return await _finish(services, await services.store.tx(prepare), instance_id, wait)


async def delete_instance(services: Services, instance_id: str, actor: Actor) -> None:
    def prepare(conn: Connection) -> str:
        row = locked(conn, instance_id)
        if row.state not in ("no_vmm", "failed") or row.active_vmm_id is not None:
            raise InvalidRequest(
                "cannot delete instance: instance is running or has not yet fully stopped"
            )
        planned = row.time_next_auto_restart is not None and row.intended_state == "running"
        instances.update(conn, instance_id, intended_state="destroyed", time_next_auto_restart=None)
        params = instance_delete.Params(instance_id, actor, cancels_auto_restart=planned)
        return services.executor.create_in(conn, params, instance_id=instance_id)

    await _finish(services, await services.store.tx(prepare), instance_id, None)


_SIZE_FIELDS = ("ncpus", "memory", "cpu_platform")


async def update_instance(
    services: Services, instance_id: str, body: JsonObject, actor: Actor
) -> Row:
    check_size(body["ncpus"], body["memory"])

    def write(conn: Connection) -> Row:
        row = locked(conn, instance_id)
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

    return await services.store.tx(write)
