"""Responses as bytes: an answer rendered for the packet that asked, and remembered for the fast path.

A response is a function of the question as the client sent it (flags, case, EDNS), the answer, how old the
answer is (TTLs count down in whole seconds) and the transport's size limit; the ID is the packet's own. The
fast path serves memoised objects (a cached answer, a blocked one) for memoised questions, so the bytes
after the ID are remembered by (question, answer, transport) together with the age they were rendered at:
a repeat within the same second costs a dict probe and a concatenation instead of a render.
"""

from __future__ import annotations

from blockdns.resolve.base import UDP, Answer, Question
from blockdns.wire import render

STREAM_LIMIT = 65535  # what a response may take over TCP, TLS or HTTPS
MEMO_LIMIT = 16384  # responses remembered; a full memo is cleared, never grown


def render_answer(data: bytes, question: Question, answer: Answer, now: float, transport: str) -> bytes:
    """The response to the query packet ``data`` (its ID, its question as sent) carrying ``answer``, as of
    ``now``: TTLs counted down since the answer was stored, truncated to what ``transport`` allows."""
    stored = answer.stored
    return render(
        (data[0] << 8) | data[1],
        question.flags,
        question.raw,
        answer.reply,
        int(now - stored) if stored is not None else 0,
        question.payload,
        question.do,
        question.udp_limit if transport == UDP else STREAM_LIMIT,
    )


class ResponseMemo:
    def __init__(self) -> None:
        self._memo: dict[tuple[Question, Answer, str], tuple[int, bytes]] = {}

    def render(self, data: bytes, question: Question, answer: Answer, now: float, transport: str) -> bytes:
        """What :func:`render_answer` gives, from the memo when it was rendered at the same age."""
        stored = answer.stored
        age = int(now - stored) if stored is not None else 0
        key = (question, answer, transport)
        known = self._memo.get(key)
        if known is not None and known[0] == age:
            return data[:2] + known[1]
        out = render_answer(data, question, answer, now, transport)
        if len(self._memo) >= MEMO_LIMIT:
            self._memo.clear()
        self._memo[key] = (age, out[2:])
        return out
