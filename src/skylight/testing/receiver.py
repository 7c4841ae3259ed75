"""A webhook receiver for tests and benchmarks: an HTTP server on 127.0.0.1 that notes what
it is sent and when, and answers as it is told."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    at: float  # time.time() on arrival
    headers: dict[str, list[str]]  # lower-case names; a header may come more than once
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    # http.server's listen backlog is 5: a burst of concurrent deliveries would have SYNs
    # dropped and retried a second later, a delay of the receiver's making.
    request_queue_size = 128
    daemon_threads = True


class WebhookReceiver:
    """Answers each POST with the next status queued in ``script`` (204 when it is empty),
    after ``hang`` seconds of silence if that is set, with a ``location`` header if that is
    set (a redirect)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[int] = []
        self.hang = 0.0
        self.location: str | None = None
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers: dict[str, list[str]] = {}
                for k, v in self.headers.items():
                    headers.setdefault(k.lower(), []).append(v)
                with outer._lock:
                    outer.received.append(Received(time.time(), headers, body))
                    status = outer.script.pop(0) if outer.script else 204
                    hang, location = outer.hang, outer.location
                if hang:
                    time.sleep(hang)
                self.send_response(status)
                if location:
                    self.send_header("location", location)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/hooks"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def all(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def bodies(self) -> list[Any]:
        return [r.json() for r in self.all()]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
