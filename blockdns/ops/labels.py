"""Presentation names for DNS numbers in logs, metrics and the API (``A``, ``NXDOMAIN``, ``TYPE65534``)."""

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


@lru_cache(maxsize=512)
def qtype_name(qtype: int) -> str:
    """``A``, ``AAAA``, ... or the RFC 3597 form ``TYPE12345`` for a type without a mnemonic."""
    name = QTYPE.forward.get(qtype)
    return str(name) if name else f"TYPE{qtype}"


def rcode_name(rcode: int) -> str:
    return RCODES.get(rcode, f"RCODE{rcode}")
