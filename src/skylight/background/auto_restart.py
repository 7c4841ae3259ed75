"""Auto-restart: on the replica that holds the fleet's ``auto-restart`` lease, start every
failed instance whose automatic restart is due (``operations.instances.restart_due``; the
policy itself is ``instances/auto_restart.py``)."""

from __future__ import annotations

from skylight.background.loop import every
from skylight.background.replicas import holds
from skylight.operations.instances import restart_due
from skylight.services import Services


async def run_once(services: Services) -> int:
    if not await holds(services, "auto-restart"):
        return 0  # another replica runs auto-restart for the fleet
    return await restart_due(services)


async def loop(services: Services) -> None:
    interval = services.settings.auto_restart_interval
    await every("auto-restart", interval, lambda: run_once(services))
