"""Taking an authoritative server's reply apart into records whose data stands on its own.

The recursive resolver keeps records from many replies and writes them into new messages, so every name
inside record data must be decompressed when read (a compression pointer only means something inside the
message it came from). RFC 3597 §4 lists the types whose data may hold compressed names; everything else is
kept as raw bytes. dnslib is not used here because it has no DNAME type (it would keep a DNAME target as
raw bytes with the pointer still in it), and a recursor cannot afford to get DNAME wrong.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from blockdns.errors import WireError
from blockdns.wire import AA, HEADER, TC, TYPE_OPT, read_name

_RR_FIXED = struct.Struct(">HHIH")

# How the data of each type that may hold compressed names is laid out: a sequence of "n" (a name) and
# integers (that many opaque bytes). "s" is a character-string (a length byte and that many bytes).
_NAME_LAYOUTS: dict[int, tuple[str | int, ...]] = {
    2: ("n",),  # NS
    3: ("n",),  # MD
    4: ("n",),  # MF
    5: ("n",),  # CNAME
    6: ("n", "n", 20),  # SOA
    7: ("n",),  # MB
    8: ("n",),  # MG
    9: ("n",),  # MR
    12: ("n",),  # PTR
    14: ("n", "n"),  # MINFO
    15: (2, "n"),  # MX
    17: ("n", "n"),  # RP
    18: (2, "n"),  # AFSDB
    21: (2, "n"),  # RT
    26: (2, "n", "n"),  # PX
    33: (6, "n"),  # SRV
    35: (4, "s", "s", "s", "n"),  # NAPTR
    36: (2, "n"),  # KX
    39: ("n",),  # DNAME
}


@dataclass(frozen=True, slots=True)
class Record:
    name: bytes  # owner, lowercase wire form
    rtype: int
    rclass: int
    ttl: int
    rdata: bytes  # with every name in it decompressed (case kept as received)


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    flags: int
    rcode: int  # the four header bits; extended rcodes are not needed towards authorities
    question: tuple[bytes, int, int] | None
    answer: tuple[Record, ...]
    authority: tuple[Record, ...]
    additional: tuple[Record, ...]  # without the OPT pseudo-record
    has_opt: bool

    @property
    def authoritative(self) -> bool:
        return bool(self.flags & AA)

    @property
    def truncated(self) -> bool:
        return bool(self.flags & TC)


def parse(data: bytes | bytearray | memoryview) -> Message:
    """Parse a whole reply; raise :class:`WireError` on anything malformed."""
    try:
        return _parse(bytes(data))  # slices of it are kept: they must be immutable and hashable
    except (IndexError, struct.error, UnicodeError) as err:
        raise WireError(f"malformed reply: {err}") from None


def _parse(data: bytes) -> Message:
    qid, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    if qdcount > 1:
        raise WireError("reply with more than one question")
    pos = 12
    question = None
    if qdcount:
        qname, pos = read_name(data, pos)
        qtype, qclass = struct.unpack_from(">HH", data, pos)
        pos += 4
        question = (qname.lower(), qtype, qclass)
    sections: list[list[Record]] = [[], [], []]
    has_opt = False
    for index, count in enumerate((ancount, nscount, arcount)):
        for _ in range(count):
            name, pos = read_name(data, pos)
            rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(data, pos)
            start = pos + 10
            pos = start + rdlength
            if pos > len(data):
                raise WireError("record data runs past the end of the message")
            if rtype == TYPE_OPT:
                has_opt = True
                continue
            rdata = _decompress_rdata(data, rtype, start, pos)
            # A TTL with the top bit set is treated as zero (RFC 2181 §8).
            sections[index].append(Record(name.lower(), rtype, rclass, ttl if ttl < 0x80000000 else 0, rdata))
    return Message(
        qid,
        flags,
        flags & 0xF,
        question,
        tuple(sections[0]),
        tuple(sections[1]),
        tuple(sections[2]),
        has_opt,
    )


def _decompress_rdata(data: bytes, rtype: int, start: int, end: int) -> bytes:
    layout = _NAME_LAYOUTS.get(rtype)
    if layout is None:
        return data[start:end]
    out = bytearray()
    pos = start
    for part in layout:
        if part == "n":
            name, pos = read_name(data, pos)
            out += name
        elif part == "s":
            length = data[pos]
            out += data[pos : pos + 1 + length]
            pos += 1 + length
        else:
            assert isinstance(part, int)
            out += data[pos : pos + part]
            pos += part
        if pos > end:
            raise WireError(f"type {rtype} record data overruns its length")
    if pos != end:
        raise WireError(f"type {rtype} record data has {end - pos} stray bytes")
    return bytes(out)
