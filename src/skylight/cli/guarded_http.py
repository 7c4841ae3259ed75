"""The HTTP server's own defences: a deadline for reading each request, and a cap on open
connections (uvicorn's h11 protocol, with both added).

uvicorn closes idle keep-alive connections, but a client that sends its headers, or its
body, a byte at a time holds a connection (and its memory) for as long as it likes: with
enough of them nobody else gets in. Here a request must arrive whole, headers and body,
within ``read_timeout`` seconds of its first byte (of the connection, for the first one);
past it the connection is closed. Past ``max_connections`` open connections a new one is
answered 503, an Oxide ``Error`` body, and closed at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from skylight.ids import new_id

log = logging.getLogger(__name__)


def _busy_response() -> bytes:
    rid = new_id()
    body = json.dumps(
        {
            "request_id": rid,
            "error_code": "ServiceNotAvailable",
            "message": "the server has too many open connections; try again shortly",
        }
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"x-request-id: {rid}\r\n"
        "retry-after: 1\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


def guarded(read_timeout: float, max_connections: int) -> type[H11Protocol]:
    """uvicorn's ``http`` protocol class with these limits."""

    class GuardedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.write(_busy_response())
                transport.close()
                return
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
                self._arm()  # a request under way: it has until its deadline to arrive
            else:
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is None:
                self._deadline = self.loop.call_later(read_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                log.info("closed a connection that sent no whole request in %gs", read_timeout)
                self.transport.close()

    return GuardedH11Protocol


def uvicorn_options(read_timeout: float, max_connections: int) -> dict[str, Any]:
    return {"http": guarded(read_timeout, max_connections), "timeout_keep_alive": 5}
