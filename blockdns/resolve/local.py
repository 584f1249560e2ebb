"""Answers blockdns gives itself: the canary names that keep browsers and phones on this resolver.

* ``use-application-dns.net``: NXDOMAIN tells Firefox not to switch on its built-in DNS-over-HTTPS.
* ``mask.icloud.com`` and ``mask-h2.icloud.com``: NXDOMAIN tells Apple devices that iCloud Private Relay
  is not available on this network, so their queries keep coming here.

The answers are built once; both speeds look them up by wire name.
"""

from __future__ import annotations

from blockdns import dnsname
from blockdns.resolve.base import Answer, Handler, Outcome, Query
from blockdns.resolve.synth import negative_reply
from blockdns.wire import NXDOMAIN

CANARY_NAMES = {
    "use-application-dns.net": "Firefox DoH canary",
    "mask.icloud.com": "iCloud Private Relay canary",
    "mask-h2.icloud.com": "iCloud Private Relay canary",
}
CANARY_TTL = 300


def _canary_answer(name: str, why: str) -> Answer:
    wire = dnsname.from_text(name)
    reply = negative_reply(wire, wire, NXDOMAIN, CANARY_TTL)
    return Answer(Outcome.LOCAL, reply, reason=f"bypass protection: {why}")


class LocalHandler(Handler):
    name = "local"

    def __init__(self, bypass_protection: bool) -> None:
        names = CANARY_NAMES if bypass_protection else {}
        self.answers = {dnsname.from_text(name): _canary_answer(name, why) for name, why in names.items()}

    async def handle(self, query: Query) -> Answer:
        answer = self.answers.get(query.question.qname_wire)
        return answer if answer is not None else await self.next_handler(query)

    def fast(self, query: Query) -> Answer | None:
        answer = self.answers.get(query.question.qname_wire)
        return answer if answer is not None else self.next_fast(query)
