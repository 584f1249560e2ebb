"""The recursive resolver's own memory: RRsets (answers, delegations, glue) and negative answers.

Every RRset carries a trust rank, after Unbound's (``services/cache/rrset.h``, RFC 2181 §5.4.1):

* ``GLUE``: addresses from a referral's additional section. Good enough to reach a server, never an answer.
* ``REFERRAL``: NS sets from a parent's referral. They say where a zone's servers are, and nothing more.
* ``ANSWER``: the answer section of a reply from the zone's own servers. Only these answer clients.

A lower rank never replaces a higher one that is still alive, so a referral cannot overwrite what a zone's
own servers said. Negative answers are kept for the SOA's negative TTL (RFC 2308); an NXDOMAIN also denies
every name below it (RFC 8020). Entries are evicted least recently used first beyond ``max_entries``.
Time is passed in (``now``, from the event loop's clock), so this module never reads a clock itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from blockdns import dnsname
from blockdns.lru import ExpiringLRU
from blockdns.resolve.recursive.rrset import RRset
from blockdns.wire import NXDOMAIN

RANK_GLUE = 1
RANK_REFERRAL = 2
RANK_ANSWER = 3

MAX_TTL = 86_400  # nothing is believed for longer than a day, whatever its TTL says
NEGATIVE_MAX_TTL = 3_600  # RFC 2308 §5 suggests one to three hours at most


@dataclass(frozen=True, slots=True)
class NegativeEntry:
    rcode: int  # NXDOMAIN, or NOERROR for NODATA
    name: bytes  # the name denied (for an RFC 8020 hit, an ancestor of the name asked)
    authority: tuple[RRset, ...]  # the SOA first, then NSEC/NSEC3 proofs; TTLs as stored
    expires: float
    dnssec: bool

    def authority_at(self, now: float) -> tuple[RRset, ...]:
        remaining = _remaining(self.expires, now)
        return tuple(rrset.with_ttl(min(rrset.ttl, remaining)) for rrset in self.authority)


@dataclass(frozen=True, slots=True)
class _RRsetEntry:
    rrset: RRset
    expires: float
    rank: int
    dnssec: bool  # fetched with the DO bit, so its RRSIGs (if any) are here


_Key = tuple  # ("rr", name, type, class) | ("nx", name, class) | ("nodata", name, type, class)


class RecursionCache:
    def __init__(self, max_entries: int) -> None:
        self._entries: ExpiringLRU[_Key, _RRsetEntry | NegativeEntry] = ExpiringLRU(max_entries)
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def evictions(self) -> int:
        return self._entries.evictions

    # ----------------------------------------------------------------------------------------- RRsets

    def put_rrset(self, rrset: RRset, rank: int, now: float, *, dnssec: bool) -> None:
        key = ("rr", rrset.name, rrset.rtype, rrset.rclass)
        stored = self._entries.peek(key)
        old = stored[1] if stored is not None else None
        if isinstance(old, _RRsetEntry) and old.expires > now and old.rank > rank:
            return
        ttl = min(rrset.ttl, MAX_TTL)
        self._store(key, _RRsetEntry(rrset.with_ttl(ttl), now + ttl, rank, dnssec))

    def get_rrset(
        self, name: bytes, rtype: int, rclass: int, now: float, *, min_rank: int, dnssec: bool = False
    ) -> RRset | None:
        """The live RRset of at least ``min_rank`` (fetched with DO when ``dnssec``), its TTL counted down."""
        entry = self._get(("rr", name, rtype, rclass), now)
        if not isinstance(entry, _RRsetEntry) or entry.rank < min_rank or (dnssec and not entry.dnssec):
            self.misses += 1
            return None
        self.hits += 1
        return entry.rrset.with_ttl(_remaining(entry.expires, now))

    # ------------------------------------------------------------------------------- negative answers

    def put_negative(
        self,
        rcode: int,
        name: bytes,
        qtype: int,
        qclass: int,
        authority: tuple[RRset, ...],
        ttl: int,
        now: float,
        *,
        dnssec: bool,
    ) -> None:
        ttl = min(ttl, NEGATIVE_MAX_TTL)
        if ttl <= 0:
            return
        key = ("nx", name, qclass) if rcode == NXDOMAIN else ("nodata", name, qtype, qclass)
        self._store(key, NegativeEntry(rcode, name, authority, now + ttl, dnssec))

    def get_negative(
        self, name: bytes, qtype: int, qclass: int, now: float, *, dnssec: bool = False
    ) -> NegativeEntry | None:
        """A cached NXDOMAIN for ``name`` or any name above it (RFC 8020), else a cached NODATA for
        ``(name, qtype)``."""
        for candidate in dnsname.ancestors(name):
            entry = self._get(("nx", candidate, qclass), now)
            if isinstance(entry, NegativeEntry) and (entry.dnssec or not dnssec):
                self.hits += 1
                return entry
        entry = self._get(("nodata", name, qtype, qclass), now)
        if isinstance(entry, NegativeEntry) and (entry.dnssec or not dnssec):
            self.hits += 1
            return entry
        return None

    # ---------------------------------------------------------------------------------------- storage

    def _store(self, key: _Key, entry: _RRsetEntry | NegativeEntry) -> None:
        self._entries.put(key, entry, entry.expires)

    def _get(self, key: _Key, now: float) -> _RRsetEntry | NegativeEntry | None:
        return self._entries.get(key, now)


def _remaining(expires: float, now: float) -> int:
    return max(0, math.ceil(expires - now - 1e-9)) if expires > now else 0
