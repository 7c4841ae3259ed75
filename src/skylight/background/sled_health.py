"""Sled health: watch the HTTP sled agents, fail the instances of a sled that went silent.

Every ``sled_health_interval`` (default 2 s; more often when ``sled_failure_timeout`` is
shorter than four intervals) this task refreshes the sled directory's
sled → URL map from the store (so a sled registered through another replica becomes reachable
here) and asks each HTTP agent in service for ``/health``. An agent that has not answered —
as the sled the store says it is, with power — for longer than ``sled_failure_timeout``
(default 15 s)
has failed: the instances whose VMM runs on it become ``failed`` with cause ``sled_failure``,
each with its ``instance.failed`` event, in one transaction (as expunging a sled does).
From the first check an agent misses until it answers again, the sled row says so
(``time_unreachable``) and placement, on every replica, puts no new instance there: the
start would only fail with ``sled_failure``; a start only that sled could take is refused
with ``capacity_in_maintenance`` (transient), which names the silent agent.

When an agent answers again after a silence (or is first seen by this replica) its VMMs are
reconciled with the store: VMMs the control plane has given up on are unregistered from the
sled, and VMMs the store says run there but the agent no longer has are reported lost.
Every replica runs this task; failing an instance is guarded by its active VMM, so two
replicas that notice the same silence record one failure.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy.engine import Connection

from skylight.background.loop import every
from skylight.background.replicas import holds
from skylight.instances import failures
from skylight.services import Services
from skylight.sled.agent import SledAgentError, with_timeout
from skylight.store import instances, sleds

log = logging.getLogger(__name__)

# VMM states after which the control plane no longer wants the VMM on its sled.
_ABANDONED = ("failed", "destroyed", "saga_unwound", "stopped")


class SledHealth:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.last_ok: dict[str, float] = {}  # sled id -> monotonic time of its last answer
        self.to_reconcile: set[str] = set()
        # What this replica last wrote of each sled's reachability (sled.time_unreachable),
        # so that only a change is written.
        self.reachable: dict[str, bool] = {}

    async def run_once(self) -> None:
        await self.services.sleds.refresh()  # every replica keeps its map of sleds current
        if not await holds(self.services, "sled-health"):
            self.last_ok.clear()  # another replica judges the sleds' health for the fleet
            self.reachable.clear()
            return
        targets = self.services.sleds.http_sleds()
        for gone in set(self.last_ok) - set(targets):
            self.last_ok.pop(gone, None)
            self.reachable.pop(gone, None)
            self.to_reconcile.discard(gone)
        self.to_reconcile |= self.services.sleds.suspects & set(targets)
        self.services.sleds.suspects.clear()
        checks = await asyncio.gather(*(self._check(s, u) for s, u in targets.items()))
        t = time.monotonic()
        await self._record_reachability(dict(zip(targets, checks, strict=True)))
        for sled_id, ok in zip(targets, checks, strict=True):
            if sled_id not in self.last_ok:
                self.last_ok[sled_id] = t  # silence counts from when this replica first looks
                self.to_reconcile.add(sled_id)
            if ok:
                self.last_ok[sled_id] = t
                if sled_id in self.to_reconcile and await self._reconcile(sled_id):
                    self.to_reconcile.discard(sled_id)
                continue
            self.to_reconcile.add(sled_id)
            silent = t - self.last_ok[sled_id]
            if silent > self.services.settings.sled_failure_timeout:
                await self._fail_sled(sled_id, silent)

    async def _record_reachability(self, answered: dict[str, bool]) -> None:
        """Write which sleds' agents answer, where that changed: placement keeps new
        instances off a sled whose agent did not answer its last check (it would fail to
        start there), on every replica, until it answers again."""
        changed = {s: ok for s, ok in answered.items() if self.reachable.get(s) != ok}
        if not changed:
            return

        def write(conn: Connection) -> None:
            for sled_id, ok in changed.items():
                sleds.set_reachable(conn, sled_id, ok)

        await self.services.store.tx(write)
        self.reachable.update(changed)
        for sled_id, ok in changed.items():
            if not ok:
                log.warning("sled %s: agent not answering; no new instances placed there", sled_id)

    async def _check(self, sled_id: str, url: str) -> bool:
        timeout = min(2.0, self.services.settings.sled_call_timeout)
        try:
            health = await self.services.sleds.http(url).health(timeout=timeout)
        except SledAgentError:
            return False
        except Exception:
            log.exception("health check of sled %s at %s failed", sled_id, url)
            return False
        # Another agent may now listen at that address: only the right sled counts. An agent
        # that answers for a sled without power (a simulated power-off) is as good as silent:
        # every start placed there would fail with sled_failure, and after a rack loses
        # power its emptied sleds are the ones placement favours (the recovery storm put a
        # third of its restarts there before this).
        return bool(health.get("sled_id") == sled_id and health.get("powered", True))

    async def _fail_sled(self, sled_id: str, silent: float) -> None:
        detail = f"the agent of sled {sled_id} has not answered for {silent:.0f}s"
        failed = await failures.sled_silent(self.services, sled_id, detail)
        if failed:
            log.warning("sled %s is unreachable: %d instance(s) failed", sled_id, failed)

    async def _reconcile(self, sled_id: str) -> bool:
        """Make the sled's VMMs and the store agree; True when done."""
        agent = self.services.sleds.agent(sled_id)
        url = self.services.sleds.http_sleds().get(sled_id)
        if url is None:
            return True
        running = await self.services.store.tx(lambda c: instances.running_vmms_on(c, sled_id))
        try:
            held = await with_timeout(
                self.services.sleds.http(url).vmms(), self.services.settings.sled_call_timeout
            )
        except SledAgentError as exc:
            log.info("cannot list the VMMs of sled %s yet: %s", sled_id, exc)
            return False
        on_sled = {str(v["vmm_id"]) for v in held}
        known = await self.services.store.tx(lambda c: instances.vmm_states(c, on_sled))
        done = True
        for vmm_id in sorted(on_sled):
            if known.get(vmm_id) in (None, *_ABANDONED):
                try:
                    await agent.unregister(vmm_id)
                    log.info("sled %s: unregistered abandoned VMM %s", sled_id, vmm_id)
                except SledAgentError as exc:
                    log.warning("sled %s: cannot unregister VMM %s: %s", sled_id, vmm_id, exc)
                    done = False
        for vmm_id in sorted(running - on_sled):
            detail = f"sled {sled_id} no longer has the VMM (its agent lost its state)"
            await failures.vmm_missing(self.services, vmm_id, detail)
        return done


async def loop(services: Services) -> None:
    settings = services.settings
    # Look often enough that a silence is noticed close to the failure timeout.
    interval = min(settings.sled_health_interval, settings.sled_failure_timeout / 4)
    await every("sled health", interval, SledHealth(services).run_once)
