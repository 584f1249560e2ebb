"""RRsets: the unit the recursive resolver caches, checks against bailiwicks and writes into answers.

An RRSIG travels with the RRset it covers (``sigs``), so a DNSSEC-aware client gets the signatures of
every RRset in its answer, whichever cache entry the RRset came from.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, replace

from blockdns.resolve.recursive.message import Record
from blockdns.wire import TYPE_A, TYPE_AAAA

TYPE_RRSIG = 46
_MAX_TTL = 0x7FFFFFFF


@dataclass(frozen=True, slots=True)
class RRset:
    name: bytes  # lowercase wire form
    rtype: int
    rclass: int
    ttl: int  # the smallest TTL of its records (RFC 2181 §5.2)
    rdatas: tuple[bytes, ...]
    sigs: tuple[Record, ...] = ()  # RRSIG records covering this set
    # For a set expanded from a wildcard: the NSEC/NSEC3 sets (with their RRSIGs) that prove the name asked
    # does not exist itself (RFC 4035 §3.1.3.3), kept with the set so a cached answer can be validated.
    proof: tuple[RRset, ...] = ()

    def with_ttl(self, ttl: int) -> RRset:
        return replace(
            self,
            ttl=ttl,
            sigs=tuple(replace(sig, ttl=min(sig.ttl, ttl)) for sig in self.sigs),
        )

    def records(self, *, with_sigs: bool) -> list[Record]:
        own = [Record(self.name, self.rtype, self.rclass, self.ttl, rdata) for rdata in self.rdatas]
        return own + list(self.sigs) if with_sigs else own

    def target(self) -> bytes:
        """The name in the data of a CNAME, DNAME or (first) NS record, lowercased."""
        return self.rdatas[0].lower()

    def targets(self) -> list[bytes]:
        """The names in the data of every record (NS sets), lowercased, in order."""
        return [rdata.lower() for rdata in self.rdatas]

    def addresses(self) -> list[str]:
        """The addresses of an A or AAAA set, as text."""
        if self.rtype == TYPE_A:
            return [str(ipaddress.IPv4Address(rdata)) for rdata in self.rdatas if len(rdata) == 4]
        if self.rtype == TYPE_AAAA:
            return [str(ipaddress.IPv6Address(rdata)) for rdata in self.rdatas if len(rdata) == 16]
        return []

    def soa_minimum(self) -> int:
        """The MINIMUM field of a SOA record: the negative-caching TTL (RFC 2308 §4)."""
        return struct.unpack(">I", self.rdatas[0][-4:])[0]

    def negative_ttl(self) -> int:
        """How long a negative answer proven by this SOA may be cached (RFC 2308 §5)."""
        return min(self.ttl, self.soa_minimum())


def expanded(rrset: RRset) -> bool:
    """Whether an RRSIG over ``rrset`` counts fewer labels than its owner has: a wildcard expansion."""
    labels = _label_count(rrset.name)
    return any(len(sig.rdata) > 3 and sig.rdata[3] < labels for sig in rrset.sigs)


def _label_count(name: bytes) -> int:
    count, pos = 0, 0
    while name[pos]:
        count += 1
        pos += name[pos] + 1
    return count - (1 if name[:2] == b"\x01*" else 0)


def sig_covers(sig: Record) -> int:
    """The type an RRSIG record covers (its first two data bytes)."""
    return struct.unpack_from(">H", sig.rdata)[0] if len(sig.rdata) >= 2 else 0


def group(records: tuple[Record, ...] | list[Record]) -> list[RRset]:
    """Gather records into RRsets in order of first appearance; attach each RRSIG to the set it covers.

    Duplicate records are dropped. RRSIGs whose covered set is absent form an RRSIG set of their own (the
    answer to a query for type RRSIG).
    """
    order: list[tuple[bytes, int, int]] = []
    rdatas: dict[tuple[bytes, int, int], list[bytes]] = {}
    ttls: dict[tuple[bytes, int, int], int] = {}
    sigs: dict[tuple[bytes, int, int], list[Record]] = {}
    for record in records:
        if record.rtype == TYPE_RRSIG:
            sigs.setdefault((record.name, sig_covers(record), record.rclass), []).append(record)
            continue
        key = (record.name, record.rtype, record.rclass)
        if key not in rdatas:
            order.append(key)
            rdatas[key] = []
            ttls[key] = _MAX_TTL
        if record.rdata not in rdatas[key]:
            rdatas[key].append(record.rdata)
        ttls[key] = min(ttls[key], record.ttl)
    result = [
        RRset(key[0], key[1], key[2], ttls[key], tuple(rdatas[key]), _unique(sigs.pop(key, [])))
        for key in order
    ]
    for (name, _covered, rclass), orphans in sigs.items():
        result.append(
            RRset(name, TYPE_RRSIG, rclass, min(sig.ttl for sig in orphans), tuple(s.rdata for s in orphans))
        )
    return result


def _unique(records: list[Record]) -> tuple[Record, ...]:
    seen: set[bytes] = set()
    out = []
    for record in records:
        if record.rdata not in seen:
            seen.add(record.rdata)
            out.append(record)
    return tuple(out)


def synthesized_cname(owner: bytes, target: bytes, rclass: int, ttl: int) -> RRset:
    """The CNAME a DNAME implies for ``owner`` (RFC 6672 §3.4: its TTL is the DNAME's)."""
    return RRset(owner, 5, rclass, ttl, (target,))
