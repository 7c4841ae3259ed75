"""Where a webhook may be sent: never into the rack.

A webhook is a request the control plane makes for whoever registered the receiver. Pointed
at 169.254.169.254, a 10.x address or the control plane's own API, it would reach what only
the rack may reach (a probe once powered a sled off). So every address a webhook would
connect to is checked against ``REFUSED`` (loopback, private, link-local, CGNAT, multicast,
unspecified, reserved: the IANA special-purpose blocks) and, whatever else is allowed,
against the cloud metadata addresses. IPv4 forms inside IPv6 (``::ffff:10.0.0.1``, NAT64)
are checked as the IPv4 address they carry.

The rule is applied twice: to a literal address when a receiver's endpoint is set (a 400),
and at send time to every address its host name resolves to, by the connection itself
(``webhooks/connect.py``), so the address checked is the address connected to. An operator
lets a network through with ``--webhook-allow-cidr`` (``Settings.webhook_allow_cidrs``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

HOW_TO_ALLOW = "an operator may allow its network with --webhook-allow-cidr"

# Refused whatever an operator allows: they hand out the credentials of the machine.
METADATA: tuple[Network, ...] = (ip_network("169.254.169.254/32"), ip_network("fd00:ec2::254/128"))

# First match names the refusal, so a narrow block comes before a wider one holding it.
REFUSED: tuple[tuple[Network, str], ...] = tuple(
    (ip_network(cidr), kind)
    for cidr, kind in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
        ("192.0.2.0/24", "reserved"),  # documentation
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved"),  # benchmarking
        ("198.51.100.0/24", "reserved"),  # documentation
        ("203.0.113.0/24", "reserved"),  # documentation
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # and the broadcast address
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "reserved"),  # IPv4-compatible (deprecated)
        ("64:ff9b:1::/48", "reserved"),  # local-use NAT64
        ("100::/64", "reserved"),  # discard-only
        ("2001::/32", "reserved"),  # Teredo: an IPv4 address in disguise
        ("2001:db8::/32", "reserved"),  # documentation
        ("2002::/16", "reserved"),  # 6to4: an IPv4 address in disguise
        ("fc00::/7", "private"),  # unique local
        ("fe80::/10", "link-local"),
        ("fec0::/10", "reserved"),  # site-local (deprecated)
        ("ff00::/8", "multicast"),
    )
)

_NAT64 = ip_network("64:ff9b::/96")
# What inet_aton would read as an IPv4 address ("127.1", "0x7f000001", "2130706433").
_LEGACY_IPV4 = re.compile(r"[0-9a-fA-FxX.]+")


class Refused(Exception):
    """A webhook's destination the rule refuses; the message names the kind of address,
    never the address (a name's resolution is not the caller's to learn)."""


def unwrapped(addr: Address) -> Address:
    """The IPv4 address an IPv6 one carries (mapped, NAT64), else the address itself."""
    if isinstance(addr, IPv6Address):
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr in _NAT64:
            return IPv4Address(int(addr) & 0xFFFFFFFF)
    return addr


def parse_cidr(text: str) -> Network:
    """An allowed network as an operator writes it (``10.1.0.0/16``, ``fd12::/64``, or one
    address); ValueError saying what is wrong."""
    try:
        return ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a CIDR such as 10.1.0.0/16: {exc}") from None


@dataclass(frozen=True)
class Destinations:
    """The rule, with the networks an operator allowed."""

    allowed: tuple[Network, ...] = ()

    def refusal(self, addr: Address) -> str | None:
        """The kind of address ``addr`` is when webhooks may not go there, else None."""
        addr = unwrapped(addr)
        if any(addr in net for net in METADATA):
            return "cloud metadata"
        if any(addr in net for net in self.allowed):
            return None
        for net, kind in REFUSED:
            if addr in net:
                return kind
        return None if addr.is_global else "reserved"

    def check_host(self, host: str) -> None:
        """Refuse ``host`` (a URL's host) if it is a literal address the rule refuses. A
        name passes: what it resolves to is checked when a delivery connects."""
        addr = literal(host)
        kind = None if addr is None else self.refusal(addr)
        if kind is not None:
            raise Refused(f"endpoint host {host} is {refused_because(kind)}")


def refused_because(kind: str) -> str:
    return f"a {kind} address, which webhooks may not reach ({HOW_TO_ALLOW})"


def literal(host: str) -> Address | None:
    """The address ``host`` spells, including the shorthands a resolver would accept as
    IPv4 ("127.1"), else None (a name)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if _LEGACY_IPV4.fullmatch(host):
        try:
            return IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None
