"""What operators do with alert receivers: list and read them, create, change, subscribe,
rotate secrets, resend, read their deliveries.

Every function runs inside one store transaction (``conn``) and raises domain errors for bad
input before it writes anything. A receiver is named by ``selector`` (its name or id).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.engine import Connection

from skylight import lookup
from skylight.clock import now
from skylight.errors import AlreadyExists, InvalidValue, NotFound
from skylight.identity.sealing import Sealer, is_sealed
from skylight.ids import new_id
from skylight.store import Row, events
from skylight.store import webhooks as rows
from skylight.store.paging import Page, PageOf, PageRequest, RowItem
from skylight.webhooks import alerts
from skylight.webhooks.destination import Destinations, Refused
from skylight.webhooks.send import Target
from skylight.wire import JsonObject

MAX_ENDPOINT = 2048
MAX_SECRET = 1024
MAX_SECRETS = 8  # each signs every delivery (a header apiece): enough to rotate


@dataclass(frozen=True)
class Receiver(RowItem):
    """A receiver with what the API shows of it: its subscriptions and (the ids of) its
    secrets."""

    subscriptions: list[str]
    secrets: list[Row]


def _described(conn: Connection, found: list[Row]) -> list[Receiver]:
    ids = [r.id for r in found]
    subs, secrets = rows.subscriptions(conn, ids), rows.secrets(conn, ids)
    return [Receiver(r, subs[r.id], secrets[r.id]) for r in found]


def page(conn: Connection, req: PageRequest) -> Page[Receiver]:
    found = rows.page(conn, sort=req.sort, limit=req.limit, marker=req.marker)
    return Page(_described(conn, found), req)


def view(conn: Connection, selector: str) -> Receiver:
    return _described(conn, [lookup.alert_receiver(conn, selector)])[0]


def delete(conn: Connection, selector: str) -> None:
    rows.delete(conn, lookup.alert_receiver(conn, selector).id)


def check_endpoint(url: str, rule: Destinations) -> str:
    """An absolute http(s) URL whose host, if it is an address, ``rule`` allows (a name is
    checked at each delivery, by what it then resolves to); or InvalidValue saying what is
    wrong."""
    if not 1 <= len(url) <= MAX_ENDPOINT:
        raise InvalidValue(f"endpoint must be 1 to {MAX_ENDPOINT} characters long")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise InvalidValue(f"endpoint is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidValue("endpoint must be an absolute http:// or https:// URL")
    try:
        rule.check_host(parsed.host)
    except Refused as exc:
        raise InvalidValue(str(exc)) from None
    return url


def check_secret(value: str) -> str:
    if not 1 <= len(value) <= MAX_SECRET:
        raise InvalidValue(f"a secret must be 1 to {MAX_SECRET} characters long")
    return value


def _subscribe(conn: Connection, receiver_id: str, patterns: Sequence[str]) -> list[bool]:
    """Add ``patterns``; per pattern, False if the receiver had it already."""
    # A subscription sees the events committed after it. It holds the dispatcher's cursor
    # while it is made (no dispatch runs meanwhile). The dispatcher does not move its cursor
    # while nobody listens, so the first subscription brings it to the head of the log: the
    # events before it were nobody's.
    cursor = rows.cursor(conn, lock=True)
    last = events.last_seq(conn)
    if cursor is None or not rows.all_subscriptions(conn):
        rows.set_cursor(conn, last)
    t = now()
    return [rows.add_subscription(conn, receiver_id, p, last, t) for p in patterns]


def create(
    conn: Connection,
    *,
    name: str,
    description: str,
    endpoint: str,
    secrets: Sequence[str],
    subscriptions: Sequence[str],
    rule: Destinations,
    sealer: Sealer,
) -> Receiver:
    check_endpoint(endpoint, rule)
    if not secrets:
        raise InvalidValue("a webhook receiver needs at least one secret to sign its deliveries")
    if len(secrets) > MAX_SECRETS:
        raise InvalidValue(f"a webhook receiver has at most {MAX_SECRETS} secrets")
    for value in secrets:
        check_secret(value)
    patterns = [alerts.check_subscription(p) for p in dict.fromkeys(subscriptions)]
    if rows.by_name(conn, name) is not None:
        raise AlreadyExists("alert-receiver", name)
    receiver_id, t = new_id(), now()
    rows.insert(
        conn,
        id=receiver_id,
        name=name,
        description=description,
        endpoint=endpoint,
        time_created=t,
        time_modified=t,
    )
    for value in secrets:
        sealed = sealer.seal(value)
        rows.add_secret(conn, id=new_id(), receiver_id=receiver_id, secret=sealed, time_created=t)
    _subscribe(conn, receiver_id, patterns)
    row = rows.by_id(conn, receiver_id)
    assert row is not None
    return _described(conn, [row])[0]


def update(
    conn: Connection,
    selector: str,
    *,
    name: str | None,
    description: str | None,
    endpoint: str | None,
    rule: Destinations,
) -> None:
    receiver = lookup.alert_receiver(conn, selector)
    values: dict[str, object] = {}
    if endpoint is not None:
        values["endpoint"] = check_endpoint(endpoint, rule)
    values |= lookup.renamed(
        receiver, name, description, rtype="alert-receiver", taken=lambda n: rows.by_name(conn, n)
    )
    if values:
        rows.update(conn, receiver.id, time_modified=now(), **values)


def subscribe(conn: Connection, selector: str, pattern: str) -> str:
    receiver = lookup.alert_receiver(conn, selector)
    alerts.check_subscription(pattern)
    if not _subscribe(conn, receiver.id, [pattern])[0]:
        raise AlreadyExists("alert-subscription", pattern)
    return pattern


def unsubscribe(conn: Connection, selector: str, pattern: str) -> None:
    receiver = lookup.alert_receiver(conn, selector)
    # Only what could be subscribed can be removed: anything else is refused for what it is
    # (and never reaches the store, which cannot even compare a NUL on PostgreSQL).
    alerts.check_pattern(pattern)
    if not rows.remove_subscription(conn, receiver.id, pattern):
        raise NotFound(f'not found: alert-subscription "{pattern}" of receiver "{receiver.name}"')


def secrets(conn: Connection, selector: str) -> list[Row]:
    receiver = lookup.alert_receiver(conn, selector)
    return rows.secrets(conn, [receiver.id])[receiver.id]


def add_secret(conn: Connection, selector: str, value: str, sealer: Sealer) -> Row:
    receiver = lookup.alert_receiver(conn, selector)
    check_secret(value)
    if len(rows.secrets(conn, [receiver.id])[receiver.id]) >= MAX_SECRETS:
        raise InvalidValue(
            f"a webhook receiver has at most {MAX_SECRETS} secrets: delete one it no longer "
            "uses first"
        )
    secret_id = new_id()
    sealed = sealer.seal(value)
    rows.add_secret(conn, id=secret_id, receiver_id=receiver.id, secret=sealed, time_created=now())
    row = rows.secret(conn, secret_id)
    assert row is not None
    return row


def remove_secret(conn: Connection, secret_id: str) -> None:
    row = rows.secret(conn, secret_id.lower())
    if row is None:
        raise NotFound.by_id("webhook-secret", secret_id)
    if len(rows.secrets(conn, [row.receiver_id])[row.receiver_id]) == 1:
        raise InvalidValue(
            "this is the receiver's last secret: add its replacement first, so that every "
            "delivery stays signed"
        )
    rows.remove_secret(conn, row.id)


def target(conn: Connection, receiver: Any, sealer: Sealer) -> Target:
    secrets = rows.secrets(conn, [receiver.id])[receiver.id]
    opened = tuple((s.id, sealer.open(s.secret)) for s in secrets)
    return Target(receiver.id, receiver.endpoint, opened)


def seal_clear(conn: Connection, sealer: Sealer) -> int:
    """Seal every secret still stored in clear (written before sealing existed)."""
    clear = [s for s in rows.all_secrets(conn) if not is_sealed(s.secret)]
    for s in clear:
        rows.set_secret(conn, s.id, sealer.seal(s.secret))
    return len(clear)


def delivery_row(
    receiver_id: str,
    alert_id: str,
    alert_class: str,
    data: JsonObject,
    trigger: str,
    *,
    due: bool = True,
) -> JsonObject:
    t = now()
    return {
        "id": new_id(),
        "receiver_id": receiver_id,
        "alert_id": alert_id,
        "alert_class": alert_class,
        "trigger": trigger,
        "state": rows.PENDING,
        "data": data,
        "attempts": [],
        "time_started": t,
        # A probe is sent by its request, never by the background deliverer.
        "time_next_attempt": t if due else None,
    }


def resend(conn: Connection, selector: str, alert_id: str) -> str:
    """A new delivery (trigger ``resend``) of an alert this receiver was sent before, or of
    an event still in the log that its subscriptions match."""
    receiver = lookup.alert_receiver(conn, selector)
    alert_id = alert_id.lower()
    before = rows.latest_of_alert(conn, receiver.id, alert_id)
    if before is not None and before.trigger != "probe":
        new = delivery_row(receiver.id, alert_id, before.alert_class, before.data, "resend")
    else:
        ev = events.get(conn, alert_id)
        patterns = rows.subscriptions(conn, [receiver.id])[receiver.id]
        if ev is None or not any(alerts.matches(p, ev.kind) for p in patterns):
            raise NotFound.by_id("alert", alert_id)
        new = delivery_row(receiver.id, alert_id, ev.kind, alerts.data(ev), "resend")
    rows.insert_deliveries(conn, [new])
    return str(new["id"])


def resend_undelivered(conn: Connection, receiver: Any) -> int:
    """Resend every alert none of whose deliveries to ``receiver`` got through."""
    again = [
        delivery_row(receiver.id, d.alert_id, d.alert_class, d.data, "resend")
        for d in rows.undelivered_alerts(conn, receiver.id)
    ]
    rows.insert_deliveries(conn, again)
    return len(again)


def deliveries(
    conn: Connection,
    selector: str,
    page_of: PageOf,
    *,
    delivered: bool | None,
    failed: bool | None,
    pending: bool | None,
) -> Page[Row]:
    """Oldest first. With any of ``delivered``, ``failed``, ``pending`` true, only the
    deliveries in those states; otherwise all."""
    asked = {rows.DELIVERED: delivered, rows.FAILED: failed, rows.PENDING: pending}
    states = [s for s, on in asked.items() if on] or list(asked)
    rx = lookup.alert_receiver(conn, selector)
    req = page_of(rx.id)
    return Page(rows.deliveries_page(conn, rx.id, states, limit=req.limit, marker=req.marker), req)
