"""The resolver's RRsets (lowercase wire names, decompressed record data) as dnspython objects, and the
few facts about DNSSEC records that the validator reads from them."""

from __future__ import annotations

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.RRSIG import RRSIG

from blockdns import dnsname
from blockdns.resolve.recursive.message import Record
from blockdns.resolve.recursive.rrset import RRset

TYPE_DS = 43
TYPE_RRSIG = 46
TYPE_NSEC = 47
TYPE_DNSKEY = 48
TYPE_NSEC3 = 50


def to_name(wire: bytes) -> dns.name.Name:
    return dns.name.from_wire(wire, 0)[0]


def to_wire_name(name: dns.name.Name) -> bytes:
    wire = name.canonicalize().to_wire()
    assert wire is not None
    return wire


def to_rrset(rrset: RRset) -> dns.rrset.RRset:
    """The RRset as dnspython's (its own records only; RRSIGs are read with :func:`signatures`)."""
    rdclass = dns.rdataclass.RdataClass.make(rrset.rclass)
    rdtype = dns.rdatatype.RdataType.make(rrset.rtype)
    out = dns.rrset.RRset(to_name(rrset.name), rdclass, rdtype)
    for rdata in rrset.rdatas:
        out.add(dns.rdata.from_wire(rdclass, rdtype, rdata, 0, len(rdata)), rrset.ttl)
    return out


def signature(record: Record) -> RRSIG | None:
    """An RRSIG record's data, or None when it does not parse."""
    try:
        rdclass = dns.rdataclass.RdataClass.make(record.rclass)
        rdtype = dns.rdatatype.RdataType.RRSIG
        rdata = dns.rdata.from_wire(rdclass, rdtype, record.rdata, 0, len(record.rdata))
    except Exception:  # dnspython raises a variety of errors for bad data; a bad RRSIG is just no RRSIG
        return None
    return rdata if isinstance(rdata, RRSIG) else None


def signer_of(record: Record) -> bytes | None:
    """The signer name of an RRSIG record, in lowercase wire form (read without parsing the rest)."""
    rdata = record.rdata
    pos = 18
    labels = []
    try:
        while rdata[pos]:
            length = rdata[pos]
            labels.append(rdata[pos + 1 : pos + 1 + length].lower())
            pos += 1 + length
    except IndexError:
        return None
    return dnsname.join(labels)


def has_type(windows: object, rdtype: int) -> bool:
    """Whether an NSEC/NSEC3 type bitmap (dnspython's ``windows``) lists ``rdtype``."""
    window, bit = divmod(rdtype, 256)
    for number, bitmap in windows:  # type: ignore[attr-defined]
        if number == window:
            index = bit // 8
            return index < len(bitmap) and bool(bitmap[index] & (0x80 >> (bit % 8)))
    return False


def type_name(rdtype: int) -> str:
    return dns.rdatatype.to_text(rdtype)  # type: ignore[arg-type]
