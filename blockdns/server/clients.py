"""Who asks: a :class:`~blockdns.resolve.base.Client` per transport and address, with its policy group.

One directory belongs to one configuration generation (a reload may move an address to another group).
``directory[transport][address]`` is the client; a missing one is made on the spot and remembered,
bounded: a flood of new source addresses clears a full memo instead of growing it. Dict subclasses, so that
a hit, the fast path's common case, is two C-level subscripts.
"""

from __future__ import annotations

import socket

from blockdns.policy import Policy
from blockdns.resolve.base import Client

MEMO_LIMIT = 100_000  # clients remembered per transport


class _TransportClients(dict[str, Client]):
    def __init__(self, policy: Policy, transport: str) -> None:
        super().__init__()
        self._policy = policy
        self._transport = transport

    def __missing__(self, address: str) -> Client:
        client = Client(address, self._transport, self._policy.group_for(address))
        if len(self) >= MEMO_LIMIT:
            self.clear()
        self[address] = client
        return client


class ClientDirectory(dict[str, _TransportClients]):
    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self._policy = policy

    def __missing__(self, transport: str) -> _TransportClients:
        clients = self[transport] = _TransportClients(self._policy, transport)
        return clients


_V4_MAPPED = bytes(10) + b"\xff\xff"


def client_prefix(address: str) -> str | bytes:
    """Whose share of shared resources a query counts against: an IPv4 address, or an IPv6 /64 (what one
    host holds, and can pick any address from; dnsdist's default mask for the same purpose)."""
    if ":" not in address:
        return address
    try:
        packed = socket.inet_pton(socket.AF_INET6, address.split("%", 1)[0])
    except OSError:
        return address
    if packed[:12] == _V4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return packed[:8]
