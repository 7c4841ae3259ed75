"""Webhook dispatch and delivery, run by the replica that holds the ``webhooks`` lease.

Dispatch reads the event log from its cursor and writes, in the same transaction that moves
the cursor, one delivery row per receiver whose subscriptions match each event: an event is
handed out exactly once, whichever replica dispatches and however often one dies. (Events
commit in ``seq`` order, see ``store.events.insert``, so a cursor never skips one.)

Delivery claims the due rows and sends each as a task of its own (at most PER_RECEIVER to
one receiver at a time, so that one that does not answer delays only itself), and records
the finished attempts together in the next pass's transaction. A failed attempt is retried
with backoff until ``webhook_attempts`` are spent; then the delivery is ``failed`` and stays
visible in the receiver's deliveries, to be resent by hand or by a probe.
A replica that dies mid-send leaves its claimed deliveries to come due again: a receiver may
see a delivery twice (same delivery id), never zero times.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any, NamedTuple

import httpx
from sqlalchemy.engine import Connection

from skylight.background.replicas import holds
from skylight.clock import now
from skylight.services import Services
from skylight.store import Row, events
from skylight.store import webhooks as rows
from skylight.webhooks import alerts, receivers, send
from skylight.webhooks.destination import Destinations
from skylight.wire import JsonObject

log = logging.getLogger(__name__)

DISPATCH_BATCH = 500  # events per dispatch transaction
IN_FLIGHT = 64  # deliveries under way at once
PER_RECEIVER = 8  # ... to one receiver
LEASE = "webhooks"
COALESCE = 0.02  # seconds a woken pass waits for the rest of a burst of commits


# A finished delivery attempt: the delivery, where it went, and what came of it.
Attempt = tuple[Row, send.Target, JsonObject]


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
    new: list[JsonObject] = []
    for ev in batch:
        to = [
            receiver_id
            for receiver_id, patterns in by_receiver.items()
            if any(ev.seq > after and alerts.matches(p, ev.kind) for p, after in patterns)
        ]
        if to:
            data = alerts.data(ev)  # one copy for all its receivers
            new += [receivers.delivery_row(r, ev.id, ev.kind, data, "alert") for r in to]
    rows.insert_deliveries(conn, new)
    if batch:
        rows.set_cursor(conn, batch[-1].seq)
    return Dispatched(len(new), len(batch) == limit, True)


def outcome(cp: Services, attempt: JsonObject) -> tuple[str, Any]:
    """A delivery's state after ``attempt`` and when it is next due (None: never)."""
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


class Deliverer:
    """Sends claimed deliveries, each as a task of its own, so that a receiver that does
    not answer holds up its own deliveries and nobody else's: at most PER_RECEIVER of a
    receiver's are under way at once, IN_FLIGHT in all. Finished attempts wait in
    ``finished`` and are recorded together in the next pass's transaction."""

    def __init__(self, cp: Services, http: httpx.AsyncClient) -> None:
        self.cp = cp
        self.http = http
        self.busy: dict[str, int] = defaultdict(int)  # receiver id -> sends under way
        self.finished: list[Attempt] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.wake = asyncio.Event()  # set when a send finishes

    def claim(self, conn: Connection) -> list[tuple[Row, send.Target]]:
        """Claim what is due and has room, receiver by receiver, oldest first."""
        room = IN_FLIGHT - sum(self.busy.values())
        if room <= 0:
            return []
        t = now()
        taken: dict[str, int] = defaultdict(int)
        picked = []
        for d in rows.due(conn, t, room * 4):
            if self.busy[d.receiver_id] + taken[d.receiver_id] < PER_RECEIVER:
                taken[d.receiver_id] += 1
                picked.append(d)
                if len(picked) == room:
                    break
        claim_for = self.cp.settings.webhook_timeout + 30.0
        rows.claim(conn, [d.id for d in picked], t + timedelta(seconds=claim_for))
        targets: dict[str, send.Target] = {}
        out = []
        for d in picked:
            if d.receiver_id not in targets:
                receiver = rows.by_id(conn, d.receiver_id)
                if receiver is None:
                    continue
                targets[d.receiver_id] = receivers.target(conn, receiver, self.cp.webhook_sealer)
            out.append((d, targets[d.receiver_id]))
        return out

    def record(self, conn: Connection) -> list[Attempt]:
        """Write the finished attempts (in the caller's transaction); the ones written."""
        done, self.finished = self.finished, []
        for delivery, _target, attempt in done:
            state, next_at = outcome(self.cp, attempt)
            rows.record_attempt(conn, delivery, attempt, state=state, next_attempt=next_at)
        return done

    def start(self, batch: list[tuple[Row, send.Target]]) -> None:
        for delivery, target in batch:
            self.busy[target.receiver_id] += 1
            task = asyncio.create_task(self._send(delivery, target))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _send(self, delivery: Row, target: send.Target) -> None:
        try:
            number = len(delivery.attempts) + 1
            timeout = self.cp.settings.webhook_timeout
            attempt = await send.attempt(self.http, delivery, target, number, timeout)
            self.finished.append((delivery, target, attempt))
        finally:
            self.busy[target.receiver_id] -= 1
            self.wake.set()

    def report(self, done: list[Attempt]) -> None:
        for d, target, a in done:
            self.cp.metrics.webhook_attempts.labels(result=a["result"]).inc()
            if outcome(self.cp, a)[0] == rows.FAILED:
                log.warning(
                    "webhook delivery %s of alert %s to %s failed for good after %d attempts (%s)",
                    d.id,
                    d.alert_id,
                    target.endpoint,
                    a["attempt"],
                    a["result"],
                )

    @property
    def idle(self) -> bool:
        return not self.tasks and not self.finished


async def run_once(cp: Services, deliverer: Deliverer, *, holder: bool) -> bool:
    """Record the attempts that finished, and, as the lease ``holder``, hand out the events
    committed so far and start every delivery that is due and has room; whether anybody
    listens. All in one transaction (on SQLite each takes the write lock)."""

    def step(conn: Connection) -> tuple[Dispatched, list[tuple[Row, send.Target]], list[Attempt]]:
        recorded = deliverer.record(conn)
        if not holder:
            return Dispatched(0, False, False), [], recorded
        done = dispatch_batch(conn)
        return done, ([] if done.more else deliverer.claim(conn)), recorded

    while True:
        done, batch, recorded = await cp.store.tx(step)
        deliverer.report(recorded)
        deliverer.start(batch)
        if not done.more:
            return done.listening


def client(rule: Destinations) -> httpx.AsyncClient:
    # send.client, named here too: tests/test_fuzz.py replaces this one to reach a fake
    # receiver.
    return send.client(rule)


async def _wait(cp: Services, deliverer: Deliverer, seen: int) -> None:
    """Until this replica commits events (since ``seen``), a send finishes, or an interval
    has passed."""
    waits = {
        asyncio.ensure_future(cp.feed.wait(cp.settings.webhook_interval, since=seen)),
        asyncio.ensure_future(deliverer.wake.wait()),
    }
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    deliverer.wake.clear()


async def loop(cp: Services) -> None:
    interval = cp.settings.webhook_interval
    held_until = 0.0  # (monotonic) the lease was renewed recently enough until then
    async with client(Destinations(cp.settings.webhook_allow_cidrs)) as http:
        deliverer = Deliverer(cp, http)
        try:
            while True:
                seen = cp.feed.version
                listening = False
                try:
                    if time.monotonic() >= held_until and await holds(cp, LEASE):
                        held_until = time.monotonic() + interval  # renewed once an interval
                    holder = time.monotonic() < held_until
                    if holder or not deliverer.idle:
                        listening = await run_once(cp, deliverer, holder=holder)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("webhook pass failed; trying again next interval")
                if not listening and deliverer.idle:
                    # Not the lease holder, or no receiver subscribes to anything: a look
                    # every interval, not a transaction after every commit.
                    await asyncio.sleep(interval)
                    continue
                # Woken when this replica commits events, including while the pass ran
                # (other replicas' events and retries that come due are found at the next
                # interval), or when a send finishes; then a moment for the rest of a burst,
                # to handle it in one pass.
                await _wait(cp, deliverer, seen)
                await asyncio.sleep(min(COALESCE, interval))
        finally:
            for task in deliverer.tasks:
                task.cancel()  # their claims lapse and they come due again
