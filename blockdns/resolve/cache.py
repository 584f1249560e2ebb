"""The answer cache: what upstreams said, keyed by (name, type, class, DO, CD), LRU-bounded.

Positive replies live as long as their smallest TTL; negative replies as RFC 2308 says (the SOA's TTL and
MINIMUM, capped). The cache stores each reply as the :class:`Answer` it will serve, stamped with when it was
stored, so TTLs count down at render time and a hit costs no allocation. Replies do not depend on the
client's group, so one cache serves every group; policy is applied before (the name) and after (CNAMEs and
addresses) the cache, per group, by handlers that keep their own memos.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from blockdns.lru import ExpiringLRU
from blockdns.resolve.base import Answer, CacheKey, Handler, Outcome, Query


@dataclass(slots=True)
class CacheCounters:
    """Cache counters, owned by the server (they survive a cache rebuilt by a reload)."""

    hits: int = 0  # answers served from the cache (counted where answers are accounted)
    misses: int = 0  # lookups that found nothing and went on to be resolved (not answered as local zones)


class AnswerCache:
    def __init__(self, max_entries: int) -> None:
        self._entries: ExpiringLRU[CacheKey, Answer] = ExpiringLRU(max_entries)
        self.get = self._entries.get  # the live answer for a key, or None: one call on the fast path

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def evictions(self) -> int:
        return self._entries.evictions

    def put(self, key: CacheKey, answer: Answer, now: float) -> None:
        if answer.ttl > 0:
            self._entries.put(key, answer.cached(now), now + answer.ttl)

    def clear(self) -> None:
        self._entries.clear()


class CacheHandler(Handler):
    name = "cache"

    def __init__(self, cache: AnswerCache, counters: CacheCounters) -> None:
        self.cache = cache
        self.counters = counters

    async def handle(self, query: Query) -> Answer:
        key = query.question.cache_key
        hit = self.cache.get(key, time.monotonic())
        if hit is not None:
            return hit
        answer = await self.next_handler(query)
        if answer.outcome is Outcome.RESOLVED:
            self.cache.put(key, answer, time.monotonic())
        if answer.outcome is not Outcome.LOCAL:  # a locally served zone's answer is never cached
            self.counters.misses += 1
        return answer

    def fast(self, query: Query) -> Answer | None:
        hit = self.cache.get(query.question.cache_key, query.received)
        return hit if hit is not None else self.next_fast(query)
