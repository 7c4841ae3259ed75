"""What placement reads and what it answers. Plain data, no store, no HTTP."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Request:
    ncpus: int
    memory: int
    cpu_platform: str | None = None


@dataclass(frozen=True)
class SledView:
    """One sled as placement sees it: its capacity and what is reserved on it now."""

    id: str
    policy: str  # in_service | expunged
    provision_policy: str  # provisionable | non_provisionable
    state: str  # active | decommissioned
    cpus: int
    memory: int
    cpu_family: str = "amd_milan"
    reserved_cpus: int = 0
    reserved_memory: int = 0

    @property
    def free_cpus(self) -> int:
        return self.cpus - self.reserved_cpus

    @property
    def free_memory(self) -> int:
        return self.memory - self.reserved_memory

    @property
    def in_service(self) -> bool:
        return self.policy == "in_service" and self.state == "active"


@dataclass(frozen=True)
class Rejection:
    """Why one filter step turned a sled away: ``check`` names the step."""

    check: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Placement:
    sled_id: str


@dataclass(frozen=True)
class PlacementFailure:
    """No sled fits. ``reason`` is a full reason dict (see ``skylight.events.reasons``)."""

    reason: dict[str, Any]

    @property
    def message(self) -> str:
        return str(self.reason["message"])
