"""blockdns/server/heap.py: what is alive after a load is frozen; garbage from before is collected first."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator

import pytest

from blockdns.server import heap

from conftest import base_config


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


def test_a_reload_freezes_again_once_the_old_generations_queries_are_done(
    start_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not at once: a query still running holds the old generation, which frozen could never be freed."""
    settled: list[float] = []
    monkeypatch.setattr(heap, "settle", lambda: settled.append(time.monotonic()))
    monkeypatch.setattr(heap, "SETTLE_SLACK", 0.1)
    server = start_server(base_config(None, resolver={"total_timeout": 0.3}))
    server.server.settle_heap = True
    started = time.monotonic()
    assert server.call(server.server.reload_local()).ok
    deadline = time.monotonic() + 10
    while not settled and time.monotonic() < deadline:
        time.sleep(0.01)
    assert settled and settled[0] - started >= 0.4
