"""Blocking: the policy decision for the question name, and the same decision for every CNAME target and
answer address on the way back (so a chain through a blocked name, or an address in a blocked range, is
blocked too).

Every blocked answer carries EDE 15 (Blocked) whose text is the decision's reason, e.g.
``blocked by policy: vendor:deepseek (DeepSeek, CN, chat/api)``.
"""

from __future__ import annotations

import time

from blockdns import dnsname
from blockdns.config import BlockingSettings
from blockdns.policy import Decision, GroupPolicy
from blockdns.resolve.base import Answer, Next, Outcome, Query
from blockdns.resolve.synth import address_reply, negative_reply
from blockdns.wire import (
    EDE_BLOCKED,
    NOERROR,
    NXDOMAIN,
    REFUSED,
    TYPE_A,
    TYPE_AAAA,
    Reply,
    ede_option,
)

MEMO_LIMIT = 200_000


class PauseSwitch:
    """Blocking on or off. ``until`` is a ``time.monotonic()`` instant; 0 means not paused."""

    def __init__(self) -> None:
        self.until = 0.0

    def paused(self, now: float | None = None) -> bool:
        return self.until > (time.monotonic() if now is None else now)


class BlockResponder:
    """Builds the reply a blocked name gets, in the configured style."""

    def __init__(self, settings: BlockingSettings) -> None:
        self.mode = settings.response
        self.ttl = settings.ttl
        self.ipv4 = settings.custom_ipv4 if self.mode == "custom" else None
        self.ipv6 = settings.custom_ipv6 if self.mode == "custom" else None
        if self.mode == "null":
            import ipaddress

            self.ipv4, self.ipv6 = ipaddress.IPv4Address("0.0.0.0"), ipaddress.IPv6Address("::")

    def reply(self, query_name: bytes, qtype: int, decision: Decision) -> Reply:
        ede = ede_option(EDE_BLOCKED, decision.reason)
        if self.mode == "refused":
            return Reply(rcode=REFUSED, counts=(0, 0, 0), ede=ede)
        if qtype == TYPE_A and self.ipv4 is not None:
            return address_reply(qtype, self.ipv4, self.ttl, ede)
        if qtype == TYPE_AAAA and self.ipv6 is not None:
            return address_reply(qtype, self.ipv6, self.ttl, ede)
        zone = dnsname.from_text(decision.entry) if decision.entry and not decision.via else query_name
        rcode = NXDOMAIN if self.mode == "nxdomain" else NOERROR
        return negative_reply(query_name, zone, rcode, self.ttl, ede)


def decide(group: GroupPolicy, qname_wire: bytes, qname: str) -> Decision:
    """The group's decision for a name, memoised by wire name for the hot path."""
    decision = group.memo.get(qname_wire)
    if decision is None:
        # A name with bytes no host name has cannot match any entry (and must not be read as one that does).
        decision = group.decide(qname) if qname else Decision(name="", group=group.name, action="none")
        memo = group.memo
        if len(memo) >= MEMO_LIMIT:
            memo.clear()
        memo[qname_wire] = decision
    return decision


def inspect(
    group: GroupPolicy, qname: str, cnames: tuple[str, ...], addresses: tuple[str, ...]
) -> Decision | None:
    """A block decision when a CNAME target or an answer address is blocked for this group, else None."""
    for target in cnames:
        decision = group.decide(target)
        if decision.blocked:
            return Decision(qname, group.name, "block", decision.entry, decision.rule, via=f"CNAME {target}")
    for address in addresses:
        by_address = group.decide_address(qname, address)
        if by_address is not None:
            return by_address
    return None


class BlockingHandler:
    """Blocks the question name itself."""

    name = "blocking"

    def __init__(self, responder: BlockResponder, pause: PauseSwitch) -> None:
        self.responder = responder
        self.pause = pause

    async def handle(self, query: Query, next_handler: Next) -> Answer:
        if self.pause.paused():
            return await next_handler(query)
        decision = decide(query.group, query.qname_wire, query.qname)
        if decision.blocked:
            reply = self.responder.reply(query.qname_wire, query.qtype, decision)
            return Answer(Outcome.BLOCKED, reply, reason=decision.reason, decision=decision)
        return await next_handler(query)


class InspectionHandler:
    """Blocks an answer whose CNAME chain reaches a blocked name or whose address is in a blocked range."""

    name = "inspection"

    def __init__(self, responder: BlockResponder, pause: PauseSwitch) -> None:
        self.responder = responder
        self.pause = pause

    async def handle(self, query: Query, next_handler: Next) -> Answer:
        answer = await next_handler(query)
        if not (answer.cnames or answer.addresses) or self.pause.paused():
            return answer
        decision = inspect(query.group, query.qname, answer.cnames, answer.addresses)
        if decision is None:
            return answer
        reply = self.responder.reply(query.qname_wire, query.qtype, decision)
        return Answer(
            Outcome.BLOCKED, reply, reason=decision.reason, decision=decision, upstream=answer.upstream
        )
