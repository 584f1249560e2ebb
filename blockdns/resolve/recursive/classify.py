"""What a reply from a zone's server means, with everything outside that zone thrown away first.

This is the poisoning defence (Unbound calls it scrubbing). A server is asked only because it serves
``zone``, so only records at or below ``zone`` are believed:

* answer and authority records must be within ``zone`` (in bailiwick);
* a referral must be to a zone strictly below ``zone`` and at or above the name being resolved;
* glue is kept only for the referral's own NS names, and only when those names are inside the zone of the
  server that sent it (RFC 8499's "in-bailiwick", Unbound's ``harden-glue``): the root may give addresses
  for ``a.gtld-servers.net`` with its referral to ``com.``, but a ``com.`` server cannot plant an address
  for a name under ``net.``;
* a negative answer's SOA must belong to ``zone`` or below and sit at or above the name denied.

Everything else in the reply is ignored, never cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from blockdns import dnsname
from blockdns.resolve.recursive.message import Message
from blockdns.resolve.recursive.rrset import TYPE_RRSIG, RRset, expanded, group, synthesized_cname
from blockdns.wire import (
    NOERROR,
    NXDOMAIN,
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    TYPE_CNAME,
    TYPE_DNAME,
    TYPE_NS,
    TYPE_SOA,
)

TYPE_DS = 43
TYPE_NSEC = 47
TYPE_NSEC3 = 50
_PROOF_TYPES = (TYPE_NSEC, TYPE_NSEC3, TYPE_RRSIG)
# A chain inside one reply longer than this is cut; the resolver's own chain limit then decides.
_MAX_CHAIN_IN_REPLY = 16


@dataclass(frozen=True, slots=True)
class Question:
    """What was asked of the zone's server, and what is being resolved."""

    zone: bytes  # the zone whose servers were asked
    qname: bytes  # the name asked (a minimised ancestor of ``target``, or ``target`` itself)
    qtype: int
    qclass: int
    target: bytes  # the full name being resolved (after any CNAME/DNAME followed so far)

    @property
    def minimised(self) -> bool:
        return self.qname != self.target


@dataclass(frozen=True, slots=True)
class Answer:
    """Records for the question: ``chain`` holds CNAME/DNAME sets (synthesized CNAMEs flagged in
    ``synthesized``), ``final`` the sets of the asked type at the end of the chain. When the chain leaves
    the zone, ``final`` is empty and ``next_name`` is where resolution goes on."""

    chain: tuple[RRset, ...]
    final: tuple[RRset, ...]
    next_name: bytes | None
    synthesized: frozenset[int] = frozenset()  # indexes in ``chain`` of CNAMEs built from a DNAME
    glue: tuple[RRset, ...] = ()  # addresses of the NS names in an NS answer, within the zone
    redirections: int = 0  # CNAMEs and DNAMEs followed (a DNAME and its CNAME count once)


@dataclass(frozen=True, slots=True)
class Negative:
    """NXDOMAIN or NODATA for ``name`` (the end of ``chain``, or the name asked)."""

    rcode: int
    name: bytes
    soa: RRset | None
    proof: tuple[RRset, ...] = ()  # NSEC/NSEC3 sets (with their RRSIGs) for a DNSSEC-aware client
    chain: tuple[RRset, ...] = ()
    synthesized: frozenset[int] = frozenset()
    redirections: int = 0


@dataclass(frozen=True, slots=True)
class Referral:
    zone: bytes
    ns: RRset
    glue: tuple[RRset, ...] = field(default=())
    # The child's DS set as the parent (its owner) signs it, sent with the referral to a DO query (RFC 4035
    # §3.1.4): cached, it spares the validator a DS query per zone cut.
    ds: RRset | None = None


@dataclass(frozen=True, slots=True)
class Lame:
    """The server does not serve the zone (upward or sideways referral, empty non-authoritative reply)."""

    reason: str


@dataclass(frozen=True, slots=True)
class ErrorRcode:
    rcode: int


Classified = Answer | Negative | Referral | Lame | ErrorRcode


def classify(message: Message, question: Question) -> Classified:
    if message.rcode not in (NOERROR, NXDOMAIN):
        return ErrorRcode(message.rcode)
    zone = question.zone
    answer = [rrset for rrset in group(message.answer) if _fits(rrset, zone, question.qclass)]
    authority = [rrset for rrset in group(message.authority) if _fits(rrset, zone, question.qclass)]

    chain, final, end, synthesized, redirections = _follow(answer, question)
    if any(expanded(rrset) for rrset in (*chain, *final)):
        wildcard_proof = tuple(rrset for rrset in authority if rrset.rtype in (TYPE_NSEC, TYPE_NSEC3))
        chain = [replace(rrset, proof=wildcard_proof) if expanded(rrset) else rrset for rrset in chain]
        final = [replace(rrset, proof=wildcard_proof) if expanded(rrset) else rrset for rrset in final]
    if final:
        glue = _glue(final[0], message, zone) if question.qtype == TYPE_NS else ()
        return Answer(tuple(chain), tuple(final), None, synthesized, glue, redirections)

    soa = _soa_for(authority, zone, end)
    proof = tuple(rrset for rrset in authority if rrset.rtype in _PROOF_TYPES)
    leaves_zone = not dnsname.is_subdomain(end, zone)
    if chain and (leaves_zone or (soa is None and message.rcode == NOERROR)):
        # The chain leads somewhere this reply says nothing about: resolve the rest from there.
        return Answer(tuple(chain), (), end, synthesized, (), redirections)
    if message.rcode == NXDOMAIN:
        if not dnsname.is_strict_subdomain(end, zone):
            return Lame(f"NXDOMAIN for {dnsname.to_text(end)}, which is not below the zone asked")
        return Negative(NXDOMAIN, end, soa, proof, tuple(chain), synthesized, redirections)
    if not chain and soa is None:
        referral = _referral(authority, message, question)
        if isinstance(referral, Referral) or (referral is not None and not message.authoritative):
            return referral
    if soa is not None or message.authoritative:
        return Negative(NOERROR, end, soa, proof, tuple(chain), synthesized, redirections)
    return Lame("neither an answer, a referral below the zone, nor an authoritative negative answer")


def _fits(rrset: RRset, zone: bytes, qclass: int) -> bool:
    return rrset.rclass == qclass and dnsname.is_subdomain(rrset.name, zone)


def _follow(
    answer: list[RRset], question: Question
) -> tuple[list[RRset], list[RRset], bytes, frozenset[int], int]:
    """Walk the answer section from the name asked through CNAMEs and DNAMEs; return the chain, the sets
    of the asked type at its end, the name it ends at, the indexes of synthesized CNAMEs and the number of
    redirections followed."""
    by_key = {(rrset.name, rrset.rtype): rrset for rrset in answer}
    dnames = [rrset for rrset in answer if rrset.rtype == TYPE_DNAME]
    name = question.qname
    qtype = question.qtype
    chain: list[RRset] = []
    synthesized: set[int] = set()
    seen = {name}
    redirections = 0
    for _ in range(_MAX_CHAIN_IN_REPLY):
        if qtype == TYPE_ANY:
            final = [rrset for rrset in answer if rrset.name == name and rrset.rtype != TYPE_RRSIG]
        else:
            exact = by_key.get((name, qtype))
            final = [exact] if exact is not None else []
        if final:
            return chain, final, name, frozenset(synthesized), redirections
        # A DNAME above the name comes first: the CNAME a server sends with it is only its synthesis, and
        # RFC 6672 §3.4 has the resolver make its own (a name under a DNAME cannot hold a real CNAME).
        dname = _dname_above(dnames, name) if qtype != TYPE_DNAME else None
        cname = by_key.get((name, TYPE_CNAME)) if qtype != TYPE_CNAME else None
        if dname is not None:
            new_name = dnsname.replace_suffix(name, dname.name, dname.target())
            if new_name is None:
                break
            chain.append(dname)
            synthesized.add(len(chain))
            chain.append(synthesized_cname(name, new_name, dname.rclass, dname.ttl))
            name = new_name
        elif cname is not None:
            chain.append(cname)
            name = cname.target()
        else:
            break
        redirections += 1
        if name in seen:
            break  # a loop inside one reply: the resolver's loop check reports it
        seen.add(name)
    return chain, [], name, frozenset(synthesized), redirections


def _dname_above(dnames: list[RRset], name: bytes) -> RRset | None:
    """The DNAME whose owner is the closest strict ancestor of ``name``."""
    best = None
    for dname in dnames:
        if dnsname.is_strict_subdomain(name, dname.name) and (
            best is None or dnsname.label_count(dname.name) > dnsname.label_count(best.name)
        ):
            best = dname
    return best


def _soa_for(authority: list[RRset], zone: bytes, name: bytes) -> RRset | None:
    for rrset in authority:
        if rrset.rtype == TYPE_SOA and rrset.rdatas and dnsname.is_subdomain(name, rrset.name):
            return rrset
    return None


def _referral(authority: list[RRset], message: Message, question: Question) -> Referral | Lame | None:
    best: RRset | None = None
    for rrset in authority:
        if rrset.rtype != TYPE_NS or not rrset.rdatas:
            continue
        if not dnsname.is_strict_subdomain(rrset.name, question.zone):
            continue  # the zone's own NS set, or an upward referral: never a way down
        if not dnsname.is_subdomain(question.target, rrset.name):
            continue  # a delegation that has nothing to do with the name being resolved
        if question.qtype == TYPE_DS and rrset.name == question.target and not question.minimised:
            continue  # DS lives in the parent: a referral to the child cannot answer it
        if best is None or dnsname.label_count(rrset.name) > dnsname.label_count(best.name):
            best = rrset
    if best is None:
        if any(rrset.rtype == TYPE_NS for rrset in group(message.authority)):
            return Lame("referral to a zone that is not below the zone asked")
        return None
    ds = next((rrset for rrset in authority if rrset.rtype == TYPE_DS and rrset.name == best.name), None)
    return Referral(best.name, best, _glue(best, message, question.zone), ds if ds and ds.sigs else None)


def _glue(ns: RRset, message: Message, zone: bytes) -> tuple[RRset, ...]:
    """A and AAAA sets from the additional section for the NS names of ``ns`` that lie inside ``zone``, the
    zone of the server that sent them."""
    wanted = {target for target in ns.targets() if dnsname.is_subdomain(target, zone)}
    return tuple(
        rrset
        for rrset in group(message.additional)
        if rrset.rtype in (TYPE_A, TYPE_AAAA) and rrset.rclass == ns.rclass and rrset.name in wanted
    )
