"""Forward mode: ask the configured upstreams in order, ask again when a reply is late, fail over on errors.

A resolution starts with the first healthy upstream. When no reply has come within that upstream's
retransmission timeout (its smoothed RTT plus four deviations, at least 0.2 s: :mod:`blockdns.resolve.rtt`;
an upstream not heard from yet gets Unbound's 376 ms), the question goes out again with a fresh ID and
source port: to the next upstream if one is left and healthy, else once more to one already asked (at
most ``MAX_REPEATS`` times per resolution, and never over TCP, TLS or HTTPS, which retransmit by
themselves). A late reply doubles that upstream's timeout (once for queries that were late together) until
a reply brings it back (RFC 6298). Every query in flight keeps listening and the first usable reply wins;
the transport still checks each reply against the address it was sent to, its ID and its question. An
upstream has ``timeout`` from its first query to answer, the resolution ``total_timeout``.

An upstream that failed (a network error, no reply in its time, SERVFAIL or REFUSED, a reply that matches
our question but cannot be parsed, or silence while another upstream answered) is tried after the healthy
ones for a while (``FAILURE_HOLD`` seconds), so one dead upstream does not cost every query its timeout.
When every upstream fails, the error with the most telling EDE code is raised; the text a client sees names
no upstream (the server's log and query log get the details).

Upstreams of every kind take part alike: ``udp://`` through a pool of connected sockets
(:mod:`blockdns.resolve.udppool`), ``tcp://`` a connection per query, ``tls://`` pipelined on a few
persistent TLS connections (:mod:`blockdns.resolve.dot`) and ``https://`` as HTTP/2 streams
(:mod:`blockdns.resolve.doh`). A certificate that fails verification is a network error like any other:
the upstream is held, the next one asked, and with none left the client gets SERVFAIL, never an answer.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from blockdns.config import Upstream as UpstreamConfig
from blockdns.errors import UpstreamError, WireError
from blockdns.resolve.rtt import RttEstimate
from blockdns.resolve.transport import Outgoing, TransportStats, tcp_query
from blockdns.resolve.udppool import PooledQuery, UdpPool
from blockdns.resolve.upstream import UpstreamResult
from blockdns.wire import (
    EDE_NETWORK_ERROR,
    EDE_NO_REACHABLE_AUTHORITY,
    EDE_OTHER,
    REFUSED,
    SERVFAIL,
    is_truncated,
    parse_reply,
)

if TYPE_CHECKING:  # the encrypted transports are loaded at the first query to a tls:// or https:// upstream
    from blockdns.resolve.doh import DohClient
    from blockdns.resolve.dot import DotPool
    from blockdns.resolve.encrypted import TlsSetup

FAILURE_HOLD = 30.0
INITIAL_RTO = 0.376  # an upstream not heard from yet (Unbound's UNKNOWN_SERVER_NICENESS)
MAX_REPEATS = 2  # queries per resolution sent again to an upstream already asked
_SLACK = 0.002  # a timer may fire this much early (uvloop counts milliseconds)


class _Upstream:
    """One configured upstream and what the forwarder has learnt about it."""

    __slots__ = ("config", "encrypted", "failed_at", "host", "name", "over_udp", "pool", "port", "rtt")

    def __init__(self, config: UpstreamConfig, timeout: float) -> None:
        self.config = config
        self.host, self.port, self.name = config.host, config.port, str(config)
        self.over_udp = config.protocol == "udp"
        self.rtt = RttEstimate(min(INITIAL_RTO, timeout))
        self.failed_at = -math.inf
        self.pool: UdpPool | None = None  # made at the first UDP query, inside the event loop
        self.encrypted: DotPool | DohClient | None = None  # tls, https: made at the first query

    def udp_pool(self, stats: TransportStats) -> UdpPool:
        pool = self.pool
        if pool is None:
            pool = self.pool = UdpPool(self.host, self.port, stats)
        return pool

    def stream_query(
        self, forwarder: Forwarder, build: Callable[[int | None], Outgoing], timeout: float
    ) -> Coroutine[Any, Any, bytes]:
        """The query over TCP (a UDP upstream's after a truncated reply), TLS or HTTPS: a coroutine that
        keeps its own time."""
        protocol = self.config.protocol
        if protocol in ("udp", "tcp") or forwarder.tls is None:
            return tcp_query(self.host, self.port, build(None), timeout, forwarder.stats)
        client = self.encrypted
        if client is None:
            tls, stats, connect = forwarder.tls, forwarder.stats, forwarder.timeout
            if protocol == "tls":
                from blockdns.resolve.dot import DotPool

                client = DotPool(self.config, tls.dot_context, tls.bootstrap, stats, connect_timeout=connect)
            else:
                from blockdns.resolve.doh import DohClient

                context = tls.doh_context()
                client = DohClient(self.config, context, tls.bootstrap, stats, connect_timeout=connect)
            self.encrypted = client
        return client.query(build, timeout)

    def held(self, now: float) -> bool:
        return now - self.failed_at < FAILURE_HOLD


class Forwarder:
    def __init__(
        self,
        upstreams: list[UpstreamConfig],
        *,
        timeout: float,
        total_timeout: float,
        stats: TransportStats | None = None,
        tls: TlsSetup | None = None,
    ) -> None:
        """``tls``: the contexts and bootstrap of the tls:// and https:// upstreams (required with any)."""
        if not upstreams:
            raise ValueError("forward mode needs at least one upstream")
        if tls is None and any(upstream.protocol in ("tls", "https") for upstream in upstreams):
            raise ValueError("tls:// and https:// upstreams need a TlsSetup")
        self.tls = tls
        self.upstreams = upstreams
        self.timeout = timeout
        self.total_timeout = total_timeout
        self.stats = stats if stats is not None else TransportStats()
        self._upstreams = [_Upstream(config, timeout) for config in upstreams]

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for upstream in self._upstreams:
            if upstream.pool is not None:
                upstream.pool.close()
            if upstream.encrypted is not None:
                await upstream.encrypted.close()

    def _ordered(self, now: float) -> list[_Upstream]:
        held = [u for u in self._upstreams if u.held(now)]
        if not held:  # the common case: the configured order
            return self._upstreams.copy()
        return [u for u in self._upstreams if u not in held] + held

    def retransmission_timeout(self, config: UpstreamConfig) -> float:
        return next(u.rtt.rto for u in self._upstreams if u.config == config)

    def resolve(
        self, qname: bytes, qtype: int, qclass: int, *, do: bool, cd: bool
    ) -> Coroutine[Any, Any, UpstreamResult]:
        return _Resolution(self, qname, qtype, qclass, do=do, cd=cd).run()


class _Pending(Protocol):
    """A query in flight as the resolution reads it: a TCP query's task, or a pooled UDP query."""

    def done(self) -> bool: ...

    def result(self) -> bytes: ...


@dataclass(slots=True)
class _Flight:
    """One query of a resolution in flight: to whom, when, until when, and over what."""

    upstream: _Upstream
    sent: float
    time_up: float
    udp: PooledQuery | None  # None: over TCP, a task of its own that keeps its own time


class _Resolution:
    """One question's queries to the upstreams, as the module docstring tells.

    UDP queries wait for their replies without a task or a future each (:class:`PooledQuery`, on a socket
    of the upstream's pool, :mod:`blockdns.resolve.udppool`, which calls :meth:`_wake` when the reply
    comes); the resolution sleeps on one future, woken by whichever comes first: a reply, an upstream's
    time being up, or the retransmission timer. So the common case, a reply before the timer, costs what a
    single query costs."""

    __slots__ = (
        "_waker",
        "cd",
        "deadline",
        "do",
        "errors",
        "fallback",
        "flights",
        "forwarder",
        "last",
        "loop",
        "qclass",
        "qname",
        "qtype",
        "repeats",
        "stats",
        "time_up",
        "waited",
        "waiting",
    )

    def __init__(
        self, forwarder: Forwarder, qname: bytes, qtype: int, qclass: int, *, do: bool, cd: bool
    ) -> None:
        self.forwarder, self.stats = forwarder, forwarder.stats
        self.qname, self.qtype, self.qclass = qname, qtype, qclass
        self.do, self.cd = do, cd
        self.loop = asyncio.get_running_loop()
        now = self.loop.time()
        self.deadline = now + forwarder.total_timeout
        self.waiting = forwarder._ordered(now)  # not asked yet, best first
        self.time_up: dict[_Upstream, float] = {}  # asked, in order: when its time to answer is up
        self.flights: dict[_Pending, _Flight] = {}
        self.last: _Upstream | None = None  # asked most recently: the retransmission timer is its
        self.waited = 0.0  # the retransmission timeout that timer was set to
        self.repeats = 0
        self.errors: list[UpstreamError] = []
        self.fallback: UpstreamResult | None = None  # the first SERVFAIL or REFUSED reply
        self._waker: asyncio.Future[None] | None = None

    async def run(self) -> UpstreamResult:
        loop, flights = self.loop, self.flights
        try:
            retransmit_at = self._ask_next(loop.time())
            while flights:
                for future in flights:
                    if future.done():
                        break
                else:
                    waker, timer = self._arm(retransmit_at)
                    try:
                        await waker
                    finally:
                        self._waker = None
                        if timer is not None:
                            timer.cancel()
                now = loop.time()
                for future, flight in list(flights.items()):
                    if future.done():
                        result = self._landed(future, flight, now)
                        if result is not None:
                            return result
                    elif flight.udp is not None and flight.time_up <= now + _SLACK:
                        self._expired(future, flight, now)
                if not flights:  # every query so far has failed: the next upstream, at once
                    retransmit_at = self._ask_next(now)
                elif retransmit_at is not None and now + _SLACK >= retransmit_at:
                    retransmit_at = self._retransmit(now)
            return self._give_up()
        finally:
            for future, flight in flights.items():
                _abandon(future, flight)

    # ------------------------------------------------------------------------------------ waiting

    def _wake(self, _: object = None) -> None:
        waker = self._waker
        if waker is not None and not waker.done():
            waker.set_result(None)

    def _arm(self, retransmit_at: float | None) -> tuple[asyncio.Future[None], asyncio.TimerHandle | None]:
        """The future to sleep on until a flight lands, a UDP query's time is up, or ``retransmit_at``, and
        the timer that wakes it at the earliest of those times (to be cancelled after the sleep). Not a
        coroutine of its own: a frame less for every resolution."""
        wake_at = math.inf if retransmit_at is None else retransmit_at
        for flight in self.flights.values():
            if flight.udp is not None and flight.time_up < wake_at:
                wake_at = flight.time_up
        waker = self._waker = self.loop.create_future()
        return waker, self.loop.call_at(wake_at, self._wake) if wake_at < math.inf else None

    # ------------------------------------------------------------------------------------ sending

    def _send(self, upstream: _Upstream, now: float, *, tcp: bool = False) -> float | None:
        """Query ``upstream``; when to ask again if no reply has come (None: the query could not go out)."""
        forwarder = self.forwarder
        time_up = self.time_up.setdefault(upstream, min(now + forwarder.timeout, self.deadline))
        pending: _Pending
        udp = None
        if upstream.over_udp and not tcp:
            try:
                pending = udp = upstream.udp_pool(self.stats).query(self._outgoing, self._wake)
            except UpstreamError as err:
                self._failed(upstream, err, now)
                return None
        else:
            timeout = max(time_up - now, forwarder.timeout / 2) if tcp else time_up - now
            pending = task = self.loop.create_task(upstream.stream_query(forwarder, self._outgoing, timeout))
            task.add_done_callback(self._wake)
        self.flights[pending] = _Flight(upstream, now, time_up, udp)
        self.last, self.waited = upstream, upstream.rtt.rto
        return now + self.waited

    def _outgoing(self, qid: int | None) -> Outgoing:
        return Outgoing.build(self.qname, self.qtype, self.qclass, cd=self.cd, do=self.do, qid=qid)

    def _ask_next(self, now: float) -> float | None:
        while self.waiting and now < self.deadline:
            retransmit_at = self._send(self.waiting.pop(0), now)
            if retransmit_at is not None:
                return retransmit_at
        return None

    def _retransmit(self, now: float) -> float | None:
        """No reply within the retransmission timeout: ask the next upstream if it is healthy, else one
        already asked again (a held upstream is asked only when that cannot be)."""
        if self.last is not None:
            self.last.rtt.back_off(self.waited, self.forwarder.timeout)
        following = self.waiting[0] if self.waiting and now < self.deadline else None
        if following is None or following.held(now):
            again = self._to_ask_again(now)
            if again is not None:
                self.repeats += 1
                self.stats.retransmits += 1
                return self._send(again, now)
        if following is None:
            return None
        self.stats.retransmits += 1
        return self._ask_next(now)

    def _to_ask_again(self, now: float) -> _Upstream | None:
        """The first upstream asked over UDP that is still in time and not yet failed, within the limit."""
        if self.repeats >= MAX_REPEATS:
            return None
        for upstream, time_up in self.time_up.items():
            if time_up > now and any(f.upstream is upstream and f.udp for f in self.flights.values()):
                return upstream
        return None

    # ------------------------------------------------------------------------------------ landing

    def _failed(self, upstream: _Upstream, error: UpstreamError, now: float) -> None:
        upstream.failed_at = now
        self.errors.append(error)

    def _expired(self, future: _Pending, flight: _Flight, now: float) -> None:
        del self.flights[future]
        assert flight.udp is not None
        self._failed(flight.upstream, flight.udp.timed_out(), now)
        flight.udp.close()

    def _landed(self, future: _Pending, flight: _Flight, now: float) -> UpstreamResult | None:
        """A query is done: the result if it is the answer, else None (and the failure noted)."""
        del self.flights[future]
        if flight.udp is not None:
            flight.udp.close()
        upstream = flight.upstream
        try:
            data = future.result()
        except UpstreamError as err:
            self._failed(upstream, err, now)
            return None
        if flight.udp is not None and is_truncated(data):
            self.stats.tcp_fallbacks += 1
            self._send(upstream, now, tcp=True)
            return None
        try:
            response = parse_reply(data, self.qname)
        except WireError as err:
            text = f"malformed reply: {err}"
            self._failed(
                upstream, UpstreamError(f"{text} from {upstream.name}", EDE_OTHER, client_text=text), now
            )
            return None
        if response.rcode in (SERVFAIL, REFUSED):
            upstream.failed_at = now
            self.fallback = self.fallback or UpstreamResult(response, upstream.name)
            return None
        upstream.rtt.observe(now - flight.sent, self.forwarder.timeout)
        upstream.failed_at = -math.inf
        for other in self.time_up:  # asked earlier and still silent: failed, as a timeout would say
            if other is not upstream and any(f.upstream is other for f in self.flights.values()):
                other.failed_at = now
        return UpstreamResult(response, upstream.name)

    def _give_up(self) -> UpstreamResult:
        if self.fallback is not None:
            return self.fallback  # every upstream answered, none usefully: pass the first such answer on
        errors = self.errors
        if not errors:
            raise UpstreamError("no upstream answered in time", EDE_NO_REACHABLE_AUTHORITY)
        network = any(e.ede_code == EDE_NETWORK_ERROR for e in errors)
        code = EDE_NETWORK_ERROR if network else errors[0].ede_code
        message = "; ".join(dict.fromkeys(str(e) for e in errors))  # a repeated query fails alike
        client_text = "; ".join(dict.fromkeys(e.client_text for e in errors))
        raise UpstreamError(message, code, client_text=client_text)


def _abandon(future: _Pending, flight: _Flight) -> None:
    """Stop a query the resolution no longer needs."""
    if flight.udp is not None:
        flight.udp.close()
    elif isinstance(future, asyncio.Future):  # over TCP: a task
        if future.done():
            _settle(future)
        else:
            future.cancel()
            future.add_done_callback(_settle)


def _settle(future: asyncio.Future[bytes]) -> None:
    if not future.cancelled():
        future.exception()  # it failed after the race was decided: nothing to report
