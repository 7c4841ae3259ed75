"""What ``skylight instance resize`` and ``update`` send: Oxide's ``InstanceUpdate`` wants every
setting, so a change to one is the instance's current settings with that one replaced (a field
left out would be reset, not kept)."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass

from skylight.wire import JsonObject


class RestartPolicy(enum.StrEnum):
    """``default`` leaves the choice to the control plane (the API's null)."""

    never = "never"
    best_effort = "best_effort"
    default = "default"


class CpuPlatform(enum.StrEnum):
    """``any`` lets the instance run on any sled's CPU (the API's null)."""

    amd_milan = "amd_milan"
    amd_turin = "amd_turin"
    amd_turin_v2 = "amd_turin_v2"
    any = "any"


@dataclass(frozen=True)
class InstanceSettings:
    """The settings ``PUT /v1/instances/{instance}`` replaces, all of them."""

    ncpus: int
    memory: int
    auto_restart_policy: str | None
    boot_disk: str | None
    cpu_platform: str | None
    enable_jumbo_frames: bool

    @classmethod
    def of(cls, instance: JsonObject) -> InstanceSettings:
        """The settings an instance (the API's view of it) has now."""
        return cls(
            ncpus=int(instance["ncpus"]),
            memory=int(instance["memory"]),
            auto_restart_policy=instance.get("auto_restart_policy"),
            boot_disk=instance.get("boot_disk_id"),
            cpu_platform=instance.get("cpu_platform"),
            enable_jumbo_frames=bool(instance.get("enable_jumbo_frames")),
        )

    def body(self) -> JsonObject:
        return asdict(self)


def policy_value(policy: RestartPolicy) -> str | None:
    return None if policy is RestartPolicy.default else policy.value


def platform_value(platform: CpuPlatform) -> str | None:
    return None if platform is CpuPlatform.any else platform.value
