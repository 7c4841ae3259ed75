"""Webhooks cannot be used to reach inside the rack: the destination rule (table-driven), the
connection that checks the very address it connects to, and the rule through the API
(create and change refused, send-time resolution refused, redirects not followed, the probe
telling only delivered or failed, an operator's allowed network)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import httpcore
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from skylight.api.app import create_app
from skylight.cli.main import app as cli
from skylight.config import Settings
from skylight.testing.receiver import WebhookReceiver
from skylight.webhooks import connect
from skylight.webhooks.destination import Destinations, Refused, literal, parse_cidr
from tests.conftest import AdminClient, instance_body, make_settings
from tests.oxide_schema import wait_for

LOCAL = (ip_network("127.0.0.0/8"),)

# (address, what the default rule calls it; None: allowed)
RULE = [
    ("93.184.216.34", None),
    ("8.8.8.8", None),
    ("2606:4700:4700::1111", None),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("fd12:3456::1", "private"),
    ("fc00::1", "private"),
    ("169.254.169.254", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"),
    ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"),
    ("100.64.0.1", "shared (CGNAT)"),
    ("100.127.255.255", "shared (CGNAT)"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("255.255.255.255", "reserved"),
    ("240.0.0.1", "reserved"),
    ("192.0.2.1", "reserved"),
    ("2001:db8::1", "reserved"),
    # IPv4 inside IPv6: judged as the IPv4 address it carries.
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("::ffff:93.184.216.34", None),
    ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
    ("64:ff9b::5db8:d822", None),  # NAT64 of 93.184.216.34
    ("::127.0.0.1", "reserved"),  # IPv4-compatible (deprecated)
    ("2002:7f00:1::1", "reserved"),  # 6to4 of 127.0.0.1
]


@pytest.mark.parametrize(("address", "kind"), RULE)
def test_the_rule(address: str, kind: str | None) -> None:
    assert Destinations().refusal(ip_address(address)) == kind


# (allowed networks, address, what it is then)
ALLOWED = [
    ("127.0.0.0/8", "127.0.0.1", None),
    ("127.0.0.0/8", "::ffff:127.0.0.1", None),  # the mapped form is the same address
    ("127.0.0.0/8", "::1", "loopback"),  # a network of the other family allows nothing here
    ("10.1.0.0/16", "10.1.200.7", None),
    ("10.1.0.0/16", "10.2.0.1", "private"),
    ("fd12::/16", "fd12:3456::1", None),
    ("169.254.0.0/16", "169.254.1.1", None),
    ("169.254.0.0/16", "169.254.169.254", "cloud metadata"),  # never allowed
    ("0.0.0.0/0", "169.254.169.254", "cloud metadata"),
    ("::/0", "fd00:ec2::254", "cloud metadata"),
]


@pytest.mark.parametrize(("cidr", "address", "kind"), ALLOWED)
def test_an_operator_allows_networks_but_never_metadata(
    cidr: str, address: str, kind: str | None
) -> None:
    rule = Destinations((parse_cidr(cidr),))
    assert rule.refusal(ip_address(address)) == kind


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("127.1", "127.0.0.1"),  # what a resolver reads as IPv4 is an address, not a name
        ("0x7f000001", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("example.com", None),
        ("cafe", None),
        ("localhost", None),  # a name: checked by what it resolves to, when sent
    ],
)
def test_literal_addresses_are_recognised(host: str, address: str | None) -> None:
    found = literal(host)
    assert (None if found is None else str(found)) == address


def test_a_bad_cidr_is_refused_by_serve() -> None:
    assert parse_cidr("10.1.0.0/16") == ip_network("10.1.0.0/16")
    for bad in ("10.1.0.1/16", "ten", "10.0.0.0/33"):
        with pytest.raises(ValueError, match="not a CIDR"):
            parse_cidr(bad)
    r = CliRunner().invoke(cli, ["serve", "--webhook-allow-cidr", "10.0.0.1/8"])
    assert r.exit_code == 2 and "--webhook-allow-cidr" in r.output


# -- the connection checks the address it connects to ---------------------------------------


class _Inner(httpcore.AsyncNetworkBackend):
    """Stands for the socket layer: notes where it was asked to connect."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def connect_tcp(self, host: str, port: int, *_a: Any, **_k: Any) -> Any:
        self.asked.append(host)
        raise httpcore.ConnectError("not in this test")


def _resolving(monkeypatch: pytest.MonkeyPatch, *answers: list[str]) -> list[str]:
    """anyio.getaddrinfo as seen by connect.py answers each call with the next list of
    addresses (as DNS rebinding would); returns the names it was asked."""
    asked: list[str] = []
    queue = list(answers)

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        asked.append(host)
        addrs = queue.pop(0)
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addrs
        ]

    monkeypatch.setattr(connect.anyio, "getaddrinfo", getaddrinfo)
    return asked


def _connect(backend: connect.GuardedBackend, host: str) -> None:
    asyncio.run(backend.connect_tcp(host, 443, timeout=5.0))


def test_only_checked_addresses_are_connected_to(monkeypatch: pytest.MonkeyPatch) -> None:
    """The name is resolved once per connection, by the guard; the socket layer is handed
    the addresses it checked, never the name (which a rebinding DNS could answer anew)."""
    asked = _resolving(monkeypatch, ["10.0.0.7", "93.184.216.34", "169.254.169.254"], ["127.0.0.1"])
    backend = connect.GuardedBackend(Destinations())
    inner = _Inner()
    backend.inner = inner
    with pytest.raises(httpcore.ConnectError):
        _connect(backend, "hooks.example")
    assert asked == ["hooks.example"]
    assert inner.asked == ["93.184.216.34"]
    # Next connection, the name now resolves inside: refused, nothing connected.
    with pytest.raises(Refused, match="resolves to a loopback address") as refused:
        _connect(backend, "hooks.example")
    assert "127.0.0.1" not in str(refused.value)
    assert inner.asked == ["93.184.216.34"]


# -- through the API --------------------------------------------------------------------------


def _settings(tmp_path: Path, db_url: str, **overrides: Any) -> Settings:
    fast = {"webhook_interval": 0.05, "webhook_backoff": 0.05, "webhook_timeout": 2.0}
    # make_settings allows 127.0.0.0/8 for the other tests' receivers: not here.
    return make_settings(
        tmp_path / "data", db_url, **{**fast, "webhook_allow_cidrs": (), **overrides}
    )


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.close()


def _body(endpoint: str, name: str = "ops") -> dict[str, Any]:
    return {
        "name": name,
        "description": "",
        "endpoint": endpoint,
        "secrets": ["a signing secret"],
        "subscriptions": ["instance.created"],
    }


def _deliveries(c: TestClient, name: str = "ops", **params: Any) -> list[Any]:
    r = c.get(f"/v1/alert-receivers/{name}/deliveries", params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


@pytest.mark.parametrize(
    ("endpoint", "words"),
    [
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://10.0.0.5:8080/hook", "private"),
        ("http://[::1]:12220/v1/system/sim/sleds/x/power-off", "loopback"),
        ("http://127.0.0.1:12220/v1/system/sim/sleds/x/power-off", "loopback"),
        ("http://127.1/hook", "loopback"),
        ("https://[::ffff:192.168.0.1]/hook", "private"),
        ("http://[fd00:ec2::254]/", "cloud metadata"),
        ("http://100.64.1.1/", "CGNAT"),
        ("http://224.0.0.1/", "multicast"),
        ("http://0.0.0.0:12220/", "unspecified"),
    ],
)
def test_a_refused_address_is_a_400_on_create_and_on_change(
    tmp_path: Path, db_url: str, endpoint: str, words: str
) -> None:
    with AdminClient(create_app(_settings(tmp_path, db_url))) as c:
        r = c.post("/v1/webhook-receivers", json=_body(endpoint))
        assert r.status_code == 400, r.text
        assert r.json()["error_code"] == "InvalidValue"
        assert words in r.json()["message"] and "--webhook-allow-cidr" in r.json()["message"]
        assert c.get("/v1/alert-receivers").json()["items"] == []

        good = "https://hooks.example.com/x"
        assert c.post("/v1/webhook-receivers", json=_body(good)).status_code == 201
        r = c.put("/v1/webhook-receivers/ops", json={"endpoint": endpoint})
        assert r.status_code == 400 and words in r.json()["message"]
        view = c.get("/v1/alert-receivers/ops").json()
        assert view["kind"]["endpoint"] == good


def test_a_name_resolving_inside_is_not_sent_to(
    tmp_path: Path, db_url: str, receiver: WebhookReceiver
) -> None:
    """``localhost`` passes at create time (a name), and is refused at send time by what
    it resolves to: the delivery fails, saying why without naming the address."""
    endpoint = receiver.url.replace("127.0.0.1", "localhost")
    with AdminClient(create_app(_settings(tmp_path, db_url, webhook_attempts=1))) as c:
        c.post("/v1/projects", json={"name": "demo", "description": ""})
        assert c.post("/v1/webhook-receivers", json=_body(endpoint)).status_code == 201
        c.post("/v1/instances", params={"project": "demo"}, json=instance_body("a"))
        [d] = wait_for(lambda: _deliveries(c, failed=True), "the refused delivery")
        [attempt] = d["attempts"]["webhook"]
        assert attempt["result"] == "failed_unreachable" and attempt["response"] is None
        assert "resolves to a loopback address" in attempt["detail"]
        assert "127.0.0.1" not in attempt["detail"] and "::1" not in attempt["detail"]
        # The probe is refused alike.
        r = c.post("/v1/alert-receivers/ops/probe")
        assert r.status_code == 200 and r.json()["probe"]["state"] == "failed"
    assert receiver.all() == []


def test_an_allowed_network_is_reached(
    tmp_path: Path, db_url: str, receiver: WebhookReceiver
) -> None:
    """127.0.0.1 with --webhook-allow-cidr 127.0.0.0/8: created, delivered (also through a
    name resolving there), probed."""
    settings = _settings(tmp_path, db_url, webhook_allow_cidrs=LOCAL)
    with AdminClient(create_app(settings)) as c:
        c.post("/v1/projects", json={"name": "demo", "description": ""})
        assert c.post("/v1/webhook-receivers", json=_body(receiver.url)).status_code == 201
        by_name = _body(receiver.url.replace("127.0.0.1", "localhost"), name="by-name")
        assert c.post("/v1/webhook-receivers", json=by_name).status_code == 201
        c.post("/v1/instances", params={"project": "demo"}, json=instance_body("a"))
        wait_for(lambda: _deliveries(c, delivered=True), "the delivery")
        wait_for(lambda: _deliveries(c, "by-name", delivered=True), "the delivery by name")
        r = c.post("/v1/alert-receivers/ops/probe")
        assert r.json()["probe"]["state"] == "delivered"
    assert len(receiver.all()) == 3


def test_redirects_are_not_followed(tmp_path: Path, db_url: str, receiver: WebhookReceiver) -> None:
    elsewhere = WebhookReceiver()
    try:
        receiver.script, receiver.location = [307], elsewhere.url
        settings = _settings(tmp_path, db_url, webhook_allow_cidrs=LOCAL, webhook_attempts=1)
        with AdminClient(create_app(settings)) as c:
            c.post("/v1/projects", json={"name": "demo", "description": ""})
            assert c.post("/v1/webhook-receivers", json=_body(receiver.url)).status_code == 201
            c.post("/v1/instances", params={"project": "demo"}, json=instance_body("a"))
            [d] = wait_for(lambda: _deliveries(c, failed=True), "the redirected delivery")
        [attempt] = d["attempts"]["webhook"]
        assert attempt["result"] == "failed_http_error"
        assert attempt["response"]["status"] == 307
        assert len(receiver.all()) == 1 and elsewhere.all() == []
    finally:
        elsewhere.close()


def _told(probe: dict[str, Any]) -> Any:
    """What a probe answers, without what differs between any two probes."""
    [attempt] = probe["attempts"]["webhook"]
    return probe["state"], {k: v for k, v in attempt.items() if k != "time_sent"}


def test_the_probe_tells_only_delivered_or_failed(
    tmp_path: Path, db_url: str, receiver: WebhookReceiver
) -> None:
    """An HTTP error, a closed port and a silent port answer the same: failed, no status
    code, no reason (a caller cannot map ports with it); kept so in the deliveries too."""
    closed = WebhookReceiver()
    closed.close()
    silent = WebhookReceiver()
    silent.hang = 1.0
    settings = _settings(tmp_path, db_url, webhook_allow_cidrs=LOCAL, webhook_timeout=0.3)
    try:
        with AdminClient(create_app(settings)) as c:
            told = {}
            for name, rx, script in (
                ("ok", receiver, []),
                ("error", receiver, [500]),
                ("redirect", receiver, [302]),
                ("closed", closed, []),
                ("silent", silent, []),
            ):
                receiver.script = script
                body = _body(rx.url, name=name)
                assert c.post("/v1/webhook-receivers", json=body).status_code == 201
                r = c.post(f"/v1/alert-receivers/{name}/probe")
                assert r.status_code == 200, r.text
                told[name] = _told(r.json()["probe"])
                [kept] = _deliveries(c, name)
                assert _told(kept) == told[name]
        assert told["ok"] == (
            "delivered",
            {"attempt": 1, "result": "succeeded", "response": None, "detail": None},
        )
        failed = (
            "failed",
            {"attempt": 1, "result": "failed_unreachable", "response": None, "detail": None},
        )
        assert told["error"] == told["redirect"] == told["closed"] == told["silent"] == failed
    finally:
        silent.close()
