"""DNSSEC validation (RFC 4033-4035, 5155, 6840), on top of dnspython's ``dns.dnssec`` for the cryptography.

    records     the resolver's wire RRsets as dnspython objects; NSEC/NSEC3 type bitmaps
    work        bounds on one query's validation work (KeyTrap, CVE-2023-50387 / -50868), the verdicts
    signatures  RRSIG checks against a DNSKEY set; DNSKEY sets against DS records or trust anchors
    denial      NSEC and NSEC3 proofs: NXDOMAIN, NODATA, wildcard answers, insecure delegations
    validator   the chain of trust from the anchors down to an answer, with its memos

See docs/dnssec.md.
"""
