"""Writing a resolution's :class:`~.machine.Result` as the complete response the resolver hands on.

The question is exactly the one asked; RD and RA are set, AA never (a resolver is not an authority), AD
never (nothing is validated here). Owner names are compressed against earlier names; record data is written
as stored (uncompressed, which every reader accepts). RRSIGs and NSEC/NSEC3 proofs are written only for a
client that set DO, as RFC 4035 §3.2.1 asks.
"""

from __future__ import annotations

import struct

from blockdns import dnsname
from blockdns.resolve.recursive.classify import TYPE_NSEC, TYPE_NSEC3
from blockdns.resolve.recursive.machine import Result
from blockdns.resolve.recursive.message import Record
from blockdns.resolve.recursive.rrset import TYPE_RRSIG
from blockdns.wire import HEADER, QR, RA, RD

_DNSSEC_ONLY = (TYPE_RRSIG, TYPE_NSEC, TYPE_NSEC3)


class _Writer:
    def __init__(self) -> None:
        self.buffer = bytearray()
        self._offsets: dict[tuple[bytes, ...], int] = {}

    def name(self, name: bytes) -> None:
        labels = dnsname.split(name)
        for index in range(len(labels)):
            suffix = labels[index:]
            offset = self._offsets.get(suffix)
            if offset is not None:
                self.buffer += struct.pack(">H", 0xC000 | offset)
                return
            if len(self.buffer) < 0x4000:
                self._offsets[suffix] = len(self.buffer)
            label = labels[index]
            self.buffer.append(len(label))
            self.buffer += label
        self.buffer.append(0)

    def record(self, record: Record) -> None:
        self.name(record.name)
        self.buffer += struct.pack(">HHIH", record.rtype, record.rclass, record.ttl, len(record.rdata))
        self.buffer += record.rdata


def build_response(result: Result, *, do: bool, qid: int = 0) -> bytes:
    answer = [record for rrset in result.answer for record in rrset.records(with_sigs=do)]
    authority = [
        record
        for rrset in result.authority
        if do or rrset.rtype not in _DNSSEC_ONLY
        for record in rrset.records(with_sigs=do)
    ]
    writer = _Writer()
    flags = QR | RD | RA | (result.rcode & 0xF)
    writer.buffer += HEADER.pack(qid, flags, 1, len(answer), len(authority), 0)
    writer.name(result.qname)
    writer.buffer += struct.pack(">HH", result.qtype, result.qclass)
    for record in (*answer, *authority):
        writer.record(record)
    return bytes(writer.buffer)
