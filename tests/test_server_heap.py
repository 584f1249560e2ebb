"""blockdns/server/heap.py: what is alive after a load is frozen; garbage from before is collected first."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from blockdns.server import heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_settle_collects_old_cycles_then_freezes_the_live_heap(restored_gc: None) -> None:
    kept = Node()
    cycle = Node()
    cycle.other = cycle
    gone = weakref.ref(cycle)
    gc.freeze()  # as a previous load left it: the cycle frozen while still referenced
    del cycle
    heap.settle()
    assert gone() is None  # found and collected, not frozen for good
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == heap.YOUNG_THRESHOLD
    assert kept.other is None
