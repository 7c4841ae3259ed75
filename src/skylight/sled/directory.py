"""Which agent answers for a sled, with every call bounded in time.

A sled whose row has no ``agent_url`` belongs to the in-process simulated rack; any other is
reached over HTTP at its URL (``HttpSledAgent``, one shared client per URL). The sled → URL
map is kept in memory: loaded from the store at start-up, updated when a registration arrives
at this replica, and refreshed by the sled-health task every couple of seconds (so a sled
registered through another replica becomes reachable here). A sled the map does not know yet
is looked up in the store when it is first called, so a saga never fails for a stale map.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from skylight.sled.agent import SledAgent, SledAgentError, VmmSpec, with_timeout
from skylight.sled.http_client import HttpSledAgent
from skylight.sled.sim import SimRack

if TYPE_CHECKING:
    from skylight.store import Store


class TimedAgent:
    """Wraps an agent so that a sled that never answers fails the call instead of hanging."""

    def __init__(self, inner: SledAgent, timeout: float) -> None:
        self._inner = inner
        self._timeout = timeout

    async def register(self, spec: VmmSpec) -> None:
        await with_timeout(self._inner.register(spec), self._timeout)

    async def ensure_running(self, vmm_id: str) -> None:
        await with_timeout(self._inner.ensure_running(vmm_id), self._timeout)

    async def vmm_state(self, vmm_id: str) -> str | None:
        return await with_timeout(self._inner.vmm_state(vmm_id), self._timeout)

    async def stop(self, vmm_id: str) -> None:
        await with_timeout(self._inner.stop(vmm_id), self._timeout)

    async def unregister(self, vmm_id: str) -> None:
        await with_timeout(self._inner.unregister(vmm_id), self._timeout)

    async def reboot(self, vmm_id: str) -> None:
        await with_timeout(self._inner.reboot(vmm_id), self._timeout)


class _Resolving:
    """A sled's agent, chosen when a call is made (the directory may look the sled up)."""

    def __init__(self, directory: SledDirectory, sled_id: str) -> None:
        self._directory = directory
        self._sled_id = sled_id

    async def register(self, spec: VmmSpec) -> None:
        await (await self._directory.resolve(self._sled_id)).register(spec)

    async def ensure_running(self, vmm_id: str) -> None:
        await (await self._directory.resolve(self._sled_id)).ensure_running(vmm_id)

    async def vmm_state(self, vmm_id: str) -> str | None:
        return await (await self._directory.resolve(self._sled_id)).vmm_state(vmm_id)

    async def stop(self, vmm_id: str) -> None:
        await (await self._directory.resolve(self._sled_id)).stop(vmm_id)

    async def unregister(self, vmm_id: str) -> None:
        await (await self._directory.resolve(self._sled_id)).unregister(vmm_id)

    async def reboot(self, vmm_id: str) -> None:
        await (await self._directory.resolve(self._sled_id)).reboot(vmm_id)


class _HttpSled:
    """An HTTP sled as the sagas see it. A sled whose agent cannot be reached runs no VMMs
    as far as undoing is concerned (as a powered-off simulated sled): ``unregister`` of an
    unreachable agent succeeds, and the sled is marked for reconciliation, which removes the
    VMM once the agent answers again (see ``background/sled_health.py``)."""

    def __init__(self, inner: HttpSledAgent, on_unreachable: Callable[[], None]) -> None:
        self._inner = inner
        self._on_unreachable = on_unreachable

    async def register(self, spec: VmmSpec) -> None:
        await self._inner.register(spec)

    async def ensure_running(self, vmm_id: str) -> None:
        await self._inner.ensure_running(vmm_id)

    async def vmm_state(self, vmm_id: str) -> str | None:
        return await self._inner.vmm_state(vmm_id)

    async def stop(self, vmm_id: str) -> None:
        await self._inner.stop(vmm_id)

    async def unregister(self, vmm_id: str) -> None:
        try:
            await self._inner.unregister(vmm_id)
        except SledAgentError as exc:
            if exc.kind != "unreachable":
                raise
            self._on_unreachable()

    async def reboot(self, vmm_id: str) -> None:
        await self._inner.reboot(vmm_id)


class SledDirectory:
    def __init__(
        self,
        rack: SimRack | None,
        timeout: float,
        store: Store | None = None,
        *,
        credential: str,
    ) -> None:
        self.rack = rack
        self.timeout = timeout
        self.store = store
        self._credential = credential  # the control plane's, sent on every call to an agent
        # sled id -> agent URL; None: the in-process rack. Sleds not in the map are unknown.
        self._urls: dict[str, str | None] = {}
        self._expunged: set[str] = set()
        self._clients: dict[str, HttpSledAgent] = {}
        # Sleds whose VMMs may disagree with the store (an unregister could not reach them).
        self.suspects: set[str] = set()

    def agent(self, sled_id: str) -> SledAgent:
        if sled_id in self._urls:
            return TimedAgent(self._direct(sled_id, self._urls[sled_id]), self.timeout)
        return TimedAgent(_Resolving(self, sled_id), self.timeout)

    async def resolve(self, sled_id: str) -> SledAgent:
        if sled_id not in self._urls and self.store is not None:
            await self.refresh()
        if sled_id not in self._urls:
            if self.store is None and self.rack is not None:
                return self.rack.agent(sled_id)  # no store to ask: the in-process rack
            raise SledAgentError("unreachable", f"no agent is known for sled {sled_id}")
        return self._direct(sled_id, self._urls[sled_id])

    def _direct(self, sled_id: str, url: str | None) -> SledAgent:
        if url is None:
            if self.rack is None:
                raise SledAgentError(
                    "unreachable",
                    f"sled {sled_id} belongs to the in-process simulated rack, which this "
                    "control plane does not run (--no-sim)",
                )
            return self.rack.agent(sled_id)
        return _HttpSled(self.http(url), lambda: self.suspects.add(sled_id))

    def http(self, url: str) -> HttpSledAgent:
        """The shared client of the agent at ``url``."""
        client = self._clients.get(url)
        if client is None:
            client = self._clients[url] = HttpSledAgent(url, self.timeout, self._credential)
        return client

    # -- the map ---------------------------------------------------------------------------

    def learn(self, sled_id: str, url: str | None) -> None:
        """A registration arrived here: the sled is reachable at ``url`` from now on."""
        self._urls[sled_id] = url

    async def refresh(self) -> None:
        """Reload the sled → URL map from the store."""
        if self.store is None:
            return
        from skylight.store import sleds

        rows = await self.store.tx(sleds.agent_urls)
        self._urls = {r.id: r.agent_url for r in rows}
        self._expunged = {r.id for r in rows if r.policy == "expunged"}
        in_use = set(self._urls.values())
        for url in [u for u in self._clients if u not in in_use]:
            await self._clients.pop(url).aclose()  # the agent moved: its old address is dead

    def http_sleds(self) -> dict[str, str]:
        """Sleds in service reached over HTTP: sled id → agent URL."""
        return {
            sid: url
            for sid, url in self._urls.items()
            if url is not None and sid not in self._expunged
        }

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
