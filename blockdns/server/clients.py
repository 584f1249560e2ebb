"""Who asks: a :class:`~blockdns.resolve.base.Client` per address and transport, with its policy group.

One directory belongs to one configuration generation (a reload may move an address to another group), and
memoises its clients, bounded: a flood of new source addresses clears a full memo instead of growing it.
"""

from __future__ import annotations

from blockdns.policy import Policy
from blockdns.resolve.base import Client

MEMO_LIMIT = 100_000  # clients remembered per transport


class ClientDirectory:
    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._memo: dict[str, dict[str, Client]] = {}  # transport -> address -> client

    def get(self, address: str, transport: str) -> Client:
        memo = self._memo.get(transport)
        if memo is None:
            memo = self._memo[transport] = {}
        client = memo.get(address)
        if client is None:
            client = Client(address, transport, self._policy.group_for(address))
            if len(memo) >= MEMO_LIMIT:
                memo.clear()
            memo[address] = client
        return client
