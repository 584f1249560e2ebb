"""Blocking the question name: the group's policy decision for it, and the reply a blocked name gets.

Every blocked answer carries EDE 15 (Blocked) whose text is the decision's reason, e.g.
``blocked by policy: vendor:deepseek (DeepSeek, CN, chat/api)``.

The handler owns its memos, one pair per client group of its generation's policy: the decision for each
name, and the blocked answer for each (name, type), both in two generations (:mod:`blockdns.memo`), so
random names under a blocked domain pass through without growing them or pushing out the names clients
repeat. A name seen for the first time is decided by the fast step itself: the decision is a pure
function of the name (a few dict probes, one per label), and a blocked name is answered at once instead of
taking the slow path (a task and the whole chain) — random subdomains under a blocked domain are a flood
that must stay cheap. What the reply holds besides the name (the EDE text, the SOA) is built once per
policy entry and kept in the responder's own bounded memo.
"""

from __future__ import annotations

import ipaddress
import time

from blockdns import dnsname
from blockdns.config import BlockingSettings
from blockdns.memo import TwoGenerations
from blockdns.policy import Decision, GroupPolicy, Rule
from blockdns.resolve.base import Answer, Handler, Outcome, Query, Question
from blockdns.resolve.synth import address_reply, negative_reply
from blockdns.wire import EDE_BLOCKED, NOERROR, NXDOMAIN, REFUSED, TYPE_A, TYPE_AAAA, Reply, ede_option

MEMO_LIMIT = 100_000  # entries per memo, in two generations
REPLY_LIMIT = 10_000  # blocked replies kept by what they depend on (entry, rule, type, name length)

# What a blocked name's reply depends on besides the mode: the entry and rule that matched (the SOA's zone,
# the EDE text), how it was matched, the query type, and the name's length (where the zone starts inside
# the question name, which the SOA's owner points at).
_ReplyKey = tuple[str | None, Rule | None, str | None, int, int]


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
        self._replies: TwoGenerations[_ReplyKey, tuple[Reply, str]] = TwoGenerations(REPLY_LIMIT)

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
        key = (decision.entry, decision.rule, decision.via, qtype, len(query_name))
        built = self._replies.recall(key)
        if built is None:
            built = (self.reply(query_name, qtype, decision), decision.reason)
            self._replies.remember(key, built)
        reply, reason = built
        return Answer(Outcome.BLOCKED, reply, reason=reason, decision=decision, upstream=upstream)


class _GroupMemo:
    """One group's memoised decisions (by name) and blocked answers (by name and type)."""

    __slots__ = ("answers", "decisions")

    def __init__(self) -> None:
        self.decisions: TwoGenerations[bytes, Decision] = TwoGenerations(MEMO_LIMIT)
        self.answers: TwoGenerations[tuple[bytes, int], Answer] = TwoGenerations(MEMO_LIMIT)


class BlockingHandler(Handler):
    """Blocks the question name itself."""

    name = "blocking"

    def __init__(self, responder: BlockResponder, pause: PauseSwitch) -> None:
        self.responder = responder
        self.pause = pause
        self._memos: dict[GroupPolicy, _GroupMemo] = {}

    def decide(self, group: GroupPolicy, qname_wire: bytes, qname: str) -> Decision:
        """The group's decision for a name (memoised)."""
        return self._decision(self._memo(group), group, qname_wire, qname)

    async def handle(self, query: Query) -> Answer:
        if self.pause.paused():
            return await self.next_handler(query)
        answer = self._blocked(query)
        return answer if answer is not None else await self.next_handler(query)

    def fast(self, query: Query) -> Answer | None:
        if self.pause.until > query.received:
            return self.next_fast(query)
        answer = self._blocked(query)
        return answer if answer is not None else self.next_fast(query)

    def _blocked(self, query: Query) -> Answer | None:
        """The answer for the question name when the client's group blocks it, else None."""
        group = query.client.group
        memo = self._memos.get(group)
        if memo is None:
            memo = self._memo(group)
        question = query.question
        decision = memo.decisions.get(question.qname_wire)
        if decision is None:
            decision = self._decision(memo, group, question.qname_wire, question.qname)
        if decision.action != "block":
            return None
        answer = memo.answers.get(question.name_type)
        return answer if answer is not None else self._blocked_answer(memo, question, decision)

    def _decision(self, memo: _GroupMemo, group: GroupPolicy, qname_wire: bytes, qname: str) -> Decision:
        decision = memo.decisions.recall(qname_wire)
        if decision is None:
            decision = group.decide(qname)
            memo.decisions.remember(qname_wire, decision)
        return decision

    def _blocked_answer(self, memo: _GroupMemo, question: Question, decision: Decision) -> Answer:
        answer = memo.answers.recall(question.name_type)
        if answer is None:
            answer = self.responder.answer(question.qname_wire, question.qtype, decision)
            memo.answers.remember(question.name_type, answer)
        return answer

    def _memo(self, group: GroupPolicy) -> _GroupMemo:
        memo = self._memos.get(group)
        if memo is None:
            memo = self._memos[group] = _GroupMemo()
        return memo
