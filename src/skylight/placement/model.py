"""What placement reads and what it answers. Plain data, no store, no HTTP."""

from __future__ import annotations

from dataclasses import dataclass

from skylight.wire import JsonObject


@dataclass(frozen=True)
class GroupRule:
    """One affinity or anti-affinity group of the instance being placed.

    ``sleds`` are the sleds where the group's *other* members hold reservations now;
    ``members`` counts every member, this instance included.
    """

    name: str
    policy: str  # allow | fail
    sleds: frozenset[str] = frozenset()
    members: int = 1

    @property
    def hard(self) -> bool:
        return self.policy == "fail"


@dataclass(frozen=True)
class Request:
    ncpus: int
    memory: int
    cpu_platform: str | None = None
    local_storage: int = 0  # bytes of local disks still to be allocated
    pinned_sled: str | None = None  # where the instance's allocated local disks are
    affinity: tuple[GroupRule, ...] = ()
    anti_affinity: tuple[GroupRule, ...] = ()
    # Names of running instances that share both a `fail` affinity and a `fail` anti-affinity
    # group with this one: it must be on their sled and off it at once.
    contradictions: tuple[str, ...] = ()


def sled_in_service(policy: str, state: str) -> bool:
    return policy == "in_service" and state == "active"


def sled_takes_instances(provision_policy: str, reachable: bool) -> bool:
    return provision_policy == "provisionable" and reachable


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
    local_storage: int = 0
    reserved_cpus: int = 0
    reserved_memory: int = 0
    reserved_local_storage: int = 0
    # False while the sled's agent does not answer: like maintenance, it takes no new
    # instances for now.
    reachable: bool = True

    @property
    def free_cpus(self) -> int:
        return self.cpus - self.reserved_cpus

    @property
    def free_memory(self) -> int:
        return self.memory - self.reserved_memory

    @property
    def free_local_storage(self) -> int:
        return self.local_storage - self.reserved_local_storage

    @property
    def in_service(self) -> bool:
        return sled_in_service(self.policy, self.state)

    @property
    def takes_instances(self) -> bool:
        """Provisionable and reachable: new instances may go there now."""
        return sled_takes_instances(self.provision_policy, self.reachable)


@dataclass(frozen=True)
class Placement:
    sled_id: str
    # Affinity preferences (policy `allow`) this choice had to break: [{kind, group}].
    broken_preferences: tuple[dict[str, str], ...] = ()


@dataclass(frozen=True)
class PlacementFailure:
    """No sled fits. ``reason`` is a full reason dict (see ``skylight.events.reasons``)."""

    reason: JsonObject

    @property
    def message(self) -> str:
        return str(self.reason["message"])
