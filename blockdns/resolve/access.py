"""Access control: only clients inside ``server.allow_clients`` may use the resolver (never an open
resolver out of the box). Everyone else gets REFUSED with EDE 18 (Prohibited) and is counted."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable

from blockdns.config import Network
from blockdns.resolve.base import Answer, Handler, Outcome, Query, ready
from blockdns.wire import EDE_PROHIBITED, REFUSED, Reply, ede_option

MEMO_LIMIT = 65536

REFUSED_ANSWER = Answer(
    Outcome.REFUSED,
    Reply(rcode=REFUSED, counts=(0, 0, 0), ede=ede_option(EDE_PROHIBITED, "client not allowed")),
    reason="client not allowed",
)


class AccessControl:
    """Whether an address may ask, memoised by address (bounded: a full memo is cleared, never grown)."""

    def __init__(self, networks: list[Network]) -> None:
        self._v4 = [n for n in networks if n.version == 4]
        self._v6 = [n for n in networks if n.version == 6]
        self.memo: dict[str, bool] = {}

    def allowed(self, client: str) -> bool:
        verdict = self.memo.get(client)
        if verdict is None:
            verdict = self._check(client)
            if len(self.memo) >= MEMO_LIMIT:
                self.memo.clear()
            self.memo[client] = verdict
        return verdict

    def _check(self, client: str) -> bool:
        try:
            ip = ipaddress.ip_address(client.split("%", 1)[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        networks = self._v4 if ip.version == 4 else self._v6
        return any(ip in network for network in networks)


class AccessHandler(Handler):
    name = "access"

    def __init__(self, access: AccessControl) -> None:
        self.access = access

    def handle(self, query: Query) -> Awaitable[Answer]:
        if not self.access.allowed(query.client.address):
            return ready(REFUSED_ANSWER)
        return self.next_handler(query)

    def fast(self, query: Query) -> Answer | None:
        allowed = self.access.memo.get(query.client.address)
        if allowed is None:
            return None
        return self.next_fast(query) if allowed else REFUSED_ANSWER
