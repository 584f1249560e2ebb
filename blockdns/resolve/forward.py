"""Forward mode: ask the configured upstreams in order, ask again when a reply is late, fail over on errors.

A resolution starts with the first healthy upstream. When no reply has come within that upstream's
retransmission timeout (its smoothed RTT plus four deviations, at least 0.2 s: :mod:`blockdns.resolve.rtt`;
an upstream not heard from yet gets Unbound's 376 ms), the question goes out again with a fresh ID and
source port: to the next upstream if one is left, else once more to one already asked (at most
``MAX_REPEATS`` times per resolution, and never over TCP, which retransmits by itself). Each late wait
doubles that upstream's timeout until a reply brings it back (RFC 6298). Every query in flight keeps
listening and the first usable reply wins; the transport still checks each reply against the address it
was sent to, its ID and its question. An upstream has ``timeout`` from its first query to answer, the
resolution ``total_timeout``.

An upstream that failed (a network error, no reply in its time, SERVFAIL or REFUSED, a reply that matches
our question but cannot be parsed, or silence while another upstream answered) is tried after the healthy
ones for a while (``FAILURE_HOLD`` seconds), so one dead upstream does not cost every query its timeout.
When every upstream fails, the error with the most telling EDE code is raised; the text a client sees names
no upstream (the server's log and query log get the details).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from blockdns.config import Upstream as UpstreamConfig
from blockdns.errors import UpstreamError, WireError
from blockdns.resolve.rtt import RttEstimate
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
INITIAL_RTO = 0.376  # an upstream not heard from yet (Unbound's UNKNOWN_SERVER_NICENESS)
MAX_REPEATS = 2  # queries per resolution sent again to an upstream already asked


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
        self._rtt = {upstream: RttEstimate(min(INITIAL_RTO, timeout)) for upstream in upstreams}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _ordered(self, now: float) -> list[UpstreamConfig]:
        healthy = [u for u in self.upstreams if now - self._failed_at.get(u, -FAILURE_HOLD) >= FAILURE_HOLD]
        return healthy + [u for u in self.upstreams if u not in healthy]

    def retransmission_timeout(self, upstream: UpstreamConfig) -> float:
        return self._rtt[upstream].rto

    async def resolve(self, qname: bytes, qtype: int, qclass: int, *, do: bool, cd: bool) -> UpstreamResult:
        return await _Resolution(self, qname, qtype, qclass, do=do, cd=cd).run()

    # ------------------------------------------------------------------- what a resolution reports

    def _replied(self, upstream: UpstreamConfig, rtt: float) -> None:
        self._rtt[upstream].observe(rtt, self.timeout)
        self._failed_at.pop(upstream, None)

    def _late(self, upstream: UpstreamConfig) -> None:
        self._rtt[upstream].back_off(self.timeout)

    def _failed(self, upstream: UpstreamConfig, now: float) -> None:
        self._failed_at[upstream] = now

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
            raise UpstreamError(
                f"malformed reply from {upstream}: {err}", EDE_OTHER, client_text=f"malformed reply: {err}"
            ) from None
        return UpstreamResult(response, str(upstream))


@dataclass(frozen=True, slots=True)
class _Flight:
    upstream: UpstreamConfig
    sent: float


def _settle(task: asyncio.Task[UpstreamResult]) -> None:
    if not task.cancelled():
        task.exception()  # a flight that failed after the race was decided: nothing to report


class _Resolution:
    """One question's queries to the upstreams, as the module docstring tells."""

    def __init__(
        self, forwarder: Forwarder, qname: bytes, qtype: int, qclass: int, *, do: bool, cd: bool
    ) -> None:
        self.forwarder = forwarder
        self.question = (qname, qtype, qclass)
        self.do, self.cd = do, cd
        self.loop = asyncio.get_running_loop()
        now = self.loop.time()
        self.deadline = now + forwarder.total_timeout
        self.waiting = forwarder._ordered(now)  # not asked yet, best first
        self.time_up: dict[UpstreamConfig, float] = {}  # asked, in order: when its time to answer is up
        self.flights: dict[asyncio.Task[UpstreamResult], _Flight] = {}
        self.last: UpstreamConfig | None = None  # asked most recently: the retransmission timer is its
        self.repeats = 0
        self.errors: list[UpstreamError] = []
        self.fallback: UpstreamResult | None = None  # the first SERVFAIL or REFUSED reply

    async def run(self) -> UpstreamResult:
        try:
            retransmit_at = self._ask_next(self.loop.time())
            while self.flights:
                wait = None if retransmit_at is None else max(0.0, retransmit_at - self.loop.time())
                done, _ = await asyncio.wait(self.flights, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                now = self.loop.time()
                for task in done:
                    result = self._landed(task, now)
                    if result is not None:
                        return result
                if not self.flights:  # every query so far has failed: the next upstream, at once
                    retransmit_at = self._ask_next(now)
                elif retransmit_at is not None and now >= retransmit_at:
                    retransmit_at = self._retransmit(now)
            return self._give_up()
        finally:
            for task in self.flights:
                task.cancel()
                task.add_done_callback(_settle)

    def _send(self, upstream: UpstreamConfig, now: float) -> float:
        """Query ``upstream``; returns when to ask again if no reply has come."""
        forwarder = self.forwarder
        time_up = self.time_up.setdefault(upstream, min(now + forwarder.timeout, self.deadline))
        flight = forwarder._ask(upstream, *self.question, time_up - now, self.do, self.cd)
        self.flights[self.loop.create_task(flight)] = _Flight(upstream, now)
        self.last = upstream
        return now + forwarder.retransmission_timeout(upstream)

    def _ask_next(self, now: float) -> float | None:
        if not self.waiting or now >= self.deadline:
            return None
        return self._send(self.waiting.pop(0), now)

    def _retransmit(self, now: float) -> float | None:
        """No reply within the retransmission timeout: ask the next upstream, or one already asked again."""
        forwarder = self.forwarder
        if self.last is not None:
            forwarder._late(self.last)
        if self.waiting and now < self.deadline:
            forwarder.stats.retransmits += 1
            return self._send(self.waiting.pop(0), now)
        if self.repeats >= MAX_REPEATS:
            return None
        for upstream, time_up in self.time_up.items():
            asking = any(flight.upstream == upstream for flight in self.flights.values())
            if upstream.protocol == "udp" and time_up > now and asking:
                self.repeats += 1
                forwarder.stats.retransmits += 1
                return self._send(upstream, now)
        return None

    def _landed(self, task: asyncio.Task[UpstreamResult], now: float) -> UpstreamResult | None:
        """A query is done: its result if it is the answer, else None (and the failure noted)."""
        flight = self.flights.pop(task)
        forwarder, upstream = self.forwarder, flight.upstream
        try:
            result = task.result()
        except UpstreamError as err:
            forwarder._failed(upstream, now)
            self.errors.append(err)
            return None
        if result.response.rcode in (SERVFAIL, REFUSED):
            forwarder._failed(upstream, now)
            self.fallback = self.fallback or result
            return None
        forwarder._replied(upstream, now - flight.sent)
        for other in self.time_up:  # asked earlier and still silent: failed, as a timeout would say
            if other != upstream and any(f.upstream == other for f in self.flights.values()):
                forwarder._failed(other, now)
        return result

    def _give_up(self) -> UpstreamResult:
        if self.fallback is not None:
            return self.fallback  # every upstream answered, none usefully: pass the first such answer on
        errors = self.errors
        if not errors:
            raise UpstreamError("no upstream answered in time", EDE_NO_REACHABLE_AUTHORITY)
        network = any(e.ede_code == EDE_NETWORK_ERROR for e in errors)
        code = EDE_NETWORK_ERROR if network else errors[0].ede_code
        client_text = "; ".join(dict.fromkeys(e.client_text for e in errors))
        raise UpstreamError("; ".join(str(e) for e in errors), code, client_text=client_text)
