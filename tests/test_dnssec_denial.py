"""NSEC denial proofs on records made here (their signatures are checked elsewhere: these functions take
records already verified)."""

from __future__ import annotations

import dns.name
import dns.rrset

from blockdns.resolve.dnssec import denial

ZONE = dns.name.from_text("example.")
APEX_NSEC = dns.rrset.from_text("example.", 300, "IN", "NSEC", "a.example. SOA NS RRSIG NSEC DNSKEY")


def nxdomain(qname: str, *nsecs: tuple[str, str]) -> denial.Proof:
    rrsets = [APEX_NSEC] + [dns.rrset.from_text(o, 300, "IN", "NSEC", f"{n} A RRSIG NSEC") for o, n in nsecs]
    return denial.nsec_nxdomain(rrsets, dns.name.from_text(qname), ZONE)


def test_an_nsec_covering_the_name_and_its_wildcard_proves_nxdomain() -> None:
    assert nxdomain("b.example.", ("a.example.", "c.example.")).proven


def test_an_nsec_whose_next_name_is_below_the_name_does_not_prove_nxdomain() -> None:
    # b.example. has a descendant (x.b.example.): it is an empty non-terminal, so it exists.
    proof = nxdomain("b.example.", ("a.example.", "x.b.example."))
    assert not proof.proven and "empty non-terminal" in proof.reason


def test_the_same_nsec_proves_nodata_for_the_empty_non_terminal() -> None:
    rrsets = [APEX_NSEC, dns.rrset.from_text("a.example.", 300, "IN", "NSEC", "x.b.example. A RRSIG NSEC")]
    assert denial.nsec_nodata(rrsets, dns.name.from_text("b.example."), 1, ZONE).proven
