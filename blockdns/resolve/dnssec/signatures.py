"""RRSIG checks (RFC 4035 §5.3) and DNSKEY sets authenticated by DS records or trust anchors (§5.2).

The cryptography is dnspython's (``dns.dnssec.validate_rrsig`` on ``cryptography``). It is called with one
candidate key at a time, so that every verification counts against the query's :class:`~.work.Work`: a
zone cannot make one query try hundreds of keys that share a key tag (KeyTrap).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType

import dns.exception
import dns.name
import dns.rdataset
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.DS import DS
from dns.rdtypes.ANY.RRSIG import RRSIG

from blockdns import dnsname
from blockdns.resolve.dnssec.records import TYPE_DNSKEY, signature, to_rrset, type_name
from blockdns.resolve.dnssec.work import (
    EDE_DNSKEY_MISSING,
    EDE_DNSSEC_BOGUS,
    EDE_RRSIGS_MISSING,
    EDE_SIGNATURE_EXPIRED,
    EDE_SIGNATURE_NOT_YET_VALID,
    Verdict,
    Work,
    bogus,
    insecure,
)
from blockdns.resolve.recursive.rrset import RRset
from blockdns.resolve.upstream import Security
from blockdns.trustanchors import TrustAnchor

# RFC 8624 §3.1 "MUST"/"RECOMMENDED" to validate, and what cryptography implements: RSASHA256,
# RSASHA512, ECDSAP256SHA256, ECDSAP384SHA384, ED25519, ED448. DS digests SHA-256 and SHA-384 (§3.3).
SUPPORTED_ALGORITHMS = frozenset({8, 10, 13, 14, 15, 16})
SUPPORTED_DIGESTS = frozenset({2, 4})
_ZONE_KEY = 0x0100
_REVOKE = 0x0080


def _dnssec() -> ModuleType:
    """``dns.dnssec``, imported when a validator first needs it: it loads ``cryptography``'s OpenSSL
    bindings, about 12 MB of resident memory that a server which does not validate never pays."""
    return importlib.import_module("dns.dnssec")


_DS_CANDIDATES = 256  # keys hashed against one DS (a hash each: cheap, unlike a signature check)


def key_tag(key: DNSKEY) -> int:
    return int(_dnssec().key_id(key))


def supported_ds(ds_set: Sequence[DS]) -> list[DS]:
    return [
        ds for ds in ds_set if ds.algorithm in SUPPORTED_ALGORITHMS and ds.digest_type in SUPPORTED_DIGESTS
    ]


def verify(rrset: RRset, keys: Sequence[DNSKEY], zone: dns.name.Name, work: Work, now: float) -> Verdict:
    """SECURE when an RRSIG made by ``zone`` over ``rrset`` verifies with one of ``keys``; else BOGUS with
    the most specific EDE: 10 no RRSIG by the zone, 7 expired, 8 not yet valid, 9 no key for it, 6 the
    rest."""
    what = f"{dnsname.to_text(rrset.name)} {type_name(rrset.rtype)}"
    sigs = [sig for sig in (signature(record) for record in rrset.sigs) if sig is not None]
    sigs = [sig for sig in sigs if sig.signer == zone and sig.type_covered == rrset.rtype]
    if not sigs:
        return bogus(f"no RRSIG by {zone} over {what}", EDE_RRSIGS_MISSING)
    usable = [sig for sig in sigs if sig.algorithm in SUPPORTED_ALGORITHMS]
    if not usable:
        return bogus(f"{what} is signed only with unsupported algorithms", EDE_DNSSEC_BOGUS)
    data = to_rrset(rrset)
    expired = not_yet = no_key = 0
    for sig in usable:
        if sig.expiration < now:
            expired += 1
            continue
        if sig.inception > now:
            not_yet += 1
            continue
        candidates = _candidates(sig, keys, work)
        if not candidates:
            no_key += 1
            continue
        for key in candidates:
            if _check(data, sig, key, zone, work, now):
                return Verdict(Security.SECURE, ttl=max(0, min(sig.original_ttl, int(sig.expiration - now))))
    if expired and not (not_yet or no_key) and expired == len(usable):
        return bogus(f"the RRSIG over {what} has expired", EDE_SIGNATURE_EXPIRED)
    if not_yet and not_yet + expired == len(usable):
        return bogus(f"the RRSIG over {what} is not yet valid", EDE_SIGNATURE_NOT_YET_VALID)
    if no_key == len(usable):
        return bogus(f"no DNSKEY of {zone} matches the RRSIG over {what}", EDE_DNSKEY_MISSING)
    return bogus(f"the RRSIG over {what} does not verify", EDE_DNSSEC_BOGUS)


def _candidates(sig: RRSIG, keys: Sequence[DNSKEY], work: Work) -> list[DNSKEY]:
    """The keys that could have made ``sig`` (same algorithm and key tag, a zone key, protocol 3, not
    revoked unless it signs the DNSKEY set), at most ``key_candidates`` of them."""
    found = [
        key
        for key in keys
        if key.algorithm == sig.algorithm
        and key.protocol == 3
        and key.flags & _ZONE_KEY
        and (not key.flags & _REVOKE or sig.type_covered == TYPE_DNSKEY)
        and key_tag(key) == sig.key_tag
    ]
    return found[: work.limits.key_candidates]


def _check(
    data: dns.rrset.RRset, sig: RRSIG, key: DNSKEY, zone: dns.name.Name, work: Work, now: float
) -> bool:
    work.check()
    keyset = dns.rdataset.from_rdata_list(0, [key])
    dnssec = _dnssec()
    try:
        dnssec.validate_rrsig(data, sig, {zone: keyset}, now=now, policy=dnssec.allow_all_policy)
    except (dnssec.ValidationFailure, dns.exception.UnsupportedAlgorithm, ValueError):
        work.failed()
        return False
    return True


def keys_from_ds(
    dnskeys: RRset, ds_set: Sequence[DS], zone: dns.name.Name, work: Work, now: float
) -> tuple[Verdict, list[DNSKEY]]:
    """The zone's DNSKEY set, authenticated: a key that a supported DS matches signs it (RFC 4035 §5.2).
    INSECURE when no DS is usable (RFC 6840 §5.2)."""
    usable = supported_ds(ds_set)
    if not usable:
        return insecure(f"the DS records of {zone} use only unsupported algorithms or digests"), []
    keys = [key for key in to_rrset(dnskeys) if isinstance(key, DNSKEY)]
    matched: list[DNSKEY] = []
    dnssec = _dnssec()
    for ds in usable:
        tagged = [key for key in keys if key.algorithm == ds.algorithm and key_tag(key) == ds.key_tag]
        for key in tagged[:_DS_CANDIDATES]:
            try:
                made = dnssec.make_ds(
                    zone, key, ds.digest_type, policy=dnssec.allow_all_policy, validating=True
                )
            except (dnssec.UnsupportedAlgorithm, dns.exception.DNSException, ValueError):
                continue
            if made.digest == ds.digest and key not in matched:
                matched.append(key)
    if not matched:
        return bogus(f"no DNSKEY of {zone} matches its DS records", EDE_DNSKEY_MISSING), []
    verdict = verify(dnskeys, matched, zone, work, now)
    return verdict, keys if verdict.secure else []


def keys_from_anchors(
    dnskeys: RRset, anchors: Sequence[TrustAnchor], zone: dns.name.Name, work: Work, now: float
) -> tuple[Verdict, list[DNSKEY]]:
    """The DNSKEY set of a trust-anchor zone, authenticated by the anchors (DS or DNSKEY)."""
    ds_anchors = [anchor.rdata for anchor in anchors if isinstance(anchor.rdata, DS)]
    key_anchors = [anchor.rdata for anchor in anchors if isinstance(anchor.rdata, DNSKEY)]
    keys = [key for key in to_rrset(dnskeys) if isinstance(key, DNSKEY)]
    trusted = [key for key in keys if key in key_anchors and key.algorithm in SUPPORTED_ALGORITHMS]
    if ds_anchors:
        verdict, _ = keys_from_ds(dnskeys, ds_anchors, zone, work, now)
        if verdict.secure:
            return verdict, keys
        if not trusted:
            if verdict.security.value == "insecure" and any(
                key.algorithm in SUPPORTED_ALGORITHMS for key in key_anchors
            ):
                return bogus(f"no DNSKEY of {zone} matches its trust anchors", EDE_DNSKEY_MISSING), []
            return verdict, []
    if not trusted:
        if key_anchors and not any(key.algorithm in SUPPORTED_ALGORITHMS for key in key_anchors):
            return insecure(f"the trust anchors of {zone} use only unsupported algorithms"), []
        return bogus(f"no DNSKEY of {zone} matches its trust anchors", EDE_DNSKEY_MISSING), []
    verdict = verify(dnskeys, trusted, zone, work, now)
    return verdict, keys if verdict.secure else []
