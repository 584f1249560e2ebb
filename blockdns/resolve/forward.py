"""Forward mode: ask the configured upstreams, in order, failing over on timeouts and errors.

An upstream that just failed is tried after the healthy ones for a while (``FAILURE_HOLD`` seconds), so one
dead upstream does not add its timeout to every query. A SERVFAIL or REFUSED reply also moves on to the next
upstream, and so does a reply that matches our question but cannot be parsed; when every upstream fails, the
error with the most telling EDE code is raised.
"""

from __future__ import annotations

import asyncio

from blockdns.config import Upstream as UpstreamConfig
from blockdns.errors import UpstreamError, WireError
from blockdns.resolve.transport import TransportStats, exchange
from blockdns.resolve.upstream import UpstreamResult
from blockdns.wire import (
    EDE_NETWORK_ERROR,
    EDE_NO_REACHABLE_AUTHORITY,
    EDE_OTHER,
    REFUSED,
    SERVFAIL,
    parse_reply,
)

FAILURE_HOLD = 30.0


class Forwarder:
    def __init__(
        self,
        upstreams: list[UpstreamConfig],
        *,
        timeout: float,
        total_timeout: float,
        stats: TransportStats | None = None,
    ) -> None:
        if not upstreams:
            raise ValueError("forward mode needs at least one upstream")
        self.upstreams = upstreams
        self.timeout = timeout
        self.total_timeout = total_timeout
        self.stats = stats if stats is not None else TransportStats()
        self._failed_at: dict[UpstreamConfig, float] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _ordered(self, now: float) -> list[UpstreamConfig]:
        healthy = [u for u in self.upstreams if now - self._failed_at.get(u, -FAILURE_HOLD) >= FAILURE_HOLD]
        return healthy + [u for u in self.upstreams if u not in healthy]

    async def resolve(self, qname: bytes, qtype: int, qclass: int, *, do: bool, cd: bool) -> UpstreamResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.total_timeout
        errors: list[UpstreamError] = []
        fallback: UpstreamResult | None = None
        for upstream in self._ordered(loop.time()):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                result = await self._ask(upstream, qname, qtype, qclass, min(self.timeout, remaining), do, cd)
            except UpstreamError as err:
                self._failed_at[upstream] = loop.time()
                errors.append(err)
                continue
            if result.response.rcode in (SERVFAIL, REFUSED):
                self._failed_at[upstream] = loop.time()
                fallback = fallback or result
                continue
            self._failed_at.pop(upstream, None)
            return result
        if fallback is not None:
            return fallback  # every upstream answered, none usefully: pass the first such answer on
        if not errors:
            raise UpstreamError("no upstream answered in time", EDE_NO_REACHABLE_AUTHORITY)
        code = (
            EDE_NETWORK_ERROR if any(e.ede_code == EDE_NETWORK_ERROR for e in errors) else errors[0].ede_code
        )
        raise UpstreamError("; ".join(str(e) for e in errors), code)

    async def _ask(
        self,
        upstream: UpstreamConfig,
        qname: bytes,
        qtype: int,
        qclass: int,
        timeout: float,
        do: bool,
        cd: bool,
    ) -> UpstreamResult:
        reply = await exchange(
            upstream.host,
            upstream.port,
            qname,
            qtype,
            qclass,
            timeout=timeout,
            stats=self.stats,
            tcp=upstream.protocol == "tcp",
            cd=cd,
            do=do,
        )
        try:
            response = parse_reply(reply.data, qname)
        except WireError as err:
            raise UpstreamError(f"malformed reply from {upstream}: {err}", EDE_OTHER) from None
        return UpstreamResult(response, str(upstream))
