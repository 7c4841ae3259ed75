"""What one client can hold of the server: a request must arrive whole in time, open
connections and event streams are capped, and what is refused is refused with an Error."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from skylight import login_flow
from skylight.testing import ServerProcess

pytestmark = pytest.mark.timeout(180)

READ_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        Path(tmp_path_factory.mktemp("limits")),
        args=[
            "--request-read-timeout",
            str(READ_TIMEOUT),
            "--max-connections",
            "20",
            "--max-streams",
            "3",
            "--max-streams-per-user",
            "2",
            "--password-hash-cost",
            "1,1024",
            "--sim-sleds",
            "1",
        ],
    )
    proc.start()
    with proc.client(timeout=30) as api:
        assert api.post("/v1/projects", json={"name": "demo", "description": ""}).is_success
    yield proc
    proc.stop()


def _connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True if the server closes the connection (without an answer) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False


def test_a_request_that_dribbles_in_is_cut_off(server: ServerProcess) -> None:
    slow_headers = _connect(server)
    slow_headers.sendall(b"GET /v1/ping HTTP/1.1\r\nhost: x\r\n")  # never finished
    slow_body = _connect(server)
    slow_body.sendall(
        b"POST /v1/projects HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b'content-length: 100\r\n\r\n{"name": '
    )
    silent = _connect(server)  # connected, says nothing
    started = time.monotonic()
    for sock in (slow_headers, slow_body, silent):
        assert _closed_within(sock, READ_TIMEOUT + 8), "the server kept a dribbling client"
        sock.close()
    assert time.monotonic() - started >= READ_TIMEOUT - 0.5  # not before its time
    # Whole requests, even slow to be answered, are unaffected.
    assert httpx.get(f"{server.url}/v1/ping", timeout=10).status_code == 200


def test_connections_past_the_cap_are_answered_503_with_an_error(server: ServerProcess) -> None:
    held = [_connect(server) for _ in range(25)]
    try:
        busy = None
        for sock in reversed(held):  # the last ones are past the cap
            sock.settimeout(READ_TIMEOUT + 8)  # the others are closed by the read deadline
            with contextlib.suppress(TimeoutError):
                answer = sock.recv(4096)
                if answer.startswith(b"HTTP/1.1 503"):
                    busy = answer
                    break
        assert busy, "no connection was refused past the cap"
        body = json.loads(busy.split(b"\r\n\r\n", 1)[1])
        assert body["error_code"] == "ServiceNotAvailable" and body["request_id"]
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.5)
    assert httpx.get(f"{server.url}/v1/ping", timeout=10).status_code == 200  # back to normal


def test_event_streams_are_capped_per_user_and_in_all(server: ServerProcess) -> None:
    url = f"{server.url}/v1/events/stream?project=demo"
    with server.client(timeout=30) as api:
        r = api.post(
            "/v1/system/identity-providers/local/users",
            params={"silo": "recovery"},
            json={"external_id": "sam", "password": {"mode": "password", "value": "pw"}},
        )
        policy = api.get("/v1/policy").json()
        policy["role_assignments"].append(
            {"identity_id": r.json()["id"], "identity_type": "silo_user", "role_name": "viewer"}
        )
        assert api.put("/v1/policy", json=policy).status_code == 200
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        token = login_flow.with_password(anonymous, "recovery", "sam", "pw")
    sam = {"authorization": f"Bearer {token}"}
    admin = server.headers
    with contextlib.ExitStack() as streams:
        client = streams.enter_context(httpx.Client(timeout=30))

        def open_stream(headers: dict[str, str]) -> httpx.Response:
            return streams.enter_context(client.stream("GET", url, headers=headers))

        assert open_stream(admin).status_code == 200
        assert open_stream(admin).status_code == 200
        third = open_stream(admin)  # the admin's third: past the per-user cap
        assert third.status_code == 429 and int(third.headers["retry-after"]) >= 1
        third.read()
        assert third.json()["error_code"] == "TooManyRequests"
        assert open_stream(sam).status_code == 200  # another user: still room, 3 in all
        fourth = open_stream(sam)  # past the cap of the whole server
        assert fourth.status_code == 429
    # Closed streams give their slots back.
    with client_stream(url, admin) as again:
        assert again.status_code == 200


@contextlib.contextmanager
def client_stream(url: str, headers: dict[str, str]) -> Iterator[httpx.Response]:
    deadline = time.monotonic() + 10
    while True:  # the server notices the closed streams as their connections go
        with httpx.Client(timeout=30) as client, client.stream("GET", url, headers=headers) as r:
            if r.status_code != 429 or time.monotonic() > deadline:
                yield r
                return
        time.sleep(0.2)
