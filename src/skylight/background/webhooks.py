"""Webhook dispatch and delivery, run by the replica that holds the ``webhooks`` lease.

Dispatch reads the event log from its cursor and writes, in the same transaction that moves
the cursor, one delivery row per receiver whose subscriptions match each event: an event is
handed out exactly once, whichever replica dispatches and however often one dies. (Events
commit in ``seq`` order, see ``store.events.insert``, so a cursor never skips one.)

Delivery claims the due rows, sends them concurrently, and records every attempt. A failed
attempt is retried with backoff until ``webhook_attempts`` are spent; then the delivery is
``failed`` and stays visible in the receiver's deliveries, to be resent by hand or by a probe.
A replica that dies mid-send leaves its claimed deliveries to come due again: a receiver may
see a delivery twice (same delivery id), never zero times.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx
from sqlalchemy.engine import Connection

from skylight.clock import now
from skylight.store import events
from skylight.store import webhooks as rows
from skylight.webhooks import alerts, receivers, send

if TYPE_CHECKING:
    from skylight.controlplane import ControlPlane

log = logging.getLogger(__name__)

DISPATCH_BATCH = 500  # events per dispatch transaction
DELIVERY_BATCH = 32  # deliveries sent at once
LEASE = "webhooks"
COALESCE = 0.02  # seconds a woken pass waits for the rest of a burst of commits


class Dispatched(NamedTuple):
    written: int  # deliveries written
    more: bool  # a full batch: there may be more events to hand out
    listening: bool  # any subscription exists


def dispatch_batch(conn: Connection, limit: int = DISPATCH_BATCH) -> Dispatched:
    """Hand out the next events after the cursor."""
    cursor = rows.cursor(conn, lock=True)
    subs = rows.all_subscriptions(conn)
    if cursor is None or not subs:
        # Nobody listens: nothing to write (the first subscription moves the cursor to the
        # head of the log, under the same lock).
        return Dispatched(0, False, False)
    by_receiver: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for s in subs:
        by_receiver[s.receiver_id].append((s.pattern, s.after_seq))
    batch = events.after(conn, events.EventFilter(), after_seq=cursor, limit=limit)
    new: list[dict[str, Any]] = []
    for ev in batch:
        for receiver_id, patterns in by_receiver.items():
            if any(ev.seq > after and alerts.matches(p, ev.kind) for p, after in patterns):
                new.append(
                    receivers.delivery_row(
                        receiver_id, ev.id, ev.kind, alerts.data(ev), trigger="alert"
                    )
                )
    rows.insert_deliveries(conn, new)
    if batch:
        rows.set_cursor(conn, batch[-1].seq)
    return Dispatched(len(new), len(batch) == limit, True)


async def dispatch(cp: ControlPlane) -> bool:
    """Hand out every event committed so far; whether anybody listens."""
    while True:
        done = await cp.store.tx(dispatch_batch)
        if not done.more:
            return done.listening


def _claim(conn: Connection, claim_for: float) -> list[tuple[Any, send.Target]]:
    t = now()
    due = rows.due(conn, t, DELIVERY_BATCH)
    rows.claim(conn, [d.id for d in due], t + timedelta(seconds=claim_for))
    targets: dict[str, send.Target] = {}
    out = []
    for d in due:
        if d.receiver_id not in targets:
            receiver = rows.by_id(conn, d.receiver_id)
            if receiver is None:
                continue
            targets[d.receiver_id] = receivers.target(conn, receiver)
        out.append((d, targets[d.receiver_id]))
    return out


def outcome(cp: ControlPlane, delivery: Any, attempt: dict[str, Any]) -> tuple[str, Any]:
    """The delivery's state after ``attempt`` and when it is next due (None: never)."""
    if attempt["result"] == send.SUCCEEDED:
        return rows.DELIVERED, None
    s = cp.settings
    delay = send.retry_delay(
        attempt["attempt"],
        attempts=s.webhook_attempts,
        backoff=s.webhook_backoff,
        backoff_max=s.webhook_backoff_max,
    )
    if delay < 0:
        return rows.FAILED, None
    return rows.PENDING, now() + timedelta(seconds=delay)


async def deliver_one(
    cp: ControlPlane, client: httpx.AsyncClient, delivery: Any, target: send.Target
) -> str:
    number = len(delivery.attempts) + 1
    attempt = await send.attempt(client, delivery, target, number, cp.settings.webhook_timeout)
    state, next_at = outcome(cp, delivery, attempt)
    await cp.store.tx(
        lambda c: rows.record_attempt(c, delivery.id, attempt, state=state, next_attempt=next_at)
    )
    cp.metrics.webhook_attempts.labels(result=attempt["result"]).inc()
    if state == rows.FAILED:
        log.warning(
            "webhook delivery %s of alert %s to %s failed for good after %d attempts (%s)",
            delivery.id,
            delivery.alert_id,
            target.endpoint,
            number,
            attempt["result"],
        )
    return state


async def deliver(cp: ControlPlane, client: httpx.AsyncClient) -> int:
    """Send what is due, a batch at a time; how many attempts were made."""
    total = 0
    claim_for = cp.settings.webhook_timeout + 30.0
    while True:
        batch = await cp.store.tx(lambda c: _claim(c, claim_for))
        if not batch:
            return total
        await asyncio.gather(*(deliver_one(cp, client, d, t) for d, t in batch))
        total += len(batch)


def client() -> httpx.AsyncClient:
    # No redirects: a receiver answers for itself. No proxy from the environment: a
    # receiver is reached directly.
    return httpx.AsyncClient(follow_redirects=False, trust_env=False)


async def run_once(cp: ControlPlane, http: httpx.AsyncClient) -> bool:
    """One pass if this replica holds the lease; whether anybody listens (subscriptions)."""
    from skylight.background.replicas import holds

    if not await holds(cp, LEASE):
        return False
    listening = await dispatch(cp)
    await deliver(cp, http)
    return listening


async def loop(cp: ControlPlane) -> None:
    async with client() as http:
        while True:
            listening = False
            try:
                listening = await run_once(cp, http)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook pass failed; trying again next interval")
            if not listening:
                # No receiver subscribes to anything: a look every interval, not a
                # transaction after every commit (on SQLite each would take the write lock).
                await asyncio.sleep(cp.settings.webhook_interval)
                continue
            # Woken when this replica commits events (other replicas' events and retries
            # that come due are found at the next interval), then a moment for the rest of
            # a burst of commits to arrive, so that they go out in one pass.
            await cp.feed.wait(cp.settings.webhook_interval)
            await asyncio.sleep(min(COALESCE, cp.settings.webhook_interval))
