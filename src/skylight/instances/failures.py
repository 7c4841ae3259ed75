"""When an instance's VMM is gone without anyone asking: the failure rules.

A VMM dies on its own (the sled agent or the simulated rack says so), its sled is expunged,
or a reboot leaves it dead: in each case the instance is failed in one transaction with its
VMM marked failed, its reservation released, an ``instance.failed`` event whose reason becomes
the status, and, where its policy allows, its automatic restart scheduled.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.engine import Connection

from skylight.config import Settings
from skylight.events import reasons
from skylight.events.kinds import Kind, control_plane
from skylight.instances import auto_restart
from skylight.instances.record import record
from skylight.services import Services
from skylight.store import StoreUnavailable, instances, sleds
from skylight.store.schema import instance

log = logging.getLogger(__name__)

_MESSAGES = {
    "sled_failure": "The sled the instance ran on failed; the instance stopped with it.",
    "vmm_failure": "The instance's virtual machine stopped unexpectedly.",
}
_RETRY_MAX = 2.0  # seconds between tries of a lost-VMM notice while the store is away


def fail_instance_in(
    conn: Connection,
    settings: Settings,
    instance_id: str,
    vmm_id: str,
    cause: str,
    detail: str,
) -> None:
    """The instance's VMM is gone: the instance is failed and its resources are freed."""
    cause = cause if cause in _MESSAGES else "vmm_failure"
    instances.set_vmm_state(conn, vmm_id, "failed")
    sleds.release(conn, vmm_id)
    changed = instances.update(
        conn,
        instance_id,
        instance.c.active_vmm_id == vmm_id,
        state="failed",
        active_vmm_id=None,
    )
    if not changed:
        return
    reason = reasons.make(
        cause,
        _MESSAGES[cause],
        action="The control plane restarts it if its auto-restart policy allows; "
        "otherwise start it again.",
        internal={
            "vmm_id": vmm_id,
            "sled_id": instances.sled_of_vmm(conn, vmm_id),
            "detail": detail,
        },
    )
    record(
        conn, instance_id, Kind.FAILED, control_plane(cause), reason=reason, explains_status=True
    )
    auto_restart.schedule_in(conn, settings, instance_id)


async def vmm_lost(services: Services, vmm_id: str, cause: str, detail: str) -> None:
    """A VMM died on its own (its sled agent says so): the instance fails, unless a start
    saga owns the VMM (it sees the VMM gone and unwinds). Raises ``StoreUnavailable``: an
    agent's report is then answered 503 and sent again."""
    settings = services.settings
    await services.store.tx(lambda c: _record_vmm_lost(c, settings, vmm_id, cause, detail))


async def vmm_lost_patiently(services: Services, vmm_id: str, cause: str, detail: str) -> None:
    """:func:`vmm_lost` for a reporter that cannot send it again (the simulated rack has
    forgotten the VMM already): tried, with capped backoff, until it lands."""
    delay = 0.1
    while True:
        try:
            await vmm_lost(services, vmm_id, cause, detail)
            return
        except StoreUnavailable as exc:
            if delay == 0.1:
                log.warning(
                    "VMM %s lost while the store is unavailable (%s); retrying", vmm_id, exc
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)


def _record_vmm_lost(
    conn: Connection, settings: Settings, vmm_id: str, cause: str, detail: str
) -> None:
    row = instances.vmm_row(conn, vmm_id)
    if row is None:
        return
    if row.state in ("creating", "starting"):
        # A start saga owns this VMM; it will see the VMM gone and unwind.
        instances.set_vmm_state(conn, vmm_id, "failed")
        return
    fail_instance_in(conn, settings, row.instance_id, vmm_id, cause, detail)


async def sled_silent(services: Services, sled_id: str, detail: str) -> int:
    """The sled's agent has been silent past the failure timeout: every instance running
    there fails (cause ``sled_failure``). Returns how many."""

    def write(conn: Connection) -> int:
        lost = instances.active_on_sled(conn, sled_id, running_only=True)
        for row in lost:
            fail_instance_in(
                conn, services.settings, row.id, row.active_vmm_id, "sled_failure", detail
            )
        return len(lost)

    return await services.store.tx(write)


async def vmm_missing(services: Services, vmm_id: str, detail: str) -> None:
    """The sled answers but no longer has a VMM the store says runs there (its agent lost
    its state): the instance fails, as with a silent sled."""

    def write(conn: Connection) -> None:
        row = instances.vmm_row(conn, vmm_id)
        if row is not None and row.state == "running":
            fail_instance_in(
                conn, services.settings, row.instance_id, vmm_id, "sled_failure", detail
            )

    await services.store.tx(write)


async def expunge_sled(services: Services, sled_id: str) -> None:
    """The sled leaves service for good: its instances fail (cause ``sled_failure``) and
    may be restarted elsewhere; local disks on it pin their instances nowhere."""

    def write(conn: Connection) -> list[str]:
        sleds.expunge(conn, sled_id)
        lost = instances.active_on_sled(conn, sled_id)
        for row in lost:
            fail_instance_in(
                conn,
                services.settings,
                row.id,
                row.active_vmm_id,
                "sled_failure",
                f"sled {sled_id} expunged",
            )
        return [row.active_vmm_id for row in lost]

    vmm_ids = await services.store.tx(write)
    rack = services.sleds.rack
    if rack is not None:
        for vmm_id in vmm_ids:
            rack.forget(vmm_id)
