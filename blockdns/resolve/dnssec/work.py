"""What validation concluded (:class:`Verdict`), and how much work one query may make it do (:class:`Work`).

The bounds answer the 2024 CPU-exhaustion advisories: KeyTrap (CVE-2023-50387: many DNSKEYs sharing one
key tag, each to be tried against many RRSIGs) and NSEC3 hashing (CVE-2023-50868: many NSEC3 records with
costly parameters). A query that reaches a bound gets SERVFAIL with EDE 6, held for that name like any
bogus answer (60 s), and what was proven bogus on the way (a zone's keys) is held too. The figures are of
the order BIND settled on after the advisories (its ``max-validations-per-fetch`` and
``max-validation-failures-per-fetch``), and far above what a real zone needs: one or two keys per tag, a
handful of signatures and hashes per answer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from blockdns.resolve.upstream import Security
from blockdns.wire import AD, ParsedResponse, ede_option

EDE_DNSSEC_BOGUS = 6
EDE_SIGNATURE_EXPIRED = 7
EDE_SIGNATURE_NOT_YET_VALID = 8
EDE_DNSKEY_MISSING = 9
EDE_RRSIGS_MISSING = 10
EDE_NSEC_MISSING = 12
EDE_UNSUPPORTED_NSEC3_ITERATIONS = 27

# RFC 9276 §3.2: a validator may treat NSEC3 proofs with more iterations than it will compute as insecure
# (EDE 27). Unbound 1.17 uses 150 ("in line with BIND, Knot and PowerDNS", its changelog of May 2021); RFC
# 9276 asks zones for 0. We take 50: more is insecure, EDE 27 (docs/dnssec.md).
MAX_NSEC3_ITERATIONS = 50


@dataclass(frozen=True, slots=True)
class Limits:
    key_candidates: int = 4  # DNSKEYs tried for one RRSIG (same key tag and algorithm)
    signature_checks: int = 32  # cryptographic verifications per query
    failures: int = 8  # failed verifications per query
    nsec3_hashes: int = 64  # NSEC3 hashes computed per query (each at most MAX_NSEC3_ITERATIONS + 1 rounds)
    fetches: int = 24  # DS/DNSKEY lookups one query's validation may start


class WorkExceeded(Exception):
    """A query's validation work passed a bound."""


@dataclass(slots=True)
class Work:
    limits: Limits
    checks: int = 0
    failures: int = 0
    hashes: int = 0
    fetches: int = 0

    def check(self) -> None:
        self.checks += 1
        if self.checks > self.limits.signature_checks:
            raise WorkExceeded(f"more than {self.limits.signature_checks} signature checks")

    def failed(self) -> None:
        self.failures += 1
        if self.failures > self.limits.failures:
            raise WorkExceeded(f"more than {self.limits.failures} failed signature checks")

    def hash(self) -> None:
        self.hashes += 1
        if self.hashes > self.limits.nsec3_hashes:
            raise WorkExceeded(f"more than {self.limits.nsec3_hashes} NSEC3 hashes")

    def fetch(self) -> None:
        self.fetches += 1
        if self.fetches > self.limits.fetches:
            raise WorkExceeded(f"more than {self.limits.fetches} DS/DNSKEY lookups")


@dataclass(frozen=True, slots=True)
class Verdict:
    security: Security
    reason: str = ""
    ede: int | None = None  # bogus: the most specific EDE; insecure: 27 for NSEC3 iterations, else None
    # Secure data: how long it may be kept, in seconds (RFC 4035 §5.3.3: no longer than the RRSIGs' original
    # TTL, nor past their expiration); None: no bound of validation's own.
    ttl: int | None = None

    @property
    def secure(self) -> bool:
        return self.security is Security.SECURE

    @property
    def bogus(self) -> bool:
        return self.security is Security.BOGUS


SECURE = Verdict(Security.SECURE)
_RANK = {Security.BOGUS: 0, Security.INDETERMINATE: 1, Security.INSECURE: 2, Security.SECURE: 3}


def bogus(reason: str, ede: int = EDE_DNSSEC_BOGUS) -> Verdict:
    return Verdict(Security.BOGUS, reason, ede)


def insecure(reason: str, ede: int | None = None) -> Verdict:
    return Verdict(Security.INSECURE, reason, ede)


def worst(verdicts: list[Verdict]) -> Verdict:
    """The verdict of an answer made of parts: bogus beats unvalidated beats insecure beats secure; the
    answer may be kept no longer than its shortest-lived part."""
    result = SECURE
    caps = [verdict.ttl for verdict in verdicts if verdict.ttl is not None]
    for verdict in verdicts:
        if _RANK[verdict.security] < _RANK[result.security]:
            result = verdict
    cap = min(caps) if caps else None
    return result if cap == result.ttl else replace(result, ttl=cap)


def with_verdict(parsed: ParsedResponse, verdict: Verdict) -> ParsedResponse:
    """A validated response as the client gets it: AD when secure (the render step keeps it only for a
    client that set AD or DO), never the upstream's own AD otherwise; an insecure verdict with an EDE of
    its own (27, NSEC3 iterations) carries it."""
    reply = parsed.reply
    if verdict.ttl is not None:  # the records' TTLs and the cache's, within what the signatures allow
        reply = reply.clamped(0, verdict.ttl)
        ttl = verdict.ttl if parsed.ttl is None else min(parsed.ttl, verdict.ttl)
        parsed = replace(parsed, reply=reply, ttl=ttl)
    if verdict.security is Security.SECURE:
        return replace(parsed, reply=replace(reply, flags=reply.flags | AD))
    if reply.flags & AD:
        reply = replace(reply, flags=reply.flags & ~AD)
    if verdict.ede is not None:
        reply = replace(reply, ede=ede_option(verdict.ede, verdict.reason))
    return parsed if reply is parsed.reply else replace(parsed, reply=reply)
