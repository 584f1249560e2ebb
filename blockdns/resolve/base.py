"""The types every handler shares: the frozen :class:`Query`, the :class:`Answer` with its typed
:class:`Outcome` and reason, and the :class:`Handler` protocol.

A handler receives the query and the rest of the chain; it answers itself or calls ``next_handler``. The
outcome and reason set here are what the EDE text, the query log and the metrics all read.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from blockdns.policy import Decision, GroupPolicy
from blockdns.wire import Reply


class Outcome(enum.Enum):
    RESOLVED = "resolved"  # answered by an upstream or by recursion just now
    CACHED = "cached"  # answered from the cache
    BLOCKED = "blocked"  # policy said no
    LOCAL = "local"  # answered by blockdns itself (bypass-protection canaries)
    REFUSED = "refused"  # the client is not allowed to use this resolver
    ERROR = "error"  # nothing usable could be had: SERVFAIL


@dataclass(frozen=True, slots=True)
class Query:
    """One client question. Never mutated: a handler that needs another question builds a new Query."""

    id: int
    flags: int
    qname: str  # normalised text, "" when the name holds bytes no host name has
    qname_wire: bytes  # lowercase wire form: the cache and memo key
    question: bytes  # the question section exactly as the client sent it (case preserved, 0x20 safe)
    qtype: int
    qclass: int
    payload: int  # the client's EDNS UDP size; 0 when it sent no OPT record
    do: int  # the DNSSEC OK bit (0 or 0x8000)
    client: str
    transport: str  # "udp" or "tcp"
    group: GroupPolicy
    received: float  # loop.time() when the query arrived

    @property
    def cd(self) -> bool:
        return bool(self.flags & 0x0010)

    @property
    def cache_key(self) -> tuple[bytes, int, int, int, bool]:
        return (self.qname_wire, self.qtype, self.qclass, self.do, self.cd)


@dataclass(frozen=True, slots=True)
class Answer:
    outcome: Outcome
    reply: Reply
    age: int = 0  # seconds since the reply was stored (TTLs count down by this much)
    reason: str | None = None  # the why, in words: EDE text, log and metrics read it
    decision: Decision | None = None  # for BLOCKED (and for an allow that mattered)
    upstream: str | None = None  # which server answered, when one did
    ttl: int = 0  # how long the reply may be cached (RESOLVED answers only)
    cnames: tuple[str, ...] = ()  # CNAME/DNAME targets in the answer, for inspection
    addresses: tuple[str, ...] = ()  # A/AAAA addresses in the answer, for range inspection


Next = Callable[[Query], Awaitable[Answer]]


class Handler(Protocol):
    """One link of the chain."""

    name: str

    async def handle(self, query: Query, next_handler: Next) -> Answer: ...


def chain(handlers: Sequence[Handler], last: Next) -> Next:
    """Fold ``handlers`` around ``last`` so that ``handlers[0]`` runs first."""
    call = last
    for handler in reversed(handlers):
        call = _bind(handler, call)
    return call


def _bind(handler: Handler, next_handler: Next) -> Next:
    async def call(query: Query) -> Answer:
        return await handler.handle(query, next_handler)

    return call
