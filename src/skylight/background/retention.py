"""Event retention: events older than the setting go, but every instance keeps its newest
ones (default 100) and the event behind its current status reason, whatever their age.
Webhook deliveries that settled go after as long; pending ones stay."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.engine import Connection

from skylight.background.loop import every
from skylight.background.replicas import holds
from skylight.clock import now
from skylight.services import Services
from skylight.store import events, webhooks

log = logging.getLogger(__name__)

DELIVERIES_PER_TRANSACTION = 2000


async def run_once(cp: Services) -> int:
    if not await holds(cp, "retention"):
        return 0  # another replica enforces retention for the fleet
    cutoff = now() - timedelta(days=cp.settings.event_retention_days)
    keep = cp.settings.event_retention_keep
    removed, after = 0, None
    while True:
        # A transaction per batch of instances: on SQLite every request waits for the one
        # running, so none may last a whole pass over millions of events.
        def batch(c: Connection, after: str | None = after) -> tuple[int, str | None]:
            return events.retention_batch(
                c, older_than=cutoff, keep=keep, after=after, instances=events.RETENTION_BATCH
            )

        done, after = await cp.store.tx(batch)
        removed += done
        if after is None:
            break
    if removed:
        log.info("retention removed %d events older than %s", removed, cutoff.isoformat())
    # Webhook deliveries that settled (delivered, or failed for good) go after as long.
    pruned = 0
    while True:
        n = await cp.store.tx(
            lambda c: webhooks.prune_deliveries(c, cutoff, DELIVERIES_PER_TRANSACTION)
        )
        pruned += n
        if n < DELIVERIES_PER_TRANSACTION:
            break
    if pruned:
        log.info("retention removed %d webhook deliveries older than %s", pruned, cutoff)
    return removed


async def loop(services: Services) -> None:
    interval = services.settings.event_retention_interval
    await every("event retention", interval, lambda: run_once(services))
