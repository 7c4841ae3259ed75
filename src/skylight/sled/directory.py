"""Which agent answers for a sled, with every call bounded in time."""

from __future__ import annotations

from skylight.sled.agent import SledAgent, SledAgentError, VmmSpec, with_timeout
from skylight.sled.sim import SimRack


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


class SledDirectory:
    def __init__(self, rack: SimRack | None, timeout: float) -> None:
        self.rack = rack
        self.timeout = timeout

    def agent(self, sled_id: str) -> SledAgent:
        if self.rack is None:
            raise SledAgentError("unreachable", f"no agent is known for sled {sled_id}")
        return TimedAgent(self.rack.agent(sled_id), self.timeout)
