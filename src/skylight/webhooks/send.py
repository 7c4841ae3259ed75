"""One delivery attempt: the signed request a receiver gets, and what came of it.

The request is the Oxide API's: a JSON body ``{alert_class, alert_id, data, delivery: {id,
receiver_id, sent_at, trigger}}`` and the headers ``x-oxide-receiver-id``,
``x-oxide-delivery-id``, ``x-oxide-alert-id``, ``x-oxide-alert-class``, ``x-oxide-timestamp``
and one ``x-oxide-signature: a=sha256&id=<secret id>&s=<hex HMAC-SHA256 of the body>`` per
secret of the receiver, so a receiver can rotate its secret without missing a beat. The
delivery id stays the same across retries: receivers deduplicate by it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from skylight.clock import iso, now
from skylight.webhooks.connect import GuardedTransport
from skylight.webhooks.destination import Destinations, Refused
from skylight.wire import JsonObject

SUCCEEDED = "succeeded"
FAILED_HTTP_ERROR = "failed_http_error"
FAILED_UNREACHABLE = "failed_unreachable"
FAILED_TIMEOUT = "failed_timeout"


def client(rule: Destinations) -> httpx.AsyncClient:
    """The HTTP client deliveries are sent with: it connects only where ``rule`` allows
    (``webhooks/destination.py``). No redirects: a receiver answers for itself, and a 3xx
    is a failed delivery, never a way to somewhere else. No proxy from the environment: a
    receiver is reached directly."""
    return httpx.AsyncClient(
        transport=GuardedTransport(rule), follow_redirects=False, trust_env=False
    )


@dataclass(frozen=True)
class Target:
    receiver_id: str
    endpoint: str
    secrets: tuple[tuple[str, str], ...]  # (secret id, secret)


def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def request(delivery: Any, target: Target, sent_at: str) -> tuple[bytes, list[tuple[str, str]]]:
    """The body and headers of one attempt of ``delivery`` (a delivery row)."""
    payload = {
        "alert_class": delivery.alert_class,
        "alert_id": delivery.alert_id,
        "data": delivery.data,
        "delivery": {
            "id": delivery.id,
            "receiver_id": target.receiver_id,
            "sent_at": sent_at,
            "trigger": delivery.trigger,
        },
    }
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    headers = [
        ("content-type", "application/json"),
        ("x-oxide-receiver-id", target.receiver_id),
        ("x-oxide-delivery-id", delivery.id),
        ("x-oxide-alert-id", delivery.alert_id),
        ("x-oxide-alert-class", delivery.alert_class),
        ("x-oxide-timestamp", sent_at),
    ]
    headers += [
        ("x-oxide-signature", f"a=sha256&id={secret_id}&s={signature(secret, body)}")
        for secret_id, secret in target.secrets
    ]
    return body, headers


async def attempt(
    client: httpx.AsyncClient, delivery: Any, target: Target, number: int, timeout: float
) -> JsonObject:
    """Send once; the attempt as the API shows it (``AlertDeliveryAttempts``' items). An
    endpoint the destination rule refuses is not sent to: ``failed_unreachable``, with
    ``detail`` saying why (the kind of address, never the address)."""
    sent = now()
    body, headers = request(delivery, target, iso(sent) or "")
    started = time.monotonic()
    response: dict[str, int] | None = None
    detail: str | None = None
    try:
        r = await client.post(target.endpoint, content=body, headers=headers, timeout=timeout)
        elapsed = int((time.monotonic() - started) * 1000)
        response = {"status": r.status_code, "duration_ms": elapsed}
        result = SUCCEEDED if 200 <= r.status_code < 300 else FAILED_HTTP_ERROR
    except httpx.TimeoutException as exc:
        # A connection that could not even be made in time is unreachable; one that was
        # made but not answered timed out.
        result = FAILED_UNREACHABLE if isinstance(exc, httpx.ConnectTimeout) else FAILED_TIMEOUT
    except httpx.HTTPError:
        result = FAILED_UNREACHABLE
    except Refused as exc:
        result, detail = FAILED_UNREACHABLE, str(exc)
    return {
        "attempt": number,
        "time_sent": iso(sent),
        "result": result,
        "response": response,
        "detail": detail,
    }


def retry_delay(attempts_made: int, *, attempts: int, backoff: float, backoff_max: float) -> float:
    """Seconds until the next attempt after ``attempts_made`` failed ones, or -1 when none is
    left: 1x, 6x, 36x ... the backoff, capped."""
    if attempts_made >= attempts:
        return -1.0
    return float(min(backoff * 6 ** (attempts_made - 1), backoff_max))
