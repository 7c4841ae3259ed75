"""One control-plane replica: the store, the saga executor, the sleds, wired together."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import anyio
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skylight.background import (
    auditor,
    auto_restart,
    replicas,
    retention,
    sled_health,
    webhooks,
)
from skylight.clock import now
from skylight.config import GiB, Settings
from skylight.events import reasons
from skylight.events.feed import Feed
from skylight.events.kinds import Kind, control_plane
from skylight.ids import new_id
from skylight.instances.record import record
from skylight.metrics import Metrics
from skylight.sagas import (
    SagaExecutor,
    instance_create,
    instance_delete,
    instance_reboot,
    instance_start,
    instance_stop,
)
from skylight.sagas.crash import CrashPoint
from skylight.sled.directory import SledDirectory
from skylight.sled.sim import SimRack
from skylight.store import Store, StoreUnavailable, instances, migrate, sleds
from skylight.store import replicas as store_replicas
from skylight.store.schema import instance, replica, saga, vmm

log = logging.getLogger(__name__)

SIM_RACK_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "skylight:simulated-rack"))
SAGAS = (
    instance_create.SAGA,
    instance_start.SAGA,
    instance_stop.SAGA,
    instance_delete.SAGA,
    instance_reboot.SAGA,
)



def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class StartupRefused(Exception):
    """This replica may not start; the message says why and what to do (a second replica
    on SQLite, a store that never answered)."""


_FAILURE_MESSAGES = {
    "sled_failure": "The sled the instance ran on failed; the instance stopped with it.",
    "vmm_failure": "The instance's virtual machine stopped unexpectedly.",
}


def _replica_id(data_dir: Path, bind: str) -> str:
    """A replica keeps its identity across restarts, so it resumes its own sagas at once."""
    path = data_dir / f"replica-{bind.replace(':', '-')}.id"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    ident = new_id()
    path.write_text(ident)
    return ident


class ControlPlane:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings.resolved_db_url())
        self.rng = random.Random()
        self.rack_cache = sleds.RackCache(settings.placement_rack_max_age)
        self.rack: SimRack | None = None
        if settings.sim.enabled:
            self.rack = SimRack(settings.data_dir / "sim-rack.db", settings.sim.start_delay)
            self.rack.set_listener(self.on_vmm_lost)
        self.sleds = SledDirectory(self.rack, settings.sled_call_timeout, self.store)
        self.sec_id = _replica_id(settings.data_dir, settings.bind)
        self.executor = SagaExecutor(
            self.store,
            self.sec_id,
            undo_attempts=settings.undo_attempts,
            undo_retry_delay=settings.undo_retry_delay,
            crash=CrashPoint.from_env(),
        )
        self.executor.services = self
        self.feed = Feed()
        self.metrics = Metrics()
        self.store.on_events.append(self.feed.notify)
        self.store.on_events.append(self.metrics.events_written)
        self.executor.on_end.append(self.metrics.saga_ended)
        self._background: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Task[None] | None = None
        for sdef in SAGAS:
            self.executor.register(sdef)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.feed.bind(self._loop)
        await self._migrate_when_store_answers()
        await self.store.tx(self._register)
        await self.sleds.refresh()
        await self.executor.resume_all()
        for name, loop in (
            ("replica", replicas.loop),
            ("auto-restart", auto_restart.loop),
            ("retention", retention.loop),
            ("sled-health", sled_health.loop),
            ("webhooks", webhooks.loop),
            ("auditor", auditor.loop),
        ):
            self._background.append(asyncio.create_task(loop(self), name=name))

    async def _migrate_when_store_answers(self) -> None:
        """A replica may start before its database does (a rack powering on, a failover):
        it waits for the store, saying so once, for at most ``store_wait`` seconds. A store
        that answers with an error (a wrong password, no such database) fails at once."""
        deadline = time.monotonic() + self.settings.store_wait
        delay = 0.1
        waiting = False
        while True:
            try:
                await anyio.to_thread.run_sync(migrate.upgrade, self.store.engine)
            except Exception as exc:
                if not self.store.unavailable(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise StartupRefused(
                        f"the store at {self.settings.shown_db_url()} did not answer within "
                        f"{self.settings.store_wait:g} s (--store-wait): {_first_line(exc)}"
                    ) from exc
                if not waiting:
                    log.warning(
                        "waiting for the store at %s: %s",
                        self.settings.shown_db_url(),
                        _first_line(exc),
                    )
                    waiting = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if waiting:
                log.warning("the store answers; starting")
            return

    def request_stop(self) -> None:
        """From a signal handler: begin the graceful stop on the event loop."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.begin_stop)

    def begin_stop(self) -> None:
        """Begin a graceful stop (idempotent): launch no saga, let each running one reach
        its next log entry and hand it to a live peer at once."""
        if self._loop is None or self._stopping is not None:
            return
        self._stopping = self._loop.create_task(self._drain(), name="drain")

    async def _drain(self) -> None:
        for task in self._background:
            task.cancel()
        await self.executor.drain(
            self.settings.drain_timeout, lambda ids: replicas.hand_over(self, ids)
        )
        if self._background:
            await asyncio.wait(self._background, timeout=5)
        self._background.clear()
        try:
            await replicas.hand_over(self, None)  # what never began (created while stopping)
            await replicas.stopped(self)
        except StoreUnavailable as exc:
            log.warning("stopping without the store (%s): peers adopt after the timeout", exc)

    async def stop(self) -> None:
        self.begin_stop()
        if self._stopping is not None:
            await self._stopping
        await self.sleds.close()
        self.store.dispose()

    def _register(self, conn: Connection) -> None:
        sim = self.settings.sim
        if sim.enabled:
            sleds.ensure_simulated(
                conn,
                count=sim.sleds,
                cpus=sim.sled_cpus,
                memory=sim.sled_memory_gib * GiB,
                local_storage=sim.sled_local_storage_gib * GiB,
                cpu_family=sim.cpu_family,
                rack_id=SIM_RACK_ID,
            )
        t = now()
        if conn.execute(sa.select(replica.c.id).where(replica.c.id == self.sec_id)).first():
            conn.execute(
                replica.update()
                .where(replica.c.id == self.sec_id)
                .values(
                    bind=self.settings.bind, time_started=t, time_heartbeat=t, time_stopped=None
                )
            )
        else:
            conn.execute(
                replica.insert().values(
                    id=self.sec_id, bind=self.settings.bind, time_started=t, time_heartbeat=t
                )
            )
        if self.store.is_sqlite:
            self._refuse_second_sqlite_replica(conn, t)
            # One replica only on SQLite: whatever another identity left unfinished is ours.
            conn.execute(
                saga.update()
                .where(
                    saga.c.state.in_(("running", "unwinding")), saga.c.current_sec != self.sec_id
                )
                .values(current_sec=self.sec_id, adopt_generation=saga.c.adopt_generation + 1)
            )

    def _refuse_second_sqlite_replica(self, conn: Connection, t: datetime) -> None:
        since = t - timedelta(seconds=self.settings.adoption_timeout)
        others = store_replicas.live_others(conn, self.sec_id, since)
        if others:
            raise StartupRefused(
                f"another Skylight replica ({others[0].bind}) is running on this SQLite store; "
                "SQLite allows one replica. Stop it first, or use PostgreSQL "
                "(--db postgresql://...) to run several replicas."
            )

    # -- sleds leaving service ------------------------------------------------------------

    async def expunge_sled(self, sled_id: str) -> None:
        """The sled leaves service for good: its instances fail (cause ``sled_failure``) and
        may be restarted elsewhere; local disks on it pin their instances nowhere."""

        def write(conn: Connection) -> list[str]:
            sleds.expunge(conn, sled_id)
            lost = list(
                conn.execute(
                    sa.select(instance.c.id, instance.c.active_vmm_id)
                    .select_from(instance.join(vmm, vmm.c.id == instance.c.active_vmm_id))
                    .where(vmm.c.sled_id == sled_id)
                )
            )
            for row in lost:
                self.fail_instance_in(
                    conn, row.id, row.active_vmm_id, "sled_failure", f"sled {sled_id} expunged"
                )
            return [row.active_vmm_id for row in lost]

        vmm_ids = await self.store.tx(write)
        if self.rack is not None:
            for vmm_id in vmm_ids:
                self.rack.forget(vmm_id)

    # -- VMMs that die on their own --------------------------------------------------------

    async def on_vmm_lost(self, vmm_id: str, cause: str, detail: str) -> None:
        """A VMM died on its own. The simulated rack has already forgotten it, so the notice
        must not be lost to a store outage: it is retried in the background until it lands."""
        try:
            await self._record_vmm_lost(vmm_id, cause, detail)
        except StoreUnavailable as exc:
            log.warning("VMM %s lost while the store is unavailable (%s); retrying", vmm_id, exc)
            task = asyncio.create_task(self._retry_vmm_lost(vmm_id, cause, detail))
            self._background.append(task)

    async def _retry_vmm_lost(self, vmm_id: str, cause: str, detail: str) -> None:
        delay = 0.1
        while True:
            await asyncio.sleep(delay)
            try:
                await self._record_vmm_lost(vmm_id, cause, detail)
                return
            except StoreUnavailable:
                delay = min(delay * 2, 2.0)

    async def _record_vmm_lost(self, vmm_id: str, cause: str, detail: str) -> None:
        def write(conn: Connection) -> None:
            row = instances.vmm_row(conn, vmm_id)
            if row is None:
                return
            if row.state in ("creating", "starting"):
                # A start saga owns this VMM; it will see the VMM gone and unwind.
                instances.set_vmm_state(conn, vmm_id, "failed")
                return
            self.fail_instance_in(conn, row.instance_id, vmm_id, cause, detail)

        await self.store.tx(write)

    def fail_instance_in(
        self, conn: Connection, instance_id: str, vmm_id: str, cause: str, detail: str
    ) -> None:
        """The instance's VMM is gone: the instance is failed and its resources are freed."""
        cause = cause if cause in _FAILURE_MESSAGES else "vmm_failure"
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
        sled_id = conn.execute(sa.select(vmm.c.sled_id).where(vmm.c.id == vmm_id)).scalar()
        reason = reasons.make(
            cause,
            _FAILURE_MESSAGES[cause],
            action="The control plane restarts it if its auto-restart policy allows; "
            "otherwise start it again.",
            internal={"vmm_id": vmm_id, "sled_id": sled_id, "detail": detail},
        )
        record(
            conn,
            instance_id,
            Kind.FAILED,
            control_plane(cause),
            reason=reason,
            explains_status=True,
        )
        auto_restart.schedule_in(conn, self.settings, instance_id)
