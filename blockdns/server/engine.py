"""The engine: the one entry point every transport calls, :meth:`Engine.serve`.

A transport only frames bytes. It hands the engine one query packet, the client's address and its own
name, and gets back one of three things:

* ``bytes``: the response, answered at once by the fast path (or an error response for a bad packet);
* an ``asyncio.Task``: the slow path is working on it; its result is the response, or None for silence;
* ``None``: nothing to send (a packet that deserves silence, or a query dropped because too many are in
  flight, or because its client already has a quarter of ``server.max_inflight``, or because its client
  prefix is over ``[ratelimit]``; each drop is counted).

Both speeds run the same chain of the current :class:`~blockdns.server.generation.Generation`: first its
fast steps (synchronous, memos only); when one of them cannot know the answer, the slow path runs the whole
chain as a task, bounded by ``server.max_inflight`` in all and per client (an IPv4 address or IPv6 /64, so
that one flooding client cannot starve the others). Response codes are decided here at the edge: an
exception in a handler becomes SERVFAIL for that one query, an unparseable query FORMERR or silence, an
oversize UDP answer is truncated with TC=1. An exception on the fast path is logged (rate-limited) and the
query takes the slow path.

The rate limiter (:mod:`blockdns.server.ratelimit`, UDP only) is the first thing here, not a handler in the
chain: it must run before any work is done for a query (the question parse, the client lookup, policy), and
it changes state with every query (a token taken), which a fast step must never do. A limited query is not
answered, logged or counted as a query, only counted as limited: a flood would flood the query log.
With ``client_qps = 0`` there is no limiter and this costs one attribute read.
"""

from __future__ import annotations

import asyncio
import logging
import time

from blockdns.ops.stats import ServerStats
from blockdns.resolve.base import UDP, Answer, Outcome, Query
from blockdns.resolve.resolving import servfail
from blockdns.server.accounting import Accounting
from blockdns.server.clients import client_prefix
from blockdns.server.generation import Generation
from blockdns.server.questions import QuestionMemo, parse_question
from blockdns.server.ratelimit import RateLimiter, truncated_reply
from blockdns.server.ratelog import RateLimitedLog
from blockdns.server.responses import ResponseMemo, render_answer
from blockdns.server.tasks import TaskSet
from blockdns.server.triage import Triage
from blockdns.wire import EDE_OTHER

log = logging.getLogger("blockdns.server")

INTERNAL_ERROR = Answer(Outcome.ERROR, servfail(EDE_OTHER, "internal error"), reason="internal error")

_monotonic = time.monotonic
_new_query = tuple.__new__  # Query(...) through its generated __new__ costs more, once per packet


class Engine:
    def __init__(self, generation: Generation, stats: ServerStats, tasks: TaskSet) -> None:
        self.generation = generation
        self.stats = stats
        self.tasks = tasks
        self.accounting = Accounting(stats)
        self.questions = QuestionMemo()
        self.responses = ResponseMemo()
        self.triage = Triage(stats)
        self._failures = RateLimitedLog(log, interval=10.0)

    def install(self, generation: Generation) -> None:
        """Swap in a new generation (one reference assignment: atomic for every query after it)."""
        self.generation = generation

    def allows(self, address: str) -> bool:
        """Whether ``address`` may use this resolver at all (``server.allow_clients``)."""
        return self.generation.access.allowed(address)

    def serve(
        self, data: bytes, address: str, transport: str, client_id: str | None = None
    ) -> bytes | asyncio.Task[bytes | None] | None:
        """Answer one query packet from ``address`` over ``transport`` (see the module docstring);
        ``client_id``: the name an encrypted transport read (a DoH path, a DoT SNI), which may select the
        client's group."""
        gen = self.generation
        clients = gen.clients[transport if client_id is None else (transport, client_id)]
        received = _monotonic()
        limiter = gen.ratelimit
        if limiter is not None and transport == UDP and not limiter.admit(address, received):
            return self._limited(data, limiter)
        query: Query | None = None
        try:
            question = self.questions[data[2:]]
            if question is not None:
                query = _new_query(Query, (question, clients[address], received))
                answer = gen.fast(query)
                if answer is not None:
                    out = self.responses.render(data, question, answer, received, transport)
                    self.accounting.record(query, answer, 0.0)
                    return out
        except Exception:  # the fast path must never take the server down; the slow path will try
            self._failures.error("fast path failed", exc_info=True)
        if query is None:
            try:
                triaged = self.triage.examine(data)
                clean = triaged.clean
                reread = parse_question(clean) if clean is not None else None
            except Exception:  # a packet nobody foresaw: silence, never a crash
                self.stats.bad_packets += 1
                self._failures.error("triage failed", exc_info=True)
                return None
            if reread is None or clean is None:
                return triaged.response
            data = clean
            query = Query(reread, clients[address], received)
        tasks = self.tasks
        owner = client_prefix(address)
        if tasks.owner_at_share(owner):  # one client may not take every slot from the others
            self.stats.dropped_client_share += 1
            return None
        task = tasks.spawn(self._answer(gen, data, query), owner)
        if task is None:
            self.stats.dropped_overload += 1
        return task

    def _limited(self, data: bytes, limiter: RateLimiter) -> bytes | None:
        """A query over its prefix's rate: the slip (a bare truncated reply) for every ``slip``-th, else
        silence."""
        if limiter.slips():
            try:
                question = self.questions.get(data[2:]) or parse_question(data)
            except Exception:  # a packet nobody foresaw: it is dropped like the others
                self._failures.error("reading a limited query failed", exc_info=True)
                question = None
            if question is not None:  # a query the hand parser does not take is dropped, never triaged
                self.stats.ratelimited_slipped += 1
                return truncated_reply(data, question)
        self.stats.ratelimited_dropped += 1
        return None

    async def _answer(self, gen: Generation, data: bytes, query: Query) -> bytes | None:
        question, client = query.question, query.client
        try:
            answer = await gen.slow(query)
        except Exception:
            self.stats.handler_failures += 1
            log.exception("handler failed for %s %d from %s", question.qname, question.qtype, client.address)
            answer = INTERNAL_ERROR
        now = _monotonic()
        out = render_answer(data, question, answer, now, client.transport)
        self.accounting.record(query, answer, (now - query.received) * 1000)
        return out
