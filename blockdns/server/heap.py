"""The cyclic garbage collector, tuned for a server that keeps a large policy and makes many small,
short-lived objects per query.

Measured with bench/miss.py's forwarded-miss load and ``perf`` on the server process (a 100,000-entry
list, 200 queries in flight), the share of CPU in the collector (``gc_collect_main``, ``visit_decref``,
``visit_reachable``, ...):

* CPython's defaults (young generation collected every 700 net allocations): 18%;
* everything alive after loading frozen (``gc.freeze``), thresholds unchanged: 17%;
* young threshold 10,000, nothing frozen: 6%; young threshold 10,000 and frozen: 4%.

The young collections are what cost: a miss makes futures, tasks, coroutine frames and dicts by the dozen,
and with hundreds of queries in flight every young collection walks thousands of live objects and
promotes them, so the older generations are collected often too. A larger young generation lets a
query's objects die by reference counting before a collection sees them. Freezing then keeps the loaded
policy (millions of objects that live until the next reload) out of the full collections.

:func:`settle` runs once the server has started, and again after every reload once the queries that
began under the old generation are done (``total_timeout`` and a little more: until then they hold it).
It unfreezes and collects once first, so cyclic garbage of the old generation is found rather than frozen
for good: one full collection per load (about 0.1 s with a 100,000-entry list; a collection the
collector would otherwise make on its own once a new policy's millions of objects had piled up).
"""

from __future__ import annotations

import gc

SETTLE_SLACK = 1.0  # seconds past the resolver's total_timeout before the heap is frozen again
YOUNG_THRESHOLD = 10_000  # net allocations between young collections (CPython's default is 700)


def settle() -> None:
    """Collect, then freeze what is alive now: the loaded policy, generation and server."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
