"""Presentation names for DNS numbers in logs, metrics and the API (``A``, ``NXDOMAIN``, ``TYPE65534``), and
the bounded set of query types the counters tell apart."""

from __future__ import annotations

from functools import lru_cache

from dnslib import QTYPE

RCODES = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    6: "YXDOMAIN",
    7: "YXRRSET",
    8: "NXRRSET",
    9: "NOTAUTH",
    10: "NOTZONE",
}


# The query types counters keep apart (CoreDNS's list, with the types today's clients ask: SVCB, HTTPS, CAA,
# TLSA, NAPTR); every other type is counted as OTHER_QTYPE. A client chooses the type, so a counter keyed by
# it as sent would give every client a way to add up to 65,536 series to /metrics.
COUNTED_QTYPES = frozenset(
    (1, 2, 5, 6, 12, 15, 16, 28, 33, 35, 43, 46, 47, 48, 50, 52, 64, 65, 251, 252, 255, 257)
)  # A NS CNAME SOA PTR MX TXT AAAA SRV NAPTR DS RRSIG NSEC DNSKEY NSEC3 TLSA SVCB HTTPS IXFR AXFR ANY CAA
OTHER_QTYPE = 0  # reserved (RFC 6895), never a type worth counting on its own: stands for "any other type"


def qtype_label(qtype: int) -> str:
    """The metric label for a counted type: its mnemonic, or ``other``."""
    return qtype_name(qtype) if qtype in COUNTED_QTYPES else "other"


@lru_cache(maxsize=512)
def qtype_name(qtype: int) -> str:
    """``A``, ``AAAA``, ... or the RFC 3597 form ``TYPE12345`` for a type without a mnemonic."""
    name = QTYPE.forward.get(qtype)
    return str(name) if name else f"TYPE{qtype}"


def rcode_name(rcode: int) -> str:
    return RCODES.get(rcode, f"RCODE{rcode}")
