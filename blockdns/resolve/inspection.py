"""Inspection on the way back: an answer whose CNAME chain reaches a blocked name, or whose address lies in a
blocked range, is blocked for that group too.

The handler owns a memo per client group: for each answer the cache holds (keyed by the answer object
itself, which the cache hands out unchanged until it expires), the answer that group gets — the same one,
or its blocked form. The cache therefore stores only what the upstream said, shared by every group.
"""

from __future__ import annotations

from blockdns.policy import Decision, GroupPolicy
from blockdns.resolve.base import Answer, Handler, Outcome, Query
from blockdns.resolve.blocking import BlockResponder, PauseSwitch

# Answers remembered per group. Smaller than the other memos: each entry keeps a cached answer alive after
# the cache has let it go, so the bound is also a bound on that memory.
MEMO_LIMIT = 10_000


def inspect(
    group: GroupPolicy, qname: str, cnames: tuple[str, ...], addresses: tuple[str, ...]
) -> Decision | None:
    """A block decision when a CNAME target or an answer address is blocked for this group, else None."""
    for target in cnames:
        decision = group.decide(target)
        if decision.blocked:
            return Decision(qname, group.name, "block", decision.entry, decision.rule, via=f"CNAME {target}")
    if len(group.ranges):
        for address in addresses:
            by_address = group.decide_address(qname, address)
            if by_address is not None:
                return by_address
    return None


class InspectionHandler(Handler):
    name = "inspection"

    def __init__(self, responder: BlockResponder, pause: PauseSwitch) -> None:
        self.responder = responder
        self.pause = pause
        self._memos: dict[GroupPolicy, dict[Answer, Answer]] = {}

    async def handle(self, query: Query) -> Answer:
        answer = await self.next_handler(query)
        group = query.client.group
        # Without CNAMEs, and without addresses or blocked ranges to put them in, nothing can block.
        if (not answer.cnames and (not answer.addresses or not group.ranges)) or self.pause.paused():
            return answer
        memo = self._memos.get(group)
        if memo is None:
            memo = self._memos[group] = {}
        served = memo.get(answer)
        if served is not None:
            return served
        question = query.question
        decision = inspect(group, question.qname, answer.cnames, answer.addresses)
        if decision is None:
            served = answer
        else:
            served = self.responder.answer(question.qname_wire, question.qtype, decision, answer.upstream)
        if answer.outcome is Outcome.CACHED:  # a fresh answer is never seen again: nothing to remember
            if len(memo) >= MEMO_LIMIT:
                memo.clear()
            memo[answer] = served
        return served

    def fast(self, query: Query) -> Answer | None:
        answer = self.next_fast(query)
        if answer is None:
            return None
        group = query.client.group
        if (
            not answer.cnames and (not answer.addresses or not group.ranges)
        ) or self.pause.until > query.received:
            return answer
        memo = self._memos.get(group)
        return memo.get(answer) if memo is not None else None
