"""The answer cache: what upstreams said, keyed by (name, type, class, DO, CD), LRU-bounded.

Positive replies live as long as their smallest TTL; negative replies as RFC 2308 says (the SOA's TTL and
MINIMUM, capped). The cache stores each reply as the :class:`Answer` it will serve, stamped with when it was
stored, so TTLs count down at render time and a hit costs no allocation. Replies do not depend on the
client's group, so one cache serves every group; policy is applied before (the name) and after (CNAMEs and
addresses) the cache, per group, by handlers that keep their own memos.

Two things happen past the fast step, on the slow path, which the fast step leaves them to by giving up:

* **Prefetch.** With ``cache.prefetch``, the fast step serves an answer only until the last tenth of its
  TTL. A query in that last tenth (a name asked again: it was asked once to be cached) takes the slow path,
  which answers from the cache as before and starts one background refresh of the entry, so a name asked
  steadily never expires. Answers cached for less than :data:`PREFETCH_MIN_TTL` are never prefetched.
* **Serve-stale** (RFC 8767). With ``cache.serve_stale``, an entry is kept ``stale_max_age`` past its
  expiry, never served as fresh. A query for it starts (or joins) a refresh; when that fails (SERVFAIL, no
  upstream answered) or the client-response timer (:data:`CLIENT_RESPONSE_TIMER`) runs out first, the
  expired data answers with every TTL 30 and EDE 3 (Stale Answer), and a slow refresh goes on in the
  background and fills the cache when it gets its answer. After a failed refresh, stale data answers at
  once for 30 s (:mod:`blockdns.resolve.refresh`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from blockdns.lru import ExpiringLRU
from blockdns.resolve.base import Answer, CacheKey, Handler, Outcome, Query
from blockdns.resolve.refresh import Refreshes
from blockdns.resolve.upstream import Security
from blockdns.wire import EDE_STALE_ANSWER, NOERROR, NXDOMAIN, Reply, ede_option

log = logging.getLogger("blockdns.cache")

CLIENT_RESPONSE_TIMER = 1.8  # RFC 8767 section 5's suggestion: how long a client waits before stale data
STALE_TTL = 30  # RFC 8767 section 4: the TTL of every record in a stale answer
PREFETCH_SHARE = 0.1  # prefetch in the last tenth of an answer's TTL ...
PREFETCH_MIN_TTL = 10  # ... when it was cached for this many seconds or more (else the tenth is under 1 s)
STALE_EDE = ede_option(EDE_STALE_ANSWER)


@dataclass(slots=True)
class CacheCounters:
    """Cache counters, owned by the server (they survive a cache rebuilt by a reload)."""

    hits: int = 0  # answers served from the cache (counted where answers are accounted)
    misses: int = 0  # lookups that found nothing and went on to be resolved (not answered as local zones)
    stale: int = 0  # expired answers served because resolution failed or was too slow (accounted)
    prefetches: int = 0  # background refreshes started for answers in the last tenth of their TTL


class AnswerCache:
    def __init__(self, max_entries: int, *, stale_for: float = 0.0, prefetch: bool = False) -> None:
        self._entries: ExpiringLRU[CacheKey, Answer] = ExpiringLRU(max_entries)
        self.get = self._entries.get  # the answer the fast step may serve, or None: one call on the fast path
        self.stale_for = stale_for  # seconds an expired entry is kept to answer stale; 0: serve-stale is off
        self.prefetch = prefetch
        self.refreshes = Refreshes()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def evictions(self) -> int:
        return self._entries.evictions

    def put(self, key: CacheKey, answer: Answer, now: float) -> None:
        ttl = answer.ttl
        if ttl > 0:
            expires = now + ttl
            fast_until = (
                expires - ttl * PREFETCH_SHARE if self.prefetch and ttl >= PREFETCH_MIN_TTL else expires
            )
            self._entries.put(key, answer.cached(now), fast_until, expires + self.stale_for)

    def kept(self, key: CacheKey, now: float) -> tuple[float, Answer] | None:
        """``(until when the fast step serves it, answer)`` for an entry fresh or kept to answer stale."""
        return self._entries.get_kept(key, now)

    def settle(self, key: CacheKey, answer: Answer) -> None:
        """Let the fast step serve ``answer`` (still cached for ``key``) until it expires: its prefetch
        failed, and the next query should not try again."""
        item = self._entries.peek(key)
        if item is not None and item[1] is answer and answer.stored is not None:
            expires = answer.stored + answer.ttl
            self._entries.put(key, answer, expires, expires + self.stale_for)

    def clear(self) -> None:
        self._entries.clear()


def usable(answer: Answer | None) -> bool:
    """Whether a resolution's answer is one to give rather than stale data: an upstream's NOERROR or
    NXDOMAIN (fresh news beats old), or a verdict that the data is bogus; not SERVFAIL nor silence."""
    if answer is None:
        return False
    if answer.security is Security.BOGUS:
        return True  # never fall back on old data to dodge a validation failure
    return answer.outcome is not Outcome.ERROR and answer.reply.rcode in (NOERROR, NXDOMAIN)


def stale_answer(cached: Answer, reason: str) -> Answer:
    """``cached`` (expired) as RFC 8767 serves it: every TTL 30, EDE 3, no countdown."""
    reply = cached.reply.clamped(STALE_TTL, STALE_TTL)
    return Answer(
        Outcome.STALE,
        Reply(reply.rcode, reply.counts, reply.records, reply.ttl_fields, reply.flags, STALE_EDE),
        reason=reason,
        upstream=cached.upstream,
        cnames=cached.cnames,
        addresses=cached.addresses,
        security=cached.security,
    )


class CacheHandler(Handler):
    name = "cache"

    def __init__(self, cache: AnswerCache, counters: CacheCounters) -> None:
        self.cache = cache
        self.counters = counters

    async def handle(self, query: Query) -> Answer:
        key = query.question.cache_key
        cache = self.cache
        now = time.monotonic()
        kept = cache.kept(key, now)
        if kept is not None:
            fast_until, hit = kept
            assert hit.stored is not None
            if now < hit.stored + hit.ttl:
                if fast_until <= now:  # the last tenth of its TTL: the fast step leaves it to us
                    self._prefetch(query, key, now)
                return hit
            if cache.stale_for:
                return await self._fresh_or_stale(query, key, hit, now)
        answer = await self.next_handler(query)
        if answer.outcome is Outcome.RESOLVED or answer.security is Security.BOGUS:
            cache.put(key, answer, time.monotonic())  # a bogus verdict is held briefly (its ttl)
        if answer.outcome is not Outcome.LOCAL:  # a locally served zone's answer is never cached
            self.counters.misses += 1
        return answer

    def fast(self, query: Query) -> Answer | None:
        hit = self.cache.get(query.question.cache_key, query.received)
        return hit if hit is not None else self.next_fast(query)

    def _prefetch(self, query: Query, key: CacheKey, now: float) -> None:
        refreshes = self.cache.refreshes
        if key in refreshes.running or refreshes.held(key, now):
            return
        if refreshes.start(key, self._refresh(query, key)) is not None:
            self.counters.prefetches += 1

    async def _fresh_or_stale(self, query: Query, key: CacheKey, expired: Answer, now: float) -> Answer:
        """A fresh answer when a refresh of ``key`` gets one within the client-response timer, else the
        expired one served stale (the refresh, if slow, goes on in the background)."""
        refreshes = self.cache.refreshes
        if refreshes.held(key, now):
            return stale_answer(expired, "stale: the last refresh failed")
        task = refreshes.running.get(key) or refreshes.start(key, self._refresh(query, key))
        if task is None:
            return stale_answer(expired, "stale: too many refreshes running")
        done, _ = await asyncio.wait((task,), timeout=CLIENT_RESPONSE_TIMER)
        if not done:
            return stale_answer(expired, "stale: resolution is taking too long")
        answer = None if task.cancelled() else task.result()
        if answer is None or not usable(answer):
            return stale_answer(expired, "stale: resolution failed")
        self.counters.misses += 1  # resolved while the client waited, as a miss is
        return answer

    async def _refresh(self, query: Query, key: CacheKey) -> Answer | None:
        """Resolve ``key`` again and cache what comes back; None when that failed with an exception."""
        cache = self.cache
        try:
            answer: Answer | None = await self.next_handler(query)
        except Exception:
            log.exception("refreshing %s %d failed", query.question.qname, query.question.qtype)
            answer = None
        now = time.monotonic()
        if answer is not None and answer.outcome is Outcome.RESOLVED and answer.ttl > 0:
            cache.put(key, answer, now)
        if usable(answer):
            cache.refreshes.succeeded(key)
        else:
            cache.refreshes.failed(key, now)
            kept = cache.kept(key, now)
            if kept is not None:
                cache.settle(key, kept[1])
        return answer
