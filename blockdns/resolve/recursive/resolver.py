"""The async driver: runs :class:`~.machine.Resolution` state machines against real servers.

This is the only part of the recursive resolver that does I/O, and it does little: send each
:class:`~.machine.Ask` with :func:`blockdns.resolve.transport.exchange` (random ID and source port, reply
checked against address, port, ID and question, TCP on truncation), run the sub-resolution behind each
:class:`~.machine.NeedAddresses`, and coalesce identical resolutions in flight (:mod:`.flights`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from blockdns import dnsname
from blockdns.config import ResolverSettings
from blockdns.errors import UpstreamError
from blockdns.resolve.dnssec.validator import Validator
from blockdns.resolve.dnssec.work import Verdict, with_verdict
from blockdns.resolve.recursive.cache import RANK_ANSWER, RecursionCache
from blockdns.resolve.recursive.flights import Flights
from blockdns.resolve.recursive.hints import root_hints
from blockdns.resolve.recursive.limits import Budget, Limits
from blockdns.resolve.recursive.machine import Ask, Context, Resolution, Result
from blockdns.resolve.recursive.response import parsed_response
from blockdns.resolve.recursive.servers import ServerTable
from blockdns.resolve.transport import TransportStats, exchange
from blockdns.resolve.upstream import BogusAnswer, UpstreamResult
from blockdns.trustanchors import parse_anchors
from blockdns.wire import (
    CLASS_IN,
    EDE_NO_REACHABLE_AUTHORITY,
    EDE_OTHER,
    TYPE_A,
    TYPE_AAAA,
    TYPE_NS,
)

log = logging.getLogger("blockdns.recursive")

# A waiter gives a flight this much longer than its own deadline, so the flight's precise error (which it
# raises at its deadline) wins over a bare timeout.
_JOIN_GRACE = 0.25
REPRIME_INTERVAL = 60.0  # when the primed root NS set has expired, re-prime at most this often

FlightKey = tuple[bytes, int, int, bool]


@dataclass(slots=True)
class RecursionStats:
    resolutions: int = 0
    failures: int = 0
    queries: int = 0  # sent to authoritative servers (a TCP retry after truncation is inside one)
    bogus: int = 0  # answers DNSSEC validation found bogus
    validation_lookups: int = 0  # DS/DNSKEY lookups the validator asked for (most answered by the cache)


class RecursiveResolver:
    """Iterative resolution from the root servers; implements :class:`blockdns.resolve.upstream.Upstream`."""

    def __init__(
        self,
        settings: ResolverSettings,
        *,
        cache_max_entries: int = 100_000,
        limits: Limits | None = None,
        rng: random.Random | None = None,
        stats: TransportStats | None = None,
    ) -> None:
        self.settings = settings
        self.transport_stats = stats if stats is not None else TransportStats()
        self.cache = RecursionCache(cache_max_entries)
        self.servers = ServerTable(max_timeout=settings.timeout)
        self.context = Context(
            cache=self.cache,
            servers=self.servers,
            hints=root_hints(settings),
            limits=limits or Limits(),
            minimise=settings.qname_minimisation,
            ipv6=settings.ipv6,
            rng=rng or random.Random(),
        )
        self.stats = RecursionStats()
        self.validator = self._validator(settings)
        self._flights: Flights[Result] = Flights()
        self._priming: asyncio.Task[None] | None = None
        self._primed_at: float | None = None

    # ----------------------------------------------------------------------------- Upstream protocol

    async def start(self) -> None:
        """Prime the root NS set (RFC 8109). A failure is logged; resolution then starts from the hints."""
        await self._prime()

    async def resolve(self, qname: bytes, qtype: int, qclass: int, *, do: bool, cd: bool) -> UpstreamResult:
        """Resolve, and validate unless the client set CD (then it gets the data unvalidated, RFC 4035
        §3.2.2). With validation on, authorities are always asked with DO, so the cache holds RRSIGs; they
        are written into the response only for a client that set DO."""
        self._reprime_if_expired()
        self.stats.resolutions += 1
        validator = self.validator
        try:
            result = await self.resolve_result(qname, qtype, qclass, do=do or validator is not None)
            verdict = None if validator is None or cd else await validator.validate(result)
        except UpstreamError:
            self.stats.failures += 1
            raise
        server = f"recursive ({result.server})" if result.server else "recursive (cache)"
        parsed = parsed_response(result, do=do)
        if verdict is None:
            return UpstreamResult(parsed, server)
        if verdict.bogus:
            self.stats.failures += 1
            self.stats.bogus += 1
            raise BogusAnswer(f"DNSSEC bogus: {verdict.reason}", verdict.ede or EDE_OTHER)
        return UpstreamResult(with_verdict(parsed, verdict), server, verdict.security, verdict.reason)

    async def validation_status(self, qname: bytes, qtype: int, qclass: int = CLASS_IN) -> Verdict | None:
        """The validation verdict for a question, for ``blockdns check --dnssec``; None when validation is
        off. Raises UpstreamError when the question cannot be resolved."""
        if self.validator is None:
            return None
        result = await self.resolve_result(qname, qtype, qclass, do=True)
        return await self.validator.validate(result)

    def _validator(self, settings: ResolverSettings) -> Validator | None:
        if not settings.validating():
            return None
        lines = settings.anchor_lines()
        if not lines:
            log.warning(
                "DNSSEC validation is off: custom root_hints and no trust_anchors (a private root has no "
                "IANA key); set resolver.trust_anchors to validate"
            )
            return None
        return Validator(self.validation_fetch, parse_anchors(lines), settings.negative_trust_anchors)

    async def validation_fetch(self, name: bytes, qtype: int) -> Result:
        """A DS or DNSKEY lookup for the validator, through the cache and the flights."""
        self.stats.validation_lookups += 1
        return await self.resolve_result(name, qtype, CLASS_IN, do=True)

    async def close(self) -> None:
        tasks = self._flights.cancel_all()
        if self._priming is not None:
            self._priming.cancel()
            tasks.append(self._priming)  # type: ignore[arg-type]
        await asyncio.gather(*tasks, return_exceptions=True)

    # --------------------------------------------------------------------------------------- running

    async def resolve_result(self, qname: bytes, qtype: int, qclass: int, *, do: bool) -> Result:
        """Resolve one question into a structured :class:`~.machine.Result` (joining an identical one in
        flight). Raises UpstreamError."""
        loop = asyncio.get_running_loop()
        key: FlightKey = (qname, qtype, qclass, do)
        total = self.settings.total_timeout

        def start() -> Coroutine[Any, Any, Result]:
            budget = Budget(loop.time() + total)
            return self._run(Resolution(self.context, budget, qname, qtype, qclass, do=do), key)

        try:
            return await self._flights.join(key, start, waiter=None, timeout=total + _JOIN_GRACE)
        except TimeoutError:
            message = f"resolution timed out after {total:g}s"
            raise UpstreamError(message, EDE_NO_REACHABLE_AUTHORITY) from None

    async def _run(self, machine: Resolution, key: FlightKey) -> Result:
        loop = asyncio.get_running_loop()
        for _ in range(self.context.limits.max_steps + 1):
            action = machine.next_action(loop.time())
            if isinstance(action, Result):
                return action
            if isinstance(action, Ask):
                await self._ask(machine, action)
            else:
                addresses, error = await self._addresses(machine, action.name, key)
                machine.on_addresses(action, addresses, error)
        raise UpstreamError("resolution did not converge", EDE_OTHER)

    async def _ask(self, machine: Resolution, ask: Ask) -> None:
        loop = asyncio.get_running_loop()
        self.stats.queries += 1
        host, port = ask.server
        try:
            reply = await exchange(
                host,
                port,
                ask.qname,
                ask.qtype,
                ask.qclass,
                timeout=ask.timeout,
                stats=self.transport_stats,
                rd=False,
                do=ask.do,
                edns=ask.edns,
            )
        except UpstreamError as err:
            log.debug("%s %s: %s", host, dnsname.to_text(ask.qname), err)
            machine.on_failure(ask, err, loop.time())
        else:
            machine.on_reply(ask, reply.data, reply.rtt, loop.time())

    async def _addresses(
        self, machine: Resolution, name: bytes, waiter: FlightKey
    ) -> tuple[list[str], UpstreamError | None]:
        """Look up an NS name: A first; AAAA only when there is no usable A and IPv6 is on (an IPv4
        address is enough to reach the server, and the second lookup would double the cost)."""
        loop = asyncio.get_running_loop()
        error: UpstreamError | None = None
        for qtype in (TYPE_A, TYPE_AAAA) if self.settings.ipv6 else (TYPE_A,):
            remaining = machine.budget.deadline - loop.time()
            if remaining <= 0:
                break
            key: FlightKey = (name, qtype, CLASS_IN, False)
            sub = machine.address_lookup(name, qtype)
            try:
                result = await self._flights.join(
                    key, functools.partial(self._run, sub, key), waiter=waiter, timeout=remaining
                )
            except UpstreamError as err:
                error = err
                continue
            except TimeoutError:
                message = f"looking up {dnsname.to_text(name)} timed out"
                error = UpstreamError(message, EDE_NO_REACHABLE_AUTHORITY)
                break
            addresses = result.addresses()
            if addresses:
                return addresses, None
        return [], error

    # --------------------------------------------------------------------------------------- priming

    async def _prime(self) -> None:
        loop = asyncio.get_running_loop()
        self._primed_at = loop.time()
        try:
            result = await self.resolve_result(dnsname.ROOT, TYPE_NS, CLASS_IN, do=False)
        except UpstreamError as err:
            log.warning("priming the root servers failed (%s); starting from the root hints", err)
            return
        except Exception:  # start() must not raise: log the bug and carry on with the hints
            log.exception("priming the root servers failed unexpectedly; starting from the root hints")
            return
        names = sum(len(rrset.rdatas) for rrset in result.answer if rrset.rtype == TYPE_NS)
        log.info("primed the root: %d servers, answered by %s", names, result.server)

    def _reprime_if_expired(self) -> None:
        if self.context.hints.pinned or (self._priming is not None and not self._priming.done()):
            return
        now = asyncio.get_running_loop().time()
        if self._primed_at is not None and now - self._primed_at < REPRIME_INTERVAL:
            return
        if self.cache.get_rrset(dnsname.ROOT, TYPE_NS, CLASS_IN, now, min_rank=RANK_ANSWER) is None:
            self._priming = asyncio.create_task(self._prime())
