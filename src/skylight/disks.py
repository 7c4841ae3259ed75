"""Disks: create, delete, attach to and detach from stopped instances (Oxide's rules).

A disk is ``local`` (block size 4096, on one sled: placement pins it when its instance first
starts) or ``distributed`` (a blank disk of the block size asked for; snapshot, image and
import sources are not supported). Sizes are whole GiB, from 1 GiB to 1023 GiB. A disk is
attached to at most one instance, an instance has at most 8 disks, and disks are attached and
detached only while the instance is stopped; only a detached disk can be deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from skylight import lookup
from skylight.errors import AlreadyExists, Conflict, InvalidRequest, InvalidValue, NotFound
from skylight.events.kinds import Actor, Kind
from skylight.identity.access import Action, Caller
from skylight.ids import new_id, parse_uuid
from skylight.instances.lock import locked
from skylight.instances.record import record
from skylight.instances.state import run_state
from skylight.store import Row
from skylight.store import disks as rows
from skylight.store.paging import Page, PageOf, rows_of
from skylight.wire import JsonObject

GiB = 1024**3
MIN_SIZE = 1 * GiB
MAX_SIZE = 1023 * GiB
MAX_DISKS_PER_INSTANCE = 8
LOCAL_BLOCK_SIZE = 4096


def block_size_and_type(size: int, backend: JsonObject) -> tuple[int, str]:
    """The block size and disk type of a ``DiskBackend``, once its size is checked."""
    if backend["type"] == "local":
        block_size, disk_type = LOCAL_BLOCK_SIZE, "local"
    else:
        source = backend["disk_source"]
        if source["type"] != "blank":
            raise InvalidRequest(
                f'disk source "{source["type"]}" is not supported: only blank disks can be created'
            )
        block_size, disk_type = int(source["block_size"]), "distributed"
    if size % block_size:
        raise InvalidValue(
            'unsupported value for "size and block_size": total size must be a multiple of '
            f"block size {block_size}"
        )
    if size < MIN_SIZE:
        raise InvalidValue('unsupported value for "size": total size must be at least 1 GiB')
    if size % GiB:
        raise InvalidValue('unsupported value for "size": total size must be a multiple of 1 GiB')
    if size > MAX_SIZE:
        raise InvalidValue('unsupported value for "size": total size must be at most 1023 GiB')
    return block_size, disk_type


def _insert(conn: Connection, project_id: str, spec: JsonObject, instance_id: str | None) -> None:
    with lookup.claimed(conn, "disk", spec["name"]):
        rows.insert(
            conn,
            disk_id=spec["id"],
            project_id=project_id,
            name=spec["name"],
            description=spec["description"],
            size=spec["size"],
            block_size=spec["block_size"],
            disk_type=spec["disk_type"],
            instance_id=instance_id,
        )


def _spec(conn: Connection, project_id: str, body: JsonObject) -> JsonObject:
    """A new disk checked against the rules and the project's names, with its new id."""
    block_size, disk_type = block_size_and_type(body["size"], body["disk_backend"])
    if rows.by_name(conn, project_id, body["name"]) is not None:
        raise AlreadyExists("disk", body["name"])
    return {
        "id": new_id(),
        "name": body["name"],
        "description": body["description"],
        "size": body["size"],
        "block_size": block_size,
        "disk_type": disk_type,
    }


def create(conn: Connection, caller: Caller, project_selector: str, body: JsonObject) -> Row:
    """``body`` is a ``DiskCreate``: name, description, size, disk_backend."""
    proj = lookup.project(conn, caller, project_selector, Action.modify)
    spec = _spec(conn, proj.id, body)
    _insert(conn, proj.id, spec, None)
    row = rows.by_id(conn, spec["id"])
    assert row is not None
    return row


def page(conn: Connection, caller: Caller, project_selector: str, page_of: PageOf) -> Page[Row]:
    """A page of the project's disks."""
    proj = lookup.project(conn, caller, project_selector)
    return rows_of(page_of(proj.id), rows.page, conn, proj.id)


def page_of_instance(
    conn: Connection,
    caller: Caller,
    instance_selector: str,
    project_selector: str | None,
    page_of: PageOf,
) -> Page[Row]:
    """A page of the disks attached to the instance."""
    inst = lookup.instance(conn, caller, instance_selector, project_selector)
    return rows_of(page_of(inst.id), rows.page_of_instance, conn, inst.id)


def delete(conn: Connection, caller: Caller, selector: str, project_selector: str | None) -> None:
    row = lookup.disk(conn, caller, selector, project_selector, Action.modify)
    if row.state != "detached" or not rows.delete(conn, row.id):
        raise InvalidRequest(f'disk cannot be deleted in state "{row.state}": detach it first')


# -- attach and detach -----------------------------------------------------------------------


def _shown_state(inst: Any) -> str:
    """The instance's run state as its view shows it (a start asked for is ``starting``)."""
    state = run_state(inst.state, inst.vmm_state, inst.intended_state)
    if state == "stopped" and inst.intended_state == "running":
        return "starting"
    return state


@dataclass(frozen=True)
class InstanceDisk:
    """What an attach or a detach names: the instance (and its project, where it is named
    by name) and the disk, by name in the instance's project or by id."""

    instance: str
    project: str | None
    disk: str


def _instance_and_disk(conn: Connection, caller: Caller, named: InstanceDisk) -> tuple[Row, Row]:
    """The instance (its row held, read afresh) and the disk, named in its project."""
    found = lookup.instance(conn, caller, named.instance, named.project, Action.modify)
    inst = locked(conn, found.id)
    parsed = parse_uuid(named.disk)
    if parsed is not None:
        disk = rows.by_id(conn, str(parsed))
        if disk is None:
            raise NotFound.by_id("disk", named.disk)
        if disk.project_id != inst.project_id:
            raise InvalidRequest("disk must be in the same project as the instance")
    else:
        disk = rows.by_name(conn, inst.project_id, named.disk)
        if disk is None:
            raise NotFound.by_name("disk", named.disk)
    return inst, disk


def _require_stopped(inst: Any, change: str) -> None:
    """Disks are attached and detached only while the instance is stopped; ``change`` says
    what was asked in the refusal ("attach disk to")."""
    state = _shown_state(inst)
    if state != "stopped":
        raise InvalidRequest(f"cannot {change} instance in {state} state: stop it first")


def _changed(conn: Connection, inst: Any, actor: Actor, change: str, disk: Any) -> Row:
    """An ``instance.updated`` event (what the instance will boot with has changed), and the
    disk as it stands now."""
    detail = {"change": change, "disk": {"id": disk.id, "name": disk.name}}
    record(conn, inst.id, Kind.UPDATED, actor, detail=detail)
    row = rows.by_id(conn, disk.id)
    assert row is not None
    return row


def attach(conn: Connection, caller: Caller, named: InstanceDisk, actor: Actor) -> Row:
    inst, disk = _instance_and_disk(conn, caller, named)
    if disk.instance_id == inst.id:
        return disk  # already attached here: nothing to do
    if disk.state != "detached":
        raise InvalidRequest(
            f'cannot attach disk "{disk.name}": disk is attached to another instance'
        )
    _require_stopped(inst, "attach disk to")
    if rows.count_attached(conn, inst.id) >= MAX_DISKS_PER_INSTANCE:
        raise InvalidRequest(f"cannot attach more than {MAX_DISKS_PER_INSTANCE} disks to instance")
    if not rows.attach(conn, disk.id, inst.id):
        raise InvalidRequest(
            f'cannot attach disk "{disk.name}": disk is attached to another instance'
        )
    return _changed(conn, inst, actor, "disk_attached", disk)


def detach(conn: Connection, caller: Caller, named: InstanceDisk, actor: Actor) -> Row:
    inst, disk = _instance_and_disk(conn, caller, named)
    if disk.state == "detached":
        return disk  # nothing to do
    if disk.instance_id != inst.id:
        raise InvalidRequest(
            f'cannot detach disk "{disk.name}": disk is attached to another instance'
        )
    _require_stopped(inst, "detach disk from")
    if inst.boot_disk_id == disk.id:
        raise Conflict("boot disk cannot be detached: set another boot disk (or none) first")
    rows.detach(conn, disk.id, inst.id)
    return _changed(conn, inst, actor, "disk_detached", disk)


def boot_disk_id(conn: Connection, inst: Any, selector: str | None) -> str | None:
    """The id of the disk ``selector`` names as ``inst``'s boot disk: it must be attached to
    it. ``None`` (no boot disk) for no selector."""
    if selector is None:
        return None
    parsed = parse_uuid(selector)
    if parsed is not None:
        disk = rows.by_id(conn, str(parsed))
        if disk is None:
            raise NotFound.by_id("disk", selector)
    else:
        disk = rows.by_name(conn, inst.project_id, selector)
        if disk is None:
            raise NotFound.by_name("disk", selector)
    if disk.instance_id != inst.id:
        raise Conflict(f'boot disk must be attached: disk "{disk.name}" is not attached to it')
    return str(disk.id)


# -- instance create -------------------------------------------------------------------------


def plan_for_new_instance(
    conn: Connection,
    project_id: str,
    disks: list[JsonObject],
    boot_disk: JsonObject | None,
) -> JsonObject:
    """Check a new instance's ``disks`` and ``boot_disk`` (``InstanceDiskAttachment``s) and
    return the plan its create saga carries out: ``{create: [disk spec with its new id],
    attach: [disk id], boot_disk_id}``. Nothing is written here."""
    items = ([boot_disk] if boot_disk is not None else []) + list(disks)
    if len(items) > MAX_DISKS_PER_INSTANCE:
        raise InvalidRequest(f"cannot attach more than {MAX_DISKS_PER_INSTANCE} disks to instance")
    seen: set[str] = set()
    create: list[JsonObject] = []
    attach: list[str] = []
    for item in items:
        name = item["name"]
        if name in seen:
            raise InvalidRequest(f'disk "{name}" is named more than once')
        seen.add(name)
        if item["type"] == "create":
            create.append(_spec(conn, project_id, item))
            continue
        disk = rows.by_name(conn, project_id, name)
        if disk is None:
            raise NotFound.by_name("disk", name)
        if disk.state != "detached":
            raise InvalidRequest(
                f'cannot attach disk "{name}": disk is attached to another instance'
            )
        attach.append(disk.id)
    boot = None
    if boot_disk is not None:
        boot = create[0]["id"] if boot_disk["type"] == "create" else attach[0]
    return {"create": create, "attach": attach, "boot_disk_id": boot}


def apply_to_new_instance(
    conn: Connection, instance_id: str, project_id: str, plan: JsonObject
) -> None:
    """Inside the instance-create saga: create and attach the planned disks. A disk taken or
    a name used meanwhile fails the create (Conflict, AlreadyExists)."""
    for spec in plan.get("create", []):
        _insert(conn, project_id, spec, instance_id)
    for disk_id in plan.get("attach", []):
        if not rows.attach(conn, disk_id, instance_id):
            raise Conflict(f"disk {disk_id} was attached elsewhere or deleted meanwhile")


def release_new_instance(conn: Connection, instance_id: str, plan: JsonObject) -> None:
    """Undo :func:`apply_to_new_instance` (tolerates it having done nothing)."""
    rows.destroy(conn, [spec["id"] for spec in plan.get("create", [])])
    rows.detach_all(conn, instance_id)
