"""Replies blockdns writes itself: negative answers with a SOA (RFC 2308) and fixed addresses.

Records are written for a response whose question name sits at offset 12, so owner names are compression
pointers into the question: the SOA's owner points at the blocked entry's name inside the question name.
"""

from __future__ import annotations

import ipaddress
import struct

from blockdns.dnsname import ROOT, is_strict_subdomain
from blockdns.wire import CLASS_IN, NOERROR, TYPE_SOA, Reply

SOA_MNAME = b"\x02ns\x08blockdns\x07invalid\x00"
SOA_RNAME = b"\x0ahostmaster\x08blockdns\x07invalid\x00"
_QUESTION_OFFSET = 12


def _owner_pointer(qname: bytes, zone: bytes) -> bytes:
    """A pointer to ``zone`` inside the question name when it is a suffix of it, else to the whole name."""
    offset = _QUESTION_OFFSET
    if zone != ROOT and is_strict_subdomain(qname, zone):
        offset += len(qname) - len(zone)
    return struct.pack(">H", 0xC000 | offset)


def soa_record(owner: bytes, ttl: int) -> bytes:
    rdata = SOA_MNAME + SOA_RNAME + struct.pack(">IIIII", 1, 3600, 600, 86400, ttl)
    return owner + struct.pack(">HHIH", TYPE_SOA, CLASS_IN, ttl, len(rdata)) + rdata


def negative_reply(qname: bytes, zone: bytes, rcode: int, ttl: int, ede: bytes = b"") -> Reply:
    """NXDOMAIN or NODATA (rcode NOERROR) with a SOA for ``zone`` in the authority section."""
    return Reply(rcode=rcode, counts=(0, 1, 0), records=soa_record(_owner_pointer(qname, zone), ttl), ede=ede)


def address_reply(
    qtype: int, address: ipaddress.IPv4Address | ipaddress.IPv6Address, ttl: int, ede: bytes = b""
) -> Reply:
    raw = address.packed
    record = b"\xc0\x0c" + struct.pack(">HHIH", qtype, CLASS_IN, ttl, len(raw)) + raw
    return Reply(rcode=NOERROR, counts=(1, 0, 0), records=record, ede=ede)


# ------------------------------------------------------------------------------------- authoritative data

QUESTION_NAME = b"\xc0\x0c"  # a pointer to the question name: the owner of what answers it
NOBODY_INVALID = b"\x06nobody\x07invalid\x00"  # RFC 6303 §3: the SOA RNAME of locally served zones
LOCAL_SOA_TIMERS = (1, 3600, 1200, 604800)  # serial, refresh, retry, expire (RFC 6303 §3)

# One resource record to write: owner (wire form, or a pointer into the question), type, TTL, RDATA.
Record = tuple[bytes, int, int, bytes]


def local_soa(owner: bytes, ttl: int) -> Record:
    """The SOA of a zone served here (RFC 6303 §3: MNAME the zone, RNAME nobody.invalid.); ``ttl`` is also
    its MINIMUM, so a negative answer is kept for ``ttl`` seconds (RFC 2308)."""
    return owner, TYPE_SOA, ttl, owner + NOBODY_INVALID + struct.pack(">IIIII", *LOCAL_SOA_TIMERS, ttl)


def records_reply(rcode: int, answer: list[Record], authority: list[Record], flags: int = 0) -> Reply:
    """A reply holding these records (class IN), with every TTL's place noted."""
    out = bytearray()
    ttl_fields = []
    for owner, rtype, ttl, rdata in (*answer, *authority):
        out += owner
        ttl_fields.append((len(out) + 4, ttl))
        out += struct.pack(">HHIH", rtype, CLASS_IN, ttl, len(rdata)) + rdata
    return Reply(
        rcode=rcode,
        counts=(len(answer), len(authority), 0),
        records=bytes(out),
        ttl_fields=tuple(ttl_fields),
        flags=flags,
    )
