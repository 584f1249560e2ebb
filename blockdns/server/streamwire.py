"""What the encrypted transports read and change in a DNS message besides the engine: EDNS padding
(RFC 7830, with the block sizes of RFC 8467) and the smallest TTL of a response (RFC 8484 §5.1, the DoH
``Cache-Control: max-age``).

Both walk the records of a message the engine produced or a client sent; a message that does not walk
(truncated, a bad name) is left as it is. Only padded queries pay for the padding walk.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from blockdns.errors import WireError
from blockdns.wire import HEADER, PADDING_OPTION, TYPE_OPT, _skip_name

RESPONSE_BLOCK = 468  # RFC 8467 §4.1: the recommended block-length strategy for responses
MAX_STREAM_MESSAGE = 65535

_RR_FIXED = struct.Struct(">HHIH")  # type, class, ttl, rdlength
_OPTION = struct.Struct(">HH")


def _records(message: bytes) -> Iterator[tuple[int, int, int, int]]:
    """(start of the record's fixed part, type, ttl, end of the record) for every record after the
    question. Raises :class:`WireError` (or IndexError/struct.error) for a message that does not walk."""
    _, _, qdcount, ancount, nscount, arcount = HEADER.unpack_from(message)
    pos = 12
    for _ in range(qdcount):
        pos = _skip_name(message, pos) + 4
    for _ in range(ancount + nscount + arcount):
        fixed = _skip_name(message, pos)
        rtype, _, ttl, rdlength = _RR_FIXED.unpack_from(message, fixed)
        end = fixed + 10 + rdlength
        if end > len(message):
            raise WireError("a record runs past the end of the message")
        yield fixed, rtype, ttl, end
        pos = end


def _opt(message: bytes) -> tuple[int, int] | None:
    """(start of the OPT record's fixed part, its end) when the message has one, and it is the last record."""
    found = None
    end = 12
    for fixed, rtype, _, end in _records(message):
        found = (fixed, end) if rtype == TYPE_OPT else None
    if found is None or found[1] != len(message) or end != len(message):
        return None
    return found


def query_padded(query: bytes) -> bool:
    """Whether the query carries an EDNS Padding option (then its response is padded too, RFC 7830 §4)."""
    try:
        located = _opt(query)
        if located is None:
            return False
        fixed, end = located
        pos = fixed + 10
        while pos + 4 <= end:
            code, length = _OPTION.unpack_from(query, pos)
            if code == PADDING_OPTION:
                return True
            pos += 4 + length
    except (WireError, IndexError, struct.error):
        return False
    return False


def pad_response(response: bytes, block: int = RESPONSE_BLOCK) -> bytes:
    """``response`` with a Padding option that makes its length a multiple of ``block`` (unchanged when it
    has no OPT record or the padded message would exceed 64 KiB)."""
    try:
        located = _opt(response)
    except (WireError, IndexError, struct.error):
        return response
    if located is None:
        return response
    fixed, _ = located
    length = len(response) + 4
    padding = -length % block
    if length + padding > MAX_STREAM_MESSAGE:
        return response
    rdlength = struct.unpack_from(">H", response, fixed + 8)[0] + 4 + padding
    return (
        response[: fixed + 8]
        + struct.pack(">H", rdlength)
        + response[fixed + 10 :]
        + _OPTION.pack(PADDING_OPTION, padding)
        + bytes(padding)
    )


def min_ttl(response: bytes) -> int:
    """The smallest TTL of the response's records (OPT aside); 0 for a response without any, or one that
    does not walk. RFC 8484 §5.1: the freshness lifetime of a DoH response."""
    try:
        ttls = [ttl for _, rtype, ttl, _ in _records(response) if rtype != TYPE_OPT]
    except (WireError, IndexError, struct.error):
        return 0
    return min(ttls) if ttls else 0
