"""The audit log's writer: an ASGI middleware that records every mutating request and
every login attempt once it is answered: who (the caller the request authenticated as, if
any), what (the operation and URI), when, from where, and how it ended (status, and an
error's code and message). Request bodies are never recorded, so no password or token
reaches the log.

Written after the answer, in its own transaction; should the store be out of reach then,
the entry is lost and a warning says which request it was.
"""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skylight.clock import now
from skylight.identity.access import Caller
from skylight.ids import new_id
from skylight.store import StoreUnavailable
from skylight.store.audit_log import Entry, insert

log = logging.getLogger(__name__)

_MUTATING = {"POST", "PUT", "DELETE", "PATCH"}


def _storable(text: str | None, limit: int) -> str | None:
    """Text as any store takes it: no NUL (PostgreSQL), no lone surrogate (no UTF-8)."""
    if text is None:
        return None
    text = text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    return text[:limit]


class AuditLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _MUTATING:
            await self.app(scope, receive, send)
            return
        started = now()
        status = 500
        body = b""

        async def capture(message: Message) -> None:
            nonlocal status, body
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status >= 400:
                body += message.get("body", b"")[: 4096 - len(body)]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            await self._record(scope, started, status, body)

    async def _record(self, scope: Scope, started: object, status: int, body: bytes) -> None:
        app = scope.get("app")
        cp = getattr(getattr(app, "state", None), "cp", None)
        if cp is None:
            return
        state = scope.get("state", {})
        caller: Caller | None = state.get("caller")
        route = scope.get("route")
        error_code = error_message = None
        if status >= 400:
            try:
                err = json.loads(body)
                error_code, error_message = err.get("error_code"), str(err.get("message", ""))
            except (ValueError, AttributeError):
                error_message = body.decode(errors="replace")[:512]
        query = scope.get("query_string", b"").decode(errors="replace")
        uri = scope.get("path", "") + (f"?{query}" if query else "")
        headers = dict(scope.get("headers") or [])
        client = scope.get("client")
        entry = Entry(
            id=new_id(),
            time_started=started,  # type: ignore[arg-type]
            time_completed=now(),
            request_id=str(state.get("request_id", "")),
            request_uri=_storable(uri, 512) or "",
            operation_id=getattr(route, "name", None) or "unknown",
            source_ip=client[0] if client else "unknown",
            user_agent=_storable(headers.get(b"user-agent", b"").decode(errors="replace"), 256)
            or None,
            actor_silo_id=caller.silo_id if caller else None,
            actor_user_id=caller.user_id if caller else None,
            auth_method=caller.auth_method if caller else None,
            credential_id=caller.credential_id if caller else None,
            http_status_code=status,
            error_code=_storable(error_code, 64),
            error_message=_storable(error_message, 4096),
        )
        try:
            await cp.store.tx(lambda conn: insert(conn, entry))
        except StoreUnavailable:
            log.warning("audit log entry of request %s lost: store unavailable", entry.request_id)
