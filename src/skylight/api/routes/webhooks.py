"""/v1/alert-classes, /v1/alert-receivers, /v1/webhook-receivers, /v1/webhook-secrets,
/v1/alerts/{alert_id}/resend: the Oxide API's webhooks, for operators."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.engine import Connection

from skylight import lookup
from skylight.api import deps, models, paging, views
from skylight.background import webhooks as background
from skylight.errors import InvalidRequest
from skylight.ids import new_id, parse_uuid
from skylight.store import webhooks as rows
from skylight.webhooks import alerts, receivers, send

router = APIRouter(tags=["system/alerts"])

WHAT = "alert receivers and webhooks"


def _receiver_views(conn: Connection, found: list[Any]) -> list[models.AlertReceiver]:
    ids = [r.id for r in found]
    subs, secrets = rows.subscriptions(conn, ids), rows.secrets(conn, ids)
    return [views.alert_receiver(r, subs[r.id], secrets[r.id]) for r in found]


def _webhook_view(conn: Connection, row: Any) -> models.WebhookReceiver:
    subs, secrets = rows.subscriptions(conn, [row.id]), rows.secrets(conn, [row.id])
    return views.webhook_receiver(row, subs[row.id], secrets[row.id])


@router.get("/v1/alert-classes", response_model=models.AlertClassResultsPage)
async def alert_class_list(
    request: Request,
    filter: str | None = None,
    limit: paging.Limit = None,
    page_token: str | None = None,
) -> models.AlertClassResultsPage:
    deps.require_operator(request, WHAT)
    if filter is not None:
        alerts.check_subscription(filter)
    page = paging.decode(limit, page_token, None, "alert-classes", "name_ascending")
    names = [
        n
        for n in alerts.NAMES
        if (filter is None or alerts.matches(filter, n))
        and (page.marker is None or n > page.marker)
    ][: page.limit]
    items = [models.AlertClass(name=n, description=alerts.CLASSES[n]) for n in names]
    return models.AlertClassResultsPage(
        items=items, next_page=paging.next_token(page, items, "name", "alert-classes")
    )


@router.get("/v1/alert-receivers", response_model=models.AlertReceiverResultsPage)
async def alert_receiver_list(
    request: Request,
    limit: paging.Limit = None,
    page_token: str | None = None,
    sort_by: models.NameOrIdSortMode | None = None,
) -> models.AlertReceiverResultsPage:
    deps.require_operator(request, WHAT)
    page = paging.decode(limit, page_token, sort_by, "alert-receivers", "name_ascending")

    def read(conn: Connection) -> tuple[list[Any], list[models.AlertReceiver]]:
        found = rows.page(conn, sort=page.sort, limit=page.limit, marker=page.marker)
        return found, _receiver_views(conn, found)

    found, items = await deps.cp(request).store.tx(read)
    key = "id" if page.sort == "id_ascending" else "name"
    return models.AlertReceiverResultsPage(
        items=items, next_page=paging.next_token(page, found, key, "alert-receivers")
    )


@router.get("/v1/alert-receivers/{receiver}", response_model=models.AlertReceiver)
async def alert_receiver_view(request: Request, receiver: str) -> models.AlertReceiver:
    deps.require_operator(request, WHAT)
    sel = deps.required(receiver, "receiver")
    return await deps.cp(request).store.tx(
        lambda c: _receiver_views(c, [lookup.alert_receiver(c, sel)])[0]
    )


@router.delete("/v1/alert-receivers/{receiver}", status_code=204)
async def alert_receiver_delete(request: Request, receiver: str) -> Response:
    deps.require_operator(request, WHAT)
    sel = deps.required(receiver, "receiver")
    await deps.cp(request).store.tx(lambda c: rows.delete(c, lookup.alert_receiver(c, sel).id))
    return Response(status_code=204)


@router.post(
    "/v1/alert-receivers/{receiver}/subscriptions",
    status_code=201,
    response_model=models.AlertSubscriptionCreated,
)
async def alert_receiver_subscription_add(
    request: Request, receiver: str, body: models.AlertSubscriptionCreate
) -> models.AlertSubscriptionCreated:
    deps.require_operator(request, WHAT)
    sel = deps.required(receiver, "receiver")
    pattern = await deps.cp(request).store.tx(
        lambda c: receivers.subscribe(c, lookup.alert_receiver(c, sel), body.subscription)
    )
    return models.AlertSubscriptionCreated(subscription=pattern)


@router.delete("/v1/alert-receivers/{receiver}/subscriptions/{subscription}", status_code=204)
async def alert_receiver_subscription_remove(
    request: Request, receiver: str, subscription: str
) -> Response:
    deps.require_operator(request, WHAT)
    sel = deps.required(receiver, "receiver")
    await deps.cp(request).store.tx(
        lambda c: receivers.unsubscribe(c, lookup.alert_receiver(c, sel), subscription)
    )
    return Response(status_code=204)


@router.get(
    "/v1/alert-receivers/{receiver}/deliveries", response_model=models.AlertDeliveryResultsPage
)
async def alert_delivery_list(
    request: Request,
    receiver: str,
    delivered: bool | None = None,
    failed: bool | None = None,
    pending: bool | None = None,
    limit: paging.Limit = None,
    page_token: str | None = None,
) -> models.AlertDeliveryResultsPage:
    """Oldest first. With any of ``delivered``, ``failed``, ``pending`` set to true, only
    deliveries in those states."""
    deps.require_operator(request, WHAT)
    sel = deps.required(receiver, "receiver")
    asked = {rows.DELIVERED: delivered, rows.FAILED: failed, rows.PENDING: pending}
    states = [s for s, on in asked.items() if on] or list(asked)

    def read(conn: Connection) -> tuple[list[Any], str | None]:
        rx = lookup.alert_receiver(conn, sel)
        scope = f"alert-deliveries:{rx.id}"
        page = paging.decode(limit, page_token, None, scope, "id_ascending")
        found = rows.deliveries_page(conn, rx.id, states, limit=page.limit, marker=page.marker)
        return found, paging.next_token(page, found, "id", scope)

    found, token = await deps.cp(request).store.tx(read)
    return models.AlertDeliveryResultsPage(
        items=[views.alert_delivery(d) for d in found], next_page=token
    )


@router.post("/v1/alert-receivers/{receiver}/probe", response_model=models.AlertProbeResult)
async def alert_receiver_probe(
    request: Request, receiver: str, resend: bool = False
) -> models.AlertProbeResult:
    """Send a probe (alert class ``probe``) now and answer what came of it; with ``resend``
    and a probe that got through, resend every alert this receiver never got."""
    deps.require_operator(request, WHAT)
    sel = deps.required(receiver, "receiver")
    cp = deps.cp(request)

    def start(conn: Connection) -> tuple[Any, send.Target]:
        rx = lookup.alert_receiver(conn, sel)
        new = receivers.delivery_row(rx.id, new_id(), alerts.PROBE, {}, "probe", due=False)
        rows.insert_deliveries(conn, [new])
        return rows.delivery(conn, str(new["id"])), receivers.target(conn, rx)

    probe, target = await cp.store.tx(start)
    async with background.client() as http:
        attempt = await send.attempt(http, probe, target, 1, cp.settings.webhook_timeout)
    cp.metrics.webhook_attempts.labels(result=attempt["result"]).inc()
    ok = attempt["result"] == send.SUCCEEDED

    def finish(conn: Connection) -> tuple[Any, int | None]:
        state = rows.DELIVERED if ok else rows.FAILED
        rows.record_attempt(conn, probe, attempt, state=state, next_attempt=None)
        resends = None
        rx = rows.by_id(conn, target.receiver_id)
        if resend and ok and rx is not None:
            resends = receivers.resend_undelivered(conn, rx)
        return rows.delivery(conn, probe.id), resends

    done, resends = await cp.store.tx(finish)
    if done is None:  # the receiver was deleted meanwhile
        raise InvalidRequest("the receiver was deleted while it was probed")
    return models.AlertProbeResult(probe=views.alert_delivery(done), resends_started=resends)


@router.post("/v1/alerts/{alert_id}/resend", status_code=201, response_model=models.AlertDeliveryId)
async def alert_delivery_resend(
    request: Request, alert_id: str, receiver: str | None = None
) -> models.AlertDeliveryId:
    deps.require_operator(request, WHAT)
    if parse_uuid(alert_id) is None:
        raise InvalidRequest(f"alert_id: not a UUID: {alert_id!r}")
    sel = deps.required(receiver, "receiver")
    delivery_id = await deps.cp(request).store.tx(
        lambda c: receivers.resend(c, lookup.alert_receiver(c, sel), alert_id)
    )
    return models.AlertDeliveryId(delivery_id=delivery_id)


@router.post("/v1/webhook-receivers", status_code=201, response_model=models.WebhookReceiver)
async def webhook_receiver_create(
    request: Request, body: models.WebhookCreate
) -> models.WebhookReceiver:
    deps.require_operator(request, WHAT)

    def create(conn: Connection) -> models.WebhookReceiver:
        receiver_id = receivers.create(
            conn,
            name=body.name,
            description=body.description,
            endpoint=body.endpoint,
            secrets=body.secrets,
            subscriptions=body.subscriptions,
        )
        return _webhook_view(conn, rows.by_id(conn, receiver_id))

    return await deps.cp(request).store.tx(create)


@router.put("/v1/webhook-receivers/{receiver}", status_code=204)
async def webhook_receiver_update(
    request: Request, receiver: str, body: models.WebhookReceiverUpdate
) -> Response:
    deps.require_operator(request, WHAT)
    sel = deps.required(receiver, "receiver")
    await deps.cp(request).store.tx(
        lambda c: receivers.update(
            c,
            lookup.alert_receiver(c, sel),
            name=body.name,
            description=body.description,
            endpoint=body.endpoint,
        )
    )
    return Response(status_code=204)


@router.get("/v1/webhook-secrets", response_model=models.WebhookSecrets)
async def webhook_secrets_list(
    request: Request, receiver: str | None = None
) -> models.WebhookSecrets:
    deps.require_operator(request, WHAT)
    sel = deps.required(receiver, "receiver")

    def read(conn: Connection) -> list[Any]:
        rx = lookup.alert_receiver(conn, sel)
        return rows.secrets(conn, [rx.id])[rx.id]

    found = await deps.cp(request).store.tx(read)
    return models.WebhookSecrets(secrets=[views.webhook_secret(s) for s in found])


@router.post("/v1/webhook-secrets", status_code=201, response_model=models.WebhookSecret)
async def webhook_secrets_add(
    request: Request, body: models.WebhookSecretCreate, receiver: str | None = None
) -> models.WebhookSecret:
    deps.require_operator(request, WHAT)
    sel = deps.required(receiver, "receiver")
    row = await deps.cp(request).store.tx(
        lambda c: receivers.add_secret(c, lookup.alert_receiver(c, sel), body.secret)
    )
    return views.webhook_secret(row)


@router.delete("/v1/webhook-secrets/{secret_id}", status_code=204)
async def webhook_secrets_delete(request: Request, secret_id: str) -> Response:
    deps.require_operator(request, WHAT)
    if parse_uuid(secret_id) is None:
        raise InvalidRequest(f"secret_id: not a UUID: {secret_id!r}")
    await deps.cp(request).store.tx(lambda c: receivers.remove_secret(c, secret_id))
    return Response(status_code=204)
