"""Who asks: a :class:`~blockdns.resolve.base.Client` per transport and address, with its policy group.

One directory belongs to one configuration generation (a reload may move an address to another group).
``directory[transport][address]`` is the client; a missing one is made on the spot and remembered,
bounded: a flood of new source addresses clears a full memo instead of growing it. Dict subclasses, so that
a hit, the fast path's common case, is two C-level subscripts.

``directory[(transport, client_id)]`` is the same for a client that named itself over an encrypted
transport (a DoH path ``/dns-query/NAME``, a DoT SNI ``NAME.<server name>``): when a group lists NAME in
``client_ids``, that group, whatever the address; an unknown NAME is the plain transport's (and is not
remembered, so the keys stay bounded by the configuration). Its clients carry the ID, for the query log.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping

from blockdns.config import GroupSettings
from blockdns.policy import GroupPolicy, Policy
from blockdns.resolve.base import Client

MEMO_LIMIT = 100_000  # clients remembered per transport


class _TransportClients(dict[str, Client]):
    def __init__(
        self, policy: Policy, transport: str, group: GroupPolicy | None = None, client_id: str | None = None
    ) -> None:
        super().__init__()
        self._policy = policy
        self._transport = transport
        self._group = group  # a client ID's group; None: by address
        self._client_id = client_id

    def __missing__(self, address: str) -> Client:
        group = self._group or self._policy.group_for(address)
        client = Client(address, self._transport, group, self._client_id)
        if len(self) >= MEMO_LIMIT:
            self.clear()
        self[address] = client
        return client


class ClientDirectory(dict[str | tuple[str, str], _TransportClients]):
    def __init__(self, policy: Policy, client_ids: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self._policy = policy
        self._client_ids = client_ids or {}  # lowercase client ID -> group name

    def __missing__(self, key: str | tuple[str, str]) -> _TransportClients:
        if isinstance(key, tuple):
            transport, client_id = key
            client_id = client_id.lower()
            group = self._policy.groups.get(self._client_ids.get(client_id, ""))
            if group is None:
                return self[transport]
            clients = self[key] = _TransportClients(self._policy, transport, group, client_id)
            return clients
        clients = self[key] = _TransportClients(self._policy, key)
        return clients


def client_id_groups(groups: Iterable[GroupSettings]) -> dict[str, str]:
    """``[[groups]] client_ids`` as lowercase client ID -> group name."""
    return {client_id.lower(): group.name for group in groups for client_id in group.client_ids}


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
