"""Zones this server answers in full, so that their names never reach an upstream or the root servers.

* Special-use names: ``localhost.`` (RFC 6761 §6.3: every name below it is a loopback address), ``invalid.``
  (RFC 6761 §6.4), ``local.`` (RFC 6762 §3: multicast DNS only), ``onion.`` (RFC 7686 §2) and ``home.arpa.``
  (RFC 8375, the home network's own domain).
* With ``[local] private_reverse`` (the default): the reverse zones of private, loopback, link-local and
  documentation addresses (RFC 6303 §4, and RFC 7793 for 100.64.0.0/10), so a LAN's reverse lookups stay
  on the LAN.

A forward zone takes precedence: a served zone at or below a ``[[forward_zones]]`` name is not served, and a
name inside a forward zone inside a served zone goes to the forward zone (longest suffix wins). Local records
answer their own names before any of this (:mod:`blockdns.resolve.local`); everything else in a served zone
gets NXDOMAIN, or NODATA for the apex and for names that have local records below them (empty
non-terminals, RFC 8020), with the zone's SOA. The apex answers SOA queries. All answers carry AA.

The :class:`LocalZonesHandler` sits after the blocking handler, so policy applies to these names too, and
after the cache, which never holds its answers (only resolved ones), so a cache hit does not pay for it. Its
answers are built once per zone; a query costs a suffix test (``bytes.endswith`` on the zones' top-level
labels, which every name inside them must pass) and, for the few names that pass it, a walk up the labels.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass

from blockdns import dnsname
from blockdns.localdata import LocalData
from blockdns.resolve.base import Answer, Handler, Outcome, Query, Question, ready
from blockdns.resolve.synth import QUESTION_NAME, local_soa, records_reply
from blockdns.wire import AA, CLASS_IN, NOERROR, NXDOMAIN, TYPE_A, TYPE_AAAA, TYPE_SOA

NEGATIVE_TTL = 300  # SOA TTL and MINIMUM of local negative answers: local data changes with a hosts file

SPECIAL_USE = (
    ("localhost", "RFC 6761"),
    ("invalid", "RFC 6761"),
    ("local", "RFC 6762"),
    ("onion", "RFC 7686"),
    ("home.arpa", "RFC 8375"),
)


def private_reverse_zones() -> list[tuple[str, str]]:
    """The locally served reverse zones of RFC 6303 §4 and RFC 7793."""
    ipv4 = [
        "0.in-addr.arpa",
        "10.in-addr.arpa",
        "127.in-addr.arpa",
        "254.169.in-addr.arpa",
        *(f"{octet}.172.in-addr.arpa" for octet in range(16, 32)),
        "2.0.192.in-addr.arpa",
        "100.51.198.in-addr.arpa",
        "113.0.203.in-addr.arpa",
        "168.192.in-addr.arpa",
        "255.255.255.255.in-addr.arpa",
    ]
    ipv6 = [
        _ip6_zone("::", 128),
        _ip6_zone("::1", 128),
        "d.f.ip6.arpa",  # fd00::/8, unique local addresses
        *(f"{nibble}.e.f.ip6.arpa" for nibble in "89ab"),  # fe80::/10, link-local
        _ip6_zone("2001:db8::", 32),  # documentation
    ]
    shared = [f"{octet}.100.in-addr.arpa" for octet in range(64, 128)]  # 100.64.0.0/10 (RFC 7793)
    return [(zone, "RFC 6303") for zone in ipv4 + ipv6] + [(zone, "RFC 7793") for zone in shared]


def _ip6_zone(prefix: str, bits: int) -> str:
    nibbles = ipaddress.IPv6Address(prefix).exploded.replace(":", "")[: bits // 4]
    return ".".join(reversed(nibbles)) + ".ip6.arpa"


@dataclass(frozen=True, slots=True, eq=False)
class ServedZone:
    """One zone served here, with its answers built once."""

    apex: bytes
    name: str
    why: str
    nxdomain: Answer
    nodata: Answer
    soa: Answer  # the apex's SOA query
    addresses: dict[int, Answer]  # localhost: the loopback address of every name, by type

    @classmethod
    def build(cls, name: str, why: str) -> ServedZone:
        apex = dnsname.from_text(name)
        reason = f"locally served zone {name} ({why})"
        soa = local_soa(apex, NEGATIVE_TTL)

        def answer(rcode: int, answers: list, authority: list) -> Answer:
            return Answer(Outcome.LOCAL, records_reply(rcode, answers, authority, AA), reason=reason)

        addresses = {}
        if apex == dnsname.from_text("localhost"):
            for rtype, address in ((TYPE_A, "127.0.0.1"), (TYPE_AAAA, "::1")):
                record = (QUESTION_NAME, rtype, NEGATIVE_TTL, ipaddress.ip_address(address).packed)
                addresses[rtype] = answer(NOERROR, [record], [])
        return cls(
            apex=apex,
            name=name,
            why=why,
            nxdomain=answer(NXDOMAIN, [], [soa]),
            nodata=answer(NOERROR, [], [soa]),
            soa=answer(NOERROR, [local_soa(QUESTION_NAME, NEGATIVE_TTL)], []),
            addresses=addresses,
        )

    def answer(self, qname: bytes, qtype: int, existing: frozenset[bytes]) -> Answer:
        if qname == self.apex:
            return self.soa if qtype == TYPE_SOA else self.addresses.get(qtype, self.nodata)
        if self.addresses:
            return self.addresses.get(qtype, self.nodata)
        return self.nodata if qname in existing else self.nxdomain


class ZoneTable:
    """Served zones and forward zones, matched by longest suffix."""

    def __init__(self, served: Iterable[ServedZone], forward: Iterable[bytes]) -> None:
        forward = list(forward)
        self.table: dict[bytes, ServedZone | None] = {
            zone.apex: zone
            for zone in served
            if not any(dnsname.is_subdomain(zone.apex, other) for other in forward)
        }
        self.table.update((zone, None) for zone in forward)
        # Every name inside a listed zone ends with the zone's top-level label: a test with no false negative.
        self.suffixes = tuple({dnsname.ancestor(zone, 1) for zone in self.table})

    @classmethod
    def build(cls, private_reverse: bool, forward: Iterable[bytes]) -> ZoneTable:
        zones = list(SPECIAL_USE) + (private_reverse_zones() if private_reverse else [])
        return cls((ServedZone.build(name, why) for name, why in zones), forward)

    @property
    def served(self) -> list[ServedZone]:
        return [zone for zone in self.table.values() if zone is not None]

    def served_zone(self, qname: bytes) -> ServedZone | None:
        """The served zone ``qname`` is in; None when it is in none, or a forward zone is closer."""
        if not qname.endswith(self.suffixes):
            return None
        table = self.table
        pos = 0
        while qname[pos]:
            suffix = qname[pos:] if pos else qname
            if suffix in table:
                return table[suffix]
            pos += qname[pos] + 1
        return None


def existing_names(table: ZoneTable, local: LocalData) -> frozenset[bytes]:
    """Names inside served zones that own local records or have some below them: NODATA, not NXDOMAIN."""
    names: set[bytes] = set()
    for owner in local.rrsets:
        zone = table.served_zone(owner)
        if zone is None:
            continue
        name = owner
        while name != zone.apex and name not in names:
            names.add(name)
            name = dnsname.parent(name)
    return frozenset(names)


class LocalZonesHandler(Handler):
    name = "local_zones"

    def __init__(self, table: ZoneTable, local: LocalData) -> None:
        self.table = table
        self.suffixes = table.suffixes
        self.existing = existing_names(table, local)

    def answer(self, question: Question) -> Answer | None:
        if question.qclass != CLASS_IN:
            return None
        zone = self.table.served_zone(question.qname_wire)
        return zone.answer(question.qname_wire, question.qtype, self.existing) if zone else None

    def handle(self, query: Query) -> Awaitable[Answer]:
        answer = self.answer(query.question)
        return ready(answer) if answer is not None else self.next_handler(query)

    def fast(self, query: Query) -> Answer | None:
        question = query.question
        if question.qname_wire.endswith(self.suffixes):
            answer = self.answer(question)
            if answer is not None:
                return answer
        return self.next_fast(query)
