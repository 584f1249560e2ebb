"""Blocking the question name: the group's policy decision for it, and the reply a blocked name gets.

Every blocked answer carries EDE 15 (Blocked) whose text is the decision's reason, e.g.
``blocked by policy: vendor:deepseek (DeepSeek, CN, chat/api)``.

The handler owns its memos, one pair per client group of its generation's policy: the decision for each
name, and the blocked answer for each (name, type), both in two generations (:mod:`blockdns.memo`), so
random names under a blocked domain pass through without growing them or pushing out the names clients
repeat. A name seen for the first time is decided by the fast step itself: the decision is a pure
function of the name (a few dict probes, one per label), and a blocked name is answered at once instead of
taking the slow path (a task and the whole chain) — random subdomains under a blocked domain are a flood
that must stay cheap. A blocked reply does not hold the name itself (the SOA's owner is a pointer into the
question), so one reply serves every name with the same rule and the blocked entry at the same place in
the name: the responder keeps them in its own bounded memo.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable

from blockdns.config import BlockingSettings
from blockdns.memo import TwoGenerations
from blockdns.policy import Decision, GroupPolicy, Rule
from blockdns.resolve.base import Answer, Handler, Outcome, Query, Question, ready
from blockdns.resolve.synth import QUESTION_NAME, address_reply, soa_record
from blockdns.wire import EDE_BLOCKED, NOERROR, NXDOMAIN, REFUSED, TYPE_A, TYPE_AAAA, Reply, ede_option

MEMO_LIMIT = 100_000  # entries per memo, in two generations
REPLY_LIMIT = 10_000  # blocked replies kept by what they depend on (rule, via, type, where the zone starts)

# What a blocked name's reply depends on besides the mode: the rule that matched and what through (the EDE
# text), the query type, and where the blocked entry starts inside the question name (the SOA's owner is a
# pointer to it). Not the name itself: one reply serves every name under one entry at one depth.
_ReplyKey = tuple[Rule | None, str | None, int, int]


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
        return self._reply(qtype, decision, zone_offset(query_name, decision))

    def _reply(self, qtype: int, decision: Decision, zone_at: int) -> Reply:
        ede = ede_option(EDE_BLOCKED, decision.reason)
        if self.mode == "refused":
            return Reply(rcode=REFUSED, counts=(0, 0, 0), ede=ede)
        if qtype == TYPE_A and self.ipv4 is not None:
            return address_reply(qtype, self.ipv4, self.ttl, ede)
        if qtype == TYPE_AAAA and self.ipv6 is not None:
            return address_reply(qtype, self.ipv6, self.ttl, ede)
        rcode = NXDOMAIN if self.mode == "nxdomain" else NOERROR
        owner = (int.from_bytes(QUESTION_NAME) + zone_at).to_bytes(2)
        return Reply(rcode=rcode, counts=(0, 1, 0), records=soa_record(owner, self.ttl), ede=ede)

    def answer(
        self, query_name: bytes, qtype: int, decision: Decision, upstream: str | None = None
    ) -> Answer:
        zone_at = zone_offset(query_name, decision)
        key = (decision.rule, decision.via, qtype, zone_at)
        built = self._replies.recall(key)
        if built is None:
            built = (self._reply(qtype, decision, zone_at), decision.reason)
            self._replies.remember(key, built)
        reply, reason = built
        return Answer(Outcome.BLOCKED, reply, reason=reason, decision=decision, upstream=upstream)


def zone_offset(query_name: bytes, decision: Decision) -> int:
    """Where the SOA's zone starts inside the question name: the blocked entry when the name itself matched
    it (it ends the name, label for label: the policy matched it there), else the whole name (0)."""
    entry = decision.entry
    if not entry or decision.via:
        return 0
    starts = []
    pos = 0
    length = query_name[0]
    while length:
        starts.append(pos)
        pos += length + 1
        length = query_name[pos]
    keep = entry.count(".") + 1
    return starts[-keep] if keep <= len(starts) else 0


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

    def handle(self, query: Query) -> Awaitable[Answer]:
        if self.pause.paused():
            return self.next_handler(query)
        answer = self._blocked(query)
        return ready(answer) if answer is not None else self.next_handler(query)

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
