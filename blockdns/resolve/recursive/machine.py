"""One iterative resolution as a state machine that does no I/O, like dnspython's ``_Resolution``.

The driver asks :meth:`Resolution.next_action` what to do and gets one of:

* :class:`Ask` — send this question to this server, then call :meth:`Resolution.on_reply` with the reply
  bytes or :meth:`Resolution.on_failure` with the transport's error;
* :class:`NeedAddresses` — the servers with known addresses are used up and this NS name has none: run
  the sub-resolution :meth:`Resolution.address_lookup` gives (or join an identical one in flight) and
  call :meth:`Resolution.on_addresses`;
* :class:`Result` — done.

Failures raise :class:`~blockdns.errors.UpstreamError` with an EDE code from ``next_action``. Time comes in
as ``now`` arguments, so unit tests drive the whole algorithm by feeding it replies.

The algorithm, per name being resolved (the question's name, then each CNAME/DNAME target):

1. Answer from the cache if it can: a cached NXDOMAIN at or above the name (RFC 8020), the RRset, a NODATA,
   or a CNAME/DNAME to follow.
2. Otherwise start at the closest enclosing zone whose NS set is cached (the root hints at worst).
3. Ask that zone's servers — with QNAME minimisation, for one label more than is known (RFC 9156) — and
   follow referrals down, until the zone that holds the name answers. Replies are judged by
   :mod:`.classify`, which drops whatever lies outside the zone asked.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from blockdns import dnsname
from blockdns.errors import UpstreamError, WireError
from blockdns.resolve.recursive.cache import (
    RANK_ANSWER,
    RANK_GLUE,
    RANK_REFERRAL,
    NegativeEntry,
    RecursionCache,
)
from blockdns.resolve.recursive.classify import (
    TYPE_DS,
    Answer,
    ErrorRcode,
    Lame,
    Negative,
    Question,
    Referral,
    classify,
)
from blockdns.resolve.recursive.hints import RootHints
from blockdns.resolve.recursive.limits import Budget, Limits
from blockdns.resolve.recursive.message import parse
from blockdns.resolve.recursive.minimise import MINIMISED_QTYPE, next_label_count
from blockdns.resolve.recursive.rrset import RRset, synthesized_cname
from blockdns.resolve.recursive.servers import ServerAddress, ServerTable
from blockdns.wire import (
    CLASS_IN,
    EDE_NETWORK_ERROR,
    EDE_NO_REACHABLE_AUTHORITY,
    EDE_OTHER,
    FORMERR,
    NOERROR,
    NOTIMP,
    NXDOMAIN,
    REFUSED,
    TYPE_A,
    TYPE_AAAA,
    TYPE_ANY,
    TYPE_CNAME,
    TYPE_DNAME,
    TYPE_NS,
)

MIN_QUERY_TIMEOUT = 0.05  # below this, a query could not get an answer even from loopback


class DelegationLoop(UpstreamError):
    """The servers of a zone can only be found through the zone itself (directly or via other zones)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EDE_OTHER)


@dataclass(frozen=True, slots=True)
class Context:
    """What every resolution of one resolver shares."""

    cache: RecursionCache
    servers: ServerTable
    hints: RootHints
    limits: Limits = field(default_factory=Limits)
    minimise: bool = True
    ipv6: bool = True
    rng: random.Random = field(default_factory=random.Random)


@dataclass(frozen=True, slots=True)
class Ask:
    server: ServerAddress
    zone: bytes  # the zone the server is asked as a server of
    qname: bytes
    qtype: int
    qclass: int
    edns: bool
    do: bool
    timeout: float


@dataclass(frozen=True, slots=True)
class NeedAddresses:
    name: bytes  # an NS name of the current zone with no known address


@dataclass(frozen=True, slots=True)
class Result:
    qname: bytes  # the question as asked (not the end of a CNAME chain)
    qtype: int
    qclass: int
    rcode: int
    answer: tuple[RRset, ...]  # the CNAME/DNAME chain in order, then the RRsets of the asked type
    authority: tuple[RRset, ...]  # for a negative answer: the SOA, then NSEC/NSEC3 proofs
    server: str  # the last server that answered ("" when answered from the cache alone)

    def addresses(self) -> list[str]:
        """The addresses an A or AAAA resolution ended with."""
        return [address for rrset in self.answer for address in rrset.addresses()]


Action = Ask | NeedAddresses | Result


@dataclass(slots=True)
class ZoneServers:
    """The servers of the zone being asked, as far as this resolution knows them."""

    zone: bytes
    addresses: list[ServerAddress]
    unresolved: list[bytes]  # NS names without an address, in the order they will be looked up
    failed: set[ServerAddress] = field(default_factory=set)  # gave no usable reply in this resolution

    def add(self, addresses: list[ServerAddress]) -> None:
        self.addresses.extend(address for address in addresses if address not in self.addresses)


class Resolution:
    def __init__(
        self,
        context: Context,
        budget: Budget,
        qname: bytes,
        qtype: int,
        qclass: int = CLASS_IN,
        *,
        do: bool = False,
        depth: int = 0,
        ancestry: frozenset[bytes] = frozenset(),
    ) -> None:
        self.context = context
        self.budget = budget
        self.qname = qname
        self.qtype = qtype
        self.qclass = qclass
        self.do = do
        self.depth = depth  # how many NS-address lookups this one is nested in
        # NS names whose address lookup this resolution is (part of): meeting one again is a loop.
        self.ancestry = (ancestry | {qname}) if qtype in (TYPE_A, TYPE_AAAA) else ancestry
        self.target = qname
        self.chain: list[RRset] = []
        self.chain_names = {qname}
        self.redirections = 0
        self.zone: ZoneServers | None = None
        self.minimising = context.minimise
        self.minimise_count = 0
        self.known_labels = 0  # labels of the deepest name known to be inside the current zone
        self.referrals = 0
        self.pending: Ask | NeedAddresses | None = None
        self.steps = 0
        self.last_server = ""
        self.network_failures = 0
        self.other_failures = 0
        self.loop_found = False
        self.too_deep = False
        self.result: Result | None = None

    # ------------------------------------------------------------------------------------ the driver

    def next_action(self, now: float) -> Action:
        if self.result is not None:
            return self.result
        if self.pending is not None:
            raise RuntimeError("next_action called while a reply is awaited")
        limits = self.context.limits
        self.steps += 1
        if self.steps > limits.max_steps:
            raise UpstreamError("resolution did not converge", EDE_OTHER)
        if now >= self.budget.deadline:
            raise UpstreamError("resolution timed out", EDE_NO_REACHABLE_AUTHORITY)
        if self.zone is None:
            cached = self._answer_from_cache(now)
            if cached is not None:
                self.result = cached
                return cached
            self._enter_zone(self._closest_zone(now))
        assert self.zone is not None
        server = self._pick_server(now)
        if server is not None:
            return self._ask(server, now)
        name = self._next_unresolved()
        if name is not None:
            self.pending = NeedAddresses(name)
            return self.pending
        server = self._pick_server(now, include_unusable=True)
        if server is not None:
            return self._ask(server, now)
        raise self._no_servers_error()

    def on_reply(self, ask: Ask, data: bytes, rtt: float, now: float) -> None:
        self._expect(ask)
        servers = self.context.servers
        servers.record_reply(ask.server, rtt)
        zone = self._zone()
        self.last_server = ask.server[0]
        try:
            message = parse(data)
        except WireError:
            zone.failed.add(ask.server)
            self.other_failures += 1
            return
        if message.rcode in (FORMERR, NOTIMP) and ask.edns:
            servers.record_no_edns(ask.server)  # RFC 6891 §7: ask it again without EDNS
            return
        question = Question(zone.zone, ask.qname, ask.qtype, ask.qclass, self.target)
        verdict = classify(message, question)
        if isinstance(verdict, ErrorRcode):
            self._on_error_rcode(ask, verdict.rcode, question, now)
        elif isinstance(verdict, Lame):
            servers.record_lame(ask.server, zone.zone, now)
            zone.failed.add(ask.server)
            self.other_failures += 1
        elif isinstance(verdict, Referral):
            self._follow_referral(verdict, question, now)
        elif question.minimised:
            self._on_minimised_reply(verdict, question)
        elif isinstance(verdict, Answer):
            self._accept_answer(verdict, now)
        else:
            self._accept_negative(verdict, now)

    def on_failure(self, ask: Ask, error: UpstreamError, now: float) -> None:
        self._expect(ask)
        self.context.servers.record_failure(ask.server, now)
        self._zone().failed.add(ask.server)
        if error.ede_code == EDE_NETWORK_ERROR:
            self.network_failures += 1
        else:
            self.other_failures += 1

    def on_addresses(
        self, need: NeedAddresses, addresses: list[str], error: UpstreamError | None = None
    ) -> None:
        self._expect(need)
        if isinstance(error, DelegationLoop):
            self.loop_found = True
        self._zone().add([(address, 53) for address in addresses if self._family_ok(address)])

    def address_lookup(self, name: bytes, qtype: int) -> Resolution:
        """The sub-resolution that finds the addresses of an NS name; it shares this one's budget."""
        return Resolution(
            self.context,
            self.budget,
            name,
            qtype,
            CLASS_IN,
            do=False,
            depth=self.depth + 1,
            ancestry=self.ancestry,
        )

    # -------------------------------------------------------------------------------------- the cache

    def _answer_from_cache(self, now: float) -> Result | None:
        cache = self.context.cache
        for _ in range(self.context.limits.max_cname_chain + 2):
            negative = cache.get_negative(self.target, self.qtype, self.qclass, now, dnssec=self.do)
            if negative is not None:
                return self._negative_result(negative, now)
            if self.qtype != TYPE_ANY:
                rrset = cache.get_rrset(
                    self.target, self.qtype, self.qclass, now, min_rank=RANK_ANSWER, dnssec=self.do
                )
                if rrset is not None:
                    return self._result(NOERROR, (rrset,), ())
            if self.qtype != TYPE_CNAME:
                cname = cache.get_rrset(
                    self.target, TYPE_CNAME, self.qclass, now, min_rank=RANK_ANSWER, dnssec=self.do
                )
                if cname is not None:
                    self._redirect([cname], 1)
                    continue
            dname = self._cached_dname(now)
            if dname is None:
                return None
            new_name = dnsname.replace_suffix(self.target, dname.name, dname.target())
            if new_name is None:
                return None
            self._redirect([dname, synthesized_cname(self.target, new_name, dname.rclass, dname.ttl)], 1)
        return None

    def _cached_dname(self, now: float) -> RRset | None:
        if self.qtype == TYPE_DNAME:
            return None
        for name in dnsname.ancestors(self.target)[1:]:
            dname = self.context.cache.get_rrset(
                name, TYPE_DNAME, self.qclass, now, min_rank=RANK_ANSWER, dnssec=self.do
            )
            if dname is not None:
                return dname
        return None

    def _negative_result(self, entry: NegativeEntry, now: float) -> Result:
        return self._result(entry.rcode, (), entry.authority_at(now))

    # ------------------------------------------------------------------------------ zones and servers

    def _closest_zone(self, now: float) -> ZoneServers:
        """The deepest zone above the name whose NS set is cached; DS is asked of the parent (RFC 4035)."""
        start = self.target
        if self.qtype == TYPE_DS and start != dnsname.ROOT:
            start = dnsname.parent(start)
        for name in dnsname.ancestors(start)[:-1]:
            ns = self.context.cache.get_rrset(name, TYPE_NS, self.qclass, now, min_rank=RANK_REFERRAL)
            if ns is not None:
                zone = self._zone_servers(name, ns, (), now)
                if zone.addresses or zone.unresolved:
                    return zone
        return self._root_zone(now)

    def _root_zone(self, now: float) -> ZoneServers:
        hints = self.context.hints
        if not hints.pinned:
            ns = self.context.cache.get_rrset(dnsname.ROOT, TYPE_NS, self.qclass, now, min_rank=RANK_REFERRAL)
            if ns is not None:
                zone = self._zone_servers(dnsname.ROOT, ns, (), now)
                if zone.addresses:
                    return zone
        return ZoneServers(dnsname.ROOT, hints.usable(ipv6=self.context.ipv6), [])

    def _zone_servers(self, zone: bytes, ns: RRset, glue: tuple[RRset, ...], now: float) -> ZoneServers:
        glue_by_key = {(rrset.name, rrset.rtype): rrset for rrset in glue}
        names = ns.targets()
        self.context.rng.shuffle(names)
        addresses: list[ServerAddress] = []
        unresolved: list[bytes] = []
        for name in names:
            found = self._known_addresses(name, glue_by_key, now)
            if found:
                addresses.extend(address for address in found if address not in addresses)
            elif not dnsname.is_subdomain(name, zone):
                # A name inside the zone without glue could only be found by asking the zone itself.
                unresolved.append(name)
        return ZoneServers(zone, addresses, unresolved)

    def _known_addresses(
        self, name: bytes, glue: dict[tuple[bytes, int], RRset], now: float
    ) -> list[ServerAddress]:
        found: list[ServerAddress] = []
        for rtype in (TYPE_A, TYPE_AAAA) if self.context.ipv6 else (TYPE_A,):
            rrset = glue.get((name, rtype)) or self.context.cache.get_rrset(
                name, rtype, CLASS_IN, now, min_rank=RANK_GLUE
            )
            if rrset is not None:
                found.extend((address, 53) for address in rrset.addresses())
        return found

    def _enter_zone(self, zone: ZoneServers) -> None:
        self.zone = zone
        self.known_labels = dnsname.label_count(zone.zone)

    def _zone(self) -> ZoneServers:
        if self.zone is None:
            raise RuntimeError("no zone is being asked")
        return self.zone

    def _family_ok(self, address: str) -> bool:
        return self.context.ipv6 or ":" not in address

    def _pick_server(self, now: float, *, include_unusable: bool = False) -> ServerAddress | None:
        zone = self._zone()
        servers = self.context.servers
        candidates = [address for address in zone.addresses if address not in zone.failed]
        if not include_unusable:
            candidates = [address for address in candidates if servers.usable(address, zone.zone, now)]
        return servers.choose(candidates, self.context.rng)

    def _next_unresolved(self) -> bytes | None:
        """The next NS name to look up, skipping loops; None when none is left."""
        zone = self._zone()
        while zone.unresolved:
            name = zone.unresolved.pop(0)
            if name in self.ancestry:
                self.loop_found = True
                continue
            if self.depth >= self.context.limits.max_glueless_depth:
                self.too_deep = True
                continue
            return name
        return None

    def _ask(self, server: ServerAddress, now: float) -> Ask:
        limits = self.context.limits
        if self.budget.queries >= limits.max_queries:
            raise UpstreamError(f"too many queries (more than {limits.max_queries})", EDE_OTHER)
        remaining = self.budget.deadline - now
        if remaining < MIN_QUERY_TIMEOUT:
            raise UpstreamError("resolution timed out", EDE_NO_REACHABLE_AUTHORITY)
        self.budget.queries += 1
        qname, qtype = self._question()
        zone = self._zone()
        self.pending = Ask(
            server,
            zone.zone,
            qname,
            qtype,
            self.qclass,
            self.context.servers.wants_edns(server),
            self.do,
            min(self.context.servers.timeout(server), remaining),
        )
        return self.pending

    def _question(self) -> tuple[bytes, int]:
        if not self.minimising:
            return self.target, self.qtype
        target_labels = dnsname.label_count(self.target)
        labels = next_label_count(self.known_labels, target_labels, self.minimise_count)
        if labels >= target_labels:
            return self.target, self.qtype
        return dnsname.ancestor(self.target, labels), MINIMISED_QTYPE

    def _no_servers_error(self) -> UpstreamError:
        zone = dnsname.to_text(self._zone().zone)
        if self.loop_found:
            return DelegationLoop(f"delegation loop: the servers of {zone} can only be found through itself")
        if self.too_deep:
            return UpstreamError(f"glueless delegations nested too deep at {zone}", EDE_OTHER)
        if self.network_failures and not self.other_failures:
            return UpstreamError(f"network error reaching every server of {zone}", EDE_NETWORK_ERROR)
        return UpstreamError(f"no reachable authority for {zone}", EDE_NO_REACHABLE_AUTHORITY)

    # ------------------------------------------------------------------------------------- replies

    def _expect(self, action: Ask | NeedAddresses) -> None:
        if self.pending is not action:
            raise RuntimeError("a reply for a question that is not pending")
        self.pending = None

    def _on_error_rcode(self, ask: Ask, rcode: int, question: Question, now: float) -> None:
        zone = self._zone()
        if rcode == REFUSED:
            self.context.servers.record_lame(ask.server, zone.zone, now)
        elif question.minimised:
            # RFC 9156 §2.3: some servers fail on minimised questions; ask the full one instead.
            self.minimising = False
            return
        zone.failed.add(ask.server)
        self.other_failures += 1

    def _on_minimised_reply(self, verdict: Answer | Negative, question: Question) -> None:
        if verdict.chain or (isinstance(verdict, Negative) and verdict.rcode == NXDOMAIN):
            # An alias where a zone cut was sought, or an NXDOMAIN that a broken server may give for an
            # empty non-terminal (RFC 9156 §2.3, Unbound's relaxed mode): let the full question decide.
            self.minimising = False
            return
        # NODATA, or an address for the minimised name: no zone cut here, reveal one label more.
        self.known_labels = dnsname.label_count(question.qname)
        self.minimise_count += 1

    def _follow_referral(self, referral: Referral, question: Question, now: float) -> None:
        self.referrals += 1
        limit = self.context.limits.max_referrals
        if self.referrals > limit:
            raise UpstreamError(f"too many referrals (more than {limit})", EDE_OTHER)
        cache = self.context.cache
        cache.put_rrset(referral.ns, RANK_REFERRAL, now, dnssec=self.do)
        if referral.ds is not None and self.do:  # the parent's own (signed) data: an answer to a DS query
            cache.put_rrset(referral.ds, RANK_ANSWER, now, dnssec=True)
        for rrset in referral.glue:
            cache.put_rrset(rrset, RANK_GLUE, now, dnssec=False)
        if question.minimised:
            self.minimise_count += 1
        self._enter_zone(self._zone_servers(referral.zone, referral.ns, referral.glue, now))

    def _accept_answer(self, answer: Answer, now: float) -> None:
        cache = self.context.cache
        self._cache_chain(answer.chain, answer.synthesized, now)
        for rrset in answer.final:
            cache.put_rrset(rrset, RANK_ANSWER, now, dnssec=self.do)
        for rrset in answer.glue:
            cache.put_rrset(rrset, RANK_GLUE, now, dnssec=False)
        if answer.final:
            self._extend_chain(list(answer.chain), answer.redirections)
            self.result = self._result(NOERROR, answer.final, ())
            return
        self._redirect(list(answer.chain), answer.redirections)

    def _accept_negative(self, negative: Negative, now: float) -> None:
        self._cache_chain(negative.chain, negative.synthesized, now)
        self._extend_chain(list(negative.chain), negative.redirections)
        authority: tuple[RRset, ...] = negative.proof
        if negative.soa is not None:
            ttl = negative.soa.negative_ttl()
            authority = (negative.soa.with_ttl(ttl), *negative.proof)
            self.context.cache.put_negative(
                negative.rcode, negative.name, self.qtype, self.qclass, authority, ttl, now, dnssec=self.do
            )
        self.result = self._result(negative.rcode, (), authority)

    def _cache_chain(self, chain: tuple[RRset, ...], synthesized: frozenset[int], now: float) -> None:
        for index, rrset in enumerate(chain):
            if index not in synthesized:  # a CNAME made from a DNAME is made again from the cached DNAME
                self.context.cache.put_rrset(rrset, RANK_ANSWER, now, dnssec=self.do)

    def _extend_chain(self, rrsets: list[RRset], redirections: int) -> None:
        """Add CNAME/DNAME sets to the answer chain; stop loops and over-long chains."""
        limit = self.context.limits.max_cname_chain
        self.redirections += redirections
        if self.redirections > limit:
            raise UpstreamError(f"CNAME chain too long (more than {limit})", EDE_OTHER)
        for rrset in rrsets:
            if rrset.rtype == TYPE_CNAME:
                target = rrset.target()
                if target in self.chain_names:
                    raise UpstreamError(f"CNAME loop at {dnsname.to_text(target)}", EDE_OTHER)
                self.chain_names.add(target)
                self.target = target
        self.chain.extend(rrsets)

    def _redirect(self, rrsets: list[RRset], redirections: int) -> None:
        """Follow the chain to its new target and start over there (cache first, then the closest zone)."""
        self._extend_chain(rrsets, redirections)
        self.zone = None
        self.minimising = self.context.minimise
        self.minimise_count = 0

    def _result(self, rcode: int, final: tuple[RRset, ...], authority: tuple[RRset, ...]) -> Result:
        return Result(
            self.qname,
            self.qtype,
            self.qclass,
            rcode,
            (*self.chain, *final),
            authority,
            self.last_server,
        )
