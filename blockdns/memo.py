"""A bounded memo in two generations: what is asked again stays, a flood of one-off keys passes through.

A memo that is cleared when full forgets its hot keys along with the flood that filled it: random names
(a cache-miss load, random subdomains under a blocked domain) cleared the question memo every 65,536 new
packets. Here the memo is the current generation (the dict itself, so that a hit is one C-level subscript)
and an older one: a key missing from the current generation is looked up in the older one and brought
back; when the current generation is full it becomes the older one and the older one is forgotten. So
every key used at least once per generation stays, memory is bounded by ``limit`` entries, and a hit costs
what a dict lookup costs: no reordering per use, as an LRU would need (the scheme of
:class:`blockdns.server.ratelimit.Buckets`).
"""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TwoGenerations(dict[K, V], Generic[K, V]):
    """``memo.get(key)`` reads the current generation only (the fast path); :meth:`recall` also brings a key
    back from the older one; :meth:`remember` stores. At most ``limit`` entries in both together."""

    __slots__ = ("generation_size", "older")

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.generation_size = max(1, limit // 2)
        self.older: dict[K, V] = {}

    def recall(self, key: K) -> V | None:
        value = self.get(key)
        if value is None:
            value = self.older.pop(key, None)
            if value is not None:
                self.remember(key, value)
        return value

    def remember(self, key: K, value: V) -> None:
        if len(self) >= self.generation_size:
            self.older = dict(self)
            self.clear()
        self[key] = value

    def entries(self) -> int:
        return len(self) + len(self.older)
