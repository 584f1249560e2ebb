"""Answers blockdns gives itself: the canary names that keep browsers and phones on this resolver.

* ``use-application-dns.net``: NXDOMAIN tells Firefox not to switch on its built-in DNS-over-HTTPS.
* ``mask.icloud.com`` and ``mask-h2.icloud.com``: NXDOMAIN tells Apple devices that iCloud Private Relay
  is not available on this network, so their queries keep coming here.
"""

from __future__ import annotations

from blockdns.resolve.base import Answer, Next, Outcome, Query
from blockdns.resolve.synth import negative_reply
from blockdns.wire import NXDOMAIN

CANARY_NAMES = {
    "use-application-dns.net": "Firefox DoH canary",
    "mask.icloud.com": "iCloud Private Relay canary",
    "mask-h2.icloud.com": "iCloud Private Relay canary",
}
CANARY_TTL = 300


class LocalHandler:
    name = "local"

    def __init__(self, bypass_protection: bool) -> None:
        self.names = dict(CANARY_NAMES) if bypass_protection else {}

    def answer_for(self, query: Query) -> Answer | None:
        why = self.names.get(query.qname)
        if why is None:
            return None
        reply = negative_reply(query.qname_wire, query.qname_wire, NXDOMAIN, CANARY_TTL)
        return Answer(Outcome.LOCAL, reply, reason=f"bypass protection: {why}")

    async def handle(self, query: Query, next_handler: Next) -> Answer:
        answer = self.answer_for(query) if self.names else None
        return answer if answer is not None else await next_handler(query)
