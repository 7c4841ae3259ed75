"""A receiver's probe: one delivery of class ``probe`` sent now, by the request that asks
for it (never by the background deliverer), and, when it gets through and the operator asks,
a resend of every alert the receiver never got.

The probe is sent under the same destination rule as every delivery, and its caller learns
only whether it got through: ``succeeded`` or ``failed_unreachable``, no status code, no
duration, no reason. Anything finer would let whoever may register a receiver map which
ports answer, and how, on every host the rule lets webhooks reach. What happened is logged
for operators (never a secret: the log names the receiver, not its endpoint)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from skylight import lookup
from skylight.errors import InvalidRequest
from skylight.ids import new_id
from skylight.services import Services
from skylight.store import Row
from skylight.store import webhooks as rows
from skylight.webhooks import alerts, receivers, send
from skylight.webhooks.destination import Destinations
from skylight.wire import JsonObject

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeResult:
    delivery: Row  # the probe's delivery, with its one attempt
    resends_started: int | None  # None: no resend was asked for, or the probe failed


async def probe(cp: Services, selector: str, *, resend: bool) -> ProbeResult:
    def start(conn: Connection) -> tuple[Row, send.Target]:
        rx = lookup.alert_receiver(conn, selector)
        new = receivers.delivery_row(rx.id, new_id(), alerts.PROBE, {}, "probe", due=False)
        rows.insert_deliveries(conn, [new])
        delivery = rows.delivery(conn, str(new["id"]))
        assert delivery is not None
        return delivery, receivers.target(conn, rx, cp.webhook_sealer)

    sent, target = await cp.store.tx(start)
    rule = Destinations(cp.settings.webhook_allow_cidrs)
    async with send.client(rule) as http:
        full = await send.attempt(http, sent, target, 1, cp.settings.webhook_timeout)
    cp.metrics.webhook_attempts.labels(result=full["result"]).inc()
    log.info(
        "probe of webhook receiver %s: %s (response %s) %s",
        target.receiver_id,
        full["result"],
        full["response"],
        full["detail"] or "",
    )
    attempt = told(full)
    ok = attempt["result"] == send.SUCCEEDED

    def finish(conn: Connection) -> tuple[Row | None, int | None]:
        state = rows.DELIVERED if ok else rows.FAILED
        rows.record_attempt(conn, sent, attempt, state=state, next_attempt=None)
        resends = None
        rx = rows.by_id(conn, target.receiver_id)
        if resend and ok and rx is not None:
            resends = receivers.resend_undelivered(conn, rx)
        return rows.delivery(conn, sent.id), resends

    done, resends = await cp.store.tx(finish)
    if done is None:  # the receiver was deleted meanwhile
        raise InvalidRequest("the receiver was deleted while it was probed")
    return ProbeResult(done, resends)


def told(attempt: JsonObject) -> JsonObject:
    """What is kept and answered of a probe's attempt: whether it got through, no more."""
    ok = attempt["result"] == send.SUCCEEDED
    result = send.SUCCEEDED if ok else send.FAILED_UNREACHABLE
    return {**attempt, "result": result, "response": None, "detail": None}
