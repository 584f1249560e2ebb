"""The types every handler shares, and the one fold that turns an ordered list of handlers into a chain with
two speeds.

A query is a :class:`Question` (what was asked, parsed once and memoised by the packet bytes after the ID)
asked by a :class:`Client` (who asked, over which transport, and so which policy group), at an instant.
Handlers answer with an :class:`Answer`: a typed :class:`Outcome`, the reply records, and the reason that
the EDE text, the query log and the metrics all read.

Every :class:`Handler` has two methods over the same :class:`Query`:

* ``handle(query)``, a coroutine, the slow path: it may do any work, await the rest of the chain
  (``self.next_handler(query)``), and fill its own memos.
* ``fast(query)``, synchronous, the fast path: it returns exactly the answer ``handle`` would return at this
  moment (going on with ``self.next_fast(query)`` where ``handle`` would go on), or None when it cannot know
  that from its own memos without doing work. It changes nothing (no counting, no memo filling), so a query
  it gives up on can run the slow path from scratch.

:func:`chain` links one ordered list of handlers at both speeds, so a handler added to the chain is on both
paths, and one that has no fast answer (the resolver) sends every query that reaches it to the slow path.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

from blockdns.policy import Decision, GroupPolicy
from blockdns.resolve.upstream import Security
from blockdns.wire import CD, Reply

CacheKey = tuple[bytes, int, int, int, bool]  # (qname wire, qtype, qclass, DO bit, CD bit)

# Transports, as the query log and metrics name them. Every one but UDP carries responses of up to 64 KiB.
UDP, TCP = "udp", "tcp"
TLS, HTTPS = "tls", "https"  # DNS over TLS (RFC 7858) and over HTTPS (RFC 8484)


class Outcome(enum.Enum):
    RESOLVED = "resolved"  # answered by an upstream or by recursion just now
    CACHED = "cached"  # answered from the cache
    STALE = "stale"  # answered from expired cache data because resolution failed or took too long (RFC 8767)
    BLOCKED = "blocked"  # policy said no
    LOCAL = "local"  # answered by blockdns itself: local records, locally served zones, canaries
    REFUSED = "refused"  # the client is not allowed to use this resolver
    ERROR = "error"  # nothing usable could be had: SERVFAIL

    def __init__(self, label: str) -> None:
        # The value again, as a plain attribute: ``.value`` is a property, too slow for once per answer.
        self.label = label


@dataclass(frozen=True, slots=True, eq=False)
class Question:
    """What a client asked, as the server reads it: parsed once, then shared by every query that sends the
    same bytes after the ID."""

    flags: int  # the query's header flags (RD and CD are echoed)
    qname_wire: bytes  # lowercase wire form: the cache and memo key
    qname: str  # normalised text, "" when the name holds bytes no host name has
    raw: bytes  # the question section exactly as the client sent it (case preserved, 0x20 safe)
    qtype: int
    qclass: int
    payload: int  # the client's EDNS UDP size; 0 when it sent no OPT record
    do: int  # the DNSSEC OK bit (0 or 0x8000)
    udp_limit: int  # the largest response this question may get over UDP
    cache_key: CacheKey
    name_type: tuple[bytes, int]  # (qname_wire, qtype): the key of answers that differ by type

    @property
    def cd(self) -> bool:
        return bool(self.flags & CD)


@dataclass(frozen=True, slots=True, eq=False)
class Client:
    """Who asks: an address, the transport it came over, and the policy group that follows from them."""

    address: str
    transport: str  # "udp", "tcp", "tls", "https"
    group: GroupPolicy
    client_id: str | None = None  # the client ID (DoH path, DoT SNI) that chose the group, lowercase


class Query(NamedTuple):
    """One client question at one instant. Immutable; a handler that needs another question builds another
    Query. (A tuple, because the fast path builds one per packet.)"""

    question: Question
    client: Client
    received: float  # time.monotonic() when the packet arrived: the fast path's "now"


@dataclass(frozen=True, slots=True, eq=False)
class Answer:
    """What the chain answers. Compared by identity: a memo may key on the very answer a cache holds."""

    outcome: Outcome
    reply: Reply
    reason: str | None = None  # the why, in words: EDE text, log and metrics read it
    decision: Decision | None = None  # for BLOCKED (and for an allow that mattered)
    upstream: str | None = None  # which server answered, when one did
    stored: float | None = None  # time.monotonic() when cached: served TTLs count down from it
    ttl: int = 0  # how long the reply may be cached (RESOLVED), or was cached for (CACHED)
    cnames: tuple[str, ...] = ()  # CNAME/DNAME targets in the answer, for inspection
    addresses: tuple[str, ...] = ()  # A/AAAA addresses in the answer, for range inspection
    security: Security = Security.INDETERMINATE  # DNSSEC status of the data, kept with it in the cache

    def cached(self, now: float) -> Answer:
        """This resolved answer as the cache serves it from ``now`` on."""
        # Built field by field: dataclasses.replace costs several times as much, once per cache miss.
        return Answer(
            Outcome.CACHED,
            self.reply,
            self.reason,
            self.decision,
            self.upstream,
            now,
            self.ttl,
            self.cnames,
            self.addresses,
            self.security,
        )


Next = Callable[[Query], Awaitable[Answer]]
FastNext = Callable[[Query], "Answer | None"]


class Handler:
    """One link of the chain, with its slow and its fast step (see the module docstring).

    :func:`chain` tells each handler where the chain goes on, at each speed: ``next_handler`` and
    ``next_fast``. (Attributes rather than arguments: on the fast path a link then costs one call, not two.)
    A handler belongs to the one chain of its generation.
    """

    name: ClassVar[str]
    next_handler: Next  # the rest of the chain, slow path
    next_fast: FastNext  # the rest of the chain, fast path

    def handle(self, query: Query) -> Awaitable[Answer]:
        """The slow step: a coroutine function, or (a link that only looks and goes on) a plain function
        that returns the rest of the chain's awaitable, or :func:`ready` with its own answer — so a cache
        miss does not pay for a frame per link that would only await the next one."""
        raise NotImplementedError

    def fast(self, query: Query) -> Answer | None:
        raise NotImplementedError


def chain(handlers: Sequence[Handler]) -> tuple[Next, FastNext]:
    """Link ``handlers`` in order (``handlers[0]`` runs first; the last one answers without going on) and
    return the chain's slow entry point and its fast one."""
    if not handlers:
        raise ValueError("a chain needs at least one handler")
    for handler, following in zip(handlers, [*handlers[1:], None], strict=True):
        if hasattr(handler, "next_handler"):
            raise ValueError(f"handler {handler.name!r} is already in a chain")
        handler.next_handler = following.handle if following is not None else _end_of_chain
        handler.next_fast = following.fast if following is not None else _no_fast_answer
    return handlers[0].handle, handlers[0].fast


async def ready(answer: Answer) -> Answer:
    """An answer a plain ``handle`` gives itself, as the awaitable it must return."""
    return answer


async def _end_of_chain(query: Query) -> Answer:
    raise RuntimeError("the handler chain ended without an answer")


def _no_fast_answer(query: Query) -> Answer | None:
    return None
