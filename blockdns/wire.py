"""DNS wire format: the only module that reads or writes DNS messages byte by byte.

Two speeds:

* The hot path (:func:`parse_query_fast`, :func:`render`) works on bytes with ``struct`` only. It accepts
  the common well-formed query (one question, uncompressed name, at most one OPT record) and returns None
  for anything else, which the slow path then handles with dnslib.
* Everything unusual goes through dnslib (:func:`parse_message`), and error responses are built by hand
  from the question bytes so that even a half-parsed query can be answered.

A stored answer (:class:`Reply`) keeps the records after the question exactly as they will be sent, plus
where their TTL fields are. Because a reply's question is the client's own question bytes (same length as
the cached name), compression pointers inside the stored records stay valid, and serving a hit is a header,
the question, the records with TTLs patched, and an OPT record.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from dnslib import DNSRecord

from blockdns import dnsname
from blockdns.errors import WireError

# Header flag bits.
QR = 0x8000
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
AD = 0x0020
CD = 0x0010
OPCODE_MASK = 0x7800

# Response codes.
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16

# Record types used here.
TYPE_A, TYPE_NS, TYPE_CNAME, TYPE_SOA, TYPE_AAAA, TYPE_DNAME, TYPE_OPT = 1, 2, 5, 6, 28, 39, 41
TYPE_ANY = 255
CLASS_IN = 1

# RFC 8914 Extended DNS Errors used by blockdns.
EDE_OPTION = 15
EDE_OTHER = 0
EDE_STALE_ANSWER = 3
EDE_FORGED_ANSWER = 4
EDE_BLOCKED = 15
EDE_CENSORED = 16
EDE_FILTERED = 17
EDE_PROHIBITED = 18
EDE_NOT_READY = 14
EDE_NO_REACHABLE_AUTHORITY = 22
EDE_NETWORK_ERROR = 23

MAX_POINTER_JUMPS = 64  # more compression pointers than this in one name: a loop or an attack
MAX_UDP_PAYLOAD = 1232  # what blockdns offers and accepts at most over UDP (DNS Flag Day 2020)
MIN_UDP_PAYLOAD = 512

HEADER = struct.Struct(">HHHHHH")  # id, flags, qdcount, ancount, nscount, arcount
_pack_header = HEADER.pack
_ECHOED_FLAGS = RD | CD  # query flags a response repeats
_WITHOUT_AD = ~AD
_TYPE_CLASS = struct.Struct(">HH")
_OPT_FIXED = struct.Struct(">HHIH")  # type, class (payload size), ttl (ext-rcode, version, flags), rdlength
_RR_FIXED = struct.Struct(">HHIH")
_TTL = struct.Struct(">I")
_DO_BIT = 0x8000


def parse_query_fast(
    data: bytes,
) -> tuple[int, int, bytes, int, int, int, int, int] | None:
    """Parse an ordinary query by hand, or return None so the slow path takes it.

    Returns ``(id, flags, qname, qtype, qclass, question_end, payload, do)`` where ``qname`` is the question
    name in lowercase wire form, ``payload`` is the client's EDNS UDP size (0 without OPT), ``do`` the DO bit.
    """
    size = len(data)
    if size < 17:
        return None
    qid, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    if flags & (QR | OPCODE_MASK) or qdcount != 1 or ancount or nscount or arcount > 1:
        return None
    pos = 12
    length = data[12]
    while length:
        if length > 63:
            return None  # a compression pointer or a reserved label type: slow path
        pos += length + 1
        if pos >= size:
            return None
        length = data[pos]
    if pos - 11 > 255:
        return None
    end = pos + 5
    if end > size:
        return None
    qtype, qclass = _TYPE_CLASS.unpack_from(data, pos + 1)
    payload = do = 0
    if arcount:
        if end + 11 > size or data[end]:
            return None
        rtype, payload, ttl, rdlength = _OPT_FIXED.unpack_from(data, end + 1)
        if rtype != TYPE_OPT or end + 11 + rdlength != size or ttl & 0x00FF0000:
            return None
        payload = max(payload, MIN_UDP_PAYLOAD)
        do = ttl & _DO_BIT
    elif end != size:
        return None
    return qid, flags, data[12 : pos + 1].lower(), qtype, qclass, end, payload, do


# ------------------------------------------------------------------------------------------ EDNS / OPT


def ede_option(code: int, text: str = "") -> bytes:
    """An RFC 8914 Extended DNS Error option (code 15): info-code then UTF-8 extra text."""
    payload = struct.pack(">H", code) + text.encode("utf-8")[:400]
    return struct.pack(">HH", EDE_OPTION, len(payload)) + payload


def opt_record(
    do: int = 0, options: bytes = b"", payload: int = MAX_UDP_PAYLOAD, ext_rcode: int = 0
) -> bytes:
    """An OPT pseudo-record for a response: our UDP size, the client's DO bit echoed, options."""
    ttl = (ext_rcode << 24) | (_DO_BIT if do else 0)
    return b"\x00" + _OPT_FIXED.pack(TYPE_OPT, payload, ttl, len(options)) + options


# ---------------------------------------------------------------------------------------------- replies


@dataclass(slots=True)
class Reply:
    """Records to send after the question, ready to render for any query of the same name and type.

    ``records`` holds the answer, authority and additional sections (never an OPT record). ``ttl_offsets``
    are positions of TTL fields inside ``records`` with the TTL each had when stored, so a cached reply can
    count down. ``ede`` is the EDE option (already encoded) a client with EDNS receives.
    """

    rcode: int
    counts: tuple[int, int, int]
    records: bytes = b""
    ttl_fields: tuple[tuple[int, int], ...] = ()
    flags: int = 0  # extra header bits to set (AA, AD)
    ede: bytes = b""
    # The records with TTLs as of ``_age`` seconds after storing; rebuilt at most once a second.
    _aged_records: bytes = field(default=b"", repr=False, compare=False)
    _age: int = field(default=-1, repr=False, compare=False)
    # The OPT record for a client without (index 0) and with (index 1) the DO bit, built once.
    _opts: list[bytes] = field(default_factory=list, repr=False, compare=False)
    # The response header's flags that do not depend on the query (QR, RA, AA/AD, RCODE), worked out once.
    header_flags: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.header_flags = QR | RA | self.flags | (self.rcode & 0xF)

    def opt(self, do: int) -> bytes:
        if not self._opts:
            self._opts = [opt_record(0, self.ede), opt_record(1, self.ede)]
        return self._opts[1 if do else 0]

    def clamped(self, low: int, high: int) -> Reply:
        """This reply with every TTL held within [low, high] (itself when none is outside)."""
        if all(low <= ttl <= high for _, ttl in self.ttl_fields):
            return self
        buffer = bytearray(self.records)
        fields = []
        for offset, ttl in self.ttl_fields:
            held = min(max(ttl, low), high)
            _TTL.pack_into(buffer, offset, held)
            fields.append((offset, held))
        return Reply(self.rcode, self.counts, bytes(buffer), tuple(fields), self.flags, self.ede)

    def records_at(self, age: int) -> bytes:
        """The records with every TTL reduced by ``age`` seconds (never below zero)."""
        if not self.ttl_fields or age <= 0:
            return self.records
        if age != self._age:
            buffer = bytearray(self.records)
            pack = _TTL.pack_into
            for offset, ttl in self.ttl_fields:
                pack(buffer, offset, ttl - age if ttl > age else 0)
            self._aged_records = bytes(buffer)
            self._age = age
        return self._aged_records


def response_limit(payload: int, tcp: bool) -> int:
    """The largest response a query may get: 65535 over TCP; over UDP the client's EDNS size capped at
    ours, or 512 bytes without EDNS."""
    if tcp:
        return 65535
    if not payload:
        return MIN_UDP_PAYLOAD
    return payload if payload < MAX_UDP_PAYLOAD else MAX_UDP_PAYLOAD


def render(
    qid: int,
    query_flags: int,
    question: bytes,
    reply: Reply,
    age: int,
    payload: int,
    do: int,
    limit: int,
) -> bytes:
    """Build the response for a query from its header, its question bytes and a stored reply.

    ``payload`` is the client's EDNS UDP size (0: the client sent no OPT, so none is returned). ``limit``
    is the largest message the transport allows; a larger one is truncated (TC, no records) per RFC 2181.
    """
    flags = reply.header_flags | (query_flags & _ECHOED_FLAGS)
    if not (do or query_flags & AD):  # RFC 6840 §5.7: AD for a client that set DO or AD
        flags &= _WITHOUT_AD
    an, ns, ar = reply.counts
    records = reply.records_at(age) if age > 0 else reply.records
    if payload:
        opt = reply.opt(do)
        ar += 1
    else:
        opt = b""
    if 12 + len(question) + len(records) + len(opt) > limit:
        return _pack_header(qid, flags | TC, 1, 0, 0, 1 if payload else 0) + question + opt
    return _pack_header(qid, flags, 1, an, ns, ar) + question + records + opt


def error_response(data: bytes, rcode: int, *, has_opt: bool, ede: bytes = b"") -> bytes | None:
    """A bare error response (FORMERR, NOTIMP, BADVERS, ...) echoing what can be read of the query; an OPT
    record when the query had one (``has_opt``, known to the caller, which has parsed it already).

    Returns None when not even the header can be read (such a packet gets silence).
    """
    if len(data) < 12:
        return None
    qid, flags = struct.unpack_from(">HH", data)
    if flags & QR:
        return None  # never answer a response: that is how reflection loops start
    opcode_bits = flags & OPCODE_MASK
    question = b""
    if rcode != FORMERR:
        question = _question_bytes(data) or b""
    qdcount = 1 if question else 0
    out_flags = QR | RA | opcode_bits | (flags & (RD | CD)) | (rcode & 0xF)
    opt = opt_record(0, ede, ext_rcode=rcode >> 4) if has_opt or rcode > 15 else b""
    return HEADER.pack(qid, out_flags, qdcount, 0, 0, 1 if opt else 0) + question + opt


def _question_bytes(data: bytes) -> bytes | None:
    """The raw question (name, type, class) when it is uncompressed and complete, else None."""
    if len(data) < 17 or HEADER.unpack_from(data)[2] != 1:
        return None
    pos = 12
    while True:
        if pos >= len(data):
            return None
        length = data[pos]
        if length == 0:
            break
        if length > 63:
            return None
        pos += length + 1
    end = pos + 5
    return data[12:end] if end <= len(data) else None


# ------------------------------------------------------------------------------------ upstream messages


def build_query(
    qid: int,
    qname: bytes,
    qtype: int,
    qclass: int = CLASS_IN,
    *,
    rd: bool = True,
    cd: bool = False,
    do: bool = False,
    edns: bool = True,
    payload: int = MAX_UDP_PAYLOAD,
) -> bytes:
    """A query for an upstream or authoritative server; ``qname`` in wire form."""
    flags = (RD if rd else 0) | (CD if cd else 0)
    header = HEADER.pack(qid, flags, 1, 0, 0, 1 if edns else 0)
    opt = opt_record(1 if do else 0, payload=payload) if edns else b""
    return header + qname + _TYPE_CLASS.pack(qtype, qclass) + opt


PADDING_OPTION = 12  # EDNS Padding (RFC 7830)
QUERY_PADDING_BLOCK = 128  # RFC 8467 §4.1: an encrypted query's length, a multiple of this


def pad_query(message: bytes, block: int = QUERY_PADDING_BLOCK) -> bytes:
    """``message`` (a :func:`build_query` query with EDNS: its OPT record last, without options) with an EDNS
    Padding option that makes its length a multiple of ``block``; any other message unchanged."""
    if len(message) < 23 or message[-11:-8] != b"\x00\x00\x29" or message[-2:] != b"\x00\x00":
        return message
    padding = -(len(message) + 4) % block
    option = _PADDING_HEADER.pack(PADDING_OPTION, padding) + bytes(padding)
    return message[:-2] + len(option).to_bytes(2) + option


_PADDING_HEADER = struct.Struct(">HH")


def reply_matches(data: bytes, qid: int, qname: bytes, qtype: int, qclass: int) -> bool:
    """True when ``data`` answers our query: QR set, same ID, same question (name case-insensitive)."""
    if len(data) < 12:
        return False
    rid, flags, qdcount = struct.unpack_from(">HHH", data)
    if rid != qid or not flags & QR:
        return False
    if qdcount == 0:
        # Some servers omit the question in FORMERR/NOTIMP/REFUSED replies; accept those on ID alone.
        return flags & 0xF in (FORMERR, NOTIMP, REFUSED)
    end = 12 + len(qname)
    if qdcount != 1 or len(data) < end + 4:
        return False
    return data[12:end].lower() == qname and _TYPE_CLASS.unpack_from(data, end) == (qtype, qclass)


@dataclass(frozen=True, slots=True)
class ParsedResponse:
    """A response taken apart once, for the cache, inspection and (later) validation: never parsed again.

    Built from an upstream's wire bytes (:func:`parse_reply`) or straight from the recursive resolver's
    RRsets; both give the same fields for the same records.
    """

    rcode: int
    reply: Reply  # the records after the question (no OPT), TTLs as the server gave them
    # How long the response may be cached before the cache's own clamps: the smallest record TTL of the
    # answer and authority sections, or for a negative answer min(SOA TTL, SOA MINIMUM) (RFC 2308). None:
    # a negative answer without a SOA, which must not be cached at all.
    ttl: int | None
    negative: bool  # NXDOMAIN, or NOERROR without an answer of the asked type (NODATA)
    cnames: tuple[str, ...] = ()  # CNAME/DNAME targets met in the answer section, in order
    addresses: tuple[str, ...] = ()  # A/AAAA addresses in the answer section


def parse_reply(data: bytes, qname: bytes) -> ParsedResponse:
    """Walk an upstream response (already matched to our question) into a :class:`ParsedResponse`.

    The OPT record is cut out; AA is dropped (a resolver never claims it), AD kept. Raises WireError on a
    malformed message.
    """
    try:
        return _parse_reply(data, qname)
    except (IndexError, struct.error) as err:
        raise WireError(f"malformed reply: {err}") from None


def _parse_reply(data: bytes, qname: bytes) -> ParsedResponse:
    _, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    if qdcount != 1:
        raise WireError("reply without exactly one question")
    question_end = 12 + len(qname) + 4
    qtype = _TYPE_CLASS.unpack_from(data, 12 + len(qname))[0]
    ttl_fields: list[tuple[int, int]] = []
    cnames: list[str] = []
    addresses: list[str] = []
    counts = [ancount, nscount, arcount]
    pos = question_end
    cut = 0  # bytes of OPT record cut out before ``pos`` (only ever at the very end)
    smallest = None
    soa_negative_ttl = None
    has_answer_of_type = False
    rcode = flags & 0xF
    for section, count in enumerate((ancount, nscount, arcount)):
        for _ in range(count):
            start = pos
            pos = _skip_name(data, pos)
            rtype, _rclass, ttl, rdlength = _RR_FIXED.unpack_from(data, pos)
            ttl_pos = pos + 4
            rdata_start = pos + 10
            pos = rdata_start + rdlength
            if pos > len(data):
                raise WireError("record data past the end of the message")
            if rtype == TYPE_OPT:
                if pos != len(data):
                    # Cutting an OPT out of the middle would shift names that later pointers refer to.
                    return _parse_reply(_without_opt(data), qname)
                counts[section] -= 1  # an OPT is added per client at render time
                cut = pos - start
                continue
            ttl_fields.append((ttl_pos - question_end, ttl))
            if section == 0:
                if rtype == qtype or qtype == TYPE_ANY:
                    has_answer_of_type = True
                if rtype in (TYPE_CNAME, TYPE_DNAME):
                    cnames.append(_read_name(data, rdata_start))
                elif rtype == TYPE_A and rdlength == 4:
                    addresses.append(".".join(str(b) for b in data[rdata_start:pos]))
                elif rtype == TYPE_AAAA and rdlength == 16:
                    addresses.append(_ipv6_text(data[rdata_start:pos]))
            if section < 2:  # glue in the additional section does not shorten the answer's life
                smallest = ttl if smallest is None else min(smallest, ttl)
            if section == 1 and rtype == TYPE_SOA:
                soa_minimum = struct.unpack_from(">I", data, pos - 4)[0]
                soa_negative_ttl = min(ttl, soa_minimum)
    negative = rcode == NXDOMAIN or (rcode == NOERROR and not has_answer_of_type and not cnames)
    # RFC 2308: negative answers are cached for min(SOA TTL, SOA MINIMUM); without a SOA, not at all.
    cache_ttl = soa_negative_ttl if negative else (smallest if smallest is not None else 0)
    reply = Reply(
        rcode=rcode,
        counts=(counts[0], counts[1], counts[2]),
        records=data[question_end : len(data) - cut],
        ttl_fields=tuple(ttl_fields),
        flags=flags & AD,  # AA is for authorities; a resolver never claims it
    )
    return ParsedResponse(rcode, reply, cache_ttl, negative, tuple(cnames), tuple(addresses))


def _without_opt(data: bytes) -> bytes:
    record = parse_message(data)
    record.ar = [rr for rr in record.ar if rr.rtype != TYPE_OPT]
    return bytes(record.pack())


def _skip_name(data: bytes, pos: int) -> int:
    while True:
        length = data[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            return pos + 2
        if length > 63:
            raise WireError("reserved label type")
        pos += length + 1


def read_name(data: bytes, pos: int) -> tuple[bytes, int]:
    """Read a possibly compressed name at ``pos``; return it in uncompressed wire form (case kept) and the
    position just after it in the message. Pointers must point backwards, so a loop cannot form."""
    out = bytearray()
    end = None
    limit = pos
    jumps = 0
    while True:
        length = data[pos]
        if length == 0:
            out.append(0)
            break
        if length & 0xC0 == 0xC0:
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if end is None:
                end = pos + 2
            if target >= limit or jumps >= MAX_POINTER_JUMPS:
                raise WireError("compression pointer loop or forward pointer")
            limit = target
            pos = target
            jumps += 1
            continue
        if length > 63:
            raise WireError("reserved label type")
        label = data[pos + 1 : pos + 1 + length]
        if len(label) != length:
            raise WireError("name runs past the end of the message")
        out.append(length)
        out += label
        if len(out) > 255:
            raise WireError("name longer than 255 bytes")
        pos += length + 1
    return bytes(out), (end if end is not None else pos + 1)


def _read_name(data: bytes, pos: int) -> str:
    """A possibly compressed name as its text key (:func:`blockdns.dnsname.text_key`)."""
    return dnsname.text_key(read_name(data, pos)[0].lower())


def _ipv6_text(raw: bytes) -> str:
    import ipaddress

    return str(ipaddress.IPv6Address(raw))


def parse_message(data: bytes) -> DNSRecord:
    """Full parse with dnslib, for the slow path; any failure becomes WireError."""
    try:
        return DNSRecord.parse(data)
    except Exception as err:  # dnslib raises several unrelated types on bad input
        raise WireError(f"cannot parse message: {err}") from None


def reply_rcode(data: bytes) -> int:
    return struct.unpack_from(">H", data, 2)[0] & 0xF


def is_truncated(data: bytes) -> bool:
    return bool(struct.unpack_from(">H", data, 2)[0] & TC)


def prepend_cnames(
    question: bytes,
    cnames: list[tuple[bytes, int, int, bytes]],
    target_question: bytes,
    target: Reply,
    flags: int,
) -> Reply:
    """The reply to ``question`` whose answer section is the CNAME records ``cnames`` (``(owner, type, ttl,
    rdata)``, the first owner a pointer to the question name) followed by ``target``, the reply to
    ``target_question``, which the last CNAME points at. The target's rcode, authority and EDE are kept.

    The target's records are written for its own question (their compression pointers point into it), so
    they are re-encoded here with dnslib. Only the target's TTLs are noted for counting down: the CNAMEs
    are served with the TTL they were written with. Raises WireError when dnslib cannot take them apart.
    """
    head = bytearray(HEADER.pack(0, QR, 1, len(cnames), 0, 0) + question)
    for owner, rtype, ttl, rdata in cnames:
        head += owner + _RR_FIXED.pack(rtype, CLASS_IN, ttl, len(rdata)) + rdata
    an, ns, ar = target.counts
    tail = HEADER.pack(0, target.header_flags, 1, an, ns, ar) + target_question + target.records
    combined = parse_message(bytes(head))
    rest = parse_message(tail)
    combined.rr.extend(rest.rr)
    combined.auth = rest.auth
    combined.ar = rest.ar
    combined.header.rcode = target.rcode
    try:
        data = bytes(combined.pack())
    except Exception as err:  # dnslib raises several unrelated types
        raise WireError(f"cannot re-encode the reply: {err}") from None
    parsed = parse_reply(data, question[:-4]).reply
    return Reply(
        rcode=target.rcode,
        counts=parsed.counts,
        records=parsed.records,
        ttl_fields=parsed.ttl_fields[len(cnames) :],
        flags=flags,
        ede=target.ede,
    )


def record_names(question: bytes, reply: Reply, rtype: int) -> list[bytes]:
    """The names held by the answer records of type ``rtype`` (PTR, CNAME, NS: RDATA that is one name) in
    ``reply`` to ``question``, uncompressed. Raises WireError on a malformed reply."""
    data = bytes(12) + question + reply.records
    pos = 12 + len(question)
    names = []
    try:
        for _ in range(reply.counts[0]):
            pos = _skip_name(data, pos)
            found, _rclass, _ttl, rdlength = _RR_FIXED.unpack_from(data, pos)
            if found == rtype:
                names.append(read_name(data, pos + 10)[0])
            pos += 10 + rdlength
    except (IndexError, struct.error) as err:
        raise WireError(f"malformed reply: {err}") from None
    return names
