"""Authenticated denial of existence: what a set of already-verified NSEC (RFC 4035 §5.4, RFC 6840 §4) or
NSEC3 (RFC 5155 §8) records prove about a name.

Every function takes the records of one zone (``zone``, the signer) and returns a :class:`Proof`:

* ``PROVEN`` — the denial holds (for a DS query also whether the name is a delegation: ``cut``);
* ``OPT_OUT`` — an NSEC3 opt-out span covers the name: an unsigned delegation may hide there (insecure);
* ``ITERATIONS`` — NSEC3 iterations above :data:`~.work.MAX_NSEC3_ITERATIONS` (insecure, EDE 27);
* ``FAILED`` — the records prove nothing of the kind (bogus).

Names are dnspython's, whose ordering is DNSSEC's canonical order (RFC 4034 §6.1).
"""

from __future__ import annotations

import base64
import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import dns.name
import dns.rrset
from dns.rdtypes.ANY.NSEC import NSEC
from dns.rdtypes.ANY.NSEC3 import NSEC3

from blockdns.resolve.dnssec.records import has_type
from blockdns.resolve.dnssec.work import MAX_NSEC3_ITERATIONS, Work

TYPE_NS = 2
TYPE_SOA = 6
TYPE_CNAME = 5
TYPE_DS = 43
TYPE_DNAME = 39
_OPT_OUT = 0x01
_SHA1 = 1


class Outcome(enum.Enum):
    PROVEN = "proven"
    OPT_OUT = "opt-out"
    ITERATIONS = "iterations"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Proof:
    outcome: Outcome
    reason: str = ""
    cut: bool = False  # DS NODATA: the name is a delegation (NS without SOA), so the child is unsigned
    exists: bool = True  # DS denial: False when the name itself is proven not to exist

    @property
    def proven(self) -> bool:
        return self.outcome is Outcome.PROVEN


def _failed(reason: str) -> Proof:
    return Proof(Outcome.FAILED, reason)


WILDCARD = b"*"


def wildcard_of(name: dns.name.Name) -> dns.name.Name:
    return dns.name.Name((WILDCARD, *name.labels))


def next_closer(name: dns.name.Name, encloser: dns.name.Name) -> dns.name.Name:
    """The ancestor of ``name`` one label longer than ``encloser``."""
    return name.split(len(encloser) + 1)[1]


# ------------------------------------------------------------------------------------------------- NSEC


def _nsec_records(rrsets: Sequence[dns.rrset.RRset]) -> list[tuple[dns.name.Name, NSEC]]:
    return [(rrset.name, rdata) for rrset in rrsets for rdata in rrset if isinstance(rdata, NSEC)]


def _covers(owner: dns.name.Name, following: dns.name.Name, name: dns.name.Name) -> bool:
    if owner < following:
        return owner < name < following
    return name > owner or name < following  # the zone's last NSEC points back to the apex


def _delegation_nsec(owner: dns.name.Name, rdata: NSEC, name: dns.name.Name) -> bool:
    """An NSEC from a parent's side of a cut (NS without SOA) or at a DNAME says nothing below its owner
    (RFC 6840 §4.1)."""
    if not name.is_subdomain(owner) or name == owner:
        return False
    ns_cut = has_type(rdata.windows, TYPE_NS) and not has_type(rdata.windows, TYPE_SOA)
    return ns_cut or has_type(rdata.windows, TYPE_DNAME)


def _nsec_covering(
    records: list[tuple[dns.name.Name, NSEC]], name: dns.name.Name
) -> tuple[dns.name.Name, NSEC] | None:
    for owner, rdata in records:
        if owner != name and _covers(owner, rdata.next, name) and not _delegation_nsec(owner, rdata, name):
            return owner, rdata
    return None


def _common_labels(a: dns.name.Name, b: dns.name.Name) -> int:
    return a.fullcompare(b)[2]


def nsec_nxdomain(rrsets: Sequence[dns.rrset.RRset], qname: dns.name.Name, zone: dns.name.Name) -> Proof:
    records = _nsec_records(rrsets)
    covering = _nsec_covering(records, qname)
    if covering is None:
        return _failed(f"no NSEC proves that {qname} does not exist")
    owner, rdata = covering
    if rdata.next.is_subdomain(qname):  # names exist below it: an empty non-terminal, which exists
        return _failed(f"{qname} is an empty non-terminal (the NSEC's next name {rdata.next} is below it)")
    labels = max(_common_labels(qname, owner), _common_labels(qname, rdata.next))
    encloser = qname.split(max(labels, len(zone)))[1]
    wildcard = wildcard_of(encloser)
    if any(record_owner == wildcard for record_owner, _ in records):
        return _failed(f"an NSEC shows that {wildcard} exists, so {qname} should have been answered from it")
    if _nsec_covering(records, wildcard) is None:
        return _failed(f"no NSEC proves that {wildcard} does not exist")
    return Proof(Outcome.PROVEN)


def nsec_nodata(
    rrsets: Sequence[dns.rrset.RRset], qname: dns.name.Name, qtype: int, zone: dns.name.Name
) -> Proof:
    records = _nsec_records(rrsets)
    for owner, rdata in records:
        if owner != qname:
            continue
        windows = rdata.windows
        if has_type(windows, qtype) or has_type(windows, TYPE_CNAME):
            return _failed(f"the NSEC at {qname} lists the type denied")
        is_cut = has_type(windows, TYPE_NS) and not has_type(windows, TYPE_SOA)
        if qtype != TYPE_DS and is_cut:
            return _failed(f"the NSEC at {qname} is from the parent side of a delegation")
        if qtype == TYPE_DS and has_type(windows, TYPE_SOA) and qname != dns.name.root:
            return _failed(f"the NSEC at {qname} is from the child zone, not the parent")
        return Proof(Outcome.PROVEN, cut=is_cut)
    covering = _nsec_covering(records, qname)
    if covering is not None:
        owner, rdata = covering
        if rdata.next.is_subdomain(qname):
            return Proof(Outcome.PROVEN)  # an empty non-terminal (RFC 4035 §3.1.3.2)
        labels = max(_common_labels(qname, owner), _common_labels(qname, rdata.next))
        encloser = qname.split(max(labels, len(zone)))[1]
        wildcard = wildcard_of(encloser)
        for record_owner, record in records:
            if record_owner == wildcard:
                if has_type(record.windows, qtype) or has_type(record.windows, TYPE_CNAME):
                    return _failed(f"the wildcard {wildcard} has the type denied")
                return Proof(Outcome.PROVEN)  # wildcard NODATA
        if qtype == TYPE_DS:
            return Proof(Outcome.PROVEN, exists=False)
    return _failed(f"no NSEC proves that {qname} has no {qtype} records")


def nsec_wildcard(rrsets: Sequence[dns.rrset.RRset], qname: dns.name.Name) -> Proof:
    """An answer expanded from a wildcard: an NSEC must prove the name asked does not exist itself."""
    if _nsec_covering(_nsec_records(rrsets), qname) is None:
        return _failed(f"no NSEC proves that {qname} does not exist, as its wildcard answer implies")
    return Proof(Outcome.PROVEN)


# ------------------------------------------------------------------------------------------------ NSEC3


@dataclass(frozen=True, slots=True)
class _Nsec3:
    owner_hash: bytes  # raw hash from the owner's first label
    next_hash: bytes
    rdata: NSEC3


class Nsec3Set:
    """The NSEC3 records of one zone with one parameter set (RFC 5155 §8.2: others are ignored)."""

    def __init__(self, rrsets: Sequence[dns.rrset.RRset], zone: dns.name.Name, work: Work) -> None:
        self.zone = zone
        self.work = work
        self.records: list[_Nsec3] = []
        self.params: tuple[int, int, bytes] | None = None
        for rrset in rrsets:
            if rrset.name.parent() != zone:
                continue
            for rdata in rrset:
                if not isinstance(rdata, NSEC3):
                    continue
                params = (rdata.algorithm, rdata.iterations, rdata.salt)
                if self.params is None:
                    self.params = params
                if params != self.params:
                    continue
                try:
                    owner_hash = base64.b32hexdecode(rrset.name.labels[0].upper())
                except ValueError:
                    continue
                self.records.append(_Nsec3(owner_hash, rdata.next, rdata))
        self._hashes: dict[dns.name.Name, bytes] = {}

    def unusable(self) -> Proof | None:
        """Why these records cannot prove anything securely, or None."""
        if self.params is None:
            return _failed("no NSEC3 records of the zone")
        algorithm, iterations, _ = self.params
        if iterations > MAX_NSEC3_ITERATIONS:
            return Proof(Outcome.ITERATIONS, f"NSEC3 iterations {iterations} above {MAX_NSEC3_ITERATIONS}")
        if algorithm != _SHA1:
            return Proof(Outcome.ITERATIONS, f"unsupported NSEC3 hash algorithm {algorithm}")
        return None

    def hash(self, name: dns.name.Name) -> bytes:
        cached = self._hashes.get(name)
        if cached is not None:
            return cached
        self.work.hash()
        assert self.params is not None
        _, iterations, salt = self.params
        wire = name.canonicalize().to_wire()
        assert wire is not None
        digest = hashlib.sha1(wire + salt).digest()
        for _ in range(iterations):
            digest = hashlib.sha1(digest + salt).digest()
        self._hashes[name] = digest
        return digest

    def matching(self, name: dns.name.Name) -> _Nsec3 | None:
        digest = self.hash(name)
        return next((record for record in self.records if record.owner_hash == digest), None)

    def covering(self, name: dns.name.Name) -> _Nsec3 | None:
        digest = self.hash(name)
        for record in self.records:
            low, high = record.owner_hash, record.next_hash
            if (low < digest < high) if low < high else (digest > low or digest < high):
                return record
        return None

    def closest_encloser(self, qname: dns.name.Name) -> tuple[dns.name.Name, _Nsec3 | None] | None:
        """RFC 5155 §8.3: the closest encloser (the deepest existing ancestor of ``qname``) and the record
        covering the next closer name (None when ``qname`` itself matches); None when there is no proof.

        Searched from the zone down, stopping at the first name without a match (nothing exists below a
        name that does not): the hashes it costs are bounded by the zone's depth, not by how many labels
        a client put in its question."""
        if not qname.is_subdomain(self.zone):
            return None
        encloser = None
        for labels in range(len(self.zone), len(qname) + 1):
            name = qname.split(labels)[1]
            if self.matching(name) is None:
                break
            encloser = name
        if encloser is None:
            return None
        if encloser == qname:
            return encloser, None
        covering = self.covering(next_closer(qname, encloser))
        return (encloser, covering) if covering is not None else None


def nsec3_nxdomain(
    rrsets: Sequence[dns.rrset.RRset], qname: dns.name.Name, zone: dns.name.Name, work: Work
) -> Proof:
    records = Nsec3Set(rrsets, zone, work)
    problem = records.unusable()
    if problem is not None:
        return problem
    found = records.closest_encloser(qname)
    if found is None or found[1] is None:
        return _failed(f"no NSEC3 closest-encloser proof for {qname}")
    encloser, covering = found
    assert covering is not None
    if records.covering(wildcard_of(encloser)) is None:
        return _failed(f"no NSEC3 proves that {wildcard_of(encloser)} does not exist")
    if covering.rdata.flags & _OPT_OUT:
        return Proof(Outcome.OPT_OUT, f"{qname} falls in an NSEC3 opt-out span")
    return Proof(Outcome.PROVEN)


def nsec3_nodata(
    rrsets: Sequence[dns.rrset.RRset], qname: dns.name.Name, qtype: int, zone: dns.name.Name, work: Work
) -> Proof:
    records = Nsec3Set(rrsets, zone, work)
    problem = records.unusable()
    if problem is not None:
        return problem
    match = records.matching(qname)
    if match is not None:
        windows = match.rdata.windows
        if has_type(windows, qtype) or has_type(windows, TYPE_CNAME):
            return _failed(f"the NSEC3 for {qname} lists the type denied")
        is_cut = has_type(windows, TYPE_NS) and not has_type(windows, TYPE_SOA)
        if qtype != TYPE_DS and is_cut:
            return _failed(f"the NSEC3 for {qname} is from the parent side of a delegation")
        return Proof(Outcome.PROVEN, cut=is_cut)
    found = records.closest_encloser(qname)
    if found is None or found[1] is None:
        return _failed(f"no NSEC3 proves that {qname} has no records of the type")
    encloser, covering = found
    assert covering is not None
    if qtype == TYPE_DS:
        if covering.rdata.flags & _OPT_OUT:
            return Proof(Outcome.OPT_OUT, f"{qname} falls in an NSEC3 opt-out span", cut=True)
        return Proof(Outcome.PROVEN, exists=False)
    wildcard = records.matching(wildcard_of(encloser))
    if wildcard is not None and not (
        has_type(wildcard.rdata.windows, qtype) or has_type(wildcard.rdata.windows, TYPE_CNAME)
    ):
        return Proof(Outcome.PROVEN)  # wildcard NODATA (RFC 5155 §8.7)
    return _failed(f"no NSEC3 proves that {qname} has no records of the type")


def nsec3_wildcard(
    rrsets: Sequence[dns.rrset.RRset],
    qname: dns.name.Name,
    encloser: dns.name.Name,
    zone: dns.name.Name,
    work: Work,
) -> Proof:
    """RFC 5155 §8.8: the next closer name of the wildcard's closest encloser must be covered."""
    records = Nsec3Set(rrsets, zone, work)
    problem = records.unusable()
    if problem is not None:
        return problem
    covering = records.covering(next_closer(qname, encloser))
    if covering is None:
        return _failed(f"no NSEC3 proves that {qname} does not exist, as its wildcard answer implies")
    if covering.rdata.flags & _OPT_OUT:  # an unsigned delegation may hide there (Unbound: insecure too)
        return Proof(Outcome.OPT_OUT, f"{qname} falls in an NSEC3 opt-out span")
    return Proof(Outcome.PROVEN)
