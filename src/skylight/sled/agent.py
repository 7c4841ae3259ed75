"""What the control plane may ask of a sled, and what a sled may tell the control plane."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class VmmSpec:
    vmm_id: str
    instance_id: str
    ncpus: int
    memory: int


class SledAgentError(Exception):
    """A sled agent refused or failed a request.

    ``kind`` is ``error`` (the agent said no), ``vmm_gone`` (the VMM it was asked about no
    longer exists), ``timeout`` (no answer in time) or ``unreachable`` (the sled is down).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class SledAgent(Protocol):
    """Every call is idempotent: the control plane replays saga actions after a crash."""

    async def register(self, spec: VmmSpec) -> None:
        """Make the VMM known to the sled (``creating``)."""

    async def ensure_running(self, vmm_id: str) -> None:
        """Ask the VMM to boot; it reports ``starting`` and then ``running``."""

    async def vmm_state(self, vmm_id: str) -> str | None:
        """The VMM's state, or None when the sled does not know it."""

    async def stop(self, vmm_id: str) -> None:
        """Stop the VMM and forget it. Stopping an unknown VMM succeeds."""

    async def unregister(self, vmm_id: str) -> None:
        """Forget the VMM, stopping it first if needed. Unknown VMMs are fine."""

    async def reboot(self, vmm_id: str) -> None:
        """Reboot a running VMM."""


# The control plane's callback for VMMs that die on their own: (vmm_id, cause, detail).
VmmLostListener = Callable[[str, str, str], Awaitable[None]]


async def with_timeout(call: Awaitable[T], seconds: float) -> T:
    """A sled that does not answer in time has failed the request."""
    try:
        return await asyncio.wait_for(call, seconds)
    except TimeoutError:
        raise SledAgentError("timeout", f"no answer from the sled agent in {seconds:g}s") from None
