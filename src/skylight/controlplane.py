"""One control-plane replica, wired together: the store, the saga executor, the sleds, the
background loops. It provides the ``Services`` that everything below it is typed against,
and holds no rule of its own: failures live in ``instances/``, what users ask in
``operations/``, the periodic work in ``background/``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import anyio
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
from skylight.events.feed import Feed
from skylight.identity import secrets
from skylight.identity.sealing import Sealer
from skylight.ids import new_id
from skylight.instances import failures
from skylight.metrics import Metrics
from skylight.operations import bootstrap
from skylight.rack_secret import RackSecret, RackSecretError, create, default_path, load
from skylight.sagas import (
    SagaExecutor,
    instance_create,
    instance_delete,
    instance_reboot,
    instance_start,
    instance_stop,
)
from skylight.sagas.crash import CrashPoint
from skylight.services import SagaError, SagaParams
from skylight.sled.directory import SledDirectory
from skylight.sled.sim import SimRack
from skylight.store import Store, StoreUnavailable, migrate, sleds
from skylight.store import replicas as store_replicas
from skylight.webhooks import receivers

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


def _rack_secret(settings: Settings) -> RackSecret:
    """The rack secret from ``--rack-secret-file``, or the embedded default's (generated under
    the data directory on the first start, the same one after)."""
    try:
        if settings.rack_secret_file is not None:
            return load(settings.rack_secret_file)
        return create(default_path(settings.data_dir))
    except RackSecretError as exc:
        raise StartupRefused(f"{exc} (--rack-secret-file)") from None


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
        self.rack_secret = _rack_secret(settings)
        self.webhook_sealer = Sealer(self.rack_secret.derived_key("webhook-secrets"))
        self.store = Store(settings.resolved_db_url())
        self.rng = random.Random()
        self.rack_cache = sleds.RackCache(settings.placement_rack_max_age)
        self.rack: SimRack | None = None
        if settings.sim.enabled:
            self.rack = SimRack(settings.data_dir / "sim-rack.db", settings.sim.start_delay)
            self.rack.set_listener(self._rack_lost_vmm)
        self.sleds = SledDirectory(
            self.rack,
            settings.sled_call_timeout,
            self.store,
            credential=self.rack_secret.control_plane_credential(),
        )
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
        self.executor.on_end.append(self._count_saga_end)
        self._background: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Task[None] | None = None
        for sdef in SAGAS:
            self.executor.register(sdef)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.feed.bind(self._loop)
        await self._migrate_when_store_answers()
        await self.store.tx(self._bootstrap)
        await self.store.tx(lambda c: receivers.seal_clear(c, self.webhook_sealer))
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

    def _bootstrap(self, conn: Connection) -> None:
        s = self.settings
        secrets.configure_hashing(*s.password_hash_cost)
        recovery = bootstrap.Recovery(
            s.recovery_silo, s.recovery_user, s.recovery_password, s.data_dir
        )
        bootstrap.ensure_recovery(conn, recovery)

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
        store_replicas.register(conn, self.sec_id, self.settings.bind, t)
        if self.store.is_sqlite:
            self._refuse_second_sqlite_replica(conn, t)
            # One replica only on SQLite: whatever another identity left unfinished is ours.
            store_replicas.claim_all_unfinished(conn, self.sec_id)

    def _refuse_second_sqlite_replica(self, conn: Connection, t: datetime) -> None:
        since = t - timedelta(seconds=self.settings.adoption_timeout)
        others = store_replicas.live_others(conn, self.sec_id, since)
        if others:
            raise StartupRefused(
                f"another Skylight replica ({others[0].bind}) is running on this SQLite store; "
                "SQLite allows one replica. Stop it first, or use PostgreSQL "
                "(--db postgresql://...) to run several replicas."
            )

    def _count_saga_end(
        self, name: str, params: SagaParams, state: str, error: SagaError | None
    ) -> None:
        code = error["reason"].get("code") if error is not None else None
        self.metrics.saga_ended(name, state, code, str(getattr(params, "reason", "user")))

    async def _rack_lost_vmm(self, vmm_id: str, cause: str, detail: str) -> None:
        """The in-process rack forgets a VMM as it reports it lost: a report that meets a
        store outage goes on being tried in the background (without holding the rack up)."""
        try:
            await failures.vmm_lost(self, vmm_id, cause, detail)
        except StoreUnavailable:
            self._background.append(
                asyncio.create_task(failures.vmm_lost_patiently(self, vmm_id, cause, detail))
            )
