"""The chain of trust, from the trust anchors down to an answer (RFC 4035 §5).

A signed RRset names its signer; the signer's DNSKEY set is trusted when a DS set in its parent, itself
signed and trusted, matches one of its keys, and so on up to a trust anchor (:meth:`Validator._keys`, which
walks up by signer names). Unsigned data is insecure only when a signed parent proves a delegation on its
way down has no DS (:meth:`Validator._unsigned`, which walks down from the anchor one label at a time, asking
DS, like a validator that did not follow the referrals itself). Negative answers are proven with NSEC or
NSEC3 (:mod:`.denial`).

The DS and DNSKEY lookups go through the recursive resolver (its cache and its coalescing of identical
lookups). What they prove is memoised per zone: secure keys and delegations for their TTL (at most an
hour), bogus ones for :data:`BOGUS_TTL`, so a broken zone costs one validation a minute, not one per query.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.DS import DS

from blockdns import dnsname
from blockdns.lru import ExpiringLRU
from blockdns.resolve.dnssec import denial
from blockdns.resolve.dnssec.records import (
    TYPE_DNSKEY,
    TYPE_DS,
    TYPE_NSEC,
    TYPE_NSEC3,
    signer_of,
    to_name,
    to_rrset,
    to_wire_name,
    type_name,
)
from blockdns.resolve.dnssec.signatures import keys_from_anchors, keys_from_ds, supported_ds, verify
from blockdns.resolve.dnssec.work import (
    EDE_DNSKEY_MISSING,
    EDE_DNSSEC_BOGUS,
    EDE_NSEC_MISSING,
    EDE_RRSIGS_MISSING,
    EDE_UNSUPPORTED_NSEC3_ITERATIONS,
    SECURE,
    Limits,
    Verdict,
    Work,
    WorkExceeded,
    bogus,
    insecure,
    worst,
)
from blockdns.resolve.recursive.machine import Result
from blockdns.resolve.recursive.rrset import RRset, expanded
from blockdns.resolve.upstream import Security
from blockdns.trustanchors import TrustAnchor
from blockdns.wire import NOERROR, NXDOMAIN, TYPE_ANY, TYPE_CNAME, TYPE_DNAME

BOGUS_TTL = 60  # how long a bogus key set or delegation is held before it is tried again
MAX_MEMO_TTL = 3600
MEMO_ENTRIES = 20_000

Fetch = Callable[[bytes, int], Awaitable[Result]]

UNVALIDATED = Verdict(Security.INDETERMINATE)


@dataclass(frozen=True, slots=True)
class _Keys:
    verdict: Verdict
    keys: tuple[DNSKEY, ...] = ()


@dataclass(frozen=True, slots=True)
class _Delegation:
    """What a DS lookup for a name proved: a secure cut (with its usable DS), an insecure one, no cut."""

    verdict: Verdict  # SECURE: the answer or the denial verified; INSECURE / BOGUS: why not
    ds: tuple[DS, ...] = ()  # a secure cut: the DS records with supported algorithms
    cut: bool = False  # a delegation exists at the name
    exists: bool = True  # False: the name is proven not to exist


_Proven = TypeVar("_Proven", "_Keys", "_Delegation")


class Validator:
    def __init__(
        self,
        fetch: Fetch,
        anchors: list[TrustAnchor],
        negative_anchors: list[str] | tuple[str, ...] = (),
        *,
        limits: Limits | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.fetch = fetch
        self.anchors: dict[bytes, list[TrustAnchor]] = {}
        for anchor in anchors:
            self.anchors.setdefault(to_wire_name(anchor.zone), []).append(anchor)
        self.negative_anchors = frozenset(dnsname.from_text(name) for name in negative_anchors)
        self.limits = limits or Limits()
        self.wall_clock = wall_clock
        self._keys_memo: ExpiringLRU[bytes, _Keys] = ExpiringLRU(MEMO_ENTRIES)
        self._delegations: ExpiringLRU[bytes, _Delegation] = ExpiringLRU(MEMO_ENTRIES)
        self._keys_pending: dict[bytes, asyncio.Future[_Keys | None]] = {}
        self._delegations_pending: dict[bytes, asyncio.Future[_Delegation | None]] = {}

    # ------------------------------------------------------------------------------------- answers

    async def validate(self, result: Result) -> Verdict:
        """The security of a resolution's result; never raises for bad data (bogus is a verdict).
        UpstreamError from a DS/DNSKEY lookup that could not be made passes through."""
        work = Work(self.limits)
        try:
            return await self._validate(result, work)
        except WorkExceeded as err:
            return bogus(f"validation stopped: {err}", EDE_DNSSEC_BOGUS)

    async def _validate(self, result: Result, work: Work) -> Verdict:
        names = [result.qname] + [rrset.target() for rrset in result.answer if rrset.rtype == TYPE_CNAME]
        if any(self._under_negative_anchor(name) for name in names):
            return Verdict(Security.INDETERMINATE, "negative trust anchor")
        if self._anchor_zone(result.qname) is None:
            return UNVALIDATED
        verdicts: list[Verdict] = []
        previous: RRset | None = None
        for rrset in result.answer:
            if _synthesized(rrset, previous):
                previous = rrset
                continue  # made by the resolver from the DNAME before it, which is validated
            previous = rrset
            verdict = await self._rrset(rrset, work)
            if verdict.bogus:
                return verdict
            verdicts.append(verdict)
        end = names[-1]
        has_final = any(rrset.rtype == result.qtype for rrset in result.answer) or result.qtype == TYPE_ANY
        if result.rcode == NXDOMAIN or (result.rcode == NOERROR and not has_final):
            verdict = await self._denial(end, result.qtype, result.rcode, result.authority, work)
            verdicts.append(verdict)
        return worst(verdicts)

    async def _rrset(self, rrset: RRset, work: Work) -> Verdict:
        what = f"{dnsname.to_text(rrset.name)} {type_name(rrset.rtype)}"
        if not rrset.sigs:
            return await self._unsigned(rrset.name, work, f"no RRSIG over {what}", include_self=True)
        signer = self._signer(rrset)
        if signer is None:
            return bogus(f"no RRSIG over {what} by a zone above it", EDE_RRSIGS_MISSING)
        keys = await self._keys(signer, work)
        if not keys.verdict.secure:
            return keys.verdict
        verdict = verify(rrset, keys.keys, to_name(signer), work, self.wall_clock())
        if verdict.secure and expanded(rrset):
            return worst([verdict, self._wildcard(rrset, signer, keys, work)])
        return verdict

    def _signer(self, rrset: RRset) -> bytes | None:
        """The zone that signed ``rrset``: the deepest RRSIG signer at or above its owner (strictly above
        for a DS set, which the parent signs) and at or below its trust anchor."""
        anchor = self._anchor_zone(rrset.name)
        best: bytes | None = None
        for sig in rrset.sigs:
            signer = signer_of(sig)
            if signer is None or anchor is None or not dnsname.is_subdomain(signer, anchor):
                continue
            if not dnsname.is_subdomain(rrset.name, signer):
                continue
            if rrset.rtype == TYPE_DS and signer == rrset.name:
                continue
            if best is None or dnsname.label_count(signer) > dnsname.label_count(best):
                best = signer
        return best

    def _wildcard(self, rrset: RRset, signer: bytes, keys: _Keys, work: Work) -> Verdict:
        """A wildcard expansion is secure when signed NSEC/NSEC3 records of the same zone prove that the
        name asked does not exist itself (RFC 4035 §5.3.4, RFC 5155 §8.8)."""
        what = f"{dnsname.to_text(rrset.name)} (wildcard)"
        origin = to_name(signer)
        proofs = []
        checked: list[Verdict] = []
        for proof in rrset.proof:
            if self._signer(proof) != signer:
                continue
            verdict = verify(proof, keys.keys, origin, work, self.wall_clock())
            if not verdict.secure:
                return bogus(f"{what}: {verdict.reason}", verdict.ede or EDE_DNSSEC_BOGUS)
            proofs.append(to_rrset(proof))
            checked.append(verdict)
        if not proofs:
            return bogus(
                f"{what}: no signed NSEC/NSEC3 proves the name asked does not exist", EDE_NSEC_MISSING
            )
        labels = min(
            count
            for count in (_labels(sig) for sig in rrset.sigs if signer_of(sig) == signer)
            if count is not None
        )
        qname = to_name(rrset.name)
        encloser = qname.split(labels + 1)[1]
        if any(proof.rdtype == TYPE_NSEC3 for proof in proofs):
            outcome = denial.nsec3_wildcard(proofs, qname, encloser, origin, work)
        else:
            outcome = denial.nsec_wildcard(proofs, qname)
        return worst([*checked, self._from_proof(outcome, what)])

    # --------------------------------------------------------------------------------- negative answers

    async def _denial(
        self, name: bytes, qtype: int, rcode: int, authority: tuple[RRset, ...], work: Work
    ) -> Verdict:
        what = f"{dnsname.to_text(name)} {type_name(qtype)}"
        proofs = [rrset for rrset in authority if rrset.rtype in (TYPE_NSEC, TYPE_NSEC3)]
        signed = [rrset for rrset in proofs if rrset.sigs]
        if not signed:
            reason = f"no signed NSEC/NSEC3 proves the denial of {what}"
            verdict = await self._unsigned(name, work, reason, include_self=True)
            if verdict.bogus and verdict.ede == EDE_RRSIGS_MISSING and not proofs:
                return bogus(reason, EDE_NSEC_MISSING)
            return verdict
        zone = self._signer(signed[0])
        if zone is None or not dnsname.is_subdomain(name, zone):
            return bogus(f"the NSEC records denying {what} are not signed by a zone above it")
        verified = []
        checked: list[Verdict] = []
        for rrset in signed:
            if self._signer(rrset) != zone:
                continue
            verdict = await self._rrset(rrset, work)
            if not verdict.secure:
                return verdict
            verified.append(to_rrset(rrset))
            checked.append(verdict)
        qname = to_name(name)
        origin = to_name(zone)
        nsec3 = any(rrset.rdtype == TYPE_NSEC3 for rrset in verified)
        if rcode == NXDOMAIN:
            outcome = (
                denial.nsec3_nxdomain(verified, qname, origin, work)
                if nsec3
                else denial.nsec_nxdomain(verified, qname, origin)
            )
        elif nsec3:
            outcome = denial.nsec3_nodata(verified, qname, qtype, origin, work)
        else:
            outcome = denial.nsec_nodata(verified, qname, qtype, origin)
        return worst([*checked, self._from_proof(outcome, what)])

    @staticmethod
    def _from_proof(proof: denial.Proof, what: str) -> Verdict:
        if proof.outcome is denial.Outcome.PROVEN:
            return SECURE
        if proof.outcome is denial.Outcome.OPT_OUT:
            return insecure(proof.reason)
        if proof.outcome is denial.Outcome.ITERATIONS:
            return insecure(proof.reason, EDE_UNSUPPORTED_NSEC3_ITERATIONS)
        return bogus(f"{what}: {proof.reason}", EDE_DNSSEC_BOGUS)

    # ----------------------------------------------------------------------------- unsigned data

    async def _unsigned(self, name: bytes, work: Work, reason: str, *, include_self: bool) -> Verdict:
        """Unsigned data at ``name`` is insecure when a delegation between its trust anchor and it is
        proven unsigned; otherwise it should have been signed: bogus, EDE 10."""
        anchor = self._anchor_zone(name)
        if anchor is None:
            return UNVALIDATED
        last = dnsname.label_count(name) if include_self else dnsname.label_count(name) - 1
        for count in range(dnsname.label_count(anchor) + 1, last + 1):
            step = dnsname.ancestor(name, count)
            delegation = await self._delegation(step, work)
            if delegation.verdict.bogus and delegation.verdict.ede in (EDE_NSEC_MISSING, EDE_RRSIGS_MISSING):
                # Below a signed delegation the DS lookup too came back unsigned: the data's own missing
                # RRSIGs are the telling reason.
                return bogus(f"{reason} ({delegation.verdict.reason})", EDE_RRSIGS_MISSING)
            if not delegation.verdict.secure:
                return delegation.verdict
            if not delegation.exists:
                break
            if delegation.cut and not delegation.ds:
                return insecure(f"{dnsname.to_text(step)} is an unsigned delegation")
        return bogus(reason, EDE_RRSIGS_MISSING)

    # ------------------------------------------------------------------------------ keys and DS

    async def _keys(self, zone: bytes, work: Work) -> _Keys:
        return await self._memoised(self._keys_memo, self._keys_pending, zone, work, self._find_keys)

    async def _find_keys(self, zone: bytes, work: Work) -> tuple[_Keys, int]:
        anchors = self.anchors.get(zone)
        ds: tuple[DS, ...] = ()
        ttl = MAX_MEMO_TTL
        if anchors is None:
            delegation = await self._delegation(zone, work)
            if not delegation.verdict.secure:
                return _Keys(delegation.verdict), ttl
            if not delegation.cut or not delegation.exists:
                return _Keys(bogus(f"{dnsname.to_text(zone)} signs data but is not a zone")), ttl
            if not delegation.ds:
                return _Keys(insecure(f"{dnsname.to_text(zone)} is an unsigned delegation")), ttl
            ds = delegation.ds
        work.fetch()
        result = await self.fetch(zone, TYPE_DNSKEY)
        dnskeys = next((r for r in result.answer if r.rtype == TYPE_DNSKEY and r.name == zone), None)
        if dnskeys is None:
            return _Keys(bogus(f"{dnsname.to_text(zone)} has no DNSKEY records", EDE_DNSKEY_MISSING)), ttl
        origin = to_name(zone)
        now = self.wall_clock()
        if anchors is not None:
            verdict, keys = keys_from_anchors(dnskeys, anchors, origin, work, now)
        else:
            verdict, keys = keys_from_ds(dnskeys, ds, origin, work, now)
        return _Keys(verdict, tuple(keys)), min(dnskeys.ttl, ttl)

    async def _delegation(self, name: bytes, work: Work) -> _Delegation:
        return await self._memoised(
            self._delegations, self._delegations_pending, name, work, self._find_delegation
        )

    @staticmethod
    async def _memoised(
        memo: ExpiringLRU[bytes, _Proven],
        pending: dict[bytes, asyncio.Future[_Proven | None]],
        name: bytes,
        work: Work,
        find: Callable[[bytes, Work], Awaitable[tuple[_Proven, int]]],
    ) -> _Proven:
        """What ``find`` proves for ``name``: from the memo, from an identical proof in flight (concurrent
        cold questions then pay for one set of signature checks, not one each), or found now. Proofs only
        ever wait on proofs for shorter names (or, for a zone's keys, on its own delegation), so waiting
        cannot go round in a circle. A proof that failed (a lookup error, its query's work bound) leaves each
        waiter to try on its own budget."""
        now = time.monotonic()
        known = memo.get(name, now)
        if known is not None:
            return known
        running = pending.get(name)
        if running is not None:
            shared = await asyncio.shield(running)
            if shared is not None:
                return shared
            return await Validator._memoised(memo, pending, name, work, find)
        future: asyncio.Future[_Proven | None] = asyncio.get_running_loop().create_future()
        pending[name] = future
        try:
            proven, ttl = await find(name, work)
        except BaseException:
            future.set_result(None)
            raise
        finally:
            del pending[name]
        memo.put(name, proven, now + (BOGUS_TTL if proven.verdict.bogus else ttl))
        future.set_result(proven)
        return proven

    async def _find_delegation(self, name: bytes, work: Work) -> tuple[_Delegation, int]:
        work.fetch()
        result = await self.fetch(name, TYPE_DS)
        what = f"{dnsname.to_text(name)} DS"
        ds_rrset = next((r for r in result.answer if r.rtype == TYPE_DS and r.name == name), None)
        ttls = [rrset.ttl for rrset in (*result.answer, *result.authority)]
        ttl = min([MAX_MEMO_TTL, *ttls])
        if ds_rrset is not None:
            if not ds_rrset.sigs:
                verdict = await self._unsigned(name, work, f"no RRSIG over {what}", include_self=False)
                return _Delegation(verdict, cut=True), ttl
            verdict = await self._rrset(ds_rrset, work)
            if not verdict.secure:
                return _Delegation(verdict, cut=True), ttl
            records = tuple(rdata for rdata in to_rrset(ds_rrset) if isinstance(rdata, DS))
            usable = tuple(supported_ds(records))
            if not usable:
                reason = f"the DS records of {dnsname.to_text(name)} use only unsupported algorithms"
                return _Delegation(insecure(reason), cut=True), ttl
            return _Delegation(SECURE, usable, cut=True), ttl
        proofs = [
            rrset for rrset in result.authority if rrset.rtype in (TYPE_NSEC, TYPE_NSEC3) and rrset.sigs
        ]
        if not proofs:
            verdict = await self._unsigned(
                name, work, f"no signed NSEC/NSEC3 denies {what}", include_self=False
            )
            if verdict.bogus:
                return _Delegation(bogus(f"no signed NSEC/NSEC3 denies {what}", EDE_NSEC_MISSING)), ttl
            return _Delegation(verdict, cut=True), ttl
        zone = self._signer(proofs[0])
        if zone is None or not dnsname.is_strict_subdomain(name, zone):
            return _Delegation(bogus(f"the denial of {what} is not signed by its parent")), ttl
        verified = []
        for rrset in proofs:
            if self._signer(rrset) != zone:
                continue
            verdict = await self._rrset(rrset, work)
            if not verdict.secure:
                return _Delegation(verdict, cut=True), ttl
            verified.append(to_rrset(rrset))
        qname, origin = to_name(name), to_name(zone)
        nsec3 = any(rrset.rdtype == TYPE_NSEC3 for rrset in verified)
        if result.rcode == NXDOMAIN:
            proof = (
                denial.nsec3_nxdomain(verified, qname, origin, work)
                if nsec3
                else denial.nsec_nxdomain(verified, qname, origin)
            )
            if proof.proven:
                return _Delegation(SECURE, exists=False), ttl
        elif nsec3:
            proof = denial.nsec3_nodata(verified, qname, TYPE_DS, origin, work)
        else:
            proof = denial.nsec_nodata(verified, qname, TYPE_DS, origin)
        if proof.outcome is denial.Outcome.PROVEN:
            return _Delegation(SECURE, cut=proof.cut, exists=proof.exists), ttl
        return _Delegation(self._from_proof(proof, what), cut=True), ttl

    # ----------------------------------------------------------------------------------- anchors

    def _anchor_zone(self, name: bytes) -> bytes | None:
        for candidate in dnsname.ancestors(name):
            if candidate in self.anchors:
                return candidate
        return None

    def _under_negative_anchor(self, name: bytes) -> bool:
        return bool(self.negative_anchors) and any(
            candidate in self.negative_anchors for candidate in dnsname.ancestors(name)
        )


def _labels(sig: object) -> int | None:
    rdata = getattr(sig, "rdata", b"")
    return rdata[3] if len(rdata) > 3 else None


def _synthesized(rrset: RRset, previous: RRset | None) -> bool:
    return (
        rrset.rtype == TYPE_CNAME
        and not rrset.sigs
        and previous is not None
        and previous.rtype == TYPE_DNAME
        and dnsname.is_strict_subdomain(rrset.name, previous.name)
    )
