"""Reading the question of a query packet: parsed by hand once, then memoised by the bytes after the ID.

Clients repeat themselves, so everything after the ID parses the same every time: one dict probe replaces a
walk over the labels. ``questions[data[2:]]`` is the :class:`~blockdns.resolve.base.Question`, or None for a
packet the hand parser does not take (compression in the question, several OPT records, an opcode other
than QUERY, ...), which then goes to :mod:`blockdns.server.triage`.
"""

from __future__ import annotations

from blockdns.dnsname import text_key
from blockdns.memo import TwoGenerations
from blockdns.resolve.base import Question
from blockdns.wire import CD, parse_query_fast, response_limit

MEMO_LIMIT = 131_072  # packets remembered, in two generations (bench/parse_memo.py measured the choice)

_NO_ID = b"\x00\x00"


class QuestionMemo(TwoGenerations[bytes, Question]):
    """A dict from the bytes after the ID to the question they ask; a missing key is taken from the older
    generation or parsed on the spot (:class:`blockdns.memo.TwoGenerations`: a flood of one-off names
    passes through without pushing out the packets clients repeat).

    A dict subclass so that a hit, the fast path's common case, is one C-level subscript."""

    __slots__ = ()

    def __init__(self, limit: int = MEMO_LIMIT) -> None:
        super().__init__(limit)

    def __missing__(self, after_id: bytes) -> Question | None:
        question = self.older.pop(after_id, None)
        if question is None:
            question = parse_question(_NO_ID + after_id)
            if question is None:  # junk is not remembered: it would only push good questions out
                return None
        self.remember(after_id, question)
        return question


def parse_question(data: bytes) -> Question | None:
    parsed = parse_query_fast(data)
    if parsed is None:
        return None
    _, flags, qname, qtype, qclass, question_end, payload, do = parsed
    qname = bytes(qname)
    return Question(
        flags=flags,
        qname_wire=qname,
        qname=text_key(qname),
        raw=data[12:question_end],
        qtype=qtype,
        qclass=qclass,
        payload=payload,
        do=do,
        udp_limit=response_limit(payload, False),
        cache_key=(qname, qtype, qclass, do, bool(flags & CD)),
        name_type=(qname, qtype),
    )
