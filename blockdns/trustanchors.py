"""DNSSEC trust anchors: the IANA root key-signing keys built in, or DS/DNSKEY lines from ``trust_anchors``.

A trust anchor is a DS or DNSKEY record in presentation format (``". IN DS 20326 8 2 E06D…"``), owner name
first; a TTL and the class are optional. Parsing is dnspython's. This module sits below ``config`` so that a
bad line is refused when the configuration is read, with the line named.

The built-in anchors are the DS records of the root zone's KSKs as IANA publishes them
(https://data.iana.org/root-anchors/root-anchors.xml): KSK-2017 (key tag 20326) and KSK-2024 (key tag
38696). Rolling the root key: see docs/dnssec.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tokenizer

IANA_ROOT_ANCHORS: tuple[str, ...] = (
    ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",  # KSK-2017
    ". IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16",  # KSK-2024
)


@dataclass(frozen=True, slots=True)
class TrustAnchor:
    zone: dns.name.Name  # absolute
    rdata: dns.rdata.Rdata  # a DS or a DNSKEY


def parse_anchor(text: str) -> TrustAnchor:
    """One DS or DNSKEY line; raise ValueError with what is wrong."""
    tokens = text.split()
    if len(tokens) < 3:
        raise ValueError(f"{text!r} is not a DS or DNSKEY record ('. IN DS 20326 8 2 E06D…')")
    try:
        zone = dns.name.from_text(tokens[0])
    except dns.exception.DNSException as err:
        raise ValueError(f"{tokens[0]!r} is not a domain name: {err}") from None
    rest = tokens[1:]
    if rest and rest[0].isdigit():
        rest = rest[1:]  # a TTL: it means nothing for an anchor
    if rest and rest[0].upper() == "IN":
        rest = rest[1:]
    if not rest or rest[0].upper() not in ("DS", "DNSKEY"):
        raise ValueError(f"{text!r}: a trust anchor must be a DS or DNSKEY record")
    rdtype = dns.rdatatype.from_text(rest[0].upper())
    try:
        rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, " ".join(rest[1:]))
    except (dns.exception.DNSException, ValueError) as err:
        raise ValueError(f"{text!r}: bad {rest[0].upper()} data: {err}") from None
    return TrustAnchor(zone, rdata)


def parse_anchors(lines: list[str] | tuple[str, ...]) -> list[TrustAnchor]:
    return [parse_anchor(line) for line in lines]


def builtin_anchors() -> list[TrustAnchor]:
    return parse_anchors(IANA_ROOT_ANCHORS)
