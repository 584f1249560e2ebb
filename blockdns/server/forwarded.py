"""Who a DoH request is from when it came through a reverse proxy: ``[server] trusted_proxies``.

Only a peer inside ``trusted_proxies`` is believed. Its ``Forwarded`` header (RFC 7239; ``for=`` of each
element) or else ``X-Forwarded-For`` lists the hops, the client first; the client is the last hop that is
not itself a trusted proxy, read from the right (a client can write anything at the left of the list, but
not what the trusted proxies appended). A header that names no IP address leaves the peer as the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from blockdns.config import Network
from blockdns.resolve.access import AccessControl

MAX_HOPS = 32  # hops looked at, from the right: a longer list is a client's invention


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP from a ``for=`` value or an X-Forwarded-For item: ``1.2.3.4``, ``1.2.3.4:80``, ``"[::1]:80"``,
    ``::1``; None for anything else (``unknown``, an obfuscated ``_hidden`` identifier, junk)."""
    text = text.strip().strip('"').strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _forwarded_for(value: str) -> list[str]:
    hops = []
    for element in value.split(","):
        for pair in element.split(";"):
            name, _, given = pair.partition("=")
            if name.strip().lower() == "for":
                hops.append(given)
    return hops


class TrustedProxies:
    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)

    @property
    def networks(self) -> tuple[Network, ...]:
        return self._networks

    @networks.setter
    def networks(self, networks: tuple[Network, ...]) -> None:  # (a reload sets them)
        self._networks = networks
        self._members = AccessControl(list(networks))  # the same address matching as allow_clients

    def trusted(self, address: str) -> bool:
        return bool(self._networks) and self._members.allowed(address)

    def client(self, peer: str, forwarded: str | None, x_forwarded_for: str | None) -> str:
        """The client's address for a request from ``peer`` with these headers (None: absent)."""
        if not self.trusted(peer):
            return peer
        if forwarded is not None:
            hops = _forwarded_for(forwarded)
        elif x_forwarded_for is not None:
            hops = x_forwarded_for.split(",")
        else:
            return peer
        client = peer
        for hop in reversed(hops[-MAX_HOPS:]):
            address = _address(hop)
            if address is None:
                break
            client = str(address)
            if not self.trusted(client):
                break
        return client
