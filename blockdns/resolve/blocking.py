"""Blocking the question name: the group's policy decision for it, and the reply a blocked name gets.

Every blocked answer carries EDE 15 (Blocked) whose text is the decision's reason, e.g.
``blocked by policy: vendor:deepseek (DeepSeek, CN, chat/api)``.

The handler owns its memos, one pair per client group of its generation's policy: the decision for each
name, and the blocked answer for each (name, type). The slow path fills them; the fast path only reads
them. Both are bounded: random names under a blocked domain clear a full memo instead of growing it.
"""

from __future__ import annotations

import ipaddress
import time

from blockdns import dnsname
from blockdns.config import BlockingSettings
from blockdns.policy import Decision, GroupPolicy
from blockdns.resolve.base import Answer, Handler, Outcome, Query
from blockdns.resolve.synth import address_reply, negative_reply
from blockdns.wire import EDE_BLOCKED, NOERROR, NXDOMAIN, REFUSED, TYPE_A, TYPE_AAAA, Reply, ede_option

MEMO_LIMIT = 100_000  # entries per memo; a full memo is cleared, never grown


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
        self.ipv4: ipaddress.IPv4Address | None = None
        self.ipv6: ipaddress.IPv6Address | None = None
        if self.mode == "custom":
            self.ipv4, self.ipv6 = settings.custom_ipv4, settings.custom_ipv6
        elif self.mode == "null":
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

    def answer(
        self, query_name: bytes, qtype: int, decision: Decision, upstream: str | None = None
    ) -> Answer:
        reply = self.reply(query_name, qtype, decision)
        return Answer(Outcome.BLOCKED, reply, reason=decision.reason, decision=decision, upstream=upstream)


class _GroupMemo:
    """One group's memoised decisions (by name) and blocked answers (by name and type)."""

    __slots__ = ("answers", "decisions")

    def __init__(self) -> None:
        self.decisions: dict[bytes, Decision] = {}
        self.answers: dict[tuple[bytes, int], Answer] = {}


class BlockingHandler(Handler):
    """Blocks the question name itself."""

    name = "blocking"

    def __init__(self, responder: BlockResponder, pause: PauseSwitch) -> None:
        self.responder = responder
        self.pause = pause
        self._memos: dict[GroupPolicy, _GroupMemo] = {}

    def decide(self, group: GroupPolicy, qname_wire: bytes, qname: str) -> Decision:
        """The group's decision for a name (memoised)."""
        memo = self._memo(group)
        decision = memo.decisions.get(qname_wire)
        if decision is None:
            decision = group.decide(qname)
            if len(memo.decisions) >= MEMO_LIMIT:
                memo.decisions.clear()
            memo.decisions[qname_wire] = decision
        return decision

    async def handle(self, query: Query) -> Answer:
        if self.pause.paused():
            return await self.next_handler(query)
        question, group = query.question, query.client.group
        decision = self.decide(group, question.qname_wire, question.qname)
        if not decision.blocked:
            return await self.next_handler(query)
        memo = self._memo(group)
        answer = memo.answers.get(question.name_type)
        if answer is None:
            answer = self.responder.answer(question.qname_wire, question.qtype, decision)
            if len(memo.answers) >= MEMO_LIMIT:
                memo.answers.clear()
            memo.answers[question.name_type] = answer
        return answer

    def fast(self, query: Query) -> Answer | None:
        if self.pause.until > query.received:
            return self.next_fast(query)
        memo = self._memos.get(query.client.group)
        if memo is None:
            return None
        question = query.question
        decision = memo.decisions.get(question.qname_wire)
        if decision is None:
            return None
        if decision.action != "block":
            return self.next_fast(query)
        return memo.answers.get(question.name_type)

    def _memo(self, group: GroupPolicy) -> _GroupMemo:
        memo = self._memos.get(group)
        if memo is None:
            memo = self._memos[group] = _GroupMemo()
        return memo
