"""Who a sled agent's request speaks for: the sled serial its rack credential names.

The sled-agent routes (``routes/sled_agents.py``) take this dependency instead of a user's
credential. A request without a credential made with this rack's secret is refused with 401
before anything is read or written; whether the serial it names may do what it asks (register
that serial, report for that sled) is the operation's rule (``operations/sleds.py``).
"""

from __future__ import annotations

from fastapi import Request

from skylight.api import deps
from skylight.errors import Unauthenticated


def sled_serial(request: Request) -> str:
    """The serial of the sled the request's ``Authorization: Bearer`` credential speaks for."""
    header = request.headers.get("authorization")
    serial = deps.cp(request).rack_secret.sled_serial(header)
    if serial is None:
        what = "missing" if not header else "invalid"
        raise Unauthenticated(
            f"credentials {what}: sled agents send the sled credential derived from the rack "
            "secret (--rack-secret-file)"
        )
    return serial
