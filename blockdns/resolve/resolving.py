"""The end of the chain: ask the upstream (forwarder or recursive resolver), coalescing identical questions
in flight, and turn the response into a cacheable :class:`Answer`. A failure becomes SERVFAIL with the
upstream's EDE code — never NXDOMAIN."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from blockdns.config import CacheSettings
from blockdns.errors import UpstreamError, WireError
from blockdns.resolve.base import Answer, Outcome, Query
from blockdns.resolve.upstream import Upstream
from blockdns.wire import EDE_OTHER, SERVFAIL, Reply, ede_option, parse_reply

log = logging.getLogger(__name__)

Key = tuple[bytes, int, int, int, bool]


def servfail(code: int, text: str) -> Reply:
    return Reply(rcode=SERVFAIL, counts=(0, 0, 0), ede=ede_option(code, text))


class ResolveHandler:
    name = "resolve"

    def __init__(
        self, upstream: Upstream, cache: CacheSettings, observe_latency: Callable[[float], None] | None = None
    ) -> None:
        self.upstream = upstream
        self.cache_settings = cache
        self.observe_latency = observe_latency
        self.inflight: dict[Key, asyncio.Future[Answer]] = {}
        self.coalesced = 0

    async def __call__(self, query: Query) -> Answer:
        key = query.cache_key
        pending = self.inflight.get(key)
        if pending is not None:
            self.coalesced += 1
            return await asyncio.shield(pending)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.inflight[key] = future
        try:
            answer = await self._resolve(query)
            future.set_result(answer)
            return answer
        except BaseException as err:
            future.set_exception(err)
            future.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        finally:
            del self.inflight[key]

    async def _resolve(self, query: Query) -> Answer:
        started = time.monotonic()
        try:
            result = await self.upstream.resolve(
                query.qname_wire, query.qtype, query.qclass, do=bool(query.do), cd=query.cd
            )
        except UpstreamError as err:
            return Answer(Outcome.ERROR, servfail(err.ede_code, str(err)[:200]), reason=str(err))
        finally:
            if self.observe_latency is not None:
                self.observe_latency(time.monotonic() - started)
        settings = self.cache_settings
        try:
            parsed = parse_reply(
                result.data,
                query.qname_wire,
                min_ttl=settings.min_ttl,
                max_ttl=settings.max_ttl,
                negative_max_ttl=settings.negative_max_ttl,
            )
        except WireError as err:
            log.info("unusable reply from %s for %s: %s", result.server, query.qname, err)
            return Answer(
                Outcome.ERROR,
                servfail(EDE_OTHER, f"malformed reply from {result.server}"),
                reason=str(err),
                upstream=result.server,
            )
        cacheable = parsed.rcode in (0, 3)  # NOERROR and NXDOMAIN; never SERVFAIL or REFUSED
        return Answer(
            Outcome.RESOLVED,
            parsed.reply,
            upstream=result.server,
            ttl=parsed.min_ttl if cacheable else 0,
            cnames=parsed.cnames,
            addresses=parsed.addresses,
        )
