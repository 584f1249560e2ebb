"""Validation of what forwarders answer: forward mode with ``dnssec = "validate"``, and ``[[forward_zones]]``
with ``dnssec = true`` (the default) behind a validating resolver.

The upstream is asked with DO and CD (RFC 4035 §3.2.2: CD, so a validating upstream hands over even data it
finds bogus, and the verdict is ours), and its AD bit is never believed: the reply is taken apart into
RRsets, validated like a recursive answer (the DS and DNSKEY lookups go to the same upstreams, through
:class:`RoutedFetch`), and written again for the client — with AD when secure, RRSIGs only for a client that
set DO. A client that set CD gets the upstream's data unvalidated, without AD.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace

from blockdns import dnsname
from blockdns.errors import WireError
from blockdns.resolve.dnssec.validator import Validator
from blockdns.resolve.dnssec.work import with_verdict
from blockdns.resolve.recursive.classify import TYPE_NSEC, TYPE_NSEC3
from blockdns.resolve.recursive.machine import Result
from blockdns.resolve.recursive.message import parse
from blockdns.resolve.recursive.response import parsed_response
from blockdns.resolve.recursive.rrset import expanded, group
from blockdns.resolve.routing import closest_zone
from blockdns.resolve.upstream import BogusAnswer, Upstream, UpstreamResult
from blockdns.wire import AD, CLASS_IN, EDE_OTHER, HEADER, QR, ParsedResponse


def result_of(qname: bytes, qtype: int, qclass: int, upstream: UpstreamResult) -> Result:
    """An upstream's parsed response as the RRsets the validator reads. The records were cut from a reply
    whose question (the same name, so the same length) sat at offset 12, so compression pointers in them
    still point where they did."""
    response = upstream.response
    reply = response.reply
    an, ns, ar = reply.counts
    header = HEADER.pack(0, QR | (response.rcode & 0xF), 1, an, ns, ar)
    message = parse(header + qname + qtype.to_bytes(2, "big") + qclass.to_bytes(2, "big") + reply.records)
    answer = group(message.answer)
    authority = group(message.authority)
    if any(expanded(rrset) for rrset in answer):
        proof = tuple(rrset for rrset in authority if rrset.rtype in (TYPE_NSEC, TYPE_NSEC3))
        answer = [replace(rrset, proof=proof) if expanded(rrset) else rrset for rrset in answer]
    return Result(qname, qtype, qclass, response.rcode, tuple(answer), tuple(authority), upstream.server)


Fetch = Callable[[bytes, int], Awaitable[Result]]


class RoutedFetch:
    """DS and DNSKEY lookups for a validator: names in a validated forward zone go to that zone's
    forwarder, every other name to ``default`` (the recursive resolver, or the forward-mode upstreams)."""

    def __init__(self, default: Fetch, zones: Mapping[bytes, Upstream]) -> None:
        self.default = default
        self.zones = zones

    async def __call__(self, name: bytes, qtype: int) -> Result:
        zone = closest_zone(name, self.zones) if self.zones else None
        if zone is None:
            return await self.default(name, qtype)
        return await forwarded_result(self.zones[zone], name, qtype)


async def forwarded_result(upstream: Upstream, name: bytes, qtype: int) -> Result:
    answered = await upstream.resolve(name, qtype, CLASS_IN, do=True, cd=True)
    try:
        return result_of(name, qtype, CLASS_IN, answered)
    except WireError as err:
        raise BogusAnswer(f"an upstream's reply for {dnsname.to_text(name)} cannot be read: {err}") from None


class ValidatingUpstream:
    """A forwarder whose answers are validated here (an :class:`~blockdns.resolve.upstream.Upstream`)."""

    def __init__(self, inner: Upstream, validator: Validator) -> None:
        self.inner = inner
        self.validator = validator

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def resolve(self, qname: bytes, qtype: int, qclass: int, *, do: bool, cd: bool) -> UpstreamResult:
        answered = await self.inner.resolve(qname, qtype, qclass, do=True, cd=True)
        try:
            result = result_of(qname, qtype, qclass, answered)
        except WireError as err:
            raise BogusAnswer(f"the upstream's reply cannot be read: {err}", EDE_OTHER) from None
        if cd:
            return UpstreamResult(_without_ad(parsed_response(result, do=do)), answered.server)
        verdict = await self.validator.validate(result)
        if verdict.bogus:
            raise BogusAnswer(f"DNSSEC bogus: {verdict.reason}", verdict.ede or EDE_OTHER)
        parsed = with_verdict(parsed_response(result, do=do), verdict)
        return UpstreamResult(parsed, answered.server, verdict.security, verdict.reason)


class UntrustedAd:
    """A forwarder whose AD bit is dropped: a ``dnssec = false`` forward zone behind a validating resolver
    (its data is not validated, so it is never marked authentic)."""

    def __init__(self, inner: Upstream) -> None:
        self.inner = inner

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def resolve(self, qname: bytes, qtype: int, qclass: int, *, do: bool, cd: bool) -> UpstreamResult:
        answered = await self.inner.resolve(qname, qtype, qclass, do=do, cd=cd)
        if not answered.response.reply.flags & AD:
            return answered
        return UpstreamResult(_without_ad(answered.response), answered.server)


def _without_ad(parsed: ParsedResponse) -> ParsedResponse:
    if not parsed.reply.flags & AD:
        return parsed
    return replace(parsed, reply=replace(parsed.reply, flags=parsed.reply.flags & ~AD))
