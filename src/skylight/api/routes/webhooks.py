"""/v1/alert-classes, /v1/alert-receivers, /v1/webhook-receivers, /v1/webhook-secrets,
/v1/alerts/{alert_id}/resend: the Oxide API's webhooks, for operators."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from skylight.api import deps, models, paging, views
from skylight.identity.access import Action
from skylight.lookup import require_uuid
from skylight.operations.webhook_probe import probe
from skylight.webhooks import alerts, receivers
from skylight.webhooks.destination import Destinations

# Webhook receivers are the fleet admin's, reads included: an endpoint is a secret of sorts.
router = APIRouter(
    tags=["system/alerts"],
    dependencies=[Depends(deps.fleet(Action.administer, reads=Action.administer))],
)


def _destinations(request: Request) -> Destinations:
    """Where this server lets webhooks go (its --webhook-allow-cidr networks too)."""
    return Destinations(deps.cp(request).settings.webhook_allow_cidrs)


@router.get("/v1/alert-classes", response_model=models.AlertClassResultsPage)
async def alert_class_list(
    request: Request, query: paging.FixedOrder, filter: str | None = None
) -> models.AlertClassResultsPage:
    if filter is not None:
        alerts.check_subscription(filter)
    req = query.ask("alert-classes", "name_ascending")()
    names = alerts.class_names(filter, req.marker, req.limit)
    page = paging.Page(
        [models.AlertClass(name=n, description=alerts.CLASSES[n]) for n in names], req
    )
    return paging.results(models.AlertClassResultsPage, page, lambda c: c)


@router.get("/v1/alert-receivers", response_model=models.AlertReceiverResultsPage)
async def alert_receiver_list(
    request: Request, query: paging.ByName
) -> models.AlertReceiverResultsPage:
    req = query.ask("alert-receivers")()
    page = await deps.tx(request, lambda c: receivers.page(c, req))
    return paging.results(models.AlertReceiverResultsPage, page, views.alert_receiver)


@router.get("/v1/alert-receivers/{receiver}", response_model=models.AlertReceiver)
async def alert_receiver_view(request: Request, receiver: str) -> models.AlertReceiver:
    sel = deps.required(receiver, "receiver")
    return views.alert_receiver(await deps.tx(request, lambda c: receivers.view(c, sel)))


@router.delete("/v1/alert-receivers/{receiver}", status_code=204)
async def alert_receiver_delete(request: Request, receiver: str) -> Response:
    sel = deps.required(receiver, "receiver")
    await deps.tx(request, lambda c: receivers.delete(c, sel))
    return Response(status_code=204)


@router.post(
    "/v1/alert-receivers/{receiver}/subscriptions",
    status_code=201,
    response_model=models.AlertSubscriptionCreated,
)
async def alert_receiver_subscription_add(
    request: Request, receiver: str, body: models.AlertSubscriptionCreate
) -> models.AlertSubscriptionCreated:
    sel = deps.required(receiver, "receiver")
    pattern = await deps.tx(request, lambda c: receivers.subscribe(c, sel, body.subscription))
    return models.AlertSubscriptionCreated(subscription=pattern)


@router.delete("/v1/alert-receivers/{receiver}/subscriptions/{subscription}", status_code=204)
async def alert_receiver_subscription_remove(
    request: Request, receiver: str, subscription: str
) -> Response:
    sel = deps.required(receiver, "receiver")
    await deps.tx(request, lambda c: receivers.unsubscribe(c, sel, subscription))
    return Response(status_code=204)


@router.get(
    "/v1/alert-receivers/{receiver}/deliveries", response_model=models.AlertDeliveryResultsPage
)
async def alert_delivery_list(
    request: Request,
    query: paging.FixedOrder,
    receiver: str,
    delivered: bool | None = None,
    failed: bool | None = None,
    pending: bool | None = None,
) -> models.AlertDeliveryResultsPage:
    """Oldest first. With any of ``delivered``, ``failed``, ``pending`` set to true, only
    deliveries in those states."""
    sel = deps.required(receiver, "receiver")
    ask = query.ask("alert-deliveries", "id_ascending")
    page = await deps.tx(
        request,
        lambda c: receivers.deliveries(
            c, sel, ask, delivered=delivered, failed=failed, pending=pending
        ),
    )
    return paging.results(models.AlertDeliveryResultsPage, page, views.alert_delivery)


@router.post("/v1/alert-receivers/{receiver}/probe", response_model=models.AlertProbeResult)
async def alert_receiver_probe(
    request: Request, receiver: str, resend: bool = False
) -> models.AlertProbeResult:
    """Send a probe (alert class ``probe``) now and answer what came of it; with ``resend``
    and a probe that got through, resend every alert this receiver never got."""
    sel = deps.required(receiver, "receiver")
    result = await probe(deps.cp(request), sel, resend=resend)
    return models.AlertProbeResult(
        probe=views.alert_delivery(result.delivery), resends_started=result.resends_started
    )


@router.post("/v1/alerts/{alert_id}/resend", status_code=201, response_model=models.AlertDeliveryId)
async def alert_delivery_resend(
    request: Request, alert_id: str, receiver: str | None = None
) -> models.AlertDeliveryId:
    alert = require_uuid(alert_id, "alert_id")
    sel = deps.required(receiver, "receiver")
    delivery_id = await deps.tx(request, lambda c: receivers.resend(c, sel, alert))
    return models.AlertDeliveryId(delivery_id=delivery_id)


@router.post("/v1/webhook-receivers", status_code=201, response_model=models.WebhookReceiver)
async def webhook_receiver_create(
    request: Request, body: models.WebhookCreate
) -> models.WebhookReceiver:
    created = await deps.tx(
        request,
        lambda c: receivers.create(
            c,
            name=body.name,
            description=body.description,
            endpoint=body.endpoint,
            secrets=body.secrets,
            subscriptions=body.subscriptions,
            rule=_destinations(request),
            sealer=deps.cp(request).webhook_sealer,
        ),
    )
    return views.webhook_receiver(created)


@router.put("/v1/webhook-receivers/{receiver}", status_code=204)
async def webhook_receiver_update(
    request: Request, receiver: str, body: models.WebhookReceiverUpdate
) -> Response:
    sel = deps.required(receiver, "receiver")
    await deps.tx(
        request,
        lambda c: receivers.update(
            c,
            sel,
            name=body.name,
            description=body.description,
            endpoint=body.endpoint,
            rule=_destinations(request),
        ),
    )
    return Response(status_code=204)


@router.get("/v1/webhook-secrets", response_model=models.WebhookSecrets)
async def webhook_secrets_list(
    request: Request, receiver: str | None = None
) -> models.WebhookSecrets:
    sel = deps.required(receiver, "receiver")
    found = await deps.tx(request, lambda c: receivers.secrets(c, sel))
    return models.WebhookSecrets(secrets=[views.webhook_secret(s) for s in found])


@router.post("/v1/webhook-secrets", status_code=201, response_model=models.WebhookSecret)
async def webhook_secrets_add(
    request: Request, body: models.WebhookSecretCreate, receiver: str | None = None
) -> models.WebhookSecret:
    sel = deps.required(receiver, "receiver")
    sealer = deps.cp(request).webhook_sealer
    row = await deps.tx(request, lambda c: receivers.add_secret(c, sel, body.secret, sealer))
    return views.webhook_secret(row)


@router.delete("/v1/webhook-secrets/{secret_id}", status_code=204)
async def webhook_secrets_delete(request: Request, secret_id: str) -> Response:
    require_uuid(secret_id, "secret_id")  # (the message of a secret not found names it as given)
    await deps.tx(request, lambda c: receivers.remove_secret(c, secret_id))
    return Response(status_code=204)
