"""Reading the question of a query packet: parsed by hand once, then memoised by the bytes after the ID.

Clients repeat themselves, so everything after the ID parses the same every time: a dict probe replaces a
walk over the labels. A packet the hand parser does not take (compression in the question, several OPT
records, an opcode other than QUERY, ...) gets None here and goes to :mod:`blockdns.server.triage`.
"""

from __future__ import annotations

from blockdns.resolve.base import Question
from blockdns.wire import CD, parse_query_fast, response_limit, wire_name_to_text

MEMO_LIMIT = 65536  # questions remembered; a full memo is cleared, never grown


class QuestionReader:
    def __init__(self) -> None:
        self._memo: dict[bytes, Question] = {}

    def read(self, data: bytes) -> Question | None:
        """The question of a well-formed ordinary query, or None."""
        question = self._memo.get(data[2:])
        if question is None:
            question = parse_question(data)
            if question is not None:
                if len(self._memo) >= MEMO_LIMIT:
                    self._memo.clear()
                self._memo[data[2:]] = question
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
        qname=wire_name_to_text(qname) or "",
        raw=data[12:question_end],
        qtype=qtype,
        qclass=qclass,
        payload=payload,
        do=do,
        udp_limit=response_limit(payload, False),
        cache_key=(qname, qtype, qclass, do, bool(flags & CD)),
        name_type=(qname, qtype),
    )
