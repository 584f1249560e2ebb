"""A resolution's :class:`~.machine.Result` as the :class:`~blockdns.wire.ParsedResponse` the chain caches
and serves, built straight from its RRsets: no message is rendered only to be parsed again.

The records are written for a response whose question (the name asked, the client's own bytes) sits at
offset 12, so owner names are compressed against the question and earlier owners; record data is written as
stored (uncompressed, which every reader accepts). RRSIGs and NSEC/NSEC3 proofs are written only for a
client that set DO, as RFC 4035 §3.2.1 asks. AA is never set (a resolver is not an authority), AD never
(nothing is validated here yet).

The fields are the ones :func:`blockdns.wire.parse_reply` would read from those records (a test holds the two
to that), so the cache and inspection cannot tell a recursive answer from a forwarded one.
"""

from __future__ import annotations

import ipaddress
import struct

from blockdns import dnsname
from blockdns.resolve.recursive.classify import TYPE_NSEC, TYPE_NSEC3
from blockdns.resolve.recursive.machine import Result
from blockdns.resolve.recursive.message import Record
from blockdns.resolve.recursive.rrset import TYPE_RRSIG
from blockdns.wire import (
    NOERROR,
    NXDOMAIN,
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    TYPE_CNAME,
    TYPE_DNAME,
    TYPE_SOA,
    ParsedResponse,
    Reply,
)

_DNSSEC_ONLY = (TYPE_RRSIG, TYPE_NSEC, TYPE_NSEC3)
_QUESTION_OFFSET = 12  # where the question's name starts in the response the records are sent in


class _Writer:
    """Writes records with owner names compressed against the question name and earlier owners."""

    def __init__(self, qname: bytes) -> None:
        self.buffer = bytearray()
        self._offsets: dict[tuple[bytes, ...], int] = {}
        labels = dnsname.split(qname)
        offset = _QUESTION_OFFSET
        for index, label in enumerate(labels):
            self._offsets[labels[index:]] = offset
            offset += 1 + len(label)
        self._base = offset + 1 + 4  # the first record byte's offset in the message: after type and class

    def name(self, name: bytes) -> None:
        labels = dnsname.split(name)
        for index in range(len(labels)):
            suffix = labels[index:]
            offset = self._offsets.get(suffix)
            if offset is not None:
                self.buffer += struct.pack(">H", 0xC000 | offset)
                return
            here = self._base + len(self.buffer)
            if here < 0x4000:
                self._offsets[suffix] = here
            label = labels[index]
            self.buffer.append(len(label))
            self.buffer += label
        self.buffer.append(0)

    def record(self, record: Record) -> int:
        """Write ``record``; return where its TTL field is in the buffer."""
        self.name(record.name)
        ttl_at = len(self.buffer) + 4
        self.buffer += struct.pack(">HHIH", record.rtype, record.rclass, record.ttl, len(record.rdata))
        self.buffer += record.rdata
        return ttl_at


def parsed_response(result: Result, *, do: bool) -> ParsedResponse:
    answer = [record for rrset in result.answer for record in rrset.records(with_sigs=do)]
    authority = [
        record
        for rrset in result.authority
        if do or rrset.rtype not in _DNSSEC_ONLY
        for record in rrset.records(with_sigs=do)
    ]
    if do:  # a wildcard expansion's proof that the name asked does not exist (RFC 4035 §3.1.3.3)
        authority += [
            record
            for rrset in result.answer
            for proof in rrset.proof
            for record in proof.records(with_sigs=True)
        ]
    writer = _Writer(result.qname)
    ttl_fields = []
    cnames: list[str] = []
    addresses: list[str] = []
    has_answer_of_type = False
    for record in answer:
        ttl_fields.append((writer.record(record), record.ttl))
        if record.rtype == result.qtype or result.qtype == TYPE_ANY:
            has_answer_of_type = True
        if record.rtype in (TYPE_CNAME, TYPE_DNAME):
            cnames.append(dnsname.text_key(record.rdata.lower()))
        elif record.rtype == TYPE_A and len(record.rdata) == 4:
            addresses.append(str(ipaddress.IPv4Address(record.rdata)))
        elif record.rtype == TYPE_AAAA and len(record.rdata) == 16:
            addresses.append(str(ipaddress.IPv6Address(record.rdata)))
    soa_negative_ttl = None
    for record in authority:
        ttl_fields.append((writer.record(record), record.ttl))
        if record.rtype == TYPE_SOA and len(record.rdata) >= 20:
            soa_negative_ttl = min(record.ttl, struct.unpack(">I", record.rdata[-4:])[0])
    rcode = result.rcode & 0xF
    negative = rcode == NXDOMAIN or (rcode == NOERROR and not has_answer_of_type and not cnames)
    smallest = min((record.ttl for record in (*answer, *authority)), default=0)
    reply = Reply(
        rcode=rcode,
        counts=(len(answer), len(authority), 0),
        records=bytes(writer.buffer),
        ttl_fields=tuple(ttl_fields),
    )
    return ParsedResponse(
        rcode,
        reply,
        soa_negative_ttl if negative else smallest,
        negative,
        tuple(cnames),
        tuple(addresses),
    )
