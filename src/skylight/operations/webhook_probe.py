"""A receiver's probe: one delivery of class ``probe`` sent now, by the request that asks
for it (never by the background deliverer), and, when it gets through and the operator asks,
a resend of every alert the receiver never got."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

from skylight import lookup
from skylight.errors import InvalidRequest
from skylight.ids import new_id
from skylight.services import Services
from skylight.store import Row
from skylight.store import webhooks as rows
from skylight.webhooks import alerts, receivers, send


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
        return delivery, receivers.target(conn, rx)

    sent, target = await cp.store.tx(start)
    async with send.client() as http:
        attempt = await send.attempt(http, sent, target, 1, cp.settings.webhook_timeout)
    cp.metrics.webhook_attempts.labels(result=attempt["result"]).inc()
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
