"""Answers blockdns gives from its own data, before policy: the administrator's local records, and the canary
names that keep browsers and phones on this resolver.

Local records (``[local] records``, hosts files, the PTRs made for their addresses; see
:mod:`blockdns.localdata`) are the administrator's own word: a name that owns some is answered here, with AA,
whatever the policy says. A type it lacks gets NODATA with a SOA (the served zone's, or one owned by the
name itself). A CNAME is followed through the local data within the answer; where a chain leaves the local
data, the rest of the chain (policy, cache, resolution) answers the target, and the reply is the CNAMEs
followed by that answer, or the blocked answer for the queried name when policy blocks the target.

Canaries:

* ``use-application-dns.net``: NXDOMAIN tells Firefox not to switch on its built-in DNS-over-HTTPS.
* ``mask.icloud.com`` and ``mask-h2.icloud.com``: NXDOMAIN tells Apple devices that iCloud Private Relay
  is not available on this network, so their queries keep coming here.

Every answer for a name without a chain to resolve is built once, when the name is first asked; both speeds
look it up by wire name (one dict probe for the names that are not local). A chain's combined answer is
memoised by the target's answer object, like the inspection handler's memo.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable
from dataclasses import dataclass, replace

from blockdns import dnsname
from blockdns.errors import WireError
from blockdns.localdata import LocalData, RRset
from blockdns.policy import Decision
from blockdns.resolve.base import Answer, Handler, Outcome, Query, Question
from blockdns.resolve.blocking import BlockResponder
from blockdns.resolve.localzones import NEGATIVE_TTL, ZoneTable
from blockdns.resolve.resolving import servfail
from blockdns.resolve.synth import QUESTION_NAME, Record, local_soa, negative_reply, records_reply
from blockdns.wire import (
    AA,
    CLASS_IN,
    EDE_OTHER,
    NOERROR,
    NXDOMAIN,
    TYPE_ANY,
    TYPE_CNAME,
    TYPE_SOA,
    prepend_cnames,
)

CANARY_NAMES = {
    "use-application-dns.net": "Firefox DoH canary",
    "mask.icloud.com": "iCloud Private Relay canary",
    "mask-h2.icloud.com": "iCloud Private Relay canary",
}
CANARY_TTL = 300
LOCAL_REASON = "local record"
MEMO_LIMIT = 10_000  # combined chain answers and target questions remembered; a full memo is cleared

_REUSABLE = {Outcome.CACHED, Outcome.BLOCKED, Outcome.LOCAL}


def _canary_answer(name: str, why: str) -> Answer:
    wire = dnsname.from_text(name)
    reply = negative_reply(wire, wire, NXDOMAIN, CANARY_TTL)
    return Answer(Outcome.LOCAL, reply, reason=f"bypass protection: {why}")


@dataclass(frozen=True, slots=True)
class Chain:
    """CNAMEs that lead out of the local data: resolved per query."""

    records: list[Record]  # in order; the first is owned by the question name
    target: bytes  # the name the last one points at
    target_text: str


@dataclass(frozen=True, slots=True)
class OwnerAnswers:
    """Everything a local name answers."""

    by_type: dict[int, Answer]
    other: Answer | None  # any type not in by_type: NODATA, or a canary; None when ``chain`` answers
    chain: Chain | None = None


def _local(reply_records: list[Record], authority: list[Record] | None = None) -> Answer:
    reply = records_reply(NOERROR, reply_records, authority or [], AA)
    return Answer(Outcome.LOCAL, reply, reason=LOCAL_REASON)


def _records(rrset: RRset, owner: bytes) -> list[Record]:
    return [(owner, rrset.rtype, rrset.ttl, rdata) for rdata in rrset.rdatas]


# A local name whose answers are not built yet: the slow path builds them when the name is first asked.
UNBUILT = OwnerAnswers({}, None)


class LocalAnswers:
    """The answers of every local name, built from the local data and the served zones (for SOAs).

    ``names`` holds every local name from the start, so one probe tells a local name from any other; a
    name's answers are built the first time it is asked (a hosts file of 100,000 names costs little until
    they are used) and kept as long as the generation, so they are bounded by the local data.
    """

    def __init__(self, local: LocalData, zones: ZoneTable, canaries: bool) -> None:
        self.local = local
        self.zones = zones
        self._nodata: dict[bytes, Answer] = {}  # by SOA owner (a zone apex, or the question name)
        names: dict[bytes, OwnerAnswers] = {}
        if canaries:
            for name, why in CANARY_NAMES.items():
                names[dnsname.from_text(name)] = OwnerAnswers({}, _canary_answer(name, why))
        names.update(dict.fromkeys(local.rrsets, UNBUILT))
        self.names = names

    def build(self, owner: bytes) -> OwnerAnswers:
        """The answers of a local name, built now and remembered (slow path only)."""
        types = self.local.rrsets[owner]
        built = self.names[owner] = self._chain(owner) if TYPE_CNAME in types else self._plain(owner)
        return built

    def _soa_owner(self, name: bytes, question_name: bytes) -> bytes:
        zone = self.zones.served_zone(name)
        if zone is not None:
            return zone.apex
        return QUESTION_NAME if name == question_name else name

    def _nodata_for(self, name: bytes, owner: bytes, chain: list[Record]) -> Answer:
        soa_owner = self._soa_owner(name, owner)
        if chain:
            return _local(chain, [local_soa(soa_owner, NEGATIVE_TTL)])
        answer = self._nodata.get(soa_owner)
        if answer is None:
            answer = self._nodata[soa_owner] = _local([], [local_soa(soa_owner, NEGATIVE_TTL)])
        return answer

    def _plain(self, owner: bytes) -> OwnerAnswers:
        types = self.local.rrsets[owner]
        by_type = {rtype: _local(_records(rrset, QUESTION_NAME)) for rtype, rrset in types.items()}
        by_type[TYPE_ANY] = (
            next(iter(by_type.values()))
            if len(by_type) == 1
            else _local([record for rrset in types.values() for record in _records(rrset, QUESTION_NAME)])
        )
        zone = self.zones.served_zone(owner)
        if zone is not None and zone.apex == owner and TYPE_SOA not in by_type:
            by_type[TYPE_SOA] = zone.soa
        return OwnerAnswers(by_type, self._nodata_for(owner, owner, []))

    def _chain(self, owner: bytes) -> OwnerAnswers:
        records: list[Record] = []
        name = owner
        while True:
            types = self.local.rrsets.get(name)
            if types is None or TYPE_CNAME not in types:
                break
            cname = types[TYPE_CNAME]
            records += _records(cname, QUESTION_NAME if name == owner else name)
            target = self.local.cname_target(name)
            assert target is not None
            name = target
        first = _local(records[:1])
        by_type = {TYPE_CNAME: first, TYPE_ANY: first}
        end = self.local.rrsets.get(name)
        if end is None:  # the chain leaves the local data
            return OwnerAnswers(by_type, None, Chain(records, name, dnsname.text_key(name)))
        for rtype, rrset in end.items():
            by_type.setdefault(rtype, _local(records + _records(rrset, name)))
        return OwnerAnswers(by_type, self._nodata_for(name, owner, records))


class LocalHandler(Handler):
    name = "local"

    def __init__(self, answers: LocalAnswers, responder: BlockResponder) -> None:
        self.answers = answers
        self.names = answers.names
        self.responder = responder
        # A chain's question for its target, by the client's question (a Question is memoised per packet).
        self._targets: dict[Question, Question] = {}
        # The combined answer, by (question name and type, the target's answer object).
        self._combined: dict[tuple[tuple[bytes, int], Answer], Answer] = {}

    def handle(self, query: Query) -> Awaitable[Answer]:
        question = query.question
        entry = self.names.get(question.qname_wire)
        if entry is None or question.qclass != CLASS_IN:
            return self.next_handler(query)
        return self._local(query, entry)

    async def _local(self, query: Query, entry: OwnerAnswers) -> Answer:
        question = query.question
        if entry is UNBUILT:
            entry = self.answers.build(question.qname_wire)
        answer = entry.by_type.get(question.qtype, entry.other)
        if answer is not None:
            return answer
        assert entry.chain is not None
        target_question = self._target_question(question, entry.chain)
        target = await self.next_handler(query._replace(question=target_question))
        return self._combine(query, entry.chain, target_question, target)

    def fast(self, query: Query) -> Answer | None:
        question = query.question
        entry = self.names.get(question.qname_wire)
        if entry is None or question.qclass != CLASS_IN:
            return self.next_fast(query)
        if entry is UNBUILT:
            return None
        answer = entry.by_type.get(question.qtype, entry.other)
        if answer is not None:
            return answer
        target_question = self._targets.get(question)
        if target_question is None:
            return None
        target = self.next_fast(query._replace(question=target_question))
        if target is None:
            return None
        return self._combined.get((question.name_type, target))

    def _target_question(self, question: Question, chain: Chain) -> Question:
        known = self._targets.get(question)
        if known is None:
            target = chain.target
            key = (target, question.qtype, question.qclass, question.do, question.cd)
            known = replace(
                question,
                qname_wire=target,
                qname=chain.target_text,
                raw=target + struct.pack(">HH", question.qtype, question.qclass),
                cache_key=key,
                name_type=(target, question.qtype),
            )
            if len(self._targets) >= MEMO_LIMIT:
                self._targets.clear()
            self._targets[question] = known
        return known

    def _combine(self, query: Query, chain: Chain, target_question: Question, target: Answer) -> Answer:
        question = query.question
        key = (question.name_type, target)
        combined = self._combined.get(key)
        if combined is not None:
            return combined
        if target.outcome is Outcome.ERROR:
            return target
        if target.outcome is Outcome.BLOCKED:
            blocked = target.decision
            decision = Decision(
                question.qname,
                query.client.group.name,
                "block",
                blocked.entry if blocked else None,
                blocked.rule if blocked else None,
                via=f"CNAME {chain.target_text}",
            )
            combined = self.responder.answer(question.qname_wire, question.qtype, decision, target.upstream)
        else:
            try:
                asked = (
                    question.qname_wire + question.raw[-4:]
                )  # lowercase: one reply for every client's case
                reply = prepend_cnames(asked, chain.records, target_question.raw, target.reply, AA)
            except WireError as err:
                text = f"cannot follow the local CNAME to {chain.target_text}: {err}"
                return Answer(Outcome.ERROR, servfail(EDE_OTHER, text), reason=text)
            combined = Answer(
                Outcome.LOCAL,
                reply,
                reason=f"{LOCAL_REASON}: CNAME to {chain.target_text}",
                upstream=target.upstream,
                stored=target.stored,
            )
        if target.outcome in _REUSABLE:
            if len(self._combined) >= MEMO_LIMIT:
                self._combined.clear()
            self._combined[key] = combined
        return combined
