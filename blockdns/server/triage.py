"""Packets the hand parser refused: decide between silence, an error code, or a clean re-encoding of a legal
query it does not take (a compressed question name, say), which then runs like any other."""

from __future__ import annotations

import logging
from typing import NamedTuple

from blockdns import dnsname
from blockdns.errors import WireError
from blockdns.ops.stats import ServerStats
from blockdns.server.ratelog import RateLimitedLog
from blockdns.wire import (
    BADVERS,
    CD,
    FORMERR,
    MAX_UDP_PAYLOAD,
    NOTIMP,
    OPCODE_MASK,
    QR,
    RD,
    TYPE_OPT,
    build_query,
    error_response,
    parse_message,
    parse_query_fast,
)

log = logging.getLogger("blockdns.server")


class Triaged(NamedTuple):
    """At most one is set: a clean query to answer, or the response to send at once; neither means silence."""

    clean: bytes | None = None
    response: bytes | None = None


class Triage:
    def __init__(self, stats: ServerStats) -> None:
        self.stats = stats
        self._log = RateLimitedLog(log, interval=10.0)

    def examine(self, data: bytes) -> Triaged:
        if len(data) < 12:
            return self._bad("short packet")
        flags = int.from_bytes(data[2:4], "big")
        if flags & QR:
            return self._bad("response sent as a query")
        try:
            message = parse_message(data)
        except WireError:
            message = None
        has_opt = message is not None and any(rr.rtype == TYPE_OPT for rr in message.ar)

        def refuse(rcode: int) -> Triaged:
            return Triaged(response=error_response(data, rcode, has_opt=has_opt))

        if flags & OPCODE_MASK:
            return refuse(NOTIMP)
        if message is None:
            self._bad("unparseable query")
            return refuse(FORMERR)
        if len(message.questions) != 1 or message.rr or message.auth:
            self._bad("not exactly one question")
            return refuse(FORMERR)
        opts = [rr for rr in message.ar if rr.rtype == TYPE_OPT]
        if len(opts) > 1:
            return refuse(FORMERR)
        if opts and (opts[0].ttl >> 16) & 0xFF:
            return refuse(BADVERS)
        question = message.questions[0]
        # The labels as sent (a label may hold any byte, a dot included), never the name's text.
        qname = dnsname.join([label.lower() for label in question.qname.label])
        if len(qname) > dnsname.MAX_NAME_LENGTH:
            return refuse(FORMERR)
        opt = opts[0] if opts else None
        clean = build_query(
            message.header.id,
            qname,
            question.qtype,
            question.qclass,
            rd=bool(flags & RD),
            cd=bool(flags & CD),
            do=bool(opt and opt.ttl & 0x8000),
            edns=opt is not None,
            payload=opt.rclass if opt else MAX_UDP_PAYLOAD,
        )
        if parse_query_fast(clean) is None:
            return refuse(FORMERR)
        return Triaged(clean=clean)

    def _bad(self, what: str) -> Triaged:
        self.stats.bad_packets += 1
        self._log.warning("bad packet: %s", what)
        return Triaged()
