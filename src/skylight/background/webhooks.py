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
import functools
import logging
import time
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


def _record(cp: ControlPlane, conn: Connection, *, sent: list[tuple[Any, dict[str, Any]]]) -> None:
    for delivery, attempt in sent:
        state, next_at = outcome(cp, delivery, attempt)
        rows.record_attempt(conn, delivery.id, attempt, state=state, next_attempt=next_at)


async def _send(cp: ControlPlane, http: httpx.AsyncClient, batch: list[Any]) -> None:
    """Send a claimed batch concurrently and record its attempts in one transaction."""
    timeout = cp.settings.webhook_timeout
    attempts = await asyncio.gather(
        *(send.attempt(http, d, t, len(d.attempts) + 1, timeout) for d, t in batch)
    )
    sent = [(d, a) for (d, _), a in zip(batch, attempts, strict=True)]
    await cp.store.tx(functools.partial(_record, cp, sent=sent))
    for (d, target), a in zip(batch, attempts, strict=True):
        cp.metrics.webhook_attempts.labels(result=a["result"]).inc()
        if outcome(cp, d, a)[0] == rows.FAILED:
            log.warning(
                "webhook delivery %s of alert %s to %s failed for good after %d attempts (%s)",
                d.id,
                d.alert_id,
                target.endpoint,
                a["attempt"],
                a["result"],
            )


async def run_once(cp: ControlPlane, http: httpx.AsyncClient) -> bool:
    """Hand out the events committed so far and send every delivery that is due (the
    caller holds the lease); whether anybody listens. On SQLite every transaction takes
    the write lock, so a pass is few of them: dispatch and the first claim share one, and
    each batch sent is recorded in one."""
    claim_for = cp.settings.webhook_timeout + 30.0

    def step(conn: Connection) -> tuple[Dispatched, list[Any]]:
        done = dispatch_batch(conn)
        return done, ([] if done.more else _claim(conn, claim_for))

    while True:
        done, batch = await cp.store.tx(step)
        if done.more:
            continue
        if batch:
            await _send(cp, http, batch)
        if len(batch) < DELIVERY_BATCH:
            return done.listening


def client() -> httpx.AsyncClient:
    # No redirects: a receiver answers for itself. No proxy from the environment: a
    # receiver is reached directly.
    return httpx.AsyncClient(follow_redirects=False, trust_env=False)


async def loop(cp: ControlPlane) -> None:
    from skylight.background.replicas import holds

    interval = cp.settings.webhook_interval
    held_until = 0.0  # (monotonic) the lease was renewed recently enough until then
    async with client() as http:
        while True:
            seen = cp.feed.version
            listening = False
            try:
                if time.monotonic() >= held_until and await holds(cp, LEASE):
                    held_until = time.monotonic() + interval  # renewed once an interval
                if time.monotonic() < held_until:
                    listening = await run_once(cp, http)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook pass failed; trying again next interval")
            if not listening:
                # Not the lease holder, or no receiver subscribes to anything: a look every
                # interval, not a transaction after every commit.
                await asyncio.sleep(interval)
                continue
            # Woken when this replica commits events, including while the pass ran (other
            # replicas' events and retries that come due are found at the next interval);
            # then a moment for the rest of a burst of commits, to send them in one pass.
            await cp.feed.wait(interval, since=seen)
            await asyncio.sleep(min(COALESCE, interval))
