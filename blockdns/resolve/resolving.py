"""The end of the chain: ask the upstream (forwarder or recursive resolver), coalescing identical questions
in flight, and turn its parsed result into a cacheable :class:`Answer`. A failure becomes SERVFAIL with the
upstream's EDE code — never NXDOMAIN. Nothing here is fast: every query that reaches it takes the slow path.

The cache's TTL rules are applied here, once per resolution: record TTLs held within ``[min_ttl, max_ttl]``,
and a negative answer kept no longer than ``negative_max_ttl`` (RFC 2308).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from blockdns.config import CacheSettings
from blockdns.errors import UpstreamError
from blockdns.resolve.base import Answer, CacheKey, Handler, Outcome, Query
from blockdns.resolve.upstream import BOGUS_HOLD, BogusAnswer, Security, Upstream, UpstreamResult
from blockdns.wire import NOERROR, NXDOMAIN, SERVFAIL, Reply, ede_option


def servfail(code: int, text: str) -> Reply:
    return Reply(rcode=SERVFAIL, counts=(0, 0, 0), ede=ede_option(code, text))


def cache_ttl(result: UpstreamResult, settings: CacheSettings) -> int:
    """How long the answer may be cached: 0 for anything but NOERROR and NXDOMAIN (never a SERVFAIL), or a
    negative answer without a SOA; otherwise its TTL within the configured bounds."""
    response = result.response
    if response.rcode not in (NOERROR, NXDOMAIN) or response.ttl is None:
        return 0
    ttl = min(response.ttl, settings.negative_max_ttl) if response.negative else response.ttl
    return min(max(ttl, settings.min_ttl), settings.max_ttl)


class ResolveHandler(Handler):
    name = "resolve"

    def __init__(
        self, upstream: Upstream, cache: CacheSettings, observe_latency: Callable[[float], None] | None = None
    ) -> None:
        self.upstream = upstream
        self.cache_settings = cache
        self.observe_latency = observe_latency
        # Questions being resolved -> the futures of identical questions waiting for that resolution: a
        # future is made only for a waiter, not for every miss.
        self.inflight: dict[CacheKey, list[asyncio.Future[Answer]]] = {}
        self.coalesced = 0

    def fast(self, query: Query) -> Answer | None:
        return None  # resolving means waiting for the network

    async def handle(self, query: Query) -> Answer:
        key = query.question.cache_key
        inflight = self.inflight
        waiters = inflight.get(key)
        if waiters is not None:
            self.coalesced += 1
            waiter: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
            waiters.append(waiter)  # cancelling it (its client's task) leaves the resolution alone
            return await waiter
        waiters = inflight[key] = []
        try:
            answer = await self._resolve(query)
        except BaseException as err:
            for waiter in waiters:
                if not waiter.done():
                    if isinstance(err, asyncio.CancelledError):
                        waiter.cancel()
                    else:
                        waiter.set_exception(err)
            raise
        finally:
            del inflight[key]
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(answer)
        return answer

    async def _resolve(self, query: Query) -> Answer:
        question = query.question
        started = time.monotonic()
        try:
            result = await self.upstream.resolve(
                question.qname_wire, question.qtype, question.qclass, do=bool(question.do), cd=question.cd
            )
        except BogusAnswer as err:
            reply = servfail(err.ede_code, err.client_text[:200])
            return Answer(Outcome.ERROR, reply, reason=str(err), ttl=BOGUS_HOLD, security=Security.BOGUS)
        except UpstreamError as err:
            return Answer(Outcome.ERROR, servfail(err.ede_code, err.client_text[:200]), reason=str(err))
        finally:
            if self.observe_latency is not None:
                self.observe_latency(time.monotonic() - started)
        settings = self.cache_settings
        response = result.response
        return Answer(
            Outcome.RESOLVED,
            response.reply.clamped(settings.min_ttl, settings.max_ttl),
            upstream=result.server,
            ttl=cache_ttl(result, settings),
            cnames=response.cnames,
            addresses=response.addresses,
            security=result.security,
        )
