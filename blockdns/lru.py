"""One bounded, expiring map for every cache that needs one (the answer cache, the recursion cache).

Each value is served until the instant it was stored with and forgotten when read after it — or, when it
was stored with a later ``keep`` instant, kept until then for :meth:`ExpiringLRU.get_kept` (the answer
cache's stale data and prefetch window) but still never returned by :meth:`ExpiringLRU.get`. Past
``max_entries`` the least recently used entry goes first, kept or not. Time is passed in, so this module
never reads a clock and its users decide which clock they count in.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class ExpiringLRU(Generic[K, V]):
    __slots__ = ("_items", "evictions", "max_entries")

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        # key -> (served until, kept until, value)
        self._items: OrderedDict[K, tuple[float, float, V]] = OrderedDict()
        self.evictions = 0  # live entries pushed out by newer ones (expired ones do not count)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K, now: float) -> V | None:
        """The live value for ``key`` (marked as just used), or None; one past its keep instant is dropped."""
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= now:
            if item[1] <= now:
                del self._items[key]
            return None
        self._items.move_to_end(key)
        return item[2]

    def get_kept(self, key: K, now: float) -> tuple[float, V] | None:
        """``(served until, value)`` for ``key`` while it is kept, live or not (marked as just used), or
        None; one past its keep instant is dropped."""
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] <= now:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return item[0], item[2]

    def peek(self, key: K) -> tuple[float, V] | None:
        """``(expires, value)`` whether or not it has expired, without marking it used."""
        item = self._items.get(key)
        return (item[0], item[2]) if item is not None else None

    def put(self, key: K, value: V, expires: float, keep: float | None = None) -> None:
        """Store ``value``, served until ``expires`` and kept until ``keep`` (default: ``expires``)."""
        if self.max_entries <= 0:
            return
        items = self._items
        items[key] = (expires, expires if keep is None or keep < expires else keep, value)
        items.move_to_end(key)
        while len(items) > self.max_entries:
            items.popitem(last=False)
            self.evictions += 1

    def clear(self) -> None:
        self._items.clear()
