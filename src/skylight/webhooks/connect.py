"""The connections webhooks are sent over: to an address the destination rule allows, and
to exactly the address it checked.

Checking a name and then letting the HTTP client resolve it again would leave a gap (DNS
rebinding: the second answer may be 10.0.0.1). So the check happens in the one place that
opens sockets, httpcore's network backend: it resolves the host itself, drops the
addresses the rule refuses, and connects to one it kept. Everything above the socket is
unchanged: the connection pool is keyed by the URL's host, the Host header and TLS (SNI and
certificate check) use the name, so keep-alive never carries one host's request to another.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

import anyio
import httpcore
import httpx

from skylight.webhooks.destination import Address, Destinations, Refused, literal, refused_because

LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks, then connects to a checked address (raises ``Refused`` when the
    host has none the rule allows)."""

    def __init__(self, rule: Destinations) -> None:
        self.rule = rule
        self.inner: httpcore.AsyncNetworkBackend = httpcore.AnyIOBackend()

    async def addresses(self, host: str, port: int, timeout: float | None) -> list[Address]:
        """What ``host`` resolves to that the rule allows, in the resolver's order."""
        try:
            with anyio.fail_after(timeout):
                found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        kept: list[Address] = []
        refused: str | None = None
        for *_, sockaddr in found:
            addr = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            kind = self.rule.refusal(addr)
            if kind is None and addr not in kept:
                kept.append(addr)
            refused = refused or kind
        if refused is None and not kept:
            raise httpcore.ConnectError(f"{host} has no address")
        if not kept:
            # (the addresses are not named: what a name resolves to is not the caller's)
            assert refused is not None
            verb = "is" if literal(host) is not None else "resolves to"
            raise Refused(f"not sent: the endpoint's host {verb} {refused_because(refused)}")
        return kept

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        last: Exception | None = None
        for addr in await self.addresses(host, port, timeout):
            try:
                return await self.inner.connect_tcp(
                    str(addr), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc  # the next address, as a resolver's caller would
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise Refused("webhooks are not sent over unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (its request and error mapping), over a pool whose every
    connection is made by ``GuardedBackend``."""

    def __init__(self, rule: Destinations) -> None:
        super().__init__(trust_env=False, limits=LIMITS)
        # httpx takes no network backend: the pool it built is replaced by the same pool
        # connecting through the guard.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=LIMITS.max_connections,
            max_keepalive_connections=LIMITS.max_keepalive_connections,
            keepalive_expiry=LIMITS.keepalive_expiry,
            network_backend=GuardedBackend(rule),
        )
