"""The answer cache: complete replies keyed by (name, type, class, DO, CD), LRU-bounded.

Positive replies live as long as their smallest TTL; negative replies as RFC 2308 says (the SOA's TTL and
MINIMUM, capped). TTLs count down in what is served. Replies do not depend on the client's group, so one
cache serves every group; the blocking decision is taken before (the name) and after (CNAMEs and
addresses) the cache, per group.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

from blockdns.ops.stats import ServerStats
from blockdns.policy import Decision
from blockdns.resolve.base import Answer, Next, Outcome, Query
from blockdns.wire import Reply

CacheKey = tuple[bytes, int, int, int, bool]


@dataclass(slots=True)
class CacheEntry:
    reply: Reply
    stored: float  # time.monotonic() when stored
    expires: float
    cnames: tuple[str, ...]
    addresses: tuple[str, ...]
    upstream: str | None
    # Inspection verdicts per group name, valid for one policy generation (hot-path memo).
    verdict_generation: int = -1
    verdicts: dict[str, Decision | None] = field(default_factory=dict)


class AnswerCache:
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.entries: OrderedDict[CacheKey, CacheEntry] = OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: CacheKey, now: float) -> CacheEntry | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.expires <= now:
            del self.entries[key]
            return None
        self.entries.move_to_end(key)
        return entry

    def put(self, key: CacheKey, answer: Answer, now: float) -> None:
        if self.max_entries <= 0 or answer.ttl <= 0:
            return
        self.entries[key] = CacheEntry(
            reply=answer.reply,
            stored=now,
            expires=now + answer.ttl,
            cnames=answer.cnames,
            addresses=answer.addresses,
            upstream=answer.upstream,
        )
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
            self.evictions += 1

    def clear(self) -> None:
        self.entries.clear()


class CacheHandler:
    name = "cache"

    def __init__(self, cache: AnswerCache, stats: ServerStats) -> None:
        self.cache = cache
        self.stats = stats

    async def handle(self, query: Query, next_handler: Next) -> Answer:
        key = query.cache_key
        now = time.monotonic()
        entry = self.cache.get(key, now)
        if entry is not None:
            self.stats.cache_hits += 1
            return Answer(
                Outcome.CACHED,
                entry.reply,
                age=int(now - entry.stored),
                upstream=entry.upstream,
                cnames=entry.cnames,
                addresses=entry.addresses,
            )
        self.stats.cache_misses += 1
        answer = await next_handler(query)
        if answer.outcome is Outcome.RESOLVED:
            self.cache.put(key, answer, time.monotonic())
        return answer
